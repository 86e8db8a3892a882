"""Views over the Parquet lake: ``<prefix><table>`` for every canonical table, typed by its contract."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cimlib.config import Home
from cimlib.contracts import load_contracts
from cimlib.engine._engine import Engine


def lake_file(home: Home, table: str, date: str) -> Path:
    """The lake partition file of ``table`` for as-of ``date`` (it may not exist)."""
    return home.lake / table / f"as_of={date}" / "data.parquet"


def lake_files(home: Home, table: str, dates: list[str]) -> list[Path]:
    """The lake partitions of ``table`` for the given dates that exist."""
    return [f for f in (lake_file(home, table, d) for d in dates) if f.exists()]


def create_lake_views(engine: Engine, home: Home, dates: list[str], prefix: str = "lake_") -> dict[str, int]:
    """Create ``<prefix><table>`` for every canonical table over its partitions of ``dates``.

    A table with no files gets an empty view with the contract columns. A contract column that none of
    the files holds (an optional column added to the contract after those dates were ingested) reads as
    NULL; one that only some files hold is NULL in the others (``union_by_name``). Returns files per table.
    """
    counts: dict[str, int] = {}
    d = engine.dialect
    for name, c in load_contracts().items():
        files = lake_files(home, name, dates)
        counts[name] = len(files)
        cols = [("as_of_date", "DATE")] + [(col.name, col.sql_type) for col in c.columns]
        if files:
            present: set[str] = set()
            for f in files:  # the footers only
                present.update(pq.read_schema(f).names)
            select = ", ".join(
                f"CAST({d.quote(n) if n in present else 'NULL'} AS {t}) AS {d.quote(n)}" for n, t in cols
            )
            engine.create_view_as(f"{prefix}{name}", f"SELECT {select} FROM {d.read_parquet(files)}")
        else:
            engine.create_view_as(f"{prefix}{name}", d.empty_relation(cols))
    return counts
