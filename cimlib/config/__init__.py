"""Where the data lives, and loading of YAML parameters."""

from cimlib.config._paths import Home, get_home

__all__ = ["Home", "get_home"]
