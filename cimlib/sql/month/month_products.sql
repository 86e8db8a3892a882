-- One as-of date's products held per source customer number: the distinct product codes of open
-- deposit accounts, active loans and cards, and wealth holdings with a value. Read at the roll-up only
-- for customers with several numbers, whose products held is a distinct count across them.
SELECT DISTINCT cust_no, product_code
FROM (
    SELECT cust_no, product_code FROM m_deposit_account WHERE status <> 'CLOSED'
    UNION ALL
    SELECT cust_no, product_code FROM m_loan WHERE status = 'ACTIVE'
    UNION ALL
    SELECT cust_no, product_code FROM m_card WHERE status = 'ACTIVE'
    UNION ALL
    SELECT cust_no, product_code FROM m_wealth_holding WHERE market_value > 0
) AS p
