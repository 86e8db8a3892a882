-- order_by: cust_no
-- cust_no -> customer_id for tables that carry a cust_no without a source system (accounts, loans,
-- cards, holdings, assignments). Should one number exist in two systems, the CORE one wins.
-- n_numbers is how many numbers the customer has here (1 for most: their facts pass through unmerged).
WITH m AS (
    SELECT
        cust_no,
        arg_min(customer_id, CASE src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END) AS customer_id,
        arg_min(customer_type, CASE src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END) AS customer_type
    FROM core_customer_xref
    GROUP BY cust_no
)
SELECT
    cust_no,
    customer_id,
    customer_type,
    count(*) OVER (PARTITION BY customer_id) AS n_numbers
FROM m
