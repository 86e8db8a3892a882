-- order_by: customer_id, as_of_date, line_no
-- partition_by: as_of_date
-- Every credit_line row of every loaded month with its owner (customer_id), clustered by customer for the 360 view.
SELECT
    m.customer_id,
    t.*
FROM stg_credit_line AS t
JOIN core_cust_no_map AS m ON m.cust_no = t.cust_no
