"""Segmentation dimensions: ``parameters/dimensions.yaml``, validated on load, and the SQL that buckets.

A dimension maps each customer-month of the **segment base** (:data:`BASE_SQL`, one row per customer at
one as-of date) to exactly one **member**:

* ``buckets``: a measure cut at edges; ``[min, max)`` per bucket, contiguous, open-ended at the ends
  unless the measure cannot go beyond (``missing`` names the member of customers without a value);
* ``codes``: a coded column; every code of its list (or of ``codes:``) maps to one member, by default a
  member per code, or grouped by ``members:``;
* ``org``: the org hierarchy (county > branch), members are org codes;
* ``period``: the as-of month.

The SQL is written here from the validated model: column names come from :data:`BASE_COLUMNS`, member
ids and edges are bound as literals produced by Python from numbers and identifiers checked on load.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access._yamlfile import YamlProblem, load_yaml_model, problem
from cimlib.config import Home, get_home

_ID = r"^[A-Za-z][A-Za-z0-9_]{0,39}$"

#: Columns of the segment base a dimension may read, with their kind.
BASE_COLUMNS: dict[str, str] = {
    "customer_type": "code",
    "county_code": "org",
    "home_org_code": "org",
    "as_of_date": "period",
    "age": "number",
    "monthly_income": "number",
    "education": "code",
    "occupation": "code",
    "sex": "code",
    "economic_nature": "code",
    "enterprise_form": "code",
    "industry": "code",
    "deposit_adb": "number",
    "deposit_balance": "number",
    "aum": "number",
    "loan_balance": "number",
    "npl_balance": "number",
    "n_products": "number",
    "txn_count": "number",
    "txn_amount": "number",
    "customer_txn_count": "number",
    "customer_txn_amount": "number",
    "credit_line_amount": "number",
    "credit_line_used": "number",
    "contribution": "number",
    "worst_five_class": "code",
    "main_channel": "code",
    "main_loan_form": "code",
    "main_loan_product": "code",
    "main_deposit_product": "code",
}

CONTRIBUTION_MACRO = "cim_contribution_at"
_CHANNELS = ("counter", "atm", "pos", "phone", "online", "mobile")
_GREATEST = "greatest(" + ", ".join(f"m.txn_count_{c}" for c in _CHANNELS) + ")"
_MAIN_CHANNEL = (
    f"CASE WHEN {_GREATEST} = 0 THEN NULL "
    + " ".join(f"WHEN m.txn_count_{c} = {_GREATEST} THEN '{c.upper()}'" for c in _CHANNELS)
    + " END"
)

#: One row per customer at ``$as_of`` (a month-end of the warehouse): attributes, the month's measures,
#: the customer's main loan form, loan product and deposit product (those of the largest balance), and the
#: month's contribution (FTP, ``parameters/value.yaml``). Run :func:`prepare` on a connection first: the
#: contribution comes from a temporary table macro built from the value parameters.
_BASE_TEMPLATE = f"""
SELECT
    m.customer_id, m.as_of_date, m.customer_type,
    d.county_code, d.home_org_code, d.age, d.monthly_income, d.education, d.occupation, d.sex,
    d.economic_nature, d.enterprise_form, d.industry,
    m.deposit_adb, m.deposit_balance, m.aum, m.loan_balance, m.npl_balance, m.n_products,
    m.txn_count, m.txn_amount, m.customer_txn_count, m.customer_txn_amount,
    m.credit_line_amount, m.credit_line_used, m.worst_five_class,
    {_MAIN_CHANNEL} AS main_channel,
    ln.main_loan_form, ln.main_loan_product, dp.main_deposit_product,
    {{contribution}}
FROM mart_customer_month AS m
JOIN dim_customer AS d ON d.customer_id = m.customer_id
{{contribution_join}}
LEFT JOIN (
    SELECT l.customer_id, arg_max(l.loan_form, l.balance) AS main_loan_form,
           arg_max(p.subtype, l.balance) AS main_loan_product
    FROM core_loan_month AS l JOIN core_product AS p ON p.product_code = l.product_code
    WHERE l.as_of_date = $as_of AND l.status = 'ACTIVE' AND l.balance > 0
    GROUP BY l.customer_id
) AS ln ON ln.customer_id = m.customer_id
LEFT JOIN (
    SELECT a.customer_id, arg_max(p.subtype, a.balance) AS main_deposit_product
    FROM core_deposit_month AS a JOIN core_product AS p ON p.product_code = a.product_code
    WHERE a.as_of_date = $as_of AND a.status <> 'CLOSED' AND a.balance > 0
    GROUP BY a.customer_id
) AS dp ON dp.customer_id = m.customer_id
WHERE m.as_of_date = $as_of
"""


def base_sql(contribution: bool = True) -> str:
    """The segment base; without ``contribution`` its column is NULL and the FTP computation is skipped
    (a query that reads no contribution, such as most analyses, then costs a third less at 1M)."""
    if contribution:
        return _BASE_TEMPLATE.format(
            contribution="cv.contribution",
            contribution_join=(
                f"LEFT JOIN {CONTRIBUTION_MACRO}($as_of) AS cv ON cv.customer_id = m.customer_id"
            ),
        )
    return _BASE_TEMPLATE.format(
        contribution="CAST(NULL AS DECIMAL(18, 2)) AS contribution", contribution_join=""
    )


BASE_SQL = base_sql()


def prepare(con: Any, home: Home | str | None = None) -> None:
    """Define on ``con`` what the segment base reads besides the warehouse tables.

    The contribution per customer (:func:`cimlib.value.contribution_sql` with the installation's
    ``parameters/value.yaml``) becomes a temporary table macro ``cim_contribution_at(as_of)``, so the
    base reads today's parameters without a rebuild. Temporary objects are allowed on the read-only
    snapshot connections; redefining costs about a millisecond.
    """
    from cimlib.value import contribution_sql, load_value_params

    sql = contribution_sql(load_value_params(home)).replace("$as_of", "cim_as_of")
    con.execute(f"CREATE OR REPLACE TEMP MACRO {CONTRIBUTION_MACRO}(cim_as_of) AS TABLE {sql}")


class DimensionError(ValueError):
    """A dimensions file that cannot be used: names the file, the dimension, the line and the problem."""


class Text(BaseModel):
    """A label in both languages."""

    model_config = ConfigDict(extra="forbid")
    en: str = Field(min_length=1, max_length=80)
    zh: str = Field(min_length=1, max_length=80)


class Bucket(BaseModel):
    """One bucket ``[min, max)``; no ``min`` is open below, no ``max`` open above."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    label: Text
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _finite(self) -> Bucket:
        for v in (self.min, self.max):
            if v is not None and not math.isfinite(v):
                raise ValueError("edges must be finite numbers")
        if self.min is not None and self.max is not None and self.max <= self.min:
            raise ValueError(f"bucket {self.id}: max {self.max:g} is not above min {self.min:g}")
        return self


class Member(BaseModel):
    """A member grouping codes."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    label: Text
    codes: list[str] = Field(min_length=1)


class Missing(BaseModel):
    """The member of customers without a value."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    label: Text


class DimensionModel(BaseModel):
    """One dimension of the file."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label: Text
    kind: Literal["buckets", "codes", "org", "period"]
    column: str
    applies: list[Literal["I", "C"]] = Field(default_factory=lambda: ["I", "C"], min_length=1)
    buckets: list[Bucket] | None = None
    code_list: str | None = None
    codes: list[str] | None = None
    members: list[Member] | None = None
    missing: Missing | None = None
    parent: str | None = None


class DimensionsFile(BaseModel):
    """``parameters/dimensions.yaml``."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    dimensions: list[DimensionModel] = Field(min_length=1, max_length=100)


@dataclass(frozen=True)
class Dimension:
    """A validated dimension: its members in display order and the SQL that assigns them."""

    id: str
    label: dict[str, str]
    kind: str
    column: str
    applies: tuple[str, ...]
    members: tuple[tuple[str, dict[str, str]], ...]  # (member id, label) in order; org/period: empty
    model: DimensionModel
    parent: str | None = None

    def member_sql(self, alias: str = "s") -> str:
        """The SQL expression giving this dimension's member of a base row aliased ``alias``."""
        return member_sql(self, alias)

    def label_of(self, member: Any, lang: str = "en") -> str:
        """The label of ``member`` (its id when unknown: an org code or a month)."""
        key = "zh" if str(lang).startswith("zh") else "en"
        for mid, lab in self.members:
            if mid == member:
                return lab[key]
        return "" if member is None else str(member)


@dataclass(frozen=True)
class Dimensions:
    """All dimensions of an installation, and the version (hash) of the file they came from."""

    items: dict[str, Dimension]
    version: str
    path: Path

    def __getitem__(self, dim_id: str) -> Dimension:
        try:
            return self.items[dim_id]
        except KeyError:
            from cimlib.targeting._language import suggest

            hint = suggest(dim_id, self.items)
            raise KeyError(
                f"no dimension {dim_id!r} in {self.path}" + (f"; did you mean {hint!r}?" if hint else "")
            ) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items.values())

    def for_type(self, customer_type: str) -> list[Dimension]:
        """The dimensions that apply to ``customer_type`` (``I`` or ``C``)."""
        return [d for d in self.items.values() if customer_type in d.applies]


def dimensions_path(home: Home | str | None = None) -> Path:
    """``parameters/dimensions.yaml`` of the installation."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.parameters / "dimensions.yaml"


def _codes() -> dict[str, dict[str, dict[str, Any]]]:
    from cimlib.contracts import load_codes

    out = dict(load_codes())
    out["customer_type"] = {"I": {"en": "Individual", "zh": "个人"}, "C": {"en": "Corporate", "zh": "对公"}}
    return out


def _check(i: int, m: DimensionModel, seen: set[str]) -> Dimension:
    where = ["dimensions", i]
    if m.id in seen:
        raise YamlProblem([*where, "id"], f"dimension {m.id!r} is defined twice")
    if m.column not in BASE_COLUMNS:
        from cimlib.targeting._language import suggest

        hint = suggest(m.column, BASE_COLUMNS)
        raise YamlProblem(
            [*where, "column"],
            f"dimension {m.id}: unknown column {m.column!r}" + (f"; did you mean {hint!r}?" if hint else ""),
        )
    kind = BASE_COLUMNS[m.column]
    want = {"buckets": "number", "codes": "code", "org": "org", "period": "period"}[m.kind]
    if kind != want:
        raise YamlProblem(
            [*where, "column"], f"dimension {m.id}: column {m.column} is a {kind}, not a {want}"
        )
    members: list[tuple[str, dict[str, str]]] = []
    if m.kind == "buckets":
        b = m.buckets or []
        if not b:
            raise YamlProblem([*where, "buckets"], f"dimension {m.id}: no buckets")
        for k in range(len(b) - 1):
            lo, hi = b[k], b[k + 1]
            if lo.max is None:
                raise YamlProblem(
                    [*where, "buckets", k],
                    f"dimension {m.id}: bucket {lo.id} is open above but is not the last",
                )
            if hi.min is None:
                raise YamlProblem(
                    [*where, "buckets", k + 1],
                    f"dimension {m.id}: bucket {hi.id} is open below but is not the first",
                )
            if hi.min > lo.max:
                raise YamlProblem(
                    [*where, "buckets", k + 1],
                    f"dimension {m.id}: gap between {lo.max:g} and {hi.min:g} (buckets {lo.id} and {hi.id}): "
                    "values there land in no bucket",
                )
            if hi.min < lo.max:
                raise YamlProblem(
                    [*where, "buckets", k + 1],
                    f"dimension {m.id}: buckets {lo.id} and {hi.id} overlap from {hi.min:g} to {lo.max:g}",
                )
        members = [(x.id, x.label.model_dump()) for x in b]
    elif m.kind == "codes":
        codes = _codes()
        if not m.code_list or m.code_list not in codes:
            raise YamlProblem([*where, "code_list"], f"dimension {m.id}: unknown code list {m.code_list!r}")
        listed = list(codes[m.code_list])
        wanted = list(m.codes) if m.codes else listed
        bad = [c for c in wanted if c not in listed]
        if bad:
            raise YamlProblem([*where, "codes"], f"dimension {m.id}: {bad} are not codes of {m.code_list}")
        if m.members:
            mapped: dict[str, str] = {}
            for j, mem in enumerate(m.members):
                for c in mem.codes:
                    if c not in wanted:
                        raise YamlProblem(
                            [*where, "members", j],
                            f"dimension {m.id}: member {mem.id} maps {c!r}, not a code here",
                        )
                    if c in mapped:
                        raise YamlProblem(
                            [*where, "members", j],
                            f"dimension {m.id}: code {c} is in both {mapped[c]} and {mem.id}",
                        )
                    mapped[c] = mem.id
            unmapped = [c for c in wanted if c not in mapped]
            if unmapped:
                raise YamlProblem(
                    [*where, "members"], f"dimension {m.id}: codes {unmapped} are not mapped to any member"
                )
            members = [(mem.id, mem.label.model_dump()) for mem in m.members]
        else:
            members = [
                (c, {"en": codes[m.code_list][c]["en"], "zh": codes[m.code_list][c]["zh"]}) for c in wanted
            ]
    if m.missing is not None:
        if any(mid == m.missing.id for mid, _ in members):
            raise YamlProblem([*where, "missing"], f"dimension {m.id}: member id {m.missing.id} used twice")
        members.append((m.missing.id, m.missing.label.model_dump()))
    ids = [mid for mid, _ in members]
    if len(set(ids)) != len(ids):
        raise YamlProblem([*where], f"dimension {m.id}: member ids are not unique")
    return Dimension(
        m.id, m.label.model_dump(), m.kind, m.column, tuple(m.applies), tuple(members), m, m.parent
    )


def load_dimensions(home: Home | str | None = None, path: Path | None = None) -> Dimensions:
    """Load and validate ``parameters/dimensions.yaml`` (or ``path``).

    Raises
    ------
    DimensionError
        Naming the file, the dimension, the line and the problem (a gap, an overlap, an unmapped code).
    """
    p = path or dimensions_path(home)
    model, node = load_yaml_model(p, DimensionsFile, DimensionError)
    items: dict[str, Dimension] = {}
    try:
        for i, m in enumerate(model.dimensions):
            items[m.id] = _check(i, m, set(items))
        for i, m in enumerate(model.dimensions):
            if m.parent is not None and m.parent not in items:
                raise YamlProblem(
                    ["dimensions", i, "parent"], f"dimension {m.id}: unknown parent {m.parent!r}"
                )
    except YamlProblem as exc:
        raise problem(p, node, exc, DimensionError) from None
    version = hashlib.sha256(
        json.dumps(model.model_dump(), sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()[:12]
    return Dimensions(items, version, p)


_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def _lit(value: str) -> str:
    """A member id or code as a SQL literal (ids and codes are checked identifiers, never free text)."""
    if not _SAFE.match(value):
        raise ValueError(f"not an identifier: {value!r}")
    return f"'{value}'"


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def member_sql(dim: Dimension, alias: str = "s") -> str:
    """The SQL expression of ``dim``'s member for a base row aliased ``alias``.

    Buckets are contiguous (checked on load), so ``CASE WHEN col < max0 … ELSE last`` puts every value in
    exactly one bucket; a bucket list closed below puts values under the first edge in no bucket (NULL),
    which :func:`coverage_sql` reports.
    """
    if not re.match(r"^[a-z_]+$", alias):
        raise ValueError(f"bad alias {alias!r}")
    col = f"{alias}.{dim.column}"
    m = dim.model
    missing = _lit(m.missing.id) if m.missing else "NULL"
    if dim.kind in ("org", "period"):
        return col
    if dim.kind == "buckets":
        b = m.buckets or []
        parts = [f"WHEN {col} IS NULL THEN {missing}"]
        if b[0].min is not None:
            parts.append(f"WHEN {col} < {_num(b[0].min)} THEN NULL")
        for x in b[:-1]:
            parts.append(f"WHEN {col} < {_num(x.max)} THEN {_lit(x.id)}")  # type: ignore[arg-type]
        last = b[-1]
        if last.max is not None:
            parts.append(f"WHEN {col} >= {_num(last.max)} THEN NULL")
        return "CASE " + " ".join(parts) + f" ELSE {_lit(last.id)} END"
    if m.members:
        whens = " ".join(
            f"WHEN {col} IN ({', '.join(_lit(c) for c in mem.codes)}) THEN {_lit(mem.id)}"
            for mem in m.members
        )
        return f"CASE WHEN {col} IS NULL THEN {missing} {whens} ELSE NULL END"
    codes = list(m.codes) if m.codes else None
    if codes:
        return (
            f"CASE WHEN {col} IS NULL THEN {missing} WHEN {col} IN ({', '.join(_lit(c) for c in codes)}) "
            f"THEN {col} ELSE NULL END"
        )
    return f"coalesce({col}, {missing})"


def coverage_sql(dim: Dimension) -> str:
    """SQL (over the base at ``$as_of``) counting the customers ``dim`` puts in no member, by value.

    ``cim params check`` runs it against the warehouse: every customer must land in exactly one member.
    """
    types = ", ".join(_lit(t) for t in dim.applies)
    return (
        f"SELECT CAST(s.{dim.column} AS VARCHAR) AS value, count(*) AS n FROM ({BASE_SQL}) AS s "
        f"WHERE s.customer_type IN ({types}) AND ({member_sql(dim, 's')}) IS NULL GROUP BY 1 ORDER BY 2 DESC"
    )
