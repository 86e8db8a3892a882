"""Charts of the channel analysis (:mod:`cimlib.analysis._channel`): each takes a frame and returns an Altair
chart object (no I/O). Text comes from the frames' label columns and :data:`~cimlib.analysis._channel.TEXT`;
fonts from :mod:`cimlib.charts` (CJK-capable), so static export through vl-convert renders Chinese.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from cimlib.analysis._channel import CHANNELS, text
from cimlib.analysis._common import ui_lang as _ui
from cimlib.charts._charts import CJK_FONT, _money_format, _style
from cimlib.i18n import code_label, money_unit

#: One colour per channel, the same in every chart (counter stands out; digital channels in greens/blues).
CHANNEL_COLORS = {
    "COUNTER": "#d62728",
    "ATM": "#ff7f0e",
    "POS": "#bcbd22",
    "PHONE": "#9467bd",
    "ONLINE": "#1f77b4",
    "MOBILE": "#2ca02c",
}


def _title(frame: pd.DataFrame, key: str, lang: str) -> str:
    return str(frame.attrs.get("title") or text(key, lang))


def _channel_scale(lang: str) -> alt.Scale:
    return alt.Scale(
        domain=[code_label("channel", c, _ui(lang)) for c in CHANNELS], range=list(CHANNEL_COLORS.values())
    )


def _channel_order(df: pd.DataFrame) -> pd.Series:
    return df["channel"].map({c: i for i, c in enumerate(CHANNELS)}).fillna(len(CHANNELS)).astype(int)


def _configure(chart: Any, title: str) -> Any:
    """:func:`cimlib.charts._charts._style` for composed charts (facets), whose size is set per panel."""
    return (
        chart.properties(title=title)
        .configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def channel_share_chart(trend: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """A stacked area of each customer channel's share of transactions per month (:func:`channel_trend`).

    Returns
    -------
    altair.Chart
        Data ``month, label, channel, order, count_share, txn_count``; x = month (ordinal), y = share
        (stacked to 100%), color = channel (fixed colours), stacking order = the channel order.
    """
    data = trend[["month", "channel", "label", "count_share", "txn_count"]].copy()
    data["order"] = _channel_order(data)
    chart = (
        alt.Chart(data)
        .mark_area(opacity=0.9)
        .encode(
            x=alt.X("month:O", title=text("month", lang), axis=alt.Axis(labelAngle=-45)),
            y=alt.Y(
                "count_share:Q",
                title=text("count_share", lang),
                stack="zero",
                axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "label:N", title=None, scale=_channel_scale(lang), legend=alt.Legend(orient="right")
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("month:O", title=text("month", lang)),
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("txn_count:Q", title=text("txn_count", lang), format=",d"),
                alt.Tooltip("count_share:Q", title=text("count_share", lang), format=".1%"),
            ],
        )
    )
    return _style(chart, _title(trend, "trend", lang))


def channel_volume_chart(volume: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """Grouped bars: each channel's transactions in each period of :func:`channel_volume` (by channel).

    Returns
    -------
    altair.Chart
        Data ``label, channel, period_label, txn_count, count_share``; x = channel, xOffset = period,
        y = transactions, color = period.
    """
    data = volume.groupby(["period", "period_label", "channel", "label"], as_index=False, sort=False)[
        ["txn_count", "count_share"]
    ].sum()
    periods = list(dict.fromkeys(data["period_label"]))
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "label:N",
                title=None,
                sort=[code_label("channel", c, _ui(lang)) for c in CHANNELS],
                axis=alt.Axis(labelAngle=0),
            ),
            xOffset=alt.XOffset("period_label:N", sort=periods),
            y=alt.Y("txn_count:Q", title=text("txn_count", lang), axis=alt.Axis(format=",d")),
            color=alt.Color("period_label:N", title=None, sort=periods, legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("period_label:N", title=None),
                alt.Tooltip("txn_count:Q", title=text("txn_count", lang), format=",d"),
                alt.Tooltip("count_share:Q", title=text("count_share", lang), format=".1%"),
            ],
        )
    )
    return _style(chart, _title(volume, "volume", lang))


def migration_chart(migration: pd.DataFrame, lang: str = "en") -> alt.LayerChart:
    """A dumbbell per group of :func:`channel_migration`: the digital share in the base month and now.

    Suppressed groups (too few customers) are left out.

    Returns
    -------
    altair.LayerChart
        A rule from ``digital_share_base`` to ``digital_share`` per ``label`` (y) and two points per group
        (data ``label, which, share``; color = which: base or now).
    """
    df = migration[~migration.get("suppressed", pd.Series(False, index=migration.index)).astype(bool)]
    df = df.dropna(subset=["digital_share"])
    order = list(df["label"])
    base_label, now_label = text("base", lang), text("now", lang)
    base_date = migration.attrs.get("base_date")
    if base_date:
        base_label = f"{base_label} ({str(base_date)[:7]})"
    as_of = migration.attrs.get("as_of")
    if as_of:
        now_label = f"{now_label} ({str(as_of)[:7]})"
    points = pd.concat(
        [
            pd.DataFrame({"label": df["label"], "which": base_label, "share": df["digital_share_base"]}),
            pd.DataFrame({"label": df["label"], "which": now_label, "share": df["digital_share"]}),
        ],
        ignore_index=True,
    ).dropna(subset=["share"])
    rules = df[["label", "digital_share_base", "digital_share", "digital_share_change"]].dropna()
    y = alt.Y("label:N", title=None, sort=order)
    fmt = ".0%"
    rule = (
        alt.Chart(rules)
        .mark_rule(color="#999999", strokeWidth=2)
        .encode(
            y=y,
            x=alt.X("digital_share_base:Q", title=text("digital_share", lang), axis=alt.Axis(format=fmt)),
            x2="digital_share:Q",
            tooltip=[
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("digital_share_change:Q", title="Δ", format="+.1%"),
            ],
        )
    )
    dots = (
        alt.Chart(points)
        .mark_circle(size=90, opacity=1)
        .encode(
            y=y,
            x=alt.X("share:Q", axis=alt.Axis(format=fmt), scale=alt.Scale(zero=False)),
            color=alt.Color(
                "which:N",
                title=None,
                sort=[base_label, now_label],
                scale=alt.Scale(range=["#aaaaaa", "#2ca02c"]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("which:N", title=None),
                alt.Tooltip("share:Q", title=text("digital_share", lang), format=".1%"),
            ],
        )
    )
    height = max(120, 24 * max(len(order), 1))
    layer = alt.layer(rule, dots).properties(
        title=_title(migration, "migration", lang), width=460, height=height
    )
    return (
        layer.configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def cost_chart(cost: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """Stacked horizontal bars: each org's channel cost of :func:`channel_cost`, by channel.

    Returns
    -------
    altair.Chart
        Data ``org_label, label, channel, order, cost`` (display unit: 万元 in Chinese, yuan in English),
        ``txn_count``; y = org, x = cost (stacked), color = channel.
    """
    ui = _ui(lang)
    data = cost[["org_code", "org_label", "channel", "label", "txn_count"]].copy()
    # not _money(): its rounding to 0.01 万元 quantises the small costs of a branch
    data["cost"] = cost["cost"].astype(float).to_numpy() / (10000.0 if ui == "zh_CN" else 1.0)
    data["order"] = _channel_order(data)
    x_title = f"{text('cost', lang)} ({money_unit(ui)})"
    orgs = list(dict.fromkeys(data["org_label"]))
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("org_label:N", title=None, sort=orgs),
            x=alt.X("cost:Q", title=x_title, axis=alt.Axis(format=_money_format(ui))),
            color=alt.Color(
                "label:N", title=None, scale=_channel_scale(lang), legend=alt.Legend(orient="bottom")
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("org_label:N", title=None),
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("txn_count:Q", title=text("txn_count", lang), format=",d"),
                alt.Tooltip("cost:Q", title=x_title, format=_money_format(ui)),
            ],
        )
    )
    styled = _style(chart, _title(cost, "cost_title", lang))
    return styled.properties(height=max(120, 22 * max(len(orgs), 1)))


def card_usage_chart(card: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """100% bars per period and card channel of :func:`card_usage`: own vs other banks' devices.

    Returns
    -------
    altair.Chart
        Data ``period_label, label, owner_label, count_share, txn_count``; y = period, x = share (stacked),
        color = device owner, row = channel.
    """
    data = card[["period", "period_label", "channel", "label", "device_owner", "owner_label", "txn_count",
                 "count_share"]].copy()  # fmt: skip
    periods = list(dict.fromkeys(data["period_label"]))
    owners = list(dict.fromkeys(data["owner_label"]))
    base = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("period_label:N", title=None, sort=periods),
            x=alt.X(
                "count_share:Q",
                title=text("count_share", lang),
                stack="zero",
                axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "owner_label:N",
                title=None,
                sort=owners,
                scale=alt.Scale(domain=owners, range=["#1f77b4", "#ff7f0e", "#aaaaaa"][: len(owners)]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("label:N", title=None),
                alt.Tooltip("period_label:N", title=None),
                alt.Tooltip("owner_label:N", title=None),
                alt.Tooltip("txn_count:Q", title=text("txn_count", lang), format=",d"),
                alt.Tooltip("count_share:Q", title=text("count_share", lang), format=".1%"),
            ],
        )
        .properties(width=420, height=22 * max(len(periods), 1))
    )
    channels = [code_label("channel", c, _ui(lang)) for c in CHANNELS]
    row = alt.Row("label:N", title=None, sort=channels, header=alt.Header(labelAngle=0, labelAlign="left"))
    chart = base.facet(row=row)
    return _configure(chart, _title(card, "card_usage", lang))


def underused_chart(trend: pd.DataFrame, lang: str = "en", *, max_devices: int = 24) -> alt.FacetChart:
    """Small multiples of :func:`underused_trend`: each listed device's monthly transactions and threshold.

    Parameters
    ----------
    trend : DataFrame
        :func:`underused_trend`'s frame.
    lang : str
        ``en`` or ``zh_CN``.
    max_devices : int
        At most this many panels (the devices with the fewest transactions first).

    Returns
    -------
    altair.FacetChart
        Per device (facet ``panel``: terminal id and branch), a line of ``txn_count`` per ``month`` and a
        dashed rule at ``threshold`` (under it the device is listed).
    """
    totals = trend.groupby("device")["txn_count"].sum().sort_values(kind="stable")
    keep = list(totals.index[:max_devices])
    cols = ["kind", "device", "org_code", "org_label", "month", "txn_count", "threshold"]
    data = trend.loc[trend["device"].isin(keep), cols].copy()
    kind = str(trend.attrs.get("kind", data["kind"].iloc[0] if len(data) else "ATM"))
    short = data["org_label"].astype(str).str.replace(r"^.*(银行|社)", "", regex=True)
    short = short.where(short.str.len() > 0, data["org_label"].astype(str))
    data["panel"] = (data["device"].astype(str) + " " + short) if kind == "ATM" else short
    panels = [p for d in keep for p in data.loc[data["device"] == d, "panel"].head(1)]
    line = (
        alt.Chart()
        .mark_line(point=alt.OverlayMarkDef(color="#d62728"), color="#d62728")
        .encode(
            x=alt.X("month:O", title=None, axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("txn_count:Q", title=text("txn_count", lang), axis=alt.Axis(format=",d", tickMinStep=1)),
            tooltip=[
                alt.Tooltip("panel:N", title=None),
                alt.Tooltip("month:O", title=text("month", lang)),
                alt.Tooltip("txn_count:Q", title=text("txn_count", lang), format=",d"),
                alt.Tooltip("threshold:Q", title=text("threshold", lang), format=",.1f"),
            ],
        )
    )
    rule = (
        alt.Chart()
        .mark_rule(strokeDash=[4, 3], color="#555555")
        .encode(y=alt.Y("mean(threshold):Q", axis=alt.Axis(format=",d", tickMinStep=1)))
    )
    chart = (
        alt.layer(line, rule, data=data)
        .properties(width=150, height=90)
        .facet(facet=alt.Facet("panel:N", title=None, sort=panels), columns=4)
    )
    return _configure(chart, _title(trend, "underused_trend", lang))


__all__ = [
    "CHANNEL_COLORS",
    "card_usage_chart",
    "channel_share_chart",
    "channel_volume_chart",
    "cost_chart",
    "migration_chart",
    "underused_chart",
]
