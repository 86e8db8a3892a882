"""Charts of the macro analysis: KPI trend, GL structure, GL tie-out and key focus.

Each function takes a frame of :mod:`cimlib.analysis._macro`, :mod:`~cimlib.analysis._gl` or
:mod:`~cimlib.analysis._focus` and returns an Altair chart (no I/O); render it with
:func:`cimlib.charts.to_png`. Text is set in a CJK font so vl-convert renders Chinese; amounts are yuan in
English and 万元 in Chinese.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from cimlib.analysis._common import is_zh
from cimlib.analysis._common import ui_lang as _ui
from cimlib.charts._charts import CJK_FONT, _money, _money_format
from cimlib.i18n import money_unit

_TEXT: dict[str, dict[str, str]] = {
    "trend": {"en": "Key figures, monthly", "zh": "主要指标月度趋势"},
    "month": {"en": "Month", "zh": "月份"},
    "current": {"en": "As-of month", "zh": "本月"},
    "structure": {"en": "GL structure by org", "zh": "各机构总账结构"},
    "balance": {"en": "GL balance", "zh": "总账余额"},
    "org": {"en": "Org", "zh": "机构"},
    "subject": {"en": "Subject", "zh": "科目"},
    "tieout": {"en": "GL tie-out: GL minus customer balances", "zh": "宏观/微观勾稽:总账减客户余额"},
    "difference": {"en": "Difference", "zh": "差额"},
    "status": {"en": "Status", "zh": "状态"},
    "all_ok": {"en": "All {n} org x subject rows tie out", "zh": "全部{n}个机构×科目勾稽相符"},
    "failed": {"en": "{f} of {n} rows failed", "zh": "{n}行中{f}行不平"},
    "focus": {"en": "Key focus: change against the previous month", "zh": "重点关注:较上月变动"},
    "change_rate": {"en": "Change against the previous month", "zh": "较上月变动率"},
    "kind": {"en": "Kind", "zh": "类别"},
    "none": {"en": "No movement beyond the thresholds", "zh": "无超过阈值的变动"},
}
_WIDTH = 460
_SIGN_COLORS = ("#c0392b", "#2e86c1")  # up, down


def _t(key: str, lang: str) -> str:
    return _TEXT[key]["zh" if is_zh(lang) else "en"]


def _unit(title: str, lang: str) -> str:
    return f"{title} ({money_unit(_ui(lang))})"


def _finish(chart: Any, title: str, subtitle: str | None = None) -> Any:
    t = alt.TitleParams(
        text=title, subtitle=subtitle or "", anchor="start", fontSize=14, font=CJK_FONT, subtitleFont=CJK_FONT
    )
    return (
        chart.properties(title=t)
        .configure(font=CJK_FONT)
        .configure_axis(labelFont=CJK_FONT, titleFont=CJK_FONT, labelFontSize=11, titleFontSize=11)
        .configure_legend(labelFont=CJK_FONT, titleFont=CJK_FONT, labelLimit=260)
        .configure_view(stroke=None)
    )


def _message(text: str, title: str) -> Any:
    base = alt.Chart(pd.DataFrame({"text": [text]})).mark_text(fontSize=13, font=CJK_FONT, align="left", x=0)
    return _finish(base.encode(text="text:N").properties(width=_WIDTH, height=40), title)


# ------------------------------------------------------------------------------------------------ trend
def kpi_trend_chart(
    df: pd.DataFrame, lang: str = "en", *, measures: Sequence[str] | None = None, columns: int = 3
) -> Any:
    """Small multiples of :func:`~cimlib.analysis._macro.overview_trend`: one line per measure over the
    months, the as-of month marked with a larger red point.

    Parameters
    ----------
    df : DataFrame
        ``month, measure, label, kind, value, is_current``.
    lang : str
        ``en`` or ``zh_CN``.
    measures : sequence of str, optional
        Which measures (default all in the frame, in its order).
    columns : int
        Panels per row.

    Returns
    -------
    altair.ConcatChart
        One panel per measure (own y scale and format: amounts in yuan / 万元, rates in %, counts; rates
        and NPL from zero, balances and counts zoomed to their range; a suppressed month is a gap),
        x = ``month`` (ordinal), y = ``display``; the panel data keeps ``value`` (raw) and ``is_current``.
    """
    ms = list(measures) if measures is not None else list(dict.fromkeys(df["measure"]))
    panels = []
    for m in ms:
        part = df[df["measure"] == m].copy()
        if not len(part):
            continue
        kind = str(part["kind"].iloc[0])
        if kind == "amount":
            # keep NaN (a suppressed or missing month is a gap, never a zero)
            part["display"] = part["value"].astype(float) / (10000.0 if is_zh(lang) else 1.0)
            fmt, ytitle = _money_format(_ui(lang)), money_unit(_ui(lang))
        else:
            part["display"] = part["value"].astype(float)
            fmt, ytitle = (".2%", "") if kind == "rate" else (",.0f", "")
        part = part[["month", "measure", "label", "kind", "value", "display", "is_current"]]
        base = alt.Chart(part).encode(
            x=alt.X("month:O", title=None, axis=alt.Axis(labelAngle=-45, labelFontSize=9)),
            y=alt.Y(
                "display:Q",
                title=ytitle,
                axis=alt.Axis(format=fmt),
                scale=alt.Scale(zero=kind == "rate" or m.startswith("npl")),
            ),
            tooltip=[
                alt.Tooltip("month:O", title=_t("month", lang)),
                alt.Tooltip("display:Q", title=str(part["label"].iloc[0]), format=fmt),
            ],
        )
        line = base.mark_line(color="#2e86c1", point=alt.OverlayMarkDef(size=18, color="#2e86c1"))
        now = base.transform_filter("datum.is_current").mark_point(size=110, color="#c0392b", filled=True)
        panels.append((line + now).properties(title=str(part["label"].iloc[0]), width=200, height=120))
    chart = alt.concat(*panels, columns=columns) if panels else alt.Chart(pd.DataFrame()).mark_point()
    sub = (
        f"{_t('current', lang)}: {df.loc[df['is_current'], 'month'].iloc[0]}"
        if df["is_current"].any()
        else None
    )
    return _finish(chart, df.attrs.get("title") or _t("trend", lang), sub)


# -------------------------------------------------------------------------------------------- structure
def gl_structure_chart(df: pd.DataFrame, lang: str = "en", *, share: bool = False) -> Any:
    """Stacked bars of the GL subjects by child org, deposits and loans side by side.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._gl.gl_structure` (the focus org's total rows are left out when it has
        children).
    lang : str
        ``en`` or ``zh_CN``.
    share : bool
        Stack each org's shares (the structure) instead of balances.

    Returns
    -------
    altair.HConcatChart
        Two panels (deposits, loans): y = ``org_label``, x = ``display`` (balance in yuan / 万元, or
        ``side_share``), color = subject ``label``.
    """
    d = df[~df["is_total"]] if (~df["is_total"]).any() else df
    d = d.copy()
    d["display"] = d["side_share"].astype(float) if share else _money(d["gl_balance"], _ui(lang))
    fmt = ".0%" if share else _money_format(_ui(lang))
    xtitle = _t("balance", lang) if share else _unit(_t("balance", lang), lang)
    order = list(dict.fromkeys(d["org_label"]))
    subjects = list(dict.fromkeys(d.sort_values("subject_code", ascending=False)["label"]))
    color = alt.Color(
        "label:N",
        title=_t("subject", lang),
        sort=subjects,
        scale=alt.Scale(domain=subjects, scheme="tableau10"),
    )
    panels = []
    for side in ("deposit", "loan"):
        part = d[d["side"] == side][
            [
                "org_code",
                "org_label",
                "subject_code",
                "label",
                "side_label",
                "gl_balance",
                "side_share",
                "display",
            ]
        ]
        if not len(part):
            continue
        panels.append(
            alt.Chart(part)
            .mark_bar()
            .encode(
                y=alt.Y("org_label:N", title=None, sort=order, axis=alt.Axis(labelLimit=220)),
                x=alt.X("display:Q", title=xtitle, axis=alt.Axis(format=fmt), stack="zero"),
                color=color,
                order=alt.Order("subject_code:N"),
                tooltip=[
                    "org_label:N",
                    "label:N",
                    alt.Tooltip("display:Q", format=fmt),
                    alt.Tooltip("side_share:Q", format=".1%"),
                ],
            )
            .properties(title=str(part["side_label"].iloc[0]), width=260, height=max(120, 18 * len(order)))
        )
    chart = alt.hconcat(*panels).resolve_scale(color="shared")
    return _finish(chart, df.attrs.get("title") or _t("structure", lang))


# ---------------------------------------------------------------------------------------------- tie-out
def tieout_chart(df: pd.DataFrame, lang: str = "en", *, top: int = 40) -> Any:
    """The tie-out differences by org x subject (the largest ``top``), failures in red.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._gl.gl_tieout`.
    lang : str
        ``en`` or ``zh_CN``.
    top : int
        At most this many rows with a difference, failures first, then by |difference|.

    Returns
    -------
    altair.Chart
        A bar per org x subject with a non-zero difference: y = ``row`` (org and subject), x = ``display``
        (difference in yuan / 万元), color = ``status_label`` (failed red, ok grey); a zero rule. When
        nothing differs, a text chart saying every row ties out.
    """
    title = df.attrs.get("title") or _t("tieout", lang)
    n, f = len(df), int((df["status"] == "fail").sum())
    d = df[df["difference"].astype(float) != 0].copy()
    if not len(d):
        return _message(_t("all_ok", lang).format(n=n), title)
    d["_fail"] = d["status"] == "fail"
    d = d.sort_values(["_fail", "abs_difference"], ascending=[False, False]).head(top)
    d["row"] = d["org_label"].astype(str) + " · " + d["label"].astype(str)
    d["display"] = _money(d["difference"], _ui(lang))
    fmt = _money_format(_ui(lang))
    labels = {
        "fail": _TEXT_STATUS["fail"]["zh" if is_zh(lang) else "en"],
        "ok": _TEXT_STATUS["ok"]["zh" if is_zh(lang) else "en"],
    }
    d = d[
        [
            "org_code",
            "org_label",
            "subject_code",
            "label",
            "row",
            "status",
            "status_label",
            "gl_balance",
            "customer_balance",
            "difference",
            "display",
        ]
    ]
    bars = (
        alt.Chart(d)
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=list(d["row"]), axis=alt.Axis(labelLimit=320)),
            x=alt.X(
                "display:Q", title=_unit(_t("difference", lang), lang), axis=alt.Axis(format=fmt, tickCount=6)
            ),
            color=alt.Color(
                "status_label:N",
                title=_t("status", lang),
                scale=alt.Scale(domain=[labels["fail"], labels["ok"]], range=["#c0392b", "#9e9e9e"]),
            ),
            tooltip=[
                "org_label:N",
                "label:N",
                alt.Tooltip("gl_balance:Q", format=",.2f"),
                alt.Tooltip("customer_balance:Q", format=",.2f"),
                alt.Tooltip("difference:Q", format=",.2f"),
            ],
        )
    )
    rule = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#555").encode(x="x:Q")
    chart = (bars + rule).properties(width=_WIDTH, height=max(80, 20 * len(d)))
    return _finish(chart, title, _t("failed", lang).format(f=f, n=n))


_TEXT_STATUS = {"ok": {"en": "OK", "zh": "平"}, "fail": {"en": "Failed", "zh": "不平"}}


# ------------------------------------------------------------------------------------------- key focus
def key_focus_chart(df: pd.DataFrame, lang: str = "en", *, clip: float = 3.0) -> Any:
    """Diverging bars of the key-focus rows' change rates against the previous month.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._focus.key_focus` (``customer_count`` rows are left out).
    lang : str
        ``en`` or ``zh_CN``.
    clip : float
        Rates beyond ±``clip`` (300%) are drawn at the edge (the tooltip keeps the real rate and change).

    Returns
    -------
    altair.Chart
        y = ``row`` (kind, name and measure), x = ``display`` (change rate, clipped), color = ``direction``
        (up red, down blue, the Chinese convention), one bar per row in the frame's order.
    """
    title = df.attrs.get("title") or _t("focus", lang)
    d = df[df["kind"] != "customer_count"].copy() if len(df) else df
    if not len(d):
        return _message(_t("none", lang), title)
    d["row"] = (
        d["kind_label"].astype(str) + " · " + d["label"].astype(str) + " · " + d["measure_label"].astype(str)
    )
    d["row"] = [
        f"{r} ({i + 1})" if dup else r
        for i, (r, dup) in enumerate(zip(d["row"], d["row"].duplicated(), strict=True))
    ]
    rate = d["change_rate"].astype(float)
    rate = rate.where(rate.notna(), clip * d["change"].astype(float).apply(lambda v: 1 if v > 0 else -1))
    d["display"] = rate.clip(-clip, clip)
    up, down = ("上升", "下降") if is_zh(lang) else ("Up", "Down")
    d["direction"] = [up if v > 0 else down for v in d["change"].astype(float)]
    d = d[
        [
            "kind",
            "code",
            "label",
            "measure",
            "row",
            "previous",
            "current",
            "change",
            "change_rate",
            "display",
            "direction",
            "drivers",
        ]
    ]
    bars = (
        alt.Chart(d)
        .mark_bar()
        .encode(
            y=alt.Y("row:N", title=None, sort=list(d["row"]), axis=alt.Axis(labelLimit=340)),
            x=alt.X(
                "display:Q",
                title=_t("change_rate", lang),
                axis=alt.Axis(format=".0%"),
                scale=alt.Scale(
                    domain=[
                        -min(clip, max(1.0, float(d["display"].abs().max()))),
                        min(clip, max(1.0, float(d["display"].abs().max()))),
                    ]
                ),
            ),
            color=alt.Color(
                "direction:N", title=None, scale=alt.Scale(domain=[up, down], range=list(_SIGN_COLORS))
            ),
            tooltip=[
                "row:N",
                alt.Tooltip("previous:Q", format=",.2f"),
                alt.Tooltip("current:Q", format=",.2f"),
                alt.Tooltip("change:Q", format=",.2f"),
                alt.Tooltip("change_rate:Q", format=".1%"),
                "drivers:N",
            ],
        )
    )
    rule = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#555").encode(x="x:Q")
    chart = (bars + rule).properties(width=_WIDTH, height=max(80, 20 * len(d)))
    return _finish(chart, title)
