"""Customer 360 and search latency, warm, against a baseline measured in the same run.

Usage::

    CIM_HOME=/path/to/bank .venv/bin/python bench/customer360.py [--n 200] [--runs 5] [--json]

The bank must be built (``cim build``). The bench signs in as a county manager of the county with the
most customers, draws ``--n`` random customers of that county, warms up once, then times
``customer_360`` over them ``--runs`` times (shuffled each run) and prints the median over runs of each
run's p50 and p95. The baseline is a bare ``SELECT * FROM dim_customer WHERE customer_id = ?`` on the
same connection over the same customers. Name-prefix ``search`` is timed the same way over prefixes
(surname plus the first given-name character) of those customers, and corporates on their own.

Each figure also gives the median thread CPU time of a call. The reader runs DuckDB on the calling
thread, so that is the call's cost without waiting for a busy machine's cores: wall time on a shared
2-core machine swings with the load, CPU time hardly does. Audit records go to a scratch folder, not to
the bank's own audit log, but they are written (and fsync'ed) as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cimlib.access import Principal, warehouse  # noqa: E402
from cimlib.config import Home, get_home  # noqa: E402
from cimlib.customer import customer_360, search  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``xs`` in ms."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def timed(fn, items: list, runs: int, rng: random.Random) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median over runs of each run's p50/p95 (ms), after one warm-up pass."""
    for it in items:
        fn(it)
    p50s, p95s, cpu50s = [], [], []
    for _ in range(runs):
        order = items[:]
        rng.shuffle(order)
        ts, cpu = [], []
        for it in order:
            t, c = time.perf_counter(), time.thread_time()
            fn(it)
            cpu.append((time.thread_time() - c) * 1000)
            ts.append((time.perf_counter() - t) * 1000)
        p50s.append(pct(ts, 0.5))
        p95s.append(pct(ts, 0.95))
        cpu50s.append(pct(cpu, 0.5))
    return {
        "p50_ms": round(statistics.median(p50s), 2),
        "p95_ms": round(statistics.median(p95s), 2),
        "cpu_p50_ms": round(statistics.median(cpu50s), 2),
    }


def main() -> int:
    """Run the bench; print a table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    real = get_home(args.home)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench360-") as tmp:
        # A scratch home whose warehouse is the bank's (symlink): audit records land in the scratch folder.
        (Path(tmp) / "data").mkdir()
        os.symlink(real.warehouse, Path(tmp) / "data" / "warehouse")
        home = Home(root=Path(tmp), parameters=real.parameters)
        snap = warehouse(home).snapshot()
        _, rows = snap.query(
            "SELECT county_code, count(*) AS n FROM dim_customer GROUP BY 1 ORDER BY n DESC LIMIT 1"
        )
        county, n_county = rows[0]
        _, rows = snap.query("SELECT count(*) FROM dim_customer")
        n_customers = rows[0][0]
        _, rows = snap.query(
            "SELECT customer_id, cust_name, customer_type FROM dim_customer WHERE county_code = ? "
            "ORDER BY hash(customer_id || ?) LIMIT ?",
            [county, str(args.seed), args.n],
        )
        ids = [r[0] for r in rows]
        prefixes = [r[1][:2] for r in rows if r[2] == "I" and r[1] and len(r[1]) >= 2]
        who = Principal(
            user_id="bench", display_name="bench", role="county_manager", org_code=county, scope="county",
            detail=True, unmasked=frozenset({"name"}),
        )  # fmt: skip

        def baseline(cid: str) -> None:
            snap.query("SELECT * FROM dim_customer WHERE customer_id = ?", [cid])

        def view(cid: str) -> None:
            customer_360(who, cid, home=home)

        def find(prefix: str) -> None:
            search(who, prefix, home=home)

        t0 = time.perf_counter()
        customer_360(who, ids[0], home=home)  # the first call of a process fills the per-snapshot caches
        first_ms = round((time.perf_counter() - t0) * 1000, 1)
        t0 = time.perf_counter()
        res = {
            "customers": n_customers,
            "county": county,
            "county_customers": n_county,
            "sample": len(ids),
            "runs": args.runs,
            "first_call_ms": first_ms,
            "baseline_dim_lookup": timed(baseline, ids, args.runs, rng),
            "customer_360": timed(view, ids, args.runs, rng),
            "search_name_prefix": timed(find, prefixes, args.runs, rng),
        }
        _, rows = snap.query(
            "SELECT customer_id FROM dim_customer WHERE county_code = ? AND customer_type = 'C' "
            "ORDER BY hash(customer_id || ?) LIMIT ?",
            [county, str(args.seed), max(args.n // 4, 10)],
        )
        corp = [r[0] for r in rows]
        if corp:
            res["customer_360_corporate"] = timed(view, corp, args.runs, rng)
        res["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"customer 360 bench: {n_customers:,} customers; county {county} ({n_county:,}); "
              f"{len(ids)} customers x {args.runs} runs (medians of per-run quantiles, warm); "
              f"first call of the process {first_ms} ms")  # fmt: skip
        for k in ("baseline_dim_lookup", "customer_360", "customer_360_corporate", "search_name_prefix"):
            if k in res:
                r = res[k]
                ratio = r["p50_ms"] / res["baseline_dim_lookup"]["p50_ms"]
                print(f"  {k:26s} p50 {r['p50_ms']:7.2f} ms   p95 {r['p95_ms']:7.2f} ms   "
                      f"({ratio:4.1f}x baseline p50; CPU p50 {r['cpu_p50_ms']:6.2f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
