"""Charts of the customer-group analysis (:mod:`cimlib.analysis._groups`).

Each function takes the frame of one analysis and returns an Altair chart (no I/O). A frame holding a
trend (several months) is drawn for its as-of month, except by :func:`group_trend_chart`. Amounts are in
万元 in Chinese and yuan in English (:func:`cimlib.charts._charts._money`); suppressed groups are grey
and unlabelled. The font family renders Chinese in static exports (vl-convert).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import altair as alt
import pandas as pd

from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._groups import text
from cimlib.charts._charts import CJK_FONT, _money, _money_format
from cimlib.i18n import money_unit

_WIDTH = 420
_BAR = 24
_BLUE, _GREY = "#4c78a8", "#bbbbbb"


def _configure(chart: Any, title: str) -> Any:
    return (
        chart.properties(title=alt.TitleParams(title, anchor="start", fontSize=14))
        .configure(font=CJK_FONT)
        .configure_view(stroke=None)
        .configure_axis(labelLimit=220)
        .configure_legend(labelLimit=220)
    )


def _month(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the frame's as-of month."""
    if not len(frame) or "as_of_date" not in frame.columns:
        return frame
    day = dt.date.fromisoformat(str(frame.attrs.get("as_of"))) if frame.attrs.get("as_of") else None
    days = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame[days == (day if day in set(days) else days.max())]


def _height(n: int) -> int:
    return max(60, _BAR * max(n, 1))


def _order(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["label"].astype(str)))


def group_value_chart(frame: pd.DataFrame, lang: str = "en", *, measure: str = "aum_adb") -> alt.Chart:
    """Bars of one value measure by group, each labelled with the group's share of the total.

    Parameters
    ----------
    frame : DataFrame
        :func:`~cimlib.analysis._groups.group_value`.
    lang : str
        ``en`` or ``zh_CN``.
    measure : str
        ``aum_adb``, ``deposit_adb``, ``contribution`` (amounts, with their ``_share``) or ``customers``.

    Returns
    -------
    altair.LayerChart
        Data ``group, value, share, share_text, suppressed``; y = group, x = value, text = share.
    """
    if measure not in ("aum_adb", "deposit_adb", "contribution", "customers"):
        raise ValueError(f"measure must be aum_adb, deposit_adb, contribution or customers, not {measure!r}")
    f = _month(frame)
    count = measure == "customers"
    share_col = "customer_share" if count else f"{measure}_share"
    sup = f["suppressed"].astype(bool).to_numpy()
    share = pd.to_numeric(f[share_col], errors="coerce")
    data = pd.DataFrame(
        {
            "group": f["label"].astype(str).to_numpy(),
            "value": (
                pd.to_numeric(f[measure], errors="coerce").fillna(0.0)
                if count
                else _money(f[measure], _ui(lang))
            ).to_numpy(),
            "share": share.to_numpy(),
            "share_text": ["" if s or pd.isna(v) else f"{v:.1%}" for s, v in zip(sup, share, strict=True)],
            "suppressed": sup,
        }
    )
    fmt = ",d" if count else _money_format(_ui(lang))
    x_title = text(measure, lang) + ("" if count else f" ({money_unit(_ui(lang))})")
    base = alt.Chart(data).encode(y=alt.Y("group:N", title=None, sort=list(data["group"])))
    bars = base.mark_bar().encode(
        x=alt.X("value:Q", title=x_title, axis=alt.Axis(format=fmt)),
        color=alt.condition("datum.suppressed", alt.value(_GREY), alt.value(_BLUE)),
        tooltip=[
            alt.Tooltip("group:N", title=text("group", lang)),
            alt.Tooltip("value:Q", format=fmt),
            alt.Tooltip("share:Q", format=".1%", title=text("share", lang)),
        ],
    )
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(x="value:Q", text="share_text:N")
    chart = (bars + labels).properties(width=_WIDTH, height=_height(len(data)))
    return _configure(chart, f"{text(measure, lang)} · {frame.attrs.get('groups_label', '')}")


def _stacked(
    data: pd.DataFrame,
    lang: str,
    *,
    title_x: str,
    legend: str | None = None,
    groups: list[str] | None = None,
) -> alt.Chart:
    """A 100% stacked bar per group; ``data``: group, part, share, count, part_order."""
    parts = list(dict.fromkeys(data.sort_values("part_order", kind="stable")["part"]))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None, sort=groups or list(dict.fromkeys(data["group"]))),
            x=alt.X("share:Q", stack="normalize", title=title_x, axis=alt.Axis(format="%")),
            color=alt.Color(
                "part:N", title=legend, sort=parts, legend=alt.Legend(orient="right", symbolLimit=40)
            ),
            order=alt.Order("part_order:Q"),
            tooltip=[
                alt.Tooltip("group:N", title=text("group", lang)),
                alt.Tooltip("part:N"),
                alt.Tooltip("share:Q", format=".1%", title=text("share", lang)),
                alt.Tooltip("count:Q", format=",d"),
            ],
        )
        .properties(width=_WIDTH, height=_height(data["group"].nunique()))
    )


def _parts(f: pd.DataFrame, part: str, count: str, sort: str | None = None) -> pd.DataFrame:
    f = f[~f["suppressed"].astype(bool)]
    data = pd.DataFrame(
        {
            "group": f["label"].astype(str).to_numpy(),
            "part": f[part].astype(str).to_numpy(),
            "share": pd.to_numeric(f["share"], errors="coerce").fillna(0.0).to_numpy(),
            "count": pd.to_numeric(f[count], errors="coerce").fillna(0).to_numpy(),
        }
    )
    if sort is not None:
        data["part_order"] = pd.to_numeric(f[sort], errors="coerce").fillna(0).to_numpy()
        data = data.sort_values("part_order", kind="stable", ignore_index=True)
    else:
        order = {p: i for i, p in enumerate(dict.fromkeys(data["part"]))}
        data["part_order"] = data["part"].map(order)
    return data


def group_channel_chart(frame: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """100% stacked bars: each channel's share of each group's customer-initiated transactions.

    Returns
    -------
    altair.Chart
        Data ``group, part`` (the channel label), ``share, count, part_order``; suppressed groups left out.
    """
    data = _parts(_month(frame), "channel_label", "txn_count")
    chart = _stacked(data, lang, title_x=text("txn_share", lang))
    return _configure(chart, str(frame.attrs.get("title", "")))


def group_rfm_chart(frame: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """100% stacked bars: the RFM segments' shares of each group's customers (:func:`group_rfm`)."""
    data = _parts(_month(frame), "segment_label", "customers")
    chart = _stacked(data, lang, title_x=text("customer_share", lang))
    return _configure(chart, str(frame.attrs.get("title", "")))


def group_structure_chart(frame: pd.DataFrame, lang: str = "en") -> alt.VConcatChart:
    """Small multiples: per facet (customer type, AUM tier, age band, industry) a 100% stacked bar of each
    group's mix, each with its own legend.

    Returns
    -------
    altair.VConcatChart
        One panel per facet present in the frame; data ``group, part, share, count, part_order``.
    """
    f = _month(frame)
    panels = []
    for facet in dict.fromkeys(f["facet"]):
        p = f[f["facet"] == facet]
        if not len(p):
            continue
        data = _parts(p, "member_label", "customers", sort="member_order")
        panel = _stacked(
            data, lang, title_x=text("share", lang), legend=str(p["facet_label"].iloc[0]), groups=_order(f)
        )
        panels.append(panel.properties(title=str(p["facet_label"].iloc[0])))
    chart = alt.vconcat(*panels, spacing=24).resolve_scale(color="independent")
    return _configure(chart, str(frame.attrs.get("title", "")))


def group_fund_flow_chart(frame: pd.DataFrame, lang: str = "en") -> alt.LayerChart:
    """Diverging bars per group: inflows to the right and outflows to the left, split into own bank and
    other banks; a black tick marks the large transfers out (a part of the outflows).

    Returns
    -------
    altair.LayerChart
        Bars data ``group, direction, counterparty, amount`` (signed: outflows negative, in the display
        unit), ``counterparty_order``; ticks data ``group, amount`` (minus the large outflows).
    """
    f = _month(frame)
    f = f[~f["suppressed"].astype(bool)]
    ui = _ui(lang)
    rows = []
    for direction, sign in (("inflow", 1.0), ("outflow", -1.0)):
        for cp, col in (("OWN_BANK", f"{direction}_own_bank"), ("OTHER_BANK", f"{direction}_other_bank")):
            rows.append(
                pd.DataFrame(
                    {
                        "group": f["label"].astype(str).to_numpy(),
                        "direction": text(direction, lang),
                        "counterparty": f"{text(direction, lang)} · {text(cp, lang)}",
                        "amount": (sign * _money(f[col], ui)).to_numpy(),
                        "counterparty_order": 0 if cp == "OWN_BANK" else 1,
                    }
                )
            )
    data = pd.concat(rows, ignore_index=True)
    large = pd.DataFrame(
        {
            "group": f["label"].astype(str).to_numpy(),
            "amount": (-_money(f["large_outflow_amount"], ui)).to_numpy(),
            "kind": text("LARGE", lang),
        }
    )
    order = _order(f)
    fmt = _money_format(ui)
    # outflows first in the domain: they are the left half
    dom = [c for c in dict.fromkeys(data["counterparty"]) if c.startswith(text("outflow", lang))]
    dom += [c for c in dict.fromkeys(data["counterparty"]) if c not in dom]
    colors = alt.Scale(domain=dom, range=["#d62728", "#ff9896", "#1f77b4", "#aec7e8"][: len(dom)])
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None, sort=order),
            x=alt.X(
                "sum(amount):Q", title=f"{text('amount', lang)} ({money_unit(ui)})", axis=alt.Axis(format=fmt)
            ),
            color=alt.Color(
                "counterparty:N", title=None, scale=colors, legend=alt.Legend(orient="bottom", columns=2)
            ),
            order=alt.Order("counterparty_order:Q"),
            tooltip=[
                alt.Tooltip("group:N", title=text("group", lang)),
                alt.Tooltip("counterparty:N"),
                alt.Tooltip("sum(amount):Q", format=fmt, title=text("amount", lang)),
            ],
        )
    )
    ticks = (
        alt.Chart(large)
        .mark_tick(color="black", thickness=3, size=_BAR - 4)
        .encode(
            y=alt.Y("group:N", sort=order),
            x="amount:Q",
            tooltip=[alt.Tooltip("group:N"), alt.Tooltip("kind:N"), alt.Tooltip("amount:Q", format=fmt)],
        )
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#333333").encode(x="x:Q")
    chart = alt.layer(bars, ticks, zero).properties(width=_WIDTH, height=_height(len(order)))
    note = {"en": "black tick: large transfers out", "zh": "黑色刻度：大额转出"}
    return _configure(chart, f"{frame.attrs.get('title', '')} ({note['zh' if ui == 'zh_CN' else 'en']})")


_RISK = ("npl_ratio", "below_normal_share", "hard_churn_rate", "mean_churn_score", "top_risk_share")


def group_risk_chart(frame: pd.DataFrame, lang: str = "en") -> alt.HConcatChart:
    """Small multiples of bars by group: NPL ratio, borrowers below normal, hard-churn rate and, when the
    month is scored, the mean churn score and the share in the top risk deciles (a measure that is NaN
    for every group is left out).

    Returns
    -------
    altair.HConcatChart
        One panel per measure; each panel's data ``group, measure, value, value_text``.
    """
    f = _month(frame)
    f = f[~f["suppressed"].astype(bool)]
    order = _order(f)
    panels = []
    for m in _RISK:
        v = pd.to_numeric(f[m], errors="coerce")
        if v.isna().all():
            continue
        data = pd.DataFrame(
            {
                "group": f["label"].astype(str).to_numpy(),
                "measure": text(m, lang),
                "value": v.to_numpy(),
                "value_text": [
                    ("" if pd.isna(x) else f"{x:.3f}" if m == "mean_churn_score" else f"{x:.1%}") for x in v
                ],
            }
        )
        small = float(v.abs().max()) < 0.05
        fmt = ".2f" if m == "mean_churn_score" else (".1%" if small else ".0%")
        base = alt.Chart(data).encode(
            y=alt.Y("group:N", title=None, sort=order, axis=None if panels else alt.Axis())
        )
        bars = base.mark_bar(color=_BLUE).encode(
            x=alt.X("value:Q", title=None, axis=alt.Axis(format=fmt, tickCount=3)),
            tooltip=[alt.Tooltip("group:N"), alt.Tooltip("value:Q", format=".3f" if fmt == ".2f" else ".2%")],
        )
        labels = base.mark_text(align="left", dx=3, fontSize=10).encode(x="value:Q", text="value_text:N")
        panels.append((bars + labels).properties(width=130, height=_height(len(order)), title=text(m, lang)))
    if not panels:
        panels.append(alt.Chart(pd.DataFrame({"t": ["—"]})).mark_text().encode(text="t:N"))
    chart = alt.hconcat(*panels, spacing=36)
    return _configure(chart, str(frame.attrs.get("title", "")))


def group_concentration_chart(frame: pd.DataFrame, lang: str = "en") -> alt.HConcatChart:
    """Bars by group of the top customers' share of AUM and of contribution (:func:`group_concentration`),
    labelled with the Gini coefficient; contribution shares can exceed 100% (loss-making customers)."""
    f = _month(frame)
    f = f[~f["suppressed"].astype(bool)]
    order = _order(f)
    pct = float(frame.attrs.get("top_p", 0.2))
    panels = []
    for m in dict.fromkeys(f["measure"]):
        p = f[f["measure"] == m]
        data = pd.DataFrame(
            {
                "group": p["label"].astype(str).to_numpy(),
                "value": pd.to_numeric(p["top_share"], errors="coerce").to_numpy(),
                "gini": pd.to_numeric(p["gini"], errors="coerce").to_numpy(),
            }
        )
        data["value_text"] = [
            f"{v:.0%} · G {g:.2f}" if pd.notna(v) else ""
            for v, g in zip(data["value"], data["gini"], strict=True)
        ]
        base = alt.Chart(data).encode(
            y=alt.Y("group:N", title=None, sort=order, axis=None if panels else alt.Axis())
        )
        bars = base.mark_bar(color=_BLUE).encode(
            x=alt.X("value:Q", title=None, axis=alt.Axis(format="%", tickCount=4)),
            tooltip=[
                alt.Tooltip("group:N"),
                alt.Tooltip("value:Q", format=".1%"),
                alt.Tooltip("gini:Q", format=".3f"),
            ],
        )
        labels = base.mark_text(align="left", dx=3, fontSize=10).encode(x="value:Q", text="value_text:N")
        title = f"{text(m, lang)}: {text('top_20pct_share', lang).replace('20%', f'{pct:.0%}')}"
        panels.append((bars + labels).properties(width=200, height=_height(len(order)), title=title))
    chart = alt.hconcat(*panels, spacing=60)
    return _configure(chart, str(frame.attrs.get("title", "")))


def group_trend_chart(frame: pd.DataFrame, lang: str = "en", *, measure: str) -> alt.Chart:
    """Lines of one measure of any per-group frame (``months`` > 1) by month, one line per group.

    Parameters
    ----------
    frame : DataFrame
        A frame of :func:`group_value`, :func:`group_activity`, :func:`group_fund_flow` or
        :func:`group_risk` with several months.
    measure : str
        One of its numeric columns; amounts (yuan) are shown in the display unit, ``*_share`` /
        ``*_rate`` / ``*_ratio`` as percentages.

    Returns
    -------
    altair.Chart
        Data ``month, group, value``; x = month, y = value, color = group.
    """
    if measure not in frame.columns:
        raise ValueError(f"the frame has no column {measure!r}")
    ui = _ui(lang)
    rate = measure.endswith(("_share", "_rate", "_ratio")) or measure == "mean_churn_score"
    count = measure in ("customers", "active", "dormant", "borrowers", "customer_txns", "large_outflow_count")
    per = measure.endswith("_per_customer")  # small amounts: yuan in both languages
    v = pd.to_numeric(frame[measure], errors="coerce")
    data = pd.DataFrame(
        {
            "month": pd.to_datetime(frame["as_of_date"]).dt.strftime("%Y-%m").to_numpy(),
            "group": frame["label"].astype(str).to_numpy(),
            "value": (v if rate or count or per else _money(frame[measure], ui).where(v.notna())).to_numpy(),
        }
    )
    fmt = (
        ".1%"
        if rate and measure != "mean_churn_score"
        else (".3f" if rate else ",d" if count else ",.0f" if per else _money_format(ui))
    )
    unit = ("元" if ui == "zh_CN" else "yuan") if per else money_unit(ui)
    y_title = text(measure, lang) + ("" if rate or count else f" ({unit})")
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("month:O", title=text("month", lang), axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=fmt.replace(".1%", "%"))),
            color=alt.Color("group:N", title=None, sort=_order(frame)),
            tooltip=[alt.Tooltip("month:O"), alt.Tooltip("group:N"), alt.Tooltip("value:Q", format=fmt)],
        )
        .properties(width=_WIDTH, height=240)
    )
    return _configure(chart, f"{text(measure, lang)} · {frame.attrs.get('groups_label', '')}")
