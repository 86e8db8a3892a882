"""The warehouse engine: SQL pipeline over the lake, model contracts and atomic snapshot publishing.

This is the only package that talks to DuckDB directly.
"""

from cimlib.engine._build import BuildError, build, connect, current_snapshot, loaded_dates, status
from cimlib.engine._engine import Dialect, DuckDBDialect, DuckDBEngine, Engine
from cimlib.engine._model_contracts import ContractResult, run_contracts
from cimlib.engine._pipeline import Model, PipelineError, SqlPipeline

__all__ = [
    "BuildError",
    "ContractResult",
    "Dialect",
    "DuckDBDialect",
    "DuckDBEngine",
    "Engine",
    "Model",
    "PipelineError",
    "SqlPipeline",
    "build",
    "connect",
    "current_snapshot",
    "loaded_dates",
    "run_contracts",
    "status",
]
