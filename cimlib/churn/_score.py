"""Scoring a month with the production churn model, and the watchlist built on the scores.

``score`` runs the latest saved model of a definition on one month's customers (everyone holding a
product that month) and writes the scores, risk deciles and reasons to the warehouse folder
``warehouse/churn/<snapshot_id>/<definition>/<YYYY-MM>.parquet``, beside the snapshot they came from (the
snapshot file itself stays immutable). The watchlist reads them back: the important customers, ranked by
risk x value, per branch and per manager, scoped, masked and audited like a target list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cimlib.access import NotPermitted, Principal, audit_log, mask_values, named_scope, require_detail
from cimlib.churn._backtest import require_bank_wide
from cimlib.churn._features import FEATURES, features_frame
from cimlib.churn._params import load_churn_params
from cimlib.customer import _data as D


def _change(en: str, zh: str) -> Any:
    """A reason template for a signed change: "deposit ADB fell 62% in 3 months" / "rose 40%"."""

    def phrase(f: dict[str, Any], lang: str) -> str:
        v = f["value"]
        up = isinstance(v, int | float) and v > 0
        if lang == "zh_CN":
            return zh.format(dir="上升" if up else "下降", **{k: f[k] for k in ("pct", "text")})
        return en.format(dir="rose" if up else "fell", **{k: f[k] for k in ("pct", "text")})

    return phrase


def _flag(en: tuple[str, str], zh: tuple[str, str]) -> Any:
    """A reason template for a 1/0 feature: the first words when it is 1, the second when 0."""

    def phrase(f: dict[str, Any], lang: str) -> str:
        i = 0 if f["value"] and f["value"] == f["value"] else 1
        return (zh if lang == "zh_CN" else en)[i]

    return phrase


def _t(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh_CN": zh}


#: Plain-words templates of the features that can raise churn risk (see cimlib.churn._reasons for the
#: fields: {pct} 62%, {money} yuan / 万元, {value} the number).
REASON_TEMPLATES: dict[str, Any] = {
    "adb_change_1m": _change("deposit ADB {dir} {pct} on last month", "日均存款较上月{dir}{pct}"),
    "adb_change_3m": _change("deposit ADB {dir} {pct} in 3 months", "日均存款3个月{dir}{pct}"),
    "adb_vs_6m_avg": _change("deposit ADB {dir} {pct} against its 6-month average",
                             "日均存款较6个月均值{dir}{pct}"),
    "aum_change_3m": _change("AUM {dir} {pct} in 3 months", "AUM 3个月{dir}{pct}"),
    "end_vs_adb": _t("month-end balance {ratio} of the month's ADB", "月末余额为当月日均的{ratio}"),
    "net_flow_to_adb_3m": _t("net flow of {pct_signed} of ADB in 3 months",
                             "3个月净流入相当于日均的{pct_signed}"),
    "outflow_to_adb_3m": _t("outflows of {ratio} of ADB in 3 months", "3个月流出相当于日均的{ratio}"),
    "other_bank_share_3m": _t("{pct_abs} of transactions with other banks", "{pct_abs}的交易对手为他行"),
    "counter_share_3m": _t("{pct_abs} of transactions at the counter", "柜面交易占比{pct_abs}"),
    "digital_share_3m": _t("{pct_abs} of transactions on digital channels", "电子渠道交易占比{pct_abs}"),
    "txn_count": _t("{value:.0f} customer transactions this month", "本月主动交易{value:.0f}笔"),
    "txn_avg_3m": _t("{value:.1f} customer transactions a month", "月均主动交易{value:.1f}笔"),
    "txn_change_3m": _change("customer transactions {dir} {pct} on the 3 months before",
                             "主动交易笔数较前3个月{dir}{pct}"),
    "months_since_txn": _t("no customer transaction for {value:.0f} months", "{value:.0f}个月无主动交易"),
    "products_change_3m": _t("{value:+.0f} products in 3 months", "3个月持有产品数变化{value:+.0f}"),
    "n_products": _t("holds {value:.0f} products", "持有{value:.0f}个产品"),
    "n_deposit_accounts": _t("{value:.0f} open deposit accounts", "{value:.0f}个存款账户"),
    "n_cards": _t("{value:.0f} cards", "持卡{value:.0f}张"),
    "has_loan": _flag(("has a loan with the bank", "no loan with the bank"), ("有贷款", "在本行无贷款")),
    "has_wealth": _flag(("holds a wealth product", "no wealth product"), ("持有理财产品", "未持有理财产品")),
    "deposit_adb": _t("deposit ADB {money}", "日均存款{money}"),
    "aum": _t("AUM {money}", "AUM {money}"),
    "time_maturing_3m": _t("time deposits of {money} mature within 3 months", "3个月内到期定期存款{money}"),
    "demand_share": _t("{pct_abs} of deposits on demand", "活期占比{pct_abs}"),
    "wealth_share": _t("wealth products {pct_abs} of AUM", "理财占AUM的{pct_abs}"),
    "tenure_months": _t("customer for {value:.0f} months", "开户{value:.0f}个月"),
    "age": _t("aged {value:.0f}", "年龄{value:.0f}岁"),
}

#: Said when no single feature adds 0.1 point of churn probability: the risk is the sum of small signals.
NO_SINGLE_REASON = {
    "en": "no single strong signal: several small ones together",
    "zh_CN": "无单一突出信号，多项小信号叠加",
}

WATCHLIST_COLUMNS = [
    "rank", "customer_id", "customer_type", "cust_name", "county_name", "home_org_code", "home_org_name",
    "manager_no", "manager_name", "churn_score", "risk_decile", "value", "risk_x_value", "reasons",
]  # fmt: skip


def scores_meta(path: Path) -> dict[str, Any]:
    """What :func:`score` recorded in a scores file: definition, model version, month, snapshot, count."""
    return json.loads((pq.read_schema(path).metadata or {}).get(b"cim", b"{}"))


def scores_path(home: D.HomeLike, snapshot_id: str, definition: str, as_of: dt.date) -> Path:
    """Where one month's scores of a definition live (beside the snapshot they were computed on)."""
    h = D.resolve_home(home)
    return h.warehouse / "churn" / snapshot_id / definition / f"{as_of:%Y-%m}.parquet"


def score(
    principal: Principal,
    as_of: str | dt.date | None = None,
    definition: str | None = None,
    *,
    home: D.HomeLike = None,
    model_dir: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Score one month's customers with the latest model of a definition and write the scores.

    Parameters
    ----------
    principal : Principal
        A role scoped to all orgs (scores cover the whole bank; the watchlist scopes them).
    as_of : str, date or None
        The month; the latest when None.
    definition : str, optional
        The definition; the model's default when None.
    home : Home, path or None
        The installation.
    model_dir : Path, optional
        A saved model folder; the latest under ``outputs/models/churn/<definition>`` when None.
    progress : callable, optional
        Called with a short message at each step (long jobs show where they are).

    Returns
    -------
    dict
        ``path, as_of, definition, model_version, n_scored, n_with_reasons, seconds`` (per step).

    Raises
    ------
    NotPermitted
        For a role not scoped to all orgs.
    FileNotFoundError
        When no model was saved yet (run ``cim churn backtest`` first).
    """
    from cimlib.churn._reasons import explain, occlusion_contributions
    from cimlib.churn._store import latest_model, load_model

    say = progress or (lambda _msg: None)
    h = D.resolve_home(home)
    params = load_churn_params(h)
    name, _ = params.definition(definition)
    try:
        require_bank_wide(principal)
    except NotPermitted as exc:
        audit_log(h, principal, "churn_score", name, None, {"reason": str(exc)}, outcome="refused")
        raise
    folder = model_dir or latest_model(h.root / "outputs" / "models" / "churn" / name)
    if folder is None:
        raise FileNotFoundError(
            f"no churn model for definition {name!r} under outputs/models/churn/; run `cim churn backtest "
            f"--definition {name}` first"
        )
    model, card = load_model(folder)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    secs: dict[str, float] = {}
    t = time.perf_counter()
    say(f"features for {day:%Y-%m}")
    with snap.all_cores() as con:
        feats = features_frame(con, [day], params.observation_months)
    feats = feats[(feats["n_products"] > 0) | (feats["aum"] > 0)].reset_index(drop=True)
    secs["features"] = time.perf_counter() - t
    t = time.perf_counter()
    say(f"scoring {len(feats):,} customers")
    x = feats[list(FEATURES)]
    proba = model.predict_proba(x)[:, 1] if len(x) else np.zeros(0)
    secs["predict"] = time.perf_counter() - t
    # reasons for the customers a watchlist can show: value above the floor and risk high enough
    wl = params.watchlist
    value = feats[f"value_{wl.value_measure}_3m"].fillna(0).to_numpy(dtype=float)
    decile = _deciles(proba)
    need = (value >= wl.min_adb) & (decile >= wl.min_risk_decile)
    t = time.perf_counter()
    say(f"reasons for {int(need.sum()):,} customers")
    reasons_en = np.full(len(feats), None, dtype=object)
    reasons_zh = np.full(len(feats), None, dtype=object)
    if need.any():
        rows = x[need]
        contrib = occlusion_contributions(model, rows)  # once, phrased in both languages
        for lang, target in (("en", reasons_en), ("zh_CN", reasons_zh)):
            # leavers are rare (about 1% a quarter), so a feature adding 0.1 point of churn probability
            # is a reason worth naming
            r = explain(model, rows, templates=REASON_TEMPLATES, n=wl.reasons, lang=lang,
                        contributions=contrib, min_contribution=0.001)
            text = np.array(r["reasons"].fillna("").tolist(), dtype=object)
            text[text == ""] = NO_SINGLE_REASON[lang]
            target[need] = text
    secs["reasons"] = time.perf_counter() - t
    table = pa.table({
        "customer_id": pa.array(feats["customer_id"].astype(str).to_numpy()),
        "as_of_date": pa.array([day] * len(feats), pa.date32()),
        "churn_score": pa.array(proba, pa.float64()),
        "risk_decile": pa.array(decile, pa.int8()),
        "deposit_adb": pa.array(feats["deposit_adb"].to_numpy(dtype=float)),
        "aum": pa.array(feats["aum"].to_numpy(dtype=float)),
        "value": pa.array(value),
        "reasons_en": pa.array(reasons_en.tolist(), pa.string()),
        "reasons_zh_CN": pa.array(reasons_zh.tolist(), pa.string()),
    })
    version = folder.name
    meta = {
        "definition": name, "model_version": version, "as_of": day.isoformat(),
        "value_measure": f"{wl.value_measure}, average of the 3 months to as_of",
        "snapshot_id": snap.snapshot_id, "n_scored": len(feats),
    }
    table = table.replace_schema_metadata({"cim": json.dumps(meta)})
    path = scores_path(h, snap.snapshot_id, name, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    audit_log(h, principal, "churn_score", name, snap.snapshot_id,
              {"as_of": day.isoformat(), "model_version": version, "n_scored": len(feats)})
    return {
        "path": str(path), "as_of": day.isoformat(), "definition": name, "model_version": version,
        "n_scored": len(feats), "n_with_reasons": int(need.sum()), "seconds": secs,
        "model_card": {k: card.get(k) for k in ("definition", "backtest") if k in card},
    }


_models: dict[str, tuple[float, Any]] = {}


def _model_at(folder: Path) -> Any:
    """A saved model, loaded once per process (a 360 view must not reload it each time)."""
    from cimlib.churn._store import load_model

    stamp = (folder / "model_card.json").stat().st_mtime
    hit = _models.get(str(folder))
    if hit is None or hit[0] != stamp:
        hit = (stamp, load_model(folder)[0])
        _models[str(folder)] = hit
    return hit[1]


def reasons_for(
    customer_id: str,
    as_of: dt.date,
    definition: str | None = None,
    *,
    home: D.HomeLike = None,
    model_version: str | None = None,
) -> dict[str, list[str]]:
    """One customer's churn reasons, computed on demand (scoring stores them only for watchlist candidates).

    The caller has already checked that the customer is in the viewer's scope (the 360 view does).

    Parameters
    ----------
    customer_id : str
        The customer.
    as_of : date
        The scored month.
    definition : str, optional
        The churn definition; the model's default when None.
    home : Home, path or None
        The installation.
    model_version : str, optional
        The version folder that scored the month (the scores file's metadata); the latest when None or gone.

    Returns
    -------
    dict
        ``{"en": [...], "zh_CN": [...]}``; empty lists when there is no model or no features that month.
    """
    from cimlib.churn._reasons import explain, occlusion_contributions
    from cimlib.churn._store import latest_model

    h = D.resolve_home(home)
    params = load_churn_params(h)
    name, _ = params.definition(definition)
    root = h.root / "outputs" / "models" / "churn" / name
    folder = root / model_version if model_version and (root / model_version).is_dir() else latest_model(root)
    if folder is None:
        return {"en": [], "zh_CN": []}
    model = _model_at(folder)
    snap = D.snapshot(h)
    with snap.all_cores() as con:
        feats = features_frame(con, [as_of], params.observation_months, customers=[customer_id])
    if not len(feats):
        return {"en": [], "zh_CN": []}
    x = feats[list(FEATURES)]
    contrib = occlusion_contributions(model, x)
    out: dict[str, list[str]] = {}
    for lang in ("en", "zh_CN"):
        r = explain(model, x, templates=REASON_TEMPLATES, n=params.watchlist.reasons, lang=lang,
                    contributions=contrib, min_contribution=0.001)
        texts = [t for t in (r.iloc[0].get(f"reason_{i}") for i in range(1, params.watchlist.reasons + 1))
                 if isinstance(t, str) and t]  # fmt: skip
        out[lang] = texts or [NO_SINGLE_REASON[lang]]
    return out


def _deciles(scores: np.ndarray) -> np.ndarray:
    """Risk decile 1 (lowest) .. 10 (highest) by rank; ties share the decile of their first rank."""
    n = len(scores)
    if not n:
        return np.zeros(0, dtype=np.int8)
    ranks = pd.Series(scores).rank(method="min").to_numpy()
    return np.minimum(((ranks - 1) * 10 // n).astype(int) + 1, 10).astype(np.int8)


def watchlist(
    principal: Principal,
    as_of: str | dt.date | None = None,
    definition: str | None = None,
    *,
    by: str = "branch",
    limit: int | None = None,
    lang: str = "en",
    home: D.HomeLike = None,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The important customers most likely to leave, ranked by risk x value within each branch or manager.

    Parameters
    ----------
    principal : Principal
        Who asks: rows are limited to their scope inside the query, personal data is masked as the role
        requires, and the list is audit-logged. The role must allow single-customer detail.
    as_of : str, date or None
        The scored month; the latest when None.
    definition : str, optional
        The churn definition; the model's default when None.
    by : {"branch", "manager"}
        Rank within each branch (``home_org_code``) or each customer manager.
    limit : int, optional
        Keep the top ``limit`` customers of each branch or manager.
    lang : {"en", "zh_CN"}
        Language of the reasons.
    home : Home, path or None
        The installation.
    app_url : str, optional
        Base URL of ``cim serve`` for the ``link`` column (a relative link when None).

    Returns
    -------
    pandas.DataFrame
        :data:`WATCHLIST_COLUMNS` plus ``link`` to the 360 view; ``attrs`` hold ``as_of``, ``definition``,
        ``model_version`` and ``snapshot_id``.

    Raises
    ------
    NotPermitted
        For a role without single-customer detail.
    FileNotFoundError
        When the month was not scored on the current snapshot (run ``cim churn score``).
    """
    from cimlib.targeting._run import APP_360_PATH

    if by not in ("branch", "manager"):
        raise ValueError(f"by must be 'branch' or 'manager', not {by!r}")
    h = D.resolve_home(home)
    params = load_churn_params(h)
    name, _ = params.definition(definition)
    try:
        require_detail(principal)
    except NotPermitted as exc:
        audit_log(h, principal, "churn_watchlist", name, None, {"reason": str(exc)}, outcome="refused")
        raise
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    path = scores_path(h, snap.snapshot_id, name, day)
    if not path.is_file():
        raise FileNotFoundError(
            f"{day:%Y-%m} has no churn scores for definition {name!r} on the current warehouse snapshot; run "
            f"`cim churn score --as-of {day:%Y-%m} --definition {name}`"
        )
    meta = scores_meta(path)
    wl = params.watchlist
    cond, named = named_scope(principal, "d", "scope")
    tiers_sql, tier_params = _tier_filter(wl.tiers, h)
    key = "d.home_org_code" if by == "branch" else "coalesce(d.manager_no, '')"
    reasons_col = "s.reasons_zh_CN" if lang.startswith("zh") else "s.reasons_en"
    sql = f"""
WITH s AS (SELECT * FROM read_parquet($path))
SELECT d.customer_id, d.customer_type, d.cust_name, d.county_name, d.home_org_code, d.home_org_name,
    d.manager_no, d.manager_name, s.churn_score, s.risk_decile, s.value,
    s.churn_score * s.value AS risk_x_value, {reasons_col} AS reasons,
    row_number() OVER (PARTITION BY {key} ORDER BY s.churn_score * s.value DESC, d.customer_id) AS rank
FROM s
JOIN dim_customer AS d ON d.customer_id = s.customer_id
WHERE ({cond}) AND s.value >= $min_value AND s.risk_decile >= $min_decile {tiers_sql}
{"QUALIFY rank <= $limit" if limit is not None else ""}
ORDER BY {"d.home_org_code" if by == "branch" else key}, rank
"""
    t0 = time.perf_counter()
    with snap.all_cores() as con:
        df = con.sql(sql, params={
            "path": str(path), "min_value": float(wl.min_adb),
            "min_decile": int(wl.min_risk_decile),
            **({"limit": int(limit)} if limit is not None else {}),
            **named, **tier_params,
        }).df()
    person = (df["customer_type"] == "I").tolist()
    df["cust_name"] = mask_values(principal, "name", df["cust_name"].tolist(), person)
    df = df.reindex(columns=WATCHLIST_COLUMNS)
    base = (app_url.rstrip("/") + "/") if app_url else ""
    df["link"] = [f"{base}{APP_360_PATH}?customer={c}" for c in df["customer_id"]]
    df.attrs.update(as_of=day.isoformat(), definition=name, model_version=meta.get("model_version"),
                    snapshot_id=snap.snapshot_id, by=by)
    audit_log(h, principal, "churn_watchlist", name, snap.snapshot_id,
              {"as_of": day.isoformat(), "by": by, "n_customers": len(df),
               "ms": round((time.perf_counter() - t0) * 1000, 1)})
    return df


def _tier_filter(tiers: list[str], home: Any) -> tuple[str, dict[str, Any]]:
    """SQL keeping the watchlist to the important AUM tiers of ``parameters/value.yaml`` (all when empty).

    The tier is that of the scored month, on the tiers' measure (``aum_adb`` = deposit ADB + wealth, or
    month-end ``aum``), exactly as :func:`cimlib.value.customer_value` assigns it.
    """
    if not tiers:
        return "", {}
    from cimlib.value import load_value_params

    vp = load_value_params(home)
    if vp.tiers is None:
        raise ValueError("parameters/churn.yaml watchlist.tiers needs the tiers: of parameters/value.yaml")
    aum = vp.tiers.aum
    ids = [t.id for t in aum.tiers]
    unknown = [t for t in tiers if t not in ids]
    if unknown:
        raise ValueError(f"parameters/churn.yaml watchlist.tiers: unknown AUM tier(s) {unknown}; "
                         f"tiers: {ids}")
    bounds = [0.0, *aum.edges]
    measure = "m.deposit_adb + m.wealth_aum" if aum.measure == "aum_adb" else "m.aum"
    parts, params = [], {}
    for t in tiers:
        k = ids.index(t)
        lo = bounds[k]
        hi = bounds[k + 1] if k + 1 < len(bounds) else None
        params[f"tier_lo_{k}"] = float(lo)
        cond = f"({measure}) >= $tier_lo_{k}"
        if hi is not None:
            params[f"tier_hi_{k}"] = float(hi)
            cond += f" AND ({measure}) < $tier_hi_{k}"
        parts.append(f"({cond})")
    sql = (
        "AND EXISTS (SELECT 1 FROM mart_customer_month AS m WHERE m.customer_id = s.customer_id "
        f"AND m.as_of_date = s.as_of_date AND ({' OR '.join(parts)}))"
    )
    return sql, params
