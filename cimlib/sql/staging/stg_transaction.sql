-- Staging: transaction for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- Kept as a view over the lake: the detail is large and is read once, by
-- core_txn_customer_month (a single pass per build).
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
    mcc
FROM lake_transaction
