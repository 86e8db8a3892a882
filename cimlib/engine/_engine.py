"""Execution engines: one ``Engine`` interface, DuckDB as the default implementation.

The SQL models are written in portable SQL (ANSI plus what sqlglot transpiles to Spark). Everything
engine-specific (how a Parquet file list is read, how a table is materialised, identifier quoting)
lives in a :class:`Dialect` and an :class:`Engine`, following the Splink pattern of one database API
class per backend.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

log = logging.getLogger(__name__)


class Dialect:
    """SQL spelling of one backend."""

    name = "ansi"

    def quote(self, ident: str) -> str:
        """Quote an identifier."""
        return '"' + ident.replace('"', '""') + '"'

    def literal(self, value: str) -> str:
        """Quote a string literal."""
        return "'" + str(value).replace("'", "''") + "'"

    def read_parquet(self, paths: Sequence[Path]) -> str:
        """A table expression reading the given Parquet files."""
        raise NotImplementedError

    def empty_relation(self, columns: Sequence[tuple[str, str]]) -> str:
        """A query returning no rows with the given ``(name, sql_type)`` columns."""
        cols = ", ".join(f"CAST(NULL AS {t}) AS {self.quote(n)}" for n, t in columns)
        return f"SELECT {cols} WHERE 1 = 0"


class DuckDBDialect(Dialect):
    """DuckDB spelling."""

    name = "duckdb"

    def read_parquet(self, paths: Sequence[Path]) -> str:
        """A ``read_parquet`` call over an explicit file list (the as-of date is a column in the file)."""
        files = ", ".join(self.literal(str(p)) for p in paths)
        return f"read_parquet([{files}], union_by_name = true, hive_partitioning = false)"


class Engine(ABC):
    """A SQL backend the pipeline runs on."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run a statement, discarding any result."""

    @abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""

    @abstractmethod
    def columns(self, relation: str) -> list[tuple[str, str]]:
        """``(name, type)`` of the columns of a table or view."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def create_table_as(self, name: str, sql: str, order_by: Sequence[str] = ()) -> None:
        """Materialise ``sql`` as table ``name`` (replacing it), optionally sorted for fast lookups."""
        q = self.dialect.quote(name)
        body = sql.strip().rstrip(";")
        if order_by:
            keys = ", ".join(self.dialect.quote(k) for k in order_by)
            body = f"SELECT * FROM (\n{body}\n) AS _m ORDER BY {keys}"
        if self._kind(name) == "VIEW":
            self.execute(f"DROP VIEW {q}")
        self.execute(f"CREATE OR REPLACE TABLE {q} AS\n{body}")

    def replace_partitions(
        self, name: str, sql: str, order_by: Sequence[str], column: str, values: Sequence[str]
    ) -> None:
        """Replace the rows of table ``name`` whose ``column`` is one of ``values`` (dates) by ``sql``'s.

        The other rows stay as they are; the new ones are appended sorted by ``order_by``, so each
        date's block stays clustered for lookups.
        """
        if not values:
            return
        q = self.dialect.quote(name)
        col = self.dialect.quote(column)
        vals = ", ".join(f"DATE {self.dialect.literal(v)}" for v in values)
        body = f"SELECT * FROM (\n{sql.strip().rstrip(';')}\n) AS _m WHERE {col} IN ({vals})"
        if order_by:
            body += " ORDER BY " + ", ".join(self.dialect.quote(k) for k in order_by)
        self.execute(f"DELETE FROM {q} WHERE {col} IN ({vals})")
        self.execute(f"INSERT INTO {q} BY NAME {body}")

    def create_view_as(self, name: str, sql: str) -> None:
        """Create (or replace) view ``name`` over ``sql``."""
        q = self.dialect.quote(name)
        if self._kind(name) == "BASE TABLE":
            self.execute(f"DROP TABLE {q}")
        self.execute(f"CREATE OR REPLACE VIEW {q} AS\n{sql.strip().rstrip(';')}")

    def _kind(self, name: str) -> str | None:
        """``BASE TABLE``, ``VIEW`` or ``None``: what ``name`` is now (information_schema)."""
        rows = self.query(
            "SELECT table_type FROM information_schema.tables WHERE table_name = "
            + self.dialect.literal(name)
        )
        return str(rows[0][0]) if rows else None

    def row_count(self, relation: str) -> int:
        """Number of rows of a table or view."""
        return int(self.query(f"SELECT count(*) FROM {self.dialect.quote(relation)}")[0][0])


class DuckDBEngine(Engine):
    """The default engine: an embedded DuckDB database file (or in-memory database).

    Parameters
    ----------
    path : path or None
        The database file; ``None`` for an in-memory database.
    read_only : bool
        Open the file read-only.
    threads : int, optional
        DuckDB worker threads; default all cores.
    memory_limit : str, optional
        e.g. ``"8GB"``.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.dialect = DuckDBDialect()
        self.path = Path(path) if path is not None else None
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self.con = duckdb.connect(
            str(path) if path is not None else ":memory:", read_only=read_only, config=config
        )

    def execute(self, sql: str) -> None:
        """Run a statement, discarding any result."""
        self.con.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""
        return self.con.execute(sql).fetchall()

    def columns(self, relation: str) -> list[tuple[str, str]]:
        """``(name, type)`` of the columns of a table or view."""
        rows = self.con.execute(f"DESCRIBE {self.dialect.quote(relation)}").fetchall()
        return [(r[0], r[1]) for r in rows]

    def checkpoint(self) -> None:
        """Flush the write-ahead log into the database file."""
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        """Close the connection (checkpointing a writable file)."""
        self.con.close()
