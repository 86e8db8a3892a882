"""Structured logs of report runs: one JSON object per line.

Every ``cim report`` and ``cim run`` appends its events to ``outputs/reports/_logs/<YYYY-MM-DD>.jsonl``
(and to stderr with ``--log-json``), so a scheduler or a log shipper can follow them without parsing text:
``{"ts": ..., "level": "INFO", "logger": "cimlib.reports", "msg": "report published", "event":
"published", "report": "monthly_pack", "scope": "county:101000", "period": "2026-10", "version": 1,
"seconds": 11.2, "run_id": ..., "pid": ...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message and every ``extra`` field."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (non-JSON values as strings)."""
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "run_id": self.run_id,
            "pid": record.process,
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_run_logging(log_dir: Path, *, to_stderr: bool = False, run_id: str | None = None) -> str:
    """Send ``cimlib.reports`` events as JSON lines to ``log_dir/<date>.jsonl`` (and stderr if asked).

    Parameters
    ----------
    log_dir : Path
        ``outputs/reports/_logs``.
    to_stderr : bool
        Also write the JSON lines to stderr (``--log-json``).
    run_id : str, optional
        The run's id in every line (default: a new one).

    Returns
    -------
    str
        The run id.
    """
    rid = run_id or uuid.uuid4().hex[:12]
    os.environ["CIM_RUN_ID"] = rid  # worker processes log under the same run id
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("cimlib.reports")
    for h in list(logger.handlers):
        if getattr(h, "_cim_run", False):
            logger.removeHandler(h)
            h.close()
    fmt = JsonFormatter(rid)
    fh = logging.FileHandler(log_dir / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl", encoding="utf-8")
    handlers: list[logging.Handler] = [fh]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(logging.INFO)
        h._cim_run = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return rid
