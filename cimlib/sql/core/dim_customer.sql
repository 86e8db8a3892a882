-- order_by: customer_id
-- One row per real customer. Each attribute comes from the latest record of the customer's numbers,
-- preferring the most recent date, then CORE over LOAN (then the smallest number), and skipping empty
-- values; name/phone/branch record the system they came from. Birthday, sex and age (at the last as-of
-- date) are derived from the ID number. Only each number's latest record is read (core_customer_xref
-- knows its date), so the cost does not grow with the months of history.
WITH pref AS (
    SELECT
        x.customer_id,
        r.*,
        row_number() OVER (
            PARTITION BY x.customer_id
            ORDER BY r.as_of_date DESC, CASE r.src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END, r.cust_no
        ) AS pref
    FROM core_customer_record AS r
    JOIN core_customer_xref AS x
      ON x.src_system = r.src_system AND x.cust_no = r.cust_no AND x.last_seen_date = r.as_of_date
),
merged AS (
    SELECT
        customer_id,
        arg_min(customer_type, pref) AS customer_type,
        arg_min(merge_key, pref) AS merge_key,
        arg_min(cust_name, pref) FILTER (WHERE cust_name IS NOT NULL) AS cust_name,
        arg_min(src_system, pref) FILTER (WHERE cust_name IS NOT NULL) AS name_source,
        arg_min(phone, pref) FILTER (WHERE phone IS NOT NULL) AS phone,
        arg_min(src_system, pref) FILTER (WHERE phone IS NOT NULL) AS phone_source,
        arg_min(org_code, pref) FILTER (WHERE org_code IS NOT NULL) AS org_code,
        arg_min(src_system, pref) FILTER (WHERE org_code IS NOT NULL) AS org_source,
        arg_min(education, pref) FILTER (WHERE education IS NOT NULL) AS education,
        arg_min(occupation, pref) FILTER (WHERE occupation IS NOT NULL) AS occupation,
        arg_min(monthly_income, pref) FILTER (WHERE monthly_income IS NOT NULL) AS monthly_income,
        arg_min(marital_status, pref) FILTER (WHERE marital_status IS NOT NULL) AS marital_status,
        arg_min(address, pref) FILTER (WHERE address IS NOT NULL) AS address,
        arg_min(id_expiry_date, pref) FILTER (WHERE id_expiry_date IS NOT NULL) AS id_expiry_date,
        arg_min(economic_nature, pref) FILTER (WHERE economic_nature IS NOT NULL) AS economic_nature,
        arg_min(enterprise_form, pref) FILTER (WHERE enterprise_form IS NOT NULL) AS enterprise_form,
        arg_min(industry, pref) FILTER (WHERE industry IS NOT NULL) AS industry,
        arg_min(registered_capital, pref) FILTER (WHERE registered_capital IS NOT NULL) AS registered_capital,
        arg_min(legal_rep_name, pref) FILTER (WHERE legal_rep_name IS NOT NULL) AS legal_rep_name,
        arg_min(established_date, pref) FILTER (WHERE established_date IS NOT NULL) AS established_date,
        arg_min(group_code, pref) FILTER (WHERE group_code IS NOT NULL) AS group_code,
        arg_min(group_name, pref) FILTER (WHERE group_code IS NOT NULL) AS group_name,
        min(open_date) AS first_open_date
    FROM pref
    GROUP BY customer_id
),
numbers AS (
    SELECT
        customer_id,
        array_agg(cust_no ORDER BY cust_no) AS merged_cust_nos,
        array_agg(DISTINCT src_system ORDER BY src_system) AS source_systems,
        count(*) AS n_source_numbers,
        min(first_seen_date) AS first_seen_date,
        max(last_seen_date) AS last_seen_date
    FROM core_customer_xref
    GROUP BY customer_id
),
manager AS (
    SELECT
        m.customer_id,
        arg_max(a.staff_no, a.start_date) AS manager_no,
        max(a.start_date) AS manager_since
    FROM stg_manager_assignment AS a
    JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
    WHERE a.end_date IS NULL
      AND a.as_of_date = (SELECT max(as_of_date) FROM stg_manager_assignment)
    GROUP BY m.customer_id
),
staff AS (
    SELECT staff_no, staff_name, org_code
    FROM stg_staff
    WHERE as_of_date = (SELECT max(as_of_date) FROM stg_staff)
),
last_date AS (
    SELECT max(last_seen_date) AS d FROM core_customer_xref
),
derived AS (
    SELECT
        g.*,
        CASE WHEN g.customer_type = 'I' THEN TRY_CAST(
            substr(g.merge_key, 7, 4) || '-' || substr(g.merge_key, 11, 2) || '-' || substr(g.merge_key, 13, 2)
            AS DATE) END AS birthday,
        CASE WHEN g.customer_type = 'I' THEN
            CASE WHEN TRY_CAST(substr(g.merge_key, 17, 1) AS INTEGER) % 2 = 1 THEN 'M' ELSE 'F' END END AS sex,
        ld.d AS last_as_of_date
    FROM merged AS g
    CROSS JOIN last_date AS ld
)
SELECT
    d.customer_id,
    d.customer_type,
    d.merge_key AS id_no_or_credit_code,
    d.cust_name,
    d.name_source,
    d.phone,
    d.phone_source,
    d.sex,
    d.birthday,
    CASE WHEN d.birthday IS NOT NULL THEN
        CAST(EXTRACT(YEAR FROM d.last_as_of_date) - EXTRACT(YEAR FROM d.birthday)
        - CASE WHEN EXTRACT(MONTH FROM d.last_as_of_date) * 100 + EXTRACT(DAY FROM d.last_as_of_date)
                    < EXTRACT(MONTH FROM d.birthday) * 100 + EXTRACT(DAY FROM d.birthday) THEN 1 ELSE 0 END
        AS INTEGER) END AS age,
    d.education,
    d.occupation,
    d.monthly_income,
    d.marital_status,
    d.address,
    d.id_expiry_date,
    d.economic_nature,
    d.enterprise_form,
    d.industry,
    d.registered_capital,
    d.legal_rep_name,
    d.established_date,
    d.group_code,
    d.group_name,
    d.org_code AS home_org_code,
    o.org_name AS home_org_name,
    d.org_source AS home_org_source,
    o.county_code,
    o.county_name,
    mg.manager_no,
    s.staff_name AS manager_name,
    s.org_code AS manager_org_code,
    mg.manager_since,
    d.first_open_date,
    n.first_seen_date,
    n.last_seen_date,
    n.last_seen_date = d.last_as_of_date AS is_current,
    n.merged_cust_nos,
    n.source_systems,
    n.n_source_numbers
FROM derived AS d
JOIN numbers AS n ON n.customer_id = d.customer_id
LEFT JOIN core_org AS o ON o.org_code = d.org_code
LEFT JOIN manager AS mg ON mg.customer_id = d.customer_id
LEFT JOIN staff AS s ON s.staff_no = mg.manager_no
