"""Short-lived, HMAC-signed identity tokens: the server signs, the app kernel verifies.

The server knows who signed in (cookie or trusted SSO header); the kernel that renders the app does not.
Voila hands a preheated kernel only the request's information (URL, query string, chosen headers). So the
server stamps each authenticated request with a token naming the user, signed with a secret that only the
server process and its kernels hold (``CIM_SERVE_SECRET`` in their environment; never sent to a browser),
and the kernel checks the signature and the age before it loads any data. A client cannot forge one
without the secret, and any token a client sends itself is dropped by the server (see ``_identity.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping

SECRET_ENV = "CIM_SERVE_SECRET"
TOKEN_HEADER = "X-CIM-Identity"
#: How Voila names the header in the kernel's environment (rfc3875: HTTP_ + upper-case, - to _).
TOKEN_ENV = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")
DEFAULT_TTL = 120.0
_AUDIENCE = "cim-app-kernel"
_VERSION = 1


class IdentityError(Exception):
    """The kernel could not establish who is using the app (no, forged, expired or malformed token)."""


def new_secret() -> str:
    """Return a fresh random signing secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode("utf-8"), body.encode("ascii"), hashlib.sha256).digest())


def sign_identity(user_id: str, secret: str, *, ttl: float = DEFAULT_TTL, now: float | None = None) -> str:
    """Sign a short-lived token naming ``user_id``.

    Parameters
    ----------
    user_id : str
        The signed-in user (a user id of ``parameters/access.yaml``).
    secret : str
        The server's signing secret.
    ttl : float
        Seconds the token stays valid.
    now : float, optional
        The issue time (seconds since the epoch); for tests.

    Returns
    -------
    str
        ``<payload>.<signature>``, both base64url.
    """
    if not secret:
        raise ValueError("an empty signing secret is not allowed")
    issued = time.time() if now is None else now
    payload = {
        "v": _VERSION,
        "aud": _AUDIENCE,
        "sub": user_id,
        "iat": round(issued, 3),
        "exp": round(issued + ttl, 3),
        "nonce": secrets.token_urlsafe(8),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{body}.{_mac(secret, body)}"


def verify_identity(token: str | None, secret: str | None, *, now: float | None = None) -> str:
    """Check a token and return the user id it names.

    Parameters
    ----------
    token : str or None
        The token, as received by the kernel.
    secret : str or None
        The signing secret from the kernel's environment.
    now : float, optional
        The current time (seconds since the epoch); for tests.

    Returns
    -------
    str
        The user id.

    Raises
    ------
    IdentityError
        When the token or the secret is missing, the signature does not match, the token is expired or
        malformed. The message never repeats the token.
    """
    if not secret:
        raise IdentityError("the server's signing secret is not set in this kernel")
    if not token:
        raise IdentityError("no identity token reached the app")
    body, sep, sig = token.strip().partition(".")
    if not sep or not body or not sig:
        raise IdentityError("malformed identity token")
    if not hmac.compare_digest(_mac(secret, body), sig):
        raise IdentityError("identity token signature does not match")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdentityError("malformed identity token") from exc
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or payload.get("aud") != _AUDIENCE:
        raise IdentityError("identity token is not for this app")
    user_id = payload.get("sub")
    exp = payload.get("exp")
    if not isinstance(user_id, str) or not user_id or not isinstance(exp, int | float):
        raise IdentityError("malformed identity token")
    current = time.time() if now is None else now
    if current > exp:
        raise IdentityError("identity token expired")
    return user_id


def token_from_environ(environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """Return ``(token, secret)`` as found in a kernel's environment (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV), env.get(SECRET_ENV)
