"""Target search: compile time, single-rule and whole-rule-set times, against a baseline in the same run.

Usage::

    CIM_HOME=/path/to/bank .venv/bin/python bench/targeting.py [--runs 5] [--json]

The bank must be built (``cim build``); the issue's figures are for 1,000,000 customers with at least
13 months (the z-score rules look back 12). Figures, each the median of ``--runs`` warm runs:

* ``compile``: compiling each shipped rule's condition (parse, check, SQL), per rule;
* ``rule``: each shipped rule's query over the whole bank at the latest month (every customer of its
  type, no scope), result to Arrow: what a provincial count or a province-wide list costs;
* ``set``: each rule set, all its rules, as ``run()`` returns it to a user: the query of each customer
  type plus reasons, masking and the audit record. Timed for the biggest county's manager (what a
  county bank runs), for a whole-bank principal with detail (the worst case: lists of 10^5 rows), and
  as ``counts()`` over the whole bank (what the provincial analyst runs);
* ``baseline``: the design's lean rule query, ``SELECT customer_id FROM mart_customer_wide WHERE
  aum >= 500000``, on the same connection and threads. Each time is also given as a ratio to it.

Queries use ``$CIM_QUERY_THREADS`` threads (default: all cores). Audit records go to a scratch
folder, not to the bank's log.
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

from cimlib.access import principal_for  # noqa: E402
from cimlib.config import get_home  # noqa: E402
from cimlib.customer import _data as D  # noqa: E402
from cimlib.targeting import counts, list_rulesets, load_ruleset, run  # noqa: E402
from cimlib.targeting._language import compile_expression  # noqa: E402
from cimlib.targeting._run import build_query, execute  # noqa: E402


def median_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of ``fn()`` in ms over ``runs`` runs, after one warm-up."""
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = get_home()
    scratch = Path(tempfile.mkdtemp(prefix="cim-bench-target-"))
    snap = D.snapshot(home)
    day = D.as_of_dates(snap)[-1]
    n_customers = snap.query("SELECT count(*) FROM mart_customer_wide WHERE as_of_date = ?", [day])[1][0][0]
    months = len(D.as_of_dates(snap))

    # ---- baseline, in the same run and on the same connection
    def baseline() -> None:
        snap.arrow(
            "SELECT customer_id FROM mart_customer_wide WHERE as_of_date = $d AND aum >= 500000", {"d": day}
        )

    base = median_ms(baseline, args.runs)

    # ---- compile
    compile_ms = []
    for name in list_rulesets(home):
        for r in load_ruleset(name, home).rules:
            t0 = time.perf_counter()
            for _ in range(20):
                compile_expression(r.condition, r.customer_type, prefix="r0_")
            compile_ms.append((time.perf_counter() - t0) * 1000 / 20)

    # ---- single rules, whole bank
    rules_out = []
    for name in list_rulesets(home):
        for r in load_ruleset(name, home).rules:
            q = build_query([r], day, wide=True)
            hits = execute(snap, q).num_rows
            ms = median_ms(lambda q=q: execute(snap, q), args.runs)
            rules_out.append({"ruleset": name, "rule": r.id, "hits": hits, "ms": round(ms, 1),
                              "x_baseline": round(ms / base, 1)})  # fmt: skip

    # ---- whole rule sets through run(): a county manager, and the whole bank
    county = snap.query(
        "SELECT county_code, count(*) FROM mart_customer_wide WHERE as_of_date = ? "
        "GROUP BY 1 ORDER BY 2 DESC",
        [day],
    )[1][0]
    cm = principal_for("county_mgr_101", home)
    cm = dataclasses.replace(cm, org_code=county[0], user_id="bench_county")
    whole = dataclasses.replace(cm, scope="all", org_code=None, user_id="bench_all")
    sets_out = []
    import cimlib.access._audit as audit_mod

    real_dir = audit_mod.audit_dir
    audit_mod.audit_dir = lambda h=None: scratch  # type: ignore[assignment]
    try:
        for name in list_rulesets(home):
            rs = load_ruleset(name, home)
            for label, who in (("county", cm), ("whole bank", whole)):
                n = len(run(rs, who, home=home))
                ms = median_ms(lambda rs=rs, who=who: run(rs, who, home=home), args.runs)
                sets_out.append({"ruleset": name, "who": label, "rules": len(rs.rules), "customers": n,
                                 "ms": round(ms, 1), "x_baseline": round(ms / base, 1)})  # fmt: skip
            n = int(counts(rs, whole, home=home)["n_customers"].sum())
            ms = median_ms(lambda rs=rs: counts(rs, whole, home=home), args.runs)
            sets_out.append({"ruleset": name, "who": "bank counts", "rules": len(rs.rules), "customers": n,
                             "ms": round(ms, 1), "x_baseline": round(ms / base, 1)})  # fmt: skip
    finally:
        audit_mod.audit_dir = real_dir

    result = {
        "customers": n_customers,
        "months": months,
        "runs": args.runs,
        "baseline_ms": round(base, 1),
        "compile_ms": {"median": round(statistics.median(compile_ms), 2), "max": round(max(compile_ms), 2)},
        "rule_ms": {
            "median": round(statistics.median(x["ms"] for x in rules_out), 1),
            "max": max(x["ms"] for x in rules_out),
            "over_200ms": [x["rule"] for x in rules_out if x["ms"] >= 200],
        },
        "rules": rules_out,
        "sets": sets_out,
        "county": {"code": county[0], "customers": county[1]},
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"bank: {n_customers:,} customers at {day}, {months} months; median of {args.runs} warm runs")
    print(f"baseline (lean rule on the wide table): {base:.1f} ms")
    print(f"compile a rule: median {result['compile_ms']['median']} ms, max {result['compile_ms']['max']} ms")
    print(f"{'rule set':<14} {'rule':<30} {'hits':>9} {'ms':>8} {'x base':>7}")
    for x in rules_out:
        print(f"{x['ruleset']:<14} {x['rule']:<30} {x['hits']:>9,} {x['ms']:>8.1f} {x['x_baseline']:>7.1f}")
    print(f"{'rule set':<14} {'for':<12} {'rules':>5} {'customers':>10} {'ms':>8} {'x base':>7}")
    for x in sets_out:
        print(f"{x['ruleset']:<14} {x['who']:<12} {x['rules']:>5} {x['customers']:>10,} {x['ms']:>8.1f} "
              f"{x['x_baseline']:>7.1f}")  # fmt: skip
    print(f"county {county[0]}: {county[1]:,} customers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
