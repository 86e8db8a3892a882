"""Model contracts: the ``.yml`` beside each SQL model, and a generic runner.

Format::

    model: mart_gl_tieout
    description: ...
    grain: [as_of_date, org_code, subject_code]     # unique and not null together
    grain_nullable: [teller_no]                     # grain columns that may be NULL (NULL counts as one
                                                    # value in the uniqueness test, as in GROUP BY)
    columns:
      - {name: difference, not_null: true}
      - {name: customer_type, accepted_values: [I, C]}
      - {name: subject_code, codes: gl_subject}       # values of a canonical code list
    tests:                                            # each query returns the failing rows
      - name: gl_ties_out
        description: GL balance equals the sum of customer balances
        severity: warn                                # error (default) | warn
        sql: SELECT * FROM mart_gl_tieout WHERE difference <> 0

A test passes when its query returns no rows. Every test of every model runs in each build.

**Severity.** A failing test of severity ``error`` (the default, and every generated test: grain, not
null, accepted values, min) blocks publishing. A failing test of severity ``warn`` does not: it is logged
as a warning and recorded in the build summary (``status: warn``, ``warned: true``, with its failing rows
and a sample) and the snapshot is published. Use ``warn`` for checks that real data never meets exactly,
such as the GL tie-out (accruals, timing and suspense accounts keep the GL and the customer systems a few
yuan apart); the analyses then report the rows against their own tolerances (``cimlib.analysis``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cimlib.contracts import load_codes
from cimlib.engine._engine import Engine
from cimlib.engine._pipeline import SqlPipeline, render

log = logging.getLogger(__name__)

Severity = Literal["error", "warn"]
#: The severities a contract test may declare; ``error`` blocks publishing, ``warn`` does not.
SEVERITIES: tuple[str, ...] = ("error", "warn")


@dataclass
class ContractResult:
    """Outcome of one contract test.

    ``passed`` is True when the test does not block publishing: it found no rows, or it is a ``warn``
    test that found some (then ``warned`` is True). ``status`` is ``pass``, ``warn`` or ``fail``.
    """

    model: str
    test: str
    passed: bool
    failing_rows: int
    sample: list[str] = field(default_factory=list)
    error: str | None = None
    severity: Severity = "error"
    warned: bool = False

    @property
    def status(self) -> str:
        """``pass`` (no rows), ``warn`` (rows, severity warn) or ``fail`` (rows or an error; blocks)."""
        return "warn" if self.warned else ("pass" if self.passed else "fail")

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-friendly dict (with ``status``)."""
        return {**asdict(self), "status": self.status}


def _severity(spec: dict[str, Any], path: Path) -> None:
    """Check every declared test's ``severity`` (``error`` or ``warn``), naming the file and the test."""
    for t in spec.get("tests") or []:
        sev = t.get("severity", "error")
        if sev not in SEVERITIES:
            raise ValueError(
                f"{path.name}: test {t.get('name')!r}: severity {sev!r} is not one of {', '.join(SEVERITIES)}"
            )


def _tests_for(
    spec: dict[str, Any], model: str, engine: Engine, rows: str | None = None, partition_by: str | None = None
) -> list[tuple[str, str, Severity]]:
    """The model's tests as ``(name, SQL returning failing rows, severity)``.

    ``rows`` replaces the model in the row-local tests (not null, accepted values, min) and in the
    grain test when the grain holds ``partition_by``: an incremental build checks only the rows it
    replaced there. Uniqueness of one column and the contract's own SQL tests always see the table.
    """
    q = engine.dialect.quote
    lit = engine.dialect.literal
    out: list[tuple[str, str, Severity]] = []
    local = rows or q(model)
    grain = spec.get("grain") or []
    if grain:
        keys = ", ".join(q(k) for k in grain)
        src = local if partition_by in grain else q(model)
        out.append(
            (
                f"grain_unique({', '.join(grain)})",
                f"SELECT {keys}, count(*) AS n FROM {src} GROUP BY {keys} HAVING count(*) > 1",
                "error",
            )
        )
        nullable = set(spec.get("grain_nullable") or [])
        if nullable - set(grain):
            raise ValueError(f"{model}: grain_nullable {sorted(nullable - set(grain))} not in the grain")
        required = [k for k in grain if k not in nullable]
        if required:
            nulls = " OR ".join(f"{q(k)} IS NULL" for k in required)
            out.append(
                (f"grain_not_null({', '.join(required)})", f"SELECT * FROM {local} WHERE {nulls}", "error")
            )
    for col in spec.get("columns") or []:
        name = col["name"]
        if col.get("not_null"):
            out.append((f"not_null({name})", f"SELECT * FROM {local} WHERE {q(name)} IS NULL", "error"))
        if col.get("unique"):
            out.append(
                (
                    f"unique({name})",
                    f"SELECT {q(name)}, count(*) AS n FROM {q(model)} "
                    f"WHERE {q(name)} IS NOT NULL GROUP BY {q(name)} HAVING count(*) > 1",
                    "error",
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
                    "error",
                )
            )
        if col.get("min") is not None:
            out.append((f"min({name})", f"SELECT * FROM {local} WHERE {q(name)} < {col['min']}", "error"))
    for t in spec.get("tests") or []:
        out.append((t["name"], render(t["sql"]), t.get("severity", "error")))
    return out


def load_model_contract(path: Path) -> dict[str, Any]:
    """Read one model contract ``.yml``."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if spec.get("model") not in (None, path.stem):
        raise ValueError(f"{path.name}: model is {spec.get('model')!r}, expected {path.stem!r}")
    _severity(spec, path)
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
        One per test, in model order; a query error counts as a failure (whatever the severity). A
        ``warn`` test with failing rows is ``passed`` (it does not block) and ``warned``; it is logged
        as a warning.
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
        for test, sql, severity in _tests_for(spec, m.name, engine, rows, m.partition_by):
            try:
                n = int(engine.query(f"SELECT count(*) FROM (\n{sql}\n) AS _t")[0][0])
                sample = (
                    [repr(r) for r in engine.query(f"SELECT * FROM (\n{sql}\n) AS _t LIMIT {sample_rows}")]
                    if n
                    else []
                )
                warned = bool(n) and severity == "warn"
                results.append(
                    ContractResult(m.name, test, n == 0 or warned, n, sample, None, severity, warned)
                )
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}"
                results.append(ContractResult(m.name, test, False, -1, [], err, severity))
            r = results[-1]
            if r.warned:
                log.warning(
                    "contract warning (severity warn, not blocking): %s.%s: %d failing rows%s",
                    m.name, test, r.failing_rows, f" e.g. {r.sample[0]}" if r.sample else "",
                    extra={"model": m.name, "test": test, "failing_rows": r.failing_rows, "severity": "warn"},
                )  # fmt: skip
            elif not r.passed:
                log.warning(
                    "contract failed",
                    extra={"model": m.name, "test": test, "failing_rows": results[-1].failing_rows},
                )
    return results
