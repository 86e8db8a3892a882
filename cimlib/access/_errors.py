"""Errors of the access layer.

The messages are part of the security design: :class:`NotFoundOrNotPermitted` says exactly the same
thing for a customer that does not exist and for one outside the caller's scope, and nothing else.
"""

from __future__ import annotations

NOT_FOUND_OR_NOT_PERMITTED = "not found or not permitted"


class AccessError(Exception):
    """Base class of every refusal and failure of the access layer."""


class NotFoundOrNotPermitted(AccessError):
    """The customer does not exist or is outside the principal's scope (deliberately indistinguishable)."""

    def __init__(self, *_: object) -> None:
        super().__init__(NOT_FOUND_OR_NOT_PERMITTED)

    def __str__(self) -> str:
        return NOT_FOUND_OR_NOT_PERMITTED


class UnknownUser(AccessError):
    """The user id is not in ``parameters/access.yaml``."""


class NotPermitted(AccessError):
    """The principal's role does not allow the action at all (e.g. single-customer detail for a
    provincial analyst, or the audit log for anyone but an auditor). Raised before any data is read,
    so the message depends on the role and the action only."""


class PolicyError(AccessError):
    """``parameters/access.yaml`` is missing or invalid; the message names the file, key and line."""


class AuditError(AccessError):
    """The audit record could not be written; the action it guards is refused (fail closed)."""
