-- The latest state of each org with its county bank (the org itself for a county, its parent for a branch).
WITH latest AS (
    SELECT *
    FROM stg_org
    WHERE as_of_date = (SELECT max(as_of_date) FROM stg_org)
)
SELECT
    o.org_code,
    o.org_name,
    o.org_level,
    o.parent_code,
    o.region_code,
    CASE o.org_level WHEN 'COUNTY' THEN o.org_code WHEN 'BRANCH' THEN o.parent_code END AS county_code,
    CASE o.org_level WHEN 'COUNTY' THEN o.org_name WHEN 'BRANCH' THEN p.org_name END AS county_name
FROM latest AS o
LEFT JOIN latest AS p ON p.org_code = o.parent_code
