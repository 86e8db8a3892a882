"""The managers' dashboard app (经营管理驾驶舱): everything at a glance for the user's org and month.

All logic is here, so it is unit-tested without a browser; ``notebooks/apps/management_dashboard.ipynb`` only
calls :func:`management_dashboard_app`. Every figure comes from :mod:`cimlib.analysis` (scoped for the
signed-in principal; groups under ``min_cell`` customers blanked for roles without detail). The page opens on
the user's org and the latest month with the key figures and their changes against the previous month, the
same month last year and the start of the year, and the key focus list; the tabs (macro, customer groups,
product, channel, performance) show each analysis as an inline SVG chart and a table. Only the active tab is
rendered, and each tab's HTML is cached per (org, month, language).

Drills: a figure's customers come from the analysis modules' ``*_customers`` functions (scoped, masked,
audit-logged), each row linking to the 360 view; "open in segment explorer" carries the org and the month.
The provincial edition (all orgs, aggregates only) never lists customers: a drill asks the service, which
refuses and audits the refusal, and the app shows a message instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import importlib
import inspect
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import altair as alt
import ipywidgets as w
import pandas as pd

from cimlib.apps.customer_360 import _CSS, chart_html, principal_text
from cimlib.apps.target_search import customer_href, list_html, signed_in_app
from cimlib.i18n import (
    DEFAULT_LANG,
    LANGS,
    code_label,
    column_label,
    format_count,
    format_money,
    locale_keys,
    money_unit,
    t,
)

log = logging.getLogger(__name__)

#: The tabs, in order (``dashboard.tab_<key>`` names them).
TABS: tuple[str, ...] = ("macro", "groups", "product", "channel", "performance")
#: Rows of a table shown at most (the analysis frames are aggregates; a few are long lists).
MAX_TABLE_ROWS = 40
#: Customers of a drill listed at most.
DRILL_LIMIT = 500
#: The comparisons of the key-figure cards, in order.
COMPARISONS: tuple[str, ...] = ("prev_month", "last_year", "year_start")
SEGMENT_APP = "voila/render/segment_explorer.ipynb"


# ---- the analyses the dashboard shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One analysis of a tab: its frame function, chart, options, and what its table shows.

    ``chart`` defaults to ``<func>_chart``, looked up in ``cimlib.analysis.<module>_charts`` (or
    ``chart_module``) and then in the module itself; it draws the section's frame, or the frame of
    ``chart_from`` (another function of the module, called with ``chart_options``), with ``chart_kwargs``.
    ``columns`` limits the table (None: every column; an empty tuple: no table, chart only); ``where``
    keeps the rows whose columns equal the given values (e.g. the current period); ``sort`` orders them
    (descending) and ``kinds`` says how a column is shown where its name does not tell.
    """

    key: str
    module: str
    func: str
    options: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    chart: str | None = None
    chart_from: str | None = None
    chart_options: Mapping[str, Any] = field(default_factory=dict)
    chart_kwargs: Mapping[str, Any] = field(default_factory=dict)
    chart_module: str | None = None
    kinds: Mapping[str, str] = field(default_factory=dict)
    sort: str | None = None
    max_rows: int = MAX_TABLE_ROWS


@dataclass(frozen=True)
class Drill:
    """A drill of a tab: a ``*_customers`` function, the options naming the figure, and its targets.

    With ``target_param``, one drill per row of the section ``target_section``: the row's ``target_col`` is
    passed as ``target_param`` (a product code, a group, a staff member …) and its ``label`` names it.
    """

    key: str
    module: str
    func: str
    options: Mapping[str, Any] = field(default_factory=dict)
    target_param: str | None = None
    target_section: str | None = None
    target_col: str | None = None


_GROUPS = "dim:aum"
#: The analyses of each tab.
SECTIONS: dict[str, tuple[Section, ...]] = {
    "macro": (
        Section("overview", "_macro", "overview", chart="kpi_trend_chart", chart_from="overview_trend",
                columns=("label", "current", "prev_month", "prev_month_growth", "last_year",
                         "last_year_growth", "year_start", "year_start_growth")),
        Section("gl_structure", "_gl", "gl_structure", chart="gl_structure_chart",
                chart_module="_macro_charts",
                columns=("org_label", "label", "gl_balance", "side_share", "prev_month",
                         "prev_month_growth"), kinds={"prev_month": "money"}),
        Section("gl_tieout", "_gl", "gl_tieout", chart="tieout_chart", chart_module="_macro_charts",
                chart_kwargs={"top": 20},
                columns=("org_label", "label", "gl_balance", "customer_balance", "difference",
                         "status_label")),
    ),
    "groups": (
        Section("group_value", "_groups", "group_value", {"groups": _GROUPS},
                columns=("label", "customers", "customer_share", "aum", "aum_adb", "aum_adb_share",
                         "deposit_adb", "loan_balance", "contribution", "contribution_share")),
        Section("group_activity", "_groups", "group_activity", {"groups": _GROUPS}),
        Section("group_concentration", "_groups", "group_concentration", {"groups": _GROUPS}),
    ),
    "product": (
        Section("product_structure", "_product", "product_structure", chart="structure_chart",
                columns=("category_label", "label", "balance", "balance_share", "holders", "penetration",
                         "balance_prev_month_growth", "balance_last_year_growth")),
        Section("product_income", "_product", "product_income", sort="contribution", max_rows=15,
                columns=("category_label", "label", "balance", "adb", "fee_income", "contribution",
                         "contribution_share")),
        Section("loan_risk", "_product", "loan_risk", chart="npl_chart",
                columns=("label", "loans", "loan_balance", "npl_balance", "npl_ratio",
                         "npl_ratio_prev_month_change", "npl_ratio_last_year_change")),
        Section("products_per_customer", "_product", "products_per_customer",
                chart="products_per_customer_chart"),
        Section("next_product", "_product", "next_product", where={"rank": 1},
                columns=("label", "rank", "next_label", "holders", "customers", "confidence", "lift")),
    ),
    "channel": (
        Section("channel_volume", "_channel", "channel_volume", chart="channel_volume_chart",
                where={"period": "current"},
                columns=("period_label", "label", "txn_count", "count_share", "txn_amount", "amount_share")),
        Section("channel_trend", "_channel", "channel_trend", columns=(), chart="channel_share_chart"),
        Section("channel_migration", "_channel", "channel_migration", {"by": "branch"},
                chart="migration_chart",
                columns=("label", "customers", "counter_share_base", "counter_share", "digital_share_base",
                         "digital_share", "digital_share_change")),
        Section("card_usage", "_channel", "card_usage", chart="card_usage_chart", where={"period": "current"},
                columns=("label", "owner_label", "txn_count", "count_share", "txn_amount", "amount_share")),
        Section("channel_cost", "_channel", "channel_cost", chart="cost_chart",
                columns=("org_label", "label", "txn_count", "cost_per_txn", "cost", "cost_share")),
        Section("underused_devices", "_channel", "underused_devices", chart="underused_chart",
                chart_from="underused_trend", chart_kwargs={"max_devices": 12}, max_rows=15,
                columns=("device", "org_label", "avg_monthly_txns", "peer_median", "floor", "reason_label")),
    ),
    "performance": (
        Section("branch_performance", "_performance", "branch_performance",
                columns=("label", "customers", "managed_share", "deposit_adb", "loan_balance", "npl_ratio",
                         "contribution", "quality_share", "other_bank_share")),
        Section("league_table", "_performance", "league_table", chart_kwargs={"top": 20},
                columns=("rank", "label", "org_label", "value", "count", "percentile", "rank_change")),
        Section("manager_performance", "_performance", "manager_performance",
                columns=("label", "org_label", "customers", "deposit_adb", "loan_balance", "npl_ratio",
                         "contribution", "quality_share")),
    ),
}  # fmt: skip
#: The drills of each tab.
DRILLS: dict[str, tuple[Drill, ...]] = {
    "macro": (),
    "groups": (
        Drill("group", "_groups", "group_customers", {"groups": _GROUPS}, "group", "group_value", "group"),
    ),
    "product": (
        Drill("product", "_product", "product_customers", {}, "product_code", "product_structure",
              "product_code"),
    ),
    "channel": (
        Drill("counter_only", "_channel", "channel_customers", {"pattern": "counter_only"}),
        Drill("moved_to_digital", "_channel", "channel_customers", {"pattern": "moved_to_digital"}),
    ),
    "performance": (
        Drill("manager", "_performance", "performance_customers", {"measure": "deposit_adb"}, "member",
              "league_table", "member"),
    ),
}  # fmt: skip
#: The key figures: ``(module, function)`` giving a comparison frame (``measure, current, prev_month, …``).
KPI_SOURCE = ("_macro", "overview")
#: The key focus list.
FOCUS_SOURCE = ("_focus", "key_focus")
FOCUS_TABLE = Section(
    "key_focus", *FOCUS_SOURCE, max_rows=60,
    columns=("kind_label", "label", "measure_label", "previous", "current", "change", "change_rate",
             "customers", "drivers"),
)  # fmt: skip
#: The drill of a key figure's customers.
KPI_DRILL = ("_macro", "overview_customers")
#: Measures where a rise is bad news (coloured red when they go up).
RISE_IS_BAD = frozenset({"npl_balance", "npl_ratio", "npl_customers", "provisions", "cost", "churned"})


#: A key figure whose customers are those of another (the NPL ratio's are the NPL customers').
KPI_DRILL_ALIASES = {"npl_ratio": "npl_balance"}


def kpi_drill_measure(measure: str) -> str | None:
    """The measure :data:`KPI_DRILL` lists for a key figure, or None when no customer list is behind it."""
    target = KPI_DRILL_ALIASES.get(measure, measure)
    try:
        module = importlib.import_module(f"cimlib.analysis.{KPI_DRILL[0]}")
    except ImportError:
        return None
    return target if target in getattr(module, "DRILL_MEASURES", ()) else None


def analysis_function(module: str, name: str | None) -> Callable[..., Any] | None:
    """A function of ``cimlib.analysis.<module>``, or ``None`` when the module or the function is missing.

    The dashboard is built on whatever the analysis modules offer, so a module being rewritten never takes
    the whole page down: its tab says the analysis is not available.
    """
    if not name:
        return None
    try:
        mod = importlib.import_module(f"cimlib.analysis.{module}")
    except ModuleNotFoundError:  # a module that does not exist (yet)
        log.debug("analysis module %s is not available", module)
        return None
    except Exception:  # a module that fails to import
        log.warning("analysis module %s is not available", module, exc_info=True)
        return None
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def chart_function(sec: Section) -> Callable[..., Any] | None:
    """The chart function of a section: ``<module>_charts.<chart>``, else ``<module>.<chart>``."""
    name = sec.chart or f"{sec.func}_chart"
    module = sec.chart_module or f"{sec.module}_charts"
    return analysis_function(module, name) or analysis_function(sec.module, name)


def section_table(sec: Section, frame: pd.DataFrame | None, lang: str, *, base_url: str = "/") -> str:
    """A section's table: its rows (``where``) and columns (``columns``) of the frame."""
    if sec.columns == ():
        return ""
    if frame is not None and len(frame):
        for col, value in sec.where.items():
            if col in frame:
                frame = frame[frame[col] == value]
        if sec.sort and sec.sort in frame:
            frame = frame.sort_values(sec.sort, ascending=False, kind="stable", na_position="last")
        if sec.columns:
            keep = [c for c in sec.columns if c in frame]
            extra = [c for c in ("customer_id", "link", "measure", "kind") if c in frame and c not in keep]
            frame = frame[keep + extra]
    return frame_html(frame, lang, max_rows=sec.max_rows, base_url=base_url, kinds=sec.kinds)


def _has_money(sec: Section, frame: pd.DataFrame | None) -> bool:
    """Whether a section's table shows an amount (so it says the unit)."""
    if frame is None or not len(frame):
        return False
    if "kind" in frame and frame["kind"].astype(str).isin(["amount", "money"]).any():
        return True
    measures = set(frame["measure"].astype(str)) if "measure" in frame else set()
    cols = sec.columns or tuple(str(c) for c in frame.columns)
    return any(
        pd.api.types.is_numeric_dtype(frame[c])
        and any(value_kind(c, m) == "money" for m in measures or {None})
        for c in cols
        if c in frame
    )


def _call(fn: Callable[..., Any], principal: Any, as_of: Any, org: str | None, home: Any, lang: str,
          options: Mapping[str, Any]) -> Any:  # fmt: skip
    """Call an analysis function with the keywords it accepts."""
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {"as_of": as_of, "org": org, "home": home, "lang": lang, **options}
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(principal, **kwargs)


# ---- formatting ------------------------------------------------------------------------------------------


def tr(key: str, lang: str, **fmt: Any) -> str:
    """The dashboard's text ``dashboard.<key>`` in ``lang``."""
    return t(f"dashboard.{key}", lang, **fmt)


@functools.cache
def _keys(lang: str) -> frozenset[str]:
    return frozenset(locale_keys(lang))


def _has(key: str, lang: str) -> bool:
    return key in _keys(lang)


def is_missing(value: Any) -> bool:
    """``None``, NaN or NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


#: Columns whose kind is the row's (a comparison frame's ``current``, ``prev_month`` … of each measure).
_VALUE_COLUMNS = frozenset({"current", "previous", "prev_month", "last_year", "year_start", "change",
                            "value", "total", "prev_month_change", "last_year_change",
                            "year_start_change"})  # fmt: skip
_KINDS = {"count": "count", "amount": "money", "rate": "percent", "ratio": "percent", "money": "money"}
_PERCENT_WORDS = (
    "percentile",
    "confidence",
    "share",
    "rate",
    "ratio",
    "growth",
    "pct",
    "util",
    "coverage",
    "penetration",
    "margin",
)
_COUNT_WORDS = ("customers", "count", "txns", "days", "months", "staff", "branches", "accounts",
                "products", "rank", "holders", "devices", "terminals", "tellers")  # fmt: skip
_MONEY_WORDS = ("balance", "adb", "amount", "aum", "value", "contribution", "income", "cost", "fee",
                "provision", "difference", "deposit", "loan", "nii", "profit", "volume",
                "change")  # fmt: skip


def value_kind(column: str, measure: str | None = None, kind: str | None = None) -> str:
    """How a value is shown: ``percent``, ``count``, ``money`` or ``number``.

    Parameters
    ----------
    column : str
        The frame's column (``current``, ``prev_month_growth``, ``deposit_adb`` …).
    measure : str, optional
        The measure of a comparison frame's row, which decides for its value columns.
    kind : str, optional
        The row's own ``kind`` (``count``, ``amount``, ``rate``), when the frame has one.
    """
    col = column.lower()
    if "growth" in col or any(word in col for word in _PERCENT_WORDS):
        return "percent"
    if col.startswith("n_") or any(word in col for word in _COUNT_WORDS):
        return "count"
    if col in _VALUE_COLUMNS:
        if kind in _KINDS:
            return _KINDS[kind]
        if measure:
            name = measure.lower()
            if any(word in name for word in _PERCENT_WORDS):
                return "percent"
            if name.startswith("n_") or any(word in name for word in _COUNT_WORDS):
                return "count"
            if any(word in name for word in _MONEY_WORDS):
                return "money"
    if any(word in col for word in _MONEY_WORDS):
        return "money"
    return "number"


def format_value(value: Any, kind: str, lang: str, *, signed: bool = False) -> str:
    """A value as display text (``—`` when missing or suppressed)."""
    if is_missing(value):
        return "—"
    if isinstance(value, bool):
        return t("app.yes" if value else "app.no", lang)
    if isinstance(value, dt.date | pd.Timestamp):
        return str(value)[:10]
    if not isinstance(value, int | float | Decimal):
        return str(value)
    v = float(value)
    sign = "+" if signed and v > 0 else ""
    if kind == "percent":
        return f"{sign}{v:.1%}" if signed else f"{v:.2%}"
    if kind == "count":
        return sign + format_count(round(v), lang)
    if kind == "money":
        return sign + format_money(v, lang)
    return f"{sign}{v:,.2f}" if abs(v) < 1000 and v != round(v) else f"{sign}{v:,.0f}"


def column_header(column: str, lang: str) -> str:
    """A frame column's header: the dashboard's own, then the shared ``columns.*``, then the name."""
    key = f"dashboard.col_{column}"
    if _has(key, lang):
        return t(key, lang)
    label = column_label(column, lang)
    return label if label != column else column.replace("_", " ")


def measure_name(measure: str, lang: str, fallback: str | None = None) -> str:
    """A measure's name: ``dashboard.kpi_<measure>``, else the frame's own label, else the code."""
    key = f"dashboard.kpi_{measure}"
    if _has(key, lang):
        return t(key, lang)
    return fallback or column_header(measure, lang)


#: Columns never shown in a table: codes with a label beside them, bookkeeping.
_HIDDEN = {"as_of_date", "org_code", "suppressed", "link", "measure", "kind", "period", "sort", "order"}


def table_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of an analysis frame the table shows, label first."""
    cols = [str(c) for c in frame.columns]
    shown = [c for c in cols if c not in _HIDDEN and not c.endswith("_code")]
    # a code column with a label beside it: show the label only
    if "label" in cols:
        shown = [c for c in shown if c not in ("member", "group", "code", "key", "customer_type", "channel")]
    return shown


def frame_html(frame: pd.DataFrame | None, lang: str, *, max_rows: int = MAX_TABLE_ROWS,
               css_class: str = "cim-dash-table", base_url: str = "/",
               kinds: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """An analysis frame as an escaped HTML table: labels first, numbers right-aligned and formatted.

    Parameters
    ----------
    frame : DataFrame
        A tidy frame of :mod:`cimlib.analysis` (one row per group or period).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    max_rows : int
        Show at most this many rows, and say so.
    css_class : str
        The table's class.
    base_url : str
        The server's base path: a row with a ``customer_id`` and a ``link`` links to its 360 view.
    kinds : mapping, optional
        ``{column: kind}`` where :func:`value_kind` cannot tell (``money``, ``count``, ``percent``).

    Returns
    -------
    str
        HTML; a short message for an empty frame.
    """
    if frame is None or not len(frame):
        return f'<p class="cim-empty">{html.escape(tr("no_data", lang))}</p>'
    cols = table_columns(frame)
    head = "".join(f"<th>{html.escape(column_header(c, lang))}</th>" for c in cols)
    body = []
    for rec in frame.head(max_rows).to_dict("records"):
        cells = []
        measure = rec.get("measure") if isinstance(rec.get("measure"), str) else None
        row_kind = rec.get("kind") if isinstance(rec.get("kind"), str) else None
        for c in cols:
            v = rec.get(c)
            if c in ("customer_id", "label") and isinstance(rec.get("link"), str) and rec.get("link"):
                href = html.escape(customer_href(str(rec["link"]), base_url), quote=True)
                cells.append(f'<td><a class="cim-customer-link" href="{href}" target="_blank" rel="noopener">'
                             f"{html.escape(str(v))}</a></td>")  # fmt: skip
                continue
            numeric = isinstance(v, int | float | Decimal) and not isinstance(v, bool)
            if numeric or (is_missing(v) and c != "label"):
                kind = (kinds or {}).get(c) or value_kind(c, measure, row_kind)
                text = format_value(v, kind, lang, signed=c.endswith(("_change", "_growth")))
                cells.append(f'<td class="num">{html.escape(text)}</td>')
            else:
                cells.append(f"<td>{html.escape(_cell_text(c, v, lang))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        f'<table class="cim-table {css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    more = ""
    if len(frame) > max_rows:
        note = t("app.more_rows", lang, shown=format_count(max_rows), total=format_count(len(frame)))
        more = f'<p class="cim-more">{html.escape(note)}</p>'
    return f'<div class="cim-scroll">{table}</div>{more}'


_CODE_COLUMNS = {"channel": "channel", "customer_type": "customer_type", "five_class": "five_class",
                 "category": "product_category", "subtype": "product_subtype", "industry": "industry",
                 "txn_type": "txn_type", "direction": "direction", "role": "role"}  # fmt: skip


def _cell_text(column: str, value: Any, lang: str) -> str:
    if is_missing(value):
        return ""
    if column in _CODE_COLUMNS:
        return code_label(_CODE_COLUMNS[column], value, lang)
    if isinstance(value, dt.date | pd.Timestamp):
        return str(value)[:10]
    return str(value)


def _arrow(value: float, rise_is_bad: bool) -> tuple[str, str]:
    """The arrow and css class of a change: up/down, good (green) or bad (red)."""
    if is_missing(value) or value == 0:
        return "", "cim-flat"
    up = value > 0
    good = up != rise_is_bad
    return ("▲" if up else "▼"), ("cim-good" if good else "cim-bad")


def kpi_cards_html(frame: pd.DataFrame | None, lang: str) -> list[str]:
    """One HTML card per key figure of a comparison frame: the value and its three changes, coloured.

    Parameters
    ----------
    frame : DataFrame
        ``measure, current, prev_month, prev_month_change, prev_month_growth, last_year, …`` (the shape of
        :func:`cimlib.analysis._common.comparison_frame`), optionally with a ``label`` column.
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    list of str
        HTML of each card, in the frame's order. A change is the growth rate, except for rates (NPL
        ratio …), whose change is in percentage points.
    """
    if frame is None or not len(frame):
        return []
    out = []
    for rec in frame.to_dict("records"):
        measure = str(rec.get("measure"))
        label = rec.get("label") if isinstance(rec.get("label"), str) else None
        kind = value_kind("current", measure, rec.get("kind") if isinstance(rec.get("kind"), str) else None)
        name = measure_name(measure, lang, label)
        lines = []
        for k in COMPARISONS:
            change, growth = rec.get(f"{k}_change"), rec.get(f"{k}_growth")
            if kind == "percent":
                text = "—" if is_missing(change) else f"{float(change) * 100:+.2f} {tr('pp', lang)}"
                move = change
            elif not is_missing(rec.get(k)) and float(rec[k]) < 0 and not is_missing(change):
                # a growth rate on a negative base misleads (-10 to -20 is "+100%"): show the change
                text = format_value(change, kind, lang, signed=True)
                move = change
            else:
                text = format_value(growth, "percent", lang, signed=True)
                move = change if not is_missing(change) else growth
            arrow, cls = _arrow(float(move) if not is_missing(move) else math.nan, measure in RISE_IS_BAD)
            lines.append(
                '<div class="cim-kpi-change">'
                f'<span class="cim-kpi-vs">{html.escape(tr("vs_" + k, lang))}</span>'
                f' <span class="{cls}">{arrow} {html.escape(text)}</span></div>'
            )
        value = format_value(rec.get("current"), kind, lang)
        unit = (
            f' <span class="cim-kpi-unit">{html.escape(t("money.unit", lang))}</span>'
            if kind == "money"
            else ""
        )
        out.append(
            f'<div class="cim-kpi" data-measure="{html.escape(measure, quote=True)}">'
            f'<div class="cim-kpi-name">{html.escape(name)}</div>'
            f'<div class="cim-kpi-value">{html.escape(value)}{unit}</div>{"".join(lines)}</div>'
        )
    return out


def segment_href(base_url: str, org: str | None, as_of: Any) -> str:
    """The segment explorer's address with the org and the month pre-selected."""
    query = {k: v for k, v in (("org", org), ("as_of", str(as_of or "")[:7])) if v}
    return customer_href(SEGMENT_APP + ("?" + urllib.parse.urlencode(query) if query else ""), base_url)


_DASH_CSS = """<style>
.cim-app.cim-dash { max-width: 1400px; }
.cim-dash .cim-edition { color: #546e7a; font-size: 13px; }
.cim-dash .cim-controls { align-items: center; flex-wrap: wrap; gap: 4px 18px; margin: 6px 0; }
.cim-dash .cim-controls a { color: #1565c0; text-decoration: none; }
.cim-dash .cim-notice p { background: #fff8e1; border-left: 3px solid #f9a825; padding: 8px 12px;
  margin: 4px 0; }
.cim-dash .cim-status span { display: inline-block; background: #ffebee; border-left: 3px solid #c62828;
  padding: 8px 12px; }
.cim-dash .cim-kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 4px 0 8px; }
.cim-dash .cim-kpi-card { border: 1px solid #e0e0e0; border-radius: 6px; padding: 8px 12px 4px;
  width: 215px; background: #fafafa; }
.cim-dash .cim-kpi-name { color: #546e7a; font-size: 13px; }
.cim-dash .cim-kpi-value { font-size: 22px; font-weight: 600; color: #263238; margin: 2px 0 4px;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.cim-dash .cim-kpi-unit { font-size: 12px; font-weight: normal; color: #78909c; }
.cim-dash .cim-kpi-change { font-size: 12px; line-height: 18px; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.cim-dash .cim-kpi-vs { color: #78909c; display: inline-block; min-width: 70px; }
.cim-dash .cim-good { color: #2e7d32; font-weight: 600; }
.cim-dash .cim-bad { color: #c62828; font-weight: 600; }
.cim-dash .cim-flat { color: #78909c; }
.cim-dash a.cim-kpi-segment { display: inline-block; font-size: 12px; color: #1565c0; text-decoration: none;
  margin: 5px 0 7px; }
.cim-dash .cim-kpi-card button { font-size: 12px; height: 24px; margin: 2px 0 4px; }
.cim-dash .cim-section { margin: 6px 0 16px; }
.cim-dash .cim-section h4 { margin: 8px 0 4px; }
.cim-dash .cim-section-body { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.cim-dash .cim-note { color: #607d8b; font-size: 12px; }
.cim-dash p.cim-unavailable { background: #eceff1; border-left: 3px solid #90a4ae; padding: 8px 12px; }
.cim-dash p.cim-empty { color: #546e7a; }
.cim-dash .cim-drill-bar { align-items: center; gap: 8px; margin: 6px 0; flex-wrap: wrap; }
.cim-dash .cim-drill-panel { border-top: 1px solid #e0e0e0; margin-top: 8px; padding-top: 4px; }
.cim-dash .cim-list-wrap { max-height: 560px; overflow: auto; }
.cim-dash table.cim-list td a { color: #1565c0; text-decoration: none; }
.cim-dash table.cim-dash-table { font-size: 13px; }
.cim-dash table.cim-dash-table thead th { background: #f5f5f5; }
.cim-dash .cim-focus td:last-child { white-space: normal; min-width: 260px; max-width: 520px; }
.cim-dash p.cim-loading { color: #78909c; }
.cim-dash .cim-focus-wrap { max-height: 360px; overflow: auto; }
</style>"""


def _month(as_of: Any) -> str:
    return str(as_of or "")[:7]


class DashboardApp:
    """The managers' dashboard for one principal.

    Parameters
    ----------
    principal : Principal
        The signed-in user (from :func:`cimlib.apps.principal_from_request`).
    home : str, optional
        The CIM home.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    base_url : str
        The server's base path; links to the 360 view and the segment explorer are under it.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app's root widget.
    kpi_frame : DataFrame or None
        The key figures on show (from the macro overview).
    focus_frame : DataFrame or None
        The key focus list on show.
    frames : dict
        ``{tab: {section key: frame}}`` of the tabs rendered for the current org, month and language.
    drill_frame : DataFrame or None
        The last drill's customer list.
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
        self.kpi_frame: pd.DataFrame | None = None
        self.focus_frame: pd.DataFrame | None = None
        self.frames: dict[str, dict[str, pd.DataFrame]] = {}
        self.drill_frame: pd.DataFrame | None = None
        self.timings: dict[str, float] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._status: tuple[str, dict[str, Any]] | None = None
        self._drill_note: tuple[str, dict[str, Any]] | None = None
        self._building = False
        self._rendered: dict[int, tuple[Any, ...]] = {}
        self.org_names: dict[str, str] = {}
        self.home_org: str | None = None

        self.css = w.HTML(_CSS + _DASH_CSS)
        self.title = w.HTML()
        self.principal_label = w.HTML()
        self.principal_label.add_class("cim-principal")
        self.edition_label = w.HTML()
        self.edition_label.add_class("cim-edition")
        self.lang_toggle = w.ToggleButtons(
            options=[("中文", "zh_CN"), ("English", "en")], value=lang, style={"button_width": "80px"}
        )
        self.lang_toggle.add_class("cim-lang")
        self.notice = w.HTML()
        self.notice.add_class("cim-notice")

        st = {"description_width": "initial"}
        self.org = w.Dropdown(options=[("", "")], value="", layout=w.Layout(width="340px"), style=st)
        self.org.add_class("cim-org")
        self.as_of = w.Dropdown(layout=w.Layout(width="170px"), style=st)
        self.as_of.add_class("cim-as-of")
        self.segment_link = w.HTML()
        self.segment_link.add_class("cim-segment-link")
        self.controls = w.HBox([self.org, self.as_of, self.segment_link])
        self.controls.add_class("cim-controls")
        self.status = w.HTML()
        self.status.add_class("cim-status")

        self.kpi_title = w.HTML()
        self.kpi_box = w.Box(layout=w.Layout(display="flex", flex_flow="row wrap"))
        self.kpi_box.add_class("cim-kpis")
        self.kpi_buttons: dict[str, w.Button] = {}
        self.focus_title = w.HTML()
        self.focus = w.HTML()
        self.focus.add_class("cim-focus")
        self.overview = w.VBox([self.kpi_title, self.kpi_box, self.focus_title, self.focus])
        self.overview.add_class("cim-overview")

        self.tab_content: dict[str, w.HTML] = {}
        self.drill_choice: dict[str, w.Dropdown] = {}
        self.drill_button: dict[str, w.Button] = {}
        pages = []
        for tab in TABS:
            content = w.HTML()
            content.add_class(f"cim-tab-{tab}")
            content.add_class("cim-tab-content")
            choice = w.Dropdown(options=[("", "")], value="", layout=w.Layout(width="360px"), style=st)
            choice.add_class("cim-drill-choice")
            button = w.Button(icon="users", layout=w.Layout(width="auto"))
            button.add_class("cim-drill")
            bar = w.HBox([choice, button])
            bar.add_class("cim-drill-bar")
            button.on_click(lambda _b, tab=tab: self._guard(lambda: self.drill(tab)))
            self.tab_content[tab], self.drill_choice[tab], self.drill_button[tab] = content, choice, button
            page = w.VBox([content, bar])
            page.add_class(f"cim-page-{tab}")
            pages.append(page)
        self.tabs = w.Tab(children=pages)
        self.tabs.add_class("cim-tabs")
        self.tabs.add_class("cim-dash-tabs")

        self.drill_title = w.HTML()
        self.drill_title.add_class("cim-drill-title")
        self.drill_list = w.HTML()
        self.drill_list.add_class("cim-drill-list")
        self.drill_panel = w.VBox([self.drill_title, self.drill_list], layout=w.Layout(display="none"))
        self.drill_panel.add_class("cim-drill-panel")

        header = w.HBox(
            [w.VBox([self.title, self.principal_label, self.edition_label]), self.lang_toggle],
            layout=w.Layout(justify_content="space-between", width="100%"),
        )
        self.body = w.VBox([self.overview, self.tabs, self.drill_panel])
        self.body.add_class("cim-dash-body")
        self.widget = w.VBox([self.css, header, self.notice, self.controls, self.status, self.body])
        self.widget.add_class("cim-app")
        self.widget.add_class("cim-dash")

        self._load_orgs_and_months()
        self._relabel()
        self.lang_toggle.observe(lambda ch: self._guard(lambda: self.set_language(ch["new"])), names="value")
        self.org.observe(lambda _ch: self._unless_building(self.refresh), names="value")
        self.as_of.observe(lambda _ch: self._unless_building(self.refresh), names="value")
        self.tabs.observe(lambda _ch: self._unless_building(self.render_active_tab), names="selected_index")
        if not self.has_scope:
            self.controls.layout.display = "none"
            self.body.layout.display = "none"
            return
        self._guard(self.refresh)

    # -- state -------------------------------------------------------------------------------------------
    @property
    def can_view_detail(self) -> bool:
        """Whether the principal may list single customers (the provincial analyst may not)."""
        return bool(getattr(self.principal, "can_view_detail", False))

    @property
    def has_scope(self) -> bool:
        """Whether the principal may see any customer data (auditors may not)."""
        return getattr(self.principal, "scope", "none") != "none"

    @property
    def edition(self) -> str:
        """``provincial`` (all orgs, aggregates only) or ``county`` (with customer drill)."""
        from cimlib.analysis import edition_of

        return edition_of(self.principal)

    @property
    def org_code(self) -> str | None:
        """The focus org chosen (None: the user's own org)."""
        return self.org.value or None

    @property
    def month(self) -> str | None:
        """The as-of month chosen (ISO date; None: the latest)."""
        return self.as_of.value or None

    @property
    def active_tab(self) -> str:
        """The key of the tab on show."""
        return TABS[self.tabs.selected_index or 0]

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a UI callback; an unexpected error shows a generic message, never a traceback."""
        try:
            action()
        except Exception:
            log.exception("dashboard callback failed")
            self._set_status("app.error")

    def _unless_building(self, action: Callable[[], Any]) -> None:
        if not self._building:
            self._guard(action)

    def _set_status(self, key: str | None, **fmt: Any) -> None:
        self._status = (key, fmt) if key else None
        if key is None:
            self.status.value = ""
            return
        text = t(key, self.lang, **fmt)
        self.status.value = f"<span>{html.escape(text)}</span>"

    def _load_orgs_and_months(self) -> None:
        """The org selector (the user's org, then the orgs under it) and the month selector (latest first)."""
        from cimlib.analysis import analysis_context

        if not self.has_scope:
            return
        try:
            with analysis_context(self.principal, home=self.home, lang=self.lang) as ctx:
                home_org, orgs, dates = ctx.org, ctx.orgs, list(ctx.dates)
                managed = getattr(self.principal, "scope", "") == "managed"
                order: list[tuple[str, int]] = [(home_org.code, 0)]
                if not managed:
                    for child in ctx.children(home_org.code):
                        order.append((child.code, 1))
                        order += [(g.code, 2) for g in ctx.children(child.code)]
        except Exception:
            log.warning("no orgs or months available", exc_info=True)
            self._set_status("dashboard.no_data_yet")
            return
        self.home_org = home_org.code
        self.org_names = {code: orgs[code].name for code, _ in order}
        self._org_order = order
        self._building = True
        try:
            self.as_of.options = [(d.isoformat()[:7], d.isoformat()) for d in sorted(dates, reverse=True)]
            self.as_of.value = max(dates).isoformat() if dates else None
            self._fill_orgs()
            self.org.value = home_org.code
        finally:
            self._building = False
        self.org.disabled = len(order) <= 1

    def _fill_orgs(self) -> None:
        order = getattr(self, "_org_order", [])
        keep = self.org.value
        self.org.options = [
            (("\u3000" * depth) + f"{self.org_names[code]} ({code})", code) for code, depth in order
        ]
        if keep in self.org_names:
            self.org.value = keep

    def select(self, *, org: str | None = None, as_of: str | None = None) -> None:
        """Choose the org and/or the month (as a user would), then show them.

        Parameters
        ----------
        org : str, optional
            An org code of the selector (the user's org or one under it); others are ignored.
        as_of : str, optional
            ``YYYY-MM`` or an ISO date of the selector; others are ignored.
        """
        self._building = True
        try:
            if org and org in self.org_names:
                self.org.value = org
            if as_of:
                for _, value in self.as_of.options:
                    if value.startswith(str(as_of)[:7]):
                        self.as_of.value = value
        finally:
            self._building = False
        self.refresh()

    # -- actions -----------------------------------------------------------------------------------------
    def _key(self, *parts: Any) -> tuple[Any, ...]:
        return (*parts, self.org_code or self.home_org, self.month, self.lang)

    def _run(self, fn: Callable[..., Any], options: Mapping[str, Any] | None = None) -> Any:
        return _call(fn, self.principal, self.month, self.org_code, self.home, self.lang, options or {})

    def refresh(self) -> None:
        """Show the key figures, the key focus list and the active tab for the chosen org and month."""
        if not self.has_scope:
            return
        self._set_status(None)
        self._hide_drill()
        self._update_segment_link()
        self.show_overview()
        self._forget_tabs()
        self.render_active_tab()

    def show_overview(self) -> None:
        """The key-figure cards and the key focus list (cached per org, month and language)."""
        from cimlib.access import AccessError
        from cimlib.customer import AsOfError

        key = self._key("overview")
        if key not in self._cache:
            t0 = time.perf_counter()
            kpis = focus = None
            kpi_note = focus_note = None
            fn = analysis_function(*KPI_SOURCE)
            if fn is None:
                kpi_note = "dashboard.not_available"
            else:
                try:
                    kpis = self._run(fn)
                except AsOfError:
                    kpi_note = "dashboard.bad_month"
                except AccessError:
                    kpi_note = "dashboard.not_for_role"
            fn = analysis_function(*FOCUS_SOURCE)
            if fn is None:
                focus_note = "dashboard.not_available"
            else:
                try:
                    focus = self._run(fn)
                except AsOfError:
                    focus_note = "dashboard.bad_month"
                except AccessError:
                    focus_note = "dashboard.not_for_role"
            self._cache[key] = (kpis, focus, kpi_note, focus_note)
            self.timings["overview"] = time.perf_counter() - t0
        kpis, focus, kpi_note, focus_note = self._cache[key]
        self.kpi_frame, self.focus_frame = kpis, focus
        lang = self.lang
        cards = []
        self.kpi_buttons = {}
        drill = analysis_function(*KPI_DRILL)
        for rec, card in zip(
            kpis.to_dict("records") if kpis is not None else [], kpi_cards_html(kpis, lang), strict=True
        ):
            measure = str(rec["measure"])
            children: list[w.Widget] = [w.HTML(card)]
            if drill is not None and kpi_drill_measure(measure) is not None:
                button = w.Button(description=tr("customers_button", lang), icon="users",
                                  layout=w.Layout(width="auto"), tooltip=tr("drill_tip", lang))  # fmt: skip
                button.add_class("cim-kpi-drill")
                button.on_click(lambda _b, m=measure: self._guard(lambda: self.drill_kpi(m)))
                self.kpi_buttons[measure] = button
                children.append(button)
            else:  # no customer list behind this figure: its segments instead
                href = html.escape(segment_href(self.base_url, self.org_code, self.month), quote=True)
                children.append(w.HTML(
                    f'<a class="cim-kpi-segment" href="{href}" target="_blank" rel="noopener">'
                    f"{html.escape(tr('segments_link', lang))} ↗</a>"
                ))  # fmt: skip
            box = w.VBox(children)
            box.add_class("cim-kpi-card")
            cards.append(box)
        self.kpi_box.children = tuple(cards)
        month = _month(kpis.attrs.get("as_of") if kpis is not None else self.month)
        org = self.org_names.get(self.org_code or self.home_org or "", "")
        self.kpi_title.value = f"<h4>{html.escape(tr('kpi_title', lang, org=org, month=month))}</h4>" + (
            self._unavailable(kpi_note) if kpi_note else ""
        )
        self.focus_title.value = f"<h4>{html.escape(tr('focus_title', lang))}</h4>"
        if focus_note:
            self.focus.value = self._unavailable(focus_note)
        elif focus is not None and not len(focus):
            self.focus.value = f'<p class="cim-empty">{html.escape(tr("focus_empty", lang))}</p>'
        else:
            table = section_table(FOCUS_TABLE, focus, lang, base_url=self.base_url)
            self.focus.value = f'<div class="cim-focus-wrap">{table}</div>'

    def _forget_tabs(self) -> None:
        """Empty every tab (another org, month or language): a hidden tab never keeps stale figures."""
        self._rendered.clear()
        self.frames = {}
        for content in self.tab_content.values():
            content.value = ""
        loading = html.escape(tr("loading", self.lang))
        self.tab_content[self.active_tab].value = f'<p class="cim-loading">{loading}</p>'

    def _unavailable(self, key: str) -> str:
        return f'<p class="cim-unavailable">{html.escape(t(key, self.lang))}</p>'

    def render_active_tab(self) -> str:
        """Render the tab on show (only it: the others wait until chosen); returns its HTML."""
        if not self.has_scope:
            return ""
        idx = self.tabs.selected_index or 0
        tab = TABS[idx]
        key = self._key("tab", tab)
        if self._rendered.get(idx) == key:
            return self.tab_content[tab].value
        if key not in self._cache:
            t0 = time.perf_counter()
            self._cache[key] = self._tab_html(tab)
            self.timings[tab] = time.perf_counter() - t0
        text, frames = self._cache[key]
        self.frames[tab] = frames
        self.tab_content[tab].value = text
        self._fill_drills(tab)
        self._rendered[idx] = key
        return text

    def _tab_html(self, tab: str) -> tuple[str, dict[str, pd.DataFrame]]:
        """Each analysis of a tab as a heading, an SVG chart and a table.

        The frames are read one after the other (one snapshot connection); the charts, which cost most of
        the time (vl-convert), are rendered on two threads.
        """
        from concurrent.futures import ThreadPoolExecutor

        from cimlib.access import AccessError
        from cimlib.customer import AsOfError

        lang = self.lang
        frames: dict[str, pd.DataFrame] = {}
        pending: list[tuple[Section, str, str, Any]] = []  # section, title, body or note, chart object
        for sec in SECTIONS.get(tab, ()):
            fn = analysis_function(sec.module, sec.func)
            if fn is None:
                continue
            try:
                frame = self._run(fn, sec.options)
            except AsOfError:
                pending.append((sec, self._title(sec, None), self._unavailable("dashboard.bad_month"), None))
                continue
            except AccessError:
                pending.append(
                    (sec, self._title(sec, None), self._unavailable("dashboard.not_for_role"), None)
                )
                continue
            except Exception:  # one analysis failing must not take the tab down
                log.exception("analysis %s.%s failed", sec.module, sec.func)
                failed = self._unavailable("dashboard.section_failed")
                pending.append((sec, self._title(sec, None), failed, None))
                continue
            frames[sec.key] = frame
            chart = None
            chart_fn = chart_function(sec)
            if chart_fn is not None and frame is not None and len(frame):
                try:
                    data = frame
                    source = analysis_function(sec.module, sec.chart_from) if sec.chart_from else None
                    if source is not None:
                        data = self._run(source, {**sec.options, **sec.chart_options})
                    frames[f"{sec.key}_chart"] = data
                    chart = chart_fn(data, lang=lang, **sec.chart_kwargs)
                    chart.title = alt.Undefined  # the section's heading names it
                except Exception:
                    log.exception("chart of %s failed", sec.key)
            note = ""
            if frame is not None and "suppressed" in frame and bool(frame["suppressed"].fillna(False).any()):
                k = getattr(self.principal, "min_cell", 5)
                note = f'<p class="cim-note">{html.escape(tr("suppressed_note", lang, k=k))}</p>'
            table = section_table(sec, frame, lang, base_url=self.base_url)
            if table and sec.columns != () and _has_money(sec, frame):
                note += (
                    f'<p class="cim-note">{html.escape(tr("money_note", lang, unit=money_unit(lang)))}</p>'
                )
            pending.append((sec, self._title(sec, frame), f"<div>{table}{note}</div>", chart))
        if not pending:
            return self._unavailable("dashboard.not_available"), frames
        charts = [(c, f"cim-dash-chart cim-chart-{sec.key}") for sec, _, _, c in pending if c is not None]
        with ThreadPoolExecutor(max_workers=2) as pool:
            svgs = iter(list(pool.map(lambda job: chart_html(*job), charts)))
        parts = []
        for sec, title, body, chart in pending:
            svg = next(svgs) if chart is not None else ""
            parts.append(self._section(title, f'<div class="cim-section-body">{svg}{body}</div>', sec.key))
        return "".join(parts), frames

    def _title(self, sec: Section, frame: pd.DataFrame | None) -> str:
        key = f"dashboard.sec_{sec.key}"
        if _has(key, self.lang):
            return t(key, self.lang)
        title = frame.attrs.get("title") if frame is not None else None
        return str(title) if title else sec.key

    @staticmethod
    def _section(title: str, body: str, key: str) -> str:
        head = f"<h4>{html.escape(title)}</h4>"
        return f'<div class="cim-section cim-section-{html.escape(key)}">{head}{body}</div>'

    def drill_targets(self, tab: str) -> list[tuple[str, str]]:
        """The figures of a tab one may drill into: ``(label, "<drill key>|<target>")``, in order."""
        lang = self.lang
        out: list[tuple[str, str]] = []
        for d in DRILLS.get(tab, ()):
            if analysis_function(d.module, d.func) is None:
                continue
            name = tr(f"drill_{d.key}", lang) if _has(f"dashboard.drill_{d.key}", lang) else d.key
            if not d.target_param:
                out.append((name, f"{d.key}|"))
                continue
            frame = self.frames.get(tab, {}).get(d.target_section or "")
            if frame is None or not len(frame) or d.target_col not in frame:
                continue
            labels = frame["label"] if "label" in frame else frame[d.target_col]
            seen: set[str] = set()
            for code, label in zip(frame[d.target_col], labels, strict=True):
                if is_missing(code) or str(code) in seen:
                    continue
                seen.add(str(code))
                out.append((f"{name}: {label}", f"{d.key}|{code}"))
        return out

    def _fill_drills(self, tab: str) -> None:
        choice, button = self.drill_choice[tab], self.drill_button[tab]
        options = self.drill_targets(tab)
        keep = choice.value
        self._building = True
        try:
            choice.options = options or [("", "")]
            choice.value = keep if keep in [v for _, v in options] else (options[0][1] if options else "")
        finally:
            self._building = False
        visible = bool(options)
        choice.layout.display = None if visible else "none"
        button.layout.display = None if visible else "none"

    # -- drills ------------------------------------------------------------------------------------------
    def drill(self, tab: str | None = None, target: str | None = None) -> pd.DataFrame | None:
        """List the customers behind a figure of a tab (the one chosen in its drill selector by default).

        Parameters
        ----------
        tab : str, optional
            The tab (default: the one on show).
        target : str, optional
            ``"<drill key>|<target>"`` as in :meth:`drill_targets` (default: the selector's value).

        Returns
        -------
        DataFrame or None
            The customers (scoped, masked, audit-logged); ``None`` when the role may not list customers
            (the service refused and audited it) or the drill is unknown.
        """
        tab = tab or self.active_tab
        value = target or self.drill_choice[tab].value or ""
        key, _, code = value.partition("|")
        spec = next((d for d in DRILLS.get(tab, ()) if d.key == key), None)
        fn = analysis_function(spec.module, spec.func) if spec else None
        if spec is None or fn is None:
            return None
        label = dict((v, lab) for lab, v in self.drill_choice[tab].options).get(value)
        if label is None:
            label = dict((v, lab) for lab, v in self.drill_targets(tab)).get(value, value)
        options = dict(spec.options)
        if spec.target_param:
            options[spec.target_param] = code
        return self._drill(fn, options, label)

    def drill_kpi(self, measure: str) -> pd.DataFrame | None:
        """List the customers behind a key figure (e.g. ``deposit_balance``)."""
        fn = analysis_function(*KPI_DRILL)
        target = kpi_drill_measure(measure)
        if fn is None or target is None:
            return None
        label = None
        if self.kpi_frame is not None and "label" in self.kpi_frame:
            hit = self.kpi_frame.loc[self.kpi_frame["measure"] == measure, "label"]
            label = str(hit.iloc[0]) if len(hit) else None
        return self._drill(fn, {"measure": target}, measure_name(measure, self.lang, label))

    def _drill(self, fn: Callable[..., Any], options: dict[str, Any], name: str) -> pd.DataFrame | None:
        from cimlib.access import AccessError, NotPermitted
        from cimlib.customer import AsOfError

        lang = self.lang
        self.drill_panel.layout.display = "flex"
        org = self.org_names.get(self.org_code or self.home_org or "", "")
        self.drill_title.value = (
            f"<h4>{html.escape(tr('drill_title', lang, figure=name, org=org, month=_month(self.month)))}</h4>"
        )
        opts = {"limit": DRILL_LIMIT, **options}
        try:
            frame = self._run(fn, opts)
        except NotPermitted:
            self.drill_frame = None
            self._drill_note = ("aggregates_only_drill", {})
            refused = html.escape(tr("aggregates_only_drill", lang))
            self.drill_list.value = f'<p class="cim-unavailable cim-drill-refused">{refused}</p>'
            return None
        except (AsOfError, AccessError, ValueError) as exc:
            log.warning("drill refused: %s", exc)
            self.drill_frame = None
            self.drill_list.value = self._unavailable("dashboard.section_failed")
            return None
        self.drill_frame = frame
        total = int(frame.attrs.get("total", len(frame))) if frame is not None else 0
        summary = tr("drill_summary", lang, n=format_count(total))
        seg = segment_href(self.base_url, self.org_code, self.month)
        link = (f'<a class="cim-open-segment" href="{html.escape(seg, quote=True)}" target="_blank" '
                f'rel="noopener">{html.escape(tr("open_segment", lang))}</a>')  # fmt: skip
        self.drill_list.value = (
            f'<p class="cim-drill-summary">{html.escape(summary)} · {link}</p>'
            + list_html(frame, lang, base_url=self.base_url, max_rows=DRILL_LIMIT)
        )
        return frame

    def _hide_drill(self) -> None:
        self.drill_frame = None
        self.drill_panel.layout.display = "none"
        self.drill_title.value = self.drill_list.value = ""

    # -- language ----------------------------------------------------------------------------------------
    def set_language(self, lang: str) -> None:
        """Switch every label, figure and chart to ``lang`` (frames are labelled per language)."""
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        if self.lang_toggle.value != lang:
            self.lang_toggle.value = lang  # its observer switches
            return
        self.lang = lang
        self._relabel()
        if self._status:
            key, fmt = self._status
            self._set_status(key, **fmt)
        if self.has_scope and self.home_org:
            self._hide_drill()
            self.show_overview()
            self._forget_tabs()
            self.render_active_tab()

    def principal_text(self) -> str:
        """The signed-in user's name, role and scope, as shown in the header."""
        return principal_text(self.principal, self.lang)

    def _update_segment_link(self) -> None:
        if not self.has_scope:
            self.segment_link.value = ""
            return
        href = segment_href(self.base_url, self.org_code, self.month)
        self.segment_link.value = (
            f'<a class="cim-open-segment" href="{html.escape(href, quote=True)}" target="_blank" '
            'rel="noopener">'
            f"{html.escape(tr('open_segment', self.lang))} ↗</a>"
        )

    def _relabel(self) -> None:
        lang = self.lang
        self._building = True
        try:
            self.title.value = f'<div class="cim-title">{html.escape(tr("title", lang))}</div>'
            self.principal_label.value = f"<span>{html.escape(self.principal_text())}</span>"
            edition = tr("edition_provincial" if self.edition == "provincial" else "edition_county", lang)
            self.edition_label.value = f"<span>{html.escape(edition)}</span>" if self.has_scope else ""
            if not self.has_scope:
                notice = tr("no_access", lang)
            elif not self.can_view_detail:
                notice = tr("aggregates_only", lang, k=getattr(self.principal, "min_cell", 5))
            else:
                notice = ""
            self.notice.value = f"<p>{html.escape(notice)}</p>" if notice else ""
            self.org.description = tr("org", lang)
            self.as_of.description = tr("month", lang)
            for i, tab in enumerate(TABS):
                self.tabs.set_title(i, tr(f"tab_{tab}", lang))
                self.drill_choice[tab].description = tr("drill_label", lang)
                self.drill_button[tab].description = tr("drill_button", lang)
            self._update_segment_link()
        finally:
            self._building = False


# ---- entry points -----------------------------------------------------------------------------------------


def management_dashboard_app(
    *, lang: str = DEFAULT_LANG, home: Any = None, environ: Mapping[str, str] | None = None
) -> w.VBox:
    """Build the managers' dashboard for the user of this Voila kernel (the notebook's only call).

    Establishes the principal from the server-signed identity token first, as the other apps do; without
    a valid one the user sees a message and no data is read.

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
        lambda principal, base_url: DashboardApp(principal, home=home, lang=lang, base_url=base_url).widget,
        "dashboard.title", lang=lang, home=home, environ=environ,
    )  # fmt: skip


def warm_up(home: Any = None) -> None:
    """The slow once-a-process work of a preheating kernel: the 360 app's, plus the analysis modules.

    Nothing here depends on who will sign in, and no customer data is read.
    """
    from cimlib.apps.customer_360 import warm_up as warm_up_360

    warm_up_360(home)
    for tab in TABS:
        for sec in SECTIONS[tab]:
            analysis_function(sec.module, sec.func)
            chart_function(sec)
    analysis_function(*KPI_SOURCE)
    try:
        from cimlib.analysis import load_provincial_params

        load_provincial_params(home)
    except Exception:
        log.warning("warm-up could not load the provincial parameters", exc_info=True)
    warm = [w.Tab(), w.Box(), w.Dropdown(), w.Button()]
    for widget in warm:
        widget.close()
