"""Validated ingest of one as-of date of source extracts into the Parquet lake, with quarantine."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cimlib.config import Home
from cimlib.contracts import TableContract, load_codes, load_contracts, table_order

from ._errors import IngestError
from ._files import FileScan, is_utf8_codec, read_header, read_lines, scan_file
from ._mapping import FileSpec, Mapping, load_mapping
from ._sql import ident, lit, raw, row_checks, typed_sql

log = logging.getLogger(__name__)

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# zstd at level 1: 10% faster to write than the default level 3, and no larger on these extracts.
PARQUET_COMPRESSION = "zstd, COMPRESSION_LEVEL 1"
REPORT_VERSION = 1


@dataclass
class _Source:
    idx: int
    spec: FileSpec
    header: list[str]
    utf8_path: Path
    select: dict[str, str]  # canonical column -> SQL over the file's source columns
    future: Future[FileScan] | None = None
    _scan: FileScan | None = None

    def wait(self) -> FileScan:
        """The file scan (checksum, line counts), waiting for the background pass if one runs."""
        if self._scan is None:
            assert self.future is not None
            self._scan = self.future.result()
        return self._scan

    @property
    def scan(self) -> FileScan:
        return self.wait()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _as_of(extract_dir: Path) -> _dt.date:
    if not _DATE_DIR.match(extract_dir.name):
        raise IngestError(f"{extract_dir}: the folder name must be the as-of date, YYYY-MM-DD")
    try:
        return _dt.date.fromisoformat(extract_dir.name)
    except ValueError as exc:
        raise IngestError(f"{extract_dir}: {extract_dir.name} is not a valid date") from exc


def _column_sources(
    mapping: Mapping, spec: FileSpec, contract: TableContract, header: list[str], warnings: list[str]
) -> dict[str, str]:
    """Map each canonical column to the SQL producing its raw VARCHAR value from the file's columns."""
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise IngestError(f"{spec.file}: line 1: duplicate header column(s) {', '.join(dupes)}")
    names = set(contract.column_names)
    provided: dict[str, str] = {}
    for h in header:
        canon = spec.columns.get(h)
        if canon is None and h in names and h not in spec.columns.values():
            canon = h
        if canon is None:
            warnings.append(f"{spec.file}: column {h} is not in mapping {mapping.name}; ignored")
            continue
        provided[canon] = h
    select: dict[str, str] = {}
    for col in contract.columns:
        name = col.name
        if name in spec.constants:
            if name in provided:
                warnings.append(
                    f"{spec.file}: column {name} is in the file and a constant; the constant wins"
                )
            select[name] = lit(spec.constants[name])
        elif name in provided:
            expr = ident("s_" + provided[name])
            cmap = spec.codes.get(name)
            if cmap:
                arms = " ".join(f"WHEN {lit(a)} THEN {lit(b)}" for a, b in cmap.items())
                expr = f"CASE {expr} {arms} ELSE {expr} END"
            select[name] = expr
        elif name in spec.absent:
            select[name] = "CAST(NULL AS VARCHAR)"
        else:
            raise IngestError(
                f"{spec.file}: missing column {name} "
                f"(expected by mapping {mapping.name} for table {contract.table})"
            )
    return select


def _read_csv_sql(mapping: Mapping, src: _Source, rejects: str) -> str:
    spec = src.spec
    cols = ", ".join(f"{lit('s_' + h)}: 'VARCHAR'" for h in src.header)
    quote = mapping.setting(spec, "quote")
    return (
        f"read_csv({lit(str(src.utf8_path))}, columns={{{cols}}}, header=true, auto_detect=false, "
        f"delim={lit(mapping.setting(spec, 'delimiter'))}, quote={lit(quote)}, escape={lit(quote)}, "
        f"strict_mode=true, null_padding=false, store_rejects=true, "
        f"rejects_table={lit(rejects + '_e')}, rejects_scan={lit(rejects + '_s')}, encoding='utf-8')"
    )


def _table_select(
    mapping: Mapping, contract: TableContract, sources: list[_Source], rejects: str, numbered: bool
) -> str:
    """One SELECT over all files of a table: ``_file``, typed columns, ``_rowfail`` (first failing row check).

    With ``numbered``, also ``_k``, the row's ordinal among the rows DuckDB read from its file (this
    makes the scan sequential, so it is only used to locate quarantined rows).
    """
    codes = {k: list(v) for k, v in load_codes().items()}
    checks = [(c.name, c.sql, c.reason or "check_failed") for c in contract.checks]
    names = contract.column_names
    parts = []
    for src in sources:
        date_fmt = mapping.setting(src.spec, "date_format")
        ts_fmt = mapping.setting(src.spec, "timestamp_format")
        raw_cols = ", ".join(f"{expr} AS {raw(name)}" for name, expr in src.select.items())
        typed = ", ".join(f"{typed_sql(c, date_fmt, ts_fmt)} AS {ident(c.name)}" for c in contract.columns)
        arms = row_checks(contract.columns, codes, date_fmt, ts_fmt, checks)
        case = "CASE " + " ".join(f"WHEN {c} THEN {f}" for c, f in arms) + " END" if arms else "NULL"
        k = "_k, " if numbered else ""
        k_def = "row_number() OVER () AS _k, " if numbered else ""
        parts.append(
            f"SELECT {src.idx} AS _file, {k}{', '.join(ident(c) for c in names)}, {case} AS _rowfail "
            f"FROM (SELECT {k}{typed}, {', '.join(raw(c) for c in names)} FROM "
            f"(SELECT {k_def}{raw_cols} FROM {_read_csv_sql(mapping, src, rejects)}))"
        )
    return " UNION ALL ".join(parts)


def _fk_sets(contracts: dict[str, TableContract]) -> dict[str, set[str]]:
    """Referenced table -> columns other tables reference in it."""
    out: dict[str, set[str]] = defaultdict(set)
    for c in contracts.values():
        for fk in c.foreign_keys:
            for ref in fk.references:
                if ref != c.table:
                    out[ref].update(fk.ref_columns)
    return out


def _lake_casts(contract: TableContract) -> str:
    """The SELECT list that types good rows for the lake file.

    Code columns are written through an ENUM of their code list: every good row's value is in the list
    (the row checks saw to that), and Parquet stores the column as the same dictionary-encoded strings
    (it reads back as VARCHAR) while DuckDB writes it about 15% faster than from VARCHAR.
    """
    codes = load_codes()
    parts = []
    for c in contract.columns:
        if c.codes and c.codes in codes and codes[c.codes]:
            members = ", ".join(lit(str(v)) for v in codes[c.codes])
            parts.append(f"CAST({ident(c.name)} AS ENUM({members})) AS {ident(c.name)}")
        else:
            parts.append(f"CAST({ident(c.name)} AS {c.sql_type}) AS {ident(c.name)}")
    return ", ".join(parts)


class _Loader:
    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: _dt.date, tmp: Path, mapping: Mapping):
        self.con = con
        self.as_of = as_of
        self.tmp = tmp
        self.mapping = mapping
        self.contracts = load_contracts()
        self.referenced = _fk_sets(self.contracts)
        self.loaded: set[str] = set()

    def _fail_case(self, contract: TableContract, has_dup: bool) -> str:
        """CASE giving the first failing reason: row checks, then duplicate key, then orphan foreign keys."""
        t = contract.table
        pk = contract.primary_key
        arms = ["WHEN _rowfail IS NOT NULL THEN _rowfail"]
        if has_dup:
            tup = ", ".join(ident(c) for c in pk)
            key_text = " || '|' || ".join(f"CAST({ident(c)} AS VARCHAR)" for c in pk)
            arms.append(
                f"WHEN ({tup}) IN (SELECT ({tup}) FROM {ident('dup_' + t)}) THEN "
                f"{{'reason': 'duplicate_key', 'column_name': {lit(','.join(pk))}, "
                f"'detail': {lit('primary key (' + ', '.join(pk) + ') = ')} || {key_text} || "
                "' is not unique; every row with it is quarantined'}"
            )
        for i, fk in enumerate(contract.foreign_keys):
            cols = fk.columns
            tup = ", ".join(ident(c) for c in cols)
            rtup = ", ".join(ident(c) for c in fk.ref_columns)
            refs = []
            for ref in fk.references:
                if ref == t:
                    refs.append(f"SELECT ({rtup}) FROM {ident(f'self_{t}_{i}')}")
                elif ref in self.loaded:
                    refs.append(f"SELECT ({rtup}) FROM {ident('g_' + ref)}")
            notnull = " AND ".join(f"{ident(c)} IS NOT NULL" for c in cols)
            cond = f"{notnull} AND ({tup}) NOT IN ({' UNION ALL '.join(refs)})" if refs else notnull
            value = " || '|' || ".join(f"CAST({ident(c)} AS VARCHAR)" for c in cols)
            where = " or ".join(fk.references)
            arms.append(
                f"WHEN {cond} THEN {{'reason': 'orphan_fk', 'column_name': {lit(','.join(cols))}, "
                f"'detail': {lit(', '.join(cols) + ' ')} || {value} || "
                f"{lit(' not found in ' + where + ' (loaded rows of the same date)')}}}"
            )
        return "CASE " + " ".join(arms) + " END"

    def _fk_orphan_sql(self, contract: TableContract, rel: str) -> list[str]:
        """Per foreign key (to other tables), a query counting rows of ``rel`` whose key is not loaded."""
        out = []
        for fk in contract.foreign_keys:
            refs = [r for r in fk.references if r != contract.table and r in self.loaded]
            if len(refs) != len([r for r in fk.references if r != contract.table]):
                continue  # a referenced table is not loaded: the slow path reports it row by row
            tup = ", ".join(ident(c) for c in fk.columns)
            rtup = ", ".join(ident(c) for c in fk.ref_columns)
            union = " UNION ALL ".join(f"SELECT ({rtup}) FROM {ident('g_' + r)}" for r in refs)
            notnull = " AND ".join(f"{ident(c)} IS NOT NULL" for c in fk.columns)
            cond = f"{notnull} AND ({tup}) NOT IN ({union})" if refs else notnull
            out.append(f"(SELECT count(*) FROM {rel} WHERE {cond})")
        return out

    def _load_fast(
        self, contract: TableContract, sources: list[_Source], warnings: list[str]
    ) -> dict[str, Any] | None:
        """The common case, where every row is good: one streaming pass from CSV to Parquet.

        Rows passing the row checks are written straight to the lake file, in file order; duplicate
        keys and orphan foreign keys are then counted on the written file (a key-column scan). When
        any row failed, or a key is duplicated or orphaned, this returns ``None`` and the caller runs
        the checked path, which locates and quarantines every bad row. Tables with a self-reference
        always take the checked path.
        """
        con = self.con
        t = contract.table
        if any(t in fk.references for fk in contract.foreign_keys):
            return None
        m = self.mapping
        out_dir = self.tmp / "lake" / t
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "data.parquet"
        casts = _lake_casts(contract)
        main = _table_select(m, contract, sources, f"rej_{t}_fast", False)
        n_good = con.execute(
            f"COPY (SELECT DATE {lit(self.as_of.isoformat())} AS as_of_date, {casts} FROM ({main}) "
            f"WHERE _rowfail IS NULL) TO {lit(str(path))} (FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION})"
        ).fetchall()[0][0]
        malformed = self._rejects(f"rej_{t}_fast", sources)
        for src in sources:
            src.wait()
        expected = sum(s.scan.physical_lines - 1 - len(s.scan.blank_lines) for s in sources) - len(malformed)
        if n_good != expected:
            return None
        rel = f"read_parquet({lit(str(path))})"
        pk_cols = ", ".join(ident(c) for c in contract.primary_key)
        # Duplicate keys via a hash of the key: a true duplicate always shows (equal hashes); a hash
        # collision only sends the table down the checked path, which compares the keys themselves.
        checks = [f"(SELECT count(*) - count(DISTINCT hash({pk_cols})) FROM {rel})"]
        checks += self._fk_orphan_sql(contract, rel)
        if any(n for n in con.execute(f"SELECT {', '.join(checks)}").fetchall()[0]):
            return None
        if t in self.referenced:
            keys = ", ".join(ident(c) for c in sorted(self.referenced[t]))
            con.execute(f"CREATE OR REPLACE TEMP TABLE {ident('g_' + t)} AS SELECT {keys} FROM {rel}")
        self.loaded.add(t)
        per_file_good = {
            src.idx: src.scan.physical_lines - 1 - len(src.scan.blank_lines)
            - sum(1 for x in malformed if x[0] == src.idx)
            for src in sources
        }
        return self._quarantine(contract, sources, [], malformed, per_file_good, warnings)

    def load_table(
        self, contract: TableContract, sources: list[_Source], warnings: list[str]
    ) -> dict[str, Any]:
        """Load one table's files: the fast path when every row is good, else the checked path."""
        fast = self._load_fast(contract, sources, warnings)
        if fast is not None:
            return fast
        return self._load_checked(contract, sources, warnings)

    def _load_checked(
        self, contract: TableContract, sources: list[_Source], warnings: list[str]
    ) -> dict[str, Any]:
        con = self.con
        t = contract.table
        pk = contract.primary_key
        m = self.mapping

        # 1. Duplicate keys (value based: every row with a duplicated key is quarantined).
        pk_cols = ", ".join(ident(c) for c in pk)
        dup_tbl = ident("dup_" + t)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {dup_tbl} AS SELECT {pk_cols} FROM "
            f"({_table_select(m, contract, sources, f'rej_{t}_pre', False)}) "
            f"WHERE {' AND '.join(f'{ident(c)} IS NOT NULL' for c in pk)} GROUP BY ALL HAVING count(*) > 1"
        )
        has_dup = con.execute(f"SELECT count(*) FROM {dup_tbl}").fetchone()[0] > 0
        # 2. Self references match the rows of the same table that pass the row checks.
        for i, fk in enumerate(contract.foreign_keys):
            if t in fk.references:
                rcols = ", ".join(ident(c) for c in fk.ref_columns)
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {ident(f'self_{t}_{i}')} AS SELECT DISTINCT {rcols} FROM "
                    f"({_table_select(m, contract, sources, f'rej_{t}_self', False)}) WHERE _rowfail IS NULL"
                )
        # 3. Good rows -> lake partition (contract order and types, leading as_of_date), in one pass.
        fail = self._fail_case(contract, has_dup)
        out_dir = self.tmp / "lake" / t
        out_dir.mkdir(parents=True, exist_ok=True)
        casts = _lake_casts(contract)
        main = _table_select(m, contract, sources, f"rej_{t}", False)
        good_sql = (
            f"SELECT DATE {lit(self.as_of.isoformat())} AS as_of_date, {casts} FROM "
            f"(SELECT *, {fail} AS _fail FROM ({main})) WHERE _fail IS NULL"
        )
        target = lit(str(out_dir / "data.parquet"))
        if t in self.referenced:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {ident('g_' + t)} AS {good_sql}")
            con.execute(
                f"COPY {ident('g_' + t)} TO {target} (FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION})"
            )
            n_good = con.execute(f"SELECT count(*) FROM {ident('g_' + t)}").fetchone()[0]
        else:
            n_good = con.execute(
                f"COPY ({good_sql}) TO {target} (FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION})"
            ).fetchone()[0]
        self.loaded.add(t)

        # 4. Malformed rows (DuckDB's rejects, with their physical line numbers).
        malformed = self._rejects(f"rej_{t}", sources)
        for src in sources:
            src.wait()
        expected = sum(s.scan.physical_lines - 1 - len(s.scan.blank_lines) for s in sources) - len(malformed)
        # 5. Bad rows, only when some row was not loaded: a numbered pass locates them.
        bad: list[tuple] = []
        per_file_good: dict[int, int] = {}
        if n_good != expected:
            numbered = _table_select(m, contract, sources, f"rej_{t}_num", True)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _bad AS SELECT _file, _k, _fail.column_name AS column_name, "
                f"_fail.reason AS reason, _fail.detail AS detail FROM (SELECT _file, _k, {fail} AS _fail "
                f"FROM ({numbered})) WHERE _fail IS NOT NULL"
            )
            self._skip_table(sources, malformed)
            bad = con.execute(
                "SELECT q._file, 1 + q._k + COALESCE(k.n, 0) AS line, q.column_name, q.reason, q.detail "
                "FROM _bad q ASOF LEFT JOIN _skipg k ON q._file = k._file AND q._k > k.g ORDER BY 1, 2"
            ).fetchall()
            if len(sources) > 1:
                per_file_good = dict(
                    con.execute(
                        f"SELECT _file, count(*) FILTER (WHERE _fail IS NULL) FROM "
                        f"(SELECT _file, {fail} AS _fail FROM ({main})) GROUP BY 1"
                    ).fetchall()
                )
            else:
                per_file_good = {sources[0].idx: n_good}
        else:
            for src in sources:
                per_file_good[src.idx] = (
                    src.scan.physical_lines
                    - 1
                    - len(src.scan.blank_lines)
                    - sum(1 for x in malformed if x[0] == src.idx)
                )
        return self._quarantine(contract, sources, bad, malformed, per_file_good, warnings)

    def _rejects(self, rej: str, sources: list[_Source]) -> list[tuple]:
        by_path = {str(src.utf8_path): src for src in sources}
        rows = self.con.execute(
            f"SELECT s.file_path, e.line, min(e.line_byte_position), min(e.byte_position), "
            f"arg_min(e.error_type::VARCHAR, e.byte_position), arg_min(e.csv_line, e.byte_position), "
            f"arg_min(e.error_message, e.byte_position), arg_min(e.column_name, e.byte_position) "
            f"FROM {rej}_e e JOIN {rej}_s s USING (scan_id, file_id) GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        malformed = []
        for path, line, line_pos, byte_pos, etype, csv_line, message, column in rows:
            src = by_path[path]
            if etype == "INVALID ENCODING":
                text = read_lines(Path(path), {int(line)}).get(int(line), "")
                raise IngestError(
                    f"{src.spec.file}: line {line}, column {int(byte_pos) - int(line_pos) + 1}: bytes do not "
                    f"decode as {self.mapping.setting(src.spec, 'encoding')} (the file is not encoded as the "
                    f"mapping declares): {text[:80]!r}"
                )
            if column is not None and column.startswith("s_"):
                column = column[2:]
                column = src.spec.columns.get(column, column)
            malformed.append(
                (src.idx, int(line), column, f"{etype.lower()}: {message}", (csv_line or "").rstrip("\r\n"))
            )
        return malformed

    def _skip_table(self, sources: list[_Source], malformed: list[tuple]) -> None:
        """Physical lines DuckDB yields no row for (rejected or blank), to turn row ordinals into lines."""
        con = self.con
        skip_rows = [(x[0], x[1]) for x in malformed]
        for src in sources:
            skip_rows.extend((src.idx, ln) for ln in src.scan.blank_lines)
        con.execute("CREATE OR REPLACE TEMP TABLE _skip (_file INTEGER, line BIGINT)")
        if skip_rows:
            con.executemany("INSERT INTO _skip VALUES (?, ?)", skip_rows)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _skipg AS SELECT _file, g, max(j) AS n FROM ("
            "SELECT _file, line - 1 - row_number() OVER w AS g, row_number() OVER w AS j "
            "FROM (SELECT DISTINCT * FROM _skip) WINDOW w AS (PARTITION BY _file ORDER BY line)) GROUP BY ALL"
        )

    def _quarantine(
        self,
        contract: TableContract,
        sources: list[_Source],
        bad: list[tuple],
        malformed: list[tuple],
        per_file_good: dict[int, int],
        warnings: list[str],
    ) -> dict[str, Any]:
        t = contract.table
        wanted: dict[int, set[int]] = defaultdict(set)
        for fidx, line, *_ in bad:
            wanted[fidx].add(int(line))
        by_idx = {s.idx: s for s in sources}
        texts = {fidx: read_lines(by_idx[fidx].utf8_path, lines) for fidx, lines in wanted.items()}
        rows = [
            (fidx, int(line), col, reason, detail, texts[fidx].get(int(line)))
            for fidx, line, col, reason, detail in bad
        ]
        rows += [(f, line, col, "malformed_row", detail, text) for f, line, col, detail, text in malformed]
        rows.sort(key=lambda r: (r[0], r[1]))
        per_file: dict[int, dict[str, Any]] = {}
        for src in sources:
            g = int(per_file_good.get(src.idx, 0))
            reasons: dict[str, int] = defaultdict(int)
            for r in rows:
                if r[0] == src.idx:
                    reasons[r[3]] += 1
            q = sum(reasons.values())
            read = g + q
            expected = src.scan.physical_lines - 1 - len(src.scan.blank_lines)
            if src.scan.blank_lines:
                warnings.append(f"{src.spec.file}: {len(src.scan.blank_lines)} blank line(s) ignored")
            if read != expected:
                warnings.append(
                    f"{src.spec.file}: {read} rows read but {expected} non-blank data lines "
                    f"(quoted fields spanning lines?); line numbers after such rows may be off"
                )
            if not src.scan.ends_with_newline and src.scan.size:
                warnings.append(f"{src.spec.file}: the last line has no line ending (truncated file?)")
            per_file[src.idx] = {
                "file": src.spec.file,
                "table": t,
                "sha256": src.scan.sha256,
                "bytes": src.scan.size,
                "rows_read": read,
                "rows_loaded": g,
                "rows_quarantined": q,
                "reasons": dict(sorted(reasons.items())),
            }
        if rows:
            qdir = self.tmp / "quarantine"
            qdir.mkdir(parents=True, exist_ok=True)
            tbl = pa.table(
                {
                    "as_of_date": pa.array([self.as_of] * len(rows), pa.date32()),
                    "table": pa.array([t] * len(rows), pa.string()),
                    "file": pa.array([by_idx[r[0]].spec.file for r in rows], pa.string()),
                    "line": pa.array([r[1] for r in rows], pa.int64()),
                    "column_name": pa.array([r[2] for r in rows], pa.string()),
                    "reason": pa.array([r[3] for r in rows], pa.string()),
                    "detail": pa.array([r[4] for r in rows], pa.string()),
                    "raw_line": pa.array([r[5] for r in rows], pa.string()),
                }
            )
            self.con.register("_q_arrow", tbl)
            self.con.execute(
                f"COPY (SELECT * FROM _q_arrow) TO {lit(str(qdir / (t + '.parquet')))} "
                f"(FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION})"
            )
            self.con.unregister("_q_arrow")
        return {"files": per_file}


def _publish(tmp: Path, home: Home, as_of: _dt.date, tables: list[str], all_tables: list[str]) -> None:
    """Move the date's outputs from ``tmp`` into place, one atomic rename per file or folder."""
    part = f"as_of={as_of.isoformat()}"
    for t in all_tables:
        target = home.lake / t / part
        if t in tables:
            target.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "lake" / t / "data.parquet", target / "data.parquet")
            for extra in target.iterdir():
                if extra.name != "data.parquet":
                    shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        elif target.exists():
            shutil.rmtree(target)
    qtarget = home.quarantine / part
    qnew = tmp / "quarantine"
    qnew.mkdir(parents=True, exist_ok=True)
    home.quarantine.mkdir(parents=True, exist_ok=True)
    if qtarget.exists():
        os.replace(qtarget, tmp / "quarantine.old")
    os.replace(qnew, qtarget)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _previous_report(home: Home, as_of: _dt.date) -> dict[str, Any] | None:
    p = home.loads / f"{as_of.isoformat()}.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ingest_date(extract_dir: Path, home: Home, mapping: Path | None = None, progress: bool = False) -> dict:
    """Validate one as-of date of extracts and load it into the lake, quarantining bad rows.

    Every source row is either loaded or quarantined with a reason (``rows_read = rows_loaded +
    rows_quarantined`` for every file and table). Rows are checked in a fixed priority order and
    quarantined with the first failing reason: ``malformed_row`` (wrong field count, unterminated quote,
    truncated line), ``missing_required``, ``bad_type``, ``bad_format``, ``unknown_code`` (after the
    mapping's code map), ``out_of_range``, ``bad_check_digit`` (ID number incl. its birth date, credit
    code), the contract's checks (their reason, else ``check_failed``), ``duplicate_key`` and ``orphan_fk``.
    A duplicated primary key quarantines *all* rows sharing it (no keep-first). A foreign key must match a
    loaded row of a referenced table of the same date (tables are loaded in ``table_order()``; a
    self-reference must match a row of the same file that passed the row checks).

    The date is loaded idempotently: outputs are written to a temporary folder, then each lake partition
    and the quarantine folder is replaced by a rename, and the load report is written last. The previous
    report is removed first, so a date without a report is not loaded.

    Parameters
    ----------
    extract_dir : Path
        The as-of date folder, named ``YYYY-MM-DD``, holding the files of the mapping.
    home : Home
        The installation; outputs go to ``home.lake``, ``home.quarantine`` and ``home.state/loads``.
    mapping : Path, optional
        The source mapping; default ``home.parameters/sources/default.yaml``.
    progress : bool
        Show a progress bar (rich) over the files.

    Returns
    -------
    dict
        The load report (also written to ``home.state/loads/<date>.json``): ``as_of_date``, ``mapping``,
        ``started``, ``finished``, ``seconds``, ``unchanged`` (every source checksum and the mapping equal
        the previous load's), ``tables`` (per table: ``files``, ``rows_read``, ``rows_loaded``,
        ``rows_quarantined``, ``reasons``), ``files`` (the same per file, plus ``sha256`` and ``bytes``),
        ``totals`` and ``warnings``.

    Raises
    ------
    IngestError
        On a file-level problem: a mapped file is missing, a column the mapping expects is missing, the
        bytes do not decode with the declared encoding (with line and column), an invalid mapping.
    """
    t0 = time.perf_counter()
    started = _now()
    extract_dir = Path(extract_dir)
    as_of = _as_of(extract_dir)
    if not extract_dir.is_dir():
        raise IngestError(f"{extract_dir}: not a folder")
    m = load_mapping(mapping, home)
    mapping_sha = hashlib.sha256(Path(m.path).read_bytes()).hexdigest() if m.path else None
    contracts = load_contracts()
    order = table_order()
    warnings: list[str] = []
    log.info("ingest %s from %s with mapping %s", as_of, extract_dir, m.name)

    present = {p.name for p in extract_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    mapped = [f.file for f in m.files]
    missing = [f for f in mapped if f not in present]
    if missing:
        raise IngestError(f"{extract_dir}: mapped file(s) missing: {', '.join(missing)} (mapping {m.name})")
    warnings.extend(f"{name}: not in mapping {m.name}; ignored" for name in sorted(present - set(mapped)))
    unmapped = [t for t in order if t not in {f.table for f in m.files}]
    warnings.extend(f"table {t}: no file in mapping {m.name}; not loaded" for t in unmapped)

    previous = _previous_report(home, as_of)
    report_path = home.loads / f"{as_of.isoformat()}.json"
    tmp = home.state / "tmp" / f"ingest-{as_of.isoformat()}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-scan")
    try:
        con.execute("SET preserve_insertion_order = true")
        loader = _Loader(con, as_of, tmp, m)
        by_table: dict[str, list[FileSpec]] = defaultdict(list)
        for f in m.files:
            by_table[f.table].append(f)
        idx = 0
        file_reports: dict[str, dict[str, Any]] = {}
        table_reports: dict[str, dict[str, Any]] = {}
        bar_ctx = _progress() if progress else nullcontext(None)
        with bar_ctx as bar:
            task = bar.add_task("ingest", total=len(m.files)) if bar is not None else None
            for t in order:
                specs = by_table.get(t)
                if not specs:
                    continue
                t1 = time.perf_counter()
                sources = []
                for spec in specs:
                    if bar is not None:
                        bar.update(task, description=f"{as_of} {spec.file}")
                    enc = m.setting(spec, "encoding")
                    path = extract_dir / spec.file
                    args = (path, enc, m.setting(spec, "delimiter"), m.setting(spec, "quote"), tmp)
                    header = read_header(*args[:4])
                    select = _column_sources(m, spec, contracts[t], header, warnings)
                    if is_utf8_codec(enc):
                        # Checksum and line counts run alongside DuckDB's read of the same file.
                        src = _Source(idx, spec, header, path, select, future=pool.submit(scan_file, *args))
                    else:
                        scan = scan_file(*args)
                        if scan.utf8_hint:
                            warnings.append(
                                f"{spec.file}: declared {enc} but the bytes are also valid UTF-8 with "
                                "non-ASCII text; check the encoding"
                            )
                        src = _Source(idx, spec, header, scan.utf8_path, select, _scan=scan)
                    sources.append(src)
                    idx += 1
                res = loader.load_table(contracts[t], sources, warnings)
                agg = {"files": [], "rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0, "reasons": {}}
                reasons: dict[str, int] = defaultdict(int)
                for fr in res["files"].values():
                    file_reports[fr["file"]] = fr
                    agg["files"].append(fr["file"])
                    for k in ("rows_read", "rows_loaded", "rows_quarantined"):
                        agg[k] += fr[k]
                    for r, n in fr["reasons"].items():
                        reasons[r] += n
                agg["reasons"] = dict(sorted(reasons.items()))
                agg["seconds"] = round(time.perf_counter() - t1, 3)
                table_reports[t] = agg
                log.info(
                    "%s %s: %d read, %d loaded, %d quarantined in %.2fs",
                    as_of,
                    t,
                    agg["rows_read"],
                    agg["rows_loaded"],
                    agg["rows_quarantined"],
                    time.perf_counter() - t1,
                )
                if bar is not None:
                    bar.advance(task, len(specs))
        # Commit: drop the old report, swap the outputs in, write the report last.
        report_path.unlink(missing_ok=True)
        _publish(tmp, home, as_of, list(table_reports), order)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)

    totals = {
        k: sum(tr[k] for tr in table_reports.values())
        for k in ("rows_read", "rows_loaded", "rows_quarantined")
    }
    total_reasons: dict[str, int] = defaultdict(int)
    for tr in table_reports.values():
        for r, n in tr["reasons"].items():
            total_reasons[r] += n
    totals["reasons"] = dict(sorted(total_reasons.items()))
    unchanged = bool(
        previous
        and previous.get("mapping_sha256") == mapping_sha
        and {f: v.get("sha256") for f, v in previous.get("files", {}).items()}
        == {f: v["sha256"] for f, v in file_reports.items()}
    )
    report = {
        "report_version": REPORT_VERSION,
        "as_of_date": as_of.isoformat(),
        "source_dir": str(extract_dir.resolve()),
        "mapping": m.name,
        "mapping_file": m.path,
        "mapping_sha256": mapping_sha,
        "started": started,
        "finished": _now(),
        "seconds": round(time.perf_counter() - t0, 3),
        "unchanged": unchanged,
        "tables": table_reports,
        "files": dict(sorted(file_reports.items())),
        "totals": totals,
        "warnings": warnings,
    }
    _write_json(report_path, report)
    for w in warnings:
        log.warning("%s: %s", as_of, w)
    log.info(
        "ingest %s done in %.1fs: %d read, %d loaded, %d quarantined%s",
        as_of,
        report["seconds"],
        totals["rows_read"],
        totals["rows_loaded"],
        totals["rows_quarantined"],
        " (unchanged)" if unchanged else "",
    )
    return report


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def ingest_all(root: Path, home: Home, mapping: Path | None = None, progress: bool = False) -> list[dict]:
    """Ingest every ``YYYY-MM-DD`` subfolder of ``root``, in date order.

    Other folders (such as ``_answers``) and files are ignored.

    Parameters
    ----------
    root : Path
        The folder holding one subfolder per as-of date.
    home : Home
        The installation.
    mapping : Path, optional
        The source mapping; default ``home.parameters/sources/default.yaml``.
    progress : bool
        Show a progress bar per date.

    Returns
    -------
    list of dict
        The load reports, in date order.

    Raises
    ------
    IngestError
        When ``root`` is not a folder, or on the first date with a file-level problem (earlier dates stay
        loaded).
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    dates = sorted(p for p in root.iterdir() if p.is_dir() and _DATE_DIR.match(p.name))
    if not dates:
        log.warning("no YYYY-MM-DD folders under %s", root)
    return [ingest_date(d, home, mapping=mapping, progress=progress) for d in dates]


def load_reports(home: Home) -> list[dict]:
    """Return every load report of the installation, in as-of date order.

    Parameters
    ----------
    home : Home
        The installation.

    Returns
    -------
    list of dict
        One report per loaded as-of date (see :func:`ingest_date`).
    """
    d = home.loads
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        if _DATE_DIR.match(p.stem):
            out.append(json.loads(p.read_text(encoding="utf-8")))
    return out
