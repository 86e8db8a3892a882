-- order_by: cust_no
-- cust_no -> customer_id for tables that carry a cust_no without a source system (accounts, loans,
-- cards, holdings, assignments). Should one number exist in two systems, the CORE one wins.
SELECT
    cust_no,
    arg_min(customer_id, CASE src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END) AS customer_id,
    arg_min(customer_type, CASE src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END) AS customer_type
FROM core_customer_xref
GROUP BY cust_no
