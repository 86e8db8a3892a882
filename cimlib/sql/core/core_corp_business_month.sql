-- order_by: customer_id, as_of_date, biz_no
-- partition_by: as_of_date
-- Every corporate_business row of every loaded month with its owner (customer_id), clustered by customer for the 360 view.
SELECT
    m.customer_id,
    t.*
FROM stg_corporate_business AS t
JOIN core_cust_no_map AS m ON m.cust_no = t.cust_no
