"""Golden cases for check digits and the consistency of the canonical contracts."""

from __future__ import annotations

import random

import pytest

from cimlib.contracts import load_codes, load_contracts, table_order
from cimlib.contracts.checkdigits import (
    USCC_ALPHABET,
    id_check_char,
    is_valid_id,
    is_valid_uscc,
    uscc_check_char,
)

# Published examples: GB 11643-1999's sample ID and a real-format USCC checked by hand.
VALID_IDS = ["11010519491231002X", "440524188001010014", "110101199003074477"]
INVALID_IDS = ["110105194912310021", "11010519491331002X", "1101051949123100", "", None, "A1010519491231002X"]
VALID_USCC = ["91350100M000100Y43", "91110000600037341L"]


@pytest.mark.parametrize("id_no", VALID_IDS)
def test_valid_ids(id_no: str) -> None:
    assert is_valid_id(id_no)


@pytest.mark.parametrize("id_no", INVALID_IDS)
def test_invalid_ids(id_no: str | None) -> None:
    assert not is_valid_id(id_no)


@pytest.mark.parametrize("code", VALID_USCC)
def test_valid_uscc(code: str) -> None:
    assert is_valid_uscc(code)


def test_uscc_single_change_detected() -> None:
    rng = random.Random(7)
    for _ in range(500):
        body = "91" + "".join(rng.choice(USCC_ALPHABET) for _ in range(15))
        code = body + uscc_check_char(body)
        assert is_valid_uscc(code)
        pos = rng.randrange(17)
        other = rng.choice([c for c in USCC_ALPHABET if c != code[pos]])
        assert not is_valid_uscc(code[:pos] + other + code[pos + 1 :])


def test_id_single_digit_change_detected() -> None:
    rng = random.Random(11)
    for _ in range(500):
        body = "330102" + f"{rng.randrange(1950, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        body += f"{rng.randrange(1000):03d}"
        id_no = body + id_check_char(body)
        assert is_valid_id(id_no)
        pos = rng.choice([14, 15, 16])  # sequence digits: the date stays valid
        other = str((int(id_no[pos]) + rng.randrange(1, 10)) % 10)
        assert not is_valid_id(id_no[:pos] + other + id_no[pos + 1 :])


def test_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        id_check_char("123")
    with pytest.raises(ValueError):
        uscc_check_char("I" * 17)  # I is not in the alphabet


def test_contracts_load_and_cover_the_issue() -> None:
    contracts = load_contracts()
    expected = {
        "org", "staff", "product", "individual_customer", "corporate_customer", "corporate_financials",
        "deposit_account", "account_balance", "loan", "credit_line", "guarantee", "corporate_business",
        "card", "wealth_holding", "transaction", "manager_assignment", "gl_balance",
    }
    assert expected <= set(contracts)
    order = table_order()
    for name, c in contracts.items():
        for fk in c.foreign_keys:
            for ref in fk.references:
                if ref != name:
                    assert order.index(ref) < order.index(name), (name, ref)


def test_money_is_decimal() -> None:
    for c in load_contracts().values():
        for col in c.columns:
            if col.type == "money":
                assert col.sql_type == "DECIMAL(18,2)"


def test_code_lists_have_both_languages() -> None:
    for name, codes in load_codes().items():
        for code, info in codes.items():
            assert info.get("en") and info.get("zh"), (name, code)


def test_c2_fields_marked() -> None:
    ind = load_contracts()["individual_customer"]
    assert {c.name for c in ind.columns if c.pii == "C2"} >= {"id_no", "cust_name", "phone", "address"}


def test_data_model_doc_is_current() -> None:
    from pathlib import Path

    from cimlib.contracts._docs import render

    doc = Path(__file__).resolve().parent.parent / "docs" / "data-model.md"
    assert doc.read_text(encoding="utf-8") == render(), "run: python -m cimlib.contracts.docs"


def test_code_attributes_are_known() -> None:
    # Guards against YAML flow-mapping slips (an unquoted comma in a label makes a stray key).
    allowed = {"en", "zh", "category", "digital", "customer_initiated", "rank", "npl", "side",
               "customer_type", "account_type"}
    for name, codes in load_codes().items():
        for code, info in codes.items():
            assert set(info) <= allowed, (name, code, info)
