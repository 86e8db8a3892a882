"""The atomic snapshot build: lake -> new DuckDB snapshot -> contracts -> publish via ``CURRENT``.

Layout under ``home.warehouse``::

    CURRENT                         JSON pointer to the published snapshot (replaced atomically)
    snapshots/<id>.duckdb           published or previous snapshots (the last ``keep`` are kept)
    snapshots/<id>.duckdb.tmp       a build in progress (removed by the next build if it crashed)
    snapshots/<id>.failed.duckdb    a build whose contracts failed, kept for inspection
    .build.lock                     held (flock) while a build runs

A build never writes to a published file, so readers (read-only connections to the published file)
are never disturbed, and a build killed at any point leaves ``CURRENT`` and its snapshot intact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from cimlib.config import Home
from cimlib.contracts import load_codes
from cimlib.engine._engine import DuckDBEngine, Engine
from cimlib.engine._lake import create_lake_views
from cimlib.engine._model_contracts import run_contracts
from cimlib.engine._months import build_months, date_fingerprints, pipeline_fingerprint, prune_months
from cimlib.engine._pipeline import Model, SqlPipeline

log = logging.getLogger(__name__)

MEMORY_ENV = "CIM_BUILD_MEMORY_LIMIT"
INCREMENTAL_ENV = "CIM_BUILD_INCREMENTAL"
PAUSE_ENV = "CIM_BUILD_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "CIM_BUILD_PAUSE_SECONDS"
DEFAULT_KEEP = 3
DEFAULT_MEMORY_LIMIT = "6GB"


class BuildError(Exception):
    """The build failed; nothing was published."""


class _Fallback(Exception):
    """An incremental build found it cannot be incremental (the caller builds everything)."""


def _incremental_plan(
    home: Home, dates: list[str], fps: dict[str, str], models_hash: str
) -> tuple[Path, list[str]] | None:
    """``(previous snapshot file, changed dates)`` when this build can start from the published snapshot.

    It can when the published snapshot was built by the same models (``models_hash``: SQL, contracts,
    code lists) and every date it holds is still loaded. The changed
    dates are those whose per-date fingerprint (load report and lake files) differs from the one the
    snapshot was built from, or that are new.
    """
    prev = current_snapshot(home)
    if not prev or prev.get("models_hash") != models_hash:
        return None
    prev_file = _snapshots_dir(home) / str(prev.get("file"))
    prev_fps = prev.get("date_fingerprints") or {}
    if not prev_file.is_file() or not set(prev.get("as_of_dates") or []) <= set(dates):
        return None
    return prev_file, [d for d in dates if prev_fps.get(d) != fps[d]]


def _snapshots_dir(home: Home) -> Path:
    return home.warehouse / "snapshots"


def _pointer(home: Home) -> Path:
    return home.warehouse / "CURRENT"


def loaded_dates(home: Home) -> list[str]:
    """As-of dates (``YYYY-MM-DD``) whose load report exists, ascending."""
    loads = home.loads
    out = []
    for p in sorted(loads.glob("*.json")) if loads.is_dir() else []:
        try:
            dt.date.fromisoformat(p.stem)
        except ValueError:
            continue
        out.append(p.stem)
    return out


def create_ref_code(engine: Engine) -> list[str]:
    """Materialise the canonical code lists as reference tables.

    ``ref_code`` holds every code (list_name, code, label_en, label_zh, attributes as JSON); each list
    whose codes carry attributes also gets ``ref_<list>`` with one typed column per attribute (e.g.
    ``ref_five_class(code, label_en, label_zh, rank, npl)``), so models join on plain columns.
    """
    lit = engine.dialect.literal
    q = engine.dialect.quote

    def val(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, int | float):
            return str(v)
        return lit(str(v))

    rows = []
    created = ["ref_code"]
    for list_name, codes in load_codes().items():
        attr_names: list[str] = []
        for attrs in codes.values():
            attr_names += [k for k in attrs if k not in ("en", "zh") and k not in attr_names]
        for code, attrs in codes.items():
            extra = {k: v for k, v in attrs.items() if k not in ("en", "zh")}
            rows.append(
                f"({lit(list_name)}, {lit(code)}, {lit(attrs.get('en', ''))}, "
                f"{lit(attrs.get('zh', ''))}, {lit(json.dumps(extra, ensure_ascii=False))})"
            )
        if attr_names:
            vals = ", ".join(
                "("
                + ", ".join(
                    [lit(code), lit(a.get("en", "")), lit(a.get("zh", ""))]
                    + [val(a.get(k)) for k in attr_names]
                )
                + ")"
                for code, a in codes.items()
            )
            cols = ", ".join(["code", "label_en", "label_zh"] + [q(k) for k in attr_names])
            engine.create_table_as(f"ref_{list_name}", f"SELECT * FROM (VALUES {vals}) AS t({cols})")
            created.append(f"ref_{list_name}")
    engine.create_table_as(
        "ref_code",
        "SELECT * FROM (VALUES "
        + ", ".join(rows)
        + ") AS t(list_name, code, label_en, label_zh, attributes)",
    )
    return created


@contextlib.contextmanager
def _build_lock(home: Home) -> Iterator[None]:
    home.warehouse.mkdir(parents=True, exist_ok=True)
    with open(home.warehouse / ".build.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildError("another build is running (warehouse/.build.lock is held)") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_pointer(home: Home, summary: dict[str, Any]) -> None:
    ptr = _pointer(home)
    tmp = ptr.with_name(f"CURRENT.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ptr)
    _fsync_dir(ptr.parent)


def _clean_leftovers(home: Home) -> list[str]:
    removed = []
    for p in list(_snapshots_dir(home).glob("*.tmp*")) + list(home.warehouse.glob("CURRENT.*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p.name)
    if removed:
        log.info("removed leftovers of an interrupted build", extra={"files": removed})
    return removed


def _prune(home: Home, keep: int, current_file: str) -> list[str]:
    snaps = sorted(p for p in _snapshots_dir(home).glob("*.duckdb") if not p.name.endswith(".failed.duckdb"))
    failed = sorted(_snapshots_dir(home).glob("*.failed.duckdb"))
    doomed = [p for p in snaps[:-keep] if p.name != current_file] if keep > 0 else []
    doomed += failed[:-keep] if keep > 0 else []
    for p in doomed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        with contextlib.suppress(FileNotFoundError):
            Path(str(p) + ".wal").unlink()
    return [p.name for p in doomed]


def _new_snapshot_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def _row_counts(engine: Engine, names: list[str]) -> dict[str, int]:
    return {n: engine.row_count(n) for n in names}


def build(
    home: Home, progress: bool = False, keep: int = DEFAULT_KEEP, incremental: bool | None = None
) -> dict[str, Any]:
    """Build a new warehouse snapshot from the lake and publish it if every model contract passes.

    Parameters
    ----------
    home : Home
        The installation.
    progress : bool
        Log each model as it finishes at INFO level (the CLI shows these).
    keep : int
        Published snapshots to keep on disk (the current one is never deleted).
    incremental : bool, optional
        Start from a copy of the published snapshot and replace only the changed months of the
        history tables (default: ``$CIM_BUILD_INCREMENTAL``, else off). About 6x faster at 1M
        customers, but the replaced months are appended after the customer-sorted rows, so each
        such build makes single-customer lookups slower (360 p50 17 -> 25 ms at 1M after one); a full
        build sorts everything again. Off by default because lookups run all day and a build monthly.

    Returns
    -------
    dict
        The published summary, also written to ``warehouse/CURRENT``: ``snapshot_id``, ``file``,
        ``built_at``, ``as_of_dates``, ``row_counts``, ``contracts``, ``timings`` and ``seconds``.

    Raises
    ------
    BuildError
        When no date is loaded, a model fails, or a contract fails. Nothing is published; a
        contract failure keeps the database as ``snapshots/<id>.failed.duckdb``.
    """
    t_start = time.perf_counter()
    pipeline = SqlPipeline()
    pause_after = os.environ.get(PAUSE_ENV)
    if pause_after and pause_after not in [*pipeline.names, "lake_views", "months"]:
        raise BuildError(f"{PAUSE_ENV}={pause_after!r} names no model")
    pause_seconds = float(os.environ.get(PAUSE_SECONDS_ENV, "60"))

    with _build_lock(home):
        snap_dir = _snapshots_dir(home)
        snap_dir.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(home)
        dates = loaded_dates(home)
        if not dates:
            raise BuildError(f"no loaded as-of dates: no load reports in {home.state / 'loads'}")

        snapshot_id = _new_snapshot_id()
        final = snap_dir / f"{snapshot_id}.duckdb"
        tmp = snap_dir / f"{snapshot_id}.duckdb.tmp"
        log.info("build started", extra={"snapshot_id": snapshot_id, "as_of_dates": dates})

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("build {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            disable=not progress,
        )
        task = bar.add_task("models", total=len(pipeline.models) + 1)
        month_task = bar.add_task("dates", total=len(dates))
        month_stats: dict[str, Any] = {"computed": [], "reused": [], "seconds": {}}

        def after_date(date: str, reused: bool, seconds: float) -> None:
            month_stats["reused" if reused else "computed"].append(date)
            month_stats["seconds"][date] = round(seconds, 3)
            log.info("partial results of %s %s in %.2fs", date, "reused" if reused else "computed", seconds)
            bar.update(month_task, advance=1, description=f"dates {date}")

        def after_model(m: Model, seconds: float) -> None:
            log.info("model %s built in %.2fs", m.name, seconds)
            bar.update(task, advance=1, description=m.name)
            if pause_after == m.name:
                log.warning("pausing after %s for %ss (%s)", m.name, pause_seconds, PAUSE_ENV)
                time.sleep(pause_seconds)

        # DuckDB would take 80% of RAM (20 GiB peak at 1M customers x 24 months on 24 GiB); the build
        # runs beside the app's readers, so it is capped at DEFAULT_MEMORY_LIMIT (6.4 GiB peak, ~10%
        # slower at that size) and spills to the warehouse's spill folder. CIM_BUILD_MEMORY_LIMIT sets
        # another cap ("12GB"), or "none" for DuckDB's default.
        memory_limit: str | None = os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY_LIMIT
        if memory_limit.lower() in ("none", "default", "0"):
            memory_limit = None

        models_hash = pipeline_fingerprint()
        fps = date_fingerprints(home, dates)
        if incremental is None:
            incremental = os.environ.get(INCREMENTAL_ENV, "").lower() in ("1", "true", "yes")
        plan = _incremental_plan(home, dates, fps, models_hash) if incremental else None

        def materialise(partitions: list[str] | None) -> tuple[Any, ...]:
            """Run every step into ``tmp`` (with ``partitions``: on the previous snapshot's copy)."""
            engine = DuckDBEngine(tmp, memory_limit=memory_limit)
            if memory_limit:
                spill = home.warehouse / "spill"
                spill.mkdir(parents=True, exist_ok=True)
                engine.execute(f"SET temp_directory = '{spill.as_posix()}'")
            try:
                # Row order of unsorted tables is not part of any contract (models that need an order
                # declare ``order_by``), so let DuckDB skip order preservation: cheaper parallel writes.
                engine.execute("SET preserve_insertion_order = false")
                create_ref_code(engine)
                files = create_lake_views(engine, home, dates)
                if pause_after == "lake_views":
                    time.sleep(pause_seconds)
                if partitions is not None:
                    engine.execute(
                        "CREATE TEMP TABLE _prev_map AS SELECT cust_no, customer_id, customer_type "
                        "FROM core_cust_no_map"
                    )

                def after(m: Model, seconds: float) -> None:
                    if partitions is not None and m.name == "core_cust_no_map":
                        moved = engine.query(
                            "SELECT count(*) FROM _prev_map AS p LEFT JOIN core_cust_no_map AS n "
                            "ON n.cust_no = p.cust_no WHERE n.cust_no IS NULL "
                            "OR n.customer_id <> p.customer_id OR n.customer_type <> p.customer_type"
                        )[0][0]
                        if moved:
                            raise _Fallback(f"{moved} customer numbers now belong to another customer")
                    after_model(m, seconds)

                with bar:
                    t_months = time.perf_counter()
                    months = build_months(engine, home, dates, after_date=after_date)
                    month_stats["total_seconds"] = round(time.perf_counter() - t_months, 3)
                    if pause_after == "months":
                        time.sleep(pause_seconds)
                    t0 = time.perf_counter()
                    timings = pipeline.run(engine, after_model=after, partitions=partitions)
                    steps["models"] = round(time.perf_counter() - t0, 2)
                    bar.update(task, description="contracts")
                    t0 = time.perf_counter()
                    results = run_contracts(engine, pipeline, partitions=partitions)
                    steps["contracts"] = round(time.perf_counter() - t0, 2)
                    bar.update(task, advance=1)
                t0 = time.perf_counter()
                counts = _row_counts(
                    engine,
                    [m.name for m in pipeline.models if m.layer != "staging"]
                    + [m.name for m in pipeline.models if m.layer == "staging"],
                )
                # The published snapshot holds tables only. Views read the lake or the partial-result
                # cache, which a later reload or prune changes: an old snapshot must not change with them.
                views = engine.query(
                    "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
                )
                for (view,) in views:
                    engine.execute(f"DROP VIEW {engine.dialect.quote(view)}")
                engine.checkpoint()
                steps["counts_and_checkpoint"] = round(time.perf_counter() - t0, 2)
            except BaseException:
                engine.close()
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            engine.close()
            return files, months, timings, results, counts

        mode = "full"
        fallback = None
        steps: dict[str, float] = {}
        try:
            if plan is not None:
                prev_file, changed = plan
                t_copy = time.perf_counter()
                shutil.copyfile(prev_file, tmp)
                steps["copy_previous"] = round(time.perf_counter() - t_copy, 2)
                log.info("incremental build on a copy of %s (%.1fs): dates %s", prev_file.name,
                         time.perf_counter() - t_copy, changed or "none changed")
                try:
                    files, months, timings, results, counts = materialise(changed)
                    mode = "incremental"
                except _Fallback as exc:
                    fallback = str(exc)
                    log.warning("incremental build not possible (%s); building everything", exc)
                    month_stats.update(computed=[], reused=[], seconds={})
            if mode == "full":
                files, months, timings, results, counts = materialise(None)
        except BuildError:
            raise
        except Exception as exc:
            raise BuildError(str(exc)) from exc

        failures = [r for r in results if not r.passed]
        summary: dict[str, Any] = {
            "snapshot_id": snapshot_id,
            "file": final.name,
            "path": str(final),
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "as_of_dates": dates,
            "lake_files": files,
            "row_counts": counts,
            "contracts": {
                "passed": sum(r.passed for r in results),
                "failed": len(failures),
                "results": [r.to_dict() for r in results],
            },
            "timings": timings,
            "partials": month_stats,
            "steps": steps,
            "mode": mode,
            "changed_dates": plan[1] if mode == "incremental" and plan else dates,
            "fallback": fallback,
            "models_hash": models_hash,
            "date_fingerprints": fps,
        }
        if failures:
            failed_path = snap_dir / f"{snapshot_id}.failed.duckdb"
            os.replace(tmp, failed_path)
            (snap_dir / f"{snapshot_id}.failed.json").write_text(
                json.dumps(summary, indent=2, default=str), encoding="utf-8"
            )
            lines = [
                f"{r.model}.{r.test}: {r.error or str(r.failing_rows) + ' failing rows'}"
                + (f" e.g. {r.sample[0]}" if r.sample else "")
                for r in failures
            ]
            raise BuildError(
                f"{len(failures)} contract test(s) failed; nothing published; database kept as "
                f"{failed_path}:\n  " + "\n  ".join(lines)
            )

        os.replace(tmp, final)
        _fsync_dir(snap_dir)
        summary["seconds"] = round(time.perf_counter() - t_start, 2)
        _write_pointer(home, summary)
        summary["pruned"] = _prune(home, keep, final.name)
        summary["pruned_partials"] = prune_months(home, months)
        log.info("snapshot published", extra={"snapshot_id": snapshot_id, "seconds": summary["seconds"]})
        return summary


def current_snapshot(home: Home) -> dict[str, Any] | None:
    """The contents of the ``CURRENT`` pointer, or ``None`` when nothing is published.

    Parameters
    ----------
    home : Home
        The installation.

    Returns
    -------
    dict or None
        The summary written by :func:`build`.
    """
    ptr = _pointer(home)
    if not ptr.exists():
        return None
    return json.loads(ptr.read_text(encoding="utf-8"))


def connect(home: Home, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the published snapshot.

    Parameters
    ----------
    home : Home
        The installation.
    read_only : bool
        Must be true: published snapshots are never written.

    Returns
    -------
    duckdb.DuckDBPyConnection
        A read-only connection.

    Raises
    ------
    BuildError
        When nothing is published, or ``read_only`` is false.
    """
    if not read_only:
        raise BuildError("published snapshots are read-only; run a build to change the warehouse")
    cur = current_snapshot(home)
    if cur is None:
        raise BuildError(f"no published snapshot in {home.warehouse}; run `cim build`")
    path = _snapshots_dir(home) / cur["file"]
    if not path.exists():
        raise BuildError(f"CURRENT points to {path}, which does not exist")
    return duckdb.connect(str(path), read_only=True)


def status(home: Home) -> dict[str, Any]:
    """The published snapshot and the snapshot files on disk.

    Parameters
    ----------
    home : Home
        The installation.

    Returns
    -------
    dict
        ``current`` (snapshot_id, file, built_at, as_of_dates, row counts of marts, contract tallies or
        None), ``snapshots`` (file, bytes, published, failed) and ``loaded_dates``.
    """
    cur = current_snapshot(home)
    snaps = []
    snap_dir = _snapshots_dir(home)
    if snap_dir.is_dir():
        for p in sorted(snap_dir.glob("*.duckdb")):
            snaps.append(
                {
                    "file": p.name,
                    "bytes": p.stat().st_size,
                    "published": bool(cur and cur.get("file") == p.name),
                    "failed": p.name.endswith(".failed.duckdb"),
                }
            )
    brief = None
    if cur:
        brief = {k: cur.get(k) for k in ("snapshot_id", "file", "built_at", "as_of_dates", "seconds")}
        brief["row_counts"] = {
            k: v for k, v in (cur.get("row_counts") or {}).items() if k.startswith(("mart_", "dim_"))
        }
        c = cur.get("contracts") or {}
        brief["contracts"] = {"passed": c.get("passed"), "failed": c.get("failed")}
    return {"current": brief, "snapshots": snaps, "loaded_dates": loaded_dates(home)}
