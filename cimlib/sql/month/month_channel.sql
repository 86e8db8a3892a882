-- One as-of date's transaction volume by the account's branch (org_code), the customer type of the
-- account's customer, channel, transaction type, direction, counterparty (本代他), teller (柜员号) and
-- terminal (终端号): the basis of the channel and staff-performance analyses. teller_no and terminal_id
-- are NULL where a transaction has none (other channels, older extracts). The customer type of a number
-- is that of its record on the same date, CORE first (as in month_gl). Additive; cached per date like
-- month_cust and rolled up by mart_channel_month.
WITH cust_type AS ({{ month_customer_types() }})
SELECT
    a.org_code,
    ct.customer_type,
    t.channel,
    t.txn_type,
    t.direction,
    t.counterparty,
    t.teller_no,
    t.terminal_id,
    count(*) AS txn_count,
    sum(t.amount) AS txn_amount
FROM m_transaction AS t
JOIN (SELECT account_no, cust_no, org_code FROM m_deposit_account) AS a ON a.account_no = t.account_no
LEFT JOIN cust_type AS ct ON ct.cust_no = a.cust_no
GROUP BY a.org_code, ct.customer_type, t.channel, t.txn_type, t.direction, t.counterparty, t.teller_no,
    t.terminal_id
