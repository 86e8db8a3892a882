"""Charts of the staff and branch performance analysis (绩效分析): league table, rank over time (bump
chart), contribution vs customers managed (scatter) and channel mix per branch or manager.

Each function takes the frame of the matching analysis in :mod:`cimlib.analysis._performance` and returns
an Altair chart (no I/O). Amounts are shown in 万元 in Chinese and in yuan in English; the font list
renders Chinese text in static exports (vl-convert).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from cimlib.analysis._common import pick
from cimlib.analysis._common import ui_lang as _ui
from cimlib.analysis._params import CHANNELS
from cimlib.analysis._performance import MEASURES
from cimlib.charts._charts import _money, _money_format, _style
from cimlib.i18n import code_label, money_unit

#: Measures shown as money (scaled to 万元 in Chinese) and as rates.
MONEY = frozenset(
    {
        "deposit_adb",
        "deposit_balance",
        "loan_adb",
        "loan_balance",
        "npl_balance",
        "contribution",
        "counter_txn_amount",
        "other_bank_txn_amount",
        "txn_amount",
    }
)
RATES = frozenset({"npl_ratio", "quality_share", "other_bank_share", "txn_share", "managed_share"})
_T = {
    "league": {"en": "League table: {m}", "zh": "绩效排名：{m}"},
    "trend": {"en": "Rank over time: {m}", "zh": "排名走势：{m}"},
    "scatter": {"en": "Contribution vs customers managed", "zh": "贡献度与管户客户数"},
    "mix": {"en": "Channel mix", "zh": "渠道结构"},
    "median": {"en": "Peer median", "zh": "同组中位数"},
    "ranked": {"en": "Ranked", "zh": "参与排名"},
    "listed": {"en": "Listed, not ranked", "zh": "客户数不足，不排名"},
    "rank": {"en": "Rank (1 = best)", "zh": "排名（1 = 最好）"},
    "month": {"en": "Month", "zh": "月份"},
    "customers": {"en": "Customers managed (time-weighted)", "zh": "管户客户数（时间加权）"},
    "share": {"en": "Share of transactions", "zh": "交易笔数占比"},
    "member": {"en": "Member", "zh": "对象"},
    "status": {"en": "Status", "zh": "状态"},
    "channel": {"en": "Channel", "zh": "渠道"},
}
_ROW = 18  # pixels per bar


def _axis_title(measure: str, lang: str) -> str:
    name = pick(MEASURES.get(measure, {"en": measure, "zh": measure}), lang)
    return f"{name} ({money_unit(_ui(lang))})" if measure in MONEY else name


def _scaled(values: pd.Series, measure: str, lang: str) -> pd.Series:
    if measure in MONEY:
        return _money(values, _ui(lang))
    return pd.to_numeric(values, errors="coerce").astype(float)


def _fmt(measure: str, lang: str) -> str:
    if measure in MONEY:
        return _money_format(_ui(lang))
    if measure in RATES:
        return ".1%"
    return ",.1f" if measure == "customers" else ",.0f"


def _one_peer(df: pd.DataFrame, peer_group: str | None) -> pd.DataFrame:
    if not len(df):
        return df
    pg = peer_group if peer_group is not None else str(df["peer_group"].iloc[0])
    return df[df["peer_group"] == pg]


def league_table_chart(
    df: pd.DataFrame, lang: str = "en", *, peer_group: str | None = None, top: int | None = 30
) -> alt.LayerChart:
    """Horizontal bars of one peer group's members, best first, with the peer median as a rule.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._performance.league_table`.
    lang : str
        ``en`` or ``zh_CN`` (amounts in 万元).
    peer_group : str, optional
        The peer group drawn; the frame's first (its first row's) when None.
    top : int or None
        At most this many ranked members (then the unranked ones are left out); all when None.

    Returns
    -------
    altair.LayerChart
        Data ``label, value (display unit), rank, status, peer_median``; y = member sorted by value
        (ascending for lower-is-better measures), x = value, colour = ranked / listed; a rule at the
        peer median.
    """
    from cimlib.analysis._performance import LOWER_IS_BETTER

    measure = str(df["measure"].iloc[0]) if len(df) else "deposit_adb"
    part = _one_peer(df, peer_group)
    part = part[part["value"].notna()]
    ranked = part[part["ranked"].astype(bool)].sort_values("rank")
    if top is not None and len(ranked) > top:
        part = ranked.head(top)
    data = pd.DataFrame(
        {
            "label": part["label"].astype(str).to_numpy(),
            "value": _scaled(part["value"], measure, lang).to_numpy(),
            "rank": part["rank"].to_numpy(),
            "status": [pick(_T["ranked" if r else "listed"], lang) for r in part["ranked"].astype(bool)],
        }
    )
    med = float(part["peer_median"].dropna().iloc[0]) if part["peer_median"].notna().any() else None
    med_v = float(_scaled(pd.Series([med]), measure, lang).iloc[0]) if med is not None else None
    data["peer_median"] = med_v
    asc = measure in LOWER_IS_BETTER
    fmt = _fmt(measure, lang)
    colors = alt.Scale(
        domain=[pick(_T["ranked"], lang), pick(_T["listed"], lang)], range=["#2f6db3", "#b8c2cc"]
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y(
                "label:N",
                title=None,
                sort=alt.EncodingSortField("value", order="ascending" if asc else "descending"),
                axis=alt.Axis(labelLimit=220),
            ),
            x=alt.X(
                "value:Q", title=_axis_title(measure, lang), axis=alt.Axis(format=fmt, labelOverlap=True)
            ),
            color=alt.Color("status:N", scale=colors, title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("label:N", title=pick(_T["member"], lang)),
                alt.Tooltip("rank:Q"),
                alt.Tooltip("value:Q", format=fmt),
            ],
        )
    )
    layers: list[alt.Chart] = [bars]
    if med_v is not None:
        rule_df = pd.DataFrame({"peer_median": [med_v], "text": [f"{pick(_T['median'], lang)}"]})
        rule = (
            alt.Chart(rule_df).mark_rule(color="#d9534f", strokeDash=[4, 3], size=2).encode(x="peer_median:Q")
        )
        text = (
            alt.Chart(rule_df)
            .mark_text(align="left", dx=4, dy=-4, color="#d9534f", baseline="bottom")
            .encode(x="peer_median:Q", y=alt.value(0), text="text:N")
        )
        layers += [rule, text]
    peer = str(part["peer_label"].iloc[0]) if len(part) else ""
    title = pick(_T["league"], lang).format(m=pick(MEASURES[measure], lang)) + (f" · {peer}" if peer else "")
    chart = _style(alt.layer(*layers), title)
    return chart.properties(height=max(120, _ROW * len(data)))


def league_trend_chart(
    df: pd.DataFrame, lang: str = "en", *, peer_group: str | None = None, top: int = 8
) -> alt.LayerChart:
    """Bump chart: each member's rank in its peer group by month (1 at the top).

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._performance.league_trend`.
    lang : str
        ``en`` or ``zh_CN``.
    peer_group : str, optional
        The peer group drawn; the first of the frame when None.
    top : int
        The members ranked best in the last month (at most this many).

    Returns
    -------
    altair.LayerChart
        Data ``month, label, rank, value``; x = month (ordinal), y = rank (reversed: 1 on top),
        colour = member; lines with points and the member's name at its last point.
    """
    measure = str(df["measure"].iloc[0]) if len(df) else "deposit_adb"
    part = _one_peer(df, peer_group)
    part = part[part["ranked"].astype(bool) & part["rank"].notna()]
    if len(part):
        last = part[part["month"] == part["month"].max()].sort_values("rank")
        keep = list(last["member"].head(top))
        part = part[part["member"].isin(keep)]
    data = pd.DataFrame(
        {
            "month": part["month"].astype(str).to_numpy(),
            "label": part["label"].astype(str).to_numpy(),
            "rank": part["rank"].astype(float).to_numpy(),
            "value": _scaled(part["value"], measure, lang).to_numpy(),
        }
    )
    max_rank = int(data["rank"].max()) if len(data) else 1
    scale = alt.Scale(reverse=True, domain=[1, max(max_rank, 2)], nice=False)
    y = alt.Y("rank:Q", title=pick(_T["rank"], lang), scale=scale, axis=alt.Axis(format="d", tickMinStep=1))
    x = alt.X("month:O", title=pick(_T["month"], lang), axis=alt.Axis(labelAngle=0))
    color = alt.Color("label:N", title=None, legend=None)
    base = alt.Chart(data)
    lines = base.mark_line(point=alt.OverlayMarkDef(size=60, filled=True), strokeWidth=2.5).encode(
        x=x,
        y=y,
        color=color,
        tooltip=[
            alt.Tooltip("label:N", title=pick(_T["member"], lang)),
            alt.Tooltip("month:O"),
            alt.Tooltip("rank:Q"),
            alt.Tooltip("value:Q", format=_fmt(measure, lang)),
        ],
    )
    last_month = data["month"].max() if len(data) else ""
    labels = (
        base.transform_filter(alt.datum.month == last_month)
        .mark_text(align="left", dx=8, fontSize=11)
        .encode(x=x, y=y, color=color, text="label:N")
    )
    peer = (
        str(df.loc[df["peer_group"] == part["peer_group"].iloc[0], "peer_label"].iloc[0]) if len(part) else ""
    )
    title = pick(_T["trend"], lang).format(m=pick(MEASURES[measure], lang)) + (f" · {peer}" if peer else "")
    chart = _style(alt.layer(lines, labels), title)
    return chart.properties(height=max(160, 26 * max(max_rank, 2)), width=520).configure_view(stroke=None)


def manager_performance_chart(df: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """Scatter of each manager's contribution against the customers they managed (time-weighted).

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._performance.manager_performance` (unassigned and suppressed rows are left
        out).
    lang : str
        ``en`` or ``zh_CN`` (contribution in 万元).

    Returns
    -------
    altair.Chart
        Data ``label, group, customers, contribution, deposit_adb``; x = customers, y = contribution,
        colour = branch (or county when there are more than 12 branches).
    """
    part = df[(df["member_type"] == "STAFF") & ~df.get("suppressed", pd.Series(False, index=df.index))]
    part = part[part["customers"].fillna(0) > 0]
    by_county = part["org_code"].nunique() > 12
    group = part["county_label"] if by_county else part["org_label"]
    data = pd.DataFrame(
        {
            "label": part["label"].astype(str).to_numpy(),
            "group": group.astype(str).to_numpy(),
            "customers": part["customers"].astype(float).round(2).to_numpy(),
            "contribution": _money(part["contribution"], _ui(lang)).to_numpy(),
            "deposit_adb": _money(part["deposit_adb"], _ui(lang)).to_numpy(),
        }
    )
    fmt = _money_format(_ui(lang))
    chart = (
        alt.Chart(data)
        .mark_circle(size=70, opacity=0.75)
        .encode(
            x=alt.X("customers:Q", title=pick(_T["customers"], lang)),
            y=alt.Y("contribution:Q", title=_axis_title("contribution", lang), axis=alt.Axis(format=fmt)),
            color=alt.Color(
                "group:N",
                title=None,
                scale=alt.Scale(scheme="category20"),
                legend=alt.Legend(orient="right", labelLimit=200),
            ),
            tooltip=[
                alt.Tooltip("label:N", title=pick(_T["member"], lang)),
                alt.Tooltip("group:N"),
                alt.Tooltip("customers:Q", format=",.2f"),
                alt.Tooltip("contribution:Q", format=fmt),
                alt.Tooltip("deposit_adb:Q", format=fmt),
            ],
        )
    )
    return _style(chart, pick(_T["scatter"], lang))


def channel_mix_chart(df: pd.DataFrame, lang: str = "en") -> alt.Chart:
    """Stacked 100% bars: each member's (branch's or manager's) transactions by channel.

    Parameters
    ----------
    df : DataFrame
        :func:`~cimlib.analysis._performance.channel_mix`.
    lang : str
        ``en`` or ``zh_CN``.

    Returns
    -------
    altair.Chart
        Data ``label, channel, channel_label, order, txn_count, txn_share``; y = member, x = share of
        transactions (stacked, normalised), colour = channel in the fixed channel order.
    """
    part = df[~df.get("suppressed", pd.Series(False, index=df.index)).astype(bool)]
    ui = _ui(lang)
    order = {c: i for i, c in enumerate(CHANNELS)}
    data = pd.DataFrame(
        {
            "label": part["label"].astype(str).to_numpy(),
            "channel": part["channel"].astype(str).to_numpy(),
            "channel_label": [code_label("channel", c, ui) for c in part["channel"]],
            "order": part["channel"].map(order).to_numpy(),
            "txn_count": part["txn_count"].astype(float).to_numpy(),
            "txn_share": part["txn_share"].astype(float).fillna(0).to_numpy(),
        }
    )
    labels = [code_label("channel", c, ui) for c in CHANNELS]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, axis=alt.Axis(labelLimit=220)),
            x=alt.X(
                "txn_share:Q", title=pick(_T["share"], lang), stack="normalize", axis=alt.Axis(format=".0%")
            ),
            color=alt.Color(
                "channel_label:N",
                title=pick(_T["channel"], lang),
                sort=labels,
                scale=alt.Scale(domain=labels, scheme="tableau10"),
                legend=alt.Legend(orient="bottom", columns=6),
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("label:N", title=pick(_T["member"], lang)),
                alt.Tooltip("channel_label:N"),
                alt.Tooltip("txn_count:Q", format=",.1f"),
                alt.Tooltip("txn_share:Q", format=".1%"),
            ],
        )
    )
    n = data["label"].nunique()
    return _style(chart, pick(_T["mix"], lang)).properties(height=max(120, _ROW * n))


__all__ = ["channel_mix_chart", "league_table_chart", "league_trend_chart", "manager_performance_chart"]
