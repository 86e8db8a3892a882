"""Customer value per month: AUM and contribution tiers, quality and potential flags; tier migration.

One SQL pass (:func:`customer_value_sql`) gives every customer of a month its value measures
(deposit ADB, AUM, the AUM used for tiering, the FTP contribution of :func:`contribution_sql`), both tiers,
the quality rule it meets and the peer benchmark behind the potential-quality flag. The whole bank's frame
is written once per snapshot, parameter version and month as
``warehouse/value/<snapshot_id>/<params digest>-v<CACHE_VERSION>/<YYYY-MM>.parquet`` and read from there
with each principal's row scope, so a migration matrix (two months) or a second view costs a Parquet scan.

* **AUM for tiering** (``tiers.aum.measure: aum_adb``) = deposit ADB + wealth market value at month-end:
  DOMAIN.md asks for average balances, and wealth holdings have no daily balance in the extracts.
* **Contribution tiers** use the month's contribution with separate edges for individuals and corporates.
* A tier holds values ``>= its lower edge`` and ``< the next edge``.

Aggregates (tier distribution, migration matrix) need no single-customer detail; cells of fewer than
``principal.min_cell`` customers are suppressed for roles without it. Customer lists need detail and are
masked and audit-logged like a segmentation drill-through.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cimlib.access import NotPermitted, Principal, audit_log, mask_values, named_scope, require_detail
from cimlib.customer import _data as D
from cimlib.value._contribution import (
    FIVE_CLASSES,
    ValueParams,
    ValueParamsError,
    check_value_params,
    contribution_sql,
    load_value_params,
)

log = logging.getLogger(__name__)

Kind = Literal["aum", "contribution"]
NEW, GONE, TOTAL = "NEW", "GONE", "_total"
APP_360_PATH = "voila/render/customer_360.ipynb"
#: Bumped when the cached frame's layout changes (columns, order), so an older file is never read.
CACHE_VERSION = "2"

#: The columns of :func:`customer_value` (and of the cached frame).
VALUE_COLUMNS = (
    "customer_id", "customer_type", "county_code", "home_org_code", "manager_no", "deposit_adb",
    "wealth_aum", "aum", "aum_adb", "contribution", "n_products", "tenure_months", "worst_five_class",
    "aum_tier", "aum_tier_rank", "contribution_tier", "contribution_tier_rank", "is_quality", "quality_rule",
    "peer_group", "peer_size", "benchmark", "share_of_wallet", "is_potential",
)  # fmt: skip
#: Identity columns of a customer list (masked per the principal's role).
LIST_IDENTITY = {
    "cust_name": "d.cust_name",
    "id_no": "d.id_no_or_credit_code",
    "phone": "d.phone",
    "home_org_name": "d.home_org_name",
    "manager_name": "d.manager_name",
}


# ------------------------------------------------------------------------------------------------- SQL
def _num(x: float) -> str:
    return f"{float(x):.4f}"


def _rank_sql(expr: str, edges: Sequence[float]) -> str:
    """The 0-based tier of ``expr``: the number of edges at or below it (a CASE from the top)."""
    whens = " ".join(f"WHEN {expr} >= {_num(e)} THEN {i + 1}" for i, e in reversed(list(enumerate(edges))))
    return f"CASE {whens} ELSE 0 END"


def _id_sql(rank: str, ids: Sequence[str]) -> str:
    return f"CASE {rank} " + " ".join(f"WHEN {i} THEN '{t}'" for i, t in enumerate(ids)) + " END"


def _label(x: float) -> str:
    return f"{x:,.0f}".replace(",", "") if float(x).is_integer() else f"{x:g}"


def _band_sql(expr: str, edges: Sequence[float]) -> str:
    """A readable band of ``expr`` (``<30``, ``30-40``, ``>=60``); NULL when ``expr`` is NULL."""
    parts = [f"WHEN {expr} IS NULL THEN NULL", f"WHEN {expr} < {_num(edges[0])} THEN '<{_label(edges[0])}'"]
    for lo, hi in itertools.pairwise(edges):
        parts.append(f"WHEN {expr} < {_num(hi)} THEN '{_label(lo)}-{_label(hi)}'")
    parts.append(f"ELSE '>={_label(edges[-1])}'")
    return "CASE " + " ".join(parts) + " END"


def _five_rank(expr: str) -> str:
    return f"CASE {expr} " + " ".join(f"WHEN '{c}' THEN {i + 1}" for i, c in enumerate(FIVE_CLASSES)) + " END"


def _quality_sql(params: ValueParams) -> str:
    """The id of the first quality rule a customer (alias-free columns of ``t``) meets, else NULL."""
    if params.quality is None or params.tiers is None:
        return "CAST(NULL AS VARCHAR)"
    aum_ids = [t.id for t in params.tiers.aum.tiers]
    con_ids = [t.id for t in params.tiers.contribution.tiers]
    whens = []
    for r in params.quality.rules:
        conds = [f"customer_type = '{r.customer_type}'"]
        if r.min_aum_tier is not None:
            conds.append(f"aum_tier_rank >= {aum_ids.index(r.min_aum_tier)}")
        if r.min_contribution_tier is not None:
            conds.append(f"contribution_tier_rank >= {con_ids.index(r.min_contribution_tier)}")
        if r.min_products is not None:
            conds.append(f"n_products >= {int(r.min_products)}")
        if r.min_tenure_months is not None:
            conds.append(f"coalesce(tenure_months, -1) >= {int(r.min_tenure_months)}")
        if r.worst_loan_class is not None:
            conds.append(f"coalesce(five_rank, 0) <= {FIVE_CLASSES.index(r.worst_loan_class) + 1}")
        whens.append(f"WHEN {' AND '.join(conds)} THEN '{r.id}'")
    return "CASE " + " ".join(whens) + " END"


def _potential_parts(params: ValueParams) -> dict[str, str]:
    """SQL pieces of the potential-quality method (see docs/value.md)."""
    p = params.potential
    if p is None or params.tiers is None:
        return {}
    ind, corp = p.individual, p.corporate
    age, inc = _band_sql("age", ind.age_edges), _band_sql("monthly_income", ind.income_edges)
    cap = _band_sql("registered_capital", corp.capital_edges)
    i_coarse = f"'I|age ' || {age} || '|income ' || {inc}"
    c_coarse = f"'C|capital ' || {cap}"
    i_full = f"{i_coarse} || '|' || occupation" if ind.by_occupation else i_coarse
    c_full = f"{c_coarse} || '|' || industry" if corp.by_industry else c_coarse
    mb = p.min_benchmark_tier
    if p.measure == "aum_adb":
        ids = [t.id for t in params.tiers.aum.tiers]
        e = params.tiers.aum.edges
        e_i, e_c = e[ids.index(mb.I) - 1], e[ids.index(mb.C) - 1]
    else:
        ids = [t.id for t in params.tiers.contribution.tiers]
        ct = params.tiers.contribution
        e_i, e_c = ct.edges_individual[ids.index(mb.I) - 1], ct.edges_corporate[ids.index(mb.C) - 1]
    floor = f"CASE WHEN customer_type = 'I' THEN {_num(e_i)} ELSE {_num(e_c)} END"
    return {
        "full": f"CASE WHEN customer_type = 'I' THEN {i_full} ELSE {c_full} END",
        "coarse": f"CASE WHEN customer_type = 'I' THEN {i_coarse} ELSE {c_coarse} END",
        "measure": f"CAST({p.measure} AS DOUBLE)",
        "floor": floor,
        "pct": f"{float(p.benchmark_percentile):.4f}",
        "min_n": str(int(p.min_group_size)),
        "share": f"{float(p.max_share_of_wallet):.6f}",
        "fallback": "TRUE" if p.fallback_to_coarser else "FALSE",
    }


def customer_value_sql(params: ValueParams) -> str:
    """SQL for one month's customer value frame (every customer of ``mart_customer_month`` that month).

    Parameters
    ----------
    params : ValueParams
        Validated parameters with a ``tiers`` section (``quality`` and ``potential`` optional).

    Returns
    -------
    str
        A query with the named parameter ``$as_of`` (DATE) over ``mart_customer_month``,
        ``dim_customer`` and the tables of :func:`contribution_sql`, giving :data:`VALUE_COLUMNS`.

    Raises
    ------
    ValueParamsError
        When ``tiers`` is missing or a tier id referred to does not exist.
    """
    check_value_params(params)
    if params.tiers is None:
        raise ValueParamsError("parameters/value.yaml: tiers: section missing (AUM and contribution tiers)")
    at, ct = params.tiers.aum, params.tiers.contribution
    aum_rank = _rank_sql(at.measure, at.edges)
    con_rank = (
        f"CASE WHEN customer_type = 'I' THEN {_rank_sql('contribution', ct.edges_individual)} "
        f"ELSE {_rank_sql('contribution', ct.edges_corporate)} END"
    )
    pot = _potential_parts(params)
    if pot:
        peer = f"""
fg AS (
    SELECT _full AS k, count(*) AS n,
        percentile_cont({pot["pct"]}) WITHIN GROUP (ORDER BY _v) AS bench
    FROM q WHERE _full IS NOT NULL GROUP BY _full
),
cg AS (
    SELECT _coarse AS k, count(*) AS n,
        percentile_cont({pot["pct"]}) WITHIN GROUP (ORDER BY _v) AS bench
    FROM q WHERE _coarse IS NOT NULL GROUP BY _coarse
),
r AS (
    SELECT q.*,
        CASE WHEN fg.n >= {pot["min_n"]} THEN q._full
             WHEN {pot["fallback"]} AND cg.n >= {pot["min_n"]} THEN q._coarse END AS peer_group,
        CASE WHEN fg.n >= {pot["min_n"]} THEN fg.n
             WHEN {pot["fallback"]} AND cg.n >= {pot["min_n"]} THEN cg.n END AS peer_size,
        CASE WHEN fg.n >= {pot["min_n"]} THEN fg.bench
             WHEN {pot["fallback"]} AND cg.n >= {pot["min_n"]} THEN cg.bench END AS _bench
    FROM q
    LEFT JOIN fg ON fg.k = q._full
    LEFT JOIN cg ON cg.k = q._coarse
)"""
        pot_cols = f"""peer_group, CAST(peer_size AS BIGINT) AS peer_size,
    CAST(round(_bench, 2) AS DECIMAL(18, 2)) AS benchmark,
    CASE WHEN _bench > 0 THEN round(_v / _bench, 6) END AS share_of_wallet,
    coalesce(quality_rule IS NULL AND _bench >= {pot["floor"]} AND _v < {pot["share"]} * _bench, FALSE)
        AS is_potential"""
        q_extra = f", {pot['full']} AS _full, {pot['coarse']} AS _coarse, {pot['measure']} AS _v"
    else:
        peer = "r AS (SELECT * FROM q)"
        pot_cols = """CAST(NULL AS VARCHAR) AS peer_group, CAST(NULL AS BIGINT) AS peer_size,
    CAST(NULL AS DECIMAL(18, 2)) AS benchmark, CAST(NULL AS DOUBLE) AS share_of_wallet,
    FALSE AS is_potential"""
        q_extra = ""
    aum_ids = [t.id for t in at.tiers]
    con_ids = [t.id for t in ct.tiers]
    return f"""
WITH cv AS ({contribution_sql(params)}),
b AS (
    SELECT m.customer_id, m.customer_type, d.county_code, d.home_org_code, d.manager_no,
        CAST(m.deposit_adb AS DECIMAL(18, 2)) AS deposit_adb,
        CAST(m.wealth_aum AS DECIMAL(18, 2)) AS wealth_aum,
        CAST(m.aum AS DECIMAL(18, 2)) AS aum,
        CAST(m.deposit_adb + m.wealth_aum AS DECIMAL(18, 2)) AS aum_adb,
        CAST(coalesce(cv.contribution, 0) AS DECIMAL(18, 2)) AS contribution,
        CAST(coalesce(m.n_products, 0) AS INTEGER) AS n_products,
        CAST(date_diff('month', d.first_open_date, $as_of) AS INTEGER) AS tenure_months,
        m.worst_five_class, {_five_rank("m.worst_five_class")} AS five_rank,
        d.age, d.monthly_income, d.occupation, d.industry, d.registered_capital
    FROM mart_customer_month AS m
    JOIN dim_customer AS d ON d.customer_id = m.customer_id
    LEFT JOIN cv ON cv.customer_id = m.customer_id
    WHERE m.as_of_date = $as_of
),
t AS (
    SELECT b.*, CAST({aum_rank} AS INTEGER) AS aum_tier_rank,
        CAST({con_rank} AS INTEGER) AS contribution_tier_rank
    FROM b
),
q AS (
    SELECT t.*, {_id_sql("aum_tier_rank", aum_ids)} AS aum_tier,
        {_id_sql("contribution_tier_rank", con_ids)} AS contribution_tier,
        {_quality_sql(params)} AS quality_rule{q_extra}
    FROM t
),
{peer}
SELECT customer_id, customer_type, county_code, home_org_code, manager_no, deposit_adb, wealth_aum, aum,
    aum_adb, contribution, n_products, tenure_months, worst_five_class, aum_tier, aum_tier_rank,
    contribution_tier, contribution_tier_rank, quality_rule IS NOT NULL AS is_quality, quality_rule,
    {pot_cols}
FROM r
"""


# ---------------------------------------------------------------------------------------------- storage
_params_cache: dict[str, tuple[tuple[int, int], ValueParams]] = {}


def value_params(home: D.HomeLike) -> ValueParams:
    """``parameters/value.yaml`` of ``home``, validated once per file version."""
    from cimlib.value._contribution import value_path

    h = D.resolve_home(home)
    path = value_path(h)
    st = path.stat() if path.exists() else None
    stamp = (st.st_mtime_ns, st.st_size) if st else (0, 0)
    hit = _params_cache.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    p = load_value_params(h)
    _params_cache[str(path)] = (stamp, p)
    return p


def value_path(home: D.HomeLike, snapshot_id: str, params: ValueParams, as_of: dt.date) -> Path:
    """``warehouse/value/<snapshot_id>/<params digest>-v<CACHE_VERSION>/<YYYY-MM>.parquet`` of ``home``."""
    key = f"{params.digest()}-v{CACHE_VERSION}"
    return D.resolve_home(home).warehouse / "value" / snapshot_id / key / f"{as_of:%Y-%m}.parquet"


def _compute(snap: Any, params: ValueParams, day: dt.date, *, ordered: bool = False) -> Any:
    sql = customer_value_sql(params) + (" ORDER BY customer_id" if ordered else "")
    with snap.all_cores() as con:
        return con.sql(sql, params={"as_of": day}).to_arrow_table()


def value_table(home: D.HomeLike, snap: Any, params: ValueParams, day: dt.date) -> Path:
    """The whole bank's value frame of ``day`` as Parquet, computed and written once (atomically)."""
    import pyarrow.parquet as pq

    path = value_path(home, snap.snapshot_id, params, day)
    if path.exists():
        return path
    t0 = time.perf_counter()
    table = _compute(snap, params, day, ordered=True)  # stored by customer: readers need no sort
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    log.info("customer value %s: %d customers in %.2f s -> %s", f"{day:%Y-%m}", table.num_rows,
             time.perf_counter() - t0, path)  # fmt: skip
    return path


def _pq(path: Path) -> str:
    """A Parquet path as an SQL literal (a path this module built, quotes escaped anyway)."""
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def _check_access(principal: Principal) -> None:
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")


class _Ctx:
    """What every service call resolves first: home, parameters, snapshot, month."""

    def __init__(self, principal: Principal, as_of: str | dt.date | None, home: D.HomeLike) -> None:
        _check_access(principal)
        self.home = D.resolve_home(home)
        self.params = value_params(self.home)
        self.snap = D.snapshot(self.home)
        self.day = D.resolve_as_of(self.snap, as_of)

    def table(self, day: dt.date | None = None) -> str:
        return _pq(value_table(self.home, self.snap, self.params, day or self.day))

    def query(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        """Run ``sql`` on all cores; pandas through Arrow with decimals as floats (8x faster than ``.df()``
        for a million-row frame)."""
        from cimlib.targeting._run import to_pandas

        with self.snap.all_cores() as con:
            return to_pandas(con.sql(sql, params=params).to_arrow_table())


def customer_value(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    home: D.HomeLike = None,
    cache: bool = True,
) -> pd.DataFrame:
    """Every in-scope customer's value for one month: measures, tiers, quality and potential flags.

    Parameters
    ----------
    principal : Principal
        Who asks; rows are limited to their scope. No single-customer detail is needed (the frame holds
        no personal data: it feeds aggregates such as 80/20 and watch lists, like :func:`contribution`).
    as_of : str, date or None
        The month (``YYYY-MM`` or a date); the latest when None.
    home : Home, str, Path or None
        The installation.
    cache : bool
        Read (and write) the whole bank's frame under ``warehouse/value/``; False computes it afresh
        and writes nothing.

    Returns
    -------
    pandas.DataFrame
        :data:`VALUE_COLUMNS`, sorted by customer: ``aum_adb`` = deposit ADB + wealth market value (the
        default tiering measure), ``contribution`` (month, yuan), ``aum_tier`` / ``contribution_tier``
        (ids of ``parameters/value.yaml``) with their 0-based ranks, ``is_quality`` and the first
        ``quality_rule`` met, ``peer_group``, ``peer_size``, ``benchmark``, ``share_of_wallet`` and
        ``is_potential``. Money is float yuan. ``attrs``: ``as_of``, ``snapshot_id``, ``params``.

    Raises
    ------
    NotPermitted
        When the role has no access to customer data.
    ValueParamsError
        When ``parameters/value.yaml`` is invalid or has no ``tiers`` section.
    AsOfError
        For a month not in the warehouse.
    """
    c = _Ctx(principal, as_of, home)
    cond, named = named_scope(principal, "d", "s")
    if cache:  # the file is stored by customer id and DuckDB keeps a scan's insertion order
        sql = f"SELECT * FROM {c.table()} AS d WHERE ({cond})"
    else:
        sql = f"SELECT * FROM ({customer_value_sql(c.params)}) AS d WHERE ({cond}) ORDER BY d.customer_id"
        named["as_of"] = c.day
    df = c.query(sql, named)
    df.attrs.update(as_of=c.day.isoformat(), snapshot_id=c.snap.snapshot_id, params=c.params.digest())
    return df


# ------------------------------------------------------------------------------------------- aggregates
def _tier_defs(params: ValueParams, kind: Kind) -> list[Any]:
    if params.tiers is None:
        raise ValueParamsError("parameters/value.yaml: tiers: section missing")
    if kind not in ("aum", "contribution"):
        raise ValueError(f"kind: expected 'aum' or 'contribution', got {kind!r}")
    return list(params.tiers.aum.tiers if kind == "aum" else params.tiers.contribution.tiers)


def _lang_key(lang: str) -> str:
    return "zh" if lang.startswith("zh") else "en"


def _suppress_1d(n: pd.Series, k: int) -> pd.Series:
    """Rows of 1..k-1 customers, plus the smallest other non-empty row when one alone would be derivable
    from the total."""
    sup = (n > 0) & (n < k)
    if int(sup.sum()) == 1:
        cand = n[(~sup) & (n > 0)]
        if len(cand):
            sup[cand.idxmin()] = True
    return sup


def tier_distribution(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    kind: Kind = "aum",
    customer_type: Literal["I", "C"] | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Customers, AUM and contribution by tier for one month, within the principal's scope.

    Parameters
    ----------
    principal : Principal
        Who asks (aggregates: no detail needed; small tiers are suppressed for roles without detail).
    as_of : str, date or None
        The month; the latest when None.
    kind : {"aum", "contribution"}
        Which tiers.
    customer_type : {"I", "C"}, optional
        Only individuals or corporates.
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN`` for the labels.

    Returns
    -------
    pandas.DataFrame
        One row per tier (every tier, in order) and a ``_total`` row: ``tier, label, customers,
        aum_adb, aum, contribution, customer_share, aum_adb_share``. Suppressed rows hold NaN;
        ``attrs``: ``as_of``, ``kind``, ``suppressed`` (tier ids), ``min_cell``, ``snapshot_id``, ``scope``.
    """
    c = _Ctx(principal, as_of, home)
    tiers = _tier_defs(c.params, kind)
    cond, named = named_scope(principal, "d", "s")
    col = "aum_tier" if kind == "aum" else "contribution_tier"
    typ = ""
    if customer_type is not None:
        if customer_type not in ("I", "C"):
            raise ValueError(f"customer_type: expected 'I' or 'C', got {customer_type!r}")
        typ, named["ctype"] = " AND d.customer_type = $ctype", customer_type
    g = c.query(
        f"SELECT {col} AS tier, count(*) AS customers, sum(CAST(aum_adb AS DOUBLE)) AS aum_adb, "
        f"sum(CAST(aum AS DOUBLE)) AS aum, sum(CAST(contribution AS DOUBLE)) AS contribution "
        f"FROM {c.table()} AS d WHERE ({cond}){typ} GROUP BY {col}",
        named,
    ).set_index("tier")
    ids = [t.id for t in tiers]
    out = g.reindex(ids).fillna(0.0)
    out["customers"] = out["customers"].astype("int64")
    total = out.sum()
    out.loc[TOTAL] = total
    out["customers"] = out["customers"].astype("int64")
    key = _lang_key(lang)
    names = {t.id: getattr(t, key) for t in tiers} | {TOTAL: "合计" if key == "zh" else "Total"}
    out.insert(0, "label", [names[i] for i in out.index])
    out["customer_share"] = out["customers"] / total["customers"] if total["customers"] else 0.0
    out["aum_adb_share"] = out["aum_adb"] / total["aum_adb"] if total["aum_adb"] else 0.0
    sup = (
        _suppress_1d(out["customers"].drop(TOTAL), principal.min_cell)
        if not principal.can_view_detail
        else pd.Series(False, index=ids)
    )
    num = ["customers", "aum_adb", "aum", "contribution", "customer_share", "aum_adb_share"]
    out[num] = out[num].astype("float64")
    out.loc[sup[sup].index, num] = float("nan")
    out.index.name = "tier"
    out = out.reset_index()
    out.attrs.update(as_of=c.day.isoformat(), kind=kind, suppressed=list(sup[sup].index),
                     min_cell=principal.min_cell, snapshot_id=c.snap.snapshot_id,
                     scope=principal.scope_label, customer_type=customer_type)  # fmt: skip
    return out


def migration_matrix(
    principal: Principal,
    from_month: str | dt.date,
    to_month: str | dt.date | None = None,
    *,
    kind: Kind = "aum",
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Customers moving between tiers from one month to another (any two months, either order).

    A customer without a row in ``from_month`` (``mart_customer_month``) is ``NEW``; one without a row in
    ``to_month`` is ``GONE``. Scope is the customer's current org (``dim_customer``).

    Parameters
    ----------
    principal : Principal
        Who asks (aggregates; cells of fewer than ``min_cell`` customers are suppressed without detail).
    from_month, to_month : str or date
        ``YYYY-MM``; ``to_month`` defaults to the latest month.
    kind : {"aum", "contribution"}
        Which tiers.
    home : Home, str, Path or None
        The installation.
    lang : str
        Labels' language.

    Returns
    -------
    pandas.DataFrame
        Customer counts: rows = tier in ``from_month`` (every tier, then ``NEW``, then ``_total``),
        columns = tier in ``to_month`` (every tier, ``GONE``, ``_total``); suppressed cells are NaN.
        ``attrs``: ``from_month``, ``to_month``, ``kind``, ``row_labels``, ``col_labels``, ``suppressed``
        (``{row: {col: bool}}``), ``up``, ``down``, ``same`` (customers moving up, down or staying among
        tiers; ``None`` when suppression applies), ``min_cell``, ``snapshot_id``, ``scope``.
    """
    from cimlib.segmentation._cube import _suppress

    c = _Ctx(principal, to_month, home)
    day_from = D.resolve_as_of(c.snap, from_month)
    tiers = _tier_defs(c.params, kind)
    col = "aum_tier" if kind == "aum" else "contribution_tier"
    cond, named = named_scope(principal, "d", "s")
    g = c.query(
        f"WITH a AS (SELECT customer_id, {col} AS t FROM {c.table(day_from)} AS d WHERE ({cond})), "
        f"b AS (SELECT customer_id, {col} AS t FROM {c.table()} AS d WHERE ({cond})) "
        f"SELECT coalesce(a.t, '{NEW}') AS f, coalesce(b.t, '{GONE}') AS tt, count(*) AS n "
        "FROM a FULL JOIN b ON a.customer_id = b.customer_id GROUP BY 1, 2",
        named,
    )
    ids = [t.id for t in tiers]
    rows, cols = [*ids, NEW], [*ids, GONE]
    m = g.pivot_table(index="f", columns="tt", values="n", aggfunc="sum").reindex(index=rows, columns=cols)
    m = m.fillna(0).astype("int64")
    m[TOTAL] = m.sum(axis=1)
    m.loc[TOTAL] = m.sum(axis=0)
    rank = {t: i for i, t in enumerate(ids)}
    up = down = same = 0
    for f in ids:
        for t in ids:
            n = int(m.loc[f, t])
            up += n if rank[t] > rank[f] else 0
            down += n if rank[t] < rank[f] else 0
            same += n if t == f else 0
    if principal.can_view_detail:
        sup = pd.DataFrame(False, index=m.index, columns=m.columns)
    else:
        sup = _suppress(m.astype("float64"), principal.min_cell)
    out = m.astype("float64").mask(sup)
    key = _lang_key(lang)
    names = {t.id: getattr(t, key) for t in tiers}
    extra = {NEW: "新增" if key == "zh" else "New", GONE: "流失" if key == "zh" else "Gone",
             TOTAL: "合计" if key == "zh" else "Total"}  # fmt: skip
    any_sup = bool(sup.to_numpy().any())
    out.index.name, out.columns.name = f"from_{kind}_tier", f"to_{kind}_tier"
    out.attrs.update(
        from_month=day_from.isoformat(), to_month=c.day.isoformat(), kind=kind,
        row_labels={r: (names | extra)[r] for r in out.index},
        col_labels={k: (names | extra)[k] for k in out.columns},
        suppressed={str(r): {str(k): bool(sup.loc[r, k]) for k in sup.columns} for r in sup.index},
        up=None if any_sup else up, down=None if any_sup else down, same=None if any_sup else same,
        min_cell=principal.min_cell, snapshot_id=c.snap.snapshot_id, scope=principal.scope_label,
    )  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------ lists
def customer_list(
    principal: Principal,
    ctx: _Ctx,
    action: str,
    target: str,
    core_sql: str,
    params: dict[str, Any],
    *,
    order: str = "c.customer_id",
    limit: int = 500,
    app_url: str | None = None,
    detail: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Customers of ``core_sql`` (a query giving ``customer_id`` and value columns) with identity columns,
    scoped, masked and audit-logged (``action``); needs single-customer detail.

    ``core_sql`` must already apply the principal's scope. ``attrs["total"]`` counts all its rows.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    ident = ", ".join(f"{e} AS {n}" for n, e in LIST_IDENTITY.items())
    sql = (
        f"SELECT c.*, {ident}, count(*) OVER () AS _total FROM ({core_sql}) AS c "
        f"JOIN dim_customer AS d ON d.customer_id = c.customer_id ORDER BY {order}, c.customer_id LIMIT $lim"
    )
    t0 = time.perf_counter()
    df = ctx.query(sql, {**params, "lim": int(limit)})
    total = int(df["_total"].iloc[0]) if len(df) else 0
    df = df.drop(columns="_total")
    if len(df):
        person = (df["customer_type"] == "I").to_numpy()
        df["cust_name"] = mask_values(principal, "name", df["cust_name"], person)
        df["id_no"] = mask_values(principal, "id_no", df["id_no"], person)
        df["phone"] = mask_values(principal, "phone", df["phone"])
    base = (app_url.rstrip("/") + "/") if app_url else ""
    df["link"] = [f"{base}{APP_360_PATH}?customer={c}" for c in df["customer_id"]]
    df.attrs.update(total=total, as_of=ctx.day.isoformat(), snapshot_id=ctx.snap.snapshot_id)
    ms = round((time.perf_counter() - t0) * 1000, 1)
    info = {"as_of": ctx.day.isoformat(), **(detail or {}), "n_customers": total, "shown": len(df), "ms": ms}
    audit_log(ctx.home, principal, action, target, ctx.snap.snapshot_id, info)
    return df


def refuse_without_detail(principal: Principal, home: D.HomeLike, action: str, target: str) -> None:
    """:func:`require_detail` (and access), audit-logging a refusal."""
    try:
        require_detail(principal)
        _check_access(principal)
    except NotPermitted as exc:
        audit_log(D.resolve_home(home), principal, action, target, None, {"reason": str(exc)},
                  outcome="refused")  # fmt: skip
        raise


_LIST_VALUE = "customer_type, aum_adb, aum, contribution, aum_tier, contribution_tier"


def migration_customers(
    principal: Principal,
    from_month: str | dt.date,
    to_month: str | dt.date | None,
    from_tier: str,
    to_tier: str,
    *,
    kind: Kind = "aum",
    home: D.HomeLike = None,
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers behind one cell of :func:`migration_matrix`: scoped, masked, audit-logged.

    Parameters
    ----------
    principal : Principal
        Who asks; the role must allow single-customer detail (a refusal is audited too).
    from_month, to_month : str or date
        As :func:`migration_matrix`.
    from_tier, to_tier : str
        The cell: a tier id or ``NEW`` (row) / ``GONE`` (column).
    kind : {"aum", "contribution"}
        Which tiers.
    home : Home, str, Path or None
        The installation.
    limit : int
        At most this many customers (by customer id); ``attrs["total"]`` counts them all.
    app_url : str, optional
        Base URL of ``cim serve`` for ``link``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, customer_type, from_tier, to_tier, from_aum_adb, to_aum_adb, from_contribution,
        to_contribution``, the masked identity columns and ``link``.

    Raises
    ------
    NotPermitted
        Without single-customer detail.
    ValueError
        For an unknown tier.
    """
    target = f"{kind}:{from_tier}->{to_tier}"
    refuse_without_detail(principal, home, "value_migration_drill", target)
    c = _Ctx(principal, to_month, home)
    day_from = D.resolve_as_of(c.snap, from_month)
    ids = [t.id for t in _tier_defs(c.params, kind)]
    if from_tier not in [*ids, NEW] or to_tier not in [*ids, GONE]:
        raise ValueError(f"unknown cell {from_tier} -> {to_tier}; tiers are {', '.join(ids)} (+ NEW / GONE)")
    col = "aum_tier" if kind == "aum" else "contribution_tier"
    cond, named = named_scope(principal, "d", "s")
    core = (
        f"SELECT coalesce(a.customer_id, b.customer_id) AS customer_id, "
        f"coalesce(b.customer_type, a.customer_type) AS customer_type, "
        f"coalesce(a.{col}, '{NEW}') AS from_tier, coalesce(b.{col}, '{GONE}') AS to_tier, "
        "CAST(a.aum_adb AS DOUBLE) AS from_aum_adb, CAST(b.aum_adb AS DOUBLE) AS to_aum_adb, "
        "CAST(a.contribution AS DOUBLE) AS from_contribution, "
        "CAST(b.contribution AS DOUBLE) AS to_contribution "
        f"FROM (SELECT * FROM {c.table(day_from)} AS d WHERE ({cond})) AS a "
        f"FULL JOIN (SELECT * FROM {c.table()} AS d WHERE ({cond})) AS b ON a.customer_id = b.customer_id "
        f"WHERE coalesce(a.{col}, '{NEW}') = $ft AND coalesce(b.{col}, '{GONE}') = $tt"
    )
    return customer_list(principal, c, "value_migration_drill", target, core,
                         {**named, "ft": from_tier, "tt": to_tier}, limit=limit, app_url=app_url,
                         detail={"from_month": day_from.isoformat(), "cell": target})  # fmt: skip
