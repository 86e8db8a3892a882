"""``cim lab``: JupyterLab on the project's notebooks, with the warehouse connected and a principal set.

The lab's kernels inherit ``CIM_HOME`` (the installation, so :func:`cimlib.access.warehouse` opens the
published snapshot read-only) and ``CIM_USER`` (the analyst). :func:`session_principal` turns ``CIM_USER``
into the analyst's :class:`~cimlib.access.Principal`, so a notebook calls the same scoped, masked and
audited services as the apps (``principal = session_principal()``; a notebook's own ``user`` parameter,
when set, takes precedence, which is how Papermill runs a report for a given user).

What the principal is and is not: in JupyterLab the analyst runs Python, so the principal is a
convenience that keeps every figure in the notebook scoped and audited the same way as the apps, not a
security boundary: an analyst who can start a kernel can read whatever the OS account can. Run lab only
for trusted analysts under an account whose file permissions match their scope; managers use the Voila
apps, where the principal comes from the server's sign-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cimlib.access import USER_ENV, principal_for
from cimlib.config import Home, get_home

_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LabCommand:
    """The JupyterLab command line, its environment additions and the folder it opens."""

    argv: list[str]
    env: dict[str, str]
    root_dir: Path


def lab_command(
    user: str,
    *,
    home: Home | None = None,
    port: int | None = None,
    open_browser: bool = True,
    ip: str = "127.0.0.1",
) -> LabCommand:
    """The ``jupyter lab`` invocation for ``user`` (checked against the access policy).

    Parameters
    ----------
    user : str
        The analyst (a user of ``parameters/access.yaml``).
    home : Home, optional
        The installation (default ``$CIM_HOME``).
    port : int, optional
        The port (JupyterLab's default 8888 when None).
    open_browser : bool
        Open a browser tab.
    ip : str
        The address to listen on (loopback by default).

    Returns
    -------
    LabCommand

    Raises
    ------
    UnknownUser
        For a user the policy does not know.
    FileNotFoundError
        When JupyterLab is not installed in this environment.
    """
    h = home or get_home()
    principal_for(user, h)  # an unknown user fails here, before anything starts
    exe = Path(sys.executable).with_name("jupyter-lab")
    if not exe.exists():
        found = shutil.which("jupyter-lab")
        if not found:
            raise FileNotFoundError("JupyterLab is not installed in this environment (make install)")
        exe = Path(found)
    notebooks = h.root / "notebooks"
    root_dir = notebooks if notebooks.is_dir() else _REPO / "notebooks"
    argv = [str(exe), f"--ServerApp.root_dir={root_dir}", f"--ServerApp.ip={ip}"]
    if port:
        argv.append(f"--ServerApp.port={int(port)}")
    if not open_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI and containers run as root
        argv.append("--allow-root")
    env = {"CIM_HOME": str(h.root), USER_ENV: user}
    if os.environ.get("CIM_PARAMETERS"):
        env["CIM_PARAMETERS"] = os.environ["CIM_PARAMETERS"]
    return LabCommand(argv=argv, env=env, root_dir=root_dir)


def run_lab(cmd: LabCommand) -> int:
    """Run JupyterLab in the foreground until it stops; returns its exit code."""
    return subprocess.call(cmd.argv, env={**os.environ, **cmd.env})
