-- Staging: corporate_financials for every loaded as-of date, typed per the canonical contract.
-- materialized: view
-- partition_by: as_of_date
SELECT
    as_of_date,
    cust_no,
    fiscal_year,
    revenue,
    total_assets,
    total_liabilities,
    net_profit
FROM lake_corporate_financials
