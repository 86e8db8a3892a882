-- materialized: view
-- partition_by: as_of_date
-- A view: a plain UNION ALL of two staged tables, so copying its 2.5M rows would only cost time.
-- Every customer record of every source system and as-of date, individuals and corporates in one shape.
-- merge_key is what identifies the real customer across systems: id_no (individuals), credit_code (corporates).
SELECT
    as_of_date, src_system, cust_no, 'I' AS customer_type, id_no AS merge_key,
    cust_name, phone, org_code, open_date,
    birth_date, sex, education, occupation, monthly_income, marital_status, address, id_expiry_date,
    CAST(NULL AS VARCHAR) AS economic_nature, CAST(NULL AS VARCHAR) AS enterprise_form,
    CAST(NULL AS VARCHAR) AS industry, CAST(NULL AS DECIMAL(18, 2)) AS registered_capital,
    CAST(NULL AS VARCHAR) AS legal_rep_name, CAST(NULL AS DATE) AS established_date,
    CAST(NULL AS VARCHAR) AS group_code, CAST(NULL AS VARCHAR) AS group_name
FROM stg_individual_customer
UNION ALL
SELECT
    as_of_date, src_system, cust_no, 'C' AS customer_type, credit_code AS merge_key,
    cust_name, phone, org_code, open_date,
    CAST(NULL AS DATE) AS birth_date, CAST(NULL AS VARCHAR) AS sex, CAST(NULL AS VARCHAR) AS education,
    CAST(NULL AS VARCHAR) AS occupation, CAST(NULL AS DECIMAL(18, 2)) AS monthly_income,
    CAST(NULL AS VARCHAR) AS marital_status, CAST(NULL AS VARCHAR) AS address, CAST(NULL AS DATE) AS id_expiry_date,
    economic_nature, enterprise_form, industry, registered_capital, legal_rep_name, established_date,
    group_code, group_name
FROM stg_corporate_customer
