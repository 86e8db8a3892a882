"""``cim serve``: Voila on ``notebooks/apps/`` with sign-in, preheated kernels and hidden tracebacks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cimlib.config import Home
from cimlib.serve._passwords import password_file
from cimlib.serve._token import DEFAULT_TTL, SECRET_ENV, TOKEN_HEADER, new_secret

log = logging.getLogger(__name__)

APPS_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks" / "apps"


@dataclass
class ServeOptions:
    """Everything ``cim serve`` needs to start Voila.

    Attributes
    ----------
    home : Home
        The installation (warehouse, access.yaml, password file).
    port, host : int, str
        Where to listen. The port is taken as given (no hunting for a free one).
    open_browser : bool
        Open a browser on start.
    preheat : bool
        Keep a pool of kernels that have already run the app's imports (fast first paint).
    pool_size : int
        Preheated kernels per app notebook.
    auth_mode : str
        ``"password"`` (our sign-in form) or ``"header"`` (a trusted SSO proxy's user header).
    password_file : Path, optional
        Password hashes for password mode (default ``HOME/data/state/serve/passwords.json``).
    trusted_proxies : list of str
        Proxy addresses/networks whose user header is believed (header mode).
    user_header : str
        The SSO proxy's user header.
    notebooks : Path
        The folder of app notebooks.
    base_url : str
        URL prefix when served under a path of a reverse proxy (e.g. ``/cim/``).
    token_ttl : float
        Seconds an app identity token stays valid.
    """

    home: Home
    port: int = 8866
    host: str = "127.0.0.1"
    open_browser: bool = True
    preheat: bool = True
    pool_size: int = 2
    auth_mode: str = "password"
    password_file: Path | None = None
    trusted_proxies: list[str] = field(default_factory=list)
    user_header: str = "X-Remote-User"
    notebooks: Path = APPS_DIR
    base_url: str = "/"
    token_ttl: float = DEFAULT_TTL


def voila_config(opts: ServeOptions) -> dict[str, dict[str, object]]:
    """Return the traitlets configuration of the Voila server for ``opts``.

    Parameters
    ----------
    opts : ServeOptions
        The serve options.

    Returns
    -------
    dict
        ``{"Voila": {...}, "VoilaConfiguration": {...}, "CimIdentityProvider": {...}, ...}``, ready for
        ``traitlets.config.Config``.
    """
    pwfile = opts.password_file or password_file(opts.home)
    return {
        "Voila": {
            "ip": opts.host,
            "port": opts.port,
            "port_retries": 0,
            "open_browser": opts.open_browser,
            "base_url": opts.base_url,
            "identity_provider_class": "cimlib.serve._identity.CimIdentityProvider",
            "root_dir": str(opts.notebooks),
        },
        "VoilaConfiguration": {
            "show_tracebacks": False,
            "preheat_kernel": opts.preheat,
            "default_pool_size": opts.pool_size if opts.preheat else 0,
            # The server-signed identity token reaches the kernel as HTTP_X_CIM_IDENTITY (both for preheated
            # kernels, through wait_for_request(), and for kernels started for the request).
            "http_header_envs": [TOKEN_HEADER],
            # Nothing in notebooks/apps is served as a plain file.
            "file_allowlist": [],
            "file_denylist": [r".*"],
            "theme": "light",
        },
        "VoilaKernelManager": {"fill_delay": 0.0},
        "CimIdentityProvider": {
            "auth_mode": opts.auth_mode,
            "password_file": str(pwfile),
            "trusted_proxies": list(opts.trusted_proxies),
            "user_header": opts.user_header,
            "cim_home": str(opts.home.root),
            "token_ttl": float(opts.token_ttl),
        },
    }


def prepare_environment(opts: ServeOptions) -> None:
    """Set the environment that the server and its kernels share.

    A fresh signing secret per server start (unless one is given in ``CIM_SERVE_SECRET``), the CIM home
    and parameters, and the address preheated kernels use to reach the server.
    """
    if not os.environ.get(SECRET_ENV):
        os.environ[SECRET_ENV] = new_secret()
    os.environ["CIM_HOME"] = str(opts.home.root)
    os.environ["CIM_PARAMETERS"] = str(opts.home.parameters)
    if opts.host not in ("", "0.0.0.0", "::", "localhost", "127.0.0.1"):
        # Preheated kernels call back to the server for the request's information.
        os.environ["VOILA_APP_IP"] = opts.host
    # Kernels import the app's stack once; keep their output quiet and their plots headless.
    os.environ.setdefault("MPLBACKEND", "Agg")


def serve(opts: ServeOptions) -> int:
    """Run the Voila server until it is stopped (SIGTERM or Ctrl-C).

    Parameters
    ----------
    opts : ServeOptions
        The serve options.

    Returns
    -------
    int
        0 after a clean stop.
    """
    from traitlets.config import Config
    from voila.app import Voila

    if not opts.notebooks.is_dir():
        raise FileNotFoundError(f"{opts.notebooks}: no app notebooks folder")
    prepare_environment(opts)
    app = Voila(config=Config(voila_config(opts)))
    app.initialize([str(opts.notebooks)])
    log.info(
        "cim serve on http://%s:%s%s (auth=%s, preheat=%s, pool=%s)",
        opts.host,
        opts.port,
        opts.base_url,
        opts.auth_mode,
        opts.preheat,
        opts.pool_size,
    )
    app.start()
    return 0
