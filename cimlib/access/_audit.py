"""The audit log: an append-only, hash-chained JSON-lines store outside the warehouse snapshot.

Layout: ``home.state / "audit" / "audit-YYYY-MM-DD.jsonl"``, one file per UTC day, one JSON object per
line. A writer opens the day's file with ``O_APPEND``, takes an exclusive ``flock`` on it, reads the hash
of the last record, writes its line in one ``write`` call and ``fsync``s before releasing the lock. So
writers in several processes (Voila kernels, CLI runs) never interleave or lose records, and a record is
on disk before the view it guards is returned. Each record carries ``prev`` (the previous record's hash,
across days) and its own ``hash`` (SHA-256 of ``prev`` and the record), so :func:`verify_audit` detects
an edited, removed or reordered record. See ``docs/access.md`` for why this and not SQLite.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from cimlib.access._errors import AuditError, NotPermitted
from cimlib.access._policy import Principal
from cimlib.config import Home, get_home

log = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "audit-", ".jsonl"
_HOST = socket.gethostname()
GENESIS = "0" * 64
COLUMNS = [
    "ts",
    "user_id",
    "role",
    "org_code",
    "staff_no",
    "action",
    "target",
    "outcome",
    "snapshot_id",
    "detail",
    "pid",
    "host",
    "prev",
    "hash",
]


def audit_dir(home: Home | str | os.PathLike[str] | None = None) -> Path:
    """The folder of the audit log (``home.state / "audit"``)."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.state / "audit"


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX))


def _last_line(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            chunk, pos = b"", end
            while pos > 0:
                step = min(8192, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
                lines = chunk.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or pos == 0:
                    last = lines[-1]
                    return last or None
    except FileNotFoundError:
        return None
    return None


def _hash_of(line: bytes | None) -> str | None:
    if not line:
        return None
    try:
        return str(json.loads(line)["hash"])
    except (ValueError, KeyError, TypeError):
        return None


def _digest(prev: str, record: dict[str, Any]) -> str:
    body = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def audit_log(
    home: Home | str | os.PathLike[str] | None,
    principal: Principal,
    action: str,
    target: str,
    snapshot_id: str | None,
    detail: dict[str, Any] | None = None,
    *,
    outcome: str = "ok",
) -> None:
    """Append one record to the audit log and make it durable.

    Parameters
    ----------
    home : Home, path or None
        The installation; the log lives under ``home.state / "audit"``, outside every snapshot.
    principal : Principal
        Who acted.
    action : str
        What they did: ``search``, ``view_360``, ``export_360``, ``read_audit``...
    target : str
        The customer id or the search query.
    snapshot_id : str or None
        The warehouse snapshot the data came from (``None`` when none was read, e.g. a refusal).
    detail : dict, optional
        Anything else worth keeping (JSON-serialisable): result counts, the as-of month, the reason.
    outcome : str
        ``ok``, ``not_found_or_not_permitted`` or ``refused``.

    Raises
    ------
    AuditError
        When the record cannot be written; callers must then refuse the action (fail closed).
    """
    folder = audit_dir(home)
    now = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {
        "ts": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "user_id": principal.user_id,
        "role": principal.role,
        "org_code": principal.org_code,
        "staff_no": principal.staff_no,
        "action": action,
        "target": target,
        "outcome": outcome,
        "snapshot_id": snapshot_id,
        "detail": detail or {},
        "pid": os.getpid(),
        "host": _HOST,
    }
    path = folder / f"{_PREFIX}{now.date().isoformat()}{_SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                prev = _hash_of(_last_line(path))
                if prev is None:  # first record of the day: chain to the last record of an earlier day
                    earlier = [p for p in _files(folder) if p.name < path.name]
                    prev = (_hash_of(_last_line(earlier[-1])) if earlier else None) or GENESIS
                record["prev"] = prev
                record["hash"] = _digest(prev, record)
                line = json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
                data = line.encode("utf-8")
                if os.write(fd, data) != len(data):
                    raise OSError("short write to the audit log")
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(folder)
    except (OSError, TypeError, ValueError) as exc:
        log.error("audit record not written", extra={"path": str(path), "action": action, "error": str(exc)})
        raise AuditError(
            f"the audit log could not be written ({type(exc).__name__}); action refused"
        ) from exc
    log.info(
        "audit",
        extra={
            "user_id": principal.user_id,
            "action": action,
            "outcome": outcome,
            "snapshot_id": snapshot_id,
        },
    )


def _records(folder: Path, since: dt.date | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in _files(folder):
        day = p.name[len(_PREFIX) : -len(_SUFFIX)]
        if since is not None and day < since.isoformat():
            continue
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append(
                            {"ts": None, "action": "<unreadable>", "detail": {"file": p.name, "line": n}}
                        )
    return out


def _parse_since(since: str | dt.date | None) -> dt.datetime | None:
    if since is None or since == "":
        return None
    if isinstance(since, dt.datetime):
        return since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    if isinstance(since, dt.date):
        return dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    try:
        d = dt.datetime.fromisoformat(str(since).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: expected a date YYYY-MM-DD or an ISO time, got {since!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=dt.UTC)


def read_audit(
    home: Home | str | os.PathLike[str] | None,
    principal: Principal,
    *,
    user: str | None = None,
    since: str | dt.date | None = None,
    limit: int = 1000,
) -> Any:
    """The audit log, newest last; for auditors only.

    Parameters
    ----------
    home : Home, path or None
        The installation.
    principal : Principal
        Who reads; the role must be an audit reader. The read itself is audited, and so is a refusal.
    user : str, optional
        Only this user's records.
    since : str or date, optional
        Only records at or after this UTC date (``YYYY-MM-DD``) or time (ISO 8601).
    limit : int
        At most this many records (the most recent).

    Returns
    -------
    pandas.DataFrame
        Columns ``ts`` (UTC), ``user_id``, ``role``, ``org_code``, ``staff_no``, ``action``, ``target``,
        ``outcome``, ``snapshot_id``, ``detail``, ``pid``, ``host``, ``prev``, ``hash``.

    Raises
    ------
    NotPermitted
        When the principal is not an auditor.
    ValueError
        When ``since`` or ``limit`` is malformed.
    """
    import pandas as pd

    query = {"user": user, "since": str(since) if since is not None else None, "limit": limit}
    if not principal.can_read_audit:
        audit_log(home, principal, "read_audit", "audit log", None, query, outcome="refused")
        raise NotPermitted(f"role {principal.role} may not read the audit log (auditors only)")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    t0 = _parse_since(since)
    recs = _records(audit_dir(home), t0.date() if t0 else None)
    if t0 is not None:
        stamp = t0.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        recs = [r for r in recs if (r.get("ts") or "") >= stamp]
    if user is not None:
        recs = [r for r in recs if r.get("user_id") == user]
    recs = recs[-limit:]
    audit_log(home, principal, "read_audit", "audit log", None, {**query, "n_records": len(recs)})
    frame = pd.DataFrame(recs, columns=COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame


def verify_audit(home: Home | str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Check the hash chain of the whole audit log.

    Returns
    -------
    dict
        ``ok`` (bool), ``records`` (count), ``files`` and, when broken, ``problem`` naming the file and line.
    """
    prev = GENESIS
    n = 0
    files = _files(audit_dir(home))
    for p in files:
        with open(p, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    return {
                        "ok": False,
                        "records": n,
                        "files": len(files),
                        "problem": f"{p.name}:{i}: not JSON",
                    }
                h = rec.pop("hash", None)
                if rec.get("prev") != prev or _digest(prev, rec) != h:
                    return {
                        "ok": False,
                        "records": n,
                        "files": len(files),
                        "problem": f"{p.name}:{i}: hash chain broken (record edited, removed or reordered)",
                    }
                prev = str(h)
                n += 1
    return {"ok": True, "records": n, "files": len(files)}
