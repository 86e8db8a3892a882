-- Staging: card for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    card_no,
    cust_no,
    card_type,
    product_code,
    account_no,
    org_code,
    issue_date,
    expiry_date,
    status,
    credit_limit,
    balance
FROM lake_card
