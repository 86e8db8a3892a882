from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_DIR = Path(__file__).resolve().parent
_SQL_TYPES = {
    "varchar": "VARCHAR",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
    # Money is DECIMAL(18,2), never float, so figures tie out to the cent.
    "money": "DECIMAL(18,2)",
    # Annual rates as fractions.
    "rate": "DECIMAL(9,6)",
}


class ColumnSpec(BaseModel):
    """One column of a canonical table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    required: bool = False
    codes: str | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    check: Literal["id_no", "uscc"] | None = None
    pii: Literal["C1", "C2"] | None = None
    description: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in _SQL_TYPES:
            raise ValueError(f"unknown column type {v!r}")
        return v

    @property
    def sql_type(self) -> str:
        """The DuckDB SQL type of the column."""
        return _SQL_TYPES[self.type]


class ForeignKey(BaseModel):
    """A reference to one of several tables (any match counts), within the same as-of date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str]
    references: list[str]
    ref_columns: list[str]


class Check(BaseModel):
    """A row-level SQL predicate over canonical columns; a row where it is false is quarantined."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sql: str
    reason: str | None = None


class TableContract(BaseModel):
    """The contract of one canonical source table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    description: str
    kind: Literal["snapshot", "period"]
    primary_key: list[str]
    columns: list[ColumnSpec]
    foreign_keys: list[ForeignKey] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    def column(self, name: str) -> ColumnSpec:
        """Return the column called ``name``; raise ``KeyError`` naming the table if there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.table!r} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        """Column names in contract order."""
        return [c.name for c in self.columns]


class ContractError(ValueError):
    """A contract file is malformed."""


@cache
def load_codes() -> dict[str, dict[str, dict[str, Any]]]:
    """Load the canonical code lists.

    Returns
    -------
    dict
        ``{list name: {code: {"en": ..., "zh": ..., other attributes}}}``.
    """
    data = yaml.safe_load((_DIR / "codes.yaml").read_text(encoding="utf-8"))
    return {k: {str(code): dict(v) for code, v in codes.items()} for k, codes in data.items()}


@cache
def load_contracts() -> dict[str, TableContract]:
    """Load and cross-check every table contract.

    Returns
    -------
    dict
        ``{table name: TableContract}``.

    Raises
    ------
    ContractError
        Naming the file and problem, when a contract is malformed or refers to an unknown table,
        column or code list.
    """
    codes = load_codes()
    out: dict[str, TableContract] = {}
    for path in sorted((_DIR / "tables").glob("*.yaml")):
        try:
            c = TableContract.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except ValidationError as exc:
            raise ContractError(f"{path.name}: {exc}") from exc
        if c.table != path.stem:
            raise ContractError(f"{path.name}: table is {c.table!r}, expected {path.stem!r}")
        out[c.table] = c
    for c in out.values():
        names = set(c.column_names)
        for col in c.columns:
            if col.codes and col.codes not in codes:
                raise ContractError(
                    f"{c.table}.yaml: column {col.name} names unknown code list {col.codes!r}"
                )
        for k in c.primary_key:
            if k not in names:
                raise ContractError(f"{c.table}.yaml: primary key column {k!r} is not a column")
        for fk in c.foreign_keys:
            for ref in fk.references:
                if ref not in out:
                    raise ContractError(f"{c.table}.yaml: foreign key references unknown table {ref!r}")
                for rc in fk.ref_columns:
                    if rc not in out[ref].column_names:
                        raise ContractError(f"{c.table}.yaml: {ref}.{rc} does not exist")
            for col_name in fk.columns:
                if col_name not in names:
                    raise ContractError(f"{c.table}.yaml: foreign key column {col_name!r} is not a column")
    return out


def table_order() -> list[str]:
    """Table names in foreign-key dependency order (referenced tables first; self-references ignored)."""
    contracts = load_contracts()
    done: list[str] = []
    pending = dict(sorted(contracts.items()))
    while pending:
        ready = [
            name
            for name, c in pending.items()
            if all(ref in done or ref == name for fk in c.foreign_keys for ref in fk.references)
        ]
        if not ready:
            raise ContractError(f"foreign keys form a cycle among {sorted(pending)}")
        for name in ready:
            done.append(name)
            del pending[name]
    return done
