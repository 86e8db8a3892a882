"""Provincial analyses: every analysis for one period and one org, each and all together, against a scan.

Usage::

    CIM_HOME=/path/to/bank .venv/bin/python bench/analysis.py [--runs 3] [--user prov_analyst] [--json]

The issue's targets at 1,000,000 customers: each analysis for one period and one org under 3 s, all of
them together under 20 s. Each analysis is called as the dashboard and the CLI call it (default options,
``groups="dim:aum"`` for the customer groups), for ``--user`` (the provincial analyst: the whole province,
the largest org) at the latest month. Figures are medians of ``--runs`` runs after one warm-up call (which
also writes the month's value cache the first time: ``cold_first_call`` reports it); ``baseline_scan`` is a
scan of the month's deposit, loan and AUM columns of ``mart_customer_month`` to Arrow in the same process,
and ``ratio`` = time / baseline, the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cimlib.analysis as A  # noqa: E402
from cimlib.access import principal_for  # noqa: E402
from cimlib.config import get_home  # noqa: E402
from cimlib.customer import _data as D  # noqa: E402

#: name -> (function, keyword options): the analyses of the five modules, as the dashboard calls them.
ANALYSES: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "macro.overview": (A.overview, {}),
    "macro.trend": (A.overview_trend, {}),
    "macro.gl_balances": (A.gl_balances, {}),
    "macro.gl_structure": (A.gl_structure, {}),
    "macro.gl_tieout": (A.gl_tieout, {}),
    "macro.key_focus": (A.key_focus, {}),
    "groups.value": (A.group_value, {"groups": "dim:aum"}),
    "groups.activity": (A.group_activity, {"groups": "dim:aum"}),
    "groups.channels": (A.group_channels, {"groups": "dim:aum"}),
    "groups.rfm": (A.group_rfm, {"groups": "dim:aum"}),
    "groups.structure": (A.group_structure, {"groups": "dim:aum"}),
    "groups.fund_flow": (A.group_fund_flow, {"groups": "dim:aum"}),
    "groups.risk": (A.group_risk, {"groups": "dim:aum"}),
    "groups.concentration": (A.group_concentration, {"groups": "dim:aum"}),
    "product.lifecycle": (A.product_lifecycle, {}),
    "product.structure": (A.product_structure, {}),
    "product.income": (A.product_income, {}),
    "product.loan_risk": (A.loan_risk, {}),
    "product.five_class": (A.five_class_mix, {}),
    "product.composition": (A.product_composition, {}),
    "product.per_customer": (A.products_per_customer, {}),
    "product.pairs": (A.product_pairs, {}),
    "product.next_product": (A.next_product, {}),
    "channel.volume": (A.channel_volume, {}),
    "channel.trend": (A.channel_trend, {}),
    "channel.migration": (A.channel_migration, {}),
    "channel.card_usage": (A.card_usage, {}),
    "channel.cost": (A.channel_cost, {}),
    "channel.cost_per_customer": (A.channel_cost_per_customer, {}),
    "channel.saving": (A.channel_saving, {}),
    "channel.underused_atm": (A.underused_devices, {}),
    "channel.underused_branch": (A.underused_devices, {"kind": "BRANCH"}),
    "performance.managers": (A.manager_performance, {}),
    "performance.tellers": (A.teller_performance, {}),
    "performance.branches": (A.branch_performance, {}),
    "performance.channel_mix": (A.performance_channel_mix, {}),
    "performance.cross_bank": (A.cross_bank_business, {}),
    "performance.league": (A.league_table, {}),
    "performance.league_trend": (A.league_trend, {}),
}


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--user", default="prov_analyst")
    ap.add_argument("--only", help="comma-separated analysis names (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = get_home(None)
    who = principal_for(args.user, home)
    snap = D.snapshot(home)
    day = D.as_of_dates(snap)[-1]
    n = snap.arrow("SELECT count(*) AS n FROM mart_customer_month WHERE as_of_date = $d", {"d": day})
    scan = ("SELECT customer_id, deposit_balance, deposit_adb, loan_balance, npl_balance, aum "
            "FROM mart_customer_month WHERE as_of_date = $d")  # fmt: skip
    names = args.only.split(",") if args.only else list(ANALYSES)
    cold: dict[str, float] = {}
    for name in names:  # warm-up: the first call of each (value caches, imports, snapshot caches)
        fn, kw = ANALYSES[name]
        cold[name] = _time(lambda fn=fn, kw=kw: fn(who, day, home=home, **kw))
    base, each, totals = [], {name: [] for name in names}, []
    for _ in range(args.runs):
        base.append(_time(lambda: snap.arrow(scan, {"d": day})))
        t_all = 0.0
        for name in names:
            fn, kw = ANALYSES[name]
            t = _time(lambda fn=fn, kw=kw: fn(who, day, home=home, **kw))
            each[name].append(t)
            t_all += t
        totals.append(t_all)
    b = statistics.median(base)
    rows = {name: {"seconds": round(statistics.median(ts), 3), "ratio": round(statistics.median(ts) / b, 1),
                   "cold_first_call": round(cold[name], 3)} for name, ts in each.items()}  # fmt: skip
    out = {
        "home": str(home.root), "as_of": day.isoformat(), "user": args.user, "org": who.org_code,
        "customers_in_month": n.column(0)[0].as_py(), "runs": args.runs,
        "baseline_scan_seconds": round(b, 3),
        "all_together_seconds": round(statistics.median(totals), 2),
        "all_together_ratio": round(statistics.median(totals) / b, 1),
        "slowest": max(rows, key=lambda k: rows[k]["seconds"]),
        "over_3s": sorted(k for k, r in rows.items() if r["seconds"] > 3),
        "analyses": rows,
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"{out['customers_in_month']:,} customers at {out['as_of']} as {args.user}; "
          f"medians of {args.runs} runs; baseline scan {b:.3f} s")  # fmt: skip
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["seconds"]):
        first = r["cold_first_call"]
        print(f"  {name:30s} {r['seconds']:7.3f} s  x{r['ratio']:6.1f}   (first call {first:.2f} s)")
    print(f"all together: {out['all_together_seconds']:.2f} s (x{out['all_together_ratio']}); over 3 s: "
          f"{out['over_3s'] or 'none'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
