"""Charts of the product analysis (:mod:`cimlib.analysis._product`): each takes the analysis frame and
returns an Altair chart (no I/O). Amounts are shown in 万元 in Chinese and in yuan in English; the text is
set in a CJK font so static export through vl-convert renders Chinese."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from cimlib.analysis._common import is_zh, pick
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._product import CATEGORIES, FIVE_CLASSES, MEASURES, STAGE_LABELS, STAGES
from cimlib.charts._charts import CJK_FONT, _money, _money_format
from cimlib.i18n import code_label, money_unit

#: Stage colours: launch blue, growth green, mature grey, decline red, unknown light grey.
STAGE_COLOURS = {"LAUNCH": "#4c78a8", "GROWTH": "#54a24b", "MATURE": "#72b7b2", "DECLINE": "#e45756"}
NO_STAGE = "#d9d9d9"
#: Five-tier classes from safe to lost.
CLASS_COLOURS = ("#54a24b", "#eeca3b", "#f58518", "#e45756", "#7f1d1d")
_MONEY = ("balance", "adb", "volume", "fee_income", "contribution", "loan_balance", "npl_balance")


def _m(key: str, lang: str) -> str:
    return pick(MEASURES[key], lang)


def _axis_title(key: str, lang: str) -> str:
    name = _m(key, lang)
    return f"{name} ({money_unit(_ui(lang))})" if key in _MONEY else name


def _finish(chart: Any, title: str, subtitle: str | None = None) -> Any:
    params = alt.TitleParams(
        title, anchor="start", fontSize=14, **({"subtitle": subtitle} if subtitle else {})
    )
    return (
        chart.properties(title=params)
        .configure(font=CJK_FONT)
        .configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=11)
        .configure_header(labelFontSize=11, titleFontSize=11, labelFont=CJK_FONT, titleFont=CJK_FONT)
        .configure_legend(labelFontSize=11, titleFontSize=11, labelLimit=220)
    )


def _title(df: pd.DataFrame, default: str) -> str:
    t = df.attrs.get("title", default)
    as_of = df.attrs.get("as_of")
    org = df.attrs.get("org_label")
    parts = [t] + [str(x) for x in (org, str(as_of)[:7] if as_of else None) if x]
    return " · ".join(parts)


def _pct_text(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:.1%}"


# ------------------------------------------------------------------------------------------------ lifecycle
def lifecycle_chart(df: pd.DataFrame, lang: str = "en", *, measure: str = "balance", columns: int = 3) -> Any:
    """Small multiples of a lifecycle measure over the months, one panel per product, points coloured by
    the month's lifecycle stage; each panel's title names the product and its stage at the last month.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.product_lifecycle` (select a category first: one panel a product).
    lang : str
        ``en`` or ``zh_CN``.
    measure : str
        ``balance``, ``adb``, ``active_accounts``, ``new_accounts``, ``closed_accounts``, ``holders`` or
        ``volume``.
    columns : int
        Panels per row.

    Returns
    -------
    altair.FacetChart
        Data ``month, panel, value, stage, stage_label``; x = month (ordinal), y = value (independent per
        panel), colour = stage label; faceted by ``panel``.
    """
    allowed = ("balance", "adb", "active_accounts", "new_accounts", "closed_accounts", "holders", "volume")
    if measure not in allowed:
        raise ValueError(f"measure must be one of {', '.join(allowed)}")
    last = df.sort_values("as_of_date").groupby("product_code", sort=False).tail(1)
    stage_now = {r.product_code: str(r.stage_label) for r in last.itertuples()}
    panel = {r.product_code: f"{r.label} · {stage_now[r.product_code]}" for r in last.itertuples()}
    values = _money(df[measure], _ui(lang)) if measure in _MONEY else df[measure].astype(float)
    hidden = df["suppressed"].astype(bool) if "suppressed" in df else pd.Series(False, index=df.index)
    data = pd.DataFrame({
        "month": [str(d)[:7] for d in df["as_of_date"]],
        "panel": df["product_code"].map(panel).to_numpy(),
        "value": values.where(~hidden).to_numpy(),
        "stage": [s if isinstance(s, str) else "NONE" for s in df["stage"]],
        "stage_label": df["stage_label"].astype(str).to_numpy(),
    })  # fmt: skip
    order = list(dict.fromkeys(df["product_code"].map(panel)))
    domain = [pick(STAGE_LABELS[s], lang) for s in STAGES] + [pick(STAGE_LABELS[None], lang)]
    colours = [STAGE_COLOURS[s] for s in STAGES] + [NO_STAGE]
    fmt = _money_format(_ui(lang)) if measure in _MONEY else ",.0f"
    months = sorted(set(data["month"]))
    ticks = months[:: max(1, math.ceil(len(months) / 6))]
    yfmt = fmt if is_zh(lang) or measure not in _MONEY else "~s"
    zero = f"datum.value == 0 ? '0' : format(datum.value, '{yfmt}')"
    base = alt.Chart().encode(
        x=alt.X("month:O", title=_m("month", lang), axis=alt.Axis(labelAngle=-45, values=ticks)),
        y=alt.Y("value:Q", title=_axis_title(measure, lang), axis=alt.Axis(format=yfmt, tickCount=4,
                                                                              labelExpr=zero)),
    )  # fmt: skip
    line = base.mark_line(color="#bbbbbb", strokeWidth=1.5)
    pts = base.mark_circle(size=40, opacity=1).encode(
        color=alt.Color("stage_label:N", title=_m("stage", lang),
                        scale=alt.Scale(domain=domain, range=colours)),
        tooltip=[alt.Tooltip("panel:N", title=_m("product", lang)),
                 alt.Tooltip("month:O", title=_m("month", lang)),
                 alt.Tooltip("value:Q", title=_axis_title(measure, lang), format=fmt),
                 alt.Tooltip("stage_label:N", title=_m("stage", lang))],
    )  # fmt: skip
    chart = (
        alt.layer(line, pts, data=data)
        .properties(width=200, height=110)
        .facet(facet=alt.Facet("panel:N", title=None, sort=order, header=alt.Header(labelLimit=260)),
               columns=columns)
        .resolve_scale(y="independent")
    )  # fmt: skip
    title = f"{_title(df, 'Product lifecycle')} · {_m(measure, lang)}"
    return _finish(chart, title)


# ------------------------------------------------------------------------------------------------ structure
def structure_chart(df: pd.DataFrame, lang: str = "en", *, share: str = "balance_share") -> Any:
    """Each product's share of its category (balance, accounts or holders), one block of bars a category.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.product_structure`.
    lang : str
        ``en`` or ``zh_CN``.
    share : str
        ``balance_share``, ``account_share`` or ``holder_share``.

    Returns
    -------
    altair.FacetChart
        Data ``category, product, share, text``; y = product (sorted by share), x = share, with the
        percentage as text; faceted by category (rows), independent y.
    """
    if share not in ("balance_share", "account_share", "holder_share"):
        raise ValueError("share must be balance_share, account_share or holder_share")
    ok = df[df[share].notna()]
    data = pd.DataFrame({
        "category": ok["category_label"].to_numpy(),
        "product": ok["label"].to_numpy(),
        "share": ok[share].astype(float).to_numpy(),
        "text": [_pct_text(v) for v in ok[share]],
    })  # fmt: skip
    cats = list(dict.fromkeys(data["category"]))
    base = alt.Chart().encode(
        y=alt.Y("product:N", title=None, sort="-x", axis=alt.Axis(labelLimit=240)),
        x=alt.X(
            "share:Q", title=_m(share, lang), axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1.1])
        ),
    )
    bars = base.mark_bar(color="#4c78a8").encode(
        tooltip=[alt.Tooltip("product:N", title=_m("product", lang)),
                 alt.Tooltip("share:Q", title=_m(share, lang), format=".1%")]
    )  # fmt: skip
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(text="text:N")
    chart = (
        alt.layer(bars, text, data=data)
        .properties(width=380, height=alt.Step(16))
        .facet(row=alt.Row("category:N", title=None, sort=cats, header=alt.Header(labelAngle=0,
                                                                                  labelAlign="left")))
        .resolve_scale(y="independent")
    )  # fmt: skip
    return _finish(chart, f"{_title(df, 'Product structure')} · {_m(share, lang)}")


# ---------------------------------------------------------------------------------------------------- risk
def npl_chart(df: pd.DataFrame, lang: str = "en") -> Any:
    """NPL ratio by loan product, with the NPL balance as text and the overall ratio as a dashed rule.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.loan_risk`.
    lang : str
        ``en`` or ``zh_CN``.

    Returns
    -------
    altair.LayerChart
        Data ``product, npl_ratio, npl_balance, text``; y = product, x = npl_ratio; a rule at the ratio
        of all the products shown.
    """
    ok = df[df["npl_ratio"].notna()]
    ui = _ui(lang)
    npl = _money(ok["npl_balance"], ui)
    fmt = _money_format(ui)
    data = pd.DataFrame({
        "product": ok["label"].to_numpy(),
        "npl_ratio": ok["npl_ratio"].astype(float).to_numpy(),
        "npl_balance": npl.to_numpy(),
        "text": [f"{_pct_text(r)} ({format(b, fmt)})" for r, b in zip(ok["npl_ratio"], npl, strict=True)],
    })  # fmt: skip
    lb = float(ok["loan_balance"].sum())
    overall = float(ok["npl_balance"].sum()) / lb if lb else 0.0
    top = max(float(data["npl_ratio"].max()) if len(data) else 0.0, overall, 0.01) * 1.45
    x = alt.X("npl_ratio:Q", title=_m("npl_ratio", lang), axis=alt.Axis(format=".1%"),
              scale=alt.Scale(domain=[0, top]))  # fmt: skip
    y = alt.Y("product:N", title=None, sort="-x", axis=alt.Axis(labelLimit=260))
    bars = alt.Chart(data).mark_bar(color="#e45756").encode(
        x=x, y=y,
        tooltip=[alt.Tooltip("product:N", title=_m("product", lang)),
                 alt.Tooltip("npl_ratio:Q", title=_m("npl_ratio", lang), format=".2%"),
                 alt.Tooltip("npl_balance:Q", title=_axis_title("npl_balance", lang), format=fmt)],
    )  # fmt: skip
    text = alt.Chart(data).mark_text(align="left", dx=3, fontSize=10).encode(x=x, y=y, text="text:N")
    label = f"{pick({'en': 'All products', 'zh': '全部产品'}, lang)} {overall:.2%}"
    rule_data = pd.DataFrame({"npl_ratio": [overall], "label": [label]})
    rule = alt.Chart(rule_data).mark_rule(strokeDash=[4, 3], color="#555555").encode(x="npl_ratio:Q")
    rule_text = (
        alt.Chart(rule_data)
        .mark_text(align="left", dx=4, dy=-6, fontSize=10, color="#555555")
        .encode(x="npl_ratio:Q", y=alt.value(0), text="label:N")
    )
    sub = pick({"en": f"text: ratio (NPL balance, {money_unit(ui)})",
                "zh": f"标注: 不良率(不良余额, {money_unit(ui)})"}, lang)  # fmt: skip
    chart = alt.layer(bars, text, rule, rule_text).properties(width=460, height=alt.Step(26))
    return _finish(chart, _title(df, "NPL"), sub)


def five_class_chart(df: pd.DataFrame, lang: str = "en") -> Any:
    """Stacked shares of each loan product's balance by five-tier class (normal to loss).

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.five_class_mix`.
    lang : str
        ``en`` or ``zh_CN``.

    Returns
    -------
    altair.Chart
        Data ``product, five_class, class_label, order, share``; y = product, x = share (stacked,
        normal first), colour = class.
    """
    ok = df[df["share"].notna()]
    data = pd.DataFrame({
        "product": ok["label"].to_numpy(),
        "five_class": ok["five_class"].to_numpy(),
        "class_label": [code_label("five_class", c, _ui(lang)) for c in ok["five_class"]],
        "order": [FIVE_CLASSES.index(c) for c in ok["five_class"]],
        "share": ok["share"].astype(float).to_numpy(),
    })  # fmt: skip
    domain = [code_label("five_class", c, _ui(lang)) for c in FIVE_CLASSES]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("product:N", title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("share:Q", title=_m("share", lang), axis=alt.Axis(format=".0%"), stack="zero",
                    scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("class_label:N", title=_m("five_class", lang),
                            scale=alt.Scale(domain=domain, range=list(CLASS_COLOURS))),
            order=alt.Order("order:Q"),
            tooltip=[alt.Tooltip("product:N", title=_m("product", lang)),
                     alt.Tooltip("class_label:N", title=_m("five_class", lang)),
                     alt.Tooltip("share:Q", title=_m("share", lang), format=".2%")],
        )
        .properties(width=420, height=alt.Step(24))
    )  # fmt: skip
    return _finish(chart, _title(df, "Five-tier classification"))


# ------------------------------------------------------------------------------------------- cross-holding
def cross_holding_chart(df: pd.DataFrame, lang: str = "en", *, label: str = "product") -> Any:
    """Heatmap of the lift of product pairs (both triangles), with the lift written in each cell.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.product_pairs`.
    lang : str
        ``en`` or ``zh_CN``.
    label : {"product", "code"}
        Axis labels: the product label, or the bare code for a compact chart.

    Returns
    -------
    altair.LayerChart
        Data ``a, b, lift, customers, text`` (each pair twice, mirrored); x = a, y = b, colour = lift
        (log scale, diverging at 1).
    """
    la, lb = ("label_a", "label_b") if label == "product" else ("product_a", "product_b")
    one = pd.DataFrame({"a": df[la], "b": df[lb], "lift": df["lift"], "customers": df["customers"]})
    two = pd.DataFrame({"a": df[lb], "b": df[la], "lift": df["lift"], "customers": df["customers"]})
    data = pd.concat([one, two], ignore_index=True)
    data = data[data["lift"].notna() & (data["lift"] > 0)]
    data["text"] = [f"{v:.1f}" for v in data["lift"]]
    rank = {}
    for code, lab, cat in zip([*df["product_a"], *df["product_b"]], [*df[la], *df[lb]],
                              [*df["category_a"], *df["category_b"]], strict=True):  # fmt: skip
        rank[lab] = (CATEGORIES.index(cat) if cat in CATEGORIES else len(CATEGORIES), code)
    order = sorted(set(data["a"]), key=lambda s: rank.get(s, (99, s)))
    lo = float(data["lift"].min()) if len(data) else 0.5
    hi = float(data["lift"].max()) if len(data) else 2.0
    lim = max(1 / min(lo, 1.0), max(hi, 1.0), 2.0)
    scale = alt.Scale(type="log", scheme="redblue", reverse=True, domain=[1 / lim, lim], domainMid=1)
    x = alt.X("a:N", title=None, sort=order, axis=alt.Axis(labelAngle=-50, labelLimit=170))
    y = alt.Y("b:N", title=None, sort=order, axis=alt.Axis(labelLimit=230))
    ticks = [1 / lim, 1, lim]
    rect = alt.Chart(data).mark_rect().encode(
        x=x, y=y, color=alt.Color("lift:Q", title=_m("lift", lang), scale=scale,
                                  legend=alt.Legend(format=".3~g", values=ticks)),
        tooltip=[alt.Tooltip("a:N", title="A"), alt.Tooltip("b:N", title="B"),
                 alt.Tooltip("customers:Q", title=_m("customers", lang), format=",.0f"),
                 alt.Tooltip("lift:Q", title=_m("lift", lang), format=".2f")],
    )  # fmt: skip
    text = alt.Chart(data).mark_text(fontSize=9).encode(
        x=x, y=y, text="text:N",
        color=alt.condition(f"datum.lift > {lim ** 0.6:.3f} || datum.lift < {lim ** -0.6:.3f}",
                            alt.value("white"), alt.value("#333333")),
    )  # fmt: skip
    n = max(len(order), 1)
    chart = alt.layer(rect, text).properties(width=26 * n, height=22 * n)
    sub = pick({"en": "lift = P(A and B) / (P(A) P(B)); above 1: held together more often than by chance",
                "zh": "提升度 = P(A且B) / (P(A)P(B)); 大于1表示共同持有多于随机"}, lang)  # fmt: skip
    return _finish(chart, _title(df, "Products held together"), sub)


def products_per_customer_chart(df: pd.DataFrame, lang: str = "en") -> Any:
    """Histogram of the products each customer holds, with each bar's share of customers.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._product.products_per_customer`.
    lang : str
        ``en`` or ``zh_CN``.

    Returns
    -------
    altair.LayerChart
        Data ``n_products, customers, text``; x = n_products (ordinal), y = customers.
    """
    ok = df[df["customers"].notna()]
    data = pd.DataFrame({
        "n_products": ok["n_products"].astype(int).to_numpy(),
        "customers": ok["customers"].astype(float).to_numpy(),
        "text": [_pct_text(v) for v in ok["customer_share"]],
    })  # fmt: skip
    x = alt.X("n_products:O", title=_m("n_products", lang), axis=alt.Axis(labelAngle=0))
    y = alt.Y("customers:Q", title=_m("customers", lang), axis=alt.Axis(format=",.0f"))
    bars = alt.Chart(data).mark_bar(color="#4c78a8").encode(
        x=x, y=y, tooltip=[alt.Tooltip("n_products:O", title=_m("n_products", lang)),
                           alt.Tooltip("customers:Q", title=_m("customers", lang), format=",.0f")],
    )  # fmt: skip
    text = alt.Chart(data).mark_text(dy=-6, fontSize=10).encode(x=x, y=y, text="text:N")
    mean = df.attrs.get("mean")
    title = _title(df, "Products per customer")
    sub = "" if mean is None else pick({"en": f"mean {mean:.2f} products per customer",
                                        "zh": f"户均持有 {mean:.2f} 个产品"}, lang)  # fmt: skip
    chart = alt.layer(bars, text).properties(width=420, height=220)
    return _finish(chart, title, sub or None)


__all__ = [
    "cross_holding_chart",
    "five_class_chart",
    "lifecycle_chart",
    "npl_chart",
    "products_per_customer_chart",
    "structure_chart",
]
