"""Running rules: one query per customer type, scoped inside, then reasons, masking and the audit log."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cimlib.access import (
    NotPermitted,
    Principal,
    audit_log,
    mask_values,
    name_params,
    require_detail,
    scope_clause,
)
from cimlib.customer import _data as D
from cimlib.i18n import code_label
from cimlib.targeting import _catalogue as K
from cimlib.targeting._language import HISTORY_MARK, CollectionSpec, HistorySpec
from cimlib.targeting._rules import SEVERITY_RANK, Rule, RuleSet, load_ruleset

log = logging.getLogger(__name__)

#: Who the customer is and who serves them: the first columns of every list.
LIST_COLUMNS = [
    "customer_id", "customer_type", "cust_name", "id_no", "phone", "county_name", "home_org_code",
    "home_org_name", "manager_no", "manager_name", "severity", "n_rules", "rules", "rule_names", "reasons",
]  # fmt: skip
_IDENTITY_SQL = {
    "customer_id": "d.customer_id",
    "customer_type": "d.customer_type",
    "cust_name": "d.cust_name",
    "id_no": "d.id_no_or_credit_code",
    "phone": "d.phone",
    "county_code": "d.county_code",
    "county_name": "d.county_name",
    "home_org_code": "d.home_org_code",
    "home_org_name": "d.home_org_name",
    "manager_no": "d.manager_no",
    "manager_name": "d.manager_name",
}
#: Path of the 360 app; a list links each customer to it (``?customer=<customer_id>``).
APP_360_PATH = "voila/render/customer_360.ipynb"
_WIDE_M = re.compile(r"\bm\.")
_COLL_REF = re.compile(r"\b(r\d+_a\d+|a\d+)\.(n_all|n|first)\b")


class StaleWarehouse(RuntimeError):
    """The published snapshot predates the columns the rules need; a ``cim build`` fixes it."""


@dataclass
class Query:
    """The SQL and parameters of one customer type's rules at one as-of date."""

    sql: str
    params: dict[str, Any]
    rules: list[Rule]


def month_index(d: dt.date) -> int:
    """Months since year 0 (``year * 12 + month``), the history functions' month arithmetic."""
    return d.year * 12 + d.month


def _month_end(idx: int) -> dt.date:
    y, m = divmod(idx - 1, 12)
    m += 1
    nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


#: Measures whose last 13 months the wide table holds as lists (``hist_<measure>``, latest first).
WIDE_HISTORY = frozenset(
    {"deposit_adb", "aum", "deposit_balance", "loan_balance", "txn_count", "customer_txn_count",
     "customer_txn_amount", "digital_share", "main_channel"}
)  # fmt: skip
WIDE_MONTHS = 12


def _history_sql(
    fname: str,
    measure: str,
    n: int,
    *,
    wide: bool,
    history: dict[str, HistorySpec],
    points: set[int],
    wide_cols: list[str],
) -> str:
    """The SQL of one history call (``pct_change(deposit_adb, 1)``), and what the query must provide.

    For the latest month it reads the wide table's month lists (no join: a 1M-customer rule stays a
    single scan); otherwise, or beyond the lists, a join to the month N back (``p<N>``) for values at
    one month and one aggregate over the window (``h``) for statistics.
    """
    if fname == "months_inactive":
        if wide:
            if "months_inactive" not in wide_cols:
                wide_cols.append("months_inactive")
            return "b.months_inactive"
        history["months_inactive"] = HistorySpec(
            "months_inactive", "coalesce(min(k) FILTER (WHERE m.customer_txn_count > 0), max(k) + 1)", None
        )
        return "h.months_inactive"
    if wide and measure in WIDE_HISTORY and n <= WIDE_MONTHS:
        col = f"hist_{measure}"
        if col not in wide_cols:
            wide_cols.append(col)
        cur, prev, win = f"b.{col}[1]", f"b.{col}[{n + 1}]", f"b.{col}[2:{n + 1}]"
        if fname == "prior":
            return prev
        if fname == "pct_change":
            return f"(({cur} - {prev}) / nullif(abs({prev}), 0) * 100)"
        if fname == "zscore":
            return (
                f"(CASE WHEN list_count({win}) >= 3 THEN ({cur} - list_avg({win})) "
                f"/ nullif(list_stddev_samp({win}), 0) END)"
            )
        return f"list_{fname.split('_')[0]}({win})"
    expr = K.MONTHLY_CODED.get(measure) or K.MONTHLY[measure]
    cur = f"CAST(b.{measure} AS DOUBLE)"
    win = f"FILTER (WHERE k BETWEEN 1 AND {n})"

    def agg(kind: str, sql: str) -> str:
        alias = f"{kind}__{measure}__{n}"
        history[alias] = HistorySpec(alias, sql, n)
        return f"h.{alias}"

    if fname in ("prior", "pct_change"):
        points.add(n)
        point = _WIDE_M.sub(f"p{n}.", expr)
        if fname == "prior":
            return point
        return f"(({cur} - {point}) / nullif(abs(CAST({point} AS DOUBLE)), 0) * 100)"
    if fname == "zscore":
        cnt = agg("cnt", f"count({expr}) {win}")
        avg = agg("avg", f"avg({expr}) {win}")
        sd = agg("sd", f"stddev_samp({expr}) {win}")
        return f"(CASE WHEN {cnt} >= 3 THEN ({cur} - {avg}) / nullif({sd}, 0) END)"
    return agg(fname.split("_")[0], f"{fname.split('_')[0]}({expr}) {win}")


def build_query(
    rules: Sequence[Rule],
    as_of: dt.date,
    *,
    scope: tuple[str, Sequence[Any]] = ("TRUE", ()),
    customer_ids: str | None = None,
    aggregate: bool = False,
    wide: bool = False,
) -> Query:
    """The SQL that evaluates ``rules`` (all of one customer type) at ``as_of``.

    Parameters
    ----------
    rules : sequence of Rule
        Compiled rules of one customer type.
    as_of : date
        A month-end as-of date of the warehouse.
    scope : (str, sequence)
        A condition on ``dim_customer`` aliased ``d`` with ``?`` placeholders (from ``scope_clause``).
    customer_ids : str, optional
        A relation (table name) of ``customer_id`` to restrict to; a fixed name chosen by the service.
    aggregate : bool
        Count hits per county, branch and rule instead of listing them.
    wide : bool
        ``as_of`` is the latest month: read the customer wide table (attributes and the latest month in
        one row per customer) instead of joining ``dim_customer`` to ``mart_customer_month``; at a
        million customers that join was most of a simple rule's time.

    Returns
    -------
    Query
    """
    if not rules:
        raise ValueError("no rules")
    ctype = rules[0].customer_type
    if any(r.customer_type != ctype for r in rules):
        raise ValueError("rules of one customer type only")
    scope_sql, scope_params = name_params(scope[0], scope[1], "s")
    params: dict[str, Any] = {"as_of": as_of, "ctype": ctype, **scope_params}
    base: list[str] = []
    calls: set[tuple[str, str, int]] = set()
    fin = False
    colls = []
    for r in rules:
        c = r.compiled
        params.update(c.params)
        base += [n for n in dict.fromkeys([*c.base, *r.output]) if n not in base]
        calls |= c.calls
        fin = fin or c.fin or any(K.INDICATORS[o].source == "fin" for o in r.output)
        colls += c.collections
        calls |= {("months_inactive", "", 0) for o in r.output if K.INDICATORS[o].source == "hist"}
    history: dict[str, HistorySpec] = {}
    points: set[int] = set()
    wide_cols: list[str] = []
    resolved = {
        call: _history_sql(*call, wide=wide, history=history, points=points, wide_cols=wide_cols)
        for call in sorted(calls)
    }

    def sub(sql: str) -> str:
        return HISTORY_MARK.sub(lambda m: resolved[(m.group(1), m.group(2), int(m.group(3)))], sql)

    # The base is narrow (the key and the indicators the rules read): who the customer is and who serves
    # them is joined only to the hits. Carrying the names and phones of every customer through the joins
    # cost 4x at a million customers.
    sel = ["d.customer_id AS customer_id"] + ([] if aggregate else ["d.rowid AS _rid"])
    if aggregate:
        sel += ["d.county_code AS county_code", "d.home_org_code AS home_org_code"]
    for n in base:
        ind = K.INDICATORS[n]
        if ind.source == "base" and not (aggregate and n in ("county_code", "home_org_code")):
            sel.append(f"{_WIDE_M.sub('d.', ind.sql) if wide else ind.sql} AS {n}")
    sel += [f"d.{col} AS {col}" for col in wide_cols]
    restrict = f" AND d.customer_id IN (SELECT customer_id FROM {customer_ids})" if customer_ids else ""
    source = (
        "mart_customer_wide AS d WHERE d.as_of_date = $as_of AND"
        if wide
        else "dim_customer AS d JOIN mart_customer_month AS m ON m.customer_id = d.customer_id "
        "AND m.as_of_date = $as_of WHERE"
    )
    ctes = [
        "b AS (SELECT "
        + ", ".join(sel)
        + f" FROM {source} d.customer_type = $ctype AND ({scope_sql}){restrict})"
    ]
    joins = []
    if fin:
        ctes.append(f"f AS ({K.FIN_SQL.strip()})")
        joins.append("LEFT JOIN f ON f.customer_id = b.customer_id")
    if history:
        months = [h.months for h in history.values()]
        aggs = [f"{h.sql} AS {h.alias}" for h in history.values()]
        window = ""
        if None not in months:
            params["h_from"] = _month_end(month_index(as_of) - max(m for m in months if m is not None) - 1)
            window = " AND as_of_date > $h_from"
        params["as_of_idx"] = month_index(as_of)
        # A scoped query aggregates only its own customers' months; the whole bank's skips the semi-join,
        # which costs more than it saves when nothing is filtered out.
        narrow = (
            ""
            if scope_sql == "TRUE" and not customer_ids
            else " AND customer_id IN (SELECT customer_id FROM b)"
        )
        ctes.append(
            "h AS (SELECT customer_id, " + ", ".join(aggs) + " FROM (SELECT *, $as_of_idx - "
            "CAST(year(as_of_date) * 12 + month(as_of_date) AS INTEGER) AS k FROM mart_customer_month "
            f"WHERE as_of_date <= $as_of{window}{narrow}) AS m GROUP BY customer_id)"
        )
        joins.append("LEFT JOIN h ON h.customer_id = b.customer_id")
    for n in sorted(points):
        params[f"d_p{n}"] = _month_end(month_index(as_of) - n)
        joins.append(
            f"LEFT JOIN mart_customer_month AS p{n} ON p{n}.customer_id = b.customer_id "
            f"AND p{n}.as_of_date = $d_p{n}"
        )
    match_fields: dict[str, set[str]] = {}
    for r in rules:
        if r.compiled.collections:
            match_fields.setdefault(r.compiled.collections[0].alias, set()).update(r.compiled.match_fields)
    # A scoped query reads only its customers' items (the semi-join is cheaper than aggregating the
    # whole bank's accounts); the first match keeps only the fields a reason quotes.
    narrow_c = (
        ""
        if scope_sql == "TRUE" and not customer_ids
        else " AND c.customer_id IN (SELECT customer_id FROM b)"
    )
    # One aggregate per collection, whatever the number of rules that look at it: each any(...) is a
    # filtered count (and the first match a reason quotes) in it. Separate aggregates scanned the
    # month's loans four times for the risk rules.
    groups: dict[str, list[CollectionSpec]] = {}
    for cs in colls:
        groups.setdefault(cs.collection, []).append(cs)
    for cname, specs in groups.items():
        coll = K.COLLECTIONS[cname]
        cols, needs_all = [], False
        for cs in specs:
            cols.append(f"count(*) FILTER (WHERE {cs.condition_sql}) AS {cs.alias}__n")
            if cs.kind == "all":
                needs_all = True
                cols.append(f"count(*) AS {cs.alias}__n_all")
            fields = [f for f in coll.fields if f in match_fields.get(cs.alias, ())]
            if fields:
                cols.append(
                    "first(struct_pack(" + ", ".join(f"{f} := c.{f}" for f in fields) + ") "
                    f"ORDER BY c.{coll.order_by} NULLS LAST) FILTER (WHERE {cs.condition_sql}) "
                    f"AS {cs.alias}__first"
                )
        where = "TRUE" if needs_all else " OR ".join(f"({cs.condition_sql})" for cs in specs)
        ctes.append(
            f"g_{cname} AS (SELECT c.customer_id, " + ", ".join(cols) + f" FROM ({coll.sql}) AS c "
            f"WHERE ({where}){narrow_c} GROUP BY c.customer_id)"
        )
        joins.append(f"LEFT JOIN g_{cname} ON g_{cname}.customer_id = b.customer_id")
    group_of = {cs.alias: cs.collection for cs in colls}

    def sub(sql: str, _history: Any = sub) -> str:  # history markers first, then collection references
        return _COLL_REF.sub(lambda m: f"g_{group_of[m.group(1)]}.{m.group(1)}__{m.group(2)}", _history(sql))

    fired = " OR ".join(f"coalesce({sub(r.compiled.sql)}, FALSE)" for r in rules)
    if aggregate:
        body = (
            "SELECT b.county_code, b.home_org_code, "
            + ", ".join(f'count(*) FILTER (WHERE {sub(r.compiled.sql)}) AS "{r.id}"' for r in rules)
            + f", count(*) FILTER (WHERE {fired}) AS n_customers FROM b "
            + " ".join(joins)
            + " GROUP BY ALL"
        )
    else:
        flags = [f'coalesce({sub(r.compiled.sql)}, FALSE) AS "{r.id}"' for r in rules]
        values = [f"{sub(ph.compiled.sql)} AS {ph.column}" for r in rules for ph in r.placeholders.values()]
        outputs = [
            f"b.{o}"
            for o in dict.fromkeys(o for r in rules for o in r.output)
            if o in base and K.INDICATORS[o].source == "base"
        ]
        outputs += [
            f"{sub(K.INDICATORS[o].sql)} AS {o}"
            for o in dict.fromkeys(o for r in rules for o in r.output)
            if K.INDICATORS[o].source != "base"
        ]
        ctes.append(
            "x AS (SELECT "
            + ", ".join(["b.customer_id", "b._rid", *flags, *outputs, *values])
            + " FROM b "
            + " ".join(joins)
            + f" WHERE {fired})"
        )
        # Who the hits are is fetched by row id: the scan then reads the name, phone and org columns of
        # the hit rows only (a join on customer_id read them for every customer: 70 ms at 1M).
        ident = [f"{sql} AS {name}" for name, sql in _IDENTITY_SQL.items() if name != "customer_id"]
        who = "mart_customer_wide" if wide else "dim_customer"
        body = (
            "SELECT x.* EXCLUDE (_rid), i.* EXCLUDE (_rid) FROM x JOIN (SELECT d.rowid AS _rid, "
            + ", ".join(ident)
            + f" FROM {who} AS d WHERE d.rowid IN (SELECT _rid FROM x)) AS i ON i._rid = x._rid"
        )
    sql = "WITH " + ",\n".join(ctes) + "\n" + body
    used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
    return Query(sql, used, list(rules))


# ---------------------------------------------------------------------------------------------- formatting
def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def format_value(value: Any, fmt: str, type_: str, lang: str) -> str:
    """One placeholder's value as reason text (``money``: 200,000 or 200,000.50; ``pct``: 62.3%)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if fmt == "money":
        f = _num(value)
        if f is None:
            return str(value)
        return f"{f:,.0f}" if abs(f - round(f)) < 0.005 else f"{f:,.2f}"
    if fmt == "int":
        f = _num(value)
        return str(round(f)) if f is not None else str(value)
    if fmt == "pct":
        f = _num(value)
        return f"{f:.1f}%" if f is not None else str(value)
    if fmt == "ratio":
        f = _num(value)
        return f"{f * 100:.1f}%" if f is not None else str(value)
    if fmt == "number":
        f = _num(value)
        if f is None:
            return str(value)
        return f"{f:,.0f}" if abs(f - round(f)) < 1e-9 else f"{f:,.2f}"
    if fmt == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if fmt == "label" and type_.startswith("code:"):
        return code_label(type_.split(":", 1)[1], value, lang)
    if isinstance(value, bool):
        return ("是" if value else "否") if lang.startswith("zh") else ("yes" if value else "no")
    return str(value)


# ---------------------------------------------------------------------------------------------- running
def execute(snap: Any, q: Query) -> Any:
    """Run a query on a reader snapshot with all cores (readers default to one thread); an Arrow table."""
    try:
        return snap.arrow(q.sql, q.params)
    except Exception as exc:
        # A warehouse built by an older version lacks a column or table the rules read.
        if type(exc).__name__ in ("BinderException", "CatalogException"):
            raise StaleWarehouse(
                "the published warehouse was built by an older version of CIM Workbench and lacks what "
                f"the rules read ({str(exc).splitlines()[0][:160]}); run `cim build`"
            ) from exc
        raise


def _resolve(ruleset: RuleSet | str, home: Any) -> RuleSet:
    return ruleset if isinstance(ruleset, RuleSet) else load_ruleset(ruleset, home)


def _scope(principal: Principal) -> tuple[str, list[Any]]:
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    return scope_clause(principal, "d")


def _by_type(rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for r in rules:
        out.setdefault(r.customer_type, []).append(r)
    return out


def run(
    ruleset: RuleSet | str,
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    rules: Sequence[str] | None = None,
    lang: str = "en",
    home: D.HomeLike = None,
    app_url: str | None = None,
) -> pd.DataFrame:
    """Run a rule set (or some of its rules) and return the customer list.

    Parameters
    ----------
    ruleset : RuleSet or str
        A loaded rule set, or the name of one in ``parameters/targeting``.
    principal : Principal
        Who asks: rows are limited to the principal's scope inside the query, personal data is masked as
        the role requires, and the list is audit-logged. The role must allow single-customer detail (use
        :func:`counts` for aggregate-only roles).
    as_of : str or date, optional
        ``YYYY-MM`` or a date of that month; default the latest month in the warehouse.
    rules : sequence of str, optional
        Rule ids to run (default all rules of the set).
    lang : {"en", "zh_CN"}
        Language of rule names and reasons.
    home : Home or path, optional
        The installation.
    app_url : str, optional
        Base URL of ``cim serve``; ``link`` then holds a full address of the customer's 360 view,
        otherwise a path relative to the server.

    Returns
    -------
    pandas.DataFrame
        One row per customer hit by at least one rule: :data:`LIST_COLUMNS`, then the rules' output
        columns, then ``link``. Sorted by severity (highest first), branch and customer. ``attrs`` holds
        ``as_of``, ``snapshot_id``, ``ruleset``, ``rules`` and ``hits`` (customers per rule).

    Raises
    ------
    NotPermitted
        When the role has no single-customer detail.
    AsOfError
        When the month is malformed or not in the warehouse.
    """
    h = D.resolve_home(home)
    rs = _resolve(ruleset, h)
    selected = rs.select(list(rules) if rules else None)
    try:
        require_detail(principal)
        scope = _scope(principal)
    except NotPermitted as exc:
        audit_log(h, principal, "target_list", rs.name, None, {"reason": str(exc)}, outcome="refused")
        raise
    t0 = time.perf_counter()
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    frames = []
    hits: dict[str, int] = {r.id: 0 for r in selected}
    for _, group in _by_type(selected).items():
        q = build_query(group, day, scope=scope, wide=day == D.as_of_dates(snap)[-1])
        frames.append(_frame(group, execute(snap, q), principal, lang, hits))
    out = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    outputs = [o for r in selected for o in r.output]
    outputs = list(dict.fromkeys(outputs))
    if out is None:
        out = pd.DataFrame(columns=[*LIST_COLUMNS, *outputs, "link"])
    out = out.reindex(columns=[*LIST_COLUMNS, *outputs, "link"])
    out["_rank"] = out["severity"].map(SEVERITY_RANK)
    out = out.sort_values(
        ["_rank", "home_org_code", "customer_id"], ascending=[False, True, True], kind="stable"
    )
    out = out.drop(columns="_rank").reset_index(drop=True)
    base = (app_url.rstrip("/") + "/") if app_url else ""
    out["link"] = [f"{base}{APP_360_PATH}?customer={c}" for c in out["customer_id"]]
    out.attrs.update(
        as_of=day.isoformat(),
        snapshot_id=snap.snapshot_id,
        ruleset=rs.name,
        rules=[r.id for r in selected],
        hits=hits,
    )
    ms = round((time.perf_counter() - t0) * 1000, 1)
    audit_log(
        h,
        principal,
        "target_list",
        rs.name,
        snap.snapshot_id,
        {"as_of": day.isoformat(), "rules": [r.id for r in selected], "n_customers": len(out), "ms": ms},
    )
    log.info("target list", extra={"ruleset": rs.name, "n": len(out), "ms": ms})
    return out


def to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow result as pandas, decimals as floats (lists show amounts; nothing here must tie out)."""
    return _floats(table).to_pandas()


def _floats(table: Any) -> Any:
    """The Arrow result with decimals as floats (lists show amounts; nothing here must tie out)."""
    import pyarrow as pa

    if not any(pa.types.is_decimal(f.type) for f in table.schema):
        return table
    cols = [
        table.column(f.name).cast(pa.float64()) if pa.types.is_decimal(f.type) else table.column(f.name)
        for f in table.schema
    ]
    return pa.table(cols, names=table.schema.names)


def _frame(
    rules: list[Rule], table: Any, principal: Principal, lang: str, hits: dict[str, int]
) -> pd.DataFrame:
    """The list rows of one customer type: masks, severity, fired rules and their reasons.

    Works on the Arrow columns as Python lists (iterating pandas' Arrow-backed columns cost 0.5 s for a
    230,000-row list), formats each placeholder with one formatter, and masks through ``mask_values``.
    """
    zh = lang.startswith("zh")
    table = _floats(table)
    n = table.num_rows
    if not n:
        return pd.DataFrame()
    col = {name: table.column(name) for name in table.schema.names}
    person = [t == "I" for t in col["customer_type"].to_pylist()]
    masked = {
        "cust_name": mask_values(principal, "name", col["cust_name"].to_pylist(), person),
        "id_no": mask_values(principal, "id_no", col["id_no"].to_pylist(), person),
        "phone": mask_values(principal, "phone", col["phone"].to_pylist()),
    }
    fired_ids: list[list[str]] = [[] for _ in range(n)]
    names: list[list[str]] = [[] for _ in range(n)]
    reasons: list[list[str]] = [[] for _ in range(n)]
    sev = [0] * n
    for r in rules:
        flags = col[r.id].to_numpy(zero_copy_only=False).astype(bool)
        idx = flags.nonzero()[0]
        hits[r.id] += len(idx)
        if not len(idx):
            continue
        name = r.name["zh" if zh else "en"]
        texts = _reasons(r, col, idx, lang)
        rank = SEVERITY_RANK[r.severity]
        for i, text in zip(idx.tolist(), texts, strict=True):
            fired_ids[i].append(r.id)
            names[i].append(name)
            reasons[i].append(text)
            if rank > sev[i]:
                sev[i] = rank
    skip = {ph.column for r in rules for ph in r.placeholders.values()} | {r.id for r in rules} | {"_rid"}
    keep = [c for c in table.schema.names if c not in skip and c not in masked]
    df = table.select(keep).to_pandas()
    for c, values in masked.items():
        df[c] = values
    sep = "；" if zh else "; "
    by_rank = {v: k for k, v in SEVERITY_RANK.items()}
    df["severity"] = [by_rank[x] for x in sev]
    df["n_rules"] = [len(x) for x in fired_ids]
    df["rules"] = [";".join(x) for x in fired_ids]
    df["rule_names"] = [sep.join(x) for x in names]
    df["reasons"] = [sep.join(x) for x in reasons]
    return df


def _formatter(fmt: str, type_: str, lang: str) -> Any:
    """One placeholder's formatter (the branch on the format is taken once, not per value)."""
    if fmt == "money":

        def money(v: Any) -> str:
            if v is None or v != v:
                return "—"
            return f"{v:,.0f}" if abs(v - round(v)) < 0.005 else f"{v:,.2f}"

        return money
    if fmt == "pct":
        return lambda v: "—" if v is None or v != v else f"{v:.1f}%"
    if fmt == "ratio":
        return lambda v: "—" if v is None or v != v else f"{v * 100:.1f}%"
    if fmt == "label" and type_.startswith("code:"):
        domain = type_.split(":", 1)[1]
        cache: dict[Any, str] = {}

        def label(v: Any) -> str:
            if v is None:
                return "—"
            got = cache.get(v)
            if got is None:
                got = cache[v] = code_label(domain, v, lang)
            return got

        return label
    return lambda v: format_value(v, fmt, type_, lang)


def _reasons(rule: Rule, col: dict[str, Any], idx: Any, lang: str) -> list[str]:
    """The reason texts of ``rule`` for the rows ``idx`` (one formatter per placeholder)."""
    from cimlib.targeting._rules import _PLACEHOLDER

    template = rule.reason["zh" if lang.startswith("zh") else "en"]
    parts = _PLACEHOLDER.split(template)  # text, placeholder, text, placeholder, ... text
    cols: list[list[str]] = []
    for k in range(1, len(parts), 2):
        ph = rule.placeholders[parts[k]]
        values = col[ph.column].take(idx).to_pylist() if ph.column in col else [None] * len(idx)
        f = _formatter(ph.fmt, ph.compiled.type, lang)
        cols.append([f(v) for v in values])
    out = []
    for j in range(len(idx)):
        buf = [parts[0]]
        for k in range(len(cols)):
            buf.append(cols[k][j])
            buf.append(parts[2 * k + 2])
        out.append("".join(buf))
    return out


def counts(
    ruleset: RuleSet | str,
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    rules: Sequence[str] | None = None,
    home: D.HomeLike = None,
) -> pd.DataFrame:
    """Customers hit per branch and rule, within the principal's scope (any role with a scope).

    Returns
    -------
    pandas.DataFrame
        ``county_code, county_name, home_org_code, home_org_name``, one column per rule id, and
        ``n_customers`` (customers hit by at least one rule), one row per branch with a hit; ``attrs`` as
        for :func:`run`.
    """
    h = D.resolve_home(home)
    rs = _resolve(ruleset, h)
    selected = rs.select(list(rules) if rules else None)
    scope = _scope(principal)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    parts = []
    for _, group in _by_type(selected).items():
        q = build_query(group, day, scope=scope, aggregate=True, wide=day == D.as_of_dates(snap)[-1])
        parts.append(to_pandas(execute(snap, q)))
    keys = ["county_code", "home_org_code"]
    ids = [r.id for r in selected]
    out = pd.concat(parts, ignore_index=True).fillna(dict.fromkeys(ids, 0))
    out = out.groupby(keys, as_index=False, dropna=False).sum(numeric_only=True)
    for r in ids:
        out[r] = out[r].astype("int64") if r in out else 0
    out["n_customers"] = out["n_customers"].astype("int64")
    _, orgs = snap.query("SELECT org_code, org_name FROM core_org")
    name = dict(orgs)
    out.insert(1, "county_name", [name.get(c) for c in out["county_code"]])
    out.insert(3, "home_org_name", [name.get(c) for c in out["home_org_code"]])
    out = out[out["n_customers"] > 0].sort_values(keys)
    out = out[[*keys[:1], "county_name", keys[1], "home_org_name", *ids, "n_customers"]].reset_index(
        drop=True
    )
    out.attrs.update(as_of=day.isoformat(), snapshot_id=snap.snapshot_id, ruleset=rs.name, rules=ids)
    audit_log(
        h,
        principal,
        "target_counts",
        rs.name,
        snap.snapshot_id,
        {"as_of": day.isoformat(), "n_branches": len(out)},
    )
    return out
