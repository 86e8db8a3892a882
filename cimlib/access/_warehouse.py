"""One read-only connection per process to the published warehouse snapshot, reopened when it changes.

Services call :func:`warehouse` for every request: it costs a ``stat`` of the ``CURRENT`` pointer, and a
new connection only after a build publishes a new snapshot. DuckDB connections are not meant to run two
queries at once, so :meth:`Warehouse.query` serialises callers with a lock (a Voila kernel runs one
request at a time anyway; the lock is for threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cimlib.config import Home, get_home

log = logging.getLogger(__name__)


class Snapshot:
    """An open read-only connection to one published snapshot, with small per-snapshot caches."""

    def __init__(self, con: Any, snapshot_id: str, file: str, summary: dict[str, Any] | None = None) -> None:
        self.con = con
        self.snapshot_id = snapshot_id
        self.file = file
        self.summary = summary or {}  # the build summary CURRENT held when this snapshot was opened
        self.lock = threading.RLock()
        self.cache: dict[str, Any] = {}

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` with bound ``params``; return column names and all rows."""
        with self.lock:
            cur = self.con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return cols, cur.fetchall()

    @contextlib.contextmanager
    def all_cores(self) -> Iterator[Any]:
        """The connection, under the lock, running one heavy query on all cores (``query_threads``).

        Readers run one thread (a 360 lookup is faster so); a whole-bank rule, cube or analysis wants
        every core. The thread count is restored afterwards, also when the query fails.
        """
        with self.lock:
            con = self.con
            old = con.execute("SELECT current_setting('threads')").fetchone()[0]
            con.execute(f"SET threads = {query_threads()}")
            try:
                yield con
            finally:
                con.execute(f"SET threads = {int(old)}")

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``sql`` (named ``$params``) on all cores; the whole result as an Arrow table."""
        with self.all_cores() as con:
            return con.sql(sql, params=dict(params or {})).to_arrow_table()

    def close(self) -> None:
        """Close the connection (queries already returned are unaffected)."""
        with self.lock, contextlib.suppress(Exception):
            self.con.close()


class Warehouse:
    """The published snapshot of one installation; see the module docstring."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._pointer = home.warehouse / "CURRENT"
        self._stamp: tuple[int, int, int] | None = None
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The snapshot ``CURRENT`` points to now (opened on first use and after every publish).

        Raises
        ------
        cimlib.engine.BuildError
            When nothing is published.
        """
        try:
            st = os.stat(self._pointer)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        snap = self._snap
        if snap is not None and stamp == self._stamp:
            return snap
        with self._lock:
            if self._snap is not None and stamp == self._stamp:
                return self._snap
            new = self._open()
            # The previous snapshot is not closed here: a call in another thread may still be reading it.
            # Its connection closes when the last reference goes (a pruned file stays readable until then).
            self._snap, self._stamp = new, stamp
        log.info(
            "opened warehouse snapshot", extra={"snapshot_id": new.snapshot_id, "home": str(self.home.root)}
        )
        return new

    def _open(self) -> Snapshot:
        from cimlib.engine import BuildError, connect, current_snapshot

        for _ in range(5):
            cur = current_snapshot(self.home)
            if cur is None:
                raise BuildError(f"no published snapshot in {self.home.warehouse}; run `cim build`")
            con = connect(self.home)
            path = con.execute(
                "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
            ).fetchall()[0][0]
            if Path(path).name == cur["file"]:  # CURRENT did not move between reading it and opening
                con.execute(f"SET threads = {_reader_threads()}")
                return Snapshot(con, str(cur["snapshot_id"]), str(cur["file"]), cur)
            con.close()
        raise BuildError("the published snapshot kept changing while it was being opened")


THREADS_ENV = "CIM_READER_THREADS"
QUERY_THREADS_ENV = "CIM_QUERY_THREADS"


def query_threads() -> int:
    """DuckDB threads of one heavy query on a reader (``Snapshot.all_cores``): ``$CIM_QUERY_THREADS``,
    default every core."""
    raw = os.environ.get(QUERY_THREADS_ENV)
    try:
        return max(1, min(int(raw), 64)) if raw else max(1, os.cpu_count() or 1)
    except ValueError:
        log.warning("ignoring %s=%r (not an integer)", QUERY_THREADS_ENV, raw)
        return max(1, os.cpu_count() or 1)


def _reader_threads() -> int:
    """DuckDB threads of a reader connection: ``$CIM_READER_THREADS``, default 1.

    Services read a few rows of customer-clustered tables per call; one thread is faster for that
    (no task scheduling) and leaves the other cores to the other app kernels and to builds.
    """
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        return max(1, min(int(raw), 64))
    except ValueError:
        log.warning("ignoring %s=%r (not an integer)", THREADS_ENV, raw)
        return 1


_warehouses: dict[str, Warehouse] = {}
_lock = threading.Lock()


def warehouse(home: Home | str | os.PathLike[str] | None = None) -> Warehouse:
    """The process-wide :class:`Warehouse` of ``home``."""
    h = home if isinstance(home, Home) else get_home(home)
    key = str(h.root)
    w = _warehouses.get(key)
    if w is None:
        with _lock:
            w = _warehouses.setdefault(key, Warehouse(h))
    return w


def org_name_of(home: Home, org_code: str) -> str | None:
    """The name of an org in the published warehouse, or ``None`` (nothing published, unknown code)."""
    try:
        snap = warehouse(home).snapshot()
    except Exception:  # no warehouse yet: the label falls back to the code
        log.debug("no warehouse for org names", exc_info=True)
        return None
    names = snap.cache.get("org_names")
    if names is None:
        _, rows = snap.query("SELECT org_code, org_name FROM core_org")
        names = snap.cache["org_names"] = dict(rows)
    return names.get(org_code)
