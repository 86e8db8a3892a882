"""Model-contract severities: a ``warn`` test records its failing rows without blocking publishing."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest
from build_fixture import D2, make_lake, write_date

from cimlib.engine import _model_contracts as mc
from cimlib.engine import build, connect, current_snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_gl_ties_out_is_a_warning_in_the_package():
    spec = mc.load_model_contract(ROOT / "cimlib/sql/marts/mart_gl_tieout.yml")
    sev = {t["name"]: t.get("severity", "error") for t in spec["tests"]}
    assert sev == {"gl_ties_out": "warn"}


def test_unknown_severity_names_file_and_test(tmp_path):
    p = tmp_path / "m.yml"
    p.write_text("model: m\ntests:\n  - {name: t1, severity: fatal, sql: SELECT 1}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"m\.yml: test 't1': severity 'fatal'"):
        mc.load_model_contract(p)


def test_result_status():
    ok = mc.ContractResult("m", "t", True, 0)
    warn = mc.ContractResult("m", "t", True, 3, ["(1,)"], None, "warn", True)
    fail = mc.ContractResult("m", "t", False, 3, [], None, "error")
    assert [r.status for r in (ok, warn, fail)] == ["pass", "warn", "fail"]
    assert warn.to_dict()["status"] == "warn" and warn.to_dict()["severity"] == "warn"


def test_gl_difference_publishes_with_a_warning(tmp_path, caplog):
    home = make_lake(tmp_path)
    first = build(home)
    assert first["contracts"]["failed"] == 0
    assert not [r for r in first["contracts"]["results"] if r["warned"]]
    write_date(home, D2, gl_delta=Decimal("0.01"))  # GL no longer ties out on D2
    with caplog.at_level(logging.WARNING, logger="cimlib.engine._model_contracts"):
        s = build(home)
    assert current_snapshot(home)["snapshot_id"] == s["snapshot_id"] != first["snapshot_id"]
    assert s["contracts"]["failed"] == 0
    warned = [r for r in s["contracts"]["results"] if r["warned"]]
    assert [(r["model"], r["test"], r["status"], r["failing_rows"]) for r in warned] == [
        ("mart_gl_tieout", "gl_ties_out", "warn", 1)
    ]
    assert warned[0]["sample"], "a sample of the failing rows is recorded"
    assert any("gl_ties_out" in m and "warn" in m for m in caplog.messages)
    assert not list((home.warehouse / "snapshots").glob("*.failed.*"))
    con = connect(home)
    try:
        diff = con.execute("SELECT sum(difference) FROM mart_gl_tieout WHERE difference <> 0").fetchall()
    finally:
        con.close()
    assert diff[0][0] == Decimal("0.01")
