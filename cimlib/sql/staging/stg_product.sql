-- Staging: product for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    product_code,
    product_name,
    category,
    subtype,
    term_months,
    base_rate,
    gl_subject,
    launch_date
FROM lake_product
