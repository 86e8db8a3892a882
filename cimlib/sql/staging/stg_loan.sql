-- Staging: loan for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    loan_no,
    cust_no,
    product_code,
    org_code,
    manager_no,
    loan_form,
    contract_amount,
    rate,
    start_date,
    maturity_date,
    balance,
    accum_balance,
    days_past_due,
    five_class,
    status,
    credit_line_no
FROM lake_loan
