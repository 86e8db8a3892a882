"""RFM for banks (DOMAIN.md): recency, frequency and monetary value, scored 1..5 and named by segment.

* **R** = days from the month-end to the customer's last customer-initiated transaction
  (``mart_customer_month.last_customer_txn_time``, the latest over every month up to the as-of month;
  interest postings, fees and judicial actions are not customer-initiated). A customer with none in the
  warehouse's months has R NULL and the worst R score.
* **F** = customer-initiated transactions (``customer_txn_count``) over the last ``frequency_months``
  months, the as-of month included.
* **M** = ``deposit_adb``, ``aum_adb``, ``aum`` or ``contribution`` of the month (the value frame).

A score is the quintile of the customer's rank among the bank's customers of its type (or all of them):
``score = 1 + floor(5 x (rank - 1) / n)``, where ``rank`` is SQL ``RANK()`` (ascending value, R by
descending days, so 5 is best). Tied values share the lower rank and so the same score, whatever the row
order: the scores are deterministic. Ranks are over the whole bank, so a customer's score does not depend
on who looks; the principal's scope limits the rows returned.

A warehouse built before ``last_customer_txn_time`` existed falls back to ``last_txn_time`` of the months
with a customer-initiated transaction (an approximation: a later interest posting that month moves R
earlier); ``attrs["recency_source"]`` says which was used.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pandas as pd

from cimlib.access import Principal, named_scope
from cimlib.customer import _data as D
from cimlib.value._contribution import Rfm, ValueParams, ValueParamsError
from cimlib.value._tiers import _Ctx, _lang_key, _suppress_1d, customer_list, refuse_without_detail

log = logging.getLogger(__name__)

#: The columns of :func:`rfm_scores`.
RFM_COLUMNS = (
    "customer_id", "customer_type", "county_code", "home_org_code", "manager_no", "last_customer_txn_date",
    "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm", "segment",
)  # fmt: skip
EXACT, APPROX = "last_customer_txn_time", "last_txn_time (months with customer-initiated transactions)"


def _rfm(params: ValueParams) -> Rfm:
    if params.rfm is None:
        raise ValueParamsError("parameters/value.yaml: rfm: section missing")
    return params.rfm


def month_end_back(d: dt.date, n: int) -> dt.date:
    """The month-end ``n`` months before ``d``'s month (``n = 0``: ``d``'s month-end)."""
    idx = d.year * 12 + d.month - 1 - n + 1
    y, m = divmod(idx, 12)
    return dt.date(y, m + 1, 1) - dt.timedelta(days=1)


def _score(order: str, part: str) -> str:
    return (
        f"CAST(floor(5.0 * (rank() OVER (PARTITION BY {part} ORDER BY {order}) - 1) "
        f"/ count(*) OVER (PARTITION BY {part})) AS INTEGER) + 1"
    )


def rfm_sql(params: ValueParams, value_relation: str, *, exact_recency: bool = True) -> str:
    """SQL for every customer's R, F, M, scores and segment at ``$as_of``.

    Parameters
    ----------
    params : ValueParams
        Validated parameters with an ``rfm`` section.
    value_relation : str
        The month's value frame (a table name or ``read_parquet(...)`` this package built, never user text)
        with ``customer_id, customer_type, county_code, home_org_code, manager_no`` and the M measure.
    exact_recency : bool
        Use ``last_customer_txn_time``; False falls back to ``last_txn_time`` (see the module docstring).

    Returns
    -------
    str
        A query with the named parameters ``$as_of`` (DATE, the month-end) and ``$from`` (DATE, the month-end
        ``frequency_months`` before), giving :data:`RFM_COLUMNS`.
    """
    r = _rfm(params)
    last = (
        "max(last_customer_txn_time)"
        if exact_recency
        else "max(last_txn_time) FILTER (WHERE customer_txn_count > 0)"
    )
    part = "customer_type" if r.score_within == "customer_type" else "1"
    seg = (
        "CASE "
        + " ".join(
            f"WHEN r_score BETWEEN {s.r[0]} AND {s.r[1]} AND f_score BETWEEN {s.f[0]} AND {s.f[1]} "
            f"AND m_score BETWEEN {s.m[0]} AND {s.m[1]} THEN '{s.id}'"
            for s in r.segments
        )
        + " END"
    )
    return f"""
WITH h AS (
    SELECT customer_id, CAST({last} AS DATE) AS last_customer_txn_date,
        sum(customer_txn_count) FILTER (WHERE as_of_date > $from) AS freq
    FROM mart_customer_month
    WHERE as_of_date <= $as_of
    GROUP BY customer_id
),
x AS (
    SELECT v.customer_id, v.customer_type, v.county_code, v.home_org_code, v.manager_no,
        h.last_customer_txn_date,
        CAST(date_diff('day', h.last_customer_txn_date, $as_of) AS INTEGER) AS recency_days,
        CAST(coalesce(h.freq, 0) AS BIGINT) AS frequency,
        CAST(v.{r.monetary} AS DOUBLE) AS monetary
    FROM {value_relation} AS v
    LEFT JOIN h ON h.customer_id = v.customer_id
),
s AS (
    SELECT x.*,
        {_score("recency_days DESC NULLS FIRST", part)} AS r_score,
        {_score("frequency", part)} AS f_score,
        {_score("monetary", part)} AS m_score
    FROM x
)
SELECT s.*, CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR) AS rfm,
    {seg} AS segment
FROM s
"""


def _has_exact(snap: Any) -> bool:
    got = snap.cache.get("has_last_customer_txn_time")
    if got is None:
        _, rows = snap.query(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'mart_customer_month' "
            "AND column_name = 'last_customer_txn_time'"
        )
        got = snap.cache["has_last_customer_txn_time"] = bool(rows[0][0])
    return got


def _scores_sql(c: _Ctx) -> tuple[str, dict[str, Any], bool]:
    exact = _has_exact(c.snap)
    if not exact:
        log.warning("mart_customer_month has no last_customer_txn_time (built before it existed): "
                    "R approximated from last_txn_time; rebuild the warehouse for exact recency")  # fmt: skip
    p = {"as_of": c.day, "from": month_end_back(c.day, _rfm(c.params).frequency_months)}
    return rfm_sql(c.params, c.table(), exact_recency=exact), p, exact


def rfm_scores(
    principal: Principal, as_of: str | dt.date | None = None, *, home: D.HomeLike = None
) -> pd.DataFrame:
    """Every in-scope customer's R, F, M, scores and segment for one month.

    Parameters
    ----------
    principal : Principal
        Who asks; rows are limited to their scope (no personal data, no detail needed, like
        :func:`customer_value`). Scores are ranked over the whole bank.
    as_of : str, date or None
        The month; the latest when None.
    home : Home, str, Path or None
        The installation.

    Returns
    -------
    pandas.DataFrame
        :data:`RFM_COLUMNS` sorted by customer; ``attrs``: ``as_of``, ``snapshot_id``, ``monetary``,
        ``frequency_months``, ``recency_source``.
    """
    c = _Ctx(principal, as_of, home)
    sql, params, exact = _scores_sql(c)
    cond, named = named_scope(principal, "d", "s")
    df = c.query(f"SELECT * FROM ({sql}) AS d WHERE ({cond}) ORDER BY d.customer_id", {**params, **named})
    r = _rfm(c.params)
    src = EXACT if exact else APPROX
    df.attrs.update(as_of=c.day.isoformat(), snapshot_id=c.snap.snapshot_id, monetary=r.monetary,
                    frequency_months=r.frequency_months, recency_source=src)  # fmt: skip
    return df


def rfm_summary(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    customer_type: str | None = None,
    home: D.HomeLike = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Customers and value of each RFM segment for one month, within the principal's scope.

    Returns
    -------
    pandas.DataFrame
        One row per segment (``parameters/value.yaml`` order): ``segment, label, customers,
        customer_share, monetary, monetary_share, avg_recency_days, avg_frequency``; small segments are
        suppressed (NaN) for roles without detail. ``attrs`` as :func:`rfm_scores` plus ``suppressed``.
    """
    c = _Ctx(principal, as_of, home)
    sql, params, exact = _scores_sql(c)
    cond, named = named_scope(principal, "d", "s")
    typ = ""
    if customer_type is not None:
        if customer_type not in ("I", "C"):
            raise ValueError(f"customer_type: expected 'I' or 'C', got {customer_type!r}")
        typ, named["ctype"] = " AND d.customer_type = $ctype", customer_type
    g = c.query(
        "SELECT segment, count(*) AS customers, sum(monetary) AS monetary, avg(recency_days) AS "
        f"avg_recency_days, avg(frequency) AS avg_frequency FROM ({sql}) AS d WHERE ({cond}){typ} "
        "GROUP BY segment",
        {**params, **named},
    ).set_index("segment")
    r = _rfm(c.params)
    key = _lang_key(lang)
    df = g.reindex([s.id for s in r.segments]).reset_index()
    df = df.fillna({"customers": 0, "monetary": 0.0})
    df.insert(1, "label", [getattr(s, key) for s in r.segments])
    tot_n, tot_m = df["customers"].sum(), df["monetary"].sum()
    df["customer_share"] = df["customers"] / tot_n if tot_n else 0.0
    df["monetary_share"] = df["monetary"] / tot_m if tot_m else 0.0
    df = df[["segment", "label", "customers", "customer_share", "monetary", "monetary_share",
             "avg_recency_days", "avg_frequency"]]  # fmt: skip
    num = ["customers", "customer_share", "monetary", "monetary_share", "avg_recency_days", "avg_frequency"]
    sup = (
        _suppress_1d(df.set_index("segment")["customers"], principal.min_cell)
        if not principal.can_view_detail
        else pd.Series(False, index=df["segment"])
    )
    df[num] = df[num].astype("float64")
    df.loc[sup.to_numpy(), num] = float("nan")
    df.attrs.update(as_of=c.day.isoformat(), snapshot_id=c.snap.snapshot_id, monetary=r.monetary,
                    frequency_months=r.frequency_months, recency_source=EXACT if exact else APPROX,
                    suppressed=[k for k, s in sup.items() if s], min_cell=principal.min_cell,
                    scope=principal.scope_label, customer_type=customer_type)  # fmt: skip
    return df


def rfm_customers(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    segment: str | None = None,
    home: D.HomeLike = None,
    limit: int = 500,
    app_url: str | None = None,
) -> pd.DataFrame:
    """The customers of one RFM segment (or all), scoped, masked and audit-logged; needs detail.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, customer_type, segment, rfm, r_score, f_score, m_score, recency_days, frequency,
        monetary`` (largest M first), masked identity columns and ``link``.
    """
    refuse_without_detail(principal, home, "value_rfm_list", segment or "all")
    c = _Ctx(principal, as_of, home)
    ids = [s.id for s in _rfm(c.params).segments]
    if segment is not None and segment not in ids:
        raise ValueError(f"unknown RFM segment {segment!r}; expected one of {', '.join(ids)}")
    sql, params, _ = _scores_sql(c)
    cond, named = named_scope(principal, "d", "s")
    extra = ""
    if segment is not None:
        extra, named["seg"] = " AND d.segment = $seg", segment
    core = (
        "SELECT customer_id, customer_type, segment, rfm, r_score, f_score, m_score, recency_days, "
        f"frequency, monetary FROM ({sql}) AS d WHERE ({cond}){extra}"
    )
    return customer_list(principal, c, "value_rfm_list", segment or "all", core, {**params, **named},
                         order="c.monetary DESC", limit=limit, app_url=app_url,
                         detail={"segment": segment})  # fmt: skip
