"""The value section of the 360 view: contribution by product and its trend, tiers, quality, potential, RFM
and the churn score, for one customer who is already in the viewer's scope.

Everything here is per customer, so a view never computes the whole bank:

* **contribution** of the as-of month by product: :func:`cimlib.value.contribution_by_product_sql`
  filtered to the customer (DuckDB pushes the filter into every table scan; about 8 ms, mostly planning);
* **trend**: the same figure for the last ``value.trend_months`` months of ``customer360.yaml``, read
  from the month's value cache (``warehouse/value/...``) when it exists, else by the same point query;
* **tiers and quality** from the customer's own AUM, contribution, products, tenure and loan class with the
  edges and rules of ``parameters/value.yaml``, exactly as the bank-wide value frame computes them;
* **potential quality** (a peer benchmark over the whole bank) and **RFM** (ranks over the whole bank):
  read from the month's value cache and RFM file when they exist (:func:`precompute_value` writes them),
  otherwise reported as not assessed;
* **churn**: the customer's row of ``cim churn score``'s file for the month, when there is one.

Amounts are balances-class data (``docs/access.md``): they are shown to roles with single-customer detail,
which :func:`cimlib.customer.customer_360` requires before calling this, and the view's one audit record
covers them. Nothing here writes an audit record.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cimlib.access import Snapshot
from cimlib.customer import _data as D
from cimlib.customer._settings import Settings

log = logging.getLogger(__name__)

#: The money columns of a contribution row (yuan for the month, rounded to the fen).
COMPONENTS = ("deposit_nii", "loan_nii", "fee_income", "operating_cost", "expected_loss", "contribution")
#: Columns of ``Customer360.contribution_by_product``.
BY_PRODUCT_COLUMNS = ("product_code", "product_name", "subtype", *COMPONENTS)
#: Columns of ``Customer360.contribution_trend``.
TREND_COLUMNS = ("month", "contribution")
_FIVE = ("NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS")


# ------------------------------------------------------------------------------------------- parameters
_churn_cache: dict[str, tuple[tuple[int, int], Any]] = {}
_lock = threading.Lock()


def _value_params(home: D.HomeLike) -> Any:
    from cimlib.value._tiers import value_params

    return value_params(home)


def _churn_definition(home: D.HomeLike, st: Settings) -> str | None:
    """The churn definition whose scores the view shows (``None`` when ``churn.yaml`` is absent or bad)."""
    if st.value.churn_definition:
        return st.value.churn_definition
    from cimlib.churn._params import churn_path, load_churn_params

    path = churn_path(D.resolve_home(home))
    try:
        s = path.stat()
    except FileNotFoundError:
        return None
    stamp = (s.st_mtime_ns, s.st_size)
    with _lock:
        hit = _churn_cache.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    try:
        name: str | None = load_churn_params(D.resolve_home(home)).model.definition
    except Exception:  # an invalid churn.yaml must not take the 360 view down; `cim churn` reports it
        log.warning("parameters/churn.yaml is invalid; the 360 view shows no churn score", exc_info=True)
        name = None
    with _lock:
        _churn_cache[str(path)] = (stamp, name)
    return name


# ---------------------------------------------------------------------------------------------- queries
def _by_product_sql(params: Any, snap: Snapshot) -> str:
    """The per-customer contribution query (cached per snapshot and parameter version)."""
    from cimlib.value import contribution_by_product_sql

    key = f"value360_sql:{params.digest()}"
    sql = snap.cache.get(key)
    if sql is None:
        sql = snap.cache[key] = (
            f"SELECT c.* FROM ({contribution_by_product_sql(params)}) AS c WHERE c.customer_id = $cid "
            "ORDER BY c.subtype NULLS LAST, c.product_code NULLS LAST"
        )
    return sql


def _named(snap: Snapshot, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` with named ``$params`` on the snapshot's reader connection (one thread)."""
    with snap.lock:
        cur = snap.con.execute(sql, params)
        return [d[0] for d in cur.description], cur.fetchall()


def _by_product(snap: Snapshot, params: Any, cid: str, day: dt.date) -> list[dict[str, Any]]:
    cols, rows = _named(snap, _by_product_sql(params, snap), {"as_of": day, "cid": cid})
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _sum(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {c: sum((Decimal(r[c] or 0) for r in rows), Decimal("0.00")) for c in COMPONENTS}


def _cached_rows(paths: list[Path], cid: str, snap: Snapshot, cols: str) -> dict[str, dict[str, Any]]:
    """The customer's row of each cached month file (``YYYY-MM`` file stem -> row)."""
    if not paths:
        return {}
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    c, rows = snap.query(
        f"SELECT regexp_extract(filename, '(\\d{{4}}-\\d{{2}})\\.parquet$', 1) AS month, {cols} "
        f"FROM read_parquet({files}, filename = true) WHERE customer_id = ?",
        [cid],
    )
    return {r[0]: dict(zip(c, r, strict=True)) for r in rows}


# ------------------------------------------------------------------------------------ tiers and quality
def _rank(value: Decimal, edges: list[float]) -> int:
    """The 0-based tier: the number of edges at or below ``value`` (as the value frame's SQL)."""
    return sum(1 for e in edges if value >= Decimal(str(e)))


def _tier(defs: list[Any], rank: int) -> dict[str, Any]:
    t = defs[rank]
    return {"id": t.id, "rank": rank, "en": t.en, "zh": t.zh}


def _months_between(start: Any, end: dt.date) -> int | None:
    """``date_diff('month', start, end)``: month boundaries crossed (None without a start date)."""
    if not isinstance(start, dt.date):
        return None
    return (end.year - start.year) * 12 + end.month - start.month


def _quality(params: Any, ctype: str, aum_rank: int, con_rank: int, n_products: int, tenure: int | None,
             worst: str | None) -> Any:  # fmt: skip
    """The first quality rule of the customer's type that holds (the value frame's CASE, in Python)."""
    if params.quality is None or params.tiers is None:
        return None
    aum_ids = [t.id for t in params.tiers.aum.tiers]
    con_ids = [t.id for t in params.tiers.contribution.tiers]
    five = _FIVE.index(worst) + 1 if worst in _FIVE else 0
    for r in params.quality.rules:
        if r.customer_type != ctype:
            continue
        if r.min_aum_tier is not None and aum_rank < aum_ids.index(r.min_aum_tier):
            continue
        if r.min_contribution_tier is not None and con_rank < con_ids.index(r.min_contribution_tier):
            continue
        if r.min_products is not None and n_products < r.min_products:
            continue
        if r.min_tenure_months is not None and (tenure if tenure is not None else -1) < r.min_tenure_months:
            continue
        if r.worst_loan_class is not None and five > _FIVE.index(r.worst_loan_class) + 1:
            continue
        return r
    return None


# ------------------------------------------------------------------------------------------------ churn
def _churn(home: D.HomeLike, snap: Snapshot, st: Settings, cid: str, day: dt.date) -> dict[str, Any] | None:
    from cimlib.churn._score import scores_meta, scores_path
    from cimlib.value._tiers import _pq

    name = _churn_definition(home, st)
    if name is None:
        return None
    path = scores_path(home, snap.snapshot_id, name, day)
    if not path.is_file():
        return None
    cols, rows = snap.query(
        f"SELECT churn_score, CAST(risk_decile AS INTEGER) AS risk_decile, value, reasons_en, reasons_zh_CN "
        f"FROM {_pq(path)} WHERE customer_id = ?",
        [cid],
    )
    if not rows:
        return None
    got = dict(zip(cols, rows[0], strict=True))
    version = None
    try:
        version = scores_meta(path).get("model_version")
    except Exception:  # metadata is a nicety; the scores are what matters
        log.debug("no metadata in %s", path, exc_info=True)

    def split(text: Any) -> list[str]:
        return [s.strip() for s in str(text).replace("；", ";").split(";") if s.strip()] if text else []

    reasons = {"en": split(got["reasons_en"]), "zh_CN": split(got["reasons_zh_CN"])}
    if not reasons["en"]:
        # scoring phrases reasons only for the watchlist's candidates: this customer's are computed now
        # (one customer's features and 31 small predictions: tens of milliseconds)
        try:
            from cimlib.churn._score import reasons_for

            reasons = reasons_for(cid, day, name, home=home, model_version=version)
        except Exception:  # reasons are an explanation; the score stands without them
            log.warning("could not compute churn reasons for the 360 view", exc_info=True)

    return {
        "definition": name,
        "model_version": version,
        "as_of": day.isoformat(),
        "churn_score": float(got["churn_score"]),
        "risk_decile": int(got["risk_decile"]),
        "value": float(got["value"]) if got["value"] is not None else None,
        "reasons_en": reasons["en"],
        "reasons_zh_CN": reasons["zh_CN"],
    }


# ------------------------------------------------------------------------------------------------ build
def value_section(
    snap: Snapshot,
    home: D.HomeLike,
    ident: dict[str, Any],
    months: list[dict[str, Any]],
    as_of: dt.date,
    st: Settings,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The value section of one customer's 360 view (the caller has checked detail and scope).

    Parameters
    ----------
    snap : Snapshot
        The published snapshot the view reads.
    home : Home or path
        The installation (``parameters/value.yaml``, ``churn.yaml``, the value and churn files).
    ident : dict
        The customer's ``dim_customer`` row (as the 360 view's scoped lookup returned it).
    months : list of dict
        The customer's ``mart_customer_month`` rows, ascending (as the 360 view read them).
    as_of : date
        The as-of date of the view.
    st : Settings
        ``parameters/customer360.yaml`` (``value.trend_months``, ``value.churn_definition``).

    Returns
    -------
    tuple
        ``(value, by_product, trend)``: the summary dict (see ``docs/value.md``, "In the 360 view"), the
        month's contribution by product (:data:`BY_PRODUCT_COLUMNS`; fee income and transaction costs on
        the row with ``product_code`` None) and the contribution trend (:data:`TREND_COLUMNS`). Money is
        float yuan; an empty summary with ``available`` False when ``parameters/value.yaml`` is invalid.
    """
    from cimlib.value._tiers import value_path

    t0 = time.perf_counter()
    cid, ctype = ident["customer_id"], ident["customer_type"]
    try:
        params = _value_params(home)
    except Exception as exc:  # the rest of the view still shows; `cim value` reports the file's problem
        log.warning("parameters/value.yaml could not be read; the 360 view shows no value section: %s", exc)
        return ({"available": False, "as_of": as_of.isoformat()}, D.frame(BY_PRODUCT_COLUMNS, []),
                D.frame(TREND_COLUMNS, []))  # fmt: skip
    cat = D.products(snap)
    rows = _by_product(snap, params, cid, as_of)
    by_product = D.frame(
        BY_PRODUCT_COLUMNS,
        [(r["product_code"], cat.get(r["product_code"] or "", (None,))[0], r["subtype"],
          *(float(r[c]) for c in COMPONENTS)) for r in rows],
    )  # fmt: skip
    total = _sum(rows)

    # --- trend: the cached months from the value cache, the others by the point query
    trend_days = [m["as_of_date"] for m in months if m["as_of_date"] <= as_of][-st.value.trend_months :]
    cached = {d: value_path(home, snap.snapshot_id, params, d) for d in trend_days if d != as_of}
    cached = {d: p for d, p in cached.items() if p.exists()}
    from_cache = _cached_rows(list(cached.values()), cid, snap, "CAST(contribution AS DECIMAL(18, 2)) AS c")
    trend_rows = []
    n_queries = 1
    for d in trend_days:
        key = f"{d:%Y-%m}"
        if d == as_of:
            c = total["contribution"]
        elif key in from_cache:
            c = Decimal(from_cache[key]["c"])
        else:
            c = _sum(_by_product(snap, params, cid, d))["contribution"]
            n_queries += 1
        trend_rows.append((key, float(c)))
    trend = D.frame(TREND_COLUMNS, trend_rows)

    # --- tiers and quality from the customer's own figures
    month = next((m for m in months if m["as_of_date"] == as_of), None) or {}
    out: dict[str, Any] = {
        "available": True,
        "as_of": as_of.isoformat(),
        "params": params.digest(),
        "expected_loss_included": bool(params.expected_loss.include_expected_loss),
        **{c: float(total[c]) for c in COMPONENTS},
    }
    tenure = _months_between(ident.get("first_open_date"), as_of)
    n_products = int(month.get("n_products") or 0)
    if params.tiers is not None:
        at, ct = params.tiers.aum, params.tiers.contribution
        adb = Decimal(str(round(float(month.get("deposit_adb") or 0), 2)))
        wealth = Decimal(str(round(float(month.get("wealth_aum") or 0), 2)))
        aum = Decimal(str(round(float(month.get("aum") or 0), 2)))
        basis = adb + wealth if at.measure == "aum_adb" else aum
        aum_rank = _rank(basis, at.edges)
        con_rank = _rank(total["contribution"], ct.edges(ctype))
        rule = _quality(params, ctype, aum_rank, con_rank, n_products, tenure, month.get("worst_five_class"))
        out.update(
            aum_measure=at.measure,
            aum_basis=float(basis),
            aum_tier=_tier(at.tiers, aum_rank),
            contribution_tier=_tier(ct.tiers, con_rank),
            is_quality=rule is not None,
            quality_rule=None if rule is None else {"id": rule.id, "en": rule.en, "zh": rule.zh},
        )
    # --- potential (peer benchmark) and RFM (bank-wide ranks): only when precomputed for the month
    vpath = value_path(home, snap.snapshot_id, params, as_of)
    out["potential"] = None
    if vpath.exists() and params.potential is not None:
        cols = "is_potential, CAST(benchmark AS DOUBLE) AS benchmark, share_of_wallet, peer_group, peer_size"
        row = _cached_rows([vpath], cid, snap, cols).get(f"{as_of:%Y-%m}")
        if row:
            out["potential"] = {k: v for k, v in row.items() if k != "month"}
    out["rfm"] = None
    rpath = rfm_path(home, snap.snapshot_id, params, as_of)
    if rpath.exists() and params.rfm is not None:
        cols = "r_score, f_score, m_score, rfm, segment, recency_days, frequency, monetary"
        row = _cached_rows([rpath], cid, snap, cols).get(f"{as_of:%Y-%m}")
        if row and row["segment"]:
            seg = next((s for s in params.rfm.segments if s.id == row["segment"]), None)
            names = {"en": seg.en, "zh": seg.zh} if seg else {"en": row["segment"], "zh": row["segment"]}
            out["rfm"] = {**{k: v for k, v in row.items() if k != "month"}, **names}
    out["churn"] = _churn(home, snap, st, cid, as_of)
    log.debug(
        "360 value section",
        extra={"customer_id": cid, "queries": n_queries, "ms": round((time.perf_counter() - t0) * 1000, 2)},
    )
    return out, by_product, trend


# ------------------------------------------------------------------------------------------- precompute
def rfm_path(home: D.HomeLike, snapshot_id: str, params: Any, as_of: dt.date) -> Path:
    """The bank-wide RFM scores of a month beside its value cache (``rfm-YYYY-MM.parquet``)."""
    from cimlib.value._tiers import value_path

    p = value_path(home, snapshot_id, params, as_of)
    return p.with_name(f"rfm-{p.name}")


def precompute_value(home: D.HomeLike = None, as_of: str | dt.date | None = None) -> dict[str, Any]:
    """Write the month's bank-wide value frame and RFM scores, which the 360 view reads when they exist.

    The view never computes them itself (0.3 s at 5,000 customers, seconds at a million). Run this after a
    build, from a scheduler, or let a preheated app kernel do it (:func:`cimlib.apps.warm_up`). Files are
    written once per snapshot, parameter version and month, atomically; later calls cost a ``stat``.

    Parameters
    ----------
    home : Home or path, optional
        The installation (default ``$CIM_HOME``).
    as_of : str or date, optional
        The month; the latest when None.

    Returns
    -------
    dict
        ``as_of``, ``value_path``, ``rfm_path`` and ``seconds``.
    """
    import pyarrow.parquet as pq

    from cimlib.value._rfm import _has_exact, month_end_back, rfm_sql
    from cimlib.value._tiers import _pq, value_table

    t0 = time.perf_counter()
    h = D.resolve_home(home)
    params = _value_params(h)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    vpath = value_table(h, snap, params, day)
    rpath = rfm_path(h, snap.snapshot_id, params, day)
    if params.rfm is not None and not rpath.exists():
        sql = rfm_sql(params, _pq(vpath), exact_recency=_has_exact(snap)) + " ORDER BY customer_id"
        args = {"as_of": day, "from": month_end_back(day, params.rfm.frequency_months)}
        table = snap.arrow(sql, args)
        tmp = rpath.with_name(f".{rpath.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, rpath)
    secs = round(time.perf_counter() - t0, 3)
    log.info("360 value precomputed for %s in %.2f s", f"{day:%Y-%m}", secs)
    return {"as_of": day.isoformat(), "value_path": str(vpath), "rfm_path": str(rpath), "seconds": secs}
