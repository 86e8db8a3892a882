"""Per-date partial results: the expensive part of a build, computed once per loaded as-of date.

Each model in ``cimlib/sql/month/`` reads one as-of date's lake files only (through ``m_<table>``
views) and is written to ``warehouse/months/<date>-<fingerprint>/<model>.parquet``. The fingerprint
covers everything the result depends on: the date's load report and lake files (size, modification
time, inode: an ingest swaps new files in), the model SQL, the code lists and a format version. A build
reuses a folder whose fingerprint matches and computes only the dates that are new or were reloaded, so
the monthly build reads one month of transactions instead of the whole history. The marts roll the
partials up (``part_<model>`` views).

Folders are written under a temporary name and renamed into place, so a killed build never leaves a
half-written partial behind; folders no longer matching any loaded date are pruned after a publish.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from cimlib.config import Home
from cimlib.contracts import load_codes, load_contracts
from cimlib.engine._engine import Engine
from cimlib.engine._lake import create_lake_views, lake_file
from cimlib.engine._pipeline import SQL_DIR, render

log = logging.getLogger(__name__)

MONTH_DIR = SQL_DIR / "month"
FORMAT_VERSION = "1"


def month_models() -> dict[str, str]:
    """``{model name: SQL text}`` of the per-date models."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(MONTH_DIR.glob("*.sql"))}


def _months_dir(home: Home) -> Path:
    return home.warehouse / "months"


def fingerprint(home: Home, date: str, models: dict[str, str]) -> str:
    """A digest of everything the date's partial results depend on."""
    h = hashlib.sha256(f"v{FORMAT_VERSION}|{date}".encode())
    report = home.loads / f"{date}.json"
    if report.exists():  # rewritten by every ingest of the date (start time, checksums)
        h.update(report.read_bytes())
    for name in sorted(load_contracts()):
        f = lake_file(home, name, date)
        if f.exists():  # ingest swaps a new file in: a new inode and modification time
            st = f.stat()
            h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode())
    for name, sql in sorted(models.items()):  # rendered: a shared macro's text counts too
        h.update(f"|{name}:".encode() + render(sql).encode())
    h.update(repr(sorted((k, sorted(v.items())) for k, v in load_codes().items())).encode())
    return h.hexdigest()[:20]


def date_fingerprints(home: Home, dates: list[str]) -> dict[str, str]:
    """``{date: fingerprint}`` of the dates' partial results (see :func:`fingerprint`)."""
    models = month_models()
    return {d: fingerprint(home, d, models) for d in dates}


def pipeline_fingerprint() -> str:
    """A digest of every model, contract and code list: a snapshot built by other models is not reused."""
    h = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    root = SQL_DIR.parent
    files = [*SQL_DIR.rglob("*.sql"), *SQL_DIR.rglob("*.yml"), *(root / "contracts").rglob("*.yaml")]
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:20]


def build_months(
    engine: Engine,
    home: Home,
    dates: list[str],
    after_date: Callable[[str, bool, float], None] | None = None,
) -> dict[str, dict[str, Path]]:
    """Compute (or reuse) the partial results of every date and create the ``part_<model>`` views.

    Parameters
    ----------
    engine : Engine
        The build's engine (its database is the snapshot being built).
    home : Home
        The installation.
    dates : list of str
        The loaded as-of dates.
    after_date : callable, optional
        Called with ``(date, reused, seconds)`` after each date.

    Returns
    -------
    dict
        ``{date: {model: parquet file}}``.
    """
    models = month_models()
    root = _months_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Path]] = {}
    lit = engine.dialect.literal
    for date in dates:
        t0 = time.perf_counter()
        folder = root / f"{date}-{fingerprint(home, date, models)}"
        files = {name: folder / f"{name}.parquet" for name in models}
        reused = folder.is_dir() and all(f.exists() for f in files.values())
        if not reused:
            tmp = root / f".tmp-{folder.name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            create_lake_views(engine, home, [date], prefix="m_")
            for name, sql in models.items():
                engine.execute(
                    f"COPY (SELECT DATE {lit(date)} AS as_of_date, * FROM (\n{render(sql)}\n) AS _p) "
                    f"TO {lit(str(tmp / (name + '.parquet')))} (FORMAT parquet, COMPRESSION zstd)"
                )
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        out[date] = files
        if after_date is not None:
            after_date(date, reused, time.perf_counter() - t0)
    for name in models:
        paths = [out[d][name] for d in dates]
        view = f"part_{name.removeprefix('month_')}_month"
        engine.create_view_as(view, f"SELECT * FROM {engine.dialect.read_parquet(paths)}")
    return out


def prune_months(home: Home, keep: dict[str, dict[str, Path]]) -> list[str]:
    """Remove partial-result folders (and leftovers of killed builds) not in ``keep``."""
    root = _months_dir(home)
    wanted = {next(iter(files.values())).parent.name for files in keep.values() if files}
    removed = []
    for p in root.iterdir() if root.is_dir() else []:
        if p.name not in wanted:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed
