"""Where the data lives, and loading of YAML parameters."""

from cimlib.config._paths import Home, get_home

__all__ = ["Home", "get_home"]
# System management of parameters/.
from cimlib.config._params import (
    DEPENDENCIES,
    OUTPUTS,
    ApplyResult,
    ParamsError,
    Problem,
    apply_parameters,
    check_parameters,
    dependents,
    diff_dimensions,
)

__all__ += [
    "DEPENDENCIES",
    "OUTPUTS",
    "ApplyResult",
    "ParamsError",
    "Problem",
    "apply_parameters",
    "check_parameters",
    "dependents",
    "diff_dimensions",
]
