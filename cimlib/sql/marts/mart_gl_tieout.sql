-- order_by: as_of_date, org_code, subject_code
-- General ledger vs customer-level balances per as-of date, org and GL subject. The customer side comes
-- from the per-date partial results (part_gl_month, see month/month_gl.sql).
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
FULL OUTER JOIN part_gl_month AS c
  ON c.as_of_date = gl.as_of_date AND c.org_code = gl.org_code AND c.subject_code = gl.subject_code
