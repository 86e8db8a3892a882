"""Canonical source contracts: one YAML file per table in ``tables/``, code lists in ``codes.yaml``."""

from cimlib.contracts._model import (
    Check,
    ColumnSpec,
    ForeignKey,
    TableContract,
    load_codes,
    load_contracts,
    table_order,
)

__all__ = [
    "Check",
    "ColumnSpec",
    "ForeignKey",
    "TableContract",
    "load_codes",
    "load_contracts",
    "table_order",
]
