"""The data-quality gate: what must hold before a report is published.

Three checks, each switchable in ``parameters/reports/settings.yaml`` (``gate:``):

* **GL tie-out** (``gl_tieout``): customer balances against the general ledger per branch and subject for
  the period, with the tolerances of ``parameters/provincial.yaml`` (a row fails above both).
* **Contract warnings** (``contract_warnings``): a model contract of severity ``warn`` that failed in the
  published build (an ``error`` contract that fails stops the build, so it never reaches a report).
* **Quarantine** (``max_quarantine_share``): for each table of the period's loads, quarantined rows as a
  share of rows read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from cimlib.config import Home, get_home
from cimlib.reports._params import Gate


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: ``name`` (``gl_tieout``, ``contracts``, ``quarantine``), its outcome, a
    one-line ``detail`` and the failing ``rows``."""

    name: str
    passed: bool
    detail: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _month_end(period: str) -> dt.date:
    y, m = int(period[:4]), int(period[5:7])
    nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def _load_reports_of(h: Home, period: str) -> list[dict[str, Any]]:
    from cimlib.ingest import load_reports

    return [r for r in load_reports(h) if str(r.get("as_of_date", "")).startswith(period)]


def quarantine_check(h: Home, period: str, max_share: float) -> GateCheck:
    """Quarantined rows per table of the period's loads against ``max_share`` of rows read."""
    rows = []
    loads = _load_reports_of(h, period)
    for r in loads:
        for table, tr in (r.get("tables") or {}).items():
            read = int(tr.get("rows_read") or 0)
            q = int(tr.get("rows_quarantined") or 0)
            share = q / read if read else 0.0
            if share > max_share:
                rows.append(
                    {
                        "as_of_date": r["as_of_date"],
                        "table": table,
                        "rows_read": read,
                        "rows_quarantined": q,
                        "share": round(share, 6),
                        "reasons": dict(tr.get("reasons") or {}),
                    }
                )
    if not loads:
        return GateCheck("quarantine", False, f"no load of {period} in the load reports")
    if rows:
        worst = max(rows, key=lambda x: x["share"])
        return GateCheck(
            "quarantine",
            False,
            f"{len(rows)} table(s) quarantined more than {max_share:.2%} of rows read; worst "
            f"{worst['table']} {worst['share']:.2%} "
            f"({worst['rows_quarantined']:,} of {worst['rows_read']:,})",
            rows,
        )
    return GateCheck("quarantine", True, f"every table of {period} within {max_share:.2%}")


def contract_check(current: dict[str, Any]) -> GateCheck:
    """The published build's contract tests that warned (failed with severity ``warn``), but the GL one."""
    results = (current.get("contracts") or {}).get("results") or []
    warned = [
        {
            "model": r["model"],
            "test": r["test"],
            "failing_rows": r.get("failing_rows"),
            "sample": r.get("sample", [])[:3],
        }
        for r in results
        if r.get("status") in ("warn", "fail") and "gl_ties_out" not in str(r.get("test"))
    ]
    n = len(results)
    if warned:
        names = ", ".join(f"{w['model']}: {w['test']}" for w in warned[:5])
        return GateCheck("contracts", False, f"{len(warned)} of {n} contract tests failed: {names}", warned)
    return GateCheck("contracts", True, f"all {n} contract tests passed")


def tieout_check(h: Home, period: str) -> GateCheck:
    """The GL tie-out of the period for the whole bank (tolerances of ``parameters/provincial.yaml``)."""
    from cimlib.access import service_principal
    from cimlib.analysis import check_gl_tieout

    bank = service_principal(
        "provincial_analyst", None, user_id="report:gate", display_name="DQ gate", home=h
    )
    s = check_gl_tieout(bank, period, home=h)
    rows = [{k: (float(v) if isinstance(v, int | float) else v) for k, v in r.items()} for r in s.failures]
    if s.ok:
        return GateCheck("gl_tieout", True, f"{s.n_checked} branch x subject rows tie out", [])
    return GateCheck("gl_tieout", False, s.message, rows)


def gate_checks(home: Home | str | None, period: str, gate: Gate) -> list[GateCheck]:
    """Run the gate for ``period`` on the published snapshot.

    Parameters
    ----------
    home : Home, str or None
        The installation.
    period : str
        ``YYYY-MM``.
    gate : Gate
        ``parameters/reports/settings.yaml``'s ``gate``.

    Returns
    -------
    list of GateCheck
        One per check; a switched-off check is listed as passed with ``enabled=False``.
    """
    from cimlib.engine import current_snapshot

    h = home if isinstance(home, Home) else get_home(home)
    current = current_snapshot(h) or {}
    out = []
    if gate.gl_tieout:
        out.append(tieout_check(h, period))
    else:
        out.append(GateCheck("gl_tieout", True, "not checked (gate.gl_tieout: false)", enabled=False))
    if gate.contract_warnings:
        out.append(contract_check(current))
    else:
        out.append(GateCheck("contracts", True, "not checked (gate.contract_warnings: false)", enabled=False))
    out.append(quarantine_check(h, period, gate.max_quarantine_share))
    return out


def gate_failures(checks: list[GateCheck]) -> list[str]:
    """One line per failed check: ``name: detail``."""
    return [f"{c.name}: {c.detail}" for c in checks if not c.passed]


__all__ = ["GateCheck", "contract_check", "gate_checks", "gate_failures", "quarantine_check", "tieout_check"]
