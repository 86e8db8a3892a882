"""OLAP cubes over the segmentation dimensions: build, store, pivot, slice, dice, drill down and through.

A **cube** is one month's customers grouped by ``GROUPING SETS`` over chosen dimensions (every subset of
them, except that a child of a hierarchy, ``branch``, is only grouped with its parent, ``county``), with
additive measures per cell; ``GROUPING_ID`` labels each row's level. It is written as Parquet to
``warehouse/cubes/<snapshot_id>/<dims_version>/<YYYY-MM>.parquet`` with a JSON manifest beside it, so it is
tied to both the data snapshot and the version of ``parameters/dimensions.yaml``; a new build or a
parameter change makes a new key, and readers (apps) read a built cube in milliseconds.

Every query takes a principal. Its row scope is applied to the aggregates (a county or branch manager's
pivot reads the cube's cells of their own org; a customer manager's is aggregated directly from their own
customers), cells of fewer than ``principal.min_cell`` customers are suppressed for roles without detail,
and drill-through to customers is scoped, masked and audit-logged like a target list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cimlib.access import NotPermitted, Principal, audit_log, mask_values, named_scope, require_detail
from cimlib.customer import _data as D
from cimlib.segmentation._dimensions import (
    _MAIN_CHANNEL,
    BASE_SQL,
    CONTRIBUTION_MACRO,
    Dimension,
    Dimensions,
    load_dimensions,
    prepare,
)

log = logging.getLogger(__name__)

#: The dimensions of the default cube: customer type, the org hierarchy (county > branch), deposit ADB,
#: AUM and the loan five-tier class. The finest grain is bounded by 2 x branches x 6 x 7 x 7 cells.
DEFAULT_DIMS: tuple[str, ...] = ("customer_type", "county", "branch", "deposit_adb", "aum", "five_class")
MAX_DIMS = 8
TOTAL = "_total"  # the member id of a subtotal or the grand total in a pivot
NONE = "_none"  # the member of customers a dimension puts in no member (e.g. a bucket list closed below)
APP_360_PATH = "voila/render/customer_360.ipynb"

#: Additive measures stored in the cube: name -> SQL aggregate over the base row ``c``.
SUMS: dict[str, str] = {
    "customers": "count(*)",
    "deposit_adb": "sum(c.deposit_adb)",
    "deposit_balance": "sum(c.deposit_balance)",
    "aum": "sum(c.aum)",
    "loan_balance": "sum(c.loan_balance)",
    "npl_balance": "sum(c.npl_balance)",
    "credit_line_amount": "sum(c.credit_line_amount)",
    "credit_line_used": "sum(c.credit_line_used)",
    "txn_count": "CAST(sum(c.txn_count) AS BIGINT)",
    "txn_amount": "sum(c.txn_amount)",
    "contribution": "sum(c.contribution)",
    "loan_customers": "count(*) FILTER (WHERE c.loan_balance > 0)",
    "deposit_customers": "count(*) FILTER (WHERE c.deposit_balance > 0)",
    "credit_line_customers": "count(*) FILTER (WHERE c.credit_line_amount > 0)",
}
#: Measures derived from the additive ones in every cell (subtotals included): numerator, denominator.
RATIOS: dict[str, tuple[str, str]] = {
    "utilisation": ("credit_line_used", "credit_line_amount"),
    "npl_ratio": ("npl_balance", "loan_balance"),
    "avg_deposit_adb": ("deposit_adb", "customers"),
    "avg_aum": ("aum", "customers"),
    "avg_loan_balance": ("loan_balance", "customers"),
    "avg_credit_line_amount": ("credit_line_amount", "customers"),
    "avg_txn_count": ("txn_count", "customers"),
    "avg_txn_amount": ("txn_amount", "customers"),
    "avg_contribution": ("contribution", "customers"),
}
MEASURES: tuple[str, ...] = (*SUMS, *RATIOS)
_BASE_MEASURES = (
    "deposit_adb", "deposit_balance", "aum", "loan_balance", "npl_balance", "credit_line_amount",
    "credit_line_used", "txn_count", "txn_amount", "contribution",
)  # fmt: skip
_FROM_MONTH = {
    "customer_type", "as_of_date", "deposit_adb", "deposit_balance", "aum", "loan_balance", "npl_balance",
    "n_products", "txn_count", "txn_amount", "customer_txn_count", "customer_txn_amount",
    "credit_line_amount", "credit_line_used", "worst_five_class",
}  # fmt: skip
_NEEDS_FULL_BASE = {"main_loan_form", "main_loan_product", "main_deposit_product"}
_IDENTITY = {
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
_ORG_MEMBER = re.compile(r"^[A-Za-z0-9_]{1,40}$")


class CubeError(ValueError):
    """A cube request that cannot be served: an unknown dimension, member or measure (with a suggestion)."""


@dataclasses.dataclass(frozen=True)
class CubeInfo:
    """A built (or found) cube: where it is and what it holds."""

    path: Path
    snapshot_id: str
    dims_version: str
    dimensions: tuple[str, ...]
    as_of: dt.date
    rows: int
    built: bool
    timings: dict[str, float]


# ------------------------------------------------------------------------------------------------ helpers
_dims_cache: dict[str, tuple[tuple[int, int], Dimensions]] = {}


def _load_dimensions(home: D.HomeLike) -> Dimensions:
    """``parameters/dimensions.yaml``, validated once per file version (parsing it cost ~40 ms a query)."""
    from cimlib.segmentation._dimensions import dimensions_path

    path = dimensions_path(D.resolve_home(home))
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _dims_cache.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    dims = load_dimensions(D.resolve_home(home))
    _dims_cache[str(path)] = (stamp, dims)
    return dims


def _suggest(word: str, choices: Sequence[str]) -> str:
    from cimlib.targeting._language import suggest

    hint = suggest(word, {c: None for c in choices})
    return f"; did you mean {hint!r}?" if hint else f"; expected one of {', '.join(choices)}"


def _dims(all_dims: Dimensions, ids: Sequence[str]) -> list[Dimension]:
    out: list[Dimension] = []
    for i in ids:
        if i not in all_dims.items:
            raise CubeError(
                f"unknown dimension {i!r} (parameters/dimensions.yaml){_suggest(i, list(all_dims.items))}"
            )
        d = all_dims.items[i]
        if d.kind == "period":
            raise CubeError(f"dimension {i!r} is the period: a cube is one month (use as_of)")
        if d not in out:
            out.append(d)
    return out


def _with_parents(all_dims: Dimensions, ids: Sequence[str]) -> list[str]:
    """``ids`` with every hierarchy parent of a member added before it (``branch`` brings ``county``)."""
    out: list[str] = []
    for i in ids:
        chain = []
        p: str | None = i
        while p is not None and p not in out and p not in chain:
            chain.append(p)
            p = all_dims.items[p].parent if p in all_dims.items else None
        out.extend(reversed(chain))
    return list(dict.fromkeys(out))


def _grouping_sets(dims: Sequence[Dimension]) -> list[tuple[str, ...]]:
    """Every subset of ``dims`` in which a child appears only with its parent (when the parent is here)."""
    ids = [d.id for d in dims]
    parent = {d.id: d.parent for d in dims if d.parent in ids}
    sets = []
    for r in range(len(ids) + 1):
        for combo in itertools.combinations(ids, r):
            if all(parent[c] in combo for c in combo if c in parent):
                sets.append(combo)
    return sets


def level_of(dim_ids: Sequence[str], grouped: Sequence[str]) -> int:
    """The ``GROUPING_ID`` of a cube row grouped by ``grouped`` (a bit set per dimension rolled up)."""
    n = len(dim_ids)
    return sum(1 << (n - 1 - i) for i, d in enumerate(dim_ids) if d not in grouped)


def _arrow(snap: Any, sql: str, params: dict[str, Any], home: D.HomeLike = None) -> Any:
    """Run ``sql`` on the read-only snapshot with all cores (readers default to one); an Arrow table."""
    with snap.all_cores() as con:
        if CONTRIBUTION_MACRO in sql:
            prepare(con, home)
        return con.sql(sql, params=params).to_arrow_table()


def _base_sql(columns: set[str], wide: bool, scope_sql: str = "TRUE", identity: bool = False) -> str:
    """One row per customer at ``$as_of`` with ``columns`` (of :data:`BASE_COLUMNS`), in scope.

    The latest month reads the customer wide table (one scan, no join); other months join the month
    facts to the customer dimension. Only dimensions on a customer's largest loan or deposit product need
    the full :data:`BASE_SQL`, whose product joins cost more than the rest of a cube.
    """
    if columns & _NEEDS_FULL_BASE:
        sql = BASE_SQL.rstrip() + f" AND ({scope_sql})"
        if identity:
            sql = (
                "SELECT b.*, "
                + ", ".join(f"{e} AS {n}" for n, e in _IDENTITY.items())
                + f" FROM ({sql}) AS b JOIN dim_customer AS d ON d.customer_id = b.customer_id"
            )
        return sql
    m = "d" if wide else "m"
    sel = [f"{m}.customer_id AS customer_id"]
    for c in sorted(columns - {"customer_id"}):
        if c == "main_channel":
            expr = _MAIN_CHANNEL.replace("m.", f"{m}.")
        elif c == "contribution":
            expr = "cv.contribution"
        else:
            expr = f"{m if c in _FROM_MONTH else 'd'}.{c}"
        sel.append(f"{expr} AS {c}")
    if identity:
        sel += [f"{e} AS {n}" for n, e in _IDENTITY.items() if n not in columns]
    cv = (
        f" LEFT JOIN {CONTRIBUTION_MACRO}($as_of) AS cv ON cv.customer_id = {m}.customer_id"
        if "contribution" in columns
        else ""
    )
    src = (
        f"mart_customer_wide AS d{cv} WHERE d.as_of_date = $as_of"
        if wide
        else f"mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id{cv} "
        "WHERE m.as_of_date = $as_of"
    )
    return f"SELECT {', '.join(sel)} FROM {src} AND ({scope_sql})"


def cube_sql(
    dims: Sequence[Dimension],
    *,
    wide: bool,
    sets: Sequence[Sequence[str]] | None = None,
    scope_sql: str = "TRUE",
) -> str:
    """The cube query of ``dims`` at ``$as_of`` (portable: ``GROUPING SETS`` and ``GROUPING_ID``).

    Parameters
    ----------
    dims : sequence of Dimension
        The cube's dimensions, in column order (the order of ``GROUPING_ID``'s bits).
    wide : bool
        ``$as_of`` is the latest month (read the wide table).
    sets : sequence of sequence of str, optional
        The grouping sets (default: :func:`_grouping_sets`, every allowed subset).
    scope_sql : str
        A condition on the customer (alias ``d``) with named parameters.

    Returns
    -------
    str
    """
    ids = [d.id for d in dims]
    cols = {d.column for d in dims} | set(_BASE_MEASURES)
    members = [f"coalesce({d.member_sql('s')}, '{NONE}') AS dim_{d.id}" for d in dims]
    inner = (
        f"SELECT {', '.join(members)}, {', '.join(f's.{c}' for c in _BASE_MEASURES)} "
        f"FROM ({_base_sql(cols, wide, scope_sql)}) AS s"
    )
    gsets = sets if sets is not None else _grouping_sets(dims)
    gs = ", ".join("(" + ", ".join(f"dim_{g}" for g in s) + ")" for s in gsets)
    level = f"GROUPING_ID({', '.join(f'dim_{i}' for i in ids)})" if ids else "0"
    aggs = ", ".join(f"{sql} AS {name}" for name, sql in SUMS.items())
    dim_cols = "".join(f"dim_{i}, " for i in ids)
    return (
        f"SELECT CAST({level} AS INTEGER) AS level, {dim_cols}{aggs} FROM ({inner}) AS c "
        f"GROUP BY GROUPING SETS ({gs})"
    )


def cube_dir(home: D.HomeLike, snapshot_id: str, dims_version: str) -> Path:
    """``warehouse/cubes/<snapshot_id>/<dims_version>/`` of ``home``."""
    return D.resolve_home(home).warehouse / "cubes" / snapshot_id / dims_version


def cube_path(home: D.HomeLike, snapshot_id: str, dims_version: str, as_of: dt.date,
              dims: Sequence[str] = DEFAULT_DIMS) -> Path:  # fmt: skip
    """Where the cube of ``dims`` at ``as_of`` lives: ``<YYYY-MM>.parquet`` for the default dimensions,
    ``<YYYY-MM>.<hash of dims>.parquet`` for another set."""
    key = (
        "" if tuple(dims) == DEFAULT_DIMS else "." + hashlib.sha256(",".join(dims).encode()).hexdigest()[:10]
    )
    return cube_dir(home, snapshot_id, dims_version) / f"{as_of:%Y-%m}{key}.parquet"


# ------------------------------------------------------------------------------------------------- build
def build_cube(
    home: D.HomeLike = None,
    as_of: str | dt.date | None = None,
    dims: Sequence[str] | None = None,
    *,
    dimensions: Dimensions | None = None,
    force: bool = False,
) -> CubeInfo:
    """Build one month's cube and store it (Parquet and a JSON manifest) under the warehouse.

    Every measure is additive (counts and sums), so any cell, subtotal or filtered total is a sum of
    cells; ratios (utilisation, NPL ratio, averages per customer) are derived when read. Contribution is
    not a measure yet: it needs the contribution model of issue 6.

    Parameters
    ----------
    home : Home or path, optional
        The installation (default ``$CIM_HOME``).
    as_of : str or date, optional
        ``YYYY-MM``; default the latest month of the warehouse.
    dims : sequence of str, optional
        Dimension ids (default :data:`DEFAULT_DIMS`); a hierarchy child brings its parent.
    dimensions : Dimensions, optional
        Loaded dimensions (default: ``parameters/dimensions.yaml`` of ``home``).
    force : bool
        Rebuild even when the cube of this snapshot, dimensions version and month exists.

    Returns
    -------
    CubeInfo

    Raises
    ------
    CubeError
        For an unknown dimension (with a suggestion) or more than :data:`MAX_DIMS` dimensions.
    AsOfError
        For a month not in the warehouse.
    """
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    h = D.resolve_home(home)
    all_dims = dimensions or _load_dimensions(h)
    want = list(dims) if dims else list(DEFAULT_DIMS)
    _dims(all_dims, want)  # clear errors first
    ids = tuple(_with_parents(all_dims, want))
    if len(ids) > MAX_DIMS:
        raise CubeError(f"a cube holds at most {MAX_DIMS} dimensions, got {len(ids)}: {', '.join(ids)}")
    ds = _dims(all_dims, ids)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    path = cube_path(h, snap.snapshot_id, all_dims.version, day, ids)
    if path.exists() and not force:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return CubeInfo(path, snap.snapshot_id, all_dims.version, ids, day, int(meta["rows"]), False,
                        meta.get("timings", {}))  # fmt: skip
    wide = day == D.as_of_dates(snap)[-1]
    sql = cube_sql(ds, wide=wide)
    t1 = time.perf_counter()
    table = _arrow(snap, sql, {"as_of": day}, h)
    t2 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    t3 = time.perf_counter()
    timings = {"query_s": round(t2 - t1, 3), "write_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3)}
    manifest = {
        "snapshot_id": snap.snapshot_id,
        "dims_version": all_dims.version,
        "dimensions": list(ids),
        "grouping_sets": len(_grouping_sets(ds)),
        "as_of": day.isoformat(),
        "rows": table.num_rows,
        "measures": list(SUMS),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "timings": timings,
    }
    mtmp = path.with_name(f".{path.stem}.json.{os.getpid()}.tmp")
    mtmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(mtmp, path.with_suffix(".json"))
    log.info("cube built", extra={"path": str(path), "rows": table.num_rows, **timings})
    return CubeInfo(path, snap.snapshot_id, all_dims.version, ids, day, table.num_rows, True, timings)


_frames: dict[str, tuple[int, pd.DataFrame]] = {}
_frames_lock = threading.Lock()


def _load(path: Path) -> pd.DataFrame:
    """A stored cube as pandas (measures as floats), cached per file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = path.stat().st_mtime_ns
    key = str(path)
    hit = _frames.get(key)
    if hit and hit[0] == stamp:
        return hit[1]
    t = pq.read_table(path)
    cols = [t.column(f.name).cast(pa.float64()) if pa.types.is_decimal(f.type) else t.column(f.name)
            for f in t.schema]  # fmt: skip
    df = pa.table(cols, names=t.schema.names).to_pandas()
    with _frames_lock:
        if len(_frames) > 32:
            _frames.clear()
        _frames[key] = (stamp, df)
    return df


# ------------------------------------------------------------------------------------------------- query
def _check_filters(all_dims: Dimensions, filters: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for dim_id, members in (filters or {}).items():
        d = _dims(all_dims, [dim_id])[0]
        vals = [members] if isinstance(members, str) else list(members)
        if not vals:
            raise CubeError(f"filter on {dim_id}: no members given")
        for v in vals:
            _check_member(d, v)
        out[dim_id] = [str(v) for v in vals]
    return out


def _check_member(d: Dimension, member: str) -> None:
    known = [m for m, _ in d.members]
    if d.kind == "org":
        if not _ORG_MEMBER.match(str(member)):
            raise CubeError(f"{d.id}: {member!r} is not an org code")
        return
    if member != NONE and member not in known:
        raise CubeError(f"{d.id} has no member {member!r}{_suggest(str(member), known)}")


def _scope_dims(principal: Principal) -> list[str]:
    if principal.scope == "county":
        return ["county"]
    if principal.scope == "branch":
        return ["branch"]
    return []


def _cells(
    principal: Principal,
    all_dims: Dimensions,
    need: list[str],
    day: dt.date,
    filters: dict[str, list[str]],
    home: D.HomeLike,
    snap: Any,
) -> pd.DataFrame:
    """The principal's cells grouped by ``need`` (dimension ids), filtered; additive measures as floats."""
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    extra = [] if principal.scope == "managed" else _scope_dims(principal)
    grouped = _with_parents(all_dims, list(dict.fromkeys([*need, *filters, *extra])))
    if principal.scope == "managed":
        # A customer manager's customers are not a cell of any stored cube: aggregate them directly
        # (a few hundred rows), once per snapshot, month and grouping.
        key = f"cube:{principal.staff_no}:{all_dims.version}:{day}:{','.join(grouped)}"
        df = snap.cache.get(key)
        if df is None:
            ssql, sparams = named_scope(principal, "d", "s")
            sql = cube_sql(_dims(all_dims, grouped), wide=day == D.as_of_dates(snap)[-1], sets=[grouped],
                           scope_sql=ssql)  # fmt: skip
            df = snap.cache[key] = _to_pandas(_arrow(snap, sql, {"as_of": day, **sparams}, home))
    else:
        ids = list(DEFAULT_DIMS) if set(grouped) <= set(DEFAULT_DIMS) else grouped
        info = build_cube(home, day, ids, dimensions=all_dims)
        cube = _load(info.path)
        df = cube[cube["level"] == level_of(info.dimensions, grouped)]
        if principal.scope == "county":
            df = df[df["dim_county"] == principal.org_code]
        elif principal.scope == "branch":
            df = df[df["dim_branch"] == principal.org_code]
    for dim_id, vals in filters.items():
        df = df[df[f"dim_{dim_id}"].isin(vals)]
    return df


def _to_pandas(table: Any) -> pd.DataFrame:
    from cimlib.targeting._run import to_pandas

    return to_pandas(table)


def _value(sums: pd.DataFrame, measure: str) -> pd.Series:
    if measure in SUMS:
        return sums[measure].astype("float64")
    num, den = RATIOS[measure]
    d = sums[den].astype("float64")
    return sums[num].astype("float64") / d.where(d != 0)


def _order(d: Dimension, present: Sequence[str]) -> list[str]:
    known = [m for m, _ in d.members]
    first = [m for m in known if m in present]
    rest = sorted(m for m in present if m not in known and m != NONE)
    return first + rest + ([NONE] if NONE in present else [])


def _table(
    principal: Principal, all_dims: Dimensions, rows: str, cols: str | None, day: dt.date,
    filters: dict[str, list[str]], home: D.HomeLike, snap: Any,
) -> tuple[pd.DataFrame, list[str], list[str]]:  # fmt: skip
    """The summed measures of every (row, col) cell with subtotals: a frame indexed (row, col)."""
    need = [rows] + ([cols] if cols else [])
    cells = _cells(principal, all_dims, need, day, filters, home, snap)
    r, c = f"dim_{rows}", f"dim_{cols}" if cols else None
    keys = [r] + ([c] if c else [])
    base = cells.groupby(keys, dropna=False)[list(SUMS)].sum()
    parts = [base]
    if c:
        parts.append(cells.groupby(r)[list(SUMS)].sum().assign(**{c: TOTAL}).set_index(c, append=True))
        parts.append(cells.groupby(c)[list(SUMS)].sum().assign(**{r: TOTAL}).set_index(r, append=True)
                     .reorder_levels([r, c]))  # fmt: skip
    grand = cells[list(SUMS)].sum().to_frame().T
    grand[r] = TOTAL
    if c:
        grand[c] = TOTAL
    parts.append(grand.set_index(keys))
    full = pd.concat(parts)
    if not c:
        full.index = pd.MultiIndex.from_arrays([full.index, [TOTAL] * len(full)], names=[r, "col"])
    row_ids = _order(all_dims[rows], [m for m in full.index.get_level_values(0).unique() if m != TOTAL])
    col_ids = (
        _order(all_dims[cols], [m for m in full.index.get_level_values(1).unique() if m != TOTAL])
        if cols else []
    )  # fmt: skip
    return full, [*row_ids, TOTAL], [*col_ids, TOTAL]


def _grid(full: pd.DataFrame, measure: str, row_ids: list[str], col_ids: list[str]) -> pd.DataFrame:
    vals = _value(full, measure)
    grid = vals.unstack(level=1) if len(vals) else pd.DataFrame()
    return grid.reindex(index=row_ids, columns=col_ids)


def _suppress(customers: pd.DataFrame, k: int) -> pd.DataFrame:
    """Cells of 1..k-1 customers, plus a second cell in every row or column where one alone would be
    derivable from its subtotal (the smallest other non-empty cell of that line)."""
    n = customers.fillna(0)
    sup = (n > 0) & (n < k)
    inner_r, inner_c = list(n.index[:-1]), list(n.columns[:-1])
    for _ in range(2):
        for rid in n.index:
            line = sup.loc[rid, inner_c]
            if int(line.sum()) == 1 and not sup.loc[rid, TOTAL]:
                cand = n.loc[rid, inner_c][(~line) & (n.loc[rid, inner_c] > 0)]
                if len(cand):
                    sup.loc[rid, cand.idxmin()] = True
        for cid in n.columns:
            line = sup.loc[inner_r, cid]
            if int(line.sum()) == 1 and not sup.loc[TOTAL, cid]:
                cand = n.loc[inner_r, cid][(~line) & (n.loc[inner_r, cid] > 0)]
                if len(cand):
                    sup.loc[cand.idxmin(), cid] = True
    return sup


def _nested(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(r): {str(c): (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                 for c, v in row.items()}
        for r, row in frame.to_dict(orient="index").items()
    }  # fmt: skip


def _month_back(snap: Any, day: dt.date, n: int) -> dt.date | None:
    idx = day.year * 12 + day.month - 1 - n
    y, m = divmod(idx, 12)
    for d in D.as_of_dates(snap):
        if (d.year, d.month) == (y, m + 1):
            return d
    return None


def pivot(
    principal: Principal,
    rows: str,
    cols: str | None = None,
    measure: str = "customers",
    as_of: str | dt.date | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Pivot one measure by the members of one or two dimensions, with subtotals and the grand total.

    Slicing (fix one member) and dicing (several members of several dimensions) are ``filters``.

    Parameters
    ----------
    principal : Principal
        Who asks. A county or branch manager sees the cells of their own org; a customer manager the
        aggregates of their own customers (computed directly); roles without detail see cells of fewer
        than ``principal.min_cell`` customers suppressed (``NaN``, flagged in ``attrs["suppressed"]``), plus
        one more cell in a line where a single suppressed cell could be derived from the subtotal.
    rows, cols : str
        Dimension ids (``parameters/dimensions.yaml``); ``cols`` optional.
    measure : str
        One of :data:`MEASURES` (counts and sums; ``utilisation``, ``npl_ratio`` and ``avg_*`` ratios).
    as_of : str or date, optional
        ``YYYY-MM``; default the latest month.
    filters : mapping of str to sequence of str, optional
        ``{dim_id: [member ids]}``: keep only these members (a slice with one member, a dice with more).
    home : Home or path, optional
        The installation.
    lang : {"en", "zh_CN"}
        Language of the labels in ``attrs``.

    Returns
    -------
    pandas.DataFrame
        Indexed by row member ids, then ``"_total"``; columns are column member ids then ``"_total"``
        (only ``"_total"`` without ``cols``). ``attrs``: ``measure``, ``rows``, ``cols``, ``filters``,
        ``as_of``, ``snapshot_id``, ``dims_version``, ``row_labels`` / ``col_labels`` (id -> label),
        ``customers`` (cell counts), ``share`` (of the grand total, additive measures), ``suppressed``,
        ``min_cell``, and ``mom`` / ``yoy`` (relative change against the month before / the year before,
        ``None`` when that month is not in the warehouse) with ``prev_month`` / ``year_ago``; each
        per-cell attribute is a ``{row: {col: value}}`` dict.

    Raises
    ------
    CubeError
        For an unknown dimension, member or measure (with a suggestion).
    NotPermitted
        For a role without access to customer data.
    """
    h = D.resolve_home(home)
    if measure not in MEASURES:
        raise CubeError(f"unknown measure {measure!r}{_suggest(measure, MEASURES)}")
    all_dims = _load_dimensions(h)
    if PERIOD in (rows, cols):
        return _period_pivot(principal, all_dims, rows, cols, measure, as_of, filters, h, lang)
    _dims(all_dims, [rows] + ([cols] if cols else []))
    if cols == rows:
        raise CubeError("rows and cols must be different dimensions")
    flt = _check_filters(all_dims, filters)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    full, row_ids, col_ids = _table(principal, all_dims, rows, cols, day, flt, h, snap)
    out = _grid(full, measure, row_ids, col_ids)
    customers = _grid(full, "customers", row_ids, col_ids)
    sup = (
        _suppress(customers, principal.min_cell)
        if not principal.can_view_detail
        else pd.DataFrame(False, index=out.index, columns=out.columns)
    )
    out = out.mask(sup)
    grand = out.loc[TOTAL, TOTAL] if measure in SUMS else None
    share = (out / grand) if grand else None

    def change(back: int) -> tuple[str | None, dict[str, Any] | None]:
        prev_day = _month_back(snap, day, back)
        if prev_day is None:
            return None, None
        pf, _, _ = _table(principal, all_dims, rows, cols, prev_day, flt, h, snap)
        prev = _grid(pf, measure, row_ids, col_ids)
        ch = (out - prev) / prev.abs().where(prev != 0)
        return prev_day.isoformat(), _nested(ch.mask(sup))

    prev_month, mom = change(1)
    year_ago, yoy = change(12)
    key = "zh" if lang.startswith("zh") else "en"
    total_label = "合计" if key == "zh" else "Total"

    def labels(dim_id: str | None, ids: list[str]) -> dict[str, str]:
        if dim_id is None:
            return {TOTAL: total_label}
        d = all_dims[dim_id]
        return {i: (total_label if i == TOTAL else d.label_of(i, lang)) for i in ids}

    out.index.name = rows
    out.columns.name = cols
    out.attrs.update(
        measure=measure, rows=rows, cols=cols, filters=flt, as_of=day.isoformat(),
        snapshot_id=snap.snapshot_id, dims_version=all_dims.version, min_cell=principal.min_cell,
        row_labels=labels(rows, row_ids), col_labels=labels(cols, col_ids),
        customers=_nested(customers.mask(sup)), share=_nested(share) if share is not None else None,
        suppressed=_nested(sup), mom=mom, yoy=yoy, prev_month=prev_month, year_ago=year_ago,
        scope=principal.scope_label,
    )  # fmt: skip
    return out


PERIOD = "period"
#: Months a period pivot shows by default (ending at ``as_of``).
PERIOD_MONTHS = 12


def _period_pivot(
    principal: Principal, all_dims: Dimensions, rows: str, cols: str | None, measure: str,
    as_of: str | dt.date | None, filters: Mapping[str, Sequence[str]] | None, home: D.HomeLike, lang: str,
) -> pd.DataFrame:  # fmt: skip
    """A pivot with the period on one axis: one column (or row) per month, from each month's cube.

    The months are the ``PERIOD_MONTHS`` up to ``as_of``, or those a ``period`` filter names
    (``YYYY-MM``). There is no total over months: balances are stocks, so the sum of twelve month-ends
    means nothing; the other dimension keeps its subtotal.
    """
    other = cols if rows == PERIOD else rows
    if other == PERIOD:
        raise CubeError("rows and cols must be different dimensions")
    flt_in = dict(filters or {})
    wanted = flt_in.pop(PERIOD, None)
    flt = _check_filters(all_dims, flt_in)
    snap = D.snapshot(home)
    day = D.resolve_as_of(snap, as_of)
    months = [d for d in D.as_of_dates(snap) if d <= day]
    if wanted:
        pick = {D.resolve_as_of(snap, w) for w in wanted}
        months = [d for d in months if d in pick]
    else:
        months = months[-PERIOD_MONTHS:]
    axis = other or "customer_type"
    _dims(all_dims, [axis])
    values, counts = {}, {}
    ids: list[str] = []
    for m in months:
        full, row_ids, _ = _table(principal, all_dims, axis, None, m, flt, home, snap)
        key = m.strftime("%Y-%m")
        values[key] = _grid(full, measure, row_ids, [TOTAL])[TOTAL]
        counts[key] = _grid(full, "customers", row_ids, [TOTAL])[TOTAL]
        ids += [i for i in row_ids if i not in ids]
    ids = [*_order(all_dims[axis], [i for i in ids if i != TOTAL]), TOTAL] if other else [TOTAL]
    out = pd.DataFrame(values).reindex(index=ids)
    customers = pd.DataFrame(counts).reindex(index=ids)
    sup = (
        _suppress(customers, principal.min_cell)
        if not principal.can_view_detail
        else pd.DataFrame(False, index=out.index, columns=out.columns)
    )
    out, customers = out.mask(sup), customers.mask(sup)
    total_label = "合计" if lang.startswith("zh") else "Total"
    labels = {i: (total_label if i == TOTAL else all_dims[axis].label_of(i, lang)) for i in ids}
    month_labels = {k: k for k in values}
    if rows == PERIOD:
        out, customers, sup = out.T, customers.T, sup.T
        row_labels, col_labels = month_labels, labels if other else {TOTAL: total_label}
    else:
        row_labels, col_labels = labels, month_labels
    out.index.name, out.columns.name = rows, cols
    out.attrs.update(
        measure=measure, rows=rows, cols=cols, filters={**flt, **({PERIOD: list(wanted)} if wanted else {})},
        as_of=day.isoformat(), snapshot_id=snap.snapshot_id, dims_version=all_dims.version,
        min_cell=principal.min_cell, row_labels=row_labels, col_labels=col_labels,
        customers=_nested(customers), share=None, suppressed=_nested(sup), mom=None, yoy=None,
        prev_month=None, year_ago=None, scope=principal.scope_label, months=list(values),
    )  # fmt: skip
    return out


def slice_cube(
    principal: Principal, rows: str, dim: str, member: str, cols: str | None = None,
    measure: str = "customers", as_of: str | dt.date | None = None, home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:  # fmt: skip
    """A pivot of the customers in one member of ``dim`` (a slice); see :func:`pivot`."""
    return pivot(principal, rows, cols, measure, as_of, {dim: [member]}, home, lang)


def dice(
    principal: Principal, rows: str, filters: Mapping[str, Sequence[str]], cols: str | None = None,
    measure: str = "customers", as_of: str | dt.date | None = None, home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:  # fmt: skip
    """A pivot of the customers in several members of several dimensions (a dice); see :func:`pivot`."""
    return pivot(principal, rows, cols, measure, as_of, filters, home, lang)


def drill_down(
    principal: Principal,
    dim: str,
    member: str,
    cols: str | None = None,
    measure: str = "customers",
    as_of: str | dt.date | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Drill down a hierarchy: the children of ``member`` of ``dim`` (a county's branches) as rows.

    Parameters
    ----------
    dim : str
        A dimension that is the parent of another (``county``).
    member : str
        The member to open (a county code).
    Others
        As :func:`pivot`.

    Returns
    -------
    pandas.DataFrame
        The pivot of the child dimension filtered to ``member``.
    """
    all_dims = _load_dimensions(home)
    _dims(all_dims, [dim])
    children = [d.id for d in all_dims if d.parent == dim]
    if not children:
        raise CubeError(f"dimension {dim!r} has no level below it")
    flt = {**dict(filters or {}), dim: [member]}
    return pivot(principal, children[0], cols, measure, as_of, flt, home, lang)


# ---------------------------------------------------------------------------------------- drill-through
DRILL_COLUMNS = [
    "customer_id", "customer_type", "cust_name", "id_no", "phone", "county_code", "county_name",
    "home_org_code", "home_org_name", "manager_no", "manager_name", "deposit_adb", "aum", "loan_balance",
    "npl_balance", "credit_line_amount", "txn_count", "txn_amount",
]  # fmt: skip


def drill(
    principal: Principal,
    cell: Mapping[str, str],
    as_of: str | dt.date | None = None,
    home: D.HomeLike = None,
    limit: int = 500,
    lang: str = "en",
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers of one cube cell (drill-through), scoped, masked and audit-logged.

    Parameters
    ----------
    principal : Principal
        Who asks; the role must allow single-customer detail.
    cell : mapping of str to str
        ``{dim_id: member id}`` for each fixed dimension of the cell (``"_total"`` or no entry: all).
    as_of : str or date, optional
        ``YYYY-MM``; default the latest month.
    home : Home or path, optional
        The installation.
    limit : int
        At most this many customers (by customer id); ``attrs["total"]`` counts them all.
    lang : str
        Unused yet (labels of the list are codes); kept for the apps' uniform calls.
    app_url : str, optional
        Base URL of ``cim serve`` for ``link`` (default a path relative to the server).

    Returns
    -------
    pandas.DataFrame
        :data:`DRILL_COLUMNS` and ``link`` (the 360 view). ``attrs``: ``total``, ``cell``, ``as_of``,
        ``snapshot_id``.

    Raises
    ------
    NotPermitted
        For a role without detail (audited as refused).
    CubeError
        For an unknown dimension or member.
    """
    h = D.resolve_home(home)
    all_dims = _load_dimensions(h)
    fixed = {k: str(v) for k, v in cell.items() if str(v) != TOTAL}
    ds = _dims(all_dims, list(fixed))
    for d in ds:
        _check_member(d, fixed[d.id])
    target = ",".join(f"{k}={v}" for k, v in fixed.items()) or "all"
    try:
        require_detail(principal)
        if principal.scope == "none":
            raise NotPermitted(f"role {principal.role} has no access to customer data")
    except NotPermitted as exc:
        audit_log(h, principal, "segment_drill", target, None, {"reason": str(exc)}, outcome="refused")
        raise
    t0 = time.perf_counter()
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    wide = day == D.as_of_dates(snap)[-1]
    ssql, params = named_scope(principal, "d", "s")
    params["as_of"] = day
    # the drill list shows no contribution: computing it for the whole bank would cost more than the list
    cols = {d.column for d in ds} | (set(_BASE_MEASURES) - {"contribution"}) | {"customer_type"}
    conds = []
    for i, d in enumerate(ds):
        member = fixed[d.id]
        if member == NONE:
            conds.append(f"({d.member_sql('s')}) IS NULL")
        else:
            conds.append(f"({d.member_sql('s')}) = $c{i}")
            params[f"c{i}"] = member
    where = " AND ".join(conds) or "TRUE"
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params["lim"] = int(limit)
    sel = ", ".join(f"s.{c}" for c in DRILL_COLUMNS)
    sql = (
        f"SELECT {sel}, count(*) OVER () AS _total FROM ({_base_sql(cols, wide, ssql, identity=True)}) AS s "
        f"WHERE {where} ORDER BY s.customer_id LIMIT $lim"
    )
    df = _to_pandas(_arrow(snap, sql, params, h))
    total = int(df["_total"].iloc[0]) if len(df) else 0
    df = df.drop(columns="_total")
    if len(df):
        person = (df["customer_type"] == "I").to_numpy()
        df["cust_name"] = mask_values(principal, "name", df["cust_name"], person)
        df["id_no"] = mask_values(principal, "id_no", df["id_no"], person)
        df["phone"] = mask_values(principal, "phone", df["phone"])
    base = (app_url.rstrip("/") + "/") if app_url else ""
    df["link"] = [f"{base}{APP_360_PATH}?customer={c}" for c in df["customer_id"]]
    df.attrs.update(total=total, cell=fixed, as_of=day.isoformat(), snapshot_id=snap.snapshot_id)
    ms = round((time.perf_counter() - t0) * 1000, 1)
    detail = {"as_of": day.isoformat(), "cell": fixed, "n_customers": total, "shown": len(df), "ms": ms}
    audit_log(h, principal, "segment_drill", target, snap.snapshot_id, detail)
    return df
