"""Shared fixtures: the small seeded synthetic bank, ingested and built once per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
