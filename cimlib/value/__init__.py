"""Customer value (``parameters/value.yaml``): contribution by funds transfer pricing, AUM and contribution
tiers and their migration, quality and potential quality customers, RFM, and the 80/20 analysis."""

from cimlib.value._charts import migration_chart, tier_chart
from cimlib.value._concentration import (
    MEASURES,
    TOP_K,
    TOP_P,
    concentration,
    concentration_stats,
    concentration_trend,
    gini,
    lorenz,
    lorenz_points,
    pareto,
    pareto_bins,
)
from cimlib.value._contribution import (
    ValueParams,
    ValueParamsError,
    contribution,
    contribution_by_product,
    contribution_by_product_sql,
    contribution_sql,
    load_value_params,
)
from cimlib.value._quality import potential_customers, potential_summary, quality_customers, quality_summary
from cimlib.value._rfm import rfm_customers, rfm_scores, rfm_sql, rfm_summary
from cimlib.value._tiers import (
    customer_value,
    customer_value_sql,
    migration_customers,
    migration_matrix,
    tier_distribution,
)

__all__ = [
    "MEASURES",
    "TOP_K",
    "TOP_P",
    "ValueParams",
    "ValueParamsError",
    "concentration",
    "concentration_stats",
    "concentration_trend",
    "contribution",
    "contribution_by_product",
    "contribution_by_product_sql",
    "contribution_sql",
    "customer_value",
    "customer_value_sql",
    "gini",
    "load_value_params",
    "lorenz",
    "lorenz_points",
    "migration_chart",
    "migration_customers",
    "migration_matrix",
    "pareto",
    "pareto_bins",
    "potential_customers",
    "potential_summary",
    "quality_customers",
    "quality_summary",
    "rfm_customers",
    "rfm_scores",
    "rfm_sql",
    "rfm_summary",
    "tier_chart",
    "tier_distribution",
]
