"""Model contracts: the ``.yml`` beside each SQL model, and a generic runner.

Format::

    model: mart_gl_tieout
    description: ...
    grain: [as_of_date, org_code, subject_code]     # unique and not null together
    columns:
      - {name: difference, not_null: true}
      - {name: customer_type, accepted_values: [I, C]}
      - {name: subject_code, codes: gl_subject}       # values of a canonical code list
    tests:                                            # each query returns the failing rows
      - name: gl_ties_out
        description: GL balance equals the sum of customer balances
        sql: SELECT * FROM mart_gl_tieout WHERE difference <> 0

A test passes when its query returns no rows. Every test of every model runs in each build; a failure
blocks publishing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cimlib.contracts import load_codes
from cimlib.engine._engine import Engine
from cimlib.engine._pipeline import SqlPipeline, render

log = logging.getLogger(__name__)


@dataclass
class ContractResult:
    """Outcome of one contract test."""

    model: str
    test: str
    passed: bool
    failing_rows: int
    sample: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-friendly dict."""
        return asdict(self)


def _tests_for(
    spec: dict[str, Any], model: str, engine: Engine, rows: str | None = None, partition_by: str | None = None
) -> list[tuple[str, str]]:
    """The model's tests as ``(name, SQL returning failing rows)``.

    ``rows`` replaces the model in the row-local tests (not null, accepted values, min) and in the
    grain test when the grain holds ``partition_by``: an incremental build checks only the rows it
    replaced there. Uniqueness of one column and the contract's own SQL tests always see the table.
    """
    q = engine.dialect.quote
    lit = engine.dialect.literal
    out: list[tuple[str, str]] = []
    local = rows or q(model)
    grain = spec.get("grain") or []
    if grain:
        keys = ", ".join(q(k) for k in grain)
        src = local if partition_by in grain else q(model)
        out.append(
            (
                f"grain_unique({', '.join(grain)})",
                f"SELECT {keys}, count(*) AS n FROM {src} GROUP BY {keys} HAVING count(*) > 1",
            )
        )
        nulls = " OR ".join(f"{q(k)} IS NULL" for k in grain)
        out.append((f"grain_not_null({', '.join(grain)})", f"SELECT * FROM {local} WHERE {nulls}"))
    for col in spec.get("columns") or []:
        name = col["name"]
        if col.get("not_null"):
            out.append((f"not_null({name})", f"SELECT * FROM {local} WHERE {q(name)} IS NULL"))
        if col.get("unique"):
            out.append(
                (
                    f"unique({name})",
                    f"SELECT {q(name)}, count(*) AS n FROM {q(model)} "
                    f"WHERE {q(name)} IS NOT NULL GROUP BY {q(name)} HAVING count(*) > 1",
                )
            )
        accepted = col.get("accepted_values")
        if col.get("codes"):
            accepted = list(load_codes()[col["codes"]])
        if accepted:
            values = ", ".join(lit(str(v)) for v in accepted)
            out.append(
                (
                    f"accepted_values({name})",
                    f"SELECT {q(name)}, count(*) AS n FROM {local} WHERE {q(name)} IS NOT NULL "
                    f"AND CAST({q(name)} AS VARCHAR) NOT IN ({values}) GROUP BY {q(name)}",
                )
            )
        if col.get("min") is not None:
            out.append((f"min({name})", f"SELECT * FROM {local} WHERE {q(name)} < {col['min']}"))
    for t in spec.get("tests") or []:
        out.append((t["name"], render(t["sql"])))
    return out


def load_model_contract(path: Path) -> dict[str, Any]:
    """Read one model contract ``.yml``."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if spec.get("model") not in (None, path.stem):
        raise ValueError(f"{path.name}: model is {spec.get('model')!r}, expected {path.stem!r}")
    return spec


def run_contracts(
    engine: Engine,
    pipeline: SqlPipeline | None = None,
    models: list[str] | None = None,
    sample_rows: int = 5,
    partitions: list[str] | None = None,
) -> list[ContractResult]:
    """Run the contract tests of every model (or of ``models``) against a built database.

    Parameters
    ----------
    engine : Engine
        A database holding the built models.
    pipeline : SqlPipeline, optional
        The pipeline whose models to test; default the package's.
    models : list of str, optional
        Only these models.
    sample_rows : int
        How many failing rows to keep as a sample per test.
    partitions : list of str, optional
        After an incremental build: the dates it replaced. The row-local tests of models with
        ``partition_by`` then read only those dates' rows (the others passed when they were built).

    Returns
    -------
    list of ContractResult
        One per test, in model order; a query error counts as a failure.
    """
    pipeline = pipeline or SqlPipeline()
    results: list[ContractResult] = []
    for m in pipeline.models:
        if models is not None and m.name not in models:
            continue
        if not m.contract_path.exists():
            continue
        spec = load_model_contract(m.contract_path)
        rows = None
        if partitions is not None and m.partition_by:
            q = engine.dialect.quote
            vals = ", ".join(f"DATE {engine.dialect.literal(v)}" for v in partitions) or "NULL"
            rows = f"(SELECT * FROM {q(m.name)} WHERE {q(m.partition_by)} IN ({vals})) AS _rows"
        for test, sql in _tests_for(spec, m.name, engine, rows, m.partition_by):
            try:
                n = int(engine.query(f"SELECT count(*) FROM (\n{sql}\n) AS _t")[0][0])
                sample = (
                    [repr(r) for r in engine.query(f"SELECT * FROM (\n{sql}\n) AS _t LIMIT {sample_rows}")]
                    if n
                    else []
                )
                results.append(ContractResult(m.name, test, n == 0, n, sample))
            except Exception as exc:
                results.append(ContractResult(m.name, test, False, -1, [], f"{type(exc).__name__}: {exc}"))
            if not results[-1].passed:
                log.warning(
                    "contract failed",
                    extra={"model": m.name, "test": test, "failing_rows": results[-1].failing_rows},
                )
    return results
