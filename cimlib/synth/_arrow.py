"""Vectorised helpers: numpy arrays to Arrow columns, and writing one extract file per the mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

EPOCH = dt.date(1970, 1, 1)
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
USCC_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRTUWXY", dtype=np.uint8)
USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64)


def days(d: dt.date) -> int:
    """Days since 1970-01-01."""
    return (d - EPOCH).days


def digits(x: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers as an (n, width) uint8 matrix of ASCII codes."""
    x = np.asarray(x, dtype=np.int64)
    pow10 = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((x[:, None] // pow10[None, :]) % 10 + 48).astype(np.uint8)


def ascii_strings(mat: np.ndarray) -> pa.Array:
    """An Arrow string array from an (n, k) uint8 matrix of ASCII codes (all strings k long), zero-copy."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    n, k = mat.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * k).astype(np.int32 if n * k < 2**31 else np.int64)
    typ = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes())])


def code_strings(prefix: str, x: np.ndarray, width: int) -> pa.Array:
    """Strings ``prefix`` + zero-padded ``x`` (ASCII prefix)."""
    d = digits(x, width)
    if prefix:
        p = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
        d = np.hstack([np.broadcast_to(p, (len(d), len(p))), d])
    return ascii_strings(d)


def id_numbers(region: np.ndarray, birth_ymd: np.ndarray, seq: np.ndarray) -> pa.Array:
    """18-character resident ID numbers with the MOD 11-2 check character."""
    body = np.hstack([digits(region, 6), digits(birth_ymd, 8), digits(seq, 3)])
    chk = ID_CHECK[((body.astype(np.int64) - 48) @ ID_WEIGHTS) % 11]
    return ascii_strings(np.hstack([body, chk[:, None]]))


def uscc_codes(region: np.ndarray, org_idx: np.ndarray) -> pa.Array:
    """Unified social credit codes: '91' + region + 9 alphabet characters + the MOD 31 check character.

    ``org_idx`` is an (n, 9) matrix of indices into the 31-character alphabet.
    """
    n = len(region)
    vals = np.hstack([np.tile(np.array([9, 1]), (n, 1)), digits(region, 6).astype(np.int64) - 48, org_idx])
    chk = (31 - (vals @ USCC_WEIGHTS) % 31) % 31
    return ascii_strings(USCC_ALPHABET[np.hstack([vals, chk[:, None]])])


def decimal(units: np.ndarray, scale: int, precision: int = 18, mask: np.ndarray | None = None) -> pa.Array:
    """A decimal128 array from integer units (cents for scale 2); ``mask`` True means NULL."""
    u = np.asarray(units, dtype=np.int64)
    buf = np.empty((len(u), 2), dtype=np.int64)
    buf[:, 0] = u
    buf[:, 1] = np.where(u < 0, -1, 0)
    arr = pa.Array.from_buffers(pa.decimal128(precision, scale), len(u), [None, pa.py_buffer(buf.tobytes())])
    return _null_where(arr, mask)


def money(cents: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """DECIMAL(18,2) from integer cents."""
    return decimal(cents, 2, 18, mask)


def rate(micros: np.ndarray) -> pa.Array:
    """DECIMAL(9,6) from integer millionths."""
    return decimal(micros, 6, 9)


def date_arr(day_nums: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """date32 from days since the epoch."""
    arr = pa.array(np.asarray(day_nums, dtype=np.int32), type=pa.int32()).cast(pa.date32())
    return _null_where(arr, mask)


def int_arr(x: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """int64 with optional NULLs."""
    return pa.array(np.asarray(x, dtype=np.int64), mask=mask)


def pick(choices: list[str] | tuple[str, ...], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Strings chosen by index from a small vocabulary."""
    arr = pa.array(list(choices), type=pa.string()).take(pa.array(np.asarray(idx, dtype=np.int32)))
    return _null_where(arr, mask)


def concat(*parts: pa.Array) -> pa.Array:
    """Element-wise string concatenation."""
    return pc.binary_join_element_wise(*parts, "")


def _null_where(arr: pa.Array, mask: np.ndarray | None) -> pa.Array:
    if mask is None or not np.any(mask):
        return arr
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), pa.scalar(None, arr.type), arr)


def ymd(day_nums: np.ndarray) -> np.ndarray:
    """(year, month, day) int arrays from days since the epoch."""
    d = np.asarray(day_nums, dtype="datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    return (
        y.astype(np.int64) + 1970,
        (m - y.astype("datetime64[M]")).astype(np.int64) + 1,
        (d - m.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def add_months(day_nums: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Add calendar months to dates (day clipped to the month's length)."""
    y, m, d = ymd(day_nums)
    total = (y - 1970) * 12 + (m - 1) + np.asarray(months, dtype=np.int64)
    first = total.astype("datetime64[M]").astype("datetime64[D]")
    nxt = (total + 1).astype("datetime64[M]").astype("datetime64[D]")
    dim = (nxt - first).astype(np.int64)
    return first.astype(np.int64) + np.minimum(d, dim) - 1


class ExtractWriter:
    """Writes canonical tables as the files a source mapping describes.

    Parameters
    ----------
    mapping : dict
        The parsed mapping YAML (``defaults`` and ``files``).
    """

    def __init__(self, mapping: dict[str, Any]) -> None:
        defaults = mapping.get("defaults", {})
        self.specs: dict[str, dict[str, Any]] = {}
        for f in mapping["files"]:
            spec = {**defaults, **f}
            self.specs[f["file"]] = spec
        self.bytes_written = 0

    def files_for(self, table: str) -> list[str]:
        """The file names that feed a canonical table."""
        return [name for name, s in self.specs.items() if s["table"] == table]

    def write(self, folder: Path, file: str, table: pa.Table) -> int:
        """Write one file; returns the number of data rows."""
        spec = self.specs[file]
        constants = spec.get("constants") or {}
        rename = {canon: src for src, canon in (spec.get("columns") or {}).items()}
        codes = spec.get("codes") or {}
        date_fmt = spec.get("date_format", "%Y-%m-%d")
        ts_fmt = spec.get("timestamp_format", "%Y-%m-%d %H:%M:%S")
        delim = spec.get("delimiter", ",")
        names, cols = [], []
        for name, col in zip(table.column_names, table.columns, strict=True):
            if name in constants:
                continue
            if name in codes:
                rev = {canon: src for src, canon in codes[name].items()}
                keys = sorted(rev)
                idx = pc.index_in(col, value_set=pa.array(keys))
                col = pa.array([rev[k] for k in keys]).take(idx)
            if pa.types.is_date(col.type) and date_fmt != "%Y-%m-%d":
                col = pc.strftime(col.cast(pa.timestamp("s")), format=date_fmt)
            elif pa.types.is_timestamp(col.type) and ts_fmt != "%Y-%m-%d %H:%M:%S":
                col = pc.strftime(col, format=ts_fmt)
            names.append(rename.get(name, name))
            cols.append(col)
        out = pa.table(cols, names=[f"c{i}" for i in range(len(cols))])
        header = (delim.join(names) + "\n").encode("utf-8")
        opts = pacsv.WriteOptions(
            include_header=False, delimiter=delim, quoting_style="none", batch_size=65536
        )
        enc = spec.get("encoding", "utf-8").lower()
        path = folder / file
        if enc in ("utf-8", "utf8"):
            with open(path, "wb") as fh:
                fh.write(header)
                pacsv.write_csv(out, fh, opts)
        else:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(out, sink, opts)
            data = (header + sink.getvalue().to_pybytes()).decode("utf-8").encode(enc)
            path.write_bytes(data)
        n = path.stat().st_size
        self.bytes_written += n
        return out.num_rows
