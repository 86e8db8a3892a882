-- order_by: customer_id, as_of_date
-- partition_by: as_of_date
-- Fee income (FEE debits) per customer and month, from the per-date partial results (part_fees_month, see
-- month/month_fees.sql), the fees of merged customer numbers added up. Customers without fees have no row.
SELECT
    m.customer_id,
    p.as_of_date,
    CAST(sum(p.fee_count) AS BIGINT) AS fee_count,
    CAST(sum(p.fee_amount) AS DECIMAL(18, 2)) AS fee_amount
FROM part_fees_month AS p
JOIN core_cust_no_map AS m ON m.cust_no = p.cust_no
GROUP BY m.customer_id, p.as_of_date
