-- One as-of date's fee income (手续费收入) per source customer number: the FEE transactions debited from the
-- customer's deposit accounts that period. Additive, so the fees of a merged customer are summed at the
-- roll-up (mart_fee_month). Cached per date like month_cust.
SELECT
    a.cust_no,
    count(*) AS fee_count,
    sum(t.amount) AS fee_amount
FROM m_transaction AS t
JOIN (SELECT account_no, cust_no FROM m_deposit_account) AS a ON a.account_no = t.account_no
WHERE t.txn_type = 'FEE' AND t.direction = 'D'
GROUP BY a.cust_no
