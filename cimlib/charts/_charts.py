from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import altair as alt
import pandas as pd

from cimlib.i18n import DEFAULT_LANG, code_label, money_unit, t

log = logging.getLogger(__name__)

#: Font families tried in order; Noto Sans CJK SC ships in Debian's fonts-noto-cjk.
CJK_FONT = "Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif"
_WIDTH = 460
_HEIGHT = 220


def _money(values: pd.Series, lang: str) -> pd.Series:
    """Yuan to the display unit: 万元 in Chinese, yuan in English (floats, for plotting only)."""
    as_float = pd.to_numeric(values.map(lambda v: float(v) if isinstance(v, Decimal) else v), errors="coerce")
    return (as_float / 10000.0 if lang == "zh_CN" else as_float).fillna(0.0).round(2)


def _money_format(lang: str) -> str:
    return ",.2f" if lang == "zh_CN" else ",.0f"


def _style(chart: alt.Chart | alt.LayerChart, title: str) -> alt.Chart | alt.LayerChart:
    return (
        chart.properties(title=title, width=_WIDTH, height=_HEIGHT)
        .configure(
            font=CJK_FONT,
        )
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def balance_trend(
    trend: pd.DataFrame,
    lang: str = DEFAULT_LANG,
    *,
    month_col: str = "month",
    series: Sequence[str] = ("deposit_adb", "aum", "loan_balance"),
) -> alt.Chart:
    """Line chart of a customer's balances by month (12-month trend).

    Parameters
    ----------
    trend : DataFrame
        One row per month: ``month_col`` plus one column of yuan per series.
    lang : str
        ``"zh_CN"`` (amounts in 万元) or ``"en"`` (yuan).
    month_col : str
        The month column (text ``YYYY-MM`` or dates).
    series : sequence of str
        The balance columns to draw; columns missing from ``trend`` are skipped.

    Returns
    -------
    altair.Chart
        Long data ``month, series, value`` with ``series`` the localized series name; x = month
        (ordinal), y = value (quantitative), color = series.
    """
    cols = [c for c in series if c in trend.columns]
    months = (
        trend[month_col].map(lambda m: str(m)[:7]) if month_col in trend.columns else pd.Series([], dtype=str)
    )
    frames = [
        pd.DataFrame(
            {
                "month": months.to_numpy(),
                "series": t(f"series.{c}", lang),
                "value": _money(trend[c], lang).to_numpy(),
            }
        )
        for c in cols
    ]
    data = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                "month": pd.Series([], dtype=str),
                "series": pd.Series([], dtype=str),
                "value": pd.Series([], dtype=float),
            }
        )
    )
    y_title = f"{t('charts.amount', lang)} ({money_unit(lang)})"
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("month:O", title=t("charts.month", lang), axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=_money_format(lang))),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("month:O"),
                alt.Tooltip("series:N"),
                alt.Tooltip("value:Q", format=_money_format(lang)),
            ],
        )
    )
    return _style(chart, t("charts.balance_trend", lang))


def channel_mix(
    mix: pd.DataFrame,
    lang: str = DEFAULT_LANG,
    *,
    channel_col: str = "channel",
    value_col: str = "txn_count",
) -> alt.Chart:
    """Horizontal bar chart of a customer's transactions by channel.

    Parameters
    ----------
    mix : DataFrame
        One row per channel code (``COUNTER``, ``ATM``, ``MOBILE`` …) with a count.
    lang : str
        ``"zh_CN"`` or ``"en"``.
    channel_col, value_col : str
        The channel-code and count columns.

    Returns
    -------
    altair.Chart
        Data ``channel`` (localized label), ``code``, ``count`` and ``share``; y = channel sorted by count,
        x = count.
    """
    if channel_col in mix.columns and value_col in mix.columns and len(mix):
        grouped = mix.groupby(channel_col, dropna=False)[value_col].sum()
        counts = pd.to_numeric(grouped, errors="coerce").fillna(0)
        total = float(counts.sum()) or 1.0
        data = pd.DataFrame(
            {
                "code": counts.index.astype(str),
                "channel": [code_label("channel", c, lang) for c in counts.index],
                "count": counts.astype(int).to_numpy(),
                "share": (counts / total).round(4).to_numpy(),
            }
        ).sort_values("count", ascending=False, ignore_index=True)
    else:
        data = pd.DataFrame(
            {
                "code": pd.Series([], dtype=str),
                "channel": pd.Series([], dtype=str),
                "count": pd.Series([], dtype=int),
                "share": pd.Series([], dtype=float),
            }
        )
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("channel:N", title=None, sort="-x"),
            x=alt.X("count:Q", title=t("charts.txn_count", lang), axis=alt.Axis(format=",d")),
            tooltip=[
                alt.Tooltip("channel:N"),
                alt.Tooltip("count:Q", format=",d"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
    )
    return _style(chart, t("charts.channel_mix", lang))


def assets_by_type(
    assets: pd.DataFrame,
    lang: str = DEFAULT_LANG,
    *,
    type_col: str = "asset_type",
    value_col: str = "value",
) -> alt.Chart:
    """Bar chart of a customer's assets (AUM) by type: deposits, wealth products, funds, insurance ….

    Parameters
    ----------
    assets : DataFrame
        One row per asset type code (``DEPOSIT``, ``WMP``, ``FUND``, ``INSURANCE``, ``BOND``, ``GOLD``)
        with its value in yuan.
    lang : str
        ``"zh_CN"`` (万元) or ``"en"`` (yuan).
    type_col, value_col : str
        The type-code and value columns.

    Returns
    -------
    altair.Chart
        Data ``asset_type`` (localized), ``code`` and ``value`` (display unit); y = type sorted by value,
        x = value.
    """
    if type_col in assets.columns and value_col in assets.columns and len(assets):
        values = _money(assets[value_col], lang)
        data = pd.DataFrame(
            {
                "code": assets[type_col].astype(str).to_numpy(),
                "asset_type": [code_label("asset_type", c, lang) for c in assets[type_col]],
                "value": values.to_numpy(),
            }
        )
        data = data.groupby(["code", "asset_type"], as_index=False)["value"].sum()
        data = data.sort_values("value", ascending=False, ignore_index=True)
    else:
        data = pd.DataFrame(
            {
                "code": pd.Series([], dtype=str),
                "asset_type": pd.Series([], dtype=str),
                "value": pd.Series([], dtype=float),
            }
        )
    x_title = f"{t('charts.amount', lang)} ({money_unit(lang)})"
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("asset_type:N", title=None, sort="-x"),
            x=alt.X("value:Q", title=x_title, axis=alt.Axis(format=_money_format(lang))),
            color=alt.Color("asset_type:N", legend=None),
            tooltip=[alt.Tooltip("asset_type:N"), alt.Tooltip("value:Q", format=_money_format(lang))],
        )
    )
    return _style(chart, t("charts.assets_by_type", lang))


def _spec(chart: Any) -> dict[str, Any]:
    return chart.to_dict() if hasattr(chart, "to_dict") else dict(chart)


def to_svg(chart: Any) -> str:
    """Render a chart to SVG text with vl-convert (no browser, no network).

    Parameters
    ----------
    chart : altair chart or dict
        The chart, or its Vega-Lite spec.

    Returns
    -------
    str
        The SVG document.
    """
    import vl_convert as vlc

    return vlc.vegalite_to_svg(_spec(chart))


def to_png(chart: Any, *, scale: float = 2.0) -> bytes:
    """Render a chart to PNG bytes with vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        The chart, or its Vega-Lite spec.
    scale : float
        Pixel density (2 = crisp on high-DPI screens and in print).

    Returns
    -------
    bytes
        The PNG image.
    """
    import vl_convert as vlc

    return vlc.vegalite_to_png(_spec(chart), scale=scale)


def warm_up() -> None:
    """Render one tiny chart so vl-convert's JavaScript engine is started (about 0.4 s, once a process).

    Call it where the cost is hidden, e.g. while a Voila kernel is preheating.
    """
    to_svg(alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q"))
    log.debug("vl-convert warmed up")
