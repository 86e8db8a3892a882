-- Staging: corporate_business for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    biz_no,
    cust_no,
    org_code,
    biz_type,
    amount,
    fee,
    issue_date,
    maturity_date,
    status
FROM lake_corporate_business
