"""The customer 360 app: search, a results list and a tabbed 360 view, built with ipywidgets.

All logic is here, so it is unit-tested without a browser; ``notebooks/apps/customer_360.ipynb`` only calls
:func:`customer_360_app`. Data comes only through ``cimlib.customer`` with the signed-in principal, so row
scope, masking and the audit log apply; the app never sees an unmasked or out-of-scope row.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import ModuleType
from typing import Any, Protocol

import ipywidgets as w
import pandas as pd

from cimlib import charts
from cimlib.i18n import (
    DEFAULT_LANG,
    LANGS,
    code_label,
    column_label,
    format_count,
    format_money,
    money_unit,
    t,
)

log = logging.getLogger(__name__)

MAX_RESULTS = 50
#: The page key of the value tab (its title comes from :func:`value_text`).
VALUE_TAB = "value360.tab"
MAX_TABLE_ROWS = 200
#: Longest customer number a deep link may name (longer ones are refused without a lookup).
MAX_LINKED_ID = 64

# Columns shown as money (yuan; 万元 in Chinese). Counts, rates, ratios, days and years are not.
_MONEY_WORDS = (
    "balance",
    "adb",
    "amount",
    "aum",
    "value",
    "limit",
    "capital",
    "revenue",
    "assets",
    "liabilities",
    "profit",
    "used",
    "volume",
    "income",
    "fee",
    "basis",
)
_NOT_MONEY_WORDS = (
    "count",
    "rate",
    "ratio",
    "util",
    "days",
    "share",
    "pct",
    "months",
    "score",
    "rank",
    "date",
    "type",
    "code",
    "year",
    "margin",
)
# Fractions shown as percentages.
_PERCENT_WORDS = ("rate", "ratio", "util", "share", "margin", "pct")
# Columns that are money in one frame and something else in another (a risk flag's value is days or yuan).
_NOT_MONEY_IN = {("risk_flags", "value")}
# Columns that hold a code of a code list (labelled from the locale files, then codes.yaml).
_CODE_COLUMNS = {
    "customer_type": "customer_type",
    "channel": "channel",
    "five_class": "five_class",
    "worst_five_class": "five_class",
    "loan_five_class": "five_class",
    "loan_form": "loan_form",
    "account_type": "account_type",
    "wealth_type": "wealth_type",
    "asset_type": "asset_type",
    "status": "status",
    "biz_type": "biz_type",
    "guarantee_type": "guarantee_type",
    "card_type": "card_type",
    "economic_nature": "economic_nature",
    "enterprise_form": "enterprise_form",
    "industry": "industry",
    "education": "education",
    "occupation": "occupation",
    "marital_status": "marital_status",
    "sex": "sex",
    "role": "role",
    "category": "product_category",
    "product_category": "product_category",
    "subtype": "product_subtype",
    "event_type": "event_type",
    "flag": "risk_flag",
    "severity": "severity",
    "matched_on": "matched_on",
    "segment": "segment",
    "group": "asset_group",
    "source_systems": "source_system",
}
# Columns the app does not show: bookkeeping, or shown another way (the title, a localized sibling).
_HIDDEN_COLUMNS = {
    "is_current",
    "exists_at_as_of",
    "label_en",
    "label_zh",
    "tier_en",
    "tier_zh",
    "industry_label",
    "county_code",
    "customer_id",
}
_KEEP_CUSTOMER_ID = {"guarantees_given", "guarantees_received"}


class CustomerService(Protocol):
    """What the app needs from ``cimlib.customer`` (a fake in unit tests)."""

    def search(self, principal: Any, query: str, *, home: Any = None, limit: int = 50) -> pd.DataFrame: ...

    def customer_360(
        self, principal: Any, customer_id: str, *, as_of: Any = None, home: Any = None
    ) -> Any: ...


def _default_service() -> ModuleType:
    import cimlib.customer

    return cimlib.customer


def _access_error_key(exc: Exception) -> str | None:
    """The message key for an access-layer refusal, or ``None`` when ``exc`` is not one.

    Not found and out of scope give the same message; a role without detail gets its own.
    """
    import cimlib.access as access

    if isinstance(exc, access.NotFoundOrNotPermitted):
        return "app.not_permitted"
    not_permitted = getattr(access, "NotPermitted", None)
    if not_permitted is not None and isinstance(exc, not_permitted):
        return "app.no_detail"
    if isinstance(exc, access.AccessError):
        return "app.error"
    return None


def is_money_column(column: str, frame: str = "") -> bool:
    """Return whether a column holds an amount of money (shown in 万元 in Chinese, yuan in English).

    Parameters
    ----------
    column : str
        The column name.
    frame : str
        The 360 frame it belongs to (``"risk_flags"`` …), for the few names that differ between frames.

    Returns
    -------
    bool
        True for names like ``deposit_adb`` or ``line_amount``; False for counts, rates, days and codes.
    """
    name = column.lower()
    if (frame, name) in _NOT_MONEY_IN or name.startswith("n_"):
        return False
    if any(word in name for word in _NOT_MONEY_WORDS):
        return False
    return any(word in name for word in _MONEY_WORDS)


def is_percent_column(column: str) -> bool:
    """Return whether a column holds a fraction shown as a percentage (rates, ratios, shares)."""
    name = column.lower()
    return any(word in name for word in _PERCENT_WORDS) and not name.startswith("n_")


def format_cell(
    column: str, value: Any, lang: str, *, frame: str = "", row: Mapping[str, Any] | None = None
) -> str:
    """Format one value for display: money in the locale's unit, codes by their label, dates as ISO text.

    Parameters
    ----------
    column : str
        The column the value comes from (decides money, percent or code formatting).
    value : Any
        The value.
    lang : str
        ``"zh_CN"`` or ``"en"``.
    frame : str
        The 360 frame the value comes from.
    row : mapping, optional
        The whole row; a ``<column>_zh`` / ``<column>_en`` sibling there is shown instead of the code.

    Returns
    -------
    str
        Display text (not HTML-escaped).
    """
    if isinstance(value, list | tuple):
        return ", ".join(format_cell(column, v, lang, frame=frame) for v in value)
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if row is not None:
        sibling = row.get(f"{column}_{'zh' if lang == 'zh_CN' else 'en'}")
        if isinstance(sibling, str) and sibling:
            return sibling
    if isinstance(value, bool):
        return t("app.yes", lang) if value else t("app.no", lang)
    if column in _CODE_COLUMNS and isinstance(value, str):
        return code_label(_CODE_COLUMNS[column], value, lang)
    if isinstance(value, int | float | Decimal):
        if is_money_column(column, frame):
            return format_money(value, lang)
        if is_percent_column(column):
            return f"{float(value):.2%}"
    if isinstance(value, pd.Timestamp | dt.datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not column.endswith("year"):
        return format_count(value, lang)
    return str(value)


def column_header(column: str, lang: str, frame: str = "") -> str:
    """Return a column's localized header, with the money unit for money columns."""
    label = column_label(column, lang)
    return f"{label} ({money_unit(lang)})" if is_money_column(column, frame) else label


def visible_columns(frame: pd.DataFrame, name: str = "") -> list[str]:
    """The columns of a 360 frame that the app shows."""
    hidden = _HIDDEN_COLUMNS - ({"customer_id"} if name in _KEEP_CUSTOMER_ID else set())
    return [str(c) for c in frame.columns if str(c) not in hidden]


def table_html(
    frame: pd.DataFrame | None,
    lang: str,
    *,
    name: str = "",
    css_class: str = "cim-table",
    max_rows: int = MAX_TABLE_ROWS,
) -> str:
    """Render a frame as an escaped HTML table with localized headers and formatted cells.

    Parameters
    ----------
    frame : DataFrame or None
        The rows to show (already scoped and masked by the service).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    name : str
        The 360 frame's name (``"accounts"``, ``"risk_flags"`` …).
    css_class : str
        The table's CSS class.
    max_rows : int
        Show at most this many rows (and say how many there were).

    Returns
    -------
    str
        HTML; an empty frame gives a "none" line.
    """
    if frame is None or len(frame) == 0:
        return f'<p class="cim-empty">{html.escape(t("app.none", lang))}</p>'
    cols = visible_columns(frame, name)
    head = "".join(f"<th>{html.escape(column_header(c, lang, name))}</th>" for c in cols)
    body = []
    for rec in frame.head(max_rows).to_dict("records"):
        cells = []
        for col in cols:
            val = rec.get(col)
            text = html.escape(format_cell(col, val, lang, frame=name, row=rec))
            numeric = isinstance(val, int | float | Decimal) and not isinstance(val, bool)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(frame) > max_rows:
        note = t("app.more_rows", lang, shown=max_rows, total=len(frame))
        more = f'<p class="cim-more">{html.escape(note)}</p>'
    rows = "".join(body)
    table = f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return f'<div class="cim-scroll">{table}</div>{more}'


def overview_html(overview: Mapping[str, Any] | None, lang: str) -> str:
    """Render the overview dict as a two-column table of localized labels and formatted values."""
    if not overview:
        return f'<p class="cim-empty">{html.escape(t("app.none", lang))}</p>'
    rows = "".join(
        f"<tr><th>{html.escape(column_header(str(k), lang))}</th>"
        f"<td>{html.escape(format_cell(str(k), v, lang, frame='overview', row=overview))}</td></tr>"
        for k, v in overview.items()
        if str(k) not in _HIDDEN_COLUMNS and not isinstance(v, dict | pd.DataFrame)
    )
    return f'<table class="cim-table cim-overview">{rows}</table>'


def scope_text(principal: Any, lang: str) -> str:
    """The principal's row scope in words, e.g. ``县行 101000 (桐庐县农村商业银行)``.

    Parameters
    ----------
    principal : Principal
        The signed-in user.
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    str
        The localized scope; the principal's own ``scope_label`` when its scope kind is unknown.
    """
    scope = getattr(principal, "scope", None)
    org_code = getattr(principal, "org_code", None) or ""
    org_name = getattr(principal, "org_name", None)
    org = f"{org_code} ({org_name})" if org_name else str(org_code)
    if scope == "all":
        return t(
            "scope.all" if getattr(principal, "can_view_detail", False) else "scope.all_aggregates", lang
        )
    if scope in ("county", "branch"):
        return t(f"scope.{scope}", lang, org=org)
    if scope == "managed":
        return t("scope.managed", lang, staff_no=getattr(principal, "staff_no", "") or "")
    if scope == "none":
        return t("scope.audit" if getattr(principal, "audit_reader", False) else "scope.none", lang)
    return str(getattr(principal, "scope_label", "") or "")


def principal_text(principal: Any, lang: str) -> str:
    """The signed-in user's name, role and scope, as an app header shows them."""
    return t(
        "app.signed_in_as",
        lang,
        name=getattr(principal, "display_name", ""),
        role=code_label("role", getattr(principal, "role", ""), lang),
        scope=scope_text(principal, lang),
    )


def chart_html(chart: Any, css_class: str) -> str:
    """Embed a chart as inline SVG rendered in the kernel (offline: no CDN, no JavaScript)."""
    try:
        svg = charts.to_svg(chart)
    except Exception:  # a chart that fails to render must not take the view down
        log.exception("chart rendering failed")
        return ""
    return f'<div class="cim-chart {css_class}">{svg}</div>'


_CSS = """<style>
.cim-app { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; max-width: 1100px; }
.cim-app .cim-title { font-size: 18px; font-weight: 600; }
.cim-app .cim-principal { color: #455a64; }
.cim-app table.cim-table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
.cim-app table.cim-table th, .cim-app table.cim-table td { border-bottom: 1px solid #e0e0e0; padding: 3px 8px;
  text-align: left; white-space: nowrap; }
.cim-app table.cim-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cim-app table.cim-overview th { color: #546e7a; font-weight: normal; }
.cim-app .cim-status { color: #b71c1c; }
.cim-app .cim-notice { color: #37474f; }
.cim-app h4 { margin: 10px 0 4px; }
.cim-app .cim-scroll { overflow-x: auto; max-width: 100%; }
.cim-app .cim-badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: 600; }
.cim-app .cim-risk-high { background: #ffebee; color: #b71c1c; }
.cim-app .cim-risk-medium { background: #fff8e1; color: #e65100; }
.cim-app .cim-risk-low { background: #e8f5e9; color: #1b5e20; }
.cim-app .cim-risk-none { background: #eceff1; color: #455a64; font-weight: normal; }
.cim-app .cim-reasons ul { margin: 4px 0 8px 18px; padding: 0; }
.cim-app .cim-tabs .lm-TabBar-tab { flex: 0 0 auto !important; max-width: none !important; min-width: 64px; }
</style>"""


def _section(title: str, body: str) -> str:
    return f"<h4>{html.escape(title)}</h4>{body}"


# ---- the value section (contribution, tiers, RFM, churn) -----------------------------------------------
#: Text of the value tab, in both languages. A key ``value360.<name>`` in the locale files takes precedence,
#: so the text can move there without a code change.
_VALUE_TEXT: dict[str, tuple[str, str]] = {
    "tab": ("Value", "价值"),
    "title": ("Value and churn risk, {month}", "客户价值与流失风险（{month}）"),
    "contribution": ("Contribution this month", "本月贡献度"),
    "aum_tier": ("AUM tier", "AUM分层"),
    "contribution_tier": ("Contribution tier", "贡献度分层"),
    "quality": ("Quality customer", "优质客户"),
    "not_quality": ("not a quality customer", "非优质客户"),
    "potential": ("Potential quality customer", "潜在优质客户"),
    "not_potential": ("not potential (share of wallet {share})", "非潜在优质客户（钱包份额 {share}）"),
    "not_assessed": ("not assessed for this month", "本月未评估"),
    "rfm": ("RFM segment", "RFM分群"),
    "churn": ("Churn risk", "流失风险"),
    "churn_badge": ("decile {decile} of 10 (score {score})", "风险十分位 {decile}/10（评分 {score}）"),
    "churn_none": ("not scored this month", "本月未评分"),
    "reasons": ("Why", "原因"),
    "no_reasons": ("below the watchlist's threshold: no reasons computed", "未达关注名单门槛，未生成原因"),
    "by_product": ("Contribution by product", "按产品贡献度"),
    "trend": ("Contribution, last months", "近几个月贡献度"),
    "chart_title": ("Where this month's contribution comes from", "本月贡献度构成"),
    "unit": ("CNY", "元"),
    "product": ("Product", "产品"),
    "fees_and_txn": ("Fees and transactions (no product)", "手续费与交易（不分产品）"),
    "month": ("Month", "月份"),
    "deposit_nii": ("Deposit NII", "存款净利息收入"),
    "loan_nii": ("Loan NII", "贷款净利息收入"),
    "fee_income": ("Fees", "手续费收入"),
    "operating_cost": ("Operating cost", "运营成本"),
    "expected_loss": ("Expected loss", "预期损失"),
    "total": ("Contribution", "贡献度"),
    "unavailable": (
        "No value figures: parameters/value.yaml could not be read.",
        "无价值数据：value.yaml 无法读取。",
    ),
}
_RISK_CLASS = ((8, "cim-risk-high"), (5, "cim-risk-medium"), (1, "cim-risk-low"))


def value_text(key: str, lang: str, **fmt: Any) -> str:
    """A text of the value tab in ``lang`` (the locale files' ``value360.<key>`` when they have it)."""
    try:
        return t(f"value360.{key}", lang, **fmt)
    except KeyError:
        en, zh = _VALUE_TEXT[key]
        text = zh if lang == "zh_CN" else en
        return text.format(**fmt) if fmt else text


def _yuan(x: Any) -> str:
    """Contribution is tens to thousands of yuan a month: shown in yuan in both languages, not 万元."""
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return f"{float(x):,.2f}"


def contribution_steps(value: Mapping[str, Any], lang: str) -> pd.DataFrame:
    """The waterfall of a month's contribution: income steps up, costs down, the total from zero.

    Parameters
    ----------
    value : mapping
        ``Customer360.value`` (``deposit_nii``, ``loan_nii``, ``fee_income``, ``operating_cost``,
        ``expected_loss``, ``contribution``, ``expected_loss_included``).
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    DataFrame
        ``step, label, amount, start, end, kind`` (``income``, ``cost`` or ``total``), in order; the last
        step's ``end`` is the contribution. Expected loss is a step only when it is subtracted.
    """
    steps = [("deposit_nii", 1), ("loan_nii", 1), ("fee_income", 1), ("operating_cost", -1)]
    if value.get("expected_loss_included"):
        steps.append(("expected_loss", -1))
    rows, level = [], 0.0
    for key, sign in steps:
        amount = sign * float(value.get(key) or 0.0)
        rows.append((key, value_text(key, lang), amount, level, level + amount,
                     "cost" if sign < 0 else "income"))  # fmt: skip
        level += amount
    total = float(value.get("contribution") or 0.0)
    rows.append(("contribution", value_text("total", lang), total, 0.0, total, "total"))
    return pd.DataFrame(rows, columns=["step", "label", "amount", "start", "end", "kind"])


def contribution_waterfall(value: Mapping[str, Any], lang: str = DEFAULT_LANG) -> Any:
    """A waterfall chart of where a customer's month contribution comes from (Altair, the app's style).

    Parameters
    ----------
    value : mapping
        ``Customer360.value``.
    lang : str
        ``"zh_CN"`` or ``"en"``; amounts in yuan in both (a month's contribution is small).

    Returns
    -------
    altair.LayerChart
        Data of :func:`contribution_steps`; x = step (in order), y / y2 = start / end, colour = kind.
    """
    import altair as alt

    from cimlib.charts import CJK_FONT

    data = contribution_steps(value, lang)
    order = list(data["label"])
    kinds = ["income", "cost", "total"]
    base = alt.Chart(data).encode(
        x=alt.X("label:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=120)),
    )
    bars = base.mark_bar(size=38).encode(
        y=alt.Y("start:Q", title=f"{value_text('total', lang)} ({value_text('unit', lang)})",
                axis=alt.Axis(format=",.0f")),
        y2="end:Q",
        color=alt.Color("kind:N", scale=alt.Scale(domain=kinds, range=["#4c78a8", "#e45756", "#54a24b"]),
                        legend=None),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("amount:Q", format=",.2f")],
    )  # fmt: skip
    text = (
        base.transform_calculate(top="max(datum.start, datum.end)")
        .mark_text(dy=-6, fontSize=11)
        .encode(y="top:Q", text=alt.Text("amount:Q", format=",.2f"))
    )
    rule = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#90a4ae").encode(y="y:Q")
    title = value_text("chart_title", lang)
    return (
        (bars + text + rule)
        .properties(title=title, width=460, height=220)
        .configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


def _risk_class(decile: int) -> str:
    return next(cls for floor, cls in _RISK_CLASS if decile >= floor)


def value_html(c360: Any, lang: str, *, chart: bool = True) -> str:
    """The value tab: tiers and flags, the churn-risk badge with its reasons, the contribution waterfall,
    the contribution by product and the trend.

    Parameters
    ----------
    c360 : Customer360
        The view (its ``value``, ``contribution_by_product`` and ``contribution_trend``).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    chart : bool
        Render the waterfall (SVG in the kernel); False leaves a placeholder, for a tab not yet shown.

    Returns
    -------
    str
        HTML; every text escaped.
    """
    value = getattr(c360, "value", None) or {}
    esc = html.escape
    if not value.get("available"):
        return f'<p class="cim-empty">{esc(value_text("unavailable", lang))}</p>'
    zh = lang == "zh_CN"
    name = "zh" if zh else "en"
    unit = value_text("unit", lang)
    rows: list[tuple[str, str]] = [
        (value_text("contribution", lang), f"{_yuan(value.get('contribution'))} {unit}"),
    ]
    for key in ("aum_tier", "contribution_tier"):
        tier = value.get(key)
        if tier:
            rows.append((value_text(key, lang), f"{tier['id']} · {tier[name]}"))
    if "is_quality" in value:
        rule = value.get("quality_rule")
        rows.append((value_text("quality", lang), rule[name] if rule else value_text("not_quality", lang)))
    pot = value.get("potential")
    if pot is None:
        pot_text = value_text("not_assessed", lang)
    elif pot.get("is_potential"):
        pot_text = t("app.yes", lang)
    else:
        share = pot.get("share_of_wallet")
        pot_text = value_text("not_potential", lang, share="-" if share is None else f"{float(share):.0%}")
    rows.append((value_text("potential", lang), pot_text))
    rfm = value.get("rfm")
    rows.append((value_text("rfm", lang), f"{rfm[name]} (RFM {rfm['rfm']})" if rfm else
                 value_text("not_assessed", lang)))  # fmt: skip
    churn = value.get("churn")
    if churn:
        decile = int(churn["risk_decile"])
        badge = value_text("churn_badge", lang, decile=decile, score=f"{float(churn['churn_score']):.1%}")
        reasons = churn.get("reasons_zh_CN" if zh else "reasons_en") or []
        items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
        items = items or f"<li>{esc(value_text('no_reasons', lang))}</li>"
        churn_html = (
            f'<div class="cim-churn"><span class="cim-badge {_risk_class(decile)}">'
            f"{esc(value_text('churn', lang))}: {esc(badge)}</span>"
            f'<div class="cim-reasons"><b>{esc(value_text("reasons", lang))}</b><ul>{items}</ul></div></div>'
        )
    else:
        churn_html = (
            f'<div class="cim-churn"><span class="cim-badge cim-risk-none">{esc(value_text("churn", lang))}: '
            f"{esc(value_text('churn_none', lang))}</span></div>"
        )
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    body = [
        f"<h4>{esc(value_text('title', lang, month=str(value.get('as_of', ''))[:7]))}</h4>",
        churn_html,
        f'<table class="cim-table cim-overview cim-value-summary">{summary}</table>',
        chart_html(contribution_waterfall(value, lang), "cim-chart-value")
        if chart
        else '<div class="cim-chart cim-chart-value cim-pending"></div>',
        f"<h4>{esc(value_text('by_product', lang))}</h4>",
        _value_table(getattr(c360, "contribution_by_product", None), lang, by_product=True),
        f"<h4>{esc(value_text('trend', lang))}</h4>",
        _value_table(getattr(c360, "contribution_trend", None), lang, by_product=False),
    ]
    return '<div class="cim-value">' + "".join(body) + "</div>"


def _value_table(frame: pd.DataFrame | None, lang: str, *, by_product: bool) -> str:
    if frame is None or len(frame) == 0:
        return f'<p class="cim-empty">{html.escape(t("app.none", lang))}</p>'
    unit = value_text("unit", lang)
    money = [c for c in ("deposit_nii", "loan_nii", "fee_income", "operating_cost", "expected_loss",
                         "contribution") if c in frame.columns]  # fmt: skip
    first = "product" if by_product else "month"
    head = [value_text(first, lang)] + [f"{value_text('total' if c == 'contribution' else c, lang)} ({unit})"
                                        for c in money]  # fmt: skip
    body = []
    for rec in frame.to_dict("records"):
        if by_product:
            code = rec.get("product_code")
            if isinstance(code, str) and code:
                label = f"{rec.get('product_name') or ''} ({code})".strip()
            else:
                label = value_text("fees_and_txn", lang)
        else:
            label = str(rec.get("month", ""))
        cells = "".join(f'<td class="num">{html.escape(_yuan(rec.get(c)))}</td>' for c in money)
        body.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<div class="cim-scroll"><table class="cim-table cim-value-table"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


# ---- adapters from the service's frames to the chart functions' inputs ----------------------------------


def trend_for_chart(trend: pd.DataFrame | None) -> tuple[pd.DataFrame, str, list[str]]:
    """Pick the month column and the balance series of a 360 trend frame.

    Returns
    -------
    tuple
        ``(frame, month_col, series)`` for :func:`cimlib.charts.balance_trend`.
    """
    frame = trend if trend is not None else pd.DataFrame()
    month_col = next(
        (c for c in ("month", "as_of_month", "period", "as_of_date", "as_of") if c in frame.columns), "month"
    )
    wanted = ("deposit_adb", "deposit_balance", "aum", "wealth_aum", "loan_balance")
    series = [c for c in wanted if c in frame.columns]
    if "deposit_adb" in series and "deposit_balance" in series:
        series.remove("deposit_balance")
    return frame, month_col, series


def assets_for_chart(assets: pd.DataFrame | None) -> tuple[pd.DataFrame, str, str]:
    """Normalise the 360 assets frame to one row per asset type code and value.

    Accepts a long frame (a type column and a value column) or a one-row wide frame of ``*_value`` /
    balance columns.

    Returns
    -------
    tuple
        ``(frame, type_col, value_col)`` for :func:`cimlib.charts.assets_by_type`.
    """
    frame = assets if assets is not None else pd.DataFrame()
    type_col = next(
        (c for c in ("asset_type", "wealth_type", "type", "category") if c in frame.columns), None
    )
    value_col = next(
        (c for c in ("value", "amount", "balance", "market_value", "aum") if c in frame.columns), None
    )
    if type_col and value_col:
        values = pd.to_numeric(frame[value_col].map(float), errors="coerce").fillna(0.0)
        return frame[values > 0], type_col, value_col
    wide = {
        "deposit_balance": "DEPOSIT",
        "deposits": "DEPOSIT",
        "wmp_value": "WMP",
        "fund_value": "FUND",
        "insurance_value": "INSURANCE",
        "bond_value": "BOND",
        "gold_value": "GOLD",
    }
    rows = [(code, frame[col].iloc[0]) for col, code in wide.items() if col in frame.columns and len(frame)]
    return pd.DataFrame(rows, columns=["asset_type", "value"]), "asset_type", "value"


def channels_for_chart(mix: pd.DataFrame | None) -> tuple[pd.DataFrame, str, str]:
    """Pick the channel and count columns of the 360 channel-mix frame.

    Returns
    -------
    tuple
        ``(frame, channel_col, value_col)`` for :func:`cimlib.charts.channel_mix`.
    """
    frame = mix if mix is not None else pd.DataFrame()
    channel_col = next((c for c in ("channel", "channel_code") if c in frame.columns), "channel")
    # The 12-month window when the service gives one (a single month is often empty), else the month.
    value_col = next(
        (c for c in ("txn_count_window", "txn_count", "count", "n_txn") if c in frame.columns), "txn_count"
    )
    return frame, channel_col, value_col


# ---- the app --------------------------------------------------------------------------------------------


class CustomerApp:
    """The customer 360 app for one principal.

    Parameters
    ----------
    principal : Principal
        The signed-in user (from :func:`cimlib.apps.principal_from_request`).
    service : CustomerService, optional
        The customer service (default: the ``cimlib.customer`` module).
    home : str, optional
        The CIM home passed to the service.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app's root widget (display it).
    results : DataFrame or None
        The last search's rows.
    current : Customer360 or None
        The customer on show.
    """

    def __init__(
        self,
        principal: Any,
        *,
        service: CustomerService | None = None,
        home: Any = None,
        lang: str = DEFAULT_LANG,
    ) -> None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.principal = principal
        self.service: CustomerService = service if service is not None else _default_service()
        self.home = home
        self.lang = lang
        self.results: pd.DataFrame | None = None
        self.current: Any = None
        self._status: tuple[str, dict[str, Any]] | None = None
        self._last_query: tuple[str, float] = ("", 0.0)
        self._building = False

        self.css = w.HTML(_CSS)
        self.title = w.HTML()
        self.principal_label = w.HTML()
        self.principal_label.add_class("cim-principal")
        self.lang_toggle = w.ToggleButtons(
            options=[("中文", "zh_CN"), ("English", "en")], value=lang, style={"button_width": "80px"}
        )
        self.lang_toggle.add_class("cim-lang")
        self.query = w.Text(continuous_update=False, layout=w.Layout(width="360px"))
        self.query.add_class("cim-search")
        self.search_button = w.Button(icon="search", button_style="primary")
        self.search_button.add_class("cim-search-button")
        self.notice = w.HTML()
        self.notice.add_class("cim-notice")
        self.status = w.HTML()
        self.status.add_class("cim-status")
        self.results_box = w.VBox()
        self.results_box.add_class("cim-results")
        self.detail_title = w.HTML()
        self.as_of = w.Dropdown(layout=w.Layout(width="180px"))
        self.as_of.add_class("cim-as-of")
        self.tabs = w.Tab()
        self.tabs.add_class("cim-tabs")
        self.detail = w.VBox(
            [w.HBox([self.detail_title, self.as_of]), self.tabs], layout=w.Layout(display="none")
        )
        self.detail.add_class("cim-detail")

        header = w.HBox(
            [w.VBox([self.title, self.principal_label]), self.lang_toggle],
            layout=w.Layout(justify_content="space-between", width="100%"),
        )
        search_row = w.HBox([self.query, self.search_button])
        search_row.add_class("cim-search-row")
        self.widget = w.VBox(
            [self.css, header, self.notice, search_row, self.status, self.results_box, self.detail]
        )
        self.widget.add_class("cim-app")

        # Clicking the button also blurs the box, which syncs its value: one search, not two.
        self.search_button.on_click(lambda _b: self._guard(lambda: self.search(self.query.value)))
        self.query.observe(lambda ch: self._guard(lambda: self.search(ch["new"])), names="value")
        self.lang_toggle.observe(lambda ch: self._guard(lambda: self.set_language(ch["new"])), names="value")
        self.as_of.observe(self._on_as_of, names="value")
        self._value_page: int | None = None
        self.tabs.observe(lambda _ch: self._guard(self._render_value_chart), names="selected_index")

        if not self.can_view_detail:
            self.query.disabled = True
            self.search_button.disabled = True
        self._relabel()

    # -- state -------------------------------------------------------------------------------------------
    @property
    def can_view_detail(self) -> bool:
        """Whether the principal may see single-customer detail (provincial analysts may not)."""
        return bool(getattr(self.principal, "can_view_detail", False))

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a UI callback; an unexpected error shows a generic message, never a traceback."""
        try:
            action()
        except Exception:
            log.exception("app callback failed")
            self._set_status("app.error")

    def _set_status(self, key: str | None, **fmt: Any) -> None:
        self._status = (key, fmt) if key else None
        self.status.value = "" if key is None else f"<span>{html.escape(t(key, self.lang, **fmt))}</span>"

    # -- actions -----------------------------------------------------------------------------------------
    def search(self, query: str, *, force: bool = False) -> pd.DataFrame | None:
        """Search customers in the principal's scope and list them.

        Parameters
        ----------
        query : str
            Customer number, name, ID number or credit code, phone or account number.
        force : bool
            Search again even when the same query ran less than 2 s ago (by default such a repeat, e.g.
            Enter and then a click, is not searched or audit-logged twice).

        Returns
        -------
        DataFrame or None
            The rows listed (``None`` when nothing was searched).
        """
        query = (query or "").strip()
        if not query:
            return None
        last, when = self._last_query
        if not force and query == last and time.monotonic() - when < 2.0:
            return self.results
        self._last_query = (query, time.monotonic())
        if not self.can_view_detail:
            self._set_status("app.no_detail")
            return None
        try:
            rows = self.service.search(self.principal, query, home=self.home, limit=MAX_RESULTS)
        except Exception as exc:
            key = _access_error_key(exc)
            if key is None:
                raise
            rows = pd.DataFrame()
            self.results = rows
            self._render_results()
            # An empty search and an out-of-scope one read the same.
            self._set_status("app.no_results" if key == "app.not_permitted" else key)
            return rows
        self.results = rows
        self._render_results()
        self._set_status(None if len(rows) else "app.no_results")
        return rows

    def open(self, customer_id: str, *, as_of: Any = None) -> Any:
        """Open a customer's 360 view.

        Parameters
        ----------
        customer_id : str
            The customer number.
        as_of : str, optional
            A month (``YYYY-MM``) or as-of date; default the latest.

        Returns
        -------
        Customer360 or None
            The view, or ``None`` when the customer is not found or not permitted (the same message for
            both).
        """
        if not self.can_view_detail:
            self._set_status("app.no_detail")
            return None
        try:
            c360 = self.service.customer_360(self.principal, customer_id, as_of=as_of, home=self.home)
        except Exception as exc:
            key = _access_error_key(exc)
            if key is None:
                raise
            self.current = None
            self.detail.layout.display = "none"
            self._set_status(key)
            return None
        self.current = c360
        self._set_status(None)
        self._render_detail()
        return c360

    def open_requested(self, customer_id: str) -> Any:
        """Open the customer a deep link names (``?customer=<id>``), like a click on a search result.

        An unknown or out-of-scope number gets the usual "not found or not permitted" message from the
        service (which audits the attempt); an implausibly long one gets it without asking.
        """
        if len(customer_id) > MAX_LINKED_ID or not customer_id.isprintable():
            self._set_status("app.not_permitted" if self.can_view_detail else "app.no_detail")
            return None
        result: list[Any] = []
        self._guard(lambda: result.append(self.open(customer_id)))
        return result[0] if result else None

    def set_language(self, lang: str) -> None:
        """Switch every label, table and chart to ``lang`` (``"zh_CN"`` or ``"en"``)."""
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.lang = lang
        if self.lang_toggle.value != lang:
            self.lang_toggle.value = lang
        self._relabel()
        if self._status:
            self._set_status(self._status[0], **self._status[1])
        if self.results is not None:
            self._render_results()
        if self.current is not None:
            self._render_detail()

    def _on_as_of(self, change: Mapping[str, Any]) -> None:
        if self._building or self.current is None or not change.get("new"):
            return
        if str(change["new"]) == str(getattr(self.current, "as_of", ""))[: len(str(change["new"]))]:
            return
        self._guard(lambda: self.open(self.current.customer_id, as_of=change["new"]))

    def _render_value_chart(self) -> None:
        """Render the value tab's chart once the tab is shown (an SVG costs tens of ms; most views never
        open that tab)."""
        i = self._value_page
        if i is None or self.tabs.selected_index != i or self.current is None or i >= len(self.tabs.children):
            return
        page = self.tabs.children[i]
        if "cim-pending" in page.value:
            page.value = value_html(self.current, self.lang, chart=True)

    # -- rendering ---------------------------------------------------------------------------------------
    def principal_text(self) -> str:
        """The signed-in user's name, role and scope, as shown in the header."""
        return principal_text(self.principal, self.lang)

    def _relabel(self) -> None:
        lang = self.lang
        self.title.value = f'<div class="cim-title">{html.escape(t("app.title", lang))}</div>'
        self.principal_label.value = f"<span>{html.escape(self.principal_text())}</span>"
        self.query.placeholder = t("app.search_placeholder", lang)
        self.search_button.description = t("app.search_button", lang)
        self.as_of.description = t("app.as_of", lang)
        self.notice.value = "" if self.can_view_detail else f"<p>{html.escape(t('app.no_detail', lang))}</p>"

    def _render_results(self) -> None:
        rows = self.results if self.results is not None else pd.DataFrame()
        items: list[w.Widget] = []
        if len(rows):
            items.append(w.HTML(f"<b>{html.escape(t('app.results_count', self.lang, n=len(rows)))}</b>"))
        shown_cols = [
            c
            for c in (
                "cust_name",
                "customer_type",
                "id_no",
                "phone",
                "home_org_name",
                "county_name",
                "manager_name",
                "matched_on",
            )
            if c in rows.columns
        ]
        for rec in rows.head(MAX_RESULTS).to_dict("records"):
            cid = str(rec.get("customer_id", ""))
            button = w.Button(
                description=cid,
                tooltip=t("app.open", self.lang),
                layout=w.Layout(width="auto", min_width="140px"),
            )
            button.add_class("cim-result-open")
            button.on_click(lambda _b, cid=cid: self._guard(lambda: self.open(cid)))
            text = " · ".join(
                format_cell(c, rec.get(c), self.lang) for c in shown_cols if rec.get(c) is not None
            )
            label = w.HTML(f"<span>{html.escape(text)}</span>")
            row = w.HBox([button, label])
            row.add_class("cim-result")
            items.append(row)
        self.results_box.children = items

    def _tab_pages(self, c360: Any) -> list[tuple[str, str]]:
        lang = self.lang

        def get(name: str) -> Any:
            return getattr(c360, name, None)

        def table(name: str) -> str:
            return table_html(get(name), lang, name=name)

        def section(key: str, name: str) -> str:
            return _section(t(key, lang), table(name))

        trend, month_col, series = trend_for_chart(get("trend"))
        assets, type_col, value_col = assets_for_chart(get("assets"))
        mix, channel_col, count_col = channels_for_chart(get("channel_mix"))
        trend_chart = chart_html(
            charts.balance_trend(trend, lang, month_col=month_col, series=series), "cim-chart-trend"
        )
        assets_chart = chart_html(
            charts.assets_by_type(assets, lang, type_col=type_col, value_col=value_col), "cim-chart-assets"
        )
        mix_chart = chart_html(
            charts.channel_mix(mix, lang, channel_col=channel_col, value_col=count_col), "cim-chart-channels"
        )
        pages = [("tabs.overview", overview_html(get("overview"), lang))]
        pages.append(
            (
                "tabs.accounts",
                section("sections.deposit_accounts", "accounts") + section("sections.cards", "cards"),
            )
        )
        pages.append(("tabs.assets", assets_chart + table("assets") + section("sections.wealth", "wealth")))
        if str(get("customer_type")) == "C":
            pages.append(("tabs.financials", table("financials")))
            pages.append(
                (
                    "tabs.guarantees",
                    section("sections.guarantees_given", "guarantees_given")
                    + section("sections.guarantees_received", "guarantees_received"),
                )
            )
            pages.append(("tabs.business", table("business")))
            pages.append(("tabs.settlement", table("settlement")))
        else:
            pages.append(
                (
                    "tabs.guarantees",
                    section("sections.guarantees_received", "guarantees_received")
                    + section("sections.guarantees_given", "guarantees_given"),
                )
            )
        pages.append(
            (
                "tabs.credit",
                section("sections.credit_lines", "credit_lines") + section("sections.loans", "loans"),
            )
        )
        pages.append(("tabs.products", table("products")))
        if get("value") is not None:  # rendered without its chart until the tab is shown (see _on_tab)
            pages.append((VALUE_TAB, value_html(c360, lang, chart=False)))
        pages.append(("tabs.trend", trend_chart + table("trend")))
        pages.append(("tabs.channels", mix_chart + table("channel_mix")))
        pages.append(
            (
                "tabs.events",
                section("sections.events", "events") + section("sections.risk_flags", "risk_flags"),
            )
        )
        return pages

    def _render_detail(self) -> None:
        c360 = self.current
        if c360 is None:
            return
        lang = self.lang
        overview = getattr(c360, "overview", None) or {}
        name = overview.get("cust_name") or overview.get("name") or ""
        ctype = code_label("customer_type", getattr(c360, "customer_type", ""), lang)
        as_of = format_cell("as_of", getattr(c360, "as_of", ""), lang)
        self.detail_title.value = (
            '<div class="cim-title cim-detail-title">'
            f"{html.escape(str(c360.customer_id))} · {html.escape(str(name))}"
            f" · {html.escape(ctype)}</div><div>{html.escape(t('app.as_of_label', lang, as_of=as_of))}</div>"
        )
        pages = self._tab_pages(c360)
        selected = self.tabs.selected_index
        children = []
        for _key, body in pages:
            page = w.HTML(body)
            page.add_class("cim-tab-page")
            children.append(page)
        self._value_page = next((i for i, (key, _) in enumerate(pages) if key == VALUE_TAB), None)
        self.tabs.children = children
        self.tabs.titles = tuple(
            value_text("tab", lang) if key == VALUE_TAB else t(key, lang) for key, _ in pages
        )
        if selected is not None and selected < len(children):
            self.tabs.selected_index = selected
        self._render_value_chart()
        months = [str(m) for m in (getattr(c360, "available_months", None) or [])]
        self._building = True
        try:
            self.as_of.options = months
            current = str(getattr(c360, "as_of", ""))
            match = next((m for m in months if current.startswith(m) or m.startswith(current)), None)
            self.as_of.value = match if match is not None else (months[-1] if months else None)
        finally:
            self._building = False
        self.detail.layout.display = "flex"


def denied_view(lang: str = DEFAULT_LANG) -> w.VBox:
    """The view shown when the kernel cannot confirm who the user is: a message, and no data at all."""
    box = w.VBox(
        [
            w.HTML(_CSS),
            w.HTML(f'<div class="cim-title">{html.escape(t("app.title", lang))}</div>'),
            w.HTML(f'<p class="cim-status">{html.escape(t("app.identity_failed", lang))}</p>'),
        ]
    )
    box.add_class("cim-app")
    box.add_class("cim-denied")
    return box


def customer_360_app(
    *,
    lang: str = DEFAULT_LANG,
    home: Any = None,
    environ: Mapping[str, str] | None = None,
    service: CustomerService | None = None,
) -> w.VBox:
    """Build the app for the user of this Voila kernel (the notebook's only call).

    Establishes the principal from the server-signed identity token first; without a valid one the user
    sees a message and no data is read.

    Parameters
    ----------
    lang : str
        The starting language.
    home : str, optional
        The CIM home (default ``$CIM_HOME``).
    environ : mapping, optional
        The environment holding the token and secret (default ``os.environ``); for tests.
    service : CustomerService, optional
        The customer service (default ``cimlib.customer``).

    Returns
    -------
    ipywidgets.VBox
        The app, or the denied view.
    """
    from cimlib.apps._identity import principal_from_request
    from cimlib.serve._token import IdentityError

    try:
        principal = principal_from_request(home=home, environ=environ)
    except IdentityError as exc:
        log.warning("app refused: %s", exc)
        return denied_view(lang)
    app = CustomerApp(principal, service=service, home=home, lang=lang)
    # A deep link (the target list's ``?customer=<id>``) opens that customer through the service, which
    # scopes and audits it; the query string chooses a customer, never who the user is.
    customer_id = requested_customer(environ if environ is not None else os.environ)
    if customer_id is not None:
        app.open_requested(customer_id)
    return app.widget


def requested_customer(environ: Mapping[str, str]) -> str | None:
    """The customer number a deep link asks for: ``customer=<id>`` in Voila's ``QUERY_STRING``.

    Parameters
    ----------
    environ : mapping
        The kernel's environment after ``voila.utils.wait_for_request()`` (``os.environ``).

    Returns
    -------
    str or None
        The stripped value of the first ``customer`` parameter, or ``None`` when there is none.
    """
    query = str(environ.get("QUERY_STRING") or "")
    try:
        params = urllib.parse.parse_qs(query, max_num_fields=50)
    except ValueError:  # too many fields: not a link of ours
        return None
    values = [v.strip() for v in params.get("customer", []) if v.strip()]
    return values[0] if values else None


def warm_up(home: Any = None) -> None:
    """Do the slow once-a-process work while a kernel preheats, before anyone visits.

    Imports, the chart engine, the access policy and the published snapshot's reader connection: what is
    the same for every user. Nothing here depends on who will sign in, and no customer data is read.

    Parameters
    ----------
    home : str, optional
        The CIM home (default ``$CIM_HOME``).
    """
    import cimlib.access as access
    import cimlib.customer

    charts.warm_up()
    try:
        access.load_policy(home)
        access.warehouse(home).snapshot()
    except Exception:  # nothing published yet, or a policy error: the visit reports it properly
        log.warning("warm-up could not open the policy or the warehouse", exc_info=True)
    try:  # the latest month's bank-wide value frame and RFM, which the value tab reads (once per snapshot)
        cimlib.customer.precompute_value(home)
    except Exception:
        log.warning("warm-up could not precompute the value frame", exc_info=True)
    # The first widgets of a process cost tens of milliseconds (class set-up); pay that here.
    warm = [w.HTML(), w.Text(), w.Button(), w.Dropdown(), w.Tab(), w.ToggleButtons(options=["a"])]
    for widget in [w.VBox(warm), *warm]:
        widget.close()
