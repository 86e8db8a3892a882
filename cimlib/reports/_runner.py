"""``cim report``: run a report notebook with Papermill into an immutable, versioned folder.

One run of report NAME for PERIOD and SCOPE:

1. **Check** the parameters against the report's model (an unknown or ill-typed one stops here, before any
   kernel), resolve the published snapshot and the period, and run the data-quality gate.
2. **Lock** ``NAME`` + ``PERIOD`` (``outputs/reports/.locks/``): a second run of the same report and period
   exits with :data:`EXIT_LOCKED` instead of colliding. The lock is an ``flock``, so a killed run frees it.
3. **Skip** when a published version has the same snapshot and parameter hash (a restarted monthly job does
   not publish twice); ``force`` publishes another version anyway.
4. **Execute** the notebook with Papermill (start and cell timeouts) into a staging folder, then render the
   HTML without code and the PDF, write ``manifest.json`` with the checksum of every file, and rename the
   staging folder to ``vN`` (atomic). A version is never overwritten.
5. **On failure** the partial notebook and ``error.json`` (which cell, which error) go to ``failed/<stamp>/``.

Bursts (:func:`burst`) run one report per county in worker processes, each reusing one kernel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimlib.config import Home, get_home
from cimlib.reports._params import (
    EXIT_DQ_GATE,
    EXIT_LOCKED,
    ReportDefinition,
    ReportError,
    ReportParamsError,
    load_report,
    load_report_settings,
    params_hash,
    report_params,
    scope_dir_name,
)

log = logging.getLogger("cimlib.reports")
_REPO_ROOT = Path(__file__).resolve().parents[2]


class DataQualityGateError(ReportError):
    """The data-quality gate failed and ``--allow-dq-failures`` was not given: nothing was published."""

    exit_code = EXIT_DQ_GATE

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


class ReportLocked(ReportError):
    """Another run of the same report and period holds the lock."""

    exit_code = EXIT_LOCKED


class ReportFailed(ReportError):
    """A cell failed or timed out, or the HTML or PDF could not be made; ``folder`` keeps the evidence."""

    def __init__(self, message: str, folder: Path | None = None, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.folder = folder
        self.error = error or {}


@dataclass
class Job:
    """One report to produce (what a worker process needs; picklable)."""

    name: str
    params: dict[str, Any]
    home_root: str
    snapshot_id: str
    as_of: str
    dq: dict[str, Any]
    force: bool = False
    pdf: bool = True


@dataclass
class JobResult:
    """What became of a job: ``published``, ``unchanged`` (already published) or ``failed``."""

    name: str
    scope: str
    period: str
    status: str
    folder: str | None = None
    version: int | None = None
    seconds: float = 0.0
    error: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            k: getattr(self, k)
            for k in ("name", "scope", "period", "status", "folder", "version", "seconds", "error", "timings")
        }


# --------------------------------------------------------------------------------------------- helpers
def _home(home: Home | str | None) -> Home:
    return home if isinstance(home, Home) else get_home(home)


def output_root(home: Home | str | None = None) -> Path:
    """``outputs/reports`` of the installation (``output_root`` of the settings)."""
    h = _home(home)
    root = Path(load_report_settings(h).output_root)
    return root if root.is_absolute() else h.root / root


def notebooks_dir(home: Home | str | None = None) -> Path:
    """The report notebooks' folder: the installation's ``notebooks/`` when it has one, else the project's."""
    h = _home(home)
    own = h.root / "notebooks"
    return own if (own / "reports").is_dir() else _REPO_ROOT / "notebooks"


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")[:-4] + "Z"


def code_version() -> dict[str, Any]:
    """The cimlib version and, in a git checkout, the commit and whether the tree has changes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("cimlib")
    except PackageNotFoundError:
        v = "unknown"
    out: dict[str, Any] = {"cimlib": v, "git": None, "dirty": None}
    if (_REPO_ROOT / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(_REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(_REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            out.update(git=sha, dirty=bool(dirty))
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def report_lock(home: Home | str | None, key: str) -> Iterator[Path]:
    """Hold ``outputs/reports/.locks/<key>.lock`` for the block; :class:`ReportLocked` when it is taken."""
    d = output_root(home) / ".locks"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}.lock"
    fh = path.open("a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ReportLocked(
                f"{key}: another run holds the lock ({holder}); try again when it ends"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {_utc_now()}")
        fh.flush()
        yield path
    finally:
        fh.close()


def versions(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    """The published versions in a scope folder: ``(N, manifest)``, oldest first."""
    out = []
    for d in folder.glob("v*") if folder.is_dir() else []:
        if d.is_dir() and d.name[1:].isdigit():
            try:
                out.append((int(d.name[1:]), json.loads((d / "manifest.json").read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                out.append((int(d.name[1:]), {}))
    return sorted(out, key=lambda x: x[0])


# ---------------------------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """What a run will do, before it does anything (``--dry-run`` prints it)."""

    name: str
    definition: ReportDefinition
    period: str
    as_of: str
    snapshot_id: str
    jobs: list[Job]
    gate: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "report": self.name,
            "period": self.period,
            "as_of": self.as_of,
            "snapshot_id": self.snapshot_id,
            "gate": self.gate,
            "jobs": [
                {
                    "scope": j.params["scope"],
                    "locale": j.params["locale"],
                    "params": j.params,
                    "folder": str(scope_folder(j)),
                    "existing": [v for v, _ in versions(scope_folder(j))],
                }
                for j in self.jobs
            ],
        }


def scope_folder(job: Job) -> Path:
    """``outputs/reports/NAME/PERIOD/SCOPE_DIR`` of a job."""
    return output_root(job.home_root) / job.name / job.params["period"] / scope_dir_name(job.params["scope"])


def _period_of(current: dict[str, Any], period: str | None) -> tuple[str, str]:
    dates = sorted(current.get("as_of_dates") or [])
    if not dates:
        raise ReportParamsError("the published warehouse has no as-of dates")
    months = {d[:7]: d for d in dates}  # the month's last loaded date
    if period is None:
        period = max(months)
    if period not in months:
        raise ReportParamsError(
            f"period {period}: not in the published warehouse (months {min(months)}..{max(months)})"
        )
    return period, months[period]


def county_scopes(home: Home | str | None = None) -> list[str]:
    """``county:CODE`` of every county bank in the published warehouse."""
    from cimlib.customer import _data as D

    snap = D.snapshot(_home(home))
    _, rows = snap.query("SELECT org_code FROM core_org WHERE org_level = 'COUNTY' ORDER BY org_code")
    return [f"county:{r[0]}" for r in rows]


def plan(
    name: str,
    *,
    period: str | None,
    scopes: list[str],
    locale: str = "en",
    options: dict[str, Any] | None = None,
    home: Home | str | None = None,
    allow_dq_failures: bool = False,
    force: bool = False,
    pdf: bool = True,
    gate: bool = True,
) -> Plan:
    """Validate everything and decide the jobs; raises before anything runs.

    Parameters
    ----------
    name : str
        The report (``parameters/reports/<name>.yaml``).
    period : str or None
        ``YYYY-MM``; the latest month of the published snapshot when None.
    scopes : list of str
        ``province`` and/or ``county:CODE``.
    locale, options, home, allow_dq_failures, force, pdf
        As :func:`run_report`.
    gate : bool
        Run the data-quality gate (reports whose definition has ``gate: true``).

    Returns
    -------
    Plan

    Raises
    ------
    ReportParamsError
        Bad report, parameter, period or scope.
    DataQualityGateError
        The gate failed and ``allow_dq_failures`` is False.
    """
    from cimlib.engine import current_snapshot
    from cimlib.reports._gate import gate_checks, gate_failures
    from cimlib.reports._params import audience

    h = _home(home)
    d = load_report(name, h)
    current = current_snapshot(h)
    if not current:
        raise ReportParamsError("no published warehouse: run `cim build` first")
    period, as_of = _period_of(current, period)
    all_params = [
        report_params(name, period=period, scope=s, locale=locale, options=options, home=h) for s in scopes
    ]
    for p in all_params:  # a county the warehouse lacks is bad input, found before any kernel starts
        audience(p.scope, name, h)
    settings = load_report_settings(h)
    dq: dict[str, Any] = {"gate": bool(d.gate and gate), "checks": [], "failures": [], "allowed": False}
    if dq["gate"]:
        checks = gate_checks(h, period, settings.gate)
        dq["checks"] = [c.as_dict() for c in checks]
        dq["failures"] = gate_failures(checks)
        if dq["failures"]:
            log.warning(
                "data-quality gate failed",
                extra={"event": "dq_gate", "report": name, "period": period, "failures": dq["failures"]},
            )
            if not allow_dq_failures:
                raise DataQualityGateError(
                    f"{name} {period}: the data-quality gate failed, nothing published (run "
                    "`cim report data_quality` for details, or --allow-dq-failures to publish with a "
                    "warning on the first page):\n  " + "\n  ".join(dq["failures"]),
                    dq["failures"],
                )
            dq["allowed"] = True
    jobs = []
    for p in all_params:
        values = p.model_dump(mode="json")
        values.update(snapshot_id=current["snapshot_id"], dq_failures=list(dq["failures"]))
        jobs.append(
            Job(
                name=name,
                params=values,
                home_root=str(h.root),
                snapshot_id=current["snapshot_id"],
                as_of=as_of,
                dq=dq,
                force=force,
                pdf=pdf,
            )
        )
    return Plan(name, d, period, as_of, current["snapshot_id"], jobs, dq)


# ---------------------------------------------------------------------------------------------- running
def _failed_cell(nb: Any) -> dict[str, Any]:
    """The failed or still-running code cell of a partial notebook (Papermill marks each cell's status)."""
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                return {
                    "cell_index": i,
                    "source": cell.get("source", ""),
                    "ename": o.get("ename"),
                    "evalue": o.get("evalue"),
                }
        if cell.get("metadata", {}).get("papermill", {}).get("status") in ("running", "failed"):
            return {"cell_index": i, "source": cell.get("source", "")}
    return {}


def _cell_timings(nb: Any) -> list[dict[str, Any]]:
    out = []
    for i, cell in enumerate(nb.cells):
        pm = cell.get("metadata", {}).get("papermill", {})
        if cell.get("cell_type") == "code" and pm.get("duration") is not None:
            first = next((ln for ln in cell.get("source", "").splitlines() if ln.strip()), "")
            out.append({"index": i, "source": first[:80], "seconds": round(float(pm["duration"]), 3)})
    return out


def execute_job(job: Job, pool: Any) -> JobResult:
    """Produce one report (the worker's part): execute, render, write the manifest, publish ``vN``.

    Parameters
    ----------
    job : Job
        From :func:`plan`.
    pool : KernelPool
        The kernel to run on (reused between jobs of one worker).

    Returns
    -------
    JobResult
        ``published`` or ``unchanged``; a failure is returned as ``failed`` with the folder of the partial
        notebook (the caller decides the exit code).
    """
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from cimlib.reports._kernel import ENGINE_NAME, KERNEL_NAME
    from cimlib.reports._params import PARAM_MODELS

    t0 = time.perf_counter()
    p = job.params
    folder = scope_folder(job)
    res = JobResult(job.name, p["scope"], p["period"], "failed")
    phash = params_hash(PARAM_MODELS[job.name].model_validate(p))
    existing = versions(folder)
    for v, m in reversed(existing):
        if not job.force and m.get("snapshot_id") == job.snapshot_id and m.get("params_hash") == phash:
            res.status, res.folder, res.version = "unchanged", str(folder / f"v{v}"), v
            res.manifest = m
            log.info(
                "already published",
                extra={
                    "event": "unchanged",
                    "report": job.name,
                    "scope": p["scope"],
                    "period": p["period"],
                    "version": v,
                },
            )
            return res
    version = (existing[-1][0] if existing else 0) + 1
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    params = {**p, "out_dir": str(staging)}
    settings = load_report_settings(job.home_root)
    d = load_report(job.name, job.home_root)
    nb_in = notebooks_dir(job.home_root) / d.notebook
    nb_out = staging / f"{job.name}.ipynb"
    timings: dict[str, Any] = {}
    log.info(
        "report started",
        extra={
            "event": "start",
            "report": job.name,
            "scope": p["scope"],
            "period": p["period"],
            "version": version,
        },
    )
    try:
        km, timings["kernel"] = pool.acquire()
        t1 = time.perf_counter()
        try:
            nb = pm.execute_notebook(
                str(nb_in),
                str(nb_out),
                parameters=params,
                engine_name=ENGINE_NAME,
                km=km,
                kernel_name=KERNEL_NAME,
                language="python",
                progress_bar=False,
                start_timeout=settings.timeouts.start_seconds,
                execution_timeout=settings.timeouts.cell_seconds,
            )
        except PapermillExecutionError as exc:
            pool.discard()
            first = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "")
            # Papermill numbers the cells of the notebook as it ran it; the saved partial notebook also has
            # its error banner on top, so name the cell by its index in the file kept under failed/
            partial = nbformat.read(nb_out, as_version=4) if nb_out.exists() else None
            where = _failed_cell(partial) if partial else {}
            exc.cell_index = where.get("cell_index", exc.cell_index)
            err = {
                "cell_index": exc.cell_index,
                "exec_count": exc.exec_count,
                "source": exc.source,
                "ename": exc.ename,
                "evalue": exc.evalue,
                "traceback": exc.traceback,
            }
            raise ReportFailed(
                f"cell {exc.cell_index} ({first.strip()[:60]}) failed: {exc.ename}: {exc.evalue}", error=err
            ) from None
        except Exception as exc:  # timeouts, a dead kernel: the partial notebook says where it stopped
            pool.discard()
            partial = nbformat.read(nb_out, as_version=4) if nb_out.exists() else None
            where_cell = _failed_cell(partial) if partial else {}
            if partial is not None and not where_cell:
                # a timed-out cell is marked completed, without an error: it is the last one with a start time
                started = [
                    i
                    for i, c in enumerate(partial.cells)
                    if c.get("cell_type") == "code"
                    and c.get("metadata", {}).get("papermill", {}).get("start_time") is not None
                ]
                if started:
                    i = started[-1]
                    where_cell = {"cell_index": i, "source": partial.cells[i].get("source", "")}
                    partial.cells[i].setdefault("outputs", []).append(
                        nbformat.v4.new_output(
                            "error", ename=type(exc).__name__, evalue=str(exc)[:2000], traceback=[]
                        )
                    )
                    nbformat.write(partial, nb_out)
            err = {**where_cell, "ename": type(exc).__name__, "evalue": str(exc)[:2000]}
            where = f"cell {err['cell_index']}" if "cell_index" in err else "the notebook"
            raise ReportFailed(f"{where} failed: {type(exc).__name__}: {str(exc)[:300]}", error=err) from None
        timings["execute"] = round(time.perf_counter() - t1, 3)
        timings["cells"] = _cell_timings(nb)
        _render(job, d, nb, staging, timings, settings.timeouts.render_seconds)
        manifest = _manifest(job, d, staging, version, phash, timings, time.perf_counter() - t0)
        (staging / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        final = folder / f"v{version}"
        os.rename(staging, final)  # atomic; fails rather than overwrite when vN appeared meanwhile
        res.status, res.folder, res.version, res.manifest = "published", str(final), version, manifest
        res.timings = timings
        log.info(
            "report published",
            extra={
                "event": "published",
                "report": job.name,
                "scope": p["scope"],
                "period": p["period"],
                "version": version,
                "seconds": manifest["timings"]["total"],
            },
        )
    except ReportFailed as exc:
        res.error = str(exc)
        res.folder = str(_keep_failed(job, staging, exc.error, str(exc)))
        log.error(
            "report failed",
            extra={
                "event": "failed",
                "report": job.name,
                "scope": p["scope"],
                "period": p["period"],
                "error": str(exc),
                "folder": res.folder,
            },
        )
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        res.folder = str(
            _keep_failed(job, staging, {"ename": type(exc).__name__, "evalue": str(exc)}, res.error)
        )
        log.error(
            "report failed",
            extra={
                "event": "failed",
                "report": job.name,
                "scope": p["scope"],
                "period": p["period"],
                "error": res.error,
                "folder": res.folder,
            },
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _render(
    job: Job, d: ReportDefinition, nb: Any, staging: Path, timings: dict[str, Any], timeout: float
) -> None:
    from cimlib.reports._export import html_to_pdf, write_html

    lang = job.params["locale"]
    title = f"{d.title[lang]} {job.params['period']}"
    t = time.perf_counter()
    try:
        html = write_html(nb, staging / f"{job.name}.html", lang=lang, title=title)
    except ReportError as exc:
        raise ReportFailed(f"HTML: {exc}", error={"ename": "HTML", "evalue": str(exc)}) from None
    timings["html"] = round(time.perf_counter() - t, 3)
    if job.pdf:
        t = time.perf_counter()
        try:
            html_to_pdf(html, staging / f"{job.name}.pdf", timeout=timeout)
        except ReportError as exc:
            raise ReportFailed(f"PDF: {exc}", error={"ename": "PDF", "evalue": str(exc)}) from None
        timings["pdf"] = round(time.perf_counter() - t, 3)


def _manifest(
    job: Job,
    d: ReportDefinition,
    staging: Path,
    version: int,
    phash: str,
    timings: dict[str, Any],
    total: float,
) -> dict[str, Any]:
    from cimlib.reports._params import audience

    p = job.params
    who = audience(p["scope"], job.name, job.home_root)
    files = {}
    for f in sorted(staging.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            files[f.relative_to(staging).as_posix()] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
    fig = staging / "figures.json"
    label = "province" if p["scope"] == "province" else f"{who.org_name} ({who.org_code})"
    return {
        "manifest_version": 1,
        "report": job.name,
        "title": dict(d.title),
        "period": p["period"],
        "scope": p["scope"],
        "scope_dir": scope_dir_name(p["scope"]),
        "scope_label": label,
        "locale": p["locale"],
        "version": version,
        "status": "published",
        "snapshot_id": job.snapshot_id,
        "as_of": job.as_of,
        "params": {k: v for k, v in p.items() if k != "out_dir"},
        "params_hash": phash,
        "code_version": code_version(),
        "dq": job.dq,
        "audience": {"role": who.role, "org_code": who.org_code},
        "timings": {**timings, "total": round(total, 3)},
        "files": files,
        "figures_sha256": sha256_file(fig) if fig.exists() else None,
        "created_at": _utc_now(),
    }


def _keep_failed(job: Job, staging: Path, error: dict[str, Any], message: str) -> Path:
    """Move what a failed run left to ``failed/<stamp>/`` with ``error.json``."""
    dest = scope_folder(job) / "failed" / _stamp()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if staging.exists():
        os.rename(staging, dest)
    else:
        dest.mkdir(parents=True)
    info = {
        "report": job.name,
        "period": job.params["period"],
        "scope": job.params["scope"],
        "snapshot_id": job.snapshot_id,
        "message": message,
        "created_at": _utc_now(),
        **error,
    }
    (dest / "error.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )
    return dest


# --------------------------------------------------------------------------------------------- workers
_worker_pool: Any = None


def _worker_init(env: dict[str, str], start_timeout: float, log_dir: str | None) -> None:
    global _worker_pool
    import atexit

    from cimlib.reports._kernel import KernelPool

    logging.basicConfig(level=logging.WARNING)
    if log_dir:  # the same JSON log file and run id as the parent (appends of one line are atomic)
        from cimlib.reports._log import setup_run_logging

        setup_run_logging(Path(log_dir), run_id=os.environ.get("CIM_RUN_ID"))
    _worker_pool = KernelPool(env, start_timeout)
    atexit.register(_worker_pool.close)


def _worker_run(job: Job) -> JobResult:
    return execute_job(job, _worker_pool)


def kernel_env(home: Home) -> dict[str, str]:
    """The environment of report kernels: the installation, and one DuckDB reader per kernel."""
    return {"CIM_HOME": str(home.root)}


def run_jobs(
    jobs: list[Job],
    home: Home | str | None = None,
    *,
    workers: int = 1,
    on_done: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run jobs on ``workers`` reused kernels (one in this process, or worker processes for more).

    Parameters
    ----------
    jobs : list of Job
        From :func:`plan`.
    home : Home, str or None
        The installation.
    workers : int
        Parallel reports; each worker process keeps one kernel for all its reports.
    on_done : callable, optional
        Called with each result as it finishes (progress bars).

    Returns
    -------
    list of JobResult
        In the order of ``jobs``.
    """
    from cimlib.reports._kernel import KernelPool

    h = _home(home)
    settings = load_report_settings(h)
    env = kernel_env(h)
    if workers <= 1 or len(jobs) <= 1:
        pool = KernelPool(env, settings.timeouts.start_seconds)
        out = []
        try:
            for j in jobs:
                r = execute_job(j, pool)
                out.append(r)
                if on_done:
                    on_done(r)
        finally:
            pool.close()
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    logged = any(getattr(x, "_cim_run", False) for x in log.handlers)
    log_dir = str(output_root(h) / "_logs") if logged else None

    results: dict[int, JobResult] = {}
    ctx = mp.get_context("spawn")  # the parent holds DuckDB threads; never fork them
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(env, settings.timeouts.start_seconds, log_dir),
    ) as ex:
        futures = {ex.submit(_worker_run, j): i for i, j in enumerate(jobs)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                r = fut.result()
            except Exception as exc:  # a worker died: the job is a failure, the others go on
                j = jobs[i]
                r = JobResult(
                    j.name,
                    j.params["scope"],
                    j.params["period"],
                    "failed",
                    error=f"worker died: {type(exc).__name__}: {exc}",
                )
            results[i] = r
            if on_done:
                on_done(r)
    return [results[i] for i in range(len(jobs))]


def burst_workers(home: Home | str | None, n_jobs: int, workers: int | None = None) -> int:
    """Workers of a burst: ``workers``, else the settings' ``burst_workers`` (``auto`` = the cores)."""
    if workers is None:
        w = load_report_settings(home).burst_workers
        workers = (os.cpu_count() or 1) if w == "auto" else int(w)
    return max(1, min(workers, n_jobs))


def warm_caches(home: Home | str | None, period: str) -> float:
    """Compute the month's shared caches once before a burst (the customer-value frames of the period and
    its comparison months, and the month's segmentation cube), so the workers do not each compute them.
    Returns the seconds spent."""
    from cimlib.analysis._common import comparison_dates
    from cimlib.customer import _data as D
    from cimlib.value._tiers import value_params, value_table

    t0 = time.perf_counter()
    h = _home(home)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, period)
    available = D.as_of_dates(snap)
    params = value_params(h)
    days = {d for d in comparison_dates(day, available or [day]).values() if d is not None}
    for d in sorted(days):
        value_table(h, snap, params, d)
    from cimlib.segmentation import build_cube

    build_cube(h, day)  # the segmentation highlights pivot the month's cube (about 8 s at 1M to build)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- entry points
@dataclass
class RunSummary:
    """The outcome of :func:`run_report` or :func:`burst`: each job's result and the exit code."""

    report: str
    period: str
    results: list[JobResult]
    seconds: float
    dq: dict[str, Any]
    index: str | None = None
    warm_seconds: float = 0.0
    workers: int = 1

    @property
    def failed(self) -> list[JobResult]:
        """The jobs that failed."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every job published (or was already published), else 1 (a report failed)."""
        from cimlib.reports._params import EXIT_OK, EXIT_REPORT_FAILED

        return EXIT_REPORT_FAILED if self.failed else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the ``--json`` output and the notification's input)."""
        return {
            "report": self.report,
            "period": self.period,
            "seconds": round(self.seconds, 3),
            "warm_seconds": round(self.warm_seconds, 3),
            "workers": self.workers,
            "dq": self.dq,
            "index": self.index,
            "published": sum(r.status == "published" for r in self.results),
            "unchanged": sum(r.status == "unchanged" for r in self.results),
            "failed": len(self.failed),
            "results": [r.as_dict() for r in self.results],
        }


def run_report(
    name: str,
    *,
    period: str | None = None,
    scope: str = "province",
    burst_by: str | None = None,
    locale: str = "en",
    options: dict[str, Any] | None = None,
    home: Home | str | None = None,
    allow_dq_failures: bool = False,
    force: bool = False,
    pdf: bool = True,
    workers: int | None = None,
    on_done: Callable[[JobResult], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    with_province: bool = False,
) -> RunSummary:
    """Produce a report for one scope, or burst it to every county, and publish it.

    Parameters
    ----------
    name : str
        The report (``parameters/reports/<name>.yaml``).
    period : str, optional
        ``YYYY-MM``; the latest month of the published snapshot when None.
    scope : str
        ``province`` or ``county:CODE`` (ignored with ``burst_by``).
    burst_by : str, optional
        ``county``: one report per county bank of the warehouse, in parallel.
    locale : str
        ``en`` or ``zh_CN``.
    options : dict, optional
        The report's options (``top_n`` ...); checked against its parameter model first.
    home : Home, str or None
        The installation.
    allow_dq_failures : bool
        Publish despite a failed data-quality gate; the report says so on its first page.
    force : bool
        Publish a new version even when one exists for this snapshot and these parameters.
    pdf : bool
        Also print the PDF (needs Chromium).
    workers : int, optional
        Parallel reports of a burst (default: the settings' ``burst_workers``).
    on_done : callable, optional
        Called with each :class:`JobResult` (progress).
    on_plan : callable, optional
        Called with the :class:`Plan` before anything runs.
    with_province : bool
        With ``burst_by``: the provincial edition too, in the same pool of workers (``cim run`` does this,
        so the province's report runs beside the counties' instead of before them).

    Returns
    -------
    RunSummary

    Raises
    ------
    ReportParamsError
        Bad input (exit 2), before any kernel starts.
    DataQualityGateError
        The gate failed (exit 3); nothing published.
    ReportLocked
        Another run of this report and period is running (exit 75).
    """
    t0 = time.perf_counter()
    h = _home(home)
    if burst_by not in (None, "county"):
        raise ReportParamsError(f"--burst {burst_by!r}: only county is supported")
    scopes = (["province"] if with_province else []) + county_scopes(h) if burst_by else [scope]
    pl = plan(name, period=period, scopes=scopes, locale=locale, options=options, home=h,
              allow_dq_failures=allow_dq_failures, force=force, pdf=pdf)  # fmt: skip
    if on_plan:
        on_plan(pl)
    n = burst_workers(h, len(pl.jobs), workers) if burst_by else 1
    with report_lock(h, f"{name}-{pl.period}"):
        warm = warm_caches(h, pl.period) if n > 1 else 0.0
        results = run_jobs(pl.jobs, h, workers=n, on_done=on_done)
        index = None
        try:
            from cimlib.reports._index import build_index

            index = str(build_index(output_root(h), lang=locale))
        except Exception as exc:  # the reports are published; a broken index must not hide that
            log.error("index not rebuilt", extra={"event": "index_failed", "error": str(exc)})
    return RunSummary(name, pl.period, results, time.perf_counter() - t0, pl.gate, index, warm, n)
