"""The segment explorer app: a heat-map pivot of the segmentation cube, drill-through, and the analyses.

All logic is here, so it is unit-tested without a browser; ``notebooks/apps/segment_explorer.ipynb`` only
calls :func:`segment_explorer_app`. Numbers come only from :mod:`cimlib.segmentation` (scoped for the
signed-in principal, small cells suppressed for roles without detail); the customer list of a cell comes
from :func:`cimlib.segmentation.drill` (scoped, masked and audit-logged), which roles without
single-customer detail (the provincial analyst) never reach.
"""

from __future__ import annotations

import html
import itertools
import logging
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import altair as alt
import ipywidgets as w
import pandas as pd

from cimlib.apps.customer_360 import _CSS, chart_html, principal_text
from cimlib.apps.target_search import _style, list_html, signed_in_app
from cimlib.i18n import DEFAULT_LANG, LANGS, format_count, format_money, money_unit, t

log = logging.getLogger(__name__)

TOTAL = "_total"
#: The measures offered, in the order shown (ids of :data:`cimlib.segmentation.MEASURES`).
APP_MEASURES: tuple[str, ...] = (
    "customers", "deposit_adb", "deposit_balance", "aum", "loan_balance", "npl_balance",
    "credit_line_amount", "txn_count", "txn_amount", "contribution", "npl_ratio", "utilisation",
    "avg_deposit_adb", "avg_aum", "avg_loan_balance", "avg_txn_count", "avg_txn_amount", "avg_contribution",
)  # fmt: skip
_COUNTS = {"customers", "txn_count"}
_PERCENT = {"npl_ratio", "utilisation"}
_PLAIN = {"avg_txn_count"}
#: Filter rows at most.
MAX_FILTERS = 3
#: Customers of a cell listed at most.
DRILL_LIMIT = 500
#: Filter combinations one drill-through may expand to (one drill call each).
MAX_DRILL_COMBOS = 60
#: Pivots up to this many cells (totals included) are drawn as a grid of buttons: a click on a cell
#: lists its customers. Larger ones (and roles without detail) get the HTML heat map and the chooser.
MAX_CLICK_CELLS = 400
_DRILL_HIDDEN = ["county_code"]

_SEGMENT_CSS = """<style>
.cim-app.cim-segment { max-width: 1400px; }
.cim-segment .cim-panel { border: 1px solid #e0e0e0; border-radius: 4px; padding: 8px 10px; margin: 4px 0; }
.cim-segment table.cim-pivot td, .cim-segment table.cim-pivot th { text-align: right; padding: 4px 10px;
  border: 1px solid #eceff1; }
.cim-segment table.cim-pivot th.cim-row-head { text-align: left; }
.cim-segment table.cim-pivot .cim-subtotal { font-weight: 600; background: #f5f5f5; }
.cim-segment table.cim-pivot td.cim-suppressed { color: #90a4ae; text-align: center; }
.cim-segment .cim-note { color: #607d8b; font-size: 12px; }
.cim-segment .cim-charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.cim-segment .cim-analysis { margin: 6px 0 14px; }
.cim-segment .cim-summary { font-size: 15px; font-weight: 600; margin: 6px 0 2px; }
.cim-segment table.cim-list td a { color: #1565c0; text-decoration: none; }
.cim-segment .cim-list-wrap { max-height: 640px; overflow: auto; }
</style>"""


def _zh(lang: str) -> bool:
    return lang.startswith("zh")


# ---- formatting ------------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """``None`` or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_measure(measure: str, value: Any, lang: str) -> str:
    """A pivot value as display text: counts, money in the locale's unit, or a percentage."""
    if is_missing(value):
        return ""
    v = float(value)
    if measure in _COUNTS:
        return format_count(round(v), lang)
    if measure in _PERCENT:
        return f"{v:.2%}"
    if measure in _PLAIN:
        return f"{v:,.1f}"
    return format_money(v, lang)


def measure_label(measure: str, lang: str) -> str:
    """The measure's name (with the money unit for amounts)."""
    name = t(f"segment.measure_{measure}", lang)
    return name if measure in _COUNTS | _PERCENT | _PLAIN else f"{name} ({money_unit(lang)})"


def dimension_label(dim: Any, lang: str) -> str:
    """A dimension's label in ``lang``."""
    return dim.label["zh" if _zh(lang) else "en"]


def _shade(value: float, top: float) -> str:
    """A blue background from white (0) to deep (the largest inner cell)."""
    if top <= 0 or is_missing(value) or value <= 0:
        return "#ffffff"
    x = max(0.0, min(1.0, value / top))
    r, g, b = (int(255 + (c - 255) * x) for c in (30, 136, 229))
    return f"#{r:02x}{g:02x}{b:02x}"


def _text_color(value: float, top: float) -> str:
    return "#ffffff" if top > 0 and not is_missing(value) and value / top > 0.6 else "#263238"


def pivot_html(frame: pd.DataFrame, lang: str) -> str:
    """The pivot as a heat-map HTML table: inner cells shaded by value, subtotals and the grand total.

    Parameters
    ----------
    frame : DataFrame
        From :func:`cimlib.segmentation.pivot` (rows and columns end with ``"_total"``).
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    str
        Escaped HTML; a suppressed cell shows ``—`` and a note says why.
    """
    measure = str(frame.attrs.get("measure", "customers"))
    sup = frame.attrs.get("suppressed") or {}
    row_labels = frame.attrs.get("row_labels") or {}
    col_labels = frame.attrs.get("col_labels") or {}
    inner = frame.drop(index=TOTAL, errors="ignore").drop(columns=TOTAL, errors="ignore")
    vals = pd.to_numeric(inner.stack(), errors="coerce") if inner.size else pd.Series(dtype=float)
    top = float(vals.max()) if len(vals.dropna()) else 0.0
    rows_dim = frame.attrs.get("rows")
    corner = html.escape(str(frame.attrs.get("row_title") or rows_dim or ""))
    head = f'<th class="cim-row-head">{corner}</th>' + "".join(
        f'<th class="{"cim-subtotal" if c == TOTAL else ""}" data-member="{html.escape(str(c), quote=True)}">'
        f"{html.escape(str(col_labels.get(c, c)))}</th>"
        for c in frame.columns
    )
    body = []
    n_sup = 0
    for r in frame.index:
        total_row = r == TOTAL
        cells = [
            f'<th class="cim-row-head{" cim-subtotal" if total_row else ""}" '
            f'data-member="{html.escape(str(r), quote=True)}">{html.escape(str(row_labels.get(r, r)))}</th>'
        ]
        for c in frame.columns:
            v = frame.loc[r, c]
            if (sup.get(str(r)) or {}).get(str(c)):
                n_sup += 1
                cells.append('<td class="cim-suppressed" title="suppressed">—</td>')
                continue
            text = html.escape(format_measure(measure, v, lang))
            if total_row or c == TOTAL:
                cells.append(f'<td class="num cim-subtotal">{text}</td>')
            else:
                bg, fg = _shade(v, top), _text_color(v, top)
                cells.append(f'<td class="num cim-cell" style="background:{bg};color:{fg}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        f'<table class="cim-table cim-pivot"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    note = ""
    if n_sup:
        k = frame.attrs.get("min_cell", 5)
        text = html.escape(t("segment.suppressed_note", lang, k=k))
        note = f'<p class="cim-note cim-suppressed-note">{text}</p>'
    return f'<div class="cim-scroll">{table}</div>{note}'


def pivot_chart(frame: pd.DataFrame, lang: str, title: str = "") -> alt.Chart:
    """An Altair heat map of the pivot's inner cells (suppressed and empty cells left out).

    Returns
    -------
    altair.Chart
        Data ``row, col, value, text``; x = column member, y = row member, colour = value.
    """
    measure = str(frame.attrs.get("measure", "customers"))
    row_labels = frame.attrs.get("row_labels") or {}
    col_labels = frame.attrs.get("col_labels") or {}
    rows = [r for r in frame.index if r != TOTAL]
    cols = [c for c in frame.columns if c != TOTAL] or [TOTAL]
    recs = []
    for r in rows:
        for c in cols:
            v = frame.loc[r, c]
            if is_missing(v):
                continue
            rl, cl = str(row_labels.get(r, r)), str(col_labels.get(c, c))
            recs.append({"row": rl, "col": cl, "value": float(v), "text": format_measure(measure, v, lang)})
    data = pd.DataFrame(recs, columns=["row", "col", "value", "text"])
    row_order = [str(row_labels.get(r, r)) for r in rows]
    col_order = [str(col_labels.get(c, c)) for c in cols]
    base = alt.Chart(data).encode(
        x=alt.X("col:N", title=None, sort=col_order, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("row:N", title=None, sort=row_order),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("value:Q", title=measure_label(measure, lang), scale=alt.Scale(scheme="blues")),
        tooltip=[
            alt.Tooltip("row:N"),
            alt.Tooltip("col:N"),
            alt.Tooltip("text:N", title=measure_label(measure, lang)),
        ],
    )
    text = base.mark_text(fontSize=11).encode(text="text:N")
    chart = (heat + text).properties(height=alt.Step(26))
    return _style(chart, title or measure_label(measure, lang), width=max(240, 64 * len(col_order)))


# ---- drill-through ---------------------------------------------------------------------------------------


def drill_cells(
    rows: str, cols: str | None, row_member: str, col_member: str, filters: Mapping[str, Sequence[str]]
) -> list[dict[str, str]]:
    """The cube cells (``{dim: member}``) whose customers make up a pivot cell under ``filters``.

    A filter of several members expands to one cell per member (``drill`` fixes one member per
    dimension); a dimension fixed by the clicked cell is not expanded.
    """
    fixed: dict[str, str] = {}
    if row_member != TOTAL:
        fixed[rows] = row_member
    if cols and col_member != TOTAL:
        fixed[cols] = col_member
    free = {d: list(m) for d, m in filters.items() if d not in fixed and m}
    for d, members in filters.items():
        if d in fixed and members and fixed[d] not in members:
            return []  # the cell lies outside the filter
    keys = list(free)
    out = []
    for combo in itertools.product(*(free[k] for k in keys)):
        out.append({**fixed, **dict(zip(keys, combo, strict=True))})
    return out


# ---- analyses --------------------------------------------------------------------------------------------


def _share(v: Any) -> str:
    return "" if is_missing(v) else f"{float(v):.1%}"


def analysis_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str]], lang: str) -> str:
    """An analysis' groups as an HTML table; ``columns`` are ``(column, kind)`` with kind count, money,
    share or rate; suppressed groups show ``—``."""
    if frame is None or not len(frame):
        return f'<p class="cim-empty">{html.escape(t("segment.no_data", lang))}</p>'
    head = f"<th>{html.escape(t('segment.group', lang))}</th>" + "".join(
        f"<th>{html.escape(t(f'segment.col_{c}', lang))}</th>" for c, _ in columns
    )
    body = []
    for rec in frame.to_dict("records"):
        cells = [f"<td>{html.escape(str(rec.get('label', '')))}</td>"]
        for c, kind in columns:
            v = rec.get(c)
            if rec.get("suppressed") and kind != "rate":
                cells.append('<td class="cim-suppressed">—</td>')
            elif kind == "count":
                cells.append(f'<td class="num">{"" if is_missing(v) else format_count(int(v), lang)}</td>')
            elif kind == "money":
                cells.append(f'<td class="num">{"" if is_missing(v) else format_money(v, lang)}</td>')
            else:
                cells.append(f'<td class="num">{_share(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="cim-table cim-analysis-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def analyses_html(principal: Any, as_of: str | None, lang: str, home: Any = None) -> str:
    """The Analyses tab: individual customers by age, corporate by economic nature, loan quality with the
    NPL ratio and provision coverage, and the channel mix; each a chart with its table."""
    from cimlib import segmentation as S

    parts = []
    money = [("customers", "count"), ("customer_share", "share"), ("deposit_adb", "money"), ("aum", "money"),
             ("loan_balance", "money")]  # fmt: skip
    for key, frame in (
        ("age", S.individual_customers(principal, as_of, by="age", home=home, lang=lang)),
        (
            "economic_nature",
            S.corporate_customers(principal, as_of, by="economic_nature", home=home, lang=lang),
        ),
    ):
        title = t(f"segment.analysis_{key}", lang)
        css = key.replace("_", "-")
        dist = S.distribution_chart(frame, lang, share_col="customer_share", title=title)
        chart = chart_html(dist, f"cim-chart-{css}")
        table = analysis_table(frame, money, lang)
        parts.append(
            f'<div class="cim-analysis cim-analysis-{css}"><h4>{html.escape(title)}</h4>{chart}{table}</div>'
        )
    lq = S.loan_quality(principal, as_of, home=home, lang=lang)
    title = t("segment.analysis_loan_quality", lang)
    s = lq.attrs.get("summary") or {}
    bal = s.get("loan_balance")
    summary = t(
        "segment.loan_summary",
        lang,
        balance="—" if is_missing(bal) else format_money(bal, lang, unit=True),
        npl_ratio=_share(s.get("npl_ratio")) or "—",
        coverage=_share(s.get("provision_coverage")) or "—",
    )
    lq_chart = S.distribution_chart(lq, lang, value="balance", share_col="balance_share", title=title)
    chart = chart_html(lq_chart, "cim-chart-loan-quality")
    cols = [
        ("customers", "count"),
        ("balance", "money"),
        ("balance_share", "share"),
        ("provision_rate", "rate"),
        ("provision", "money"),
    ]
    parts.append(f'<div class="cim-analysis cim-analysis-loan-quality"><h4>{html.escape(title)}</h4>'
                 f'<p class="cim-loan-summary">{html.escape(summary)}</p>{chart}'
                 f"{analysis_table(lq, cols, lang)}</div>")  # fmt: skip
    ch = S.channel_preference(principal, as_of, by="customer_type", home=home, lang=lang)
    title = t("segment.analysis_channels", lang)
    chart = chart_html(S.channel_mix_chart(ch, lang, title=title), "cim-chart-channels")
    table = ch.assign(label=ch["label"].astype(str) + " · " + ch["channel_label"].astype(str))
    ch_table = analysis_table(table, [("txn_count", "count"), ("share", "share")], lang)
    parts.append(
        f'<div class="cim-analysis cim-analysis-channels"><h4>{html.escape(title)}</h4>'
        f"{chart}{ch_table}</div>"
    )
    return "".join(parts)


# ---- the app ---------------------------------------------------------------------------------------------


class FilterRow:
    """One filter: a dimension and a multi-select of its members (no dimension: no filter)."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.dim = w.Dropdown(layout=w.Layout(width="260px"))
        self.dim.add_class("cim-filter-dim")
        self.members = w.SelectMultiple(layout=w.Layout(width="280px", height="96px"))
        self.members.add_class("cim-filter-members")
        self.remove = w.Button(icon="times", layout=w.Layout(width="36px"))
        self.remove.add_class("cim-filter-remove")
        self.box = w.HBox([self.dim, self.members, self.remove])
        self.box.add_class("cim-filter-row")

    def value(self) -> tuple[str, list[str]] | None:
        """``(dimension, members)``, or ``None`` when no dimension or member is chosen."""
        if not self.dim.value or not self.members.value:
            return None
        return str(self.dim.value), [str(m) for m in self.members.value]


class SegmentApp:
    """The segment explorer for one principal.

    Parameters
    ----------
    principal : Principal
        The signed-in user (from :func:`cimlib.apps.principal_from_request`).
    home : str, optional
        The CIM home.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    base_url : str
        The server's base path; the drill-through list's links to the 360 view are under it.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app's root widget.
    frame : DataFrame or None
        The last pivot.
    drill_frame : DataFrame or None
        The last drill-through list.
    org_filter : tuple or None
        ``(dimension, org code)`` pre-selected by a deep link (``org=<code>``), within the user's scope.

    Notes
    -----
    ``org`` and ``as_of`` (``YYYY-MM``) pre-select an org and a month, as a link from the managers'
    dashboard does (``?org=<code>&as_of=YYYY-MM``); the pivot is then shown at once. An org outside the
    user's scope, or a month the warehouse lacks, is ignored (and never shown).
    """

    def __init__(
        self, principal: Any, *, home: Any = None, lang: str = DEFAULT_LANG, base_url: str = "/",
        org: str | None = None, as_of: str | None = None,
    ) -> None:  # fmt: skip
        from cimlib.segmentation import load_dimensions

        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.principal = principal
        self.home = home
        self.lang = lang
        self.base_url = base_url or "/"
        self.frame: pd.DataFrame | None = None
        self.drill_frame: pd.DataFrame | None = None
        self._analyses_for: tuple[str, str] | None = None
        self._status: str | None = None
        self._building = False
        self.dims = load_dimensions(home)
        self.dim_ids = [d.id for d in self.dims if d.kind != "period"]

        self.css = w.HTML(_CSS + _SEGMENT_CSS)
        self.title = w.HTML()
        self.principal_label = w.HTML()
        self.principal_label.add_class("cim-principal")
        self.lang_toggle = w.ToggleButtons(
            options=[("中文", "zh_CN"), ("English", "en")], value=lang, style={"button_width": "80px"}
        )
        self.lang_toggle.add_class("cim-lang")
        self.notice = w.HTML()
        self.notice.add_class("cim-notice")

        st = {"description_width": "initial"}
        self.as_of = w.Dropdown(layout=w.Layout(width="180px"), style=st)
        self.as_of.add_class("cim-as-of")
        self.rows = w.Dropdown(layout=w.Layout(width="300px"), style=st)
        self.rows.add_class("cim-rows")
        self.cols = w.Dropdown(layout=w.Layout(width="300px"), style=st)
        self.cols.add_class("cim-cols")
        self.measure = w.Dropdown(layout=w.Layout(width="320px"), style=st)
        self.measure.add_class("cim-measure")
        self.filters: list[FilterRow] = []
        self.filters_label = w.HTML()
        self.filters_box = w.VBox()
        self.filters_box.add_class("cim-filters")
        self.add_filter_button = w.Button(icon="plus", layout=w.Layout(width="auto"))
        self.add_filter_button.add_class("cim-add-filter")
        self.run_button = w.Button(icon="table", button_style="primary", layout=w.Layout(width="auto"))
        self.run_button.add_class("cim-run")
        self.org_filter: tuple[str, str] | None = None
        self.org_label = w.HTML()
        self.org_clear = w.Button(icon="times", layout=w.Layout(width="auto"))
        self.org_clear.add_class("cim-org-clear")
        self.org_box = w.HBox([self.org_label, self.org_clear], layout=w.Layout(display="none"))
        self.org_box.add_class("cim-org-filter")
        controls = w.VBox(
            [w.HBox([self.as_of, self.measure]), self.org_box, w.HBox([self.rows, self.cols]),
             self.filters_label, self.filters_box, w.HBox([self.add_filter_button, self.run_button])]
        )  # fmt: skip
        controls.add_class("cim-panel")
        self.status = w.HTML()
        self.status.add_class("cim-status")

        self.summary = w.HTML()
        self.summary.add_class("cim-summary")
        self.pivot_table = w.HTML()
        self.pivot_table.add_class("cim-pivot-table")
        self.pivot_grid = w.GridBox(layout=w.Layout(display="none"))
        self.pivot_grid.add_class("cim-pivot-grid")
        self.cell_buttons: dict[tuple[str, str], w.Button] = {}
        self.chart = w.HTML()
        self.chart.add_class("cim-pivot-chart")
        self.row_member = w.Dropdown(layout=w.Layout(width="300px"), style=st)
        self.row_member.add_class("cim-row-member")
        self.col_member = w.Dropdown(layout=w.Layout(width="300px"), style=st)
        self.col_member.add_class("cim-col-member")
        self.drill_button = w.Button(icon="users", layout=w.Layout(width="auto"))
        self.drill_button.add_class("cim-drill")
        self.drill_box = w.HBox([self.row_member, self.col_member, self.drill_button])
        self.drill_box.add_class("cim-panel")
        self.drill_box.add_class("cim-drill-box")
        self.drill_summary = w.HTML()
        self.drill_summary.add_class("cim-drill-summary")
        self.drill_list = w.HTML()
        self.drill_list.add_class("cim-drill-list")
        self.results = w.VBox(
            [self.summary, self.pivot_table, self.pivot_grid, self.chart, self.drill_box, self.drill_summary,
             self.drill_list],
            layout=w.Layout(display="none"),
        )
        self.results.add_class("cim-segment-results")
        pivot_tab = w.VBox([controls, self.status, self.results])
        pivot_tab.add_class("cim-pivot-tab")

        self.analyses = w.HTML()
        self.analyses.add_class("cim-analyses")
        self.analyses_button = w.Button(icon="bar-chart", layout=w.Layout(width="auto"))
        self.analyses_button.add_class("cim-show-analyses")
        analyses_tab = w.VBox([self.analyses_button, self.analyses])
        analyses_tab.add_class("cim-analyses-tab")
        self.tabs = w.Tab(children=[pivot_tab, analyses_tab])
        self.tabs.add_class("cim-tabs")

        header = w.HBox(
            [w.VBox([self.title, self.principal_label]), self.lang_toggle],
            layout=w.Layout(justify_content="space-between", width="100%"),
        )
        self.widget = w.VBox([self.css, header, self.notice, self.tabs])
        self.widget.add_class("cim-app")
        self.widget.add_class("cim-segment")

        self._load_months()
        linked = self._apply_link(org, as_of)
        self.add_filter()
        self.rows.value, self.cols.value, self.measure.value = None, None, None
        self._relabel()
        self.rows.value = "customer_type" if "customer_type" in self.dim_ids else self.dim_ids[0]
        self.cols.value = "deposit_adb" if "deposit_adb" in self.dim_ids else ""
        self.measure.value = "customers"
        self.run_button.on_click(lambda _b: self._guard(self.run))
        self.drill_button.on_click(lambda _b: self._guard(self.drill))
        self.add_filter_button.on_click(lambda _b: self._guard(self.add_filter))
        self.analyses_button.on_click(lambda _b: self._guard(self.show_analyses))
        self.tabs.observe(lambda ch: self._unless_building(self._tab_changed), names="selected_index")
        self.lang_toggle.observe(lambda ch: self._guard(lambda: self.set_language(ch["new"])), names="value")
        if not self.has_scope:
            for widget in (self.run_button, self.add_filter_button, self.analyses_button):
                widget.disabled = True
        self.drill_box.layout.display = "flex" if self.can_view_detail else "none"
        self.org_clear.on_click(lambda _b: self._guard(self.clear_org))
        if linked and self.has_scope:
            self._guard(self.run)

    # -- deep link ---------------------------------------------------------------------------------------
    def _apply_link(self, org: str | None, as_of: str | None) -> bool:
        """Pre-select a deep link's month and org (each ignored when unknown or outside the scope)."""
        linked = False
        if as_of:
            month = str(as_of)[:7]
            hit = [m for m in self.as_of.options if str(m)[:7] == month]
            if hit:
                self.as_of.value = hit[-1]
                linked = True
        if org and self.has_scope:
            found = _org_in_scope(self.principal, str(org), self.home)
            if found is not None:
                self.org_filter = found
                linked = True
        return linked

    def clear_org(self) -> None:
        """Drop the org a deep link pre-selected (back to the whole scope)."""
        self.org_filter = None
        self.org_box.layout.display = "none"

    def _org_text(self) -> str:
        if self.org_filter is None:
            return ""
        from cimlib.access._warehouse import org_name_of
        from cimlib.customer import _data as D

        dim, code = self.org_filter
        try:
            name = org_name_of(D.resolve_home(self.home), code) or code
        except Exception:
            name = code
        label = dimension_label(self.dims[dim], self.lang)
        return f"<b>{html.escape(label)}:</b> {html.escape(name)} ({html.escape(code)})"

    # -- state -------------------------------------------------------------------------------------------
    @property
    def can_view_detail(self) -> bool:
        """Whether the principal may drill through to customers (provincial analysts may not)."""
        return bool(getattr(self.principal, "can_view_detail", False))

    @property
    def has_scope(self) -> bool:
        """Whether the principal may see any customer data (auditors may not)."""
        return getattr(self.principal, "scope", "none") != "none"

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a UI callback; an unexpected error shows a generic message, never a traceback."""
        try:
            action()
        except Exception:
            log.exception("segment app callback failed")
            self._set_status("app.error")

    def _unless_building(self, action: Callable[[], Any]) -> None:
        if not self._building:
            self._guard(action)

    def _set_status(self, key: str | None, detail: str = "") -> None:
        self._status = key
        if key is None:
            self.status.value = ""
            return
        text = html.escape(t(key, self.lang))
        if detail:
            text += f" <code>{html.escape(detail)}</code>"
        self.status.value = f"<span>{text}</span>"

    def _load_months(self) -> None:
        from cimlib.customer import available_months

        try:
            months = available_months(self.principal, self.home)
        except Exception:
            log.warning("no months available", exc_info=True)
            months = []
        self.as_of.options = months
        self.as_of.value = months[-1] if months else None

    # -- filters -----------------------------------------------------------------------------------------
    def add_filter(self) -> FilterRow | None:
        """Add a filter row (at most :data:`MAX_FILTERS`)."""
        if len(self.filters) >= MAX_FILTERS:
            return None
        row = FilterRow(lambda: None)
        row.dim.observe(
            lambda _ch, row=row: self._unless_building(lambda: self._fill_members(row)), names="value"
        )
        row.remove.on_click(lambda _b, row=row: self._guard(lambda: self.remove_filter(row)))
        self.filters.append(row)
        self._building = True
        try:
            self._label_filter(row)
        finally:
            self._building = False
        self._render_filters()
        return row

    def remove_filter(self, row: FilterRow) -> None:
        """Remove a filter row (the last one stays, emptied)."""
        if row not in self.filters:
            return
        if len(self.filters) <= 1:
            row.dim.value = ""
            return
        self.filters.remove(row)
        self._render_filters()

    def _render_filters(self) -> None:
        self.filters_box.children = tuple(r.box for r in self.filters)
        self.add_filter_button.disabled = len(self.filters) >= MAX_FILTERS or not self.has_scope

    def _label_filter(self, row: FilterRow) -> None:
        keep = row.dim.value
        options = [(t("segment.no_filter", self.lang), "")] + [
            (dimension_label(d, self.lang), d.id) for d in self.dims if d.members and d.kind != "period"
        ]
        row.dim.options = options
        row.dim.value = keep if keep in [v for _, v in options] else ""
        self._fill_members(row)

    def _fill_members(self, row: FilterRow) -> None:
        keep = set(row.members.value)
        d = self.dims.items.get(row.dim.value or "")
        options = [(lab["zh" if _zh(self.lang) else "en"], mid) for mid, lab in d.members] if d else []
        row.members.options = options
        row.members.value = tuple(v for _, v in options if v in keep)
        row.members.disabled = not options

    def current_filters(self) -> dict[str, list[str]]:
        """``{dimension: [members]}`` of the filter rows (rows on one dimension are merged)."""
        out: dict[str, list[str]] = {}
        if self.org_filter is not None:
            out[self.org_filter[0]] = [self.org_filter[1]]
        for r in self.filters:
            v = r.value()
            if v:
                out.setdefault(v[0], [])
                out[v[0]] += [m for m in v[1] if m not in out[v[0]]]
        return out

    # -- actions -----------------------------------------------------------------------------------------
    def run(self) -> pd.DataFrame | None:
        """Pivot the chosen measure by the chosen rows and columns, filtered; show the table and chart."""
        from cimlib.access import NotPermitted
        from cimlib.customer import AsOfError
        from cimlib.segmentation import CubeError, pivot

        if not self.has_scope:
            self._set_status("segment.no_access")
            return None
        try:
            frame = pivot(
                self.principal, str(self.rows.value), self.cols.value or None, str(self.measure.value),
                self.as_of.value or None, self.current_filters(), self.home, self.lang,
            )  # fmt: skip
        except CubeError as exc:
            self._set_status("segment.bad_request", str(exc))
            return None
        except AsOfError:
            self._set_status("segment.bad_month")
            return None
        except NotPermitted:
            self._set_status("segment.no_access")
            return None
        self._name_orgs(frame)
        self.frame = frame
        self.drill_frame = None
        self._set_status(None)
        self._fill_drill_members()
        self._render()
        return frame

    def _name_orgs(self, frame: pd.DataFrame) -> None:
        """Label org members (county banks, branches) by their names rather than their codes."""
        from cimlib.access._warehouse import org_name_of
        from cimlib.customer import _data as D

        for dim_key, labels_key in (("rows", "row_labels"), ("cols", "col_labels")):
            dim_id = frame.attrs.get(dim_key)
            if not dim_id or self.dims[dim_id].kind != "org":
                continue
            labels = dict(frame.attrs.get(labels_key) or {})
            try:
                home = D.resolve_home(self.home)
                for code in labels:
                    if code != TOTAL:
                        labels[code] = org_name_of(home, code) or labels[code]
            except Exception:  # the codes stay
                log.warning("org names unavailable", exc_info=True)
            frame.attrs[labels_key] = labels

    def _fill_drill_members(self) -> None:
        if self.frame is None:
            return
        rl, cl = self.frame.attrs.get("row_labels") or {}, self.frame.attrs.get("col_labels") or {}
        self.row_member.options = [(str(rl.get(r, r)), str(r)) for r in self.frame.index]
        cols = list(self.frame.columns) if self.frame.attrs.get("cols") else [TOTAL]
        self.col_member.options = [(str(cl.get(c, c)), str(c)) for c in cols]
        # Pre-select the largest inner cell.
        inner = self.frame.drop(index=TOTAL, errors="ignore").drop(columns=TOTAL, errors="ignore")
        stacked = (
            pd.to_numeric(inner.stack(), errors="coerce").dropna() if inner.size else pd.Series(dtype=float)
        )
        if len(stacked):
            r, c = stacked.idxmax()
            self.row_member.value, self.col_member.value = str(r), str(c)
        else:
            self.row_member.value = str(self.frame.index[0])
            self.col_member.value = cols[0]

    def select_cell(self, row_member: str, col_member: str = TOTAL) -> None:
        """Choose the pivot cell to drill into."""
        self.row_member.value, self.col_member.value = row_member, col_member

    def drill(self) -> pd.DataFrame | None:
        """The customers of the chosen cell (scoped, masked, audit-logged), each linking to the 360 view."""
        from cimlib.access import NotPermitted
        from cimlib.segmentation import CubeError, drill

        if self.frame is None:
            return None
        if not self.can_view_detail:
            self._set_status("segment.no_detail")
            return None
        rows, cols = str(self.frame.attrs["rows"]), self.frame.attrs.get("cols")
        cells = drill_cells(rows, cols, str(self.row_member.value), str(self.col_member.value or TOTAL),
                            self.frame.attrs.get("filters") or {})  # fmt: skip
        if len(cells) > MAX_DRILL_COMBOS:
            self._set_status("segment.too_many_cells")
            return None
        parts, total = [], 0
        try:
            for cell in cells:
                part = drill(self.principal, cell, self.as_of.value or None, self.home, limit=DRILL_LIMIT,
                             lang=self.lang)  # fmt: skip
                total += int(part.attrs.get("total", len(part)))
                parts.append(part)
        except NotPermitted:
            self._set_status("segment.no_detail")
            return None
        except CubeError as exc:
            self._set_status("segment.bad_request", str(exc))
            return None
        frame = (
            pd.concat(parts, ignore_index=True).sort_values("customer_id", kind="stable").head(DRILL_LIMIT)
            if parts else pd.DataFrame(columns=["customer_id", "link"])
        )  # fmt: skip
        frame = frame.reset_index(drop=True)
        frame.attrs["total"] = total
        self.drill_frame = frame
        self._set_status(None)
        self._render_drill()
        return frame

    def show_analyses(self) -> str:
        """Render the Analyses tab for the chosen month (once per month and language)."""
        from cimlib.access import NotPermitted

        key = (str(self.as_of.value or ""), self.lang)
        if self._analyses_for == key:
            return self.analyses.value
        if not self.has_scope:
            self.analyses.value = f"<p>{html.escape(t('segment.no_access', self.lang))}</p>"
            return self.analyses.value
        try:
            self.analyses.value = analyses_html(
                self.principal, self.as_of.value or None, self.lang, self.home
            )
        except NotPermitted:
            self.analyses.value = f"<p>{html.escape(t('segment.no_access', self.lang))}</p>"
        self._analyses_for = key
        return self.analyses.value

    def _tab_changed(self) -> None:
        if self.tabs.selected_index == 1:
            self.show_analyses()

    def set_language(self, lang: str) -> None:
        """Switch every label to ``lang``; a pivot on show is made again (member labels change)."""
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.lang = lang
        if self.lang_toggle.value != lang:
            self.lang_toggle.value = lang
        self._relabel()
        if self._status:
            self._set_status(self._status)
        if self.frame is not None:
            keep = (self.row_member.value, self.col_member.value)
            drilled = self.drill_frame is not None
            self.run()
            if self.frame is not None:
                self.select_cell(*keep)
                if drilled:
                    self.drill()
        if self._analyses_for is not None:
            self.show_analyses()

    # -- rendering ---------------------------------------------------------------------------------------
    def principal_text(self) -> str:
        """The signed-in user's name, role and scope, as shown in the header."""
        return principal_text(self.principal, self.lang)

    def _relabel(self) -> None:
        lang = self.lang
        self._building = True
        try:
            self.title.value = f'<div class="cim-title">{html.escape(t("segment.title", lang))}</div>'
            self.principal_label.value = f"<span>{html.escape(self.principal_text())}</span>"
            if not self.has_scope:
                notice = t("segment.no_access", lang)
            elif not self.can_view_detail:
                notice = t("segment.aggregates_only", lang)
            else:
                notice = ""
            self.notice.value = f"<p>{html.escape(notice)}</p>" if notice else ""
            dim_opts = [(dimension_label(self.dims[i], lang), i) for i in self.dim_ids]
            keep_r, keep_c, keep_m = self.rows.value, self.cols.value, self.measure.value
            self.rows.options = dim_opts
            self.rows.value = keep_r
            self.cols.options = [(t("segment.no_columns", lang), ""), *dim_opts]
            self.cols.value = keep_c
            self.measure.options = [(measure_label(m, lang), m) for m in APP_MEASURES]
            self.measure.value = keep_m
            self.as_of.description = t("segment.as_of", lang)
            self.rows.description = t("segment.rows", lang)
            self.cols.description = t("segment.cols", lang)
            self.measure.description = t("segment.measure", lang)
            self.filters_label.value = f"<b>{html.escape(t('segment.filters', lang))}</b>"
            self.org_label.value = self._org_text()
            self.org_clear.tooltip = t("segment.remove_filter", lang)
            self.org_box.layout.display = "flex" if self.org_filter is not None else "none"
            for r in self.filters:
                self._label_filter(r)
                r.remove.tooltip = t("segment.remove_filter", lang)
            self.add_filter_button.description = t("segment.add_filter", lang)
            self.run_button.description = t("segment.run", lang)
            self.row_member.description = t("segment.row_member", lang)
            self.col_member.description = t("segment.col_member", lang)
            self.drill_button.description = t("segment.drill", lang)
            self.analyses_button.description = t("segment.show_analyses", lang)
            self.tabs.titles = (t("segment.tab_pivot", lang), t("segment.tab_analyses", lang))
        finally:
            self._building = False

    def _render(self) -> None:
        frame, lang = self.frame, self.lang
        if frame is None:
            return
        frame.attrs["row_title"] = dimension_label(self.dims[frame.attrs["rows"]], lang)
        measure = measure_label(str(frame.attrs["measure"]), lang)
        as_of = str(frame.attrs.get("as_of", ""))[:7]
        self.summary.value = (
            f"<div>{html.escape(t('segment.summary', lang, measure=measure, as_of=as_of))}</div>"
        )
        self.pivot_table.value = pivot_html(frame, lang)
        self._render_grid()
        cols = frame.attrs.get("cols")
        title = (
            measure
            + " · "
            + frame.attrs["row_title"]
            + (" × " + dimension_label(self.dims[cols], lang) if cols else "")
        )
        self.chart.value = '<div class="cim-charts">' + chart_html(pivot_chart(frame, lang, title),
                                                                   "cim-chart-pivot") + "</div>"  # fmt: skip
        self.drill_summary.value = ""
        self.drill_list.value = ""
        self.results.layout.display = "flex"

    def _render_grid(self) -> None:
        """Draw a small pivot as clickable cells (the heat map's colours); a click lists the customers."""
        frame, lang = self.frame, self.lang
        self.cell_buttons = {}
        small = frame is not None and frame.size <= MAX_CLICK_CELLS
        if frame is None or not small or not self.can_view_detail:
            self.pivot_grid.children = ()
            self.pivot_grid.layout.display = "none"
            self.pivot_table.layout.display = None
            return
        measure = str(frame.attrs.get("measure", "customers"))
        rl, cl = frame.attrs.get("row_labels") or {}, frame.attrs.get("col_labels") or {}
        inner = frame.drop(index=TOTAL, errors="ignore").drop(columns=TOTAL, errors="ignore")
        vals = pd.to_numeric(inner.stack(), errors="coerce") if inner.size else pd.Series(dtype=float)
        top = float(vals.max()) if len(vals.dropna()) else 0.0
        corner = w.HTML(f"<b>{html.escape(str(frame.attrs.get('row_title') or ''))}</b>")
        cells: list[w.Widget] = [corner]
        cells += [w.HTML(f"<b>{html.escape(str(cl.get(c, c)))}</b>") for c in frame.columns]
        for r in frame.index:
            cells.append(w.HTML(f"<b>{html.escape(str(rl.get(r, r)))}</b>"))
            for c in frame.columns:
                v = frame.loc[r, c]
                b = w.Button(
                    description=format_measure(measure, v, lang),
                    tooltip=f"{rl.get(r, r)} × {cl.get(c, c)}",
                    layout=w.Layout(width="auto"),
                )
                b.add_class("cim-cell-button")
                if r != TOTAL and c != TOTAL:
                    b.style.button_color = _shade(v, top)
                    b.style.text_color = _text_color(v, top)
                else:
                    b.style.font_weight = "bold"
                b.on_click(lambda _b, r=str(r), c=str(c): self._guard(lambda: self._click(r, c)))
                self.cell_buttons[(str(r), str(c))] = b
                cells.append(b)
        self.pivot_grid.children = tuple(cells)
        columns = len(frame.columns)
        self.pivot_grid.layout.grid_template_columns = f"max-content repeat({columns}, max-content)"
        self.pivot_grid.layout.display = "grid"
        self.pivot_table.layout.display = "none"

    def _click(self, row_member: str, col_member: str) -> None:
        self.select_cell(row_member, col_member)
        self.drill()

    def _render_drill(self) -> None:
        frame, lang = self.drill_frame, self.lang
        if frame is None:
            return
        total = int(frame.attrs.get("total", len(frame)))
        rl = self.row_member.label or ""
        cl = self.col_member.label or ""
        self.drill_summary.value = "<div class='cim-summary'>" + html.escape(
            t("segment.drill_summary", lang, n=format_count(total), cell=f"{rl} × {cl}")
        ) + "</div>"  # fmt: skip
        if not len(frame):
            self.drill_list.value = f'<p class="cim-empty">{html.escape(t("segment.no_customers", lang))}</p>'
            return
        shown = frame.drop(columns=[c for c in _DRILL_HIDDEN if c in frame.columns])
        self.drill_list.value = list_html(shown, lang, base_url=self.base_url, max_rows=DRILL_LIMIT)


# ---- entry points -----------------------------------------------------------------------------------------


def segment_explorer_app(
    *, lang: str = DEFAULT_LANG, home: Any = None, environ: Mapping[str, str] | None = None
) -> w.VBox:
    """Build the segment explorer for the user of this Voila kernel (the notebook's only call).

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
    def build(principal: Any, base_url: str) -> w.Widget:
        # A deep link (the dashboard's ``?org=<code>&as_of=YYYY-MM``) is read once the request has claimed
        # this kernel (a preheated kernel gets its QUERY_STRING then); it chooses what to show, never who.
        link = requested_view(environ if environ is not None else os.environ)
        return SegmentApp(
            principal, home=home, lang=lang, base_url=base_url, org=link.get("org"), as_of=link.get("as_of")
        ).widget

    return signed_in_app(build, "segment.title", lang=lang, home=home, environ=environ)


_LINK_ORG = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_LINK_MONTH = re.compile(r"^\d{4}-\d{2}$")


def requested_view(environ: Mapping[str, str]) -> dict[str, str]:
    """The org and month a deep link asks for: ``org=<code>&as_of=YYYY-MM`` in Voila's ``QUERY_STRING``.

    Parameters
    ----------
    environ : mapping
        The kernel's environment after ``voila.utils.wait_for_request()`` (``os.environ``).

    Returns
    -------
    dict
        ``org`` and/or ``as_of`` when present and well formed (anything else is ignored). The query string
        only chooses what to show; who the user is comes from the signed identity, and the scope check is
        :class:`SegmentApp`'s.
    """
    query = str(environ.get("QUERY_STRING") or "")
    try:
        params = urllib.parse.parse_qs(query, max_num_fields=50)
    except ValueError:  # too many fields: not a link of ours
        return {}
    out: dict[str, str] = {}
    org = [v.strip() for v in params.get("org", []) if v.strip()]
    if org and _LINK_ORG.match(org[0]):
        out["org"] = org[0]
    month = [v.strip() for v in params.get("as_of", []) if v.strip()]
    if month and _LINK_MONTH.match(month[0][:7]) and len(month[0]) in (7, 10):
        out["as_of"] = month[0][:7]
    return out


def _org_in_scope(principal: Any, code: str, home: Any) -> tuple[str, str] | None:
    """``("county" | "branch", code)`` for an org within the principal's scope; None otherwise.

    The province (every org) needs no filter (None); an org outside the scope is not told apart from one
    that does not exist.
    """
    from cimlib.analysis._common import load_orgs, resolve_org
    from cimlib.customer import _data as D

    try:
        orgs = load_orgs(D.snapshot(D.resolve_home(home)))
        org = resolve_org(principal, code, orgs)
    except Exception:  # outside the scope, unknown, or no warehouse: ignored
        log.info("deep link org %r ignored", code)
        return None
    if org.code != code:
        return None
    if org.level == "COUNTY":
        return ("county", org.code)
    if org.level == "BRANCH":
        return ("branch", org.code)
    return None


def warm_up(home: Any = None) -> None:
    """The slow once-a-process work of a preheating kernel: the 360 app's, plus the dimensions.

    Nothing here depends on who will sign in, and no customer data is read.
    """
    from cimlib.apps.customer_360 import warm_up as warm_up_360

    warm_up_360(home)
    try:
        from cimlib.segmentation import load_dimensions

        load_dimensions(home)
    except Exception:
        log.warning("warm-up could not load the dimensions", exc_info=True)
    warm = [w.Tab(), w.SelectMultiple(), w.Dropdown()]
    for widget in warm:
        widget.close()
