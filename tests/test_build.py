"""The warehouse build: golden rows for the customer merge and month facts, contracts, atomic publishing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from build_fixture import D1, D2, ID1, make_lake, write_date

from cimlib.engine import (
    BuildError,
    DuckDBEngine,
    SqlPipeline,
    build,
    connect,
    current_snapshot,
    run_contracts,
    status,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    home = make_lake(tmp_path_factory.mktemp("home"))
    summary = build(home)
    return home, summary


def _rows(home, sql: str) -> list[dict]:
    con = connect(home)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def test_pipeline_order_and_contracts_exist():
    p = SqlPipeline()
    names = p.names
    assert (
        names.index("core_customer_xref") < names.index("dim_customer") < names.index("mart_customer_month")
    )
    assert names.index("mart_customer_month") < names.index("mart_customer_wide")
    assert all(m.contract_path.exists() for m in p.models), [
        m.name for m in p.models if not m.contract_path.exists()
    ]
    assert p.model("stg_transaction").materialized == "view"


def test_build_publishes(built):
    home, summary = built
    assert summary["contracts"]["failed"] == 0
    assert summary["as_of_dates"] == [D1, D2]
    cur = current_snapshot(home)
    assert cur["snapshot_id"] == summary["snapshot_id"]
    assert (home.warehouse / "snapshots" / cur["file"]).exists()
    st = status(home)
    assert st["current"]["snapshot_id"] == summary["snapshot_id"]
    assert st["current"]["row_counts"]["dim_customer"] == 4


def test_customer_merge(built):
    home, _ = built
    xref = {
        (r["src_system"], r["cust_no"]): r["customer_id"]
        for r in _rows(home, "SELECT * FROM core_customer_xref")
    }
    assert xref == {
        ("CORE", "C000000001"): "C000000001",
        ("LOAN", "L000000009"): "C000000001",
        ("CORE", "C000000002"): "C000000002",
        ("LOAN", "L000000008"): "C000000002",
        ("LOAN", "L000000007"): "L000000007",
        ("CORE", "C000000100"): "C000000100",
    }
    dim = {r["customer_id"]: r for r in _rows(home, "SELECT * FROM dim_customer")}
    assert set(dim) == {"C000000001", "C000000002", "L000000007", "C000000100"}
    c1 = dim["C000000001"]
    assert (c1["customer_type"], c1["cust_name"], c1["name_source"]) == ("I", "张三", "CORE")
    assert (c1["phone"], c1["phone_source"]) == ("13800000011", "CORE")  # latest date, CORE
    assert c1["merged_cust_nos"] == ["C000000001", "L000000009"] and c1["n_source_numbers"] == 2
    assert c1["id_no_or_credit_code"] == ID1
    assert str(c1["birthday"]) == "1980-01-15" and c1["sex"] == "M" and c1["age"] == 44
    assert (c1["manager_no"], c1["manager_name"]) == ("E0000002", "钱经理")
    assert (c1["home_org_code"], c1["county_code"], c1["county_name"]) == ("110001", "110000", "甲县农商行")
    c2 = dim["C000000002"]
    assert (c2["phone"], c2["phone_source"], c2["name_source"]) == ("13900000008", "LOAN", "CORE")
    assert (
        str(c2["birthday"]) == "1992-02-20" and c2["sex"] == "F" and c2["age"] == 32
    )  # birthday 02-20 < 02-29
    assert dim["L000000007"]["source_systems"] == ["LOAN"] and dim["L000000007"]["age"] == 48
    corp = dim["C000000100"]
    assert corp["customer_type"] == "C" and corp["birthday"] is None and corp["industry"] == "A"


def test_customer_month_facts(built):
    home, _ = built
    rows = {
        (r["customer_id"], str(r["as_of_date"])): r for r in _rows(home, "SELECT * FROM mart_customer_month")
    }
    assert len(rows) == 8
    c1 = rows[("C000000001", D1)]
    # ADB: 31010.00/31 + 1550000.00/31 = 1000.3226 + 50000 -> 51000.32
    assert c1["deposit_adb"] == Decimal("51000.32")
    assert (c1["deposit_balance"], c1["demand_balance"], c1["time_balance"]) == (
        Decimal("51000.00"),
        Decimal("1000.00"),
        Decimal("50000.00"),
    )
    assert c1["aum"] == Decimal("51000.00") and c1["wealth_aum"] == 0
    # the loan is booked on the LOAN number L000000009 of the same person
    assert (c1["loan_balance"], c1["loan_adb"], c1["worst_five_class"], c1["max_days_past_due"]) == (
        Decimal("20000.00"),
        Decimal("20000.00"),
        "NORMAL",
        0,
    )
    assert (c1["credit_line_amount"], c1["credit_line_used"], c1["credit_line_utilisation"]) == (
        Decimal("50000.00"),
        Decimal("20000.00"),
        Decimal("0.400000"),
    )
    # DP0001, DP0002, LN0001, CD0001
    assert c1["n_products"] == 4 and c1["n_debit_cards"] == 1
    # T1 deposit 500 counter, T2 consume 120 POS, T3 interest 1.25 system (not customer-initiated)
    assert (c1["txn_count"], c1["customer_txn_count"], c1["txn_amount"]) == (3, 2, Decimal("621.25"))
    assert (c1["inflow_amount"], c1["outflow_amount"]) == (Decimal("501.25"), Decimal("120.00"))
    assert (c1["txn_count_counter"], c1["txn_count_pos"], c1["txn_count_system"], c1["txn_count_atm"]) == (
        1,
        1,
        1,
        0,
    )
    c1b = rows[("C000000001", D2)]
    # 36250/29 = 1250 + 1450000/29 = 50000; loan ADB 565500/29 = 19500
    assert (c1b["deposit_adb"], c1b["loan_adb"], c1b["loan_balance"]) == (
        Decimal("51250.00"),
        Decimal("19500.00"),
        Decimal("19000.00"),
    )
    assert (c1b["worst_five_class"], c1b["max_days_past_due"]) == ("SPECIAL_MENTION", 5)
    assert (c1b["txn_count"], c1b["customer_txn_count"], c1b["txn_count_system"]) == (2, 1, 1)
    c2 = rows[("C000000002", D2)]
    assert (c2["deposit_balance"], c2["wealth_aum"], c2["aum"], c2["deposit_adb"]) == (
        Decimal("300.00"),
        Decimal("10100.00"),
        Decimal("10400.00"),
        Decimal("250.00"),
    )
    c3 = rows[("L000000007", D1)]
    assert (c3["deposit_balance"], c3["npl_balance"], c3["worst_five_class"], c3["txn_count"]) == (
        0,
        Decimal("5000.00"),
        "SUBSTANDARD",
        0,
    )
    corp = rows[("C000000100", D2)]
    assert (corp["customer_type"], corp["loan_balance"], corp["customer_txn_count"]) == (
        "C",
        Decimal("300000.00"),
        1,
    )


def test_customer_wide(built):
    home, _ = built
    w = {r["customer_id"]: r for r in _rows(home, "SELECT * FROM mart_customer_wide")}
    assert len(w) == 4
    c2 = w["C000000002"]
    assert str(c2["as_of_date"]) == D2 and c2["n_months"] == 2
    # AUM 10200.50 then 10400.00
    assert c2["aum_avg_3m"] == Decimal("10300.25") and c2["aum_chg_1m"] == Decimal("199.50")
    assert c2["aum_chg_3m"] is None and c2["cust_name"] == "李四"


def test_gl_tieout(built):
    home, _ = built
    rows = _rows(home, "SELECT * FROM mart_gl_tieout ORDER BY ALL")
    assert len(rows) == 12 and all(r["difference"] == 0 for r in rows)
    r = next(r for r in rows if str(r["as_of_date"]) == D1 and r["subject_code"] == "1301")
    assert (r["org_code"], r["gl_balance"], r["customer_balance"], r["n_items"]) == (
        "110002",
        Decimal("25000.00"),
        Decimal("25000.00"),
        2,
    )


def test_contracts_runner_usable_from_tests(built):
    home, summary = built
    eng = DuckDBEngine(home.warehouse / "snapshots" / summary["file"], read_only=True)
    try:
        res = run_contracts(eng, models=["mart_gl_tieout", "dim_customer"])
    finally:
        eng.close()
    assert res and all(r.passed for r in res)
    assert {r.model for r in res} == {"mart_gl_tieout", "dim_customer"}


def test_connect_is_read_only(built):
    home, _ = built
    with pytest.raises(BuildError):
        connect(home, read_only=False)
    con = connect(home)
    with pytest.raises(Exception, match="read-only"):
        con.execute("CREATE TABLE x AS SELECT 1")
    con.close()


def test_failing_contract_blocks_publishing(tmp_path, monkeypatch):
    from cimlib.engine import _model_contracts as mc

    load = mc.load_model_contract

    def as_error(path):  # gl_ties_out is a warning in the package (severity: warn); make it blocking here
        spec = load(path)
        for t in spec.get("tests") or []:
            t["severity"] = "error"
        return spec

    monkeypatch.setattr(mc, "load_model_contract", as_error)
    home = make_lake(tmp_path)
    good = build(home)
    write_date(home, D2, gl_delta=Decimal("0.01"))  # GL no longer ties out on D2
    with pytest.raises(BuildError, match="gl_ties_out"):
        build(home)
    assert current_snapshot(home)["snapshot_id"] == good["snapshot_id"]
    snaps = home.warehouse / "snapshots"
    assert len(list(snaps.glob("*.failed.duckdb"))) == 1
    assert not list(snaps.glob("*.tmp*"))
    con = connect(home)
    assert con.execute("SELECT count(*) FROM mart_gl_tieout WHERE difference <> 0").fetchone()[0] == 0
    con.close()


def test_only_loaded_dates_and_pruning(tmp_path):
    home = make_lake(tmp_path, dates=[D1])
    write_date(home, D2, report=False)  # partitions without a load report are not read
    s = build(home)
    assert s["as_of_dates"] == [D1]
    ids = [s["snapshot_id"]] + [build(home, keep=2)["snapshot_id"] for _ in range(2)]
    files = sorted(p.name for p in (home.warehouse / "snapshots").glob("*.duckdb"))
    assert files == sorted(f"{i}.duckdb" for i in ids[-2:])


_CHILD = """
import logging, sys
sys.path.insert(0, {repo!r})
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from cimlib.config import Home
from pathlib import Path
from cimlib.engine import build
build(Home(root=Path({root!r}), parameters=Path({root!r})))
"""


def test_killed_build_leaves_published_snapshot(tmp_path):
    home = make_lake(tmp_path)
    good = build(home)
    pointer_before = (home.warehouse / "CURRENT").read_bytes()
    env = {**os.environ, "CIM_BUILD_PAUSE_AFTER": "dim_customer", "CIM_BUILD_PAUSE_SECONDS": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), root=str(tmp_path))],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 30
        line = ""
        while time.time() < deadline and "pausing after dim_customer" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert "pausing after dim_customer" in line, "the build did not reach the pause"
        tmp_files = list((home.warehouse / "snapshots").glob("*.duckdb.tmp"))
        assert len(tmp_files) == 1
        # readers open the published snapshot read-only while the build runs
        con = connect(home)
        assert con.execute("SELECT count(*) FROM dim_customer").fetchone()[0] == 4
        con.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert (home.warehouse / "CURRENT").read_bytes() == pointer_before
    assert json.loads(pointer_before)["snapshot_id"] == good["snapshot_id"]
    con = connect(home)
    assert con.execute("SELECT count(*) FROM mart_customer_month").fetchone()[0] == 8
    con.close()
    # the next build cleans the leftovers up and publishes
    again = build(home)
    assert not list((home.warehouse / "snapshots").glob("*.tmp*"))
    assert current_snapshot(home)["snapshot_id"] == again["snapshot_id"] != good["snapshot_id"]


def test_no_loaded_dates(tmp_path):
    home = make_lake(tmp_path, dates=[])
    with pytest.raises(BuildError, match="no loaded"):
        build(home)
    assert current_snapshot(home) is None


def test_memory_limit_spills_and_gives_same_marts(tmp_path, monkeypatch, built):
    home = make_lake(tmp_path)
    monkeypatch.setenv("CIM_BUILD_MEMORY_LIMIT", "256MB")
    build(home)
    assert (home.warehouse / "spill").is_dir()
    sql = "SELECT * FROM mart_customer_month ORDER BY customer_id, as_of_date"
    assert _rows(home, sql) == _rows(built[0], sql)


def _marts(home) -> dict[str, list[dict]]:
    return {
        t: _rows(home, f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("mart_customer_month", "mart_customer_wide", "mart_gl_tieout", "dim_customer")
    }


def test_partials_reused_and_only_reloaded_dates_recomputed(tmp_path, built):
    home = make_lake(tmp_path)
    first = build(home)
    assert first["partials"]["computed"] == [D1, D2] and first["partials"]["reused"] == []
    marts = _marts(home)
    assert marts == _marts(built[0])
    again = build(home)
    assert again["partials"]["reused"] == [D1, D2] and again["partials"]["computed"] == []
    assert _marts(home) == marts
    # a reload of D2 (same rows, new files) recomputes D2 only, with the same result
    write_date(home, D2)
    third = build(home)
    assert third["partials"]["computed"] == [D2] and third["partials"]["reused"] == [D1]
    assert _marts(home) == marts
    folders = sorted(p.name for p in (home.warehouse / "months").iterdir())
    assert len(folders) == 2 and folders[0].startswith(D1) and folders[1].startswith(D2)


def test_reloaded_date_with_new_rows_changes_only_that_month(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    home = make_lake(tmp_path)
    build(home)
    before = {(r["customer_id"], str(r["as_of_date"])): r["txn_amount"]
              for r in _rows(home, "SELECT customer_id, as_of_date, txn_amount FROM mart_customer_month")}
    f = home.lake / "transaction" / f"as_of={D2}" / "data.parquet"
    t = pq.read_table(f)
    t = t.set_column(t.schema.get_field_index("amount"), "amount", pc.multiply(t["amount"], 2))
    f.unlink()
    pq.write_table(t, f)
    s = build(home)
    assert s["partials"]["computed"] == [D2]
    after = {(r["customer_id"], str(r["as_of_date"])): r["txn_amount"]
             for r in _rows(home, "SELECT customer_id, as_of_date, txn_amount FROM mart_customer_month")}
    assert after.keys() == before.keys()
    for key, amount in after.items():
        assert amount == (2 * before[key] if key[1] == D2 else before[key]), key
    assert any(before[k] for k in before if k[1] == D2)


def test_published_snapshot_has_tables_only(built):
    views = _rows(built[0], "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'")
    assert views == []


def test_dim_customer_carries_the_enterprise_group(built):
    sql = "SELECT customer_id, group_code, group_name FROM dim_customer WHERE customer_type = 'C'"
    rows = _rows(built[0], sql)
    assert rows == [{"customer_id": "C000000100", "group_code": "G00000001", "group_name": "甲县农机集团"}]


def _all_tables(home) -> dict[str, list[tuple]]:
    con = connect(home)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}
    finally:
        con.close()


def test_incremental_build_equals_a_full_build(tmp_path):
    home = make_lake(tmp_path / "inc", dates=[D1])
    assert build(home)["mode"] == "full"
    write_date(home, D2)  # the next month's load
    inc = build(home, incremental=True)
    assert inc["mode"] == "incremental" and inc["changed_dates"] == [D2]
    assert inc["partials"]["computed"] == [D2]
    nothing = build(home, incremental=True)
    assert nothing["mode"] == "incremental" and nothing["changed_dates"] == []
    assert build(home)["mode"] == "full"  # the default sorts every table again
    write_date(home, D2)  # a reload
    inc = build(home, incremental=True)
    assert inc["mode"] == "incremental" and inc["changed_dates"] == [D2]
    full_home = make_lake(tmp_path / "full")
    assert build(full_home)["mode"] == "full"
    assert _all_tables(home) == _all_tables(full_home)
    # a reloaded month replaces that month's rows only, and still equals a full build
    write_date(home, D1)
    again = build(home, incremental=True)
    assert again["mode"] == "incremental" and again["changed_dates"] == [D1]
    assert _all_tables(home) == _all_tables(full_home)


def test_incremental_build_falls_back_when_numbers_move(tmp_path, built):
    import duckdb

    home = make_lake(tmp_path)
    first = build(home)
    # a customer number now maps to another customer (as when a merge changes the surviving id):
    # months already built would carry the old id, so the build must start over
    con = duckdb.connect(first["path"])
    con.execute("UPDATE core_cust_no_map SET customer_id = 'SOMEONE_ELSE' WHERE cust_no = 'C000000100'")
    con.close()
    s = build(home, incremental=True)
    assert s["mode"] == "full" and "another customer" in s["fallback"]
    assert _all_tables(home) == _all_tables(built[0])


def test_other_models_mean_a_full_build(tmp_path):
    home = make_lake(tmp_path)
    build(home)
    ptr = home.warehouse / "CURRENT"
    cur = json.loads(ptr.read_text(encoding="utf-8"))
    cur["models_hash"] = "built-by-other-models"
    ptr.write_text(json.dumps(cur), encoding="utf-8")
    assert build(home, incremental=True)["mode"] == "full"
