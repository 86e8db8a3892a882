"""Benchmark: one month's contribution and tiers (the customer value frame) against a plain scan.

Run with ``CIM_HOME`` pointing at a built bank::

    CIM_HOME=/tmp/t1m .venv/bin/python bench/value.py [--as-of YYYY-MM] [--runs 5]

Prints the median of ``--runs`` runs of each step, with the baseline scan
``SELECT count(*), sum(aum) FROM mart_customer_month WHERE as_of_date = ...`` measured in the same run,
and the ratio of each step to it:

* ``value frame (SQL -> Arrow)``: contribution (FTP) + AUM and contribution tiers + quality + potential
  for the whole bank, computed afresh (what the Parquet cache stores);
* ``customer_value(cache=False)``: the same end to end, to a pandas frame;
* ``customer_value (cached)``: read back from ``warehouse/value/...parquet``;
* ``tier_distribution (cached)`` and ``migration_matrix (cached)``: the aggregates.

The Parquet cache goes to a scratch folder: the bank's warehouse is only read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import cimlib.value._tiers as T
    from cimlib.access import principal_for
    from cimlib.customer import _data as D
    from cimlib.value import customer_value, migration_matrix, tier_distribution
    from cimlib.value._tiers import _compute, value_params, value_table

    scratch = Path(tempfile.mkdtemp(prefix="cim-bench-value-"))
    T.value_path = lambda home, sid, params, d: scratch / sid / params.digest() / f"{d:%Y-%m}.parquet"

    snap = D.snapshot(None)
    day = D.resolve_as_of(snap, args.as_of)
    months = D.as_of_dates(snap)
    prev = months[max(0, months.index(day) - 1)]
    params = value_params(None)
    who = principal_for("prov_analyst")
    _, rows = snap.query("SELECT count(*) FROM mart_customer_month WHERE as_of_date = ?", [day])
    customers = int(rows[0][0])

    def baseline() -> Any:
        with snap.all_cores() as con:
            return con.sql("SELECT count(*), sum(aum) FROM mart_customer_month WHERE as_of_date = $d",
                           params={"d": day}).fetchall()

    baseline()  # warm the file cache once, as every step below also finds it warm
    res: dict[str, float] = {"baseline scan": _median(baseline, args.runs)}
    res["value frame (SQL -> Arrow)"] = _median(lambda: _compute(snap, params, day), args.runs)
    res["customer_value(cache=False)"] = _median(lambda: customer_value(who, day, cache=False), args.runs)
    t0 = time.perf_counter()
    value_table(None, snap, params, day)
    value_table(None, snap, params, prev)
    first_write = time.perf_counter() - t0
    res["customer_value (cached)"] = _median(lambda: customer_value(who, day), args.runs)
    res["tier_distribution (cached)"] = _median(lambda: tier_distribution(who, day), args.runs)
    res["migration_matrix (cached)"] = _median(lambda: migration_matrix(who, prev, day), args.runs)
    base = res["baseline scan"]
    out = {"customers": customers, "as_of": day.isoformat(), "runs": args.runs,
           "first_cache_write_two_months_s": round(first_write, 3),
           "median_s": {k: round(v, 4) for k, v in res.items()},
           "ratio_to_baseline": {k: round(v / base, 1) for k, v in res.items()}}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{customers:,} customers, {day:%Y-%m}, median of {args.runs} runs")
    for k, v in res.items():
        print(f"  {k:32s} {v:8.3f} s   {v / base:7.1f} x baseline")
    print(f"  first cache write (two months)   {first_write:8.3f} s")


if __name__ == "__main__":
    main()
