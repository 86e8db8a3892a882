-- order_by: customer_id, as_of_date, account_no
-- partition_by: as_of_date
-- Every deposit account in every loaded month with its owner (customer_id), month-end balance and
-- month average daily balance (accum_balance / days). Clustered by customer so a single customer's
-- accounts in any month are read from a few row groups (the 360 view reads this table).
SELECT
    m.customer_id,
    a.as_of_date,
    a.account_no,
    a.cust_no,
    a.product_code,
    a.org_code,
    a.account_type,
    a.currency,
    a.open_date,
    a.close_date,
    a.status,
    a.rate,
    a.term_months,
    a.maturity_date,
    coalesce(b.balance, 0) AS balance,
    coalesce(b.accum_balance, 0) AS accum_balance,
    b.days,
    CAST(coalesce(b.accum_balance / b.days, 0) AS DECIMAL(18, 2)) AS adb
FROM stg_deposit_account AS a
JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
LEFT JOIN stg_account_balance AS b ON b.as_of_date = a.as_of_date AND b.account_no = a.account_no
