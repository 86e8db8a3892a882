-- Staging: manager_assignment for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    assignment_no,
    cust_no,
    staff_no,
    start_date,
    end_date
FROM lake_manager_assignment
