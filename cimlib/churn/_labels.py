"""Churn labels: who left, by each definition of ``parameters/churn.yaml``, per customer and scoring month.

A label belongs to a customer and a scoring month S. Eligibility is decided on S and the months before it;
the label on the ``outcome_months`` months after S. A customer without a row in a month of the outcome
window (it can happen once everything is closed) holds nothing that month. Scoring months whose outcome
window runs past the warehouse's last month get no label: the outcome is unknown, not "stayed".

Months are counted by a month index (``year * 12 + month``) so a gap in a customer's rows never shifts a
window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cimlib.churn._params import (
    PRODUCT_LINES,
    HardChurn,
    Inactivity,
    ProductAttrition,
    ValueChurn,
)

AnyDefinition = HardChurn | ProductAttrition | ValueChurn | Inactivity

#: Month index of a DATE column or literal, so windows count calendar months.
MI = "(year({d}) * 12 + month({d}))"


def month_index(day: dt.date) -> int:
    """The month index (``year * 12 + month``) of a date."""
    return day.year * 12 + day.month


def labelled_months(months: Sequence[dt.date], definition: AnyDefinition) -> list[dt.date]:
    """The scoring months of ``months`` whose whole outcome window is in the warehouse.

    Parameters
    ----------
    months : sequence of date
        The warehouse's month-ends, ascending.
    definition : a churn definition
        Gives ``outcome_months``.

    Returns
    -------
    list of date
        Those months S with S + outcome_months <= the last month.
    """
    if not months:
        return []
    last = month_index(max(months))
    return [m for m in months if month_index(m) + definition.outcome_months <= last]


def _held(line: str, alias: str) -> str:
    expr = PRODUCT_LINES[line]
    for col in ("demand_balance", "demand_adb", "time_balance", "wealth_aum", "n_active_loans",
                "n_debit_cards", "n_credit_cards"):
        expr = expr.replace(col, f"coalesce({alias}.{col}, 0)")
    return f"({expr})"


def label_sql(definition: AnyDefinition) -> str:
    """SQL for one definition's labels over ``mart_customer_month``.

    Parameters
    ----------
    definition : a churn definition

    Returns
    -------
    str
        A query with the named parameter ``$months`` (DATE[]: the scoring months, each with a whole outcome
        window in the warehouse) giving one row per eligible customer and scoring month:
        ``customer_id, as_of_date, churned`` (BOOLEAN) and ``detail`` (VARCHAR: the product lines lost,
        the baseline and end values, or NULL).
    """
    h = definition.outcome_months
    mi_s = MI.format(d="s.as_of_date")
    mi_f = MI.format(d="f.as_of_date")
    if isinstance(definition, HardChurn):
        return f"""
WITH s AS (
    SELECT customer_id, as_of_date FROM mart_customer_month
    WHERE as_of_date IN (SELECT unnest($months)) AND n_products > 0
)
SELECT s.customer_id, s.as_of_date,
    count(f.customer_id) FILTER (WHERE f.n_products > 0) < {h} AS churned,
    CAST(NULL AS VARCHAR) AS detail
FROM s
LEFT JOIN mart_customer_month AS f
    ON f.customer_id = s.customer_id AND {mi_f} BETWEEN {mi_s} + 1 AND {mi_s} + {h}
GROUP BY ALL
"""
    if isinstance(definition, ProductAttrition):
        lines = definition.products
        held_s = " OR ".join(_held(p, "s") for p in lines)
        lost = ", ".join(
            f"CASE WHEN {_held(p, 's')} AND NOT {_held(p, 'e')} THEN '{p}' END" for p in lines
        )
        return f"""
WITH s AS (
    SELECT * FROM mart_customer_month AS s
    WHERE as_of_date IN (SELECT unnest($months)) AND ({held_s})
),
l AS (
    SELECT s.customer_id, s.as_of_date, list_filter([{lost}], lambda x: x IS NOT NULL) AS lost
    FROM s
    LEFT JOIN mart_customer_month AS e
        ON e.customer_id = s.customer_id
        AND e.as_of_date = last_day(s.as_of_date + INTERVAL {h} MONTH)
)
SELECT customer_id, as_of_date, len(lost) > 0 AS churned,
    CASE WHEN len(lost) > 0 THEN array_to_string(lost, ',') END AS detail
FROM l
"""
    if isinstance(definition, ValueChurn):
        col, b = definition.measure, definition.baseline_months
        keep = 1 - definition.drop
        return f"""
WITH s AS (
    SELECT s.customer_id, s.as_of_date, avg(p.{col}) AS baseline
    FROM mart_customer_month AS s
    JOIN mart_customer_month AS p
        ON p.customer_id = s.customer_id
        AND {MI.format(d="p.as_of_date")} BETWEEN {mi_s} - {b - 1} AND {mi_s}
    WHERE s.as_of_date IN (SELECT unnest($months))
    GROUP BY ALL
    HAVING avg(p.{col}) >= {float(definition.min_baseline)!r}
),
l AS (
    SELECT s.customer_id, s.as_of_date, s.baseline, coalesce(e.{col}, 0) AS end_value
    FROM s
    LEFT JOIN mart_customer_month AS e
        ON e.customer_id = s.customer_id
        AND e.as_of_date = last_day(s.as_of_date + INTERVAL {h} MONTH)
)
SELECT customer_id, as_of_date, end_value <= {keep!r} * baseline AS churned,
    printf('{col} %.0f -> %.0f', CAST(baseline AS DOUBLE), CAST(end_value AS DOUBLE)) AS detail
FROM l
"""
    if isinstance(definition, Inactivity):
        n = definition.inactive_months
        return f"""
WITH s AS (
    SELECT s.customer_id, s.as_of_date
    FROM mart_customer_month AS s
    JOIN mart_customer_month AS p
        ON p.customer_id = s.customer_id
        AND {MI.format(d="p.as_of_date")} BETWEEN {mi_s} - {n - 1} AND {mi_s}
    WHERE s.as_of_date IN (SELECT unnest($months))
    GROUP BY ALL
    HAVING sum(p.customer_txn_count) > 0
)
SELECT s.customer_id, s.as_of_date,
    coalesce(sum(f.customer_txn_count), 0) = 0 AS churned,
    CAST(NULL AS VARCHAR) AS detail
FROM s
LEFT JOIN mart_customer_month AS f
    ON f.customer_id = s.customer_id AND {mi_f} BETWEEN {mi_s} + {h - n + 1} AND {mi_s} + {h}
GROUP BY ALL
"""
    raise TypeError(f"unknown churn definition {definition!r}")  # pragma: no cover


def labels_frame(con: object, definition: AnyDefinition, months: Sequence[dt.date]) -> pd.DataFrame:
    """Run :func:`label_sql` on a DuckDB connection for the given scoring months.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection to a warehouse snapshot (or any database with ``mart_customer_month``).
    definition : a churn definition
    months : sequence of date
        Scoring months; each must have its whole outcome window in the data (see :func:`labelled_months`).

    Returns
    -------
    pandas.DataFrame
        ``customer_id, as_of_date, churned, detail`` sorted by month and customer.
    """
    if not months:
        return pd.DataFrame({"customer_id": [], "as_of_date": [], "churned": [], "detail": []})
    sql = f"SELECT * FROM ({label_sql(definition)}) ORDER BY as_of_date, customer_id"
    df = con.sql(sql, params={"months": list(months)}).df()  # type: ignore[attr-defined]
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date
    df["churned"] = df["churned"].astype(bool)
    return df


def label_counts(principal: Any, definition: str | None = None, *, home: Any = None) -> pd.DataFrame:
    """Eligible customers and churners per labelled scoring month, for one definition or all side by side.

    Parameters
    ----------
    principal : Principal
        Who asks; counts cover their scope only (aggregates: no single-customer detail needed).
    definition : str, optional
        One definition of ``parameters/churn.yaml``; every definition when None.
    home : Home, path or None
        The installation.

    Returns
    -------
    pandas.DataFrame
        ``definition, as_of, outcome_months, eligible, churned, rate``.

    Raises
    ------
    NotPermitted
        For a role without access to customer data.
    """
    from cimlib.access import NotPermitted, named_scope
    from cimlib.churn._params import load_churn_params
    from cimlib.customer import _data as D

    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    h = D.resolve_home(home)
    params = load_churn_params(h)
    names = [params.definition(definition)[0]] if definition else list(params.definitions)
    snap = D.snapshot(h)
    months = D.as_of_dates(snap)
    cond, named = named_scope(principal, "d", "scope")
    frames = []
    with snap.all_cores() as con:
        for name in names:
            d = params.definitions[name]
            ms = labelled_months(months, d)
            if not ms:
                continue
            sql = f"""
SELECT l.as_of_date AS as_of, count(*) AS eligible, count(*) FILTER (WHERE l.churned) AS churned
FROM ({label_sql(d)}) AS l JOIN dim_customer AS d ON d.customer_id = l.customer_id
WHERE {cond}
GROUP BY ALL ORDER BY 1
"""
            df = con.sql(sql, params={"months": ms, **named}).df()
            df.insert(0, "definition", name)
            df.insert(2, "outcome_months", d.outcome_months)
            frames.append(df)
    cols = ["definition", "as_of", "outcome_months", "eligible", "churned", "rate"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    out["as_of"] = pd.to_datetime(out["as_of"]).dt.date
    out["rate"] = out["churned"] / out["eligible"].where(out["eligible"] > 0)
    return out[cols]
