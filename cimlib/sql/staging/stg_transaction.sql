-- Staging: transaction for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
-- Kept as a view over the lake: the detail is large; the build reads it one as-of date at a time
-- (sql/month/month_cust.sql), and caches the result per date.
SELECT
    as_of_date,
    txn_id,
    account_no,
    txn_time,
    amount,
    direction,
    channel,
    txn_type,
    counterparty,
    mcc,
    teller_no,
    terminal_id
FROM lake_transaction
