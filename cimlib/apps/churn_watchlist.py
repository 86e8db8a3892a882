"""The churn watchlist app: important customers most likely to leave, per branch or manager, with reasons.

All logic is here, so it is unit-tested without a browser; ``notebooks/apps/churn_watchlist.ipynb`` only calls
:func:`churn_watchlist_app`. Customer rows come only from :func:`cimlib.churn.watchlist` (scoped, masked and
audit-logged for the signed-in principal); roles without single-customer detail (the provincial analyst)
get a message and no list. The header names the scored month, the churn definition, the model version and
its backtest ROC AUC (from the model card); the list links each customer to the 360 view and downloads as
Excel, one sheet per branch.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import altair as alt
import ipywidgets as w
import pandas as pd

from cimlib.apps.customer_360 import _CSS, chart_html, principal_text
from cimlib.apps.target_search import (
    EAGER_EXCEL_ROWS,
    _branch_label,
    customer_href,
    download_html,
    signed_in_app,
)
from cimlib.charts import CJK_FONT
from cimlib.i18n import DEFAULT_LANG, LANGS, format_count, format_money, money_unit, t

log = logging.getLogger(__name__)

#: Rows of the list shown on screen (the Excel download always has every row of the list).
MAX_LIST_ROWS = 500
#: Bars of the per-branch chart.
MAX_BARS = 30
#: The "top N per branch or manager" choices; 0 is the whole watchlist.
TOP_N_CHOICES = (5, 10, 20, 50, 0)
DEFAULT_TOP_N = 10
_VERSION_RE = re.compile(r"^[0-9A-Za-z_.-]{1,80}$")
_AUC_MODEL = "churn_model"

#: The app's own text in both languages (``en`` and ``zh_CN``, both complete; a unit test checks it).
TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "CIM Workbench · Churn watchlist", "zh_CN": "CIM 客户信息工作台 · 流失预警名单"},
    "model_line": {
        "en": "Scores of {month} · {definition} · model {version} · backtest ROC AUC {auc}",
        "zh_CN": "{month} 评分 · {definition} · 模型 {version} · 回测 ROC AUC {auc}",
    },
    "model_line_none": {"en": "No month has been scored yet.", "zh_CN": "尚无已评分的月份。"},
    "by": {"en": "Rank within", "zh_CN": "排名范围"},
    "by_branch": {"en": "Branch", "zh_CN": "网点"},
    "by_manager": {"en": "Customer manager", "zh_CN": "客户经理"},
    "top_n": {"en": "Top", "zh_CN": "每组前"},
    "top_all": {"en": "All", "zh_CN": "全部"},
    "branch": {"en": "Branch", "zh_CN": "网点"},
    "all_branches": {"en": "All branches", "zh_CN": "全部网点"},
    "aggregates_only": {
        "en": "Your role sees aggregates only. The watchlist names single customers, so it is not shown; "
        "the churn analysis has the aggregate figures.",
        "zh_CN": "您的角色只能查看汇总数据。流失预警名单列示单一客户，因此不予显示；汇总数据请查看流失分析。",
    },
    "not_scored": {
        "en": "{month} has not been scored yet. Ask the administrator to run: "
        "cim churn score --as-of {month}",
        "zh_CN": "{month} 尚未评分。请联系管理员运行：cim churn score --as-of {month}",
    },
    "no_scores": {
        "en": "No month has been scored yet. Ask the administrator to run cim churn backtest once, then: "
        "cim churn score --as-of {month}",
        "zh_CN": "尚无已评分的月份。请联系管理员先运行一次 cim churn backtest，"
        "再运行：cim churn score --as-of {month}",
    },
    "bad_month": {"en": "That month is not in the warehouse.", "zh_CN": "数据仓库中没有该月份。"},
    "empty": {
        "en": "Good news: no important customer in your scope is on the watchlist for {month}.",
        "zh_CN": "好消息：{month} 您权限范围内没有重要客户进入流失预警名单。",
    },
    "empty_branch": {
        "en": "No customer of this branch is on the list.",
        "zh_CN": "该网点没有客户进入名单。",
    },
    "summary": {
        "en": "{n} customer(s) on the watchlist · value at risk {var} {unit} · {month}",
        "zh_CN": "预警客户 {n} 位 · 风险价值 {var} {unit} · {month}",
    },
    "chart_title": {
        "en": "At-risk customers and value at risk per branch",
        "zh_CN": "各网点预警客户与风险价值",
    },
    "chart_customers": {"en": "At-risk customers", "zh_CN": "预警客户数"},
    "chart_var": {"en": "Value at risk ({unit})", "zh_CN": "风险价值（{unit}）"},
    "list": {"en": "Watchlist", "zh_CN": "预警名单"},
    "help": {
        "en": "Ranked by risk x value: the churn score (probability of leaving in the next {months} months) "
        "times the customer's deposit ADB (3-month average).",
        "zh_CN": "按风险×价值排序：流失概率（未来 {months} 个月内流失的可能性）"
        "乘以客户日均存款（近3个月平均）。",
    },
    "group_branch": {
        "en": "{name} · {n} customer(s) · value at risk {var}",
        "zh_CN": "{name} · {n} 位客户 · 风险价值 {var}",
    },
    "group_manager": {
        "en": "{name} ({branch}) · {n} customer(s) · value at risk {var}",
        "zh_CN": "{name}（{branch}）· {n} 位客户 · 风险价值 {var}",
    },
    "no_manager": {"en": "No customer manager", "zh_CN": "无客户经理"},
    "col_rank": {"en": "Rank", "zh_CN": "排名"},
    "col_customer": {"en": "Customer no.", "zh_CN": "客户号"},
    "col_name": {"en": "Name", "zh_CN": "客户名称"},
    "col_branch": {"en": "Branch", "zh_CN": "网点"},
    "col_manager": {"en": "Manager", "zh_CN": "客户经理"},
    "col_score": {"en": "Churn score", "zh_CN": "流失概率"},
    "col_decile": {"en": "Risk decile", "zh_CN": "风险十分位"},
    "col_value": {"en": "Deposit ADB ({unit})", "zh_CN": "日均存款（{unit}）"},
    "col_risk_x_value": {"en": "Risk x value ({unit})", "zh_CN": "风险×价值（{unit}）"},
    "col_reasons": {"en": "Reasons", "zh_CN": "预警原因"},
    "xl_score": {"en": "Churn score (%)", "zh_CN": "流失概率（%）"},
    "xl_value": {"en": "Deposit ADB, 3-month average (yuan)", "zh_CN": "日均存款，近3个月平均（元）"},
    "xl_risk_x_value": {"en": "Risk x value (yuan)", "zh_CN": "风险×价值（元）"},
    "xl_link": {"en": "360 view", "zh_CN": "客户360视图"},
    "decile_tip": {
        "en": "10 = the riskiest tenth of the month's customers",
        "zh_CN": "10 = 当月风险最高的十分之一客户",
    },
}


def tr(key: str, lang: str = DEFAULT_LANG, **fmt: Any) -> str:
    """The app's text ``key`` in ``lang`` (from :data:`TEXT`), filling ``{placeholders}``.

    Parameters
    ----------
    key : str
        A key of :data:`TEXT`.
    lang : str
        ``"zh_CN"`` or ``"en"``.
    **fmt
        Values of the placeholders.

    Returns
    -------
    str
        The text.
    """
    text = TEXT[key]["zh_CN" if lang.startswith("zh") else "en"]
    return text.format(**fmt) if fmt else text


def _month(as_of: Any) -> str:
    return str(as_of or "")[:7]


# ---- the scores on record --------------------------------------------------------------------------------


def scored_months(home: Any = None, definition: str | None = None) -> list[str]:
    """The month-ends (ISO dates, oldest first) that have churn scores on the published snapshot.

    Parameters
    ----------
    home : Home, path or None
        The installation.
    definition : str, optional
        The churn definition (the model's default when None).

    Returns
    -------
    list of str
        ``YYYY-MM-DD`` of each scored month that the warehouse holds; empty when nothing was scored.
    """
    from cimlib.churn import load_churn_params, scores_path
    from cimlib.customer import _data as D

    h = D.resolve_home(home)
    name = definition if definition else load_churn_params(h).definition(None)[0]
    snap = D.snapshot(h)
    if not _VERSION_RE.match(name):
        raise ValueError(f"not a churn definition name: {name!r}")
    folder = scores_path(h, snap.snapshot_id, name, dt.date(2000, 1, 31)).parent
    out = []
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet")) if folder.is_dir() else []:
        try:
            out.append(D.resolve_as_of(snap, path.stem).isoformat())
        except Exception:  # a month the warehouse no longer holds
            log.warning("scores of %s do not match a warehouse month", path.stem)
    return out


def model_info(home: Any, definition: str, version: str | None) -> dict[str, Any]:
    """The scoring model's version and backtest ROC AUC, read from its model card.

    Parameters
    ----------
    home : Home, path or None
        The installation.
    definition : str
        The churn definition the model was trained for.
    version : str, optional
        The model version (a folder of ``outputs/models/churn/<definition>/``), as the scores record it.

    Returns
    -------
    dict
        ``version``, ``roc_auc`` (None when the card is missing or has no backtest) and ``created``.
    """
    from cimlib.churn._store import load_card
    from cimlib.customer import _data as D

    info: dict[str, Any] = {"version": version, "roc_auc": None, "created": None}
    if not version or not _VERSION_RE.match(version) or not _VERSION_RE.match(definition):
        return info
    folder = D.resolve_home(home).root / "outputs" / "models" / "churn" / definition / version
    try:
        card = load_card(folder)
    except (OSError, ValueError):
        log.warning("no model card for %s/%s", definition, version)
        return info
    auc = ((card.get("backtest") or {}).get("metrics") or {}).get(_AUC_MODEL, {}).get("roc_auc")
    info["roc_auc"] = float(auc) if isinstance(auc, int | float) else None
    info["created"] = card.get("created")
    return info


# ---- per-branch summary and chart --------------------------------------------------------------------------


def branch_summary(frame: pd.DataFrame | None) -> pd.DataFrame:
    """At-risk customers and value at risk (sum of risk x value) per branch of a watchlist.

    Parameters
    ----------
    frame : DataFrame
        A list from :func:`cimlib.churn.watchlist`.

    Returns
    -------
    DataFrame
        ``home_org_code, home_org_name, county_name, label, customers, value_at_risk`` (yuan), one row per
        branch, largest value at risk first.
    """
    cols = ["home_org_code", "home_org_name", "county_name", "label", "customers", "value_at_risk"]
    if frame is None or not len(frame):
        return pd.DataFrame(
            {
                c: pd.Series(
                    [], dtype="float64" if c == "value_at_risk" else "int64" if c == "customers" else object
                )
                for c in cols
            }
        )
    keys = ["home_org_code", "home_org_name", "county_name"]
    out = frame.groupby(keys, as_index=False, dropna=False).agg(
        customers=("customer_id", "size"), value_at_risk=("risk_x_value", "sum")
    )
    out["label"] = [_branch_label(r) for r in out.to_dict("records")]
    out["customers"] = out["customers"].astype("int64")
    out["value_at_risk"] = out["value_at_risk"].astype("float64")
    out = out.sort_values(["value_at_risk", "home_org_code"], ascending=[False, True], ignore_index=True)
    return out[cols]


def _in_unit(amount: pd.Series, lang: str) -> pd.Series:
    """Amounts in yuan as numbers in the locale's money unit (万元 in Chinese)."""
    return amount.astype(float) / (10000.0 if lang == "zh_CN" else 1.0)


def summary_chart(summary: pd.DataFrame, lang: str = DEFAULT_LANG) -> alt.HConcatChart:
    """Two bar charts side by side: at-risk customers and value at risk per branch.

    Parameters
    ----------
    summary : DataFrame
        From :func:`branch_summary`.
    lang : str
        ``"zh_CN"`` or ``"en"``; value at risk is shown in the locale's money unit.

    Returns
    -------
    altair.HConcatChart
        Data ``label, customers, value_at_risk`` (at most :data:`MAX_BARS` branches, in the order of
        ``summary``); left: x = customers, right: x = value_at_risk, both with y = label in that order.
    """
    data = pd.DataFrame(
        {
            "label": summary["label"].astype(str).to_numpy(),
            "customers": summary["customers"].astype("int64").to_numpy(),
            "value_at_risk": _in_unit(summary["value_at_risk"], lang).round(2).to_numpy(),
        }
    ).head(MAX_BARS)
    order = list(data["label"])
    top = int(data["customers"].max()) if len(data) else 0
    y = alt.Y("label:N", title=None, sort=order)
    base = alt.Chart(data).properties(height=alt.Step(20), width=260)
    tips = [
        alt.Tooltip("label:N", title=tr("col_branch", lang)),
        alt.Tooltip("customers:Q", title=tr("chart_customers", lang), format=",d"),
        alt.Tooltip("value_at_risk:Q", title=tr("chart_var", lang, unit=money_unit(lang)), format=",.2f"),
    ]
    customers = base.mark_bar(color="#ef6c00").encode(
        y=y,
        x=alt.X(
            "customers:Q",
            title=tr("chart_customers", lang),
            axis=alt.Axis(
                format=",d", tickMinStep=1, values=list(range(top + 1)) if top <= 8 else alt.Undefined
            ),
            scale=alt.Scale(domainMin=0, nice=top > 8),
        ),
        tooltip=tips,
    )
    var = base.mark_bar(color="#c62828").encode(
        y=alt.Y("label:N", title=None, sort=order, axis=alt.Axis(labels=False, ticks=False)),
        x=alt.X("value_at_risk:Q", title=tr("chart_var", lang, unit=money_unit(lang)),
                axis=alt.Axis(format=",.1f" if lang == "zh_CN" else ",.0f")),
        tooltip=tips,
    )  # fmt: skip
    return (
        alt.hconcat(customers, var, spacing=12)
        .properties(title=tr("chart_title", lang))
        .configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
        .configure_axis(labelLimit=220)
    )


# ---- the list -------------------------------------------------------------------------------------------

_DECILE_CLASS = {10: "cim-dec-10", 9: "cim-dec-9"}


def _manager_label(rec: Mapping[str, Any], lang: str) -> str:
    name, no = rec.get("manager_name"), rec.get("manager_no")
    if isinstance(name, str) and name:
        return name
    return str(no) if isinstance(no, str) and no else tr("no_manager", lang)


def _group_key(rec: Mapping[str, Any], by: str) -> Any:
    if by == "manager":
        return rec.get("manager_no") if isinstance(rec.get("manager_no"), str) else ""
    return rec.get("home_org_code")


def group_totals(frame: pd.DataFrame, by: str) -> dict[Any, tuple[int, float]]:
    """Customers and value at risk (yuan) of each branch or manager of a list, by its group key."""
    if frame is None or not len(frame):
        return {}
    key = (
        frame["manager_no"].where(frame["manager_no"].notna(), "")
        if by == "manager"
        else frame["home_org_code"]
    )
    g = frame.assign(_key=key).groupby("_key")["risk_x_value"].agg(["size", "sum"])
    return {k: (int(r["size"]), float(r["sum"])) for k, r in g.iterrows()}


def watchlist_html(
    frame: pd.DataFrame | None, lang: str, *, by: str = "branch", base_url: str = "/",
    max_rows: int = MAX_LIST_ROWS, empty: str = "",
) -> str:  # fmt: skip
    """The watchlist as an escaped HTML table, a heading row per branch or manager, links to the 360 view.

    Parameters
    ----------
    frame : DataFrame
        From :func:`cimlib.churn.watchlist` (already scoped, masked, ranked and sorted).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    by : {"branch", "manager"}
        What the ranks are within (a heading row starts each group).
    base_url : str
        The server's base path (``/`` or e.g. ``/cim/``); a row's ``link`` is relative to it.
    max_rows : int
        Show at most this many rows, and say so.
    empty : str
        The message when the list is empty.

    Returns
    -------
    str
        HTML.
    """
    if frame is None or not len(frame):
        return f'<p class="cim-empty">{html.escape(empty)}</p>'
    unit = money_unit(lang)
    heads = [
        tr("col_rank", lang), tr("col_customer", lang), tr("col_name", lang), tr("col_branch", lang),
        tr("col_manager", lang), tr("col_score", lang), tr("col_decile", lang),
        tr("col_value", lang, unit=unit), tr("col_risk_x_value", lang, unit=unit), tr("col_reasons", lang),
    ]  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    head = head.replace(
        f"<th>{html.escape(tr('col_decile', lang))}</th>",
        f'<th title="{html.escape(tr("decile_tip", lang), quote=True)}">'
        f"{html.escape(tr('col_decile', lang))}</th>",
    )
    totals = group_totals(frame, by)
    open_text = html.escape(t("target.open_360", lang), quote=True)
    rows: list[str] = []
    current: Any = object()
    for rec in frame.head(max_rows).to_dict("records"):
        key = _group_key(rec, by)
        if key != current:
            current = key
            n, var = totals.get(key, (0, 0.0))
            if by == "manager":
                text = tr("group_manager", lang, name=_manager_label(rec, lang), branch=_branch_label(rec),
                          n=format_count(n), var=format_money(var, lang, unit=True))  # fmt: skip
            else:
                text = tr("group_branch", lang, name=_branch_label(rec), n=format_count(n),
                          var=format_money(var, lang, unit=True))  # fmt: skip
            rows.append(f'<tr class="cim-group"><th colspan="{len(heads)}">{html.escape(text)}</th></tr>')
        cid = str(rec.get("customer_id") or "")
        href = customer_href(str(rec.get("link") or ""), base_url)
        decile = int(rec.get("risk_decile") or 0)
        cells = [
            f'<td class="num">{int(rec.get("rank") or 0)}</td>',
            f'<td><a class="cim-customer-link" href="{html.escape(href, quote=True)}" target="_blank"'
            f' rel="noopener" title="{open_text}">{html.escape(cid)}</a></td>',
            f"<td>{html.escape(str(rec.get('cust_name') or ''))}</td>",
            f"<td>{html.escape(_branch_label(rec))}</td>",
            f"<td>{html.escape(_manager_label(rec, lang))}</td>",
            f'<td class="num">{float(rec.get("churn_score") or 0.0):.1%}</td>',
            f'<td class="num"><span class="cim-dec {_DECILE_CLASS.get(decile, "cim-dec-8")}">'
            f"{decile}</span></td>",
            f'<td class="num">{html.escape(format_money(rec.get("value"), lang))}</td>',
            f'<td class="num"><b>{html.escape(format_money(rec.get("risk_x_value"), lang))}</b></td>',
            f'<td class="cim-reason">{html.escape(str(rec.get("reasons") or ""))}</td>',
        ]
        rows.append('<tr class="cim-row">' + "".join(cells) + "</tr>")
    table = (
        f'<table class="cim-table cim-list cim-watchlist"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    more = ""
    if len(frame) > max_rows:
        note = t("target.list_capped", lang, shown=format_count(max_rows), total=format_count(len(frame)))
        more = f'<p class="cim-more">{html.escape(note)}</p>'
    return f'<div class="cim-scroll cim-list-wrap">{table}</div>{more}'


def export_frame(frame: pd.DataFrame, lang: str, *, app_url: str | None = None) -> pd.DataFrame:
    """The list as it goes into Excel: readable headers, the score in percent, links absolute when known.

    Columns with a label in the locale files keep their names (the exporter translates them, and splits
    per branch on ``home_org_code``); the watchlist's own columns get this app's headers in ``lang``.

    Parameters
    ----------
    frame : DataFrame
        From :func:`cimlib.churn.watchlist`.
    lang : str
        ``"zh_CN"`` or ``"en"``.
    app_url : str, optional
        Base URL of ``cim serve`` (``$CIM_APP_URL``); the 360 links stay relative without it.

    Returns
    -------
    DataFrame
        A copy, with ``attrs`` for the workbook's ``about`` sheet.
    """
    out = frame.copy()
    out["churn_score"] = (out["churn_score"].astype(float) * 100).round(2)
    out["value"] = out["value"].astype(float).round(2)
    out["risk_x_value"] = out["risk_x_value"].astype(float).round(2)
    if app_url:
        base = app_url.rstrip("/") + "/"
        out["link"] = [base + str(s).lstrip("/") for s in out["link"]]
    out = out.rename(
        columns={
            "rank": tr("col_rank", lang), "churn_score": tr("xl_score", lang),
            "risk_decile": tr("col_decile", lang), "value": tr("xl_value", lang),
            "risk_x_value": tr("xl_risk_x_value", lang), "reasons": tr("col_reasons", lang),
            "link": tr("xl_link", lang),
        }
    )  # fmt: skip
    a = frame.attrs
    out.attrs = {
        "ruleset": f"churn watchlist: {a.get('definition', '')} (model {a.get('model_version', '')}, "
        f"per {a.get('by', 'branch')})",
        "as_of": a.get("as_of", ""),
        "snapshot_id": a.get("snapshot_id", ""),
        "rules": [],
    }
    return out


_CHURN_CSS = """<style>
.cim-app.cim-churn { max-width: 1400px; }
.cim-churn .cim-model { color: #546e7a; font-size: 13px; margin-top: 2px; }
.cim-churn .cim-controls { align-items: center; flex-wrap: wrap; gap: 4px 18px; margin: 6px 0; }
.cim-churn .cim-help { color: #607d8b; font-size: 12px; margin: 0 0 4px; }
.cim-churn .cim-summary { font-size: 15px; font-weight: 600; margin: 6px 0 2px; }
.cim-churn .cim-notice p { background: #fff8e1; border-left: 3px solid #f9a825; padding: 8px 12px; }
.cim-churn .cim-status span { display: inline-block; background: #ffebee; border-left: 3px solid #c62828;
  padding: 8px 12px; font-family: inherit; }
.cim-churn p.cim-empty { background: #e8f5e9; border-left: 3px solid #2e7d32; padding: 8px 12px;
  color: #1b5e20; }
.cim-churn a.cim-download-link { display: inline-block; padding: 6px 14px; margin: 4px 0 8px;
  background: #2e7d32; color: #fff; border-radius: 3px; text-decoration: none; font-weight: 600; }
.cim-churn a.cim-download-link:hover { background: #1b5e20; }
.cim-churn table.cim-list td.cim-reason { white-space: normal; min-width: 260px; max-width: 460px; }
.cim-churn table.cim-list td a { color: #1565c0; text-decoration: none; font-variant-numeric: tabular-nums; }
.cim-churn table.cim-list td a:hover { text-decoration: underline; }
.cim-churn table.cim-list tr.cim-group th { background: #eceff1; color: #263238; text-align: left;
  font-weight: 600; padding: 5px 8px; position: static; }
.cim-churn .cim-list-wrap { max-height: 720px; overflow: auto; }
.cim-churn table.cim-list thead th { position: sticky; top: 0; background: #fafafa; z-index: 1; }
.cim-churn .cim-dec { padding: 1px 7px; border-radius: 9px; font-size: 12px; }
.cim-churn .cim-dec-10 { background: #ffebee; color: #c62828; font-weight: 600; }
.cim-churn .cim-dec-9 { background: #fff3e0; color: #e65100; }
.cim-churn .cim-dec-8 { background: #fffde7; color: #8d6e00; }
.cim-churn .cim-more { color: #546e7a; }
</style>"""


# ---- the app --------------------------------------------------------------------------------------------


class ChurnApp:
    """The churn watchlist app for one principal.

    Parameters
    ----------
    principal : Principal
        The signed-in user (from :func:`cimlib.apps.principal_from_request`).
    home : str, optional
        The CIM home.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    base_url : str
        The server's base path; the list's links to the 360 view are under it.
    definition : str, optional
        The churn definition (the model's default when None).

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app's root widget (display it).
    frame : DataFrame or None
        The last watchlist from the service (every branch of the scope; ``None`` before one is shown).
    shown : DataFrame or None
        What is on show: :attr:`frame` limited to the chosen branch.
    """

    def __init__(
        self, principal: Any, *, home: Any = None, lang: str = DEFAULT_LANG, base_url: str = "/",
        definition: str | None = None,
    ) -> None:  # fmt: skip
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        self.principal = principal
        self.home = home
        self.lang = lang
        self.base_url = base_url or "/"
        self.frame: pd.DataFrame | None = None
        self.shown: pd.DataFrame | None = None
        self.xlsx: bytes | None = None
        self.model: dict[str, Any] = {}
        self.last_ms: float | None = None
        self._status: tuple[str, dict[str, Any]] | None = None
        self._building = False
        self.definition, self._definition_names, self._outcome_months = self._load_definition(definition)

        self.css = w.HTML(_CSS + _CHURN_CSS)
        self.title = w.HTML()
        self.principal_label = w.HTML()
        self.principal_label.add_class("cim-principal")
        self.model_label = w.HTML()
        self.model_label.add_class("cim-model")
        self.lang_toggle = w.ToggleButtons(
            options=[("中文", "zh_CN"), ("English", "en")], value=lang, style={"button_width": "80px"}
        )
        self.lang_toggle.add_class("cim-lang")
        self.notice = w.HTML()
        self.notice.add_class("cim-notice")

        label_style = {"description_width": "initial"}
        self.as_of = w.Dropdown(layout=w.Layout(width="170px"), style=label_style)
        self.as_of.add_class("cim-as-of")
        self.by = w.ToggleButtons(options=[("a", "branch"), ("b", "manager")], value="branch",
                                  style={"button_width": "96px", "description_width": "initial"})  # fmt: skip
        self.by.add_class("cim-by")
        self.top_n = w.Dropdown(options=[("10", DEFAULT_TOP_N)], value=DEFAULT_TOP_N,
                                layout=w.Layout(width="130px"), style=label_style)  # fmt: skip
        self.top_n.add_class("cim-top-n")
        self.branch = w.Dropdown(
            options=[("", "")], value="", layout=w.Layout(width="300px"), style=label_style
        )
        self.branch.add_class("cim-branch")
        multi_branch = getattr(principal, "scope", "none") in ("all", "county")
        self.branch.layout.display = None if multi_branch else "none"
        self.controls = w.HBox([self.as_of, self.by, self.top_n, self.branch])
        self.controls.add_class("cim-controls")
        self.help = w.HTML()
        self.help.add_class("cim-help-line")
        self.status = w.HTML()
        self.status.add_class("cim-status")

        self.summary = w.HTML()
        self.summary.add_class("cim-summary")
        self.download = w.HTML()
        self.download.add_class("cim-download")
        self.prepare_button = w.Button(icon="file-excel-o", layout=w.Layout(display="none", width="auto"))
        self.prepare_button.add_class("cim-prepare-excel")
        self.chart = w.HTML()
        self.chart.add_class("cim-churn-chart")
        self.list_title = w.HTML()
        self.list_table = w.HTML()
        self.list_table.add_class("cim-churn-list")
        self.results = w.VBox(
            [self.summary, self.download, self.prepare_button, self.chart, self.list_title, self.list_table],
            layout=w.Layout(display="none"),
        )
        self.results.add_class("cim-churn-results")

        header = w.HBox(
            [w.VBox([self.title, self.principal_label, self.model_label]), self.lang_toggle],
            layout=w.Layout(justify_content="space-between", width="100%"),
        )
        self.widget = w.VBox(
            [self.css, header, self.notice, self.controls, self.help, self.status, self.results]
        )
        self.widget.add_class("cim-app")
        self.widget.add_class("cim-churn")

        self._relabel()
        self.lang_toggle.observe(lambda ch: self._guard(lambda: self.set_language(ch["new"])), names="value")
        for control in (self.as_of, self.by, self.top_n):
            control.observe(lambda _ch: self._unless_building(self.refresh), names="value")
        self.branch.observe(lambda _ch: self._unless_building(self._show), names="value")
        self.prepare_button.on_click(lambda _b: self._guard(self.prepare_download))
        if not self.can_view_detail:
            for control in (self.as_of, self.by, self.top_n, self.branch):
                control.disabled = True
            self.controls.layout.display = "none"
            return
        self._load_months()
        if self.as_of.value:
            self._guard(self.refresh)

    # -- state -------------------------------------------------------------------------------------------
    @property
    def can_view_detail(self) -> bool:
        """Whether the principal may see single customers (the watchlist names them)."""
        return bool(getattr(self.principal, "can_view_detail", False))

    @property
    def has_scope(self) -> bool:
        """Whether the principal may see any customer data (auditors may not)."""
        return getattr(self.principal, "scope", "none") != "none"

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a UI callback; an unexpected error shows a generic message, never a traceback."""
        try:
            action()
        except Exception:
            log.exception("churn watchlist callback failed")
            self._set_status("app.error")

    def _unless_building(self, action: Callable[[], Any]) -> None:
        if not self._building:
            self._guard(action)

    def _set_status(self, key: str | None, **fmt: Any) -> None:
        """Show a message: ``app.*``/``target.*`` keys from the locale files, others from :data:`TEXT`."""
        self._status = (key, fmt) if key else None
        if key is None:
            self.status.value = ""
            return
        text = t(key, self.lang, **fmt) if "." in key else tr(key, self.lang, **fmt)
        self.status.value = f"<span>{html.escape(text)}</span>"

    def _load_definition(self, definition: str | None) -> tuple[str, dict[str, str], int]:
        from cimlib.churn import load_churn_params

        name, defn = load_churn_params(self.home).definition(definition)
        return name, {"en": defn.name.en, "zh_CN": defn.name.zh_CN}, int(defn.outcome_months)

    def _load_months(self) -> None:
        try:
            months = scored_months(self.home, self.definition)
        except Exception:  # nothing published yet
            log.warning("no scored months", exc_info=True)
            months = []
        self._building = True
        try:
            self.as_of.options = [(m[:7], m) for m in months]
            self.as_of.value = months[-1] if months else None
        finally:
            self._building = False
        if not months:
            self._set_status("no_scores", month=self._latest_warehouse_month() or "YYYY-MM")

    def _latest_warehouse_month(self) -> str | None:
        from cimlib.customer import available_months

        try:
            months = available_months(self.principal, self.home)
        except Exception:
            return None
        return months[-1] if months else None

    @property
    def limit(self) -> int | None:
        """The chosen top N per branch or manager (None for all)."""
        return int(self.top_n.value) or None

    # -- actions -----------------------------------------------------------------------------------------
    def refresh(self, as_of: str | None = None) -> pd.DataFrame | None:
        """Fetch the watchlist the controls ask for and show it.

        Parameters
        ----------
        as_of : str, optional
            The month (default: the month control's value).

        Returns
        -------
        DataFrame or None
            The list (``None`` when the role may not see it or the month has no scores).
        """
        from cimlib.access import AccessError, NotPermitted
        from cimlib.churn import watchlist
        from cimlib.customer import AsOfError

        if not self.can_view_detail:
            self._set_status("aggregates_only" if self.has_scope else "target.no_access")
            return None
        month = as_of or self.as_of.value or None
        t0 = time.perf_counter()
        try:
            frame = watchlist(
                self.principal, month, self.definition, by=self.by.value, limit=self.limit, lang=self.lang,
                home=self.home,
            )  # fmt: skip
        except FileNotFoundError:
            self._clear_results()
            self._set_status("not_scored", month=_month(month) or "YYYY-MM")
            return None
        except AsOfError:
            self._clear_results()
            self._set_status("bad_month")
            return None
        except NotPermitted:
            self._clear_results()
            self._set_status("aggregates_only")
            return None
        except AccessError:
            self._clear_results()
            self._set_status("app.error")
            return None
        self.last_ms = (time.perf_counter() - t0) * 1000
        self.frame = frame
        self.model = model_info(self.home, self.definition, frame.attrs.get("model_version"))
        self._set_status(None)
        self._fill_branches()
        self._show()
        log.info("churn watchlist of %s for %s: %d rows in %.0f ms", frame.attrs.get("as_of"),
                 getattr(self.principal, "user_id", "?"), len(frame), self.last_ms)  # fmt: skip
        return frame

    def _clear_results(self) -> None:
        self.frame = self.shown = None
        self.xlsx = None
        self.results.layout.display = "none"

    def _fill_branches(self) -> None:
        frame = self.frame
        keep = self.branch.value
        options: list[tuple[str, str]] = [(tr("all_branches", self.lang), "")]
        if frame is not None and len(frame):
            keys = frame[["home_org_code", "home_org_name", "county_name"]].drop_duplicates("home_org_code")
            for rec in keys.sort_values("home_org_code").to_dict("records"):
                options.append((f"{_branch_label(rec)} ({rec['home_org_code']})", str(rec["home_org_code"])))
        self._building = True
        try:
            self.branch.options = options
            self.branch.value = keep if keep in [v for _, v in options] else ""
        finally:
            self._building = False

    def _show(self) -> None:
        """Limit the list to the chosen branch and draw the summary, chart, list and download."""
        if self.frame is None:
            return
        code = self.branch.value or ""
        frame = self.frame
        self.shown = frame[frame["home_org_code"] == code].reset_index(drop=True) if code else frame
        self.shown.attrs = dict(frame.attrs)
        self.xlsx = None
        self._render()

    def prepare_download(self) -> bytes | None:
        """Write the Excel file of the list on show and offer it as a download link (the button's action)."""
        if self.shown is None or not len(self.shown):
            return None
        self.prepare_button.disabled = True
        self.prepare_button.description = t("target.preparing", self.lang)
        return self._show_download()

    def _show_download(self) -> bytes | None:
        try:
            data = self.excel_bytes()
        except Exception:  # the list stays on show; only the download is missing
            log.exception("Excel export failed")
            data = None
        if data and self.shown is not None:
            filename = f"churn_watchlist_{self.definition}_{_month(self.shown.attrs.get('as_of'))}.xlsx"
            self.download.value = download_html(data, filename, len(self.shown), self.lang)
        else:
            self.download.value = (
                f'<p class="cim-more">{html.escape(t("target.download_failed", self.lang))}</p>'
            )
        self.prepare_button.layout.display = "none"
        return data

    def excel_bytes(self) -> bytes | None:
        """The list on show as an Excel workbook, one sheet per branch (every row; formula-safe)."""
        if self.shown is None:
            return None
        if self.xlsx is None:
            from cimlib.targeting._export import list_bytes

            out = export_frame(self.shown, self.lang, app_url=os.environ.get("CIM_APP_URL"))
            self.xlsx = list_bytes(out, fmt="xlsx", lang=self.lang, split="branch")
        return self.xlsx

    def set_language(self, lang: str) -> None:
        """Switch every label to ``lang``; the list is fetched again (the reasons are worded per language)."""
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}")
        if self.lang_toggle.value != lang:
            self.lang_toggle.value = lang  # its observer switches
            return
        self.lang = lang
        self._relabel()
        if self.frame is not None:
            self.refresh()
        elif self._status:
            key, fmt = self._status
            self._set_status(key, **fmt)

    # -- rendering ---------------------------------------------------------------------------------------
    def principal_text(self) -> str:
        """The signed-in user's name, role and scope, as shown in the header."""
        return principal_text(self.principal, self.lang)

    def model_text(self) -> str:
        """The header's line on the scores: month, definition, model version and backtest ROC AUC."""
        lang = self.lang
        as_of = (self.frame.attrs.get("as_of") if self.frame is not None else None) or self.as_of.value
        if not as_of or not self.model:
            return tr("model_line_none", lang) if self.can_view_detail and not self.as_of.options else ""
        auc = self.model.get("roc_auc")
        return tr(
            "model_line", lang, month=_month(as_of), definition=self._definition_names[lang],
            version=self.model.get("version") or "?", auc=f"{auc:.3f}" if auc is not None else "–",
        )  # fmt: skip

    def _relabel(self) -> None:
        lang = self.lang
        self._building = True
        try:
            self.title.value = f'<div class="cim-title">{html.escape(tr("title", lang))}</div>'
            self.principal_label.value = f"<span>{html.escape(self.principal_text())}</span>"
            self.model_label.value = f"<span>{html.escape(self.model_text())}</span>"
            if not self.has_scope:
                notice = t("target.no_access", lang)
            elif not self.can_view_detail:
                notice = tr("aggregates_only", lang)
            else:
                notice = ""
            self.notice.value = f"<p>{html.escape(notice)}</p>" if notice else ""
            self.as_of.description = t("app.as_of", lang)
            by = self.by.value
            self.by.options = [(tr("by_branch", lang), "branch"), (tr("by_manager", lang), "manager")]
            self.by.value = by
            self.by.description = tr("by", lang)
            top = self.top_n.value
            self.top_n.options = [(str(n) if n else tr("top_all", lang), n) for n in TOP_N_CHOICES]
            self.top_n.value = top
            self.top_n.description = tr("top_n", lang)
            self.branch.description = tr("branch", lang)
            if self.branch.options and self.branch.options[0][1] == "":
                keep = self.branch.value
                self.branch.options = [(tr("all_branches", lang), ""), *self.branch.options[1:]]
                self.branch.value = keep or ""
            self.help.value = (
                f'<p class="cim-help">{html.escape(tr("help", lang, months=self._outcome_months))}</p>'
                if self.can_view_detail else ""
            )  # fmt: skip
        finally:
            self._building = False

    def _render(self) -> None:
        lang, shown = self.lang, self.shown
        if shown is None:
            return
        month = _month(shown.attrs.get("as_of"))
        self.model_label.value = f"<span>{html.escape(self.model_text())}</span>"
        var = float(shown["risk_x_value"].sum()) if len(shown) else 0.0
        self.summary.value = "<div>" + html.escape(tr(
            "summary", lang, n=format_count(len(shown)), var=format_money(var, lang), unit=money_unit(lang),
            month=month,
        )) + "</div>"  # fmt: skip
        self.download.value = ""
        self.prepare_button.layout.display = "none"
        if len(shown):
            if len(shown) <= EAGER_EXCEL_ROWS:
                self._show_download()
            else:
                self.prepare_button.description = t(
                    "target.prepare_download", lang, n=format_count(len(shown))
                )
                self.prepare_button.disabled = False
                self.prepare_button.layout.display = None
            self.chart.value = chart_html(summary_chart(branch_summary(shown), lang), "cim-chart-branches")
            self.list_title.value = f"<h4>{html.escape(tr('list', lang))}</h4>"
        else:
            self.summary.value = ""
            self.chart.value = ""
            self.list_title.value = ""
        empty = tr("empty_branch", lang) if self.branch.value else tr("empty", lang, month=month)
        self.list_table.value = watchlist_html(
            shown, lang, by=str(shown.attrs.get("by") or self.by.value), base_url=self.base_url, empty=empty
        )
        self.results.layout.display = "flex"


# ---- entry points -----------------------------------------------------------------------------------------


def churn_watchlist_app(
    *, lang: str = DEFAULT_LANG, home: Any = None, environ: Mapping[str, str] | None = None,
    definition: str | None = None,
) -> w.VBox:  # fmt: skip
    """Build the churn watchlist app for the user of this Voila kernel (the notebook's only call).

    Establishes the principal from the server-signed identity token first, exactly as the other apps do;
    without a valid one the user sees a message and no data is read.

    Parameters
    ----------
    lang : str
        The starting language.
    home : str, optional
        The CIM home (default ``$CIM_HOME``).
    environ : mapping, optional
        The environment holding the token, the secret and the request information (default
        ``os.environ``); for tests.
    definition : str, optional
        The churn definition (the model's default when None).

    Returns
    -------
    ipywidgets.VBox
        The app, or the denied view.
    """
    box = signed_in_app(
        lambda principal, base_url: ChurnApp(
            principal, home=home, lang=lang, base_url=base_url, definition=definition
        ).widget,
        "app.title", lang=lang, home=home, environ=environ,
    )  # fmt: skip
    if "cim-denied" in box._dom_classes:
        box.children[1].value = f'<div class="cim-title">{html.escape(tr("title", lang))}</div>'
    return box


def warm_up(home: Any = None) -> None:
    """The slow once-a-process work of a preheating kernel: the 360 app's, plus the churn parameters.

    Nothing here depends on who will sign in, and no customer data is read.
    """
    from cimlib.apps.customer_360 import warm_up as warm_up_360

    warm_up_360(home)
    try:
        import openpyxl  # noqa: F401  (the Excel download is written on first paint)

        from cimlib.churn import load_churn_params

        name, _ = load_churn_params(home).definition(None)
        scored_months(home, name)
    except Exception:
        log.warning("warm-up could not read the churn parameters or scores", exc_info=True)
    warm = [w.ToggleButtons(options=["a"]), w.HBox(), w.Dropdown()]
    for widget in warm:
        widget.close()
