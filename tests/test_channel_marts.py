"""Teller and terminal on transactions, the channel-volume mart and time-weighted manager shares.

Uses the shared small synthetic bank (``bank`` in conftest.py) for the end-to-end checks, the hand-made
extract of ``ingest_fixture`` for old- and new-format ingest, and an in-memory database for a hand-built
manager-assignment case.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from build_fixture import DATES, make_lake
from conftest import Bank
from ingest_fixture import AS_OF, canonical_rows, default_mapping, render_file, write_extract

from cimlib.config import Home, get_home
from cimlib.engine import build, connect
from cimlib.engine._pipeline import SQL_DIR, render
from cimlib.ingest import ingest_date


def _lake(bank: Bank, table: str) -> str:
    files = sorted((get_home(bank.home).lake / table).glob("as_of=*/data.parquet"))
    assert files, table
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "], hive_partitioning = false)"


# ---------------------------------------------------------------------------------------------- ingest
def _ingest_home(tmp_path: Path) -> Home:
    return get_home(tmp_path / "home")


def test_old_format_extract_loads_null(tmp_path: Path) -> None:
    """An extract without teller_no / terminal_id (the older format) loads, with both columns NULL."""
    home = _ingest_home(tmp_path)
    folder = write_extract(tmp_path / "raw", home)
    header = (folder / "CORE_transaction.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "teller_no" not in header and "terminal_id" not in header
    report = ingest_date(folder, home)
    tr = report["tables"]["transaction"]
    assert tr["rows_read"] == tr["rows_loaded"] > 0 and tr["rows_quarantined"] == 0
    p = home.lake / "transaction" / f"as_of={AS_OF}" / "data.parquet"
    row = duckdb.connect().execute(
        f"SELECT count(*), count(teller_no), count(terminal_id) FROM read_parquet('{p}')"
    ).fetchone()
    assert row == (tr["rows_loaded"], 0, 0)


def _with_devices(home: Home, folder: Path, values: dict[str, tuple[str, str]]) -> None:
    """Rewrite CORE_transaction.csv with teller_no and terminal_id (``{txn_id: (teller, terminal)}``)."""
    mapping = default_mapping(home)
    text = render_file(mapping, "CORE_transaction.csv", canonical_rows()["CORE_transaction.csv"]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*rows[0], "teller_no", "terminal_id"])
    for r in rows[1:]:
        w.writerow([*r, *values.get(r[0], ("", ""))])
    (folder / "CORE_transaction.csv").write_text(out.getvalue(), encoding="utf-8")


def test_new_format_extract_checks_teller_and_terminal(tmp_path: Path) -> None:
    """The new columns load; an unknown teller is an orphan and a malformed terminal id a bad format."""
    home = _ingest_home(tmp_path)
    folder = write_extract(tmp_path / "raw", home)
    txns = [r["txn_id"] for r in canonical_rows()["CORE_transaction.csv"]]
    assert len(txns) >= 3
    _with_devices(
        home,
        folder,
        {
            txns[0]: ("E0000002", ""),  # the fixture's teller
            txns[1]: ("E9999999", ""),  # no such employee
            txns[2]: ("", "atm-01"),  # lower case and a dash
        },
    )
    report = ingest_date(folder, home)
    tr = report["tables"]["transaction"]
    assert tr["reasons"] == {"orphan_fk": 1, "bad_format": 1}
    assert tr["rows_loaded"] == tr["rows_read"] - 2
    p = home.lake / "transaction" / f"as_of={AS_OF}" / "data.parquet"
    got = duckdb.connect().execute(
        f"SELECT txn_id, teller_no, terminal_id FROM read_parquet('{p}') WHERE teller_no IS NOT NULL"
    ).fetchall()
    assert got == [(txns[0], "E0000002", None)]


def test_lake_ingested_before_the_new_columns_builds(tmp_path: Path) -> None:
    """Lake files written before teller_no / terminal_id joined the contract read them as NULL."""
    home = make_lake(tmp_path / "home")
    for d in DATES:
        f = home.lake / "transaction" / f"as_of={d}" / "data.parquet"
        pq.write_table(pq.read_table(f).drop_columns(["teller_no", "terminal_id"]), f)
    build(home)
    con = connect(home)
    n, tellers, terminals = con.execute(
        "SELECT sum(txn_count), count(teller_no), count(terminal_id) FROM mart_channel_month"
    ).fetchone()
    assert n == 7 and tellers == 0 and terminals == 0


# ---------------------------------------------------------------------------------------------- synth
def test_teller_and_terminal_by_channel(bank: Bank) -> None:
    """Tellers only on COUNTER rows (all of them), each a TELLER of the account's branch on that date;
    terminals only on ATM rows (all of them), each an ATM of the account's branch."""
    con = duckdb.connect()
    rows = con.execute(
        f"""
        SELECT t.channel, count(*) AS n, count(t.teller_no) AS n_teller, count(t.terminal_id) AS n_term,
            count(*) FILTER (WHERE t.teller_no IS NOT NULL
                AND (s.staff_no IS NULL OR s.role <> 'TELLER' OR s.org_code <> a.org_code)) AS bad_teller,
            count(*) FILTER (WHERE t.terminal_id IS NOT NULL
                AND NOT regexp_full_match(t.terminal_id, 'ATM' || a.org_code || '0[1-3]')) AS bad_term
        FROM {_lake(bank, "transaction")} AS t
        JOIN {_lake(bank, "deposit_account")} AS a
          ON a.as_of_date = t.as_of_date AND a.account_no = t.account_no
        LEFT JOIN {_lake(bank, "staff")} AS s ON s.as_of_date = t.as_of_date AND s.staff_no = t.teller_no
        GROUP BY t.channel
        """
    ).fetchall()
    by = {r[0]: r[1:] for r in rows}
    assert {"COUNTER", "ATM", "POS", "SYSTEM"} <= set(by)
    for ch, (n, n_teller, n_term, bad_teller, bad_term) in by.items():
        assert bad_teller == 0 and bad_term == 0, ch
        assert n_teller == (n if ch == "COUNTER" else 0), ch
        assert n_term == (n if ch == "ATM" else 0), ch


def test_channel_mart_ties_out(bank: Bank) -> None:
    """Per month and channel, mart_channel_month equals mart_customer_month and the staged transactions."""
    con = connect(get_home(bank.home))
    mart = dict(
        ((d, ch), (n, amt))
        for d, ch, n, amt in con.execute(
            "SELECT as_of_date, channel, sum(txn_count), sum(txn_amount) FROM mart_channel_month GROUP BY ALL"
        ).fetchall()
    )
    channels = ["counter", "atm", "pos", "phone", "online", "mobile", "system"]
    cm = {}
    for ch in channels:
        for d, n, amt in con.execute(
            f"SELECT as_of_date, sum(txn_count_{ch}), sum(txn_amount_{ch}) "
            "FROM mart_customer_month GROUP BY 1"
        ).fetchall():
            if n:
                cm[(d, ch.upper())] = (n, amt)
    assert mart == cm
    lake = duckdb.connect().execute(
        f"SELECT as_of_date, channel, count(*), sum(amount) FROM {_lake(bank, 'transaction')} GROUP BY ALL"
    ).fetchall()
    assert {(d, ch): (n, amt) for d, ch, n, amt in lake} == mart
    assert len({d for d, _ in mart}) == len(bank.synth["dates"])
    # the contract test of the build passed too
    results = {(r["model"], r["test"]): r["passed"] for r in bank.build["contracts"]["results"]}
    assert results[("mart_channel_month", "channel_ties_to_customer_month")]
    nulls = con.execute(
        "SELECT count(*) FILTER (WHERE teller_no IS NULL), count(*) FILTER (WHERE terminal_id IS NULL), "
        "count(*) FILTER (WHERE customer_type IS NULL) FROM mart_channel_month"
    ).fetchone()
    assert nulls[0] > 0 and nulls[1] > 0 and nulls[2] == 0


def test_planted_underused_atms(bank: Bank) -> None:
    """The ATMs in _answers/devices.csv are the least used ATMs of their branch."""
    path = bank.raw / "_answers" / "devices.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        planted = list(csv.DictReader(fh))
    assert planted and set(planted[0]) == {"terminal_id", "org_code", "kind"}
    assert {p["kind"] for p in planted} == {"UNDERUSED"}
    con = connect(get_home(bank.home))
    counts: dict[str, dict[str, int]] = {}
    for org, term, n in con.execute(
        "SELECT org_code, terminal_id, sum(txn_count) FROM mart_channel_month "
        "WHERE channel = 'ATM' GROUP BY ALL"
    ).fetchall():
        counts.setdefault(org, {})[term] = int(n)
    n_checked = 0
    for p in planted:
        org, term = p["org_code"], p["terminal_id"]
        assert term.startswith("ATM" + org)
        branch = counts.get(org, {})
        mine = branch.get(term, 0)
        others = [n for t, n in branch.items() if t != term]
        assert others, org  # the branch's other ATMs are used
        assert mine <= min(others), (term, mine, branch)
        total = mine + sum(others)
        if total >= 40:
            assert mine / total < 0.1, (term, branch)
            n_checked += 1
    assert n_checked >= 3
    # no ATM outside the planted ones is as idle in a busy branch
    planted_terms = {p["terminal_id"] for p in planted}
    for _org, branch in counts.items():
        total = sum(branch.values())
        if total >= 60 and len(branch) >= 2:
            for t, n in branch.items():
                if t not in planted_terms:
                    assert n / total > 0.1, (t, branch)


# ---------------------------------------------------------------------------------------------- shares
def test_manager_shares_on_bank(bank: Bank) -> None:
    """Shares lie in [0, 1] and add up to at most 1 per customer-month; full months are 1."""
    con = connect(get_home(bank.home))
    lo, hi, n = con.execute(
        "SELECT min(share), max(share), count(*) FROM mart_manager_share_month"
    ).fetchone()
    assert n > 0 and lo >= 0 and hi <= 1
    over = con.execute(
        "SELECT count(*) FROM (SELECT as_of_date, customer_id FROM mart_manager_share_month "
        "GROUP BY ALL HAVING sum(share) > 1 OR sum(days) > day(as_of_date))"
    ).fetchone()[0]
    assert over == 0
    months = {
        r[0] for r in con.execute("SELECT DISTINCT as_of_date FROM mart_manager_share_month").fetchall()
    }
    assert months == {dt.date.fromisoformat(d) for d in bank.synth["dates"]}
    full = con.execute(
        "SELECT count(*) FILTER (WHERE share = 1), count(*) FILTER (WHERE days = day(as_of_date)) "
        "FROM mart_manager_share_month"
    ).fetchone()
    assert full[0] == full[1] > 0


def _run_share_mart(assignments: list[tuple], numbers: list[tuple[str, str]]) -> list[tuple]:
    """The mart's SQL over hand-made ``stg_manager_assignment`` and ``core_cust_no_map`` tables."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_manager_assignment (as_of_date DATE, assignment_no VARCHAR, cust_no VARCHAR, "
        "staff_no VARCHAR, start_date DATE, end_date DATE)"
    )
    con.executemany("INSERT INTO stg_manager_assignment VALUES (?, ?, ?, ?, ?, ?)", assignments)
    con.execute("CREATE TABLE core_cust_no_map (cust_no VARCHAR, customer_id VARCHAR)")
    con.executemany("INSERT INTO core_cust_no_map VALUES (?, ?)", numbers)
    sql = render((SQL_DIR / "marts" / "mart_manager_share_month.sql").read_text(encoding="utf-8"))
    return con.execute(f"SELECT * FROM ({sql}) ORDER BY customer_id, as_of_date, staff_no").fetchall()


def test_manager_shares_hand_built() -> None:
    """An assignment changing mid-month, overlapping assignments of a merged customer, a late start."""
    d = dt.date
    jan, feb = d(2024, 1, 31), d(2024, 2, 29)
    hist = [
        # X: A until 10 February, then B (the change is mid-month)
        ("G1", "c1", "SA", d(2023, 6, 1), d(2024, 2, 10)),
        ("G2", "c1", "SB", d(2024, 2, 11), None),
        # Y, two numbers: SC on c2 throughout; SD on c3 from 20 to 24 February (started later, so it
        # holds those 5 days)
        ("G3", "c2", "SC", d(2023, 1, 1), None),
        ("G4", "c3", "SD", d(2024, 2, 20), d(2024, 2, 24)),
        # Z: an old assignment that ended before the warehouse, then one from 15 February
        ("G5", "c4", "SA", d(2020, 1, 1), d(2022, 12, 31)),
        ("G6", "c4", "SE", d(2024, 2, 15), None),
    ]
    rows = [(feb, *h) for h in hist]
    # the January snapshot said otherwise; only the latest snapshot counts
    rows += [(jan, "G9", "c1", "SZ", d(2023, 1, 1), None)]
    got = _run_share_mart(rows, [("c1", "X"), ("c2", "Y"), ("c3", "Y"), ("c4", "Z")])
    share = Decimal

    assert got == [
        (jan, "X", "SA", share("1.000000"), 31),
        (feb, "X", "SA", share("0.344827"), 10),  # 10/29 rounded down
        (feb, "X", "SB", share("0.655172"), 19),  # 19/29 rounded down
        (jan, "Y", "SC", share("1.000000"), 31),
        (feb, "Y", "SC", share("0.827586"), 24),
        (feb, "Y", "SD", share("0.172413"), 5),
        (feb, "Z", "SE", share("0.517241"), 15),
    ]


@pytest.mark.parametrize("end", [None, dt.date(2024, 2, 29)])
def test_manager_share_single_assignment(end: dt.date | None) -> None:
    """An assignment covering the whole month (open or ending on the as-of date) is a share of 1."""
    feb = dt.date(2024, 2, 29)
    got = _run_share_mart([(feb, "G1", "c1", "S1", dt.date(2024, 2, 1), end)], [("c1", "X")])
    assert got == [(feb, "X", "S1", Decimal("1.000000"), 29)]
