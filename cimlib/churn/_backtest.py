"""Out-of-time backtest of the churn model, and the production model it leaves behind.

The labelled scoring months of a definition (those whose whole outcome window is in the warehouse) are
split by time: the last ``model.test_months`` are the test set; the model trains on the months whose
outcome windows END before the first test month, so nothing the test set will be judged on was known at
training time. Scoring months need at least one month of history before them.

After the backtest the same estimator is fitted again on the most recent labelled months (the same
number of months as in training) and saved, with the backtest's figures in its model card: that is the
model ``cim churn score`` uses.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlib.access import NotPermitted, Principal, audit_log
from cimlib.churn._features import FEATURES, features_frame
from cimlib.churn._labels import labelled_months, labels_frame, month_index
from cimlib.churn._params import ChurnParams, load_churn_params
from cimlib.customer import _data as D


class BacktestError(ValueError):
    """Not enough labelled months for an out-of-time backtest (the message says how many there are)."""


@dataclass
class Backtest:
    """What :func:`backtest` found and where it wrote it."""

    definition: str
    train_months: list[dt.date]
    test_months: list[dt.date]
    final_months: list[dt.date]
    metrics: dict[str, dict[str, Any]]
    deciles: pd.DataFrame
    calibration: pd.DataFrame
    model_dir: Path
    n_train: int
    n_test: int
    seconds: dict[str, float] = field(default_factory=dict)
    charts: dict[str, Path] = field(default_factory=dict)


def require_bank_wide(principal: Principal) -> None:
    """Model training and scoring read every customer: only a role scoped to all orgs may run them.

    Raises
    ------
    NotPermitted
        For any other scope.
    """
    if principal.scope != "all":
        raise NotPermitted(
            f"role {principal.role} is scoped to {principal.scope_label}; churn models are trained and "
            "scored on the whole bank (a role with scope all)"
        )


def split_months(
    months: list[dt.date], outcome_months: int, test_months: int, max_train_months: int
) -> tuple[list[dt.date], list[dt.date], list[dt.date]]:
    """The train, test and final-model scoring months of an out-of-time backtest.

    Parameters
    ----------
    months : list of date
        The labelled scoring months, ascending (each with its whole outcome window in the data).
    outcome_months : int
        The definition's outcome window.
    test_months : int
        How many of the last labelled months to test on.
    max_train_months : int
        At most this many training months (the latest ones that qualify).

    Returns
    -------
    (train, test, final)
        ``train``: months whose outcome windows end at or before the first test month; ``final``: the
        latest ``len(train)`` labelled months, for the model that goes into production.

    Raises
    ------
    BacktestError
        When there is no training month left.
    """
    usable = months[1:]  # the first month has no history before it
    if len(usable) <= test_months:
        raise BacktestError(
            f"{len(usable)} labelled scoring month(s) with history; an out-of-time backtest needs more than "
            f"{test_months} (test) - load more months"
        )
    test = usable[-test_months:]
    cut = month_index(test[0])
    train = [m for m in usable if month_index(m) + outcome_months <= cut][-max_train_months:]
    if not train:
        raise BacktestError(
            f"no scoring month's {outcome_months}-month outcome window ends before the first test month "
            f"{test[0]:%Y-%m}; load more months"
        )
    final = usable[-len(train):]
    return train, test, final


def sample_negatives(
    y: pd.Series, rows: pd.Series, max_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Keep every churner and a random share of the others, so at most about ``max_rows`` rows are fitted.

    Leavers are about 1% of the rows, so dropping stayers at random loses little information and keeps
    training time bounded at a million customers x several months. The kept stayers get the weight
    ``1 / rate``, so the fitted probabilities stay calibrated to the population.

    Parameters
    ----------
    y : pandas.Series
        Labels (0/1) of all rows.
    rows : pandas.Series
        Boolean mask of the rows to train on.
    max_rows : int
        The budget of fitted rows.
    seed : int
        Seed of the sample (a backtest is reproducible).

    Returns
    -------
    (mask, sample_weight, rate)
        The rows to fit, their weights (None when nothing was dropped) and the stayers' sampling rate.
    """
    mask = rows.to_numpy(dtype=bool).copy()
    n = int(mask.sum())
    if n <= max_rows:
        return mask, None, 1.0
    yy = y.to_numpy()
    pos = int((yy[mask] == 1).sum())
    neg = n - pos
    rate = max(min((max_rows - pos) / max(neg, 1), 1.0), 0.01)
    rng = np.random.default_rng(seed)
    drop = mask & (yy == 0) & (rng.random(len(yy)) >= rate)
    mask &= ~drop
    weight = np.where(yy[mask] == 1, 1.0, 1.0 / rate)
    return mask, weight, rate


def training_frame(
    con: Any, params: ChurnParams, definition: str, months: list[dt.date]
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Features and labels of the eligible customers in the given scoring months.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The snapshot.
    params : ChurnParams
        The churn parameters.
    definition : str
        The definition's id.
    months : list of date
        Labelled scoring months.

    Returns
    -------
    (X, y, meta)
        ``X`` the :data:`FEATURES` columns, ``y`` the labels (0/1), ``meta`` ``customer_id, as_of_date``.
    """
    _, d = params.definition(definition)
    lab = labels_frame(con, d, months)
    feats = features_frame(con, months, params.observation_months)
    df = lab.merge(feats, on=["customer_id", "as_of_date"], how="inner")
    return (
        df[list(FEATURES)].reset_index(drop=True),
        df["churned"].astype(int).reset_index(drop=True),
        df[["customer_id", "as_of_date"]].reset_index(drop=True),
    )


def backtest(
    principal: Principal,
    definition: str | None = None,
    *,
    home: D.HomeLike = None,
    out_dir: Path | None = None,
    charts: bool = True,
    lang: str = "zh_CN",
) -> Backtest:
    """Train on earlier months, test on later ones, compare with the baselines, save the model and its card.

    Parameters
    ----------
    principal : Principal
        Who runs it: a role scoped to all orgs (the model reads the whole bank).
    definition : str, optional
        A definition of ``parameters/churn.yaml``; the model's default when None.
    home : Home, path or None
        The installation.
    out_dir : Path, optional
        Where versioned models go; ``outputs/models/churn`` of the installation when None.
    charts : bool
        Also write the lift and calibration charts (PNG) beside the model.
    lang : {"zh_CN", "en"}
        Language of the charts.

    Returns
    -------
    Backtest

    Raises
    ------
    NotPermitted
        For a role not scoped to all orgs.
    BacktestError
        When the warehouse has too few months.
    """
    from cimlib.charts import to_png
    from cimlib.churn._metrics import calibration_chart, calibration_table, decile_table, evaluate, lift_chart
    from cimlib.churn._model import ChurnModel, RuleBaseline, logistic_baseline
    from cimlib.churn._store import save_model

    h = D.resolve_home(home)
    try:
        require_bank_wide(principal)
    except NotPermitted as exc:
        audit_log(h, principal, "churn_backtest", str(definition), None, {"reason": str(exc)},
                  outcome="refused")
        raise
    params = load_churn_params(h)
    name, d = params.definition(definition)
    snap = D.snapshot(h)
    labelled = labelled_months(D.as_of_dates(snap), d)
    train_m, test_m, final_m = split_months(
        labelled, d.outcome_months, params.model.test_months, params.model.max_train_months
    )
    secs: dict[str, float] = {}
    t = time.perf_counter()
    with snap.all_cores() as con:
        x_all, y_all, meta = training_frame(con, params, name, sorted({*train_m, *test_m, *final_m}))
    secs["features_and_labels"] = time.perf_counter() - t
    month = meta["as_of_date"]
    tr, te, fi = month.isin(train_m), month.isin(test_m), month.isin(final_m)
    kw = params.model.estimator_params()
    models: dict[str, Any] = {
        "churn_model": ChurnModel(**kw),
        "rule_adb_down_50": RuleBaseline(feature="adb_change_3m", threshold=-0.5),
        "logistic": logistic_baseline(),
    }
    metrics: dict[str, dict[str, Any]] = {}
    scores: dict[str, Any] = {}
    max_rows = params.model.max_train_rows
    tr_rows, tr_w, tr_rate = sample_negatives(y_all, tr, max_rows, params.model.random_state)
    fi_rows, fi_w, fi_rate = sample_negatives(y_all, fi, max_rows, params.model.random_state + 1)
    for key, est in models.items():
        t = time.perf_counter()
        if key == "logistic":
            est.fit(x_all[tr_rows], y_all[tr_rows], logistic__sample_weight=tr_w)
        else:
            est.fit(x_all[tr_rows], y_all[tr_rows], sample_weight=tr_w)
        secs[f"fit_{key}"] = time.perf_counter() - t
        scores[key] = est.predict_proba(x_all[te])[:, 1]
        metrics[key] = evaluate(y_all[te].to_numpy(), scores[key])
        top = decile_table(y_all[te].to_numpy(), scores[key])
        metrics[key]["top_decile_capture"] = float(top["capture"].iloc[0]) if len(top) else float("nan")
    deciles = decile_table(y_all[te].to_numpy(), scores["churn_model"])
    calib = calibration_table(y_all[te].to_numpy(), scores["churn_model"])
    t = time.perf_counter()
    final = ChurnModel(**kw).fit(x_all[fi_rows], y_all[fi_rows], sample_weight=fi_w)
    secs["fit_final"] = time.perf_counter() - t
    months_all = D.as_of_dates(snap)
    card = {
        "data_window": {
            "from": months_all[0].isoformat(),
            "to": months_all[-1].isoformat(),
            "note": f"features look back {params.observation_months} months from each scoring month; labels "
                    f"look {d.outcome_months} months ahead",
        },
        "definition": name,
        "definition_params": d.model_dump(),
        "observation_months": params.observation_months,
        "estimator_params": kw,
        "features": {k: FEATURES[k] for k in FEATURES},
        "backtest": {
            "train_months": [m.isoformat() for m in train_m],
            "test_months": [m.isoformat() for m in test_m],
            "n_train": int(tr.sum()),
            "n_train_fitted": int(tr_rows.sum()),
            "negative_sampling_rate": tr_rate,
            "n_test": int(te.sum()),
            "positives_train": int(y_all[tr].sum()),
            "positives_test": int(y_all[te].sum()),
            "metrics": metrics,
            "deciles": deciles.to_dict(orient="records"),
            "calibration": calib.to_dict(orient="records"),
        },
        "final_model": {
            "train_months": [m.isoformat() for m in final_m],
            "n_train": int(fi.sum()),
            "n_train_fitted": int(fi_rows.sum()),
            "negative_sampling_rate": fi_rate,
            "positives": int(y_all[fi].sum()),
        },
        "snapshot_id": snap.snapshot_id,
        "trained_by": principal.user_id,
    }
    root = out_dir or (h.root / "outputs" / "models" / "churn")
    model_dir = save_model(final, card, root / name)
    written: dict[str, Path] = {}
    if charts:
        for key, chart in (("lift", lift_chart(deciles, lang=lang)),
                           ("calibration", calibration_chart(calib, lang=lang))):
            p = model_dir / f"{key}.png"
            p.write_bytes(to_png(chart))
            written[key] = p
    audit_log(
        h, principal, "churn_backtest", name, snap.snapshot_id,
        {"model_dir": str(model_dir), "roc_auc": metrics["churn_model"].get("roc_auc")},
    )
    return Backtest(
        definition=name, train_months=train_m, test_months=test_m, final_months=final_m, metrics=metrics,
        deciles=deciles, calibration=calib, model_dir=model_dir, n_train=int(tr.sum()), n_test=int(te.sum()),
        seconds=secs, charts=written,
    )


def train_model(home: D.HomeLike = None, definition: str | None = None) -> dict[str, Any]:
    """Re-train after ``parameters/churn.yaml`` changed: backtest, save the model, score the latest month.

    Run by ``cim params apply`` (only a parameter administrator may apply a change, and that is audited
    with the user); the model itself is trained and audited as the system user ``cim-params-apply``, which
    is scoped to the whole bank like every model training.

    Parameters
    ----------
    home : Home, path or None
        The installation.
    definition : str, optional
        The definition; the model's default when None.

    Returns
    -------
    dict
        ``status`` (``retrained``, or ``skipped`` with a ``reason`` when the warehouse has too few months),
        ``definition``, ``model_dir``, ``roc_auc`` and the scored month.
    """
    from cimlib.churn._score import score

    system = Principal(user_id="cim-params-apply", display_name="cim params apply", role="system",
                       scope="all")
    try:
        bt = backtest(system, definition, home=home, charts=True)
    except BacktestError as exc:
        return {"status": "skipped", "reason": str(exc)}
    scored = score(system, None, bt.definition, home=home, model_dir=bt.model_dir)
    return {
        "status": "retrained",
        "definition": bt.definition,
        "model_dir": str(bt.model_dir),
        "roc_auc": bt.metrics["churn_model"].get("roc_auc"),
        "scored": scored["as_of"],
    }
