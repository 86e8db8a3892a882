-- order_by: customer_id
-- Every system-level customer number -> the real customer (customer_id).
-- Numbers sharing an id_no (individuals) or credit_code (corporates) are one customer; its id is the
-- smallest CORE number of the group, else the smallest number of any system. A number's merge key is
-- the one of its latest record.
WITH nums AS (
    SELECT
        src_system,
        cust_no,
        arg_max(customer_type, as_of_date) AS customer_type,
        arg_max(merge_key, as_of_date) AS merge_key,
        min(as_of_date) AS first_seen_date,
        max(as_of_date) AS last_seen_date
    FROM core_customer_record
    GROUP BY src_system, cust_no
)
SELECT
    src_system,
    cust_no,
    coalesce(
        min(CASE WHEN src_system = 'CORE' THEN cust_no END) OVER (PARTITION BY customer_type, merge_key),
        min(cust_no) OVER (PARTITION BY customer_type, merge_key)
    ) AS customer_id,
    customer_type,
    merge_key,
    first_seen_date,
    last_seen_date
FROM nums
