-- Staging: wealth_holding for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    holding_no,
    cust_no,
    product_code,
    wealth_type,
    org_code,
    market_value,
    buy_date,
    maturity_date
FROM lake_wealth_holding
