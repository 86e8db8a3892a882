"""The customer 360 view and search against the synthetic bank's planted answers: balances, products
held and upcoming events of sampled customers; individual and corporate views; as-of views of an earlier
month; every search key; risks the generator planted."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil

import pytest
import yaml
from conftest import ROOT, Bank, run_cim

from cimlib.access import Principal, principal_for, warehouse
from cimlib.config import Home
from cimlib.customer import AsOfError, available_months, customer_360, load_settings, search

ALL_FIELDS = ["C1", "C2"]


@pytest.fixture(scope="module")
def home(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A scratch home on the bank's warehouse with a head-office user who sees everything in clear."""
    root = tmp_path_factory.mktemp("c360_home")
    (root / "data").mkdir()
    os.symlink(bank.home / "data" / "warehouse", root / "data" / "warehouse")
    shutil.copytree(ROOT / "parameters", root / "parameters")
    policy = yaml.safe_load((ROOT / "parameters" / "access.yaml").read_text(encoding="utf-8"))
    policy["roles"]["head_office"] = {"scope": "all", "detail": True, "unmasked_classes": ALL_FIELDS}
    policy["users"].append({"user_id": "ho", "display_name": "Head office", "role": "head_office"})
    (root / "parameters" / "access.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), "utf-8")
    return Home(root=root, parameters=root / "parameters")


@pytest.fixture(scope="module")
def ho(home: Home) -> Principal:
    return principal_for("ho", home)


def _answers(bank: Bank, name: str) -> list[dict[str, str]]:
    with open(bank.raw / "_answers" / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def q(home: Home, sql: str, params: list | None = None) -> list[tuple]:
    return warehouse(home).snapshot().query(sql, params or [])[1]


# ------------------------------------------------------------------------------------ planted answers
def test_planted_customers_match_the_answer_file(bank: Bank, home: Home, ho: Principal) -> None:
    rows = _answers(bank, "customers.csv")
    assert len(rows) >= 15
    assert {r["customer_type"] for r in rows} == {"I", "C"}
    assert any(r["other_cust_no"] for r in rows), "no merged duplicate in the sample"
    assert load_settings(home).events.horizon_days == 30  # the horizon the answers were computed with
    last = dt.date.fromisoformat(bank.synth["dates"][-1])
    for r in rows:
        v = customer_360(ho, r["cust_no"], home=home)
        ctx = f"{r['cust_no']} ({r['picked_as']})"
        assert v.as_of == last == dt.date.fromisoformat(r["as_of_date"]), ctx
        assert v.customer_id == r["cust_no"] and v.customer_type == r["customer_type"], ctx
        assert round(v.overview["deposit_balance"], 2) == float(r["deposit_balance"]), ctx
        assert round(v.overview["loan_balance"], 2) == float(r["loan_balance"]), ctx
        assert round(float(v.accounts["balance"].sum()), 2) == float(r["deposit_balance"]), ctx
        held = sorted(x for x in r["products"].split(";") if x)
        assert sorted(v.products["product_code"]) == held, ctx
        assert v.overview["n_products"] == int(r["n_products"]) == len(held), ctx
        expected = sorted(tuple(e.split("|")) for e in r["events"].split(";") if e)
        got = sorted(
            zip(v.events["event_type"], v.events["ref_no"], v.events["event_date"].astype(str), strict=True)
        )
        assert got == expected, ctx
        if r["other_cust_no"]:  # the merged duplicate: its other system's number opens the same customer
            assert r["other_cust_no"] in v.overview["merged_cust_nos"], ctx
            assert customer_360(ho, r["other_cust_no"], home=home).customer_id == r["cust_no"], ctx
            found = search(ho, r["other_cust_no"], home=home)
            assert list(found["customer_id"]) == [r["cust_no"]] and found["matched_on"][0] == "customer_no"


def test_planted_events_show_up(bank: Bank, home: Home, ho: Principal) -> None:
    events = [e for e in _answers(bank, "events.csv") if e["event_type"] != "BIRTHDAY"][:40]
    assert events
    for e in events:
        v = customer_360(ho, e["cust_no"], home=home)
        got = set(
            zip(v.events["event_type"], v.events["ref_no"], v.events["event_date"].astype(str), strict=True)
        )
        assert (e["event_type"], e["ref_no"], e["event_date"]) in got, e


def test_planted_overdue_loans_are_flagged_in_their_month(bank: Bank, home: Home, ho: Principal) -> None:
    risk = [r for r in _answers(bank, "risk.csv") if r["kind"] == "OVERDUE"][:15]
    assert risk
    for r in risk:
        v = customer_360(ho, r["cust_no"], as_of=r["as_of_date"][:7], home=home)
        assert v.as_of == dt.date.fromisoformat(r["as_of_date"])
        flags = set(zip(v.risk_flags["flag"], v.risk_flags["ref_no"], strict=True))
        assert ("LOAN_OVERDUE", r["loan_no"]) in flags, r
        loan = v.loans.set_index("loan_no").loc[r["loan_no"]]
        assert loan["days_past_due"] > 0


# -------------------------------------------------------------------------------- individual/corporate
def test_individual_view(home: Home, ho: Principal) -> None:
    cid = q(
        home, "SELECT min(customer_id) FROM dim_customer WHERE customer_type = 'I' AND n_source_numbers > 1"
    )[0][0]
    v = customer_360(ho, cid, home=home)
    assert not v.is_corporate
    for key in (
        "age",
        "birthday",
        "sex",
        "education",
        "occupation",
        "tier",
        "segment",
        "tenure_years",
        "manager_no",
    ):
        assert key in v.overview
    assert "credit_code" not in v.overview
    for name in ("financials", "business", "settlement"):
        assert v.frames()[name].empty, name
    assert set(v.assets["asset_type"]) >= {"DEMAND_DEPOSIT", "TIME_DEPOSIT", "WMP", "FUND", "INSURANCE"}
    assert abs(v.assets["value"].sum() - v.overview["aum"]) < 0.01
    assert list(v.channel_mix["channel"]) == ["COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE", "SYSTEM"]
    months = len(available_months(ho, home))
    assert len(v.trend) == min(months, load_settings(home).trend_months)
    assert v.trend["as_of_date"].iloc[-1] == v.as_of
    mart = q(
        home,
        "SELECT txn_count, CAST(aum AS DOUBLE) FROM mart_customer_month WHERE customer_id = ? "
        "AND as_of_date = ?",
        [cid, v.as_of],
    )[0]
    assert v.trend["txn_count"].iloc[-1] == mart[0] and round(v.overview["aum"], 2) == round(mart[1], 2)
    assert v.channel_mix["txn_count"].sum() == mart[0]
    json.dumps(v.to_dict(), ensure_ascii=False)


def test_corporate_view(home: Home, ho: Principal) -> None:
    cid = q(
        home,
        "SELECT min(customer_id) FROM core_corp_business_month WHERE biz_type <> 'SETTLEMENT' "
        "AND as_of_date = (SELECT max(as_of_date) FROM mart_customer_month) AND status = 'OPEN'",
    )[0][0]
    v = customer_360(ho, cid, home=home)
    assert v.is_corporate
    for key in ("credit_code", "economic_nature", "enterprise_form", "industry", "registered_capital"):
        assert key in v.overview
    assert "age" not in v.overview
    assert not v.business.empty and set(v.business["biz_type"]) <= {"LC", "ACCEPTANCE", "DISCOUNT"}
    assert not v.settlement.empty and (v.settlement["amount"] > 0).all()
    assert not v.financials.empty
    assert v.financials["fiscal_year"].is_monotonic_increasing
    assert v.financials["fiscal_year"].max() < v.as_of.year
    assert set(v.financials.columns) >= {
        "revenue",
        "total_assets",
        "total_liabilities",
        "net_profit",
        "debt_ratio",
    }
    # a corporate that guarantees another customer's loan shows it under guarantees given
    g = q(
        home,
        "SELECT guarantor_customer_id, guarantee_no FROM core_guarantee_month g JOIN dim_customer d "
        "ON d.customer_id = g.guarantor_customer_id WHERE d.customer_type = 'C' "
        "AND g.as_of_date = (SELECT max(as_of_date) FROM mart_customer_month) ORDER BY 1, 2 LIMIT 1",
    )
    if g:
        gv = customer_360(ho, g[0][0], home=home)
        assert g[0][1] in set(gv.guarantees_given["guarantee_no"])
    # so does an individual who guarantees someone's loan (a contagion risk as well)
    g = q(
        home,
        "SELECT guarantor_customer_id, guarantee_no FROM core_guarantee_month g JOIN dim_customer d "
        "ON d.customer_id = g.guarantor_customer_id WHERE d.customer_type = 'I' "
        "AND g.as_of_date = (SELECT max(as_of_date) FROM mart_customer_month) ORDER BY 1, 2 LIMIT 1",
    )
    if g:
        gv = customer_360(ho, g[0][0], home=home)
        assert g[0][1] in set(gv.guarantees_given["guarantee_no"])
    json.dumps(v.to_dict(), ensure_ascii=False)


def test_corporate_view_shows_its_group(home: Home, ho: Principal) -> None:
    cid, code, name = q(
        home,
        "SELECT customer_id, group_code, group_name FROM dim_customer WHERE group_code IS NOT NULL "
        "ORDER BY customer_id LIMIT 1",
    )[0]
    v = customer_360(ho, cid, home=home)
    assert v.overview["group"] == name and v.overview["group_code"] == code and name.endswith("集团")


def test_guarantees_received(home: Home, ho: Principal) -> None:
    cid, gno = q(
        home,
        "SELECT borrower_customer_id, guarantee_no FROM core_guarantee_month WHERE as_of_date = "
        "(SELECT max(as_of_date) FROM mart_customer_month) ORDER BY 1, 2 LIMIT 1",
    )[0]
    v = customer_360(ho, cid, home=home)
    assert gno in set(v.guarantees_received["guarantee_no"])


# ------------------------------------------------------------------------------------------ as-of views
def test_as_of_an_earlier_month(bank: Bank, home: Home, ho: Principal) -> None:
    months = available_months(ho, home)
    assert months == [d[:7] for d in bank.synth["dates"]]
    first = bank.synth["dates"][0]
    cid = q(
        home,
        "SELECT min(customer_id) FROM mart_customer_month WHERE as_of_date = ? AND deposit_balance > 0 "
        "AND customer_type = 'I'",
        [dt.date.fromisoformat(first)],
    )[0][0]
    latest = customer_360(ho, cid, home=home)
    for as_of in (months[0], first, dt.date.fromisoformat(first)):
        v = customer_360(ho, cid, as_of=as_of, home=home)
        assert v.as_of == dt.date.fromisoformat(first)
        assert len(v.trend) == 1 and v.trend["month"].iloc[0] == months[0]
        dep = q(
            home,
            "SELECT CAST(deposit_balance AS DOUBLE) FROM mart_customer_month WHERE customer_id = ? "
            "AND as_of_date = ?",
            [cid, v.as_of],
        )[0][0]
        assert round(v.overview["deposit_balance"], 2) == round(dep, 2)
        acc = q(
            home,
            "SELECT account_no FROM core_deposit_month WHERE customer_id = ? AND as_of_date = ?",
            [cid, v.as_of],
        )
        assert sorted(v.accounts["account_no"]) == sorted(r[0] for r in acc)
    assert latest.as_of == dt.date.fromisoformat(bank.synth["dates"][-1])
    assert latest.available_months[0] == months[0]


@pytest.mark.parametrize("bad", ["1999-01", "2026-13", "yesterday", "2026/10", "2026-10-31' OR 1=1"])
def test_bad_as_of(home: Home, ho: Principal, bad: str) -> None:
    cid = q(home, "SELECT min(customer_id) FROM dim_customer")[0][0]
    with pytest.raises(AsOfError):
        customer_360(ho, cid, as_of=bad, home=home)


# ---------------------------------------------------------------------------------------------- search
def test_search_by_every_key(home: Home, ho: Principal) -> None:
    last = q(home, "SELECT max(as_of_date) FROM mart_customer_month")[0][0]
    cid, id_no, phone, name = q(
        home,
        "SELECT customer_id, id_no_or_credit_code, phone, cust_name FROM dim_customer "
        "WHERE customer_type = 'I' AND phone IS NOT NULL "
        "AND customer_id IN (SELECT customer_id FROM core_loan) ORDER BY 1 LIMIT 1",
    )[0]
    acct = q(
        home,
        "SELECT min(account_no) FROM core_deposit_month WHERE customer_id = ? AND as_of_date = ?",
        [cid, last],
    )[0][0]
    loan = q(home, "SELECT min(loan_no) FROM core_loan WHERE customer_id = ?", [cid])[0][0]
    keys = {"customer_no": cid, "id_no": id_no.lower(), "phone": phone, "account_no": acct, "loan_no": loan}
    card = q(home, "SELECT min(card_no) FROM core_card_month WHERE customer_id = ?", [cid])[0][0]
    if card:
        keys["card_no"] = card
    for kind, key in keys.items():
        found = search(ho, key, home=home)
        assert cid in set(found["customer_id"]), kind
        assert kind in found.set_index("customer_id").loc[cid, "matched_on"].split(","), kind
    spaced = f" {phone[:3]} {phone[3:7]}-{phone[7:]} "  # blanks and dashes in a typed number
    assert cid in set(search(ho, spaced, home=home)["customer_id"])
    wide = "".join(chr(ord(c) + 0xFEE0) for c in phone)  # full-width digits from a Chinese IME
    assert cid in set(search(ho, wide, home=home)["customer_id"])
    found = search(ho, name, home=home, limit=500)
    assert cid in set(found["customer_id"]) and set(found["matched_on"]) == {"name"}
    assert all(n.startswith(name) for n in found["cust_name"])
    assert list(found.columns) == [
        "customer_id",
        "customer_type",
        "cust_name",
        "id_no",
        "phone",
        "home_org_code",
        "home_org_name",
        "county_name",
        "manager_name",
        "matched_on",
    ]


def test_search_limit_and_total(home: Home, ho: Principal) -> None:
    surname = q(
        home,
        "SELECT left(cust_name, 1) FROM dim_customer WHERE customer_type = 'I' GROUP BY 1 "
        "ORDER BY count(*) DESC LIMIT 1",
    )[0][0]
    n = q(home, "SELECT count(*) FROM dim_customer WHERE starts_with(cust_name, ?)", [surname])[0][0]
    found = search(ho, surname, home=home, limit=5)
    assert len(found) == 5 and found.attrs["total"] == n and found.attrs["truncated"]


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_show_json_matches_python(home: Home, ho: Principal) -> None:
    cid = q(home, "SELECT min(customer_id) FROM dim_customer WHERE customer_type = 'C'")[0][0]
    months = available_months(ho, home)
    r = run_cim("customer", "show", cid, "--as", "ho", "--as-of", months[0], "--json", home=home.root)
    out = json.loads(r.stdout)
    want = customer_360(ho, cid, as_of=months[0], home=home).to_dict()
    assert out == json.loads(json.dumps(want))
    human = run_cim("customer", "show", cid, "--as", "ho", home=home.root)
    assert cid in human.stdout and "Overview" in human.stdout
