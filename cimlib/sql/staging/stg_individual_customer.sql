-- Staging: individual_customer for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    src_system,
    cust_no,
    id_no,
    cust_name,
    birth_date,
    sex,
    education,
    occupation,
    monthly_income,
    marital_status,
    phone,
    address,
    id_expiry_date,
    open_date,
    org_code
FROM lake_individual_customer
