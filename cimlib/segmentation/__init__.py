"""Customer segmentation: dimensions from ``parameters/dimensions.yaml``, OLAP cubes, distribution analyses.

:func:`load_dimensions` validates the dimensions (contiguous buckets, every code mapped);
:data:`BASE_SQL` is the segment base (one row per customer at an as-of month) every cube and analysis
reads, and :func:`member_sql` the SQL that puts a base row in a dimension's member.
"""

from cimlib.segmentation._cube import (
    DEFAULT_DIMS,
    MEASURES,
    CubeError,
    CubeInfo,
    build_cube,
    dice,
    drill,
    drill_down,
    pivot,
    slice_cube,
)
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
    "DEFAULT_DIMS",
    "MEASURES",
    "CubeError",
    "CubeInfo",
    "Dimension",
    "DimensionError",
    "Dimensions",
    "build_cube",
    "coverage_sql",
    "dice",
    "dimensions_path",
    "drill",
    "drill_down",
    "load_dimensions",
    "member_sql",
    "pivot",
    "slice_cube",
]
