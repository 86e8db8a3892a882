from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_REPO_ROOT = _PACKAGE_DIR.parent


@dataclass(frozen=True)
class Home:
    """The folders of one installation (one bank).

    Everything the workbench writes lives under ``root``: raw extracts, the validated Parquet lake,
    warehouse snapshots, state (load reports, audit) and outputs. ``parameters`` is the YAML
    configuration; it defaults to ``root/parameters`` when that exists, else the project's own.
    """

    root: Path
    parameters: Path

    @property
    def raw(self) -> Path:
        """Source extracts, one folder per as-of date."""
        return self.root / "data" / "raw"

    @property
    def lake(self) -> Path:
        """Validated rows as Parquet: ``lake/<table>/as_of=<date>/data.parquet``."""
        return self.root / "data" / "lake"

    @property
    def quarantine(self) -> Path:
        """Quarantined rows as Parquet: ``quarantine/as_of=<date>/<table>.parquet``."""
        return self.root / "data" / "quarantine"

    @property
    def warehouse(self) -> Path:
        """DuckDB snapshots and the ``CURRENT`` pointer."""
        return self.root / "data" / "warehouse"

    @property
    def state(self) -> Path:
        """Load reports and other operational state."""
        return self.root / "data" / "state"

    @property
    def loads(self) -> Path:
        """Load reports, one ``<as_of>.json`` per loaded date; a date is loaded when its report exists."""
        return self.state / "loads"

    @property
    def outputs(self) -> Path:
        """Reports, lists and models."""
        return self.root / "outputs"


def get_home(home: str | os.PathLike[str] | None = None) -> Home:
    """Resolve the installation folder.

    Parameters
    ----------
    home : path, optional
        An explicit folder (the CLI's ``--home``). Otherwise ``$CIM_HOME``, otherwise the project folder.

    Returns
    -------
    Home
        The resolved folders; nothing is created.
    """
    raw = home if home is not None else os.environ.get("CIM_HOME")
    root = Path(raw).expanduser().resolve() if raw else _REPO_ROOT
    params_env = os.environ.get("CIM_PARAMETERS")
    if params_env:
        params = Path(params_env).expanduser().resolve()
    elif (root / "parameters").is_dir():
        params = root / "parameters"
    else:
        params = _REPO_ROOT / "parameters"
    return Home(root=root, parameters=params)
