-- order_by: customer_id, fiscal_year
-- Yearly financials of corporate customers as of the latest loaded date that has them.
SELECT
    m.customer_id,
    f.*
FROM stg_corporate_financials AS f
JOIN core_cust_no_map AS m ON m.cust_no = f.cust_no
WHERE f.as_of_date = (SELECT max(as_of_date) FROM stg_corporate_financials)
