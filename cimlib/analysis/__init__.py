"""Provincial analyses (省联社/县级行社分析): macro and general ledger, customer groups, product, channel,
and staff and branch performance.

Each analysis is a function ``name(principal, as_of=None, *, org=None, home=None, lang="en", ...)``
returning a tidy frame (``attrs``: title, as-of month, org, edition), with a separate ``*_chart`` function
that turns the frame into an Altair chart. The principal decides the edition: the provincial analyst gets
every org in aggregates only (small groups blanked), a county or branch role gets its org with drills to
the customers behind a figure (scoped, masked, audit-logged). See ``docs/analysis.md``; the shared
plumbing (scope, focus org, comparison periods, drills) is :mod:`cimlib.analysis._common`, the thresholds
``parameters/provincial.yaml``.
"""

from cimlib.analysis._channel import (
    card_usage,
    channel_cost,
    channel_cost_per_customer,
    channel_customers,
    channel_migration,
    channel_saving,
    channel_trend,
    channel_volume,
    underused_devices,
    underused_trend,
)
from cimlib.analysis._channel_charts import (
    card_usage_chart,
    channel_share_chart,
    channel_volume_chart,
    cost_chart,
    migration_chart,
    underused_chart,
)
from cimlib.analysis._common import (
    AnalysisContext,
    analysis_context,
    comparison_dates,
    edition_of,
)
from cimlib.analysis._focus import key_focus
from cimlib.analysis._gl import GLTieoutError, check_gl_tieout, gl_balances, gl_structure, gl_tieout
from cimlib.analysis._groups import (
    GroupsError,
    group_activity,
    group_channels,
    group_concentration,
    group_customers,
    group_fund_flow,
    group_rfm,
    group_risk,
    group_structure,
    group_value,
    parse_groups,
)
from cimlib.analysis._groups_charts import (
    group_channel_chart,
    group_concentration_chart,
    group_fund_flow_chart,
    group_rfm_chart,
    group_risk_chart,
    group_structure_chart,
    group_trend_chart,
    group_value_chart,
)
from cimlib.analysis._macro import overview, overview_customers, overview_trend
from cimlib.analysis._macro_charts import gl_structure_chart, key_focus_chart, kpi_trend_chart, tieout_chart
from cimlib.analysis._params import ProvincialParams, ProvincialParamsError, load_provincial_params
from cimlib.analysis._performance import (
    branch_performance,
    cross_bank_business,
    league_table,
    league_trend,
    manager_performance,
    performance_customers,
    teller_performance,
)
from cimlib.analysis._performance import channel_mix as performance_channel_mix
from cimlib.analysis._performance_charts import channel_mix_chart as performance_channel_mix_chart
from cimlib.analysis._performance_charts import (
    league_table_chart,
    league_trend_chart,
    manager_performance_chart,
)
from cimlib.analysis._product import (
    five_class_mix,
    loan_risk,
    next_product,
    next_product_customers,
    product_composition,
    product_customers,
    product_income,
    product_lifecycle,
    product_pairs,
    product_structure,
    products_per_customer,
)
from cimlib.analysis._product_charts import (
    cross_holding_chart,
    five_class_chart,
    lifecycle_chart,
    npl_chart,
    products_per_customer_chart,
    structure_chart,
)

__all__ = [
    "AnalysisContext",
    "GLTieoutError",
    "GroupsError",
    "ProvincialParams",
    "ProvincialParamsError",
    "analysis_context",
    "branch_performance",
    "card_usage",
    "card_usage_chart",
    "channel_cost",
    "channel_cost_per_customer",
    "channel_customers",
    "channel_migration",
    "channel_saving",
    "channel_share_chart",
    "channel_trend",
    "channel_volume",
    "channel_volume_chart",
    "check_gl_tieout",
    "comparison_dates",
    "cost_chart",
    "cross_bank_business",
    "cross_holding_chart",
    "edition_of",
    "five_class_chart",
    "five_class_mix",
    "gl_balances",
    "gl_structure",
    "gl_structure_chart",
    "gl_tieout",
    "group_activity",
    "group_channel_chart",
    "group_channels",
    "group_concentration",
    "group_concentration_chart",
    "group_customers",
    "group_fund_flow",
    "group_fund_flow_chart",
    "group_rfm",
    "group_rfm_chart",
    "group_risk",
    "group_risk_chart",
    "group_structure",
    "group_structure_chart",
    "group_trend_chart",
    "group_value",
    "group_value_chart",
    "key_focus",
    "key_focus_chart",
    "kpi_trend_chart",
    "league_table",
    "league_table_chart",
    "league_trend",
    "league_trend_chart",
    "lifecycle_chart",
    "load_provincial_params",
    "loan_risk",
    "manager_performance",
    "manager_performance_chart",
    "migration_chart",
    "next_product",
    "next_product_customers",
    "npl_chart",
    "overview",
    "overview_customers",
    "overview_trend",
    "parse_groups",
    "performance_channel_mix",
    "performance_channel_mix_chart",
    "performance_customers",
    "product_composition",
    "product_customers",
    "product_income",
    "product_lifecycle",
    "product_pairs",
    "product_structure",
    "products_per_customer",
    "products_per_customer_chart",
    "structure_chart",
    "teller_performance",
    "tieout_chart",
    "underused_chart",
    "underused_devices",
    "underused_trend",
]
