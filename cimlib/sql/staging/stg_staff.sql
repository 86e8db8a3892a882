-- Staging: staff for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    staff_no,
    staff_name,
    org_code,
    role,
    hire_date,
    status
FROM lake_staff
