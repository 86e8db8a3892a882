"""Quality customers (优质客户) by typed rules; potential quality customers (潜在优质客户) by peer benchmark.

Both flags are columns of the month's customer value frame (:func:`cimlib.value.customer_value`):

* ``is_quality`` / ``quality_rule``: the first rule of ``quality.rules`` of the customer's type that holds;
* ``is_potential``: not quality, the peer group's benchmark (``benchmark_percentile`` of the measure over
  the whole bank's customers of the same age band x income band x occupation, or capital band x industry)
  reaches the quality level ``min_benchmark_tier``, and the customer's share of wallet (measure /
  benchmark) is below ``max_share_of_wallet``. See ``docs/value.md`` for the method and its limits.

Summaries are aggregates (small cells suppressed for roles without detail); lists need single-customer
detail and are masked and audit-logged.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pandas as pd

from cimlib.access import Principal, named_scope
from cimlib.customer import _data as D
from cimlib.value._tiers import _Ctx, _lang_key, _suppress_1d, customer_list, refuse_without_detail

_SUMS = (
    "count(*) AS customers, sum(CAST(aum_adb AS DOUBLE)) AS aum_adb, "
    "sum(CAST(contribution AS DOUBLE)) AS contribution"
)


def _finish(df: pd.DataFrame, principal: Principal, c: _Ctx, key: str, num: list[str]) -> pd.DataFrame:
    sup = (
        _suppress_1d(df.set_index(key)["customers"], principal.min_cell)
        if not principal.can_view_detail and len(df)
        else pd.Series(False, index=df[key])
    )
    df[num] = df[num].astype("float64")
    df.loc[sup.to_numpy(), num] = float("nan")
    df.attrs.update(as_of=c.day.isoformat(), snapshot_id=c.snap.snapshot_id, min_cell=principal.min_cell,
                    suppressed=[k for k, s in sup.items() if s], scope=principal.scope_label)  # fmt: skip
    return df


def quality_summary(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Quality customers by rule for one month, within the principal's scope.

    Parameters
    ----------
    principal : Principal
        Who asks (aggregates; small rows suppressed without detail).
    as_of : str, date or None
        The month; the latest when None.
    home : Home, str, Path or None
        The installation.
    lang : str
        Labels' language.

    Returns
    -------
    pandas.DataFrame
        One row per rule (in ``parameters/value.yaml`` order): ``rule, label, customer_type, customers,
        aum_adb, contribution, share_of_type`` (quality customers of the rule / all customers of the type
        in scope); ``attrs`` also hold ``customers_by_type``.
    """
    c = _Ctx(principal, as_of, home)
    cond, named = named_scope(principal, "d", "s")
    g = c.query(
        f"SELECT quality_rule AS rule, {_SUMS} FROM {c.table()} AS d WHERE ({cond}) AND is_quality "
        "GROUP BY quality_rule",
        named,
    ).set_index("rule")
    by_type = dict(c.query(f"SELECT customer_type, count(*) AS n FROM {c.table()} AS d WHERE ({cond}) "
                           "GROUP BY 1", named).itertuples(index=False))  # fmt: skip
    rules = c.params.quality.rules if c.params.quality else []
    key = _lang_key(lang)
    df = pd.DataFrame({
        "rule": [r.id for r in rules],
        "label": [getattr(r, key) for r in rules],
        "customer_type": [r.customer_type for r in rules],
    })  # fmt: skip
    df = df.join(g, on="rule").fillna({"customers": 0, "aum_adb": 0.0, "contribution": 0.0})
    df["share_of_type"] = [n / by_type[t] if by_type.get(t) else 0.0
                           for n, t in zip(df["customers"], df["customer_type"], strict=True)]  # fmt: skip
    df = _finish(df, principal, c, "rule", ["customers", "aum_adb", "contribution", "share_of_type"])
    df.attrs["customers_by_type"] = {k: int(v) for k, v in by_type.items()}
    return df


def potential_summary(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Potential quality customers by customer type for one month, within the principal's scope.

    Returns
    -------
    pandas.DataFrame
        One row per customer type (``I``, ``C``): ``customer_type, label, customers, assessed`` (with a
        peer benchmark), ``quality``, ``potential``, ``potential_share`` (of the assessed),
        ``potential_aum_adb`` (what they hold), ``potential_gap`` (sum of benchmark - measure over the
        potential customers: the value they would add at the benchmark). ``attrs`` also hold
        ``measure`` and ``benchmark_percentile``.
    """
    c = _Ctx(principal, as_of, home)
    p = c.params.potential
    measure = p.measure if p else "aum_adb"
    cond, named = named_scope(principal, "d", "s")
    g = c.query(
        "SELECT customer_type, count(*) AS customers, count(benchmark) AS assessed, "
        "count(*) FILTER (WHERE is_quality) AS quality, count(*) FILTER (WHERE is_potential) AS potential, "
        "coalesce(sum(CAST(aum_adb AS DOUBLE)) FILTER (WHERE is_potential), 0) AS potential_aum_adb, "
        f"coalesce(sum(CAST(benchmark AS DOUBLE) - CAST({measure} AS DOUBLE)) FILTER (WHERE is_potential), "
        f"0) AS potential_gap FROM {c.table()} AS d WHERE ({cond}) GROUP BY customer_type",
        named,
    ).set_index("customer_type")
    key = _lang_key(lang)
    names = {"I": ("Individual", "个人客户"), "C": ("Corporate", "对公客户")}
    df = g.reindex(["I", "C"]).fillna(0).reset_index()
    df.insert(1, "label", [names[t][key == "zh"] for t in df["customer_type"]])
    df["potential_share"] = [
        p_ / a if a else 0.0 for p_, a in zip(df["potential"], df["assessed"], strict=True)
    ]
    df = df[["customer_type", "label", "customers", "assessed", "quality", "potential", "potential_share",
             "potential_aum_adb", "potential_gap"]]  # fmt: skip
    num = ["customers", "assessed", "quality", "potential", "potential_share", "potential_aum_adb",
           "potential_gap"]  # fmt: skip
    if not principal.can_view_detail:  # a type with few potential customers: hide the potential figures
        small = (df["potential"] > 0) & (df["potential"] < principal.min_cell)
        df[num] = df[num].astype("float64")
        df.loc[small, ["potential", "potential_share", "potential_aum_adb", "potential_gap"]] = float("nan")
    df = _finish(df, principal, c, "customer_type", num)
    df.attrs.update(measure=measure, benchmark_percentile=p.benchmark_percentile if p else None)
    return df


def quality_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    rule: str | None = None,
    home: D.HomeLike = None,
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The quality customers of one month (of one rule), scoped, masked and audit-logged.

    Parameters
    ----------
    principal : Principal
        Who asks; needs single-customer detail (a refusal is audited).
    as_of : str, date or None
        The month; the latest when None.
    rule : str, optional
        One rule id; all rules when None.
    home : Home, str, Path or None
        The installation.
    limit : int
        At most this many (largest AUM for tiering first); ``attrs["total"]`` counts them all.
    app_url : str, optional
        Base URL of ``cim serve`` for ``link``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, customer_type, quality_rule, aum_tier, contribution_tier, aum_adb, aum,
        contribution, n_products, tenure_months, worst_five_class``, masked identity columns, ``link``.
    """
    refuse_without_detail(principal, home, "value_quality_list", rule or "all")
    c = _Ctx(principal, as_of, home)
    rules = [r.id for r in c.params.quality.rules] if c.params.quality else []
    if rule is not None and rule not in rules:
        raise ValueError(f"unknown quality rule {rule!r}; expected one of {', '.join(rules) or '(none)'}")
    cond, named = named_scope(principal, "d", "s")
    extra = ""
    if rule is not None:
        extra, named["rule"] = " AND quality_rule = $rule", rule
    core = (
        "SELECT customer_id, customer_type, quality_rule, aum_tier, contribution_tier, "
        "CAST(aum_adb AS DOUBLE) AS aum_adb, CAST(aum AS DOUBLE) AS aum, "
        "CAST(contribution AS DOUBLE) AS contribution, n_products, tenure_months, worst_five_class "
        f"FROM {c.table()} AS d WHERE ({cond}) AND is_quality{extra}"
    )
    return customer_list(principal, c, "value_quality_list", rule or "all", core, named,
                         order="c.aum_adb DESC", limit=limit, app_url=app_url,
                         detail={"rule": rule})  # fmt: skip


def potential_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    customer_type: Literal["I", "C"] | None = None,
    home: D.HomeLike = None,
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The potential quality customers of one month, largest gap to the benchmark first (audited).

    Returns
    -------
    pandas.DataFrame
        ``customer_id, customer_type, peer_group, peer_size, benchmark, measure, share_of_wallet, gap,
        aum_tier, aum_adb, contribution``, masked identity columns, ``link``.
    """
    refuse_without_detail(principal, home, "value_potential_list", customer_type or "all")
    c = _Ctx(principal, as_of, home)
    measure = c.params.potential.measure if c.params.potential else "aum_adb"
    cond, named = named_scope(principal, "d", "s")
    extra = ""
    if customer_type is not None:
        if customer_type not in ("I", "C"):
            raise ValueError(f"customer_type: expected 'I' or 'C', got {customer_type!r}")
        extra, named["ctype"] = " AND customer_type = $ctype", customer_type
    core = (
        "SELECT customer_id, customer_type, peer_group, peer_size, CAST(benchmark AS DOUBLE) AS benchmark, "
        f"CAST({measure} AS DOUBLE) AS measure, share_of_wallet, "
        f"CAST(benchmark AS DOUBLE) - CAST({measure} AS DOUBLE) AS gap, aum_tier, "
        "CAST(aum_adb AS DOUBLE) AS aum_adb, CAST(contribution AS DOUBLE) AS contribution "
        f"FROM {c.table()} AS d WHERE ({cond}) AND is_potential{extra}"
    )
    return customer_list(principal, c, "value_potential_list", customer_type or "all", core, named,
                         order="c.gap DESC", limit=limit, app_url=app_url,
                         detail={"customer_type": customer_type})  # fmt: skip
