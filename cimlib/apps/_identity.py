"""Kernel side of the sign-in: who is using this app kernel?"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cimlib.serve._token import IdentityError, token_from_environ, verify_identity

if TYPE_CHECKING:
    from cimlib.access import Principal

log = logging.getLogger(__name__)


def principal_from_request(
    *, home: str | None = None, environ: Mapping[str, str] | None = None, wait: bool = True
) -> Principal:
    """Return the principal of the signed-in user of this Voila kernel.

    A preheated kernel first waits for the request that claims it (``voila.utils.wait_for_request``), which
    puts the request's information into ``os.environ``; a kernel started for the request has it already.
    The identity is the server-signed token of :mod:`cimlib.serve._token`, verified with the secret in the
    kernel's environment before any data is read. Nothing from the URL or the query string is used.

    Parameters
    ----------
    home : str, optional
        The CIM home (default ``$CIM_HOME``, which ``cim serve`` sets).
    environ : mapping, optional
        Where to read the token and secret (default ``os.environ``); for tests.
    wait : bool
        Wait for Voila's request information first (a no-op outside a preheated kernel).

    Returns
    -------
    Principal
        The user's principal from ``parameters/access.yaml``.

    Raises
    ------
    IdentityError
        No, forged, expired or malformed token, or a user no longer in access.yaml.
    """
    if wait and environ is None:
        from voila.utils import wait_for_request

        wait_for_request()
    token, secret = token_from_environ(environ)
    user_id = verify_identity(token, secret)
    from cimlib.access import UnknownUser, principal_for

    try:
        principal = principal_for(user_id, home=home)
    except UnknownUser as exc:
        raise IdentityError("the signed-in user is not in access.yaml") from exc
    log.info("app kernel serves %s", user_id)
    return principal
