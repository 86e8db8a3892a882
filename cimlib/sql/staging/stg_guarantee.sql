-- Staging: guarantee for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    guarantee_no,
    loan_no,
    guarantee_type,
    guarantor_cust_no,
    guarantor_name,
    amount,
    start_date,
    end_date
FROM lake_guarantee
