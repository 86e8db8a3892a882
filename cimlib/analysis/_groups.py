"""Customer-group analysis (客户群分析): value, behaviour, structure, fund flow, churn and risk, and 80/20
by customer group, for one month or a trend.

**Naming a grouping.** Every function takes ``groups``, a string:

* ``"dim:<dimension id>"``: a dimension of ``parameters/dimensions.yaml`` (:mod:`cimlib.segmentation`);
  each member is a group (``dim:aum``, ``dim:age``, ``dim:customer_type``, ``dim:county``, ...). A
  dimension that applies to one customer type (``age`` for individuals) groups that type only. Membership
  is re-evaluated each month of a trend (the AUM band of each month).
* ``"list:<rule set>"`` or ``"list:<rule set>/<rule id>"``: a saved target list, i.e. a rule set of
  ``parameters/targeting/`` (or one of its rules) run at the as-of month (:mod:`cimlib.targeting`). The
  customers it hits are one group (``IN``), compared with the rest of the scope (``REST``). A trend
  follows this cohort of the as-of month back in time.

:func:`parse_groups` validates the name with clear errors (unknown dimension or rule set, with a
suggestion).

**Reading.** Each analysis is one DuckDB query over ``mart_customer_month`` joined to ``dim_customer``
(limited to the principal's scope and the focus org by ``ctx.cust_cond``), the month's customer value
Parquet of :mod:`cimlib.value` (contribution, ``aum_adb``, AUM tier) when needed, and, for churn, the
scores Parquet of :func:`cimlib.churn.score` and the labels of :func:`cimlib.churn.label_sql`. All months
of a trend are read in the same query (``list_contains($g_dates, m.as_of_date)``). Results are aggregated
in DuckDB; only the 80/20 figures pull two integer columns per customer (as numpy arrays, not pandas) for
:func:`cimlib.value.concentration_stats`.

**Privacy.** For a role without single-customer detail (the provincial edition) a group of fewer than
``principal.min_cell`` customers in a month is blanked (``suppressed``), with the next smallest group when
only one is small (:func:`cimlib.segmentation.suppress_small`); in the mix frames (channels, structure,
RFM) the rows of a suppressed group are blanked, and so are cells of fewer than ``min_cell`` customers.
:func:`group_customers` lists a group's customers for roles with detail only (masked, audit-logged).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import AnalysisContext, analysis_context, drill_customers, pick
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._params import CHANNELS
from cimlib.i18n import code_label

Kind = Literal["dim", "list"]
IN, REST = "IN", "REST"

#: Measure and column names of this module's frames and charts, by language.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "value": "Value by customer group",
        "activity": "Activity by customer group",
        "channels": "Channel use by customer group",
        "rfm": "RFM segments by customer group",
        "structure": "Structure of each customer group",
        "fund_flow": "Fund flow by customer group",
        "risk": "Churn and risk by customer group",
        "concentration": "80/20 within each customer group",
        "customers": "Customers",
        "customer_share": "Share of customers",
        "aum_adb": "AUM (ADB basis)",
        "aum": "AUM (month-end)",
        "deposit_adb": "Deposit ADB",
        "contribution": "Contribution",
        "contribution_per_customer": "Contribution per customer",
        "active_share": "Active share",
        "dormant_share": "Dormant share",
        "txn_share": "Share of customer-initiated transactions",
        "inflow": "Inflow",
        "outflow": "Outflow",
        "OWN_BANK": "Own bank",
        "OTHER_BANK": "Other banks",
        "LARGE": "Large transfers out",
        "amount": "Amount",
        "npl_ratio": "NPL ratio",
        "below_normal_share": "Borrowers below normal",
        "mean_churn_score": "Mean churn score",
        "top_risk_share": "In top risk deciles",
        "hard_churn_rate": "Hard-churn rate",
        "customer_type": "Customer type",
        "aum_tier": "AUM tier",
        "age_band": "Age band (individuals)",
        "industry": "Industry (corporates)",
        "share": "Share",
        "group": "Group",
        "month": "Month",
        "IN": "In list",
        "REST": "Rest of scope",
        "UNKNOWN": "Not recorded",
        "top_20pct_share": "Top 20% share",
        "gini": "Gini",
    },
    "zh": {
        "value": "客户群价值",
        "activity": "客户群活跃度",
        "channels": "客户群渠道使用",
        "rfm": "客户群RFM分布",
        "structure": "客户群结构",
        "fund_flow": "客户群资金流量",
        "risk": "客户群流失与风险",
        "concentration": "客户群二八分析",
        "customers": "客户数",
        "customer_share": "客户数占比",
        "aum_adb": "金融资产(日均口径)",
        "aum": "金融资产(月末)",
        "deposit_adb": "存款日均",
        "contribution": "贡献度",
        "contribution_per_customer": "户均贡献度",
        "active_share": "活跃客户占比",
        "dormant_share": "睡眠客户占比",
        "txn_share": "主动交易占比",
        "inflow": "流入",
        "outflow": "流出",
        "OWN_BANK": "本行",
        "OTHER_BANK": "他行",
        "LARGE": "大额转出",
        "amount": "金额",
        "npl_ratio": "不良率",
        "below_normal_share": "非正常类贷款客户占比",
        "mean_churn_score": "平均流失评分",
        "top_risk_share": "高风险十分位占比",
        "hard_churn_rate": "硬流失率",
        "customer_type": "客户类型",
        "aum_tier": "金融资产层级",
        "age_band": "年龄段(个人)",
        "industry": "行业(对公)",
        "share": "占比",
        "group": "客户群",
        "month": "月份",
        "IN": "名单内",
        "REST": "范围内其他客户",
        "UNKNOWN": "未登记",
        "top_20pct_share": "前20%客户占比",
        "gini": "基尼系数",
    },
}
#: The dimension columns of ``dim_customer`` the group relation carries (the rest come from the mart).
_DIM_COLS = ("county_code", "home_org_code", "manager_no", "age", "monthly_income", "education", "occupation",
             "sex", "economic_nature", "enterprise_form", "industry")  # fmt: skip
_FLOW_COLS = ("inflow_other_bank_amount", "outflow_other_bank_amount", "large_outflow_amount",
              "large_outflow_count")  # fmt: skip
_SPEC = re.compile(r"^(dim|list):([A-Za-z][A-Za-z0-9_\-]{0,59})(?:/([A-Za-z][A-Za-z0-9_]{0,59}))?$")


class GroupsError(ValueError):
    """A grouping name that cannot be used (malformed, unknown dimension, rule set or rule)."""


def text(key: str, lang: str) -> str:
    """This module's label ``key`` in ``lang`` (the key itself when unknown)."""
    return TEXT["zh" if str(lang).startswith("zh") else "en"].get(key, key)


@dataclass(frozen=True)
class GroupSpec:
    """A validated grouping: ``dim:<id>`` (members of a dimension) or ``list:<rule set>[/<rule>]``."""

    name: str
    kind: Kind
    key: str
    rule: str | None
    label: dict[str, str]
    members: tuple[tuple[str, dict[str, str]], ...]
    dim: Any = None
    ruleset: Any = None
    applies: tuple[str, ...] = ("I", "C")
    extra: dict[str, Any] = field(default_factory=dict)

    def label_of(self, member: Any, lang: str, ctx: AnalysisContext | None = None) -> str:
        """The display label of a member (an org's name for the org dimensions)."""
        if self.kind == "dim" and self.dim.kind == "org":
            return ctx.org_label(str(member)) if ctx is not None else str(member)
        key = "zh" if str(lang).startswith("zh") else "en"
        for mid, lab in self.members:
            if mid == member:
                return lab[key]
        return "" if member is None else str(member)


def parse_groups(groups: str, home: Any = None) -> GroupSpec:
    """Validate a grouping name (see the module docstring).

    Parameters
    ----------
    groups : str
        ``"dim:<dimension id>"``, ``"list:<rule set>"`` or ``"list:<rule set>/<rule id>"``.
    home : Home, str, Path or None
        The installation (its ``parameters/``).

    Returns
    -------
    GroupSpec

    Raises
    ------
    GroupsError
        For a malformed name, an unknown dimension, the ``period`` dimension (time is the trend axis, not
        a group), an unknown rule set or rule; with a suggestion when one is close.
    """
    from cimlib.customer import _data as D
    from cimlib.targeting._language import suggest

    g = _SPEC.match(str(groups or "").strip())
    if not g:
        raise GroupsError(
            f"groups must be 'dim:<dimension id>' (e.g. 'dim:aum') or 'list:<rule set>[/<rule id>]' "
            f"(e.g. 'list:events/birthday'), got {groups!r}"
        )
    kind, key, rule = g.group(1), g.group(2), g.group(3)
    h = D.resolve_home(home)
    if kind == "dim":
        from cimlib.segmentation import load_dimensions

        if rule is not None:
            raise GroupsError(f"a dimension grouping takes no '/<rule>' part: {groups!r}")
        dims = load_dimensions(h)
        if key not in dims.items:
            hint = suggest(key, dims.items)
            raise GroupsError(
                f"no dimension {key!r} in parameters/dimensions.yaml"
                + (f"; did you mean 'dim:{hint}'?" if hint else f"; known: {', '.join(dims.items)}")
            )
        dim = dims[key]
        if dim.kind == "period":
            raise GroupsError(f"dimension {key!r} is the period: use months= for a trend, not a grouping")
        return GroupSpec(str(groups), "dim", key, None, dict(dim.label), tuple(dim.members), dim=dim,
                         applies=tuple(dim.applies))  # fmt: skip
    from cimlib.targeting._rules import list_rulesets, load_ruleset

    known = list_rulesets(h)
    if key not in known:
        hint = suggest(key, known)
        raise GroupsError(
            f"no saved target list (rule set) {key!r} in parameters/targeting"
            + (f"; did you mean 'list:{hint}'?" if hint else f"; known: {', '.join(known)}")
        )
    rs = load_ruleset(key, h)
    if rule is not None:
        try:
            r = rs.rule(rule)
        except KeyError as exc:
            raise GroupsError(str(exc.args[0])) from None
        name = {"en": r.name["en"], "zh": r.name.get("zh", r.name["en"])}
    else:
        name = {"en": rs.title["en"], "zh": rs.title.get("zh", rs.title["en"])}
    members = (
        (IN, {"en": f"{TEXT['en']['IN']}: {name['en']}", "zh": f"{TEXT['zh']['IN']}：{name['zh']}"}),
        (REST, {"en": TEXT["en"]["REST"], "zh": TEXT["zh"]["REST"]}),
    )
    return GroupSpec(str(groups), "list", key, rule, name, members, ruleset=rs)


# ------------------------------------------------------------------------------------------ the relation
def _value_relation(ctx: AnalysisContext, dates: Sequence[dt.date]) -> str:
    """The customer value frames (:func:`cimlib.value.customer_value`) of ``dates``, one row per customer
    and month: ``customer_id, as_of_date, contribution, aum_adb, aum_tier`` (written once per month)."""
    from cimlib.value._tiers import _pq, value_params, value_table

    params = value_params(ctx.home)
    parts = [
        f"SELECT customer_id, DATE '{d.isoformat()}' AS as_of_date, contribution, aum_adb, aum_tier "
        f"FROM {_pq(value_table(ctx.home, ctx.snap, params, d))}"
        for d in dates
    ]
    return "(" + " UNION ALL ".join(parts) + ")"


def _rename_params(sql: str, params: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    out = {}
    for k in sorted(params, key=len, reverse=True):
        sql = re.sub(rf"\${re.escape(k)}\b", f"${prefix}{k}", sql)
        out[f"{prefix}{k}"] = params[k]
    return sql, out


def _list_hits(spec: GroupSpec, ctx: AnalysisContext) -> tuple[str, dict[str, Any]]:
    """SQL of the customer ids the list's rules hit at the as-of month (the whole bank; the caller
    scopes), with its parameters renamed so several customer types' queries can share one statement."""
    from cimlib.targeting._run import _by_type, build_query

    rules = spec.ruleset.select([spec.rule] if spec.rule else None)
    latest = ctx.day == ctx.dates[-1]
    parts, params = [], {}
    for i, (_, group) in enumerate(sorted(_by_type(rules).items())):
        q = build_query(group, ctx.day, wide=latest)
        sql, p = _rename_params(q.sql, q.params, f"gl{i}_")
        parts.append(f"SELECT customer_id FROM ({sql})")
        params.update(p)
    return " UNION ".join(parts), params


def _relation(
    spec: GroupSpec, ctx: AnalysisContext, dates: Sequence[dt.date], *, value: bool = False
) -> tuple[str, dict[str, Any]]:
    """A relation (to alias ``s``) of one row per in-scope customer and month of ``dates`` with a group:
    the mart's columns, the customer's attributes, ``grp`` (never NULL) and, with ``value``, the value
    frame's ``contribution, aum_adb, aum_tier``."""
    from cimlib.segmentation._dimensions import _MAIN_CHANNEL

    cond, params = ctx.cust_cond("d")
    params = {**params, "g_dates": list(dates)}
    cols = [f"d.{c}" for c in _DIM_COLS] + [f"{_MAIN_CHANNEL} AS main_channel"]
    joins = []
    column = spec.dim.column if spec.kind == "dim" else ""
    if value or column == "contribution":
        joins.append(f"LEFT JOIN {_value_relation(ctx, dates)} AS v "
                     "ON v.customer_id = m.customer_id AND v.as_of_date = m.as_of_date")  # fmt: skip
        cols += ["v.contribution", "v.aum_adb", "v.aum_tier"]
    if column in ("main_loan_form", "main_loan_product"):
        joins.append(
            "LEFT JOIN (SELECT l.customer_id, l.as_of_date, "
            "arg_max(l.loan_form, l.balance) AS main_loan_form, "
            "arg_max(p.subtype, l.balance) AS main_loan_product FROM core_loan_month AS l "
            "JOIN core_product AS p ON p.product_code = l.product_code WHERE list_contains($g_dates, "
            "l.as_of_date) AND l.status = 'ACTIVE' AND l.balance > 0 GROUP BY ALL) AS ln "
            "ON ln.customer_id = m.customer_id AND ln.as_of_date = m.as_of_date"
        )
        cols += ["ln.main_loan_form", "ln.main_loan_product"]
    if column == "main_deposit_product":
        joins.append(
            "LEFT JOIN (SELECT a.customer_id, a.as_of_date, "
            "arg_max(p.subtype, a.balance) AS main_deposit_product "
            "FROM core_deposit_month AS a JOIN core_product AS p ON p.product_code = a.product_code "
            "WHERE list_contains($g_dates, a.as_of_date) AND a.status <> 'CLOSED' AND a.balance > 0 "
            "GROUP BY ALL) AS dp ON dp.customer_id = m.customer_id AND dp.as_of_date = m.as_of_date"
        )
        cols.append("dp.main_deposit_product")
    where = [f"list_contains($g_dates, m.as_of_date) AND ({cond})"]
    if spec.kind == "dim":
        where.append("m.customer_type IN (" + ", ".join(f"'{t}'" for t in spec.applies if t in "IC") + ")")
    inner = (
        f"SELECT m.*, {', '.join(cols)} FROM mart_customer_month AS m "
        f"JOIN dim_customer AS d ON d.customer_id = m.customer_id {' '.join(joins)} "
        f"WHERE {' AND '.join(where)}"
    )
    if spec.kind == "dim":
        grp = spec.dim.member_sql("b")
    else:
        hits, hp = _list_hits(spec, ctx)
        params.update(hp)
        grp = f"CASE WHEN b.customer_id IN ({hits}) THEN '{IN}' ELSE '{REST}' END"
    sql = f"(SELECT * FROM (SELECT b.*, {grp} AS grp FROM ({inner}) AS b) WHERE grp IS NOT NULL)"
    return sql, params


# ------------------------------------------------------------------------------------------------ helpers
def _dates(ctx: AnalysisContext, months: int) -> list[dt.date]:
    if int(months) < 1:
        raise ValueError(f"months must be at least 1, got {months!r}")
    return ctx.trend_dates(int(months))


def _member_ids(spec: GroupSpec, found: Sequence[Any]) -> list[Any]:
    ids = [m for m, _ in spec.members]
    return ids + sorted({f for f in found if f not in ids and f is not None}, key=str)


def _per_group(
    df: pd.DataFrame, spec: GroupSpec, dates: Sequence[dt.date], counts: Sequence[str]
) -> pd.DataFrame:
    """One row per member and month (members nobody is in get zero counts), in member order."""
    df = df.copy()
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date if len(df) else pd.Series([], dtype=object)
    ids = _member_ids(spec, list(df["grp"]))
    full = pd.MultiIndex.from_product([ids, list(dates)], names=["grp", "as_of_date"])
    out = df.set_index(["grp", "as_of_date"]).reindex(full).reset_index()
    for c in counts:
        out[c] = out[c].fillna(0).astype("int64")
    return out


def _suppress(df: pd.DataFrame, principal: Principal) -> pd.DataFrame:
    """:func:`cimlib.segmentation.suppress_small` per month (groups of a month compared with each other)."""
    from cimlib.segmentation import suppress_small

    if not len(df):
        out = df.copy()
        out["suppressed"] = pd.Series([], dtype=bool)
        return out
    parts = [suppress_small(g, principal) for _, g in df.groupby("as_of_date", sort=False)]
    return pd.concat(parts).sort_index()


def _blank_long(
    long: pd.DataFrame, groups: pd.DataFrame, principal: Principal, cell: str | None
) -> pd.DataFrame:
    """Blank the rows of a mix frame whose group is suppressed in ``groups``, and cells under min_cell."""
    out = long.copy()
    sup = groups.set_index(["grp", "as_of_date"])["suppressed"]
    key = list(zip(out["grp"], out["as_of_date"], strict=True))
    hide = np.array([bool(sup.get(k, False)) for k in key], dtype=bool)
    if cell is not None and not principal.can_view_detail:
        k = int(getattr(principal, "min_cell", 5) or 5)
        n = pd.to_numeric(out[cell], errors="coerce").fillna(0)
        hide |= ((n > 0) & (n < k)).to_numpy()
    num = list(out.select_dtypes("number").columns)
    out[num] = out[num].astype(float)
    out.loc[hide, num] = math.nan
    out["suppressed"] = hide
    return out


def _finish(df: pd.DataFrame, spec: GroupSpec, ctx: AnalysisContext, lang: str, title: str,
            dates: Sequence[dt.date], **attrs: Any) -> pd.DataFrame:  # fmt: skip
    """Label the groups, order the rows and set the attrs every frame carries."""
    df = df.copy()
    df.insert(1, "label", [spec.label_of(g, lang, ctx) for g in df["grp"]])
    df = df.rename(columns={"grp": "group"}).reset_index(drop=True)
    df.attrs.update(
        title=f"{text(title, lang)} · {pick(spec.label, lang)}",
        as_of=ctx.day.isoformat(),
        org=ctx.org.code,
        org_name=ctx.org.name,
        edition=ctx.edition,
        groups=spec.name,
        groups_label=pick(spec.label, lang),
        dates=[d.isoformat() for d in dates],
        lang=lang,
        **attrs,
    )
    return df


def _share(num: pd.Series, den: pd.Series) -> pd.Series:
    n, d = num.astype(float), den.astype(float)
    return (n / d.where(d != 0)).astype(float)


def _of_month(df: pd.DataFrame, col: str) -> pd.Series:
    """Each row's share of the month's total of ``col``."""
    tot = df.groupby("as_of_date")[col].transform("sum")
    return _share(df[col], tot)


def _open(principal: Principal, as_of: Any, org: str | None, home: Any, lang: str) -> Any:
    """:func:`analysis_context` (a context manager) with this module's arguments."""
    return analysis_context(principal, as_of, org=org, home=home, lang=lang)


# ------------------------------------------------------------------------------------------------ value
def group_value(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
) -> pd.DataFrame:
    """Customers, AUM, deposit ADB and contribution by group, with shares and per-customer figures.

    Parameters
    ----------
    principal : Principal
        Who asks (scope and edition).
    as_of : str, date or None
        ``YYYY-MM``; the latest month when None.
    groups : str
        The grouping (:func:`parse_groups`).
    org : str, optional
        The focus org (county or branch) within the principal's scope.
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN``.
    months : int
        The months of the trend up to ``as_of`` (1: the as-of month only).

    Returns
    -------
    DataFrame
        One row per group and month: ``group, label, as_of_date, customers, customer_share, aum, aum_adb,
        aum_adb_share, deposit_adb, deposit_adb_share, contribution, contribution_share,
        contribution_per_customer, aum_per_customer, loss_making`` (customers with negative contribution),
        ``suppressed``. Shares are of the month's total over the groups (the scope). Money in yuan.
    """
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates, value=True)
        df = ctx.query(
            "SELECT grp, as_of_date, count(*) AS customers, sum(aum) AS aum, sum(aum_adb) AS aum_adb, "
            "sum(deposit_adb) AS deposit_adb, sum(contribution) AS contribution, "
            f"count(*) FILTER (WHERE contribution < 0) AS loss_making FROM {rel} AS s GROUP BY ALL",
            params,
        )
        df = _per_group(df, spec, dates, ["customers", "loss_making"])
        for c in ("aum", "aum_adb", "deposit_adb", "contribution"):
            df[c] = df[c].astype(float).fillna(0.0)
        df["customer_share"] = _of_month(df, "customers")
        for c in ("aum_adb", "deposit_adb", "contribution"):
            df[f"{c}_share"] = _of_month(df, c)
        df["contribution_per_customer"] = _share(df["contribution"], df["customers"])
        df["aum_per_customer"] = _share(df["aum_adb"], df["customers"])
        df = df[["grp", "as_of_date", "customers", "customer_share", "aum", "aum_adb", "aum_adb_share",
                 "deposit_adb", "deposit_adb_share", "contribution", "contribution_share",
                 "contribution_per_customer", "aum_per_customer", "loss_making"]]  # fmt: skip
        return _finish(_suppress(df, principal), spec, ctx, lang, "value", dates)


# -------------------------------------------------------------------------------------------- behaviour
def group_activity(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
    dormant_months: int = 6,
) -> pd.DataFrame:
    """Activity by group: the share of customers with a customer-initiated transaction in the month, and
    the dormant share (none in the last ``dormant_months`` months, the month included).

    Interest postings, fees and judicial actions are not customer-initiated (``customer_txn_count``).
    Other parameters as :func:`group_value`.

    Returns
    -------
    DataFrame
        One row per group and month: ``group, label, as_of_date, customers, active, active_share, dormant,
        dormant_share, customer_txns, txns_per_active, customer_txn_amount, suppressed``; ``attrs``
        ``dormant_months``.
    """
    if not 1 <= int(dormant_months) <= 36:
        raise ValueError(f"dormant_months must be 1..36, got {dormant_months!r}")
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates)
        k = int(dormant_months)
        mi = "(year({0}) * 12 + month({0}))"
        df = ctx.query(
            f"WITH s AS (SELECT * FROM {rel}), "
            "h AS (SELECT p.customer_id, x.d AS as_of_date FROM mart_customer_month AS p, "
            "(SELECT unnest($g_dates) AS d) AS x WHERE p.customer_txn_count > 0 AND p.as_of_date <= x.d "
            f"AND {mi.format('p.as_of_date')} > {mi.format('x.d')} - {k} "
            "AND p.customer_id IN (SELECT customer_id FROM s) GROUP BY ALL) "
            "SELECT s.grp, s.as_of_date, count(*) AS customers, "
            "count(*) FILTER (WHERE s.customer_txn_count > 0) AS active, "
            "count(*) FILTER (WHERE h.customer_id IS NULL) AS dormant, "
            "CAST(coalesce(sum(s.customer_txn_count), 0) AS BIGINT) AS customer_txns, "
            "sum(s.customer_txn_amount) AS customer_txn_amount "
            "FROM s LEFT JOIN h ON h.customer_id = s.customer_id AND h.as_of_date = s.as_of_date "
            "GROUP BY ALL",
            params,
        )
        df = _per_group(df, spec, dates, ["customers", "active", "dormant", "customer_txns"])
        df["customer_txn_amount"] = df["customer_txn_amount"].astype(float).fillna(0.0)
        df["active_share"] = _share(df["active"], df["customers"])
        df["dormant_share"] = _share(df["dormant"], df["customers"])
        df["txns_per_active"] = _share(df["customer_txns"], df["active"])
        df = df[["grp", "as_of_date", "customers", "active", "active_share", "dormant", "dormant_share",
                 "customer_txns", "txns_per_active", "customer_txn_amount"]]  # fmt: skip
        return _finish(_suppress(df, principal), spec, ctx, lang, "activity", dates, dormant_months=k)


def group_channels(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
) -> pd.DataFrame:
    """Channel use by group: each channel's share of the group's customer-initiated transactions.

    Reads ``mart_customer_month.txn_count_<channel>`` / ``txn_amount_<channel>`` of the customer channels
    (SYSTEM, batch postings, is not one). Other parameters as :func:`group_value`.

    Returns
    -------
    DataFrame
        Long, one row per group, month and channel: ``group, label, as_of_date, customers`` (of the group),
        ``users`` (its customers using the channel), ``channel, channel_label, txn_count, txn_amount,
        share`` (of the group's transactions that month: sums to 1 per group and month), ``suppressed``.
    """
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates)
        aggs = []
        for c in CHANNELS:
            lc = c.lower()
            aggs += [f"CAST(coalesce(sum(txn_count_{lc}), 0) AS BIGINT) AS n_{c}",
                     f"CAST(coalesce(sum(txn_amount_{lc}), 0) AS DOUBLE) AS a_{c}",
                     f"count(*) FILTER (WHERE txn_count_{lc} > 0) AS u_{c}"]  # fmt: skip
        wide = ctx.query(
            f"SELECT grp, as_of_date, count(*) AS customers, {', '.join(aggs)} FROM {rel} AS s GROUP BY ALL",
            params,
        )
        wide = _per_group(wide, spec, dates, ["customers"])
        groups_df = _suppress(wide[["grp", "as_of_date", "customers"]], principal)
        rows = []
        for c in CHANNELS:
            part = wide[["grp", "as_of_date", "customers"]].copy()
            part["users"] = wide[f"u_{c}"].fillna(0).astype("int64")
            part["channel"] = c
            part["channel_label"] = code_label("channel", c, _ui(lang))
            part["txn_count"] = wide[f"n_{c}"].fillna(0).astype("int64")
            part["txn_amount"] = wide[f"a_{c}"].astype(float).fillna(0.0)
            rows.append(part)
        long = pd.concat(rows, ignore_index=True)
        tot = long.groupby(["grp", "as_of_date"])["txn_count"].transform("sum")
        long["share"] = _share(long["txn_count"], tot).fillna(0.0)
        rank = {g: i for i, g in enumerate(_member_ids(spec, list(long["grp"])))}
        long["_g"], long["_c"] = long["grp"].map(rank), long["channel"].map(CHANNELS.index)
        long = long.sort_values(["as_of_date", "_g", "_c"], ignore_index=True).drop(columns=["_g", "_c"])
        long = _blank_long(long, groups_df, principal, None)
        return _finish(long, spec, ctx, lang, "channels", dates)


def group_rfm(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The RFM segments of :mod:`cimlib.value` (``parameters/value.yaml``) within each group, as-of month.

    Scores are those of :func:`cimlib.value.rfm_scores` (ranked over the whole bank by customer type), so a
    customer's segment does not depend on who looks or on the grouping. Other parameters as
    :func:`group_value` (no trend: one month).

    Returns
    -------
    DataFrame
        Long, one row per group and segment: ``group, label, as_of_date, segment, segment_label,
        customers, share`` (of the group's customers), ``monetary`` (the RFM monetary measure summed),
        ``suppressed``; ``attrs`` ``monetary``, ``frequency_months``.
    """
    from cimlib.value._rfm import _rfm, _scores_sql
    from cimlib.value._tiers import _Ctx

    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = [ctx.day]
        rel, params = _relation(spec, ctx, dates)
        vctx = _Ctx(principal, ctx.day, ctx.home)
        rsql, rp, _ = _scores_sql(vctx)
        rsql, rp = _rename_params(rsql, rp, "gr_")
        df = ctx.query(
            f"SELECT s.grp, s.as_of_date, r.segment, count(*) AS customers, sum(r.monetary) AS monetary "
            f"FROM {rel} AS s JOIN ({rsql}) AS r ON r.customer_id = s.customer_id GROUP BY ALL",
            {**params, **rp},
        )
        segs = _rfm(vctx.params).segments
        key = "zh" if str(lang).startswith("zh") else "en"
        ids = _member_ids(spec, list(df["grp"]))
        full = pd.MultiIndex.from_product(
            [ids, dates, [s.id for s in segs]], names=["grp", "as_of_date", "segment"]
        )
        df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date if len(df) else df["as_of_date"]
        df = df.set_index(["grp", "as_of_date", "segment"]).reindex(full).reset_index()
        df["customers"] = df["customers"].fillna(0).astype("int64")
        df["monetary"] = df["monetary"].astype(float).fillna(0.0)
        df.insert(3, "segment_label", df["segment"].map({s.id: getattr(s, key) for s in segs}))
        n = df.groupby(["grp", "as_of_date"])["customers"].transform("sum")
        df["share"] = _share(df["customers"], n)
        g = df.groupby(["grp", "as_of_date"], as_index=False, sort=False)["customers"].sum()
        df = _blank_long(df, _suppress(g, principal), principal, "customers")
        r = _rfm(vctx.params)
        return _finish(
            df, spec, ctx, lang, "rfm", dates, monetary=r.monetary, frequency_months=r.frequency_months
        )


# -------------------------------------------------------------------------------------------- structure
def group_structure(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
) -> pd.DataFrame:
    """The mix of each group by customer type, AUM tier (:mod:`cimlib.value` tiers), age band (individuals,
    the ``age`` dimension) and industry (corporates), in one query (GROUPING SETS).

    Other parameters as :func:`group_value`.

    Returns
    -------
    DataFrame
        Long: ``group, label, as_of_date, facet`` (``customer_type``, ``aum_tier``, ``age_band``,
        ``industry``), ``facet_label, member, member_label, customers, share`` (of the group's customers of
        the facet: all for type and tier, individuals for age, corporates for industry; sums to 1 per
        group, month and facet), ``suppressed``.
    """
    from cimlib.segmentation import load_dimensions
    from cimlib.value._tiers import value_params

    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates, value=True)
        dims = load_dimensions(ctx.home)
        age = dims.items.get("age")
        age_sql = age.member_sql("s") if age is not None else "CAST(NULL AS VARCHAR)"
        df = ctx.query(
            "SELECT grp, as_of_date, customer_type, aum_tier, age_band, industry, count(*) AS customers, "
            "GROUPING(customer_type) AS g_type, GROUPING(aum_tier) AS g_tier, GROUPING(age_band) AS g_age, "
            "GROUPING(industry) AS g_ind FROM (SELECT s.grp, s.as_of_date, s.customer_type, "
            "coalesce(s.aum_tier, 'UNKNOWN') AS aum_tier, "
            f"CASE WHEN s.customer_type = 'I' THEN {age_sql} END AS age_band, "
            "CASE WHEN s.customer_type = 'C' THEN coalesce(s.industry, 'UNKNOWN') END AS industry "
            f"FROM {rel} AS s) GROUP BY GROUPING SETS ((grp, as_of_date, customer_type), "
            "(grp, as_of_date, aum_tier), (grp, as_of_date, age_band), (grp, as_of_date, industry))",
            params,
        )
        df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date if len(df) else df["as_of_date"]
        tiers = value_params(ctx.home).tiers
        tier_lab = {t.id: (t.en, t.zh) for t in tiers.aum.tiers} if tiers else {}
        zh = str(lang).startswith("zh")
        parts = []
        order: dict[str, list[str]] = {
            "customer_type": ["I", "C"],
            "aum_tier": [*tier_lab, "UNKNOWN"],
            "age_band": [m for m, _ in age.members] if age is not None else [],
            "industry": [],
        }
        facets = (("customer_type", "g_type", "customer_type"), ("aum_tier", "g_tier", "aum_tier"),
                  ("age_band", "g_age", "age_band"), ("industry", "g_ind", "industry"))  # fmt: skip
        for facet, flag, col in facets:
            p = df[(df[flag] == 0) & df[col].notna()][["grp", "as_of_date", col, "customers"]]
            p = p.rename(columns={col: "member"})
            p.insert(2, "facet", facet)
            rank = {m: i for i, m in enumerate(order[facet])}
            p["_m"] = [rank.get(m, len(rank)) for m in p["member"]]
            parts.append(p)
        long = pd.concat(parts, ignore_index=True)

        def member_label(facet: str, m: str) -> str:
            if m == "UNKNOWN":
                return text("UNKNOWN", lang)
            if facet == "customer_type":
                return code_label("customer_type", m, _ui(lang)) or m
            if facet == "aum_tier":
                return tier_lab.get(m, (m, m))[1 if zh else 0]
            if facet == "age_band":
                return age.label_of(m, lang) if age is not None else m
            return code_label("industry", m, _ui(lang)) or m

        long["facet_label"] = [text(f, lang) for f in long["facet"]]
        long["member_label"] = [
            member_label(f, m) for f, m in zip(long["facet"], long["member"], strict=True)
        ]
        long["customers"] = long["customers"].astype("int64")
        n = long.groupby(["grp", "as_of_date", "facet"])["customers"].transform("sum")
        long["share"] = _share(long["customers"], n)
        rank = {g: i for i, g in enumerate(_member_ids(spec, list(long["grp"])))}
        frank = {f: i for i, f in enumerate(order)}
        long["_g"], long["_f"] = long["grp"].map(rank), long["facet"].map(frank)
        long = long.sort_values(["as_of_date", "_g", "_f", "_m", "member"], ignore_index=True)
        long["member_order"] = long["_m"].astype("int64")
        long = long[["grp", "as_of_date", "facet", "facet_label", "member", "member_label", "member_order",
                     "customers", "share"]]  # fmt: skip
        g = df[df["g_type"] == 0].groupby(["grp", "as_of_date"], as_index=False)["customers"].sum()
        g = _per_group(g, spec, dates, ["customers"])
        long = _blank_long(long, _suppress(g, principal), principal, "customers")
        return _finish(long, spec, ctx, lang, "structure", dates)


# -------------------------------------------------------------------------------------------- fund flow
def group_fund_flow(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
) -> pd.DataFrame:
    """Fund flow (资金流量) by group and counterparty: own bank, other banks, and large transfers out.

    Own bank = ``inflow_amount`` / ``outflow_amount`` minus their other-bank parts; large transfers out are
    single transfers at or above the PBoC large-value reporting level (50万 individuals, 200万 corporates;
    ``large_outflow_amount``), a part of the outflows (to either bank). Other parameters as
    :func:`group_value`.

    Returns
    -------
    DataFrame
        One row per group and month: ``group, label, as_of_date, customers, inflow, inflow_own_bank,
        inflow_other_bank, outflow, outflow_own_bank, outflow_other_bank, net_flow, other_bank_outflow_share,
        large_outflow_amount, large_outflow_count, large_outflow_customers, large_outflow_share`` (of
        outflows), ``suppressed``. Money in yuan.
    """
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        _, rows = ctx.snap.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'mart_customer_month'"
        )
        missing = [c for c in _FLOW_COLS if c not in {r[0] for r in rows}]
        if missing:
            raise RuntimeError(f"mart_customer_month lacks {', '.join(missing)}: the warehouse predates the "
                               "fund-flow columns; run `cim build`")  # fmt: skip
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates)
        df = ctx.query(
            "SELECT grp, as_of_date, count(*) AS customers, "
            "CAST(coalesce(sum(inflow_amount), 0) AS DOUBLE) AS inflow, "
            "CAST(coalesce(sum(inflow_other_bank_amount), 0) AS DOUBLE) AS inflow_other_bank, "
            "CAST(coalesce(sum(outflow_amount), 0) AS DOUBLE) AS outflow, "
            "CAST(coalesce(sum(outflow_other_bank_amount), 0) AS DOUBLE) AS outflow_other_bank, "
            "CAST(coalesce(sum(large_outflow_amount), 0) AS DOUBLE) AS large_outflow_amount, "
            "CAST(coalesce(sum(large_outflow_count), 0) AS BIGINT) AS large_outflow_count, "
            f"count(*) FILTER (WHERE large_outflow_count > 0) AS large_outflow_customers FROM {rel} AS s "
            "GROUP BY ALL",
            params,
        )
        df = _per_group(df, spec, dates, ["customers", "large_outflow_count", "large_outflow_customers"])
        for c in ("inflow", "inflow_other_bank", "outflow", "outflow_other_bank", "large_outflow_amount"):
            df[c] = df[c].astype(float).fillna(0.0)
        df["inflow_own_bank"] = df["inflow"] - df["inflow_other_bank"]
        df["outflow_own_bank"] = df["outflow"] - df["outflow_other_bank"]
        df["net_flow"] = df["inflow"] - df["outflow"]
        df["other_bank_outflow_share"] = _share(df["outflow_other_bank"], df["outflow"])
        df["large_outflow_share"] = _share(df["large_outflow_amount"], df["outflow"])
        df = df[["grp", "as_of_date", "customers", "inflow", "inflow_own_bank", "inflow_other_bank",
                 "outflow", "outflow_own_bank", "outflow_other_bank", "net_flow", "other_bank_outflow_share",
                 "large_outflow_amount", "large_outflow_count", "large_outflow_customers",
                 "large_outflow_share"]]  # fmt: skip
        return _finish(_suppress(df, principal), spec, ctx, lang, "fund_flow", dates)


# ------------------------------------------------------------------------------------------ churn, risk
def scores_path(home: Any, snapshot_id: str, definition: str, as_of: dt.date) -> Any:
    """Where :func:`cimlib.churn.score` wrote a month's scores (a seam the tests can point elsewhere)."""
    from cimlib.churn._score import scores_path as _path

    return _path(home, snapshot_id, definition, as_of)


def group_risk(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
    definition: str | None = None,
) -> pd.DataFrame:
    """Churn and credit risk by group.

    * **Churn model**: the mean score and the share of scored customers in the top risk deciles (risk
      decile at or above ``watchlist.min_risk_decile`` of ``parameters/churn.yaml``) of the month's scores
      (:func:`cimlib.churn.score`; ``definition`` default the model's). A month never scored has NaN and
      is listed in ``attrs["unscored_months"]``.
    * **Hard churn** (``parameters/churn.yaml``, the first definition of kind ``hard``): the share of the
      group's eligible customers at the month (holding a product) who held none at some month-end of the
      outcome window. A month whose outcome window runs past the warehouse has NaN
      (``attrs["unlabelled_months"]``).
    * **Credit**: the NPL ratio (NPL balance / loan balance; NPL = substandard + doubtful + loss) and the
      share of the group's borrowers whose worst loan is below NORMAL.

    Other parameters as :func:`group_value`.

    Returns
    -------
    DataFrame
        One row per group and month: ``group, label, as_of_date, customers, scored, mean_churn_score,
        top_risk, top_risk_share, churn_eligible, churned, hard_churn_rate, borrowers, below_normal,
        below_normal_share, loan_balance, npl_balance, npl_ratio, suppressed``.
    """
    from cimlib.churn._labels import label_sql, labelled_months
    from cimlib.churn._params import HardChurn, load_churn_params
    from cimlib.value._tiers import _pq

    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates)
        cp = load_churn_params(ctx.home)
        name, _ = cp.definition(definition)
        files = {d: scores_path(ctx.home, ctx.snap.snapshot_id, name, d) for d in dates}
        have = [p for p in files.values() if p.exists()]
        unscored = [d.isoformat() for d, p in files.items() if not p.exists()]
        if have:
            scores = ("(SELECT customer_id, as_of_date, churn_score, risk_decile FROM read_parquet(["
                      + ", ".join(_pq(p)[len("read_parquet("):-1] for p in have) + "]))")  # fmt: skip
        else:
            scores = ("(SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS DATE) AS as_of_date, "
                      "CAST(NULL AS DOUBLE) AS churn_score, CAST(NULL AS TINYINT) AS risk_decile "
                      "WHERE FALSE)")  # fmt: skip
        hard = next(((n, d) for n, d in cp.definitions.items() if isinstance(d, HardChurn)), None)
        labelled = [d for d in labelled_months(ctx.dates, hard[1]) if d in dates] if hard else []
        unlabelled = [d.isoformat() for d in dates if d not in labelled]
        if labelled:
            labels = f"({label_sql(hard[1])})"  # type: ignore[index]
            params["months"] = labelled
        else:
            labels = ("(SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS DATE) AS as_of_date, "
                      "CAST(NULL AS BOOLEAN) AS churned WHERE FALSE)")  # fmt: skip
        params["g_top"] = int(cp.watchlist.min_risk_decile)
        df = ctx.query(
            "SELECT s.grp, s.as_of_date, count(*) AS customers, count(sc.customer_id) AS scored, "
            "avg(sc.churn_score) AS mean_churn_score, "
            "count(*) FILTER (WHERE sc.risk_decile >= $g_top) AS top_risk, "
            "count(l.customer_id) AS churn_eligible, count(*) FILTER (WHERE l.churned) AS churned, "
            "count(*) FILTER (WHERE s.loan_balance > 0) AS borrowers, "
            "count(*) FILTER (WHERE s.loan_balance > 0 AND s.worst_five_class <> 'NORMAL') AS below_normal, "
            "CAST(coalesce(sum(s.loan_balance), 0) AS DOUBLE) AS loan_balance, "
            "CAST(coalesce(sum(s.npl_balance), 0) AS DOUBLE) AS npl_balance "
            f"FROM {rel} AS s LEFT JOIN {scores} AS sc ON sc.customer_id = s.customer_id "
            f"AND sc.as_of_date = s.as_of_date LEFT JOIN {labels} AS l ON l.customer_id = s.customer_id "
            "AND l.as_of_date = s.as_of_date GROUP BY ALL",
            params,
        )
        counts = ["customers", "scored", "top_risk", "churn_eligible", "churned", "borrowers", "below_normal"]
        df = _per_group(df, spec, dates, counts)
        df["top_risk_share"] = _share(df["top_risk"], df["scored"])
        df["hard_churn_rate"] = _share(df["churned"], df["churn_eligible"])
        df.loc[[d.isoformat() in unlabelled for d in df["as_of_date"]], "hard_churn_rate"] = math.nan
        df["below_normal_share"] = _share(df["below_normal"], df["borrowers"])
        df["npl_ratio"] = _share(df["npl_balance"].astype(float), df["loan_balance"].astype(float))
        df["mean_churn_score"] = df["mean_churn_score"].astype(float)
        df = df[["grp", "as_of_date", "customers", "scored", "mean_churn_score", "top_risk", "top_risk_share",
                 "churn_eligible", "churned", "hard_churn_rate", "borrowers", "below_normal",
                 "below_normal_share", "loan_balance", "npl_balance", "npl_ratio"]]  # fmt: skip
        note = []
        if unscored:
            note.append(
                f"no churn scores for {', '.join(unscored)} (definition {name}): run `cim churn score`"
            )
        if unlabelled:
            note.append(
                f"hard churn unknown for {', '.join(unlabelled)}: the outcome window runs past the data"
            )
        return _finish(_suppress(df, principal), spec, ctx, lang, "risk", dates, definition=name,
                       top_risk_decile=int(cp.watchlist.min_risk_decile), unscored_months=unscored,
                       unlabelled_months=unlabelled, hard_definition=hard[0] if hard else None,
                       note="; ".join(note))  # fmt: skip


# ----------------------------------------------------------------------------------------------- 80/20
def group_concentration(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    months: int = 1,
    top_p: float = 0.2,
) -> pd.DataFrame:
    """The 80/20 figures of AUM (ADB basis) and contribution within each group
    (:func:`cimlib.value.concentration_stats`: exact on integer fen).

    Other parameters as :func:`group_value`; ``top_p`` the share of top customers (0.2).

    Returns
    -------
    DataFrame
        One row per group, month and measure (``aum_adb``, ``contribution``): ``group, label, as_of_date,
        measure, measure_label, customers, total, top_share`` (the top ``top_p`` customers' share of the
        group's total), ``share_for_80`` (the share of customers making up 80%), ``gini, n_negative, note,
        suppressed``.
    """
    import pyarrow.compute as pc

    from cimlib.value._concentration import concentration_stats, topp_column

    if not 0 < float(top_p) <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        dates = _dates(ctx, months)
        rel, params = _relation(spec, ctx, dates, value=True)
        with ctx.snap.all_cores() as con:
            t = con.sql(
                "SELECT grp, as_of_date, CAST(round(coalesce(aum_adb, 0) * 100) AS BIGINT) AS aum_fen, "
                f"CAST(round(coalesce(contribution, 0) * 100) AS BIGINT) AS con_fen FROM {rel} AS s",
                params=params,
            ).to_arrow_table()
        # group keys as small integers without a Python object per customer: dictionary codes
        g = pc.dictionary_encode(t.column("grp")).combine_chunks()
        d = pc.dictionary_encode(t.column("as_of_date")).combine_chunks()
        gvals, dvals = g.dictionary.to_pylist(), d.dictionary.to_pylist()
        key = g.indices.to_numpy().astype(np.int64) * len(dvals) + d.indices.to_numpy().astype(np.int64)
        uniq = [(gv, dv) for gv in gvals for dv in dvals]
        frames = []
        for measure, col in (("aum_adb", "aum_fen"), ("contribution", "con_fen")):
            st = concentration_stats(t.column(col).to_numpy(), key, top_k=(), top_p=(float(top_p),))
            codes = st["group"].to_numpy(dtype=np.int64)
            frames.append(pd.DataFrame({
                "grp": [uniq[i][0] for i in codes],
                "as_of_date": [uniq[i][1] for i in codes],
                "measure": measure, "customers": st["n"].astype("int64"), "total": st["total"] / 100.0,
                "top_share": st[topp_column(float(top_p))], "share_for_80": st["share_for_80"],
                "gini": st["gini"], "n_negative": st["n_negative"].astype("int64"), "note": st["note"],
            }))  # fmt: skip
        df = pd.concat(frames, ignore_index=True)
        rank = {g: i for i, g in enumerate(_member_ids(spec, list(df["grp"])))}
        df["_g"] = df["grp"].map(rank)
        df = df.sort_values(["as_of_date", "measure", "_g"], ignore_index=True).drop(columns="_g")
        df.insert(3, "measure_label", [text(m, lang) for m in df["measure"]])
        parts = [_suppress(p, principal) for _, p in df.groupby("measure", sort=False)]
        df = pd.concat(parts).sort_index()
        return _finish(df, spec, ctx, lang, "concentration", dates, top_p=float(top_p))


# ------------------------------------------------------------------------------------------------ drill
def group_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    groups: str,
    group: str,
    org: str | None = None,
    home: Any = None,
    lang: str = "en",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers of one group at the as-of month (county edition): scoped, masked, audit-logged.

    Parameters
    ----------
    groups : str
        The grouping (:func:`parse_groups`).
    group : str
        One of its members (a member id, an org code, or ``IN`` / ``REST`` of a list).
    limit, app_url
        As :func:`cimlib.analysis._common.drill_customers`.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, group, aum_adb, deposit_adb, contribution, loan_balance,
        customer_txn_count`` (largest AUM first), the masked identity columns and ``link``.

    Raises
    ------
    NotPermitted
        For a role without single-customer detail (the provincial edition); the refusal is audited.
    GroupsError
        For a group that is not a member of the grouping.
    """
    spec = parse_groups(groups, home)
    with _open(principal, as_of, org, home, lang) as ctx:
        ids = [m for m, _ in spec.members]
        if ids and group not in ids and not (spec.kind == "dim" and spec.dim.kind == "org"):
            raise GroupsError(f"{group!r} is not a group of {spec.name}; expected one of {', '.join(ids)}")
        rel, params = _relation(spec, ctx, [ctx.day], value=True)
        core = (
            'SELECT s.customer_id, s.customer_type, s.grp AS "group", CAST(s.aum_adb AS DOUBLE) AS aum_adb, '
            "CAST(s.deposit_adb AS DOUBLE) AS deposit_adb, CAST(s.contribution AS DOUBLE) AS contribution, "
            "CAST(s.loan_balance AS DOUBLE) AS loan_balance, CAST(s.customer_txn_count AS BIGINT) AS "
            f"customer_txn_count FROM {rel} AS s WHERE s.grp = $g_member"
        )
        return drill_customers(ctx, "analysis_drill_groups", f"{spec.name}={group}", core,
                               {**params, "g_member": str(group)}, order="c.aum_adb DESC", limit=limit,
                               app_url=app_url,
                               detail={"groups": spec.name, "group": str(group)})  # fmt: skip
