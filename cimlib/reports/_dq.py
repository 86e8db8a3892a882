"""The data-quality report of each load (数据质量报告): one method per section, each a cell of
``notebooks/reports/data_quality.ipynb``. Provincial scope only.

* :meth:`DataQualityReport.gate` - the checks the monthly pack must pass before it is published
  (:func:`~cimlib.reports._gate.gate_checks`: GL tie-out, contract warnings, quarantine share);
* :meth:`~DataQualityReport.loads` - the period's load report: rows read, loaded and quarantined per table
  (:func:`cimlib.ingest.load_reports`; read = loaded + quarantined, always);
* :meth:`~DataQualityReport.quarantine` - quarantined rows by table and reason (counts only: the rows'
  contents may hold personal data and the audience sees aggregates);
* :meth:`~DataQualityReport.contracts` - the published build's contract tests by layer and status, the
  failed and warned tests with their failing rows;
* :meth:`~DataQualityReport.tieout` - the GL tie-out (:func:`cimlib.analysis.gl_tieout`) and its failing
  rows;
* :meth:`~DataQualityReport.trend` - quarantined rows per load over the last ``trend_months`` loads.

The report reports the gate's findings, so the gate does not stop it (``gate: false`` in
``parameters/reports/data_quality.yaml``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pandas as pd

from cimlib.reports._document import ReportDocument
from cimlib.reports._params import DataQualityParams

#: The sections, in the notebook's order.
DQ_SECTIONS = ("gate", "loads", "quarantine", "contracts", "tieout", "trend")
#: The layers of the SQL models, by the model name's prefix.
LAYERS = (("stg_", "staging"), ("core_", "core"), ("dim_", "marts"), ("mart_", "marts"))
STATUSES = ("pass", "warn", "fail")


def layer_of(model: str) -> str:
    """``staging``, ``core`` or ``marts`` for a model name (``other`` when unknown)."""
    return next((layer for prefix, layer in LAYERS if str(model).startswith(prefix)), "other")


class DataQualityReport(ReportDocument):
    """The data-quality report of one period's load (provincial scope).

    Parameters
    ----------
    params : DataQualityParams, optional
        The validated parameters; or pass them as keywords (``period=…, locale=…``).
    name : str, optional
        The report's name (default ``data_quality``).
    home : Home, str or None
        The installation.
    sink : list, optional
        Collect the outputs instead of displaying them.
    **values
        The parameters, when ``params`` is omitted.
    """

    report_name = "data_quality"
    params_model = DataQualityParams
    SECTIONS = DQ_SECTIONS
    params: DataQualityParams

    # ------------------------------------------------------------------------------------------ helpers
    def _head(self, key: str) -> None:
        self.h2(self.t(f"dq.sections.{key}"))

    def _all_loads(self) -> list[dict[str, Any]]:
        from cimlib.ingest import load_reports

        return self.memo("load_reports", lambda: load_reports(self.home))

    def _period_loads(self) -> list[dict[str, Any]]:
        return [r for r in self._all_loads() if str(r.get("as_of_date", "")).startswith(self.period)]

    def _reason(self, code: str) -> str:
        key = f"dq.reasons.{code}"
        return self.t(key) if self.has_text(key) else str(code)

    def _frame(self, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=columns)
        df.attrs["snapshot_id"] = self.snapshot_id
        return df

    # --------------------------------------------------------------------------------------------- cover
    def cover(self) -> None:
        """The first page (title, period, snapshot, audience) and the contents."""
        with self.section("cover"):
            self.title_page([self.t(f"dq.sections.{s}") for s in DQ_SECTIONS])

    # ---------------------------------------------------------------------------------------------- gate
    def gate(self) -> None:
        """The publication gate's checks for the period, pass or fail, with their detail."""
        from cimlib.reports._gate import gate_checks
        from cimlib.reports._params import load_report_settings

        with self.section("gate"):
            self._head("gate")
            settings = load_report_settings(self.home)
            checks = self.memo("gate", lambda: gate_checks(self.home, self.period, settings.gate))
            rows = [
                {
                    "check": self.t(f"dq.checks.{c.name}")
                    if self.has_text(f"dq.checks.{c.name}")
                    else c.name,
                    "name": c.name,
                    "status": self.t("dq.passed") if c.passed else self.t("dq.failed"),
                    "enabled": self.t("yes") if c.enabled else self.t("no"),
                    "failing": len(c.rows),
                    "detail": c.detail,
                }
                for c in checks
            ]
            failed = [c for c in checks if not c.passed]
            if failed:
                self.warning(self.t("dq.gate_failed"), [f"{c.name}: {c.detail}" for c in failed], banner=True)
            else:
                self.paragraph(self.t("dq.gate_passed"))
            self.table(
                "gate.checks",
                self._frame(rows, ["check", "name", "status", "enabled", "failing", "detail"]),
                [
                    ("check", "text"),
                    ("status", "text"),
                    ("enabled", "text"),
                    ("failing", "count"),
                    ("detail", "text"),
                ],
                note=self.t("dq.gate_note"),
                keys=("name",),
            )

    # --------------------------------------------------------------------------------------------- loads
    def loads(self) -> None:
        """The period's load report: rows read, loaded and quarantined per table, with totals."""
        with self.section("loads"):
            self._head("loads")
            loads = self._period_loads()
            if not loads:
                self.warning(self.t("dq.no_load", period=self.period))
            rows = []
            for r in loads:
                self.paragraph(
                    self.t(
                        "dq.load_line",
                        as_of=r.get("as_of_date"),
                        mapping=r.get("mapping", ""),
                        started=str(r.get("started", ""))[:19].replace("T", " "),
                        seconds=float(r.get("seconds") or 0),
                        unchanged=self.t("yes") if r.get("unchanged") else self.t("no"),
                    )
                )
                for table, tr in sorted((r.get("tables") or {}).items()):
                    read = int(tr.get("rows_read") or 0)
                    q = int(tr.get("rows_quarantined") or 0)
                    rows.append(
                        {
                            "as_of_date": r.get("as_of_date"),
                            "table": table,
                            "files": ", ".join(tr.get("files") or []),
                            "rows_read": read,
                            "rows_loaded": int(tr.get("rows_loaded") or 0),
                            "rows_quarantined": q,
                            "quarantine_share": q / read if read else None,
                        }
                    )
            cols = [
                "as_of_date",
                "table",
                "files",
                "rows_read",
                "rows_loaded",
                "rows_quarantined",
                "quarantine_share",
            ]
            frame = self._frame(rows, cols)
            if len(frame):
                tot = {
                    "as_of_date": "",
                    "table": self.t("total"),
                    "files": "",
                    "rows_read": int(frame["rows_read"].sum()),
                    "rows_loaded": int(frame["rows_loaded"].sum()),
                    "rows_quarantined": int(frame["rows_quarantined"].sum()),
                }
                tot["quarantine_share"] = (
                    tot["rows_quarantined"] / tot["rows_read"] if tot["rows_read"] else None
                )
                frame = self._frame([*frame.to_dict("records"), tot], cols)
            self.table(
                "loads.tables",
                frame,
                [
                    ("as_of_date", "text"),
                    ("table", "text"),
                    ("files", "text"),
                    ("rows_read", "count"),
                    ("rows_loaded", "count"),
                    ("rows_quarantined", "count"),
                    ("quarantine_share", "percent"),
                ],
                total_row=lambda rec: rec.get("table") == self.t("total"),
                note=self.t("dq.loads_note"),
            )

    # ---------------------------------------------------------------------------------------- quarantine
    def quarantine(self) -> None:
        """Quarantined rows of the period's loads by table and reason (counts, with a chart)."""
        with self.section("quarantine"):
            self._head("quarantine")
            rows = []
            for r in self._period_loads():
                for table, tr in sorted((r.get("tables") or {}).items()):
                    read = int(tr.get("rows_read") or 0)
                    for reason, n in sorted((tr.get("reasons") or {}).items()):
                        rows.append(
                            {
                                "as_of_date": r.get("as_of_date"),
                                "table": table,
                                "reason": reason,
                                "reason_label": self._reason(reason),
                                "rows": int(n),
                                "share_of_read": int(n) / read if read else None,
                            }
                        )
            frame = self._frame(
                rows, ["as_of_date", "table", "reason", "reason_label", "rows", "share_of_read"]
            )
            frame = frame.sort_values(
                ["rows", "table", "reason"], ascending=[False, True, True], ignore_index=True
            )
            frame.attrs["snapshot_id"] = self.snapshot_id
            if not len(frame):
                self.paragraph(self.t("dq.no_quarantine", period=self.period))
            self.table(
                "quarantine.by_reason",
                frame,
                [
                    ("table", "text"),
                    ("reason", "text"),
                    ("reason_label", "text"),
                    ("rows", "count"),
                    ("share_of_read", "percent"),
                ],
            )
            if len(frame):
                data = frame.assign(label=frame["table"] + " · " + frame["reason_label"])
                self.chart(
                    "quarantine.by_reason",
                    bar_chart(
                        data,
                        "label",
                        "rows",
                        self.t("dq.chart_quarantine"),
                        self.t("col.rows"),
                        color="table",
                    ),
                )

    # ----------------------------------------------------------------------------------------- contracts
    def contracts(self) -> None:
        """The published build's contract tests: counts by layer and status, and every test that failed
        or warned with its failing rows."""
        from cimlib.engine import current_snapshot

        with self.section("contracts"):
            self._head("contracts")
            current = current_snapshot(self.home) or {}
            results = list((current.get("contracts") or {}).get("results") or [])
            built = current.get("built_at")
            self.paragraph(
                self.t(
                    "dq.contracts_intro",
                    snapshot=current.get("snapshot_id", self.snapshot_id),
                    built=str(built or "")[:19].replace("T", " "),
                    n=len(results),
                )
            )
            counts: Counter[tuple[str, str]] = Counter(
                (layer_of(r.get("model", "")), str(r.get("status"))) for r in results
            )
            rows = []
            for layer in ("staging", "core", "marts", "other"):
                row: dict[str, Any] = {"layer": layer, "layer_label": self.t(f"dq.layers.{layer}")}
                for s in STATUSES:
                    row[s] = counts.get((layer, s), 0)
                row["tests"] = sum(v for (ly, _), v in counts.items() if ly == layer)
                if row["tests"] or layer != "other":
                    rows.append(row)
            frame = self._frame(rows, ["layer", "layer_label", *STATUSES, "tests"])
            self.table(
                "contracts.by_layer",
                frame,
                [
                    ("layer_label", "text"),
                    ("pass", "count"),
                    ("warn", "count"),
                    ("fail", "count"),
                    ("tests", "count"),
                ],
                headers={s: self.t(f"dq.status.{s}") for s in STATUSES},
                keys=("layer",),
            )
            bad = [
                {
                    "layer": self.t(f"dq.layers.{layer_of(r.get('model', ''))}"),
                    "model": r.get("model"),
                    "test": r.get("test"),
                    "severity": r.get("severity"),
                    "status": self.t(f"dq.status.{r.get('status')}")
                    if r.get("status") in STATUSES
                    else str(r.get("status")),
                    "failing_rows": r.get("failing_rows"),
                    "error": r.get("error") or "",
                }
                for r in results
                if r.get("status") != "pass"
            ]
            if not bad:
                self.paragraph(self.t("dq.contracts_all_passed", n=len(results)))
            self.table(
                "contracts.failed",
                self._frame(bad, ["layer", "model", "test", "severity", "status", "failing_rows", "error"]),
                [
                    ("layer", "text"),
                    ("model", "text"),
                    ("test", "text"),
                    ("severity", "text"),
                    ("status", "text"),
                    ("failing_rows", "count"),
                    ("error", "text"),
                ],
            )

    # -------------------------------------------------------------------------------------------- tieout
    def tieout(self) -> None:
        """The GL tie-out of the period: summary, the differences chart and the failing rows."""
        from cimlib import analysis as A

        with self.section("tieout"):
            self._head("tieout")
            tie = self.memo(
                "tieout", lambda: A.gl_tieout(self.principal, self.as_of, home=self.home, lang=self.lang)
            )
            n_failed = int(tie.attrs.get("n_failed", int((tie["status"] != "ok").sum()) if len(tie) else 0))
            self.facts(
                "tieout.summary",
                [
                    ("rows", self.t("col.rows_checked"), len(tie), "count"),
                    ("failed", self.t("col.rows_failed"), n_failed, "count"),
                    ("tolerance_abs", self.t("col.tolerance_abs"), tie.attrs.get("tolerance_abs"), "yuan"),
                    ("tolerance_rel", self.t("col.tolerance_rel"), tie.attrs.get("tolerance_rel"), "percent"),
                ],
            )
            self.paragraph(
                self.t("dq.tieout_ok") if n_failed == 0 else self.t("dq.tieout_failed", n=n_failed)
            )
            self.chart("tieout.differences", A.tieout_chart(tie, self.lang, top=20))
            failing = tie[tie["status"] != "ok"] if len(tie) else tie
            failing = failing.sort_values(
                ["abs_difference", "org_code", "subject_code"], ascending=[False, True, True]
            )
            failing.attrs = dict(tie.attrs)
            self.table(
                "tieout.failing",
                failing,
                [
                    ("org_label", "text"),
                    ("subject_code", "text"),
                    ("label", "text"),
                    ("gl_balance", "yuan"),
                    ("customer_balance", "yuan"),
                    ("difference", "yuan"),
                    ("tolerance", "yuan"),
                    ("status_label", "text"),
                ],
                max_rows=50,
            )

    # --------------------------------------------------------------------------------------------- trend
    def trend(self) -> None:
        """Quarantined rows per load over the last ``trend_months`` loads up to the period."""
        with self.section("trend"):
            self._head("trend")
            end = self.as_of
            loads = [
                r
                for r in self._all_loads()
                if _date(r.get("as_of_date")) and _date(r.get("as_of_date")) <= end
            ]
            loads = loads[-int(self.params.trend_months) :]
            rows = []
            for r in loads:
                tables = (r.get("tables") or {}).values()
                read = sum(int(t.get("rows_read") or 0) for t in tables)
                q = sum(int(t.get("rows_quarantined") or 0) for t in tables)
                rows.append(
                    {
                        "as_of_date": str(r.get("as_of_date")),
                        "month": str(r.get("as_of_date"))[:7],
                        "rows_read": read,
                        "rows_quarantined": q,
                        "quarantine_share": q / read if read else None,
                    }
                )
            frame = self._frame(
                rows, ["as_of_date", "month", "rows_read", "rows_quarantined", "quarantine_share"]
            )
            self.table(
                "trend.loads",
                frame,
                [
                    ("as_of_date", "text"),
                    ("rows_read", "count"),
                    ("rows_quarantined", "count"),
                    ("quarantine_share", "percent"),
                ],
            )
            self.chart(
                "trend.quarantine",
                bar_chart(
                    frame,
                    "month",
                    "rows_quarantined",
                    self.t("dq.chart_trend", n=len(frame)),
                    self.t("col.rows_quarantined"),
                    vertical=True,
                ),
            )


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def bar_chart(
    frame: pd.DataFrame,
    label: str,
    value: str,
    title: str,
    value_title: str,
    *,
    color: str | None = None,
    vertical: bool = False,
) -> Any:
    """A bar per row of ``frame`` (in its order): ``label`` against ``value``.

    Parameters
    ----------
    frame : DataFrame
        The rows.
    label, value : str
        The category and the count columns.
    title, value_title : str
        The chart's title and the value axis' title.
    color : str, optional
        A column colouring the bars (with a legend).
    vertical : bool
        Columns (for a time axis) instead of horizontal bars.

    Returns
    -------
    altair.Chart
    """
    import altair as alt

    from cimlib.charts import CJK_FONT

    data = pd.DataFrame(
        {
            "label": frame[label].astype(str).to_numpy(),
            "value": pd.to_numeric(frame[value], errors="coerce").fillna(0).to_numpy(),
            **({"color": frame[color].astype(str).to_numpy()} if color else {}),
        }
    )
    order = list(dict.fromkeys(data["label"]))
    cat = (alt.X if vertical else alt.Y)(
        "label:N", sort=order, title=None, axis=alt.Axis(labelLimit=300, labelAngle=-45 if vertical else 0)
    )
    top = int(data["value"].max()) if len(data) else 0
    ticks = list(range(top + 1)) if top <= 8 else alt.Undefined  # whole rows only: no 0.5 ticks
    val = (alt.Y if vertical else alt.X)(
        "value:Q", title=value_title, axis=alt.Axis(format=",d", tickMinStep=1, values=ticks)
    )
    enc: dict[str, Any] = {"x": cat, "y": val} if vertical else {"y": cat, "x": val}
    if color:
        enc["color"] = alt.Color("color:N", title=None, legend=alt.Legend(orient="bottom"))
    enc["tooltip"] = [alt.Tooltip("label:N"), alt.Tooltip("value:Q", format=",d")]
    chart = alt.Chart(data).mark_bar(color="#c62828").encode(**enc)
    chart = chart.properties(
        title=title, width=420 if vertical else 380, height=220 if vertical else alt.Step(16)
    )
    return (
        chart.configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


__all__ = ["DQ_SECTIONS", "DataQualityReport", "bar_chart", "layer_of"]
