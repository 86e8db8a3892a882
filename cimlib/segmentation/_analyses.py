"""The specification's distribution analyses, each a function returning a tidy frame, with charts.

Every analysis reads the published warehouse at one as-of month, limited to the principal's scope inside
the query, and returns aggregates only: one row per group with ``customers``, ``customer_share`` and the
relevant amounts and their shares. For a role without single-customer detail, a group of fewer than
``k`` customers (``principal.min_cell``, default 5) has its counts, amounts and shares blanked
(``suppressed`` is True); when only one group is that small the next smallest is blanked too, so the
hidden cell cannot be worked out from the others.

Each analysis has a core function taking a DuckDB connection (``*_core``), so it can be tested on a small
hand-built database; the public function opens the snapshot, resolves the month and the scope, and
labels and suppresses the result. Parameters (provision rates, utilisation bands, expiry windows, RFM)
come from ``parameters/analyses.yaml``.

Consumption propensity (POS spending by merchant category) is not here: the warehouse keeps no merchant
category (MCC) per customer-month (``stg_transaction`` is a view over the lake that the build reads
one month at a time into channel totals only), so it needs a build change first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import altair as alt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access import NotPermitted, Principal, name_params, scope_clause
from cimlib.access._yamlfile import load_yaml_model
from cimlib.charts._charts import _money, _money_format, _style
from cimlib.config import Home, get_home
from cimlib.customer import _data as D
from cimlib.i18n import code_label, money_unit
from cimlib.segmentation._dimensions import (
    Bucket,
    Dimension,
    Dimensions,
    Text,
    base_sql,
    load_dimensions,
    prepare,
)

Scope = tuple[str, Sequence[Any]]
ALL: Scope = ("TRUE", ())
#: The customer channels of the mart (``txn_count_<channel>``); SYSTEM (batch postings) is not one.
CHANNELS = ("COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE")
#: Amounts every customer distribution reports; those in :data:`SHARED` also get a ``<name>_share``.
MEASURES = ("deposit_adb", "deposit_balance", "aum", "loan_balance", "npl_balance", "txn_count", "txn_amount")
SHARED = ("deposit_adb", "deposit_balance", "aum", "loan_balance", "txn_amount")
FIVE_CLASSES = ("NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS")


class AnalysesError(ValueError):
    """``parameters/analyses.yaml`` cannot be used: names the file, the key, the line and the problem."""


# ------------------------------------------------------------------------------------------ parameters
class ProvisionRates(BaseModel):
    """Provision rate per five-tier class (a share of the class's balance)."""

    model_config = ConfigDict(extra="forbid")
    NORMAL: float = Field(0.0, ge=0, le=1)
    SPECIAL_MENTION: float = Field(ge=0, le=1)
    SUBSTANDARD: float = Field(ge=0, le=1)
    DOUBTFUL: float = Field(ge=0, le=1)
    LOSS: float = Field(ge=0, le=1)


class CreditLineParams(BaseModel):
    """Utilisation bands (contiguous ``[min, max)``) and expiry windows in days (ascending)."""

    model_config = ConfigDict(extra="forbid")
    utilisation_bands: list[Bucket] = Field(min_length=1)
    expiry_days: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _contiguous(self) -> CreditLineParams:
        b = self.utilisation_bands
        if b[0].min is not None and b[0].min > 0:
            raise ValueError(f"utilisation band {b[0].id} must start at 0 or be open below")
        if b[-1].max is not None:
            raise ValueError(f"utilisation band {b[-1].id} must be open above (drawn above the line)")
        for lo, hi in itertools.pairwise(b):
            if lo.max is None or hi.min is None or lo.max != hi.min:
                raise ValueError(f"utilisation bands {lo.id} and {hi.id} are not contiguous (gap or overlap)")
        d = self.expiry_days
        if any(x <= 0 for x in d) or any(b2 <= a for a, b2 in itertools.pairwise(d)):
            raise ValueError("expiry_days must be positive and ascending")
        return self


class RfmParams(BaseModel):
    """RFM: the monetary measure, the frequency window and the high-score threshold."""

    model_config = ConfigDict(extra="forbid")
    monetary: Literal["deposit_adb", "aum"] = "deposit_adb"
    frequency_months: int = Field(3, ge=1, le=12)
    high_score: int = Field(4, ge=2, le=5)


class AnalysesParams(BaseModel):
    """``parameters/analyses.yaml``."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    provision_rates: ProvisionRates
    credit_line: CreditLineParams
    rfm: RfmParams


def analyses_path(home: Home | str | None = None) -> Path:
    """``parameters/analyses.yaml`` of the installation."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.parameters / "analyses.yaml"


def load_analyses_params(home: Home | str | None = None, path: Path | None = None) -> AnalysesParams:
    """Load and validate ``parameters/analyses.yaml`` (or ``path``).

    Raises
    ------
    AnalysesError
        Naming the file, the key, the line and the problem.
    """
    model, _ = load_yaml_model(path or analyses_path(home), AnalysesParams, AnalysesError)
    return model


# ----------------------------------------------------------------------------------------------- plumbing
def _zh(lang: str) -> bool:
    return str(lang).startswith("zh")


def _ui(lang: str) -> str:
    return "zh_CN" if _zh(lang) else "en"


def _pick(text: dict[str, str] | Text, lang: str) -> str:
    d = text.model_dump() if isinstance(text, Text) else text
    return d["zh" if _zh(lang) else "en"]


def _query(con: Any, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    return con.sql(sql, params=params).to_arrow_table().to_pandas()


def _scoped_base(scope: Scope) -> tuple[str, dict[str, Any]]:
    """:data:`BASE_SQL` limited to ``scope`` (a condition on ``dim_customer`` aliased ``d``)."""
    sql, named = name_params(scope[0], list(scope[1]), "s")
    base = base_sql(contribution=False).rstrip()  # no analysis reads contribution
    if not base.endswith("WHERE m.as_of_date = $as_of"):  # the scope is appended to the base's WHERE
        raise RuntimeError("BASE_SQL no longer ends with its as-of condition")
    return f"{base}\n  AND ({sql})", named


def _scope_join(scope: Scope, alias: str = "x") -> tuple[str, dict[str, Any]]:
    """A join of a customer-level relation aliased ``alias`` to ``dim_customer`` limited to ``scope``."""
    sql, named = name_params(scope[0], list(scope[1]), "s")
    return f"JOIN dim_customer AS d ON d.customer_id = {alias}.customer_id AND ({sql})", named


def _shares(df: pd.DataFrame, cols: Sequence[str], total_of: dict[str, float] | None = None) -> None:
    for c in cols:
        total = float(df[c].sum()) if total_of is None else total_of[c]
        df[f"{c}_share" if c != "customers" else "customer_share"] = (
            df[c].astype(float) / total if total else 0.0
        )


def _order(df: pd.DataFrame, members: Sequence[tuple[str, Any]], key: str = "member") -> pd.DataFrame:
    """Rows in ``members`` order, with a zero row for each member nobody is in."""
    ids = [m for m, _ in members]
    have = set(df[key].dropna())
    zero = pd.DataFrame({key: [m for m in ids if m not in have]})
    out = pd.concat([df, zero], ignore_index=True) if len(zero) else df
    num = out.select_dtypes("number").columns
    out[num] = out[num].fillna(0)
    rank = {m: i for i, m in enumerate(ids)}
    out["_o"] = out[key].map(lambda v: rank.get(v, len(ids)))
    return out.sort_values(["_o", key], ignore_index=True).drop(columns="_o")


def suppress_small(
    df: pd.DataFrame, principal: Principal | None, count_col: str = "customers"
) -> pd.DataFrame:
    """Blank the values of groups with fewer than ``k`` customers for roles without detail.

    Parameters
    ----------
    df : DataFrame
        One row per group; ``count_col`` holds the group's customers.
    principal : Principal or None
        ``None`` or a role with single-customer detail: nothing is blanked.
    count_col : str
        The count the threshold applies to.

    Returns
    -------
    DataFrame
        ``df`` with a ``suppressed`` column; suppressed rows have every number (counts, amounts, shares)
        set to NaN. When exactly one group is small, the next smallest non-empty group is blanked too.
    """
    out = df.copy()
    if principal is None or principal.can_view_detail or not len(out):
        out["suppressed"] = False
        return out
    k = int(getattr(principal, "min_cell", 5) or 5)
    n = out[count_col].astype(float)
    small = (n > 0) & (n < k)
    if int(small.sum()) == 1:
        rest = n[(~small) & (n > 0)]
        if len(rest):
            small[rest.idxmin()] = True
    num = [c for c in out.select_dtypes("number").columns]
    out[num] = out[num].astype(float)
    out.loc[small, num] = math.nan
    out["suppressed"] = small.to_numpy()
    return out


@contextlib.contextmanager
def _reading(
    principal: Principal, as_of: str | dt.date | None, home: Any
) -> Iterator[tuple[Any, dt.date, Scope]]:
    """The snapshot's connection (all cores, under its lock), the as-of date and the principal's scope."""
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    snap = D.snapshot(home)
    date = D.resolve_as_of(snap, as_of)
    scope = scope_clause(principal, "d")
    with snap.all_cores() as con:
        prepare(con, home if isinstance(home, Home) else D.resolve_home(home))
        yield con, date, (scope[0], tuple(scope[1]))


def _dims(home: Any) -> Dimensions:
    return load_dimensions(home if isinstance(home, Home) else D.resolve_home(home))


def _params(home: Any) -> AnalysesParams:
    return load_analyses_params(home if isinstance(home, Home) else D.resolve_home(home))


def _finish(
    df: pd.DataFrame, principal: Principal, title: dict[str, str], lang: str, **attrs: Any
) -> pd.DataFrame:
    out = suppress_small(df, principal)
    out.attrs.update(title=_pick(title, lang), **attrs)
    return out


# ------------------------------------------------------------------------------- customer distributions
def distribution_core(
    con: Any,
    as_of: dt.date,
    dim: Dimension,
    *,
    scope: Scope = ALL,
    customer_type: str | None = None,
    where: str | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Customers of the segment base at ``as_of`` by ``dim``'s members, with amounts and shares.

    Parameters
    ----------
    con : duckdb connection
        A warehouse (``mart_customer_month``, ``dim_customer``, ``core_loan_month``, ``core_deposit_month``,
        ``core_product``).
    as_of : date
        A month-end of the warehouse.
    dim : Dimension
        The grouping dimension.
    scope : (str, sequence)
        A condition on ``dim_customer`` aliased ``d`` with ``?`` placeholders.
    customer_type : {"I", "C"}, optional
        Only this customer type.
    where : str, optional
        A fixed extra condition on the base aliased ``s`` (written here, never user input).
    lang : str
        Labels' language.

    Returns
    -------
    DataFrame
        ``dimension, member, label, customers, customer_share`` and each of :data:`MEASURES`, with
        ``<measure>_share`` for :data:`SHARED`; one row per member in the dimension's order.
    """
    base, params = _scoped_base(scope)
    params["as_of"] = as_of
    cond = ["TRUE"]
    if customer_type:
        cond.append("s.customer_type = $ctype")
        params["ctype"] = customer_type
    if where:
        cond.append(f"({where})")
    sums = ", ".join(f"CAST(coalesce(sum(s.{m}), 0) AS DOUBLE) AS {m}" for m in MEASURES)
    sql = (
        f"SELECT {dim.member_sql('s')} AS member, count(*) AS customers, {sums} "
        f"FROM ({base}) AS s WHERE {' AND '.join(cond)} GROUP BY 1"
    )
    df = _query(con, sql, params)
    df["customers"] = df["customers"].astype("int64")
    df = _order(df, dim.members)
    df["customers"] = df["customers"].astype("int64")
    df.insert(0, "dimension", dim.id)
    df.insert(2, "label", [dim.label_of(m, lang) for m in df["member"]])
    _shares(df, ["customers", *SHARED])
    cols = ["dimension", "member", "label", "customers", "customer_share"]
    for m in MEASURES:
        cols += [m] + ([f"{m}_share"] if m in SHARED else [])
    return df[cols]


def _distribution(
    principal: Principal,
    as_of: str | dt.date | None,
    dim_id: str,
    *,
    home: Any,
    lang: str,
    customer_type: str | None = None,
    where: str | None = None,
    title: dict[str, str] | None = None,
) -> pd.DataFrame:
    dim = _dims(home)[dim_id]
    with _reading(principal, as_of, home) as (con, date, scope):
        df = distribution_core(
            con, date, dim, scope=scope, customer_type=customer_type, where=where, lang=lang
        )
    return _finish(df, principal, title or dim.label, lang, as_of=date, analysis=dim_id)


def corporate_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: Literal["economic_nature", "enterprise_form", "industry"] = "economic_nature",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Corporate customers by economic nature (经济性质) or enterprise form (企业形式).

    Parameters
    ----------
    principal : Principal
        Who asks; rows are limited to the principal's scope, small groups suppressed for aggregate roles.
    as_of : str or date, optional
        ``YYYY-MM``; default the latest month.
    by : {"economic_nature", "enterprise_form", "industry"}
        The dimension of ``parameters/dimensions.yaml`` to group by.
    home : Home or path, optional
        The installation (default ``$CIM_HOME``).
    lang : str
        ``"en"`` or ``"zh_CN"`` labels.

    Returns
    -------
    DataFrame
        See :func:`distribution_core`; plus ``suppressed``. ``attrs``: ``title``, ``as_of``.
    """
    if by not in ("economic_nature", "enterprise_form", "industry"):
        raise ValueError(f"by must be economic_nature, enterprise_form or industry, not {by!r}")
    return _distribution(principal, as_of, by, home=home, lang=lang, customer_type="C")


def individual_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: Literal["age", "education", "monthly_income", "occupation", "sex"] = "age",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Individual customers by age band, education or monthly income band (the dimensions' buckets).

    Parameters and return as :func:`corporate_customers`.
    """
    if by not in ("age", "education", "monthly_income", "occupation", "sex"):
        raise ValueError(f"by must be age, education, monthly_income, occupation or sex, not {by!r}")
    return _distribution(principal, as_of, by, home=home, lang=lang, customer_type="I")


def deposit_loan_totals(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: Literal["customer_type", "county", "branch"] = "customer_type",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Deposit (balance and ADB), AUM and loan totals by customer type, county bank or branch.

    Parameters and return as :func:`corporate_customers` (all customer types).
    """
    if by not in ("customer_type", "county", "branch"):
        raise ValueError(f"by must be customer_type, county or branch, not {by!r}")
    title = {"en": "Deposit and loan totals", "zh": "存贷款总量"}
    return _distribution(principal, as_of, by, home=home, lang=lang, title=title)


def transaction_distribution(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: Literal["txn_count", "txn_amount"] = "txn_count",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Customers by the month's transaction count or amount band.

    Parameters and return as :func:`corporate_customers` (all customer types).
    """
    if by not in ("txn_count", "txn_amount"):
        raise ValueError(f"by must be txn_count or txn_amount, not {by!r}")
    return _distribution(principal, as_of, by, home=home, lang=lang)


def credit_line_amounts(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Customers with an active credit line by line-amount bucket (``credit_line_amount`` dimension).

    Parameters and return as :func:`corporate_customers`, limited to customers with a line.
    """
    title = {"en": "Credit line amount", "zh": "授信额度分布"}
    return _distribution(
        principal,
        as_of,
        "credit_line_amount",
        home=home,
        lang=lang,
        where="s.credit_line_amount > 0",
        title=title,
    )


# ------------------------------------------------------------------------------------------ credit lines
def credit_utilisation_core(
    con: Any, as_of: dt.date, params: CreditLineParams, *, scope: Scope = ALL, lang: str = "en"
) -> pd.DataFrame:
    """Customers with an active line by utilisation band (drawn / line over their active lines).

    Returns
    -------
    DataFrame
        ``band, label, customers, customer_share, credit_line_amount, credit_line_amount_share,
        credit_line_used, credit_line_used_share, utilisation`` (drawn / line of the band).
    """
    base, sp = _scoped_base(scope)
    bands = params.utilisation_bands
    whens = " ".join(f"WHEN u < {b.max!r} THEN '{b.id}'" for b in bands[:-1])
    sql = (
        f"SELECT CASE {whens} ELSE '{bands[-1].id}' END AS band, count(*) AS customers, "
        "CAST(sum(line) AS DOUBLE) AS credit_line_amount, CAST(sum(used) AS DOUBLE) AS credit_line_used "
        "FROM (SELECT s.credit_line_amount AS line, s.credit_line_used AS used, "
        f"CAST(s.credit_line_used AS DOUBLE) / CAST(s.credit_line_amount AS DOUBLE) AS u FROM ({base}) AS s "
        "WHERE s.credit_line_amount > 0) GROUP BY 1"
    )
    df = _query(con, sql, {**sp, "as_of": as_of})
    df = _order(df, [(b.id, b.label) for b in bands], key="band")
    df["customers"] = df["customers"].astype("int64")
    df.insert(1, "label", [_pick(b.label, lang) for b in bands])
    _shares(df, ["customers", "credit_line_amount", "credit_line_used"])
    df["utilisation"] = df["credit_line_used"] / df["credit_line_amount"].where(df["credit_line_amount"] > 0)
    return df[
        [
            "band",
            "label",
            "customers",
            "customer_share",
            "credit_line_amount",
            "credit_line_amount_share",
            "credit_line_used",
            "credit_line_used_share",
            "utilisation",
        ]
    ]


def credit_line_utilisation(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Credit-line customers by utilisation band (``parameters/analyses.yaml``).

    Parameters as :func:`corporate_customers`; returns :func:`credit_utilisation_core`'s frame plus
    ``suppressed``.
    """
    p = _params(home).credit_line
    with _reading(principal, as_of, home) as (con, date, scope):
        df = credit_utilisation_core(con, date, p, scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Credit line utilisation", "zh": "授信使用率"}, lang, as_of=date)


def _expiry_labels(days: Sequence[int]) -> list[tuple[str, dict[str, str]]]:
    out = [(f"E{days[0]}", {"en": f"Within {days[0]} days", "zh": f"{days[0]}天内"})]
    for a, b in itertools.pairwise(days):
        out.append((f"E{b}", {"en": f"{a + 1}-{b} days", "zh": f"{a + 1}-{b}天"}))
    out.append(("LATER", {"en": f"Over {days[-1]} days", "zh": f"{days[-1]}天以上"}))
    return out


def credit_expiry_core(
    con: Any, as_of: dt.date, params: CreditLineParams, *, scope: Scope = ALL, lang: str = "en"
) -> pd.DataFrame:
    """Active credit lines by days to expiry (a line already past its expiry date is in the first band).

    Returns
    -------
    DataFrame
        ``band, label, lines, line_share, customers`` (distinct holders: a customer may be in several
        bands), ``line_amount, line_amount_share, used_amount``.
    """
    join, sp = _scope_join(scope, "c")
    days = params.expiry_days
    members = _expiry_labels(days)
    whens = " ".join(f"WHEN left_days <= {d} THEN '{m}'" for d, (m, _) in zip(days, members, strict=False))
    sql = (
        f"SELECT CASE {whens} ELSE 'LATER' END AS band, count(*) AS lines, "
        "count(DISTINCT customer_id) AS customers, CAST(sum(line_amount) AS DOUBLE) AS line_amount, "
        "CAST(sum(used_amount) AS DOUBLE) AS used_amount FROM ("
        "SELECT c.customer_id, c.line_amount, c.used_amount, "
        "date_diff('day', $as_of, c.expiry_date) AS left_days "
        f"FROM core_credit_line_month AS c {join} "
        "WHERE c.as_of_date = $as_of AND c.status = 'ACTIVE') GROUP BY 1"
    )
    df = _order(_query(con, sql, {**sp, "as_of": as_of}), members, key="band")
    for c in ("lines", "customers"):
        df[c] = df[c].astype("int64")
    df.insert(1, "label", [_pick(lab, lang) for _, lab in members])
    _shares(df, ["lines", "line_amount"])
    return df[
        [
            "band",
            "label",
            "lines",
            "lines_share",
            "customers",
            "line_amount",
            "line_amount_share",
            "used_amount",
        ]
    ].rename(columns={"lines_share": "line_share"})


def credit_line_expiry(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Active credit lines by days to expiry (windows of ``parameters/analyses.yaml``).

    Parameters as :func:`corporate_customers`; returns :func:`credit_expiry_core`'s frame plus
    ``suppressed`` (by distinct customers).
    """
    p = _params(home).credit_line
    with _reading(principal, as_of, home) as (con, date, scope):
        df = credit_expiry_core(con, date, p, scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Credit lines expiring", "zh": "授信到期分布"}, lang, as_of=date)


# ------------------------------------------------------------------------------------------------- loans
def loan_quality_core(
    con: Any, as_of: dt.date, rates: ProvisionRates, *, scope: Scope = ALL, lang: str = "en"
) -> pd.DataFrame:
    """Loans by five-tier class: balance, NPL flag, provisions, and customers by their worst class.

    Loans are those not written off with a balance at ``as_of`` (the mart's ``loan_balance``).

    Returns
    -------
    DataFrame
        ``five_class, label, npl, customers`` (by worst class), ``customer_share, loans, balance,
        balance_share, provision_rate, provision``. ``attrs["summary"]``: ``loan_balance, npl_balance,
        npl_ratio`` (NPL / loans), ``provisions`` and ``provision_coverage`` (provisions / NPL balance,
        NaN without NPL).
    """
    join, sp = _scope_join(scope, "l")
    sql = (
        "WITH l AS (SELECT l.customer_id, l.five_class, f.rank, f.npl, l.balance "
        f"FROM core_loan_month AS l {join} JOIN ref_five_class AS f ON f.code = l.five_class "
        "WHERE l.as_of_date = $as_of AND l.status <> 'WRITTEN_OFF' AND l.balance > 0), "
        "w AS (SELECT customer_id, arg_max(five_class, rank) AS worst FROM l GROUP BY 1), "
        "b AS (SELECT five_class, count(*) AS loans, CAST(sum(balance) AS DOUBLE) AS balance "
        "FROM l GROUP BY 1), "
        "c AS (SELECT worst AS five_class, count(*) AS customers FROM w GROUP BY 1) "
        "SELECT f.code AS five_class, f.npl, coalesce(c.customers, 0) AS customers, "
        "coalesce(b.loans, 0) AS loans, coalesce(b.balance, 0) AS balance "
        "FROM ref_five_class AS f LEFT JOIN b ON b.five_class = f.code LEFT JOIN c ON c.five_class = f.code "
        "ORDER BY f.rank"
    )
    df = _query(con, sql, {**sp, "as_of": as_of})
    for c in ("customers", "loans"):
        df[c] = df[c].astype("int64")
    df.insert(1, "label", [code_label("five_class", c, _ui(lang)) for c in df["five_class"]])
    _shares(df, ["customers", "balance"])
    df["provision_rate"] = [float(getattr(rates, c, 0.0)) for c in df["five_class"]]
    df["provision"] = df["balance"] * df["provision_rate"]
    total = float(df["balance"].sum())
    npl = float(df.loc[df["npl"], "balance"].sum())
    prov = float(df["provision"].sum())
    df = df[
        [
            "five_class",
            "label",
            "npl",
            "customers",
            "customer_share",
            "loans",
            "balance",
            "balance_share",
            "provision_rate",
            "provision",
        ]
    ]
    df.attrs["summary"] = {
        "loan_balance": total,
        "npl_balance": npl,
        "npl_ratio": npl / total if total else math.nan,
        "provisions": prov,
        "provision_coverage": prov / npl if npl else math.nan,
    }
    return df


def loan_quality(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Loan quality: five-tier balances, NPL ratio, provisions by class and provision coverage.

    Parameters as :func:`corporate_customers`; provision rates from ``parameters/analyses.yaml``.

    Returns
    -------
    DataFrame
        :func:`loan_quality_core`'s frame plus ``suppressed``; ``attrs["summary"]`` the bank-level
        figures (never suppressed: they are totals of the whole scope).
    """
    rates = _params(home).provision_rates
    with _reading(principal, as_of, home) as (con, date, scope):
        df = loan_quality_core(con, date, rates, scope=scope, lang=lang)
    summary = dict(df.attrs["summary"])
    npl_customers = int(df.loc[df["npl"], "customers"].sum())
    if not principal.can_view_detail and 0 < npl_customers < int(getattr(principal, "min_cell", 5) or 5):
        # a few NPL customers: their total would identify them
        summary.update(
            npl_balance=math.nan, npl_ratio=math.nan, provisions=math.nan, provision_coverage=math.nan
        )
    return _finish(
        df,
        principal,
        {"en": "Loan quality (five-tier)", "zh": "贷款五级分类"},
        lang,
        as_of=date,
        summary=summary,
    )


def loan_products_core(
    con: Any,
    as_of: dt.date,
    *,
    group: Literal["loan_form", "subtype"] = "loan_form",
    scope: Scope = ALL,
    lang: str = "en",
) -> pd.DataFrame:
    """Loans with a balance by loan form (担保方式) or by loan product subtype.

    Returns
    -------
    DataFrame
        ``code, label, loans, loan_share, customers`` (distinct holders; a customer may hold several),
        ``holder_rate`` (holders / loan customers), ``balance, balance_share``.
    """
    join, sp = _scope_join(scope, "l")
    key = "l.loan_form" if group == "loan_form" else "p.subtype"
    sql = (
        "WITH l AS (SELECT l.customer_id, l.balance, l.loan_form, p.subtype "
        f"FROM core_loan_month AS l {join} JOIN core_product AS p ON p.product_code = l.product_code "
        "WHERE l.as_of_date = $as_of AND l.status <> 'WRITTEN_OFF' AND l.balance > 0) "
        f"SELECT {key.split('.')[1]} AS code, count(*) AS loans, count(DISTINCT customer_id) AS customers, "
        "CAST(sum(balance) AS DOUBLE) AS balance, any_value(n) AS n FROM l, "
        "(SELECT count(DISTINCT customer_id) AS n FROM l) GROUP BY 1 ORDER BY balance DESC"
    )
    df = _query(con, sql, {**sp, "as_of": as_of})
    return _holdings(df, "loan_form" if group == "loan_form" else "product_subtype", lang, "loans")


def _holdings(df: pd.DataFrame, domain: str, lang: str, count: str) -> pd.DataFrame:
    n = float(df["n"].iloc[0]) if len(df) else 0.0
    for c in (count, "customers"):
        df[c] = df[c].astype("int64")
    df.insert(1, "label", [code_label(domain, c, _ui(lang)) for c in df["code"]])
    _shares(df, [count, "balance"])
    df["holder_rate"] = df["customers"] / n if n else 0.0
    share = "loan_share" if count == "loans" else "account_share"
    df = df.rename(columns={f"{count}_share": share})
    return df[["code", "label", count, share, "customers", "holder_rate", "balance", "balance_share"]]


def loan_forms(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Loans by form: credit, guarantee, mortgage, pledge (loans, holders, balance and shares).

    Parameters as :func:`corporate_customers`; returns :func:`loan_products_core`'s frame plus
    ``suppressed`` (by distinct holders).
    """
    with _reading(principal, as_of, home) as (con, date, scope):
        df = loan_products_core(con, date, group="loan_form", scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Loans by form", "zh": "贷款担保方式"}, lang, as_of=date)


def loan_product_holdings(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Loan product holdings: loans, holders and balances per loan product subtype.

    Parameters as :func:`corporate_customers`; returns :func:`loan_products_core`'s frame plus
    ``suppressed``.
    """
    with _reading(principal, as_of, home) as (con, date, scope):
        df = loan_products_core(con, date, group="subtype", scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Loan product holdings", "zh": "贷款产品持有"}, lang, as_of=date)


def deposit_products_core(con: Any, as_of: dt.date, *, scope: Scope = ALL, lang: str = "en") -> pd.DataFrame:
    """Open deposit accounts by product subtype (demand, time …).

    Returns
    -------
    DataFrame
        ``code, label, accounts, account_share, customers`` (distinct holders), ``holder_rate`` (holders /
        customers with an open deposit account), ``balance, balance_share``.
    """
    join, sp = _scope_join(scope, "a")
    sql = (
        "WITH a AS (SELECT a.customer_id, a.balance, p.subtype "
        f"FROM core_deposit_month AS a {join} JOIN core_product AS p ON p.product_code = a.product_code "
        "WHERE a.as_of_date = $as_of AND a.status <> 'CLOSED') "
        "SELECT subtype AS code, count(*) AS accounts, count(DISTINCT customer_id) AS customers, "
        "CAST(sum(balance) AS DOUBLE) AS balance, any_value(n) AS n FROM a, "
        "(SELECT count(DISTINCT customer_id) AS n FROM a) GROUP BY 1 ORDER BY balance DESC"
    )
    return _holdings(_query(con, sql, {**sp, "as_of": as_of}), "product_subtype", lang, "accounts")


def deposit_product_holdings(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Any = None, lang: str = "en"
) -> pd.DataFrame:
    """Deposit product holdings: accounts, holders and balances per deposit product subtype.

    Parameters as :func:`corporate_customers`; returns :func:`deposit_products_core`'s frame plus
    ``suppressed``.
    """
    with _reading(principal, as_of, home) as (con, date, scope):
        df = deposit_products_core(con, date, scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Deposit product holdings", "zh": "存款产品持有"}, lang, as_of=date)


# ---------------------------------------------------------------------------------------------- behaviour
#: The eight RFM segments: (R high, F high, M high) -> id and labels.
RFM_SEGMENTS: dict[tuple[bool, bool, bool], tuple[str, dict[str, str]]] = {
    (True, True, True): ("VALUE", {"en": "Important value", "zh": "重要价值客户"}),
    (False, True, True): ("RETAIN", {"en": "Important to retain", "zh": "重要保持客户"}),
    (True, False, True): ("DEVELOP", {"en": "Important to develop", "zh": "重要发展客户"}),
    (False, False, True): ("WIN_BACK", {"en": "Important to win back", "zh": "重要挽留客户"}),
    (True, True, False): ("G_VALUE", {"en": "General value", "zh": "一般价值客户"}),
    (False, True, False): ("G_RETAIN", {"en": "General retain", "zh": "一般保持客户"}),
    (True, False, False): ("G_DEVELOP", {"en": "General develop", "zh": "一般发展客户"}),
    (False, False, False): ("G_WIN_BACK", {"en": "General win back", "zh": "一般挽留客户"}),
}


def rfm_scores_core(con: Any, as_of: dt.date, params: RfmParams, *, scope: Scope = ALL) -> pd.DataFrame:
    """Each in-scope customer's R, F and M at ``as_of`` and their 1-5 quintile scores (within customer type).

    R = months from the last month with a customer-initiated transaction to ``as_of`` (0 = this month;
    never active in the warehouse's months before ``as_of``: the number of those months). F = customer-
    initiated transactions over the last ``frequency_months`` months. M = deposit ADB or AUM at ``as_of``.
    A score is ``ceil(5 * cume_dist)``: the share of the type's customers at or below the value, so
    tied values score alike and the best value scores 5; R is ranked descending (recent = 5).

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, recency, frequency, monetary, r_score, f_score, m_score``.
    """
    base, sp = _scoped_base(scope)
    mon = params.monetary
    sql = (
        f"WITH s AS ({base}), "
        "h AS (SELECT m.customer_id, "
        "  max(m.as_of_date) FILTER (WHERE m.customer_txn_count > 0) AS last_active, "
        "  count(DISTINCT m.as_of_date) AS months, "
        "  coalesce(sum(m.customer_txn_count) FILTER (WHERE m.as_of_date > $from), 0) AS freq "
        "  FROM mart_customer_month AS m "
        "  WHERE m.as_of_date <= $as_of AND m.customer_id IN (SELECT customer_id FROM s) "
        "  GROUP BY 1), "
        "x AS (SELECT s.customer_id, s.customer_type, "
        "  coalesce((year($as_of) * 12 + month($as_of)) - (year(h.last_active) * 12 + month(h.last_active)), "
        "           h.months) AS recency, "
        f"  CAST(h.freq AS BIGINT) AS frequency, CAST(s.{mon} AS DOUBLE) AS monetary "
        "  FROM s JOIN h ON h.customer_id = s.customer_id) "
        "SELECT *, "
        "  greatest(1, ceil(5 * cume_dist() OVER (PARTITION BY customer_type ORDER BY recency DESC)))::INT "
        "    AS r_score, "
        "  greatest(1, ceil(5 * cume_dist() OVER (PARTITION BY customer_type ORDER BY frequency)))::INT "
        "    AS f_score, "
        "  greatest(1, ceil(5 * cume_dist() OVER (PARTITION BY customer_type ORDER BY monetary)))::INT "
        "    AS m_score "
        "FROM x ORDER BY customer_id"
    )
    start = _month_end_back(as_of, params.frequency_months)
    return _query(con, sql, {**sp, "as_of": as_of, "from": start})


def _month_end_back(d: dt.date, n: int) -> dt.date:
    """The month-end ``n`` months before ``d``'s month."""
    idx = d.year * 12 + d.month - 1 - n
    y, m = divmod(idx, 12)
    return dt.date(y + (m == 11), (m + 1) % 12 + 1, 1) - dt.timedelta(days=1)


def rfm_segments_core(
    con: Any,
    as_of: dt.date,
    params: RfmParams,
    *,
    scope: Scope = ALL,
    customer_type: str | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The eight RFM segments (each score high at or above ``high_score``): customers and value.

    Returns
    -------
    DataFrame
        ``segment, label, customers, customer_share, monetary, monetary_share, avg_recency,
        avg_frequency``, in :data:`RFM_SEGMENTS` order.
    """
    s = rfm_scores_core(con, as_of, params, scope=scope)
    if customer_type:
        s = s[s["customer_type"] == customer_type]
    hi = params.high_score
    s = s.assign(
        segment=[
            RFM_SEGMENTS[(r >= hi, f >= hi, m >= hi)][0]
            for r, f, m in zip(s["r_score"], s["f_score"], s["m_score"], strict=False)
        ]
    )
    g = s.groupby("segment").agg(
        customers=("customer_id", "size"),
        monetary=("monetary", "sum"),
        avg_recency=("recency", "mean"),
        avg_frequency=("frequency", "mean"),
    )
    members = [(sid, lab) for sid, lab in RFM_SEGMENTS.values()]
    df = _order(g.reset_index(), members, key="segment")
    df["customers"] = df["customers"].astype("int64")
    df.insert(1, "label", [_pick(lab, lang) for _, lab in members])
    _shares(df, ["customers", "monetary"])
    return df[
        [
            "segment",
            "label",
            "customers",
            "customer_share",
            "monetary",
            "monetary_share",
            "avg_recency",
            "avg_frequency",
        ]
    ]


def rfm_segments(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    customer_type: Literal["I", "C"] | None = None,
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """RFM (DOMAIN.md): customers and value of the eight segments, scored by quintile within the scope.

    Parameters as :func:`corporate_customers`; ``customer_type`` limits the segments to one type (scores
    are always ranked within each type). Returns :func:`rfm_segments_core`'s frame plus ``suppressed``.
    """
    p = _params(home).rfm
    with _reading(principal, as_of, home) as (con, date, scope):
        df = rfm_segments_core(con, date, p, scope=scope, customer_type=customer_type, lang=lang)
    return _finish(
        df, principal, {"en": "RFM segments", "zh": "RFM客户分群"}, lang, as_of=date, monetary=p.monetary
    )


def channel_mix_core(
    con: Any, as_of: dt.date, dim: Dimension, *, scope: Scope = ALL, lang: str = "en"
) -> pd.DataFrame:
    """Customer-initiated transactions per channel within each member of ``dim`` (customer type, age band).

    The mart counts each customer channel's transactions (``txn_count_<channel>``; batch postings are on
    the SYSTEM channel, not counted here).

    Returns
    -------
    DataFrame
        Long: ``dimension, member, label, customers`` (of the member with a customer transaction),
        ``channel, channel_label, txn_count, share`` (of the member's transactions; sums to 1 per member).
    """
    base, sp = _scoped_base(scope)
    cols = ", ".join(f"CAST(sum(m.txn_count_{c.lower()}) AS BIGINT) AS {c}" for c in CHANNELS)
    total = " + ".join(f"m.txn_count_{c.lower()}" for c in CHANNELS)
    sql = (
        f"SELECT {dim.member_sql('s')} AS member, count(*) AS customers, {cols} FROM ({base}) AS s "
        "JOIN mart_customer_month AS m ON m.customer_id = s.customer_id AND m.as_of_date = s.as_of_date "
        f"WHERE s.customer_type IN ({', '.join(repr(t) for t in dim.applies)}) AND ({total}) > 0 GROUP BY 1"
    )
    wide = _query(con, sql, {**sp, "as_of": as_of})
    wide = _order(wide, dim.members)
    long = wide.melt(
        id_vars=["member", "customers"], value_vars=list(CHANNELS), var_name="channel", value_name="txn_count"
    )
    long["txn_count"] = long["txn_count"].astype("int64")
    long["customers"] = long["customers"].astype("int64")
    tot = long.groupby("member")["txn_count"].transform("sum")
    long["share"] = (long["txn_count"] / tot.where(tot > 0)).fillna(0.0)
    rank = {m: i for i, (m, _) in enumerate(dim.members)}
    long["_o"] = long["member"].map(lambda v: rank.get(v, len(rank)))
    long["_c"] = long["channel"].map(CHANNELS.index)
    long = long.sort_values(["_o", "member", "_c"], ignore_index=True).drop(columns=["_o", "_c"])
    long.insert(0, "dimension", dim.id)
    long.insert(2, "label", [dim.label_of(m, lang) for m in long["member"]])
    long["channel_label"] = [code_label("channel", c, _ui(lang)) for c in long["channel"]]
    return long[
        ["dimension", "member", "label", "customers", "channel", "channel_label", "txn_count", "share"]
    ]


def channel_preference(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: Literal["customer_type", "age"] = "customer_type",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The channel-preference mix: each channel's share of customer-initiated transactions per group.

    Parameters as :func:`corporate_customers`; returns :func:`channel_mix_core`'s frame plus
    ``suppressed`` (by the group's active customers).
    """
    if by not in ("customer_type", "age"):
        raise ValueError(f"by must be customer_type or age, not {by!r}")
    dim = _dims(home)[by]
    with _reading(principal, as_of, home) as (con, date, scope):
        df = channel_mix_core(con, date, dim, scope=scope, lang=lang)
    return _finish(df, principal, {"en": "Channel preference", "zh": "渠道偏好"}, lang, as_of=date)


def pos_spending_core(
    con: Any, as_of: dt.date, dim: Dimension, *, scope: Scope = ALL, lang: str = "en"
) -> pd.DataFrame:
    """POS spending per merchant category (MCC) within each member of ``dim``: consumption propensity.

    Reads ``mart_pos_mcc_month`` (card debits at merchants per customer, month and MCC).

    Returns
    -------
    DataFrame
        Long: ``dimension, member, label, customers`` (of the member with POS spending), ``mcc,
        mcc_label, pos_count, pos_amount, share`` (of the member's POS amount; sums to 1 per member).
    """
    base, sp = _scoped_base(scope)
    sql = (
        f"SELECT {dim.member_sql('s')} AS member, p.mcc, count(DISTINCT p.customer_id) AS customers, "
        "CAST(sum(p.pos_count) AS BIGINT) AS pos_count, CAST(sum(p.pos_amount) AS DOUBLE) AS pos_amount "
        f"FROM ({base}) AS s JOIN mart_pos_mcc_month AS p ON p.customer_id = s.customer_id "
        "AND p.as_of_date = s.as_of_date "
        f"WHERE s.customer_type IN ({', '.join(repr(t) for t in dim.applies)}) GROUP BY 1, 2"
    )
    df = _query(con, sql, {**sp, "as_of": as_of})
    per_member = _query(
        con,
        f"SELECT {dim.member_sql('s')} AS member, count(DISTINCT p.customer_id) AS spenders "
        f"FROM ({base}) AS s JOIN mart_pos_mcc_month AS p ON p.customer_id = s.customer_id "
        "AND p.as_of_date = s.as_of_date "
        f"WHERE s.customer_type IN ({', '.join(repr(t) for t in dim.applies)}) GROUP BY 1",
        {**sp, "as_of": as_of},
    )
    spenders = dict(zip(per_member["member"], per_member["spenders"], strict=True))
    tot = df.groupby("member")["pos_amount"].transform("sum")
    df["share"] = (df["pos_amount"] / tot.where(tot > 0)).fillna(0.0)
    df["customers"] = [int(spenders.get(m, 0)) for m in df["member"]]
    rank = {m: i for i, (m, _) in enumerate(dim.members)}
    df["_o"] = df["member"].map(lambda v: rank.get(v, len(rank)))
    df = df.sort_values(["_o", "member", "mcc"], ignore_index=True).drop(columns="_o")
    df.insert(0, "dimension", dim.id)
    df.insert(2, "label", [dim.label_of(m, lang) for m in df["member"]])
    df["mcc_label"] = [code_label("mcc", c, _ui(lang)) for c in df["mcc"]]
    return df[
        ["dimension", "member", "label", "customers", "mcc", "mcc_label", "pos_count", "pos_amount", "share"]
    ]


def pos_spending(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    by: str = "age",
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Consumption propensity: POS spending by merchant category, per segment (any dimension ``by``).

    Parameters as :func:`corporate_customers`; returns :func:`pos_spending_core`'s frame plus
    ``suppressed`` (by the segment's customers with POS spending).
    """
    dim = _dims(home)[by]
    with _reading(principal, as_of, home) as (con, date, scope):
        df = pos_spending_core(con, date, dim, scope=scope, lang=lang)
    return _finish(df, principal, {"en": "POS spending by merchant category", "zh": "分商户类别消费"}, lang,
                   as_of=date)  # fmt: skip


def pos_spending_chart(frame: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """A 100% stacked bar per segment of :func:`pos_spending`: each merchant category's share of spending."""
    data = frame.rename(columns={"mcc_label": "channel_label", "pos_count": "txn_count"})
    return channel_mix_chart(data, lang, title=str(frame.attrs.get("title", "")))


# ------------------------------------------------------------------------------------------------ charts
_VALUE_TITLES: dict[str, dict[str, str]] = {
    "customers": {"en": "Customers", "zh": "客户数"},
    "lines": {"en": "Credit lines", "zh": "授信笔数"},
    "loans": {"en": "Loans", "zh": "贷款笔数"},
    "accounts": {"en": "Accounts", "zh": "账户数"},
    "txn_count": {"en": "Transactions", "zh": "交易笔数"},
}


def distribution_chart(
    frame: pd.DataFrame,
    lang: str = "en",
    *,
    value: str = "customers",
    label_col: str = "label",
    share_col: str | None = None,
    title: str | None = None,
) -> alt.Chart:
    """A bar chart of any analysis' groups: one bar per group in the frame's order.

    Parameters
    ----------
    frame : DataFrame
        An analysis' result (``label`` plus the value column).
    lang : str
        ``"zh_CN"`` (amounts in 万元) or ``"en"`` (yuan).
    value : str
        The column drawn: a count (``customers``, ``loans`` …) or an amount in yuan (``deposit_adb``,
        ``balance`` …).
    label_col : str
        The group label column.
    share_col : str, optional
        The share shown in the tooltip (default ``customer_share`` for customers, ``<value>_share``).
    title : str, optional
        Default the frame's ``attrs["title"]``.

    Returns
    -------
    altair.Chart
        Data ``group, value, share, suppressed``; y = group (in order), x = value (quantitative).
    """
    ui = _ui(lang)
    count = value in _VALUE_TITLES
    share_col = share_col or ("customer_share" if value == "customers" else f"{value}_share")
    n = len(frame)
    data = pd.DataFrame(
        {
            "group": frame[label_col].astype(str).to_numpy() if n else pd.Series([], dtype=str),
            "value": (
                pd.to_numeric(frame[value], errors="coerce").fillna(0.0).to_numpy()
                if count
                else _money(frame[value], ui).to_numpy()
            )
            if n
            else pd.Series([], dtype=float),
            "share": (
                pd.to_numeric(frame[share_col], errors="coerce").to_numpy()
                if n and share_col in frame.columns
                else [math.nan] * n
            ),
            "suppressed": (
                frame["suppressed"].astype(bool).to_numpy()
                if n and "suppressed" in frame.columns
                else [False] * n
            ),
        }
    )
    if count:
        x_title, fmt = _pick(_VALUE_TITLES[value], lang), ",d"
    else:
        x_title, fmt = f"{_amount_title(value, lang)} ({money_unit(ui)})", _money_format(ui)
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None, sort=list(data["group"])),
            x=alt.X("value:Q", title=x_title, axis=alt.Axis(format=fmt)),
            color=alt.condition("datum.suppressed", alt.value("#bbbbbb"), alt.value("#4c78a8")),
            tooltip=[
                alt.Tooltip("group:N"),
                alt.Tooltip("value:Q", format=fmt),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
    )
    return _style(chart, title if title is not None else str(frame.attrs.get("title", "")))


_AMOUNTS: dict[str, dict[str, str]] = {
    "deposit_adb": {"en": "Deposit ADB", "zh": "存款日均"},
    "deposit_balance": {"en": "Deposit balance", "zh": "存款余额"},
    "aum": {"en": "AUM", "zh": "金融资产"},
    "loan_balance": {"en": "Loan balance", "zh": "贷款余额"},
    "npl_balance": {"en": "NPL balance", "zh": "不良贷款余额"},
    "balance": {"en": "Balance", "zh": "余额"},
    "provision": {"en": "Provisions", "zh": "拨备"},
    "credit_line_amount": {"en": "Credit line", "zh": "授信额度"},
    "line_amount": {"en": "Credit line", "zh": "授信额度"},
    "monetary": {"en": "Value (M)", "zh": "价值(M)"},
    "txn_amount": {"en": "Transaction amount", "zh": "交易金额"},
}


def _amount_title(value: str, lang: str) -> str:
    lab = _AMOUNTS.get(value)
    return _pick(lab, lang) if lab else value


def channel_mix_chart(frame: pd.DataFrame, lang: str = "en", *, title: str | None = None) -> alt.Chart:
    """A 100% stacked bar per group of :func:`channel_preference`: each channel's share.

    Returns
    -------
    altair.Chart
        Data ``group, channel, share, txn_count``; y = group, x = share (stacked, normalised),
        color = channel.
    """
    n = len(frame)
    data = pd.DataFrame(
        {
            "group": frame["label"].astype(str).to_numpy() if n else pd.Series([], dtype=str),
            "channel": frame["channel_label"].astype(str).to_numpy() if n else pd.Series([], dtype=str),
            "share": pd.to_numeric(frame["share"], errors="coerce").to_numpy()
            if n
            else pd.Series([], dtype=float),
            "txn_count": (
                pd.to_numeric(frame["txn_count"], errors="coerce").to_numpy()
                if n
                else pd.Series([], dtype=float)
            ),
        }
    )
    order = list(dict.fromkeys(data["channel"]))
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", title=None, sort=list(dict.fromkeys(data["group"]))),
            x=alt.X(
                "share:Q",
                stack="normalize",
                title=_pick({"en": "Share of transactions", "zh": "交易占比"}, lang),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("channel:N", title=None, sort=order, legend=alt.Legend(orient="bottom")),
            order=alt.Order("channel_order:Q"),
            tooltip=[
                alt.Tooltip("group:N"),
                alt.Tooltip("channel:N"),
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("txn_count:Q", format=",d"),
            ],
        )
        .transform_calculate(channel_order=f"indexof({order!r}, datum.channel)")
    )
    return _style(chart, title if title is not None else str(frame.attrs.get("title", "")))
