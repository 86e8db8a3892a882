-- Staging: credit_line for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    line_no,
    cust_no,
    org_code,
    line_amount,
    used_amount,
    start_date,
    expiry_date,
    status
FROM lake_credit_line
