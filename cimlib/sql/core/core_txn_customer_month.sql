-- Transactions per customer and month: ONE pass over the lake's transaction detail per build.
-- Customer-initiated types come from codes.yaml (txn_type.customer_initiated); digital channels
-- from channel.digital.
SELECT
    t.as_of_date,
    m.customer_id,
    count(*) AS txn_count,
    sum(t.amount) AS txn_amount,
    count(*) FILTER (WHERE t.txn_type IN {{ codes('txn_type', 'customer_initiated') }}) AS customer_txn_count,
    sum(t.amount) FILTER (WHERE t.txn_type IN {{ codes('txn_type', 'customer_initiated') }}) AS customer_txn_amount,
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
    max(t.txn_time) AS last_txn_time
FROM stg_transaction AS t
JOIN stg_deposit_account AS a ON a.as_of_date = t.as_of_date AND a.account_no = t.account_no
JOIN core_cust_no_map AS m ON m.cust_no = a.cust_no
GROUP BY t.as_of_date, m.customer_id
