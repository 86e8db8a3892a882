"""Row scope and masking: the two things every customer-level query of every service applies."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cimlib.access._errors import NotPermitted
from cimlib.access._policy import Principal

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

#: Masking used when a principal carries no rules of its own (DOMAIN.md defaults).
DEFAULT_MASKING: dict[str, tuple[int, int]] = {
    "name": (1, 0),
    "id_no": (1, 1),
    "phone": (1, 1),
    "account_no": (1, 1),
    "card_no": (1, 1),
    "address": (6, 0),
}
# Two-character surnames: "keep the surname" keeps both characters.
_COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "令狐",
        "钟离",
        "端木",
        "独孤",
        "南宫",
        "西门",
        "百里",
        "呼延",
        "万俟",
        "闻人",
        "赫连",
        "澹台",
        "公冶",
        "宗政",
        "濮阳",
        "太史",
        "申屠",
        "淳于",
        "单于",
        "仲孙",
    ]
)


def scope_clause(principal: Principal, alias: str = "d") -> tuple[str, list[Any]]:
    """The SQL condition that limits ``dim_customer`` (aliased ``alias``) rows to the principal's scope.

    Parameters
    ----------
    principal : Principal
        Whose scope.
    alias : str
        The alias of a relation with ``county_code``, ``home_org_code`` and ``manager_no``
        (``dim_customer`` or ``mart_customer_wide``). A fixed identifier chosen by the service, never
        user input.

    Returns
    -------
    (str, list)
        A condition with ``?`` placeholders and the values to bind. An unknown scope gives ``FALSE``.
    """
    if not _IDENT.match(alias):
        raise ValueError(f"bad alias {alias!r}")
    if principal.scope == "all":
        return "TRUE", []
    if principal.scope == "county" and principal.org_code:
        return f"{alias}.county_code = ?", [principal.org_code]
    if principal.scope == "branch" and principal.org_code:
        return f"{alias}.home_org_code = ?", [principal.org_code]
    if principal.scope == "managed" and principal.staff_no:
        return f"{alias}.manager_no = ?", [principal.staff_no]
    return "FALSE", []


def name_params(sql: str, params: Sequence[Any], prefix: str) -> tuple[str, dict[str, Any]]:
    """A service-written condition's ``?`` placeholders as ``$<prefix>N`` named parameters.

    Services that assemble one query from several parts (scope, rules, cube cells) bind by name.
    """
    out, named, i = [], {}, 0
    for ch in sql:
        if ch == "?":
            out.append(f"${prefix}{i}")
            named[f"{prefix}{i}"] = params[i]
            i += 1
        else:
            out.append(ch)
    return "".join(out), named


def named_scope(principal: Principal, alias: str = "d", prefix: str = "s") -> tuple[str, dict[str, Any]]:
    """:func:`scope_clause` with named parameters ``$<prefix>N`` (see :func:`name_params`)."""
    sql, params = scope_clause(principal, alias)
    return name_params(sql, params, prefix)


def require_detail(principal: Principal) -> None:
    """Refuse single-customer detail to a role that has none (before any data is read).

    Raises
    ------
    NotPermitted
        With a message about the role only.
    """
    if not principal.can_view_detail:
        what = "aggregates only" if principal.scope == "all" else principal.scope_label
        raise NotPermitted(
            f"role {principal.role} has no single-customer detail ({what}); use the aggregate views"
        )


def _surname_len(name: str) -> int:
    return 2 if name[:2] in _COMPOUND_SURNAMES and len(name) > 2 else 1


def mask_text(value: object, field: str, keep: tuple[int, int] | None = None, char: str = "*") -> Any:
    """Mask one value of a personal-data field.

    Keeps ``keep = (first, last)`` characters (the surname for ``name``) and replaces the rest with
    ``char``, always hiding at least one character. ``None`` stays ``None``.
    """
    if value is None or (isinstance(value, float) and value != value):
        return value
    s = str(value)
    n = len(s)
    if n == 0:
        return s
    first, last = keep if keep is not None else DEFAULT_MASKING.get(field, (1, 1))
    if field == "name" and first >= 1:
        first = max(first, _surname_len(s))
    while n - first - last < 1 and (first or last):
        if last:
            last -= 1
        else:
            first -= 1
    return s[:first] + char * (n - first - last) + (s[n - last :] if last else "")


def mask_value(principal: Principal, field: str, value: object) -> Any:
    """``value`` as the principal may see it: in clear if the role allows ``field``, else masked."""
    if principal.sees(field):
        return value
    keep = dict(principal.masking).get(field, DEFAULT_MASKING.get(field, (1, 1)))
    return mask_text(value, field, keep, principal.mask_char)


def mask_values(
    principal: Principal, field: str, values: Iterable[Any], where: Iterable[bool] | None = None
) -> list[Any]:
    """Many values of one field as the principal may see them (:func:`mask_value`, set up once).

    Parameters
    ----------
    principal : Principal
        Whose view.
    field : str
        The personal-data field (``name``, ``id_no``, ``phone`` ...).
    values : iterable
        The values.
    where : iterable of bool, optional
        Mask only where true (e.g. individuals' names, not corporates').

    Returns
    -------
    list
    """
    if principal.sees(field):
        return list(values)
    keep = dict(principal.masking).get(field, DEFAULT_MASKING.get(field, (1, 1)))
    char = principal.mask_char
    if where is None:
        return [mask_text(v, field, keep, char) for v in values]
    return [mask_text(v, field, keep, char) if w else v for v, w in zip(values, where, strict=True)]


def mask_frame(principal: Principal, frame: Any, columns: Mapping[str, str]) -> Any:
    """Mask the columns of a pandas frame in place and return it.

    Parameters
    ----------
    principal : Principal
        Whose view.
    frame : pandas.DataFrame
        The rows.
    columns : mapping
        Column -> personal-data field (``{"account_no": "account_no", "guarantor_name": "name"}``).
    """
    for col, fld in columns.items():
        if col in frame.columns and not principal.sees(fld):
            frame[col] = [mask_value(principal, fld, v) for v in frame[col].tolist()]
    return frame


def mask_record(principal: Principal, record: dict[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Mask the keys of a dict in place and return it (see :func:`mask_frame`)."""
    for col, fld in columns.items():
        if col in record:
            record[col] = mask_value(principal, fld, record[col])
    return record


def masked_fields(principal: Principal, fields: Iterable[str]) -> list[str]:
    """Which of ``fields`` the principal sees masked."""
    return [f for f in fields if not principal.sees(f)]
