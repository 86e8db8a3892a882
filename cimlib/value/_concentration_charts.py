"""Charts of the 80/20 analysis: the Pareto chart, the Lorenz (or whale) curve and the concentration trend.

Each function takes a frame of :mod:`cimlib.value._concentration` (``pareto``, ``lorenz``,
``concentration_trend``) and returns an Altair chart; render it with :func:`cimlib.charts.to_png`.
Labels are English or Simplified Chinese (``lang``); amounts are yuan in English and 万元 in Chinese.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import altair as alt
import pandas as pd

from cimlib.charts._charts import _money, _money_format, _style
from cimlib.i18n import money_unit

log = logging.getLogger(__name__)

_TEXT: dict[str, tuple[str, str]] = {
    "pareto": ("Pareto chart", "帕累托图"),
    "lorenz": ("Lorenz curve", "洛伦兹曲线"),
    "whale": ("Whale curve", "鲸鱼曲线"),
    "trend": ("Concentration trend", "集中度趋势"),
    "customers_ranked": (
        "Customers ranked by value (top first, cumulative share)",
        "客户按价值降序(累计占比)",
    ),
    "customers_bottom": ("Customers ranked from the smallest (cumulative share)", "客户按价值升序(累计占比)"),
    "bin_share": ("Share of the total in the bin", "区间占比"),
    "cum_share": ("Cumulative share", "累计占比"),
    "value_share": ("Cumulative share of the total", "累计价值占比"),
    "net_share": ("Cumulative share of the net total", "累计占净额比"),
    "equality": ("Equality", "绝对平均线"),
    "target": ("80%", "80%"),
    "month": ("Month", "月份"),
    "gini": ("Gini coefficient", "基尼系数"),
    "gini_short": ("Gini", "基尼系数"),
    "value": ("Value", "金额"),
    "customers": ("Customers", "客户数"),
}


def _t(key: str, lang: str) -> str:
    return _TEXT[key][1 if str(lang).startswith("zh") else 0]


def _ui(lang: str) -> str:
    return "zh_CN" if str(lang).startswith("zh") else "en"


def _one(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """The rows of the first (by, group, measure) of ``frame`` (a chart shows one distribution)."""
    if not len(frame):
        return frame
    keys = [c for c in ("by", "group", "measure") if c in frame.columns]
    first = frame.iloc[0][keys]
    mask = (frame[keys] == first).all(axis=1)
    if not mask.all():
        log.info("%s: drawing %s only", what, dict(first))
    return frame[mask]


def _name(frame: pd.DataFrame) -> str:
    if not len(frame):
        return ""
    row = frame.iloc[0]
    parts = [str(row.get("measure_label", row.get("measure", "")))]
    if str(row.get("by", "all")) != "all":
        parts.append(str(row.get("label", row.get("group", ""))))
    return " · ".join(p for p in parts if p)


def pareto_chart(bins: pd.DataFrame, lang: str = "en", *, title: str | None = None) -> alt.LayerChart:
    """A Pareto chart: customers ranked by value in percentile bins, each bin's share as a bar and the
    cumulative share as a line on a second axis, with a reference at 80%.

    Parameters
    ----------
    bins : DataFrame
        Rows of :func:`cimlib.value._concentration.pareto` (or ``pareto_bins``); the first
        (by, group, measure) is drawn.
    lang : str
        ``"en"`` or ``"zh_CN"``.
    title : str, optional
        Default "Pareto chart · <measure> · <group>".

    Returns
    -------
    altair.LayerChart
        Data ``bin_label, share, cumulative_share, customers, value``; bars y = share (left), line y =
        cumulative_share (right), rule y = 0.8 (right).
    """
    ui = _ui(lang)
    f = _one(bins, "pareto_chart")
    data = pd.DataFrame({
        "bin_label": [f"{x:.0%}" for x in f["customer_to"]] if len(f) else pd.Series([], dtype=str),
        "share": pd.to_numeric(f["share"], errors="coerce").to_numpy() if len(f) else [],
        "cumulative_share": (
            pd.to_numeric(f["cumulative_share"], errors="coerce").to_numpy() if len(f) else []
        ),
        "customers": f["customers"].to_numpy() if len(f) else [],
        "value": _money(f["value"], ui).to_numpy() if len(f) else [],
    })  # fmt: skip
    order = list(data["bin_label"])
    x = alt.X("bin_label:O", sort=order, title=_t("customers_ranked", lang), axis=alt.Axis(labelAngle=0))
    tips = [
        alt.Tooltip("bin_label:O", title=_t("customers", lang)),
        alt.Tooltip("customers:Q", format=",d"),
        alt.Tooltip("value:Q", title=f"{_t('value', lang)} ({money_unit(ui)})", format=_money_format(ui)),
        alt.Tooltip("share:Q", format=".1%"),
        alt.Tooltip("cumulative_share:Q", format=".1%"),
    ]
    bars = (
        alt.Chart(data)
        .mark_bar(color="#4c78a8")
        .encode(x=x, y=alt.Y("share:Q", title=_t("bin_share", lang), axis=alt.Axis(format="%")), tooltip=tips)
    )
    top = max(1.0, float(data["cumulative_share"].max()) if len(data) else 1.0)
    y2 = alt.Y("cumulative_share:Q", title=_t("cum_share", lang), scale=alt.Scale(domain=[0, top]),
               axis=alt.Axis(format="%", orient="right"))  # fmt: skip
    line = alt.Chart(data).mark_line(color="#e45756", point=True).encode(x=x, y=y2, tooltip=tips)
    rule = (
        alt.Chart(pd.DataFrame({"cumulative_share": [0.8]}))
        .mark_rule(color="#e45756", strokeDash=[4, 4])
        .encode(y=y2)
    )
    chart = alt.layer(bars, line + rule).resolve_scale(y="independent")
    return _style(
        chart, title if title is not None else " · ".join(x for x in (_t("pareto", lang), _name(f)) if x)
    )


def lorenz_chart(
    points: pd.DataFrame,
    lang: str = "en",
    *,
    kind: Literal["auto", "lorenz", "whale"] = "auto",
    title: str | None = None,
) -> alt.LayerChart:
    """The Lorenz curve with the equality diagonal (or, for contribution, the whale curve), Gini in the title.

    Parameters
    ----------
    points : DataFrame
        Rows of :func:`cimlib.value._concentration.lorenz` for one measure; several groups are drawn as
        several curves (the legend then carries each group's Gini).
    lang : str
        ``"en"`` or ``"zh_CN"``.
    kind : {"auto", "lorenz", "whale"}
        ``whale`` draws the share of the net total held by the top ``p`` customers (rises above 100% when
        some customers lose money, back to 100% at the end); ``auto`` picks it for ``contribution`` or
        any negative value, else the Lorenz curve (the bottom ``p`` customers' share).
    title : str, optional
        Default "Lorenz curve · <measure> · Gini 0.71".

    Returns
    -------
    altair.LayerChart
        Data ``customer_share, share, series``; the curve(s), the diagonal and (whale) a rule at 100%.
    """
    f = points
    if len(f) and "measure" in f.columns and f["measure"].nunique() > 1:
        f = f[f["measure"] == f["measure"].iloc[0]]
    if kind == "auto":
        neg = len(f) and ((f["measure"] == "contribution").any() if "measure" in f.columns else False)
        neg = bool(neg) or bool(
            len(f) and ((f["top_share"] > 1 + 1e-12).any() or (f["lorenz"] < -1e-12).any())
        )
        kind = "whale" if neg else "lorenz"
    ycol = "top_share" if kind == "whale" else "lorenz"
    groups = list(dict.fromkeys(f["label"])) if len(f) and "label" in f.columns else []
    many = len(groups) > 1
    gini_of = (
        f.groupby("label", sort=False)["gini"].first().to_dict() if len(f) and "gini" in f.columns else {}
    )
    series = [f"{g} (G={gini_of.get(g, float('nan')):.2f})" if many else str(g) for g in f.get("label", [])]
    data = pd.DataFrame({
        "customer_share": pd.to_numeric(f["customer_share"]).to_numpy() if len(f) else [],
        "share": pd.to_numeric(f[ycol], errors="coerce").to_numpy() if len(f) else [],
        "series": series if len(f) else pd.Series([], dtype=str),
    })  # fmt: skip
    x_title = _t("customers_ranked" if kind == "whale" else "customers_bottom", lang)
    y_title = _t("net_share" if kind == "whale" else "value_share", lang)
    top = max(1.0, float(data["share"].max()) if len(data) and data["share"].notna().any() else 1.0)
    low = min(0.0, float(data["share"].min()) if len(data) and data["share"].notna().any() else 0.0)
    x = alt.X("customer_share:Q", title=x_title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    y = alt.Y("share:Q", title=y_title, scale=alt.Scale(domain=[low, top]), axis=alt.Axis(format="%"))
    color = (alt.Color("series:N", title=None, legend=alt.Legend(orient="right", labelLimit=260)) if many
             else alt.value("#4c78a8"))  # fmt: skip
    curve = alt.Chart(data).mark_line().encode(
        x=x, y=y, color=color,
        tooltip=[alt.Tooltip("series:N"), alt.Tooltip("customer_share:Q", format=".1%"),
                 alt.Tooltip("share:Q", format=".1%")],
    )  # fmt: skip
    diag = (
        alt.Chart(pd.DataFrame({"customer_share": [0.0, 1.0], "share": [0.0, 1.0]}))
        .mark_line(color="#999999", strokeDash=[4, 4])
        .encode(x=x, y=y)
    )
    layers: list[Any] = [diag, curve]
    if kind == "whale":
        layers.append(alt.Chart(pd.DataFrame({"share": [1.0]})).mark_rule(color="#999999").encode(y=y))
    if title is None:
        head = _t("whale" if kind == "whale" else "lorenz", lang)
        name = _name(f) if not many else str(f["measure_label"].iloc[0]) if len(f) else ""
        g = f"{_t('gini_short', lang)} {next(iter(gini_of.values())):.2f}" if gini_of and not many else ""
        title = " · ".join(p for p in (head, name, g) if p)
    return _style(alt.layer(*layers), title)


def concentration_trend_chart(
    trend: pd.DataFrame, lang: str = "en", *, value: str = "gini", title: str | None = None
) -> alt.Chart:
    """A line per measure (or per group, for one measure) of an 80/20 figure by month.

    Parameters
    ----------
    trend : DataFrame
        :func:`cimlib.value._concentration.concentration_trend`'s rows.
    value : str
        The column drawn: ``gini``, ``top_20pct_share``, ``share_for_80`` …
    title : str, optional
        Default "Concentration trend · <value>".

    Returns
    -------
    altair.Chart
        Data ``month, series, value``; x = month, y = value, color = series.
    """
    f = trend
    many_groups = len(f) and f[["by", "group"]].drop_duplicates().shape[0] > 1
    if many_groups and f["measure"].nunique() > 1:
        f = f[f["measure"] == f["measure"].iloc[0]]
    series_col = "label" if many_groups else "measure_label"
    data = pd.DataFrame({
        "month": f["as_of"].astype(str).str[:7].to_numpy() if len(f) else pd.Series([], dtype=str),
        "series": f[series_col].astype(str).to_numpy() if len(f) else pd.Series([], dtype=str),
        "value": pd.to_numeric(f[value], errors="coerce").to_numpy() if len(f) else [],
    })  # fmt: skip
    fmt = ".2f" if value == "gini" else ".0%"
    name = _t("gini", lang) if value == "gini" else value
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("month:O", title=_t("month", lang), axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("value:Q", title=name, axis=alt.Axis(format=fmt), scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="right", labelLimit=260)),
            tooltip=[alt.Tooltip("month:O"), alt.Tooltip("series:N"), alt.Tooltip("value:Q", format=".3f")],
        )
    )
    return _style(chart, title if title is not None else f"{_t('trend', lang)} · {name}")
