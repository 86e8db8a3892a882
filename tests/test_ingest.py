"""Validated ingest with quarantine: accounting, reasons, line numbers, file-level errors, idempotence."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from ingest_fixture import AS_OF, canonical_rows, render_file, write_extract

from cimlib.config import get_home
from cimlib.contracts import load_contracts
from cimlib.contracts.checkdigits import (
    USCC_ALPHABET,
    id_check_char,
    is_valid_id,
    is_valid_uscc,
    uscc_check_char,
)
from cimlib.ingest import IngestError, ingest_all, ingest_date, load_mapping, load_reports
from cimlib.ingest._sql import id_no_valid_sql, uscc_valid_sql

TIMING_KEYS = {"started", "finished", "seconds", "unchanged", "source_dir"}


def _home(tmp_path: Path):
    return get_home(tmp_path / "home")


def _strip(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in TIMING_KEYS}
    out["tables"] = {t: {k: v for k, v in tr.items() if k != "seconds"} for t, tr in report["tables"].items()}
    return out


def _quarantine(home, table: str) -> list[dict]:
    p = home.quarantine / f"as_of={AS_OF}" / f"{table}.parquet"
    if not p.exists():
        return []
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM read_parquet('{p}', hive_partitioning=false) ORDER BY file, line")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _lake(home, table: str) -> list[tuple]:
    p = home.lake / table / f"as_of={AS_OF}" / "data.parquet"
    return duckdb.connect().execute(f"SELECT * FROM read_parquet('{p}', hive_partitioning=false)").fetchall()


def _assert_accounting(report: dict) -> None:
    for t, tr in report["tables"].items():
        assert tr["rows_read"] == tr["rows_loaded"] + tr["rows_quarantined"], t
        assert tr["rows_quarantined"] == sum(tr["reasons"].values()), t
    for f, fr in report["files"].items():
        assert fr["rows_read"] == fr["rows_loaded"] + fr["rows_quarantined"], f
    tot = report["totals"]
    assert tot["rows_read"] == tot["rows_loaded"] + tot["rows_quarantined"]


def _ingest_with(tmp_path: Path, mutate=None, edit_files=None) -> tuple[dict, object]:
    home = _home(tmp_path)
    rows = canonical_rows()
    if mutate:
        mutate(rows)
    folder = write_extract(tmp_path / "raw", home, rows)
    if edit_files:
        edit_files(folder)
    return ingest_date(folder, home), home


def _rows_in_files(report: dict, folder: Path) -> int:
    """Non-empty data lines of every mapped file: what must be accounted for."""
    n = 0
    for f in report["files"]:
        lines = (folder / f).read_bytes().split(b"\n")
        n += sum(1 for ln in lines[1:] if ln.strip())
    return n


# --------------------------------------------------------------------------------------------- valid set


def test_valid_extract_loads_everything(tmp_path):
    report, home = _ingest_with(tmp_path)
    _assert_accounting(report)
    assert report["totals"]["rows_quarantined"] == 0
    assert report["warnings"] == []
    assert report["mapping"] == "synth-default"
    expected = {t: 0 for t in load_contracts()}
    for f, rows in canonical_rows().items():
        expected[report["files"][f]["table"]] += len(rows)
    assert {t: tr["rows_loaded"] for t, tr in report["tables"].items()} == expected
    assert report["tables"]["individual_customer"]["files"] == [
        "CORE_individual_customer.csv",
        "LOAN_individual_customer.csv",
    ]
    # Lake schema: as_of_date first, then the contract columns with contract types.
    con = duckdb.connect()
    for t, c in load_contracts().items():
        p = home.lake / t / f"as_of={AS_OF}" / "data.parquet"
        desc = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{p}', hive_partitioning=false)").fetchall()
        assert [d[0] for d in desc] == ["as_of_date", *c.column_names], t
        assert [d[1] for d in desc] == ["DATE", *(col.sql_type for col in c.columns)], t
    # Mapped values: GBK names, code maps, compact dates, pipe file, constants.
    loans = dict((r[1], r) for r in _lake(home, "loan"))
    assert loans["LN2024000000002"][6] == "GUARANTEE"
    assert loans["LN2024000000002"][14] == "SPECIAL_MENTION"
    assert loans["LN2024000000002"][9] == dt.date(2023, 3, 15)
    assert loans["LN2024000000002"][7] == Decimal("300000.00")
    people = {(r[1], r[2]): r for r in _lake(home, "individual_customer")}
    assert people[("LOAN", "L000000002")][4] == "钱七"
    assert people[("LOAN", "L000000002")][6] == "M"
    card = _lake(home, "card")[0]
    assert card[7] == dt.date(2020, 2, 2)
    txn = {r[1]: r for r in _lake(home, "transaction")}
    assert txn["T0000000006"][3] == dt.datetime(2024, 1, 31, 23, 59, 59)
    assert list((home.quarantine / f"as_of={AS_OF}").glob("*.parquet")) == []
    saved = json.loads((home.state / "loads" / f"{AS_OF}.json").read_text(encoding="utf-8"))
    assert saved == report
    assert load_reports(home) == [report]


def test_reload_is_idempotent(tmp_path):
    home = _home(tmp_path)
    rows = canonical_rows()
    rows["CORE_transaction.csv"][1]["amount"] = "-1.00"  # some quarantine too
    folder = write_extract(tmp_path / "raw", home, rows)
    first = ingest_date(folder, home)
    assert first["unchanged"] is False

    def snapshot() -> dict[str, str]:
        return {
            str(p.relative_to(home.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((home.root / "data").rglob("*.parquet"))
        }

    before = snapshot()
    second = ingest_date(folder, home)
    assert second["unchanged"] is True
    assert _strip(second) == _strip(first)
    assert snapshot() == before
    assert not (home.state / "tmp").exists() or not any((home.state / "tmp").iterdir())
    # A changed file is reported as changed.
    (folder / "CORE_org.csv").write_bytes((folder / "CORE_org.csv").read_bytes() + b"")
    with (folder / "CORE_staff.csv").open("ab") as fh:
        fh.write(b"E0000003,new,330101,TELLER,2020-01-01,ACTIVE\n")
    third = ingest_date(folder, home)
    assert third["unchanged"] is False
    assert third["tables"]["staff"]["rows_loaded"] == 3


# ---------------------------------------------------------------------------------------- row problems


def test_duplicate_keys_quarantine_all_rows(tmp_path):
    def mutate(rows):
        t = rows["CORE_transaction.csv"]
        t[3]["txn_id"] = t[0]["txn_id"]  # lines 2 and 5 share T0000000001

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    tr = report["tables"]["transaction"]
    assert tr["reasons"] == {"duplicate_key": 2}
    q = _quarantine(home, "transaction")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q] == [
        (2, "duplicate_key", "txn_id"),
        (5, "duplicate_key", "txn_id"),
    ]
    assert q[0]["raw_line"].startswith("T0000000001,6230000000000000011,2024-01-02 09:15:00,500.00")
    assert q[0]["file"] == "CORE_transaction.csv" and q[0]["table"] == "transaction"
    assert q[0]["as_of_date"] == dt.date(2024, 1, 31)
    assert "T0000000001" not in {r[1] for r in _lake(home, "transaction")}


def test_orphan_fk_and_cascade(tmp_path):
    def mutate(rows):
        rows["CORE_transaction.csv"][2]["account_no"] = "6230000000000009999"  # line 4: no such account
        rows["CORE_deposit_account.csv"][2]["status"] = "BOGUS"  # line 4: acc3 quarantined -> its txns orphan

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    assert report["tables"]["deposit_account"]["reasons"] == {"unknown_code": 1}
    q = _quarantine(home, "transaction")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q] == [
        (4, "orphan_fk", "account_no"),
        (5, "orphan_fk", "account_no"),
    ]
    assert "6230000000000009999 not found in deposit_account" in q[0]["detail"]
    # acc3 belongs to the corporate customer; the account balance row of it is orphaned too
    assert report["tables"]["account_balance"]["reasons"] == {"orphan_fk": 1}


def test_bad_dates_in_gbk_file(tmp_path):
    def mutate(rows):
        rows["LOAN_loan.csv"][1]["start_date"] = "20231345"  # line 3
        rows["LOAN_individual_customer.csv"][0]["open_date"] = "2010-06-01"  # wrong format for LOAN (line 2)

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    q = _quarantine(home, "loan")
    # Loan 1 belongs to the quarantined LOAN customer L000000001: orphaned.
    assert [(r["file"], r["line"], r["reason"], r["column_name"]) for r in q] == [
        ("LOAN_loan.csv", 2, "orphan_fk", "cust_no"),
        ("LOAN_loan.csv", 3, "bad_type", "start_date"),
    ]
    assert "20231345" in q[1]["detail"] and "%Y%m%d" in q[1]["detail"]
    assert "LN2024000000002" in q[1]["raw_line"]
    q = _quarantine(home, "individual_customer")
    assert [(r["file"], r["line"], r["reason"]) for r in q] == [
        ("LOAN_individual_customer.csv", 2, "bad_type")
    ]
    assert "张三" in q[0]["raw_line"]  # decoded from GBK
    # The guarantee of the quarantined loan is orphaned.
    assert report["tables"]["guarantee"]["reasons"] == {"orphan_fk": 1}


def test_bad_check_digits(tmp_path):
    def mutate(rows):
        good = rows["CORE_individual_customer.csv"][1]["id_no"]
        rows["CORE_individual_customer.csv"][1]["id_no"] = good[:17] + ("0" if good[17] != "0" else "1")
        bad_birth = "33010219801332" + "001"
        rows["CORE_individual_customer.csv"][2]["id_no"] = bad_birth + id_check_char(bad_birth)
        code = rows["CORE_corporate_customer.csv"][0]["credit_code"]
        rows["CORE_corporate_customer.csv"][0]["credit_code"] = code[:17] + ("0" if code[17] != "0" else "1")

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    q = _quarantine(home, "individual_customer")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q] == [
        (3, "bad_check_digit", "id_no"),
        (4, "bad_check_digit", "id_no"),
    ]
    q = _quarantine(home, "corporate_customer")
    assert [(r["file"], r["line"], r["reason"]) for r in q] == [
        ("CORE_corporate_customer.csv", 2, "bad_check_digit")
    ]


def test_negative_amount_unknown_code_and_contract_check(tmp_path):
    def mutate(rows):
        rows["CORE_transaction.csv"][4]["amount"] = Decimal("-0.45")  # line 6
        rows["LOAN_loan.csv"][0]["five_class"] = "9"  # unmapped source code, line 2
        rows["CORE_deposit_account.csv"][1]["maturity_date"] = None  # TIME without maturity, line 3

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    q = _quarantine(home, "transaction")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q if r["reason"] != "orphan_fk"] == [
        (6, "out_of_range", "amount")
    ]
    assert any("-0.45 is below the minimum 0.01" in r["detail"] for r in q)
    q = _quarantine(home, "loan")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q] == [(2, "unknown_code", "five_class")]
    q = _quarantine(home, "deposit_account")
    assert [(r["line"], r["reason"]) for r in q] == [(3, "missing_maturity")]
    # The quarantined account's transaction is orphaned (T0000000006, line 7).
    tq = [(r["line"], r["reason"]) for r in _quarantine(home, "transaction")]
    assert (7, "orphan_fk") in tq


def test_unmapped_source_code_is_unknown_code(tmp_path):
    def edit(folder: Path):
        p = folder / "LOAN_individual_customer.csv"
        lines = p.read_bytes().decode("gbk").split("\n")
        cols = lines[0].split(",")
        i = cols.index("XB")
        f = lines[2].split(",")
        f[i] = "3"
        lines[2] = ",".join(f)
        p.write_bytes("\n".join(lines).encode("gbk"))

    report, home = _ingest_with(tmp_path, edit_files=edit)
    _assert_accounting(report)
    q = _quarantine(home, "individual_customer")
    assert [(r["file"], r["line"], r["reason"], r["column_name"]) for r in q] == [
        ("LOAN_individual_customer.csv", 3, "unknown_code", "sex")
    ]


def test_truncated_file_and_field_count(tmp_path):
    def edit(folder: Path):
        p = folder / "CORE_transaction.csv"
        data = p.read_bytes()
        p.write_bytes(data[: data.rstrip(b"\n").rfind(b",", 0, len(data) - 20)])  # cut mid last row
        p = folder / "CARD_card.txt"
        lines = p.read_text(encoding="utf-8").splitlines()
        p.write_text("\n".join([*lines, lines[1] + "|extra"]) + "\n", encoding="utf-8")

    report, home = _ingest_with(tmp_path, edit_files=edit)
    _assert_accounting(report)
    q = _quarantine(home, "transaction")
    assert [(r["line"], r["reason"]) for r in q] == [(7, "malformed_row")]
    assert q[0]["raw_line"].startswith("T0000000006,6230000000000000029,")
    assert any("no line ending" in w for w in report["warnings"])
    assert report["tables"]["transaction"] == {
        **report["tables"]["transaction"],
        "rows_read": 6,
        "rows_loaded": 5,
    }
    q = _quarantine(home, "card")
    assert [(r["line"], r["reason"]) for r in q] == [(3, "malformed_row")]
    assert q[0]["raw_line"].endswith("|extra")


def test_line_numbers_after_malformed_and_blank_lines(tmp_path):
    def edit(folder: Path):
        p = folder / "CORE_transaction.csv"
        lines = p.read_text(encoding="utf-8").splitlines()
        # header, t1, <short row>, t2, <blank>, t3(bad amount), t4, t5, t6
        t3 = lines[3].split(",")
        t3[3] = "abc"
        out = [lines[0], lines[1], "oops,only,three", lines[2], "", ",".join(t3), *lines[4:]]
        p.write_text("\n".join(out) + "\n", encoding="utf-8")

    report, home = _ingest_with(tmp_path, edit_files=edit)
    _assert_accounting(report)
    q = _quarantine(home, "transaction")
    assert [(r["line"], r["reason"], r["column_name"]) for r in q] == [
        (3, "malformed_row", "amount"),  # the first missing field
        (6, "bad_type", "amount"),
    ]
    assert q[1]["raw_line"].startswith("T0000000003,") and ",abc," in q[1]["raw_line"]
    assert any("blank line" in w for w in report["warnings"])
    assert report["tables"]["transaction"]["rows_read"] == 7


def test_nothing_silently_dropped(tmp_path):
    """Every non-blank data line of every file is either loaded or quarantined."""

    def mutate(rows):
        rows["CORE_transaction.csv"][0]["amount"] = "-3"
        rows["CORE_org.csv"][1]["org_level"] = "X"
        rows["LOAN_credit_line.csv"][0]["expiry_date"] = dt.date(2020, 1, 1)

    report, home = _ingest_with(tmp_path, mutate)
    _assert_accounting(report)
    folder = tmp_path / "raw" / AS_OF
    assert report["totals"]["rows_read"] == _rows_in_files(report, folder)
    n_q = sum(len(_quarantine(home, t)) for t in load_contracts())
    assert n_q == report["totals"]["rows_quarantined"] > 0
    n_l = sum(len(_lake(home, t)) for t in load_contracts())
    assert n_l == report["totals"]["rows_loaded"]
    assert report["tables"]["credit_line"]["reasons"] == {"date_order": 1}
    assert report["tables"]["org"]["reasons"]["unknown_code"] == 1


# -------------------------------------------------------------------------------------- file problems


def test_missing_column_is_an_error(tmp_path):
    def edit(folder: Path):
        p = folder / "CORE_transaction.csv"
        lines = p.read_text(encoding="utf-8").splitlines()
        p.write_text("\n".join(",".join(ln.split(",")[:-1]) for ln in lines) + "\n", encoding="utf-8")

    with pytest.raises(IngestError) as e:
        _ingest_with(tmp_path, edit_files=edit)
    assert str(e.value) == (
        "CORE_transaction.csv: missing column mcc (expected by mapping synth-default for table transaction)"
    )
    assert not (_home(tmp_path).state / "loads" / f"{AS_OF}.json").exists()


def test_gbk_declared_utf8_is_an_error(tmp_path):
    def edit(folder: Path):
        p = folder / "CORE_org.csv"
        p.write_bytes(p.read_text(encoding="utf-8").encode("gbk"))

    with pytest.raises(IngestError, match=r"CORE_org\.csv: line 2, column 8: .*utf-8"):
        _ingest_with(tmp_path, edit_files=edit)


def test_utf8_declared_gbk_is_an_error(tmp_path):
    def edit(folder: Path):
        p = folder / "LOAN_individual_customer.csv"
        p.write_bytes(p.read_bytes().decode("gbk").encode("utf-8"))

    with pytest.raises(IngestError, match=r"LOAN_individual_customer\.csv: line 2, column \d+: .*gbk"):
        _ingest_with(tmp_path, edit_files=edit)


def test_missing_file_is_an_error_extra_file_a_warning(tmp_path):
    home = _home(tmp_path)
    folder = write_extract(tmp_path / "raw", home)
    (folder / "NOTES.txt").write_text("hello", encoding="utf-8")
    report = ingest_date(folder, home)
    assert report["warnings"] == ["NOTES.txt: not in mapping synth-default; ignored"]
    (folder / "CARD_card.txt").unlink()
    with pytest.raises(IngestError, match=r"mapped file\(s\) missing: CARD_card\.txt"):
        ingest_date(folder, home)


def test_bad_folder_name(tmp_path):
    (tmp_path / "latest").mkdir()
    with pytest.raises(IngestError, match="YYYY-MM-DD"):
        ingest_date(tmp_path / "latest", _home(tmp_path))


def test_mapping_errors_name_file_and_key(tmp_path):
    home = _home(tmp_path)
    src = home.parameters / "sources" / "default.yaml"
    text = src.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("name: synth-default", "name: x\ncolour: blue"), encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad\.yaml: invalid mapping: colour: Extra inputs"):
        load_mapping(bad, home)
    bad.write_text(text.replace("JJH: loan_no", "JJH: loan_number"), encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad\.yaml: .*files\[14\] \(LOAN_loan\.csv\): columns\.JJH"):
        load_mapping(bad, home)
    bad.write_text(text.replace('"5": LOSS', '"5": LOST'), encoding="utf-8")
    with pytest.raises(IngestError, match=r"codes\.five_class\.5 -> 'LOST'"):
        load_mapping(bad, home)
    assert load_mapping(None, home).name == "synth-default"


def test_absent_column_loads_null(tmp_path):
    home = _home(tmp_path)
    src = home.parameters / "sources" / "default.yaml"
    mp = tmp_path / "m.yaml"
    mp.write_text(
        src.read_text(encoding="utf-8").replace(
            "absent: [teller_no, terminal_id]}",
            "absent: [teller_no, terminal_id, mcc]}",
        ),
        encoding="utf-8",
    )
    folder = write_extract(tmp_path / "raw", home)
    p = folder / "CORE_transaction.csv"
    lines = p.read_text(encoding="utf-8").splitlines()
    p.write_text("\n".join(",".join(ln.split(",")[:-1]) for ln in lines) + "\n", encoding="utf-8")
    report = ingest_date(folder, home, mapping=mp)
    assert report["tables"]["transaction"]["rows_loaded"] == 6
    mcc = load_contracts()["transaction"].column_names.index("mcc") + 1  # after as_of_date
    assert {r[mcc] for r in _lake(home, "transaction")} == {None}


def test_ingest_all_in_date_order(tmp_path):
    home = _home(tmp_path)
    root = tmp_path / "raw"
    write_extract(root, home, as_of="2024-02-29")
    write_extract(root, home, as_of="2024-01-31")
    (root / "_answers").mkdir()
    reports = ingest_all(root, home, progress=True)
    assert [r["as_of_date"] for r in reports] == ["2024-01-31", "2024-02-29"]
    assert [r["as_of_date"] for r in load_reports(home)] == ["2024-01-31", "2024-02-29"]
    assert (home.lake / "org" / "as_of=2024-02-29" / "data.parquet").exists()


def test_render_matches_mapping(tmp_path):
    """The fixture writes GBK LOAN files with pinyin headers and the pipe-delimited card file."""
    m = load_mapping(None, _home(tmp_path))
    rows = canonical_rows()
    loan = render_file(m, "LOAN_loan.csv", rows["LOAN_loan.csv"]).decode("gbk")
    assert loan.startswith("JJH,KHH,CPDM,") and ",XY," in loan and "20230315" in loan
    card = render_file(m, "CARD_card.txt", rows["CARD_card.txt"]).decode("utf-8")
    assert "|2020/02/02|" in card


# ------------------------------------------------------------------------------------------ check digits


def test_check_digit_sql_matches_python():
    rnd = random.Random(7)
    ids, usccs = [], []
    for _ in range(1500):
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rnd.randrange(0, 30000))
        first17 = f"{rnd.randrange(110000, 660000)}{birth:%Y%m%d}{rnd.randrange(0, 1000):03d}"
        good = first17 + id_check_char(first17)
        ids += [good, good[:17] + rnd.choice("0123456789X"), good.lower(), good[:10] + "13" + good[12:]]
        ids.append("".join(rnd.choice("0123456789X") for _ in range(rnd.choice((17, 18, 19)))))
        body = "".join(rnd.choice(USCC_ALPHABET) for _ in range(17))
        ok = body + uscc_check_char(body)
        usccs += [ok, body + rnd.choice(USCC_ALPHABET), ok.replace(ok[3], "I"), ok[:17]]
    ids += ["", "11010519491231002X", "11010519491231002x", "110105194912310021"]
    con = duckdb.connect()
    con.execute("CREATE TABLE v (x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?)", [(x,) for x in ids])
    got = dict(con.execute(f"SELECT x, COALESCE({id_no_valid_sql('x')}, false) FROM v").fetchall())
    assert got == {x: is_valid_id(x) for x in ids}
    assert sum(got.values()) >= 1500
    con.execute("CREATE TABLE u (x VARCHAR)")
    con.executemany("INSERT INTO u VALUES (?)", [(x,) for x in usccs])
    got = dict(con.execute(f"SELECT x, COALESCE({uscc_valid_sql('x')}, false) FROM u").fetchall())
    assert got == {x: is_valid_uscc(x) for x in usccs}
    assert sum(got.values()) >= 1500


def test_reload_restores_deleted_partition(tmp_path):
    _, home = _ingest_with(tmp_path)
    shutil.rmtree(home.lake / "org")
    report2 = ingest_date(tmp_path / "raw" / AS_OF, home)
    assert report2["unchanged"] is True
    assert (home.lake / "org" / f"as_of={AS_OF}" / "data.parquet").exists()
