-- order_by: customer_id, as_of_date, card_no
-- partition_by: as_of_date
-- Every card row of every loaded month with its owner (customer_id), clustered by customer for the 360 view.
SELECT
    m.customer_id,
    t.*
FROM stg_card AS t
JOIN core_cust_no_map AS m ON m.cust_no = t.cust_no
