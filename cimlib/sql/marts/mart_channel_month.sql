-- order_by: as_of_date, org_code, channel
-- partition_by: as_of_date
-- Transaction volume per month, branch (the account's org), customer type, channel, transaction type,
-- direction, counterparty, teller and terminal, from the per-date partial results (part_channel_month,
-- see month/month_channel.sql; each date's partial is already at this grain). teller_no and terminal_id
-- are NULL where a transaction has none: the grain treats NULL as one value (grain_nullable).
SELECT
    as_of_date,
    org_code,
    customer_type,
    channel,
    txn_type,
    direction,
    counterparty,
    teller_no,
    terminal_id,
    CAST(txn_count AS BIGINT) AS txn_count,
    CAST(txn_amount AS DECIMAL(18, 2)) AS txn_amount
FROM part_channel_month
