"""Charts of the churn analysis (:mod:`cimlib.churn._analysis`): Altair objects, English or Chinese.

Each function takes the frame an analysis returned and gives an Altair chart whose data and encodings
tests can read; :func:`cimlib.charts.to_png` renders it offline (vl-convert, CJK fonts).
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from cimlib.charts._charts import _style

_T: dict[str, dict[str, str]] = {
    "rate": {"en": "Churn rate", "zh": "流失率"},
    "annualised_rate": {"en": "Annualised churn rate", "zh": "年化流失率"},
    "overall": {"en": "All eligible", "zh": "全部"},
    "months_since": {"en": "Months since start", "zh": "起始后月数"},
    "retention": {"en": "Still holding a product", "zh": "仍持有产品的客户占比"},
    "share": {"en": "Share of customer-initiated outflows", "zh": "客户主动转出金额占比"},
    "eligible": {"en": "Eligible", "zh": "样本客户数"},
    "churned": {"en": "Churned", "zh": "流失客户数"},
    "customers": {"en": "Customers", "zh": "客户数"},
    "suppressed": {"en": "(suppressed)", "zh": "(样本过小不显示)"},
    "pooled": {"en": "pooled", "zh": "合并"},
}
_DEST_COLORS = {"OTHER_BANK": "#e45756", "OWN_BANK": "#4c78a8", "CASH": "#b8b8b8"}


def _l(key: str, lang: str) -> str:
    return _T[key]["zh" if str(lang).startswith("zh") else "en"]


def churn_rate_chart(frame: pd.DataFrame, lang: str = "en", *, value: str = "rate") -> alt.LayerChart:
    """Churn rate by group (bars) with the rate of all eligible customers of the scope as a rule.

    Parameters
    ----------
    frame : DataFrame
        A :func:`churn_rates` result. With several scoring months, the latest month is drawn (pass
        ``pooled=True`` to draw all months together).
    lang : str
        ``"en"`` or ``"zh_CN"``.
    value : {"rate", "annualised_rate"}
        The rate drawn.

    Returns
    -------
    altair.LayerChart
        Layer 0: bars, data ``group, rate, eligible, churned, suppressed`` (suppressed groups drawn grey
        at 0); y = group (in the frame's order), x = rate. Layer 1: a rule at ``overall``.
    """
    if value not in ("rate", "annualised_rate"):
        raise ValueError(f"value must be rate or annualised_rate, not {value!r}")
    df = frame
    months = [m for m in dict.fromkeys(frame["as_of"]) if m is not None] if len(frame) else []
    month = max(months) if months else None
    if month is not None:
        df = frame[frame["as_of"] == month]
    n = len(df)
    sup = df["suppressed"].astype(bool).to_numpy() if n and "suppressed" in df.columns else [False] * n
    labels = [
        f"{lab} {_l('suppressed', lang)}" if s else str(lab)
        for lab, s in zip(df["label"] if n else [], sup, strict=False)
    ]
    data = pd.DataFrame(
        {
            "group": pd.Series(labels, dtype=str),
            "rate": pd.to_numeric(df[value], errors="coerce").fillna(0.0).to_numpy() if n else [],
            "eligible": pd.to_numeric(df["eligible"], errors="coerce").to_numpy() if n else [],
            "churned": pd.to_numeric(df["churned"], errors="coerce").to_numpy() if n else [],
            "suppressed": pd.Series(sup, dtype=bool),
        }
    )
    overall = None
    for o in frame.attrs.get("overall", []) or []:
        if (o.get("as_of") is None and month is None) or (month is not None and o.get("as_of") == str(month)):
            overall = o.get(value)
    title = str(frame.attrs.get("title", ""))
    if month is not None:
        title = f"{title} ({month:%Y-%m})" if hasattr(month, "strftime") else f"{title} ({month})"
    elif frame.attrs.get("months"):
        ms = frame.attrs["months"]
        title = f"{title} ({ms[0][:7]}..{ms[-1][:7]}, {_l('pooled', lang)})"
    fmt = ".1%"
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None, sort=list(data["group"]), axis=alt.Axis(labelLimit=320)),
            x=alt.X("rate:Q", title=_l(value, lang), axis=alt.Axis(format="%")),
            color=alt.condition("datum.suppressed", alt.value("#bbbbbb"), alt.value("#4c78a8")),
            tooltip=[
                alt.Tooltip("group:N", title=""),
                alt.Tooltip("rate:Q", title=_l(value, lang), format=fmt),
                alt.Tooltip("eligible:Q", title=_l("eligible", lang), format=",d"),
                alt.Tooltip("churned:Q", title=_l("churned", lang), format=",d"),
            ],
        )
    )
    rule_data = pd.DataFrame(
        {
            "rate": [overall]
            if overall is not None and not math.isnan(overall)
            else pd.Series([], dtype=float),
            "what": [_l("overall", lang)]
            if overall is not None and not math.isnan(overall)
            else pd.Series([], dtype=str),
        }
    )
    rule = (
        alt.Chart(rule_data)
        .mark_rule(color="#e45756", strokeDash=[5, 3], size=2)
        .encode(x="rate:Q", tooltip=[alt.Tooltip("what:N", title=""), alt.Tooltip("rate:Q", format=fmt)])
    )
    text = (
        alt.Chart(rule_data)
        .mark_text(align="left", dx=4, dy=-4, color="#e45756", baseline="bottom")
        .encode(x="rate:Q", y=alt.value(0), text=alt.Text("label:N"))
        .transform_calculate(label=f"datum.what + ' ' + format(datum.rate, '{fmt}')")
    )
    return _style(alt.layer(bars, rule, text), title)


def retention_chart(
    frame: pd.DataFrame, lang: str = "en", *, cohorts: list[str] | None = None, max_lines: int = 8
) -> alt.Chart:
    """Retention curves: one line per cohort, the share still holding a product by months since start.

    Parameters
    ----------
    frame : DataFrame
        A :func:`retention_curves` result.
    lang : str
        ``"en"`` or ``"zh_CN"``.
    cohorts : list of str, optional
        The cohorts to draw (ids of ``cohort``); default the ``max_lines`` earliest (longest) cohorts.
    max_lines : int
        At most this many lines when ``cohorts`` is None.

    Returns
    -------
    altair.Chart
        Data ``cohort, months_since, retention, customers``; x = months since (ordinal), y = retention,
        color = cohort. Suppressed points are left out.
    """
    df = frame[~frame["suppressed"].astype(bool)] if len(frame) and "suppressed" in frame.columns else frame
    keep = (
        cohorts if cohorts is not None else list(dict.fromkeys(df["cohort"]))[:max_lines] if len(df) else []
    )
    df = df[df["cohort"].isin(keep)] if len(df) else df
    n = len(df)
    data = pd.DataFrame(
        {
            "cohort": pd.Series(df["label"].astype(str).to_numpy() if n else [], dtype=str),
            "months_since": pd.Series(df["months_since"].to_numpy() if n else [], dtype="int64"),
            "retention": pd.Series(pd.to_numeric(df["retention"]).to_numpy() if n else [], dtype=float),
            "customers": pd.Series(pd.to_numeric(df["customers"]).to_numpy() if n else [], dtype=float),
        }
    )
    lo = float(data["retention"].min()) if n else 0.0
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("months_since:O", title=_l("months_since", lang), axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "retention:Q",
                title=_l("retention", lang),
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[max(0.0, math.floor(lo * 20) / 20 - 0.05) if n else 0.0, 1.0]),
            ),
            color=alt.Color(
                "cohort:N",
                title=None,
                sort=list(dict.fromkeys(data["cohort"])),
                legend=alt.Legend(orient="right"),
            ),
            tooltip=[
                alt.Tooltip("cohort:N", title=""),
                alt.Tooltip("months_since:O", title=_l("months_since", lang)),
                alt.Tooltip("retention:Q", format=".1%", title=_l("retention", lang)),
                alt.Tooltip("customers:Q", format=",d", title=_l("customers", lang)),
            ],
        )
    )
    return _style(chart, str(frame.attrs.get("title", "")))


def outflow_chart(frame: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """Where outgoing money went: 100% stacked bars by destination, churners vs stayers, per period.

    Parameters
    ----------
    frame : DataFrame
        An :func:`outflow_destinations` result (any ``by``; amounts are added up by destination).
    lang : str
        ``"en"`` or ``"zh_CN"``.

    Returns
    -------
    altair.Chart
        Data ``bar`` (group and period), ``destination, share, amount``; y = bar, x = share (stacked),
        color = destination (other bank red, own bank blue, cash grey).
    """
    from cimlib.churn._analysis import DESTINATIONS, GROUPS, PERIODS

    zh = str(lang).startswith("zh")
    k = "zh" if zh else "en"
    rows: list[dict[str, Any]] = []
    if len(frame):
        g = frame.groupby(["group", "period", "destination"], sort=False)["amount"].sum(min_count=1)
        for grp in GROUPS:
            for per in PERIODS:
                part = {d: g.get((grp, per, d), math.nan) for d in DESTINATIONS}
                total = sum(v for v in part.values() if v == v)
                if not total:
                    continue
                for d, v in part.items():
                    rows.append(
                        {
                            "bar": f"{GROUPS[grp][k]} · {PERIODS[per][k]}",
                            "destination": DESTINATIONS[d][k],
                            "code": d,
                            "share": (v / total) if v == v else 0.0,
                            "amount": v if v == v else 0.0,
                        }
                    )
    data = pd.DataFrame(rows, columns=["bar", "destination", "code", "share", "amount"])
    order = [DESTINATIONS[d][k] for d in DESTINATIONS]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y(
                "bar:N", title=None, sort=list(dict.fromkeys(data["bar"])), axis=alt.Axis(labelLimit=320)
            ),
            x=alt.X("share:Q", stack="normalize", title=_l("share", lang), axis=alt.Axis(format="%")),
            color=alt.Color(
                "destination:N",
                title=None,
                sort=order,
                scale=alt.Scale(domain=order, range=[_DEST_COLORS[d] for d in DESTINATIONS]),
                legend=alt.Legend(orient="bottom"),
            ),
            order=alt.Order("dest_order:Q"),
            tooltip=[
                alt.Tooltip("bar:N", title=""),
                alt.Tooltip("destination:N", title=""),
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("amount:Q", format=",.0f"),
            ],
        )
        .transform_calculate(dest_order=f"indexof({order!r}, datum.destination)")
    )
    return _style(chart, str(frame.attrs.get("title", "")))
