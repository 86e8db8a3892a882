-- Staging: account_balance for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    account_no,
    balance,
    accum_balance,
    days
FROM lake_account_balance
