"""80/20 concentration: all tables of one month, against a plain scan of the same columns.

Usage::

    CIM_HOME=/path/to/bank .venv/bin/python bench/concentration.py [--runs 5] [--json]

The issue's target is all 80/20 tables for one month under 2 s at 1,000,000 customers. "All tables" is
:func:`concentration` with ``by=[None, "org", "customer_type", "product"]`` for the provincial analyst
(the whole bank; ``org`` = the counties): overall, per county, per customer type and per product line.
Figures (medians of ``--runs`` runs after one warm-up, same process, connection and threads):

* ``baseline_scan``: ``SELECT`` of the same mart columns at the month to Arrow (no join, no sort);
* ``tables_no_contribution``: deposits, AUM and loans;
* ``tables_with_contribution``: the four measures, contribution read from the month's value cache
  (``warehouse/value/...``, written by the first call: its cost is bench/value.py's "first cache write");
* ``baseline_contribution``: :func:`contribution_sql` alone to Arrow (what computing contribution costs);
* ``pull_*`` / ``numpy_*``: the split of one run between the DuckDB query and the numpy tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cimlib.value._concentration as K  # noqa: E402
from cimlib.access import principal_for  # noqa: E402
from cimlib.config import get_home  # noqa: E402
from cimlib.customer import _data as D  # noqa: E402
from cimlib.value._contribution import contribution_sql, load_value_params  # noqa: E402

BYS = [None, "org", "customer_type", "product"]


def times_ms(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Wall times of ``fn()`` in ms over ``runs`` runs, after one warm-up."""
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return ts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = get_home(None)
    snap = D.snapshot(home)
    day = D.as_of_dates(snap)[-1]
    who = principal_for("prov_analyst", home)
    cols = "customer_type, deposit_adb, demand_adb, wealth_aum, wmp_value, fund_value, insurance_value, "
    cols += "bond_value, gold_value, loan_adb"
    scan_sql = f"SELECT {cols} FROM mart_customer_month WHERE as_of_date = $as_of"
    csql = contribution_sql(load_value_params(home))
    n = snap.arrow("SELECT count(*) AS n FROM mart_customer_month WHERE as_of_date = $as_of", {"as_of": day})
    out: dict[str, object] = {"home": str(home.root), "as_of": day.isoformat(),
                              "customers": n.column(0)[0].as_py(), "runs": args.runs,
                              "by": [b or "all" for b in BYS]}  # fmt: skip
    no_c = ["deposits", "aum", "loans"]
    with_c = [*no_c, "contribution"]
    med = {}
    med["baseline_scan"] = statistics.median(
        times_ms(lambda: snap.arrow(scan_sql, {"as_of": day}), args.runs)
    )
    med["tables_no_contribution"] = statistics.median(
        times_ms(lambda: K.concentration(who, day, measures=no_c, by=BYS, home=home), args.runs)
    )
    med["baseline_contribution"] = statistics.median(
        times_ms(lambda: snap.arrow(f"SELECT * FROM ({csql})", {"as_of": day}), args.runs)
    )
    med["tables_with_contribution"] = statistics.median(
        times_ms(lambda: K.concentration(who, day, measures=with_c, by=BYS, home=home), args.runs)
    )
    # where one run's time goes: the query, then the numpy tables
    for tag, ms in (("no_contribution", no_c), ("with_contribution", with_c)):
        bys = K._bys(who, BYS)
        t0 = time.perf_counter()
        pull = K._Pull(who, day, ms, bys, snap, home)
        t1 = time.perf_counter()
        for level in bys:
            pop = "holders" if level == "product" else "customers"
            for _m, vals, codes, keys, order in pull.series(ms, level, pop):
                K._stats(K._Sorted(vals, codes, len(keys), order), K.TOP_K, K.TOP_P, K.TARGET, 100.0)
        t2 = time.perf_counter()
        med[f"pull_{tag}"] = (t1 - t0) * 1000
        med[f"numpy_{tag}"] = (t2 - t1) * 1000
    out["ms"] = {k: round(v, 1) for k, v in med.items()}
    out["ratio_no_contribution"] = round(med["tables_no_contribution"] / med["baseline_scan"], 1)
    out["ratio_with_contribution"] = round(
        med["tables_with_contribution"] / (med["baseline_scan"] + med["baseline_contribution"]), 2
    )
    out["target_ms"] = 2000
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['customers']:,} customers, {day}, by {out['by']}, medians of {args.runs} runs (ms):")
        for k, v in out["ms"].items():  # type: ignore[union-attr]
            print(f"  {k:28s} {v:10.1f}")
        print(f"  ratio tables/scan (no contribution):              {out['ratio_no_contribution']}")
        print(f"  ratio tables/(scan + contribution) (with contrib): {out['ratio_with_contribution']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
