"""Channel analysis (渠道分析): volume, counter-to-digital migration, card usage, cost, under-used devices.

The customer channels are counter (柜面), ATM (自助设备), POS, phone banking, online and mobile banking
(:data:`~cimlib.analysis._params.CHANNELS`). **SYSTEM** batch postings (interest, fees, salary credits,
loan disbursements, judicial deductions) are not a customer channel: every share here is a share of the
customer channels only, and the volume frames report what was left out in ``attrs["excluded"]``.

Sources (marts only, aggregated inside DuckDB):

* ``mart_channel_month`` (branch-keyed: the account's branch; channel, transaction type, direction,
  counterparty, teller, terminal) for volume, card usage, cost and the device lists. Volume and cost count
  customer-initiated transaction types only (``ref_txn_type.customer_initiated``). Its scope is
  ``ctx.branch_cond`` (a customer-manager role sees no org-level channel figures).
* ``mart_customer_month`` (``txn_count_<channel>`` per customer) with ``dim_customer`` for the migration
  per county, branch and age band, and for the customers per org (cost per customer) and the drill. Those
  per-customer counts hold every transaction on the channel; on the customer channels all transaction
  types are customer-initiated in this data (batch postings are on SYSTEM), so the two sources agree.

Definitions (parameters in ``parameters/provincial.yaml``, ``channel``):

* **digital share** = transactions on the ``channel.digital`` channels / transactions on all customer
  channels; the migration compares it now with a base month (the same month last year by default, or
  ``N`` months back).
* **card usage, on-us vs other-bank (本代他)**: our customers' ATM and POS transactions split by the
  device's owner: ``OWN`` (counterparty OWN, or an ATM transaction on one of our terminals),
  ``OTHER`` (counterparty OTHER: another bank's ATM, a merchant acquired by another bank). The extracts
  hold only our customers' account transactions, so other banks' cards used at our devices (acquiring,
  代理他行卡) are not in the data and cannot be shown.
* **cost** = transactions × ``channel.cost_per_txn``; cost per customer = the org's channel cost / its
  customers with at least one customer-channel transaction that month (customers counted at their home
  branch, transactions at the account's branch; the two agree for nearly every customer).
  **Saving of the migration** = what the month's customer-channel volume would have cost at the channel
  mix of the base month, minus what it cost (negative when the mix moved to dearer channels).
* **under-used devices (撤、并、迁)**: over the last ``underused.trend_months`` months, a device whose
  average monthly transactions are below the absolute floor (``atm_min_monthly_txns`` /
  ``branch_min_monthly_txns``) or below ``share_of_peer_median`` × the median of its peers (ATMs of the
  same county; branches of the same county). ATMs are the terminals seen in the warehouse up to the as-of
  month (a terminal with no transaction ever is invisible: there is no device master); an ATM belongs to
  the branch most of its transactions are booked at. A branch's volume is its counter transactions (by
  the teller's branch in the latest staff roster, the account's branch when the teller is unknown) plus
  its ATMs' transactions. The peer median is taken over the whole county even when the focus is one
  branch (only the median is shown, never another branch's devices).

Age bands are the ``age`` dimension of ``parameters/dimensions.yaml`` (individual customers only).
Customer-group figures (migration, cost per customer) are blanked for groups under ``principal.min_cell``
customers for roles without detail (:func:`~cimlib.segmentation._analyses.suppress_small`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import (
    PERIOD_KEYS,
    PERIOD_LABELS,
    AnalysisContext,
    analysis_context,
    dates_param,
    drill_customers,
    is_zh,
    pick,
)
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._params import CHANNELS
from cimlib.customer import _data as D
from cimlib.i18n import code_label
from cimlib.segmentation._analyses import suppress_small
from cimlib.segmentation._dimensions import load_dimensions

GroupBy = Literal["county", "branch", "age"]
DeviceKind = Literal["ATM", "BRANCH"]
Pattern = Literal["counter_only", "moved_to_digital"]

#: The card channels of the on-us / other-bank split.
CARD_CHANNELS = ("ATM", "POS")
#: Measure and column names of this module's frames and charts.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "volume": "Channel volume",
        "trend": "Channel shares over time",
        "migration": "Counter-to-digital migration",
        "card_usage": "Card usage: own vs other banks' devices",
        "cost_title": "Channel cost by org",
        "cost_per_customer": "Channel cost per customer",
        "saving": "Saving from channel migration",
        "underused_ATM": "Under-used ATMs",
        "underused_BRANCH": "Under-used branches",
        "underused_trend": "Monthly transactions of the under-used devices",
        "customers": "Customers",
        "txn_count": "Transactions",
        "txn_amount": "Amount",
        "count_share": "Share of transactions",
        "amount_share": "Share of amount",
        "digital_share": "Digital share",
        "counter_share": "Counter share",
        "cost": "Cost",
        "cost_per_txn": "Cost per transaction",
        "month": "Month",
        "base": "Base",
        "now": "Now",
        "threshold": "Threshold",
        "OWN": "Own bank's device",
        "OTHER": "Other bank's device",
        "UNKNOWN": "Unknown",
        "FLOOR": "Below the floor",
        "PEER": "Below the peer median share",
        "FLOOR+PEER": "Below the floor and the peer median share",
        "ALL": "All",
    },
    "zh": {
        "volume": "渠道交易量",
        "trend": "渠道占比趋势",
        "migration": "柜面向电子渠道迁移",
        "card_usage": "银行卡使用：本行设备与他行设备",
        "cost_title": "各机构渠道成本",
        "cost_per_customer": "户均渠道成本",
        "saving": "渠道迁移节约成本",
        "underused_ATM": "低效自助设备",
        "underused_BRANCH": "低效网点",
        "underused_trend": "低效设备月交易笔数",
        "customers": "客户数",
        "txn_count": "交易笔数",
        "txn_amount": "交易金额",
        "count_share": "笔数占比",
        "amount_share": "金额占比",
        "digital_share": "电子渠道占比",
        "counter_share": "柜面占比",
        "cost": "成本",
        "cost_per_txn": "单笔成本",
        "month": "月份",
        "base": "基期",
        "now": "本期",
        "threshold": "阈值",
        "OWN": "本行设备",
        "OTHER": "他行设备",
        "UNKNOWN": "未知",
        "FLOOR": "低于绝对下限",
        "PEER": "低于同业中位数比例",
        "FLOOR+PEER": "低于绝对下限及同业中位数比例",
        "ALL": "全部",
    },
}


def text(key: str, lang: str) -> str:
    """A measure or column name of this module in ``lang``."""
    return TEXT["zh" if is_zh(lang) else "en"][key]


def _channel_label(code: str, lang: str) -> str:
    return code_label("channel", code, _ui(lang))


def _finish(df: pd.DataFrame, ctx: AnalysisContext, title_key: str, **attrs: Any) -> pd.DataFrame:
    df.attrs.update(
        title=text(title_key, ctx.lang),
        as_of=ctx.day.isoformat(),
        org=ctx.org.code,
        org_label=ctx.org_label(ctx.org.code),
        edition=ctx.edition,
        **attrs,
    )
    return df


def _period_rows(ctx: AnalysisContext) -> list[tuple[str, dt.date]]:
    """The comparison periods the warehouse has, in :data:`PERIOD_KEYS` order."""
    per = ctx.periods
    return [(k, per[k]) for k in PERIOD_KEYS if per[k] is not None]  # type: ignore[misc]


def _base_date(ctx: AnalysisContext, base: str | int) -> dt.date | None:
    """The base month: ``last_year``, ``prev_month``, ``year_start`` or a number of months back."""
    if isinstance(base, int) and not isinstance(base, bool):
        if base < 1:
            raise ValueError("base must be a positive number of months or a period name")
        upto = ctx.trend_dates(base + 1)
        return upto[0] if len(upto) == base + 1 else None
    if base not in PERIOD_KEYS[1:]:
        raise ValueError(
            f"base must be one of {', '.join(PERIOD_KEYS[1:])} or a number of months, not {base!r}"
        )
    return ctx.periods[str(base)]


def _digital(ctx: AnalysisContext) -> list[str]:
    return [c for c in CHANNELS if c in ctx.params.channel.digital]


def _sum_cols(prefix: str, channels: Sequence[str], alias: str = "m") -> str:
    return " + ".join(f"{alias}.{prefix}_{c.lower()}" for c in channels) or "0"


# ---------------------------------------------------------------------------------------------- volume
_VOLUME_SQL = """
SELECT m.as_of_date, m.channel, m.txn_type,
    (list_contains($channels, m.channel) AND coalesce(t.customer_initiated, FALSE)) AS counted,
    CAST(sum(m.txn_count) AS BIGINT) AS txn_count,
    CAST(sum(m.txn_amount) AS DOUBLE) AS txn_amount
FROM mart_channel_month AS m
LEFT JOIN ref_txn_type AS t ON t.code = m.txn_type
WHERE list_contains($dates, m.as_of_date) AND {cond}
GROUP BY ALL
"""


def _volume_rows(ctx: AnalysisContext, dates: Sequence[dt.date]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counted (customer channels, customer-initiated) and excluded volume per month, channel and type."""
    cond, bp = ctx.branch_cond("m.org_code")
    df = ctx.query(_VOLUME_SQL.format(cond=cond), {**bp, "dates": list(dates), "channels": list(CHANNELS)})
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date
    counted = df[df["counted"].astype(bool)].drop(columns="counted")
    excluded = df[~df["counted"].astype(bool)].drop(columns="counted")
    return counted, excluded


def _complete(df: pd.DataFrame, dates: Sequence[dt.date], keys: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Sum ``df`` to ``as_of_date`` × ``keys`` with a zero row for every combination nobody used."""
    cols = ["as_of_date", *keys]
    idx = pd.MultiIndex.from_product([list(dates), *keys.values()], names=cols)
    g = df.groupby(cols)[["txn_count", "txn_amount"]].sum()
    out = g.reindex(idx, fill_value=0).reset_index()
    out["txn_count"] = out["txn_count"].astype("int64")
    out["txn_amount"] = out["txn_amount"].astype(float)
    return out


_ORDERS: dict[str, dict[str, int]] = {
    "period": {k: i for i, k in enumerate(PERIOD_KEYS)},
    "channel": {c: i for i, c in enumerate(CHANNELS)},
    "device_owner": {"OWN": 0, "OTHER": 1, "UNKNOWN": 2},
}


def _sort(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Rows by ``cols``: periods, channels and owners in their natural order, other columns as text."""

    def key(s: pd.Series) -> pd.Series:
        order = _ORDERS.get(str(s.name))
        return s.map(lambda v: order.get(v, len(order))) if order is not None else s

    return df.sort_values(list(cols), key=key, ignore_index=True)


def _add_shares(df: pd.DataFrame, within: Sequence[str]) -> pd.DataFrame:
    for col, share in (("txn_count", "count_share"), ("txn_amount", "amount_share")):
        tot = df.groupby(list(within))[col].transform("sum").astype(float)
        df[share] = (df[col].astype(float) / tot.where(tot > 0)).fillna(0.0)
    return df


def _excluded(ex: pd.DataFrame, day: dt.date) -> dict[str, float]:
    cur = ex[ex["as_of_date"] == day]
    return {"txn_count": int(cur["txn_count"].sum()), "txn_amount": float(cur["txn_amount"].sum())}


def channel_volume(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    by_txn_type: bool = False,
) -> pd.DataFrame:
    """Customer-channel transactions by period (this month and its comparisons), channel and type.

    Parameters
    ----------
    principal : Principal
        Who asks (a customer-manager role sees no org-level channel volume: ``NotPermitted``).
    as_of : str, date or None
        ``YYYY-MM``; the latest month when None.
    org : str, optional
        The focus county or branch within the principal's scope.
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN``.
    by_txn_type : bool
        Split each channel by transaction type (deposit, withdrawal, transfer …).

    Returns
    -------
    DataFrame
        One row per period × channel (× transaction type): ``period, period_label, as_of_date, channel,
        label`` (the channel's name), [``txn_type, txn_type_label``], ``txn_count, txn_amount,
        count_share, amount_share`` (shares of the period's customer-channel total; they sum to 1 per
        period). ``attrs["excluded"]``: the month's SYSTEM and non-customer-initiated volume left out.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        periods = _period_rows(ctx)
        counted, excluded = _volume_rows(ctx, dates_param([d for _, d in periods]))
        dates = [d for _, d in periods]
        if by_txn_type:  # the channel × type pairs used in any period (a zero row in the others)
            pairs = counted[["channel", "txn_type"]].drop_duplicates()
            cols = ["as_of_date", "channel", "txn_type"]
            grid = pd.DataFrame({"as_of_date": dates}).merge(pairs, how="cross")
            g = counted.groupby(cols, as_index=False)[["txn_count", "txn_amount"]].sum()
            df = grid.merge(g, on=cols, how="left").fillna({"txn_count": 0, "txn_amount": 0.0})
            df = df.astype({"txn_count": "int64", "txn_amount": float})
        else:
            df = _complete(counted, dates, {"channel": CHANNELS})
        df = _add_shares(df, ["as_of_date"])
        period_of = {d: k for k, d in periods}
        df.insert(0, "period", df["as_of_date"].map(period_of))
        df.insert(1, "period_label", [pick(PERIOD_LABELS[p], lang) for p in df["period"]])
        df.insert(4, "label", [_channel_label(c, lang) for c in df["channel"]])
        if by_txn_type:
            df.insert(6, "txn_type_label", [code_label("txn_type", c, _ui(lang)) for c in df["txn_type"]])
        df = _sort(df, ["period", "channel"] + (["txn_type"] if by_txn_type else []))
        return _finish(df, ctx, "volume", excluded=_excluded(excluded, ctx.day))


def channel_trend(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    months: int = 13,
) -> pd.DataFrame:
    """Each customer channel's monthly transactions and share over the last ``months`` months.

    Parameters as :func:`channel_volume`; ``months`` is the trend's length (up to the as-of month).

    Returns
    -------
    DataFrame
        One row per month × channel: ``as_of_date, month`` (``YYYY-MM``), ``channel, label, txn_count,
        txn_amount, count_share, amount_share`` (shares sum to 1 per month). ``attrs["excluded"]`` as
        :func:`channel_volume`.
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        dates = ctx.trend_dates(months)
        counted, excluded = _volume_rows(ctx, dates)
        df = _add_shares(_complete(counted, dates, {"channel": CHANNELS}), ["as_of_date"])
        df.insert(1, "month", [d.strftime("%Y-%m") for d in df["as_of_date"]])
        df.insert(3, "label", [_channel_label(c, lang) for c in df["channel"]])
        return _finish(df, ctx, "trend", excluded=_excluded(excluded, ctx.day), months=len(dates))


# ------------------------------------------------------------------------------------------- migration
def _group_sql(ctx: AnalysisContext, by: str) -> tuple[str, str, list[tuple[str, dict[str, str]]] | None]:
    """The member expression on ``dim_customer d``, an extra condition, and the ordered members (age)."""
    if by == "county":
        return "d.county_code", "TRUE", None
    if by == "branch":
        return "d.home_org_code", "TRUE", None
    if by == "age":
        dim = load_dimensions(ctx.home)["age"]
        types = ", ".join(f"'{t}'" for t in dim.applies if t in ("I", "C"))
        return dim.member_sql("d"), f"d.customer_type IN ({types})", list(dim.members)
    raise ValueError(f"by must be county, branch or age, not {by!r}")


def _group_label(ctx: AnalysisContext, by: str, member: Any, members: Any, lang: str) -> str:
    if by == "age":
        for mid, lab in members or []:
            if mid == member:
                return str(lab["zh" if is_zh(lang) else "en"])
        return "" if member is None else str(member)
    return ctx.org_label(member)


def _mix_sql(ctx: AnalysisContext, by: str) -> tuple[str, dict[str, Any], Any]:
    member, extra, members = _group_sql(ctx, by)
    cond, cp = ctx.cust_cond("d")
    total = _sum_cols("txn_count", CHANNELS)
    digital = _sum_cols("txn_count", _digital(ctx))
    sql = f"""
SELECT {member} AS member, m.as_of_date,
    count(*) FILTER (WHERE {total} > 0) AS customers,
    count(*) FILTER (WHERE {digital} > 0) AS digital_customers,
    CAST(coalesce(sum({total}), 0) AS BIGINT) AS txn_count,
    CAST(coalesce(sum(m.txn_count_counter), 0) AS BIGINT) AS counter_count,
    CAST(coalesce(sum({digital}), 0) AS BIGINT) AS digital_count
FROM mart_customer_month AS m
JOIN dim_customer AS d ON d.customer_id = m.customer_id
WHERE list_contains($dates, m.as_of_date) AND ({cond}) AND {extra}
GROUP BY ALL
"""
    return sql, cp, members


def _ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a.astype(float) / b.astype(float).where(b > 0)).astype(float)


def channel_migration(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    by: GroupBy = "county",
    base: str | int = "last_year",
) -> pd.DataFrame:
    """Counter-to-digital migration per county, branch or age band: digital share now vs a base month.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`channel_volume`.
    by : {"county", "branch", "age"}
        The group: the customer's county, home branch, or age band (individuals; the ``age`` dimension).
    base : str or int
        The base month: ``last_year`` (default), ``prev_month``, ``year_start`` or a number of months back.

    Returns
    -------
    DataFrame
        One row per group: ``by, member, label, customers, customers_base`` (with a customer-channel
        transaction), ``txn_count, txn_count_base, counter_share, counter_share_base, digital_share,
        digital_share_base, digital_share_change`` (now − base, a fraction: +0.05 is 5 points),
        ``counter_share_change, digital_customer_share, digital_customer_share_base`` (customers using a
        digital channel / active customers), ``suppressed``. Base columns are NaN when the warehouse lacks
        the base month. ``attrs``: ``base_date``, ``digital`` (the channels) and ``total`` (the same
        figures for the whole focus org).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        base_day = _base_date(ctx, base)
        sql, cp, members = _mix_sql(ctx, by)
        raw = ctx.query(sql, {**cp, "dates": dates_param([ctx.day, base_day])})
        raw["as_of_date"] = pd.to_datetime(raw["as_of_date"]).dt.date
        df = _migration_frame(raw, ctx.day, base_day)
        if members is not None:  # every age band, in the dimension's order (empty bands as zeros)
            ids = [m for m, _ in members]
            df = df.set_index("member").reindex(ids + [m for m in df["member"] if m not in ids])
            df = df.rename_axis("member").reset_index()
            zero = ["customers", "txn_count"] + (["customers_base", "txn_count_base"] if base_day else [])
            df[zero] = df[zero].fillna(0)
            df[["customers", "txn_count"]] = df[["customers", "txn_count"]].astype("int64")
        else:
            df = df.sort_values("member", ignore_index=True)
        total = (
            _migration_frame(raw.assign(member="ALL"), ctx.day, base_day).iloc[0].to_dict()
            if len(raw)
            else {}
        )
        df.insert(0, "by", by)
        df.insert(2, "label", [_group_label(ctx, by, m, members, lang) for m in df["member"]])
        cell = df["customers"].where(
            df["customers_base"].isna(), df[["customers", "customers_base"]].min(axis=1)
        )
        out = suppress_small(df.assign(_cell=cell), principal, count_col="_cell").drop(columns="_cell")
        return _finish(out, ctx, "migration", base_date=base_day.isoformat() if base_day else None,
                       digital=_digital(ctx), total=total)  # fmt: skip


def _migration_frame(raw: pd.DataFrame, day: dt.date, base_day: dt.date | None) -> pd.DataFrame:
    cols = ["customers", "digital_customers", "txn_count", "counter_count", "digital_count"]
    now = raw[raw["as_of_date"] == day].groupby("member", dropna=False)[cols].sum()
    if base_day is not None:
        was = raw[raw["as_of_date"] == base_day].groupby("member", dropna=False)[cols].sum()
    else:
        was = pd.DataFrame(columns=cols, dtype=float)
    j = now.join(was.add_suffix("_base"), how="outer")
    if base_day is not None:
        j = j.fillna(0)
    else:
        j[cols] = j[cols].fillna(0)
    out = pd.DataFrame({"member": j.index})
    j = j.reset_index(drop=True)
    out["customers"] = j["customers"].astype("int64")
    out["customers_base"] = j["customers_base"].astype(float)
    out["txn_count"] = j["txn_count"].astype("int64")
    out["txn_count_base"] = j["txn_count_base"].astype(float)
    out["counter_share"] = _ratio(j["counter_count"], j["txn_count"])
    out["counter_share_base"] = _ratio(j["counter_count_base"], j["txn_count_base"])
    out["digital_share"] = _ratio(j["digital_count"], j["txn_count"])
    out["digital_share_base"] = _ratio(j["digital_count_base"], j["txn_count_base"])
    out["digital_share_change"] = out["digital_share"] - out["digital_share_base"]
    out["counter_share_change"] = out["counter_share"] - out["counter_share_base"]
    out["digital_customer_share"] = _ratio(j["digital_customers"], j["customers"])
    out["digital_customer_share_base"] = _ratio(j["digital_customers_base"], j["customers_base"])
    return out


# ------------------------------------------------------------------------------------------ card usage
_CARD_SQL = """
SELECT m.as_of_date, m.channel,
    CASE WHEN m.counterparty = 'OTHER' THEN 'OTHER'
         WHEN m.counterparty = 'OWN' OR (m.channel = 'ATM' AND m.terminal_id IS NOT NULL) THEN 'OWN'
         ELSE 'UNKNOWN' END AS device_owner,
    CAST(sum(m.txn_count) AS BIGINT) AS txn_count,
    CAST(sum(m.txn_amount) AS DOUBLE) AS txn_amount
FROM mart_channel_month AS m
WHERE list_contains($dates, m.as_of_date) AND list_contains($channels, m.channel) AND {cond}
GROUP BY ALL
"""


def card_usage(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """On-us vs other-bank (本代他): our customers' ATM and POS transactions by the device's owner, by period.

    Only our customers' transactions are in the extracts: other banks' cards used at our ATMs and
    merchants (acquiring) are not in the data, so this is the issuing side only.

    Parameters as :func:`channel_volume`.

    Returns
    -------
    DataFrame
        One row per period × channel (ATM, POS) × ``device_owner`` (``OWN``, ``OTHER``; ``UNKNOWN`` only
        when some transactions carry neither a counterparty nor one of our terminals): ``period,
        period_label, as_of_date, channel, label, device_owner, owner_label, txn_count, txn_amount,
        count_share, amount_share`` (shares within the period and channel).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        periods = _period_rows(ctx)
        dates = [d for _, d in periods]
        cond, bp = ctx.branch_cond("m.org_code")
        raw = ctx.query(_CARD_SQL.format(cond=cond), {**bp, "dates": dates, "channels": list(CARD_CHANNELS)})
        raw["as_of_date"] = pd.to_datetime(raw["as_of_date"]).dt.date
        owners = ["OWN", "OTHER"] + (["UNKNOWN"] if (raw["device_owner"] == "UNKNOWN").any() else [])
        df = _add_shares(_complete(raw, dates, {"channel": CARD_CHANNELS, "device_owner": owners}),
                         ["as_of_date", "channel"])  # fmt: skip
        period_of = {d: k for k, d in periods}
        df.insert(0, "period", df["as_of_date"].map(period_of))
        df.insert(1, "period_label", [pick(PERIOD_LABELS[p], lang) for p in df["period"]])
        df.insert(4, "label", [_channel_label(c, lang) for c in df["channel"]])
        df.insert(6, "owner_label", [text(o, lang) for o in df["device_owner"]])
        return _finish(_sort(df, ["period", "channel", "device_owner"]), ctx, "card_usage")


# ------------------------------------------------------------------------------------------------ cost
def _cost_map(ctx: AnalysisContext) -> pd.Series:
    return pd.Series({c: float(ctx.params.channel.cost_per_txn[c]) for c in CHANNELS})


def _group_of_branch(ctx: AnalysisContext) -> dict[str, str]:
    """Each branch of the focus org mapped to the focus org's child it lies in (itself for a branch)."""
    if ctx.org.level == "BRANCH":
        return {ctx.org.code: ctx.org.code}
    out: dict[str, str] = {}
    for b in ctx.branches:
        o = ctx.orgs[b]
        while o.parent is not None and o.parent != ctx.org.code:
            o = ctx.orgs[o.parent]
        out[b] = o.code
    return out


def _branch_volume(ctx: AnalysisContext, day: dt.date) -> pd.DataFrame:
    cond, bp = ctx.branch_cond("m.org_code")
    sql = f"""
SELECT m.org_code, m.channel, CAST(sum(m.txn_count) AS BIGINT) AS txn_count
FROM mart_channel_month AS m
JOIN ref_txn_type AS t ON t.code = m.txn_type AND t.customer_initiated
WHERE m.as_of_date = $day AND list_contains($channels, m.channel) AND {cond}
GROUP BY ALL
"""
    return ctx.query(sql, {**bp, "day": day, "channels": list(CHANNELS)})


def channel_cost(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The month's channel cost (transactions × ``channel.cost_per_txn``) by org and channel.

    The orgs are the focus org's children (the counties for the province, the branches for a county; the
    branch itself for a branch), keyed by the account's branch.

    Parameters as :func:`channel_volume`.

    Returns
    -------
    DataFrame
        One row per org × channel: ``org_code, org_label, channel, label, txn_count, cost_per_txn, cost,
        cost_share`` (of the org's cost; sums to 1 per org with any cost). ``attrs["total_cost"]``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        raw = _branch_volume(ctx, ctx.day)
        group = _group_of_branch(ctx)
        raw["org_code"] = raw["org_code"].map(group)
        orgs = sorted(set(group.values()))
        idx = pd.MultiIndex.from_product([orgs, list(CHANNELS)], names=["org_code", "channel"])
        df = (
            raw.groupby(["org_code", "channel"])[["txn_count"]].sum().reindex(idx, fill_value=0).reset_index()
        )
        df["txn_count"] = df["txn_count"].astype("int64")
        df["cost_per_txn"] = df["channel"].map(_cost_map(ctx))
        df["cost"] = df["txn_count"] * df["cost_per_txn"]
        tot = df.groupby("org_code")["cost"].transform("sum")
        df["cost_share"] = (df["cost"] / tot.where(tot > 0)).fillna(0.0)
        df.insert(1, "org_label", [ctx.org_label(o) for o in df["org_code"]])
        df.insert(3, "label", [_channel_label(c, lang) for c in df["channel"]])
        df = _sort(df, ["org_code", "channel"])
        return _finish(df, ctx, "cost_title", total_cost=float(df["cost"].sum()))


def channel_cost_per_customer(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Channel cost per active customer, per child org of the focus org.

    Parameters as :func:`channel_volume`.

    Returns
    -------
    DataFrame
        One row per org: ``org_code, org_label, customers`` (with a customer-channel transaction this
        month, at their home branch), ``txn_count, cost, cost_per_customer, cost_per_txn`` (average),
        ``counter_share``, ``suppressed``. The orgs' costs add up to :func:`channel_cost`'s total.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        raw = _branch_volume(ctx, ctx.day)
        group = _group_of_branch(ctx)
        raw["org_code"] = raw["org_code"].map(group)
        raw["cost"] = raw["txn_count"] * raw["channel"].map(_cost_map(ctx))
        raw["counter"] = raw["txn_count"].where(raw["channel"] == "COUNTER", 0)
        agg = raw.groupby("org_code")[["txn_count", "cost", "counter"]].sum()
        cond, cp = ctx.cust_cond("d")
        total = _sum_cols("txn_count", CHANNELS)
        cust = ctx.query(
            f"SELECT d.home_org_code AS branch, count(*) AS customers FROM mart_customer_month AS m "
            f"JOIN dim_customer AS d ON d.customer_id = m.customer_id "
            f"WHERE m.as_of_date = $day AND ({total}) > 0 AND ({cond}) GROUP BY 1",
            {**cp, "day": ctx.day},
        )
        cust["org_code"] = cust["branch"].map(group)
        nc = cust.dropna(subset=["org_code"]).groupby("org_code")["customers"].sum()
        orgs = sorted(set(group.values()))
        df = pd.DataFrame({"org_code": orgs})
        df["org_label"] = [ctx.org_label(o) for o in orgs]
        df["customers"] = df["org_code"].map(nc).fillna(0).astype("int64")
        df["txn_count"] = df["org_code"].map(agg["txn_count"]).fillna(0).astype("int64")
        df["cost"] = df["org_code"].map(agg["cost"]).fillna(0.0).astype(float)
        df["cost_per_customer"] = _ratio(df["cost"], df["customers"])
        df["cost_per_txn"] = _ratio(df["cost"], df["txn_count"])
        df["counter_share"] = _ratio(df["org_code"].map(agg["counter"]).fillna(0), df["txn_count"])
        out = suppress_small(df, principal)
        return _finish(out, ctx, "cost_per_customer", total_cost=float(df["cost"].sum()))


def channel_saving(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    base: str | int = "last_year",
) -> pd.DataFrame:
    """The month's channel cost against its cost at the base month's channel mix: the migration's saving.

    ``cost_at_base_mix`` spreads this month's customer-channel transactions over the channels in the base
    month's shares and prices them with ``channel.cost_per_txn``; ``saving = cost_at_base_mix − cost``.

    Parameters as :func:`channel_migration` (``base``).

    Returns
    -------
    DataFrame
        One row per channel: ``channel, label, count_share_base, count_share, txn_count,
        txn_count_at_base_mix, cost_per_txn, cost, cost_at_base_mix, saving``. ``attrs``: ``base_date``,
        ``cost``, ``cost_at_base_mix`` and ``saving`` (totals; NaN without a base month).
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        base_day = _base_date(ctx, base)
        dates = dates_param([ctx.day, base_day])
        counted, _ = _volume_rows(ctx, dates)
        g = _complete(counted, dates, {"channel": CHANNELS})
        now = g[g["as_of_date"] == ctx.day].set_index("channel")["txn_count"].reindex(list(CHANNELS))
        df = pd.DataFrame({"channel": list(CHANNELS)})
        df["label"] = [_channel_label(c, lang) for c in CHANNELS]
        if base_day is not None:
            was = g[g["as_of_date"] == base_day].set_index("channel")["txn_count"].reindex(list(CHANNELS))
            df["count_share_base"] = (was / was.sum() if was.sum() else was * math.nan).to_numpy(dtype=float)
        else:
            df["count_share_base"] = math.nan
        df["count_share"] = (now / now.sum() if now.sum() else now * 0.0).to_numpy(dtype=float)
        df["txn_count"] = now.to_numpy(dtype="int64")
        df["txn_count_at_base_mix"] = df["count_share_base"] * float(now.sum())
        df["cost_per_txn"] = df["channel"].map(_cost_map(ctx))
        df["cost"] = df["txn_count"] * df["cost_per_txn"]
        df["cost_at_base_mix"] = df["txn_count_at_base_mix"] * df["cost_per_txn"]
        df["saving"] = df["cost_at_base_mix"] - df["cost"]
        cost = float(df["cost"].sum())
        at_base = float(df["cost_at_base_mix"].sum()) if base_day is not None else math.nan
        return _finish(df, ctx, "saving", base_date=base_day.isoformat() if base_day else None,
                       cost=cost, cost_at_base_mix=at_base, saving=at_base - cost)  # fmt: skip


# -------------------------------------------------------------------------------------- under-used list
def _peer_branches(ctx: AnalysisContext) -> list[str]:
    """The branches of every county the focus org touches (the peers of its devices)."""
    counties = {ctx.county_of(b) for b in ctx.branches}
    branches = (o.code for o in ctx.orgs.values() if o.level == "BRANCH")
    return sorted(b for b in branches if ctx.county_of(b) in counties)


_ATM_SQL = """
WITH per AS (
    SELECT m.terminal_id AS device, m.org_code, m.as_of_date, sum(m.txn_count) AS n
    FROM mart_channel_month AS m
    WHERE m.channel = 'ATM' AND m.terminal_id IS NOT NULL AND m.as_of_date <= $day
      AND list_contains($peers, m.org_code)
    GROUP BY ALL
),
home AS (
    SELECT device, arg_max(org_code, n) AS org_code
    FROM (SELECT device, org_code, sum(n) AS n FROM per GROUP BY ALL)
    GROUP BY device
)
SELECT h.device, h.org_code, p.as_of_date, CAST(sum(p.n) AS BIGINT) AS txn_count
FROM home AS h JOIN per AS p ON p.device = h.device AND list_contains($dates, p.as_of_date)
GROUP BY ALL
UNION ALL
SELECT h.device, h.org_code, NULL AS as_of_date, CAST(0 AS BIGINT) AS txn_count FROM home AS h
"""

_BRANCH_SQL = """
SELECT coalesce(CASE WHEN m.channel = 'COUNTER' THEN s.org_code END, m.org_code) AS device, m.as_of_date,
    CAST(sum(m.txn_count) AS BIGINT) AS txn_count
FROM mart_channel_month AS m
LEFT JOIN core_staff AS s ON s.staff_no = m.teller_no
WHERE list_contains($dates, m.as_of_date) AND m.channel IN ('COUNTER', 'ATM')
  AND list_contains($peers, m.org_code)
GROUP BY ALL
"""


def _underused(
    ctx: AnalysisContext,
    kind: str,
    trend_months: int | None,
    min_monthly_txns: int | None,
    share_of_peer_median: float | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every device of the focus org with its average, peer median and verdict; and its monthly counts."""
    p = ctx.params.channel.underused
    months = int(trend_months if trend_months is not None else p.trend_months)
    if months < 1:
        raise ValueError("trend_months must be at least 1")
    floor = float(min_monthly_txns if min_monthly_txns is not None
                  else (p.atm_min_monthly_txns if kind == "ATM" else p.branch_min_monthly_txns))  # fmt: skip
    share = float(share_of_peer_median if share_of_peer_median is not None else p.share_of_peer_median)
    dates = ctx.trend_dates(months)
    ctx.branch_cond("m.org_code")  # raises NotPermitted for a role without org-level figures
    peers = _peer_branches(ctx)
    args = {"dates": dates, "peers": peers, "day": ctx.day}
    if kind == "ATM":
        raw = ctx.query(_ATM_SQL, args)
        devices = raw[["device", "org_code"]].drop_duplicates("device")
        monthly = raw.dropna(subset=["as_of_date"])
    elif kind == "BRANCH":
        monthly = ctx.query(_BRANCH_SQL, {"dates": dates, "peers": peers})
        devices = pd.DataFrame({"device": peers, "org_code": peers})
        monthly = monthly[monthly["device"].isin(set(peers))]
    else:
        raise ValueError(f"kind must be ATM or BRANCH, not {kind!r}")
    monthly = monthly.assign(as_of_date=pd.to_datetime(monthly["as_of_date"]).dt.date)
    idx = pd.MultiIndex.from_product([devices["device"].tolist(), dates], names=["device", "as_of_date"])
    grid = monthly.groupby(["device", "as_of_date"])["txn_count"].sum().reindex(idx, fill_value=0)
    grid = grid.reset_index()
    avg = grid.groupby("device")["txn_count"].mean()
    cur = grid[grid["as_of_date"] == ctx.day].set_index("device")["txn_count"]
    dev = devices.copy()
    dev["county_code"] = [ctx.county_of(o) for o in dev["org_code"]]
    dev["txn_count"] = dev["device"].map(cur).fillna(0).astype("int64")
    dev["avg_monthly_txns"] = dev["device"].map(avg).fillna(0.0).astype(float)
    dev["peer_median"] = dev.groupby("county_code")["avg_monthly_txns"].transform("median")
    dev["peers"] = dev.groupby("county_code")["device"].transform("count").astype("int64")
    dev["floor"] = floor
    dev["peer_threshold"] = share * dev["peer_median"]
    below_floor = dev["avg_monthly_txns"] < floor
    below_peer = dev["avg_monthly_txns"] < dev["peer_threshold"]
    dev["reason"] = [
        "FLOOR+PEER" if f and q else "FLOOR" if f else "PEER" if q else ""
        for f, q in zip(below_floor, below_peer, strict=True)
    ]
    dev["listed"] = below_floor | below_peer
    mine = set(ctx.branches)
    dev = dev[dev["org_code"].isin(mine)].reset_index(drop=True)
    grid = grid[grid["device"].isin(set(dev["device"]))].reset_index(drop=True)
    grid = grid.merge(dev[["device", "org_code", "listed", "floor", "peer_threshold"]], on="device")
    return dev, grid


def underused_devices(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    kind: DeviceKind = "ATM",
    listed_only: bool = True,
    trend_months: int | None = None,
    min_monthly_txns: int | None = None,
    share_of_peer_median: float | None = None,
) -> pd.DataFrame:
    """The marginal-volume list (撤、并、迁): ATMs or branches below the floor or far below their peers.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`channel_volume`.
    kind : {"ATM", "BRANCH"}
        Our ATMs (terminal id) or our branches.
    listed_only : bool
        Only the devices the rule lists (default) or every device of the focus org with its verdict.
    trend_months, min_monthly_txns, share_of_peer_median : optional
        Overrides of ``channel.underused`` (the window, the absolute floor of ``kind``, the peer share).

    Returns
    -------
    DataFrame
        One row per device, the lowest average first: ``kind, device, org_code, org_label, county_code,
        txn_count`` (the as-of month), ``avg_monthly_txns`` (over the window, months without a
        transaction counting 0), ``peers, peer_median, peer_threshold, floor, reason`` (``FLOOR``,
        ``PEER``, ``FLOOR+PEER``; empty when not listed), ``reason_label, listed``. ``attrs``:
        ``trend_months``, ``devices`` (in the focus org) and ``listed``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        dev, grid = _underused(ctx, kind, trend_months, min_monthly_txns, share_of_peer_median)
        n_all, n_listed = len(dev), int(dev["listed"].sum())
        if listed_only:
            dev = dev[dev["listed"]]
        dev = dev.sort_values(["avg_monthly_txns", "device"], ignore_index=True)
        dev.insert(0, "kind", kind)
        dev.insert(3, "org_label", [ctx.org_label(o) for o in dev["org_code"]])
        dev["reason_label"] = [text(r, lang) if r else "" for r in dev["reason"]]
        dev = dev[
            [
                "kind",
                "device",
                "org_code",
                "org_label",
                "county_code",
                "txn_count",
                "avg_monthly_txns",
                "peers",
                "peer_median",
                "peer_threshold",
                "floor",
                "reason",
                "reason_label",
                "listed",
            ]
        ]
        return _finish(dev, ctx, f"underused_{kind}", kind=kind, devices=n_all, listed=n_listed,
                       trend_months=int(grid["as_of_date"].nunique()) if len(grid) else 0)  # fmt: skip


def underused_trend(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    kind: DeviceKind = "ATM",
    listed_only: bool = True,
    trend_months: int | None = None,
    min_monthly_txns: int | None = None,
    share_of_peer_median: float | None = None,
) -> pd.DataFrame:
    """The monthly transactions of :func:`underused_devices`' devices over the window.

    Parameters as :func:`underused_devices`.

    Returns
    -------
    DataFrame
        One row per device × month: ``kind, device, org_code, org_label, as_of_date, month, txn_count,
        floor, peer_threshold, threshold`` (the larger of the two: under it the device is listed),
        ``listed``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        _, grid = _underused(ctx, kind, trend_months, min_monthly_txns, share_of_peer_median)
        if listed_only:
            grid = grid[grid["listed"]]
        grid = grid.sort_values(["device", "as_of_date"], ignore_index=True)
        grid.insert(0, "kind", kind)
        grid.insert(3, "org_label", [ctx.org_label(o) for o in grid["org_code"]])
        grid.insert(5, "month", [d.strftime("%Y-%m") for d in grid["as_of_date"]])
        grid["txn_count"] = grid["txn_count"].astype("int64")
        grid["threshold"] = grid[["floor", "peer_threshold"]].max(axis=1)
        grid = grid[
            [
                "kind",
                "device",
                "org_code",
                "org_label",
                "as_of_date",
                "month",
                "txn_count",
                "floor",
                "peer_threshold",
                "threshold",
                "listed",
            ]
        ]
        return _finish(grid, ctx, "underused_trend", kind=kind)


# ------------------------------------------------------------------------------------------------ drill
def channel_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    pattern: Pattern = "counter_only",
    by: GroupBy | None = None,
    member: str | None = None,
    base: str | int = "last_year",
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers behind a channel figure (county edition): scoped, masked and audit-logged.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`channel_migration`; the role must allow single-customer detail (the provincial edition
        is refused, and the refusal is audited).
    pattern : {"counter_only", "moved_to_digital"}
        ``counter_only``: customers whose customer-channel transactions this month were all at the
        counter (the most counter transactions first). ``moved_to_digital``: customers active in both
        months whose digital share rose most since ``base``.
    by, member : optional
        Limit to one group of :func:`channel_migration` (``by="age", member="AGE5"``).
    base : str or int
        The base month of ``moved_to_digital``.
    limit, app_url
        At most ``limit`` rows; links to the 360 app under ``app_url``.

    Returns
    -------
    DataFrame
        ``customer_id, customer_type, county_code, home_org_code, age, txn_count, counter_count,
        digital_count, digital_share, digital_share_base, digital_share_change``, then the masked identity
        columns and ``link``. ``attrs["total"]`` counts all matching customers.
    """
    if pattern not in ("counter_only", "moved_to_digital"):
        raise ValueError(f"pattern must be counter_only or moved_to_digital, not {pattern!r}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        target = f"{pattern}" + (f" {by}={member}" if by else "")
        action = "analysis_drill_channel"
        base_day = _base_date(ctx, base)
        cond, cp = ctx.cust_cond("d")
        params: dict[str, Any] = {**cp, "day": ctx.day, "base": base_day}
        group = "TRUE"
        if by is not None:
            expr, extra, _ = _group_sql(ctx, by)
            group = f"{extra} AND ({expr}) = $member"
            params["member"] = member
        total = _sum_cols("txn_count", CHANNELS)
        digital = _sum_cols("txn_count", _digital(ctx))
        shares = f"""
    SELECT m.customer_id, m.as_of_date, ({total}) AS txn_count, m.txn_count_counter AS counter_count,
        ({digital}) AS digital_count, ({digital}) / nullif(({total}), 0) AS digital_share
    FROM mart_customer_month AS m WHERE m.as_of_date IN ($day, $base)"""
        where = (
            "n.txn_count > 0 AND n.counter_count = n.txn_count"
            if pattern == "counter_only"
            else "n.txn_count > 0 AND b.txn_count > 0 AND n.digital_share > b.digital_share"
        )
        core = f"""
SELECT d.customer_id, d.customer_type, d.county_code, d.home_org_code, d.age,
    CAST(n.txn_count AS BIGINT) AS txn_count, CAST(n.counter_count AS BIGINT) AS counter_count,
    CAST(n.digital_count AS BIGINT) AS digital_count, CAST(n.digital_share AS DOUBLE) AS digital_share,
    CAST(b.digital_share AS DOUBLE) AS digital_share_base,
    CAST(n.digital_share - b.digital_share AS DOUBLE) AS digital_share_change
FROM ({shares}) AS n
JOIN dim_customer AS d ON d.customer_id = n.customer_id
LEFT JOIN ({shares}) AS b ON b.customer_id = n.customer_id AND b.as_of_date = $base
WHERE n.as_of_date = $day AND ({cond}) AND {group} AND {where}"""
        order = "c.counter_count DESC" if pattern == "counter_only" else "c.digital_share_change DESC"
        return drill_customers(ctx, action, target, core, params, order=order, limit=limit, app_url=app_url,
                               detail={"pattern": pattern, "by": by, "member": member})  # fmt: skip


__all__ = [
    "TEXT",
    "card_usage",
    "channel_cost",
    "channel_cost_per_customer",
    "channel_customers",
    "channel_migration",
    "channel_saving",
    "channel_trend",
    "channel_volume",
    "underused_devices",
    "underused_trend",
]
