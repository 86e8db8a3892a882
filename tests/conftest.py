"""Shared fixtures: the small seeded synthetic bank, ingested and built once per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BANK_CUSTOMERS = 3000
BANK_MONTHS = 4
BANK_SEED = 20261031


@dataclass(frozen=True)
class Bank:
    """A synthetic bank that went through synth, ingest and build in its own CIM_HOME."""

    home: Path
    raw: Path
    synth: dict
    ingest: list
    build: dict


def run_cim(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real ``cim`` CLI in a subprocess with CIM_HOME set."""
    env = {**os.environ, "CIM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "cimlib.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cim {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """The shared small synthetic bank (a few thousand customers, seeded)."""
    home = tmp_path_factory.mktemp("bank")
    raw = home / "data" / "raw"
    synth = json.loads(run_cim("synth", "--customers", str(BANK_CUSTOMERS), "--months", str(BANK_MONTHS),
                               "--seed", str(BANK_SEED), "--out", str(raw), "--json", home=home).stdout)
    ingest = json.loads(run_cim("ingest", str(raw), "--json", home=home).stdout)
    build = json.loads(run_cim("build", "--json", home=home).stdout)
    return Bank(home=home, raw=raw, synth=synth, ingest=ingest, build=build)


#: The analysis bank: 13 months, so every comparison of the provincial analyses (previous month, same month
#: last year, start of year) has data; 3,000 customers, seeded.
ANALYSIS_CUSTOMERS = 3000
ANALYSIS_MONTHS = 13
ANALYSIS_SEED = 20261201


@pytest.fixture(scope="session")
def analysis_bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """A 13-month synthetic bank for the provincial analyses (cimlib.analysis)."""
    home = tmp_path_factory.mktemp("analysis_bank")
    raw = home / "data" / "raw"
    size = ("--customers", str(ANALYSIS_CUSTOMERS), "--months", str(ANALYSIS_MONTHS),
            "--seed", str(ANALYSIS_SEED))  # fmt: skip
    synth = json.loads(run_cim("synth", *size, "--out", str(raw), "--json", home=home).stdout)
    ingest = json.loads(run_cim("ingest", str(raw), "--json", home=home).stdout)
    build = json.loads(run_cim("build", "--json", home=home).stdout)
    return Bank(home=home, raw=raw, synth=synth, ingest=ingest, build=build)


#: The churn bank: 12 months (an out-of-time backtest needs history, training months whose outcome windows
#: close before the test months, and test months), 8,000 customers, seeded.
CHURN_CUSTOMERS = 8000
CHURN_MONTHS = 12
CHURN_SEED = 20261129


@pytest.fixture(scope="session")
def churn_bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """A 12-month synthetic bank for the churn model (about 15 s to build)."""
    home = tmp_path_factory.mktemp("churn_bank")
    raw = home / "data" / "raw"
    synth = json.loads(run_cim("synth", "--customers", str(CHURN_CUSTOMERS), "--months", str(CHURN_MONTHS),
                               "--seed", str(CHURN_SEED), "--out", str(raw), "--json", home=home).stdout)
    ingest = json.loads(run_cim("ingest", str(raw), "--json", home=home).stdout)
    build = json.loads(run_cim("build", "--json", home=home).stdout)
    return Bank(home=home, raw=raw, synth=synth, ingest=ingest, build=build)


@pytest.fixture(scope="session")
def churn_backtest(churn_bank: Bank) -> dict:
    """``cim churn backtest`` on the churn bank (the saved production model and its card)."""
    proc = run_cim("churn", "backtest", "--as", "prov_analyst", "--json", home=churn_bank.home)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def churn_scored(churn_bank: Bank, churn_backtest: dict) -> dict:
    """``cim churn score`` of the churn bank's latest month (scores and reasons beside the snapshot)."""
    proc = run_cim("churn", "score", "--as", "prov_analyst", "--json", home=churn_bank.home)
    return json.loads(proc.stdout)


#: The report bank: 13 months (the pack's comparisons need last year's month) with a backtested churn model
#: and the latest month scored, as `cim run` leaves it before the reports; 3,000 customers, seeded.
REPORT_SEED = 20261202


@pytest.fixture(scope="session")
def report_bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """A 13-month bank with churn scores for the periodic reports (cimlib.reports)."""
    home = tmp_path_factory.mktemp("report_bank")
    raw = home / "data" / "raw"
    size = ("--customers", str(ANALYSIS_CUSTOMERS), "--months", str(ANALYSIS_MONTHS),
            "--seed", str(REPORT_SEED))  # fmt: skip
    synth = json.loads(run_cim("synth", *size, "--out", str(raw), "--json", home=home).stdout)
    ingest = json.loads(run_cim("ingest", str(raw), "--json", home=home).stdout)
    build = json.loads(run_cim("build", "--json", home=home).stdout)
    run_cim("churn", "backtest", "--as", "prov_analyst", "--json", home=home)
    run_cim("churn", "score", "--as", "prov_analyst", "--json", home=home)
    return Bank(home=home, raw=raw, synth=synth, ingest=ingest, build=build)


# ---------------------------------------------------------------------------------------------- browsers
#: Demo sign-in passwords of the browser tests (set in a scratch password file per server).
BROWSER_PASSWORDS = {
    "county_mgr_101": "pw-101-Tonglu",
    "county_mgr_102": "pw-102-Chunan",
    "prov_analyst": "pw-prov",
}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; in CI a missing browser fails the browser tests loudly, elsewhere skips them."""
    from cimlib.serve import chromium_path

    path = chromium_path()
    if path is None:
        reason = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def server(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ``cim serve`` on the shared bank, with the demo passwords, for one test module."""
    from cimlib.serve import ServeProcess, set_password

    pw_file = tmp_path_factory.mktemp("serve") / "passwords.json"
    for user, pw in BROWSER_PASSWORDS.items():
        set_password(pw_file, user, pw)
    proc = ServeProcess(
        bank.home,
        ["--pool-size", "2", "--password-file", str(pw_file)],
        log_path=pw_file.parent / "serve.log",
    )
    proc.start(timeout=180)
    try:
        yield proc
    finally:
        proc.stop()
        log_text = proc.log_text()
        # Kernels stopped at shutdown may log zmq tracebacks; none may come from our code.
        ours = [ln for ln in log_text.splitlines() if ln.strip().startswith("File ") and "/cimlib/" in ln]
        assert not ours, "\n".join(ours)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """A headless Chromium driven by Playwright, for one test module."""
    from playwright.sync_api import sync_playwright

    from cimlib.serve import CHROMIUM_FLAGS

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        try:
            yield b
        finally:
            b.close()
