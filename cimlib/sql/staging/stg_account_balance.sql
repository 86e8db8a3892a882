-- Staging: account_balance for every loaded as-of date, typed per the canonical contract.
-- materialized: view
SELECT
    as_of_date,
    account_no,
    balance,
    accum_balance,
    days
FROM lake_account_balance
