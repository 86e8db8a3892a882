-- One as-of date's card spending at merchants (POS debits) per source customer number and merchant
-- category code (MCC): the basis of the consumption-propensity analysis. Additive, so the numbers of a
-- merged customer are summed at the roll-up (mart_pos_mcc_month). Cached per date like month_cust.
SELECT
    a.cust_no,
    t.mcc,
    count(*) AS pos_count,
    sum(t.amount) AS pos_amount
FROM m_transaction AS t
JOIN (SELECT account_no, cust_no FROM m_deposit_account) AS a ON a.account_no = t.account_no
WHERE t.channel = 'POS' AND t.direction = 'D' AND t.mcc IS NOT NULL
GROUP BY a.cust_no, t.mcc
