-- order_by: as_of_date, org_code, subject_code
-- General ledger vs customer-level balances per as-of date, org and GL subject. Deposit subjects map
-- by (customer type, account type), loan subjects by customer type (gl_subject attributes in
-- codes.yaml). Loans written off are off the ledger.
WITH cust AS (
    SELECT
        b.as_of_date,
        a.org_code,
        g.code AS subject_code,
        sum(b.balance) AS customer_balance,
        count(*) AS n_items
    FROM stg_account_balance AS b
    JOIN stg_deposit_account AS a ON a.as_of_date = b.as_of_date AND a.account_no = b.account_no
    JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
    JOIN ref_gl_subject AS g
      ON g.side = 'liability' AND g.customer_type = m.customer_type AND g.account_type = a.account_type
    GROUP BY b.as_of_date, a.org_code, g.code
    UNION ALL
    SELECT
        l.as_of_date,
        l.org_code,
        g.code AS subject_code,
        sum(l.balance) AS customer_balance,
        count(*) AS n_items
    FROM stg_loan AS l
    JOIN core_cust_no_map AS m ON m.cust_no = l.cust_no
    JOIN ref_gl_subject AS g ON g.side = 'asset' AND g.customer_type = m.customer_type
    WHERE l.status <> 'WRITTEN_OFF'
    GROUP BY l.as_of_date, l.org_code, g.code
)
SELECT
    coalesce(gl.as_of_date, c.as_of_date) AS as_of_date,
    coalesce(gl.org_code, c.org_code) AS org_code,
    coalesce(gl.subject_code, c.subject_code) AS subject_code,
    coalesce(gl.balance, 0) AS gl_balance,
    CAST(coalesce(c.customer_balance, 0) AS DECIMAL(18, 2)) AS customer_balance,
    CAST(coalesce(gl.balance, 0) - coalesce(c.customer_balance, 0) AS DECIMAL(18, 2)) AS difference,
    coalesce(c.n_items, 0) AS n_items,
    gl.balance IS NOT NULL AS has_gl_row
FROM stg_gl_balance AS gl
FULL OUTER JOIN cust AS c
  ON c.as_of_date = gl.as_of_date AND c.org_code = gl.org_code AND c.subject_code = gl.subject_code
