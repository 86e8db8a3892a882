"""Customer segmentation: dimensions from ``parameters/dimensions.yaml``, OLAP cubes, distribution analyses.

:func:`load_dimensions` validates the dimensions (contiguous buckets, every code mapped);
:data:`BASE_SQL` is the segment base (one row per customer at an as-of month) every cube and analysis
reads, and :func:`member_sql` the SQL that puts a base row in a dimension's member.
"""

from cimlib.segmentation._dimensions import (
    BASE_COLUMNS,
    BASE_SQL,
    Dimension,
    DimensionError,
    Dimensions,
    coverage_sql,
    dimensions_path,
    load_dimensions,
    member_sql,
)

__all__ = [
    "BASE_COLUMNS",
    "BASE_SQL",
    "Dimension",
    "DimensionError",
    "Dimensions",
    "coverage_sql",
    "dimensions_path",
    "load_dimensions",
    "member_sql",
]
