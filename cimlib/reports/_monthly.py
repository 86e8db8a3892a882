"""``cim run --period YYYY-MM``: the whole monthly job, restartable.

Steps, in order (each records itself in ``data/state/runs/<period>.json`` when it finishes):

``ingest``    load the period's as-of extracts from ``data/raw/<YYYY-MM-DD>/`` (idempotent)
``build``     build and publish a new warehouse snapshot
``params``    check every parameter file, then compute what the parameters decide for the month: the
              segmentation cube and the customer-value frames of the month and its comparison months
``churn``     fit the churn model when none exists (or ``refit``), and score the month
``targets``   run every target rule set for the month (hits per rule, bank-wide)
``reports``   the data-quality report; the monthly pack for the province and burst to every county
``notify``    mail the outcome (when ``parameters/reports/settings.yaml`` enables it)

A step whose inputs have not changed since it finished (its *key*: the loaded files for ingest, the
snapshot and the parameter files after that) is skipped, so rerunning after a failure carries on where it
stopped. ``force`` runs every step again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cimlib.config import Home, get_home
from cimlib.reports._params import (
    EXIT_DQ_GATE,
    EXIT_OK,
    EXIT_REPORT_FAILED,
    PERIOD_RE,
    ReportError,
    ReportParamsError,
)

log = logging.getLogger("cimlib.reports")
STEPS = ("ingest", "build", "params", "churn", "targets", "reports", "notify")


def state_path(home: Home, period: str) -> Path:
    """``data/state/runs/<period>.json``."""
    return home.state / "runs" / f"{period}.json"


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"steps": {}}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def parameters_digest(home: Home) -> str:
    """A digest of every file under ``parameters/`` (a changed rule or tier re-runs what depends on it)."""
    h = hashlib.sha256()
    for p in sorted(home.parameters.rglob("*.yaml")):
        h.update(p.relative_to(home.parameters).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def period_dates(raw: Path, period: str) -> list[Path]:
    """The as-of folders of ``period`` under ``raw`` (``YYYY-MM-DD``)."""
    return sorted(p for p in raw.glob(f"{period}-[0-3][0-9]") if p.is_dir())


class MonthlyRun:
    """The monthly job of one period (see the module docstring)."""

    def __init__(
        self,
        period: str,
        *,
        home: Home | str | None = None,
        raw: Path | None = None,
        locale: str = "zh_CN",
        force: bool = False,
        refit: bool = False,
        allow_dq_failures: bool = False,
        incremental: bool | None = None,
        workers: int | None = None,
        pdf: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not PERIOD_RE.match(period):
            raise ReportParamsError(f"period {period!r}: expected YYYY-MM")
        self.period = period
        self.home = home if isinstance(home, Home) else get_home(home)
        self.raw = raw or self.home.raw
        self.locale = locale
        self.force = force
        self.refit = refit
        self.allow_dq_failures = allow_dq_failures
        self.incremental = incremental
        self.workers = workers
        self.pdf = pdf
        self.say = say or (lambda _m: None)
        self.path = state_path(self.home, period)
        self.state = {"period": period, "steps": {}} if force else _read_state(self.path)
        self.state.setdefault("steps", {})
        self.state["period"] = period
        self.summaries: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------ plumbing
    def _key(self, step: str) -> str:
        if step == "ingest":
            files = []
            for d in period_dates(self.raw, self.period):
                for f in sorted(d.iterdir()):
                    st = f.stat()
                    files.append(f"{d.name}/{f.name}:{st.st_size}:{int(st.st_mtime)}")
            return hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
        from cimlib.engine import current_snapshot

        cur = current_snapshot(self.home) or {}
        if step == "build":
            return str(self.state["steps"].get("ingest", {}).get("key"))
        return f"{cur.get('snapshot_id')}:{parameters_digest(self.home)}"

    def _done(self, step: str, key: str) -> bool:
        s = self.state["steps"].get(step)
        return bool(s and s.get("status") == "done" and s.get("key") == key)

    def _record(self, step: str, key: str, status: str, seconds: float, result: Any) -> None:
        self.state["steps"][step] = {
            "status": status,
            "key": key,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "result": result,
        }
        _write_state(self.path, self.state)

    def run(self, only: list[str] | None = None) -> int:
        """Run the steps not done yet; return the exit code (0, 1 report failed, 2 bad input, 3 DQ gate).

        Parameters
        ----------
        only : list of str, optional
            Run only these steps (in their order); the others are neither run nor checked.
        """
        from cimlib.reports._runner import report_lock

        t0 = time.perf_counter()
        code = EXIT_OK
        with report_lock(self.home, f"run-{self.period}"):
            for step in STEPS:
                if only and step not in only:
                    continue
                key = self._key(step)
                if step != "notify" and not self.force and self._done(step, key):
                    self.say(f"{step}: done already (skipped)")
                    log.info(
                        "step skipped", extra={"event": "step_skipped", "step": step, "period": self.period}
                    )
                    continue
                self.say(f"{step} ...")
                t = time.perf_counter()
                try:
                    result, step_code = getattr(self, f"step_{step}")(code)
                except ReportError as exc:
                    self._record(step, key, "failed", time.perf_counter() - t, {"error": str(exc)})
                    log.error("step failed", extra={"event": "step_failed", "step": step, "error": str(exc)})
                    self.say(f"{step}: FAILED: {exc}")
                    code = exc.exit_code
                    if step in ("reports",):
                        self._notify_after_failure(code, str(exc))
                    return code
                except Exception as exc:
                    self._record(step, key, "failed", time.perf_counter() - t, {"error": f"{exc}"})
                    log.error("step failed", extra={"event": "step_failed", "step": step, "error": str(exc)})
                    self.say(f"{step}: FAILED: {type(exc).__name__}: {exc}")
                    return EXIT_REPORT_FAILED
                secs = time.perf_counter() - t
                status = "done" if step_code == EXIT_OK else "failed"
                if step != "notify":
                    self._record(step, self._key(step) if step == "ingest" else key, status, secs, result)
                log.info(
                    "step finished",
                    extra={"event": "step_done", "step": step, "seconds": round(secs, 3), "status": status},
                )
                self.say(f"{step}: {status} in {secs:.1f} s")
                if step_code != EXIT_OK:
                    code = step_code
                    if step != "reports":
                        return code
        self.state["seconds"] = round(time.perf_counter() - t0, 3)
        _write_state(self.path, self.state)
        return code

    # --------------------------------------------------------------------------------------------- steps
    def _bank(self) -> Any:
        """The job's principal: the provincial role, all orgs (the model and the lists are bank-wide)."""
        from cimlib.access import service_principal
        from cimlib.reports._params import load_report_settings

        role = load_report_settings(self.home).audiences.get("province", "provincial_analyst")
        return service_principal(
            role, None, user_id="job:monthly_run", display_name=f"monthly run {self.period}", home=self.home
        )

    def step_ingest(self, _code: int) -> tuple[Any, int]:
        """Load the period's as-of folders (idempotent: an unchanged file loads nothing twice)."""
        from cimlib.ingest import IngestError, ingest_date

        dates = period_dates(self.raw, self.period)
        if not dates:
            raise ReportParamsError(f"no extracts of {self.period} in {self.raw} (folders YYYY-MM-DD)")
        out = []
        for d in dates:
            try:
                r = ingest_date(d, self.home)
            except IngestError as exc:
                raise ReportError(f"ingest {d.name}: {exc}") from exc
            tables = r.get("tables", {})
            out.append(
                {
                    "as_of_date": r["as_of_date"],
                    "unchanged": r.get("unchanged"),
                    "rows_read": sum(t["rows_read"] for t in tables.values()),
                    "rows_quarantined": sum(t["rows_quarantined"] for t in tables.values()),
                }
            )
        return out, EXIT_OK

    def step_build(self, _code: int) -> tuple[Any, int]:
        """Build and publish a snapshot containing the period."""
        from cimlib.engine import BuildError, build

        try:
            s = build(self.home, incremental=self.incremental)
        except BuildError as exc:
            raise ReportError(f"build: {exc}") from exc
        if not any(str(d).startswith(self.period) for d in s.get("as_of_dates", [])):
            raise ReportError(f"build: the published snapshot has no date of {self.period}")
        return {"snapshot_id": s["snapshot_id"], "seconds": s.get("seconds"), "mode": s.get("mode")}, EXIT_OK

    def step_params(self, _code: int) -> tuple[Any, int]:
        """Check the parameter files, then build the month's cube and customer-value frames."""
        from cimlib.config._params import check_parameters
        from cimlib.reports._runner import warm_caches

        problems = check_parameters(self.home)
        if problems:
            lines = "; ".join(f"{p.file}: {p.message}" for p in problems[:10])
            raise ReportParamsError(f"parameters: {lines}")
        # the same caches a burst warms: the value frames of the month and its comparison months, the cube
        return {"cache_seconds": round(warm_caches(self.home, self.period), 3)}, EXIT_OK

    def step_churn(self, _code: int) -> tuple[Any, int]:
        """Fit the churn model when there is none (or ``refit``), then score the period."""
        from cimlib.churn import backtest, load_churn_params, score
        from cimlib.churn._store import latest_model

        bank = self._bank()
        name, _ = load_churn_params(self.home).definition(None)
        fitted = None
        t = time.perf_counter()
        if self.refit or latest_model(self.home.root / "outputs" / "models" / "churn" / name) is None:
            bt = backtest(bank, None, home=self.home)
            roc = bt.metrics.get("churn_model", {}).get("roc_auc")
            fitted = {
                "model_dir": str(bt.model_dir),
                "roc_auc": roc,
                "seconds": round(time.perf_counter() - t, 3),
            }
        out = score(bank, self.period, None, home=self.home)
        return {
            "fitted": fitted,
            "model_version": out["model_version"],
            "n_scored": out["n_scored"],
            "score_seconds": {k: round(v, 3) for k, v in out["seconds"].items()},
        }, EXIT_OK

    def step_targets(self, _code: int) -> tuple[Any, int]:
        """Run every target rule set for the month, bank-wide (hits per rule)."""
        from cimlib.targeting import counts, list_rulesets

        bank = self._bank()
        hits = {}
        for rs in list_rulesets(self.home):
            frame = counts(rs, bank, self.period, home=self.home)
            rules = [
                c
                for c in frame.columns
                if c not in ("county_code", "county_name", "home_org_code", "home_org_name", "n_customers")
            ]
            hits[rs] = {
                "customers": int(frame["n_customers"].sum()) if len(frame) else 0,
                "per_rule": {r: int(frame[r].sum()) for r in rules},
            }
        return hits, EXIT_OK

    def step_reports(self, _code: int) -> tuple[Any, int]:
        """The data-quality report, then the monthly pack for the province and every county."""
        from cimlib.reports._runner import DataQualityGateError, run_report

        out: dict[str, Any] = {}
        code = EXIT_OK
        dq = run_report(
            "data_quality",
            period=self.period,
            scope="province",
            locale=self.locale,
            home=self.home,
            pdf=self.pdf,
        )
        self.summaries.append(dq.as_dict())
        out["data_quality"] = dq.as_dict()
        code = max(code, dq.exit_code)
        try:  # the province's pack runs in the same pool as the counties' (one burst, not two runs)
            packs = run_report(
                "monthly_pack",
                period=self.period,
                burst_by="county",
                with_province=True,
                locale=self.locale,
                home=self.home,
                allow_dq_failures=self.allow_dq_failures,
                pdf=self.pdf,
                workers=self.workers,
            )
            self.summaries.append(packs.as_dict())
        except DataQualityGateError:
            self._notify("failure")
            raise
        out["monthly_pack"] = packs.as_dict()
        code = max(code, packs.exit_code)
        return out, code

    def step_notify(self, code: int) -> tuple[Any, int]:
        """Mail the outcome (does nothing unless enabled in the settings; never fails the run)."""
        return self._notify("success" if code == EXIT_OK else "failure"), EXIT_OK

    # ------------------------------------------------------------------------------------------- notify
    def _notify_after_failure(self, code: int, message: str) -> None:
        if code != EXIT_DQ_GATE:  # the gate failure notified already
            self._notify("failure", error=message)

    def _notify(self, outcome: str, error: str | None = None) -> dict[str, Any]:
        from cimlib.reports._cli import notify_summaries

        return notify_summaries(
            self.home,
            self.summaries,
            outcome=outcome,
            lang=self.locale,
            command=f"cim run --period {self.period}",
            period=self.period,
            error=error,
        )


__all__ = ["STEPS", "MonthlyRun", "parameters_digest", "period_dates", "state_path"]
