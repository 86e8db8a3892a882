"""Kernels for report jobs: this environment's Python, started once and reused between reports.

Papermill starts a fresh kernel per notebook by default: about a second to start, then two to three seconds
to import pandas, Altair, scikit-learn and cimlib in the first cell. A burst of eleven county reports would
pay that eleven times per worker. The ``cim-reuse`` engine registered here runs a notebook on a kernel the
caller already started; between two reports the kernel's namespace is reset (``%reset -f``), so no variable
of one county's report can reach the next, while the imported modules (and their warmed caches) stay.

The kernel's command line is ``sys.executable -m ipykernel_launcher``: a kernelspec named ``python3`` found on
the machine (a user's, or a venv's ``python`` resolved through ``PATH``) could otherwise start another
interpreter without cimlib.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.utils import merge_kwargs, remove_args

KERNEL_NAME = "cim-python"
ENGINE_NAME = "cim-reuse"
_spec_dir: Path | None = None


def _kernel_dirs() -> list[str]:
    global _spec_dir
    if _spec_dir is None or not (_spec_dir / KERNEL_NAME / "kernel.json").exists():
        root = Path(tempfile.mkdtemp(prefix="cim-kernelspec-"))
        d = root / KERNEL_NAME
        d.mkdir()
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "CIM Workbench (Python)",
            "language": "python",
        }
        (d / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        _spec_dir = root
    return [str(_spec_dir)]


def start_kernel(env: dict[str, str] | None = None, *, timeout: float = 60, cwd: str | None = None) -> Any:
    """Start a kernel of this Python for report jobs and wait until it answers.

    Parameters
    ----------
    env : dict, optional
        Variables added to this process's environment (``CIM_HOME``).
    timeout : float
        Seconds to wait for the kernel (Papermill's start timeout).
    cwd : str, optional
        The kernel's working folder.

    Returns
    -------
    jupyter_client.KernelManager
        Started; shut it down with :func:`stop_kernel`.

    Raises
    ------
    RuntimeError
        When the kernel does not answer within ``timeout``.
    """
    # Unix sockets in a private folder (0700) instead of TCP ports on localhost: no other local user can
    # reach the kernel. Each kernel gets its own folder: IPC socket names are "<ip>-<n>" with small n, so
    # two kernels sharing a prefix would receive each other's messages.
    sockets = tempfile.mkdtemp(prefix="cim-k-")
    km = KernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=_kernel_dirs()),
        transport="ipc",
        ip=os.path.join(sockets, "k"),
    )
    km._cim_sockets = sockets  # type: ignore[attr-defined]
    # nbclient's cell timeout needs its asynchronous client: on a blocking client's channels a cell that
    # hangs is never timed out (measured: a 30 s sleep ran to its end under a 5 s timeout)
    km.client_class = "jupyter_client.asynchronous.AsyncKernelClient"
    full_env = {**os.environ, **(env or {}), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    km.start_kernel(env=full_env, cwd=cwd or os.getcwd())
    kc = _blocking_client(km)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
    except RuntimeError:
        kc.stop_channels()
        stop_kernel(km)
        raise
    finally:
        kc.stop_channels()
    return km


def _blocking_client(km: Any) -> Any:
    """A blocking client of ``km``'s kernel (for our own start and reset; nbclient gets the async one)."""
    from jupyter_client.blocking import BlockingKernelClient

    kw: dict[str, Any] = dict(km.get_connection_info(session=True))
    kw.update(connection_file=km.connection_file, parent=km)
    return BlockingKernelClient(**kw)


def reset_kernel(km: Any, timeout: float = 30) -> None:
    """Clear the kernel's namespace between two reports (modules stay imported)."""
    kc = _blocking_client(km)
    kc.start_channels()
    try:
        reply = kc.execute_interactive(
            "%reset -f",
            timeout=timeout,
            output_hook=lambda _msg: None,
        )
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"kernel reset failed: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels()


def stop_kernel(km: Any) -> None:
    """Shut a kernel down (quietly when it is already gone)."""
    try:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    except Exception:  # shutting down a dead kernel must not hide the real error
        pass
    sockets = getattr(km, "_cim_sockets", None)
    if sockets:
        import shutil

        shutil.rmtree(sockets, ignore_errors=True)


class ReuseEngine(NBClientEngine):
    """Papermill's nbclient engine on a kernel the caller started (``km=`` in ``execute_notebook``)."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Execute the notebook on ``kwargs["km"]``; the kernel keeps running afterwards."""
        km = kwargs.pop("km")
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        client = PapermillNotebookClient(nb_man, km=km, **final_kwargs)
        try:
            return client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()


papermill_engines.register(ENGINE_NAME, ReuseEngine)


class KernelPool:
    """One reusable kernel: started on first use, reset between reports, restarted after a failure."""

    def __init__(self, env: dict[str, str], start_timeout: float) -> None:
        self.env = env
        self.start_timeout = start_timeout
        self.km: Any = None
        self.used = 0

    def acquire(self) -> tuple[Any, float]:
        """The kernel, ready for a report, and the seconds spent starting or resetting it."""
        t0 = time.perf_counter()
        if self.km is not None and not self.km.is_alive():
            stop_kernel(self.km)
            self.km = None
        if self.km is None:
            self.km = start_kernel(self.env, timeout=self.start_timeout)
            self.used = 0
        elif self.used:
            reset_kernel(self.km)
        self.used += 1
        return self.km, time.perf_counter() - t0

    def discard(self) -> None:
        """Drop the kernel after a failure or a timeout (it may still be busy); the next report starts one."""
        if self.km is not None:
            stop_kernel(self.km)
        self.km = None

    def close(self) -> None:
        """Shut the kernel down."""
        self.discard()
