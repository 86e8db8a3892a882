"""``cim serve``: the Voila app server, its sign-in, and the signed identity handed to app kernels."""

from cimlib.serve._identity import CimIdentityProvider, normalize_remote_user
from cimlib.serve._lab import LabCommand, lab_command, run_lab
from cimlib.serve._passwords import check_password, hash_password, password_file, set_password
from cimlib.serve._process import CHROMIUM_FLAGS, ServeProcess, chromium_path, free_port, http_status
from cimlib.serve._server import APPS_DIR, ServeOptions, serve, voila_config
from cimlib.serve._token import IdentityError, new_secret, sign_identity, verify_identity

__all__ = [
    "APPS_DIR",
    "CHROMIUM_FLAGS",
    "CimIdentityProvider",
    "IdentityError",
    "LabCommand",
    "ServeOptions",
    "ServeProcess",
    "check_password",
    "chromium_path",
    "free_port",
    "hash_password",
    "http_status",
    "lab_command",
    "new_secret",
    "normalize_remote_user",
    "password_file",
    "run_lab",
    "serve",
    "set_password",
    "sign_identity",
    "verify_identity",
    "voila_config",
]
