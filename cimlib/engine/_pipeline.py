"""A pipeline of named SQL models: ``cimlib/sql/{staging,core,marts}/<model>.sql``.

Each file is one ``SELECT`` materialised as a table (or view) named after the file. Optional header
comments at the top of a file steer materialisation::

    -- depends: core_customer_xref, stg_org      (explicit dependencies; references are also detected)
    -- materialized: view                          (default: table)
    -- order_by: customer_id, as_of_date           (sort the table; fast single-customer lookups)
    -- partition_by: as_of_date                     (each row depends on its date's inputs only, so an
                                                    incremental build replaces just the changed dates)

Models read the lake through ``lake_<table>`` views the build creates first, and may use one macro,
``{{ codes('list', 'attribute') }}``, which expands to a SQL list of the codes of a canonical code list
whose attribute is true (e.g. the customer-initiated transaction types), so code semantics stay in
``codes.yaml``.
"""

from __future__ import annotations

import ast
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cimlib.contracts import load_codes
from cimlib.engine._engine import Engine

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LAYERS = ("staging", "core", "marts")
_HEADER = re.compile(r"^--\s*(depends|materialized|order_by|partition_by)\s*:\s*(.*)$", re.IGNORECASE)
_MACRO = re.compile(r"\{\{\s*(\w+)\s*\((.*?)\)\s*\}\}")


class PipelineError(Exception):
    """A model failed to compile or run."""


@dataclass
class Model:
    """One SQL model file."""

    name: str
    layer: str
    path: Path
    sql: str
    materialized: str = "table"
    order_by: list[str] = field(default_factory=list)
    depends: set[str] = field(default_factory=set)
    partition_by: str | None = None

    @property
    def contract_path(self) -> Path:
        """The ``.yml`` contract beside the model."""
        return self.path.with_suffix(".yml")


def _codes_macro(list_name: str, attribute: str | None = None, value: object = True) -> str:
    codes = load_codes()
    if list_name not in codes:
        raise PipelineError(f"codes(): unknown code list {list_name!r}")
    picked = [
        c for c, attrs in codes[list_name].items() if attribute is None or attrs.get(attribute) == value
    ]
    if not picked:
        return "(NULL)"
    return "(" + ", ".join("'" + c.replace("'", "''") + "'" for c in sorted(picked)) + ")"


def _month_customer_types_macro() -> str:
    """One date's customer numbers with their type (I/C): that of the number's record on the same date,
    the core system's first (a per-date model reads ``m_<table>`` views; see ``_months.py``)."""
    return (
        "SELECT cust_no, arg_min(customer_type, "
        "CASE src_system WHEN 'CORE' THEN 0 WHEN 'LOAN' THEN 1 ELSE 2 END) AS customer_type "
        "FROM (SELECT cust_no, src_system, 'I' AS customer_type FROM m_individual_customer "
        "UNION ALL SELECT cust_no, src_system, 'C' AS customer_type FROM m_corporate_customer) AS r "
        "GROUP BY cust_no"
    )


_MACROS: dict[str, Callable[..., str]] = {
    "codes": _codes_macro,
    "month_customer_types": _month_customer_types_macro,
}


def render(sql: str) -> str:
    """Expand ``{{ macro(args) }}`` placeholders in a model."""

    def sub(m: re.Match[str]) -> str:
        fn = _MACROS.get(m.group(1))
        if fn is None:
            raise PipelineError(f"unknown macro {m.group(1)!r}")
        args = ast.literal_eval("(" + m.group(2) + ",)") if m.group(2).strip() else ()
        return fn(*args)

    return _MACRO.sub(sub, sql)


def _parse(path: Path, layer: str) -> Model:
    text = path.read_text(encoding="utf-8")
    model = Model(name=path.stem, layer=layer, path=path, sql=text)
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _HEADER.match(line.strip())
        if not m:
            if line.strip().startswith("--"):
                continue
            break
        key, value = m.group(1).lower(), m.group(2).strip()
        items = [v.strip() for v in value.split(",") if v.strip()]
        if key == "depends":
            model.depends.update(items)
        elif key == "materialized":
            if value not in ("table", "view"):
                raise PipelineError(f"{path.name}: materialized must be table or view, not {value!r}")
            model.materialized = value
        elif key == "partition_by":
            if len(items) != 1:
                raise PipelineError(f"{path.name}: partition_by takes one column")
            model.partition_by = items[0]
        else:
            model.order_by = items
    return model


class SqlPipeline:
    """The ordered models of ``sql_dir`` (layer order, then dependency order within and across layers).

    Parameters
    ----------
    sql_dir : path, optional
        Folder holding ``staging/``, ``core/`` and ``marts/``; default the package's ``cimlib/sql``.
    """

    def __init__(self, sql_dir: Path | None = None) -> None:
        self.sql_dir = Path(sql_dir) if sql_dir is not None else SQL_DIR
        found: dict[str, Model] = {}
        for layer in LAYERS:
            for path in sorted((self.sql_dir / layer).glob("*.sql")):
                if path.stem in found:
                    raise PipelineError(f"model {path.stem!r} is defined twice")
                found[path.stem] = _parse(path, layer)
        names = set(found)
        for m in found.values():
            body = re.sub(r"--[^\n]*", "", m.sql)
            refs = {n for n in names if n != m.name and re.search(rf"\b{re.escape(n)}\b", body)}
            unknown = {d for d in m.depends if d not in names}
            if unknown:
                raise PipelineError(f"{m.path.name}: depends on unknown models {sorted(unknown)}")
            m.depends |= refs
        self.models = self._order(found)

    @staticmethod
    def _order(found: dict[str, Model]) -> list[Model]:
        done: list[Model] = []
        seen: set[str] = set()
        pending = sorted(found.values(), key=lambda m: (LAYERS.index(m.layer), m.name))
        while pending:
            ready = [m for m in pending if m.depends <= seen]
            if not ready:
                raise PipelineError(f"model dependencies form a cycle among {[m.name for m in pending]}")
            m = ready[0]  # one at a time keeps layer order, then name order
            done.append(m)
            seen.add(m.name)
            pending.remove(m)
        return done

    @property
    def names(self) -> list[str]:
        """Model names in run order."""
        return [m.name for m in self.models]

    def model(self, name: str) -> Model:
        """The model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def run(
        self,
        engine: Engine,
        after_model: Callable[[Model, float], None] | None = None,
        partitions: list[str] | None = None,
    ) -> dict[str, float]:
        """Materialise every model in order.

        Parameters
        ----------
        engine : Engine
            Where to run.
        after_model : callable, optional
            Called with the model and its seconds after each model (progress, test hooks).
        partitions : list of str, optional
            An incremental run on a copy of the previous snapshot: models with ``partition_by`` keep
            their rows and replace only those of these partition values (dates); the other models
            are rebuilt whole. ``None`` (the default) rebuilds everything.

        Returns
        -------
        dict
            ``{model name: seconds}``.

        Raises
        ------
        PipelineError
            Naming the model and file whose SQL failed.
        """
        timings: dict[str, float] = {}
        for m in self.models:
            t0 = time.perf_counter()
            sql = render(m.sql)
            try:
                if m.materialized == "view":
                    engine.create_view_as(m.name, sql)
                elif partitions is not None and m.partition_by:
                    engine.replace_partitions(m.name, sql, m.order_by, m.partition_by, partitions)
                else:
                    engine.create_table_as(m.name, sql, m.order_by)
            except Exception as exc:
                raise PipelineError(f"model {m.name} ({m.layer}/{m.path.name}) failed: {exc}") from exc
            dt = time.perf_counter() - t0
            timings[m.name] = round(dt, 3)
            log.debug("model %s built in %.3fs", m.name, dt)
            if after_model is not None:
                after_model(m, dt)
        return timings
