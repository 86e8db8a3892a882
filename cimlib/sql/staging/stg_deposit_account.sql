-- Staging: deposit_account for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    account_no,
    cust_no,
    product_code,
    org_code,
    account_type,
    currency,
    open_date,
    close_date,
    status,
    rate,
    term_months,
    maturity_date
FROM lake_deposit_account
