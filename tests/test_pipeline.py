"""End to end through the real CLI: synth -> ingest -> build -> status on the shared synthetic bank."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import BANK_MONTHS, Bank, run_cim

from cimlib.config import get_home
from cimlib.engine import connect

pytestmark = pytest.mark.slow


def test_every_date_loaded_and_accounted(bank: Bank) -> None:
    assert len(bank.ingest) == BANK_MONTHS
    for report in bank.ingest:
        expected = {"transaction", "deposit_account", "individual_customer", "gl_balance"}
        assert set(report["tables"]) >= expected
        for name, t in report["tables"].items():
            assert t["rows_read"] == t["rows_loaded"] + t["rows_quarantined"], (report["as_of_date"], name)
            assert t["rows_read"] > 0, name
        # The generator writes clean extracts: nothing should be quarantined.
        assert sum(t["rows_quarantined"] for t in report["tables"].values()) == 0


def test_status_reports_snapshot_and_loads(bank: Bank) -> None:
    st = json.loads(run_cim("status", "--json", home=bank.home).stdout)
    assert st["current"]["snapshot_id"] == bank.build["snapshot_id"]
    assert len(st["loaded_dates"]) == BANK_MONTHS
    assert st["loaded_dates"] == sorted(st["loaded_dates"])


def test_duplicate_customer_numbers_are_merged(bank: Bank) -> None:
    with (bank.raw / "_answers" / "duplicates.csv").open(encoding="utf-8") as fh:
        dups = list(csv.DictReader(fh))
    assert dups, "the generator plants duplicated customer numbers"
    con = connect(get_home(bank.home))
    try:
        xref = dict(con.execute("SELECT cust_no, customer_id FROM core_customer_xref").fetchall())
        n_dim = con.execute("SELECT count(*), count(DISTINCT customer_id) FROM dim_customer").fetchall()[0]
        merged = dict(con.execute("SELECT customer_id, n_source_numbers FROM dim_customer").fetchall())
    finally:
        con.close()
    assert n_dim[0] == n_dim[1], "one row per real customer"
    for d in dups:
        assert xref[d["core_cust_no"]] == xref[d["other_cust_no"]], d
        assert merged[xref[d["core_cust_no"]]] >= 2


def test_gl_ties_out_on_the_synthetic_bank(bank: Bank) -> None:
    con = connect(get_home(bank.home))
    try:
        rows, bad = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE difference <> 0) FROM mart_gl_tieout"
        ).fetchall()[0]
    finally:
        con.close()
    assert rows > 0 and bad == 0


def test_customer_month_covers_every_month(bank: Bank) -> None:
    con = connect(get_home(bank.home))
    try:
        months = con.execute("SELECT count(DISTINCT as_of_date) FROM mart_customer_month").fetchall()[0][0]
        wide, dim = con.execute(
            "SELECT (SELECT count(*) FROM mart_customer_wide), (SELECT count(*) FROM dim_customer)"
        ).fetchall()[0]
    finally:
        con.close()
    assert months == BANK_MONTHS
    assert 0 < wide <= dim


def test_reingest_same_date_changes_nothing(bank: Bank) -> None:
    first = sorted(bank.raw.glob("20*"))[0]
    lake = get_home(bank.home).lake
    before = {p: p.read_bytes() for p in lake.rglob(f"as_of={first.name}/*.parquet")}
    again = json.loads(run_cim("ingest", str(first), "--json", home=bank.home).stdout)[0]
    after = {p: p.read_bytes() for p in lake.rglob(f"as_of={first.name}/*.parquet")}
    assert before == after
    for name, t in again["tables"].items():
        assert t["rows_read"] == t["rows_loaded"] + t["rows_quarantined"], name


def test_bad_usage_exit_codes(bank: Bank, tmp_path) -> None:
    assert run_cim("ingest", str(tmp_path / "nope"), home=bank.home, check=False).returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cim("ingest", str(empty), home=bank.home, check=False).returncode == 2
