"""Evaluation of churn scores: ROC and PR AUC, lift and capture by decile, calibration, and their charts.

Every function takes the true labels (1 = churned, or ``pos_label``) and a score per row where higher means
more risk: a model's ``predict_proba(X)[:, 1]``, a rule's score, anything that ranks.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from cimlib.i18n import DEFAULT_LANG

log = logging.getLogger(__name__)

#: Chart text in both languages (kept here until the churn keys move into the locale files).
_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "calibration_title": "Calibration: predicted vs observed churn rate",
        "predicted": "Mean predicted churn probability",
        "observed": "Observed churn rate",
        "lift_title": "Lift and cumulative capture by decile",
        "decile": "Decile (1 = highest risk)",
        "lift": "Lift",
        "cum_capture": "Cumulative capture",
        "series": "Measure",
        "count": "Customers",
    },
    "zh_CN": {
        "calibration_title": "校准：预测流失概率与实际流失率",
        "predicted": "平均预测流失概率",
        "observed": "实际流失率",
        "lift_title": "各十分位提升度与累计捕获率",
        "decile": "十分位（1 = 风险最高）",
        "lift": "提升度",
        "cum_capture": "累计捕获率",
        "series": "指标",
        "count": "客户数",
    },
}
_WIDTH = 460
_HEIGHT = 260


def _as_arrays(y_true: Any, scores: Any, pos_label: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.shape[0]} rows but scores has {s.shape[0]}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; score every row (or drop the unscored rows) before evaluating")
    if pd.isna(y).any():
        raise ValueError("y_true contains missing labels")
    return (y == pos_label).astype(np.float64), s


def evaluate(y_true: Any, scores: Any, *, pos_label: Any = 1) -> dict[str, Any]:
    """Headline metrics of one set of scores.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    scores : array-like of shape (n,)
        Risk scores, higher = more likely to churn (no NaN).
    pos_label : scalar
        The churn label.

    Returns
    -------
    dict
        ``n``, ``positives``, ``base_rate``, ``roc_auc`` (area under the ROC curve: the chance that a random
        churner scores above a random stayer, ties counting half), ``pr_auc`` (average precision, compare it
        with the base rate), ``brier`` (mean squared error of the scores as probabilities; only meaningful
        for probabilities), ``top_decile_lift`` and ``note``. When ``y_true`` holds one class only, both AUCs
        are NaN and ``note`` says why; with no rows every figure is NaN.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _as_arrays(y_true, scores, pos_label)
    n = int(y.size)
    positives = int(y.sum())
    out: dict[str, Any] = {
        "n": n,
        "positives": positives,
        "base_rate": positives / n if n else math.nan,
        "roc_auc": math.nan,
        "pr_auc": math.nan,
        "brier": float(np.mean((s - y) ** 2)) if n else math.nan,
        "top_decile_lift": math.nan,
        "note": "",
    }
    if n == 0:
        out["note"] = "no rows to evaluate"
        return out
    if positives in (0, n):
        which = "no churner" if positives == 0 else "only churners"
        out["note"] = f"only one class in y_true ({which}): ROC and PR AUC are undefined"
        log.warning("evaluate: %s", out["note"])
        return out
    out["roc_auc"] = float(roc_auc_score(y, s))
    out["pr_auc"] = float(average_precision_score(y, s))
    out["top_decile_lift"] = float(decile_table(y, s, pos_label=1.0)["lift"].iloc[0])
    return out


def decile_table(y_true: Any, scores: Any, *, n_bins: int = 10, pos_label: Any = 1) -> pd.DataFrame:
    """Lift and capture by score decile (or any number of equal-count bins).

    Rows are sorted by score, highest first, and cut into ``n_bins`` bins of equal size (sizes differ by at
    most one row: bin ``k`` holds sorted positions ``i`` with ``floor(i * n_bins / n) = k - 1``).

    **Ties.** Rows with equal scores cannot be ordered by the model, so no row is given to one bin rather
    than another arbitrarily: each row counts as its tie group's churn rate (a tie group of 4 rows with 1
    churner contributes 0.25 churners per row to whichever bins its rows fall in). The figures are the
    expected ones under a random order within ties, do not depend on the input order, and ``positives`` can
    be fractional. Without ties they are plain counts.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    scores : array-like of shape (n,)
        Risk scores, higher = more risk.
    n_bins : int
        Number of bins (10 = deciles).
    pos_label : scalar
        The churn label.

    Returns
    -------
    DataFrame
        One row per bin: ``decile`` (1 = highest scores), ``n``, ``min_score``, ``max_score``,
        ``mean_score``, ``positives``, ``rate`` (churners / rows), ``lift`` (rate / overall rate),
        ``capture`` (share of all churners in the bin), and the cumulative ``cum_n``, ``cum_positives``,
        ``cum_rate``, ``cum_lift`` and ``cum_capture`` (share of churners caught by contacting the top bins).
        Lift and capture are NaN when there is no churner.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, s = _as_arrays(y_true, scores, pos_label)
    n = y.size
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    # Each row counts as the churn rate of its tie group (rows with the same score).
    _, group, counts = np.unique(s_sorted, return_inverse=True, return_counts=True)
    group_pos = np.bincount(group, weights=y_sorted, minlength=counts.size)
    y_fair = (group_pos / counts)[group]
    bins = (np.arange(n) * n_bins) // max(n, 1)
    frame = pd.DataFrame({"bin": bins + 1, "score": s_sorted, "y": y_fair})
    table = frame.groupby("bin").agg(
        n=("y", "size"),
        min_score=("score", "min"),
        max_score=("score", "max"),
        mean_score=("score", "mean"),
        positives=("y", "sum"),
    )
    table = table.reindex(range(1, n_bins + 1))
    table["n"] = table["n"].fillna(0).astype(int)
    table["positives"] = table["positives"].fillna(0.0)
    total_pos = float(y.sum())
    base = total_pos / n if n else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        table["rate"] = table["positives"] / table["n"].replace(0, np.nan)
        table["lift"] = table["rate"] / base if base else math.nan
        table["capture"] = table["positives"] / total_pos if total_pos else math.nan
        table["cum_n"] = table["n"].cumsum()
        table["cum_positives"] = table["positives"].cumsum()
        table["cum_rate"] = table["cum_positives"] / table["cum_n"].replace(0, np.nan)
        table["cum_lift"] = table["cum_rate"] / base if base else math.nan
        table["cum_capture"] = table["cum_positives"] / total_pos if total_pos else math.nan
    table = table.rename_axis("decile").reset_index()
    return table


def _wilson(positives: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (95% by default); NaN where ``n`` is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = positives / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def calibration_table(
    y_true: Any, scores: Any, *, n_bins: int = 10, strategy: str = "quantile", pos_label: Any = 1
) -> pd.DataFrame:
    """Mean predicted probability against the observed churn rate, by bins of the predicted probability.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    scores : array-like of shape (n,)
        Predicted churn probabilities in [0, 1].
    n_bins : int
        Number of bins asked for.
    strategy : {"quantile", "uniform"}
        ``"quantile"``: edges at quantiles of the scores (about equal counts; equal scores always share a
        bin, so heavy ties give fewer bins); ``"uniform"``: equal-width bins on [0, 1]. Empty bins are
        dropped.
    pos_label : scalar
        The churn label.

    Returns
    -------
    DataFrame
        One row per non-empty bin, in increasing score: ``bin`` (1..), ``lower``/``upper`` (edges),
        ``n``, ``positives``, ``mean_predicted``, ``observed_rate``, ``observed_low``/``observed_high``
        (95% Wilson interval of the observed rate) and ``gap`` (observed - predicted). A well calibrated
        model has ``observed_rate`` close to ``mean_predicted`` in every bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, s = _as_arrays(y_true, scores, pos_label)
    if strategy == "quantile":
        edges = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)) if s.size else np.array([0.0, 1.0])
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    edges = np.unique(edges)
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    # Right-closed bins, the first one closed on both sides: (e0 <= s <= e1], (e1, e2], ...
    idx = np.clip(np.searchsorted(edges, s, side="left") - 1, 0, edges.size - 2)
    frame = pd.DataFrame({"bin": idx, "y": y, "s": s})
    table = frame.groupby("bin").agg(n=("y", "size"), positives=("y", "sum"), mean_predicted=("s", "mean"))
    table["lower"] = edges[table.index.to_numpy()]
    table["upper"] = edges[table.index.to_numpy() + 1]
    table["observed_rate"] = table["positives"] / table["n"]
    low, high = _wilson(table["positives"].to_numpy(), table["n"].to_numpy().astype(float))
    table["observed_low"] = low
    table["observed_high"] = high
    table["gap"] = table["observed_rate"] - table["mean_predicted"]
    table = table.reset_index(drop=True)
    table.insert(0, "bin", np.arange(1, len(table) + 1))
    table["positives"] = table["positives"].astype(int)
    cols = [
        "bin",
        "lower",
        "upper",
        "n",
        "positives",
        "mean_predicted",
        "observed_rate",
        "observed_low",
        "observed_high",
        "gap",
    ]
    return table[cols]


def _style(chart: Any, title: str) -> Any:
    from cimlib.charts import CJK_FONT

    return (
        chart.properties(title=title, width=_WIDTH, height=_HEIGHT)
        .configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def _text(lang: str) -> dict[str, str]:
    if lang not in _TEXT:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_TEXT)}")
    return _TEXT[lang]


def calibration_chart(table: pd.DataFrame, lang: str = DEFAULT_LANG) -> alt.LayerChart:
    """Reliability diagram of a :func:`calibration_table`.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`calibration_table`.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.

    Returns
    -------
    altair.LayerChart
        Data ``mean_predicted``, ``observed_rate``, ``observed_low``, ``observed_high``, ``n``; a dashed
        diagonal (perfect calibration), 95% interval bars, and points sized by count joined by a line.
        Both axes run over the same domain.
    """
    tx = _text(lang)
    cols = ["bin", "mean_predicted", "observed_rate", "observed_low", "observed_high", "n"]
    data = table[cols].copy()
    top = (
        float(np.nanmax([data["mean_predicted"].max(), data["observed_high"].max(), 0.05]))
        if len(data)
        else 1.0
    )
    top = min(1.0, math.ceil(top * 20) / 20)
    scale = alt.Scale(domain=[0, top])
    x = alt.X("mean_predicted:Q", title=tx["predicted"], scale=scale, axis=alt.Axis(format=".0%"))
    y_title = tx["observed"]
    diagonal = (
        alt.Chart(pd.DataFrame({"p": [0.0, top]}))
        .mark_line(strokeDash=[4, 4], color="#999999")
        .encode(x=alt.X("p:Q", scale=scale), y=alt.Y("p:Q", scale=scale))
    )
    base = alt.Chart(data)
    bars = base.mark_rule(color="#4c78a8").encode(
        x=x, y=alt.Y("observed_low:Q", scale=scale), y2="observed_high:Q"
    )
    line = base.mark_line(color="#4c78a8").encode(
        x=x, y=alt.Y("observed_rate:Q", title=y_title, scale=scale, axis=alt.Axis(format=".0%"))
    )
    points = base.mark_circle(color="#4c78a8", opacity=0.9).encode(
        x=x,
        y=alt.Y("observed_rate:Q", title=y_title, scale=scale),
        size=alt.Size("n:Q", title=tx["count"], legend=None, scale=alt.Scale(range=[20, 160])),
        tooltip=[
            alt.Tooltip("bin:O"),
            alt.Tooltip("n:Q", format=",d", title=tx["count"]),
            alt.Tooltip("mean_predicted:Q", format=".1%", title=tx["predicted"]),
            alt.Tooltip("observed_rate:Q", format=".1%", title=tx["observed"]),
        ],
    )
    return _style(alt.layer(diagonal, bars, line, points), tx["calibration_title"])


def lift_chart(table: pd.DataFrame, lang: str = DEFAULT_LANG) -> alt.LayerChart:
    """Lift by decile (bars) with the cumulative capture (line, right axis) of a :func:`decile_table`.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`decile_table`.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.

    Returns
    -------
    altair.LayerChart
        Data ``decile``, ``lift``, ``cum_capture``, ``n``, ``rate``; x = decile (ordinal), bars y = lift with
        a rule at lift 1 (random targeting), line y = cumulative capture on an independent right axis.
    """
    tx = _text(lang)
    data = table[["decile", "lift", "cum_capture", "n", "rate"]].copy()
    x = alt.X("decile:O", title=tx["decile"], axis=alt.Axis(labelAngle=0))
    base = alt.Chart(data)
    bars = base.mark_bar(color="#4c78a8").encode(
        x=x,
        y=alt.Y("lift:Q", title=tx["lift"], axis=alt.Axis(titleColor="#4c78a8")),
        tooltip=[
            alt.Tooltip("decile:O"),
            alt.Tooltip("n:Q", format=",d", title=tx["count"]),
            alt.Tooltip("rate:Q", format=".1%"),
            alt.Tooltip("lift:Q", format=".2f", title=tx["lift"]),
            alt.Tooltip("cum_capture:Q", format=".0%", title=tx["cum_capture"]),
        ],
    )
    one = (
        alt.Chart(pd.DataFrame({"lift": [1.0]}))
        .mark_rule(strokeDash=[4, 4], color="#999999")
        .encode(y="lift:Q")
    )
    capture = base.mark_line(color="#f58518", point=alt.OverlayMarkDef(color="#f58518")).encode(
        x=x,
        y=alt.Y(
            "cum_capture:Q",
            title=tx["cum_capture"],
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format=".0%", orient="right", titleColor="#f58518"),
        ),
    )
    layered = alt.layer(alt.layer(bars, one), capture).resolve_scale(y="independent")
    return _style(layered, tx["lift_title"])
