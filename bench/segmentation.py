"""Segmentation cubes: build, pivot/slice and drill-through times, against a plain CUBE baseline.

Usage::

    CIM_HOME=/path/to/bank .venv/bin/python bench/segmentation.py [--runs 5] [--json]

The bank must be built (``cim build``); the issue's targets are for 1,000,000 customers: a 6-dimension
cube built in under 2 s, a pivot or slice p95 under 200 ms, a drill-through under 300 ms. Figures:

* ``baseline``: ``SELECT count(*) ... GROUP BY CUBE`` on 5 plain columns of ``mart_customer_wide`` at the
  latest month, on the same connection and threads (median);
* ``build``: :func:`build_cube` of the default 6 dimensions at the latest month, forced (median);
* ``pivot``: p95 and median of pivots and slices on the built cube, for the provincial analyst (with
  small-cell suppression) and the biggest county's manager, month-on-month change included;
* ``params_diff``: ``cim params diff`` of one dimension (the deposit ADB edge at 50,000 moved to 80,000),
  in-process (median; the target is under 2 s);
* ``drill``: drill-through to a cell's customers (first 500, with the total) for the county manager
  (median).

Cubes and audit records go to a scratch folder: the bank's warehouse is only read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cimlib.segmentation._cube as C  # noqa: E402
from cimlib.access import principal_for  # noqa: E402
from cimlib.config import get_home  # noqa: E402
from cimlib.customer import _data as D  # noqa: E402


def times_ms(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Wall times of ``fn()`` in ms over ``runs`` runs, after one warm-up."""
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return ts


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = get_home()
    scratch = Path(tempfile.mkdtemp(prefix="cim-bench-segment-"))
    C.cube_dir = lambda h, s, v: scratch / "cubes" / s / v  # type: ignore[assignment]
    import cimlib.access._audit as audit_mod

    audit_mod.audit_dir = lambda h=None: scratch / "audit"  # type: ignore[assignment]
    snap = D.snapshot(home)
    day = D.as_of_dates(snap)[-1]
    n = snap.query("SELECT count(*) FROM mart_customer_wide WHERE as_of_date = ?", [day])[1][0][0]

    def baseline() -> None:
        C._arrow(snap, "SELECT customer_type, county_code, home_org_code, worst_five_class, sex, count(*) "
                 "FROM mart_customer_wide WHERE as_of_date = $d GROUP BY CUBE (customer_type, county_code, "
                 "home_org_code, worst_five_class, sex)", {"d": day})  # fmt: skip

    base = statistics.median(times_ms(baseline, args.runs))
    build = statistics.median(times_ms(lambda: C.build_cube(home, day, force=True), args.runs))
    info = C.build_cube(home, day)
    county = snap.query("SELECT county_code FROM mart_customer_wide WHERE as_of_date = ? GROUP BY 1 "
                        "ORDER BY count(*) DESC LIMIT 1", [day])[1][0][0]  # fmt: skip
    prov = principal_for("prov_analyst", home)
    cm = dataclasses.replace(principal_for("county_mgr_101", home), org_code=county, user_id="bench_county")
    calls = [
        lambda: C.pivot(prov, "county", "deposit_adb", home=home),
        lambda: C.pivot(prov, "branch", "aum", measure="aum", home=home),
        lambda: C.pivot(prov, "customer_type", "five_class", measure="npl_ratio", home=home),
        lambda: C.pivot(prov, "deposit_adb", "aum", filters={"customer_type": ["I"]}, home=home),
        lambda: C.pivot(cm, "branch", "deposit_adb", home=home),
        lambda: C.pivot(cm, "aum", "five_class", measure="avg_aum", filters={"customer_type": ["C"]},
                        home=home),
        lambda: C.drill_down(cm, "county", county, "customer_type", home=home),
    ]
    pivot_ms: list[float] = []
    for f in calls:
        pivot_ms += times_ms(f, args.runs)
    drill_ms = times_ms(lambda: C.drill(cm, {"county": county, "deposit_adb": "D2"}, home=home), args.runs)
    cell = C.drill(cm, {"county": county, "deposit_adb": "D2"}, home=home).attrs["total"]
    # `cim params diff` of one dimension: the deposit ADB edge at 50,000 moved to 80,000.
    from cimlib.config import diff_dimensions
    from cimlib.segmentation import dimensions_path

    saved = dimensions_path(home).read_text(encoding="utf-8")
    d1, d2 = "{id: D1, label: {en: 10k-50k, zh: 1-5万}, min: 10000, max: 50000}", "min: 50000, max: 200000}"
    if d1 not in saved:
        raise SystemExit("bench: parameters/dimensions.yaml no longer has the shipped deposit_adb bucket D1")
    proposed = saved.replace(d1, d1.replace("max: 50000", "max: 80000")).replace(
        "{id: D2, label: {en: 50k-200k, zh: 5-20万}, " + d2, "{id: D2, label: {en: 80k-200k, zh: 8-20万}, "
        + d2.replace("50000", "80000")
    )
    diff = diff_dimensions(home, proposed)
    moved = int(diff.loc[diff["moved"], "customers"].sum())
    diff_ms = times_ms(lambda: diff_dimensions(home, proposed), args.runs)
    out = {
        "customers": n, "as_of": day.isoformat(), "cube_rows": info.rows, "dimensions": list(info.dimensions),
        "baseline_cube5_ms": round(base, 1), "build_ms": round(build, 1),
        "build_x_baseline": round(build / base, 1),
        "pivot_p95_ms": round(p95(pivot_ms), 1), "pivot_median_ms": round(statistics.median(pivot_ms), 1),
        "drill_ms": round(statistics.median(drill_ms), 1), "drill_cell_customers": cell,
        "params_diff_ms": round(statistics.median(diff_ms), 1), "params_diff_moved": moved,
        "params_diff_x_baseline": round(statistics.median(diff_ms) / base, 1),
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
