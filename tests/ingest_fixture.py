"""A tiny, valid extract set written through the default source mapping (no dependency on cimlib.synth).

``canonical_rows()`` gives the rows per extract file as canonical values; ``write_extract()`` writes them
the way the mapping says each file looks (encoding, delimiter, date formats, renamed columns, source
codes). Tests mutate the rows or the written files to build broken extracts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from cimlib.config import Home
from cimlib.contracts import load_contracts
from cimlib.contracts.checkdigits import USCC_ALPHABET, id_check_char, uscc_check_char
from cimlib.ingest import Mapping, load_mapping

AS_OF = "2024-01-31"
D = dt.date


def make_id(birth: dt.date, seq: int, region: str = "330102") -> str:
    """A valid 18-character resident ID number (odd ``seq`` = male)."""
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_char(first17)


def make_uscc(body: str) -> str:
    """A valid unified social credit code from a 17-character body (padded with '0')."""
    first17 = (body + "0" * 17)[:17]
    assert all(c in USCC_ALPHABET for c in first17)
    return first17 + uscc_check_char(first17)


def canonical_rows() -> dict[str, list[dict[str, Any]]]:
    """The valid rows, per extract file name, with canonical column names and codes."""
    acc1, acc2, acc3 = "6230000000000000011", "6230000000000000029", "6230000000000000037"
    return {
        "CORE_org.csv": [
            {
                "org_code": "330000",
                "org_name": "浙江省农村信用社联合社",
                "org_level": "PROVINCE",
                "parent_code": None,
                "region_code": "330000",
                "open_date": D(2004, 4, 18),
            },
            {
                "org_code": "330100",
                "org_name": "杭州农商银行",
                "org_level": "COUNTY",
                "parent_code": "330000",
                "region_code": "330100",
                "open_date": D(2005, 1, 1),
            },
            {
                "org_code": "330101",
                "org_name": "西湖支行",
                "org_level": "BRANCH",
                "parent_code": "330100",
                "region_code": "330106",
                "open_date": None,
            },
        ],
        "CORE_staff.csv": [
            {
                "staff_no": "E0000001",
                "staff_name": "王经理",
                "org_code": "330101",
                "role": "CUSTOMER_MANAGER",
                "hire_date": D(2015, 3, 1),
                "status": "ACTIVE",
            },
            {
                "staff_no": "E0000002",
                "staff_name": "李柜员",
                "org_code": "330101",
                "role": "TELLER",
                "hire_date": D(2019, 7, 1),
                "status": "ACTIVE",
            },
        ],
        "CORE_product.csv": [
            {
                "product_code": "DP0001",
                "product_name": "活期储蓄",
                "category": "DEPOSIT",
                "subtype": "DEMAND",
                "term_months": None,
                "base_rate": Decimal("0.0015"),
                "gl_subject": "2011",
                "launch_date": D(2005, 1, 1),
            },
            {
                "product_code": "DP0002",
                "product_name": "一年定期",
                "category": "DEPOSIT",
                "subtype": "TIME",
                "term_months": 12,
                "base_rate": Decimal("0.0165"),
                "gl_subject": "2012",
                "launch_date": None,
            },
            {
                "product_code": "LN0001",
                "product_name": "丰收贷",
                "category": "LOAN",
                "subtype": "CONSUMER",
                "term_months": 36,
                "base_rate": Decimal("0.0435"),
                "gl_subject": None,
                "launch_date": None,
            },
            {
                "product_code": "CD0001",
                "product_name": "丰收借记卡",
                "category": "CARD",
                "subtype": "DEBIT",
                "term_months": None,
                "base_rate": None,
                "gl_subject": None,
                "launch_date": None,
            },
            {
                "product_code": "WM0001",
                "product_name": "稳健理财",
                "category": "WEALTH",
                "subtype": "WMP",
                "term_months": 6,
                "base_rate": None,
                "gl_subject": None,
                "launch_date": None,
            },
        ],
        "CORE_individual_customer.csv": [
            _person("C000000001", "张三", D(1980, 5, 17), 1, "M"),
            _person("C000000002", "李四芳", D(1992, 11, 3), 2, "F"),
            _person("C000000003", "赵五", D(1965, 2, 28), 3, "M"),
        ],
        "CORE_corporate_customer.csv": [_company("E000000001", "杭州西湖茶叶有限公司", "91330106MA2B3C4D5")],
        "CORE_corporate_financials.csv": [
            {
                "cust_no": "E000000001",
                "fiscal_year": 2022,
                "revenue": Decimal("1200000.00"),
                "total_assets": Decimal("3000000.00"),
                "total_liabilities": Decimal("1000000.00"),
                "net_profit": Decimal("-50000.00"),
            },
            {
                "cust_no": "E000000001",
                "fiscal_year": 2023,
                "revenue": Decimal("1500000.00"),
                "total_assets": Decimal("3200000.00"),
                "total_liabilities": Decimal("1100000.00"),
                "net_profit": Decimal("80000.00"),
            },
        ],
        "CORE_deposit_account.csv": [
            _account(acc1, "C000000001", "DP0001", "DEMAND"),
            _account(acc2, "C000000002", "DP0002", "TIME", term=12, maturity=D(2024, 6, 30)),
            _account(acc3, "E000000001", "DP0001", "DEMAND"),
        ],
        "CORE_account_balance.csv": [
            {"account_no": a, "balance": Decimal(b), "accum_balance": Decimal(b) * 31, "days": 31}
            for a, b in ((acc1, "1200.50"), (acc2, "50000.00"), (acc3, "0.00"))
        ],
        "CORE_transaction.csv": [
            _txn(
                "T0000000001",
                acc1,
                dt.datetime(2024, 1, 2, 9, 15),
                "500.00",
                "C",
                "COUNTER",
                "DEPOSIT",
                "NONE",
            ),
            _txn(
                "T0000000002",
                acc1,
                dt.datetime(2024, 1, 5, 12, 0, 1),
                "36.80",
                "D",
                "POS",
                "CONSUME",
                "OTHER",
                "5411",
            ),
            _txn(
                "T0000000003",
                acc1,
                dt.datetime(2024, 1, 10, 20, 30),
                "200.00",
                "D",
                "MOBILE",
                "TRANSFER_OUT",
                "OWN",
            ),
            _txn(
                "T0000000004",
                acc3,
                dt.datetime(2024, 1, 15, 10, 0),
                "10000.00",
                "C",
                "ONLINE",
                "TRANSFER_IN",
                "OTHER",
            ),
            _txn(
                "T0000000005", acc1, dt.datetime(2024, 1, 21, 0, 0), "0.45", "C", "SYSTEM", "INTEREST", "NONE"
            ),
            _txn(
                "T0000000006",
                acc2,
                dt.datetime(2024, 1, 31, 23, 59, 59),
                "50000.00",
                "C",
                "COUNTER",
                "DEPOSIT",
                "NONE",
            ),
        ],
        "CORE_manager_assignment.csv": [
            {
                "assignment_no": "A000001",
                "cust_no": "C000000001",
                "staff_no": "E0000001",
                "start_date": D(2020, 1, 1),
                "end_date": None,
            },
            {
                "assignment_no": "A000002",
                "cust_no": "E000000001",
                "staff_no": "E0000001",
                "start_date": D(2021, 6, 1),
                "end_date": D(2023, 12, 31),
            },
        ],
        "CORE_gl_balance.csv": [
            {"org_code": "330101", "subject_code": "2011", "balance": Decimal("1200.50")},
            {"org_code": "330101", "subject_code": "2012", "balance": Decimal("50000.00")},
        ],
        "CORE_corporate_business.csv": [
            {
                "biz_no": "B000001",
                "cust_no": "E000000001",
                "org_code": "330101",
                "biz_type": "ACCEPTANCE",
                "amount": Decimal("200000.00"),
                "fee": Decimal("100.00"),
                "issue_date": D(2024, 1, 8),
                "maturity_date": D(2024, 7, 8),
                "status": "OPEN",
            },
        ],
        "LOAN_individual_customer.csv": [
            _person("L000000001", "张三", D(1980, 5, 17), 1, "M", src="LOAN"),
            _person("L000000002", "钱七", D(1975, 8, 8), 5, "M", src="LOAN"),
        ],
        "LOAN_corporate_customer.csv": [
            _company("L000000101", "杭州西湖茶叶有限公司", "91330106MA2B3C4D5", src="LOAN"),
        ],
        "LOAN_loan.csv": [
            _loan("LN2024000000001", "L000000001", "CREDIT", "50000.00", "30000.00", 0, "NORMAL", None),
            _loan(
                "LN2024000000002",
                "L000000101",
                "GUARANTEE",
                "300000.00",
                "280000.00",
                35,
                "SPECIAL_MENTION",
                "CL2024000000001",
            ),
        ],
        "LOAN_credit_line.csv": [
            {
                "line_no": "CL2024000000001",
                "cust_no": "L000000101",
                "org_code": "330101",
                "line_amount": Decimal("500000.00"),
                "used_amount": Decimal("280000.00"),
                "start_date": D(2023, 3, 1),
                "expiry_date": D(2026, 2, 28),
                "status": "ACTIVE",
            },
        ],
        "LOAN_guarantee.csv": [
            {
                "guarantee_no": "G000001",
                "loan_no": "LN2024000000002",
                "guarantee_type": "GUARANTEE",
                "guarantor_cust_no": "L000000002",
                "guarantor_name": "钱七",
                "amount": Decimal("300000.00"),
                "start_date": D(2023, 3, 15),
                "end_date": None,
            },
        ],
        "CARD_card.txt": [
            {
                "card_no": "6230000000000001234",
                "cust_no": "C000000001",
                "card_type": "DEBIT",
                "product_code": "CD0001",
                "account_no": acc1,
                "org_code": "330101",
                "issue_date": D(2020, 2, 2),
                "expiry_date": D(2030, 2, 28),
                "status": "ACTIVE",
                "credit_limit": None,
                "balance": None,
            },
        ],
        "WEALTH_wealth_holding.csv": [
            {
                "holding_no": "H000001",
                "cust_no": "C000000002",
                "product_code": "WM0001",
                "wealth_type": "WMP",
                "org_code": "330101",
                "market_value": Decimal("20000.00"),
                "buy_date": D(2023, 12, 1),
                "maturity_date": D(2024, 6, 1),
            },
        ],
    }


def _person(cust_no: str, name: str, birth: dt.date, seq: int, sex: str, src: str = "CORE") -> dict[str, Any]:
    return {
        "src_system": src,
        "cust_no": cust_no,
        "id_no": make_id(birth, seq),
        "cust_name": name,
        "birth_date": birth,
        "sex": sex,
        "education": "SENIOR",
        "occupation": "FARMER",
        "monthly_income": Decimal("4500.00"),
        "marital_status": "MARRIED",
        "phone": "13800000000",
        "address": "浙江省杭州市西湖区文三路1号",
        "id_expiry_date": D(2030, 1, 1),
        "open_date": D(2010, 6, 1),
        "org_code": "330101",
    }


def _company(cust_no: str, name: str, body: str, src: str = "CORE") -> dict[str, Any]:
    return {
        "src_system": src,
        "cust_no": cust_no,
        "credit_code": make_uscc(body),
        "cust_name": name,
        "economic_nature": "PRIVATE",
        "enterprise_form": "LIMITED",
        "industry": "A",
        "registered_capital": Decimal("1000000.00"),
        "legal_rep_name": "周八",
        "phone": "0571-88888888",
        "established_date": D(2012, 4, 1),
        "open_date": D(2012, 5, 1),
        "org_code": "330101",
        "group_code": None,
        "group_name": None,
    }


def _account(
    no: str, cust: str, product: str, kind: str, term: int | None = None, maturity: dt.date | None = None
) -> dict[str, Any]:
    return {
        "account_no": no,
        "cust_no": cust,
        "product_code": product,
        "org_code": "330101",
        "account_type": kind,
        "currency": "CNY",
        "open_date": D(2018, 3, 1),
        "close_date": None,
        "status": "NORMAL",
        "rate": Decimal("0.0165") if kind == "TIME" else Decimal("0.0015"),
        "term_months": term,
        "maturity_date": maturity,
    }


def _txn(
    txn_id: str,
    acc: str,
    ts: dt.datetime,
    amount: str,
    direction: str,
    channel: str,
    kind: str,
    cp: str,
    mcc: str | None = None,
) -> dict[str, Any]:
    return {
        "txn_id": txn_id,
        "account_no": acc,
        "txn_time": ts,
        "amount": Decimal(amount),
        "direction": direction,
        "channel": channel,
        "txn_type": kind,
        "counterparty": cp,
        "mcc": mcc,
    }


def _loan(
    no: str, cust: str, form: str, amount: str, balance: str, dpd: int, five: str, line: str | None
) -> dict[str, Any]:
    return {
        "loan_no": no,
        "cust_no": cust,
        "product_code": "LN0001",
        "org_code": "330101",
        "manager_no": "E0000001",
        "loan_form": form,
        "contract_amount": Decimal(amount),
        "rate": Decimal("0.0435"),
        "start_date": D(2023, 3, 15),
        "maturity_date": D(2026, 3, 15),
        "balance": Decimal(balance),
        "accum_balance": Decimal(balance) * 31,
        "days_past_due": dpd,
        "five_class": five,
        "status": "ACTIVE",
        "credit_line_no": line,
    }


def default_mapping(home: Home) -> Mapping:
    """The default mapping of ``home``."""
    return load_mapping(None, home)


def render_file(mapping: Mapping, file: str, rows: list[dict[str, Any]]) -> bytes:
    """The bytes of extract ``file`` holding ``rows`` (canonical values), as the mapping describes it.

    Values that are already strings are written as they are (after the reverse code map), so tests can
    plant bad values.
    """
    spec = next(f for f in mapping.files if f.file == file)
    contract = load_contracts()[spec.table]
    to_source = {canon: src for src, canon in spec.columns.items()}
    columns = [c for c in contract.column_names if c not in spec.constants and c not in spec.absent]
    reverse = {col: {v: k for k, v in m.items()} for col, m in spec.codes.items()}
    date_fmt = mapping.setting(spec, "date_format")
    ts_fmt = mapping.setting(spec, "timestamp_format")
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=mapping.setting(spec, "delimiter"), lineterminator="\n")
    w.writerow([to_source.get(c, c) for c in columns])
    for row in rows:
        out = []
        for c in columns:
            v = row.get(c)
            if v is None:
                out.append("")
            elif isinstance(v, dt.datetime):
                out.append(v.strftime(ts_fmt))
            elif isinstance(v, dt.date):
                out.append(v.strftime(date_fmt))
            else:
                s = str(v)
                out.append(reverse.get(c, {}).get(s, s))
        w.writerow(out)
    return buf.getvalue().encode(mapping.setting(spec, "encoding"))


def write_extract(
    root: Path, home: Home, rows: dict[str, list[dict[str, Any]]] | None = None, as_of: str = AS_OF
) -> Path:
    """Write the extract set for ``as_of`` under ``root``; return the date folder."""
    mapping = default_mapping(home)
    rows = canonical_rows() if rows is None else rows
    folder = root / as_of
    folder.mkdir(parents=True, exist_ok=True)
    for f in mapping.files:
        (folder / f.file).write_bytes(render_file(mapping, f.file, rows[f.file]))
    return folder


def write_big(folder: Path, n_txn: int = 4_000_000, n_acc: int = 1_000_000) -> None:
    """Replace the deposit accounts and transactions of ``folder`` with ``n_acc`` / ``n_txn`` valid rows.

    For throughput measurements; written with DuckDB COPY in a few seconds.
    """
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT lpad(CAST(6230000000000000000 + i AS VARCHAR), 19, '0') AS account_no,
              'C00000000' || (i % 3 + 1) AS cust_no, 'DP0001' AS product_code, '330101' AS org_code,
              'DEMAND' AS account_type, 'CNY' AS currency,
              DATE '2018-03-01' + CAST(i % 2000 AS INTEGER) AS open_date, NULL AS close_date,
              'NORMAL' AS status, 0.0015 AS rate, NULL AS term_months, NULL AS maturity_date
            FROM range({n_acc}) t(i)) TO '{folder / "CORE_deposit_account.csv"}' (HEADER, DELIMITER ',')"""
    )
    con.execute(
        f"""COPY (SELECT 'T' || lpad(CAST(i AS VARCHAR), 12, '0') AS txn_id,
              lpad(CAST(6230000000000000000 + (i * 7919) % {n_acc} AS VARCHAR), 19, '0') AS account_no,
              strftime(TIMESTAMP '2024-01-01' + to_seconds(CAST(i % 2678399 AS BIGINT)), '%Y-%m-%d %H:%M:%S')
                AS txn_time,
              CAST(round(1 + (i * 37) % 100000 / 7.0, 2) AS DECIMAL(18,2)) AS amount,
              CASE WHEN i % 2 = 0 THEN 'C' ELSE 'D' END AS direction,
              (['COUNTER','ATM','POS','MOBILE','ONLINE'])[i % 5 + 1] AS channel,
              (['DEPOSIT','WITHDRAW','CONSUME','TRANSFER_IN','TRANSFER_OUT'])[i % 5 + 1] AS txn_type,
              (['NONE','OWN','OTHER'])[i % 3 + 1] AS counterparty,
              CASE WHEN i % 5 = 2 THEN '5411' END AS mcc
            FROM range({n_txn}) t(i)) TO '{folder / "CORE_transaction.csv"}' (HEADER, DELIMITER ',')"""
    )
    con.close()


def _bench() -> None:  # pragma: no cover - manual measurement
    import json
    import logging
    import sys
    import tempfile
    import time

    from cimlib.config import get_home
    from cimlib.ingest import ingest_date

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    base = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    home = get_home(base / "home")
    folder = write_extract(base / "raw", home)
    t = time.perf_counter()
    write_big(folder, n_txn=n)
    print(f"generated in {time.perf_counter() - t:.1f}s")
    import hashlib

    def lake_digest() -> str:
        h = hashlib.sha256()
        for p in sorted(home.lake.rglob("*.parquet")):
            h.update(p.read_bytes())
        return h.hexdigest()[:16]

    for bad in (False, False, True):
        if bad:  # plant a few bad rows near the end: negative amount, orphan account
            with (folder / "CORE_transaction.csv").open("a") as fh:
                fh.write("X1,6230000000000000001,2024-01-05 10:00:00,-5.00,C,ATM,DEPOSIT,OWN,\n")
                fh.write("X2,9999999999999999999,2024-01-05 10:00:00,5.00,C,ATM,DEPOSIT,OWN,\n")
        t = time.perf_counter()
        r = ingest_date(folder, home)
        s = time.perf_counter() - t
        tx = r["tables"]["transaction"]
        print(
            json.dumps(r["totals"]),
            f"{s:.2f}s for the date; transaction table {tx['seconds']:.2f}s = "
            f"{tx['rows_read'] / tx['seconds']:,.0f} rows/s; lake {lake_digest()}",
        )
    print(base)


if __name__ == "__main__":
    _bench()
