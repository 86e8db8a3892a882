"""Staff and branch performance (绩效分析): volume, results, quality, channels, cross-bank business, league
tables and attribution, for customer managers (客户经理), tellers (柜员) and branches (网点).

**Attribution (管户).** A customer manager's figures are time-weighted: each customer-month is split between
the managers who held the customer that month by ``weight = days held / days of the month``
(``mart_manager_share_month.days``; the mart's ``share`` is the same fraction rounded down to 6 decimals,
so the exact ``days`` are used to keep the sums exact). The days nobody held a customer make an explicit
**unassigned** row (``member_type = "UNASSIGNED"``, ``staff_no`` None) per branch, so that for every branch
and month *the managers' figures plus unassigned add up to the branch figure* (the sum over the branch's
customers, ``dim_customer.home_org_code``). A manager's ``customers`` is the time-weighted count (Σ weight);
``headcount`` counts each customer once, for the holder with the most days in the month (the unassigned
days count as a holder; ties go to a manager, then the lower staff number), so headcounts add up to the
branch's customers too. ``mart_manager_share_month`` does not say who held a customer on the last day, so
this is the month's *main* manager, not the strict month-end one.

**Measures.** Deposits gathered (揽储: ``deposit_adb``, ``deposit_balance``), loans (``loan_adb``,
``loan_balance``, ``npl_balance``), contribution (贡献度, the value issue's monthly contribution) and quality
customers (优质客户, the value issue's ``is_quality`` flag, ``parameters/value.yaml``), read from
``mart_customer_month`` and the cached customer-value frame of the month (:mod:`cimlib.value`). A teller's
volume is the counter transactions keyed under their teller number (``mart_channel_month.teller_no``), by
transaction type. A branch's volume is its customers'; its counter work and cross-bank business are those
of its tellers (the branch where the work was done; the account's branch when a counter transaction
carries no teller number); its channel mix is ``mart_channel_month`` by the account's branch.

**Cross-bank business (本代他).** Counter transactions whose counterparty is another bank
(``counterparty = 'OTHER'``). The source extracts only hold our own customers' accounts, so this is the
other-bank side of our customers' business (a transfer to or from another bank's card or customer keyed at
our counter), not transactions of other banks' customers with no account here.

**League tables.** Peers: the same county and role (staff), the same county (branches), *within the
viewer's scope* (a branch manager ranks their branch's staff among themselves: ranks never reveal members
the viewer cannot see). For each month: ``rank`` (1 = best; for NPL lower is better), ``percentile``
(share of the ranked peers at or below, 1 = top), ``zscore`` (against the ranked peers' mean and
population standard deviation) and the peer median. A member with fewer time-weighted customers than
``performance.min_customers_ranked`` (and, for a role without single-customer detail, fewer distinct
customers than its ``min_cell``) is listed but not ranked. Tellers have no customers and are all ranked.

**Scope.** A branch manager sees their branch's staff, a county manager their county's, the provincial
analyst every org but aggregates only (staff names masked unless the role unmasks ``name``; members with
fewer than ``min_cell`` customers blanked; no customer drill). A customer-manager role (scope ``managed``)
sees only its own row in :func:`manager_performance` (over the customers it currently manages) and is
refused the league tables, the teller and branch figures (they would reveal peers' figures).

**Drill.** :func:`performance_customers` lists the customers behind a manager's, a branch's or the
unassigned figure with each customer's weight (scoped, masked, audit-logged; needs single-customer detail).
Teller figures come from a mart without customer numbers and do not drill to customers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, Principal, mask_values
from cimlib.analysis._common import AnalysisContext, analysis_context, pick
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._params import CHANNELS
from cimlib.customer import _data as D
from cimlib.i18n import code_label
from cimlib.segmentation._analyses import suppress_small

Member = Literal["manager", "teller", "branch"]

#: Measure names (and whether higher is better in a league table).
MEASURES: dict[str, dict[str, str]] = {
    "customers": {"en": "Customers managed (time-weighted)", "zh": "管户客户数(时间加权)"},
    "headcount": {"en": "Customers (main manager)", "zh": "管户客户数(主管户)"},
    "customers_touched": {"en": "Distinct customers", "zh": "涉及客户数"},
    "deposit_adb": {"en": "Deposit ADB", "zh": "存款日均"},
    "deposit_balance": {"en": "Deposit balance", "zh": "存款余额"},
    "loan_adb": {"en": "Loan ADB", "zh": "贷款日均"},
    "loan_balance": {"en": "Loan balance", "zh": "贷款余额"},
    "npl_balance": {"en": "NPL balance", "zh": "不良贷款余额"},
    "npl_ratio": {"en": "NPL ratio", "zh": "不良贷款率"},
    "contribution": {"en": "Contribution", "zh": "贡献度"},
    "quality_customers": {"en": "Quality customers", "zh": "优质客户数"},
    "quality_share": {"en": "Quality customer share", "zh": "优质客户占比"},
    "counter_txn_count": {"en": "Counter transactions", "zh": "柜面交易笔数"},
    "counter_txn_amount": {"en": "Counter amount", "zh": "柜面交易金额"},
    "other_bank_txn_count": {"en": "Cross-bank counter transactions", "zh": "本代他交易笔数"},
    "other_bank_txn_amount": {"en": "Cross-bank counter amount", "zh": "本代他交易金额"},
    "other_bank_share": {"en": "Cross-bank share of counter transactions", "zh": "本代他笔数占比"},
    "txn_count": {"en": "Transactions", "zh": "交易笔数"},
    "txn_amount": {"en": "Transaction amount", "zh": "交易金额"},
    "txn_share": {"en": "Share of transactions", "zh": "笔数占比"},
}
#: League-table measures where lower is better.
LOWER_IS_BETTER = frozenset({"npl_balance", "npl_ratio"})
#: Customer-level amounts attributed by the time weight (also the drillable measures, with ``customers``).
AMOUNTS = ("deposit_adb", "deposit_balance", "loan_adb", "loan_balance", "npl_balance", "contribution",
           "quality_customers")  # fmt: skip
#: Measures a league table can rank, per member kind.
LEAGUE_MEASURES: dict[str, tuple[str, ...]] = {
    "manager": ("customers", "headcount", *AMOUNTS, "npl_ratio", "quality_share"),
    "branch": (
        "customers",
        *AMOUNTS,
        "npl_ratio",
        "quality_share",
        "counter_txn_count",
        "counter_txn_amount",
        "other_bank_txn_count",
        "other_bank_txn_amount",
    ),
    "teller": ("counter_txn_count", "counter_txn_amount", "other_bank_txn_count", "other_bank_txn_amount"),
}
_VALUE_MEASURES = frozenset({"contribution", "quality_customers", "quality_share"})
UNASSIGNED = {"en": "Unassigned", "zh": "未分配管户"}
_TITLES = {
    "manager": {"en": "Customer manager performance", "zh": "客户经理绩效"},
    "teller": {"en": "Teller performance", "zh": "柜员绩效"},
    "branch": {"en": "Branch performance", "zh": "网点绩效"},
    "channel": {"en": "Channel mix", "zh": "渠道结构"},
    "cross_bank": {"en": "Cross-bank counter business (本代他)", "zh": "本代他业务"},
    "league": {"en": "League table", "zh": "绩效排名"},
    "trend": {"en": "Rank over time", "zh": "排名走势"},
}


# ----------------------------------------------------------------------------------------------- helpers

def _attrs(df: pd.DataFrame, ctx: AnalysisContext, title: str, **more: Any) -> pd.DataFrame:
    df.attrs.update(title=pick(_TITLES[title], ctx.lang), as_of=ctx.day.isoformat(), org=ctx.org.code,
                    edition=ctx.edition, snapshot_id=ctx.snap.snapshot_id, **more)  # fmt: skip
    return df


def _refuse_managed(ctx: AnalysisContext, what: str) -> None:
    if ctx.principal.scope == "managed":
        raise NotPermitted(f"role {ctx.principal.role} sees its own figures only, not {what}")


def _value_source(ctx: AnalysisContext, dates: Sequence[dt.date]) -> str:
    """A relation ``(as_of_date, customer_id, contribution, is_quality)`` over the cached value frames."""
    from cimlib.value._tiers import _pq, value_params, value_table

    params = value_params(ctx.home)
    parts = [
        f"SELECT DATE '{d.isoformat()}' AS as_of_date, customer_id, CAST(contribution AS DOUBLE) AS "
        f"contribution, is_quality FROM {_pq(value_table(ctx.home, ctx.snap, params, d))}"
        for d in dates
    ]
    return " UNION ALL ".join(parts)


def _min_ranked(ctx: AnalysisContext) -> int:
    k = int(ctx.params.performance.min_customers_ranked)
    if not ctx.principal.can_view_detail:
        k = max(k, int(ctx.principal.min_cell or 5))
    return k


def _staff_label(principal: Principal, names: pd.Series, nos: pd.Series, lang: str) -> list[str]:
    masked = mask_values(principal, "name", names.tolist())
    out = []
    for n, s in zip(masked, nos, strict=True):
        if s is None or (isinstance(s, float) and math.isnan(s)):
            out.append(pick(UNASSIGNED, lang))
        else:
            out.append(f"{n} ({s})" if isinstance(n, str) and n else str(s))
    return out


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    n, d = num.astype(float), den.astype(float)
    return (n / d.where(d != 0)).astype(float)


# ------------------------------------------------------------------------------------------------ cores

#: One row per customer-month in scope: the customer's branch, the month's days and the amounts.
_CUST_SQL = """
    SELECT m.as_of_date, m.customer_id, d.home_org_code AS org_code,
        CAST(date_diff('day', CAST(date_trunc('month', m.as_of_date) AS DATE), m.as_of_date) + 1 AS DOUBLE)
            AS md,
        CAST(coalesce(m.deposit_adb, 0) AS DOUBLE) AS deposit_adb,
        CAST(coalesce(m.deposit_balance, 0) AS DOUBLE) AS deposit_balance,
        CAST(coalesce(m.loan_adb, 0) AS DOUBLE) AS loan_adb,
        CAST(coalesce(m.loan_balance, 0) AS DOUBLE) AS loan_balance,
        CAST(coalesce(m.npl_balance, 0) AS DOUBLE) AS npl_balance,
        {value_cols}{ch_cols}
    FROM mart_customer_month AS m
    JOIN dim_customer AS d ON d.customer_id = m.customer_id
    {value_join}
    WHERE list_contains($dates, m.as_of_date) AND ({cond})
"""


def _value_parts(ctx: AnalysisContext, dates: Sequence[dt.date], with_value: bool) -> tuple[str, str]:
    if not with_value:
        return "CAST(NULL AS DOUBLE) AS contribution, FALSE AS is_quality", ""
    join = (f"LEFT JOIN ({_value_source(ctx, dates)}) AS v "
            "ON v.customer_id = m.customer_id AND v.as_of_date = m.as_of_date")  # fmt: skip
    return "coalesce(v.contribution, 0) AS contribution, coalesce(v.is_quality, FALSE) AS is_quality", join


def _attribution_sql(ctx: AnalysisContext, *, with_value: bool, with_channels: bool,
                     dates: Sequence[dt.date], own_only: bool,
                     full: bool = True) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """Per month, customer branch and holder (staff or NULL = unassigned): weighted sums.

    ``full=False`` (league tables of managers) leaves out the unassigned rows and the main-holder
    headcount, which need a per-customer pass over the shares."""
    no_unassigned = own_only or not full
    cond, params = ctx.cust_cond("d")
    params = {**params, "dates": list(dates)}
    value_cols, value_join = _value_parts(ctx, dates, with_value)
    ch_cols = ""
    ch_sums = ""
    if with_channels:
        for ch in CHANNELS:
            lc = ch.lower()
            ch_cols += (f", CAST(coalesce(m.txn_count_{lc}, 0) AS DOUBLE) AS txn_count_{lc}"
                        f", CAST(coalesce(m.txn_amount_{lc}, 0) AS DOUBLE) AS txn_amount_{lc}")  # fmt: skip
            ch_sums += (f", sum(a.w * c.txn_count_{lc}) AS txn_count_{lc}"
                        f", sum(a.w * c.txn_amount_{lc}) AS txn_amount_{lc}")  # fmt: skip
    main = "s.staff_no = h.main_staff AND h.main_days >= c.md - h.held" if full else "NULL"
    h_join = "JOIN h ON h.as_of_date = c.as_of_date AND h.customer_id = c.customer_id" if full else ""
    own = ""
    if own_only:
        own = " AND s.staff_no = $own"
        params["own"] = ctx.principal.staff_no
    unassigned = (
        ""
        if no_unassigned
        else (
            "UNION ALL SELECT c.as_of_date, c.customer_id, NULL AS staff_no, "
            "(c.md - coalesce(h.held, 0)) / c.md AS w, "
            "(c.md - coalesce(h.held, 0)) > coalesce(h.main_days, 0) AS is_main "
            "FROM c LEFT JOIN h ON h.as_of_date = c.as_of_date AND h.customer_id = c.customer_id "
            "WHERE c.md - coalesce(h.held, 0) > 0 "
        )
    )
    sql = f"""
WITH c AS ({_CUST_SQL.format(value_cols=value_cols, ch_cols=ch_cols, value_join=value_join, cond=cond)}),
s AS (
    SELECT s.as_of_date, s.customer_id, s.staff_no, s.days
    FROM mart_manager_share_month AS s
    WHERE list_contains($dates, s.as_of_date)
),
h AS (
    SELECT as_of_date, customer_id, sum(days) AS held, max(days) AS main_days,
        first(staff_no ORDER BY days DESC, staff_no) AS main_staff
    FROM s GROUP BY as_of_date, customer_id
),
a AS (
    SELECT c.as_of_date, c.customer_id, s.staff_no, s.days / c.md AS w,
        {main} AS is_main
    FROM c
    JOIN s ON s.as_of_date = c.as_of_date AND s.customer_id = c.customer_id{own}
    {h_join}
    {unassigned}
)
SELECT a.as_of_date, c.org_code, a.staff_no,
    sum(a.w) AS customers,
    count(*) FILTER (WHERE a.is_main) AS headcount,
    count(*) AS customers_touched,
    sum(a.w * c.deposit_adb) AS deposit_adb,
    sum(a.w * c.deposit_balance) AS deposit_balance,
    sum(a.w * c.loan_adb) AS loan_adb,
    sum(a.w * c.loan_balance) AS loan_balance,
    sum(a.w * c.npl_balance) AS npl_balance,
    sum(a.w * c.contribution) AS contribution,
    coalesce(sum(a.w) FILTER (WHERE c.is_quality), 0) AS quality_customers{ch_sums}
FROM a JOIN c ON c.as_of_date = a.as_of_date AND c.customer_id = a.customer_id
GROUP BY ALL
"""
    return sql, params


def _attribution(ctx: AnalysisContext, dates: Sequence[dt.date], *, with_value: bool = True,
                 with_channels: bool = False, full: bool = True) -> pd.DataFrame:  # fmt: skip
    own_only = ctx.principal.scope == "managed"
    sql, params = _attribution_sql(ctx, with_value=with_value, with_channels=with_channels, dates=dates,
                                   own_only=own_only, full=full)  # fmt: skip
    df = ctx.query(sql, params)
    for c in ("headcount", "customers_touched"):
        df[c] = df[c].astype("int64") if full else df[c]
    return df


def _staff(ctx: AnalysisContext) -> pd.DataFrame:
    sql = "SELECT staff_no, staff_name, org_code AS staff_org_code, role, status FROM core_staff"
    return ctx.query(sql)


def _peer(ctx: AnalysisContext, county: pd.Series, role: pd.Series | None, lang: str) -> tuple[list, list]:
    codes, labels = [], []
    for i, c in enumerate(county):
        cname = ctx.org_label(c) if isinstance(c, str) else ""
        if role is None:
            codes.append(c if isinstance(c, str) else "")
            labels.append(cname)
        else:
            r = role.iloc[i]
            codes.append(f"{c}:{r}")
            labels.append(f"{cname} · {code_label('staff_role', r, _ui(lang))}")
    return codes, labels


def _manager_frame(ctx: AnalysisContext, att: pd.DataFrame, *, by_branch: bool, roster: bool) -> pd.DataFrame:
    """Member-level manager rows (per month) from the attribution rows, with staff attributes."""
    lang = ctx.lang
    num = ["customers", "headcount", "customers_touched", *AMOUNTS]
    num += [c for c in att.columns if c.startswith("txn_")]
    att = att.copy()
    att["member_type"] = np.where(att["staff_no"].isna(), "UNASSIGNED", "STAFF")
    if by_branch:
        keys = ["as_of_date", "org_code", "member_type", "staff_no"]
        df = att.groupby(keys, dropna=False, as_index=False)[num].sum()
    else:  # staff over all their branches; unassigned stays per branch
        att["org_code"] = att["org_code"].where(att["member_type"] == "UNASSIGNED")
        keys = ["as_of_date", "org_code", "member_type", "staff_no"]
        df = att.groupby(keys, dropna=False, as_index=False)[num].sum()
    staff = _staff(ctx)
    if roster and ctx.principal.scope != "managed":  # list the scope's managers who hold nobody
        mine = staff[staff["role"].eq("CUSTOMER_MANAGER") & staff["status"].eq("ACTIVE")
                     & staff["staff_org_code"].isin(ctx.branches)]  # fmt: skip
        have = set(df.loc[df["member_type"] == "STAFF", "staff_no"])
        extra = [s for s in mine["staff_no"] if s not in have]
        if extra:
            zero = pd.DataFrame(
                {"as_of_date": ctx.day, "org_code": None, "member_type": "STAFF", "staff_no": extra}
            )
            for c in num:
                zero[c] = 0
            df = pd.concat([df, zero], ignore_index=True)
    df = df.merge(staff, on="staff_no", how="left")
    is_staff = df["member_type"] == "STAFF"
    df["org_code"] = df["org_code"].where(~is_staff | by_branch, df["staff_org_code"])
    df["county_code"] = [ctx.county_of(o) if isinstance(o, str) else None for o in df["org_code"]]
    df["county_label"] = [ctx.org_label(c) if isinstance(c, str) else "" for c in df["county_code"]]
    df["role"] = df["role"].where(is_staff, None)
    df["org_label"] = [ctx.org_label(o) if isinstance(o, str) else "" for o in df["org_code"]]
    df["label"] = _staff_label(ctx.principal, df["staff_name"], df["staff_no"], lang)
    df["staff_name"] = mask_values(ctx.principal, "name", df["staff_name"].tolist())
    df["npl_ratio"] = _ratio(df["npl_balance"], df["loan_balance"])
    df["quality_share"] = _ratio(df["quality_customers"], df["customers"])
    for c in ("headcount", "customers_touched"):
        df[c] = df[c].astype("int64")
    cols = ["as_of_date", "member_type", "staff_no", "staff_name", "label", "role", "status", "org_code",
            "org_label", "county_code", "county_label", "staff_org_code", "customers", "headcount",
            "customers_touched", *AMOUNTS, "npl_ratio", "quality_share"]  # fmt: skip
    cols += [c for c in num if c.startswith("txn_")]
    df = df[cols].sort_values(["as_of_date", "org_code", "member_type", "staff_no"], na_position="last",
                              ignore_index=True)  # fmt: skip
    return df


# ---------------------------------------------------------------------------------------------- public
def manager_performance(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    by_branch: bool = False,
) -> pd.DataFrame:
    """Customer managers' volume, results and quality for one month, from the time-weighted 管户.

    Parameters
    ----------
    principal : Principal
        Who asks; a customer-manager role gets its own row only.
    as_of : str, date or None
        The month (``YYYY-MM`` or a date); the latest when None.
    org : str, optional
        Focus org (county or branch) within the principal's scope.
    home : Home, str, Path or None
        The installation.
    lang : str
        Labels' language (``en`` or ``zh_CN``).
    by_branch : bool
        One row per customer branch and manager (a manager holding customers of two branches has two
        rows), so that each branch's rows add up to the branch; otherwise one row per manager (over all
        their in-scope customers) plus one unassigned row per branch.

    Returns
    -------
    DataFrame
        ``as_of_date, member_type (STAFF | UNASSIGNED), staff_no, staff_name (masked per role), label,
        role, status, org_code (the staff's branch, or the customers' branch when by_branch or
        unassigned), org_label, county_code, county_label, staff_org_code, customers (Σ weight), headcount,
        customers_touched, deposit_adb, deposit_balance, loan_adb, loan_balance, npl_balance,
        contribution, quality_customers (Σ weight of quality customers), npl_ratio, quality_share``.
        Active customer managers of the focus org's branches who hold nobody have zero rows. For a role
        without detail, rows of fewer than ``min_cell`` distinct customers are blanked (``suppressed``).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        att = _attribution(ctx, [ctx.day])
        df = _manager_frame(ctx, att, by_branch=by_branch, roster=not by_branch)
        df = suppress_small(df, principal, count_col="customers_touched")
        return _attrs(df, ctx, "manager", measures={k: pick(MEASURES[k], lang) for k in MEASURES})


def _teller_sql(ctx: AnalysisContext, dates: Sequence[dt.date], by_type: bool) -> tuple[str, dict[str, Any]]:
    bcond, params = ctx.branch_cond("st.org_code")
    typ = ", c.txn_type" if by_type else ""
    sql = f"""
SELECT c.as_of_date, c.teller_no AS staff_no{typ},
    sum(c.txn_count) AS counter_txn_count,
    CAST(sum(c.txn_amount) AS DOUBLE) AS counter_txn_amount,
    coalesce(sum(c.txn_count) FILTER (WHERE c.counterparty = 'OTHER'), 0) AS other_bank_txn_count,
    coalesce(CAST(sum(c.txn_amount) FILTER (WHERE c.counterparty = 'OTHER') AS DOUBLE), 0)
        AS other_bank_txn_amount
FROM mart_channel_month AS c
JOIN core_staff AS st ON st.staff_no = c.teller_no
WHERE c.channel = 'COUNTER' AND list_contains($dates, c.as_of_date) AND {bcond}
GROUP BY ALL
"""
    return sql, {**params, "dates": list(dates)}


def _teller_frame(ctx: AnalysisContext, dates: Sequence[dt.date], by_type: bool = False) -> pd.DataFrame:
    sql, params = _teller_sql(ctx, dates, by_type)
    df = ctx.query(sql, params)
    df["counter_txn_count"] = df["counter_txn_count"].astype("int64")
    df["other_bank_txn_count"] = df["other_bank_txn_count"].astype("int64")
    df = df.merge(_staff(ctx), on="staff_no", how="left")
    df["org_code"] = df["staff_org_code"]
    df["county_code"] = [ctx.county_of(o) if isinstance(o, str) else None for o in df["org_code"]]
    df["org_label"] = [ctx.org_label(o) for o in df["org_code"]]
    df["label"] = _staff_label(ctx.principal, df["staff_name"], df["staff_no"], ctx.lang)
    df["staff_name"] = mask_values(ctx.principal, "name", df["staff_name"].tolist())
    df["other_bank_share"] = _ratio(df["other_bank_txn_count"], df["counter_txn_count"])
    cols = ["as_of_date", "staff_no", "staff_name", "label", "role", "status", "org_code", "org_label",
            "county_code"]  # fmt: skip
    if by_type:
        cols += ["txn_type", "txn_type_label"]
        df["txn_type_label"] = [code_label("txn_type", t, _ui(ctx.lang)) for t in df["txn_type"]]
    cols += ["counter_txn_count", "counter_txn_amount", "other_bank_txn_count", "other_bank_txn_amount",
             "other_bank_share"]  # fmt: skip
    sort = ["as_of_date", "org_code", "staff_no"] + (["txn_type"] if by_type else [])
    return df[cols].sort_values(sort, ignore_index=True)


def teller_performance(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    by_type: bool = False,
) -> pd.DataFrame:
    """Tellers' counter work for one month: transactions keyed under their teller number.

    Parameters
    ----------
    principal : Principal
        Who asks (refused for a customer-manager role).
    as_of, org, home, lang
        As :func:`manager_performance`.
    by_type : bool
        One row per teller and transaction type (存现, 取现, 转账 ...) instead of one per teller.

    Returns
    -------
    DataFrame
        ``as_of_date, staff_no, staff_name (masked per role), label, role, status, org_code (the teller's
        branch), org_label, county_code, [txn_type, txn_type_label,] counter_txn_count, counter_txn_amount,
        other_bank_txn_count, other_bank_txn_amount (cross-bank, 本代他), other_bank_share``. Tellers of the
        focus org's branches; all their counter transactions (whichever branch holds the account).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _refuse_managed(ctx, "tellers' figures")
        df = _teller_frame(ctx, [ctx.day], by_type)
        return _attrs(df, ctx, "teller")


def _branch_counter_sql(ctx: AnalysisContext, dates: Sequence[dt.date]) -> tuple[str, dict[str, Any]]:
    """Counter work per branch where it was done (the teller's branch; the account's without a teller)."""
    bcond, params = ctx.branch_cond("coalesce(st.org_code, c.org_code)")
    sql = f"""
SELECT c.as_of_date, coalesce(st.org_code, c.org_code) AS org_code,
    sum(c.txn_count) AS counter_txn_count,
    CAST(sum(c.txn_amount) AS DOUBLE) AS counter_txn_amount,
    coalesce(sum(c.txn_count) FILTER (WHERE c.counterparty = 'OTHER'), 0) AS other_bank_txn_count,
    coalesce(CAST(sum(c.txn_amount) FILTER (WHERE c.counterparty = 'OTHER') AS DOUBLE), 0)
        AS other_bank_txn_amount
FROM mart_channel_month AS c
LEFT JOIN core_staff AS st ON st.staff_no = c.teller_no
WHERE c.channel = 'COUNTER' AND list_contains($dates, c.as_of_date) AND {bcond}
GROUP BY ALL
"""
    return sql, {**params, "dates": list(dates)}


def _branch_frame(ctx: AnalysisContext, dates: Sequence[dt.date], *, with_value: bool = True) -> pd.DataFrame:
    cond, params = ctx.cust_cond("d")
    value_cols, value_join = _value_parts(ctx, dates, with_value)
    cte = _CUST_SQL.format(value_cols=value_cols, ch_cols="", value_join=value_join, cond=cond)
    sums = ", ".join(f"sum(c.{a}) AS {a}" for a in AMOUNTS if a != "quality_customers")
    cust = ctx.query(
        f"WITH c AS ({cte}), h AS (SELECT as_of_date, customer_id, sum(days) AS held "
        "FROM mart_manager_share_month WHERE list_contains($dates, as_of_date) GROUP BY ALL) "
        "SELECT c.as_of_date, c.org_code, count(*) AS headcount, sum(coalesce(h.held, 0) / c.md) AS managed, "
        f"{sums}, count(*) FILTER (WHERE c.is_quality) AS quality_customers FROM c "
        "LEFT JOIN h ON h.as_of_date = c.as_of_date AND h.customer_id = c.customer_id GROUP BY ALL",
        {**params, "dates": list(dates)},
    )
    cust["customers"] = cust["headcount"].astype(float)
    sql, params = _branch_counter_sql(ctx, dates)
    cnt = ctx.query(sql, params)
    grid = pd.DataFrame([(d, b) for d in dates for b in ctx.branches], columns=["as_of_date", "org_code"])
    df = grid.merge(cust, on=["as_of_date", "org_code"], how="left").merge(
        cnt, on=["as_of_date", "org_code"], how="left"
    )
    df = df.fillna({c: 0 for c in df.columns if c not in ("as_of_date", "org_code")})
    for c in ("headcount", "counter_txn_count", "other_bank_txn_count"):
        df[c] = df[c].astype("int64")
    df["customers_touched"] = df["headcount"]
    df["county_code"] = [ctx.county_of(o) for o in df["org_code"]]
    df["label"] = [ctx.org_label(o) for o in df["org_code"]]
    df["managed_share"] = _ratio(df["managed"], df["customers"])
    df["npl_ratio"] = _ratio(df["npl_balance"], df["loan_balance"])
    df["quality_share"] = _ratio(df["quality_customers"], df["customers"])
    df["other_bank_share"] = _ratio(df["other_bank_txn_count"], df["counter_txn_count"])
    cols = ["as_of_date", "org_code", "label", "county_code", "customers", "customers_touched", "managed",
            "managed_share", *AMOUNTS, "npl_ratio", "quality_share", "counter_txn_count",
            "counter_txn_amount", "other_bank_txn_count", "other_bank_txn_amount",
            "other_bank_share"]  # fmt: skip
    return df[cols].sort_values(["as_of_date", "org_code"], ignore_index=True)


def branch_performance(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Branches' volume, results, quality, counter work and cross-bank business for one month.

    Parameters
    ----------
    principal : Principal
        Who asks (refused for a customer-manager role).
    as_of, org, home, lang
        As :func:`manager_performance`.

    Returns
    -------
    DataFrame
        One row per branch of the focus org: ``as_of_date, org_code, label, county_code, customers (the
        branch's customers), customers_touched, managed (Σ weight of managed days), managed_share,
        deposit_adb, deposit_balance, loan_adb, loan_balance, npl_balance, contribution,
        quality_customers, npl_ratio, quality_share, counter_txn_count, counter_txn_amount,
        other_bank_txn_count, other_bank_txn_amount, other_bank_share`` (counter figures: the work of the
        branch's tellers). The customer figures equal the sum of :func:`manager_performance` with
        ``by_branch=True`` over the branch's rows (managers + unassigned).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _refuse_managed(ctx, "branch figures")
        df = _branch_frame(ctx, [ctx.day])
        df = suppress_small(df, principal, count_col="customers_touched")
        return _attrs(df, ctx, "branch")


def channel_mix(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    level: Literal["branch", "manager"] = "branch",
) -> pd.DataFrame:
    """The channel mix of each branch's or manager's business for one month (tidy: one row per channel).

    Parameters
    ----------
    principal : Principal
        Who asks (``branch`` is refused for a customer-manager role).
    as_of, org, home, lang
        As :func:`manager_performance`.
    level : {"branch", "manager"}
        ``branch``: ``mart_channel_month`` by the account's branch; ``manager``: the managed customers'
        transactions by channel, time-weighted (``mart_customer_month.txn_count_<channel>`` x weight),
        with the unassigned rows per branch.

    Returns
    -------
    DataFrame
        ``as_of_date, member (org code or staff number; the branch code for unassigned rows),
        member_type, label, org_code, channel, channel_label, txn_count, txn_amount, txn_share`` (share of
        the member's transactions, the six customer channels; batch postings excluded).
    """
    if level not in ("branch", "manager"):
        raise ValueError(f"level: expected 'branch' or 'manager', got {level!r}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        ui = _ui(lang)
        if level == "branch":
            _refuse_managed(ctx, "branch figures")
            bcond, params = ctx.branch_cond("c.org_code")
            df = ctx.query(
                "SELECT c.org_code, c.channel, sum(c.txn_count) AS txn_count, "
                "CAST(sum(c.txn_amount) AS DOUBLE) AS txn_amount FROM mart_channel_month AS c "
                f"WHERE c.as_of_date = $day AND list_contains($channels, c.channel) AND {bcond} GROUP BY ALL",
                {**params, "day": ctx.day, "channels": list(CHANNELS)},
            )
            grid = pd.DataFrame(
                [(b, ch) for b in ctx.branches for ch in CHANNELS], columns=["org_code", "channel"]
            )
            df = grid.merge(df, on=["org_code", "channel"], how="left").fillna(
                {"txn_count": 0, "txn_amount": 0.0}
            )
            df["member"] = df["org_code"]
            df["member_type"] = "BRANCH"
            df["label"] = [ctx.org_label(o) for o in df["org_code"]]
            df["customers_touched"] = np.nan  # branch volume is not a customer group
        else:
            att = _attribution(ctx, [ctx.day], with_value=False, with_channels=True)
            mf = _manager_frame(ctx, att, by_branch=False, roster=False)
            mf["member"] = mf["staff_no"].where(mf["member_type"] == "STAFF", mf["org_code"])
            rows = []
            for ch in CHANNELS:
                lc = ch.lower()
                part = mf[["member", "member_type", "label", "org_code", "customers_touched"]].copy()
                part["channel"] = ch
                part["txn_count"] = mf[f"txn_count_{lc}"].to_numpy()
                part["txn_amount"] = mf[f"txn_amount_{lc}"].to_numpy()
                rows.append(part)
            df = pd.concat(rows, ignore_index=True)
        tot = df.groupby("member")["txn_count"].transform("sum")
        df["txn_share"] = _ratio(df["txn_count"], tot)
        df["channel_label"] = [code_label("channel", c, ui) for c in df["channel"]]
        df["as_of_date"] = ctx.day
        order = {c: i for i, c in enumerate(CHANNELS)}
        df["_o"] = df["channel"].map(order)
        df = df.sort_values(["org_code", "member", "_o"], ignore_index=True).drop(columns="_o")
        df = df[["as_of_date", "member", "member_type", "label", "org_code", "channel", "channel_label",
                 "txn_count", "txn_amount", "txn_share", "customers_touched"]]  # fmt: skip
        if level == "manager":
            df = suppress_small(df, principal, count_col="customers_touched")
        return _attrs(df, ctx, "channel", level=level)


def cross_bank_business(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    level: Literal["branch", "teller"] = "branch",
) -> pd.DataFrame:
    """Cross-bank counter business (本代他) by transaction type, per branch or teller, for one month.

    Counter transactions whose counterparty is another bank. The extracts hold only our own customers'
    accounts, so this is the other-bank side of our customers' business done at our counters.

    Parameters
    ----------
    principal : Principal
        Who asks (refused for a customer-manager role).
    as_of, org, home, lang
        As :func:`manager_performance`.
    level : {"branch", "teller"}
        Per branch (where the work was done) or per teller.

    Returns
    -------
    DataFrame
        ``as_of_date, member, label, org_code, txn_type, txn_type_label, other_bank_txn_count,
        other_bank_txn_amount, counter_txn_count (all counter transactions of that type),
        other_bank_share``; only types with counter business.
    """
    if level not in ("branch", "teller"):
        raise ValueError(f"level: expected 'branch' or 'teller', got {level!r}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _refuse_managed(ctx, "cross-bank figures")
        if level == "teller":
            df = _teller_frame(ctx, [ctx.day], by_type=True)
            df["member"] = df["staff_no"]
        else:
            bcond, params = ctx.branch_cond("coalesce(st.org_code, c.org_code)")
            df = ctx.query(
                "SELECT coalesce(st.org_code, c.org_code) AS org_code, c.txn_type, "
                "sum(c.txn_count) AS counter_txn_count, "
                "coalesce(sum(c.txn_count) FILTER (WHERE c.counterparty = 'OTHER'), 0) "
                "AS other_bank_txn_count, "
                "coalesce(CAST(sum(c.txn_amount) FILTER (WHERE c.counterparty = 'OTHER') AS DOUBLE), 0) "
                "AS other_bank_txn_amount FROM mart_channel_month AS c "
                "LEFT JOIN core_staff AS st ON st.staff_no = c.teller_no "
                f"WHERE c.channel = 'COUNTER' AND c.as_of_date = $day AND {bcond} GROUP BY ALL",
                {**params, "day": ctx.day},
            )
            df["member"] = df["org_code"]
            df["label"] = [ctx.org_label(o) for o in df["org_code"]]
            df["txn_type_label"] = [code_label("txn_type", t, _ui(lang)) for t in df["txn_type"]]
            df["other_bank_share"] = _ratio(df["other_bank_txn_count"], df["counter_txn_count"])
            df["as_of_date"] = ctx.day
        for c in ("counter_txn_count", "other_bank_txn_count"):
            df[c] = df[c].astype("int64")
        df = df[
            [
                "as_of_date",
                "member",
                "label",
                "org_code",
                "txn_type",
                "txn_type_label",
                "other_bank_txn_count",
                "other_bank_txn_amount",
                "counter_txn_count",
                "other_bank_share",
            ]
        ]
        df = df.sort_values(["org_code", "member", "txn_type"], ignore_index=True)
        return _attrs(df, ctx, "cross_bank", level=level)


# ------------------------------------------------------------------------------------------------ league
def rank_peers(df: pd.DataFrame, measure: str, *, min_customers: int | None,
               count_col: str = "customers") -> pd.DataFrame:  # fmt: skip
    """Rank, percentile, z-score and peer median of ``measure`` within ``(as_of_date, peer_group)``.

    Parameters
    ----------
    df : DataFrame
        Member rows with ``as_of_date``, ``peer_group`` and the measure.
    measure : str
        The column ranked; lower is better for :data:`LOWER_IS_BETTER`.
    min_customers : int or None
        Members with ``count_col`` below it (or a missing value) are listed, not ranked; None ranks all.
    count_col : str
        The eligibility count.

    Returns
    -------
    DataFrame
        ``df`` with ``value, ranked, rank, peer_size, percentile, zscore, peer_median, peer_mean``
        (rank 1 = best; ties share the best rank; percentile = share of ranked peers at or below).
    """
    out = df.copy()
    v = out[measure].astype(float)
    out["value"] = v
    ok = v.notna()
    if min_customers is not None:
        ok &= out[count_col].astype(float).fillna(0) >= min_customers
    out["ranked"] = ok
    asc = measure in LOWER_IS_BETTER
    keys = ["as_of_date", "peer_group"]
    r = out[ok]
    g = r.groupby(keys)["value"]
    out.loc[ok, "rank"] = g.rank(method="min", ascending=asc)
    out.loc[ok, "peer_size"] = g.transform("count")
    # share of ranked peers doing no better than this member (1 = top)
    out.loc[ok, "percentile"] = g.rank(method="max", ascending=not asc) / out.loc[ok, "peer_size"]
    mean = g.transform("mean")
    std = g.transform(lambda s: s.std(ddof=0))
    out.loc[ok, "zscore"] = ((r["value"] - mean) / std.where(std > 0)).to_numpy()
    out.loc[ok, "peer_mean"] = mean
    med = r.groupby(keys)["value"].median().rename("peer_median").reset_index()
    out = out.merge(med, on=keys, how="left")
    for c in ("rank", "peer_size", "percentile", "zscore", "peer_mean"):
        if c not in out.columns:
            out[c] = np.nan
        out[c] = out[c].astype(float)
    return out


def _league_members(
    ctx: AnalysisContext, member: str, measure: str, dates: Sequence[dt.date]
) -> pd.DataFrame:
    lang = ctx.lang
    if member == "manager":
        att = _attribution(ctx, dates, with_value=measure in _VALUE_MEASURES, full=measure == "headcount")
        df = _manager_frame(ctx, att, by_branch=False, roster=False)
        df = df[df["member_type"] == "STAFF"].copy()
        df["peer_group"], df["peer_label"] = _peer(ctx, df["county_code"], df["role"], lang)
        df["member"] = df["staff_no"]
        count_col, k = "customers", _min_ranked(ctx)
    elif member == "teller":
        df = _teller_frame(ctx, dates)
        df["peer_group"], df["peer_label"] = _peer(ctx, df["county_code"], df["role"], lang)
        df["member"] = df["staff_no"]
        df["customers_touched"] = np.nan
        count_col, k = "counter_txn_count", None
    else:
        df = _branch_frame(ctx, dates, with_value=measure in _VALUE_MEASURES)
        df["peer_group"], df["peer_label"] = _peer(ctx, df["county_code"], None, lang)
        df["member"] = df["org_code"]
        count_col, k = "customers", _min_ranked(ctx)
    out = rank_peers(df, measure, min_customers=k, count_col=count_col)
    out["count"] = out[count_col]
    return out


def _league_check(ctx: AnalysisContext, member: str, measure: str) -> None:
    if member not in LEAGUE_MEASURES:
        raise ValueError(f"member: expected one of {', '.join(LEAGUE_MEASURES)}, got {member!r}")
    if measure not in LEAGUE_MEASURES[member]:
        raise ValueError(f"measure {measure!r} cannot rank {member}s; expected one of "
                         f"{', '.join(LEAGUE_MEASURES[member])}")  # fmt: skip
    if ctx.principal.scope == "managed":
        raise NotPermitted(f"role {ctx.principal.role} sees its own figures only; a league table would show "
                           "its peers' figures")  # fmt: skip


_LEAGUE_COLS = ["as_of_date", "member", "label", "org_code", "org_label", "county_code", "peer_group",
                "peer_label", "measure", "measure_label", "value", "count", "ranked", "rank", "peer_size",
                "percentile", "zscore", "peer_median", "peer_mean"]  # fmt: skip


def _league_finish(ctx: AnalysisContext, df: pd.DataFrame, measure: str) -> pd.DataFrame:
    df["measure"] = measure
    df["measure_label"] = pick(MEASURES[measure], ctx.lang)
    if "org_label" not in df.columns:
        df["org_label"] = df["label"]
    df["customers_touched"] = df.get("customers_touched", np.nan)
    return df


def league_table(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    member: Member = "manager",
    measure: str = "deposit_adb",
    trend_months: int = 6,
) -> pd.DataFrame:
    """A league table: each member's value, rank, percentile and z-score within its peer group.

    Parameters
    ----------
    principal : Principal
        Who asks (refused for a customer-manager role).
    as_of, org, home, lang
        As :func:`manager_performance`.
    member : {"manager", "teller", "branch"}
        Who is ranked: customer managers (peers: county x role), tellers (county x role) or branches
        (county).
    measure : str
        One of :data:`LEAGUE_MEASURES` for the member kind.
    trend_months : int
        The rank trend's window: ``rank_start`` is the rank in the window's first month
        (``trend_months - 1`` months before; NaN when the member was not ranked then),
        ``rank_change`` = rank_start - rank (positive = climbed).

    Returns
    -------
    DataFrame
        One row per member, best first within each peer group: ``as_of_date, member, label, org_code,
        org_label, county_code, peer_group, peer_label, measure, measure_label, value, count (the
        eligibility count: customers, or counter transactions for tellers), ranked, rank, peer_size,
        percentile, zscore, peer_median, peer_mean, rank_start, rank_change, suppressed``. Unranked
        members (too few customers) follow the ranked ones.
    """
    if trend_months < 1:
        raise ValueError("trend_months must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _league_check(ctx, member, measure)
        dates = ctx.trend_dates(trend_months)
        # only the window's first month and this one are read (a third of a 6-month read at 1M customers)
        allm = _league_members(ctx, member, measure, sorted({dates[0], ctx.day}))
        cur = allm[allm["as_of_date"] == ctx.day].copy()
        start = allm[allm["ranked"] & (allm["as_of_date"] == dates[0])]
        hist = start.set_index("member")["rank"]
        cur["rank_start"] = cur["member"].map(hist).astype(float)
        cur["rank_change"] = cur["rank_start"] - cur["rank"]
        cur = _league_finish(ctx, cur, measure)
        cur = cur.sort_values(["peer_group", "ranked", "rank", "value"], ascending=[True, False, True, False],
                              ignore_index=True)  # fmt: skip
        cur = cur[[*_LEAGUE_COLS, "rank_start", "rank_change", "customers_touched"]]
        if member != "teller":
            cur = suppress_small(cur, principal, count_col="customers_touched")
            cur.loc[cur["suppressed"], "ranked"] = False
        else:
            cur["suppressed"] = False
        cur = cur.drop(columns="customers_touched")
        return _attrs(cur, ctx, "league", member=member, measure=measure, trend_months=len(dates),
                      min_customers_ranked=_min_ranked(ctx) if member != "teller" else None)  # fmt: skip


def league_trend(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    member: Member = "manager",
    measure: str = "deposit_adb",
    months: int = 6,
) -> pd.DataFrame:
    """Ranks within the peer group over the last ``months`` months (computed in one pass).

    Parameters
    ----------
    principal, as_of, org, home, lang, member, measure
        As :func:`league_table`.
    months : int
        How many month-ends up to the as-of month.

    Returns
    -------
    DataFrame
        One row per member and month: ``as_of_date, month (YYYY-MM)`` and the columns of
        :func:`league_table` (without the rank change), ascending by month then peer group and rank.
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _league_check(ctx, member, measure)
        dates = ctx.trend_dates(months)
        df = _league_finish(ctx, _league_members(ctx, member, measure, dates), measure)
        df = df.sort_values(["as_of_date", "peer_group", "ranked", "rank"],
                            ascending=[True, True, False, True], ignore_index=True)  # fmt: skip
        df = df[[*_LEAGUE_COLS, "customers_touched"]]
        if member != "teller":
            df = suppress_small(df, principal, count_col="customers_touched")
            df.loc[df["suppressed"], "ranked"] = False
        else:
            df["suppressed"] = False
        df = df.drop(columns="customers_touched")
        df.insert(1, "month", [d.strftime("%Y-%m") for d in pd.to_datetime(df["as_of_date"])])
        return _attrs(df, ctx, "trend", member=member, measure=measure, months=[d.isoformat() for d in dates])


# ------------------------------------------------------------------------------------------------- drill
def performance_customers(
    principal: Principal,
    member: str,
    measure: str = "deposit_adb",
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers behind a manager's, a branch's or the unassigned figure (scoped, masked, audited).

    Parameters
    ----------
    principal : Principal
        Who asks; needs single-customer detail (the provincial analyst is refused, and the refusal is
        audited).
    member : str
        A staff number (the customers the manager held in the month), a branch code (the branch's
        customers), or ``"UNASSIGNED"`` (the unassigned days of the focus org's customers; pass the branch
        as ``org``).
    measure : str
        The figure: one of :data:`AMOUNTS` or ``customers``.
    as_of, org, home, lang
        As :func:`manager_performance`.
    limit : int
        At most this many rows, the largest attributed value first (``attrs["total"]`` counts all).
    app_url : str, optional
        Base URL of ``cim serve`` for the ``link`` to the customer's 360 view.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, org_code, staff_no, days, month_days, share (the mart's share),
        weight (days / month_days; 1 for a branch), value (the customer's measure), attributed
        (weight x value)``, masked identity columns and ``link``. Σ attributed over all rows = the figure.
    """
    if measure not in (*AMOUNTS, "customers"):
        raise ValueError(f"measure: expected one of {', '.join((*AMOUNTS, 'customers'))}, got {measure!r}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        cond, params = ctx.cust_cond("d")
        params = {**params, "day": ctx.day}
        if measure == "customers":
            val = "1.0"
        elif measure == "contribution":
            val = "coalesce(v.contribution, 0)"
        elif measure == "quality_customers":
            val = "CASE WHEN coalesce(v.is_quality, FALSE) THEN 1.0 ELSE 0.0 END"
        else:
            val = f"CAST(coalesce(m.{measure}, 0) AS DOUBLE)"
        value_join = ""
        if measure in ("contribution", "quality_customers"):
            value_join = f"LEFT JOIN ({_value_source(ctx, [ctx.day])}) AS v ON v.customer_id = m.customer_id"
        md = ("CAST(date_diff('day', CAST(date_trunc('month', m.as_of_date) AS DATE), m.as_of_date) + 1 "
              "AS INTEGER)")  # fmt: skip
        base = (f"FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id "
                f"{value_join} ")  # fmt: skip
        if member == "UNASSIGNED":
            core = (
                f"SELECT m.customer_id, d.customer_type, d.home_org_code AS org_code, NULL AS staff_no, "
                f"CAST({md} - coalesce(h.held, 0) AS INTEGER) AS days, {md} AS month_days, "
                f"CAST(NULL AS DOUBLE) AS share, ({md} - coalesce(h.held, 0)) / {md} AS weight, "
                f"{val} AS value, ({md} - coalesce(h.held, 0)) / {md} * {val} AS attributed {base}"
                "LEFT JOIN (SELECT customer_id, sum(days) AS held FROM mart_manager_share_month "
                "WHERE as_of_date = $day GROUP BY customer_id) AS h ON h.customer_id = m.customer_id "
                f"WHERE m.as_of_date = $day AND ({cond}) AND {md} - coalesce(h.held, 0) > 0"
            )
            if principal.scope == "managed":
                raise NotFoundOrNotPermitted("member not found or not permitted")
        elif member in ctx.orgs and ctx.orgs[member].level == "BRANCH":
            if principal.scope == "managed":
                raise NotFoundOrNotPermitted("member not found or not permitted")
            params["branch"] = member
            core = (
                "SELECT m.customer_id, d.customer_type, d.home_org_code AS org_code, "
                "d.manager_no AS staff_no, "
                f"{md} AS days, {md} AS month_days, CAST(1 AS DOUBLE) AS share, CAST(1 AS DOUBLE) AS weight, "
                f"{val} AS value, {val} AS attributed {base}"
                f"WHERE m.as_of_date = $day AND ({cond}) AND d.home_org_code = $branch"
            )
        else:
            if principal.scope == "managed" and member != principal.staff_no:
                raise NotFoundOrNotPermitted("member not found or not permitted")
            params["staff"] = member
            core = (
                f"SELECT m.customer_id, d.customer_type, d.home_org_code AS org_code, s.staff_no, s.days, "
                f"{md} AS month_days, CAST(s.share AS DOUBLE) AS share, s.days / {md} AS weight, "
                f"{val} AS value, s.days / {md} * {val} AS attributed {base}"
                "JOIN mart_manager_share_month AS s "
                "ON s.customer_id = m.customer_id AND s.as_of_date = m.as_of_date "
                f"WHERE m.as_of_date = $day AND ({cond}) AND s.staff_no = $staff"
            )
        out = _drill(ctx, measure, member, core, params, limit, app_url)
        out.attrs.update(measure=measure, member=member)
        return out


def _drill(ctx: AnalysisContext, measure: str, member: str, core: str, params: dict[str, Any], limit: int,
           app_url: str | None) -> pd.DataFrame:  # fmt: skip
    from cimlib.analysis._common import drill_customers

    return drill_customers(ctx, "analysis_drill_performance", f"{member}:{measure}", core, params,
                           order="c.attributed DESC", limit=limit, app_url=app_url,
                           detail={"member": member, "measure": measure})  # fmt: skip


__all__ = [
    "AMOUNTS",
    "LEAGUE_MEASURES",
    "LOWER_IS_BETTER",
    "MEASURES",
    "branch_performance",
    "channel_mix",
    "cross_bank_business",
    "league_table",
    "league_trend",
    "manager_performance",
    "performance_customers",
    "rank_peers",
    "teller_performance",
]
