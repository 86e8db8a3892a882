"""Foundation benchmark: synth, ingest, build, peak memory and warehouse size.

Each stage runs as its own ``cim`` process in a fresh CIM_HOME, so peak memory (max RSS of the child) is
per stage. The baseline is a plain DuckDB ``read_csv`` + ``GROUP BY`` per account over the same transaction
files, timed in the same run (before, between and after the builds); build times are reported as ratios
to it. Times are medians of --repeat runs. Three builds are measured:

- cold: a full build with no cached per-date partial results (the first build of an installation);
- monthly: the last date reloaded (a new month's load): an incremental build (``--incremental``) on a
  copy of the previous snapshot that replaces that month's rows of the history tables, rebuilds the rest;
- unchanged: nothing reloaded (incremental, no month replaced);
- full_cached: the default build after a month's load: every table rebuilt and sorted, but only that
  month's partial results computed.

    .venv/bin/python bench/foundation.py --customers 100000 --months 24
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
CIM = [sys.executable, "-m", "cimlib.cli"]


def run_stage(
    args: list[str], home: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """Run one cim command; return (seconds, peak RSS of that process in GiB, stdout)."""
    env = {**os.environ, "CIM_HOME": str(home), "PYTHONPATH": str(ROOT), **(extra_env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*CIM, *args, "--json"], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to read its own rusage
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode != 0:
            sys.stderr.write(err.read().decode(errors="replace"))
            raise SystemExit(f"stage {args[0]} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024 / 1024, text


def baseline(raw: Path) -> tuple[float, int]:
    """Plain DuckDB: read the transaction CSVs and aggregate per account. Returns (seconds, rows)."""
    files = sorted(str(p) for p in raw.glob("*/CORE_transaction.csv"))
    con = duckdb.connect()
    t0 = time.perf_counter()
    rows = con.execute(
        "SELECT count(*), sum(n) FROM (SELECT account_no, count(*) AS n, sum(amount) AS amt "
        "FROM read_csv(?, header=true, columns={'txn_id':'VARCHAR','account_no':'VARCHAR',"
        "'txn_time':'TIMESTAMP','amount':'DECIMAL(18,2)','direction':'VARCHAR','channel':'VARCHAR',"
        "'txn_type':'VARCHAR','counterparty':'VARCHAR','mcc':'VARCHAR'}) GROUP BY account_no)",
        [files],
    ).fetchall()[0]
    seconds = time.perf_counter() - t0
    con.close()
    return seconds, int(rows[1] or 0)


def dir_size(path: Path) -> int:
    """Bytes under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Run the benchmark and print its figures (and JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the baseline and the build (median)")
    ap.add_argument("--workdir", help="keep the CIM_HOME here (default: a temp folder, removed)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="skip synth and ingest: measure the builds on the --workdir as it is")
    a = ap.parse_args()

    home = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="cim-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    raw = home / "data" / "raw"
    fig: dict[str, object] = {"customers": a.customers, "months": a.months, "cores": os.cpu_count()}
    try:
        if not a.reuse:
            s, rss, _ = run_stage(["synth", "--customers", str(a.customers), "--months", str(a.months),
                                   "--seed", str(a.seed), "--out", str(raw), "--clean"], home)
            fig["synth_s"], fig["synth_peak_gib"] = round(s, 1), round(rss, 2)
            fig["extract_gib"] = round(dir_size(raw) / 2**30, 2)

            s, rss, out = run_stage(["ingest", str(raw)], home)
            reports = json.loads(out)
            rows = sum(t["rows_read"] for r in reports for t in r["tables"].values())
            txn_tables = [r["tables"]["transaction"] for r in reports if "transaction" in r["tables"]]
            txn = sum(t["rows_read"] for t in txn_tables)
            txn_s = sum(t.get("seconds", 0) for t in txn_tables)
            fig.update(ingest_s=round(s, 1), ingest_rows=rows, ingest_rows_per_s=round(rows / s),
                       ingest_txn_rows=txn, ingest_peak_gib=round(rss, 2))
            # Validated ingest of the transaction table alone, from the load reports' per-table seconds.
            fig["ingest_txn_rows_per_s"] = round(txn / txn_s) if txn_s else None

        dates = sorted(p.name for p in raw.iterdir() if p.is_dir() and not p.name.startswith("_"))
        months = home / "data" / "warehouse" / "months"

        def builds(label: str, before=None, env=None, extra=()) -> float:
            """Median seconds of --repeat builds (``before`` runs ahead of each, untimed)."""
            runs, peaks = [], []
            for _ in range(a.repeat):
                if before is not None:
                    before()
                s, rss, out = run_stage(["build", *extra], home, env)
                fig.setdefault(f"{label}_modes", []).append(json.loads(out).get("mode"))
                runs.append(s)
                peaks.append(rss)
            med = statistics.median(runs)
            fig[f"{label}_s_runs"] = [round(r, 2) for r in runs]
            fig[f"{label}_s_median"] = round(med, 2)
            fig[f"{label}_peak_gib"] = round(max(peaks), 2)
            return med

        def reload_last() -> None:
            t, _, _ = run_stage(["ingest", str(raw / dates[-1])], home)
            fig.setdefault("reload_one_date_s_runs", []).append(round(t, 2))

        # Interleave baseline and builds so both see the same machine load.
        base = [baseline(raw) for _ in range(a.repeat)]
        cold = builds("build_cold", before=lambda: shutil.rmtree(months, ignore_errors=True))
        base += [baseline(raw) for _ in range(a.repeat)]
        monthly = builds("build_monthly", before=reload_last, extra=["--incremental"])
        rebuild = builds("build_unchanged", extra=["--incremental"])
        full_again = builds("build_full_cached", before=reload_last)  # the default: full, partials cached
        base += [baseline(raw) for _ in range(a.repeat)]
        b = statistics.median(x[0] for x in base)
        fig["baseline_s_runs"] = [round(x[0], 2) for x in base]
        fig["baseline_s_median"] = round(b, 2)
        fig["baseline_rows"] = base[0][1]
        fig["build_cold_to_baseline"] = round(cold / b, 2)
        fig["build_monthly_to_baseline"] = round(monthly / b, 2)
        fig["build_unchanged_to_baseline"] = round(rebuild / b, 2)
        fig["build_full_cached_to_baseline"] = round(full_again / b, 2)
        fig["txn_rows_per_s_cold_build"] = round(base[0][1] / cold)
        snaps = list((home / "data" / "warehouse" / "snapshots").glob("*.duckdb"))
        fig["warehouse_gib"] = round(max(p.stat().st_size for p in snaps) / 2**30, 3) if snaps else None
        fig["partials_gib"] = round(dir_size(months) / 2**30, 3) if months.exists() else None
        fig["lake_gib"] = round(dir_size(home / "data" / "lake") / 2**30, 2)
    finally:
        if not a.workdir:
            shutil.rmtree(home, ignore_errors=True)
    if a.json:
        print(json.dumps(fig, indent=2))
    else:
        for k, v in fig.items():
            print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
