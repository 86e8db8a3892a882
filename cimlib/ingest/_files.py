"""One pass over a source file: checksum, line accounting, encoding check and transcoding to UTF-8."""

from __future__ import annotations

import codecs
import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import IngestError

_CHUNK = 8 << 20


@dataclass
class FileScan:
    """What one pass over a source file found."""

    path: Path
    utf8_path: Path
    sha256: str
    size: int
    newlines: int
    ends_with_newline: bool
    header: list[str]
    blank_lines: list[int] = field(default_factory=list)
    utf8_hint: bool = False

    @property
    def physical_lines(self) -> int:
        """Lines in the file, the header included."""
        return self.newlines + (0 if self.ends_with_newline or self.size == 0 else 1)


def is_utf8_codec(encoding: str) -> bool:
    """Tell whether ``encoding`` is UTF-8 (read in place by DuckDB)."""
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _decode_error(
    path: Path, encoding: str, piece: bytes, lines_before: int, exc: UnicodeDecodeError
) -> IngestError:
    start = exc.start
    line_start = piece.rfind(b"\n", 0, start) + 1
    line = lines_before + piece.count(b"\n", 0, start) + 1
    column = len(piece[line_start:start].decode(encoding, errors="replace")) + 1
    bad = piece[start : min(exc.end, start + 4)]
    return IngestError(
        f"{path.name}: line {line}, column {column}: bytes {bad!r} do not decode as {encoding} "
        f"(the file is not {encoding}-encoded as the mapping declares)"
    )


def read_header(path: Path, encoding: str, delimiter: str, quote: str) -> list[str]:
    """The column names of the header line of ``path``."""
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    if not first:
        raise IngestError(f"{path.name}: the file is empty (expected a header line)")
    enc = "utf-8-sig" if is_utf8_codec(encoding) else encoding
    try:
        text = first.decode(enc).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, first, 0, exc) from exc
    header = next(csv.reader([text], delimiter=delimiter, quotechar=quote), [])
    return [h.strip() for h in header]


def _blank_lines(buf: bytes, newlines_before_buf: int) -> set[int]:
    """Line numbers of blank lines that start inside ``buf`` (after a newline in it)."""
    a = np.frombuffer(buf, np.uint8)
    if a.size < 2:
        return set()
    n = a == 10
    nxt_cr_nl = np.zeros(a.size - 1, dtype=bool)
    if a.size > 2:
        nxt_cr_nl[:-1] = (a[1:-1] == 13) & n[2:]
    cand = n[:-1] & (n[1:] | nxt_cr_nl)
    if not cand.any():
        return set()
    csum = np.cumsum(n)
    return {newlines_before_buf + int(csum[i]) + 1 for i in np.flatnonzero(cand)}


def scan_file(path: Path, encoding: str, delimiter: str, quote: str, tmp_dir: Path) -> FileScan:
    """Checksum ``path``, count its lines, find blank lines and read its header.

    A file in an encoding other than UTF-8 is decoded strictly and written as UTF-8 to ``tmp_dir`` (one
    streaming pass, whole lines at a time, so line numbers are kept); a byte sequence that does not decode
    raises :class:`IngestError` naming the line and column. UTF-8 files are read in place (DuckDB reports
    invalid UTF-8 itself).
    """
    header = read_header(path, encoding, delimiter, quote)
    utf8 = is_utf8_codec(encoding)
    out_path = path if utf8 else tmp_dir / (path.name + ".utf8")
    digest = hashlib.sha256()
    newlines = 0
    size = 0
    tail = b""
    blank: set[int] = set()
    utf8_hint = False
    carry = b""
    decoded_lines = 0
    out = None if utf8 else out_path.open("wb")

    def _transcode(piece: bytes) -> None:
        nonlocal utf8_hint, decoded_lines
        try:
            text = piece.decode(encoding)
        except UnicodeDecodeError as exc:
            raise _decode_error(path, encoding, piece, decoded_lines, exc) from exc
        if not utf8_hint and not piece.isascii():
            try:
                piece.decode("utf-8")
                utf8_hint = True
            except UnicodeDecodeError:
                pass
        out.write(text.encode("utf-8"))
        decoded_lines += piece.count(b"\n")

    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                # Blank lines are rare: look for one with a substring search (inside the chunk, and across
                # its start) before the numpy pass; numpy counts newlines twice as fast as bytes.count.
                edge = tail + chunk[:2]
                if any(p in part for part in (chunk, edge) for p in (b"\n\n", b"\n\r\n")):
                    blank |= _blank_lines(tail + chunk, newlines - tail.count(b"\n"))
                newlines += int(np.count_nonzero(np.frombuffer(chunk, np.uint8) == 10))
                size += len(chunk)
                tail = chunk[-2:]
                if out is not None:
                    buf = carry + chunk if carry else chunk
                    cut = buf.rfind(b"\n")
                    if cut < 0:
                        carry = buf
                        continue
                    carry = buf[cut + 1 :]
                    _transcode(buf[: cut + 1])
        if out is not None and carry:
            _transcode(carry)
    finally:
        if out is not None:
            out.close()
    if size == 0:
        raise IngestError(f"{path.name}: the file is empty (expected a header line)")
    blank.discard(1)
    last_line = newlines + (0 if tail.endswith(b"\n") else 1)
    return FileScan(
        path=path,
        utf8_path=out_path,
        sha256=digest.hexdigest(),
        size=size,
        newlines=newlines,
        ends_with_newline=tail.endswith(b"\n"),
        header=header,
        blank_lines=sorted(b for b in blank if b <= last_line),
        utf8_hint=utf8_hint,
    )


def read_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """Return the text (UTF-8, without the line ending) of the 1-based physical lines in ``wanted``."""
    out: dict[int, str] = {}
    if not wanted:
        return out
    top = max(wanted)
    with path.open("rb") as fh:
        for i, raw in enumerate(fh, start=1):
            if i in wanted:
                out[i] = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if i >= top:
                break
    return out
