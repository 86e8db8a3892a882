"""Access control: principals and roles, row scope, masking of personal data, and the audit log.

Every cimlib service that returns customer-level rows takes a :class:`Principal` (from
:func:`principal_for`), limits its query with :func:`scope_clause`, masks personal data with
:func:`mask_frame` / :func:`mask_value`, and records what was seen with :func:`audit_log`. The policy is
``parameters/access.yaml`` (:func:`load_policy`); see ``docs/access.md``.
"""

from cimlib.access._audit import audit_dir, audit_log, read_audit, verify_audit
from cimlib.access._errors import (
    NOT_FOUND_OR_NOT_PERMITTED,
    AccessError,
    AuditError,
    NotFoundOrNotPermitted,
    NotPermitted,
    PolicyError,
    UnknownUser,
)
from cimlib.access._policy import (
    USER_ENV,
    AccessPolicy,
    Principal,
    load_policy,
    policy_path,
    principal_for,
    service_principal,
    session_principal,
)
from cimlib.access._scope import (
    mask_frame,
    mask_record,
    mask_text,
    mask_value,
    mask_values,
    name_params,
    named_scope,
    require_detail,
    scope_clause,
)
from cimlib.access._warehouse import Snapshot, Warehouse, query_threads, warehouse

__all__ = [
    "NOT_FOUND_OR_NOT_PERMITTED",
    "USER_ENV",
    "AccessError",
    "AccessPolicy",
    "AuditError",
    "NotFoundOrNotPermitted",
    "NotPermitted",
    "PolicyError",
    "Principal",
    "Snapshot",
    "UnknownUser",
    "Warehouse",
    "audit_dir",
    "audit_log",
    "load_policy",
    "mask_frame",
    "mask_record",
    "mask_text",
    "mask_value",
    "mask_values",
    "name_params",
    "named_scope",
    "policy_path",
    "principal_for",
    "query_threads",
    "read_audit",
    "require_detail",
    "scope_clause",
    "service_principal",
    "session_principal",
    "verify_audit",
    "warehouse",
]
