"""The rule language: parsing, the allow-list, type checks, error messages, and compiled-SQL snapshots.

No warehouse here: these tests compile only. Snapshots of the compiled SQL of the shipped rule sets are in
``tests/golden/targeting/``; regenerate them with ``CIM_UPDATE_GOLDEN=1 pytest tests/test_targeting.py``
after a deliberate change, and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimlib.targeting import RuleError, RuleSetError, compile_condition, list_rulesets, load_ruleset
from cimlib.targeting._catalogue import COLLECTIONS, INDICATORS, MONTHLY, indicators_for

GOLDEN = Path(__file__).parent / "golden" / "targeting"


# ------------------------------------------------------------------ shipped rule sets
def test_shipped_rule_sets_cover_all_four_families_for_both_customer_types() -> None:
    seen = set()
    for name in list_rulesets():
        for r in load_ruleset(name).rules:
            seen.add((r.family, r.customer_type))
            assert r.name["en"] and r.name["zh"] and r.reason["en"] and r.reason["zh"]
    assert seen == {(f, t) for f in ("key", "event", "abnormal", "risk") for t in ("I", "C")}


@pytest.mark.parametrize("name", ["key_customers", "events", "abnormal", "risk"])
def test_compiled_sql_matches_the_snapshot(name: str) -> None:
    rs = load_ruleset(name)
    got = {
        r.id: {
            "condition": r.condition,
            "sql": r.compiled.sql,
            "params": {k: str(v) for k, v in r.compiled.params.items()},
            "collections": [
                {"alias": c.alias, "collection": c.collection, "kind": c.kind, "sql": c.condition_sql}
                for c in r.compiled.collections
            ],
            "history": sorted(list(c) for c in r.compiled.calls),
            "reason_values": {k: p.compiled.sql for k, p in r.placeholders.items()},
        }
        for r in rs.rules
    }
    path = GOLDEN / f"{name}.json"
    text = json.dumps(got, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("CIM_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with CIM_UPDATE_GOLDEN=1 once and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text)


def test_no_rule_text_reaches_the_sql() -> None:
    """Every literal of every shipped rule is a bound parameter: its text is not in the SQL."""
    for name in list_rulesets():
        for r in load_ruleset(name).rules:
            for value in r.compiled.params.values():
                if isinstance(value, str):
                    assert f"'{value}'" not in r.compiled.sql
            assert "'" not in re.sub(r"'(day|month|[a-z_]+)'", "", r.compiled.sql) or "CASE" in r.compiled.sql


# ------------------------------------------------------------------ the language
def test_a_condition_compiles_to_parameterised_sql() -> None:
    c = compile_condition("aum >= 500000 and sex = 'F' and not (age between 30 and 40)", "I")
    assert c.sql == "(((b.aum >= $p0) AND (b.sex = $p1)) AND (NOT ((b.age BETWEEN $p2 AND $p3))))"
    assert c.params == {"p0": 500000, "p1": "F", "p2": 30, "p3": 40}
    assert c.base == ["aum", "sex", "age"]


def test_functions_history_and_collections() -> None:
    c = compile_condition(
        "abs(pct_change(deposit_adb, 1)) >= 50 and zscore(aum, 12) > 3 "
        "and any(deposits, account_type = 'TIME' and days_until(maturity_date) between 1 and 30) "
        "and months_since(first_open_date) >= 12 and id_expiry_date is not null",
        "I",
    )
    assert c.calls == {("pct_change", "deposit_adb", 1), ("zscore", "aum", 12)}
    assert "@H(pct_change,deposit_adb,1)@" in c.sql
    assert [x.collection for x in c.collections] == ["deposits"]
    assert "date_diff('day', $as_of, c.maturity_date)" in c.collections[0].condition_sql
    assert "(b.id_expiry_date IS NOT NULL)" in c.sql
    with pytest.raises(RuleError, match="unknown indicator 'phone'"):  # personal data is no indicator
        compile_condition("phone is not null", "I")


def test_all_and_count_over_collections() -> None:
    c = compile_condition(
        "all(loans, five_class in ('NORMAL', 'SPECIAL_MENTION')) and count(cards, true) >= 2", "I"
    )
    assert [x.kind for x in c.collections] == ["all", "count"]
    assert "n_all" in c.sql


def test_date_literals_and_arithmetic() -> None:
    c = compile_condition("first_open_date >= date '2020-01-01' and deposit_adb / aum > 0.5", "I")
    assert "CAST($p0 AS DATE)" in c.sql and "nullif(" in c.sql
    assert str(c.params["p0"]) == "2020-01-01"


@pytest.mark.parametrize(
    ("text", "message", "suggestion", "column"),
    [
        ("aum >= 1 and depsit_adb > 5", "unknown indicator 'depsit_adb'", "deposit_adb", 14),
        ("dayz_until(id_expiry_date) < 30", "unknown function dayz_until()", "days_until", 1),
        ("any(deposit, balance > 0)", "unknown collection 'deposit'", "deposits", 5),
        ("any(deposits, balanse > 0)", "deposits have no field 'balanse'", "balance", 15),
        ("worst_five_class = 'NORMLA'", "'NORMLA' is not a code of five_class", "NORMAL", 20),
        ("pct_change(cust_name, 1) > 5", "needs a monthly measure, not 'cust_name'", None, 12),
        ("pct_change(age, 1) > 5", "needs a monthly measure", None, 12),
        ("industry = 'C'", "does not apply to individual customers", None, 1),
    ],
)
def test_errors_name_the_position_and_suggest(
    text: str, message: str, suggestion: str | None, column: int | None
) -> None:
    with pytest.raises(RuleError) as ei:
        compile_condition(text, "I")
    e = ei.value
    assert message in e.message
    if suggestion:
        assert e.suggestion == suggestion
        assert f"did you mean {suggestion!r}" in str(e)
    if column is not None:
        assert e.line_col == (1, column), str(e)
        assert str(e).splitlines()[-1].index("^") - 4 == column - 1  # the caret points at it


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aum > 'abc'", "cannot compare a number with a text"),
        ("aum and age > 3", "'and' needs true/false"),
        ("days_until(aum) < 3", "days_until() expects a date"),
        ("aum + 1", "a condition must be true or false"),
        ("aum = null", "is null"),
        ("zscore(aum, 1) > 3", "from 2 to 36"),
        ("pct_change(aum, x) > 3", "whole number"),
        ("sex between 1 and 3", "between needs numbers or dates"),
        ("aum >=", "syntax error"),
        ("(aum > 1", "syntax error"),
    ],
)
def test_type_and_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        compile_condition(text, "I")


@pytest.mark.parametrize(
    "text",
    [
        "aum > 1; DROP TABLE dim_customer",
        "aum > 1 OR 1=1; --",
        "aum > (SELECT max(aum) FROM mart_customer_wide)",
        "exists(select 1)",
        "aum > 1 union select * from dim_customer",
        "cust_name like '%'",
        "read_csv('/etc/passwd') is null",
        "aum::varchar = '1'",
        "cast(aum as varchar) = '1'",
        "d.phone is null",
        '"dim_customer".phone is null',
        "aum > 1 /* */ or getenv('HOME') = 'x'",
        "sex = 'F' || 'x'",
        "current_setting('threads') = '1'",
        "[1, 2] = [1, 2]",
        "aum in (select aum from x)",
        "*",
        "",
        "   ",
        "a" * 3000,
    ],
)
def test_injection_attempts_are_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(RuleError) as ei:
        compile_condition(text, "I")
    assert str(ei.value).strip()


def test_a_quote_inside_a_string_stays_a_parameter() -> None:
    c = compile_condition("group_code = 'x'' OR ''1''=''1'", "C")
    assert c.params == {"p0": "x' OR '1'='1"}
    assert c.sql == "(b.group_code = $p0)"


_NAMES = st.sampled_from(sorted(INDICATORS))
_OPS = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=80))
def test_random_text_either_compiles_or_gives_a_rule_error(text: str) -> None:
    try:
        c = compile_condition(text, "I")
    except RuleError:
        return
    assert c.type == "bool"


@settings(max_examples=300, deadline=None)
@given(name=_NAMES, op=_OPS, value=_TEXT)
def test_string_values_never_reach_the_sql(name: str, op: str, value: str) -> None:
    quoted = value.replace("'", "''")
    try:
        c = compile_condition(f"{name} {op} '{quoted}'", "C" if "C" in INDICATORS[name].applies else "I")
    except RuleError:
        return
    assert list(c.params.values()) == [value]
    if value:
        assert value not in c.sql.replace(f"b.{name}", "")


@settings(max_examples=200, deadline=None)
@given(
    measure=st.sampled_from(sorted(MONTHLY)),
    fn=st.sampled_from(["pct_change", "zscore", "prior", "avg_prior", "max_prior", "min_prior"]),
    n=st.integers(min_value=-3, max_value=40),
    threshold=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_history_functions_check_their_months(measure: str, fn: str, n: int, threshold: float) -> None:
    text = f"{fn}({measure}, {n}) > {threshold!r}"
    lo = 2 if fn == "zscore" else 1
    if lo <= n <= 36:
        c = compile_condition(text, "I")
        assert c.calls == {(fn, measure, n)}
    else:
        with pytest.raises(RuleError):
            compile_condition(text, "I")


def test_every_collection_field_and_indicator_compiles() -> None:
    for t in ("I", "C"):
        for name, ind in indicators_for(t).items():
            op = "is not null"
            compile_condition(f"{name} {op}", t)
            del ind
        for cname, coll in COLLECTIONS.items():
            if t not in coll.applies:
                continue
            for f in coll.fields:
                compile_condition(f"any({cname}, {f} is not null)", t)


# ------------------------------------------------------------------ rule set files
def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(body, encoding="utf-8")
    return p


_GOOD_RULE = """
version: 1
name: {en: Mine, zh: 我的}
family: key
rules:
  - id: rich
    name: {en: Rich, zh: 富}
    customer_type: I
    condition: aum >= 1000000
    output: [aum]
    reason: {en: "AUM {aum}", zh: "金融资产{aum}"}
"""


def test_a_rule_set_file_loads(tmp_path: Path) -> None:
    rs = load_ruleset(_write(tmp_path, _GOOD_RULE))
    assert [r.id for r in rs.rules] == ["rich"]
    assert rs.rules[0].placeholders["aum"].fmt == "money"


def test_an_unknown_key_names_the_file_key_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, _GOOD_RULE.replace("    output: [aum]", "    outputs: [aum]"))
    with pytest.raises(RuleSetError) as ei:
        load_ruleset(p)
    assert str(p) in str(ei.value) and "rules[0].outputs (line 10)" in str(ei.value)


def test_a_bad_condition_names_the_file_rule_line_and_position(tmp_path: Path) -> None:
    p = _write(tmp_path, _GOOD_RULE.replace("aum >= 1000000", "aum >= 1000000 and n_prodcts > 2"))
    with pytest.raises(RuleError) as ei:
        load_ruleset(p)
    text = str(ei.value)
    assert f"{p} (line 9), rule rich, condition at line 1, column 20" in text
    assert "did you mean 'n_products'?" in text


def test_a_bad_reason_placeholder_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, _GOOD_RULE.replace('"AUM {aum}"', '"AUM {aum|moneyy}"'))
    with pytest.raises(RuleError, match=r"unknown format 'moneyy'.*did you mean 'money'"):
        load_ruleset(p)
    p = _write(tmp_path, _GOOD_RULE.replace('"AUM {aum}"', '"AUM {match.balance}"'))
    with pytest.raises(RuleError, match="needs an any"):
        load_ruleset(p)


def test_duplicate_ids_and_unknown_output_columns(tmp_path: Path) -> None:
    body = _GOOD_RULE + _GOOD_RULE.split("rules:\n", 1)[1]
    with pytest.raises(RuleSetError, match="used twice"):
        load_ruleset(_write(tmp_path, body))
    with pytest.raises(RuleError, match=r"output\[0\].*unknown output column 'aumm'.*did you mean 'aum'"):
        load_ruleset(_write(tmp_path, _GOOD_RULE.replace("[aum]", "[aumm]")))


def test_an_unknown_rule_set_suggests_the_closest() -> None:
    with pytest.raises(RuleSetError, match="did you mean 'events'"):
        load_ruleset("event")
