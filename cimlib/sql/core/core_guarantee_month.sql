-- order_by: borrower_customer_id, as_of_date, guarantee_no
-- partition_by: as_of_date
-- Every guarantee of every loaded month with both sides resolved to real customers: the borrower of the
-- guaranteed loan and, when the guarantor is a customer of the bank, the guarantor.
SELECT
    lm.customer_id AS borrower_customer_id,
    gm.customer_id AS guarantor_customer_id,
    g.*,
    l.cust_no AS borrower_cust_no,
    l.five_class AS loan_five_class,
    l.balance AS loan_balance,
    l.days_past_due AS loan_days_past_due
FROM stg_guarantee AS g
LEFT JOIN stg_loan AS l ON l.as_of_date = g.as_of_date AND l.loan_no = g.loan_no
LEFT JOIN core_cust_no_map AS lm ON lm.cust_no = l.cust_no
LEFT JOIN core_cust_no_map AS gm ON gm.cust_no = g.guarantor_cust_no
