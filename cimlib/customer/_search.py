"""Customer search: by any system's customer number, ID number or credit code, phone, account, card or
loan number, or name prefix. Scoped inside the query, masked, audit-logged."""

from __future__ import annotations

import logging
import re
import time
import unicodedata

import pandas as pd

from cimlib.access import AccessError as _AccessError
from cimlib.access import Principal, audit_log, mask_value, require_detail, scope_clause
from cimlib.customer import _data as D

log = logging.getLogger(__name__)

MAX_QUERY = 64
MAX_LIMIT = 500
RESULT_COLUMNS = [
    "customer_id", "customer_type", "cust_name", "id_no", "phone", "home_org_code", "home_org_name",
    "county_name", "manager_name", "matched_on",
]  # fmt: skip

_SELECT = """
SELECT d.customer_id, d.customer_type, d.cust_name, d.id_no_or_credit_code AS id_no, d.phone, d.home_org_code,
       d.home_org_name, d.county_name, d.manager_name, {matched} AS matched_on, count(*) OVER () AS n_total
"""
# Each exact-key branch is a fixed statement; which branches run depends only on the shape of the query.
_BRANCHES = {
    "customer_no": "SELECT customer_id FROM core_cust_no_map WHERE cust_no = ?",
    "id_no": "SELECT customer_id FROM dim_customer WHERE id_no_or_credit_code = ?",
    "phone": "SELECT customer_id FROM dim_customer WHERE phone = ?",
    "account_no": "SELECT customer_id FROM core_account WHERE account_no = ?",
    "card_no": "SELECT customer_id FROM core_card_month WHERE card_no = ?",
    "loan_no": "SELECT customer_id FROM core_loan WHERE loan_no = ?",
}
_KEYLIKE = re.compile(r"^[0-9A-Z]+$")


class SearchError(ValueError):
    """The search text is empty or too long (says nothing about any customer)."""


def normalise(query: str) -> str:
    """NFKC (full-width to half-width), trimmed; keys lose inner blanks and dashes and are upper-cased."""
    q = unicodedata.normalize("NFKC", str(query)).strip()
    compact = re.sub(r"[\s\-]", "", q)
    if compact and compact.isascii() and _KEYLIKE.match(compact.upper()):
        return compact.upper()
    return re.sub(r"\s+", " ", q)


def _branches(q: str) -> list[str]:
    """The key kinds a query can be, from its shape (a name prefix when it is not an ASCII key)."""
    if not _KEYLIKE.match(q):
        return []
    kinds = ["customer_no", "account_no", "loan_no"]
    if len(q) == 18:
        kinds.append("id_no")
    if q.isdigit() and 7 <= len(q) <= 15:
        kinds.append("phone")
    if q.isdigit() and 13 <= len(q) <= 19:
        kinds.append("card_no")
    return kinds


def search(principal: Principal, query: str, *, home: D.HomeLike = None, limit: int = 50) -> pd.DataFrame:
    """Find customers in the principal's scope.

    Parameters
    ----------
    principal : Principal
        Who is searching; the role must allow single-customer detail.
    query : str
        A customer number of any source system, an ID number or credit code, a phone number, an account,
        card or loan number (exact), or the beginning of a name (any text that is not such a key).
    home : Home or path, optional
        The installation (default ``$CIM_HOME``).
    limit : int
        At most this many rows (1..500).

    Returns
    -------
    pandas.DataFrame
        ``customer_id, customer_type, cust_name, id_no, phone, home_org_code, home_org_name, county_name,
        manager_name, matched_on``; personal data masked as the role requires. ``attrs["total"]`` is the
        number of matching customers in scope (out-of-scope customers are never counted) and
        ``attrs["truncated"]`` whether ``limit`` cut the list.

    Raises
    ------
    NotPermitted
        When the role has no single-customer detail.
    SearchError
        When the query is empty or longer than 64 characters.
    AuditError
        When the audit record cannot be written.
    """
    h = D.resolve_home(home)
    raw = str(query)
    try:
        require_detail(principal)
    except _AccessError as exc:
        audit_log(h, principal, "search", raw[:MAX_QUERY], None, {"reason": str(exc)}, outcome="refused")
        raise
    q = normalise(raw)
    if not q or len(q) > MAX_QUERY:
        audit_log(h, principal, "search", raw[:MAX_QUERY], None, {"length": len(raw)}, outcome="bad_request")
        raise SearchError(
            "search text is empty" if not q else f"search text is longer than {MAX_QUERY} characters"
        )
    limit = max(1, min(int(limit), MAX_LIMIT))
    t0 = time.perf_counter()
    snap = D.snapshot(h)
    scope_sql, scope_params = scope_clause(principal, "d")
    kinds = _branches(q)
    if kinds:
        hits = " UNION ALL ".join(f"SELECT customer_id, '{k}' AS kind FROM ({_BRANCHES[k]})" for k in kinds)
        sql = (
            f"WITH hits AS ({hits}), m AS (SELECT customer_id, "
            "string_agg(DISTINCT kind, ',' ORDER BY kind) AS kinds FROM hits GROUP BY customer_id) "
            + _SELECT.format(matched="m.kinds")
            + f"FROM m JOIN dim_customer AS d ON d.customer_id = m.customer_id WHERE {scope_sql} "
            "ORDER BY d.customer_id LIMIT ?"
        )
        params = [q] * len(kinds) + [*scope_params, limit]
    else:
        sql = (
            _SELECT.format(matched="'name'")
            + f"FROM dim_customer AS d WHERE starts_with(d.cust_name, ?) AND {scope_sql} "
            "ORDER BY d.cust_name, d.customer_id LIMIT ?"
        )
        params = [q, *scope_params, limit]
    cols, rows = snap.query(sql, params)
    total = int(rows[0][-1]) if rows else 0
    out = D.frame(cols[:-1], [r[:-1] for r in rows])
    person = out["customer_type"] == "I"
    for col, fld in (("cust_name", "name"), ("id_no", "id_no")):
        out[col] = [mask_value(principal, fld, v) if p else v for v, p in zip(out[col], person, strict=True)]
    out["phone"] = [mask_value(principal, "phone", v) for v in out["phone"]]
    out = out[RESULT_COLUMNS]
    out.attrs["total"] = total
    out.attrs["truncated"] = total > len(out)
    ms = round((time.perf_counter() - t0) * 1000, 2)
    audit_log(
        h, principal, "search", q, snap.snapshot_id,
        {"kinds": kinds or ["name"], "n_results": len(out), "n_total": total},
    )  # fmt: skip
    log.info("customer search", extra={"kinds": kinds or ["name"], "n": len(out), "ms": ms})
    return out


def available_months(principal: Principal, home: D.HomeLike = None) -> list[str]:
    """The months (``YYYY-MM``) the warehouse holds, oldest first; any principal may ask.

    Parameters
    ----------
    principal : Principal
        Who asks (not audited: no customer data).
    home : Home or path, optional
        The installation.

    Returns
    -------
    list of str
    """
    del principal
    return [d.strftime("%Y-%m") for d in D.as_of_dates(D.snapshot(home))]
