"""The access policy (``parameters/access.yaml``) and the principals it defines."""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cimlib.access._errors import PolicyError, UnknownUser
from cimlib.access._yamlfile import YamlProblem, load_yaml_model, problem
from cimlib.config import Home, get_home

log = logging.getLogger(__name__)

POLICY_FILE = "access.yaml"
Scope = Literal["all", "county", "branch", "managed", "none"]
PiiClass = Literal["C1", "C2"]
#: The personal-data fields the services know how to mask (DOMAIN.md, "Personal data").
MASKABLE_FIELDS = ("name", "id_no", "phone", "account_no", "card_no", "address")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaskRule(_Strict):
    """How a value is masked: the characters kept at each end, the rest replaced by ``mask_char``."""

    keep_first: int = Field(ge=0, le=8)
    keep_last: int = Field(ge=0, le=8)


class Role(_Strict):
    """What a role may see: its row scope, single-customer detail, the audit log, unmasked data."""

    description: str = ""
    scope: Scope
    detail: bool
    audit_reader: bool = False
    parameter_admin: bool = False
    unmasked_classes: list[PiiClass] = Field(default_factory=list)
    unmasked_fields: list[str] = Field(default_factory=list)


class User(_Strict):
    """A user of the workbench and the role and org (or staff number) that scope them."""

    user_id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    display_name: str = Field(min_length=1, max_length=100)
    role: str
    org_code: str | None = None
    staff_no: str | None = None

    @field_validator("org_code", "staff_no", mode="before")
    @classmethod
    def _quoted(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("write it as a quoted string (codes may have leading zeros)")
        return v


class AccessPolicy(_Strict):
    """The validated contents of ``parameters/access.yaml``."""

    version: Literal[1] = 1
    org_code_pattern: str = r"^\d{6}$"
    staff_no_pattern: str = r"^[A-Z0-9]{2,20}$"
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    #: Aggregate cells of fewer customers than this are suppressed for roles without detail rights.
    aggregate_min_cell: int = Field(default=5, ge=1, le=100)
    fields: dict[str, PiiClass]
    masking: dict[str, MaskRule]
    roles: dict[str, Role] = Field(min_length=1)
    users: list[User] = Field(default_factory=list)
    path: str | None = None

    def user(self, user_id: str) -> User | None:
        """The user with this id, if any."""
        for u in self.users:
            if u.user_id == user_id:
                return u
        return None

    def unmasked_for(self, role: Role) -> frozenset[str]:
        """The fields ``role`` sees in clear."""
        by_class = {f for f, c in self.fields.items() if c in role.unmasked_classes}
        return frozenset(by_class | set(role.unmasked_fields))


def _check(p: AccessPolicy) -> None:
    """Cross-field checks; raise :class:`YamlProblem` at the offending key."""
    for name, pattern in (("org_code_pattern", p.org_code_pattern), ("staff_no_pattern", p.staff_no_pattern)):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise YamlProblem([name], f"not a valid regular expression: {exc}") from exc
    for f in p.fields:
        if f not in MASKABLE_FIELDS:
            raise YamlProblem(["fields", f], f"unknown field; expected one of {', '.join(MASKABLE_FIELDS)}")
        if f not in p.masking:
            raise YamlProblem(["masking"], f"no masking rule for field {f!r}")
    for f in p.masking:
        if f not in p.fields:
            raise YamlProblem(["masking", f], "masking rule for a field not listed under 'fields'")
    for rname, role in p.roles.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", rname):
            raise YamlProblem(["roles", rname], "role names are lower_snake_case")
        for f in role.unmasked_fields:
            if f not in p.fields:
                raise YamlProblem(["roles", rname, "unmasked_fields"], f"unknown field {f!r}")
    seen: set[str] = set()
    org_re, staff_re = re.compile(p.org_code_pattern), re.compile(p.staff_no_pattern)
    for i, u in enumerate(p.users):
        if u.user_id in seen:
            raise YamlProblem(["users", i, "user_id"], f"duplicate user id {u.user_id!r}")
        seen.add(u.user_id)
        role = p.roles.get(u.role)
        if role is None:
            raise YamlProblem(
                ["users", i, "role"], f"unknown role {u.role!r}; expected one of {', '.join(p.roles)}"
            )
        if u.org_code is not None and not org_re.fullmatch(u.org_code):
            raise YamlProblem(
                ["users", i, "org_code"], f"{u.org_code!r} is not an org code (pattern {p.org_code_pattern})"
            )
        if u.staff_no is not None and not staff_re.fullmatch(u.staff_no):
            raise YamlProblem(
                ["users", i, "staff_no"],
                f"{u.staff_no!r} is not a staff number (pattern {p.staff_no_pattern})",
            )
        if role.scope in ("county", "branch") and u.org_code is None:
            raise YamlProblem(
                ["users", i], f"role {u.role!r} is scoped to a {role.scope}: org_code is required"
            )
        if role.scope == "managed" and u.staff_no is None:
            raise YamlProblem(
                ["users", i], f"role {u.role!r} is scoped to managed customers: staff_no is required"
            )


_cache: dict[str, tuple[tuple[int, int, int], AccessPolicy]] = {}
_cache_lock = threading.Lock()


def _resolve_home(home: Home | str | os.PathLike[str] | None) -> Home:
    return home if isinstance(home, Home) else get_home(home)


def policy_path(home: Home | str | os.PathLike[str] | None = None) -> Path:
    """Where the access policy of ``home`` lives (``home.parameters / "access.yaml"``)."""
    return _resolve_home(home).parameters / POLICY_FILE


def load_policy(home: Home | str | os.PathLike[str] | None = None) -> AccessPolicy:
    """Read and validate the access policy.

    Parameters
    ----------
    home : Home, path or None
        The installation; its ``parameters`` folder holds ``access.yaml`` (``$CIM_PARAMETERS`` or
        ``HOME/parameters`` override the project's own, see :func:`cimlib.config.get_home`).

    Returns
    -------
    AccessPolicy
        The validated policy. It is cached and re-read when the file changes.

    Raises
    ------
    PolicyError
        When the file is missing or invalid; the message names the file, the key and the line.
    """
    path = policy_path(home)
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    key = str(path)
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    policy, node = load_yaml_model(path, AccessPolicy, PolicyError)
    try:
        _check(policy)
    except YamlProblem as exc:
        raise problem(path, node, exc, PolicyError) from None
    policy = policy.model_copy(update={"path": key})
    with _cache_lock:
        _cache[key] = (stamp, policy)
    log.info(
        "access policy loaded", extra={"path": key, "users": len(policy.users), "roles": len(policy.roles)}
    )
    return policy


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user with a role and an org scope, as the policy defines them.

    Build one with :func:`principal_for`; the services take it and apply its row scope, masking and
    audit logging themselves.
    """

    user_id: str
    display_name: str
    role: str
    org_code: str | None = None
    staff_no: str | None = None
    scope: Scope = "none"
    detail: bool = False
    audit_reader: bool = False
    parameter_admin: bool = False
    unmasked: frozenset[str] = field(default_factory=frozenset)
    org_name: str | None = None
    masking: tuple[tuple[str, tuple[int, int]], ...] = ()
    mask_char: str = "*"
    min_cell: int = 5

    @property
    def can_view_detail(self) -> bool:
        """True when the role may see single-customer detail (search, 360, exports)."""
        return self.detail and self.scope != "none"

    @property
    def can_read_audit(self) -> bool:
        """True when the role may read the audit log."""
        return self.audit_reader

    def sees(self, field_name: str) -> bool:
        """True when ``field_name`` (``name``, ``id_no``, ``phone``, ``account_no``...) is shown in clear."""
        return field_name in self.unmasked

    @property
    def scope_label(self) -> str:
        """A human label of the scope, e.g. ``county 101000 (桐庐县农村商业银行)``."""
        org = f"{self.org_code} ({self.org_name})" if self.org_name else str(self.org_code)
        if self.scope == "all":
            return "all orgs" + ("" if self.can_view_detail else " (aggregates only)")
        if self.scope == "county":
            return f"county {org}"
        if self.scope == "branch":
            return f"branch {org}"
        if self.scope == "managed":
            return f"customers managed by {self.staff_no}" + (f", branch {org}" if self.org_code else "")
        return "audit log" if self.audit_reader else "no customer data"


def principal_for(user_id: str, home: Home | str | os.PathLike[str] | None = None) -> Principal:
    """The principal of a user named in ``parameters/access.yaml``.

    Parameters
    ----------
    user_id : str
        The signed-in user (from the app's authentication or the CLI's ``--as``).
    home : Home, path or None
        The installation (default: ``$CIM_HOME``).

    Returns
    -------
    Principal
        With the role's scope, detail right and unmasked fields; ``org_name`` is looked up in the
        published warehouse when there is one.

    Raises
    ------
    UnknownUser
        When the user is not in the policy.
    PolicyError
        When the policy is invalid.
    """
    h = _resolve_home(home)
    policy = load_policy(h)
    u = policy.user(user_id)
    if u is None:
        raise UnknownUser(f"unknown user {user_id!r}")
    role = policy.roles[u.role]
    org_name = None
    if u.org_code:
        from cimlib.access._warehouse import org_name_of

        org_name = org_name_of(h, u.org_code)
    return Principal(
        user_id=u.user_id,
        display_name=u.display_name,
        role=u.role,
        org_code=u.org_code,
        staff_no=u.staff_no,
        scope=role.scope,
        detail=role.detail,
        audit_reader=role.audit_reader,
        parameter_admin=role.parameter_admin,
        unmasked=policy.unmasked_for(role),
        org_name=org_name,
        masking=tuple((f, (r.keep_first, r.keep_last)) for f, r in policy.masking.items()),
        mask_char=policy.mask_char,
        min_cell=policy.aggregate_min_cell,
    )


def service_principal(
    role: str,
    org_code: str | None,
    *,
    user_id: str,
    display_name: str,
    home: Home | str | os.PathLike[str] | None = None,
) -> Principal:
    """The principal of an unattended job acting for an audience: a role of the policy at an org.

    A scheduled report for county 101000 is read by that county's managers, so it runs with the role the
    report settings name for counties and the county's org code, under its own ``user_id`` (the audit
    log shows which job saw what).

    Parameters
    ----------
    role : str
        A role of ``parameters/access.yaml``.
    org_code : str or None
        The org the audience belongs to (required for county and branch roles).
    user_id, display_name : str
        How the job appears in the audit log and on the report, e.g. ``report:monthly_pack``.
    home : Home, path or None
        The installation (default: ``$CIM_HOME``).

    Returns
    -------
    Principal

    Raises
    ------
    PolicyError
        For a role the policy lacks, or a county/branch role without an org code.
    """
    h = _resolve_home(home)
    policy = load_policy(h)
    r = policy.roles.get(role)
    if r is None:
        raise PolicyError(f"unknown role {role!r}; expected one of {', '.join(policy.roles)}")
    if r.scope in ("county", "branch") and not org_code:
        raise PolicyError(f"role {role!r} is scoped to a {r.scope}: an org code is required")
    if r.scope == "managed":
        raise PolicyError(f"role {role!r} is scoped to one manager's customers; a job cannot act as it")
    if org_code is not None and not re.fullmatch(policy.org_code_pattern, org_code):
        raise PolicyError(f"{org_code!r} is not an org code (pattern {policy.org_code_pattern})")
    org_name = None
    if org_code:
        from cimlib.access._warehouse import org_name_of

        org_name = org_name_of(h, org_code)
    return Principal(
        user_id=user_id,
        display_name=display_name,
        role=role,
        org_code=org_code,
        scope=r.scope,
        detail=r.detail,
        audit_reader=r.audit_reader,
        parameter_admin=False,
        unmasked=policy.unmasked_for(r),
        org_name=org_name,
        masking=tuple((f, (m.keep_first, m.keep_last)) for f, m in policy.masking.items()),
        mask_char=policy.mask_char,
        min_cell=policy.aggregate_min_cell,
    )


#: The environment variable naming a notebook session's user (set by ``cim lab --as USER``).
USER_ENV = "CIM_USER"


def session_principal(
    user: str | None = None, home: Home | str | os.PathLike[str] | None = None
) -> Principal:
    """The principal of a notebook session: ``user`` when given, else ``$CIM_USER`` (``cim lab --as``).

    Parameters
    ----------
    user : str, optional
        A user of ``parameters/access.yaml`` (a notebook's ``user`` parameter).
    home : Home, str or None
        The installation (default ``$CIM_HOME``).

    Returns
    -------
    Principal

    Raises
    ------
    UnknownUser
        When the user is not in the access policy.
    ValueError
        When neither ``user`` nor ``$CIM_USER`` names one (start the lab with ``cim lab --as USER``).
    """
    who = user or os.environ.get(USER_ENV)
    if not who:
        raise ValueError(f"no user: pass user=... or start JupyterLab with `cim lab --as USER` (${USER_ENV})")
    return principal_for(who, home)
