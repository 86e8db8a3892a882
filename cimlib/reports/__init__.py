"""Periodic reports: Papermill report jobs, their published folders, the data-quality gate, the monthly job.

``cim report NAME --period YYYY-MM --scope province|county:CODE`` (or ``--burst county``) runs a report
notebook of ``notebooks/reports/`` with typed parameters (:func:`report_params`), into an immutable folder
``outputs/reports/NAME/PERIOD/SCOPE/vN/`` (executed notebook, HTML without code, PDF, Excel attachments,
``figures.json`` and ``manifest.json``). ``cim run --period YYYY-MM`` is the whole monthly job
(:class:`MonthlyRun`). See ``docs/reports.md``.
"""

from cimlib.reports._gate import GateCheck, gate_checks, gate_failures
from cimlib.reports._params import (
    EXIT_DQ_GATE,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REPORT_FAILED,
    EXIT_USAGE,
    BaseReportParams,
    DataQualityParams,
    MonthlyPackParams,
    ReportDefinition,
    ReportError,
    ReportParamsError,
    ReportSettings,
    audience,
    load_report,
    load_report_settings,
    report_names,
    report_params,
)

_LAZY = {
    # the report documents import the analyses (pandas, Altair): loaded on first use, so `cim` stays quick
    "MonthlyPack": ("cimlib.reports._pack", "MonthlyPack"),
    "DataQualityReport": ("cimlib.reports._dq", "DataQualityReport"),
    "ReportDocument": ("cimlib.reports._document", "ReportDocument"),
    "run_report": ("cimlib.reports._runner", "run_report"),
    "RunSummary": ("cimlib.reports._runner", "RunSummary"),
    "DataQualityGateError": ("cimlib.reports._runner", "DataQualityGateError"),
    "ReportFailed": ("cimlib.reports._runner", "ReportFailed"),
    "ReportLocked": ("cimlib.reports._runner", "ReportLocked"),
    "MonthlyRun": ("cimlib.reports._monthly", "MonthlyRun"),
    "build_index": ("cimlib.reports._index", "build_index"),
    "notify_run": ("cimlib.reports._notify", "notify_run"),
    "ExportError": ("cimlib.reports._export", "ExportError"),
    "notebook_html": ("cimlib.reports._export", "notebook_html"),
    "html_to_pdf": ("cimlib.reports._export", "html_to_pdf"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cimlib.reports' has no attribute {name!r}")


__all__ = [
    "EXIT_DQ_GATE",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_REPORT_FAILED",
    "EXIT_USAGE",
    "BaseReportParams",
    "DataQualityGateError",
    "DataQualityParams",
    "DataQualityReport",
    "ExportError",
    "GateCheck",
    "MonthlyPack",
    "MonthlyPackParams",
    "MonthlyRun",
    "ReportDefinition",
    "ReportDocument",
    "ReportError",
    "ReportFailed",
    "ReportLocked",
    "ReportParamsError",
    "ReportSettings",
    "RunSummary",
    "audience",
    "build_index",
    "gate_checks",
    "gate_failures",
    "html_to_pdf",
    "load_report",
    "load_report_settings",
    "notebook_html",
    "notify_run",
    "report_names",
    "report_params",
    "run_report",
]
