"""The single-customer 360 view (individual and corporate), scoped, masked and audited."""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from cimlib.access import AccessError as _AccessError
from cimlib.access import (
    NotFoundOrNotPermitted,
    Principal,
    Snapshot,
    audit_log,
    mask_value,
    require_detail,
    scope_clause,
)
from cimlib.customer import _data as D
from cimlib.customer._settings import Settings, load_settings
from cimlib.customer._value import value_section

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- SQL
# Fixed statements: the only values that vary are bound parameters.
_IDENTITY = """
SELECT d.customer_id, d.customer_type, d.id_no_or_credit_code, d.cust_name, d.phone, d.sex, d.birthday, d.age,
       d.education, d.occupation, CAST(d.monthly_income AS DOUBLE) AS monthly_income, d.marital_status,
       d.address, d.id_expiry_date, d.economic_nature, d.enterprise_form, d.industry,
       CAST(d.registered_capital AS DOUBLE) AS registered_capital, d.legal_rep_name, d.established_date,
       d.group_code, d.group_name,
       d.home_org_code, d.home_org_name, d.county_code, d.county_name, d.manager_no, d.manager_name,
       d.manager_since, d.first_open_date, d.first_seen_date, d.last_seen_date, d.is_current,
       d.merged_cust_nos, d.source_systems
FROM dim_customer AS d
WHERE d.customer_id = ? AND {scope}
"""
_RESOLVE = "SELECT customer_id FROM core_cust_no_map WHERE cust_no = ?"
_MONTHS = """
SELECT as_of_date,
       CAST(deposit_balance AS DOUBLE) AS deposit_balance, CAST(demand_balance AS DOUBLE) AS demand_balance,
       CAST(time_balance AS DOUBLE) AS time_balance, CAST(deposit_adb AS DOUBLE) AS deposit_adb,
       CAST(wealth_aum AS DOUBLE) AS wealth_aum, CAST(wmp_value AS DOUBLE) AS wmp_value,
       CAST(fund_value AS DOUBLE) AS fund_value, CAST(insurance_value AS DOUBLE) AS insurance_value,
       CAST(bond_value AS DOUBLE) AS bond_value, CAST(gold_value AS DOUBLE) AS gold_value,
       CAST(aum AS DOUBLE) AS aum, CAST(loan_balance AS DOUBLE) AS loan_balance,
       CAST(loan_adb AS DOUBLE) AS loan_adb, n_active_loans, max_days_past_due, worst_five_class,
       CAST(npl_balance AS DOUBLE) AS npl_balance, CAST(credit_line_amount AS DOUBLE) AS credit_line_amount,
       CAST(credit_line_used AS DOUBLE) AS credit_line_used, n_debit_cards, n_credit_cards, n_products,
       txn_count, CAST(txn_amount AS DOUBLE) AS txn_amount, customer_txn_count, digital_txn_count,
       txn_count_counter, txn_count_atm, txn_count_pos, txn_count_phone, txn_count_online,
       txn_count_mobile, txn_count_system,
       CAST(txn_amount_counter AS DOUBLE) AS txn_amount_counter,
       CAST(txn_amount_atm AS DOUBLE) AS txn_amount_atm,
       CAST(txn_amount_pos AS DOUBLE) AS txn_amount_pos, CAST(txn_amount_phone AS DOUBLE) AS txn_amount_phone,
       CAST(txn_amount_online AS DOUBLE) AS txn_amount_online,
       CAST(txn_amount_mobile AS DOUBLE) AS txn_amount_mobile,
       CAST(txn_amount_system AS DOUBLE) AS txn_amount_system,
       CAST(inflow_amount AS DOUBLE) AS inflow_amount, CAST(outflow_amount AS DOUBLE) AS outflow_amount,
       last_txn_time
FROM mart_customer_month
WHERE customer_id = ?
ORDER BY as_of_date
"""
_DEPOSITS = """
SELECT account_no, product_code, account_type, currency, org_code, open_date, close_date, status,
       CAST(rate AS DOUBLE) AS rate, term_months, maturity_date, CAST(balance AS DOUBLE) AS balance,
       CAST(adb AS DOUBLE) AS adb
FROM core_deposit_month
WHERE customer_id = ? AND as_of_date = ?
ORDER BY account_type, open_date, account_no
"""
_WEALTH = """
SELECT holding_no, product_code, wealth_type, org_code, CAST(market_value AS DOUBLE) AS market_value,
       buy_date, maturity_date
FROM core_wealth_month
WHERE customer_id = ? AND as_of_date = ?
ORDER BY buy_date, holding_no
"""
_LINES = """
SELECT as_of_date, line_no, org_code, CAST(line_amount AS DOUBLE) AS line_amount,
       CAST(used_amount AS DOUBLE) AS used_amount, start_date, expiry_date, status
FROM core_credit_line_month
WHERE customer_id = ? AND as_of_date <= ? AND as_of_date >= ?
ORDER BY as_of_date, line_no
"""
_LOANS = """
SELECT loan_no, product_code, org_code, manager_no, loan_form,
       CAST(contract_amount AS DOUBLE) AS contract_amount,
       CAST(balance AS DOUBLE) AS balance, CAST(rate AS DOUBLE) AS rate, start_date, maturity_date,
       days_past_due, five_class, status, credit_line_no
FROM core_loan_month
WHERE customer_id = ? AND as_of_date = ?
ORDER BY start_date, loan_no
"""
_CARDS = """
SELECT card_no, card_type, product_code, account_no, org_code, issue_date, expiry_date, status,
       CAST(credit_limit AS DOUBLE) AS credit_limit, CAST(balance AS DOUBLE) AS balance
FROM core_card_month
WHERE customer_id = ? AND as_of_date = ?
ORDER BY issue_date, card_no
"""
_BUSINESS = """
SELECT biz_no, biz_type, org_code, CAST(amount AS DOUBLE) AS amount, CAST(fee AS DOUBLE) AS fee, issue_date,
       maturity_date, status
FROM core_corp_business_month
WHERE customer_id = ? AND as_of_date = ?
ORDER BY issue_date, biz_no
"""
_FINANCIALS = """
SELECT fiscal_year, CAST(revenue AS DOUBLE) AS revenue, CAST(total_assets AS DOUBLE) AS total_assets,
       CAST(total_liabilities AS DOUBLE) AS total_liabilities, CAST(net_profit AS DOUBLE) AS net_profit
FROM core_corp_financials
WHERE customer_id = ? AND as_of_date = ?
ORDER BY fiscal_year
"""
_GUAR_RECEIVED = """
SELECT guarantee_no, loan_no, guarantee_type, guarantor_customer_id, guarantor_cust_no, guarantor_name,
       CAST(amount AS DOUBLE) AS amount, start_date, end_date, loan_five_class,
       CAST(loan_balance AS DOUBLE) AS loan_balance, loan_days_past_due
FROM core_guarantee_month
WHERE borrower_customer_id = ? AND as_of_date = ?
ORDER BY guarantee_no
"""
_GUAR_RECEIVED_COLS = [
    "guarantee_no", "loan_no", "guarantee_type", "guarantor_customer_id", "guarantor_cust_no",
    "guarantor_name", "amount", "start_date", "end_date", "loan_five_class", "loan_balance",
    "loan_days_past_due",
]  # fmt: skip
_GUAR_GIVEN = """
SELECT guarantee_no, loan_no, guarantee_type, borrower_customer_id, CAST(amount AS DOUBLE) AS amount,
       start_date, end_date, loan_five_class, CAST(loan_balance AS DOUBLE) AS loan_balance, loan_days_past_due
FROM core_guarantee_month
WHERE guarantor_customer_id = ? AND as_of_date = ?
ORDER BY guarantee_no
"""
_PARTIES = "SELECT customer_id, customer_type, cust_name FROM dim_customer WHERE customer_id IN ({marks})"

CHANNELS = ("COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE", "SYSTEM")
DIGITAL = frozenset({"PHONE", "ONLINE", "MOBILE"})
WEALTH_TYPES = ("WMP", "FUND", "INSURANCE", "BOND", "GOLD")
_OVERVIEW_MASK = {
    "cust_name": "name",
    "id_no": "id_no",
    "phone": "phone",
    "address": "address",
    "legal_rep_name": "name",
}


@dataclass
class Customer360:
    """Everything one customer holds and does at one as-of month, as plain frames and dicts.

    Personal data is already masked for the principal it was built for (``masked_fields`` says what).
    Money is in yuan (floats, for display and charts; the warehouse keeps DECIMAL). The corporate frames
    are empty for individuals.
    """

    customer_id: str
    customer_type: str
    as_of: dt.date
    snapshot_id: str
    available_months: list[str]
    overview: dict[str, Any]
    accounts: pd.DataFrame
    assets: pd.DataFrame
    credit_lines: pd.DataFrame
    loans: pd.DataFrame
    products: pd.DataFrame
    trend: pd.DataFrame
    channel_mix: pd.DataFrame
    events: pd.DataFrame
    risk_flags: pd.DataFrame
    cards: pd.DataFrame = field(default_factory=pd.DataFrame)
    wealth: pd.DataFrame = field(default_factory=pd.DataFrame)
    financials: pd.DataFrame = field(default_factory=pd.DataFrame)
    guarantees_given: pd.DataFrame = field(default_factory=pd.DataFrame)
    guarantees_received: pd.DataFrame = field(default_factory=pd.DataFrame)
    business: pd.DataFrame = field(default_factory=pd.DataFrame)
    settlement: pd.DataFrame = field(default_factory=pd.DataFrame)
    value: dict[str, Any] = field(default_factory=dict)
    contribution_by_product: pd.DataFrame = field(default_factory=pd.DataFrame)
    contribution_trend: pd.DataFrame = field(default_factory=pd.DataFrame)
    masked_fields: list[str] = field(default_factory=list)

    @property
    def is_corporate(self) -> bool:
        """True for a corporate customer (``customer_type == "C"``)."""
        return self.customer_type == "C"

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every frame of the view by name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), pd.DataFrame)
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: frames become lists of records; dates ISO strings; NaN ``None``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = D.json_safe(getattr(self, f.name))
        return out


# ------------------------------------------------------------------------------------------ helpers
def _add_months(d: dt.date, n: int) -> dt.date:
    m = d.year * 12 + d.month - 1 + n
    y, mo = divmod(m, 12)
    return dt.date(y, mo + 1, min(d.day, calendar.monthrange(y, mo + 1)[1]))


def _next_birthday(birthday: dt.date, after: dt.date) -> dt.date:
    def on(year: int) -> dt.date:
        day = min(birthday.day, calendar.monthrange(year, birthday.month)[1])
        return dt.date(year, birthday.month, day)

    d = on(after.year)
    return d if d > after else on(after.year + 1)


def _days(d: Any, as_of: dt.date) -> int | None:
    return (d - as_of).days if isinstance(d, dt.date) else None


def _in_window(d: Any, as_of: dt.date, horizon: int) -> bool:
    return isinstance(d, dt.date) and as_of < d <= as_of + dt.timedelta(days=horizon)


def _rows(cols: list[str], rows: list[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _lookup_identity(snap: Snapshot, principal: Principal, key: str) -> dict[str, Any] | None:
    """The customer's identity row if it exists and is in scope, else ``None``.

    The scope is a condition of the query itself. When the key is not a customer id, it is resolved as
    any source system's customer number, and the scoped query runs again. Every miss takes the same three
    queries, so a customer out of scope and a customer that does not exist look the same.
    """
    scope_sql, scope_params = scope_clause(principal, "d")
    sql = _IDENTITY.format(scope=scope_sql)
    cols, rows = snap.query(sql, [key, *scope_params])
    if not rows:
        _, found = snap.query(_RESOLVE, [key])
        resolved = found[0][0] if found else key
        cols, rows = snap.query(sql, [resolved, *scope_params])
    return dict(zip(cols, rows[0], strict=True)) if rows else None


# ------------------------------------------------------------------------------------------- pieces
def _overview(
    ident: dict[str, Any], month: dict[str, Any] | None, as_of: dt.date, snap: Snapshot, st: Settings
) -> dict[str, Any]:
    lab = D.labels(snap)
    m = month or {}
    adb_aum = float(m.get("deposit_adb") or 0) + float(m.get("wealth_aum") or 0)
    tier = st.tier_of(adb_aum)
    has_dep = float(m.get("deposit_balance") or 0) > 0
    has_wealth = float(m.get("wealth_aum") or 0) > 0
    has_credit = float(m.get("loan_balance") or 0) > 0 or float(m.get("credit_line_amount") or 0) > 0
    if has_credit and (has_dep or has_wealth):
        segment = "RELATIONSHIP"
    elif has_credit:
        segment = "BORROWER"
    elif has_wealth:
        segment = "INVESTOR"
    elif has_dep:
        segment = "SAVER"
    else:
        segment = "INACTIVE"
    first_open = ident.get("first_open_date")
    tenure = None
    if isinstance(first_open, dt.date):
        tenure = round(max((as_of - first_open).days, 0) / 365.25, 1)
    is_c = ident["customer_type"] == "C"
    ov: dict[str, Any] = {
        "customer_id": ident["customer_id"],
        "customer_type": ident["customer_type"],
        "cust_name": ident["cust_name"],
        "id_no": ident["id_no_or_credit_code"],
        "phone": ident["phone"],
        "home_org_code": ident["home_org_code"],
        "home_org_name": ident["home_org_name"],
        "county_code": ident["county_code"],
        "county_name": ident["county_name"],
        "manager_no": ident["manager_no"],
        "manager_name": ident["manager_name"],
        "manager_since": ident["manager_since"],
        "first_open_date": first_open,
        "tenure_years": tenure,
        "source_systems": list(ident.get("source_systems") or []),
        "merged_cust_nos": sorted(set(ident.get("merged_cust_nos") or [])),
        "is_current": ident["is_current"],
        "as_of": as_of,
        "exists_at_as_of": month is not None,
        "segment": segment,
        "tier": tier.code,
        "tier_en": tier.en,
        "tier_zh": tier.zh,
        "tier_basis": round(adb_aum, 2),
        "deposit_balance": m.get("deposit_balance", 0.0),
        "deposit_adb": m.get("deposit_adb", 0.0),
        "wealth_aum": m.get("wealth_aum", 0.0),
        "aum": m.get("aum", 0.0),
        "loan_balance": m.get("loan_balance", 0.0),
        "npl_balance": m.get("npl_balance", 0.0),
        "credit_line_amount": m.get("credit_line_amount", 0.0),
        "credit_line_used": m.get("credit_line_used", 0.0),
        "n_products": int(m.get("n_products") or 0),
        "worst_five_class": m.get("worst_five_class"),
        "max_days_past_due": m.get("max_days_past_due"),
        "last_txn_time": m.get("last_txn_time"),
    }
    if is_c:
        ov.update(
            {
                "credit_code": ident["id_no_or_credit_code"],
                "economic_nature": ident["economic_nature"],
                "enterprise_form": ident["enterprise_form"],
                "industry": ident["industry"],
                "industry_label": lab.get(("industry", ident["industry"] or ""), (None, None))[0],
                "registered_capital": ident["registered_capital"],
                "legal_rep_name": ident["legal_rep_name"],
                "established_date": ident["established_date"],
                "group": ident["group_name"],  # the enterprise group (集团客户) the credit system records
                "group_code": ident["group_code"],
            }
        )
    else:
        ov.update(
            {
                "sex": ident["sex"],
                "birthday": ident["birthday"],
                "age": ident["age"],
                "education": ident["education"],
                "occupation": ident["occupation"],
                "monthly_income": ident["monthly_income"],
                "marital_status": ident["marital_status"],
                "address": ident["address"],
                "id_expiry_date": ident["id_expiry_date"],
            }
        )
    return ov


def _trend(months: list[dict[str, Any]], as_of: dt.date, n: int) -> pd.DataFrame:
    keep = [m for m in months if m["as_of_date"] <= as_of][-n:]
    cols = [
        "as_of_date", "deposit_balance", "demand_balance", "time_balance", "deposit_adb", "wealth_aum", "aum",
        "loan_balance", "credit_line_used", "n_products", "txn_count", "customer_txn_count",
        "digital_txn_count", "inflow_amount", "outflow_amount",
    ]  # fmt: skip
    f = D.frame(cols, [tuple(m[c] for c in cols) for m in keep])
    f.insert(0, "month", [d.strftime("%Y-%m") for d in f["as_of_date"]])
    return f


def _channel_mix(months: list[dict[str, Any]], as_of: dt.date, n: int, snap: Snapshot) -> pd.DataFrame:
    lab = D.labels(snap)
    window = [m for m in months if m["as_of_date"] <= as_of][-n:]
    cur = window[-1] if window and window[-1]["as_of_date"] == as_of else None
    rows = []
    tot = sum(int(m[f"txn_count_{c.lower()}"] or 0) for m in window for c in CHANNELS)
    for c in CHANNELS:
        k, a = f"txn_count_{c.lower()}", f"txn_amount_{c.lower()}"
        cnt_n = sum(int(m[k] or 0) for m in window)
        en, zh = lab.get(("channel", c), (c, c))
        rows.append(
            (
                c, en, zh, c in DIGITAL,
                int(cur[k] or 0) if cur else 0, float(cur[a] or 0) if cur else 0.0,
                cnt_n, float(sum(float(m[a] or 0) for m in window)),
                round(cnt_n / tot, 4) if tot else 0.0,
            )
        )  # fmt: skip
    return D.frame(
        ["channel", "label_en", "label_zh", "digital", "txn_count", "txn_amount", "txn_count_window",
         "txn_amount_window", "share_window"],
        rows,
    )  # fmt: skip


def _products(
    deposits: list[dict], loans: list[dict], cards: list[dict], wealth: list[dict], snap: Snapshot
) -> pd.DataFrame:
    """Products held, as the warehouse counts them (``mart_customer_month.n_products``)."""
    cat = D.products(snap)
    held: dict[str, list[float]] = {}

    def add(code: str, amount: float) -> None:
        e = held.setdefault(code, [0, 0.0])
        e[0] += 1
        e[1] += amount or 0.0

    for r in deposits:
        if r["status"] != "CLOSED":
            add(r["product_code"], r["balance"])
    for r in loans:
        if r["status"] == "ACTIVE":
            add(r["product_code"], r["balance"])
    for r in cards:
        if r["status"] == "ACTIVE":
            add(r["product_code"], r["balance"] or 0.0)
    for r in wealth:
        if (r["market_value"] or 0) > 0:
            add(r["product_code"], r["market_value"])
    rows = []
    for code in sorted(held):
        name, category, subtype = cat.get(code, (None, None, None))
        rows.append((code, name, category, subtype, int(held[code][0]), round(held[code][1], 2)))
    return D.frame(["product_code", "product_name", "category", "subtype", "n_items", "balance"], rows)


def _assets(month: dict[str, Any] | None) -> pd.DataFrame:
    m = month or {}
    parts = [
        ("DEMAND_DEPOSIT", "DEPOSIT", m.get("demand_balance", 0.0)),
        ("TIME_DEPOSIT", "DEPOSIT", m.get("time_balance", 0.0)),
    ] + [(t, "WEALTH", m.get(f"{t.lower()}_value", 0.0)) for t in WEALTH_TYPES]
    total = sum(float(v or 0) for *_, v in parts)
    rows = [(k, g, float(v or 0), round(float(v or 0) / total, 4) if total else 0.0) for k, g, v in parts]
    return D.frame(["asset_type", "group", "value", "share"], rows)


def _events(
    ident: dict[str, Any],
    deposits: list[dict],
    loans: list[dict],
    lines: list[dict],
    cards: list[dict],
    wealth: list[dict],
    business: list[dict],
    as_of: dt.date,
    horizon: int,
) -> list[tuple]:
    ev: list[tuple] = []
    for r in deposits:
        if (
            r["account_type"] == "TIME"
            and r["status"] != "CLOSED"
            and _in_window(r["maturity_date"], as_of, horizon)
        ):
            ev.append(
                (
                    "TIME_DEPOSIT_MATURITY",
                    r["account_no"],
                    r["maturity_date"],
                    r["balance"],
                    r["product_code"],
                )
            )
    for r in lines:
        if r["status"] == "ACTIVE" and _in_window(r["expiry_date"], as_of, horizon):
            ev.append(("CREDIT_LINE_EXPIRY", r["line_no"], r["expiry_date"], r["line_amount"], None))
    for r in loans:
        if r["status"] == "ACTIVE" and _in_window(r["maturity_date"], as_of, horizon):
            ev.append(("LOAN_MATURITY", r["loan_no"], r["maturity_date"], r["balance"], r["product_code"]))
    for r in wealth:
        if (r["market_value"] or 0) > 0 and _in_window(r["maturity_date"], as_of, horizon):
            ev.append(
                ("WEALTH_MATURITY", r["holding_no"], r["maturity_date"], r["market_value"], r["product_code"])
            )
    for r in cards:
        if r["status"] in ("ACTIVE", "FROZEN") and _in_window(r["expiry_date"], as_of, horizon):
            ev.append(("CARD_EXPIRY", r["card_no"], r["expiry_date"], None, r["product_code"]))
    for r in business:
        if (
            r["status"] == "OPEN"
            and r["biz_type"] != "SETTLEMENT"
            and _in_window(r["maturity_date"], as_of, horizon)
        ):
            ev.append((f"{r['biz_type']}_MATURITY", r["biz_no"], r["maturity_date"], r["amount"], None))
    if ident["customer_type"] == "I":
        if isinstance(ident.get("birthday"), dt.date):
            nb = _next_birthday(ident["birthday"], as_of)
            if _in_window(nb, as_of, horizon):
                ev.append(("BIRTHDAY", "", nb, None, None))
        if _in_window(ident.get("id_expiry_date"), as_of, horizon):
            ev.append(("ID_EXPIRY", "", ident["id_expiry_date"], None, None))
    ev.sort(key=lambda e: (e[2], e[0], e[1]))
    return [(t, ref, d, (d - as_of).days, amt, prod) for t, ref, d, amt, prod in ev]


def _risk_flags(
    ident: dict[str, Any],
    deposits: list[dict],
    loans: list[dict],
    line_hist: list[dict],
    guar_given: list[dict],
    fin: list[dict],
    months: list[dict],
    as_of: dt.date,
    snap: Snapshot,
    st: Settings,
) -> list[tuple]:
    r_ = st.risk
    npl = D.npl_classes(snap)
    flags: list[tuple] = []

    def add(flag: str, severity: str, ref: str, value: Any, detail: str) -> None:
        flags.append((flag, severity, ref, value, detail))

    for ln in loans:
        if ln["status"] == "WRITTEN_OFF":
            add("LOAN_WRITTEN_OFF", "high", ln["loan_no"], ln["contract_amount"], "loan written off")
            continue
        if ln["status"] != "ACTIVE":
            continue
        dpd = int(ln["days_past_due"] or 0)
        if dpd > 0:
            add("LOAN_OVERDUE", "high" if dpd > 90 else "medium", ln["loan_no"], dpd, f"{dpd} days past due")
        if ln["five_class"] in npl:
            add("LOAN_NPL", "high", ln["loan_no"], ln["balance"], f"classified {ln['five_class']}")
        elif ln["five_class"] == "SPECIAL_MENTION":
            add("LOAN_SPECIAL_MENTION", "medium", ln["loan_no"], ln["balance"], "classified SPECIAL_MENTION")
    lines_now = [x for x in line_hist if x["as_of_date"] == as_of]
    since = _add_months(as_of, -(r_.line_unused_months - 1))
    for ln in lines_now:
        amt, used = float(ln["line_amount"] or 0), float(ln["used_amount"] or 0)
        if ln["status"] == "FROZEN":
            add("LINE_FROZEN", "high", ln["line_no"], amt, "credit line frozen")
        if ln["status"] != "ACTIVE" or amt <= 0:
            continue
        util = used / amt
        if used > amt:
            add("LINE_OVER_LIMIT", "high", ln["line_no"], round(util, 4), "drawn above the approved line")
        elif util >= r_.line_utilisation_high:
            add("LINE_HIGH_UTILISATION", "medium", ln["line_no"], round(util, 4), f"utilisation {util:.0%}")
        if _in_window(ln["expiry_date"], as_of, r_.line_expiry_days):
            add("LINE_EXPIRING", "low", ln["line_no"], ln["expiry_date"], f"expires {ln['expiry_date']}")
        hist = [x for x in line_hist if x["line_no"] == ln["line_no"] and x["as_of_date"] >= since]
        months_seen = {x["as_of_date"] for x in hist}
        if (
            isinstance(ln["start_date"], dt.date)
            and ln["start_date"] <= since
            and len(months_seen) >= r_.line_unused_months
            and all(float(x["used_amount"] or 0) == 0 for x in hist)
        ):
            add("LINE_UNUSED", "low", ln["line_no"], r_.line_unused_months,
                f"nothing drawn for {r_.line_unused_months} months")  # fmt: skip
    for a in deposits:
        if a["status"] == "FROZEN":
            add("ACCOUNT_FROZEN", "medium", a["account_no"], a["balance"], "account frozen")
        elif a["status"] == "DORMANT":
            add("ACCOUNT_DORMANT", "low", a["account_no"], a["balance"], "account dormant")
    hist = [m for m in months if m["as_of_date"] <= as_of]
    if len(hist) > r_.value_drop_baseline_months and hist[-1]["as_of_date"] == as_of:
        base = hist[-1 - r_.value_drop_baseline_months : -1]
        mean = sum(float(m["deposit_adb"] or 0) for m in base) / len(base)
        now = float(hist[-1]["deposit_adb"] or 0)
        if mean >= r_.value_drop_min_adb and now <= mean * (1 - r_.value_drop_pct / 100):
            drop = (mean - now) / mean
            add("VALUE_DROP", "medium", "", round(drop, 4),
                f"deposit ADB down {drop:.0%} against the previous {len(base)} months")  # fmt: skip
    for g in guar_given:
        bad = (g["loan_five_class"] in npl) or int(g["loan_days_past_due"] or 0) > 0
        if bad:
            add("GUARANTEE_EXPOSURE", "high", g["guarantee_no"], g["amount"],
                f"guaranteed loan {g['loan_no']} is {g['loan_five_class']}, "
                f"{int(g['loan_days_past_due'] or 0)} days past due")  # fmt: skip
    if fin:
        last = fin[-1]
        assets = float(last["total_assets"] or 0)
        if float(last["net_profit"] or 0) < 0:
            add(
                "NET_LOSS",
                "medium",
                str(last["fiscal_year"]),
                last["net_profit"],
                f"net loss in {last['fiscal_year']}",
            )
        if assets > 0 and float(last["total_liabilities"] or 0) / assets >= r_.leverage_high:
            ratio = float(last["total_liabilities"]) / assets
            add(
                "HIGH_LEVERAGE",
                "medium",
                str(last["fiscal_year"]),
                round(ratio, 4),
                f"liabilities {ratio:.0%} of assets",
            )
    order = {"high": 0, "medium": 1, "low": 2}
    flags.sort(key=lambda f: (order[f[1]], f[0], str(f[2])))
    return flags


# --------------------------------------------------------------------------------------------- main
def _build(
    snap: Snapshot,
    principal: Principal,
    ident: dict[str, Any],
    as_of: dt.date,
    st: Settings,
    home: D.HomeLike = None,
) -> Customer360:
    cid = ident["customer_id"]
    is_c = ident["customer_type"] == "C"
    mc, mrows = snap.query(_MONTHS, [cid])
    months = _rows(mc, mrows)
    month = next((m for m in months if m["as_of_date"] == as_of), None)
    dc, drows = snap.query(_DEPOSITS, [cid, as_of])
    deposits = _rows(dc, drows)
    wc, wrows = snap.query(_WEALTH, [cid, as_of])
    wealth = _rows(wc, wrows)
    lc, lrows = snap.query(_LINES, [cid, as_of, _add_months(as_of, -(st.risk.line_unused_months - 1))])
    line_hist = _rows(lc, lrows)
    lines = [x for x in line_hist if x["as_of_date"] == as_of]
    nc, nrows = snap.query(_LOANS, [cid, as_of])
    loans = _rows(nc, nrows)
    cc, crows = snap.query(_CARDS, [cid, as_of])
    cards = _rows(cc, crows)
    gc, grows = snap.query(_GUAR_RECEIVED, [cid, as_of]) if loans else (_GUAR_RECEIVED_COLS, [])
    received = _rows(gc, grows)
    business: list[dict] = []
    fin: list[dict] = []
    given: list[dict] = []
    if is_c:
        bc, brows = snap.query(_BUSINESS, [cid, as_of])
        business = _rows(bc, brows)
        fc, frows = snap.query(_FINANCIALS, [cid, as_of])
        fin = _rows(fc, frows)
    if cid in D.guarantors(snap):  # guarantees this customer gives (a scan, so only for known guarantors)
        ggc, ggrows = snap.query(_GUAR_GIVEN, [cid, as_of])
        given = _rows(ggc, ggrows)
    horizon = st.events.horizon_days
    cat = D.products(snap)

    # --- frames (each built once from prepared rows: pandas construction dominates the Python cost)
    def pname(code: str) -> str | None:
        return cat.get(code, (None,))[0]

    def acct(v: Any) -> Any:
        return mask_value(principal, "account_no", v)

    accounts = D.frame(
        [*dc[:2], "product_name", *dc[2:]],
        [(acct(r[0]), r[1], pname(r[1]), *r[2:]) for r in drows],
    )
    wealth_f = D.frame([*wc[:2], "product_name", *wc[2:]], [(*r[:2], pname(r[1]), *r[2:]) for r in wrows])
    lines_f = D.frame(
        ["line_no", "org_code", "line_amount", "used_amount", "utilisation", "start_date", "expiry_date",
         "days_to_expiry", "status"],
        [(x["line_no"], x["org_code"], x["line_amount"], x["used_amount"],
          round(x["used_amount"] / x["line_amount"], 4) if x["line_amount"] else None, x["start_date"],
          x["expiry_date"], _days(x["expiry_date"], as_of), x["status"]) for x in lines],
    )  # fmt: skip
    loans_f = D.frame([*nc[:2], "product_name", *nc[2:]], [(*r[:2], pname(r[1]), *r[2:]) for r in nrows])
    cards_f = D.frame(
        cc,
        [(mask_value(principal, "card_no", r[0]), *r[1:3], acct(r[3]), *r[4:]) for r in crows],
    )
    products = _products(deposits, loans, cards, wealth, snap)
    trend = _trend(months, as_of, st.trend_months)
    channel = _channel_mix(months, as_of, st.trend_months, snap)
    ref_field = {"TIME_DEPOSIT_MATURITY": "account_no", "CARD_EXPIRY": "card_no"}
    ev = _events(ident, deposits, loans, lines, cards, wealth, business, as_of, horizon)
    events = D.frame(
        ["event_type", "ref_no", "event_date", "days_until", "amount", "product_code"],
        [
            (e[0], mask_value(principal, ref_field[e[0]], e[1]) if e[0] in ref_field else e[1], *e[2:])
            for e in ev
        ],
    )
    acct_flags = {"ACCOUNT_FROZEN", "ACCOUNT_DORMANT"}
    flags = _risk_flags(ident, deposits, loans, line_hist, given, fin, months, as_of, snap, st)
    risk = D.frame(
        ["flag", "severity", "ref_no", "value", "detail"],
        [(f[0], f[1], acct(f[2]) if f[0] in acct_flags else f[2], *f[3:]) for f in flags],
    )

    # --- corporate frames
    financials = D.frame(
        ["fiscal_year", "revenue", "total_assets", "total_liabilities", "net_profit", "debt_ratio",
         "net_margin"],
        [(r["fiscal_year"], r["revenue"], r["total_assets"], r["total_liabilities"], r["net_profit"],
          round(r["total_liabilities"] / r["total_assets"], 4) if r["total_assets"] else None,
          round(r["net_profit"] / r["revenue"], 4) if r["revenue"] else None) for r in fin],
    )  # fmt: skip
    parties: dict[str, tuple[str, str]] = {}
    ids = sorted({g["guarantor_customer_id"] for g in received if g["guarantor_customer_id"]}
                 | {g["borrower_customer_id"] for g in given if g["borrower_customer_id"]})  # fmt: skip
    if ids:
        _, prow = snap.query(_PARTIES.format(marks=", ".join("?" * len(ids))), ids)
        parties = {r[0]: (r[1], r[2]) for r in prow}

    def party_name(pid: str | None, fallback: str | None) -> Any:
        ctype, name = parties.get(pid or "", (None, fallback))
        return name if ctype == "C" else mask_value(principal, "name", name)

    gi = gc.index("guarantor_name")
    g_recv = D.frame(gc, [(*r[:gi], party_name(r[3], r[gi]), *r[gi + 1 :]) for r in grows])
    g_given = D.frame(
        ["guarantee_no", "loan_no", "guarantee_type", "borrower_customer_id", "borrower_name", "amount",
         "start_date", "end_date", "loan_five_class", "loan_balance", "loan_days_past_due"],
        [(g["guarantee_no"], g["loan_no"], g["guarantee_type"], g["borrower_customer_id"],
          party_name(g["borrower_customer_id"], None), g["amount"], g["start_date"], g["end_date"],
          g["loan_five_class"], g["loan_balance"], g["loan_days_past_due"]) for g in given],
    )  # fmt: skip
    biz_cols = ["biz_no", "biz_type", "org_code", "amount", "fee", "issue_date", "maturity_date", "status"]
    biz = D.frame(
        biz_cols, [tuple(r[c] for c in biz_cols) for r in business if r["biz_type"] != "SETTLEMENT"]
    )
    start = _add_months(as_of, -(st.trend_months - 1)).replace(day=1)
    sett: dict[str, list[float]] = {}
    for r in business:
        if (
            r["biz_type"] == "SETTLEMENT"
            and isinstance(r["issue_date"], dt.date)
            and start <= r["issue_date"] <= as_of
        ):
            e = sett.setdefault(r["issue_date"].strftime("%Y-%m"), [0, 0.0, 0.0])
            e[0] += 1
            e[1] += r["amount"] or 0.0
            e[2] += r["fee"] or 0.0
    settlement = D.frame(
        ["month", "n_settlements", "amount", "fee"],
        [(k, int(v[0]), round(v[1], 2), round(v[2], 2)) for k, v in sorted(sett.items())],
    )

    overview = _overview(ident, month, as_of, snap, st)
    masked = [
        f for f in ("name", "id_no", "phone", "account_no", "card_no", "address") if not principal.sees(f)
    ]
    ov_mask = dict(_OVERVIEW_MASK)
    if (
        is_c
    ):  # a company's name and credit code are public register data; its legal representative is a person
        ov_mask.pop("cust_name")
        ov_mask.pop("id_no")
    for k, fld in ov_mask.items():
        if k in overview:
            overview[k] = mask_value(principal, fld, overview[k])
    cust_months = sorted({m["as_of_date"].strftime("%Y-%m") for m in months})
    value, by_product, value_trend = value_section(snap, home, ident, months, as_of, st)
    return Customer360(
        customer_id=cid,
        customer_type=ident["customer_type"],
        as_of=as_of,
        snapshot_id=snap.snapshot_id,
        available_months=cust_months,
        overview=overview,
        accounts=accounts,
        assets=_assets(month),
        credit_lines=lines_f,
        loans=loans_f,
        products=products,
        trend=trend,
        channel_mix=channel,
        events=events,
        risk_flags=risk,
        cards=cards_f,
        wealth=wealth_f,
        financials=financials if is_c else financials.iloc[0:0],
        guarantees_given=g_given,
        guarantees_received=g_recv,
        business=biz,
        settlement=settlement,
        value=value,
        contribution_by_product=by_product,
        contribution_trend=value_trend,
        masked_fields=masked,
    )


def customer_360(
    principal: Principal,
    customer_id: str,
    *,
    as_of: str | dt.date | None = None,
    home: D.HomeLike = None,
    action: str = "view_360",
) -> Customer360:
    """The 360 view of one customer at one as-of month, scoped, masked and audit-logged.

    Parameters
    ----------
    principal : Principal
        Who is looking (:func:`cimlib.access.principal_for`). The role must allow single-customer detail,
        and the customer must be in its scope.
    customer_id : str
        The customer id, or any source system's customer number of the customer (merged to the real
        customer).
    as_of : str or date, optional
        ``YYYY-MM`` or ``YYYY-MM-DD`` (its month is used); ``None`` is the latest month.
    home : Home or path, optional
        The installation (default ``$CIM_HOME``).
    action : str
        What the audit log records: ``view_360`` (a screen) or ``export_360`` (the CLI, a file).

    Returns
    -------
    Customer360
        The view; personal data masked as the role requires.

    Raises
    ------
    NotPermitted
        When the role has no single-customer detail (checked before any data is read).
    NotFoundOrNotPermitted
        When the customer does not exist or is outside the principal's scope (the same message for both).
    AsOfError
        When ``as_of`` is malformed or its month is not in the warehouse.
    AuditError
        When the audit record cannot be written (the view is then not returned).
    """
    h = D.resolve_home(home)
    target = str(customer_id)[:64]
    try:
        require_detail(principal)
    except _AccessError as exc:
        audit_log(
            h, principal, action, target, None, {"as_of": _s(as_of), "reason": str(exc)}, outcome="refused"
        )
        raise
    t0 = time.perf_counter()
    snap = D.snapshot(h)
    st = load_settings(h)
    try:
        when = D.resolve_as_of(snap, as_of)
    except D.AsOfError as exc:
        audit_log(h, principal, action, target, snap.snapshot_id, {"as_of": _s(as_of), "reason": str(exc)},
                  outcome="bad_request")  # fmt: skip
        raise
    ident = (
        _lookup_identity(snap, principal, str(customer_id).strip()[:64])
        if isinstance(customer_id, str | int)
        else None
    )
    if ident is None:
        audit_log(h, principal, action, target, snap.snapshot_id, {"as_of": when.isoformat()},
                  outcome="not_found_or_not_permitted")  # fmt: skip
        raise NotFoundOrNotPermitted()
    view = _build(snap, principal, ident, when, st, h)
    ms = round((time.perf_counter() - t0) * 1000, 2)
    audit_log(
        h, principal, action, view.customer_id, snap.snapshot_id,
        {"as_of": when.isoformat(), "requested": target if target != view.customer_id else None,
         "masked": view.masked_fields},
    )  # fmt: skip
    log.info("customer 360", extra={"customer_id": view.customer_id, "as_of": when.isoformat(), "ms": ms})
    return view


def _s(v: Any) -> str | None:
    return None if v is None else str(v)[:20]
