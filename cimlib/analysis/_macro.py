"""Macro analysis (宏观分析): an org's key figures for a month, their comparisons and trend, and the drill to
the customers behind a figure.

The figures of the **focus org** (the principal's org, or a county or branch within its scope) for an
as-of month:

* ``customers`` - customers of ``mart_customer_month`` that month (every customer with a relationship);
* ``deposit_balance`` / ``deposit_adb``, ``loan_balance`` / ``loan_adb`` - month-end balance and average
  daily balance (日均), yuan;
* ``npl_balance`` (substandard + doubtful + loss, 不良贷款) and ``npl_ratio`` = NPL / loans;
* ``provisions`` - loan balances (not written off) times the provision rate of their five-tier class
  (``parameters/analyses.yaml`` ``provision_rates``), and ``provision_coverage`` = provisions / NPL
  (拨备覆盖率; NaN without NPL);
* ``fee_income`` - the month's fees (``mart_fee_month``);
* ``contribution`` - the month's FTP contribution (贡献度) of the value issue, summed from the cached
  customer value frame (:func:`cimlib.value._tiers.value_table`: one Parquet file per snapshot, parameter
  version and month; the first call of a month computes it for the whole bank, later calls scan it).

Customer-level figures are attributed to the customer's **home org** (``dim_customer``); the general ledger
(:mod:`cimlib.analysis._gl`) is by the account's branch, and the tie-out compares the two per branch.

Every month compared is read in one query (``list_contains($dates, as_of_date)``). For the provincial
edition (no single-customer detail) a focus org of fewer than ``principal.min_cell`` customers is blanked,
and so are the NPL figures when fewer than that many customers hold NPL.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence

import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import (
    PERIOD_KEYS,
    AnalysisContext,
    analysis_context,
    comparison_frame,
    dates_param,
    drill_customers,
)
from cimlib.analysis._common import titled as _attrs
from cimlib.customer import _data as D
from cimlib.segmentation._analyses import FIVE_CLASSES, load_analyses_params

log = logging.getLogger(__name__)

#: The overview's measures, in order.
MEASURES = (
    "customers",
    "deposit_balance",
    "deposit_adb",
    "loan_balance",
    "loan_adb",
    "npl_balance",
    "npl_ratio",
    "provisions",
    "provision_coverage",
    "fee_income",
    "contribution",
)
#: Measure names by language.
MEASURE_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "customers": "Customers",
        "deposit_balance": "Deposit balance",
        "deposit_adb": "Deposit ADB",
        "loan_balance": "Loan balance",
        "loan_adb": "Loan ADB",
        "npl_balance": "NPL balance",
        "npl_ratio": "NPL ratio",
        "provisions": "Loan-loss provisions",
        "provision_coverage": "Provision coverage",
        "fee_income": "Fee income",
        "contribution": "Contribution (FTP)",
        "wealth_value": "Wealth holdings",
    },
    "zh": {
        "customers": "客户数",
        "deposit_balance": "存款余额",
        "deposit_adb": "存款日均",
        "loan_balance": "贷款余额",
        "loan_adb": "贷款日均",
        "npl_balance": "不良贷款余额",
        "npl_ratio": "不良贷款率",
        "provisions": "贷款损失准备",
        "provision_coverage": "拨备覆盖率",
        "fee_income": "手续费收入",
        "contribution": "贡献度(FTP)",
        "wealth_value": "理财持有",
    },
}
#: What kind of number each measure is (``count``, ``amount`` in yuan, ``rate`` as a fraction).
MEASURE_KIND = {
    "customers": "count",
    "npl_ratio": "rate",
    "provision_coverage": "rate",
    **{m: "amount" for m in MEASURES if m not in ("customers", "npl_ratio", "provision_coverage")},
}
#: Sums over customers that :func:`overview_customers` can drill into.
DRILL_MEASURES = ("deposit_balance", "deposit_adb", "loan_balance", "loan_adb", "npl_balance")
#: The KPI trend's default measures (contribution is left out: it needs a value frame per month).
TREND_MEASURES = ("customers", "deposit_balance", "deposit_adb", "loan_balance", "npl_balance", "npl_ratio")
_NPL_MEASURES = ("npl_balance", "npl_ratio", "provisions", "provision_coverage")

_TITLES = {
    "overview": {"en": "Overview", "zh": "宏观概览"},
    "trend": {"en": "Key figures, monthly trend", "zh": "主要指标月度趋势"},
}


def measure_label(measure: str, lang: str) -> str:
    """The name of a measure in ``lang`` (the code itself when unknown)."""
    return MEASURE_LABELS["zh" if str(lang).startswith("zh") else "en"].get(measure, measure)


def _min_cell(principal: Principal) -> int:
    return int(getattr(principal, "min_cell", 5) or 5)


# ------------------------------------------------------------------------------------------------ figures
def _contribution_source(ctx: AnalysisContext, dates: Sequence[dt.date]) -> str | None:
    """A UNION of the cached value frames of ``dates`` (computed once each), or None without value params."""
    from cimlib.value._contribution import ValueParamsError
    from cimlib.value._tiers import value_params, value_table

    try:
        params = value_params(ctx.home)
        parts = []
        for d in dates:
            path = str(value_table(ctx.home, ctx.snap, params, d)).replace("'", "''")
            parts.append(
                f"SELECT DATE '{d.isoformat()}' AS as_of_date, contribution, county_code, home_org_code, "
                f"manager_no FROM read_parquet('{path}')"
            )
    except ValueParamsError as exc:
        log.warning("no contribution in the overview: %s", exc)
        return None
    return " UNION ALL ".join(parts) if parts else None


def figures_sql(cond: str, with_contribution: str | None = None) -> str:
    """One query for the overview figures of every date in ``$dates``.

    Parameters
    ----------
    cond : str
        A condition on ``dim_customer`` aliased ``d`` (scope and focus org), service-written.
    with_contribution : str, optional
        A relation of ``as_of_date, contribution, county_code, home_org_code, manager_no`` (the value
        frames); the condition is applied to it aliased ``d`` as well.

    Returns
    -------
    str
        Named parameters ``$dates`` and ``$r_<five class>`` (provision rates); one row per date with
        ``customers, deposit_balance, deposit_adb, loan_balance, loan_adb, npl_balance, npl_customers,
        provisions, fee_income, contribution``.
    """
    rate = " ".join(f"WHEN '{c}' THEN CAST($r_{c} AS DOUBLE)" for c in FIVE_CLASSES)
    contrib = (
        f", c AS (SELECT d.as_of_date, sum(d.contribution) AS contribution FROM ({with_contribution}) AS d "
        f"WHERE ({cond}) GROUP BY 1)"
        if with_contribution
        else ", c AS (SELECT CAST(NULL AS DATE) AS as_of_date, CAST(NULL AS DOUBLE) AS contribution "
        "WHERE FALSE)"
    )
    return f"""
WITH m AS (
    SELECT m.as_of_date, count(*) AS customers,
        sum(m.deposit_balance) AS deposit_balance, sum(m.deposit_adb) AS deposit_adb,
        sum(m.loan_balance) AS loan_balance, sum(m.loan_adb) AS loan_adb,
        sum(m.npl_balance) AS npl_balance, count(*) FILTER (WHERE m.npl_balance > 0) AS npl_customers
    FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id
    WHERE list_contains($dates, m.as_of_date) AND ({cond})
    GROUP BY 1
),
p AS (
    SELECT l.as_of_date,
        sum(CAST(l.balance AS DOUBLE) * CASE l.five_class {rate} ELSE 0 END) AS provisions
    FROM core_loan_month AS l JOIN dim_customer AS d ON d.customer_id = l.customer_id
    WHERE list_contains($dates, l.as_of_date) AND l.status <> 'WRITTEN_OFF' AND ({cond})
    GROUP BY 1
),
f AS (
    SELECT f.as_of_date, sum(f.fee_amount) AS fee_income
    FROM mart_fee_month AS f JOIN dim_customer AS d ON d.customer_id = f.customer_id
    WHERE list_contains($dates, f.as_of_date) AND ({cond})
    GROUP BY 1
){contrib}
SELECT m.*, coalesce(p.provisions, 0) AS provisions, coalesce(f.fee_income, 0) AS fee_income,
    c.contribution
FROM m
LEFT JOIN p ON p.as_of_date = m.as_of_date
LEFT JOIN f ON f.as_of_date = m.as_of_date
LEFT JOIN c ON c.as_of_date = m.as_of_date
ORDER BY m.as_of_date
"""


def _figures(
    ctx: AnalysisContext, dates: Sequence[dt.date], *, contribution: bool
) -> dict[str, dict[str, float]]:
    """``{date iso: {measure: value}}`` of the focus org for ``dates`` (one query)."""
    dates = dates_param(dates)
    cond, named = ctx.cust_cond("d")
    rates = load_analyses_params(ctx.home).provision_rates
    src = _contribution_source(ctx, dates) if contribution else None
    params = {**named, "dates": dates, **{f"r_{c}": float(getattr(rates, c)) for c in FIVE_CLASSES}}
    df = ctx.query(figures_sql(cond, src), params)
    out: dict[str, dict[str, float]] = {}
    k = _min_cell(ctx.principal)
    blank = not ctx.principal.can_view_detail
    for row in df.to_dict("records"):
        v = {
            m: float(row[m]) if row.get(m) is not None else math.nan
            for m in (
                "customers",
                "deposit_balance",
                "deposit_adb",
                "loan_balance",
                "loan_adb",
                "npl_balance",
                "provisions",
                "fee_income",
                "contribution",
            )
        }
        if not contribution:
            v["contribution"] = math.nan
        loans, npl = v["loan_balance"], v["npl_balance"]
        v["npl_ratio"] = npl / loans if loans else math.nan
        v["provision_coverage"] = v["provisions"] / npl if npl else math.nan
        if blank and 0 < v["customers"] < k:  # a tiny org: its totals would identify customers
            v = {m: math.nan for m in v}
        elif blank and 0 < int(row["npl_customers"]) < k:
            v.update({m: math.nan for m in _NPL_MEASURES})
        v["npl_customers"] = float(row["npl_customers"])
        out[pd.Timestamp(row["as_of_date"]).date().isoformat()] = v
    return out


def overview(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    contribution: bool = True,
) -> pd.DataFrame:
    """The focus org's key figures for a month against the previous month, last year and the year start.

    Parameters
    ----------
    principal : Principal
        Who asks; figures are limited to their scope (a customer manager sees the customers they manage).
    as_of : str, date or None
        ``YYYY-MM`` or a month-end; the latest month when None.
    org : str, optional
        The focus org (a county or branch within the scope); the principal's own org by default.
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN`` labels.
    contribution : bool
        Include the FTP contribution (reads, and the first time computes, the cached value frame of each
        compared month: about 0.2 s a month at 3,000 customers, a few seconds at a million; later calls
        are a Parquet scan). False leaves it NaN.

    Returns
    -------
    DataFrame
        One row per :data:`MEASURES`: ``measure, label, kind`` (count, amount or rate), ``current,
        prev_month, prev_month_change, prev_month_growth, last_year, …, year_start, …`` (NaN where the
        month is missing or the figure is suppressed). ``attrs``: ``title, as_of, org, org_name, edition,
        periods, npl_customers``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        periods = ctx.periods
        values = _figures(ctx, [d for d in periods.values() if d is not None], contribution=contribution)
    df = comparison_frame(values, periods, MEASURES)
    df.insert(1, "label", [measure_label(m, lang) for m in df["measure"]])
    df.insert(2, "kind", [MEASURE_KIND[m] for m in df["measure"]])
    cur = values.get(ctx.day.isoformat(), {})
    return _attrs(df, ctx, _TITLES["overview"], periods=periods, npl_customers=cur.get("npl_customers"))


def overview_trend(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    months: int = 13,
    measures: Sequence[str] = TREND_MEASURES,
) -> pd.DataFrame:
    """The focus org's key figures over the last ``months`` month-ends up to the as-of month (KPI trend).

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`overview`.
    months : int
        How many month-ends (those the warehouse has).
    measures : sequence of str
        Some of :data:`MEASURES` (``contribution`` computes a value frame per month: slower).

    Returns
    -------
    DataFrame
        Long: ``as_of_date, month`` (``YYYY-MM``), ``measure, label, kind, value, is_current`` (the as-of
        month), one row per month and measure, months ascending.
    """
    bad = [m for m in measures if m not in MEASURES]
    if bad or not measures:
        raise ValueError(f"unknown measures {bad}; expected some of {', '.join(MEASURES)}")
    if months < 1:
        raise ValueError("months must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        dates = ctx.trend_dates(months)
        values = _figures(ctx, dates, contribution="contribution" in measures)
    rows = [
        {
            "as_of_date": d,
            "month": f"{d:%Y-%m}",
            "measure": m,
            "label": measure_label(m, lang),
            "kind": MEASURE_KIND[m],
            "value": values.get(d.isoformat(), {}).get(m, math.nan),
            "is_current": d == ctx.day,
        }
        for d in dates
        for m in measures
    ]
    df = pd.DataFrame(
        rows, columns=["as_of_date", "month", "measure", "label", "kind", "value", "is_current"]
    )
    return _attrs(df, ctx, _TITLES["trend"], months=len(dates))


def overview_customers(
    principal: Principal,
    measure: str = "deposit_balance",
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers behind an overview figure that is a sum over customers, largest first.

    Parameters
    ----------
    principal : Principal
        Needs single-customer detail (the county edition); a provincial analyst is refused (and the refusal
        audit-logged).
    measure : str
        One of :data:`DRILL_MEASURES`.
    as_of, org, home, lang
        As :func:`overview`.
    limit : int
        At most this many customers (``attrs["total"]`` counts them all).
    app_url : str, optional
        The base URL of the 360 app for the ``link`` column.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, <measure>, deposit_balance, loan_balance, npl_balance`` plus the
        masked identity columns and ``link``; customers with a positive ``measure``, by it descending.
        The figure's total is the sum of ``measure`` over all ``attrs["total"]`` customers.
    """
    if measure not in DRILL_MEASURES:
        raise ValueError(f"measure must be one of {', '.join(DRILL_MEASURES)}, not {measure!r}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        cond, named = ctx.cust_cond("d")
        extra = [c for c in ("deposit_balance", "loan_balance", "npl_balance") if c != measure]
        cols = ", ".join(f"m.{c}" for c in extra)
        core = (
            f"SELECT m.customer_id, m.customer_type, m.{measure}, {cols} "
            "FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id "
            f"WHERE m.as_of_date = $as_of AND m.{measure} > 0 AND ({cond})"
        )
        df = drill_customers(
            ctx,
            "analysis_drill_overview",
            f"overview:{measure}",
            core,
            {**named, "as_of": ctx.day},
            order=f"c.{measure} DESC",
            limit=limit,
            app_url=app_url,
            detail={"measure": measure},
        )
        df.attrs.update(measure=measure, label=measure_label(measure, lang), org=ctx.org.code)
    return df


__all__ = [
    "DRILL_MEASURES",
    "MEASURES",
    "MEASURE_LABELS",
    "PERIOD_KEYS",
    "figures_sql",
    "measure_label",
    "overview",
    "overview_customers",
    "overview_trend",
]
