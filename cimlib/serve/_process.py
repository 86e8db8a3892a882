"""Run ``cim serve`` as a child process (browser tests, benchmarks), and launch Debian's Chromium for them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

#: Launch flags that work for headless Chromium on these machines (see shared/STACK.md).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """Return the system Chromium (Debian's ``/usr/bin/chromium``), or ``None`` when it is not installed."""
    for candidate in (os.environ.get("CIM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_status(url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """GET ``url`` without following redirects; return ``(status, Location header or body start)``."""
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location") or exc.read(2000).decode("utf-8", "replace")


class ServeProcess:
    """``cim serve`` in a child process on a free port, stopped with SIGTERM (kernels shut down with it).

    Parameters
    ----------
    home : Path
        The CIM home to serve (its warehouse, access.yaml and password file).
    args : sequence of str
        Extra ``cim serve`` arguments (e.g. ``["--no-preheat"]``).
    port : int, optional
        The port (default: a free one).
    log_path : Path, optional
        Where the server's output goes (default: a file in ``home``).
    env : dict, optional
        Extra environment variables.
    """

    def __init__(
        self,
        home: Path,
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.args = list(args)
        self.port = port or free_port()
        self.log_path = log_path or self.home / f"serve-{self.port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL (with ``--base-url`` when one is given, without a trailing slash)."""
        prefix = ""
        if "--base-url" in self.args:
            prefix = "/" + self.args[self.args.index("--base-url") + 1].strip("/")
        return f"http://127.0.0.1:{self.port}{prefix.rstrip('/')}"

    @property
    def app_url(self) -> str:
        """The customer 360 app's URL."""
        return f"{self.url}/voila/render/customer_360.ipynb"

    def log_text(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def start(self, *, timeout: float = 120.0) -> ServeProcess:
        """Start the server and wait until its sign-in page answers (and, when preheating, the pool is up)."""
        root = Path(__file__).resolve().parent.parent.parent
        env = {**os.environ, "CIM_HOME": str(self.home), "PYTHONPATH": str(root), **self.env}
        env.pop("CIM_SERVE_SECRET", None)  # every server start makes its own secret
        self._log = self.log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "cimlib.cli",
            "serve",
            "--port",
            str(self.port),
            "--no-browser",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        preheat = "--no-preheat" not in self.args
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cim serve exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
                )
            with contextlib.suppress(OSError):
                status, _ = http_status(self.url + "/login", timeout=2)
                if status in (200, 403) and (not preheat or "Kernel pool of" in self.log_text()):
                    return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"cim serve did not come up in {timeout} s:\n{self.log_text()[-4000:]}")

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until ``text`` appears ``count`` times in the server's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL after 15 s)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
