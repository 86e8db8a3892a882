"""``cim report``: the published folder, versions, reproducibility, bad parameters, the lock, failed cells,
timeouts, the data-quality gate, bursting and notification — real Papermill runs on the report bank.

The report bank (13 months, churn scored) is copied per test module where a test changes parameters or
notebooks, so the shared fixture stays as built.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import Bank, run_cim

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
COUNTY = "county:101000"
OTHER_COUNTY_CODE = re.compile(r"\b1(0[2-9]|10)\d{3}\b")  # any org code of counties 102..110
CJK_TITLE = "月度经营管理报告"


def cim(home: Path, *args: str, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIM_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "cimlib.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(home),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cim {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a bank (its data, outputs and, when given, parameters)."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("raw", "spill", "reports"))
    return dst


def scope_dir(home: Path, report: str, scope: str) -> Path:
    return home / "outputs" / "reports" / report / PERIOD / scope.replace(":", "-")


@pytest.fixture(scope="module")
def county_run(report_bank: Bank) -> dict[str, Any]:
    """The county edition of the pack for county 101000 in Chinese, published once."""
    t0 = time.perf_counter()
    proc = cim(
        report_bank.home,
        "report",
        "monthly_pack",
        "--period",
        PERIOD,
        "--scope",
        COUNTY,
        "--locale",
        "zh_CN",
        "--json",
        check=True,
    )
    return {"out": json.loads(proc.stdout), "seconds": time.perf_counter() - t0, "stderr": proc.stderr}


def _published(out: dict[str, Any]) -> Path:
    [r] = out["results"]
    assert r["status"] in ("published", "unchanged"), r
    return Path(r["folder"])


def test_county_report_publishes_every_file_with_a_manifest(
    county_run: dict[str, Any], report_bank: Bank
) -> None:
    folder = _published(county_run["out"])
    assert folder.parent == scope_dir(report_bank.home, "monthly_pack", COUNTY)
    assert re.fullmatch(r"v\d+", folder.name)
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    current = json.loads((report_bank.home / "data" / "warehouse" / "CURRENT").read_text())
    assert m["snapshot_id"] == current["snapshot_id"]
    assert (m["report"], m["period"], m["scope"], m["locale"]) == ("monthly_pack", PERIOD, COUNTY, "zh_CN")
    assert m["audience"] == {"role": "county_manager", "org_code": "101000"}
    assert len(m["params_hash"]) == 16 and m["code_version"]["cimlib"]
    for name in ("monthly_pack.ipynb", "monthly_pack.html", "monthly_pack.pdf", "figures.json"):
        assert name in m["files"], name
    assert any(f.startswith("attachments/") and f.endswith(".xlsx") for f in m["files"])
    from cimlib.reports._runner import sha256_file

    for rel, info in m["files"].items():  # every checksum holds
        assert sha256_file(folder / rel) == info["sha256"], rel
        assert (folder / rel).stat().st_size == info["bytes"]
    assert m["figures_sha256"] == m["files"]["figures.json"]["sha256"]
    t = m["timings"]
    assert t["total"] > 0 and t["execute"] > 0 and t["cells"] and "pdf" in t and "html" in t
    assert not list(folder.parent.glob(".staging-*")), "the staging folder is renamed, never left behind"


def test_county_html_has_no_code_and_no_external_urls(county_run: dict[str, Any]) -> None:
    html = (_published(county_run["out"]) / "monthly_pack.html").read_text(encoding="utf-8")
    assert CJK_TITLE in html
    assert "from cimlib import" not in html and "R.MonthlyPack" not in html, "code cells must not show"
    for pat in (
        r"<script[^>]+src=",
        r"<link[^>]+href=[\"']?(https?:)?//",
        r"@import",
        r"url\((['\"]?)(https?:)?//",
    ):
        assert not re.search(pat, html, re.I), pat
    assert "<svg" in html, "charts are inline SVG"
    assert not OTHER_COUNTY_CODE.search(re.sub(r"<svg.*?</svg>", "", html, flags=re.S)), (
        "another county's code"
    )


def test_county_pdf_renders_the_chinese_title(county_run: dict[str, Any]) -> None:
    pdf = _published(county_run["out"]) / "monthly_pack.pdf"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert CJK_TITLE in text
    assert "101000" in text


def test_rerun_on_the_same_snapshot_is_unchanged_and_force_reproduces_the_figures(
    county_run: dict[str, Any], report_bank: Bank
) -> None:
    first = _published(county_run["out"])
    again = json.loads(
        cim(
            report_bank.home,
            "report",
            "monthly_pack",
            "--period",
            PERIOD,
            "--scope",
            COUNTY,
            "--locale",
            "zh_CN",
            "--json",
            check=True,
        ).stdout
    )
    assert again["results"][0]["status"] == "unchanged" and Path(again["results"][0]["folder"]) == first
    forced = json.loads(
        cim(
            report_bank.home,
            "report",
            "monthly_pack",
            "--period",
            PERIOD,
            "--scope",
            COUNTY,
            "--locale",
            "zh_CN",
            "--force",
            "--no-pdf",
            "--json",
            check=True,
        ).stdout
    )
    second = _published(forced)
    assert second != first and second.parent == first.parent
    assert int(second.name[1:]) == int(first.name[1:]) + 1, "a new version, never an overwrite"
    assert (first / "figures.json").read_bytes() == (second / "figures.json").read_bytes()
    assert (first / "manifest.json").exists(), "the earlier version is kept"


def test_unknown_or_ill_typed_parameter_fails_before_any_kernel(report_bank: Bank) -> None:
    for bad, says in (
        (["-p", "topn=5"], "unknown parameter 'topn'"),
        (["-p", "top_n=lots"], "top_n"),
        (["--scope", "county:999999"], "999999"),
        (["--period", "2031-01"], "2031-01"),
        (["-p", "out_dir=/tmp/x"], "set by the runner"),
    ):
        before = _kernel_starts(report_bank.home)
        proc = cim(report_bank.home, "report", "monthly_pack", "--scope", COUNTY, *bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert says in proc.stderr, (bad, proc.stderr)
        assert _kernel_starts(report_bank.home) == before, "no report started, so no kernel ran"
    assert cim(report_bank.home, "report", "no_such_report").returncode == 2


def _kernel_starts(home: Path) -> int:
    """Reports started so far, by the structured log (each start runs a notebook on a kernel)."""
    logs = (home / "outputs" / "reports" / "_logs").glob("*.jsonl")
    return sum(line.count('"event": "start"') for f in logs for line in f.read_text().splitlines())


def test_dry_run_checks_and_lists_without_running(report_bank: Bank) -> None:
    proc = cim(
        report_bank.home,
        "report",
        "monthly_pack",
        "--period",
        PERIOD,
        "--burst",
        "county",
        "--dry-run",
        "--json",
        check=True,
    )
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] and len(plan["jobs"]) == 10
    assert {c["name"] for c in plan["gate"]["checks"]} == {"gl_tieout", "contracts", "quarantine"}
    assert not scope_dir(report_bank.home, "monthly_pack", "county:110000").exists()


def test_lock_stops_a_second_run_of_the_same_report_and_period(report_bank: Bank) -> None:
    code = (
        "import sys, time; from cimlib.reports._runner import report_lock\n"
        f"with report_lock(None, 'monthly_pack-{PERIOD}'):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CIM_HOME": str(report_bank.home)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = cim(report_bank.home, "report", "monthly_pack", "--period", PERIOD, "--scope", COUNTY)
        assert proc.returncode == 75, proc.stderr
        assert "another run holds the lock" in proc.stderr and f"pid {holder.pid}" in proc.stderr
        other = cim(report_bank.home, "report", "data_quality", "--period", PERIOD, "--dry-run")
        assert other.returncode == 0, "another report is not blocked"
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- failures in a private home
@pytest.fixture(scope="module")
def broken_home(report_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the report bank whose monthly pack raises in its churn cell, with a 10 s cell timeout, and a
    data_quality notebook that sleeps past it."""
    home = copy_home(report_bank.home, tmp_path_factory.mktemp("broken") / "home")
    shutil.copytree(ROOT / "parameters", home / "parameters")
    shutil.copytree(ROOT / "notebooks" / "reports", home / "notebooks" / "reports")
    pack = home / "notebooks" / "reports" / "monthly_pack.ipynb"
    nb = nbformat.read(pack, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and ".churn()" in c.source)
    nb.cells[i].source = "raise RuntimeError('planted failure in the churn section')\n" + nb.cells[i].source
    nbformat.write(nb, pack)
    dq = home / "notebooks" / "reports" / "data_quality.ipynb"
    nb = nbformat.read(dq, as_version=4)
    j = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and ".loads()" in c.source)
    nb.cells[j].source = "import time; time.sleep(120)\n" + nb.cells[j].source
    nbformat.write(nb, dq)
    settings = home / "parameters" / "reports" / "settings.yaml"
    settings.write_text(settings.read_text().replace("cell_seconds: 900", "cell_seconds: 10"))
    return home


def test_a_failed_cell_names_the_cell_and_keeps_the_partial_notebook(broken_home: Path) -> None:
    proc = cim(broken_home, "report", "monthly_pack", "--period", PERIOD, "--scope", COUNTY, "--no-pdf")
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: planted failure in the churn section" in proc.stdout + proc.stderr
    assert re.search(r"cell \d+ \(raise RuntimeError", proc.stdout + proc.stderr)
    d = scope_dir(broken_home, "monthly_pack", COUNTY)
    assert not list(d.glob("v*")), "nothing is published"
    [failed] = list((d / "failed").iterdir())
    err = json.loads((failed / "error.json").read_text())
    assert err["ename"] == "RuntimeError" and "planted failure" in err["evalue"]
    nb = nbformat.read(failed / "monthly_pack.ipynb", as_version=4)
    assert nb.cells[err["cell_index"]].outputs[-1]["output_type"] == "error"
    earlier = [c for c in nb.cells[: err["cell_index"]] if c.cell_type == "code" and c.outputs]
    assert earlier, "the cells before the failure kept their outputs for debugging"


def test_a_hung_cell_times_out_with_a_clear_failure(broken_home: Path) -> None:
    t0 = time.perf_counter()
    proc = cim(broken_home, "report", "data_quality", "--period", PERIOD, "--no-pdf")
    assert proc.returncode == 1, proc.stderr
    assert time.perf_counter() - t0 < 90
    assert "Timeout" in proc.stdout + proc.stderr or "timed out" in (proc.stdout + proc.stderr).lower()
    [failed] = list((scope_dir(broken_home, "data_quality", "province") / "failed").iterdir())
    err = json.loads((failed / "error.json").read_text())
    assert (
        "cell_index" in err
        and "time.sleep(120)"
        in nbformat.read(failed / "data_quality.ipynb", as_version=4).cells[err["cell_index"]].source
    )


# -------------------------------------------------------------------------------------- data-quality gate
PLANT = 12345.67


@pytest.fixture(scope="module")
def planted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 13-month bank whose last GL extract is off by PLANT on one branch: the gate must fail."""
    home = tmp_path_factory.mktemp("dq_planted")
    raw = home / "data" / "raw"
    run_cim(
        "synth",
        "--customers",
        "600",
        "--months",
        "13",
        "--seed",
        "11",
        "--out",
        str(raw),
        "--json",
        home=home,
    )
    last = sorted(p for p in raw.iterdir() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name))[-1]
    path = last / "CORE_gl_balance.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    target = next(r for r in rows if float(r["balance"]) > 100000)
    target["balance"] = f"{float(target['balance']) + PLANT:.2f}"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run_cim("ingest", str(raw), "--json", home=home)
    run_cim("build", "--json", home=home)
    return home


def test_the_gate_blocks_publishing_on_a_broken_fixture(planted_home: Path) -> None:
    proc = cim(planted_home, "report", "monthly_pack", "--period", PERIOD, "--scope", "province", "--no-pdf")
    assert proc.returncode == 3, proc.stderr
    assert "data-quality gate failed" in proc.stderr and "gl_tieout" in proc.stderr
    assert not scope_dir(planted_home, "monthly_pack", "province").exists()


def test_allow_dq_failures_publishes_and_says_so_on_the_first_page(planted_home: Path) -> None:
    out = json.loads(
        cim(
            planted_home,
            "report",
            "monthly_pack",
            "--period",
            PERIOD,
            "--scope",
            "province",
            "--locale",
            "en",
            "--allow-dq-failures",
            "--no-pdf",
            "--json",
            check=True,
        ).stdout
    )
    folder = _published(out)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["dq"]["allowed"] is True and any(f.startswith("gl_tieout") for f in m["dq"]["failures"])
    html = (folder / "monthly_pack.html").read_text(encoding="utf-8")
    body = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    first_page = body[: len(body) // 4]
    assert "data-quality" in first_page.lower() and "gl_tieout" in first_page


def test_data_quality_report_runs_despite_the_gate_and_shows_the_difference(planted_home: Path) -> None:
    out = json.loads(
        cim(
            planted_home,
            "report",
            "data_quality",
            "--period",
            PERIOD,
            "--locale",
            "en",
            "--no-pdf",
            "--json",
            check=True,
        ).stdout
    )
    html = (_published(out) / "data_quality.html").read_text(encoding="utf-8")
    assert "12,345.67" in html


# -------------------------------------------------------------------------------------------- bursting
@pytest.fixture(scope="module")
def burst_run(report_bank: Bank) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = cim(
        report_bank.home,
        "report",
        "monthly_pack",
        "--period",
        PERIOD,
        "--burst",
        "county",
        "--locale",
        "en",
        "--workers",
        "2",
        "--no-pdf",
        "--json",
        check=True,
    )
    return {"out": json.loads(proc.stdout), "seconds": time.perf_counter() - t0}


def test_burst_gives_one_folder_per_county_with_its_own_figures_only(
    burst_run: dict[str, Any], report_bank: Bank
) -> None:
    out = burst_run["out"]
    assert out["workers"] == 2 and out["failed"] == 0 and len(out["results"]) == 10
    codes = [f"{c}000" for c in range(101, 111)]
    for code, r in zip(codes, out["results"], strict=True):
        assert r["scope"] == f"county:{code}"
        folder = Path(r["folder"])
        assert folder.parent == scope_dir(report_bank.home, "monthly_pack", f"county:{code}")
        m = json.loads((folder / "manifest.json").read_text())
        assert m["audience"]["org_code"] == code and m["scope"] == f"county:{code}"
        figures = (folder / "figures.json").read_text(encoding="utf-8")
        others = {c for c in codes if c != code}
        seen = set(re.findall(r"\b1\d{2}000\b", figures)) | {
            b[:3] + "000" for b in re.findall(r"\b1\d{2}0\d{2}\b", figures)
        }
        assert code in seen and not (seen & others), (code, seen & others)
    print(f"burst of 10 counties on 2 workers: {burst_run['seconds']:.1f} s")


def test_index_lists_every_published_report(burst_run: dict[str, Any], report_bank: Bank) -> None:
    index = report_bank.home / "outputs" / "reports" / "index.html"
    html = index.read_text(encoding="utf-8")
    for r in burst_run["out"]["results"]:
        rel = Path(r["folder"]).relative_to(index.parent).as_posix()
        assert f"{rel}/monthly_pack.html" in html, rel
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)


def test_structured_logs_record_each_report(burst_run: dict[str, Any], report_bank: Bank) -> None:
    logs = list((report_bank.home / "outputs" / "reports" / "_logs").glob("*.jsonl"))
    events = [json.loads(line) for f in logs for line in f.read_text().splitlines() if line.strip()]
    published = {
        e["scope"] for e in events if e.get("event") == "published" and e.get("report") == "monthly_pack"
    }
    assert {f"county:{c}000" for c in range(101, 111)} <= published
    assert all({"ts", "level", "run_id", "msg"} <= set(e) for e in events)
