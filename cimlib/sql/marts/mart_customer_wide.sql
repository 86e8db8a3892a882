-- order_by: customer_id
-- One row per customer: the latest month of mart_customer_month with the customer's attributes, plus
-- 3/6/12-month averages (over the months present in the window) and changes against 1, 3 and 12 months
-- earlier (NULL when that month is absent), in one aggregation pass. This is the table later analyses read.
WITH m AS (
    -- Only the columns the averages and changes read: this CTE is read twice, and DuckDB may
    -- materialise it, so a narrow one keeps that cheap.
    SELECT
        customer_id,
        as_of_date,
        CAST(EXTRACT(YEAR FROM as_of_date) * 12 + EXTRACT(MONTH FROM as_of_date) AS INTEGER) AS month_idx,
        aum, deposit_adb, deposit_balance, loan_balance, txn_count, customer_txn_count, customer_txn_amount,
        CAST(digital_txn_count AS DOUBLE) / nullif(txn_count - txn_count_system, 0) AS digital_share,
        -- the main channel of the month (most customer transactions; ties go to the first listed)
        CASE
            WHEN greatest(txn_count_counter, txn_count_atm, txn_count_pos, txn_count_phone, txn_count_online,
                          txn_count_mobile) = 0 THEN NULL
            WHEN txn_count_counter = greatest(txn_count_counter, txn_count_atm, txn_count_pos, txn_count_phone,
                                              txn_count_online, txn_count_mobile) THEN 'COUNTER'
            WHEN txn_count_atm = greatest(txn_count_atm, txn_count_pos, txn_count_phone, txn_count_online,
                                          txn_count_mobile) THEN 'ATM'
            WHEN txn_count_pos = greatest(txn_count_pos, txn_count_phone, txn_count_online, txn_count_mobile)
                THEN 'POS'
            WHEN txn_count_phone = greatest(txn_count_phone, txn_count_online, txn_count_mobile) THEN 'PHONE'
            WHEN txn_count_online = greatest(txn_count_online, txn_count_mobile) THEN 'ONLINE'
            ELSE 'MOBILE'
        END AS main_channel
    FROM mart_customer_month
),
-- Months since the last month with a customer-initiated transaction, over the whole history (for
-- dormancy rules); a customer never active counts all its months, a lower bound.
act AS (
    SELECT
        customer_id,
        max(month_idx) - coalesce(max(month_idx) FILTER (WHERE customer_txn_count > 0), min(month_idx) - 1)
            AS months_inactive
    FROM m
    GROUP BY customer_id
),
latest AS (
    SELECT customer_id, max(month_idx) AS month_idx, max(as_of_date) AS as_of_date, count(*) AS n_months
    FROM m
    GROUP BY customer_id
),
-- One aggregation pass (no window frames, no self-joins): rolling averages over the months present
-- in the window, and the values 1, 3 and 12 months before the latest month.
lt AS (
    SELECT
        l.customer_id,
        l.month_idx,
        l.as_of_date,
        l.n_months,
        CAST(avg(m.aum) FILTER (WHERE m.month_idx > l.month_idx - 3) AS DECIMAL(18, 2)) AS aum_avg_3m,
        CAST(avg(m.aum) FILTER (WHERE m.month_idx > l.month_idx - 6) AS DECIMAL(18, 2)) AS aum_avg_6m,
        CAST(avg(m.aum) FILTER (WHERE m.month_idx > l.month_idx - 12) AS DECIMAL(18, 2)) AS aum_avg_12m,
        CAST(avg(m.deposit_adb) FILTER (WHERE m.month_idx > l.month_idx - 3) AS DECIMAL(18, 2)) AS deposit_adb_avg_3m,
        CAST(avg(m.deposit_adb) FILTER (WHERE m.month_idx > l.month_idx - 6) AS DECIMAL(18, 2)) AS deposit_adb_avg_6m,
        CAST(avg(m.deposit_adb) FILTER (WHERE m.month_idx > l.month_idx - 12) AS DECIMAL(18, 2))
            AS deposit_adb_avg_12m,
        CAST(avg(m.loan_balance) FILTER (WHERE m.month_idx > l.month_idx - 3) AS DECIMAL(18, 2))
            AS loan_balance_avg_3m,
        CAST(avg(m.loan_balance) FILTER (WHERE m.month_idx > l.month_idx - 12) AS DECIMAL(18, 2))
            AS loan_balance_avg_12m,
        avg(m.txn_count) FILTER (WHERE m.month_idx > l.month_idx - 3) AS txn_count_avg_3m,
        avg(m.txn_count) FILTER (WHERE m.month_idx > l.month_idx - 12) AS txn_count_avg_12m,
        avg(m.customer_txn_count) FILTER (WHERE m.month_idx > l.month_idx - 3) AS customer_txn_count_avg_3m,
        avg(m.customer_txn_count) FILTER (WHERE m.month_idx > l.month_idx - 12) AS customer_txn_count_avg_12m,
        max(m.aum) FILTER (WHERE m.month_idx = l.month_idx - 1) AS aum_p1,
        max(m.aum) FILTER (WHERE m.month_idx = l.month_idx - 3) AS aum_p3,
        max(m.aum) FILTER (WHERE m.month_idx = l.month_idx - 12) AS aum_p12,
        max(m.deposit_balance) FILTER (WHERE m.month_idx = l.month_idx - 1) AS deposit_balance_p1,
        max(m.deposit_balance) FILTER (WHERE m.month_idx = l.month_idx - 3) AS deposit_balance_p3,
        max(m.deposit_balance) FILTER (WHERE m.month_idx = l.month_idx - 12) AS deposit_balance_p12,
        max(m.deposit_adb) FILTER (WHERE m.month_idx = l.month_idx - 1) AS deposit_adb_p1,
        max(m.deposit_adb) FILTER (WHERE m.month_idx = l.month_idx - 3) AS deposit_adb_p3,
        max(m.loan_balance) FILTER (WHERE m.month_idx = l.month_idx - 1) AS loan_balance_p1,
        max(m.loan_balance) FILTER (WHERE m.month_idx = l.month_idx - 3) AS loan_balance_p3,
        max(m.txn_count) FILTER (WHERE m.month_idx = l.month_idx - 1) AS txn_count_p1,
        max(m.customer_txn_count) FILTER (WHERE m.month_idx = l.month_idx - 3) AS customer_txn_count_p3
    FROM m
    JOIN latest AS l ON l.customer_id = m.customer_id
    WHERE m.month_idx > l.month_idx - 13
    GROUP BY l.customer_id, l.month_idx, l.as_of_date, l.n_months
),
-- The last 13 months of the measures target-search history functions read, as lists, latest first:
-- hist_x[1] is the customer's latest month, hist_x[n + 1] the month n before (NULL where absent). One
-- unordered list of the month's values per customer, sorted afterwards: 117 filtered aggregates took 30 s
-- at 1M customers and an ordered list per measure 12 s; this takes about 6.
hs AS (
    SELECT
        m.customer_id,
        l.month_idx AS li,
        list_sort(list(struct_pack(
                i := m.month_idx,
                deposit_adb := CAST(m.deposit_adb AS DOUBLE),
                aum := CAST(m.aum AS DOUBLE),
                deposit_balance := CAST(m.deposit_balance AS DOUBLE),
                loan_balance := CAST(m.loan_balance AS DOUBLE),
                txn_count := CAST(m.txn_count AS DOUBLE),
                customer_txn_count := CAST(m.customer_txn_count AS DOUBLE),
                customer_txn_amount := CAST(m.customer_txn_amount AS DOUBLE),
                digital_share := CAST(m.digital_share AS DOUBLE),
                main_channel := m.main_channel
        )), 'DESC') AS s
    FROM m
    JOIN latest AS l ON l.customer_id = m.customer_id
    WHERE m.month_idx > l.month_idx - 13
    GROUP BY m.customer_id, l.month_idx
),
-- Most customers have every month of the window up to their latest, so item k of the list is k - 1
-- months back; the others' values are placed by month.
hl AS (
    SELECT
        customer_id,
        li,
        s[len(s)].i = li - len(s) + 1 AS dense,
        list_transform(s, lambda x: x.i) AS idx,
        s
    FROM hs
)
SELECT
    d.*,
    cur.as_of_date,
    lt.n_months,
    cur.deposit_balance, cur.demand_balance, cur.time_balance, cur.deposit_adb, cur.demand_adb,
    cur.n_deposit_accounts, cur.wealth_aum, cur.wmp_value, cur.fund_value, cur.insurance_value,
    cur.bond_value, cur.gold_value, cur.aum, cur.loan_balance, cur.loan_adb, cur.n_active_loans,
    cur.max_days_past_due, cur.worst_five_class, cur.npl_balance, cur.credit_line_amount,
    cur.credit_line_used, cur.credit_line_utilisation, cur.n_debit_cards, cur.n_credit_cards,
    cur.credit_card_limit, cur.credit_card_balance, cur.n_products, cur.txn_count, cur.txn_amount,
    cur.customer_txn_count, cur.customer_txn_amount, cur.digital_txn_count, cur.inflow_amount,
    cur.outflow_amount, cur.last_txn_time,
    -- the channel mix (target-search rules read the wide table for the latest month)
    cur.txn_count_counter, cur.txn_count_atm, cur.txn_count_pos, cur.txn_count_phone, cur.txn_count_online,
    cur.txn_count_mobile, cur.txn_count_system, cur.other_bank_txn_count,
    act.months_inactive,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.deposit_adb) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].deposit_adb) END AS hist_deposit_adb,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.aum) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].aum) END AS hist_aum,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.deposit_balance) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].deposit_balance) END AS hist_deposit_balance,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.loan_balance) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].loan_balance) END AS hist_loan_balance,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.txn_count) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].txn_count) END AS hist_txn_count,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.customer_txn_count) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].customer_txn_count) END AS hist_customer_txn_count,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.customer_txn_amount) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].customer_txn_amount) END AS hist_customer_txn_amount,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.digital_share) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].digital_share) END AS hist_digital_share,
    CASE WHEN hl.dense THEN list_transform(hl.s, lambda x: x.main_channel) ELSE list_transform(range(13), lambda k: hl.s[list_position(hl.idx, hl.li - k)].main_channel) END AS hist_main_channel,
    lt.aum_avg_3m, lt.aum_avg_6m, lt.aum_avg_12m,
    lt.deposit_adb_avg_3m, lt.deposit_adb_avg_6m, lt.deposit_adb_avg_12m,
    lt.loan_balance_avg_3m, lt.loan_balance_avg_12m,
    lt.txn_count_avg_3m, lt.txn_count_avg_12m, lt.customer_txn_count_avg_3m, lt.customer_txn_count_avg_12m,
    CAST(cur.aum - lt.aum_p1 AS DECIMAL(18, 2)) AS aum_chg_1m,
    CAST(cur.aum - lt.aum_p3 AS DECIMAL(18, 2)) AS aum_chg_3m,
    CAST(cur.aum - lt.aum_p12 AS DECIMAL(18, 2)) AS aum_chg_12m,
    CAST(cur.deposit_balance - lt.deposit_balance_p1 AS DECIMAL(18, 2)) AS deposit_balance_chg_1m,
    CAST(cur.deposit_balance - lt.deposit_balance_p3 AS DECIMAL(18, 2)) AS deposit_balance_chg_3m,
    CAST(cur.deposit_balance - lt.deposit_balance_p12 AS DECIMAL(18, 2)) AS deposit_balance_chg_12m,
    CAST(cur.deposit_adb - lt.deposit_adb_p1 AS DECIMAL(18, 2)) AS deposit_adb_chg_1m,
    CAST(cur.deposit_adb - lt.deposit_adb_p3 AS DECIMAL(18, 2)) AS deposit_adb_chg_3m,
    CAST(cur.loan_balance - lt.loan_balance_p1 AS DECIMAL(18, 2)) AS loan_balance_chg_1m,
    CAST(cur.loan_balance - lt.loan_balance_p3 AS DECIMAL(18, 2)) AS loan_balance_chg_3m,
    cur.txn_count - lt.txn_count_p1 AS txn_count_chg_1m,
    cur.customer_txn_count - lt.customer_txn_count_p3 AS customer_txn_count_chg_3m
FROM lt
JOIN mart_customer_month AS cur ON cur.customer_id = lt.customer_id AND cur.as_of_date = lt.as_of_date
JOIN dim_customer AS d ON d.customer_id = lt.customer_id
JOIN act ON act.customer_id = lt.customer_id
JOIN hl ON hl.customer_id = lt.customer_id
