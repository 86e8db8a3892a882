"""The primitives every periodic report is made of: a title page, headings, text, KPI cards, tables, charts
and attachments, and the record of every figure shown.

A report notebook (``notebooks/reports/*.ipynb``) builds one :class:`ReportDocument` subclass from its
parameters and calls one method per section, one section per cell. Each primitive *displays* its output
through ``IPython.display`` when the report runs in a kernel (Papermill), or appends it to ``sink`` (a
list) when one is given, so tests and in-process runs need no kernel.

* **Who reads it.** The document runs as the audience's principal (:func:`~cimlib.reports._params.audience`):
  the provincial analyst for ``province`` (every org, aggregates only), the county manager of the county
  for ``county:CODE``. Every figure comes from a public service called with that principal, so the row
  scope, small-cell suppression, masking and audit log are the services' own.
* **Tables** are clean HTML: thousands separators, money in 万元 (Chinese) or yuan (English), rates as
  percentages, numbers right-aligned in cells of class ``num``, a missing or suppressed value as ``–``
  (never 0). Every table shown is recorded under its key in :attr:`ReportDocument.figures`.
* **Charts** are Altair charts rendered to SVG in the kernel by vl-convert (:func:`cimlib.charts.to_svg`)
  and shown as ``image/svg+xml`` outputs: never the Altair CDN renderer, so the HTML works offline and
  prints to PDF.
* :meth:`ReportDocument.finish` writes ``figures.json`` (sorted keys, values rounded to the precision the
  report shows, so two runs on the same snapshot give byte-identical files) and
  ``attachments/tables.xlsx`` (one sheet per table) into ``out_dir``, after checking that every recorded
  frame came from the snapshot the run was started on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import ValidationError

from cimlib.config import Home, get_home
from cimlib.i18n import column_label, locale_keys
from cimlib.i18n import t as _i18n_t
from cimlib.reports._params import (
    BaseReportParams,
    ReportError,
    ReportParamsError,
    _explain,
    audience,
    load_report,
)

log = logging.getLogger(__name__)

#: What a missing or suppressed value looks like (an en dash, never 0).
MISSING = "\u2013"
#: Value kinds a table column can have.
KINDS = ("money", "yuan", "count", "percent", "pp", "number", "score", "text", "date", "row", "delta")
#: Text columns that may wrap (long texts); other text cells stay on one line.
WRAP_COLUMNS = frozenset(
    {
        "drivers",
        "reasons",
        "detail",
        "files",
        "test",
        "error",
        "rule_label",
        "label",
        "home_org_name",
        "org_label",
        "peer_label",
        "check",
    }
)
#: Long texts: wrapped in a wide cell.
LONG_COLUMNS = frozenset({"drivers", "reasons", "detail", "files", "test", "error"})
#: Comparison periods of a comparison frame (``cimlib.analysis._common.comparison_frame``).
COMPARISONS = ("prev_month", "last_year", "year_start")
#: A row's ``kind`` (overview frames) as a display kind.
_ROW_KINDS = {"amount": "money", "money": "money", "count": "count", "rate": "percent", "ratio": "percent"}
_PERCENT_WORDS = (
    "share",
    "rate",
    "ratio",
    "growth",
    "pct",
    "percentile",
    "coverage",
    "penetration",
    "confidence",
    "gini",
    "support",
)
_COUNT_WORDS = (
    "customers",
    "count",
    "txns",
    "holders",
    "accounts",
    "loans",
    "borrowers",
    "rank",
    "hits",
    "scored",
    "top_risk",
    "active",
    "dormant",
    "peer_size",
    "rows_",
    "devices",
    "managed",
    "headcount",
    "n_",
    "eligible",
    "churned",
    "below_normal",
    "quality_customers",
    "failing",
    "tests",
    "files",
    "passed",
    "failed",
    "warned",
    "checked",
    "products",
)
_MONEY_WORDS = (
    "balance",
    "adb",
    "amount",
    "aum",
    "contribution",
    "income",
    "cost",
    "fee",
    "provision",
    "value",
    "difference",
    "deposit",
    "loan",
    "nii",
    "total",
    "at_risk",
)
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


# ------------------------------------------------------------------------------------------- formatting
def is_missing(value: Any) -> bool:
    """``None``, NaN, NaT or NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def infer_kind(column: str) -> str:
    """How a column is shown when the caller does not say: ``percent``, ``count``, ``money`` or ``number``.

    Parameters
    ----------
    column : str
        The frame's column name (``customer_share``, ``deposit_adb``, ``txn_count`` ...).

    Returns
    -------
    str
        One of :data:`KINDS`.
    """
    col = column.lower()
    if any(w in col for w in _PERCENT_WORDS):
        return "percent"
    if col.endswith("_per_customer") or col.endswith("_per_account") or col == "cost_per_txn":
        return "yuan"
    if any(w in col for w in _COUNT_WORDS) or col.startswith("n_"):
        return "count"
    if any(w in col for w in _MONEY_WORDS):
        return "money"
    return "number"


def format_value(value: Any, kind: str, lang: str, *, signed: bool = False) -> str:
    """One value as the text of a table cell.

    Parameters
    ----------
    value : Any
        The raw value (yuan for money).
    kind : str
        ``money`` (万元 with two decimals in Chinese, whole yuan in English), ``yuan`` (yuan with two
        decimals in both languages: per-customer figures), ``count``, ``percent`` (fractions as ``12.34%``),
        ``pp`` (a change of a rate in percentage points), ``number``, ``score`` (four decimals), ``text``
        or ``date``.
    lang : str
        ``en`` or ``zh_CN``.
    signed : bool
        Show ``+`` on a positive number (changes and growth rates).

    Returns
    -------
    str
        :data:`MISSING` for a missing value.
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return _i18n_t("report.yes" if value else "report.no", lang)
    if isinstance(value, dt.datetime | pd.Timestamp):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat(sep=" ")[:16]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) or kind in ("text", "date"):
        return str(value)
    try:
        float(value)
    except (TypeError, ValueError):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return MISSING
    sign = "+" if signed and v > 0 else ""
    if kind == "percent":
        if abs(v) >= 100:  # beyond 10,000% (a tiny base): the exact figure says nothing more
            return f"{'+' if v > 0 and signed else '-' if v < 0 else ''}>9,999%"
        return f"{sign}{v:.2%}"
    if kind == "pp":
        return f"{sign}{v * 100:.2f}{_i18n_t('report.pp', lang)}"
    if kind == "count":
        return f"{sign}{round(v):,}"
    if kind == "money":
        return f"{sign}{v / 10000:,.2f}" if lang == "zh_CN" else f"{sign}{v:,.0f}"
    if kind == "yuan":
        return f"{sign}{v:,.2f}"
    if kind == "score":
        return f"{sign}{v:.4f}"
    return f"{sign}{v:,.2f}" if v != round(v) else f"{sign}{v:,.0f}"


def plain_value(value: Any, kind: str = "number") -> Any:
    """A value as JSON: floats rounded to the precision the report shows, dates as ISO strings.

    Money, counts and numbers keep two decimals; percentages and percentage points four (the two decimals
    of the percentage shown); scores six. NaN and missing values are ``None``.
    """
    if is_missing(value):
        return None
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str | bytes | dt.date):
        with contextlib.suppress(AttributeError, ValueError):
            value = value.item()
    if isinstance(value, dt.datetime | pd.Timestamp):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        v = float(value)
        if math.isinf(v):
            return None
        digits = 4 if kind in ("percent", "pp") else 6 if kind == "score" else 2
        r = round(v, digits)
        return 0.0 if r == 0 else r
    return str(value)


# --------------------------------------------------------------------------------------------- styling
_CSS = """<style>
.cim-report { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC",
  "Helvetica Neue", Arial, sans-serif; color: #263238; }
.cim-report h1 { font-size: 26px; margin: 8px 0 14px; }
.cim-report h2 { font-size: 20px; margin: 22px 0 8px; border-bottom: 2px solid #1565c0; padding-bottom: 4px; }
.cim-report h3 { font-size: 15px; margin: 14px 0 6px; color: #37474f; }
.cim-report p { margin: 4px 0 8px; line-height: 1.5; }
.cim-report .cim-note { color: #607d8b; font-size: 12px; }
.cim-report table.cim-table { border-collapse: collapse; font-size: 12.5px; margin: 4px 0 10px; }
.cim-report table.cim-table th { background: #eceff1; text-align: left; padding: 4px 8px;
  border-bottom: 1px solid #b0bec5; font-weight: 600; }
.cim-report table.cim-table td { padding: 3px 8px; border-bottom: 1px solid #eceff1; white-space: nowrap;
  vertical-align: top; }
.cim-report table.cim-table th, .cim-report table.cim-table td { text-align: left; }
.cim-report table.cim-table td.wrap { white-space: normal; min-width: 6em; max-width: 36em; }
.cim-report table.cim-table td.long { min-width: 18em; }
.cim-report table.cim-table td.num, .cim-report table.cim-table th.num { text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
.cim-report table.cim-table tr.cim-total td { font-weight: 600; border-top: 1px solid #b0bec5; }
.cim-report table.cim-meta td { padding: 3px 12px 3px 0; font-size: 14px; text-align: left; }
.cim-report table.cim-meta td:first-child { color: #607d8b; }
.cim-report .cim-banner { background: #ffebee; border-left: 5px solid #c62828; padding: 10px 14px;
  margin: 10px 0; }
.cim-report .cim-banner strong { color: #b71c1c; }
.cim-report .cim-warning { background: #fff8e1; border-left: 4px solid #f9a825; padding: 8px 12px;
  margin: 8px 0; }
.cim-report .cim-kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0 10px; }
.cim-report .cim-kpi { border: 1px solid #cfd8dc; border-radius: 6px; padding: 8px 12px; width: 200px;
  background: #fafafa; break-inside: avoid; }
.cim-report .cim-kpi-name { color: #546e7a; font-size: 13px; }
.cim-report .cim-kpi-value { font-size: 20px; font-weight: 600; margin: 2px 0 4px; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.cim-report .cim-kpi-unit { font-size: 12px; font-weight: normal; color: #78909c; }
.cim-report .cim-kpi-change { font-size: 12px; line-height: 18px; white-space: nowrap; }
.cim-report .cim-kpi-vs { color: #78909c; display: inline-block; min-width: 64px; }
.cim-report .cim-up { color: #2e7d32; } .cim-report .cim-down { color: #c62828; }
.cim-report .cim-flat { color: #78909c; }
.cim-report .cim-attachment { font-size: 13px; color: #37474f; }
</style>"""


class ReportDocument:
    """A report being produced: its audience, period and language, its outputs and its figures.

    Parameters
    ----------
    params : BaseReportParams, optional
        The report's validated parameters (:class:`~cimlib.reports._params.MonthlyPackParams` …). When
        omitted, ``values`` are validated against :attr:`params_model` (what a notebook passes).
    name : str, optional
        The report's name (``parameters/reports/<name>.yaml``); default :attr:`report_name`.
    home : Home, str or None
        The installation (default ``$CIM_HOME``).
    sink : list, optional
        Collect the outputs here (dicts with ``type`` ``html`` or ``svg``, ``key`` and the content) instead
        of displaying them: for tests and in-process runs without a kernel.
    **values
        The parameters, when ``params`` is omitted.

    Raises
    ------
    ReportParamsError
        For an unknown or ill-typed parameter, a scope the report is not made for, a county the warehouse
        lacks or a month it does not hold.
    """

    #: The report's name; subclasses set it.
    report_name: ClassVar[str] = "report"
    #: The parameter model of the report.
    params_model: ClassVar[type[BaseReportParams]] = BaseReportParams
    #: The content sections (methods), in the notebook's order; subclasses set them.
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        """Every method a notebook calls, one per cell, in order: ``cover``, the sections, ``finish``."""
        return ("cover", *cls.SECTIONS, "finish")

    def __init__(
        self,
        params: BaseReportParams | None = None,
        name: str | None = None,
        *,
        home: Home | str | None = None,
        sink: list[dict[str, Any]] | None = None,
        **values: Any,
    ) -> None:
        from cimlib import analysis as A
        from cimlib.customer import AsOfError

        self.name = name or self.report_name
        if params is None:
            try:
                params = self.params_model.model_validate(values)
            except ValidationError as exc:
                raise ReportParamsError(f"report {self.name}: {_explain(exc)}") from None
        elif values:
            raise TypeError("give either a parameters model or keyword parameters, not both")
        self.params = params
        self.home: Home = home if isinstance(home, Home) else get_home(home)
        self.lang: str = params.locale
        self.sink = sink
        self.definition = load_report(self.name, self.home)
        kind, _, code = params.scope.partition(":")
        if kind not in self.definition.scopes:
            raise ReportParamsError(
                f"report {self.name} is made for {', '.join(self.definition.scopes)}, not {kind}"
            )
        #: The county of a county edition, else None.
        self.org: str | None = code or None
        #: The principal the report runs as (the audience's role at the scope's org).
        self.principal = audience(params.scope, self.name, self.home)
        try:
            with A.analysis_context(self.principal, params.period, home=self.home, lang=self.lang) as ctx:
                self.as_of: dt.date = ctx.day
                self.dates: list[dt.date] = list(ctx.dates)
                self.focus = ctx.org
                self._orgs = dict(ctx.orgs)
                self.snapshot_id: str = str(ctx.snap.snapshot_id)
        except AsOfError as exc:
            raise ReportParamsError(f"period {params.period}: {exc}") from None
        #: ``YYYY-MM`` of the report (the latest month of the snapshot when ``period`` is None).
        self.period = f"{self.as_of:%Y-%m}"
        self.out_dir: Path | None = Path(params.out_dir) if params.out_dir else None
        self.generated_at = dt.datetime.now(dt.UTC)
        #: Every table shown, by key: its records as JSON values (in the order shown).
        self.figures: dict[str, list[dict[str, Any]]] = {}
        #: The columns and display kinds of each recorded table (for the Excel file).
        self._columns: dict[str, list[tuple[str, str, str]]] = {}
        #: The snapshot each recorded frame came from (``attrs["snapshot_id"]``; None when not stamped).
        self.frame_snapshots: dict[str, str | None] = {}
        #: The charts shown, by key.
        self.charts: list[str] = []
        #: Files attached (relative to ``out_dir``).
        self.attachments: list[str] = []
        #: Seconds per section (see :meth:`section`).
        self.timings: dict[str, float] = {}
        self._memo: dict[Any, Any] = {}
        self._pool: Any = None
        self._pending: list[Any] = []
        self._styled = False
        self.finished = False

    # ----------------------------------------------------------------------------------------- text
    def t(self, key: str, **fmt: Any) -> str:
        """The report text ``report.<key>`` in the report's language."""
        return _i18n_t(f"report.{key}", self.lang, **fmt)

    def has_text(self, key: str) -> bool:
        """Whether ``report.<key>`` is in the locale files."""
        return f"report.{key}" in _keys(self.lang)

    @property
    def edition(self) -> str:
        """``province`` or ``county``."""
        return "county" if self.org else "province"

    @property
    def aggregate_only(self) -> bool:
        """True when the audience sees aggregates only (no single customer)."""
        return not self.principal.can_view_detail

    def org_name(self, code: str | None) -> str:
        """An org's name (the code when unknown)."""
        if code is None:
            return ""
        o = self._orgs.get(str(code))
        return o.name if o is not None else str(code)

    @property
    def scope_label(self) -> str:
        """``桐庐县农村商业银行 (101000)``, or the province's label."""
        if self.org:
            return f"{self.org_name(self.org)} ({self.org})"
        return self.t("scope_province", name=self.focus.name)

    @property
    def title(self) -> str:
        """The report's title in its language (``parameters/reports/<name>.yaml``)."""
        return self.definition.title[self.lang]  # type: ignore[index]

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        """``fn()`` once per document: a frame a table and a chart (or two sections) share."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def in_background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` (writing an attachment) on a background thread; :meth:`finish` waits for it and
        raises its error.

        Writing a large Excel list is pure Python (openpyxl) while the next sections mostly wait on DuckDB
        and vl-convert, which release the GIL, so the two overlap on a second core.
        """
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-report-files")
        self._pending.append(self._pool.submit(fn, *args, **kwargs))

    def wait_background(self) -> None:
        """Wait for the background writes; re-raise the first one that failed."""
        pending, self._pending = self._pending, []
        try:
            for f in pending:
                f.result()
        finally:
            if self._pool is not None and not self._pending:
                self._pool.shutdown(wait=True)
                self._pool = None

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time a section (``timings[name]``) and log it."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)
            log.info(
                "report %s %s: section %s in %.2f s", self.name, self.params.scope, name, self.timings[name]
            )

    # -------------------------------------------------------------------------------------- outputs
    def _emit(self, kind: str, key: str | None, payload: str) -> None:
        if kind == "html":
            if not self._styled:
                payload = _CSS + payload
                self._styled = True
            payload = f'<div class="cim-report">{payload}</div>'
        if self.sink is not None:
            self.sink.append({"type": kind, "key": key, kind: payload})
            return
        from IPython.display import HTML, display

        if kind == "svg":
            display({"image/svg+xml": payload}, raw=True)
        else:
            display(HTML(payload))

    def html(self, markup: str, key: str | None = None) -> None:
        """Show raw HTML (already escaped by the caller)."""
        self._emit("html", key, markup)

    def h1(self, text: str) -> None:
        """A top-level heading (the title)."""
        self.html(f"<h1>{html.escape(text)}</h1>")

    def h2(self, text: str) -> None:
        """A section heading."""
        self.html(f"<h2>{html.escape(text)}</h2>")

    def h3(self, text: str) -> None:
        """A sub-heading."""
        self.html(f"<h3>{html.escape(text)}</h3>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        """A paragraph of plain text (``note``: small and grey)."""
        cls = ' class="cim-note"' if note else ""
        self.html(f"<p{cls}>{html.escape(text)}</p>")

    def warning(self, text: str, lines: Sequence[str] = (), *, banner: bool = False) -> None:
        """A warning box: ``text`` in bold and ``lines`` as a list; ``banner`` makes it the red banner."""
        items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
        body = f"<strong>{html.escape(text)}</strong>" + (f"<ul>{items}</ul>" if items else "")
        self.html(f'<div class="{"cim-banner" if banner else "cim-warning"}" role="alert">{body}</div>')

    def meta_table(self, rows: Sequence[tuple[str, str]]) -> None:
        """A two-column label/value table (the first page's facts)."""
        body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        self.html(f'<table class="cim-meta">{body}</table>')

    def title_page(self, sections: Sequence[str] = ()) -> None:
        """The first page: title, scope, period, as-of date, snapshot, generated time and audience, the
        data-quality banner when the report was published despite failures, and the contents."""
        role = self.principal.role
        role_label = self.t(f"roles.{role}") if self.has_text(f"roles.{role}") else role
        self.h1(self.title)
        self.meta_table(
            [
                (self.t("cover.scope"), self.scope_label),
                (self.t("cover.period"), self.period),
                (self.t("cover.as_of"), self.as_of.isoformat()),
                (self.t("cover.snapshot"), self.snapshot_id),
                (self.t("cover.generated"), self.generated_at.strftime("%Y-%m-%d %H:%M UTC")),
                (self.t("cover.audience"), f"{role_label} ({role})"),
            ]
        )
        if self.params.dq_failures:
            self.warning(self.t("dq_banner"), list(self.params.dq_failures), banner=True)
        if sections:
            items = "".join(f"<li>{html.escape(s)}</li>" for s in sections)
            self.html(f"<h3>{html.escape(self.t('cover.contents'))}</h3><ol>{items}</ol>")
        note = self.t("cover.note_aggregate") if self.aggregate_only else self.t("cover.note_detail")
        self.paragraph(note, note=True)

    def attach(self, path: str | Path) -> str:
        """Attach a file written under ``out_dir`` (listed in the report and the manifest).

        Parameters
        ----------
        path : str or Path
            The file, inside ``out_dir``.

        Returns
        -------
        str
            Its path relative to ``out_dir``.
        """
        p = Path(path)
        rel = str(p.relative_to(self.out_dir)) if self.out_dir and p.is_relative_to(self.out_dir) else p.name
        if rel not in self.attachments:
            self.attachments.append(rel)
        self.html(f'<p class="cim-attachment">{html.escape(self.t("attachment", name=rel))}</p>')
        return rel

    def attachment_path(self, name: str) -> Path | None:
        """``out_dir/attachments/<name>`` (its folder created), or None when nothing is written."""
        if self.out_dir is None:
            return None
        d = self.out_dir / "attachments"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    # ------------------------------------------------------------------------------------------- KPIs
    def kpi_cards(self, key: str, frame: pd.DataFrame, measures: Sequence[str] | None = None) -> None:
        """Cards of key figures from a comparison frame, each with its change on the three comparison
        months, recorded under ``key``.

        Parameters
        ----------
        key : str
            The figures key.
        frame : DataFrame
            ``measure, label, kind, current, prev_month, prev_month_change, prev_month_growth, …``
            (:func:`cimlib.analysis.overview`).
        measures : sequence of str, optional
            The measures shown, in order (default every row).
        """
        df = frame
        if measures is not None:
            df = frame.set_index("measure").reindex(list(measures)).reset_index()
            df = df[df["label"].notna()] if "label" in df else df
        cards = []
        for rec in df.to_dict("records"):
            kind = _ROW_KINDS.get(str(rec.get("kind")), infer_kind(str(rec.get("measure"))))
            value = format_value(rec.get("current"), kind, self.lang)
            unit = (
                f' <span class="cim-kpi-unit">{html.escape(self.t("unit_money"))}</span>'
                if kind == "money"
                else ""
            )
            lines = []
            for k in COMPARISONS:
                if kind == "percent":
                    move = rec.get(f"{k}_change")
                    text = format_value(move, "pp", self.lang, signed=True)
                else:
                    move = rec.get(f"{k}_growth")
                    text = format_value(move, "percent", self.lang, signed=True)
                cls = "cim-flat" if is_missing(move) or move == 0 else "cim-up" if move > 0 else "cim-down"
                lines.append(
                    f'<div class="cim-kpi-change"><span class="cim-kpi-vs">'
                    f'{html.escape(self.t("vs." + k))}</span> <span class="{cls}">'
                    f"{html.escape(text)}</span></div>"
                )
            label = rec.get("label") if isinstance(rec.get("label"), str) else str(rec.get("measure"))
            cards.append(
                f'<div class="cim-kpi" data-measure="{html.escape(str(rec.get("measure")), quote=True)}">'
                f'<div class="cim-kpi-name">{html.escape(label)}</div>'
                f'<div class="cim-kpi-value">{html.escape(value)}{unit}</div>{"".join(lines)}</div>'
            )
        cols: list[tuple[str, str]] = [("measure", "text"), ("label", "text"), ("current", "row")]
        for k in COMPARISONS:
            cols += [(f"{k}_change", "row"), (f"{k}_growth", "percent")]
        self._record(key, frame if measures is None else df, cols, frame.attrs)
        self.html(
            f'<div class="cim-kpis" data-key="{html.escape(key, quote=True)}">{"".join(cards)}</div>', key
        )

    def facts(self, key: str, items: Sequence[tuple[str, str, Any, str]]) -> None:
        """Cards of single figures without comparisons (``(measure, label, value, kind)``), recorded under
        ``key`` as ``measure, value`` records."""
        cards = []
        for measure, label, value, kind in items:
            unit_text = (
                self.t("unit_money") if kind == "money" else self.t("unit_yuan") if kind == "yuan" else ""
            )
            unit = (
                f' <span class="cim-kpi-unit">{html.escape(unit_text)}</span>'
                if unit_text and not is_missing(value)
                else ""
            )
            cards.append(
                f'<div class="cim-kpi" data-measure="{html.escape(measure, quote=True)}">'
                f'<div class="cim-kpi-name">{html.escape(label)}</div><div class="cim-kpi-value">'
                f"{html.escape(format_value(value, kind, self.lang))}{unit}</div></div>"
            )
        frame = pd.DataFrame({"measure": [i[0] for i in items], "value": [i[2] for i in items]})
        kinds = [i[3] for i in items]
        self._record(key, frame, [("measure", "text"), ("value", "row")], {}, kinds)
        self.html(
            f'<div class="cim-kpis" data-key="{html.escape(key, quote=True)}">{"".join(cards)}</div>', key
        )

    # ------------------------------------------------------------------------------------------ tables
    def _col_specs(self, frame: pd.DataFrame, columns: Any) -> list[tuple[str, str]]:
        if columns is None:
            columns = [c for c in frame.columns if c not in ("suppressed", "kind", "link")]
        if isinstance(columns, Mapping):
            items = list(columns.items())
        else:
            items = [c if isinstance(c, tuple) else (c, None) for c in columns]
        out = []
        for col, kind in items:
            col = str(col)
            if col not in frame.columns:
                continue
            if kind is None:
                if pd.api.types.is_bool_dtype(frame[col]):
                    kind = "text"
                elif pd.api.types.is_numeric_dtype(frame[col]):
                    kind = infer_kind(col)
                else:
                    kind = "text"
            if kind not in KINDS:
                raise ValueError(f"column {col}: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
            out.append((col, kind))
        return out

    def label(self, column: str) -> str:
        """A column's name in the report's language (``report.col.<column>``, else the shared column
        labels, else the column itself)."""
        key = f"col.{column}"
        label = self.t(key) if self.has_text(key) else column_label(column, self.lang)
        return column.replace("_", " ") if label == column else label

    def header(
        self, column: str, kind: str = "text", *, unit: str | None = None, label: str | None = None
    ) -> str:
        """A column's header in the report's language, with its unit for money (万元 or yuan)."""
        label = label or self.label(column)
        if unit is None:
            unit = self.t("unit_money") if kind == "money" else self.t("unit_yuan") if kind == "yuan" else ""
        return self.t("with_unit", label=label, unit=unit) if unit else label

    def table(
        self,
        key: str,
        frame: pd.DataFrame,
        columns: Sequence[str | tuple[str, str]] | Mapping[str, str | None] | None = None,
        *,
        title: str | None = None,
        note: str | None = None,
        max_rows: int | None = None,
        headers: Mapping[str, str] | None = None,
        total_row: Callable[[dict[str, Any]], bool] | None = None,
        row_kind: Callable[[dict[str, Any]], str] | None = None,
        keys: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Show a frame as an HTML table and record it under ``key``.

        Parameters
        ----------
        key : str
            Unique figures key (``macro.overview``); its title is ``report.tables.<key>`` unless given.
        frame : DataFrame
            The service's frame (its ``attrs["snapshot_id"]`` is recorded for the snapshot check).
        columns : sequence or mapping, optional
            The columns shown, in order: names, or ``(name, kind)`` pairs, or ``{name: kind}`` (kind None
            to infer). Kinds are those of :func:`format_value`, plus ``row`` (the kind of the row's
            ``kind`` column, for comparison frames: its ``*_change`` columns are then percentage points
            for rates).
        title, note : str, optional
            The heading above and a note below.
        max_rows : int, optional
            Show the first rows only (the record holds the rows shown).
        headers : mapping, optional
            The name of a column (instead of ``report.col.<column>``); the unit is added for money.
        total_row : callable, optional
            Marks a record as a total (bold, ruled).
        row_kind : callable, optional
            The kind of a record's ``row`` columns (default: the frame's ``kind`` column, as in
            :func:`cimlib.analysis.overview`).
        keys : sequence of str
            Identifier columns recorded with each row but not shown (``measure``, ``group``, a code), so
            ``figures.json`` can be matched with the services' frames in any language.

        Returns
        -------
        DataFrame
            The rows and columns shown.
        """
        if key in self.figures:
            raise ValueError(f"table key {key!r} is used twice")
        specs = self._col_specs(frame, columns)
        src = frame.head(max_rows) if max_rows is not None else frame
        row_kinds = row_kinds_of(src, row_kind)
        hidden = [(k, "text") for k in keys if k in src.columns and k not in dict(specs)]
        shown = src[[c for c, _ in hidden + specs]].copy()
        shown.attrs = dict(frame.attrs)
        self._record(key, shown, hidden + specs, frame.attrs, row_kinds, headers)
        if title is None and self.has_text(f"tables.{key}"):
            title = self.t(f"tables.{key}")
        head = "".join(
            f'<th class="{"" if k in ("text", "date") else "num"}">'
            f"{html.escape(self.header(c, k, label=(headers or {}).get(c)))}</th>"
            for c, k in specs
        )
        body = []
        for rec, row_kind in zip(shown.to_dict("records"), row_kinds, strict=True):
            cells = []
            for c, k in specs:
                kind = cell_kind(c, k, row_kind)
                v = rec.get(c)
                signed = c.endswith(("_change", "_growth", "_delta"))
                text = format_value(v, kind, self.lang, signed=signed)
                if kind not in ("text", "date"):
                    cls = ' class="num"'
                else:
                    cls = (
                        ' class="wrap long"'
                        if c in LONG_COLUMNS
                        else ' class="wrap"'
                        if c in WRAP_COLUMNS
                        else ""
                    )
                cells.append(f"<td{cls}>{html.escape(text)}</td>")
            tr = ' class="cim-total"' if total_row is not None and total_row(rec) else ""
            body.append(f"<tr{tr}>{''.join(cells)}</tr>")
        parts = [f"<h3>{html.escape(title)}</h3>"] if title else []
        if not len(shown):
            parts.append(f'<p class="cim-note">{html.escape(self.t("no_rows"))}</p>')
        else:
            parts.append(
                f'<table class="cim-table" data-key="{html.escape(key, quote=True)}"><thead><tr>{head}'
                f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
            )
            if max_rows is not None and len(frame) > max_rows:
                more = self.t("more_rows", shown=max_rows, total=len(frame))
                parts.append(f'<p class="cim-note">{html.escape(more)}</p>')
        if note:
            parts.append(f'<p class="cim-note">{html.escape(note)}</p>')
        self.html("".join(parts), key)
        return shown

    def _record(
        self,
        key: str,
        frame: pd.DataFrame,
        specs: Sequence[tuple[str, str]],
        attrs: Mapping[str, Any],
        row_kinds: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if key in self.figures:
            raise ValueError(f"figures key {key!r} is used twice")
        kinds = dict(specs)
        if row_kinds is None:
            row_kinds = row_kinds_of(frame)
        records = []
        for rec, row_kind in zip(frame.to_dict("records"), row_kinds, strict=True):
            records.append({c: plain_value(rec.get(c), cell_kind(c, k, row_kind)) for c, k in specs})
        self.figures[key] = records
        self._columns[key] = [(c, kinds[c], (headers or {}).get(c) or self.label(c)) for c, _ in specs]
        sid = attrs.get("snapshot_id")
        self.frame_snapshots[key] = str(sid) if sid is not None else None

    # ------------------------------------------------------------------------------------------ charts
    def chart(self, key: str, chart: Any) -> str:
        """Show an Altair chart as an inline SVG (rendered by vl-convert; nothing from a CDN).

        Parameters
        ----------
        key : str
            The chart's key (listed in :attr:`charts`).
        chart : altair chart or dict
            The chart, or its Vega-Lite spec.

        Returns
        -------
        str
            The SVG.
        """
        from cimlib.charts import to_svg

        svg = to_svg(chart)
        self.charts.append(key)
        self._emit("svg", key, svg)
        return svg

    # ------------------------------------------------------------------------------------------ finish
    def check_snapshot(self) -> None:
        """Raise :class:`ReportError` when a recorded frame came from another snapshot than the run's.

        The run's snapshot is ``params.snapshot_id`` (set by the runner) or, without it, the snapshot the
        document opened on.
        """
        expected = self.params.snapshot_id or self.snapshot_id
        if self.params.snapshot_id and self.snapshot_id != self.params.snapshot_id:
            raise ReportError(
                f"the warehouse was rebuilt while the report ran: the report was started on "
                f"snapshot {self.params.snapshot_id}, but read {self.snapshot_id}"
            )
        bad = {k: s for k, s in self.frame_snapshots.items() if s is not None and s != expected}
        if bad:
            k, s = next(iter(bad.items()))
            raise ReportError(
                f"the warehouse was rebuilt while the report ran: {len(bad)} table(s) came from "
                f"snapshot {s} (first: {k}), not {expected}; run the report again"
            )

    def figures_json(self) -> str:
        """The figures as JSON text: sorted keys, stable across runs on the same snapshot."""
        return json.dumps(self.figures, sort_keys=True, ensure_ascii=False, indent=1, allow_nan=False) + "\n"

    def write_tables(self, path: Path) -> None:
        """Every recorded table as a sheet of an Excel workbook (localized headers, cells as values)."""
        from openpyxl import Workbook
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        wb = Workbook()
        wb.remove(wb.active)
        used: set[str] = set()
        formats = {
            "money": "#,##0.00",
            "yuan": "#,##0.00",
            "count": "#,##0",
            "percent": "0.00%",
            "pp": "0.0000",
            "score": "0.0000",
            "number": "#,##0.00",
        }
        for key, records in self.figures.items():
            ws = wb.create_sheet(sheet_title(key, used))
            cols = self._columns[key]
            heads = [
                self.t("with_unit", label=h, unit=self.t("unit_yuan")) if k in ("money", "yuan") else h
                for _, k, h in cols
            ]
            ws.append(heads)
            for c in ws[1]:
                c.font = Font(bold=True)
            for r, rec in enumerate(records, start=2):
                for j, (c, k, _) in enumerate(cols, start=1):
                    v = rec.get(c)
                    cell = ws.cell(row=r, column=j)
                    cell.value = v
                    if isinstance(v, str):
                        cell.data_type = "s"  # text stays text: never a formula
                    elif isinstance(v, int | float) and not isinstance(v, bool) and k in formats:
                        cell.number_format = formats[k]
            for j, (_, _kind, h) in enumerate(cols, start=1):
                ws.column_dimensions[get_column_letter(j)].width = max(10, min(40, len(h) * 2 + 2))
            ws.freeze_panes = "A2"
        about = wb.create_sheet(sheet_title("about", used))
        for k, v in (
            ("report", self.title),
            ("scope", self.scope_label),
            ("period", self.period),
            ("as_of", self.as_of.isoformat()),
            ("snapshot_id", self.snapshot_id),
        ):
            about.append([k, v])
        path.parent.mkdir(parents=True, exist_ok=True)
        wb.save(path)

    def finish(self) -> dict[str, Any]:
        """Check the snapshot, then write ``figures.json`` and ``attachments/tables.xlsx`` into ``out_dir``.

        Returns
        -------
        dict
            ``figures`` (number of tables), ``charts``, ``attachments``, ``timings`` and ``files`` written
            (nothing when ``out_dir`` is None).

        Raises
        ------
        ReportError
            When the warehouse was rebuilt while the report ran (see :meth:`check_snapshot`).
        """
        self.wait_background()
        self.check_snapshot()
        files: list[str] = []
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "figures.json").write_text(self.figures_json(), encoding="utf-8")
            files.append("figures.json")
            if self.figures:
                xlsx = self.attachment_path("tables.xlsx")
                assert xlsx is not None
                self.write_tables(xlsx)
                rel = "attachments/tables.xlsx"
                if rel not in self.attachments:
                    self.attachments.append(rel)
                files.append(rel)
        self.finished = True
        summary = {
            "figures": len(self.figures),
            "charts": len(self.charts),
            "attachments": list(self.attachments),
            "timings": dict(self.timings),
            "files": files,
        }
        log.info("report %s %s %s finished: %s", self.name, self.params.scope, self.period, summary)
        if self.out_dir is not None:
            self.paragraph(
                self.t(
                    "finished",
                    tables=len(self.figures),
                    charts=len(self.charts),
                    attachments=len(self.attachments),
                ),
                note=True,
            )
        return summary


def row_kinds_of(frame: pd.DataFrame, row_kind: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
    """The display kind of each row: ``row_kind(record)``, else the frame's ``kind`` (amount, count, rate:
    a comparison frame), else ``number``."""
    if row_kind is not None:
        return [row_kind(r) for r in frame.to_dict("records")]
    if "kind" not in frame.columns:
        return ["number"] * len(frame)
    return [_ROW_KINDS.get(str(k), "number") for k in frame["kind"]]


def cell_kind(column: str, kind: str, row_kind: str) -> str:
    """A cell's kind: the column's; for ``row`` columns the row's (a rate's change in points); for
    ``delta`` columns a growth rate, or for a rate its change in percentage points."""
    if kind == "delta":
        return "pp" if row_kind == "percent" else "percent"
    if kind != "row":
        return kind
    if row_kind == "percent" and column.endswith("_change"):
        return "pp"
    return row_kind


def sheet_title(name: str, used: set[str]) -> str:
    """An Excel sheet name: at most 31 characters, none of ``[]:*?/\\``, unique (case-insensitive)."""
    base = _SHEET_BAD.sub("_", name).strip("'")[:31] or "sheet"
    title, i = base, 2
    while title.lower() in used:
        suffix = f"~{i}"
        title, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(title.lower())
    return title


_KEYS: dict[str, frozenset[str]] = {}


def _keys(lang: str) -> frozenset[str]:
    if lang not in _KEYS:
        _KEYS[lang] = frozenset(locale_keys(lang))
    return _KEYS[lang]


__all__ = [
    "MISSING",
    "ReportDocument",
    "format_value",
    "infer_kind",
    "is_missing",
    "plain_value",
    "sheet_title",
]
