-- order_by: customer_id, as_of_date
-- One row per customer and month (as-of date): deposits, wealth, AUM, loans, credit lines, cards,
-- products held and transactions. Rows exist for every customer with a record or any fact that month.
WITH dep AS (
    SELECT
        b.as_of_date,
        m.customer_id,
        sum(b.balance) AS deposit_balance,
        coalesce(sum(b.balance) FILTER (WHERE a.account_type = 'DEMAND'), 0) AS demand_balance,
        coalesce(sum(b.balance) FILTER (WHERE a.account_type = 'TIME'), 0) AS time_balance,
        CAST(sum(b.accum_balance / b.days) AS DECIMAL(18, 2)) AS deposit_adb,
        CAST(coalesce(sum(b.accum_balance / b.days) FILTER (WHERE a.account_type = 'DEMAND'), 0)
             AS DECIMAL(18, 2)) AS demand_adb,
        count(*) FILTER (WHERE a.status <> 'CLOSED') AS n_deposit_accounts
    FROM stg_account_balance AS b
    JOIN stg_deposit_account AS a ON a.as_of_date = b.as_of_date AND a.account_no = b.account_no
    JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
    GROUP BY b.as_of_date, m.customer_id
),
wealth AS (
    SELECT
        w.as_of_date,
        m.customer_id,
        sum(w.market_value) AS wealth_aum,
        coalesce(sum(w.market_value) FILTER (WHERE w.wealth_type = 'WMP'), 0) AS wmp_value,
        coalesce(sum(w.market_value) FILTER (WHERE w.wealth_type = 'FUND'), 0) AS fund_value,
        coalesce(sum(w.market_value) FILTER (WHERE w.wealth_type = 'INSURANCE'), 0) AS insurance_value,
        coalesce(sum(w.market_value) FILTER (WHERE w.wealth_type = 'BOND'), 0) AS bond_value,
        coalesce(sum(w.market_value) FILTER (WHERE w.wealth_type = 'GOLD'), 0) AS gold_value
    FROM stg_wealth_holding AS w
    JOIN core_cust_no_map AS m ON m.cust_no = w.cust_no
    GROUP BY w.as_of_date, m.customer_id
),
loans AS (
    SELECT
        l.as_of_date,
        m.customer_id,
        coalesce(sum(l.balance) FILTER (WHERE l.status <> 'WRITTEN_OFF'), 0) AS loan_balance,
        CAST(coalesce(sum(l.accum_balance) FILTER (WHERE l.status <> 'WRITTEN_OFF'), 0)
             / EXTRACT(DAY FROM l.as_of_date) AS DECIMAL(18, 2)) AS loan_adb,
        count(*) FILTER (WHERE l.status = 'ACTIVE') AS n_active_loans,
        max(l.days_past_due) FILTER (WHERE l.status = 'ACTIVE') AS max_days_past_due,
        max(f.rank) FILTER (WHERE l.status = 'ACTIVE') AS worst_five_class_rank,
        coalesce(sum(l.balance) FILTER (WHERE l.status <> 'WRITTEN_OFF' AND f.npl), 0) AS npl_balance
    FROM stg_loan AS l
    JOIN core_cust_no_map AS m ON m.cust_no = l.cust_no
    LEFT JOIN ref_five_class AS f ON f.code = l.five_class
    GROUP BY l.as_of_date, m.customer_id
),
lines AS (
    SELECT
        c.as_of_date,
        m.customer_id,
        sum(c.line_amount) AS credit_line_amount,
        sum(c.used_amount) AS credit_line_used
    FROM stg_credit_line AS c
    JOIN core_cust_no_map AS m ON m.cust_no = c.cust_no
    WHERE c.status = 'ACTIVE'
    GROUP BY c.as_of_date, m.customer_id
),
cards AS (
    SELECT
        c.as_of_date,
        m.customer_id,
        count(*) FILTER (WHERE c.status = 'ACTIVE' AND c.card_type = 'DEBIT') AS n_debit_cards,
        count(*) FILTER (WHERE c.status = 'ACTIVE' AND c.card_type = 'CREDIT') AS n_credit_cards,
        coalesce(sum(c.credit_limit) FILTER (WHERE c.status = 'ACTIVE' AND c.card_type = 'CREDIT'), 0)
            AS credit_card_limit,
        coalesce(sum(c.balance) FILTER (WHERE c.card_type = 'CREDIT'), 0) AS credit_card_balance
    FROM stg_card AS c
    JOIN core_cust_no_map AS m ON m.cust_no = c.cust_no
    GROUP BY c.as_of_date, m.customer_id
),
products AS (
    SELECT as_of_date, customer_id, count(DISTINCT product_code) AS n_products
    FROM (
        SELECT a.as_of_date, a.cust_no, a.product_code FROM stg_deposit_account AS a WHERE a.status <> 'CLOSED'
        UNION ALL
        SELECT l.as_of_date, l.cust_no, l.product_code FROM stg_loan AS l WHERE l.status = 'ACTIVE'
        UNION ALL
        SELECT c.as_of_date, c.cust_no, c.product_code FROM stg_card AS c WHERE c.status = 'ACTIVE'
        UNION ALL
        SELECT w.as_of_date, w.cust_no, w.product_code FROM stg_wealth_holding AS w WHERE w.market_value > 0
    ) AS p
    JOIN core_cust_no_map AS m ON m.cust_no = p.cust_no
    GROUP BY as_of_date, customer_id
),
spine AS (
    SELECT r.as_of_date, x.customer_id
    FROM core_customer_record AS r
    JOIN core_customer_xref AS x ON x.src_system = r.src_system AND x.cust_no = r.cust_no
    UNION
    SELECT as_of_date, customer_id FROM dep
    UNION
    SELECT as_of_date, customer_id FROM wealth
    UNION
    SELECT as_of_date, customer_id FROM loans
    UNION
    SELECT as_of_date, customer_id FROM lines
    UNION
    SELECT as_of_date, customer_id FROM cards
    UNION
    SELECT as_of_date, customer_id FROM core_txn_customer_month
)
SELECT
    s.customer_id,
    s.as_of_date,
    d.customer_type,
    CAST(coalesce(dep.deposit_balance, 0) AS DECIMAL(18, 2)) AS deposit_balance,
    CAST(coalesce(dep.demand_balance, 0) AS DECIMAL(18, 2)) AS demand_balance,
    CAST(coalesce(dep.time_balance, 0) AS DECIMAL(18, 2)) AS time_balance,
    coalesce(dep.deposit_adb, 0) AS deposit_adb,
    coalesce(dep.demand_adb, 0) AS demand_adb,
    coalesce(dep.n_deposit_accounts, 0) AS n_deposit_accounts,
    CAST(coalesce(w.wealth_aum, 0) AS DECIMAL(18, 2)) AS wealth_aum,
    CAST(coalesce(w.wmp_value, 0) AS DECIMAL(18, 2)) AS wmp_value,
    CAST(coalesce(w.fund_value, 0) AS DECIMAL(18, 2)) AS fund_value,
    CAST(coalesce(w.insurance_value, 0) AS DECIMAL(18, 2)) AS insurance_value,
    CAST(coalesce(w.bond_value, 0) AS DECIMAL(18, 2)) AS bond_value,
    CAST(coalesce(w.gold_value, 0) AS DECIMAL(18, 2)) AS gold_value,
    CAST(coalesce(dep.deposit_balance, 0) + coalesce(w.wealth_aum, 0) AS DECIMAL(18, 2)) AS aum,
    CAST(coalesce(l.loan_balance, 0) AS DECIMAL(18, 2)) AS loan_balance,
    coalesce(l.loan_adb, 0) AS loan_adb,
    coalesce(l.n_active_loans, 0) AS n_active_loans,
    l.max_days_past_due,
    f.code AS worst_five_class,
    CAST(coalesce(l.npl_balance, 0) AS DECIMAL(18, 2)) AS npl_balance,
    CAST(coalesce(cl.credit_line_amount, 0) AS DECIMAL(18, 2)) AS credit_line_amount,
    CAST(coalesce(cl.credit_line_used, 0) AS DECIMAL(18, 2)) AS credit_line_used,
    CASE WHEN cl.credit_line_amount > 0
         THEN CAST(CAST(cl.credit_line_used AS DOUBLE) / CAST(cl.credit_line_amount AS DOUBLE) AS DECIMAL(9, 6))
    END AS credit_line_utilisation,
    coalesce(c.n_debit_cards, 0) AS n_debit_cards,
    coalesce(c.n_credit_cards, 0) AS n_credit_cards,
    CAST(coalesce(c.credit_card_limit, 0) AS DECIMAL(18, 2)) AS credit_card_limit,
    CAST(coalesce(c.credit_card_balance, 0) AS DECIMAL(18, 2)) AS credit_card_balance,
    coalesce(p.n_products, 0) AS n_products,
    coalesce(t.txn_count, 0) AS txn_count,
    CAST(coalesce(t.txn_amount, 0) AS DECIMAL(18, 2)) AS txn_amount,
    coalesce(t.customer_txn_count, 0) AS customer_txn_count,
    CAST(coalesce(t.customer_txn_amount, 0) AS DECIMAL(18, 2)) AS customer_txn_amount,
    coalesce(t.digital_txn_count, 0) AS digital_txn_count,
    coalesce(t.txn_count_counter, 0) AS txn_count_counter,
    coalesce(t.txn_count_atm, 0) AS txn_count_atm,
    coalesce(t.txn_count_pos, 0) AS txn_count_pos,
    coalesce(t.txn_count_phone, 0) AS txn_count_phone,
    coalesce(t.txn_count_online, 0) AS txn_count_online,
    coalesce(t.txn_count_mobile, 0) AS txn_count_mobile,
    coalesce(t.txn_count_system, 0) AS txn_count_system,
    CAST(coalesce(t.txn_amount_counter, 0) AS DECIMAL(18, 2)) AS txn_amount_counter,
    CAST(coalesce(t.txn_amount_atm, 0) AS DECIMAL(18, 2)) AS txn_amount_atm,
    CAST(coalesce(t.txn_amount_pos, 0) AS DECIMAL(18, 2)) AS txn_amount_pos,
    CAST(coalesce(t.txn_amount_phone, 0) AS DECIMAL(18, 2)) AS txn_amount_phone,
    CAST(coalesce(t.txn_amount_online, 0) AS DECIMAL(18, 2)) AS txn_amount_online,
    CAST(coalesce(t.txn_amount_mobile, 0) AS DECIMAL(18, 2)) AS txn_amount_mobile,
    CAST(coalesce(t.txn_amount_system, 0) AS DECIMAL(18, 2)) AS txn_amount_system,
    CAST(coalesce(t.inflow_amount, 0) AS DECIMAL(18, 2)) AS inflow_amount,
    CAST(coalesce(t.outflow_amount, 0) AS DECIMAL(18, 2)) AS outflow_amount,
    coalesce(t.other_bank_txn_count, 0) AS other_bank_txn_count,
    t.last_txn_time
FROM spine AS s
JOIN dim_customer AS d ON d.customer_id = s.customer_id
LEFT JOIN dep ON dep.as_of_date = s.as_of_date AND dep.customer_id = s.customer_id
LEFT JOIN wealth AS w ON w.as_of_date = s.as_of_date AND w.customer_id = s.customer_id
LEFT JOIN loans AS l ON l.as_of_date = s.as_of_date AND l.customer_id = s.customer_id
LEFT JOIN ref_five_class AS f ON f.rank = l.worst_five_class_rank
LEFT JOIN lines AS cl ON cl.as_of_date = s.as_of_date AND cl.customer_id = s.customer_id
LEFT JOIN cards AS c ON c.as_of_date = s.as_of_date AND c.customer_id = s.customer_id
LEFT JOIN products AS p ON p.as_of_date = s.as_of_date AND p.customer_id = s.customer_id
LEFT JOIN core_txn_customer_month AS t ON t.as_of_date = s.as_of_date AND t.customer_id = s.customer_id
