"""Churn analysis (issue 6): churn rates by group, retention curves by cohort, where outflowing money went.

Three scoped aggregate analyses over the published warehouse, each one SQL query (plus small pandas
roll-ups of at most a few hundred rows), so they cost seconds at a million customers:

* :func:`churn_rates`: eligible customers, churners, the churn rate and its annualised rate per labelled
  scoring month (or pooled over them) and group: customer type, AUM band, age band, county, branch, tenure
  cohort or product line held. Labels come from :func:`cimlib.churn._labels.label_sql`.
* :func:`retention_curves`: for cohorts of new customers (by the month or quarter of their first account)
  or of all customers holding a product at a starting month, the share still holding a product at every
  month-end since.
* :func:`outflow_destinations`: for churners and stayers of a definition, where their customer-initiated
  debits went (another bank, this bank, cash) by transaction type and channel, in the months up to the
  scoring month and in the outcome window. Reads the transaction detail of the lake (``data/lake/
  transaction``), which the warehouse keeps out of the snapshot (``stg_transaction`` is a view over it).

Every function takes a principal: rows are limited to its scope on ``dim_customer`` (``named_scope``); a
role without single-customer detail gets groups of fewer than ``principal.min_cell`` customers blanked
(``suppressed`` is True), as :func:`cimlib.segmentation._analyses.suppress_small` does. Scope ``none``
raises :class:`~cimlib.access.NotPermitted`.

Formulas
--------
``rate = churned / eligible`` over the outcome window of ``outcome_months`` (h) months, and
``annualised_rate = 1 - (1 - rate) ** (12 / h)``: the yearly rate if the window's rate held all year
(DOMAIN.md: the best banks turn over about 12% of customers a year).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from cimlib.access import NotPermitted, Principal, named_scope
from cimlib.churn._labels import MI, AnyDefinition, label_sql, labelled_months, month_index
from cimlib.churn._params import PRODUCT_LINES, load_churn_params
from cimlib.customer import _data as D

By = Literal["customer_type", "aum_band", "age_band", "county", "branch", "tenure_cohort", "product"]
BY_CHOICES: tuple[str, ...] = (
    "customer_type",
    "aum_band",
    "age_band",
    "county",
    "branch",
    "tenure_cohort",
    "product",
)
Cohort = Literal["open_month", "open_quarter", "start_month"]
OutflowBy = Literal["destination", "txn_type", "channel", "detail"]

#: Months before (and including) the scoring month whose outflows :func:`outflow_destinations` reads.
BEFORE_MONTHS = 3

_BY_TITLE: dict[str, dict[str, str]] = {
    "customer_type": {"en": "customer type", "zh": "客户类型"},
    "aum_band": {"en": "AUM band", "zh": "金融资产层级"},
    "age_band": {"en": "age band", "zh": "年龄段"},
    "county": {"en": "county bank", "zh": "县行社"},
    "branch": {"en": "branch", "zh": "网点"},
    "tenure_cohort": {"en": "tenure", "zh": "客户账龄"},
    "product": {"en": "product held", "zh": "持有产品"},
}
_CUSTOMER_TYPES = {"I": {"en": "Individual", "zh": "个人"}, "C": {"en": "Corporate", "zh": "对公"}}
#: Tenure cohorts: (id, upper bound in months since the first account opened, exclusive; labels).
TENURE_BANDS: tuple[tuple[str, int | None, dict[str, str]], ...] = (
    ("T0", 12, {"en": "Under 1 year", "zh": "1年以内"}),
    ("T1", 36, {"en": "1-3 years", "zh": "1-3年"}),
    ("T3", 60, {"en": "3-5 years", "zh": "3-5年"}),
    ("T5", 120, {"en": "5-10 years", "zh": "5-10年"}),
    ("T10", None, {"en": "10 years and over", "zh": "10年以上"}),
)
_TENURE_NA = ("T_NA", {"en": "Unknown", "zh": "未知"})
#: AUM bands used when ``parameters/value.yaml`` has no ``tiers.aum`` (yuan; on deposit ADB + wealth).
FALLBACK_AUM_EDGES: tuple[float, ...] = (50_000, 200_000, 500_000, 1_000_000)
_FALLBACK_AUM_LABELS = (
    {"en": "Under 50k", "zh": "5万以下"},
    {"en": "50k-200k", "zh": "5万-20万"},
    {"en": "200k-500k", "zh": "20万-50万"},
    {"en": "500k-1m", "zh": "50万-100万"},
    {"en": "1m and over", "zh": "100万及以上"},
)
PRODUCT_LABELS: dict[str, dict[str, str]] = {
    "DEMAND": {"en": "Demand deposit", "zh": "活期存款"},
    "TIME": {"en": "Time deposit", "zh": "定期存款"},
    "WEALTH": {"en": "Wealth products", "zh": "理财等金融资产"},
    "LOAN": {"en": "Loan", "zh": "贷款"},
    "DEBIT_CARD": {"en": "Debit card", "zh": "借记卡"},
    "CREDIT_CARD": {"en": "Credit card", "zh": "信用卡"},
    "NONE": {"en": "None of these", "zh": "均未持有"},
}
DESTINATIONS: dict[str, dict[str, str]] = {
    "OTHER_BANK": {"en": "Other bank", "zh": "他行"},
    "OWN_BANK": {"en": "Own bank", "zh": "本行"},
    "CASH": {"en": "Cash / no counterparty", "zh": "现金/无对手方"},
}
GROUPS: dict[str, dict[str, str]] = {
    "churners": {"en": "Churners", "zh": "流失客户"},
    "stayers": {"en": "Stayers", "zh": "留存客户"},
}
PERIODS: dict[str, dict[str, str]] = {
    "before": {"en": "3 months to scoring month", "zh": "评分月及之前2个月"},
    "outcome": {"en": "Outcome window", "zh": "观察期"},
}


def _zh(lang: str) -> bool:
    return str(lang).startswith("zh")


def _pick(text: dict[str, str], lang: str) -> str:
    return text["zh" if _zh(lang) else "en"]


def annualised(rate: Any, outcome_months: int) -> Any:
    """The annual rate of a rate over ``outcome_months`` months: ``1 - (1 - rate) ** (12 / outcome_months)``.

    Parameters
    ----------
    rate : float, array or Series
        Churn rates over the outcome window (0..1; NaN stays NaN).
    outcome_months : int
        The window's length in months.

    Returns
    -------
    float, array or Series
        Like ``rate``.
    """
    return 1 - (1 - rate) ** (12.0 / outcome_months)


# ----------------------------------------------------------------------------------------------- plumbing
def _check(principal: Principal) -> None:
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")


def _definition(definition: str | AnyDefinition | None, home: Any) -> tuple[str, AnyDefinition]:
    if definition is None or isinstance(definition, str):
        return load_churn_params(D.resolve_home(home)).definition(definition)
    return str(definition.kind), definition


def _months(
    snap: Any, requested: Sequence[str | dt.date] | None, d: AnyDefinition, name: str
) -> list[dt.date]:
    """The scoring months asked for (all labelled months when None), each checked to be labelled."""
    labelled = labelled_months(D.as_of_dates(snap), d)
    if requested is None:
        return labelled
    got = sorted({D.resolve_as_of(snap, m) for m in requested})
    bad = [m for m in got if m not in labelled]
    if bad:
        have = f"{labelled[0]:%Y-%m} .. {labelled[-1]:%Y-%m}" if labelled else "none"
        raise ValueError(
            f"{', '.join(f'{m:%Y-%m}' for m in bad)}: no labels for definition {name!r} (its "
            f"{d.outcome_months}-month outcome window runs past the warehouse); labelled months: {have}"
        )
    return got


def _query(con: Any, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    return con.sql(sql, params=params).to_arrow_table().to_pandas()


def _suppress(df: pd.DataFrame, principal: Principal, count_col: str, by: Sequence[str]) -> pd.DataFrame:
    """:func:`suppress_small` within each slice of ``by`` (the groups that add up to one total)."""
    from cimlib.segmentation._analyses import suppress_small

    if not len(df):
        out = df.copy()
        out["suppressed"] = pd.Series([], dtype=bool)
        return out
    parts = [
        suppress_small(g, principal, count_col) for _, g in df.groupby(list(by), sort=False, dropna=False)
    ]
    return pd.concat(parts).sort_index()


# -------------------------------------------------------------------------------------------- churn rates
def _aum_bands(home: Any) -> tuple[str, list[float], list[tuple[str, dict[str, str]]]]:
    """The AUM measure, edges and (id, labels) of ``tiers.aum`` in ``parameters/value.yaml`` (or fallback)."""
    try:
        from cimlib.value import load_value_params

        at = load_value_params(D.resolve_home(home)).tiers.aum
        return at.measure, list(at.edges), [(t.id, {"en": t.en, "zh": t.zh}) for t in at.tiers]
    except Exception:  # no or invalid value tiers: the documented fallback bands
        ids = [f"B{i}" for i in range(len(FALLBACK_AUM_EDGES) + 1)]
        return "aum_adb", list(FALLBACK_AUM_EDGES), list(zip(ids, _FALLBACK_AUM_LABELS, strict=True))


def _band_sql(expr: str, edges: Sequence[float], ids: Sequence[str]) -> str:
    whens = " ".join(f"WHEN {expr} < {float(e)!r} THEN '{i}'" for e, i in zip(edges, ids, strict=False))
    return f"CASE {whens} ELSE '{ids[len(edges)]}' END"


def _group_sql(by: str, home: Any) -> tuple[str, str, bool, str, list[tuple[str, dict[str, str]]]]:
    """``(group expr, label expr, needs mart, extra condition, ordered members)`` of ``by``.

    The expressions read ``l`` (labels: ``as_of_date``), ``d`` (``dim_customer``) and ``m``
    (``mart_customer_month`` at the scoring month). ``product`` gives a list (one row per line held).
    """
    if by == "customer_type":
        return "d.customer_type", "NULL", False, "TRUE", [(k, v) for k, v in _CUSTOMER_TYPES.items()]
    if by == "county":
        return "d.county_code", "d.county_name", False, "TRUE", []
    if by == "branch":
        return "d.home_org_code", "d.home_org_name", False, "TRUE", []
    if by == "tenure_cohort":
        months = "date_diff('month', d.first_open_date, l.as_of_date)"
        whens = " ".join(f"WHEN {months} < {hi} THEN '{i}'" for i, hi, _ in TENURE_BANDS if hi is not None)
        last = TENURE_BANDS[-1][0]
        expr = f"CASE WHEN d.first_open_date IS NULL THEN '{_TENURE_NA[0]}' {whens} ELSE '{last}' END"
        return expr, "NULL", False, "TRUE", [(i, lab) for i, _, lab in TENURE_BANDS] + [_TENURE_NA]
    if by == "aum_band":
        measure, edges, members = _aum_bands(home)
        col = (
            "(coalesce(m.deposit_adb, 0) + coalesce(m.wealth_aum, 0))"
            if measure == "aum_adb"
            else ("coalesce(m.aum, 0)")
        )
        return _band_sql(col, edges, [i for i, _ in members]), "NULL", True, "TRUE", members
    if by == "age_band":
        from cimlib.segmentation._dimensions import load_dimensions

        dim = load_dimensions(D.resolve_home(home))["age"]
        # age in whole years at the scoring month (dim_customer.age is at the snapshot's date)
        age = (
            "CASE WHEN d.birthday IS NULL THEN d.age ELSE date_diff('year', d.birthday, l.as_of_date) - "
            "CASE WHEN strftime(l.as_of_date, '%m%d') < strftime(d.birthday, '%m%d') THEN 1 ELSE 0 END END"
        )
        member = dim.member_sql("a").replace("a.age", f"({age})")
        members = [(mid, {"en": lab["en"], "zh": lab["zh"]}) for mid, lab in dim.members]
        return member, "NULL", False, "d.customer_type = 'I'", members
    if by == "product":
        held = ", ".join(f"CASE WHEN {_held_m(p)} THEN '{p}' END" for p in PRODUCT_LINES)
        expr = f"list_filter([{held}], lambda x: x IS NOT NULL)"
        expr = f"CASE WHEN len({expr}) = 0 THEN ['NONE'] ELSE {expr} END"
        return expr, "NULL", True, "TRUE", [(k, v) for k, v in PRODUCT_LABELS.items()]
    raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, not {by!r}")


def _held_m(line: str) -> str:
    from cimlib.churn._labels import _held

    return _held(line, "m")


def churn_rates_sql(definition: AnyDefinition, by: str, scope_sql: str, home: Any = None) -> str:
    """The SQL of :func:`churn_rates`: eligible customers and churners per scoring month and group.

    Parameters
    ----------
    definition : a churn definition
    by : str
        One of :data:`BY_CHOICES`.
    scope_sql : str
        A condition on ``dim_customer`` aliased ``d`` (named parameters, from ``named_scope``).
    home : Home, path or None
        For the AUM tiers and the age dimension.

    Returns
    -------
    str
        A query with ``$months`` (and the scope's parameters) giving ``as_of_date, is_total, grp,
        glabel, eligible, churned``; the ``is_total`` rows (one per month, ``grp`` NULL) count every
        eligible customer of the base once, also for ``product`` whose groups overlap.
    """
    grp, lab, mart, cond, _ = _group_sql(by, home)
    join_m = (
        "LEFT JOIN mart_customer_month AS m ON m.customer_id = l.customer_id AND m.as_of_date = l.as_of_date"
        if mart
        else ""
    )
    if by == "product":  # overlapping groups: filtered counts in one pass (no unnest of a list per row)
        lines = list(PRODUCT_LINES)
        held = {p: _held_m(p) for p in lines}
        held["NONE"] = "NOT (" + " OR ".join(held.values()) + ")"
        aggs = ", ".join(
            f"count(*) FILTER (WHERE {x}) AS e_{p}, count(*) FILTER (WHERE ({x}) AND l.churned) AS c_{p}"
            for p, x in held.items()
        )
        parts = [
            f"SELECT as_of_date, FALSE AS is_total, '{p}' AS grp, CAST(NULL AS VARCHAR) AS glabel, "
            f"e_{p} AS eligible, c_{p} AS churned FROM a"
            for p in held
        ]
        parts.append("SELECT as_of_date, TRUE, NULL, NULL, e_all, c_all FROM a")
        union = "\nUNION ALL\n".join(parts)
        return f"""
WITH l AS ({label_sql(definition)}),
a AS (
    SELECT l.as_of_date, {aggs}, count(*) AS e_all, count(*) FILTER (WHERE l.churned) AS c_all
    FROM l
    JOIN dim_customer AS d ON d.customer_id = l.customer_id AND ({scope_sql})
    {join_m}
    WHERE {cond}
    GROUP BY l.as_of_date
)
{union}
"""
    unnest = "grp"
    return f"""
WITH l AS ({label_sql(definition)}),
b AS MATERIALIZED (
    SELECT l.as_of_date, l.churned, {grp} AS grp, {lab} AS glabel
    FROM l
    JOIN dim_customer AS d ON d.customer_id = l.customer_id AND ({scope_sql})
    {join_m}
    WHERE {cond}
),
g AS (SELECT as_of_date, churned, {unnest} AS grp, glabel FROM b)
SELECT as_of_date, FALSE AS is_total, grp, any_value(glabel) AS glabel, count(*) AS eligible,
    count(*) FILTER (WHERE churned) AS churned
FROM g GROUP BY as_of_date, grp
UNION ALL
SELECT as_of_date, TRUE, NULL, NULL, count(*), count(*) FILTER (WHERE churned) FROM b GROUP BY as_of_date
"""


def churn_rates(
    principal: Principal,
    definition: str | AnyDefinition | None = None,
    *,
    by: By = "customer_type",
    months: Sequence[str | dt.date] | None = None,
    pooled: bool = False,
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Churn rate by group: eligible customers, churners, the rate and the annualised rate.

    Parameters
    ----------
    principal : Principal
        Who asks: rows are limited to its scope; for a role without detail, groups of fewer than
        ``principal.min_cell`` eligible customers are blanked (and the next smallest when only one is).
    definition : str, churn definition or None
        A definition of ``parameters/churn.yaml`` by name (``model.definition`` when None), or a
        definition object (e.g. ``HardChurn(kind="hard", name=..., outcome_months=2)``).
    by : str
        ``customer_type``; ``aum_band`` (the AUM tiers of ``parameters/value.yaml`` at the scoring month,
        or :data:`FALLBACK_AUM_EDGES`); ``age_band`` (individuals only, the ``age`` dimension of
        ``parameters/dimensions.yaml``, age at the scoring month); ``county`` (``county_code``);
        ``branch`` (``home_org_code``); ``tenure_cohort`` (months since the first account opened, as of
        the scoring month: :data:`TENURE_BANDS`); ``product`` (each product line held at the scoring
        month: a customer counts in every line it holds, so these groups overlap; ``NONE`` holds none).
    months : sequence of str or date, optional
        Scoring months (``YYYY-MM``); default every labelled month (those with the whole outcome window
        in the warehouse).
    pooled : bool
        One row per group over all the months (customer-months added up) instead of one per month.
    home : Home, path or None
        The installation (``$CIM_HOME``).
    lang : str
        ``"en"`` or ``"zh_CN"`` labels.

    Returns
    -------
    pandas.DataFrame
        ``definition, by, as_of`` (None when pooled), ``group, label, eligible, churned, rate,
        annualised_rate, suppressed``, groups in their natural order (codes for county and branch).
        ``attrs``: ``title, definition, outcome_months, months, by, overall`` (a list of
        ``{as_of, eligible, churned, rate, annualised_rate}``: the whole base of the scope, per month or
        pooled), ``scope``, ``snapshot_id``.

    Raises
    ------
    NotPermitted
        For a role without access to customer data.
    ValueError
        For an unknown ``by`` or a month without labels.
    """
    _check(principal)
    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, not {by!r}")
    name, d = _definition(definition, home)
    h = D.resolve_home(home)
    snap = D.snapshot(h)
    ms = _months(snap, months, d, name)
    cond, named = named_scope(principal, "d", "s")
    _, _, _, _, members = _group_sql(by, h)
    cols = ["definition", "by", "as_of", "group", "label", "eligible", "churned", "rate", "annualised_rate"]
    if ms:
        with snap.all_cores() as con:
            raw = _query(con, churn_rates_sql(d, by, cond, h), {"months": ms, **named})
    else:
        raw = pd.DataFrame(
            {"as_of_date": [], "is_total": [], "grp": [], "glabel": [], "eligible": [], "churned": []}
        )
    raw["as_of"] = pd.to_datetime(raw["as_of_date"]).dt.date if len(raw) else raw["as_of_date"]
    if pooled:
        raw = raw.groupby(["is_total", "grp"], dropna=False, as_index=False).agg(
            glabel=("glabel", "first"), eligible=("eligible", "sum"), churned=("churned", "sum")
        )
        raw["as_of"] = None
    tot = raw[raw["is_total"].astype(bool)].copy()
    df = raw[~raw["is_total"].astype(bool)].copy()
    lab = {k: _pick(v, lang) for k, v in members}
    rank = {k: i for i, (k, _) in enumerate(members)}
    df["group"] = df["grp"].astype(object)
    df["label"] = [
        lab.get(g) if g in lab else (gl if isinstance(gl, str) and gl else ("" if g is None else str(g)))
        for g, gl in zip(df["group"], df["glabel"], strict=True)
    ]
    df["_o"] = [rank.get(g, len(rank)) for g in df["group"]]
    df["_m"] = [m or dt.date.min for m in df["as_of"]]
    df = df.sort_values(["_m", "_o", "group"], ignore_index=True)
    for frame in (df, tot):
        frame["eligible"] = frame["eligible"].astype("int64")
        frame["churned"] = frame["churned"].astype("int64")
        frame["rate"] = frame["churned"] / frame["eligible"].where(frame["eligible"] > 0)
        frame["annualised_rate"] = annualised(frame["rate"], d.outcome_months)
    df["definition"], df["by"] = name, by
    out = (
        _suppress(df[cols].copy(), principal, "eligible", ["as_of"])
        if len(df)
        else df[cols].assign(suppressed=pd.Series([], dtype=bool))
    )
    out = out.reset_index(drop=True)
    title = d.name.zh_CN if _zh(lang) else d.name.en
    by_t = _pick(_BY_TITLE[by], lang)
    out.attrs.update(
        title=(f"{title}: 按{by_t}的流失率" if _zh(lang) else f"{title}: churn rate by {by_t}"),
        definition=name,
        outcome_months=d.outcome_months,
        months=[m.isoformat() for m in ms],
        by=by,
        pooled=pooled,
        overall=[
            {
                "as_of": None if r.as_of is None else r.as_of.isoformat(),
                "eligible": int(r.eligible),
                "churned": int(r.churned),
                "rate": float(r.rate) if r.rate == r.rate else None,
                "annualised_rate": float(r.annualised_rate)
                if r.annualised_rate == r.annualised_rate
                else None,
            }
            for r in tot.itertuples(index=False)
        ],
        scope=principal.scope_label,
        snapshot_id=snap.snapshot_id,
        lang=lang,
    )
    return out


# ----------------------------------------------------------------------------------------- retention
def _islands_sql(scope_sql: str) -> str:
    """Runs of consecutive month-ends at which a customer in scope holds a product: ``customer_id, a, b``."""
    return f"""
h AS (
    SELECT m.customer_id, {MI.format(d="m.as_of_date")} AS mi
    FROM mart_customer_month AS m
    JOIN dim_customer AS d ON d.customer_id = m.customer_id AND ({scope_sql})
    WHERE m.n_products > 0
),
r AS (SELECT customer_id, mi, mi - row_number() OVER (PARTITION BY customer_id ORDER BY mi) AS run FROM h),
isl AS (SELECT customer_id, min(mi) AS a, max(mi) AS b FROM r GROUP BY customer_id, run)"""


def _mi_label(mi: int) -> str:
    y, m = divmod(mi - 1, 12)
    return f"{y:04d}-{m + 1:02d}"


def retention_curves(
    principal: Principal,
    *,
    cohort: Cohort = "open_quarter",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Retention curves: the share of a cohort still holding a product at every month-end since its start.

    A customer is *retained* at month ``k`` of its cohort when it holds a product (``n_products > 0`` in
    ``mart_customer_month``; no row counts as none) at every month-end from the cohort's month 0 to month
    ``k``. Only months inside the warehouse count, so each curve is as long as its data.

    Parameters
    ----------
    principal : Principal
        Who asks (scope; cohorts and cells of fewer than ``min_cell`` customers blanked for aggregate-only
        roles).
    cohort : {"open_quarter", "open_month", "start_month"}
        ``open_month`` / ``open_quarter``: customers whose first account (``dim_customer.first_open_date``)
        opened in a warehouse month, by that month or quarter; month 0 is the opening month (a customer
        who closed everything within it is not retained even at month 0). A quarter's months 0, 1 …
        count from each customer's own opening month, over the members whose month ``k`` is in the data.
        ``start_month``: every customer holding a product at a warehouse month-end, by that month; the
        curve starts at 1.0 and never rises (a bank with few new customers still gets curves).
    home : Home, path or None
        The installation.
    lang : str
        Labels' language.

    Returns
    -------
    pandas.DataFrame
        ``kind, cohort, label, cohort_size, months_since, customers`` (cohort members observable at that
        month), ``retained, retention, suppressed``, by cohort then month. ``attrs``: ``title, kind,
        scope, snapshot_id, months``.
    """
    _check(principal)
    if cohort not in ("open_month", "open_quarter", "start_month"):
        raise ValueError(f"cohort must be open_month, open_quarter or start_month, not {cohort!r}")
    h = D.resolve_home(home)
    snap = D.snapshot(h)
    dates = D.as_of_dates(snap)
    cond, named = named_scope(principal, "d", "s")
    cols = ["kind", "cohort", "label", "cohort_size", "months_since", "customers", "retained", "retention"]
    rows: list[tuple[Any, ...]] = []
    if dates:
        first, last = month_index(dates[0]), month_index(dates[-1])
        with snap.all_cores() as con:
            if cohort == "start_month":
                g = _query(
                    con, f"WITH {_islands_sql(cond)} SELECT a, b, count(*) AS n FROM isl GROUP BY a, b", named
                )
                for s in sorted({month_index(x) for x in dates}):
                    base = g[(g["a"] <= s) & (g["b"] >= s)]
                    size = int(base["n"].sum())
                    for k in range(0, last - s + 1):
                        kept = int(base.loc[base["b"] >= s + k, "n"].sum())
                        rows.append((cohort, _mi_label(s), size, k, size, kept))
            else:
                sql = f"""
WITH {_islands_sql(cond)},
c AS (
    SELECT d.customer_id, {MI.format(d="d.first_open_date")} AS o
    FROM dim_customer AS d
    WHERE ({cond}) AND d.first_open_date IS NOT NULL
        AND {MI.format(d="d.first_open_date")} BETWEEN {first} AND {last}
)
SELECT c.o, isl.b, count(*) AS n
FROM c LEFT JOIN isl ON isl.customer_id = c.customer_id AND c.o BETWEEN isl.a AND isl.b
GROUP BY ALL"""
                g = _query(con, sql, named)
                g["key"] = [
                    _mi_label(o)
                    if cohort == "open_month"
                    else f"{(o - 1) // 12:04d}Q{((o - 1) % 12) // 3 + 1}"
                    for o in g["o"]
                ]
                for key, part in g.groupby("key", sort=True):
                    size = int(part["n"].sum())
                    for k in range(0, last - int(part["o"].min()) + 1):
                        obs = part[part["o"] + k <= last]
                        kept = int(obs.loc[obs["b"].notna() & (obs["b"] >= obs["o"] + k), "n"].sum())
                        rows.append((cohort, key, size, k, int(obs["n"].sum()), kept))
    df = pd.DataFrame(
        rows, columns=["kind", "cohort", "cohort_size", "months_since", "customers", "retained"]
    )
    prefix = {
        "start_month": {"en": "Holders at ", "zh": "持有客户 "},
        "open_month": {"en": "Opened ", "zh": "开户 "},
        "open_quarter": {"en": "Opened ", "zh": "开户 "},
    }[cohort]
    df.insert(2, "label", [_pick(prefix, lang) + str(c) for c in df["cohort"]])
    df["retention"] = df["retained"] / df["customers"].where(df["customers"] > 0)
    df = df[cols]
    # aggregate-only roles: blank small cohorts (complementary, across cohorts) and small cells
    sizes = df.drop_duplicates("cohort")[["cohort", "cohort_size"]].reset_index(drop=True)
    from cimlib.segmentation._analyses import suppress_small

    sup = suppress_small(sizes, principal, "cohort_size")
    hidden = set(sup.loc[sup["suppressed"], "cohort"])
    k_min = 0 if principal.can_view_detail else int(getattr(principal, "min_cell", 5) or 5)
    small = df["cohort"].isin(hidden) | ((df["customers"] > 0) & (df["customers"] < k_min))
    num = ["cohort_size", "customers", "retained", "retention"]
    df[num] = df[num].astype(float)
    df.loc[small, num] = float("nan")
    df["suppressed"] = small.to_numpy()
    titles = {
        "start_month": {"en": "Retention of product holders by starting month", "zh": "存量客户留存曲线"},
        "open_month": {"en": "Retention of new customers by opening month", "zh": "新开户客户留存曲线(按月)"},
        "open_quarter": {
            "en": "Retention of new customers by opening quarter",
            "zh": "新开户客户留存曲线(按季)",
        },
    }
    df.attrs.update(
        title=_pick(titles[cohort], lang),
        kind=cohort,
        scope=principal.scope_label,
        snapshot_id=snap.snapshot_id,
        months=[x.isoformat() for x in dates],
        lang=lang,
    )
    return df


# ------------------------------------------------------------------------------------------- outflows
def _lake_files(home: Any, dates: Sequence[dt.date]) -> list[str]:
    from cimlib.engine._lake import lake_files

    return [str(p) for p in lake_files(D.resolve_home(home), "transaction", [x.isoformat() for x in dates])]


def outflow_destinations(
    principal: Principal,
    definition: str | AnyDefinition | None = None,
    *,
    by: OutflowBy = "destination",
    months: Sequence[str | dt.date] | None = None,
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Where churners' and stayers' outgoing money went: another bank, this bank or cash.

    For each eligible customer and scoring month S of ``definition``, reads the customer-initiated debits
    (``direction = 'D'`` and a ``txn_type`` with ``customer_initiated`` in the code list; interest,
    fees and judicial deductions are not the customer's choice) of its accounts in two periods: ``before``
    (the :data:`BEFORE_MONTHS` months up to and including S, as far as the data reaches) and ``outcome``
    (the ``outcome_months`` after S). The destination is the counterparty: ``OTHER`` -> ``OTHER_BANK``,
    ``OWN`` -> ``OWN_BANK``, ``NONE`` (cash withdrawals) -> ``CASH``.

    Parameters
    ----------
    principal : Principal
        Who asks (scope; cells of fewer than ``min_cell`` customers blanked for aggregate-only roles).
    definition : str, churn definition or None
        As :func:`churn_rates`.
    by : {"destination", "txn_type", "channel", "detail"}
        The grain under group and period: destination; destination x transaction type; destination x
        channel; destination x type x channel.
    months : sequence of str or date, optional
        Scoring months (default: the latest labelled month). Pooling many months multiplies the
        transactions read.
    home : Home, path or None
        The installation.
    lang : str
        Labels' language.

    Returns
    -------
    pandas.DataFrame
        ``group`` (``churners``/``stayers``), ``group_label, period, period_label, destination,
        destination_label`` [``txn_type, txn_type_label``] [``channel, channel_label``], ``customers`` (with
        such debits), ``txn_count, amount`` (yuan), ``share`` (of the group's outflow in the period),
        ``amount_per_customer`` (over all the group's customers), ``suppressed``. ``attrs``: ``title,
        definition, months, group_sizes``, ``summary`` (per group and period: customers, outflow,
        ``other_bank_share, own_bank_share, cash_share``; None when the group is too small to show),
        ``source`` (``lake`` or ``none`` when there is no transaction detail), ``scope, snapshot_id``.
    """
    from cimlib.i18n import code_label

    _check(principal)
    if by not in ("destination", "txn_type", "channel", "detail"):
        raise ValueError(f"by must be destination, txn_type, channel or detail, not {by!r}")
    name, d = _definition(definition, home)
    h = D.resolve_home(home)
    snap = D.snapshot(h)
    dates = D.as_of_dates(snap)
    ms = _months(snap, months, d, name)
    if months is None:
        ms = ms[-1:]
    cond, named = named_scope(principal, "d", "s")
    dims = (
        ["destination"]
        + (["txn_type"] if by in ("txn_type", "detail") else [])
        + (["channel"] if by in ("channel", "detail") else [])
    )
    window = {
        x
        for s in ms
        for x in dates
        if month_index(s) - BEFORE_MONTHS < month_index(x) <= month_index(s) + d.outcome_months
    }
    files = _lake_files(h, sorted(window))
    h_m = d.outcome_months
    sizes = pd.DataFrame({"churned": [], "n": []})
    cells = pd.DataFrame()
    if ms:
        with snap.all_cores() as con:
            base = f"""
WITH l AS ({label_sql(d)}),
ls AS MATERIALIZED (
    SELECT l.customer_id, l.churned, {MI.format(d="l.as_of_date")} AS smi
    FROM l JOIN dim_customer AS d ON d.customer_id = l.customer_id AND ({cond})
)"""
            sizes = _query(
                con, f"{base} SELECT churned, count(*) AS n FROM ls GROUP BY churned", {"months": ms, **named}
            )
            if files:
                flist = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
                sel = ", ".join(f"t.{c}" for c in dims)
                sql = f"""{base},
t AS (
    SELECT a.customer_id, {MI.format(d="t.as_of_date")} AS tmi,
        CASE t.counterparty WHEN 'OTHER' THEN 'OTHER_BANK' WHEN 'OWN' THEN 'OWN_BANK' ELSE 'CASH' END
            AS destination,
        t.txn_type, t.channel, CAST(t.amount AS DECIMAL(18, 2)) AS amount
    FROM read_parquet({flist}, union_by_name = true, hive_partitioning = false) AS t
    JOIN core_account AS a ON a.account_no = t.account_no
    WHERE t.direction = 'D'
        AND t.txn_type IN (SELECT code FROM ref_txn_type WHERE customer_initiated)
)
SELECT ls.churned, CASE WHEN t.tmi <= ls.smi THEN 'before' ELSE 'outcome' END AS period, {sel},
    count(DISTINCT ls.customer_id) AS customers, count(*) AS txn_count,
    CAST(sum(t.amount) AS DOUBLE) AS amount
FROM ls JOIN t ON t.customer_id = ls.customer_id
    AND t.tmi BETWEEN ls.smi - {BEFORE_MONTHS - 1} AND ls.smi + {h_m}
GROUP BY ALL"""
                cells = _query(con, sql, {"months": ms, **named})
    n_of = {bool(r.churned): int(r.n) for r in sizes.itertuples(index=False)}
    group_sizes = {"churners": n_of.get(True, 0), "stayers": n_of.get(False, 0)}
    cols = ["group", "period", *dims, "customers", "txn_count", "amount"]
    if len(cells):
        cells["group"] = ["churners" if c else "stayers" for c in cells["churned"]]
        cells = cells[cols]
    else:
        cells = pd.DataFrame({c: pd.Series([], dtype=float if c in ("amount",) else object) for c in cols})
    order = {"group": list(GROUPS), "period": list(PERIODS), "destination": list(DESTINATIONS)}
    keys = ["group", "period", *dims]
    cells["_k"] = [
        tuple(order[k].index(v) if k in order else v for k, v in zip(keys, row, strict=True))
        for row in cells[keys].itertuples(index=False)
    ]
    cells = cells.sort_values("_k", ignore_index=True).drop(columns="_k")
    tot = cells.groupby(["group", "period"])["amount"].transform("sum")
    cells["share"] = cells["amount"] / tot.where(tot > 0)
    cells["amount_per_customer"] = cells["amount"] / cells["group"].map(group_sizes).where(
        cells["group"].map(group_sizes) > 0
    )
    for c in ("customers", "txn_count"):
        cells[c] = cells[c].astype("int64")
    # summary per group and period, before cells are blanked
    k_min = 0 if principal.can_view_detail else int(getattr(principal, "min_cell", 5) or 5)
    summary = []
    for g in GROUPS:
        for p in PERIODS:
            part = cells[(cells["group"] == g) & (cells["period"] == p)]
            total = float(part["amount"].sum())
            shown = group_sizes[g] >= k_min and group_sizes[g] > 0
            by_dest = part.groupby("destination")["amount"].sum()
            summary.append(
                {
                    "group": g,
                    "period": p,
                    "customers": group_sizes[g] if shown else None,
                    "outflow": total if shown else None,
                    **{
                        f"{k.lower()}_share": (
                            float(by_dest.get(k, 0.0)) / total if shown and total else None
                        )
                        for k in DESTINATIONS
                    },
                }
            )
    out = _suppress(cells, principal, "customers", ["group", "period"]).reset_index(drop=True)
    if k_min:
        small_group = out["group"].map(group_sizes) < k_min
        num = ["customers", "txn_count", "amount", "share", "amount_per_customer"]
        out[num] = out[num].astype(float)
        out.loc[small_group, num] = float("nan")
        out["suppressed"] = out["suppressed"].astype(bool) | small_group
    ui = "zh_CN" if _zh(lang) else "en"
    out.insert(1, "group_label", [_pick(GROUPS[g], lang) for g in out["group"]])
    out.insert(3, "period_label", [_pick(PERIODS[p], lang) for p in out["period"]])
    out.insert(5, "destination_label", [_pick(DESTINATIONS[x], lang) for x in out["destination"]])
    for c in ("txn_type", "channel"):
        if c in out.columns:
            out.insert(out.columns.get_loc(c) + 1, f"{c}_label", [code_label(c, v, ui) for v in out[c]])
    out.attrs.update(
        title=(
            "流失客户与留存客户的资金去向" if _zh(lang) else "Where outgoing money went: churners vs stayers"
        )
        + f" ({name})",
        definition=name,
        outcome_months=d.outcome_months,
        months=[m.isoformat() for m in ms],
        by=by,
        group_sizes=group_sizes,
        summary=summary,
        source="lake" if files else "none",
        scope=principal.scope_label,
        snapshot_id=snap.snapshot_id,
        lang=lang,
    )
    return out


# ------------------------------------------------------------------------------------------------- CLI
def add_analysis_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cim churn analysis`` to the ``cim churn`` sub-commands.

    ``cim churn analysis --as USER [--definition NAME] [--by segment|tenure|product|<group>]
    [--months YYYY-MM ...] [--pooled] [--retention open_quarter|open_month|start_month] [--outflows
    [destination|txn_type|channel|detail]] [--chart FILE.png] [--lang zh_CN] [--json]``.
    """
    an = subparsers.add_parser(
        "analysis",
        parents=[common],
        help="churn rate by group, retention curves by cohort, where churners' money went (scoped)",
    )
    an.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    an.add_argument("--definition", help="a definition of parameters/churn.yaml (default: model.definition)")
    an.add_argument(
        "--by",
        default="segment",
        help="segment (= customer_type), tenure (= tenure_cohort), product, or one of: "
        + ", ".join(BY_CHOICES),
    )
    an.add_argument("--months", nargs="+", metavar="YYYY-MM", help="scoring months (default: all labelled)")
    an.add_argument("--pooled", action="store_true", help="one rate per group over all the months")
    an.add_argument(
        "--retention",
        choices=("open_quarter", "open_month", "start_month"),
        help="retention curves by cohort instead of churn rates",
    )
    an.add_argument(
        "--outflows",
        nargs="?",
        const="destination",
        choices=("destination", "txn_type", "channel", "detail"),
        help="where churners' and stayers' outgoing money went instead of churn rates",
    )
    an.add_argument("--chart", metavar="FILE", help="also save the chart (.png, .svg or .html)")
    an.add_argument("--lang", choices=("en", "zh_CN"), default="en")
    an.set_defaults(func=cmd_analysis)


_BY_ALIASES = {"segment": "customer_type", "tenure": "tenure_cohort", "age": "age_band", "aum": "aum_band"}


def cmd_analysis(args: argparse.Namespace, home: Any) -> int:
    """``cim churn analysis``: print (or ``--json``) one analysis and optionally save its chart."""
    from rich.console import Console

    from cimlib.churn._cli import _call, _pct
    from cimlib.cli import EXIT_OK, EXIT_USAGE, CliError, _emit, _frame_table, _principal
    from cimlib.customer._data import json_safe

    who = _principal(args, home)
    lang = getattr(args, "lang", "en") or "en"
    if args.retention and args.outflows:
        raise CliError("--retention and --outflows are separate analyses: give one", EXIT_USAGE)
    if args.retention:
        frame = _call(lambda: retention_curves(who, cohort=args.retention, home=home, lang=lang))
        kind = "retention"
    elif args.outflows:
        frame = _call(
            lambda: outflow_destinations(
                who, args.definition, by=args.outflows, months=args.months, home=home, lang=lang
            )
        )
        kind = "outflows"
    else:
        by = _BY_ALIASES.get(args.by, args.by)
        if by not in BY_CHOICES:
            raise CliError(
                f"--by: expected segment, tenure, product or one of {', '.join(BY_CHOICES)}; got {args.by!r}",
                EXIT_USAGE,
            )
        frame = _call(
            lambda: churn_rates(
                who, args.definition, by=by, months=args.months, pooled=args.pooled, home=home, lang=lang
            )
        )
        kind = "rates"
    written = None
    if args.chart:
        from cimlib.churn import _analysis_charts as C

        chart = {"rates": C.churn_rate_chart, "retention": C.retention_chart, "outflows": C.outflow_chart}[
            kind
        ](frame, lang)
        from cimlib.cli import _value_chart

        _value_chart(chart, args.chart)
        written = args.chart
    attrs = dict(frame.attrs)

    def human(c: Console) -> None:
        c.print(f"[bold]{attrs.get('title', '')}[/] [{who.display_name}, {attrs.get('scope', '')}]")
        show = frame.copy()
        for col in show.columns:
            if col in ("rate", "annualised_rate", "retention", "share"):
                show[col] = [_pct(v) for v in show[col]]
            elif show[col].dtype.kind == "f":
                show[col] = ["" if v != v else f"{v:,.0f}" for v in show[col]]
        coded = ("group", "period", "destination", "txn_type", "channel")
        drop = [
            x
            for x in show.columns
            if x in ("definition", "by", "kind") or (x in coded and f"{x}_label" in show.columns)
        ]
        if "as_of" in show.columns and show["as_of"].isna().all():
            drop.append("as_of")
        _frame_table(c, kind, show.drop(columns=drop), 60)
        if kind == "rates":
            for o in attrs.get("overall", []):
                c.print(
                    f"all eligible {o['as_of'] or 'pooled'}: {o['eligible']:,} customers, {o['churned']:,} "
                    f"churned, rate {_pct(o['rate'])}, annualised {_pct(o['annualised_rate'])}"
                )
        if kind == "outflows":
            for s in attrs.get("summary", []):
                c.print(
                    f"{s['group']} {s['period']}: other bank {_pct(s['other_bank_share'])}, own bank "
                    f"{_pct(s['own_bank_share'])}, cash {_pct(s['cash_share'])}"
                )
        if written:
            c.print(f"chart: {written}")

    _emit(args, {**json_safe(attrs), "chart": written, "rows": json_safe(frame)}, human)
    return EXIT_OK
