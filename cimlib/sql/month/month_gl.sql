-- One as-of date's customer-level balances per org and GL subject, for the GL tie-out. Deposit
-- subjects map by (customer type, account type), loan subjects by customer type (gl_subject attributes
-- in codes.yaml); the customer type of a number is that of its record on the same date (CORE first).
-- Loans written off are off the ledger.
WITH cust_type AS ({{ month_customer_types() }})
SELECT
    a.org_code,
    g.code AS subject_code,
    sum(b.balance) AS customer_balance,
    count(*) AS n_items
FROM m_account_balance AS b
JOIN m_deposit_account AS a ON a.account_no = b.account_no
JOIN cust_type AS ct ON ct.cust_no = a.cust_no
JOIN ref_gl_subject AS g
  ON g.side = 'liability' AND g.customer_type = ct.customer_type AND g.account_type = a.account_type
GROUP BY a.org_code, g.code
UNION ALL
SELECT
    l.org_code,
    g.code AS subject_code,
    sum(l.balance) AS customer_balance,
    count(*) AS n_items
FROM m_loan AS l
JOIN cust_type AS ct ON ct.cust_no = l.cust_no
JOIN ref_gl_subject AS g ON g.side = 'asset' AND g.customer_type = ct.customer_type
WHERE l.status <> 'WRITTEN_OFF'
GROUP BY l.org_code, g.code
