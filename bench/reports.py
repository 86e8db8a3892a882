"""Benchmark the periodic reports: one county pack, the provincial pack, a burst of every county, and the
Papermill overhead per report; optionally the whole monthly job (``cim run``) for one new month.

Figures are medians of ``--runs`` runs, each with a ratio to a baseline measured in the same process:

* **baseline (in-process)**: the same report's sections run in this Python, writing the same attachments
  but without Papermill, HTML or PDF (``cimlib.reports`` classes with a sink), after a warm-up: what the
  analyses and files cost with every cache of the process warm.
* **report**: ``cim report`` end to end (new kernel, Papermill, HTML, PDF, manifest), ``--force`` so every
  run executes; its manifest gives the kernel start, the time in cells, the HTML and the PDF.
* **Papermill overhead** = kernel start (or reset) + (notebook execution - time in cells) + the first
  (imports) cell. In a burst the workers' kernels are reused, so imports are paid once per worker.
* **burst**: ``--burst county`` against the sum of single-county runs divided by the workers.

Usage::

    CIM_HOME=/path/to/1M python bench/reports.py --runs 3
    CIM_HOME=/path/to/1M python bench/reports.py --what burst
    python bench/reports.py --what run --base /tmp/r1m_base_data --new-month /data/raw/2026-10-31 \\
        --home /tmp/r1m --period 2026-10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CIM = [sys.executable, "-m", "cimlib.cli"]


def cim(*args: str, home: str) -> dict[str, Any]:
    env = {**os.environ, "CIM_HOME": home}
    t0 = time.perf_counter()
    proc = subprocess.run([*CIM, *args, "--json"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cim {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    out["_wall"] = wall
    return out


def _imports_cell(cells: list[dict[str, Any]]) -> float:
    """The seconds of the cell that imports cimlib (paid once per kernel)."""
    return next((c["seconds"] for c in cells if "import" in c["source"]), 0.0)


def report_figures(out: dict[str, Any]) -> dict[str, float]:
    [r] = out["results"]
    m = json.loads((Path(r["folder"]) / "manifest.json").read_text(encoding="utf-8"))
    t = m["timings"]
    cells = t.get("cells", [])
    in_cells = sum(c["seconds"] for c in cells)
    first = _imports_cell(cells)
    return {
        "wall": out["_wall"],
        "total": t["total"],
        "kernel": t.get("kernel", 0.0),
        "execute": t["execute"],
        "cells": in_cells,
        "imports_cell": first,
        "html": t.get("html", 0.0),
        "pdf": t.get("pdf", 0.0),
        "overhead": t.get("kernel", 0.0) + (t["execute"] - in_cells) + first,
    }


def in_process(name: str, scope: str, period: str | None, home: str) -> float:
    """The report's sections in this process (no Papermill, no rendering): the baseline."""
    import tempfile

    from cimlib import reports as R

    cls = {"monthly_pack": R.MonthlyPack, "data_quality": R.DataQualityReport}[name]
    params = R.report_params(name, period=period, scope=scope, locale="zh_CN", home=home)
    with tempfile.TemporaryDirectory() as out:  # the same files as a report: lists, tables, figures
        params = params.model_copy(update={"out_dir": out})
        t0 = time.perf_counter()
        rep = cls(params, sink=[], home=home)
        for section in rep.sections():
            getattr(rep, section)()
        return time.perf_counter() - t0


def _period(period: str | None) -> list[str]:
    return ["--period", period] if period else []


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_single(home: str, scope: str, runs: int, period: str | None) -> dict[str, Any]:
    os.environ["CIM_HOME"] = home
    in_process("monthly_pack", scope, period, home)  # warm-up: caches and imports
    base, figs = [], []
    for _ in range(runs):
        base.append(in_process("monthly_pack", scope, period, home))
        args = ["report", "monthly_pack", "--scope", scope, "--force"] + (
            ["--period", period] if period else []
        )
        figs.append(report_figures(cim(*args, home=home)))
    out = {k: med([f[k] for f in figs]) for k in figs[0]}
    out["baseline_in_process"] = med(base)
    out["ratio_to_baseline"] = out["total"] / out["baseline_in_process"]
    return out


def bench_burst(home: str, period: str | None, workers: int | None) -> dict[str, Any]:
    from cimlib.reports._runner import county_scopes

    os.environ["CIM_HOME"] = home
    singles = {}
    for scope in county_scopes(home):
        args = ["report", "monthly_pack", "--scope", scope, "--force"] + (
            ["--period", period] if period else []
        )
        singles[scope] = report_figures(cim(*args, home=home))
    args = ["report", "monthly_pack", "--burst", "county", "--force"] + (
        ["--period", period] if period else []
    )
    if workers:
        args += ["--workers", str(workers)]
    b = cim(*args, home=home)
    n = b["workers"]
    per = []
    for r in b["results"]:
        m = json.loads((Path(r["folder"]) / "manifest.json").read_text(encoding="utf-8"))
        t = m["timings"]
        cells = t.get("cells", [])
        per.append(
            t.get("kernel", 0.0)
            + (t["execute"] - sum(c["seconds"] for c in cells))
            + _imports_cell(cells)
        )
    sum_single = sum(f["total"] for f in singles.values())
    return {
        "counties": len(singles),
        "workers": n,
        "sum_single_total": sum_single,
        "burst_wall": b["_wall"],
        "burst_seconds": b["seconds"],
        "warm_seconds": b["warm_seconds"],
        "bound_1_5x": 1.5 * sum_single / n,
        "ratio_to_sum_over_workers": b["_wall"] / (sum_single / n),
        "overhead_per_report_median": med(per),
        "single_overhead_median": med([f["overhead"] for f in singles.values()]),
    }


def bench_run(home: str, base: str, new_month: str, period: str, extra: list[str]) -> dict[str, Any]:
    """Restore a home holding the months before ``period``, link the new month's extracts, run the job.

    A model fitted in an earlier month may sit in ``home/outputs/models`` (the usual month: score only);
    without one the job fits it first."""
    h = Path(home)
    shutil.rmtree(h / "data", ignore_errors=True)
    shutil.rmtree(h / "outputs" / "reports", ignore_errors=True)  # a fitted model in outputs/models stays
    subprocess.run(["cp", "-a", base, str(h / "data")], check=True)
    raw = h / "data" / "raw"
    link = raw / Path(new_month).name
    if not link.exists():
        link.symlink_to(new_month)
    env = {**os.environ, "CIM_HOME": home}
    t0 = time.perf_counter()
    proc = subprocess.run([*CIM, "run", "--period", period, *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    state = json.loads((h / "data" / "state" / "runs" / f"{period}.json").read_text())
    return {
        "args": extra,
        "exit_code": proc.returncode,
        "wall": wall,
        "steps": {k: v["seconds"] for k, v in state["steps"].items()},
        "stderr_tail": proc.stderr[-1500:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("CIM_HOME"))
    ap.add_argument("--what", default="single", help="single,burst,run (comma-separated)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--period")
    ap.add_argument("--county", default="county:101000")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--base", help="(run) a copy of the home's data/ before the new month")
    ap.add_argument("--new-month", help="(run) the new as-of folder of extracts")
    ap.add_argument("--run-args", default="", help="(run) extra options of cim run, e.g. --incremental")
    a = ap.parse_args()
    if not a.home:
        raise SystemExit("give --home or set CIM_HOME")
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    what = a.what.split(",")
    if "single" in what:
        out["county"] = bench_single(a.home, a.county, a.runs, a.period)
        print(json.dumps({"county": out["county"]}, indent=1), flush=True)
        out["province"] = bench_single(a.home, "province", a.runs, a.period)
        print(json.dumps({"province": out["province"]}, indent=1), flush=True)
    if "burst" in what:
        out["burst"] = bench_burst(a.home, a.period, a.workers)
        print(json.dumps({"burst": out["burst"]}, indent=1), flush=True)
    if "run" in what:
        if not (a.base and a.new_month and a.period):
            raise SystemExit("--what run needs --base, --new-month and --period")
        out["run"] = bench_run(a.home, a.base, a.new_month, a.period, a.run_args.split())
        print(json.dumps({"run": out["run"]}, indent=1), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
