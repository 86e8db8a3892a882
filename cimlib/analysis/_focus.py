"""Key focus (重点关注): the largest movements against the previous month, with the drivers behind each.

Three kinds of rows, each beyond the thresholds of ``parameters/provincial.yaml`` ``key_focus``:

* ``org`` - a child of the focus org (a county of the province, a branch of a county; a branch focus is its
  own row) whose customers, deposits, loans or NPL moved by at least ``org_change_rate`` and by at least
  ``org_min_change`` yuan (amounts) or ``org_min_customer_change`` customers.
  Drivers: its branches (for a county), its products, and its
  customers (ids in the county edition; a count of large customer movements in the provincial edition).
* ``product`` - a deposit, loan or wealth product whose balance within the focus org moved by at least
  ``product_change_rate`` and ``product_min_change``. Drivers: the child orgs.
* ``customer`` - a customer whose deposit balance or deposit ADB moved by at least
  ``customer_min_change`` and by ``customer_change_rate`` of the larger of the two months' values.
  Drivers: the products (accounts grouped by product) that moved. Customers are listed - masked and
  audit-logged through :func:`~cimlib.analysis._common.drill_customers` - only in the county edition;
  the provincial edition gets one ``customer_count`` row (how many customers moved that much), never an
  identity.

Customer-level facts are attributed to the customer's home org (``dim_customer``), so the products' and
branches' changes of an org add up to the org's change. For roles without single-customer detail the
per-org and per-product tables go through :func:`~cimlib.segmentation._analyses.suppress_small`'s rule
before anything is selected (the same rule, applied per group at once; a small group is never listed,
nor used as a driver).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cimlib.access import Principal
from cimlib.analysis._common import (
    AnalysisContext,
    analysis_context,
    dates_param,
    drill_customers,
    growth,
    pick,
)
from cimlib.analysis._gl import _child_map
from cimlib.analysis._macro import measure_label
from cimlib.analysis._params import KeyFocusParams
from cimlib.customer import _data as D
from cimlib.i18n import code_label

KINDS = ("org", "product", "customer")
#: The measures of an org's movement.
ORG_MEASURES = ("customers", "deposit_balance", "loan_balance", "npl_balance")
#: The columns of :func:`key_focus`'s frame.
COLUMNS = (
    "kind",
    "kind_label",
    "code",
    "label",
    "measure",
    "measure_label",
    "previous",
    "current",
    "change",
    "change_rate",
    "customers",
    "drivers",
    "suppressed",
    "cust_name",
    "link",
)
KIND_LABELS = {
    "org": {"en": "Org", "zh": "机构"},
    "product": {"en": "Product", "zh": "产品"},
    "customer": {"en": "Customer", "zh": "客户"},
    "customer_count": {"en": "Customers (count)", "zh": "客户(户数)"},
}
_TEXT = {
    "title": {
        "en": "Key focus: largest movements against the previous month",
        "zh": "重点关注:较上月大幅变动",
    },
    "count_label": {"en": "Customers with large deposit movements", "zh": "存款大幅变动客户数"},
    "n_customers": {"en": "{n} customers with large deposit movements", "zh": "{n}户客户存款大幅变动"},
    "other": {"en": "other", "zh": "其他"},
}


def _money(v: float, lang: str) -> str:
    """A signed amount: 万元 with two decimals in Chinese, whole yuan with separators in English."""
    return f"{v / 10000:+,.2f}万元" if str(lang).startswith("zh") else f"{v:+,.0f} CNY"


def _suppress(df: pd.DataFrame, principal: Principal, by: list[str]) -> pd.DataFrame:
    """:func:`~cimlib.segmentation._analyses.suppress_small`'s rule applied per group of ``by`` at once.

    For a role without detail, a row of ``0 < customers < min_cell`` is blanked, and when it is the only
    small row of its group the next smallest non-empty row of the group is blanked too (so the hidden value
    cannot be worked out from the group's total). ``suppressed`` marks them.
    """
    out = df.reset_index(drop=True).copy()
    if principal.can_view_detail or not len(out):
        out["suppressed"] = False
        return out
    k = int(getattr(principal, "min_cell", 5) or 5)
    n = out["customers"].astype(float)
    keys = [out[c] for c in by] if by else [pd.Series(0, index=out.index)]
    small = (n > 0) & (n < k)
    n_small = small.groupby(keys).transform("sum")
    rank = n.where((~small) & (n > 0)).groupby(keys).rank(method="first")
    hide = small | ((n_small == 1) & (rank == 1))
    num = [c for c in out.select_dtypes("number").columns]
    out[num] = out[num].astype(float)
    out.loc[hide, num] = math.nan
    out["suppressed"] = hide.to_numpy()
    return out


def _fmt_change(measure: str, v: float, lang: str) -> str:
    if measure == "customers":
        return f"{v:+,.0f}"
    return _money(v, lang)


def _rate(prev: Any, cur: Any) -> float:
    return growth(cur, prev)


def _flag(
    df: pd.DataFrame,
    rate: float,
    min_change: float,
    count_measures: tuple[str, ...] = (),
    min_count_change: float = 0,
) -> pd.Series:
    """Rows whose |change rate| >= rate (a new group from zero counts) and |change| >= ``min_change`` for
    amounts, ``min_count_change`` for the counts of ``count_measures``."""
    big_rate = (df["change_rate"].abs() >= rate) | (df["previous"].fillna(0) == 0) & (df["current"] > 0)
    counts = df["measure"].isin(count_measures)
    size = df["change"].abs()
    big_amount = (~counts & (size >= min_change)) | (counts & (size >= min_count_change))
    return big_rate & big_amount & df["change"].notna() & (df["change"] != 0)


# --------------------------------------------------------------------------------------------- queries
def _org_base(ctx: AnalysisContext, prev: dt.date, cond: str, named: dict[str, Any]) -> pd.DataFrame:
    """Per branch (customer's home org): customers and the amounts of both months."""
    parts = [
        "count(*) FILTER (WHERE m.as_of_date = $prev) AS customers_prev",
        "count(*) FILTER (WHERE m.as_of_date = $cur) AS customers_cur",
    ]
    for m in ORG_MEASURES[1:]:
        parts += [
            f"sum(m.{m}) FILTER (WHERE m.as_of_date = $prev) AS {m}_prev",
            f"sum(m.{m}) FILTER (WHERE m.as_of_date = $cur) AS {m}_cur",
        ]
    sql = (
        f"SELECT d.home_org_code AS branch, {', '.join(parts)} "
        "FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id "
        f"WHERE list_contains($dates, m.as_of_date) AND ({cond}) GROUP BY 1"
    )
    return ctx.query(sql, {**named, "dates": dates_param([prev, ctx.day]), "prev": prev, "cur": ctx.day})


def _product_base(ctx: AnalysisContext, prev: dt.date, cond: str, named: dict[str, Any]) -> pd.DataFrame:
    """Per product and branch (customer's home org): balances of both months and current holders."""
    sel = "SELECT x.as_of_date, x.product_code, d.home_org_code AS branch, x.customer_id, {amt} AS amount, "
    where = "WHERE list_contains($dates, x.as_of_date) AND ({cond})"
    join = "JOIN dim_customer AS d ON d.customer_id = x.customer_id"
    union = " UNION ALL ".join(
        [
            f"{sel.format(amt='x.balance')}'deposit_balance' AS measure FROM core_deposit_month AS x {join} "
            f"{where.format(cond=cond)}",
            f"{sel.format(amt='x.balance')}'loan_balance' AS measure FROM core_loan_month AS x {join} "
            f"{where.format(cond=cond)} AND x.status <> 'WRITTEN_OFF'",
            f"{sel.format(amt='x.market_value')}'wealth_value' AS measure FROM core_wealth_month AS x {join} "
            f"{where.format(cond=cond)}",
        ]
    )
    sql = (
        f"SELECT p.product_code, p.measure, p.branch, "
        "coalesce(sum(p.amount) FILTER (WHERE p.as_of_date = $prev), 0) AS previous, "
        "coalesce(sum(p.amount) FILTER (WHERE p.as_of_date = $cur), 0) AS current, "
        "count(DISTINCT p.customer_id) FILTER (WHERE p.as_of_date = $cur AND p.amount > 0) AS customers "
        f"FROM ({union}) AS p GROUP BY ALL"
    )
    return ctx.query(sql, {**named, "dates": dates_param([prev, ctx.day]), "prev": prev, "cur": ctx.day})


def customer_movements_sql(cond: str) -> str:
    """Customers whose deposit balance or ADB moved beyond the thresholds between ``$prev`` and ``$cur``.

    Parameters
    ----------
    cond : str
        A service-written condition on ``dim_customer`` aliased ``d``.

    Returns
    -------
    str
        Named parameters ``$dates, $prev, $cur, $cmin`` (yuan) and ``$crate``; columns ``customer_id,
        customer_type, branch, measure`` (the measure that moved most among those beyond the thresholds),
        ``previous, current, change, deposit_balance_change, deposit_adb_change``.
    """
    v = {}
    for m in ("deposit_balance", "deposit_adb"):
        v[m] = (
            f"coalesce(sum(m.{m}) FILTER (WHERE m.as_of_date = $prev), 0) AS {m}_prev, "
            f"coalesce(sum(m.{m}) FILTER (WHERE m.as_of_date = $cur), 0) AS {m}_cur"
        )

    def hit(m: str) -> str:
        return (
            f"(abs({m}_cur - {m}_prev) >= $cmin AND "
            f"abs({m}_cur - {m}_prev) >= $crate * greatest(abs({m}_prev), abs({m}_cur)))"
        )

    pick_bal = (
        f"{hit('deposit_balance')} AND (NOT {hit('deposit_adb')} OR "
        "abs(deposit_balance_cur - deposit_balance_prev) >= abs(deposit_adb_cur - deposit_adb_prev))"
    )
    return f"""
WITH b AS (
    SELECT m.customer_id, any_value(d.customer_type) AS customer_type, any_value(d.home_org_code) AS branch,
        {v["deposit_balance"]}, {v["deposit_adb"]}
    FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id
    WHERE list_contains($dates, m.as_of_date) AND ({cond})
    GROUP BY m.customer_id
)
SELECT customer_id, customer_type, branch,
    CASE WHEN {pick_bal} THEN 'deposit_balance' ELSE 'deposit_adb' END AS measure,
    CAST(CASE WHEN {pick_bal} THEN deposit_balance_prev ELSE deposit_adb_prev END AS DOUBLE) AS previous,
    CAST(CASE WHEN {pick_bal} THEN deposit_balance_cur ELSE deposit_adb_cur END AS DOUBLE) AS current,
    CAST(CASE WHEN {pick_bal} THEN deposit_balance_cur - deposit_balance_prev
         ELSE deposit_adb_cur - deposit_adb_prev END AS DOUBLE) AS change,
    CAST(deposit_balance_cur - deposit_balance_prev AS DOUBLE) AS deposit_balance_change,
    CAST(deposit_adb_cur - deposit_adb_prev AS DOUBLE) AS deposit_adb_change
FROM b
WHERE {hit("deposit_balance")} OR {hit("deposit_adb")}
"""


def _product_labels(ctx: AnalysisContext) -> dict[str, str]:
    df = ctx.query("SELECT product_code, product_name, subtype FROM core_product")
    if str(ctx.lang).startswith("zh"):
        return dict(zip(df["product_code"], df["product_name"], strict=True))
    return {
        c: f"{c} {code_label('product_subtype', s, 'en')}"
        for c, s in zip(df["product_code"], df["subtype"], strict=True)
    }


# ------------------------------------------------------------------------------------------------- kinds
def _org_rows(ctx: AnalysisContext, base: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per child x measure, per branch x measure) tables of previous/current/change, suppressed."""
    cmap = _child_map(ctx)
    long = []
    for m in ORG_MEASURES:
        part = pd.DataFrame(
            {
                "branch": base["branch"],
                "measure": m,
                "previous": base[f"{m}_prev"].astype(float).fillna(0.0),
                "current": base[f"{m}_cur"].astype(float).fillna(0.0),
                "customers": base["customers_cur"].astype(float),
            }
        )
        long.append(part)
    br = pd.concat(long, ignore_index=True) if long else pd.DataFrame()
    br["child"] = br["branch"].map(lambda b: cmap.get(b, b))
    child = br.groupby(["child", "measure"], as_index=False)[["previous", "current", "customers"]].sum()
    child = _suppress(child, ctx.principal, ["measure"])  # per measure, the children partition the org
    br = _suppress(br, ctx.principal, ["child", "measure"])
    for t in (child, br):
        t["change"] = t["current"] - t["previous"]
        t["change_rate"] = [_rate(p, c) for p, c in zip(t["previous"], t["current"], strict=True)]
    return child, br


def _product_rows(ctx: AnalysisContext, base: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per product, per product x child) tables, suppressed by holders."""
    cmap = _child_map(ctx)
    base = base.copy()
    for c in ("previous", "current", "customers"):
        base[c] = base[c].astype(float).fillna(0.0)
    base["child"] = base["branch"].map(lambda b: cmap.get(b, b))
    prod = base.groupby(["product_code", "measure"], as_index=False)[
        ["previous", "current", "customers"]
    ].sum()
    # holders are counted per branch: a customer holding at two branches counts twice (upper bound)
    prod = _suppress(prod, ctx.principal, ["measure"])
    pc = base.groupby(["product_code", "measure", "child"], as_index=False)[
        ["previous", "current", "customers"]
    ].sum()
    pc = _suppress(pc, ctx.principal, ["product_code", "measure"])
    for t in (prod, pc):
        t["change"] = t["current"] - t["previous"]
        t["change_rate"] = [_rate(p, c) for p, c in zip(t["previous"], t["current"], strict=True)]
    return prod, pc


def _top(drivers: pd.DataFrame, change: float, n: int = 3) -> pd.DataFrame:
    """The ``n`` drivers that moved most in the direction of ``change``, with their share of it."""
    d = drivers[drivers["change"].notna() & (drivers["change"] != 0)]
    if change:
        same = d[(d["change"] > 0) == (change > 0)]
        d = same if len(same) else d
    d = d.reindex(d["change"].abs().sort_values(ascending=False).index).head(n).copy()
    d["share"] = d["change"] / change if change else math.nan
    return d


def _describe(rows: pd.DataFrame, measure: str, lang: str) -> str:
    return "; ".join(
        f"{r.driver_label} {_fmt_change(measure, r.change, lang)}"
        + (f" ({r.share:.0%})" if isinstance(r.share, float) and not math.isnan(r.share) else "")
        for r in rows.itertuples()
    )


# --------------------------------------------------------------------------------------------- public
def key_focus(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
    kinds: tuple[str, ...] = KINDS,
    limit: int | None = None,
    thresholds: Mapping[str, float] | None = None,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The key-focus list: orgs, products and customers that moved most against the previous month.

    Parameters
    ----------
    principal : Principal
        Who asks. The county edition lists customers (masked, audit-logged); the provincial edition gets
        their count only. A customer manager gets no ``org`` rows (no org-level figures).
    as_of : str, date or None
        ``YYYY-MM`` or a month-end; the latest when None.
    org : str, optional
        The focus org (its children are the org rows).
    home : Home, str, Path or None
        The installation.
    lang : str
        ``en`` or ``zh_CN`` labels and driver text.
    kinds : tuple of str
        Some of :data:`KINDS`.
    limit : int, optional
        Rows per kind (default ``key_focus.limit``).
    thresholds : mapping, optional
        Overrides of ``parameters/provincial.yaml`` ``key_focus`` for this call (e.g.
        ``{"customer_min_change": 50000}``), validated like the file (an unknown key is an error).
    app_url : str, optional
        Base URL of the 360 app for the customers' ``link``.

    Returns
    -------
    DataFrame
        :data:`COLUMNS`: ``kind`` (org, product, customer or customer_count), ``code`` (org code, product
        code or customer id), ``label``, ``measure``, ``previous, current, change, change_rate``,
        ``customers`` (the group's current customers / holders), ``drivers`` (text: who moved it),
        ``suppressed``, and for customers the masked ``cust_name`` and ``link``. Rows of a kind are
        ordered by the size of the movement (|change rate| for orgs and products, |change| for
        customers). ``attrs``: ``title, as_of, prev_month, org, edition, thresholds,
        n_customer_movements`` and ``drivers`` (a frame ``kind, code, measure, driver_kind, driver_code,
        driver_label, change, share``).
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kinds {bad}; expected some of {', '.join(KINDS)}")
    with analysis_context(principal, as_of, org=org, home=home, lang=lang) as ctx:
        p = ctx.params.key_focus
        if thresholds:
            p = KeyFocusParams.model_validate({**p.model_dump(), **dict(thresholds)})
        return _key_focus(ctx, p, kinds, limit, app_url)


def _key_focus(
    ctx: AnalysisContext, p: KeyFocusParams, kinds: tuple[str, ...], limit: int | None, app_url: str | None
) -> pd.DataFrame:
    lang = ctx.lang
    n = int(limit or p.limit)
    prev = ctx.periods["prev_month"]
    rows: list[dict[str, Any]] = []
    drivers: list[dict[str, Any]] = []
    county = ctx.edition == "county"
    attrs: dict[str, Any] = {"prev_month": prev, "thresholds": p.model_dump(), "n_customer_movements": 0}
    if prev is None:
        return _frame(ctx, rows, drivers, attrs)
    cond, named = ctx.cust_cond("d")
    plabels = _product_labels(ctx)
    mv = ctx.query(
        customer_movements_sql(cond),
        {
            **named,
            "dates": dates_param([prev, ctx.day]),
            "prev": prev,
            "cur": ctx.day,
            "cmin": float(p.customer_min_change),
            "crate": float(p.customer_change_rate),
        },
    )
    cmap = _child_map(ctx)
    mv["child"] = mv["branch"].map(lambda b: cmap.get(b, b))
    attrs["n_customer_movements"] = len(mv)

    if "org" in kinds and ctx.principal.scope != "managed":
        child, br = _org_rows(ctx, _org_base(ctx, prev, cond, named))
        pbase = _product_base(ctx, prev, cond, named)
        prod_tables = _product_rows(ctx, pbase)
        pc = prod_tables[1]
        ok = child[~child["suppressed"]]
        flag = _flag(ok, p.org_change_rate, p.org_min_change, ("customers",), p.org_min_customer_change)
        hit = ok[flag].copy()
        hit = hit.reindex(hit["change_rate"].abs().fillna(math.inf).sort_values(ascending=False).index).head(
            n
        )
        top_cust = _customer_drivers(ctx, cond, named, prev, hit) if county and len(hit) else pd.DataFrame()
        for r in hit.itertuples():
            ds = []
            subs = br[(br["child"] == r.child) & (br["measure"] == r.measure) & ~br["suppressed"]]
            if len(subs) > 1 or (len(subs) == 1 and subs["branch"].iloc[0] != r.child):
                t = _top(subs.rename(columns={"branch": "driver_code"}), r.change)
                t["driver_kind"], t["driver_label"] = "org", [ctx.org_label(c) for c in t["driver_code"]]
                ds.append(t)
            pm = {"deposit_balance": "deposit_balance", "loan_balance": "loan_balance"}.get(r.measure)
            if pm:
                prods = pc[(pc["child"] == r.child) & (pc["measure"] == pm) & ~pc["suppressed"]]
                t = _top(prods.rename(columns={"product_code": "driver_code"}), r.change)
                t["driver_kind"], t["driver_label"] = "product", [plabels.get(c, c) for c in t["driver_code"]]
                ds.append(t)
            if county and len(top_cust):
                tc = top_cust[(top_cust["child"] == r.child) & (top_cust["measure"] == r.measure)]
                t = _top(tc.rename(columns={"customer_id": "driver_code"}), r.change)
                t["driver_kind"], t["driver_label"] = "customer", t["driver_code"]
                ds.append(t)
            text = [_describe(t, r.measure, lang) for t in ds if len(t)]
            n_big = int((mv["child"] == r.child).sum())
            if not county and n_big:
                text.append(pick(_TEXT["n_customers"], lang).format(n=n_big))
                drivers.append(
                    {
                        "kind": "org",
                        "code": r.child,
                        "measure": r.measure,
                        "driver_kind": "customer_count",
                        "driver_code": None,
                        "driver_label": pick(_TEXT["count_label"], lang),
                        "change": float(n_big),
                        "share": math.nan,
                    }
                )
            for t in ds:
                for d in t.itertuples():
                    drivers.append(
                        {
                            "kind": "org",
                            "code": r.child,
                            "measure": r.measure,
                            "driver_kind": d.driver_kind,
                            "driver_code": d.driver_code,
                            "driver_label": d.driver_label,
                            "change": float(d.change),
                            "share": float(d.share),
                        }
                    )
            rows.append(
                {
                    "kind": "org",
                    "code": r.child,
                    "label": ctx.org_label(r.child),
                    "measure": r.measure,
                    "previous": r.previous,
                    "current": r.current,
                    "change": r.change,
                    "change_rate": r.change_rate,
                    "customers": r.customers,
                    "drivers": "; ".join(text),
                    "suppressed": False,
                }
            )
    else:
        prod_tables = None

    if "product" in kinds:
        if prod_tables is None:
            prod_tables = _product_rows(ctx, _product_base(ctx, prev, cond, named))
        prod, pc = prod_tables
        ok = prod[~prod["suppressed"]]
        hit = ok[_flag(ok, p.product_change_rate, p.product_min_change)].copy()
        hit = hit.reindex(hit["change_rate"].abs().fillna(math.inf).sort_values(ascending=False).index).head(
            n
        )
        for r in hit.itertuples():
            subs = pc[
                (pc["product_code"] == r.product_code) & (pc["measure"] == r.measure) & ~pc["suppressed"]
            ]
            t = _top(subs.rename(columns={"child": "driver_code"}), r.change)
            t["driver_kind"], t["driver_label"] = "org", [ctx.org_label(c) for c in t["driver_code"]]
            for d in t.itertuples():
                drivers.append(
                    {
                        "kind": "product",
                        "code": r.product_code,
                        "measure": r.measure,
                        "driver_kind": "org",
                        "driver_code": d.driver_code,
                        "driver_label": d.driver_label,
                        "change": float(d.change),
                        "share": float(d.share),
                    }
                )
            rows.append(
                {
                    "kind": "product",
                    "code": r.product_code,
                    "label": plabels.get(r.product_code, r.product_code),
                    "measure": r.measure,
                    "previous": r.previous,
                    "current": r.current,
                    "change": r.change,
                    "change_rate": r.change_rate,
                    "customers": r.customers,
                    "drivers": _describe(t, r.measure, lang),
                    "suppressed": False,
                }
            )

    if "customer" in kinds:
        if county and len(mv):
            rows_c, drv_c = _customer_rows(ctx, p, cond, named, prev, n, app_url, plabels)
            rows += rows_c
            drivers += drv_c
        elif not county:
            rows.append(
                {
                    "kind": "customer_count",
                    "code": None,
                    "label": pick(_TEXT["count_label"], lang),
                    "measure": "customers",
                    "previous": math.nan,
                    "current": float(len(mv)),
                    "change": math.nan,
                    "change_rate": math.nan,
                    "customers": float(len(mv)),
                    "drivers": "",
                    "suppressed": False,
                }
            )
    return _frame(ctx, rows, drivers, attrs)


def _customer_drivers(
    ctx: AnalysisContext, cond: str, named: dict[str, Any], prev: dt.date, hit: pd.DataFrame
) -> pd.DataFrame:
    """The three customers moving each flagged (child, amount measure) most (county edition only)."""
    cmap = _child_map(ctx)
    pairs = [(c, m) for c, m in zip(hit["child"], hit["measure"], strict=True) if m != "customers"]
    if not pairs:
        return pd.DataFrame()
    branches = sorted({b for b, c in cmap.items() if c in {c for c, _ in pairs}})
    sels = " UNION ALL ".join(
        f"SELECT customer_id, branch, '{m}' AS measure, {m}_change AS change FROM b WHERE {m}_change <> 0"
        for m in ("deposit_balance", "loan_balance", "npl_balance")
    )
    ch = ", ".join(
        f"coalesce(sum(m.{m}) FILTER (WHERE m.as_of_date = $cur), 0) - "
        f"coalesce(sum(m.{m}) FILTER (WHERE m.as_of_date = $prev), 0) AS {m}_change"
        for m in ("deposit_balance", "loan_balance", "npl_balance")
    )
    sql = f"""
WITH b AS (
    SELECT m.customer_id, any_value(d.home_org_code) AS branch, {ch}
    FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id
    WHERE list_contains($dates, m.as_of_date) AND list_contains($branches, d.home_org_code) AND ({cond})
    GROUP BY m.customer_id
), u AS ({sels})
SELECT u.customer_id, u.branch, u.measure, CAST(u.change AS DOUBLE) AS change FROM u
JOIN (SELECT unnest($mb) AS branch, unnest($mc) AS child) AS r ON r.branch = u.branch
QUALIFY row_number() OVER (PARTITION BY r.child, u.measure ORDER BY abs(u.change) DESC, u.customer_id) <= 5
"""
    params = {
        **named,
        "dates": dates_param([prev, ctx.day]),
        "prev": prev,
        "cur": ctx.day,
        "branches": branches,
        "mb": list(cmap),
        "mc": list(cmap.values()),
    }
    df = ctx.query(sql, params)
    df["child"] = df["branch"].map(lambda b: cmap.get(b, b))
    return df


def _customer_rows(
    ctx: AnalysisContext,
    p: KeyFocusParams,
    cond: str,
    named: dict[str, Any],
    prev: dt.date,
    n: int,
    app_url: str | None,
    plabels: dict[str, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The county edition's customer rows (masked, audit-logged) and their product drivers."""
    lang = ctx.lang
    listed = drill_customers(
        ctx,
        "analysis_drill_key_focus",
        "key_focus:customers",
        customer_movements_sql(cond),
        {
            **named,
            "dates": dates_param([prev, ctx.day]),
            "prev": prev,
            "cur": ctx.day,
            "cmin": float(p.customer_min_change),
            "crate": float(p.customer_change_rate),
        },
        order="abs(c.change) DESC",
        limit=n,
        app_url=app_url,
        detail={"prev_month": prev.isoformat()},
    )
    if not len(listed):
        return [], []
    ids = list(listed["customer_id"])
    acc = ctx.query(
        "SELECT x.customer_id, x.product_code, "
        "CAST(coalesce(sum(x.balance) FILTER (WHERE x.as_of_date = $cur), 0) "
        "- coalesce(sum(x.balance) FILTER (WHERE x.as_of_date = $prev), 0) AS DOUBLE) AS bal_change, "
        "CAST(coalesce(sum(x.adb) FILTER (WHERE x.as_of_date = $cur), 0) "
        "- coalesce(sum(x.adb) FILTER (WHERE x.as_of_date = $prev), 0) AS DOUBLE) AS adb_change, "
        "count(DISTINCT x.account_no) AS accounts "
        "FROM core_deposit_month AS x "
        "WHERE list_contains($dates, x.as_of_date) AND list_contains($ids, x.customer_id) "
        "GROUP BY ALL",
        {"dates": dates_param([prev, ctx.day]), "prev": prev, "cur": ctx.day, "ids": ids},
    )
    rows, drv = [], []
    for r in listed.itertuples():
        col = "bal_change" if r.measure == "deposit_balance" else "adb_change"
        a = acc[acc["customer_id"] == r.customer_id].rename(
            columns={"product_code": "driver_code", col: "change"}
        )
        t = _top(a, r.change)
        t["driver_label"] = [
            f"{plabels.get(c, c)} ({k})" for c, k in zip(t["driver_code"], t["accounts"], strict=True)
        ]
        for d in t.itertuples():
            drv.append(
                {
                    "kind": "customer",
                    "code": r.customer_id,
                    "measure": r.measure,
                    "driver_kind": "product",
                    "driver_code": d.driver_code,
                    "driver_label": d.driver_label,
                    "change": float(d.change),
                    "share": float(d.share),
                }
            )
        rows.append(
            {
                "kind": "customer",
                "code": r.customer_id,
                "label": r.cust_name or r.customer_id,
                "measure": r.measure,
                "previous": r.previous,
                "current": r.current,
                "change": r.change,
                "change_rate": _rate(r.previous, r.current),
                "customers": 1.0,
                "drivers": _describe(t, r.measure, lang),
                "suppressed": False,
                "cust_name": r.cust_name,
                "link": r.link,
            }
        )
    return rows, drv


def _frame(
    ctx: AnalysisContext, rows: list[dict[str, Any]], drivers: list[dict[str, Any]], attrs: dict[str, Any]
) -> pd.DataFrame:
    lang = ctx.lang
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    if len(df):
        df["kind_label"] = [pick(KIND_LABELS[k], lang) for k in df["kind"]]
        df["measure_label"] = [measure_label(m, lang) for m in df["measure"]]
        for c in ("previous", "current", "change", "change_rate", "customers"):
            df[c] = df[c].astype(float)
    df = df[list(COLUMNS)].reset_index(drop=True)
    dcols = ["kind", "code", "measure", "driver_kind", "driver_code", "driver_label", "change", "share"]
    df.attrs.update(
        title=f"{pick(_TEXT['title'], lang)} - {ctx.org_label(ctx.org.code)}",
        as_of=ctx.day,
        org=ctx.org.code,
        org_name=ctx.org.name,
        edition=ctx.edition,
        snapshot_id=getattr(ctx.snap, "snapshot_id", None),
        drivers=pd.DataFrame(drivers, columns=dcols),
        **attrs,
    )
    return df
