-- order_by: staff_no
-- Staff (tellers, customer managers) as of the latest loaded date, with their org's county.
SELECT s.* EXCLUDE (as_of_date), s.as_of_date AS roster_date, o.county_code
FROM stg_staff AS s
LEFT JOIN core_org AS o ON o.org_code = s.org_code
WHERE s.as_of_date = (SELECT max(as_of_date) FROM stg_staff)
