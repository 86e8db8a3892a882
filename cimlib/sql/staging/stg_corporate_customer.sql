-- Staging: corporate_customer for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    src_system,
    cust_no,
    credit_code,
    cust_name,
    economic_nature,
    enterprise_form,
    industry,
    registered_capital,
    legal_rep_name,
    phone,
    established_date,
    open_date,
    org_code,
    group_code,
    group_name
FROM lake_corporate_customer
