"""Exports of target lists: CSV and Excel, whole or split per branch or customer manager.

Spreadsheet formula injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return could run as a formula when the file is opened. In Excel files every text cell is written as a
string cell (never a formula), so the text stays exactly as it was; in CSV files such a text gets a
leading apostrophe, which Excel and LibreOffice show as text (OWASP's advice). Numbers stay numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cimlib.i18n import column_label

SPLITS = ("branch", "manager")
FORMATS = ("xlsx", "csv")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")
_FILE_BAD = re.compile(r"[^0-9A-Za-z_.\-\u4e00-\u9fff]")


class ExportError(ValueError):
    """An export that cannot be written as asked (unknown format or split, bad path)."""


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_DANGEROUS):
        return "'" + value
    return value


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (AttributeError, ValueError):
            return value
    return value


def _headers(columns: Iterable[str], lang: str) -> list[str]:
    return [column_label(c, lang) for c in columns]


def _about(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    a = frame.attrs
    return [
        ("ruleset", a.get("ruleset", "")),
        ("as_of", a.get("as_of", "")),
        ("snapshot_id", a.get("snapshot_id", "")),
        ("rules", ";".join(a.get("rules", []))),
        ("customers", len(frame)),
        ("written_at", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]


def _sheet_title(name: str, used: set[str]) -> str:
    base = _SHEET_BAD.sub("_", name).strip("'") or "sheet"
    base = base[:31]
    title, i = base, 2
    while title.lower() in used:
        suffix = f"~{i}"
        title, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(title.lower())
    return title


def _write_sheet(ws: Any, frame: pd.DataFrame, lang: str) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    cols = list(frame.columns)
    ws.append(_headers(cols, lang))
    for c in ws[1]:
        c.font = Font(bold=True)
    link_col = cols.index("link") + 1 if "link" in cols else None
    # The row number is counted here: ws.max_row walks every cell, which made a 20,000-row list take
    # minutes instead of seconds.
    for r, row in enumerate(frame.itertuples(index=False, name=None), start=2):
        ws.append([_plain(v) if not isinstance(v, str) else None for v in row])
        for j, v in enumerate(row, start=1):
            if isinstance(v, str):
                cell = ws.cell(row=r, column=j)
                cell.value = v
                cell.data_type = "s"  # text stays text: never a formula (formula injection)
        if link_col is not None:
            url = row[link_col - 1]
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                ws.cell(row=r, column=link_col).hyperlink = url
    ws.freeze_panes = "A2"
    for j, col in enumerate(cols, start=1):
        width = 12 if col not in ("reasons", "rule_names") else 60
        ws.column_dimensions[get_column_letter(j)].width = width


def _workbook(sheets: list[tuple[str, pd.DataFrame]], frame: pd.DataFrame, lang: str) -> Any:
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    used: set[str] = set()
    for name, part in sheets:
        _write_sheet(wb.create_sheet(_sheet_title(name, used)), part, lang)
    about = wb.create_sheet(_sheet_title("about", used))
    for k, v in _about(frame):
        about.append([k, v])
        for c in about[about.max_row]:
            if isinstance(c.value, str):
                c.data_type = "s"
    return wb


def list_bytes(
    frame: pd.DataFrame, *, fmt: str = "xlsx", lang: str = "en", split: str | None = None
) -> bytes:
    """A target list as the bytes of one file (for a download button).

    Parameters
    ----------
    frame : pandas.DataFrame
        A list from :func:`cimlib.targeting.run` (already scoped and masked).
    fmt : {"xlsx", "csv"}
        Excel workbook (a sheet ``list`` and a sheet ``about``) or UTF-8 CSV with a byte-order mark.
    lang : {"en", "zh_CN"}
        Language of the column headers.
    split : {None, "branch"}
        ``branch``: one sheet per branch in the workbook (xlsx only).

    Returns
    -------
    bytes
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    if fmt == "csv":
        if split:
            raise ExportError("a CSV file cannot be split into sheets; use write_list with a folder")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(_headers(frame.columns, lang))
        for row in frame.itertuples(index=False, name=None):
            w.writerow(["" if _plain(v) is None else csv_safe(_plain(v)) for v in row])
        return buf.getvalue().encode("utf-8-sig")
    if split not in (None, "branch"):
        raise ExportError("one workbook splits only per branch; per manager writes one file each")
    sheets = _branch_sheets(frame) if split == "branch" else [("list", frame)]
    wb = _workbook(sheets, frame, lang)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _branch_sheets(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if not len(frame):
        return [("list", frame)]
    out = []
    keys = frame[["home_org_code", "home_org_name"]].drop_duplicates().sort_values("home_org_code")
    for code, name in keys.itertuples(index=False, name=None):
        part = frame[frame["home_org_code"] == code]
        out.append((f"{code} {name or ''}".strip(), part))
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_list(
    frame: pd.DataFrame, path: str | os.PathLike[str], *, split: str | None = None, lang: str = "en"
) -> list[Path]:
    """Write a target list to ``path`` (``.xlsx`` or ``.csv``), whole or split.

    Parameters
    ----------
    frame : pandas.DataFrame
        A list from :func:`cimlib.targeting.run` (already scoped and masked: an export never holds more
        than its user may see).
    path : path
        The file to write. With ``split="manager"`` (and with ``split="branch"`` for CSV) it names the
        files instead: ``<stem>-<key>.<ext>`` beside it, one per manager (``UNASSIGNED`` for customers
        without one) or branch.
    split : {None, "branch", "manager"}
        ``branch``: one workbook with a sheet per branch (xlsx), or a file per branch (csv);
        ``manager``: one file per customer manager.
    lang : {"en", "zh_CN"}
        Language of the column headers.

    Returns
    -------
    list of Path
        The files written, each replaced atomically.

    Raises
    ------
    ExportError
        An unknown format (by suffix) or split.
    """
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"{p}: the file must end in .xlsx or .csv")
    if split not in (None, *SPLITS):
        raise ExportError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
    if split is None or (split == "branch" and fmt == "xlsx"):
        _atomic_write(p, list_bytes(frame, fmt=fmt, lang=lang, split=split))
        return [p]
    key = "manager_no" if split == "manager" else "home_org_code"
    written = []
    groups = frame.groupby(frame[key].fillna("UNASSIGNED"), sort=True) if len(frame) else []
    for k, part in groups:
        part = part.copy()
        part.attrs = dict(frame.attrs)
        name = _FILE_BAD.sub("_", str(k))
        target = p.with_name(f"{p.stem}-{name}{p.suffix}")
        _atomic_write(target, list_bytes(part, fmt=fmt, lang=lang))
        written.append(target)
    return written
