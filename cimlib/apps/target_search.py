"""The target-customer search app: run a rule set or an ad-hoc condition; counts, the list, an Excel file.

All logic is here, so it is unit-tested without a browser; ``notebooks/apps/target_search.ipynb`` only calls
:func:`target_search_app`. Customer rows come only from :func:`cimlib.targeting.run` (scoped, masked and
audit-logged for the signed-in principal) and counts from :func:`cimlib.targeting.counts`; roles without
single-customer detail (the provincial analyst) see counts only.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import altair as alt
import ipywidgets as w
import pandas as pd

from cimlib.apps.customer_360 import (
    _CSS,
    chart_html,
    format_cell,
    is_percent_column,
    principal_text,
)
from cimlib.charts import CJK_FONT
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
from cimlib.targeting import adhoc_ruleset
from cimlib.targeting._run import StaleWarehouse

log = logging.getLogger(__name__)

#: Rows of the customer list shown on screen (the Excel download always has every row).
MAX_LIST_ROWS = 200
#: Rows of the per-branch counts table shown on screen.
MAX_COUNT_ROWS = 200
#: Bars of the per-branch chart.
MAX_BARS = 30
#: Conditions the ad-hoc builder joins with ``and``.
MAX_CONDITIONS = 5
#: Lists up to this size come with their Excel download ready; a longer one is written on request (a
#: workbook of tens of thousands of rows takes a while, and most runs are not downloaded).
EAGER_EXCEL_ROWS = 5000
#: Longest customer number a link may carry.
_MAX_ID = 64
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Comparison operators of the condition builder, by indicator kind: (shown, written in the rule language).
OPERATORS: dict[str, list[tuple[str, str]]] = {
    "number": [("≥", ">="), ("≤", "<="), (">", ">"), ("<", "<"), ("=", "="), ("≠", "<>")],
    "date": [("≥", ">="), ("≤", "<="), (">", ">"), ("<", "<"), ("=", "="), ("≠", "<>")],
    "code": [("=", "="), ("≠", "<>")],
    "text": [("=", "="), ("≠", "<>")],
}
#: Indicators the builder does not offer (the customer type is chosen separately).
_NOT_IN_BUILDER = {"customer_type"}
_SEVERITY_COLORS = {"high": "#c62828", "medium": "#ef6c00", "low": "#78909c"}

_TARGET_CSS = """<style>
.cim-app.cim-target { max-width: 1400px; }
.cim-target .cim-panel { border: 1px solid #e0e0e0; border-radius: 4px; padding: 8px 10px; margin: 4px 0; }
.cim-target .cim-run-row { align-items: center; margin: 6px 0; }
.cim-target .cim-help { color: #607d8b; font-size: 12px; }
.cim-target pre.cim-rule-error { background: #fff8e1; border-left: 3px solid #f9a825; color: #4e342e;
  padding: 6px 10px; margin: 4px 0; font-size: 13px; line-height: 1.35; white-space: pre;
  font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK SC", Menlo, Consolas, monospace; overflow-x: auto; }
.cim-target .cim-summary { font-size: 15px; font-weight: 600; margin: 6px 0 2px; }
.cim-target a.cim-download-link { display: inline-block; padding: 6px 14px; margin: 4px 0 8px;
  background: #2e7d32; color: #fff; border-radius: 3px; text-decoration: none; font-weight: 600; }
.cim-target a.cim-download-link:hover { background: #1b5e20; }
.cim-target .cim-charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.cim-target table.cim-list td.cim-reason { white-space: normal; min-width: 240px; max-width: 420px; }
.cim-target table.cim-list td a { color: #1565c0; text-decoration: none; font-variant-numeric: tabular-nums; }
.cim-target table.cim-list td a:hover { text-decoration: underline; }
.cim-target .cim-sev { padding: 1px 7px; border-radius: 9px; font-size: 12px; white-space: nowrap; }
.cim-target .cim-sev-high { background: #ffebee; color: #c62828; }
.cim-target .cim-sev-medium { background: #fff3e0; color: #e65100; }
.cim-target .cim-sev-low { background: #eceff1; color: #455a64; }
.cim-target .cim-list-wrap { max-height: 640px; overflow: auto; }
.cim-target .cim-counts-wrap { max-height: 420px; overflow: auto; }
.cim-target table.cim-list thead th, .cim-target table.cim-counts thead th { position: sticky; top: 0;
  background: #fafafa; }
.cim-target .cim-more { color: #546e7a; }
</style>"""


def _short(lang: str) -> str:
    """``zh`` or ``en``: the key of a rule's two-language texts."""
    return "zh" if lang.startswith("zh") else "en"


# ---- the ad-hoc condition --------------------------------------------------------------------------------


def literal(kind: str, value: str) -> str:
    """A builder value as a literal of the rule language.

    Numbers are written as typed (thousands separators and spaces dropped), so anything else is reported
    by the compiler with its position; dates become ``date 'YYYY-MM-DD'``; codes and text are quoted.
    """
    raw = (value or "").strip()
    if kind == "number":
        return re.sub(r"[,\s_，]", "", raw)
    quoted = "'" + raw.replace("'", "''") + "'"
    return f"date {quoted}" if kind == "date" else quoted


def indicator_kind(type_: str) -> str:
    """``number``, ``date``, ``code`` or ``text``: which operators and value input an indicator gets."""
    kind = type_.split(":")[0]
    return kind if kind in OPERATORS else "text"


def condition_text(parts: Sequence[tuple[str, str, str]], customer_type: str) -> str:
    """Join builder rows ``(indicator, operator, value)`` with ``and`` into a condition of the language."""
    from cimlib.targeting._catalogue import indicators_for

    allowed = indicators_for(customer_type)
    out = []
    for name, op, value in parts:
        ind = allowed.get(name)
        kind = indicator_kind(ind.type) if ind is not None else "number"
        out.append(f"{name} {op} {literal(kind, value)}".rstrip())
    return " and ".join(out)


def _indicator_label(ind: Any, lang: str) -> str:
    label = ind.zh if _short(lang) == "zh" else ind.en
    return f"{label} ({t('target.yuan', lang)})" if ind.money else label


def builder_indicators(customer_type: str, lang: str) -> list[tuple[str, str]]:
    """``(label, name)`` options of the builder's indicator dropdown for a customer type."""
    from cimlib.targeting._catalogue import indicators_for

    return [
        (_indicator_label(ind, lang), name)
        for name, ind in indicators_for(customer_type).items()
        if name not in _NOT_IN_BUILDER
    ]


def code_options(type_: str, lang: str) -> list[tuple[str, str]]:
    """``(label, code)`` options of a coded indicator (``code:<list>``), from codes.yaml."""
    from cimlib.contracts import load_codes

    domain = type_.split(":", 1)[1] if ":" in type_ else ""
    return [(f"{code_label(domain, c, lang)} ({c})", str(c)) for c in (load_codes().get(domain) or {})]


class ConditionRow:
    """One ``indicator operator value`` row of the condition builder."""

    def __init__(self, customer_type: str, lang: str, on_change: Callable[[], None], name: str = "") -> None:
        self.customer_type = customer_type
        self.lang = lang
        self._on_change = on_change
        self._building = False
        self.indicator = w.Dropdown(layout=w.Layout(width="300px"))
        self.indicator.add_class("cim-cond-indicator")
        self.operator = w.Dropdown(layout=w.Layout(width="70px"))
        self.operator.add_class("cim-cond-op")
        self.value = w.Text(layout=w.Layout(width="200px"), continuous_update=True)
        self.value.add_class("cim-cond-value")
        self.code = w.Dropdown(layout=w.Layout(width="200px"))
        self.code.add_class("cim-cond-code")
        self.remove = w.Button(icon="times", layout=w.Layout(width="36px"))
        self.remove.add_class("cim-cond-remove")
        self.box = w.HBox([self.indicator, self.operator, self.value, self.remove])
        self.box.add_class("cim-cond-row")
        self.set_type(customer_type, lang, name=name)
        self.indicator.observe(self._indicator_changed, names="value")
        for widget in (self.operator, self.value, self.code):
            widget.observe(self._changed, names="value")

    @property
    def kind(self) -> str:
        from cimlib.targeting._catalogue import indicators_for

        ind = indicators_for(self.customer_type).get(self.indicator.value or "")
        return indicator_kind(ind.type) if ind is not None else "number"

    def set_type(self, customer_type: str, lang: str, *, name: str = "") -> None:
        """Offer the indicators of ``customer_type`` in ``lang``, keeping the chosen one when it applies."""
        self._building = True
        try:
            self.customer_type, self.lang = customer_type, lang
            options = builder_indicators(customer_type, lang)
            names = [v for _, v in options]
            keep = name or self.indicator.value
            self.indicator.options = options
            self.indicator.value = keep if keep in names else ("aum" if "aum" in names else names[0])
            self._refresh_inputs()
        finally:
            self._building = False

    def _refresh_inputs(self) -> None:
        from cimlib.targeting._catalogue import indicators_for

        ind = indicators_for(self.customer_type)[self.indicator.value]
        kind = indicator_kind(ind.type)
        op = self.operator.value
        self.operator.options = OPERATORS[kind]
        self.operator.value = op if op in [v for _, v in OPERATORS[kind]] else OPERATORS[kind][0][1]
        if kind == "code":
            code = self.code.value
            self.code.options = code_options(ind.type, self.lang)
            codes = [v for _, v in self.code.options]
            self.code.value = code if code in codes else (codes[0] if codes else None)
            value_widget: w.Widget = self.code
        else:
            placeholder = {"number": "target.value_money" if ind.money else "target.value_number"}.get(
                kind, f"target.value_{kind}"
            )
            self.value.placeholder = t(placeholder, self.lang)
            value_widget = self.value
        self.box.children = (self.indicator, self.operator, value_widget, self.remove)
        self.remove.tooltip = t("target.remove_condition", self.lang)

    def _indicator_changed(self, _change: Mapping[str, Any]) -> None:
        if self._building:
            return
        self._building = True
        try:
            self._refresh_inputs()
        finally:
            self._building = False
        self._on_change()

    def _changed(self, _change: Mapping[str, Any]) -> None:
        if not self._building:
            self._on_change()

    def part(self) -> tuple[str, str, str]:
        """``(indicator, operator, value)`` as chosen."""
        value = self.code.value if self.kind == "code" else self.value.value
        return str(self.indicator.value), str(self.operator.value), str(value or "")


# ---- counts and charts -----------------------------------------------------------------------------------


def counts_from_list(frame: pd.DataFrame, rule_ids: Sequence[str]) -> pd.DataFrame:
    """Customers per branch and rule, from a customer list (the shape of :func:`cimlib.targeting.counts`).

    Parameters
    ----------
    frame : DataFrame
        A list from :func:`cimlib.targeting.run` (``rules`` holds the fired rule ids, ``;``-separated).
    rule_ids : sequence of str
        The rules that ran.

    Returns
    -------
    DataFrame
        ``county_name, home_org_code, home_org_name``, one column per rule id and ``n_customers``, one row
        per branch with a hit, sorted by branch code.
    """
    keys = ["county_name", "home_org_code", "home_org_name"]
    cols = [*keys, *rule_ids, "n_customers"]
    if frame is None or not len(frame):
        return pd.DataFrame({c: pd.Series([], dtype="int64" if c not in keys else object) for c in cols})
    fired = frame["rules"].fillna("").map(lambda s: set(str(s).split(";")))
    data = frame[keys].copy()
    for rid in rule_ids:
        data[rid] = fired.map(lambda s, rid=rid: rid in s).astype("int64")
    data["n_customers"] = 1
    out = data.groupby(keys, as_index=False, dropna=False).sum(numeric_only=True)
    return out.sort_values("home_org_code", kind="stable").reset_index(drop=True)[cols]


def _branch_label(row: Mapping[str, Any]) -> str:
    """A branch's name without its county bank's name in front (``安庄分理处`` for 桐庐县…安庄分理处)."""
    name, county = str(row.get("home_org_name") or row.get("home_org_code") or ""), row.get("county_name")
    if isinstance(county, str) and county and name.startswith(county) and len(name) > len(county):
        return name[len(county) :]
    return name


def _count_axis(data: pd.DataFrame, title: str) -> alt.X:
    """An x axis of whole customers: integer ticks only (no 0, 0.5, 1 shown as 0, 1, 1)."""
    top = int(data["customers"].max()) if len(data) else 0
    values = list(range(top + 1)) if top <= 8 else alt.Undefined
    return alt.X(
        "customers:Q",
        title=title,
        axis=alt.Axis(format=",d", tickMinStep=1, values=values),
        scale=alt.Scale(domainMin=0, nice=top > 8),
    )


def _style(chart: Any, title: str, width: int = 420) -> Any:
    return (
        chart.properties(title=title, width=width)
        .configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
        .configure_axis(labelLimit=260)
    )


def branch_chart(counts: pd.DataFrame, lang: str = DEFAULT_LANG, *, by: str | None = None) -> alt.Chart:
    """Horizontal bar chart of customers hit per branch (or per county bank).

    Parameters
    ----------
    counts : DataFrame
        From :func:`counts_from_list` or :func:`cimlib.targeting.counts` (``county_name``,
        ``home_org_code``, ``home_org_name``, ``n_customers``).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    by : {"branch", "county"}, optional
        Default: per county bank when the counts span more than one, else per branch.

    Returns
    -------
    altair.Chart
        Data ``label, customers`` (at most :data:`MAX_BARS` bars, largest first); y = label sorted by
        customers, x = customers.
    """
    frame = counts if counts is not None else pd.DataFrame()
    if by is None:
        counties = frame["county_name"].nunique() if "county_name" in frame else 0
        by = "county" if counties > 1 else "branch"
    if len(frame) and "n_customers" in frame:
        if by == "county":
            data = frame.groupby("county_name", as_index=False, dropna=False)["n_customers"].sum()
            data["label"] = data["county_name"].fillna("").astype(str)
        else:
            data = frame.copy()
            data["label"] = [_branch_label(r) for r in frame.to_dict("records")]
            data = data.groupby("label", as_index=False)["n_customers"].sum()
        data = data.rename(columns={"n_customers": "customers"})[["label", "customers"]]
        data["customers"] = data["customers"].astype("int64")
        data = data.sort_values(["customers", "label"], ascending=[False, True], ignore_index=True)
        data = data.head(MAX_BARS)
    else:
        data = pd.DataFrame({"label": pd.Series([], dtype=str), "customers": pd.Series([], dtype="int64")})
    title = t("target.chart_counties" if by == "county" else "target.chart_branches", lang)
    chart = (
        alt.Chart(data)
        .mark_bar(color="#1e88e5")
        .encode(
            y=alt.Y("label:N", title=None, sort="-x"),
            x=_count_axis(data, t("target.customers", lang)),
            tooltip=[alt.Tooltip("label:N"), alt.Tooltip("customers:Q", format=",d")],
        )
        .properties(height=alt.Step(20))
    )
    return _style(chart, title)


def rule_hits(
    ruleset: Any, counts: pd.DataFrame, lang: str, rule_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Customers per rule: ``rule, name, severity, customer_type, customers`` in rule-set order."""
    ids = list(rule_ids) if rule_ids else [r.id for r in ruleset.rules]
    rows = []
    for rid in ids:
        rule = ruleset.rule(rid)
        n = int(counts[rid].sum()) if counts is not None and rid in counts else 0
        rows.append(
            {
                "rule": rid,
                "name": rule.name[_short(lang)],
                "severity": rule.severity,
                "customer_type": rule.customer_type,
                "customers": n,
            }
        )
    return pd.DataFrame(rows, columns=["rule", "name", "severity", "customer_type", "customers"])


def rule_chart(hits: pd.DataFrame, lang: str = DEFAULT_LANG) -> alt.Chart:
    """Horizontal bar chart of customers per rule, coloured by severity.

    Parameters
    ----------
    hits : DataFrame
        From :func:`rule_hits` (``name``, ``severity``, ``customers``).
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    altair.Chart
        Data ``name, severity`` (localized label), ``severity_code``, ``customers``; y = name sorted by
        customers, x = customers, color = severity.
    """
    frame = hits if hits is not None else pd.DataFrame()
    if len(frame):
        data = pd.DataFrame(
            {
                "name": frame["name"].astype(str).to_numpy(),
                "severity_code": frame["severity"].astype(str).to_numpy(),
                "severity": [code_label("severity", s, lang) for s in frame["severity"]],
                "customers": frame["customers"].astype("int64").to_numpy(),
            }
        )
    else:
        data = pd.DataFrame(
            {
                "name": pd.Series([], dtype=str),
                "severity_code": pd.Series([], dtype=str),
                "severity": pd.Series([], dtype=str),
                "customers": pd.Series([], dtype="int64"),
            }
        )
    levels = ["high", "medium", "low"]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("name:N", title=None, sort="-x"),
            x=_count_axis(data, t("target.customers", lang)),
            color=alt.Color(
                "severity:N",
                title=column_label("severity", lang),
                scale=alt.Scale(
                    domain=[code_label("severity", s, lang) for s in levels],
                    range=[_SEVERITY_COLORS[s] for s in levels],
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("name:N"),
                alt.Tooltip("severity:N"),
                alt.Tooltip("customers:Q", format=",d"),
            ],
        )
        .properties(height=alt.Step(20))
    )
    return _style(chart, t("target.chart_rules", lang))


# ---- the list ------------------------------------------------------------------------------------------

#: Who the customer is, why they are listed and who serves them, in the order shown (after the number).
_LIST_SHOWN = (
    "cust_name",
    "customer_type",
    "severity",
    "rule_names",
    "reasons",
    "id_no",
    "phone",
    "county_name",
    "home_org_name",
    "manager_name",
)
_LIST_HIDDEN = {"customer_id", "home_org_code", "manager_no", "n_rules", "rules", "link"}


def list_header(column: str, lang: str) -> str:
    """The header of a list column: identity columns, rule names and reasons, or an indicator's label."""
    from cimlib.targeting._catalogue import INDICATORS

    if column in ("rule_names", "reasons"):
        return t(f"target.col_{column}", lang)
    if column in _LIST_SHOWN or column == "customer_id":
        return column_label(column, lang)
    ind = INDICATORS.get(column)
    if ind is not None:
        label = ind.zh if _short(lang) == "zh" else ind.en
        return f"{label} ({money_unit(lang)})" if ind.money else label
    return column_label(column, lang)


def list_cell(column: str, value: Any, lang: str) -> str:
    """One list value as display text (not escaped): money in the locale's unit, codes by their label."""
    from cimlib.targeting._catalogue import INDICATORS

    ind = INDICATORS.get(column)
    if ind is None or column in _LIST_SHOWN:
        return format_cell(column, value, lang)
    if value is None or (isinstance(value, float) and value != value):
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if ind.type.startswith("code:"):
        return code_label(ind.type.split(":", 1)[1], value, lang)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if ind.money:
            return format_money(value, lang)
        if is_percent_column(column):
            return f"{float(value):.1%}"
        if column.endswith("year") or float(value) == int(float(value)):
            return (
                str(int(float(value))) if column.endswith("year") else format_count(int(float(value)), lang)
            )
        return f"{float(value):,.2f}"
    return format_cell(column, value, lang)


def list_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a list shown on screen, customer number first."""
    shown = [c for c in _LIST_SHOWN if c in frame.columns]
    if "county_name" in shown and frame["county_name"].nunique(dropna=True) <= 1:
        shown.remove("county_name")
    extra = [str(c) for c in frame.columns if str(c) not in _LIST_HIDDEN and str(c) not in _LIST_SHOWN]
    return ["customer_id", *shown, *extra]


def customer_href(link: str, base_url: str = "/") -> str:
    """The address of a list row's 360 view: ``link`` (a path relative to the server) under ``base_url``."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", link or ""):
        return link
    base = "/" + (base_url or "/").strip("/") + "/"
    return (base if base != "//" else "/") + (link or "").lstrip("/")


def list_html(frame: pd.DataFrame, lang: str, *, base_url: str = "/", max_rows: int = MAX_LIST_ROWS) -> str:
    """The customer list as an escaped HTML table; each customer number links to their 360 view.

    Parameters
    ----------
    frame : DataFrame
        A list from :func:`cimlib.targeting.run` (already scoped and masked).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    base_url : str
        The server's base path (``/`` or e.g. ``/cim/``); a row's ``link`` is relative to it.
    max_rows : int
        Show at most this many rows, and say so.

    Returns
    -------
    str
        HTML.
    """
    if frame is None or not len(frame):
        return f'<p class="cim-empty">{html.escape(t("target.no_hits", lang))}</p>'
    cols = list_columns(frame)
    head = "".join(f"<th>{html.escape(list_header(c, lang))}</th>" for c in cols)
    open_text = html.escape(t("target.open_360", lang), quote=True)
    body = []
    for rec in frame.head(max_rows).to_dict("records"):
        cells = []
        for col in cols:
            val = rec.get(col)
            if col == "customer_id":
                cid = str(val)
                href = customer_href(str(rec.get("link") or ""), base_url)
                cells.append(
                    f'<td><a class="cim-customer-link" href="{html.escape(href, quote=True)}" target="_blank"'
                    f' rel="noopener" title="{open_text}">{html.escape(cid)}</a></td>'
                )
            elif col == "severity":
                sev = str(val or "")
                label = html.escape(code_label("severity", sev, lang))
                cells.append(f'<td><span class="cim-sev cim-sev-{html.escape(sev)}">{label}</span></td>')
            else:
                text = html.escape(list_cell(col, val, lang))
                numeric = bool(text) and isinstance(val, int | float | Decimal) and not isinstance(val, bool)
                cls = ' class="num"' if numeric else (' class="cim-reason"' if col == "reasons" else "")
                cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows = "".join(body)
    table = f'<table class="cim-table cim-list"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    more = ""
    if len(frame) > max_rows:
        note = t("target.list_capped", lang, shown=format_count(max_rows), total=format_count(len(frame)))
        more = f'<p class="cim-more">{html.escape(note)}</p>'
    return f'<div class="cim-scroll cim-list-wrap">{table}</div>{more}'


def counts_html(
    counts: pd.DataFrame, hits: pd.DataFrame, lang: str, *, max_rows: int = MAX_COUNT_ROWS
) -> str:
    """Customers per branch (rows) and rule (columns, rules with hits only) as an HTML table."""
    if counts is None or not len(counts):
        return f'<p class="cim-empty">{html.escape(t("target.no_hits", lang))}</p>'
    rules = [
        (r["rule"], r["name"]) for r in hits.to_dict("records") if r["customers"] > 0 and r["rule"] in counts
    ]
    multi = "county_name" in counts and counts["county_name"].nunique(dropna=True) > 1
    head = ([column_label("county_name", lang)] if multi else []) + [column_label("home_org_name", lang)]
    head += [t("target.col_customers", lang)] + [name for _, name in rules]
    rows = []
    ordered = counts.sort_values(["n_customers", "home_org_code"], ascending=[False, True], kind="stable")
    for rec in ordered.head(max_rows).to_dict("records"):
        cells = [f"<td>{html.escape(str(rec.get('county_name') or ''))}</td>"] if multi else []
        cells.append(f"<td>{html.escape(_branch_label(rec))}</td>")
        cells.append(f'<td class="num"><b>{format_count(rec.get("n_customers"))}</b></td>')
        cells += [f'<td class="num">{format_count(rec.get(rid))}</td>' for rid, _ in rules]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(rows)
    table = (
        f'<table class="cim-table cim-counts"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
    )
    more = ""
    if len(counts) > max_rows:
        note = t("app.more_rows", lang, shown=max_rows, total=len(counts))
        more = f'<p class="cim-more">{html.escape(note)}</p>'
    return f'<div class="cim-scroll cim-counts-wrap">{table}</div>{more}'


def download_html(data: bytes, filename: str, n: int, lang: str) -> str:
    """A download link carrying the workbook as a data URI (no file is written on the server)."""
    uri = f"data:{XLSX_MIME};base64,{base64.b64encode(data).decode('ascii')}"
    label = html.escape(t("target.download", lang, n=format_count(n)))
    name = html.escape(filename, quote=True)
    return f'<a class="cim-download-link" download="{name}" href="{uri}">⬇ {label}</a>'


# ---- the app --------------------------------------------------------------------------------------------


@dataclass
class Request:
    """What one Run asked for."""

    ruleset: Any
    rules: list[str] | None
    as_of: str | None


class TargetApp:
    """The target-customer search app for one principal.

    Parameters
    ----------
    principal : Principal
        The signed-in user (from :func:`cimlib.apps.principal_from_request`).
    home : str, optional
        The CIM home.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    base_url : str
        The server's base path; the list's links to the 360 view are under it.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app's root widget (display it).
    frame : DataFrame or None
        The last list (``None`` for counts-only roles).
    counts : DataFrame or None
        The last counts per branch and rule.
    """

    def __init__(
        self, principal: Any, *, home: Any = None, lang: str = DEFAULT_LANG, base_url: str = "/"
    ) -> None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.principal = principal
        self.home = home
        self.lang = lang
        self.base_url = base_url or "/"
        self.frame: pd.DataFrame | None = None
        self.counts: pd.DataFrame | None = None
        self.hits: pd.DataFrame | None = None
        self.request: Request | None = None
        self.xlsx: bytes | None = None
        self._status: tuple[str, dict[str, Any], str] | None = None
        self._as_of = ""
        self._building = False
        self.rulesets = self._load_rulesets()

        self.css = w.HTML(_CSS + _TARGET_CSS)
        self.title = w.HTML()
        self.principal_label = w.HTML()
        self.principal_label.add_class("cim-principal")
        self.lang_toggle = w.ToggleButtons(
            options=[("中文", "zh_CN"), ("English", "en")], value=lang, style={"button_width": "80px"}
        )
        self.lang_toggle.add_class("cim-lang")
        self.notice = w.HTML()
        self.notice.add_class("cim-notice")

        label_style = {"description_width": "initial"}
        self.mode = w.ToggleButtons(options=[("a", "ruleset"), ("b", "adhoc")], value="ruleset")
        self.mode.add_class("cim-mode")
        self.ruleset = w.Dropdown(layout=w.Layout(width="340px"), style=label_style)
        self.ruleset.add_class("cim-ruleset")
        self.rule = w.Dropdown(layout=w.Layout(width="420px"), style=label_style)
        self.rule.add_class("cim-rule")
        self.ruleset_box = w.HBox([self.ruleset, self.rule])
        self.ruleset_box.add_class("cim-panel")
        self.ruleset_box.add_class("cim-ruleset-box")

        self.customer_type = w.Dropdown(options=[("I", "I"), ("C", "C")], value="I", style=label_style)
        self.customer_type.add_class("cim-ctype")
        self.rows: list[ConditionRow] = []
        self.rows_box = w.VBox()
        self.rows_box.add_class("cim-cond-rows")
        self.add_button = w.Button(icon="plus")
        self.add_button.add_class("cim-add-condition")
        self.condition_label = w.HTML()
        self.condition = w.Textarea(layout=w.Layout(width="760px", height="56px"))
        self.condition.add_class("cim-condition")
        self.adhoc_box = w.VBox(
            [self.customer_type, self.rows_box, self.add_button, self.condition_label, self.condition],
            layout=w.Layout(display="none"),
        )
        self.adhoc_box.add_class("cim-panel")
        self.adhoc_box.add_class("cim-adhoc-box")

        self.as_of = w.Dropdown(layout=w.Layout(width="200px"), style=label_style)
        self.as_of.add_class("cim-as-of")
        self.run_button = w.Button(icon="play", button_style="primary")
        self.run_button.add_class("cim-run")
        run_row = w.HBox([self.as_of, self.run_button])
        run_row.add_class("cim-run-row")
        self.status = w.HTML()
        self.status.add_class("cim-status")

        self.summary = w.HTML()
        self.summary.add_class("cim-summary")
        self.download = w.HTML()
        self.download.add_class("cim-download")
        self.prepare_button = w.Button(icon="file-excel-o", layout=w.Layout(display="none", width="auto"))
        self.prepare_button.add_class("cim-prepare-excel")
        self.charts = w.HTML()
        self.charts.add_class("cim-target-charts")
        self.counts_table = w.HTML()
        self.counts_table.add_class("cim-counts-table")
        self.list_title = w.HTML()
        self.list_table = w.HTML()
        self.list_table.add_class("cim-target-list")
        self.results = w.VBox(
            [
                self.summary,
                self.download,
                self.prepare_button,
                self.charts,
                self.counts_table,
                self.list_title,
                self.list_table,
            ],
            layout=w.Layout(display="none"),
        )
        self.results.add_class("cim-target-results")

        header = w.HBox(
            [w.VBox([self.title, self.principal_label]), self.lang_toggle],
            layout=w.Layout(justify_content="space-between", width="100%"),
        )
        self.widget = w.VBox(
            [self.css, header, self.notice, self.mode, self.ruleset_box, self.adhoc_box, run_row, self.status,
             self.results]
        )  # fmt: skip
        self.widget.add_class("cim-app")
        self.widget.add_class("cim-target")

        self._load_months()
        self.add_condition()
        self.run_button.on_click(lambda _b: self._guard(self.run))
        self.prepare_button.on_click(lambda _b: self._guard(self.prepare_download))
        self.add_button.on_click(lambda _b: self._guard(self.add_condition))
        self.lang_toggle.observe(lambda ch: self._guard(lambda: self.set_language(ch["new"])), names="value")
        self.mode.observe(lambda _ch: self._unless_building(self._show_mode), names="value")
        self.ruleset.observe(lambda _ch: self._unless_building(self._fill_rules), names="value")
        self.customer_type.observe(lambda _ch: self._unless_building(self._on_customer_type), names="value")
        if not self.has_scope:
            for widget in (self.run_button, self.ruleset, self.rule, self.mode, self.add_button):
                widget.disabled = True
        self._relabel()

    # -- state -------------------------------------------------------------------------------------------
    @property
    def can_view_detail(self) -> bool:
        """Whether the principal may see the customer list (provincial analysts see counts only)."""
        return bool(getattr(self.principal, "can_view_detail", False))

    @property
    def has_scope(self) -> bool:
        """Whether the principal may see any customer data, counts included (auditors may not)."""
        return getattr(self.principal, "scope", "none") != "none"

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a UI callback; an unexpected error shows a generic message, never a traceback."""
        try:
            action()
        except Exception:
            log.exception("target app callback failed")
            self._set_status("app.error")

    def _unless_building(self, action: Callable[[], Any]) -> None:
        """A control's callback, skipped while the app itself relabels the controls."""
        if not self._building:
            self._guard(action)

    def _set_status(self, key: str | None, detail: str = "", **fmt: Any) -> None:
        self._status = (key, fmt, detail) if key else None
        if key is None:
            self.status.value = ""
            return
        text = f"<span>{html.escape(t(key, self.lang, **fmt))}</span>"
        if detail:
            text += f'<pre class="cim-rule-error">{html.escape(detail)}</pre>'
        self.status.value = text

    def _load_rulesets(self) -> dict[str, Any]:
        from cimlib import targeting as T

        out: dict[str, Any] = {}
        for name in T.list_rulesets(self.home):
            try:
                out[name] = T.load_ruleset(name, self.home)
            except (T.RuleSetError, T.RuleError):
                log.warning("rule set %s cannot be loaded", name, exc_info=True)
        return out

    def _load_months(self) -> None:
        from cimlib.customer import available_months

        try:
            months = available_months(self.principal, self.home)
        except Exception:  # nothing published yet: Run says so
            log.warning("no months available", exc_info=True)
            months = []
        self.as_of.options = months
        self.as_of.value = months[-1] if months else None

    # -- the condition builder ---------------------------------------------------------------------------
    def add_condition(self, name: str = "") -> ConditionRow | None:
        """Add a row to the condition builder (at most :data:`MAX_CONDITIONS`)."""
        if len(self.rows) >= MAX_CONDITIONS:
            return None
        row = ConditionRow(self.customer_type.value, self.lang, self._sync_condition, name=name)
        row.remove.on_click(lambda _b, row=row: self._guard(lambda: self.remove_condition(row)))
        self.rows.append(row)
        self._render_rows()
        self._sync_condition()
        return row

    def remove_condition(self, row: ConditionRow) -> None:
        """Remove a row of the condition builder (the last one stays)."""
        if len(self.rows) <= 1 or row not in self.rows:
            return
        self.rows.remove(row)
        self._render_rows()
        self._sync_condition()

    def _render_rows(self) -> None:
        self.rows_box.children = tuple(r.box for r in self.rows)
        for r in self.rows:
            r.remove.disabled = len(self.rows) <= 1
        self.add_button.disabled = len(self.rows) >= MAX_CONDITIONS or not self.has_scope

    def _sync_condition(self) -> None:
        """Write the builder's rows into the condition text (which the user may then edit)."""
        self.condition.value = condition_text([r.part() for r in self.rows], self.customer_type.value)

    def _on_customer_type(self) -> None:
        for r in self.rows:
            r.set_type(self.customer_type.value, self.lang)
        self._sync_condition()

    def _show_mode(self) -> None:
        adhoc = self.mode.value == "adhoc"
        self.ruleset_box.layout.display = "none" if adhoc else "flex"
        self.adhoc_box.layout.display = "flex" if adhoc else "none"

    def _fill_rules(self) -> None:
        rs = self.rulesets.get(self.ruleset.value or "")
        keep = self.rule.value
        options: list[tuple[str, str]] = [(t("target.all_rules", self.lang), "")]
        for r in rs.rules if rs is not None else []:
            ctype = code_label("customer_type", r.customer_type, self.lang)
            options.append((f"{r.name[_short(self.lang)]} · {ctype}", r.id))
        self.rule.options = options
        self.rule.value = keep if keep in [v for _, v in options] else ""

    # -- actions -----------------------------------------------------------------------------------------
    def current_request(self) -> Request:
        """The rule set, rules and month the controls ask for.

        Raises
        ------
        RuleError
            The ad-hoc condition does not compile.
        """
        as_of = self.as_of.value or None
        if self.mode.value == "adhoc":
            return Request(adhoc_ruleset(self.condition.value, self.customer_type.value), None, as_of)
        rs = self.rulesets.get(self.ruleset.value or "")
        if rs is None:
            raise LookupError("no rule set chosen")
        return Request(rs, [self.rule.value] if self.rule.value else None, as_of)

    def run(self, request: Request | None = None) -> pd.DataFrame | None:
        """Run the chosen rule set or condition and show the counts, the list and the download.

        Parameters
        ----------
        request : Request, optional
            What to run (default: what the controls say).

        Returns
        -------
        DataFrame or None
            The list (``None`` for counts-only roles, or when nothing ran); the counts are in
            :attr:`counts`.
        """
        if not self.has_scope:
            self._set_status("target.no_access")
            return None
        self.run_button.disabled = True
        self.run_button.description = t("target.running", self.lang)
        try:
            return self._run(request)
        finally:
            self.run_button.disabled = False
            self.run_button.description = t("target.run", self.lang)

    def _run(self, request: Request | None) -> pd.DataFrame | None:
        from cimlib import targeting as T
        from cimlib.access import AccessError, NotPermitted
        from cimlib.customer import AsOfError

        try:
            req = request or self.current_request()
        except T.RuleError as exc:
            self._clear_results()
            self._set_status("target.rule_error", detail=str(exc))
            return None
        except LookupError:
            self._set_status("target.no_rulesets")
            return None
        try:
            if self.can_view_detail:
                frame = T.run(
                    req.ruleset, self.principal, req.as_of, rules=req.rules, lang=self.lang, home=self.home
                )
                counts = counts_from_list(frame, [r.id for r in req.ruleset.select(req.rules)])
                as_of = frame.attrs.get("as_of")
            else:
                frame = None
                counts = T.counts(req.ruleset, self.principal, req.as_of, rules=req.rules, home=self.home)
                as_of = counts.attrs.get("as_of")
        except AsOfError:
            self._clear_results()
            self._set_status("target.bad_month")
            return None
        except StaleWarehouse:
            log.exception("the warehouse predates the rules")
            self._clear_results()
            self._set_status("target.stale_warehouse")
            return None
        except NotPermitted:
            self._clear_results()
            self._set_status("target.no_access")
            return None
        except AccessError:
            self._clear_results()
            self._set_status("app.error")
            return None
        self.request = req
        self.frame, self.counts = frame, counts
        self.hits = rule_hits(req.ruleset, counts, self.lang, req.rules)
        self._as_of = as_of or req.as_of or ""
        self.xlsx = None
        self._set_status(None)
        self._render_results()
        return frame

    def _clear_results(self) -> None:
        self.frame = self.counts = self.hits = None
        self.request = None
        self.xlsx = None
        self.results.layout.display = "none"

    def prepare_download(self) -> bytes | None:
        """Write the Excel file of the list on show and offer it as a download link (the button's action)."""
        if self.frame is None or not len(self.frame):
            return None
        self.prepare_button.disabled = True
        self.prepare_button.description = t("target.preparing", self.lang)
        return self._show_download()

    def _show_download(self) -> bytes | None:
        try:
            data = self.excel_bytes()
        except Exception:  # the list stays on show; only the download is missing
            log.exception("Excel export failed")
            data = None
        if data and self.request is not None and self.frame is not None:
            filename = f"targets_{self.request.ruleset.name}_{str(self._as_of)[:7]}.xlsx"
            self.download.value = download_html(data, filename, len(self.frame), self.lang)
        else:
            self.download.value = (
                f'<p class="cim-more">{html.escape(t("target.download_failed", self.lang))}</p>'
            )
        self.prepare_button.layout.display = "none"
        return data

    def excel_bytes(self) -> bytes | None:
        """The list as an Excel workbook (every row; formula-safe), made once per run."""
        if self.frame is None:
            return None
        if self.xlsx is None:
            from cimlib import targeting as T

            self.xlsx = T.list_bytes(self.frame, fmt="xlsx", lang=self.lang)
        return self.xlsx

    def set_language(self, lang: str) -> None:
        """Switch every label to ``lang``; a list on show is made again (rule names and reasons change)."""
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.lang = lang
        if self.lang_toggle.value != lang:
            self.lang_toggle.value = lang
        self._relabel()
        if self._status:
            key, fmt, detail = self._status
            self._set_status(key, detail, **fmt)
        if self.request is not None:
            if self.frame is not None:
                self.run(self.request)
            else:
                self.hits = rule_hits(self.request.ruleset, self.counts, lang, self.request.rules)
                self._render_results()

    # -- rendering ---------------------------------------------------------------------------------------
    def principal_text(self) -> str:
        """The signed-in user's name, role and scope, as shown in the header."""
        return principal_text(self.principal, self.lang)

    def _relabel(self) -> None:
        lang = self.lang
        self._building = True
        try:
            self.title.value = f'<div class="cim-title">{html.escape(t("target.title", lang))}</div>'
            self.principal_label.value = f"<span>{html.escape(self.principal_text())}</span>"
            if not self.has_scope:
                notice = t("target.no_access", lang)
            elif not self.can_view_detail:
                notice = t("target.counts_only", lang)
            else:
                notice = ""
            self.notice.value = f"<p>{html.escape(notice)}</p>" if notice else ""
            mode = self.mode.value
            self.mode.options = [
                (t("target.mode_ruleset", lang), "ruleset"),
                (t("target.mode_adhoc", lang), "adhoc"),
            ]
            self.mode.value = mode
            keep = self.ruleset.value
            self.ruleset.options = [(rs.title[_short(lang)], name) for name, rs in self.rulesets.items()]
            names = list(self.rulesets)
            self.ruleset.value = keep if keep in names else (names[0] if names else None)
            self.ruleset.description = t("target.ruleset", lang)
            self.rule.description = t("target.rule", lang)
            self._fill_rules()
            ctype = self.customer_type.value
            self.customer_type.options = [(code_label("customer_type", c, lang), c) for c in ("I", "C")]
            self.customer_type.value = ctype
            self.customer_type.description = t("target.customer_type", lang)
            self.add_button.description = t("target.add_condition", lang)
            self.condition_label.value = (
                f"<div><b>{html.escape(t('target.condition', lang))}</b> "
                f'<span class="cim-help">{html.escape(t("target.condition_help", lang))}</span></div>'
            )
            self.as_of.description = t("target.as_of", lang)
            self.run_button.description = t("target.run", lang)
        finally:
            self._building = False
        text = self.condition.value
        for r in self.rows:
            r.set_type(self.customer_type.value, lang)
        self.condition.value = text
        self._show_mode()

    def _render_results(self) -> None:
        lang = self.lang
        req, counts, hits = self.request, self.counts, self.hits
        if req is None or counts is None or hits is None:
            return
        title = req.ruleset.title[_short(lang)]
        n = (
            len(self.frame)
            if self.frame is not None
            else int(counts["n_customers"].sum())
            if len(counts)
            else 0
        )
        as_of = str(self._as_of)[:10]
        key = "target.summary" if self.frame is not None else "target.summary_counts"
        self.summary.value = (
            f"<div>{html.escape(t(key, lang, n=format_count(n), ruleset=title, as_of=as_of))}</div>"
        )
        self.download.value = ""
        self.prepare_button.layout.display = "none"
        if self.frame is not None and len(self.frame):
            if self.xlsx is not None or len(self.frame) <= EAGER_EXCEL_ROWS:
                self._show_download()
            else:
                self.prepare_button.description = t("target.prepare_download", lang, n=format_count(n))
                self.prepare_button.disabled = False
                self.prepare_button.layout.display = None
        if n:
            self.charts.value = (
                '<div class="cim-charts">'
                + chart_html(branch_chart(counts, lang), "cim-chart-branches")
                + chart_html(rule_chart(hits[hits["customers"] > 0], lang), "cim-chart-rules")
                + "</div>"
            )
            self.counts_table.value = (
                f"<h4>{html.escape(t('target.branch_counts', lang))}</h4>" + counts_html(counts, hits, lang)
            )
        else:
            self.charts.value = ""
            self.counts_table.value = f'<p class="cim-empty">{html.escape(t("target.no_hits", lang))}</p>'
        if self.frame is not None and len(self.frame):
            self.list_title.value = f"<h4>{html.escape(t('target.list', lang))}</h4>"
            self.list_table.value = list_html(
                self.frame, lang, base_url=self.base_url, max_rows=MAX_LIST_ROWS
            )
        else:
            self.list_title.value = ""
            self.list_table.value = ""
        self.results.layout.display = "flex"


# ---- entry points -----------------------------------------------------------------------------------------


def base_url_from(environ: Mapping[str, str]) -> str:
    """The server's base path from Voila's request information (``SCRIPT_NAME`` is the page's path)."""
    script = environ.get("SCRIPT_NAME") or ""
    if "/voila/render/" in script:
        return script.split("/voila/render/", 1)[0] + "/"
    return environ.get("VOILA_BASE_URL") or "/"


def signed_in_app(
    build: Callable[[Any, str], w.Widget],
    title_key: str,
    *,
    lang: str,
    home: Any,
    environ: Mapping[str, str] | None,
) -> w.Widget:
    """An app for the signed-in user of this Voila kernel, or the denied view titled ``title_key``.

    The principal comes from the server-signed identity token (never from the URL); ``build`` receives
    it and the server's base path (for links between apps).
    """
    from cimlib.apps._identity import principal_from_request
    from cimlib.apps.customer_360 import denied_view
    from cimlib.serve._token import IdentityError

    try:
        principal = principal_from_request(home=home, environ=environ)
    except IdentityError as exc:
        log.warning("app %s refused: %s", title_key, exc)
        box = denied_view(lang)
        box.children[1].value = f'<div class="cim-title">{html.escape(t(title_key, lang))}</div>'
        return box
    return build(principal, base_url_from(environ if environ is not None else os.environ))


def target_search_app(
    *, lang: str = DEFAULT_LANG, home: Any = None, environ: Mapping[str, str] | None = None
) -> w.VBox:
    """Build the target-customer search app for the user of this Voila kernel (the notebook's only call).

    Establishes the principal from the server-signed identity token first, exactly as the customer 360
    app does; without a valid one the user sees a message and no data is read.

    Parameters
    ----------
    lang : str
        The starting language.
    home : str, optional
        The CIM home (default ``$CIM_HOME``).
    environ : mapping, optional
        The environment holding the token, the secret and the request information (default
        ``os.environ``); for tests.

    Returns
    -------
    ipywidgets.VBox
        The app, or the denied view.
    """
    return signed_in_app(
        lambda principal, base_url: TargetApp(principal, home=home, lang=lang, base_url=base_url).widget,
        "target.title", lang=lang, home=home, environ=environ,
    )  # fmt: skip


def warm_up(home: Any = None) -> None:
    """The slow once-a-process work of a preheating kernel: the 360 app's, plus the rule language.

    Nothing here depends on who will sign in, and no customer data is read.
    """
    from cimlib.apps.customer_360 import warm_up as warm_up_360

    warm_up_360(home)
    try:
        from cimlib import targeting as T

        for name in T.list_rulesets(home):
            T.load_ruleset(name, home)
        adhoc_ruleset("aum >= 1", "I")
    except Exception:
        log.warning("warm-up could not load the rule sets", exc_info=True)
    warm = [w.Textarea(), w.HBox(), w.Dropdown()]
    for widget in warm:
        widget.close()
