"""Contribution per customer and month (贡献度) by funds transfer pricing (FTP).

contribution = deposit NII + loan NII + fee income - allocated operating cost
               (- expected loss when ``expected_loss.include_expected_loss`` is true)

* deposit NII = accumulated balance (积数) x (FTP rate - customer rate) / 365, per account;
* loan NII = accumulated balance x (customer rate - FTP rate) / 365, per loan, with FTP = LPR + spread;
* fee income = the month's FEE debits (``mart_fee_month``);
* operating cost = open deposit accounts x cost + active loans x cost + transactions x cost by channel;
* expected loss = accumulated loan balance x the annual loss rate of the loan's five-tier class / 365.

Monthly amounts use actual/365: the accumulated balance is ADB x days in the month, so each amount is
``annual rate x ADB x days / 365`` (not ``/ 12``), the convention Chinese banks accrue interest with.
Every component is rounded to the fen per customer and product, and the customer's figures are the sums of
its product rows, so the breakdown always adds up exactly. Fee income and transaction costs belong to no
product: they are the customer's row with ``product_code`` NULL.

Every parameter enters the SQL as a number that Python formats from the validated model; the month is the
DuckDB named parameter ``$as_of`` (a DATE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access import NotPermitted, Principal, named_scope, require_detail
from cimlib.access._yamlfile import YamlProblem, key_of, load_yaml_model, problem
from cimlib.config import Home, get_home
from cimlib.customer import _data as D

#: The columns of :func:`contribution_sql` (and, after ``customer_id, product_code, subtype``, of
#: :func:`contribution_by_product_sql`).
COMPONENTS = ("deposit_nii", "loan_nii", "fee_income", "operating_cost", "expected_loss", "contribution")
CHANNELS = ("COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE", "SYSTEM")
LOAN_SUBTYPES = ("CONSUMER", "BUSINESS", "MORTGAGE", "AGRI", "CORPORATE")
FIVE_CLASSES = ("NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS")

class ValueParamsError(ValueError):
    """``parameters/value.yaml`` is invalid (the message names the file, the key and the line)."""


def _rate(lo: float = 0.0, hi: float = 0.36) -> Any:
    return Field(ge=lo, le=hi, allow_inf_nan=False)


class TermRate(BaseModel):
    """One point of the time-deposit FTP curve: terms up to ``max_term_months`` take ``rate``."""

    model_config = ConfigDict(extra="forbid")
    max_term_months: int = Field(ge=0, le=360)
    rate: float = _rate()


class DepositFtp(BaseModel):
    """Deposit FTP rates (annual fractions) by product subtype; time deposits by term."""

    model_config = ConfigDict(extra="forbid")
    DEMAND: float = _rate()
    TIME: list[TermRate] = Field(min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> DepositFtp:
        terms = [p.max_term_months for p in self.TIME]
        if terms != sorted(set(terms)):
            raise ValueError("TIME rows must be in strictly ascending max_term_months")
        return self


class LoanSpreads(BaseModel):
    """Spread over the LPR by loan product subtype (annual fraction, may be negative)."""

    model_config = ConfigDict(extra="forbid")
    CONSUMER: float = _rate(-0.1, 0.1)
    BUSINESS: float = _rate(-0.1, 0.1)
    MORTGAGE: float = _rate(-0.1, 0.1)
    AGRI: float = _rate(-0.1, 0.1)
    CORPORATE: float = _rate(-0.1, 0.1)
    OTHER: float = _rate(-0.1, 0.1)


class LoanFtp(BaseModel):
    """Loan FTP = LPR (1-year, or 5-year for original terms over 60 months) + spread."""

    model_config = ConfigDict(extra="forbid")
    lpr_1y: float = _rate(0.0, 0.2)
    lpr_5y: float = _rate(0.0, 0.2)
    spread: LoanSpreads


def _cost() -> Any:
    return Field(ge=0, le=100_000, allow_inf_nan=False)


class ChannelCosts(BaseModel):
    """Cost per transaction by channel (yuan)."""

    model_config = ConfigDict(extra="forbid")
    COUNTER: float = _cost()
    ATM: float = _cost()
    POS: float = _cost()
    PHONE: float = _cost()
    ONLINE: float = _cost()
    MOBILE: float = _cost()
    SYSTEM: float = _cost()


class OperatingCost(BaseModel):
    """Operating cost allocation (yuan)."""

    model_config = ConfigDict(extra="forbid")
    per_deposit_account_month: float = _cost()
    per_loan_month: float = _cost()
    per_transaction: ChannelCosts


class LossRates(BaseModel):
    """Annual expected-loss rate by five-tier class (fractions of the balance)."""

    model_config = ConfigDict(extra="forbid")
    NORMAL: float = _rate(0.0, 1.0)
    SPECIAL_MENTION: float = _rate(0.0, 1.0)
    SUBSTANDARD: float = _rate(0.0, 1.0)
    DOUBTFUL: float = _rate(0.0, 1.0)
    LOSS: float = _rate(0.0, 1.0)


class ExpectedLoss(BaseModel):
    """Expected loss: always reported; subtracted from the contribution only when included."""

    model_config = ConfigDict(extra="forbid")
    include_expected_loss: bool = False
    rates: LossRates


# ------------------------------------------------------------------------ tiers, quality, potential, RFM
_ID = r"^[A-Za-z][A-Za-z0-9_]{0,23}$"
_MONEY_MAX = 1e13


def _label() -> Any:
    return Field(min_length=1, max_length=60)


def _ascending(edges: Sequence[float], what: str) -> None:
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"{what} must be strictly ascending, got {list(edges)}")


class TierDef(BaseModel):
    """One tier: an id (used by quality rules and in outputs) and its names."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    en: str = _label()
    zh: str = _label()


def _tier_list(tiers: list[TierDef], n_edges: int, what: str) -> None:
    ids = [t.id for t in tiers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: tier ids must be unique, got {ids}")
    if len(tiers) != n_edges + 1:
        raise ValueError(f"{what}: {n_edges} edges make {n_edges + 1} tiers, but {len(tiers)} are named")


class AumTiers(BaseModel):
    """AUM tiers: ``tiers[k]`` holds customers with ``edges[k-1] <= measure < edges[k]`` (yuan)."""

    model_config = ConfigDict(extra="forbid")
    measure: Literal["aum_adb", "aum"] = "aum_adb"
    edges: list[Annotated[float, Field(ge=0, le=_MONEY_MAX, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=20
    )
    tiers: list[TierDef]

    @model_validator(mode="after")
    def _check(self) -> AumTiers:
        _ascending(self.edges, "edges")
        _tier_list(self.tiers, len(self.edges), "tiers")
        return self


_CONTRIB_EDGE = Annotated[float, Field(ge=-_MONEY_MAX, le=_MONEY_MAX, allow_inf_nan=False)]


class ContributionTiers(BaseModel):
    """Contribution tiers on the month's contribution (yuan), with separate edges by customer type."""

    model_config = ConfigDict(extra="forbid")
    edges_individual: list[_CONTRIB_EDGE] = Field(min_length=1, max_length=20)
    edges_corporate: list[_CONTRIB_EDGE] = Field(min_length=1, max_length=20)
    tiers: list[TierDef]

    @model_validator(mode="after")
    def _check(self) -> ContributionTiers:
        _ascending(self.edges_individual, "edges_individual")
        _ascending(self.edges_corporate, "edges_corporate")
        if len(self.edges_individual) != len(self.edges_corporate):
            raise ValueError("edges_individual and edges_corporate must have as many edges (same tiers)")
        _tier_list(self.tiers, len(self.edges_individual), "tiers")
        return self

    def edges(self, customer_type: str) -> list[float]:
        """The edges of ``customer_type`` (``I`` or ``C``)."""
        return self.edges_individual if customer_type == "I" else self.edges_corporate


class Tiers(BaseModel):
    """``tiers:`` AUM tiers and contribution tiers."""

    model_config = ConfigDict(extra="forbid")
    aum: AumTiers
    contribution: ContributionTiers


class QualityRule(BaseModel):
    """One quality-customer rule: every condition given must hold (an absent condition is no condition)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    en: str = _label()
    zh: str = _label()
    customer_type: Literal["I", "C"]
    min_aum_tier: str | None = None
    min_contribution_tier: str | None = None
    min_products: int | None = Field(None, ge=1, le=100)
    min_tenure_months: int | None = Field(None, ge=0, le=1200)
    worst_loan_class: Literal["NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS"] | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> QualityRule:
        conds = (self.min_aum_tier, self.min_contribution_tier, self.min_products, self.min_tenure_months,
                 self.worst_loan_class)  # fmt: skip
        if all(c is None for c in conds):
            raise ValueError(f"rule {self.id} has no condition (it would make every customer quality)")
        return self


class Quality(BaseModel):
    """``quality:`` a customer is quality when any rule of its type holds (the first, in order, is kept)."""

    model_config = ConfigDict(extra="forbid")
    rules: list[QualityRule] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> Quality:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError(f"rule ids must be unique, got {ids}")
        return self


class PeerIndividual(BaseModel):
    """Peer groups of individuals: age band x monthly-income band (x occupation)."""

    model_config = ConfigDict(extra="forbid")
    age_edges: list[int] = Field(min_length=1, max_length=15)
    income_edges: list[Annotated[float, Field(ge=0, le=_MONEY_MAX, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=15
    )
    by_occupation: bool = True

    @model_validator(mode="after")
    def _check(self) -> PeerIndividual:
        if any(a < 0 or a > 120 for a in self.age_edges):
            raise ValueError("age_edges must be ages between 0 and 120")
        _ascending(self.age_edges, "age_edges")
        _ascending(self.income_edges, "income_edges")
        return self


class PeerCorporate(BaseModel):
    """Peer groups of corporates: registered-capital band (x industry)."""

    model_config = ConfigDict(extra="forbid")
    capital_edges: list[Annotated[float, Field(ge=0, le=_MONEY_MAX, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=15
    )
    by_industry: bool = True

    @model_validator(mode="after")
    def _check(self) -> PeerCorporate:
        _ascending(self.capital_edges, "capital_edges")
        return self


class ByType(BaseModel):
    """A tier id for individuals (``I``) and one for corporates (``C``)."""

    model_config = ConfigDict(extra="forbid")
    I: str = Field(pattern=_ID)  # noqa: E741
    C: str = Field(pattern=_ID)


class Potential(BaseModel):
    """``potential:`` potential quality customers by share of wallet against a peer-group benchmark."""

    model_config = ConfigDict(extra="forbid")
    measure: Literal["aum_adb", "contribution"] = "aum_adb"
    individual: PeerIndividual
    corporate: PeerCorporate
    min_group_size: int = Field(30, ge=10, le=1_000_000)
    benchmark_percentile: float = Field(0.75, ge=0.5, le=0.99, allow_inf_nan=False)
    max_share_of_wallet: float = Field(0.3, gt=0, lt=1, allow_inf_nan=False)
    min_benchmark_tier: ByType
    fallback_to_coarser: bool = True


ScoreRange = Annotated[list[Annotated[int, Field(ge=1, le=5)]], Field(min_length=2, max_length=2)]


class RfmSegment(BaseModel):
    """A named RFM segment: the score ranges ``[low, high]`` (inclusive) of R, F and M it takes."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    en: str = _label()
    zh: str = _label()
    r: ScoreRange = [1, 5]
    f: ScoreRange = [1, 5]
    m: ScoreRange = [1, 5]

    @model_validator(mode="after")
    def _ranges(self) -> RfmSegment:
        for k in ("r", "f", "m"):
            lo, hi = getattr(self, k)
            if lo > hi:
                raise ValueError(f"segment {self.id}: {k} range [{lo}, {hi}] is empty")
        return self

    def holds(self, r: int, f: int, m: int) -> bool:
        """Whether the scores ``(r, f, m)`` fall in this segment's ranges."""
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1] and self.m[0] <= m <= self.m[1]


class Rfm(BaseModel):
    """``rfm:`` the F window, the M measure, the ranking groups and the named segments (first match wins)."""

    model_config = ConfigDict(extra="forbid")
    frequency_months: int = Field(3, ge=1, le=24)
    monetary: Literal["deposit_adb", "aum_adb", "aum", "contribution"] = "aum_adb"
    score_within: Literal["customer_type", "bank"] = "customer_type"
    segments: list[RfmSegment] = Field(min_length=1, max_length=30)

    @model_validator(mode="after")
    def _cover(self) -> Rfm:
        ids = [s.id for s in self.segments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"segment ids must be unique, got {ids}")
        gaps = [
            f"{r}{f}{m}"
            for r, f, m in itertools.product(range(1, 6), repeat=3)
            if not any(s.holds(r, f, m) for s in self.segments)
        ]
        if gaps:
            raise ValueError(
                f"segments leave {len(gaps)} score patterns (RFM) in no segment, e.g. {', '.join(gaps[:5])}; "
                "end with a catch-all segment"
            )
        return self

    def segment_of(self, r: int, f: int, m: int) -> RfmSegment:
        """The first segment holding the scores."""
        return next(s for s in self.segments if s.holds(r, f, m))


class ValueParams(BaseModel):
    """``parameters/value.yaml``.

    ``tiers``, ``quality``, ``potential`` and ``rfm`` are optional so that a file with only the
    contribution sections stays valid; the services that need a section say so when it is missing.
    """

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    deposit_ftp: DepositFtp
    loan_ftp: LoanFtp
    operating_cost: OperatingCost
    expected_loss: ExpectedLoss
    tiers: Tiers | None = None
    quality: Quality | None = None
    potential: Potential | None = None
    rfm: Rfm | None = None

    def digest(self) -> str:
        """A short hash of every parameter (keys cached results such as the customer value frame)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def cross_problems(p: ValueParams) -> list[YamlProblem]:
    """Checks across sections: the tier ids quality rules and the potential benchmark refer to exist."""
    out: list[YamlProblem] = []
    refs = bool(p.quality and p.quality.rules) or p.potential is not None
    if refs and p.tiers is None:
        out.append(YamlProblem(("quality",) if p.quality else ("potential",),
                               "quality and potential need a tiers: section"))  # fmt: skip
        return out
    if p.tiers is None:
        return out
    aum_ids = [t.id for t in p.tiers.aum.tiers]
    con_ids = [t.id for t in p.tiers.contribution.tiers]
    for i, r in enumerate(p.quality.rules if p.quality else []):
        if r.min_aum_tier is not None and r.min_aum_tier not in aum_ids:
            out.append(YamlProblem(("quality", "rules", i, "min_aum_tier"),
                                   f"unknown AUM tier {r.min_aum_tier!r}; expected one of "
                                   f"{', '.join(aum_ids)}"))  # fmt: skip
        if r.min_contribution_tier is not None and r.min_contribution_tier not in con_ids:
            out.append(YamlProblem(("quality", "rules", i, "min_contribution_tier"),
                                   f"unknown contribution tier {r.min_contribution_tier!r}; expected one of "
                                   f"{', '.join(con_ids)}"))  # fmt: skip
    if p.potential is not None:
        ids = aum_ids if p.potential.measure == "aum_adb" else con_ids
        scale = "AUM" if p.potential.measure == "aum_adb" else "contribution"
        for typ in ("I", "C"):
            tid = getattr(p.potential.min_benchmark_tier, typ)
            loc = ("potential", "min_benchmark_tier", typ)
            if tid not in ids:
                out.append(YamlProblem(loc, f"unknown {scale} tier {tid!r} (the scale of measure "
                                            f"{p.potential.measure}); expected one of {', '.join(ids)}"))
            elif ids.index(tid) == 0:
                out.append(YamlProblem(loc, "the lowest tier has no lower edge: choose a tier the benchmark "
                                            "must reach"))  # fmt: skip
    return out


def check_value_params(p: ValueParams) -> ValueParams:
    """Raise :class:`ValueParamsError` for the first problem :func:`cross_problems` finds."""
    probs = cross_problems(p)
    if probs:
        raise ValueParamsError("; ".join(f"{key_of(x.loc)}: {x.message}" for x in probs))
    return p


def value_path(home: Home | str | Path | None = None) -> Path:
    """``parameters/value.yaml`` of the installation."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.parameters / "value.yaml"


def load_value_params(home: Home | str | Path | None = None, path: Path | None = None) -> ValueParams:
    """Load and validate ``parameters/value.yaml`` (or ``path``).

    Parameters
    ----------
    home : Home, str, Path or None
        The installation (``$CIM_HOME`` when None).
    path : Path, optional
        Another file to read instead.

    Returns
    -------
    ValueParams
        The validated parameters.

    Raises
    ------
    ValueParamsError
        Naming the file, the key, the line and the problem.
    """
    file = path or value_path(home)
    model, node = load_yaml_model(file, ValueParams, ValueParamsError)
    probs = cross_problems(model)
    if probs:
        raise problem(file, node, probs[0], ValueParamsError)
    return model


# ------------------------------------------------------------------------------------------------- SQL
def _num(x: float) -> str:
    """A validated number as an SQL DECIMAL literal (never free text)."""
    return f"{float(x):.10f}"


def _deposit_ftp_case(p: ValueParams) -> str:
    curve = p.deposit_ftp.TIME
    whens = " ".join(
        f"WHEN coalesce(d.term_months, 0) <= {int(t.max_term_months)} THEN {_num(t.rate)}" for t in curve
    )
    return (
        f"CASE WHEN d.account_type = 'DEMAND' THEN {_num(p.deposit_ftp.DEMAND)} "
        f"{whens} ELSE {_num(curve[-1].rate)} END"
    )


def _loan_ftp_case(p: ValueParams) -> str:
    s = p.loan_ftp.spread
    spread = " ".join(f"WHEN '{k}' THEN {_num(getattr(s, k))}" for k in LOAN_SUBTYPES)
    return (
        f"(CASE WHEN date_diff('month', l.start_date, l.maturity_date) > 60 THEN {_num(p.loan_ftp.lpr_5y)} "
        f"ELSE {_num(p.loan_ftp.lpr_1y)} END + CASE pr.subtype {spread} ELSE {_num(s.OTHER)} END)"
    )


def _loss_case(p: ValueParams) -> str:
    r = p.expected_loss.rates
    whens = " ".join(f"WHEN '{k}' THEN {_num(getattr(r, k))}" for k in FIVE_CLASSES)
    return f"CASE l.five_class {whens} ELSE {_num(r.LOSS)} END"


def _fen(expr: str) -> str:
    return f"CAST(round(CAST({expr} AS DOUBLE), 2) AS DECIMAL(18, 2))"


def contribution_by_product_sql(params: ValueParams) -> str:
    """SQL for one month's contribution per customer and product.

    Parameters
    ----------
    params : ValueParams
        The validated parameters (their numbers are formatted into the SQL).

    Returns
    -------
    str
        A query with the named parameter ``$as_of`` (DATE) over ``core_deposit_month``,
        ``core_loan_month``, ``core_product``, ``mart_fee_month`` and ``mart_customer_month``, giving
        ``customer_id, product_code, subtype, deposit_nii, loan_nii, fee_income, operating_cost,
        expected_loss, contribution`` (DECIMAL(18,2) yuan for the month). Fee income and transaction costs
        are the customer's row with ``product_code`` and ``subtype`` NULL.
    """
    oc = params.operating_cost
    txn_cost = " + ".join(
        f"coalesce(m.txn_count_{c.lower()}, 0) * {_num(getattr(oc.per_transaction, c))}" for c in CHANNELS
    )
    d_acc, l_acc = "CAST(d.accum_balance AS DOUBLE)", "CAST(l.accum_balance AS DOUBLE)"
    dep_nii = f"sum({d_acc} * ({_deposit_ftp_case(params)} - coalesce(d.rate, 0))) / 365"
    loan_nii = f"sum({l_acc} * (coalesce(l.rate, 0) - {_loan_ftp_case(params)})) / 365"
    loss = f"sum({l_acc} * {_loss_case(params)}) / 365"
    el_sign = "- expected_loss" if params.expected_loss.include_expected_loss else ""
    return f"""
WITH dep AS (
    SELECT d.customer_id, d.product_code, d.account_type AS subtype,
        {_fen(dep_nii)} AS deposit_nii,
        CAST(0 AS DECIMAL(18, 2)) AS loan_nii,
        CAST(0 AS DECIMAL(18, 2)) AS fee_income,
        {_fen(f"count(*) FILTER (WHERE d.status <> 'CLOSED') * {_num(oc.per_deposit_account_month)}")}
            AS operating_cost,
        CAST(0 AS DECIMAL(18, 2)) AS expected_loss
    FROM core_deposit_month AS d
    WHERE d.as_of_date = $as_of
    GROUP BY d.customer_id, d.product_code, d.account_type
),
loan AS (
    SELECT l.customer_id, l.product_code, any_value(pr.subtype) AS subtype,
        CAST(0 AS DECIMAL(18, 2)) AS deposit_nii,
        {_fen(loan_nii)} AS loan_nii,
        CAST(0 AS DECIMAL(18, 2)) AS fee_income,
        {_fen(f"count(*) FILTER (WHERE l.status = 'ACTIVE') * {_num(oc.per_loan_month)}")}
            AS operating_cost,
        {_fen(loss)} AS expected_loss
    FROM core_loan_month AS l
    LEFT JOIN core_product AS pr ON pr.product_code = l.product_code
    WHERE l.as_of_date = $as_of
    GROUP BY l.customer_id, l.product_code
),
cust AS (
    SELECT coalesce(m.customer_id, f.customer_id) AS customer_id,
        CAST(NULL AS VARCHAR) AS product_code, CAST(NULL AS VARCHAR) AS subtype,
        CAST(0 AS DECIMAL(18, 2)) AS deposit_nii,
        CAST(0 AS DECIMAL(18, 2)) AS loan_nii,
        CAST(coalesce(f.fee_amount, 0) AS DECIMAL(18, 2)) AS fee_income,
        {_fen(txn_cost)} AS operating_cost,
        CAST(0 AS DECIMAL(18, 2)) AS expected_loss
    FROM (SELECT * FROM mart_customer_month WHERE as_of_date = $as_of) AS m
    FULL JOIN (SELECT * FROM mart_fee_month WHERE as_of_date = $as_of) AS f ON f.customer_id = m.customer_id
),
parts AS (
    SELECT * FROM dep
    UNION ALL BY NAME SELECT * FROM loan
    UNION ALL BY NAME SELECT * FROM cust WHERE fee_income <> 0 OR operating_cost <> 0
)
SELECT customer_id, product_code, subtype, deposit_nii, loan_nii, fee_income, operating_cost, expected_loss,
    deposit_nii + loan_nii + fee_income - operating_cost {el_sign} AS contribution
FROM parts
"""


def contribution_sql(params: ValueParams) -> str:
    """SQL for one month's contribution per customer (the sums of :func:`contribution_by_product_sql`).

    Parameters
    ----------
    params : ValueParams
        The validated parameters.

    Returns
    -------
    str
        A query with the named parameter ``$as_of`` (DATE) giving one row per customer of
        ``mart_customer_month`` that month (and any customer with a product row):
        ``customer_id, deposit_nii, loan_nii, fee_income, operating_cost, expected_loss, contribution``
        (DECIMAL(18,2) yuan for the month; zeros for a customer with nothing).
    """
    sums = ",\n    ".join(f"CAST(coalesce(sum(p.{c}), 0) AS DECIMAL(18, 2)) AS {c}" for c in COMPONENTS)
    return f"""
WITH by_product AS ({contribution_by_product_sql(params)}),
who AS (
    SELECT customer_id FROM mart_customer_month WHERE as_of_date = $as_of
    UNION SELECT customer_id FROM by_product
)
SELECT w.customer_id,
    {sums}
FROM who AS w
LEFT JOIN by_product AS p ON p.customer_id = w.customer_id
GROUP BY w.customer_id
"""


# ------------------------------------------------------------------------------------------------ reading
def _run(principal: Principal, by_product: bool, as_of: str | dt.date | None, home: Any,
         extra: str = "", extra_params: dict[str, Any] | None = None) -> pd.DataFrame:
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    cond, named = named_scope(principal, "d", "scope")
    h = D.resolve_home(home)
    params = load_value_params(h)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    inner = contribution_by_product_sql(params) if by_product else contribution_sql(params)
    sql = (
        f"SELECT c.* FROM ({inner}) AS c JOIN dim_customer AS d ON d.customer_id = c.customer_id "
        f"WHERE ({cond}) {extra} ORDER BY c.customer_id"
        + (", c.subtype NULLS LAST, c.product_code NULLS LAST" if by_product else "")
    )
    with snap.all_cores() as con:
        df = con.sql(sql, params={"as_of": day, **named, **(extra_params or {})}).df()
    df.attrs.update(as_of=day.isoformat(), snapshot_id=snap.snapshot_id)
    return df


def contribution(
    principal: Principal, as_of: str | dt.date | None = None, *, home: Home | str | Path | None = None
) -> pd.DataFrame:
    """Contribution per customer for one month, within the principal's scope.

    Parameters
    ----------
    principal : Principal
        Who asks; rows are limited to their scope (no single-customer detail needed: this feeds
        aggregates such as tiers and 80/20).
    as_of : str, date or None
        The month (``YYYY-MM`` or a date); the latest when None.
    home : Home, str, Path or None
        The installation.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, deposit_nii, loan_nii, fee_income, operating_cost, expected_loss, contribution``
        (float yuan for the month, each rounded to the fen), sorted by customer; ``attrs`` hold ``as_of``
        and ``snapshot_id``.

    Raises
    ------
    NotPermitted
        When the role has no access to customer data.
    ValueParamsError
        When ``parameters/value.yaml`` is invalid.
    """
    return _run(principal, False, as_of, home)


def contribution_by_product(
    principal: Principal,
    customer_id: str | None = None,
    as_of: str | dt.date | None = None,
    *,
    home: Home | str | Path | None = None,
) -> pd.DataFrame:
    """Contribution per customer and product for one month (where a customer's value comes from).

    Parameters
    ----------
    principal : Principal
        Who asks; rows are limited to their scope. One customer's breakdown needs single-customer detail.
    customer_id : str, optional
        One customer; all customers in scope when None.
    as_of : str, date or None
        The month; the latest when None.
    home : Home, str, Path or None
        The installation.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, product_code, subtype, deposit_nii, loan_nii, fee_income, operating_cost,
        expected_loss, contribution``; fee income and transaction costs are the row with ``product_code``
        NULL. The rows of a customer add up to its :func:`contribution` row.

    Raises
    ------
    NotPermitted
        When the role has no access, or asks for one customer without single-customer detail.
    """
    if customer_id is not None:
        require_detail(principal)
        return _run(principal, True, as_of, home, "AND c.customer_id = $cid", {"cid": customer_id})
    return _run(principal, True, as_of, home)
