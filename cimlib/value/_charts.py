"""Charts of customer value: the tier distribution and the tier migration heat map (Altair).

Both take the frames of :func:`cimlib.value.tier_distribution` and :func:`cimlib.value.migration_matrix`
and return a chart object; render with :func:`cimlib.charts.to_png` / ``to_svg``.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from cimlib.charts._charts import CJK_FONT

_TEXT = {
    "tiers": ("Customers and AUM by {kind} tier", "{kind}分层：客户数与AUM"),
    "customers": ("Customers", "客户数"),
    "aum": ("AUM for tiering (ADB)", "AUM(日均)"),
    "migration": ("Tier migration {a} → {b} (customers)", "{kind}分层迁移 {a} → {b}(客户数)"),
    "from": ("Tier in {a}", "{a}分层"),
    "to": ("Tier in {b}", "{b}分层"),
    "kind_aum": ("AUM", "AUM"),
    "kind_contribution": ("contribution", "贡献度"),
    "tier": ("Tier", "分层"),
}


def _t(key: str, lang: str, **kw: Any) -> str:
    en, zh = _TEXT[key]
    return (zh if lang.startswith("zh") else en).format(**kw)


def _configure(chart: Any) -> Any:
    return (
        chart.configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def tier_chart(dist: pd.DataFrame, lang: str = "en", *, title: str | None = None) -> Any:
    """Customers (bars, left) and AUM for tiering (bars, right) by tier, side by side.

    Parameters
    ----------
    dist : pandas.DataFrame
        :func:`cimlib.value.tier_distribution` (the ``_total`` row is left out; suppressed tiers show no bar).
    lang : str
        ``en`` or ``zh_CN``; AUM is shown in 万元 in Chinese, in yuan in English.
    title : str, optional
        Default: "Customers and AUM by AUM tier".

    Returns
    -------
    altair.HConcatChart
    """
    f = dist[dist["tier"] != "_total"].copy()
    zh = lang.startswith("zh")
    kind = _t("kind_" + str(dist.attrs.get("kind", "aum")), lang)
    order = list(f["label"])
    aum = pd.to_numeric(f["aum_adb"], errors="coerce") / (10000.0 if zh else 1.0)
    data = pd.DataFrame({"label": f["label"], "customers": pd.to_numeric(f["customers"], errors="coerce"),
                         "aum": aum.round(2), "share": pd.to_numeric(f["customer_share"], errors="coerce")})
    y = alt.Y("label:N", sort=order, title=_t("tier", lang))
    base = alt.Chart(data).encode(y=y)
    left = base.mark_bar(color="#4c78a8").encode(
        x=alt.X("customers:Q", title=_t("customers", lang)),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("customers:Q", format=",.0f"),
                 alt.Tooltip("share:Q", format=".1%")],
    ) + base.mark_text(align="left", dx=3, fontSize=10).encode(
        x="customers:Q", text=alt.Text("customers:Q", format=",.0f"))
    unit = " (万元)" if zh else " (yuan)"
    right = base.mark_bar(color="#f58518").encode(
        x=alt.X("aum:Q", title=_t("aum", lang) + unit, axis=alt.Axis(format=",.0f")),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("aum:Q", format=",.2f")],
    ).properties(width=260, height=220)
    left = left.properties(width=260, height=220)
    t = title if title is not None else _t("tiers", lang, kind=kind)
    return _configure(alt.hconcat(left, right.encode(y=alt.Y("label:N", sort=order, axis=None)))
                      .properties(title=t))


def migration_chart(matrix: pd.DataFrame, lang: str = "en", *, title: str | None = None) -> Any:
    """The migration matrix as a heat map with the customer count in each cell (totals left out).

    Parameters
    ----------
    matrix : pandas.DataFrame
        :func:`cimlib.value.migration_matrix`; suppressed cells show "<k".
    lang : str
        ``en`` or ``zh_CN``.
    title : str, optional
        Default: "Tier migration <from> → <to> (customers)".

    Returns
    -------
    altair.LayerChart
    """
    a = matrix.attrs
    rl, cl = a.get("row_labels", {}), a.get("col_labels", {})
    rows = [r for r in matrix.index if r != "_total"]
    cols = [c for c in matrix.columns if c != "_total"]
    k = a.get("min_cell", 5)
    recs = []
    for r in rows:
        for c in cols:
            v = matrix.loc[r, c]
            sup = v != v
            recs.append({"from": rl.get(r, r), "to": cl.get(c, c), "n": None if sup else float(v),
                         "text": f"<{k}" if sup else f"{int(v):,}", "diag": r == c})  # fmt: skip
    data = pd.DataFrame(recs)
    ya, yb = str(a.get("from_month", ""))[:7], str(a.get("to_month", ""))[:7]
    kind = _t("kind_" + str(a.get("kind", "aum")), lang)
    x = alt.X("to:N", sort=[cl.get(c, c) for c in cols], title=_t("to", lang, b=yb),
              axis=alt.Axis(labelAngle=-30, orient="top"))  # fmt: skip
    y = alt.Y("from:N", sort=[rl.get(r, r) for r in rows], title=_t("from", lang, a=ya))
    base = alt.Chart(data).encode(x=x, y=y)
    heat = base.mark_rect(stroke="white").encode(
        color=alt.Color("n:Q", scale=alt.Scale(type="symlog", scheme="blues"), legend=None),
        tooltip=[alt.Tooltip("from:N"), alt.Tooltip("to:N"), alt.Tooltip("text:N", title="customers")],
    )
    text = base.mark_text(fontSize=11).encode(
        text="text:N",
        color=alt.condition("datum.n > 200", alt.value("white"), alt.value("#222")),
    )
    t = title if title is not None else _t("migration", lang, a=ya, b=yb, kind=kind)
    size = 42 * max(len(cols), 1)
    return _configure((heat + text).properties(title=t, width=size, height=34 * max(len(rows), 1)))
