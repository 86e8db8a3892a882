"""Validated ingest of source extracts into the Parquet lake, with quarantine of bad rows.

Each as-of date folder of extracts is read through a source mapping (``parameters/sources/*.yaml``),
validated row by row against the canonical contracts in DuckDB SQL, and written as
``lake/<table>/as_of=<date>/data.parquet`` (good rows) and ``quarantine/as_of=<date>/<table>.parquet``
(bad rows, with file, line, column, reason, detail and the raw line). A load report JSON is written last.
"""

from cimlib.ingest._errors import IngestError
from cimlib.ingest._load import ingest_all, ingest_date, load_reports
from cimlib.ingest._mapping import FileSpec, Mapping, load_mapping

__all__ = ["FileSpec", "IngestError", "Mapping", "ingest_all", "ingest_date", "load_mapping", "load_reports"]
