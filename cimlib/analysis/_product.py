"""Product analysis (产品分析): lifecycle, structure, income, risk, customer composition and cross-holding of
the deposit, loan, card, wealth and intermediate-business products of ``core_product``.

Every figure comes from the per-month account facts (``core_deposit_month``, ``core_loan_month``,
``core_card_month``, ``core_wealth_month``, ``core_corp_business_month``), limited to the customers of the
principal's scope and focus org (``ctx.cust_cond``), aggregated inside DuckDB. What an account row counts
as, per category:

========== ===================== ====================== ========================= =========================
category   held (active)         new in the month       balance                   other
========== ===================== ====================== ========================= =========================
DEPOSIT    status <> CLOSED      open_date in month     balance (all rows)        closures: close_date in
                                                                                  month; ADB = adb
LOAN       status = ACTIVE       start_date in month    balance, not written off  ADB = accum / days;
                                                                                  NPL = SUBSTANDARD +
                                                                                  DOUBTFUL + LOSS
CARD       status = ACTIVE       issue_date in month    outstanding credit-card   no ADB: the month-end
                                                        balance (debit: 0)        balance stands in
WEALTH     market_value > 0      buy_date in month      market_value              as for cards
INTERMED.  status = OPEN, or     issue_date in month    amount outstanding        volume and fee: business
           issued in the month                          (OPEN)                    issued in the month
========== ===================== ====================== ========================= =========================

Intermediate business has no product code in its source: ``biz_type`` is the ``subtype`` of the
INTERMEDIATE product of ``core_product``. Deposit balances add up to ``mart_customer_month.deposit_balance``;
loan balances to its ``loan_balance`` (written-off loans excluded); wealth to ``wealth_aum``; credit cards
to ``credit_card_balance``. Closures of deposits are exact (``close_date``); the other categories record
no closing date, so their ``closed_accounts`` are the net outflow ``active last month + new - active``.

Contribution per product reuses :func:`cimlib.value.contribution_by_product_sql` (FTP); it has no
product for account fees (``mart_fee_month``) and transaction costs, which are the ``UNALLOCATED`` row of
:func:`product_income`; intermediate-business fees (not part of the FTP contribution) are added to their
product. No per-product transaction mart exists, so the transaction side of a product is its new
business (count, volume) rather than its payment transactions.

Groups of fewer than ``principal.min_cell`` customers are blanked for roles without single-customer
detail (:func:`cimlib.segmentation._analyses.suppress_small`). Distinct customer counts cost several times
the plain sums at a million customers, so they are taken for the as-of month only; trends and comparisons
use accounts and balances.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import (
    AnalysisContext,
    analysis_context,
    dates_param,
    drill_customers,
    growth,
    is_zh,
    month_end,
    pick,
)
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._params import ProductParams
from cimlib.customer import _data as D
from cimlib.i18n import code_label
from cimlib.segmentation._analyses import suppress_small

CATEGORIES = ("DEPOSIT", "LOAN", "CARD", "WEALTH", "INTERMEDIATE")
FIVE_CLASSES = ("NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS")
#: Non-performing loans (不良贷款).
NPL_CLASSES = ("SUBSTANDARD", "DOUBTFUL", "LOSS")
STAGES = ("LAUNCH", "GROWTH", "MATURE", "DECLINE")
#: The code of :func:`product_income`'s row for account fees and transaction costs.
UNALLOCATED = "UNALLOCATED"

#: The module's measure names.
MEASURES: dict[str, dict[str, str]] = {
    "balance": {"en": "Balance", "zh": "余额"},
    "adb": {"en": "Average daily balance", "zh": "日均余额"},
    "active_accounts": {"en": "Active accounts", "zh": "有效账户数"},
    "new_accounts": {"en": "New accounts", "zh": "新开户数"},
    "closed_accounts": {"en": "Closed accounts", "zh": "销户数"},
    "holders": {"en": "Customers holding", "zh": "持有客户数"},
    "volume": {"en": "New business volume", "zh": "新发生业务量"},
    "fee_income": {"en": "Fee income", "zh": "手续费收入"},
    "deposit_nii": {"en": "Deposit net interest income", "zh": "存款净利息收入"},
    "loan_nii": {"en": "Loan net interest income", "zh": "贷款净利息收入"},
    "operating_cost": {"en": "Operating cost", "zh": "运营成本"},
    "expected_loss": {"en": "Expected loss", "zh": "预期损失"},
    "contribution": {"en": "Contribution", "zh": "贡献度"},
    "contribution_per_account": {"en": "Contribution per account", "zh": "户均贡献"},
    "balance_share": {"en": "Share of balance", "zh": "余额占比"},
    "account_share": {"en": "Share of accounts", "zh": "账户占比"},
    "holder_share": {"en": "Share of holders", "zh": "客户占比"},
    "penetration": {"en": "Penetration", "zh": "渗透率"},
    "loan_balance": {"en": "Loan balance", "zh": "贷款余额"},
    "npl_balance": {"en": "NPL balance", "zh": "不良贷款余额"},
    "npl_ratio": {"en": "NPL ratio", "zh": "不良率"},
    "customers": {"en": "Customers", "zh": "客户数"},
    "lift": {"en": "Lift", "zh": "提升度"},
    "confidence": {"en": "Holding rate", "zh": "持有率"},
    "n_products": {"en": "Products held", "zh": "持有产品数"},
    "stage": {"en": "Lifecycle stage", "zh": "生命周期阶段"},
    "month": {"en": "Month", "zh": "月份"},
    "product": {"en": "Product", "zh": "产品"},
    "category": {"en": "Category", "zh": "产品大类"},
    "five_class": {"en": "Five-tier class", "zh": "五级分类"},
    "share": {"en": "Share", "zh": "占比"},
}
STAGE_LABELS: dict[str | None, dict[str, str]] = {
    "LAUNCH": {"en": "Launch", "zh": "导入期"},
    "GROWTH": {"en": "Growth", "zh": "成长期"},
    "MATURE": {"en": "Mature", "zh": "成熟期"},
    "DECLINE": {"en": "Decline", "zh": "衰退期"},
    None: {"en": "n/a", "zh": "无数据"},
}
TITLES: dict[str, dict[str, str]] = {
    "lifecycle": {"en": "Product lifecycle", "zh": "产品生命周期"},
    "structure": {"en": "Product structure", "zh": "产品结构"},
    "income": {"en": "Product income and contribution", "zh": "产品收入与贡献"},
    "risk": {"en": "Loan products: NPL", "zh": "贷款产品不良"},
    "five_class": {"en": "Loan products: five-tier classification", "zh": "贷款产品五级分类"},
    "composition": {"en": "Product holders by segment", "zh": "产品客户构成"},
    "per_customer": {"en": "Products per customer", "zh": "客户持有产品数分布"},
    "pairs": {"en": "Products held together", "zh": "产品交叉持有"},
    "next_product": {"en": "Next product affinity", "zh": "下一产品推荐"},
}
SUPPRESSED_LABEL = {"en": "hidden (few customers)", "zh": "已隐藏(客户过少)"}
UNALLOCATED_LABEL = {
    "en": "Account fees and transaction costs (no product)",
    "zh": "账户手续费与交易成本(不分产品)",
}

_CODE = re.compile(r"^[A-Z]{2}[0-9]{4}$")
_MONTH_START = "date_trunc('month', x.as_of_date)"

# One SELECT per category over its monthly fact table (aliased x), each giving the same columns. The date
# list is the named parameter $dates; every number is computed here, never user text.
_FACTS: dict[str, str] = {
    "DEPOSIT": f"""
SELECT x.as_of_date, 'DEPOSIT' AS category, x.product_code, x.customer_id,
    x.status <> 'CLOSED' AS held,
    coalesce(x.open_date >= {_MONTH_START}, FALSE) AS is_new,
    coalesce(x.close_date >= {_MONTH_START} AND x.close_date <= x.as_of_date, FALSE) AS is_closed,
    x.balance AS balance, x.adb AS adb,
    CAST(NULL AS VARCHAR) AS five_class,
    CAST(0 AS DECIMAL(18, 2)) AS volume, CAST(0 AS DECIMAL(18, 2)) AS fee
FROM core_deposit_month AS x WHERE list_contains($dates, x.as_of_date)""",
    "LOAN": f"""
SELECT x.as_of_date, 'LOAN' AS category, x.product_code, x.customer_id,
    x.status = 'ACTIVE' AS held,
    coalesce(x.start_date >= {_MONTH_START}, FALSE) AS is_new,
    FALSE AS is_closed,
    CASE WHEN x.status <> 'WRITTEN_OFF' THEN x.balance ELSE 0 END AS balance,
    CASE WHEN x.status <> 'WRITTEN_OFF' THEN CAST(x.accum_balance / EXTRACT(DAY FROM x.as_of_date)
        AS DECIMAL(18, 2)) ELSE 0 END AS adb,
    CASE WHEN x.status <> 'WRITTEN_OFF' THEN x.five_class END AS five_class,
    CAST(0 AS DECIMAL(18, 2)) AS volume, CAST(0 AS DECIMAL(18, 2)) AS fee
FROM core_loan_month AS x WHERE list_contains($dates, x.as_of_date)""",
    "CARD": f"""
SELECT x.as_of_date, 'CARD' AS category, x.product_code, x.customer_id,
    x.status = 'ACTIVE' AS held,
    coalesce(x.issue_date >= {_MONTH_START}, FALSE) AS is_new,
    FALSE AS is_closed,
    coalesce(x.balance, 0) AS balance, coalesce(x.balance, 0) AS adb,
    CAST(NULL AS VARCHAR) AS five_class,
    CAST(0 AS DECIMAL(18, 2)) AS volume, CAST(0 AS DECIMAL(18, 2)) AS fee
FROM core_card_month AS x WHERE list_contains($dates, x.as_of_date)""",
    "WEALTH": f"""
SELECT x.as_of_date, 'WEALTH' AS category, x.product_code, x.customer_id,
    coalesce(x.market_value > 0, FALSE) AS held,
    coalesce(x.buy_date >= {_MONTH_START}, FALSE) AS is_new,
    FALSE AS is_closed,
    coalesce(x.market_value, 0) AS balance, coalesce(x.market_value, 0) AS adb,
    CAST(NULL AS VARCHAR) AS five_class,
    CAST(0 AS DECIMAL(18, 2)) AS volume, CAST(0 AS DECIMAL(18, 2)) AS fee
FROM core_wealth_month AS x WHERE list_contains($dates, x.as_of_date)""",
    "INTERMEDIATE": f"""
SELECT x.as_of_date, 'INTERMEDIATE' AS category, p.product_code, x.customer_id,
    x.status = 'OPEN' OR coalesce(x.issue_date >= {_MONTH_START}, FALSE) AS held,
    coalesce(x.issue_date >= {_MONTH_START}, FALSE) AS is_new,
    FALSE AS is_closed,
    CASE WHEN x.status = 'OPEN' THEN x.amount ELSE 0 END AS balance,
    CASE WHEN x.status = 'OPEN' THEN x.amount ELSE 0 END AS adb,
    CAST(NULL AS VARCHAR) AS five_class,
    CASE WHEN x.issue_date >= {_MONTH_START} THEN x.amount ELSE 0 END AS volume,
    CASE WHEN x.issue_date >= {_MONTH_START} THEN x.fee ELSE 0 END AS fee
FROM core_corp_business_month AS x
JOIN core_product AS p ON p.category = 'INTERMEDIATE' AND p.subtype = x.biz_type
WHERE list_contains($dates, x.as_of_date)""",
}


# ------------------------------------------------------------------------------------------------ plumbing

def _categories(category: str | Sequence[str] | None) -> tuple[str, ...]:
    if category is None:
        return CATEGORIES
    cats = (category,) if isinstance(category, str) else tuple(category)
    bad = [c for c in cats if c not in CATEGORIES]
    if bad or not cats:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, not {bad or cats!r}")
    return tuple(c for c in CATEGORIES if c in cats)


def facts_sql(categories: Sequence[str] = CATEGORIES) -> str:
    """The account-month facts of ``categories`` at the dates ``$dates`` (one row per account and month).

    Returns
    -------
    str
        A query with the named parameter ``$dates`` (list of DATE) giving ``as_of_date, category,
        product_code, customer_id, held, is_new, is_closed, balance, adb, five_class, volume, fee``.
    """
    return "\nUNION ALL BY NAME".join(_FACTS[c] for c in _categories(tuple(categories)))


def _scope(ctx: AnalysisContext, alias: str) -> tuple[str, dict[str, Any]]:
    """A join limiting the customer-keyed relation ``alias`` to the scope (nothing for a whole-bank view)."""
    cond, named = ctx.cust_cond("d")
    if cond.strip() == "TRUE":
        return "", {}
    return f"JOIN dim_customer AS d ON d.customer_id = {alias}.customer_id AND ({cond})", named


def _scoped_facts(ctx: AnalysisContext, categories: Sequence[str]) -> tuple[str, dict[str, Any]]:
    join, named = _scope(ctx, "f")
    return f"SELECT f.* FROM ({facts_sql(categories)}) AS f {join}", named


def catalogue(ctx: AnalysisContext, categories: Sequence[str] = CATEGORIES) -> pd.DataFrame:
    """The products of ``categories`` with their labels in ``ctx.lang``, in category and code order.

    Returns
    -------
    DataFrame
        ``category, category_label, product_code, label, product_name, subtype, term_months, launch_date``.
    """
    cats = _categories(tuple(categories))
    df = ctx.query(
        "SELECT product_code, product_name, category, subtype, term_months, launch_date FROM core_product "
        "WHERE list_contains($cats, category)",
        {"cats": list(cats)},
    )
    df["_o"] = df["category"].map({c: i for i, c in enumerate(CATEGORIES)})
    df = df.sort_values(["_o", "product_code"], ignore_index=True).drop(columns="_o")
    df["label"] = [_product_label(r, ctx.lang) for r in df.itertuples()]
    df["category_label"] = [code_label("product_category", c, _ui(ctx.lang)) for c in df["category"]]
    cols = ["category", "category_label", "product_code", "label", "product_name", "subtype", "term_months",
            "launch_date"]  # fmt: skip
    return df[cols]


def _product_label(r: Any, lang: str) -> str:
    if is_zh(lang):
        return str(r.product_name)
    sub = code_label("product_subtype", r.subtype, "en")
    term = r.term_months
    if r.category == "DEPOSIT" and r.subtype == "TIME" and term is not None and not pd.isna(term):
        sub = f"{sub} {int(term)}m"
    return f"{r.product_code} {sub}"


def _attrs(df: pd.DataFrame, ctx: AnalysisContext, key: str, **more: Any) -> pd.DataFrame:
    df.attrs.update(title=pick(TITLES[key], ctx.lang), as_of=ctx.day.isoformat(), org=ctx.org.code,
                    org_label=ctx.org.name, edition=ctx.edition, lang=ctx.lang, **more)  # fmt: skip
    return df


def _suppress(
    df: pd.DataFrame, principal: Principal, by: str | list[str] | None, count_col: str
) -> pd.DataFrame:
    """:func:`suppress_small` within each group of ``by`` (the rows whose shares add up together)."""
    if by is None or not len(df):
        return suppress_small(df, principal, count_col)
    parts = [suppress_small(g, principal, count_col) for _, g in df.groupby(by, sort=False, dropna=False)]
    return pd.concat(parts).sort_index()


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


# ------------------------------------------------------------------------------------------------ lifecycle
def months_between(start: dt.date, end: dt.date) -> int:
    """Whole calendar months from ``start`` to ``end`` (``2026-01-15 -> 2026-03-31`` is 2)."""
    return (end.year - start.year) * 12 + end.month - start.month


def lifecycle_stage(
    launch_date: dt.date | None, day: dt.date, window_growth: float, params: ProductParams
) -> str | None:
    """The lifecycle stage of a product at ``day``.

    Parameters
    ----------
    launch_date : date or None
        The product's launch date (``core_product.launch_date``).
    day : date
        The month-end.
    window_growth : float
        The growth of the stage measure over ``params.window_months`` (``current / base - 1``; ``inf``
        from nothing to something; NaN when unknown).
    params : ProductParams
        ``parameters/provincial.yaml`` ``product``.

    Returns
    -------
    str or None
        ``LAUNCH`` within ``launch_months`` of the launch; else ``GROWTH`` when the growth is at least
        ``growth_rate``, ``DECLINE`` when at most ``decline_rate``, ``MATURE`` between; None when the
        growth is unknown.
    """
    launched = launch_date is not None and not pd.isna(launch_date)
    if launched and months_between(pd.Timestamp(launch_date).date(), day) < params.launch_months:
        return "LAUNCH"
    g = _f(window_growth)
    if math.isnan(g):
        return None
    if g >= params.growth_rate:
        return "GROWTH"
    if g <= params.decline_rate:
        return "DECLINE"
    return "MATURE"


def _window_growth(cur: float, base: float) -> float:
    if math.isnan(cur) or math.isnan(base):
        return math.nan
    if base == 0:
        return math.inf if cur > 0 else math.nan
    return cur / base - 1.0


_AGG = """
    count(*) FILTER (WHERE s.is_new) AS new_accounts,
    count(*) FILTER (WHERE s.held) AS active_accounts,
    count(*) FILTER (WHERE s.is_closed) AS closed_exact,
    CAST(coalesce(sum(s.balance), 0) AS DOUBLE) AS balance,
    CAST(coalesce(sum(s.adb), 0) AS DOUBLE) AS adb,
    CAST(coalesce(sum(s.volume), 0) AS DOUBLE) AS volume,
    CAST(coalesce(sum(s.fee), 0) AS DOUBLE) AS fee_income"""


def _holders(
    ctx: AnalysisContext, cats: Sequence[str], *, categories: bool = False
) -> tuple[dict[str, int], dict[str, int]]:
    """Distinct customers holding each product, and (``categories``) any product of each category, at the
    as-of month.

    Distinct counts cost several times the plain sums over the account facts, so they are taken for one
    month only (comparisons and trends use account counts and balances), products by a de-duplication
    of (product, customer) pairs, categories from the customer mart's holding counts (the same "held"
    rules, see the module table) and, for intermediate business, which the mart does not count, from the
    facts.
    """
    inner, named = _scoped_facts(ctx, cats)
    sql = (
        f"SELECT u.product_code, count(*) AS holders FROM (SELECT DISTINCT s.product_code, s.customer_id "
        f"FROM ({inner}) AS s WHERE s.held) AS u GROUP BY 1"
    )
    raw = ctx.query(sql, {**named, "dates": [ctx.day]})
    prod = {str(k): int(v) for k, v in zip(raw["product_code"], raw["holders"], strict=True)}
    if not categories:
        return prod, {}
    join, jnamed = _scope(ctx, "m")
    mart = ctx.query(
        "SELECT count(*) FILTER (WHERE m.n_deposit_accounts > 0) AS DEPOSIT, "
        "count(*) FILTER (WHERE m.n_active_loans > 0) AS LOAN, "
        "count(*) FILTER (WHERE m.n_debit_cards + m.n_credit_cards > 0) AS CARD, "
        f"count(*) FILTER (WHERE m.wealth_aum > 0) AS WEALTH FROM mart_customer_month AS m {join} "
        "WHERE m.as_of_date = $day",
        {**jnamed, "day": ctx.day},
    ).iloc[0]
    cat = {c: int(mart[c]) for c in ("DEPOSIT", "LOAN", "CARD", "WEALTH") if c in cats}
    if "INTERMEDIATE" in cats:
        ib, ibn = _scoped_facts(ctx, ("INTERMEDIATE",))
        n = ctx.query(f"SELECT count(DISTINCT s.customer_id) AS n FROM ({ib}) AS s WHERE s.held",
                      {**ibn, "dates": [ctx.day]})  # fmt: skip
        cat["INTERMEDIATE"] = int(n["n"].iloc[0])
    return prod, cat


def _product_months(ctx: AnalysisContext, cats: Sequence[str], dates: Sequence[dt.date]) -> pd.DataFrame:
    """Per product and month of ``dates``: the :data:`_AGG` measures (one scan, no distinct counts), a
    zero row for every catalogue product in every month."""
    inner, named = _scoped_facts(ctx, cats)
    sql = f"SELECT s.as_of_date, s.product_code, {_AGG} FROM ({inner}) AS s GROUP BY 1, 2"
    df = ctx.query(sql, {**named, "dates": list(dates)})
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date
    cat = catalogue(ctx, cats)
    grid = pd.MultiIndex.from_product(
        [list(dates), cat["product_code"]], names=["as_of_date", "product_code"]
    )
    df = df.set_index(["as_of_date", "product_code"]).reindex(grid).reset_index()
    num = [c for c in df.columns if c not in ("as_of_date", "product_code")]
    df[num] = df[num].fillna(0)
    for c in ("new_accounts", "active_accounts", "closed_exact"):
        df[c] = df[c].astype("int64")
    return cat.merge(df, on="product_code", how="right")


def product_lifecycle(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    category: str | Sequence[str] | None = None,
    months: int = 12,
) -> pd.DataFrame:
    """Per product and month: new, active and closed accounts, balances and the lifecycle stage.

    Parameters
    ----------
    principal : Principal
        Who asks (row scope; small groups blanked for roles without detail).
    as_of : str, date or None
        The last month (``YYYY-MM``); the latest when None.
    org : str, optional
        The focus org (county or branch) within the principal's scope.
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN`` labels.
    category : str or sequence, optional
        Some of :data:`CATEGORIES`; all when None.
    months : int
        The months shown (up to the as-of month); the stage also reads ``window_months`` earlier months.

    Returns
    -------
    DataFrame
        One row per product and month: ``category, category_label, product_code, label, as_of_date,
        new_accounts, active_accounts, closed_accounts, balance, adb`` (deposits and loans; the
        month-end value for the others), ``volume, fee_income, stage_basis`` (the measure the stage reads:
        ``balance``, else ``volume``, else ``active_accounts``), ``window_growth``, ``stage``,
        ``stage_label``, ``suppressed``. ``attrs['stages']`` maps each product to its stage at the as-of
        month, ``attrs['holders']`` to its customers then. For roles without detail a product with fewer
        than ``min_cell`` customers at the as-of month is blanked in every month, and so is a month with
        fewer than ``min_cell`` active accounts (fewer customers, then, too).
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    cats = _categories(category)
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        p = ctx.params.product
        shown = ctx.trend_dates(months)
        # the months the stage compares with (window_months before each shown month) and the month
        # before the first (net closures)
        need = set(shown)
        for d in shown:
            need.add(_months_back(d, p.window_months))
            need.add(_months_back(d, 1))
        dates = [d for d in ctx.dates if d in need]
        df = _product_months(ctx, cats, dates)
        df = _lifecycle_frame(df, shown, p, ctx.lang)
        holders, _ = _holders(ctx, cats)
        df = _suppress_lifecycle(df, principal, holders, ctx.lang)
        last = df[df["as_of_date"] == ctx.day]
        stages = dict(zip(last["product_code"], last["stage"], strict=True))
        return _attrs(df, ctx, "lifecycle", stages=stages, months=[d.isoformat() for d in shown],
                      holders=holders)  # fmt: skip


def _suppress_lifecycle(
    df: pd.DataFrame, principal: Principal, holders: dict[str, int], lang: str
) -> pd.DataFrame:
    """Blank a product with few customers at the as-of month (every month), then small months; a blanked
    row's stage (which the numbers decide) goes too."""
    out = _suppress(df, principal, "as_of_date", "active_accounts")
    if principal.can_view_detail or not len(out):
        return out
    k = int(getattr(principal, "min_cell", 5) or 5)
    few = out["product_code"].map(lambda c: 0 < holders.get(c, 0) < k).astype(bool)
    num = [c for c in out.select_dtypes("number").columns]
    out.loc[few, num] = math.nan
    out["suppressed"] = out["suppressed"].astype(bool) | few
    out.loc[out["suppressed"], "stage"] = None
    out.loc[out["suppressed"], "stage_label"] = pick(SUPPRESSED_LABEL, lang)
    return out


def _months_back(day: dt.date, n: int) -> dt.date:
    k = day.year * 12 + day.month - 1 - n
    return month_end(k // 12, k % 12 + 1)


def _lifecycle_frame(df: pd.DataFrame, shown: Sequence[dt.date], p: ProductParams, lang: str) -> pd.DataFrame:
    """Closures, stage basis, window growth and stage from :func:`_product_months`'s frame."""
    df = df.sort_values(["product_code", "as_of_date"], ignore_index=True)
    key = df.set_index(["product_code", "as_of_date"])
    basis: dict[str, str] = {}
    for code, g in df.groupby("product_code"):
        basis[str(code)] = (
            "balance"
            if (g["balance"] > 0).any()
            else "volume"
            if (g["volume"] > 0).any()
            else "active_accounts"
        )
    closed, wgrowth, stage = [], [], []
    for r in df.itertuples():
        prev = (r.product_code, _months_back(r.as_of_date, 1))
        if r.category == "DEPOSIT":
            closed.append(float(r.closed_exact))
        elif prev in key.index:
            closed.append(float(key.at[prev, "active_accounts"] + r.new_accounts - r.active_accounts))
        else:
            closed.append(math.nan)
        b = basis[r.product_code]
        base = (r.product_code, _months_back(r.as_of_date, p.window_months))
        g = _window_growth(float(getattr(r, b)), float(key.at[base, b])) if base in key.index else math.nan
        wgrowth.append(g)
        stage.append(lifecycle_stage(r.launch_date, r.as_of_date, g, p))
    df["closed_accounts"] = closed
    df["stage_basis"] = df["product_code"].map(basis)
    df["window_growth"] = wgrowth
    df["stage"] = stage
    df["stage_label"] = [pick(STAGE_LABELS[s], lang) for s in stage]
    df = df[df["as_of_date"].isin(set(shown))]
    df["_o"] = df["category"].map({c: i for i, c in enumerate(CATEGORIES)})
    df = df.sort_values(["_o", "product_code", "as_of_date"], ignore_index=True)
    cols = ["category", "category_label", "product_code", "label", "as_of_date", "new_accounts",
            "active_accounts", "closed_accounts", "balance", "adb", "volume", "fee_income",
            "stage_basis", "window_growth", "stage", "stage_label"]  # fmt: skip
    return df[cols]


# ------------------------------------------------------------------------------------------------ structure
def product_structure(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    category: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Balance, account and customer mix by product within its category, against last month and last year.

    Parameters
    ----------
    principal, as_of, org, home, lang, category
        As :func:`product_lifecycle`.

    Returns
    -------
    DataFrame
        One row per product: ``category, category_label, product_code, label, balance, balance_share``
        (of the category's balance), ``active_accounts, account_share, holders, holder_share`` (of the
        category's holdings), ``penetration`` (holders / customers holding any product of the category),
        ``category_holders``, and for ``balance`` and ``active_accounts`` the ``_prev_month`` and
        ``_last_year`` values with their ``_growth``; ``suppressed``. Shares of a category add up to 1.
    """
    cats = _categories(category)
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        per = ctx.periods
        dates = dates_param([per["current"], per["prev_month"], per["last_year"]])
        raw = _product_months(ctx, cats, dates)
        holders, cat_holders = _holders(ctx, cats, categories=True)
        df = structure_frame(raw, catalogue(ctx, cats), per, holders, cat_holders)
        df = _suppress(df, principal, "category", "holders")
        return _attrs(df, ctx, "structure")


def structure_frame(
    raw: pd.DataFrame,
    cat: pd.DataFrame,
    periods: dict[str, dt.date | None],
    holders: dict[str, int],
    cat_holders: dict[str, int],
) -> pd.DataFrame:
    """:func:`product_structure`'s frame from the per product aggregates at the comparison dates and the
    holders (per product and per category) at the as-of month."""
    cur = periods["current"]
    prod = raw.set_index(["as_of_date", "product_code"])
    df = cat[["category", "category_label", "product_code", "label"]].copy()

    def val(d: dt.date | None, code: str, col: str) -> float:
        if d is None:
            return math.nan
        return float(prod.at[(d, code), col]) if (d, code) in prod.index else 0.0

    for col in ("balance", "active_accounts"):
        df[col] = [val(cur, c, col) for c in df["product_code"]]
    df["active_accounts"] = df["active_accounts"].astype("int64")
    df["holders"] = [holders.get(c, 0) for c in df["product_code"]]
    tot = df.groupby("category")[["balance", "active_accounts", "holders"]].transform("sum")
    df["balance_share"] = df["balance"] / tot["balance"].where(tot["balance"] != 0)
    df["account_share"] = df["active_accounts"] / tot["active_accounts"].where(tot["active_accounts"] != 0)
    df["holder_share"] = df["holders"] / tot["holders"].where(tot["holders"] != 0)
    df["category_holders"] = [cat_holders.get(c, 0) for c in df["category"]]
    df["penetration"] = df["holders"] / df["category_holders"].where(df["category_holders"] > 0)
    for col in ("balance", "active_accounts"):
        for k in ("prev_month", "last_year"):
            base = [val(periods[k], c, col) for c in df["product_code"]]
            df[f"{col}_{k}"] = base
            df[f"{col}_{k}_growth"] = [growth(a, b) for a, b in zip(df[col], base, strict=True)]
    cols = ["category", "category_label", "product_code", "label", "balance", "balance_share"]
    cols += ["active_accounts", "account_share", "holders", "holder_share", "penetration", "category_holders"]
    for col in ("balance", "active_accounts"):
        for k in ("prev_month", "last_year"):
            cols += [f"{col}_{k}", f"{col}_{k}_growth"]
    return df[cols]


# ------------------------------------------------------------------------------------------------- income
def product_income(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    category: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Income and FTP contribution per product for the month, and the contribution per account.

    Parameters
    ----------
    principal, as_of, org, home, lang, category
        As :func:`product_lifecycle`.

    Returns
    -------
    DataFrame
        One row per product, plus the ``UNALLOCATED`` row (account fees of ``mart_fee_month`` and
        transaction costs, which belong to no product) when all categories are asked for:
        ``category, category_label, product_code, label, active_accounts, holders, balance, adb,
        new_accounts, volume, deposit_nii, loan_nii, fee_income, operating_cost, expected_loss,
        contribution, contribution_per_account, contribution_share, suppressed``. The FTP parts come from
        :func:`cimlib.value.contribution_by_product_sql`; intermediate-business fees (new business of the
        month) are the ``fee_income`` and ``contribution`` of their products. Without them (and without
        intermediate fees) the rows add up to :func:`cimlib.value.contribution` over the same customers.
    """
    from cimlib.value import contribution_by_product_sql, load_value_params

    cats = _categories(category)
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        cat = catalogue(ctx, cats)
        inner, named = _scoped_facts(ctx, cats)
        facts = ctx.query(f"SELECT s.product_code, {_AGG} FROM ({inner}) AS s GROUP BY 1",
                          {**named, "dates": [ctx.day]})  # fmt: skip
        holders, _ = _holders(ctx, cats)
        facts["holders"] = facts["product_code"].map(holders).fillna(0)
        join, cnamed = _scope(ctx, "c")
        comps = ("deposit_nii", "loan_nii", "fee_income", "operating_cost", "expected_loss", "contribution")
        sums = ", ".join(f"CAST(coalesce(sum(c.{x}), 0) AS DOUBLE) AS {x}" for x in comps)
        sql = (
            f"SELECT coalesce(c.product_code, '{UNALLOCATED}') AS product_code, {sums} "
            f"FROM ({contribution_by_product_sql(load_value_params(ctx.home))}) AS c {join} GROUP BY 1"
        )
        contrib = ctx.query(sql, {**cnamed, "as_of": ctx.day})
        df = income_frame(cat, facts, contrib, with_unallocated=cats == CATEGORIES, lang=ctx.lang)
        df = _suppress(df, principal, None, "holders")
        return _attrs(df, ctx, "income")


def income_frame(
    cat: pd.DataFrame, facts: pd.DataFrame, contrib: pd.DataFrame, *, with_unallocated: bool, lang: str
) -> pd.DataFrame:
    """:func:`product_income`'s frame from the catalogue, the month's facts and the FTP parts by product."""
    comps = ["deposit_nii", "loan_nii", "operating_cost", "expected_loss", "contribution"]
    df = cat[["category", "category_label", "product_code", "label"]].copy()
    if with_unallocated:
        df = pd.concat([df, pd.DataFrame([{"category": None, "category_label": "",
                                           "product_code": UNALLOCATED,
                                           "label": pick(UNALLOCATED_LABEL, lang)}])],
                       ignore_index=True)  # fmt: skip
    f = facts.set_index("product_code")
    c = contrib.set_index("product_code")
    for col in ("active_accounts", "holders", "balance", "adb", "new_accounts", "volume"):
        df[col] = [float(f.at[p, col]) if p in f.index else 0.0 for p in df["product_code"]]
    ib_fee = [float(f.at[p, "fee_income"]) if p in f.index else 0.0 for p in df["product_code"]]
    for col in comps:
        df[col] = [float(c.at[p, col]) if p in c.index else 0.0 for p in df["product_code"]]
    ftp_fee = [float(c.at[p, "fee_income"]) if p in c.index else 0.0 for p in df["product_code"]]
    df["fee_income"] = [a + b for a, b in zip(ftp_fee, ib_fee, strict=True)]
    df["contribution"] = df["contribution"] + pd.Series(ib_fee, index=df.index)
    for col in ("active_accounts", "holders", "new_accounts"):
        df[col] = df[col].astype("int64")
    df["contribution_per_account"] = df["contribution"] / df["active_accounts"].where(
        df["active_accounts"] > 0
    )
    total = float(df["contribution"].sum())
    df["contribution_share"] = df["contribution"] / total if total else math.nan
    cols = ["category", "category_label", "product_code", "label", "active_accounts", "holders", "balance",
            "adb", "new_accounts", "volume", "deposit_nii", "loan_nii", "fee_income", "operating_cost",
            "expected_loss", "contribution", "contribution_per_account", "contribution_share"]  # fmt: skip
    return df[cols]


# --------------------------------------------------------------------------------------------------- risk
def _loan_sql(ctx: AnalysisContext) -> tuple[str, dict[str, Any]]:
    join, named = _scope(ctx, "x")
    npl = ", ".join(f"'{c}'" for c in NPL_CLASSES)
    by_class = ", ".join(
        f"CAST(coalesce(sum(x.balance) FILTER (WHERE x.status <> 'WRITTEN_OFF' AND x.five_class = '{c}'), 0) "
        f"AS DOUBLE) AS bal_{c.lower()}, "
        f"count(*) FILTER (WHERE x.status = 'ACTIVE' AND x.five_class = '{c}') AS n_{c.lower()}"
        for c in FIVE_CLASSES
    )
    sql = f"""
SELECT x.as_of_date, x.product_code,
    count(*) FILTER (WHERE x.status = 'ACTIVE') AS loans,
    count(DISTINCT x.customer_id) FILTER (WHERE x.status = 'ACTIVE') AS borrowers,
    CAST(coalesce(sum(x.balance) FILTER (WHERE x.status <> 'WRITTEN_OFF'), 0) AS DOUBLE) AS loan_balance,
    CAST(coalesce(sum(x.balance) FILTER (WHERE x.status <> 'WRITTEN_OFF' AND x.five_class IN ({npl})), 0)
        AS DOUBLE) AS npl_balance,
    {by_class}
FROM core_loan_month AS x {join}
WHERE list_contains($dates, x.as_of_date)
GROUP BY 1, 2"""
    return sql, named


def loan_risk(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """NPL balance and ratio by loan product (NPL = substandard + doubtful + loss), with comparisons.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`product_lifecycle`.

    Returns
    -------
    DataFrame
        One row per loan product: ``product_code, label, subtype, loans, borrowers, loan_balance``
        (written-off loans excluded), ``npl_balance, npl_ratio``, the balance of each class ``normal_balance …
        loss_balance``, ``npl_ratio_prev_month, npl_ratio_last_year`` and their ``_change`` (percentage
        points as fractions), ``loan_balance_prev_month, loan_balance_last_year``, ``suppressed``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        per = ctx.periods
        sql, named = _loan_sql(ctx)
        raw = ctx.query(
            sql, {**named, "dates": dates_param([per["current"], per["prev_month"], per["last_year"]])}
        )
        raw["as_of_date"] = pd.to_datetime(raw["as_of_date"]).dt.date
        df = risk_frame(raw, catalogue(ctx, ("LOAN",)), per)
        df = _suppress(df, principal, None, "borrowers")
        return _attrs(df, ctx, "risk")


def risk_frame(raw: pd.DataFrame, cat: pd.DataFrame, periods: dict[str, dt.date | None]) -> pd.DataFrame:
    """:func:`loan_risk`'s frame from the per product and date loan aggregates of :func:`_loan_sql`."""
    r = raw.set_index(["as_of_date", "product_code"])
    df = cat[["product_code", "label", "subtype"]].copy()

    def val(d: dt.date | None, code: str, col: str) -> float:
        if d is None:
            return math.nan
        return float(r.at[(d, code), col]) if (d, code) in r.index else 0.0

    cur = periods["current"]
    for col in ("loans", "borrowers", "loan_balance", "npl_balance"):
        df[col] = [val(cur, c, col) for c in df["product_code"]]
    df["loans"] = df["loans"].astype("int64")
    df["borrowers"] = df["borrowers"].astype("int64")
    df["npl_ratio"] = df["npl_balance"] / df["loan_balance"].where(df["loan_balance"] > 0)
    for c in FIVE_CLASSES:
        df[f"{c.lower()}_balance"] = [val(cur, p, f"bal_{c.lower()}") for p in df["product_code"]]
    for k in ("prev_month", "last_year"):
        lb = pd.Series([val(periods[k], p, "loan_balance") for p in df["product_code"]], index=df.index)
        nb = pd.Series([val(periods[k], p, "npl_balance") for p in df["product_code"]], index=df.index)
        df[f"loan_balance_{k}"] = lb
        df[f"npl_ratio_{k}"] = nb / lb.where(lb > 0)
        df[f"npl_ratio_{k}_change"] = df["npl_ratio"] - df[f"npl_ratio_{k}"]
    return df


def five_class_mix(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The five-tier class mix of each loan product's balance (long form, for stacked bars).

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`product_lifecycle`.

    Returns
    -------
    DataFrame
        One row per loan product and class: ``product_code, label, five_class, class_label, is_npl,
        loans, balance, share`` (of the product's balance; a product's shares add up to 1), ``borrowers``
        (of the product), ``suppressed``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        sql, named = _loan_sql(ctx)
        raw = ctx.query(sql, {**named, "dates": [ctx.day]})
        cat = catalogue(ctx, ("LOAN",))
        r = raw.set_index("product_code")
        rows = []
        for p in cat.itertuples():
            have = p.product_code in r.index
            total = float(r.at[p.product_code, "loan_balance"]) if have else 0.0
            for c in FIVE_CLASSES:
                bal = float(r.at[p.product_code, f"bal_{c.lower()}"]) if have else 0.0
                rows.append({
                    "product_code": p.product_code, "label": p.label, "five_class": c,
                    "class_label": code_label("five_class", c, _ui(lang)), "is_npl": c in NPL_CLASSES,
                    "loans": int(r.at[p.product_code, f"n_{c.lower()}"]) if have else 0, "balance": bal,
                    "share": bal / total if total else math.nan,
                    "borrowers": int(r.at[p.product_code, "borrowers"]) if have else 0,
                })  # fmt: skip
        # a product with few borrowers is blanked whole (all its classes)
        df = _suppress_by_product(pd.DataFrame(rows), principal)
        return _attrs(df, ctx, "five_class")


def _suppress_by_product(df: pd.DataFrame, principal: Principal) -> pd.DataFrame:
    if not len(df):
        return suppress_small(df, principal, "borrowers")
    per = df.groupby("product_code", sort=False)["borrowers"].first().reset_index()
    flags = suppress_small(per, principal, "borrowers").set_index("product_code")["suppressed"]
    out = df.copy()
    out["suppressed"] = out["product_code"].map(flags).astype(bool)
    num = [c for c in out.select_dtypes("number").columns]
    out[num] = out[num].astype(float)
    out.loc[out["suppressed"], num] = math.nan
    return out


# ------------------------------------------------------------------------------------------- composition
#: Columns of the segment base (:func:`cimlib.segmentation._dimensions.base_sql`) computed from the account
#: facts or the FTP; a dimension on any other column reads the light base below, a third of the cost.
_DERIVED = frozenset(
    {"main_channel", "main_loan_form", "main_loan_product", "main_deposit_product", "contribution"}
)
_LIGHT_BASE = """
SELECT m.*, d.county_code, d.home_org_code, d.age, d.monthly_income, d.education, d.occupation, d.sex,
    d.economic_nature, d.enterprise_form, d.industry
FROM mart_customer_month AS m
JOIN dim_customer AS d ON d.customer_id = m.customer_id
WHERE m.as_of_date = $as_of"""


def product_composition(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    by: str = "customer_type",
    category: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Which segments hold each product: holders per member of a segmentation dimension.

    Parameters
    ----------
    principal, as_of, org, home, lang, category
        As :func:`product_lifecycle`.
    by : str
        A dimension id of ``parameters/dimensions.yaml`` (``customer_type``, ``age``, ``aum``,
        ``monthly_income``, ``industry`` …); a dimension of one customer type reads only that type.

    Returns
    -------
    DataFrame
        One row per product and member: ``category, product_code, label, dimension, member, member_label,
        holders, holder_share`` (of the product's holders; adds up to 1 per product), ``balance``,
        ``member_customers`` (customers of the member in scope), ``penetration`` (holders /
        member_customers), ``suppressed``.
    """
    from cimlib.segmentation._dimensions import base_sql, load_dimensions, prepare
    from cimlib.targeting._run import to_pandas

    cats = _categories(category)
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        dim = load_dimensions(ctx.home)[by]
        contribution = dim.column == "contribution"
        base = base_sql(contribution=contribution).rstrip() if dim.column in _DERIVED else _LIGHT_BASE
        if not base.endswith("WHERE m.as_of_date = $as_of"):
            raise RuntimeError("the segment base no longer ends with its as-of condition")
        cond, named = ctx.cust_cond("d")
        types = ", ".join(f"'{t}'" for t in dim.applies if t in ("I", "C"))
        sql = f"""
WITH h AS (
    SELECT f.category, f.product_code, f.customer_id, sum(f.balance) AS balance
    FROM ({facts_sql(cats)}) AS f WHERE f.held GROUP BY 1, 2, 3
),
b AS (
    SELECT s.customer_id, {dim.member_sql("s")} AS member
    FROM ({base} AND ({cond})) AS s WHERE s.customer_type IN ({types})
)
SELECT h.product_code, b.member, count(*) AS holders, CAST(sum(h.balance) AS DOUBLE) AS balance
FROM h JOIN b ON b.customer_id = h.customer_id GROUP BY 1, 2
UNION ALL
SELECT NULL AS product_code, b.member, count(*) AS holders, NULL AS balance FROM b GROUP BY 2"""
        params = {**named, "as_of": ctx.day, "dates": [ctx.day]}
        with ctx.snap.all_cores() as con:
            if contribution:
                prepare(con, ctx.home)
            raw = to_pandas(con.sql(sql, params=params).to_arrow_table())
        df = composition_frame(raw, catalogue(ctx, cats), dim, ctx.lang)
        df = _suppress(df, principal, "product_code", "holders")
        return _attrs(df, ctx, "composition", dimension=dim.id, dimension_label=pick(dim.label, ctx.lang))


def composition_frame(raw: pd.DataFrame, cat: pd.DataFrame, dim: Any, lang: str) -> pd.DataFrame:
    """:func:`product_composition`'s frame: every product x every member of ``dim`` (zeros where none)."""
    members = [m for m, _ in dim.members] if dim.members else sorted(raw["member"].dropna().unique().tolist())
    extra = sorted(set(raw["member"].dropna()) - set(members))
    members = members + extra + ([None] if raw["member"].isna().any() else [])
    base = raw[raw["product_code"].isna()].set_index("member")["holders"]
    hold = raw[raw["product_code"].notna()].set_index(["product_code", "member"])
    rows = []
    for p in cat.itertuples():
        for m in members:
            k = (p.product_code, m)
            have = k in hold.index
            rows.append({
                "category": p.category, "product_code": p.product_code, "label": p.label, "dimension": dim.id,
                "member": m, "member_label": dim.label_of(m, lang) if m is not None else pick(
                    {"en": "Not in a member", "zh": "未归类"}, lang),
                "holders": int(hold.at[k, "holders"]) if have else 0,
                "balance": float(hold.at[k, "balance"]) if have else 0.0,
                "member_customers": int(base.get(m, 0)) if m is not None else int(raw.loc[
                    raw["product_code"].isna() & raw["member"].isna(), "holders"].sum()),
            })  # fmt: skip
    df = pd.DataFrame(rows)
    tot = df.groupby("product_code")["holders"].transform("sum")
    df["holder_share"] = df["holders"] / tot.where(tot > 0)
    df["penetration"] = df["holders"] / df["member_customers"].where(df["member_customers"] > 0)
    cols = ["category", "product_code", "label", "dimension", "member", "member_label", "holders",
            "holder_share", "balance", "member_customers", "penetration"]  # fmt: skip
    return df[cols]


# --------------------------------------------------------------------------------------------- cross-holding
def _holdings_sql(ctx: AnalysisContext) -> tuple[str, dict[str, Any]]:
    """Distinct (customer, product) held at the as-of month in scope, and the month's customers in scope."""
    inner, named = _scoped_facts(ctx, CATEGORIES)
    join, _ = _scope(ctx, "m")
    sql = f"""
h AS (SELECT DISTINCT s.customer_id, s.product_code FROM ({inner}) AS s WHERE s.held),
n AS (SELECT m.customer_id FROM mart_customer_month AS m {join} WHERE m.as_of_date = $day)"""
    return sql, {**named, "dates": [ctx.day], "day": ctx.day}


def products_per_customer(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """How many distinct products the month's customers hold (all five categories).

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`product_lifecycle`.

    Returns
    -------
    DataFrame
        One row per count ``n_products`` (0 up to the largest), ``label, customers, customer_share``
        (adds up to 1), ``suppressed``; ``attrs['mean']`` is the mean products per customer.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        ctes, params = _holdings_sql(ctx)
        sql = f"""WITH {ctes},
c AS (SELECT n.customer_id, count(h.product_code) AS k FROM n LEFT JOIN h ON h.customer_id = n.customer_id
      GROUP BY 1)
SELECT k AS n_products, count(*) AS customers FROM c GROUP BY 1 ORDER BY 1"""
        raw = ctx.query(sql, params)
        top = int(raw["n_products"].max()) if len(raw) else 0
        df = pd.DataFrame({"n_products": range(top + 1)}).merge(raw, on="n_products", how="left").fillna(0)
        df["n_products"] = df["n_products"].astype("int64")
        df["customers"] = df["customers"].astype("int64")
        total = int(df["customers"].sum())
        mean = float((df["n_products"] * df["customers"]).sum() / total) if total else math.nan
        df["customer_share"] = df["customers"] / total if total else math.nan
        df.insert(1, "label", [str(k) if not is_zh(lang) else f"{k}个" for k in df["n_products"]])
        keys = df["n_products"].copy()
        df = suppress_small(df, principal, "customers")
        df["n_products"] = keys
        return _attrs(df, ctx, "per_customer", mean=mean, customers=total)


def product_pairs(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    min_customers: int | None = None,
) -> pd.DataFrame:
    """Product pairs held together: customers holding both, support, holding rates and lift.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`product_lifecycle`.
    min_customers : int, optional
        The least customers holding both for a pair to be reported; default ``product.min_pair_customers``
        of ``parameters/provincial.yaml`` (never below ``principal.min_cell`` for roles without detail).

    Returns
    -------
    DataFrame
        One row per unordered pair (``product_a < product_b``): ``product_a, label_a, product_b, label_b,
        customers`` (holding both), ``holders_a, holders_b, support`` (customers / all customers),
        ``confidence_ab`` (P(B | A)), ``confidence_ba``, ``lift`` (P(A and B) / (P(A) P(B))),
        ``category_a, category_b``; by lift, largest first. ``attrs['customers']`` is all customers of
        the month in scope.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        floor = _pair_floor(ctx, principal, min_customers)
        raw, n = _pairs_raw(ctx)
        df = pairs_frame(raw, n, catalogue(ctx), floor)
        return _attrs(df, ctx, "pairs", customers=n, min_customers=floor)


def _pair_floor(ctx: AnalysisContext, principal: Principal, min_customers: int | None) -> int:
    floor = ctx.params.product.min_pair_customers if min_customers is None else int(min_customers)
    if floor < 1:
        raise ValueError("min_customers must be at least 1")
    if not principal.can_view_detail:
        floor = max(floor, int(getattr(principal, "min_cell", 5) or 5))
    return floor


def _pairs_raw(ctx: AnalysisContext) -> tuple[pd.DataFrame, int]:
    ctes, params = _holdings_sql(ctx)
    sql = f"""WITH {ctes},
hh AS (SELECT h.* FROM h JOIN n ON n.customer_id = h.customer_id),
k AS (SELECT product_code, count(*) AS holders FROM hh GROUP BY 1),
p AS (SELECT a.product_code AS product_a, b.product_code AS product_b, count(*) AS customers
      FROM hh AS a JOIN hh AS b ON a.customer_id = b.customer_id AND a.product_code < b.product_code
      GROUP BY 1, 2)
SELECT p.product_a, p.product_b, p.customers, ka.holders AS holders_a, kb.holders AS holders_b,
    (SELECT count(*) FROM n) AS n
FROM p JOIN k AS ka ON ka.product_code = p.product_a JOIN k AS kb ON kb.product_code = p.product_b"""
    raw = ctx.query(sql, params)
    if len(raw):
        n = int(raw["n"].iloc[0])
    else:
        n = int(ctx.query(f"WITH {ctes} SELECT count(*) AS n FROM n", params)["n"].iloc[0])
    return raw.drop(columns="n"), n


def pairs_frame(raw: pd.DataFrame, n: int, cat: pd.DataFrame, floor: int) -> pd.DataFrame:
    """:func:`product_pairs`'s frame from the pair counts (``product_a, product_b, customers, holders_a,
    holders_b``) and the customer count ``n``."""
    df = raw[raw["customers"] >= floor].copy()
    labels = dict(zip(cat["product_code"], cat["label"], strict=True))
    cats = dict(zip(cat["product_code"], cat["category"], strict=True))
    for c in ("customers", "holders_a", "holders_b"):
        df[c] = df[c].astype("int64")
    df["support"] = df["customers"] / n if n else math.nan
    df["confidence_ab"] = df["customers"] / df["holders_a"]
    df["confidence_ba"] = df["customers"] / df["holders_b"]
    df["lift"] = df["customers"] * n / (df["holders_a"] * df["holders_b"]) if n else math.nan
    df.insert(1, "label_a", df["product_a"].map(labels))
    df.insert(3, "label_b", df["product_b"].map(labels))
    df["category_a"] = df["product_a"].map(cats)
    df["category_b"] = df["product_b"].map(cats)
    return df.sort_values(["lift", "customers"], ascending=False, ignore_index=True)


def next_product(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    top: int = 3,
    min_customers: int | None = None,
    min_lift: float = 1.0,
) -> pd.DataFrame:
    """A ranked "next product" list per product: for holders of A, the products B they most often also hold.

    The rate is P(B | A), the share of A's holders who hold B; the customers holding A but not B
    (``prospects``) are those the list suggests B to (drill: :func:`next_product_customers`).

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`product_lifecycle`.
    top : int
        Candidates per product.
    min_customers : int, optional
        As :func:`product_pairs`.
    min_lift : float
        Only candidates that holders of A hold more often than customers at large (lift above this);
        candidates every holder of A already holds (no prospects) are left out.

    Returns
    -------
    DataFrame
        ``product_code, label, rank, next_product, next_label, holders`` (of A), ``customers`` (holding
        both), ``confidence`` (P(B | A)), ``lift, prospects`` (holders of A without B), ordered by product
        and rank.
    """
    if top < 1:
        raise ValueError("top must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        floor = _pair_floor(ctx, principal, min_customers)
        raw, n = _pairs_raw(ctx)
        cat = catalogue(ctx)
        pairs = pairs_frame(raw, n, cat, floor)
        df = next_product_frame(pairs, cat, top, min_lift)
        return _attrs(df, ctx, "next_product", customers=n, min_customers=floor)


def next_product_frame(
    pairs: pd.DataFrame, cat: pd.DataFrame, top: int, min_lift: float = 1.0
) -> pd.DataFrame:
    """Both directions of each pair of :func:`pairs_frame` with prospects and a lift above ``min_lift``,
    ranked per product by P(B | A), then lift."""
    ab = pairs.rename(
        columns={
            "product_a": "product_code",
            "label_a": "label",
            "product_b": "next_product",
            "label_b": "next_label",
            "holders_a": "holders",
            "confidence_ab": "confidence",
        }
    )
    ba = pairs.rename(
        columns={
            "product_b": "product_code",
            "label_b": "label",
            "product_a": "next_product",
            "label_a": "next_label",
            "holders_b": "holders",
            "confidence_ba": "confidence",
        }
    )
    cols = [
        "product_code",
        "label",
        "next_product",
        "next_label",
        "holders",
        "customers",
        "confidence",
        "lift",
    ]
    df = pd.concat([ab[cols], ba[cols]], ignore_index=True)
    df["prospects"] = (df["holders"] - df["customers"]).astype("int64")
    df = df[(df["prospects"] > 0) & (df["lift"] > min_lift)]
    order = {p: i for i, p in enumerate(cat["product_code"])}
    df["_o"] = df["product_code"].map(order)
    df = df.sort_values(["_o", "confidence", "lift", "next_product"], ascending=[True, False, False, True])
    df["rank"] = df.groupby("product_code").cumcount() + 1
    df = df[df["rank"] <= top].drop(columns="_o").reset_index(drop=True)
    return df[["product_code", "label", "rank", "next_product", "next_label", "holders", "customers",
               "confidence", "lift", "prospects"]]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- drills
def _check_code(ctx: AnalysisContext, code: str) -> pd.Series:
    if not isinstance(code, str) or not _CODE.match(code):
        raise ValueError(f"not a product code: {code!r}")
    cat = catalogue(ctx)
    row = cat[cat["product_code"] == code]
    if not len(row):
        raise ValueError(f"no product {code!r} in core_product")
    return row.iloc[0]


def product_customers(
    principal: Principal,
    product_code: str,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers holding a product at the month (county edition): scoped, masked, audit-logged.

    Parameters
    ----------
    principal : Principal
        Who asks; needs single-customer detail (the provincial edition is refused, and the refusal audited).
    product_code : str
        A product of ``core_product``.
    as_of, org, home, lang
        As :func:`product_lifecycle`.
    limit : int
        Rows returned, largest balance first (``attrs['total']`` counts all).
    app_url : str, optional
        The base URL of the customer 360 app for the ``link`` column.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, product_code, accounts, balance, adb`` plus masked identity columns and
        ``link``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        p = _check_code(ctx, product_code)
        cond, named = ctx.cust_cond("d")
        core = f"""
SELECT f.customer_id, any_value(d.customer_type) AS customer_type, f.product_code,
    count(*) AS accounts, CAST(sum(f.balance) AS DOUBLE) AS balance, CAST(sum(f.adb) AS DOUBLE) AS adb
FROM ({facts_sql((p["category"],))}) AS f
JOIN dim_customer AS d ON d.customer_id = f.customer_id AND ({cond})
WHERE f.held AND f.product_code = $pc
GROUP BY f.customer_id, f.product_code"""
        return drill_customers(ctx, "analysis_drill_product", product_code, core,
                               {**named, "dates": [ctx.day], "pc": product_code}, order="c.balance DESC",
                               limit=limit, app_url=app_url)  # fmt: skip


def next_product_customers(
    principal: Principal,
    product_code: str,
    next_product_code: str,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The prospects of a next-product suggestion: customers holding A but not B (county edition).

    Parameters
    ----------
    principal, product_code, as_of, org, home, lang, limit, app_url
        As :func:`product_customers`; ``product_code`` is A.
    next_product_code : str
        B, the product to offer.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, product_code, next_product, balance`` (in A), ``aum`` (the month's
        AUM), largest AUM first, plus masked identity columns and ``link``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        pa = _check_code(ctx, product_code)
        pb = _check_code(ctx, next_product_code)
        if product_code == next_product_code:
            raise ValueError("the next product must differ from the product held")
        cond, named = ctx.cust_cond("d")
        core = f"""
WITH a AS (
    SELECT f.customer_id, CAST(sum(f.balance) AS DOUBLE) AS balance
    FROM ({facts_sql((pa["category"],))}) AS f WHERE f.held AND f.product_code = $pa GROUP BY 1
),
b AS (SELECT DISTINCT f.customer_id FROM ({facts_sql((pb["category"],))}) AS f
      WHERE f.held AND f.product_code = $pb)
SELECT a.customer_id, d.customer_type, $pa AS product_code, $pb AS next_product, a.balance,
    CAST(coalesce(m.aum, 0) AS DOUBLE) AS aum
FROM a
JOIN dim_customer AS d ON d.customer_id = a.customer_id AND ({cond})
LEFT JOIN mart_customer_month AS m ON m.customer_id = a.customer_id AND m.as_of_date = $day
WHERE a.customer_id NOT IN (SELECT customer_id FROM b)"""
        params = {**named, "dates": [ctx.day], "day": ctx.day, "pa": product_code, "pb": next_product_code}
        target = f"{product_code}->{next_product_code}"
        return drill_customers(ctx, "analysis_drill_next_product", target, core, params, order="c.aum DESC",
                               limit=limit, app_url=app_url)  # fmt: skip


__all__ = [
    "CATEGORIES",
    "FIVE_CLASSES",
    "MEASURES",
    "NPL_CLASSES",
    "STAGES",
    "STAGE_LABELS",
    "UNALLOCATED",
    "catalogue",
    "facts_sql",
    "five_class_mix",
    "lifecycle_stage",
    "loan_risk",
    "next_product",
    "next_product_customers",
    "product_composition",
    "product_customers",
    "product_income",
    "product_lifecycle",
    "product_pairs",
    "product_structure",
    "products_per_customer",
]
