"""Rule backtests: whom a rule found in past months, and what happened to those customers afterwards.

For every rule and month the backtest counts the customers the rule hit and, over the next ``horizon``
months, how many of them churned, had a loan downgraded or bought a product, against the same rates for
every customer of the same type in the same scope that month (the base). A rule whose hits churn at three
times the base rate is worth a manager's call; one at the base rate is noise.

Everything customer-level stays in DuckDB: one query per customer type and month evaluates the rules
(:func:`cimlib.targeting._run.build_query`) inside a query that follows every base customer into the
later months and returns only counts. The outcome thresholds are ``parameters/targeting/_backtest.yaml``.

Outcome definitions (month m, later months m+1 .. m+h)
------------------------------------------------------
churn
    In at least one later month the customer has no row in ``mart_customer_month`` (hard churn), or
    AUM + loan balance is 0 (every account closed or emptied), or AUM fell by at least ``aum_drop`` (80%)
    of its value at m, for customers with AUM above ``min_aum`` at m (value churn, DOMAIN.md "Churn").
downgrade
    In at least one later month the rank of the worst five-tier loan class (``ref_five_class.rank``) is at
    least ``min_rank_increase`` above its rank at m. Only customers with a loan balance at m count: the
    rate is over the hits (base) with loans at m.
product_bought
    In at least one later month ``n_products`` is at least ``min_increase`` above its value at m.

A month whose ``horizon`` later months are not all in the warehouse is incomplete: its outcomes are NULL
(NaN), never 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cimlib.access import NotPermitted, Principal, Snapshot, audit_log, name_params
from cimlib.access._yamlfile import load_yaml_model
from cimlib.customer import _data as D
from cimlib.targeting._rules import Rule, RuleSet, targeting_dir
from cimlib.targeting._run import Query, _by_type, _month_end, _resolve, _scope, build_query, execute
from cimlib.targeting._run import month_index as _month_index

if TYPE_CHECKING:
    import altair as alt

log = logging.getLogger(__name__)

#: The outcomes measured for every rule.
OUTCOMES: tuple[str, ...] = ("churn", "downgrade", "product_bought")
#: The outcomes worth showing for each rule family (all three are computed for every rule).
FAMILY_OUTCOMES: dict[str, tuple[str, ...]] = {
    "key": ("churn", "product_bought"),
    "event": ("churn",),
    "abnormal": ("churn",),
    "risk": ("churn", "downgrade"),
}
#: ``as_of`` of the row that pools all months of a rule.
OVERALL = "all"
#: The parameter file, in ``parameters/targeting`` (the rule-set loader skips names starting with ``_``).
PARAMS_FILE = "_backtest.yaml"
MAX_HORIZON = 12
#: The columns of :func:`backtest`'s frame, in order.
COLUMNS: list[str] = [
    "rule_id", "family", "customer_type", "as_of", "complete", "n_hits", "n_base",
    "churn_rate", "churn_base_rate", "churn_lift",
    "n_hits_with_loans", "n_base_with_loans", "downgrade_rate", "downgrade_base_rate", "downgrade_lift",
    "product_bought_rate", "product_bought_base_rate", "product_bought_lift",
]  # fmt: skip
_RATE_DIGITS = 4
_LIFT_DIGITS = 2


class BacktestError(ValueError):
    """A backtest that cannot run: a bad horizon or parameter file (names the file, key and line)."""


# ---------------------------------------------------------------------------------------------- parameters
class ChurnParams(BaseModel):
    """Churn within the horizon: hard churn and value churn (DOMAIN.md "Churn")."""

    model_config = ConfigDict(extra="forbid")
    absent: bool = True
    zero_relationship: bool = True
    aum_drop: float = Field(0.80, gt=0, le=1)
    min_aum: float = Field(0, ge=0)


class DowngradeParams(BaseModel):
    """A worse five-tier class of the customer's loans."""

    model_config = ConfigDict(extra="forbid")
    min_rank_increase: int = Field(1, ge=1, le=4)


class ProductParams(BaseModel):
    """More products held."""

    model_config = ConfigDict(extra="forbid")
    min_increase: int = Field(1, ge=1, le=50)


class BacktestParams(BaseModel):
    """``parameters/targeting/_backtest.yaml``: the outcome definitions of rule backtests."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    churn: ChurnParams = Field(default_factory=ChurnParams)
    downgrade: DowngradeParams = Field(default_factory=DowngradeParams)
    product_bought: ProductParams = Field(default_factory=ProductParams)


def params_path(home: D.HomeLike = None) -> Path:
    """The backtest parameter file of the installation."""
    return targeting_dir(D.resolve_home(home)) / PARAMS_FILE


def load_params(home: D.HomeLike = None) -> BacktestParams:
    """Load and validate ``parameters/targeting/_backtest.yaml``.

    Parameters
    ----------
    home : Home or path, optional
        The installation.

    Returns
    -------
    BacktestParams
        The defaults (those of the shipped file) when the installation has no such file.

    Raises
    ------
    BacktestError
        A YAML or schema problem, naming the file, the key and the line.
    """
    path = params_path(home)
    if not path.is_file():
        log.warning("no %s; using the default backtest outcome definitions", path)
        return BacktestParams()
    model, _ = load_yaml_model(path, BacktestParams, BacktestError)
    return model


# ---------------------------------------------------------------------------------------------- months
def check_horizon(horizon: int) -> int:
    """``horizon`` if it is a whole number of months in 1 .. :data:`MAX_HORIZON`.

    Raises
    ------
    BacktestError
        Otherwise.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= MAX_HORIZON:
        raise BacktestError(
            f"horizon: expected a whole number of months from 1 to {MAX_HORIZON}, got {horizon!r}"
        )
    return horizon


def backtest_months(snap: Snapshot, start: str | dt.date, end: str | dt.date) -> list[dt.date]:
    """The warehouse as-of dates from the month ``start`` to the month ``end``, both included.

    Raises
    ------
    AsOfError
        A malformed month, a month without data, or ``start`` after ``end``.
    """
    first, last = D.resolve_as_of(snap, start), D.resolve_as_of(snap, end)
    if first > last:
        raise D.AsOfError(f"the first month {first:%Y-%m} is after the last month {last:%Y-%m}")
    return [d for d in D.as_of_dates(snap) if first <= d <= last]


def _window(snap: Snapshot, as_of: dt.date, horizon: int) -> tuple[dt.date, bool]:
    """The last as-of date of the months after ``as_of``, and whether all ``horizon`` of them exist."""
    have = {(d.year, d.month): d for d in D.as_of_dates(snap)}
    idx = _month_index(as_of)
    later = [_month_end(idx + k) for k in range(1, horizon + 1)]
    complete = all((d.year, d.month) in have for d in later)
    until = have.get((later[-1].year, later[-1].month), later[-1])
    return until, complete


# ---------------------------------------------------------------------------------------------- SQL
def outcome_query(
    rules: Sequence[Rule],
    as_of: dt.date,
    until: dt.date,
    *,
    scope: tuple[str, Sequence[Any]] = ("TRUE", ()),
    horizon: int = 3,
    params: BacktestParams | None = None,
) -> Query:
    """The SQL that counts the hits of ``rules`` (one customer type) at ``as_of`` and their outcomes.

    Parameters
    ----------
    rules : sequence of Rule
        Compiled rules of one customer type.
    as_of : date
        The month the rules are evaluated at.
    until : date
        The last as-of date of the outcome window (the ``horizon``-th month after ``as_of``).
    scope : (str, sequence)
        The principal's row scope on ``dim_customer`` aliased ``d`` (from ``scope_clause``).
    horizon : int
        Months in the window; a customer with fewer rows in it is absent in some month.
    params : BacktestParams, optional
        The outcome definitions (default: the built-in defaults).

    Returns
    -------
    Query
        One row: ``base_n, base_churn, base_loans, base_down, base_bought`` and the same five counts per
        rule ``i`` (``h{i}_n, h{i}_churn, ...``), in the order of ``rules``.
    """
    p = params or BacktestParams()
    hits = build_query(rules, as_of, scope=scope, wide=False)
    scope_sql, scope_params = name_params(scope[0], scope[1], "bts")
    churn = ["coalesce(l.value_drop, FALSE)"]
    if p.churn.absent:
        churn.insert(0, "coalesce(l.n_months, 0) < $bt_horizon")
    if p.churn.zero_relationship:
        churn.insert(-1, "coalesce(l.emptied, FALSE)")
    flags = [
        f'coalesce(h."{r.id.replace(chr(34), chr(34) * 2)}", FALSE) AS h{i}' for i, r in enumerate(rules)
    ]
    counts = [
        "count(*) AS base_n",
        "count(*) FILTER (WHERE churned) AS base_churn",
        "count(*) FILTER (WHERE has_loans) AS base_loans",
        "count(*) FILTER (WHERE downgraded) AS base_down",
        "count(*) FILTER (WHERE bought) AS base_bought",
    ]
    for i in range(len(rules)):
        counts += [
            f"count(*) FILTER (WHERE h{i}) AS h{i}_n",
            f"count(*) FILTER (WHERE h{i} AND churned) AS h{i}_churn",
            f"count(*) FILTER (WHERE h{i} AND has_loans) AS h{i}_loans",
            f"count(*) FILTER (WHERE h{i} AND downgraded) AS h{i}_down",
            f"count(*) FILTER (WHERE h{i} AND bought) AS h{i}_bought",
        ]
    sql = f"""WITH hits AS (SELECT * FROM (
{hits.sql}
) AS q),
base AS (
    SELECT d.customer_id, m.aum AS aum0, m.loan_balance AS loan0, m.n_products AS products0, r.rank AS rank0
    FROM dim_customer AS d
    JOIN mart_customer_month AS m ON m.customer_id = d.customer_id AND m.as_of_date = $bt_as_of
    LEFT JOIN ref_five_class AS r ON r.code = m.worst_five_class
    WHERE d.customer_type = $bt_ctype AND ({scope_sql})
),
later AS (
    SELECT b.customer_id,
           count(*) AS n_months,
           bool_or(coalesce(f.aum, 0) + coalesce(f.loan_balance, 0) = 0) AS emptied,
           bool_or(b.aum0 > $bt_min_aum AND b.aum0 - f.aum >= b.aum0 * $bt_aum_drop) AS value_drop,
           bool_or(r.rank - b.rank0 >= $bt_rank_up) AS downgraded,
           bool_or(f.n_products - b.products0 >= $bt_products_up) AS bought
    FROM base AS b
    JOIN mart_customer_month AS f ON f.customer_id = b.customer_id
         AND f.as_of_date > $bt_as_of AND f.as_of_date <= $bt_until
    LEFT JOIN ref_five_class AS r ON r.code = f.worst_five_class
    GROUP BY b.customer_id
),
o AS (
    SELECT coalesce(b.loan0, 0) > 0 AS has_loans,
           ({" OR ".join(churn)}) AS churned,
           coalesce(b.loan0, 0) > 0 AND coalesce(l.downgraded, FALSE) AS downgraded,
           coalesce(l.bought, FALSE) AS bought,
           {", ".join(flags)}
    FROM base AS b
    LEFT JOIN later AS l ON l.customer_id = b.customer_id
    LEFT JOIN hits AS h ON h.customer_id = b.customer_id
)
SELECT {", ".join(counts)} FROM o"""
    mine: dict[str, Any] = {
        "bt_as_of": as_of,
        "bt_until": until,
        "bt_ctype": rules[0].customer_type,
        "bt_horizon": horizon,
        "bt_min_aum": Decimal(str(p.churn.min_aum)),
        "bt_aum_drop": Decimal(str(p.churn.aum_drop)),
        "bt_rank_up": p.downgrade.min_rank_increase,
        "bt_products_up": p.product_bought.min_increase,
        **scope_params,
    }
    used = {k: v for k, v in mine.items() if f"${k}" in sql}
    return Query(sql, {**hits.params, **used}, list(rules))


# ---------------------------------------------------------------------------------------------- frame
def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _lift(rate: float | None, base: float | None) -> float | None:
    return rate / base if rate is not None and base else None


_KEYS = ("n", "churn", "loans", "down", "bought")
_ZERO = {f"{w}_{k}": 0 for w in ("hits", "base") for k in _KEYS}


def _row(
    rule: Rule, as_of: str, complete: bool, counts: dict[str, int], scored: dict[str, int] | None
) -> dict[str, Any]:
    """One frame row: hits and base from ``counts``, outcomes from ``scored`` (None: unknown, NaN)."""
    out: dict[str, Any] = {
        "rule_id": rule.id,
        "family": rule.family,
        "customer_type": rule.customer_type,
        "as_of": as_of,
        "complete": complete,
        "n_hits": counts["hits_n"],
        "n_base": counts["base_n"],
        "n_hits_with_loans": counts["hits_loans"],
        "n_base_with_loans": counts["base_loans"],
    }
    for o, num, den in (
        ("churn", "churn", "n"),
        ("downgrade", "down", "loans"),
        ("product_bought", "bought", "n"),
    ):
        rate = _rate(scored[f"hits_{num}"], scored[f"hits_{den}"]) if scored else None
        base = _rate(scored[f"base_{num}"], scored[f"base_{den}"]) if scored else None
        out[f"{o}_rate"], out[f"{o}_base_rate"], out[f"{o}_lift"] = rate, base, _lift(rate, base)
    return out


def backtest_snapshot(
    snap: Snapshot,
    rules: Sequence[Rule],
    start: str | dt.date,
    end: str | dt.date,
    *,
    scope: tuple[str, Sequence[Any]] = ("TRUE", ()),
    horizon: int = 3,
    params: BacktestParams | None = None,
) -> pd.DataFrame:
    """Backtest ``rules`` on an open snapshot within a row scope (no access checks, no audit).

    :func:`backtest` is the service; this is its core, for a snapshot and a scope clause.

    Parameters
    ----------
    snap : Snapshot
        An open warehouse snapshot.
    rules : sequence of Rule
        Compiled rules (any customer types).
    start, end : str or date
        The first and last month (``YYYY-MM``).
    scope : (str, sequence)
        A condition on ``dim_customer`` aliased ``d`` with ``?`` placeholders.
    horizon : int
        Months after each month in which outcomes count.
    params : BacktestParams, optional
        Outcome definitions (default: the built-in defaults).

    Returns
    -------
    pandas.DataFrame
        See :func:`backtest`.
    """
    check_horizon(horizon)
    months = backtest_months(snap, start, end)
    p = params or BacktestParams()
    # counts[rule id][month]: hits_n, hits_churn, hits_loans, hits_down, hits_bought and base_*
    counts: dict[str, dict[dt.date, dict[str, int]]] = {r.id: {} for r in rules}
    complete: dict[dt.date, bool] = {}
    for month in months:
        until, complete[month] = _window(snap, month, horizon)
        for _, group in _by_type(rules).items():
            q = outcome_query(group, month, until, scope=scope, horizon=horizon, params=p)
            row = execute(snap, q).to_pylist()[0]
            base = {f"base_{k}": int(row[f"base_{k}"]) for k in _KEYS}
            for i, r in enumerate(group):
                counts[r.id][month] = {**base, **{f"hits_{k}": int(row[f"h{i}_{k}"]) for k in _KEYS}}
    rows = []
    for r in rules:
        total, scored = dict(_ZERO), dict(_ZERO)
        for month in months:
            c = counts[r.id][month]
            rows.append(_row(r, f"{month:%Y-%m}", complete[month], c, c if complete[month] else None))
            for k, v in c.items():
                total[k] += v
                scored[k] += v if complete[month] else 0
        any_complete = any(complete.values())
        rows.append(_row(r, OVERALL, all(complete.values()), total, scored if any_complete else None))
    frame = pd.DataFrame.from_records(rows, columns=COLUMNS) if rows else pd.DataFrame(columns=COLUMNS)
    for col in COLUMNS:
        if col.endswith("_rate"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64").round(_RATE_DIGITS)
        elif col.endswith("_lift"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64").round(_LIFT_DIGITS)
        elif col.startswith("n_"):
            frame[col] = frame[col].astype("int64")
    frame["complete"] = frame["complete"].astype(bool)
    frame.attrs.update(
        start=f"{months[0]:%Y-%m}" if months else None,
        end=f"{months[-1]:%Y-%m}" if months else None,
        months=[f"{m:%Y-%m}" for m in months],
        horizon=horizon,
        rules=[r.id for r in rules],
        rule_names={r.id: dict(r.name) for r in rules},
        outcomes={r.id: list(FAMILY_OUTCOMES.get(r.family, OUTCOMES)) for r in rules},
        definitions=p.model_dump(),
        snapshot_id=snap.snapshot_id,
    )
    return frame


def backtest(
    ruleset: RuleSet | str,
    principal: Principal,
    start: str | dt.date,
    end: str | dt.date,
    *,
    rules: Sequence[str] | None = None,
    horizon: int = 3,
    home: D.HomeLike = None,
) -> pd.DataFrame:
    """What happened to the customers each rule found, month by month, against the base rate.

    For each rule and each month from ``start`` to ``end``: how many customers the rule hit, and the share
    of them that churned, had a loan downgraded or bought a product in the next ``horizon`` months, next to
    the same share among all customers of the rule's type in the principal's scope that month (the base).
    The definitions are in ``parameters/targeting/_backtest.yaml`` and the module docstring. Only counts
    leave the warehouse; the call is audit-logged as ``target_backtest``.

    Parameters
    ----------
    ruleset : RuleSet or str
        A loaded rule set, or the name of one in ``parameters/targeting``.
    principal : Principal
        Who asks; any role with a row scope (aggregate-only roles included). Counts are within the scope.
    start, end : str or date
        The first and last month, ``YYYY-MM`` (or a date of that month), both included.
    rules : sequence of str, optional
        Rule ids to backtest (default all rules of the set).
    horizon : int
        Months after each month in which outcomes count (1 to 12, default 3).
    home : Home or path, optional
        The installation.

    Returns
    -------
    pandas.DataFrame
        One row per rule and month, then one row per rule with ``as_of = "all"`` pooling every month;
        rules in rule-set order. Columns:

        - ``rule_id``, ``family`` (key, event, abnormal, risk), ``customer_type`` (I, C);
        - ``as_of``: the month, ``YYYY-MM``, or ``"all"``;
        - ``complete``: all ``horizon`` later months are in the warehouse (for ``"all"``: for every month).
          When False the month's outcome columns are NaN (unknown), never 0;
        - ``n_hits``: customers the rule hit; ``n_base``: customers of that type in scope present that
          month (for ``"all"``: summed over the months, i.e. customer-months);
        - ``churn_rate``, ``churn_base_rate``, ``churn_lift``: share of the hits (of the base) that churned
          within the horizon, and lift = rate / base rate;
        - ``n_hits_with_loans``, ``n_base_with_loans``: hits and base with a loan balance that month, the
          denominators of ``downgrade_rate``, ``downgrade_base_rate``, ``downgrade_lift``;
        - ``product_bought_rate``, ``product_bought_base_rate``, ``product_bought_lift``.

        Rates are fractions (0.1234 = 12.34%, 4 decimals), lifts have 2 decimals; NaN when unknown (an
        incomplete month, no hits, or a base rate of 0 for the lift). The ``"all"`` row's rates pool the
        complete months only (sums of counts, not a mean of rates). All three outcomes are computed for
        every rule; :data:`FAMILY_OUTCOMES` (also ``attrs["outcomes"]``) says which matter for a family:
        churn for all, downgrade for risk rules, product bought for key customers. ``attrs`` holds
        ``ruleset``, ``snapshot_id``, ``start``, ``end``, ``months``, ``horizon``, ``rules``,
        ``rule_names`` (id -> {en, zh}), ``outcomes`` and ``definitions`` (the parameters used).

    Raises
    ------
    AsOfError
        A malformed month, a month without data, or ``start`` after ``end``.
    BacktestError
        A horizon outside 1 .. 12, or an invalid parameter file.
    NotPermitted
        A role without any row scope.
    KeyError
        An unknown rule id.
    """
    check_horizon(horizon)
    h = D.resolve_home(home)
    rs = _resolve(ruleset, h)
    selected = rs.select(list(rules) if rules else None)
    params = load_params(h)
    try:
        scope = _scope(principal)
    except NotPermitted as exc:
        audit_log(h, principal, "target_backtest", rs.name, None, {"reason": str(exc)}, outcome="refused")
        raise
    t0 = time.perf_counter()
    snap = D.snapshot(h)
    frame = backtest_snapshot(snap, selected, start, end, scope=scope, horizon=horizon, params=params)
    frame.attrs["ruleset"] = rs.name
    ms = round((time.perf_counter() - t0) * 1000, 1)
    detail = {k: frame.attrs[k] for k in ("start", "end", "horizon", "rules")}
    audit_log(h, principal, "target_backtest", rs.name, snap.snapshot_id, {**detail, "ms": ms})
    log.info("target backtest", extra={"ruleset": rs.name, "rows": len(frame), "ms": ms})
    return frame


# ---------------------------------------------------------------------------------------------- chart
# Chart texts: the locale files' ``backtest.*`` keys when present, else these (en, zh_CN).
_TEXT: dict[str, tuple[str, str]] = {
    "backtest.title": (
        "Rule backtest: hits' outcomes against the base rate",
        "规则回测：命中客户后续表现与基准对比",
    ),
    "backtest.subtitle": (
        "{start} to {end}, outcomes within {horizon} months; lift = hits' rate / base rate",
        "{start}至{end}，观察其后{horizon}个月；提升度 = 命中客户发生率 / 基准发生率",
    ),
    "backtest.lift": ("Lift (1 = base rate)", "提升度（1 = 基准）"),
    "backtest.rule": ("Rule", "规则"),
    "backtest.outcome": ("Outcome", "结果"),
    "backtest.n_hits": ("Customer-months hit", "命中客户(月)数"),
    "backtest.rate": ("Hits' rate", "命中客户发生率"),
    "backtest.base_rate": ("Base rate", "基准发生率"),
    "backtest.outcomes.churn": ("Churned", "流失"),
    "backtest.outcomes.downgrade": ("Loan downgraded", "五级分类下调"),
    "backtest.outcomes.product_bought": ("Product bought", "新增产品"),
}


_COLOURS = {"churn": "#4c78a8", "downgrade": "#e45756", "product_bought": "#54a24b"}


def _text(key: str, lang: str, **fmt: Any) -> str:
    from cimlib.i18n import t

    code = "zh_CN" if lang.startswith("zh") else "en"
    try:
        return t(key, code, **fmt)
    except KeyError:
        text = _TEXT[key][1 if code == "zh_CN" else 0]
        return text.format(**fmt) if fmt else text


def backtest_chart(frame: pd.DataFrame, lang: str = "en") -> alt.LayerChart:
    """Lift per rule: bars of each rule's relevant outcomes against a line at the base rate (lift 1).

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`backtest` result. The pooled rows (``as_of == "all"``) are drawn; a frame without them
        draws every row.
    lang : {"en", "zh_CN"}
        Language of labels and rule names.

    Returns
    -------
    altair.LayerChart
        Data: one row per rule and relevant outcome (:data:`FAMILY_OUTCOMES`), columns ``rule_id``,
        ``rule`` (the rule's name), ``outcome_code``, ``outcome`` (localized), ``n_hits``, ``rate``,
        ``base_rate``, ``lift``. Layer 0: bars, y = rule (rule-set order), yOffset and color = outcome,
        x = lift; layer 1: a dashed rule at lift 1; layer 2: the lift as text at the bar's end.
    """
    import altair as alt

    from cimlib.charts import CJK_FONT

    zh = lang.startswith("zh")
    names: dict[str, dict[str, str]] = frame.attrs.get("rule_names", {}) or {}
    rows = frame[frame["as_of"] == OVERALL] if "as_of" in frame.columns else frame
    if not len(rows):
        rows = frame
    records = []
    for r in rows.to_dict(orient="records"):
        name = names.get(r["rule_id"], {}).get("zh" if zh else "en") or r["rule_id"]
        for o in FAMILY_OUTCOMES.get(r["family"], OUTCOMES):
            records.append(
                {
                    "rule_id": r["rule_id"],
                    "rule": name,
                    "outcome_code": o,
                    "outcome": _text(f"backtest.outcomes.{o}", lang),
                    "n_hits": int(r["n_hits"]),
                    "rate": r[f"{o}_rate"],
                    "base_rate": r[f"{o}_base_rate"],
                    "lift": r[f"{o}_lift"],
                }
            )
    cols = ["rule_id", "rule", "outcome_code", "outcome", "n_hits", "rate", "base_rate", "lift"]
    data = pd.DataFrame.from_records(records, columns=cols)
    if len(data):  # a rule name used twice would merge two bars: tell them apart by id
        dup = data.drop_duplicates("rule_id")["rule"].duplicated(keep=False)
        twice = set(data.drop_duplicates("rule_id")["rule"][dup])
        data["rule"] = [
            f"{n} ({i})" if n in twice else n for n, i in zip(data["rule"], data["rule_id"], strict=True)
        ]
    for c in ("rate", "base_rate", "lift"):
        data[c] = pd.to_numeric(data[c], errors="coerce").astype("float64")
    rule_order = list(dict.fromkeys(data["rule"]))
    outcome_order = [_text(f"backtest.outcomes.{o}", lang) for o in OUTCOMES]
    # One colour per outcome in every chart: churn blue, downgrade red, product bought green.
    shown = [o for o in OUTCOMES if o in set(data["outcome_code"])]
    colour = alt.Scale(
        domain=[_text(f"backtest.outcomes.{o}", lang) for o in shown], range=[_COLOURS[o] for o in shown]
    )
    tooltip = [
        alt.Tooltip("rule:N", title=_text("backtest.rule", lang)),
        alt.Tooltip("outcome:N", title=_text("backtest.outcome", lang)),
        alt.Tooltip("n_hits:Q", title=_text("backtest.n_hits", lang), format=",d"),
        alt.Tooltip("rate:Q", title=_text("backtest.rate", lang), format=".1%"),
        alt.Tooltip("base_rate:Q", title=_text("backtest.base_rate", lang), format=".1%"),
        alt.Tooltip("lift:Q", title=_text("backtest.lift", lang), format=".2f"),
    ]
    y = alt.Y("rule:N", title=None, sort=rule_order, axis=alt.Axis(labelLimit=260))
    y_offset = alt.YOffset("outcome:N", sort=outcome_order)
    x = alt.X("lift:Q", title=_text("backtest.lift", lang))
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            y=y,
            yOffset=y_offset,
            x=x,
            color=alt.Color("outcome:N", title=None, scale=colour, legend=alt.Legend(orient="bottom")),
            tooltip=tooltip,
        )
    )
    base_line = alt.Chart().mark_rule(strokeDash=[4, 3], color="#555555").encode(x=alt.datum(1.0))
    labels = (
        alt.Chart()
        .mark_text(align="left", dx=3, fontSize=10)
        .encode(y=y, yOffset=y_offset, x=x, text=alt.Text("lift:Q", format=".2f"))
    )
    per_rule = max(1, int(data.groupby("rule")["outcome"].nunique().max())) if len(data) else 1
    height = max(120, len(rule_order) * (8 + 14 * per_rule))
    attrs = frame.attrs
    subtitle = (
        _text("backtest.subtitle", lang, start=attrs["start"], end=attrs["end"], horizon=attrs["horizon"])
        if attrs.get("start") and attrs.get("horizon")
        else ""
    )
    extra = {"subtitle": subtitle} if subtitle else {}
    title = alt.TitleParams(_text("backtest.title", lang), anchor="start", fontSize=14, **extra)
    return (
        alt.layer(bars, base_line, labels, data=data)
        .properties(title=title, width=460, height=height)
        .configure(font=CJK_FONT)
        .configure_view(stroke=None)
    )
