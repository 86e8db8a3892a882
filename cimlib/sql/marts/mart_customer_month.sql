-- order_by: customer_id, as_of_date
-- partition_by: as_of_date
-- One row per customer and month (as-of date): deposits, wealth, AUM, loans, credit lines, cards,
-- products held and transactions. Rolled up from the per-date partial results (part_cust_month, one
-- row per source customer number and date, cached between builds). Most customers have one number,
-- whose row passes through; the numbers of a merged customer are added up, maxima taken and their
-- products counted again from part_products_month. Rows exist for every customer with a record or
-- any fact that month.
WITH f AS NOT MATERIALIZED (
    SELECT m.customer_id, m.customer_type, m.n_numbers, p.*
    FROM part_cust_month AS p
    JOIN core_cust_no_map AS m ON m.cust_no = p.cust_no
),
merged AS (
    SELECT
        as_of_date,
        customer_id,
        any_value(customer_type) AS customer_type,
        sum(deposit_balance) AS deposit_balance,
        sum(demand_balance) AS demand_balance,
        sum(time_balance) AS time_balance,
        sum(deposit_adb_raw) AS deposit_adb_raw,
        sum(demand_adb_raw) AS demand_adb_raw,
        sum(n_deposit_accounts) AS n_deposit_accounts,
        sum(wealth_aum) AS wealth_aum,
        sum(wmp_value) AS wmp_value,
        sum(fund_value) AS fund_value,
        sum(insurance_value) AS insurance_value,
        sum(bond_value) AS bond_value,
        sum(gold_value) AS gold_value,
        sum(loan_balance) AS loan_balance,
        sum(loan_accum_balance) AS loan_accum_balance,
        sum(n_active_loans) AS n_active_loans,
        max(max_days_past_due) AS max_days_past_due,
        max(worst_five_class_rank) AS worst_five_class_rank,
        sum(npl_balance) AS npl_balance,
        sum(credit_line_amount) AS credit_line_amount,
        sum(credit_line_used) AS credit_line_used,
        sum(n_debit_cards) AS n_debit_cards,
        sum(n_credit_cards) AS n_credit_cards,
        sum(credit_card_limit) AS credit_card_limit,
        sum(credit_card_balance) AS credit_card_balance,
        CAST(NULL AS BIGINT) AS n_products,
        sum(txn_count) AS txn_count,
        sum(txn_amount) AS txn_amount,
        sum(customer_txn_count) AS customer_txn_count,
        sum(customer_txn_amount) AS customer_txn_amount,
        sum(digital_txn_count) AS digital_txn_count,
        sum(txn_count_counter) AS txn_count_counter,
        sum(txn_count_atm) AS txn_count_atm,
        sum(txn_count_pos) AS txn_count_pos,
        sum(txn_count_phone) AS txn_count_phone,
        sum(txn_count_online) AS txn_count_online,
        sum(txn_count_mobile) AS txn_count_mobile,
        sum(txn_count_system) AS txn_count_system,
        sum(txn_amount_counter) AS txn_amount_counter,
        sum(txn_amount_atm) AS txn_amount_atm,
        sum(txn_amount_pos) AS txn_amount_pos,
        sum(txn_amount_phone) AS txn_amount_phone,
        sum(txn_amount_online) AS txn_amount_online,
        sum(txn_amount_mobile) AS txn_amount_mobile,
        sum(txn_amount_system) AS txn_amount_system,
        sum(inflow_amount) AS inflow_amount,
        sum(outflow_amount) AS outflow_amount,
        sum(other_bank_txn_count) AS other_bank_txn_count,
        max(last_txn_time) AS last_txn_time,
        max(last_customer_txn_time) AS last_customer_txn_time
    FROM f
    WHERE n_numbers > 1
    GROUP BY as_of_date, customer_id
),
single AS (
    SELECT
        as_of_date,
        customer_id,
        customer_type,
        deposit_balance,
        demand_balance,
        time_balance,
        deposit_adb_raw,
        demand_adb_raw,
        n_deposit_accounts,
        wealth_aum,
        wmp_value,
        fund_value,
        insurance_value,
        bond_value,
        gold_value,
        loan_balance,
        loan_accum_balance,
        n_active_loans,
        max_days_past_due,
        worst_five_class_rank,
        npl_balance,
        credit_line_amount,
        credit_line_used,
        n_debit_cards,
        n_credit_cards,
        credit_card_limit,
        credit_card_balance,
        n_products,
        txn_count,
        txn_amount,
        customer_txn_count,
        customer_txn_amount,
        digital_txn_count,
        txn_count_counter,
        txn_count_atm,
        txn_count_pos,
        txn_count_phone,
        txn_count_online,
        txn_count_mobile,
        txn_count_system,
        txn_amount_counter,
        txn_amount_atm,
        txn_amount_pos,
        txn_amount_phone,
        txn_amount_online,
        txn_amount_mobile,
        txn_amount_system,
        inflow_amount,
        outflow_amount,
        other_bank_txn_count,
        last_txn_time,
        last_customer_txn_time
    FROM f
    WHERE n_numbers = 1
),
merged_products AS (
    SELECT p.as_of_date, m.customer_id, count(DISTINCT p.product_code) AS n_products
    FROM part_products_month AS p
    JOIN core_cust_no_map AS m ON m.cust_no = p.cust_no
    WHERE m.n_numbers > 1
    GROUP BY p.as_of_date, m.customer_id
),
g AS (
    SELECT * FROM single
    UNION ALL BY NAME
    SELECT mg.* REPLACE (coalesce(mp.n_products, 0) AS n_products)
    FROM merged AS mg
    LEFT JOIN merged_products AS mp ON mp.as_of_date = mg.as_of_date AND mp.customer_id = mg.customer_id
)
SELECT
    g.customer_id,
    g.as_of_date,
    g.customer_type,
    CAST(coalesce(g.deposit_balance, 0) AS DECIMAL(18, 2)) AS deposit_balance,
    CAST(coalesce(g.demand_balance, 0) AS DECIMAL(18, 2)) AS demand_balance,
    CAST(coalesce(g.time_balance, 0) AS DECIMAL(18, 2)) AS time_balance,
    CAST(coalesce(g.deposit_adb_raw, 0) AS DECIMAL(18, 2)) AS deposit_adb,
    CAST(coalesce(g.demand_adb_raw, 0) AS DECIMAL(18, 2)) AS demand_adb,
    coalesce(g.n_deposit_accounts, 0) AS n_deposit_accounts,
    CAST(coalesce(g.wealth_aum, 0) AS DECIMAL(18, 2)) AS wealth_aum,
    CAST(coalesce(g.wmp_value, 0) AS DECIMAL(18, 2)) AS wmp_value,
    CAST(coalesce(g.fund_value, 0) AS DECIMAL(18, 2)) AS fund_value,
    CAST(coalesce(g.insurance_value, 0) AS DECIMAL(18, 2)) AS insurance_value,
    CAST(coalesce(g.bond_value, 0) AS DECIMAL(18, 2)) AS bond_value,
    CAST(coalesce(g.gold_value, 0) AS DECIMAL(18, 2)) AS gold_value,
    CAST(coalesce(g.deposit_balance, 0) + coalesce(g.wealth_aum, 0) AS DECIMAL(18, 2)) AS aum,
    CAST(coalesce(g.loan_balance, 0) AS DECIMAL(18, 2)) AS loan_balance,
    CAST(coalesce(g.loan_accum_balance, 0) / EXTRACT(DAY FROM g.as_of_date) AS DECIMAL(18, 2)) AS loan_adb,
    coalesce(g.n_active_loans, 0) AS n_active_loans,
    g.max_days_past_due,
    fc.code AS worst_five_class,
    CAST(coalesce(g.npl_balance, 0) AS DECIMAL(18, 2)) AS npl_balance,
    CAST(coalesce(g.credit_line_amount, 0) AS DECIMAL(18, 2)) AS credit_line_amount,
    CAST(coalesce(g.credit_line_used, 0) AS DECIMAL(18, 2)) AS credit_line_used,
    CASE WHEN g.credit_line_amount > 0
         THEN CAST(CAST(g.credit_line_used AS DOUBLE) / CAST(g.credit_line_amount AS DOUBLE) AS DECIMAL(9, 6))
    END AS credit_line_utilisation,
    coalesce(g.n_debit_cards, 0) AS n_debit_cards,
    coalesce(g.n_credit_cards, 0) AS n_credit_cards,
    CAST(coalesce(g.credit_card_limit, 0) AS DECIMAL(18, 2)) AS credit_card_limit,
    CAST(coalesce(g.credit_card_balance, 0) AS DECIMAL(18, 2)) AS credit_card_balance,
    coalesce(g.n_products, 0) AS n_products,
    coalesce(g.txn_count, 0) AS txn_count,
    CAST(coalesce(g.txn_amount, 0) AS DECIMAL(18, 2)) AS txn_amount,
    coalesce(g.customer_txn_count, 0) AS customer_txn_count,
    CAST(coalesce(g.customer_txn_amount, 0) AS DECIMAL(18, 2)) AS customer_txn_amount,
    coalesce(g.digital_txn_count, 0) AS digital_txn_count,
    coalesce(g.txn_count_counter, 0) AS txn_count_counter,
    coalesce(g.txn_count_atm, 0) AS txn_count_atm,
    coalesce(g.txn_count_pos, 0) AS txn_count_pos,
    coalesce(g.txn_count_phone, 0) AS txn_count_phone,
    coalesce(g.txn_count_online, 0) AS txn_count_online,
    coalesce(g.txn_count_mobile, 0) AS txn_count_mobile,
    coalesce(g.txn_count_system, 0) AS txn_count_system,
    CAST(coalesce(g.txn_amount_counter, 0) AS DECIMAL(18, 2)) AS txn_amount_counter,
    CAST(coalesce(g.txn_amount_atm, 0) AS DECIMAL(18, 2)) AS txn_amount_atm,
    CAST(coalesce(g.txn_amount_pos, 0) AS DECIMAL(18, 2)) AS txn_amount_pos,
    CAST(coalesce(g.txn_amount_phone, 0) AS DECIMAL(18, 2)) AS txn_amount_phone,
    CAST(coalesce(g.txn_amount_online, 0) AS DECIMAL(18, 2)) AS txn_amount_online,
    CAST(coalesce(g.txn_amount_mobile, 0) AS DECIMAL(18, 2)) AS txn_amount_mobile,
    CAST(coalesce(g.txn_amount_system, 0) AS DECIMAL(18, 2)) AS txn_amount_system,
    CAST(coalesce(g.inflow_amount, 0) AS DECIMAL(18, 2)) AS inflow_amount,
    CAST(coalesce(g.outflow_amount, 0) AS DECIMAL(18, 2)) AS outflow_amount,
    coalesce(g.other_bank_txn_count, 0) AS other_bank_txn_count,
    g.last_txn_time,
    g.last_customer_txn_time
FROM g
LEFT JOIN ref_five_class AS fc ON fc.rank = g.worst_five_class_rank
