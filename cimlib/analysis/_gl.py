"""General-ledger analysis (总账分析) and the macro/micro tie-out (宏观/微观勾稽).

The GL balances come from ``mart_gl_tieout`` (``as_of_date, org_code`` = branch, ``subject_code``,
``gl_balance``, ``customer_balance``, ``difference``): subjects 2011/2012/2013/2014 are deposits
(individual/corporate x demand/time), 1301/1302 loans (individual/corporate), labelled by the
``gl_subject`` code list (``ref_gl_subject``). Balances are rolled up to the focus org's children (the
counties for the province, the branches for a county; a branch is its own child).

**Tie-out.** The customer-level balances summed per branch and subject are compared with the GL. A row
*fails* when its difference is above BOTH ``tieout.tolerance_abs`` and ``tieout.tolerance_rel`` x |GL|
(``parameters/provincial.yaml``). Failures are data-quality failures, never hidden: :func:`gl_tieout`
returns every row with its ``status`` and :func:`check_gl_tieout` summarises (or raises) so that a CLI or
a scheduled job can exit non-zero. The build records any difference as a ``warn`` contract
(``mart_gl_tieout.yml`` ``gl_ties_out``) and still publishes.

GL figures are branch-keyed: a role scoped to the customers it manages sees none (``NotPermitted``). They are
ledger totals, not customer groups, so nothing is suppressed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import AnalysisContext, analysis_context, dates_param, is_zh
from cimlib.analysis._common import titled as _attrs
from cimlib.customer import _data as D

#: The GL subjects, their side and split (``ref_gl_subject``); labels come from the warehouse's code list.
SUBJECTS = ("2011", "2012", "2013", "2014", "1301", "1302")
DEPOSIT_SUBJECTS = ("2011", "2012", "2013", "2014")
LOAN_SUBJECTS = ("1301", "1302")
SIDE_LABELS = {
    "deposit": {"en": "Deposits", "zh": "存款"},
    "loan": {"en": "Loans", "zh": "贷款"},
}
STATUS_LABELS = {"ok": {"en": "OK", "zh": "平"}, "fail": {"en": "Failed", "zh": "不平"}}
_TITLES = {
    "balances": {"en": "General ledger balances", "zh": "总账余额"},
    "structure": {"en": "General ledger structure", "zh": "总账结构"},
    "tieout": {"en": "GL tie-out (macro vs micro)", "zh": "宏观/微观勾稽"},
}


class GLTieoutError(RuntimeError):
    """The GL and the customer-level balances do not tie out within tolerance; ``summary`` says where."""

    def __init__(self, summary: TieoutSummary) -> None:
        super().__init__(summary.message)
        self.summary = summary


@dataclass
class TieoutSummary:
    """The outcome of :func:`check_gl_tieout`."""

    as_of: dt.date
    org: str
    n_checked: int
    n_failed: int
    tolerance_abs: float
    tolerance_rel: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when no row failed."""
        return self.n_failed == 0

    @property
    def exit_code(self) -> int:
        """0 when it ties out, 1 otherwise (for a CLI or a scheduler)."""
        return 0 if self.ok else 1


def _lang(lang: str) -> str:
    return "zh" if is_zh(lang) else "en"


def _child_map(ctx: AnalysisContext) -> dict[str, str]:
    """Each branch of the focus org -> the child of the focus org it belongs to (itself for a branch)."""
    kids = {o.code for o in ctx.children()}
    out: dict[str, str] = {}
    for b in ctx.branches:
        code: str | None = b
        while code is not None and code not in kids and code != ctx.org.code:
            code = ctx.orgs[code].parent if code in ctx.orgs else None
        out[b] = code if code is not None else b
    return out


def _map_sql() -> str:
    return "(SELECT unnest($map_branch) AS branch, unnest($map_child) AS child)"


def _map_params(ctx: AnalysisContext) -> dict[str, Any]:
    m = _child_map(ctx)
    return {"map_branch": list(m), "map_child": list(m.values())}


def _subject_info(ctx: AnalysisContext) -> pd.DataFrame:
    df = ctx.query(
        "SELECT code AS subject_code, label_en, label_zh, side, customer_type, account_type "
        "FROM ref_gl_subject"
    )
    df["side"] = df["side"].map({"liability": "deposit", "asset": "loan"})
    return df


def _label_subjects(df: pd.DataFrame, info: pd.DataFrame, lang: str) -> pd.DataFrame:
    out = df.merge(info, on="subject_code", how="left")
    out["label"] = out["label_zh" if is_zh(lang) else "label_en"].fillna(out["subject_code"])
    out["side_label"] = out["side"].map(lambda s: SIDE_LABELS.get(s, {"en": s, "zh": s})[_lang(lang)])
    return out.drop(columns=["label_en", "label_zh"])


# ---------------------------------------------------------------------------------------------- balances
def gl_balances(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    months: int = 13,
) -> pd.DataFrame:
    """GL balances by subject and child org over the last ``months`` month-ends up to the as-of month.

    Parameters
    ----------
    principal : Principal
        Who asks; an org-level role (a customer manager is refused: ``NotPermitted``).
    as_of : str, date or None
        ``YYYY-MM`` or a month-end; the latest when None.
    org : str, optional
        The focus org; its children are the rows (counties for the province, branches for a county).
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN`` labels.
    months : int
        How many month-ends.

    Returns
    -------
    DataFrame
        ``as_of_date, month, org_code, org_label, subject_code, label, side`` (deposit/loan), ``side_label,
        customer_type, account_type, gl_balance`` (yuan), ``is_current``; every child x subject x month,
        zeros where the GL has no row.
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        bcond, bp = ctx.branch_cond("g.org_code")
        dates = ctx.trend_dates(months)
        sql = (
            "SELECT g.as_of_date, r.child AS org_code, g.subject_code, sum(g.gl_balance) AS gl_balance "
            f"FROM mart_gl_tieout AS g JOIN {_map_sql()} AS r ON r.branch = g.org_code "
            f"WHERE list_contains($dates, g.as_of_date) AND {bcond} GROUP BY ALL"
        )
        got = ctx.query(sql, {**bp, **_map_params(ctx), "dates": dates_param(dates)})
        info = _subject_info(ctx)
        children = sorted(set(_child_map(ctx).values()))
    grid = pd.MultiIndex.from_product(
        [dates, children, list(SUBJECTS)], names=["as_of_date", "org_code", "subject_code"]
    ).to_frame(index=False)
    got["as_of_date"] = pd.to_datetime(got["as_of_date"]).dt.date
    df = grid.merge(got, on=["as_of_date", "org_code", "subject_code"], how="left")
    df["gl_balance"] = df["gl_balance"].astype(float).fillna(0.0)
    df = _label_subjects(df, info, lang)
    df.insert(1, "month", [f"{d:%Y-%m}" for d in df["as_of_date"]])
    df.insert(3, "org_label", [ctx.org_label(c) for c in df["org_code"]])
    df["is_current"] = df["as_of_date"] == ctx.day
    cols = [
        "as_of_date",
        "month",
        "org_code",
        "org_label",
        "subject_code",
        "label",
        "side",
        "side_label",
        "customer_type",
        "account_type",
        "gl_balance",
        "is_current",
    ]
    return _attrs(df[cols], ctx, _TITLES["balances"], months=len(dates))


def gl_structure(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The structure of deposits (individual/corporate x demand/time) and loans by child org, per the GL.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`gl_balances`.

    Returns
    -------
    DataFrame
        One row per child org and subject, then the focus org's total rows (``org_code`` = the focus org,
        ``is_total`` True): ``org_code, org_label, is_total, subject_code, label, side, side_label,
        customer_type, account_type, gl_balance, side_share`` (share of the org's deposits or loans; the
        shares of one org and side add up to 1), ``org_share`` (the org's share of the focus org's
        balance of that subject), ``prev_month`` (the balance a month earlier) and ``prev_month_growth``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        bcond, bp = ctx.branch_cond("g.org_code")
        prev = ctx.periods["prev_month"]
        dates = dates_param([ctx.day, prev])
        sql = (
            "SELECT r.child AS org_code, g.subject_code, "
            "sum(g.gl_balance) FILTER (WHERE g.as_of_date = $day) AS gl_balance, "
            "sum(g.gl_balance) FILTER (WHERE g.as_of_date = $prev) AS prev_month "
            f"FROM mart_gl_tieout AS g JOIN {_map_sql()} AS r ON r.branch = g.org_code "
            f"WHERE list_contains($dates, g.as_of_date) AND {bcond} GROUP BY ALL"
        )
        got = ctx.query(sql, {**bp, **_map_params(ctx), "dates": dates, "day": ctx.day, "prev": prev})
        info = _subject_info(ctx)
        children = sorted(set(_child_map(ctx).values()))
    grid = pd.MultiIndex.from_product([children, list(SUBJECTS)], names=["org_code", "subject_code"])
    df = grid.to_frame(index=False).merge(got, on=["org_code", "subject_code"], how="left")
    df["gl_balance"] = df["gl_balance"].astype(float).fillna(0.0)
    df["prev_month"] = df["prev_month"].astype(float) if prev is not None else float("nan")
    df["is_total"] = False
    if len(children) > 1 or children != [ctx.org.code]:
        tot = df.groupby("subject_code", as_index=False)[["gl_balance", "prev_month"]].sum(min_count=1)
        tot["org_code"], tot["is_total"] = ctx.org.code, True
        df = pd.concat([df, tot], ignore_index=True)
    else:
        df["is_total"] = True
    df = _label_subjects(df, info, lang)
    side_tot = df.groupby(["org_code", "side"])["gl_balance"].transform("sum")
    df["side_share"] = (df["gl_balance"] / side_tot.where(side_tot != 0)).fillna(0.0)
    subj_tot = df[df["is_total"]].set_index("subject_code")["gl_balance"]
    df["org_share"] = df["gl_balance"] / df["subject_code"].map(subj_tot).where(lambda s: s != 0)
    df["prev_month_growth"] = df["gl_balance"] / df["prev_month"].where(df["prev_month"] != 0) - 1.0
    df.insert(1, "org_label", [ctx.org_label(c) for c in df["org_code"]])
    cols = [
        "org_code",
        "org_label",
        "is_total",
        "subject_code",
        "label",
        "side",
        "side_label",
        "customer_type",
        "account_type",
        "gl_balance",
        "side_share",
        "org_share",
        "prev_month",
        "prev_month_growth",
    ]
    return _attrs(df[cols].reset_index(drop=True), ctx, _TITLES["structure"])


# ----------------------------------------------------------------------------------------------- tie-out
def tieout_core(frame: pd.DataFrame, tolerance_abs: float, tolerance_rel: float) -> pd.DataFrame:
    """Add ``abs_difference, rel_difference, tolerance, status`` to tie-out rows.

    Parameters
    ----------
    frame : DataFrame
        ``gl_balance, customer_balance, difference`` per row (yuan).
    tolerance_abs, tolerance_rel : float
        A row fails when ``|difference| > tolerance_abs`` AND ``|difference| > tolerance_rel * |gl|``.

    Returns
    -------
    DataFrame
        ``frame`` plus ``abs_difference``, ``rel_difference`` (|difference| / |GL|, NaN for a zero GL),
        ``tolerance`` (the larger of the two allowances: a row fails when it exceeds it) and ``status``
        (``ok`` / ``fail``).
    """
    out = frame.copy()
    diff = out["difference"].astype(float).abs()
    gl = out["gl_balance"].astype(float).abs()
    out["abs_difference"] = diff
    out["rel_difference"] = diff / gl.where(gl != 0)
    out["tolerance"] = (gl * float(tolerance_rel)).clip(lower=float(tolerance_abs))
    fail = (diff > float(tolerance_abs)) & (diff > float(tolerance_rel) * gl)
    out["status"] = fail.map({True: "fail", False: "ok"})
    return out


def gl_tieout(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Every branch x subject of the focus org: GL against the customer-level sum, with a status.

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`gl_balances`.

    Returns
    -------
    DataFrame
        ``as_of_date, county_code, org_code`` (branch), ``org_label, subject_code, label, side, gl_balance,
        customer_balance, difference`` (GL - customers), ``abs_difference, rel_difference, tolerance,
        status`` (``ok``/``fail``), ``status_label, has_gl_row, n_items``; failures first, then by branch
        and subject. ``attrs``: ``n_rows, n_failed, tolerance_abs, tolerance_rel``.
    """
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        bcond, bp = ctx.branch_cond("g.org_code")
        sql = (
            "SELECT g.as_of_date, g.org_code, g.subject_code, g.gl_balance, g.customer_balance, "
            "g.difference, g.has_gl_row, g.n_items FROM mart_gl_tieout AS g "
            f"WHERE g.as_of_date = $day AND {bcond}"
        )
        got = ctx.query(sql, {**bp, "day": ctx.day})
        info = _subject_info(ctx)
        tol = ctx.params.tieout
    got["as_of_date"] = pd.to_datetime(got["as_of_date"]).dt.date
    df = tieout_core(got, tol.tolerance_abs, tol.tolerance_rel)
    df = _label_subjects(df, info, lang)
    df.insert(1, "county_code", [ctx.county_of(c) for c in df["org_code"]])
    df.insert(3, "org_label", [ctx.org_label(c) for c in df["org_code"]])
    df["status_label"] = df["status"].map(lambda s: STATUS_LABELS[s][_lang(lang)])
    df = df.sort_values(
        ["status", "org_code", "subject_code"], ascending=[True, True, True], ignore_index=True
    )
    cols = [
        "as_of_date",
        "county_code",
        "org_code",
        "org_label",
        "subject_code",
        "label",
        "side",
        "gl_balance",
        "customer_balance",
        "difference",
        "abs_difference",
        "rel_difference",
        "tolerance",
        "status",
        "status_label",
        "has_gl_row",
        "n_items",
    ]
    n_failed = int((df["status"] == "fail").sum())
    return _attrs(
        df[cols],
        ctx,
        _TITLES["tieout"],
        n_rows=len(df),
        n_failed=n_failed,
        tolerance_abs=tol.tolerance_abs,
        tolerance_rel=tol.tolerance_rel,
    )


def check_gl_tieout(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    raise_on_failure: bool = False,
) -> TieoutSummary:
    """Summarise the tie-out of :func:`gl_tieout`; raise on a failure if asked (for a CLI's exit code).

    Parameters
    ----------
    principal, as_of, org, home, lang
        As :func:`gl_tieout`.
    raise_on_failure : bool
        Raise :class:`GLTieoutError` when any row fails.

    Returns
    -------
    TieoutSummary
        ``ok``, ``exit_code`` (0 or 1), ``n_checked``, ``n_failed``, the failing rows (``org_code,
        subject_code, gl_balance, customer_balance, difference``) and a one-paragraph ``message`` naming
        them.

    Raises
    ------
    GLTieoutError
        With ``raise_on_failure`` and at least one failure; its ``summary`` is the return value.
    """
    df = gl_tieout(principal, as_of, org=org, home=home, lang=lang)
    fails = df[df["status"] == "fail"]
    keep = ["org_code", "org_label", "subject_code", "label", "gl_balance", "customer_balance", "difference"]
    failures = fails[keep].to_dict("records")
    a = df.attrs
    day = a["as_of"]
    if failures:
        listed = "; ".join(
            f"{f['org_code']} {f['subject_code']}: GL {f['gl_balance']:,.2f} vs customers "
            f"{f['customer_balance']:,.2f} (difference {f['difference']:+,.2f})"
            for f in failures[:20]
        )
        more = f"; and {len(failures) - 20} more" if len(failures) > 20 else ""
        msg = (
            f"GL tie-out FAILED for {a['org']} at {day}: {len(failures)} of {len(df)} org x subject rows "
            f"differ by more than {a['tolerance_abs']:,.2f} yuan and {a['tolerance_rel']:.4%} of the GL: "
            f"{listed}{more}"
        )
    else:
        msg = f"GL tie-out OK for {a['org']} at {day}: {len(df)} org x subject rows within tolerance"
    summary = TieoutSummary(
        as_of=day,
        org=a["org"],
        n_checked=len(df),
        n_failed=len(failures),
        tolerance_abs=a["tolerance_abs"],
        tolerance_rel=a["tolerance_rel"],
        failures=failures,
        message=msg,
    )
    if failures and raise_on_failure:
        raise GLTieoutError(summary)
    return summary


def subjects_of(side: str) -> Sequence[str]:
    """The GL subjects of a side (``deposit`` or ``loan``)."""
    return DEPOSIT_SUBJECTS if side == "deposit" else LOAN_SUBJECTS
