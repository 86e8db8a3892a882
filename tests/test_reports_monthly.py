"""``cim run --period``: the monthly job from the new month's extracts to published, mailed reports; a rerun
after a failure skips the finished steps; a rerun after success does nothing twice.

The bank has 12 months loaded; the 13th month's extracts arrive in ``data/raw`` and ``cim run`` takes it from
there. Its parameters are a private copy (one test breaks a rule set, and mail goes to a local SMTP server).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import run_cim

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"


class Inbox:
    """Collects the messages the local SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {"to": list(envelope.rcpt_tos), "data": envelope.content.decode("utf-8", "replace")}
        )
        return "250 OK"


def cim(home: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIM_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "cimlib.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(home),
    )


@pytest.fixture(scope="module")
def smtp() -> Any:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    yield inbox, port
    ctl.stop()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, smtp: Any) -> dict[str, Any]:
    """12 months loaded, the 13th arriving; a broken rule set makes the first run stop at ``params``."""
    inbox, port = smtp
    home = tmp_path_factory.mktemp("monthly")
    allraw = home / "incoming"
    run_cim(
        "synth",
        "--customers",
        "1500",
        "--months",
        "13",
        "--seed",
        "5",
        "--out",
        str(allraw),
        "--json",
        home=home,
    )
    raw = home / "data" / "raw"
    raw.mkdir(parents=True)
    dates = sorted(p for p in allraw.iterdir() if p.name[:2] == "20")
    for d in dates[:-1]:
        d.rename(raw / d.name)
    run_cim("ingest", str(raw), "--json", home=home)
    params = home / "parameters"
    shutil.copytree(ROOT / "parameters", params)
    settings = params / "reports" / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    text = text.replace("  enabled: false", "  enabled: true").replace("    port: 25", f"    port: {port}")
    text = text.replace(
        "  recipients: {}",
        "  recipients:\n    province: [analyst@bank.test]\n    county:101000: [tonglu@bank.test]",
    )
    settings.write_text(text, encoding="utf-8")
    events = params / "targeting" / "events.yaml"
    good = events.read_text(encoding="utf-8")
    events.write_text(good + "\nnot_a_key: 1\n", encoding="utf-8")
    dates[-1].rename(raw / dates[-1].name)  # the new month's extracts arrive

    first = cim(home, "run", "--period", PERIOD, "--no-pdf", "--workers", "2", "--locale", "en")
    state1 = json.loads((home / "data" / "state" / "runs" / f"{PERIOD}.json").read_text())
    snap1 = json.loads((home / "data" / "warehouse" / "CURRENT").read_text())["snapshot_id"]
    events.write_text(good, encoding="utf-8")  # the parameter is fixed
    t0 = time.perf_counter()
    second = cim(home, "run", "--period", PERIOD, "--no-pdf", "--workers", "2", "--locale", "en")
    seconds2 = time.perf_counter() - t0
    state2 = json.loads((home / "data" / "state" / "runs" / f"{PERIOD}.json").read_text())
    snap2 = json.loads((home / "data" / "warehouse" / "CURRENT").read_text())["snapshot_id"]
    n_mail = len(inbox.messages)
    t0 = time.perf_counter()
    third = cim(home, "run", "--period", PERIOD, "--no-pdf", "--locale", "en")
    return {
        "home": home,
        "first": first,
        "second": second,
        "third": third,
        "state1": state1,
        "state2": state2,
        "snap1": snap1,
        "snap2": snap2,
        "seconds2": seconds2,
        "seconds3": time.perf_counter() - t0,
        "mail_after_second": n_mail,
        "inbox": inbox,
    }


def test_first_run_stops_at_the_broken_parameter_with_exit_2(job: dict[str, Any]) -> None:
    p = job["first"]
    assert p.returncode == 2, p.stderr
    assert "events.yaml" in p.stderr and "not_a_key" in p.stderr
    steps = job["state1"]["steps"]
    assert steps["ingest"]["status"] == "done" and steps["build"]["status"] == "done"
    assert steps["params"]["status"] == "failed"
    assert "churn" not in steps and "reports" not in steps
    assert [r["as_of_date"] for r in steps["ingest"]["result"]] == ["2026-10-31"]


def test_rerun_skips_the_finished_steps_and_finishes(job: dict[str, Any]) -> None:
    p = job["second"]
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ingest: done already (skipped)" in p.stderr and "build: done already (skipped)" in p.stderr
    assert job["snap1"] == job["snap2"], "the warehouse was not built again"
    steps = job["state2"]["steps"]
    assert all(steps[s]["status"] == "done" for s in ("params", "churn", "targets", "reports")), steps
    assert steps["build"]["finished"] == job["state1"]["steps"]["build"]["finished"]
    assert steps["churn"]["result"]["fitted"], "no model existed, so the run fitted one"
    assert steps["churn"]["result"]["n_scored"] > 1000
    assert set(steps["targets"]["result"]) >= {"events", "risk"}


def test_the_run_published_every_report(job: dict[str, Any]) -> None:
    out = job["home"] / "outputs" / "reports"
    assert list((out / "data_quality" / PERIOD / "province").glob("v1/manifest.json"))
    assert list((out / "monthly_pack" / PERIOD / "province").glob("v1/manifest.json"))
    counties = sorted(
        p.name for p in (out / "monthly_pack" / PERIOD).iterdir() if p.name.startswith("county-")
    )
    assert counties == [f"county-{c}000" for c in range(101, 111)]
    for c in counties:
        m = json.loads((out / "monthly_pack" / PERIOD / c / "v1" / "manifest.json").read_text())
        assert m["snapshot_id"] == job["snap2"] and m["period"] == PERIOD
    assert (out / "index.html").exists()


def test_a_third_run_does_nothing_twice(job: dict[str, Any]) -> None:
    p = job["third"]
    assert p.returncode == 0, p.stderr
    for step in ("ingest", "build", "params", "churn", "targets", "reports"):
        assert f"{step}: done already (skipped)" in p.stderr
    assert not list((job["home"] / "outputs" / "reports" / "monthly_pack" / PERIOD / "province").glob("v2"))
    assert job["seconds3"] < job["seconds2"] / 2


def test_the_run_mailed_each_audience_its_own_report(job: dict[str, Any]) -> None:
    msgs = job["inbox"].messages[: job["mail_after_second"]]
    to_prov = [m for m in msgs if "analyst@bank.test" in m["to"]]
    to_tonglu = [m for m in msgs if "tonglu@bank.test" in m["to"]]
    assert to_prov and to_tonglu
    for m in to_tonglu:
        assert "101000" in m["data"]
        for other in range(102, 111):
            assert f"{other}000" not in m["data"], other
