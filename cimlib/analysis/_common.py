"""Shared plumbing of the provincial analyses: who sees which orgs, the periods compared, drills.

Every analysis function takes a :class:`~cimlib.access.Principal`, an as-of month and an optional **focus
org** (a county or a branch inside the principal's scope; the principal's own org by default), and opens an
:class:`AnalysisContext`:

* ``ctx.cust_cond("d")`` limits ``dim_customer`` (aliased ``d``) to the principal's row scope and the
  focus org, for customer-level facts (``mart_customer_month`` ...);
* ``ctx.branch_cond("x.org_code")`` limits a branch-keyed fact (GL, channel volume) to the branches of the
  focus org; a role scoped to the customers it manages has no org-level facts (:class:`NotPermitted`);
* ``ctx.periods`` are the as-of date and its comparison dates: the previous month, the same month last year
  and the start of the year (the previous year-end, 年初), each ``None`` when the warehouse lacks it.

**Editions.** The principal decides: a role with scope ``all`` and no single-customer detail gets the
*provincial* edition (every org, aggregates only: groups under ``principal.min_cell`` customers are
blanked); a county, branch or customer-manager role gets the *county* edition, which may drill from a
figure to the customers behind it (:func:`drill_customers`: scoped, masked, audit-logged).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, Principal, named_scope
from cimlib.analysis._params import ProvincialParams, load_provincial_params
from cimlib.config import Home
from cimlib.customer import _data as D

Edition = Literal["provincial", "county"]
PERIOD_KEYS = ("current", "prev_month", "last_year", "year_start")
#: How each comparison is named in frames and charts.
PERIOD_LABELS = {
    "current": {"en": "This month", "zh": "本月"},
    "prev_month": {"en": "Previous month", "zh": "上月"},
    "last_year": {"en": "Same month last year", "zh": "去年同期"},
    "year_start": {"en": "Start of year", "zh": "年初"},
}


def is_zh(lang: str) -> bool:
    """True for a Chinese locale (``zh``, ``zh_CN``)."""
    return str(lang).startswith("zh")


def ui_lang(lang: str) -> str:
    """The locale of the i18n files (``zh_CN`` or ``en``) for a ``lang`` argument."""
    return "zh_CN" if is_zh(lang) else "en"


def pick(text: dict[str, str], lang: str) -> str:
    """The ``en`` or ``zh`` entry of a two-language label."""
    return text["zh" if is_zh(lang) else "en"]


def edition_of(principal: Principal) -> Edition:
    """``provincial`` (all orgs, aggregates only) or ``county`` (one org, with single-customer drill)."""
    return "provincial" if principal.scope == "all" and not principal.can_view_detail else "county"


def month_end(year: int, month: int) -> dt.date:
    """The last day of a month."""
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def comparison_dates(as_of: dt.date, available: Sequence[dt.date]) -> dict[str, dt.date | None]:
    """The as-of date and its comparison dates, ``None`` where the warehouse has no such month.

    Parameters
    ----------
    as_of : date
        A month-end of the warehouse.
    available : sequence of date
        The warehouse's month-ends.

    Returns
    -------
    dict
        ``current``, ``prev_month`` (the month before), ``last_year`` (the same month a year earlier) and
        ``year_start`` (31 December of the previous year: the balance at the start of the year, 年初).
    """
    have = set(available)
    prev = month_end(as_of.year - (as_of.month == 1), (as_of.month - 2) % 12 + 1)
    last_year = month_end(as_of.year - 1, as_of.month)
    year_start = dt.date(as_of.year - 1, 12, 31)
    return {
        "current": as_of,
        "prev_month": prev if prev in have else None,
        "last_year": last_year if last_year in have else None,
        "year_start": year_start if year_start in have else None,
    }


def growth(current: float | None, base: float | None) -> float:
    """``current / base - 1``; NaN when either is missing or the base is zero."""
    if current is None or base is None:
        return math.nan
    try:
        c, b = float(current), float(base)
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(c) or math.isnan(b) or b == 0:
        return math.nan
    return c / b - 1.0


@dataclass(frozen=True)
class Org:
    """An org of the hierarchy (province > county > branch)."""

    code: str
    name: str
    level: str
    parent: str | None


@dataclass
class AnalysisContext:
    """What one analysis call resolved: snapshot, month, periods, parameters, scope and focus org."""

    principal: Principal
    home: Home
    snap: Any
    day: dt.date
    dates: list[dt.date]
    org: Org
    orgs: dict[str, Org]
    branches: tuple[str, ...]
    params: ProvincialParams
    lang: str = "en"

    @property
    def edition(self) -> Edition:
        """The principal's edition (:func:`edition_of`)."""
        return edition_of(self.principal)

    @property
    def periods(self) -> dict[str, dt.date | None]:
        """:func:`comparison_dates` of the as-of month."""
        return comparison_dates(self.day, self.dates)

    def trend_dates(self, months: int) -> list[dt.date]:
        """The last ``months`` month-ends of the warehouse up to the as-of month, ascending."""
        upto = [d for d in self.dates if d <= self.day]
        return upto[-months:]

    def cust_cond(self, alias: str = "d") -> tuple[str, dict[str, Any]]:
        """A condition on ``dim_customer`` aliased ``alias`` (principal's scope and focus org), with its
        named parameters (``$cs…``)."""
        return _cust_condition(self.principal, self.org, alias)

    def branch_cond(self, column: str) -> tuple[str, dict[str, Any]]:
        """``column IN (branches of the focus org)`` for a branch-keyed fact, with its parameter.

        Raises
        ------
        NotPermitted
            For a role scoped to the customers it manages (it sees no org-level figures).
        """
        if self.principal.scope == "managed":
            role = self.principal.role
            raise NotPermitted(f"role {role} sees its own customers only, not org-level figures")
        return f"list_contains($branches, {column})", {"branches": list(self.branches)}

    def org_label(self, code: str | None) -> str:
        """An org's name (its code when unknown)."""
        if code is None:
            return ""
        o = self.orgs.get(code)
        return o.name if o else code

    def county_of(self, code: str) -> str | None:
        """The county an org belongs to (itself for a county)."""
        o = self.orgs.get(code)
        while o is not None and o.level == "BRANCH":
            o = self.orgs.get(o.parent or "")
        return o.code if o is not None and o.level == "COUNTY" else None

    def children(self, code: str | None = None) -> list[Org]:
        """The orgs directly under ``code`` (the focus org by default), by code."""
        c = code or self.org.code
        return sorted((o for o in self.orgs.values() if o.parent == c), key=lambda o: o.code)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run ``sql`` on all cores; pandas through Arrow, decimals as floats."""
        from cimlib.targeting._run import to_pandas

        with self.snap.all_cores() as con:
            return to_pandas(con.sql(sql, params=params or {}).to_arrow_table())


def load_orgs(snap: Any) -> dict[str, Org]:
    """The org hierarchy of the snapshot (cached per snapshot)."""
    got = snap.cache.get("analysis_orgs")
    if got is None:
        _, rows = snap.query("SELECT org_code, org_name, org_level, parent_code FROM core_org")
        got = snap.cache["analysis_orgs"] = {r[0]: Org(r[0], r[1], r[2], r[3]) for r in rows}
    return got


def _root(orgs: dict[str, Org]) -> Org:
    roots = [o for o in orgs.values() if o.level == "PROVINCE"]
    if len(roots) != 1:
        raise RuntimeError(f"the org hierarchy has {len(roots)} provinces, expected one")
    return roots[0]


def _home_org(principal: Principal, orgs: dict[str, Org]) -> Org:
    if principal.scope == "all":
        return _root(orgs)
    o = orgs.get(principal.org_code or "")
    if o is None:
        who = principal.user_id
        raise NotPermitted(f"the org {principal.org_code!r} of user {who} is not in the warehouse")
    return o


def _within(orgs: dict[str, Org], code: str, ancestor: str) -> bool:
    o = orgs.get(code)
    while o is not None:
        if o.code == ancestor:
            return True
        o = orgs.get(o.parent or "")
    return False


def _branches_under(orgs: dict[str, Org], code: str) -> tuple[str, ...]:
    return tuple(sorted(o.code for o in orgs.values() if o.level == "BRANCH" and _within(orgs, o.code, code)))


def resolve_org(principal: Principal, org: str | None, orgs: dict[str, Org]) -> Org:
    """The focus org: ``org`` when it lies within the principal's scope, else the principal's own org.

    Raises
    ------
    NotFoundOrNotPermitted
        For an org that does not exist or lies outside the scope (the two are not told apart).
    """
    home = _home_org(principal, orgs)
    if org in (None, "", home.code):
        return home
    if org not in orgs or not _within(orgs, str(org), home.code) or principal.scope == "managed":
        raise NotFoundOrNotPermitted("org not found or not permitted")
    return orgs[str(org)]


def _cust_condition(principal: Principal, focus: Org, alias: str = "d") -> tuple[str, dict[str, Any]]:
    sql, named = named_scope(principal, alias, "cs")
    if focus.level == "COUNTY":
        sql, named = f"({sql}) AND {alias}.county_code = $cfocus", {**named, "cfocus": focus.code}
    elif focus.level == "BRANCH":
        sql, named = f"({sql}) AND {alias}.home_org_code = $cfocus", {**named, "cfocus": focus.code}
    return sql, named


@contextmanager
def analysis_context(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    org: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> Iterator[AnalysisContext]:
    """Resolve everything an analysis needs; see the module docstring.

    Parameters
    ----------
    principal : Principal
        Who asks.
    as_of : str, date or None
        ``YYYY-MM`` or a date; the latest month when None.
    org : str, optional
        The focus org (county or branch) within the principal's scope.
    home : Home, str, Path or None
        The installation.
    lang : str
        The labels' language (``en`` or ``zh_CN``).

    Raises
    ------
    NotPermitted
        For a role without customer data.
    NotFoundOrNotPermitted
        For a focus org outside the scope.
    AsOfError
        For a month the warehouse lacks.
    """
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    h = D.resolve_home(home)
    params = load_provincial_params(h)
    snap = D.snapshot(h)
    day = D.resolve_as_of(snap, as_of)
    orgs = load_orgs(snap)
    focus = resolve_org(principal, org, orgs)
    yield AnalysisContext(
        principal=principal,
        home=h,
        snap=snap,
        day=day,
        dates=D.as_of_dates(snap),
        org=focus,
        orgs=orgs,
        branches=_branches_under(orgs, focus.code),
        params=params,
        lang=lang,
    )


def titled(df: pd.DataFrame, ctx: AnalysisContext, title: dict[str, str], **more: Any) -> pd.DataFrame:
    """``df`` with the attrs of a macro or GL frame: ``title`` (with the focus org's name), ``as_of``,
    ``org``, ``org_name``, ``edition``, ``snapshot_id`` and ``more``."""
    df.attrs.update(
        title=f"{pick(title, ctx.lang)} - {ctx.org_label(ctx.org.code)}",
        as_of=ctx.day,
        org=ctx.org.code,
        org_name=ctx.org.name,
        edition=ctx.edition,
        snapshot_id=getattr(ctx.snap, "snapshot_id", None),
        **more,
    )
    return df


def dates_param(dates: Sequence[dt.date | None]) -> list[dt.date]:
    """The known dates of a comparison, for ``list_contains($dates, as_of_date)``."""
    return sorted({d for d in dates if d is not None})


def comparison_frame(
    values: dict[str, dict[str, float]],
    periods: dict[str, dt.date | None],
    measures: Sequence[str],
) -> pd.DataFrame:
    """One row per measure: the current value, each comparison value and the change and growth rate.

    Parameters
    ----------
    values : dict
        ``{as-of date iso: {measure: value}}``.
    periods : dict
        :func:`comparison_dates`.
    measures : sequence of str
        The measures, in order.

    Returns
    -------
    DataFrame
        ``measure, current, prev_month, prev_month_change, prev_month_growth, last_year, …, year_start, …``
        (NaN where the comparison month is missing).
    """
    rows = []
    cur = values.get(periods["current"].isoformat(), {}) if periods["current"] else {}
    for m in measures:
        row: dict[str, Any] = {"measure": m, "current": cur.get(m, math.nan)}
        for k in PERIOD_KEYS[1:]:
            d = periods[k]
            base = values.get(d.isoformat(), {}).get(m, math.nan) if d else math.nan
            row[k] = base
            row[f"{k}_change"] = row["current"] - base if not math.isnan(base) else math.nan
            row[f"{k}_growth"] = growth(row["current"], base)
        rows.append(row)
    return pd.DataFrame(rows)


def drill_customers(
    ctx: AnalysisContext,
    action: str,
    target: str,
    core_sql: str,
    params: dict[str, Any],
    *,
    order: str = "c.customer_id",
    limit: int = 500,
    app_url: str | None = None,
    detail: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The customers behind a figure: scoped, masked and audit-logged; needs single-customer detail.

    Parameters
    ----------
    ctx : AnalysisContext
        The call's context; ``core_sql`` must apply ``ctx.cust_cond()`` itself.
    action, target : str
        The audit record's action (``analysis_drill_…``) and what was drilled.
    core_sql : str
        A service-written query giving ``customer_id``, ``customer_type`` and the figure's columns.
    params : dict
        Its named parameters.
    order, limit, app_url, detail
        As :func:`cimlib.value._tiers.customer_list`.

    Returns
    -------
    DataFrame
        The core columns plus the masked identity columns and a ``link`` to the 360 view.

    Raises
    ------
    NotPermitted
        For a role without single-customer detail (the provincial edition); the refusal is audited.
    """
    from cimlib.value._tiers import customer_list, refuse_without_detail

    refuse_without_detail(ctx.principal, ctx.home, action, target)
    info = {"org": ctx.org.code, **(detail or {})}
    return customer_list(ctx.principal, ctx, action, target, core_sql, params,  # type: ignore[arg-type]
                         order=order, limit=limit, app_url=app_url, detail=info)  # fmt: skip
