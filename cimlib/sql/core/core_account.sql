-- order_by: customer_id, account_no
-- The latest state of each deposit account, with its owner and its latest balance.
WITH latest AS (
    SELECT
        account_no,
        max(as_of_date) AS as_of_date
    FROM stg_deposit_account
    GROUP BY account_no
)
SELECT
    m.customer_id,
    a.account_no,
    a.cust_no,
    a.as_of_date AS last_seen_date,
    a.product_code,
    a.org_code,
    a.account_type,
    a.currency,
    a.open_date,
    a.close_date,
    a.status,
    a.rate,
    a.term_months,
    a.maturity_date,
    b.balance,
    b.accum_balance,
    b.days
FROM stg_deposit_account AS a
JOIN latest AS l ON l.account_no = a.account_no AND l.as_of_date = a.as_of_date
LEFT JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
LEFT JOIN stg_account_balance AS b ON b.account_no = a.account_no AND b.as_of_date = a.as_of_date
