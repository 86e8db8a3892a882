-- Staging: gl_balance for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    org_code,
    subject_code,
    balance
FROM lake_gl_balance
