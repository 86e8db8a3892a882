-- One as-of date's facts per source customer number (cust_no): deposits, wealth, loans, credit lines,
-- cards, products held and transactions. Reads only that date's lake files (the m_<table> views), so
-- the result depends only on that date's load and is cached between builds (see _months.py).
-- Rows exist for every number with a customer record or any fact that date. Numbers are merged into
-- real customers later (mart_customer_month), so every measure here must stay additive or a max, or be
-- counted again from month_products for merged customers (products held is a distinct count).
WITH acct AS MATERIALIZED (
    SELECT
        account_no, cust_no, account_type, status, product_code,
        -- a large transfer out (大额交易, PBoC reporting level): 50万 for individuals, 200万 for corporates
        CASE WHEN cust_no IN (SELECT cust_no FROM m_corporate_customer) THEN 2000000 ELSE 500000 END
            AS large_transfer_min
    FROM m_deposit_account
),
dep AS MATERIALIZED (
    SELECT
        a.cust_no,
        sum(b.balance) AS deposit_balance,
        coalesce(sum(b.balance) FILTER (WHERE a.account_type = 'DEMAND'), 0) AS demand_balance,
        coalesce(sum(b.balance) FILTER (WHERE a.account_type = 'TIME'), 0) AS time_balance,
        sum(b.accum_balance / b.days) AS deposit_adb_raw,
        coalesce(sum(b.accum_balance / b.days) FILTER (WHERE a.account_type = 'DEMAND'), 0) AS demand_adb_raw,
        count(*) FILTER (WHERE a.status <> 'CLOSED') AS n_deposit_accounts
    FROM m_account_balance AS b
    JOIN acct AS a ON a.account_no = b.account_no
    GROUP BY a.cust_no
),
txn AS MATERIALIZED (
    SELECT
        a.cust_no,
        count(*) AS txn_count,
        sum(t.amount) AS txn_amount,
        count(*) FILTER (WHERE t.txn_type IN {{ codes('txn_type', 'customer_initiated') }}) AS customer_txn_count,
        sum(t.amount) FILTER (WHERE t.txn_type IN {{ codes('txn_type', 'customer_initiated') }})
            AS customer_txn_amount,
        count(*) FILTER (WHERE t.channel IN {{ codes('channel', 'digital') }}) AS digital_txn_count,
        count(*) FILTER (WHERE t.channel = 'COUNTER') AS txn_count_counter,
        count(*) FILTER (WHERE t.channel = 'ATM') AS txn_count_atm,
        count(*) FILTER (WHERE t.channel = 'POS') AS txn_count_pos,
        count(*) FILTER (WHERE t.channel = 'PHONE') AS txn_count_phone,
        count(*) FILTER (WHERE t.channel = 'ONLINE') AS txn_count_online,
        count(*) FILTER (WHERE t.channel = 'MOBILE') AS txn_count_mobile,
        count(*) FILTER (WHERE t.channel = 'SYSTEM') AS txn_count_system,
        sum(t.amount) FILTER (WHERE t.channel = 'COUNTER') AS txn_amount_counter,
        sum(t.amount) FILTER (WHERE t.channel = 'ATM') AS txn_amount_atm,
        sum(t.amount) FILTER (WHERE t.channel = 'POS') AS txn_amount_pos,
        sum(t.amount) FILTER (WHERE t.channel = 'PHONE') AS txn_amount_phone,
        sum(t.amount) FILTER (WHERE t.channel = 'ONLINE') AS txn_amount_online,
        sum(t.amount) FILTER (WHERE t.channel = 'MOBILE') AS txn_amount_mobile,
        sum(t.amount) FILTER (WHERE t.channel = 'SYSTEM') AS txn_amount_system,
        sum(t.amount) FILTER (WHERE t.direction = 'C') AS inflow_amount,
        sum(t.amount) FILTER (WHERE t.direction = 'D') AS outflow_amount,
        count(*) FILTER (WHERE t.counterparty = 'OTHER') AS other_bank_txn_count,
        sum(t.amount) FILTER (WHERE t.direction = 'C' AND t.counterparty = 'OTHER') AS inflow_other_bank_amount,
        sum(t.amount) FILTER (WHERE t.direction = 'D' AND t.counterparty = 'OTHER') AS outflow_other_bank_amount,
        sum(t.amount) FILTER (WHERE t.direction = 'D' AND t.txn_type IN ('TRANSFER_OUT', 'SETTLEMENT')
            AND t.amount >= a.large_transfer_min) AS large_outflow_amount,
        count(*) FILTER (WHERE t.direction = 'D' AND t.txn_type IN ('TRANSFER_OUT', 'SETTLEMENT')
            AND t.amount >= a.large_transfer_min) AS large_outflow_count,
        max(t.txn_time) AS last_txn_time,
        max(t.txn_time) FILTER (WHERE t.txn_type IN {{ codes('txn_type', 'customer_initiated') }})
            AS last_customer_txn_time
    FROM m_transaction AS t
    JOIN acct AS a ON a.account_no = t.account_no
    GROUP BY a.cust_no
),
wealth AS MATERIALIZED (
    SELECT
        cust_no,
        sum(market_value) AS wealth_aum,
        coalesce(sum(market_value) FILTER (WHERE wealth_type = 'WMP'), 0) AS wmp_value,
        coalesce(sum(market_value) FILTER (WHERE wealth_type = 'FUND'), 0) AS fund_value,
        coalesce(sum(market_value) FILTER (WHERE wealth_type = 'INSURANCE'), 0) AS insurance_value,
        coalesce(sum(market_value) FILTER (WHERE wealth_type = 'BOND'), 0) AS bond_value,
        coalesce(sum(market_value) FILTER (WHERE wealth_type = 'GOLD'), 0) AS gold_value
    FROM m_wealth_holding
    GROUP BY cust_no
),
loans AS MATERIALIZED (
    SELECT
        l.cust_no,
        coalesce(sum(l.balance) FILTER (WHERE l.status <> 'WRITTEN_OFF'), 0) AS loan_balance,
        coalesce(sum(l.accum_balance) FILTER (WHERE l.status <> 'WRITTEN_OFF'), 0) AS loan_accum_balance,
        count(*) FILTER (WHERE l.status = 'ACTIVE') AS n_active_loans,
        max(l.days_past_due) FILTER (WHERE l.status = 'ACTIVE') AS max_days_past_due,
        max(f.rank) FILTER (WHERE l.status = 'ACTIVE') AS worst_five_class_rank,
        coalesce(sum(l.balance) FILTER (WHERE l.status <> 'WRITTEN_OFF' AND f.npl), 0) AS npl_balance
    FROM m_loan AS l
    LEFT JOIN ref_five_class AS f ON f.code = l.five_class
    GROUP BY l.cust_no
),
lines AS MATERIALIZED (
    SELECT cust_no, sum(line_amount) AS credit_line_amount, sum(used_amount) AS credit_line_used
    FROM m_credit_line
    WHERE status = 'ACTIVE'
    GROUP BY cust_no
),
cards AS MATERIALIZED (
    SELECT
        cust_no,
        count(*) FILTER (WHERE status = 'ACTIVE' AND card_type = 'DEBIT') AS n_debit_cards,
        count(*) FILTER (WHERE status = 'ACTIVE' AND card_type = 'CREDIT') AS n_credit_cards,
        coalesce(sum(credit_limit) FILTER (WHERE status = 'ACTIVE' AND card_type = 'CREDIT'), 0)
            AS credit_card_limit,
        coalesce(sum(balance) FILTER (WHERE card_type = 'CREDIT'), 0) AS credit_card_balance
    FROM m_card
    GROUP BY cust_no
),
products AS MATERIALIZED (
    SELECT cust_no, count(DISTINCT product_code) AS n_products
    FROM (
        SELECT cust_no, product_code FROM m_deposit_account WHERE status <> 'CLOSED'
        UNION ALL
        SELECT cust_no, product_code FROM m_loan WHERE status = 'ACTIVE'
        UNION ALL
        SELECT cust_no, product_code FROM m_card WHERE status = 'ACTIVE'
        UNION ALL
        SELECT cust_no, product_code FROM m_wealth_holding WHERE market_value > 0
    ) AS p
    GROUP BY cust_no
),
present AS MATERIALIZED (
    SELECT cust_no FROM m_individual_customer
    UNION
    SELECT cust_no FROM m_corporate_customer
    UNION
    SELECT cust_no FROM dep
    UNION
    SELECT cust_no FROM txn
    UNION
    SELECT cust_no FROM wealth
    UNION
    SELECT cust_no FROM loans
    UNION
    SELECT cust_no FROM lines
    UNION
    SELECT cust_no FROM cards
)
SELECT
    s.cust_no,
    dep.* EXCLUDE (cust_no),
    w.* EXCLUDE (cust_no),
    l.* EXCLUDE (cust_no),
    cl.* EXCLUDE (cust_no),
    c.* EXCLUDE (cust_no),
    p.n_products,
    t.* EXCLUDE (cust_no)
FROM present AS s
LEFT JOIN dep ON dep.cust_no = s.cust_no
LEFT JOIN wealth AS w ON w.cust_no = s.cust_no
LEFT JOIN loans AS l ON l.cust_no = s.cust_no
LEFT JOIN lines AS cl ON cl.cust_no = s.cust_no
LEFT JOIN cards AS c ON c.cust_no = s.cust_no
LEFT JOIN products AS p ON p.cust_no = s.cust_no
LEFT JOIN txn AS t ON t.cust_no = s.cust_no
