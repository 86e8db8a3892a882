-- Staging: org for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    org_code,
    org_name,
    org_level,
    parent_code,
    region_code,
    open_date
FROM lake_org
