"""Shared plumbing of the customer services: the snapshot, small per-snapshot caches, frames, as-of dates."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cimlib.access import Snapshot, warehouse
from cimlib.config import Home, get_home

HomeLike = Home | str | os.PathLike[str] | None


class AsOfError(ValueError):
    """The requested as-of month is malformed or not in the warehouse (says nothing about any customer)."""


def resolve_home(home: HomeLike) -> Home:
    """A :class:`Home` from a Home, a path or ``None`` (``$CIM_HOME``)."""
    return home if isinstance(home, Home) else get_home(home)


def snapshot(home: HomeLike) -> Snapshot:
    """The published snapshot of ``home`` (a cached connection, reopened after a publish)."""
    return warehouse(resolve_home(home)).snapshot()


_EMPTY: dict[tuple[str, ...], pd.DataFrame] = {}


def frame(cols: Sequence[str], rows: list[tuple]) -> pd.DataFrame:
    """A pandas frame of a small result (an empty one is copied from a cached template: 20x cheaper)."""
    if rows:
        return pd.DataFrame.from_records(rows, columns=list(cols))
    key = tuple(cols)
    empty = _EMPTY.get(key)
    if empty is None:
        empty = _EMPTY[key] = pd.DataFrame(columns=list(cols))
    return empty.copy()


def as_of_dates(snap: Snapshot) -> list[dt.date]:
    """Every as-of date of the warehouse, ascending (cached per snapshot).

    The build summary lists the dates it built; without one, the months are read from the mart (about
    0.2 s at a million customers, once per snapshot and process).
    """
    dates = snap.cache.get("as_of_dates")
    if dates is None:
        listed = snap.summary.get("as_of_dates")
        try:
            dates = sorted(dt.date.fromisoformat(str(d)) for d in listed) if listed else None
        except ValueError:
            dates = None
        if not dates:
            _, rows = snap.query("SELECT DISTINCT as_of_date FROM mart_customer_month ORDER BY as_of_date")
            dates = [r[0] for r in rows]
        snap.cache["as_of_dates"] = dates
    return list(dates)


def guarantors(snap: Snapshot) -> frozenset[str]:
    """Customers who guarantee a loan in any month (cached per snapshot).

    ``core_guarantee_month`` is clustered by borrower, so finding what one customer guarantees is a full
    scan; this set (one scan per snapshot and process) lets a 360 view skip it for everyone else.
    """
    got = snap.cache.get("guarantors")
    if got is None:
        _, rows = snap.query(
            "SELECT DISTINCT guarantor_customer_id FROM core_guarantee_month "
            "WHERE guarantor_customer_id IS NOT NULL"
        )
        got = snap.cache["guarantors"] = frozenset(r[0] for r in rows)
    return got


def warm_up(home: HomeLike = None) -> dict[str, Any]:
    """Open the snapshot and fill its caches (as-of dates, catalogue, labels, guarantors).

    Call it where a process is prepared before users arrive (a preheated app kernel), so the first view
    costs what every view costs. Returns the snapshot id and the number of months.
    """
    snap = snapshot(home)
    months = as_of_dates(snap)
    products(snap)
    labels(snap)
    npl_classes(snap)
    guarantors(snap)
    return {"snapshot_id": snap.snapshot_id, "months": len(months)}


_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def resolve_as_of(snap: Snapshot, as_of: str | dt.date | None) -> dt.date:
    """The warehouse as-of date of the month ``as_of`` names (``YYYY-MM``, ``YYYY-MM-DD`` or a date).

    ``None`` is the latest month.

    Raises
    ------
    AsOfError
        When ``as_of`` is malformed or its month has no data.
    """
    dates = as_of_dates(snap)
    if not dates:
        raise AsOfError("the warehouse holds no months")
    if as_of is None or as_of == "":
        return dates[-1]
    if isinstance(as_of, dt.date):
        ym = (as_of.year, as_of.month)
    else:
        m = _MONTH.match(str(as_of).strip())
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise AsOfError(f"as-of: expected YYYY-MM or YYYY-MM-DD, got {str(as_of)[:20]!r}")
        ym = (int(m.group(1)), int(m.group(2)))
    for d in dates:
        if (d.year, d.month) == ym:
            return d
    raise AsOfError(
        f"no warehouse data for {ym[0]:04d}-{ym[1]:02d}; available months "
        f"{dates[0]:%Y-%m} .. {dates[-1]:%Y-%m}"
    )


def products(snap: Snapshot) -> dict[str, tuple[str, str, str]]:
    """Product code -> (name, category, subtype), from the latest product catalogue (cached)."""
    got = snap.cache.get("products")
    if got is None:
        _, rows = snap.query("SELECT product_code, product_name, category, subtype FROM core_product")
        got = snap.cache["products"] = {r[0]: (r[1], r[2], r[3]) for r in rows}
    return got


def labels(snap: Snapshot) -> dict[tuple[str, str], tuple[str, str]]:
    """(list_name, code) -> (English, Chinese) label, from ``ref_code`` (cached)."""
    got = snap.cache.get("labels")
    if got is None:
        _, rows = snap.query("SELECT list_name, code, label_en, label_zh FROM ref_code")
        got = snap.cache["labels"] = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    return got


def npl_classes(snap: Snapshot) -> frozenset[str]:
    """Five-tier classes that are non-performing (``ref_five_class.npl``)."""
    got = snap.cache.get("npl")
    if got is None:
        _, rows = snap.query("SELECT code FROM ref_five_class WHERE npl")
        got = snap.cache["npl"] = frozenset(r[0] for r in rows)
    return got


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of frames, dicts, dates, decimals, numpy scalars and NaN."""
    import math
    from decimal import Decimal

    import numpy as np

    if isinstance(value, pd.DataFrame):
        return [json_safe(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bool | int | str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
