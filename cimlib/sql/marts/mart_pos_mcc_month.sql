-- order_by: customer_id, as_of_date, mcc
-- partition_by: as_of_date
-- POS spending per customer, month and merchant category (MCC), from the per-date partial results
-- (part_pos_month, see month/month_pos.sql), the numbers of merged customers added up.
SELECT
    m.customer_id,
    p.as_of_date,
    p.mcc,
    CAST(sum(p.pos_count) AS BIGINT) AS pos_count,
    CAST(sum(p.pos_amount) AS DECIMAL(18, 2)) AS pos_amount
FROM part_pos_month AS p
JOIN core_cust_no_map AS m ON m.cust_no = p.cust_no
GROUP BY m.customer_id, p.as_of_date, p.mcc
