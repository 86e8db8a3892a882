"""A tiny hand-made lake for the build tests: 2 as-of dates, all 17 canonical tables.

People (the expected results in test_build.py are computed by hand from these rows):

- customer 1: CORE ``C000000001`` and LOAN ``L000000009`` share ID number ``ID1`` -> one customer,
  customer_id ``C000000001``; the CORE phone changes between the dates; the loan and credit line are
  booked on the LOAN number, whose name differs (CORE's wins).
- customer 2: CORE ``C000000002`` without phone, LOAN ``L000000008`` with phone -> phone from LOAN.
- customer 3: LOAN-only ``L000000007`` -> customer_id ``L000000007``.
- customer 4: corporate CORE ``C000000100``.

GL balances tie out to the account and loan balances (``gl_delta`` breaks one of them).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cimlib.config import Home
from cimlib.contracts import load_contracts
from cimlib.contracts.checkdigits import id_check_char, uscc_check_char

D1, D2 = "2024-01-31", "2024-02-29"
DATES = [D1, D2]
ID1 = "11010119800115123" + id_check_char("11010119800115123")  # male, born 1980-01-15
ID2 = "11010119920220456" + id_check_char("11010119920220456")  # female, born 1992-02-20
ID3 = "11010119751231002" + id_check_char("11010119751231002")  # female, born 1975-12-31
USCC = "91110000MA0000001" + uscc_check_char("91110000MA0000001")
A1, A2, A3, A4 = (f"621000000000000000{i}" for i in range(1, 5))

_PA = {
    "varchar": pa.string(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "boolean": pa.bool_(),
    "money": pa.decimal128(18, 2),
    "rate": pa.decimal128(9, 6),
}


def _m(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


def _d(x: str | None) -> dt.date | None:
    return None if x is None else dt.date.fromisoformat(x)


def _person(d: str, src: str, no: str, id_no: str, name: str, phone: str | None, org: str) -> dict[str, Any]:
    birth = dt.date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    return {
        "src_system": src,
        "cust_no": no,
        "id_no": id_no,
        "cust_name": name,
        "birth_date": birth,
        "sex": "M" if int(id_no[16]) % 2 else "F",
        "education": "SENIOR" if src == "CORE" else None,
        "occupation": "FARMER",
        "monthly_income": Decimal("3000.00"),
        "marital_status": "MARRIED",
        "phone": phone,
        "address": None,
        "id_expiry_date": None,
        "open_date": _d("2015-03-01"),
        "org_code": org,
    }


def rows_for(d: str, gl_delta: Decimal = Decimal("0")) -> dict[str, list[dict[str, Any]]]:
    """The canonical rows of every table on as-of date ``d``."""
    first = d == D1
    days = 31 if first else 29
    r: dict[str, list[dict[str, Any]]] = {}
    r["org"] = [
        {
            "org_code": "100000",
            "org_name": "省联社",
            "org_level": "PROVINCE",
            "parent_code": None,
            "region_code": None,
            "open_date": None,
        },
        {
            "org_code": "110000",
            "org_name": "甲县农商行",
            "org_level": "COUNTY",
            "parent_code": "100000",
            "region_code": "110101",
            "open_date": None,
        },
        {
            "org_code": "110001",
            "org_name": "城关支行",
            "org_level": "BRANCH",
            "parent_code": "110000",
            "region_code": "110101",
            "open_date": None,
        },
        {
            "org_code": "110002",
            "org_name": "东镇支行",
            "org_level": "BRANCH",
            "parent_code": "110000",
            "region_code": "110101",
            "open_date": None,
        },
    ]
    r["staff"] = [
        {
            "staff_no": "E0000001",
            "staff_name": "赵经理",
            "org_code": "110001",
            "role": "CUSTOMER_MANAGER",
            "hire_date": _d("2010-01-01"),
            "status": "ACTIVE",
        },
        {
            "staff_no": "E0000002",
            "staff_name": "钱经理",
            "org_code": "110002",
            "role": "CUSTOMER_MANAGER",
            "hire_date": _d("2012-01-01"),
            "status": "ACTIVE",
        },
    ]

    def prod(code: str, name: str, cat: str, sub: str, gl: str | None) -> dict[str, Any]:
        return {
            "product_code": code,
            "product_name": name,
            "category": cat,
            "subtype": sub,
            "term_months": None,
            "base_rate": None,
            "gl_subject": gl,
            "launch_date": None,
        }

    r["product"] = [
        prod("DP0001", "活期", "DEPOSIT", "DEMAND", "2011"),
        prod("DP0002", "定期一年", "DEPOSIT", "TIME", "2012"),
        prod("LN0001", "消费贷", "LOAN", "CONSUMER", "1301"),
        prod("LN0002", "流贷", "LOAN", "CORPORATE", "1302"),
        prod("CD0001", "借记卡", "CARD", "DEBIT", None),
        prod("WM0001", "理财一号", "WEALTH", "WMP", None),
        prod("IB0001", "承兑", "INTERMEDIATE", "ACCEPTANCE", None),
    ]
    people = [
        _person(d, "CORE", "C000000001", ID1, "张三", "13800000001" if first else "13800000011", "110001"),
        _person(d, "CORE", "C000000002", ID2, "李四", None, "110002"),
        _person(d, "LOAN", "L000000008", ID2, "李四", "13900000008", "110002"),
        _person(d, "LOAN", "L000000007", ID3, "王五", "13900000007", "110002"),
        _person(d, "LOAN", "L000000009", ID1, "张叁", "13900000009", "110002"),
    ]
    r["individual_customer"] = people
    r["corporate_customer"] = [
        {
            "src_system": "CORE",
            "cust_no": "C000000100",
            "credit_code": USCC,
            "cust_name": "甲县农机合作社",
            "economic_nature": "COLLECTIVE",
            "enterprise_form": "COOPERATIVE",
            "industry": "A",
            "registered_capital": Decimal("1000000.00"),
            "legal_rep_name": "孙六",
            "phone": None,
            "established_date": _d("2010-06-01"),
            "open_date": _d("2011-01-01"),
            "org_code": "110001",
            "group_code": "G00000001",
            "group_name": "甲县农机集团",
        }
    ]
    r["corporate_financials"] = [
        {
            "cust_no": "C000000100",
            "fiscal_year": 2023,
            "revenue": Decimal("5000000.00"),
            "total_assets": Decimal("8000000.00"),
            "total_liabilities": Decimal("3000000.00"),
            "net_profit": Decimal("400000.00"),
        }
    ]

    def acct(no: str, cust: str, prod_code: str, org: str, typ: str) -> dict[str, Any]:
        return {
            "account_no": no,
            "cust_no": cust,
            "product_code": prod_code,
            "org_code": org,
            "account_type": typ,
            "currency": "CNY",
            "open_date": _d("2016-01-01"),
            "close_date": None,
            "status": "NORMAL",
            "rate": Decimal("0.003500"),
            "term_months": 12 if typ == "TIME" else None,
            "maturity_date": _d("2025-01-01") if typ == "TIME" else None,
        }

    r["deposit_account"] = [
        acct(A1, "C000000001", "DP0001", "110001", "DEMAND"),
        acct(A2, "C000000001", "DP0002", "110001", "TIME"),
        acct(A3, "C000000002", "DP0001", "110002", "DEMAND"),
        acct(A4, "C000000100", "DP0001", "110001", "DEMAND"),
    ]
    bal = {  # account: (balance, accum) per date
        A1: ("1000.00", "31010.00") if first else ("1500.00", "36250.00"),
        A2: ("50000.00", "1550000.00") if first else ("50000.00", "1450000.00"),
        A3: ("200.50", "6215.50") if first else ("300.00", "7250.00"),
        A4: ("100000.00", "3100000.00") if first else ("120000.00", "3190000.00"),
    }
    r["account_balance"] = [
        {"account_no": a, "balance": _m(b), "accum_balance": _m(c), "days": days} for a, (b, c) in bal.items()
    ]

    def loan(
        no: str,
        cust: str,
        prod_code: str,
        org: str,
        bal_: str,
        accum: str,
        dpd: int,
        fc: str,
        line: str | None,
    ) -> dict[str, Any]:
        return {
            "loan_no": no,
            "cust_no": cust,
            "product_code": prod_code,
            "org_code": org,
            "manager_no": "E0000002",
            "loan_form": "CREDIT",
            "contract_amount": Decimal("500000.00"),
            "rate": Decimal("0.045000"),
            "start_date": _d("2023-06-01"),
            "maturity_date": _d("2026-06-01"),
            "balance": _m(bal_),
            "accum_balance": _m(accum),
            "days_past_due": dpd,
            "five_class": fc,
            "status": "ACTIVE",
            "credit_line_no": line,
        }

    r["loan"] = [
        loan(
            "LN0000000000001",
            "L000000009",
            "LN0001",
            "110002",
            "20000.00" if first else "19000.00",
            "620000.00" if first else "565500.00",
            0 if first else 5,
            "NORMAL" if first else "SPECIAL_MENTION",
            "CL0000000000001",
        ),
        loan(
            "LN0000000000002",
            "L000000007",
            "LN0001",
            "110002",
            "5000.00",
            "155000.00" if first else "145000.00",
            100,
            "SUBSTANDARD",
            None,
        ),
        loan(
            "LN0000000000003",
            "C000000100",
            "LN0002",
            "110001",
            "300000.00",
            "9300000.00" if first else "8700000.00",
            0,
            "NORMAL",
            None,
        ),
    ]
    r["credit_line"] = [
        {
            "line_no": "CL0000000000001",
            "cust_no": "L000000009",
            "org_code": "110002",
            "line_amount": Decimal("50000.00"),
            "used_amount": _m("20000.00" if first else "19000.00"),
            "start_date": _d("2023-06-01"),
            "expiry_date": _d("2026-06-01"),
            "status": "ACTIVE",
        }
    ]
    r["guarantee"] = [
        {
            "guarantee_no": "G1",
            "loan_no": "LN0000000000003",
            "guarantee_type": "GUARANTEE",
            "guarantor_cust_no": "C000000001",
            "guarantor_name": None,
            "amount": Decimal("100000.00"),
            "start_date": _d("2023-06-01"),
            "end_date": None,
        }
    ]
    r["card"] = [
        {
            "card_no": "6222000000000000001",
            "cust_no": "C000000001",
            "card_type": "DEBIT",
            "product_code": "CD0001",
            "account_no": A1,
            "org_code": "110001",
            "issue_date": _d("2016-01-01"),
            "expiry_date": _d("2026-01-01"),
            "status": "ACTIVE",
            "credit_limit": None,
            "balance": None,
        }
    ]
    r["wealth_holding"] = [
        {
            "holding_no": "H1",
            "cust_no": "C000000002",
            "product_code": "WM0001",
            "wealth_type": "WMP",
            "org_code": "110002",
            "market_value": _m("10000.00" if first else "10100.00"),
            "buy_date": _d("2023-12-01"),
            "maturity_date": None,
        }
    ]
    r["manager_assignment"] = [
        {
            "assignment_no": "MA1",
            "cust_no": "C000000001",
            "staff_no": "E0000001",
            "start_date": _d("2023-01-01"),
            "end_date": _d("2023-12-31"),
        },
        {
            "assignment_no": "MA2",
            "cust_no": "C000000001",
            "staff_no": "E0000002",
            "start_date": _d("2024-01-01"),
            "end_date": None,
        },
        {
            "assignment_no": "MA3",
            "cust_no": "C000000002",
            "staff_no": "E0000001",
            "start_date": _d("2022-05-01"),
            "end_date": None,
        },
    ]
    r["corporate_business"] = [
        {
            "biz_no": "B1",
            "cust_no": "C000000100",
            "org_code": "110001",
            "biz_type": "ACCEPTANCE",
            "amount": Decimal("200000.00"),
            "fee": Decimal("100.00"),
            "issue_date": _d("2023-12-01"),
            "maturity_date": _d("2024-06-01"),
            "status": "OPEN",
        }
    ]

    def txn(tid: str, acc: str, ts: str, amt: str, direction: str, ch: str, typ: str) -> dict[str, Any]:
        return {
            "txn_id": tid,
            "account_no": acc,
            "txn_time": dt.datetime.fromisoformat(ts),
            "amount": _m(amt),
            "direction": direction,
            "channel": ch,
            "txn_type": typ,
            "counterparty": "NONE",
            "mcc": None,
            "teller_no": None,
            "terminal_id": None,
        }

    if first:
        r["transaction"] = [
            txn("T1", A1, "2024-01-05 09:00:00", "500.00", "C", "COUNTER", "DEPOSIT"),
            txn("T2", A1, "2024-01-06 12:00:00", "120.00", "D", "POS", "CONSUME"),
            txn("T3", A1, "2024-01-21 00:00:00", "1.25", "C", "SYSTEM", "INTEREST"),
            txn("T4", A3, "2024-01-09 18:30:00", "50.00", "D", "MOBILE", "TRANSFER_OUT"),
        ]
    else:
        r["transaction"] = [
            txn("T5", A1, "2024-02-02 10:00:00", "200.00", "D", "ATM", "WITHDRAW"),
            txn("T6", A2, "2024-02-21 00:00:00", "100.00", "C", "SYSTEM", "INTEREST"),
            txn("T7", A4, "2024-02-15 15:00:00", "10000.00", "D", "ONLINE", "SETTLEMENT"),
        ]
    gl = {  # (org, subject) -> balance
        ("110001", "2011"): "1000.00" if first else "1500.00",
        ("110001", "2012"): "50000.00",
        ("110001", "2013"): "100000.00" if first else "120000.00",
        ("110002", "2011"): "200.50" if first else "300.00",
        ("110002", "1301"): "25000.00" if first else "24000.00",
        ("110001", "1302"): "300000.00",
    }
    r["gl_balance"] = [
        {
            "org_code": o,
            "subject_code": s,
            "balance": _m(b) + (gl_delta if not first and (o, s) == ("110001", "2011") else 0),
        }
        for (o, s), b in gl.items()
    ]
    return r


def write_date(home: Home, d: str, gl_delta: Decimal = Decimal("0"), report: bool = True) -> None:
    """Write every table's partition for as-of date ``d`` and (last) its load report."""
    contracts = load_contracts()
    rows = rows_for(d, gl_delta)
    assert set(rows) == set(contracts), set(contracts) ^ set(rows)
    for table, c in contracts.items():
        fields = [pa.field("as_of_date", pa.date32())] + [
            pa.field(col.name, _PA[col.type]) for col in c.columns
        ]
        data = [{"as_of_date": dt.date.fromisoformat(d), **row} for row in rows[table]]
        for row in data:
            assert set(row) == {f.name for f in fields}, (table, set(row) ^ {f.name for f in fields})
        out = home.lake / table / f"as_of={d}" / "data.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(data, schema=pa.schema(fields)), out)
    if report:
        loads = home.state / "loads"
        loads.mkdir(parents=True, exist_ok=True)
        (loads / f"{d}.json").write_text(json.dumps({"as_of_date": d, "status": "loaded"}), encoding="utf-8")


def make_lake(root: Path, dates: list[str] | None = None, gl_delta: Decimal = Decimal("0")) -> Home:
    """Write the fixture lake under ``root`` and return its Home."""
    home = Home(root=Path(root), parameters=Path(root) / "parameters")
    for d in DATES if dates is None else dates:
        write_date(home, d, gl_delta)
    return home
