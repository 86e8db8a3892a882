-- order_by: customer_id, loan_no
-- The latest state of each loan, with its borrower.
WITH latest AS (
    SELECT
        loan_no,
        max(as_of_date) AS as_of_date
    FROM stg_loan
    GROUP BY loan_no
)
SELECT
    m.customer_id,
    l.loan_no,
    l.cust_no,
    l.as_of_date AS last_seen_date,
    l.product_code,
    l.org_code,
    l.manager_no,
    l.loan_form,
    l.contract_amount,
    l.rate,
    l.start_date,
    l.maturity_date,
    l.balance,
    l.accum_balance,
    l.days_past_due,
    l.five_class,
    l.status,
    l.credit_line_no
FROM stg_loan AS l
JOIN latest AS x ON x.loan_no = l.loan_no AND x.as_of_date = l.as_of_date
LEFT JOIN core_cust_no_map AS m ON m.cust_no = l.cust_no
