"""Demo sign-in: one scrypt-hashed password per user, in a JSON file outside the repository.

A bank normally signs users in through its own single sign-on (see the trusted-header mode); this file
serves demos and small installations. The file maps user ids of ``parameters/access.yaml`` to hashes and
is written with mode 0600. Plain passwords are never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path

from cimlib.config import Home

log = logging.getLogger(__name__)

# scrypt cost: about 40 ms a check here, memory 16 MiB; enough for a demo, cheap for the first paint.
_N, _R, _P = 2**14, 8, 1


def password_file(home: Home) -> Path:
    """Return the default password file of an installation: ``data/state/serve/passwords.json``."""
    return home.state / "serve" / "passwords.json"


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a random salt.

    Parameters
    ----------
    password : str
        The plain password (not empty).

    Returns
    -------
    str
        ``scrypt$N$r$p$<salt>$<hash>`` (base64).
    """
    if not password:
        raise ValueError("an empty password is not allowed")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(
        [
            "scrypt",
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def check_password(stored: str, password: str) -> bool:
    """Return whether ``password`` matches a hash made by :func:`hash_password` (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def load_passwords(path: Path) -> dict[str, str]:
    """Read a password file; a missing file is an empty mapping.

    Parameters
    ----------
    path : Path
        The JSON file (``{"user_id": "scrypt$…"}``).

    Returns
    -------
    dict
        User id to password hash.
    """
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a JSON object of user id -> password hash")
    return data


def set_password(path: Path, user_id: str, password: str) -> None:
    """Set (or replace) one user's password in a password file, atomically, with mode 0600.

    Parameters
    ----------
    path : Path
        The password file; created with its folder when missing.
    user_id : str
        A user id of ``parameters/access.yaml``.
    password : str
        The new plain password.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_passwords(path)
    data[user_id] = hash_password(password)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
    log.info("password set", extra={"user_id": user_id, "file": str(path)})
