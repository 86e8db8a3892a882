"""Access control: the policy file, each role's row scope (including the indirect ways in: result
counts, error messages, exports), masking for each role, and the audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Bank, run_cim

from cimlib.access import (
    NOT_FOUND_OR_NOT_PERMITTED,
    NotFoundOrNotPermitted,
    NotPermitted,
    PolicyError,
    Principal,
    Snapshot,
    UnknownUser,
    audit_dir,
    audit_log,
    load_policy,
    mask_text,
    principal_for,
    read_audit,
    scope_clause,
    verify_audit,
    warehouse,
)
from cimlib.config import Home
from cimlib.customer import customer_360, search


@dataclass(frozen=True)
class Env:
    """A scratch home on the shared bank's warehouse, with its own access.yaml and audit log."""

    home: Home
    county_a: str
    county_b: str
    branch: str
    staff_no: str
    in_a: str  # a customer of county A (and of the branch and the staff member when possible)
    in_b: str  # a customer of county B
    managed: str  # a customer managed by staff_no
    loan_no_b: str  # a LOAN-system number of a customer of county B, if any

    def who(self, user: str) -> Principal:
        return principal_for(user, self.home)

    def q(self, sql: str, params: list | None = None) -> list[tuple]:
        return warehouse(self.home).snapshot().query(sql, params or [])[1]


def scratch_home(bank: Bank, root: Path) -> Home:
    """A home whose warehouse is the bank's (symlink) and whose parameters and state are its own."""
    (root / "data").mkdir(parents=True)
    os.symlink(bank.home / "data" / "warehouse", root / "data" / "warehouse")
    shutil.copytree(ROOT / "parameters", root / "parameters")
    return Home(root=root, parameters=root / "parameters")


def write_policy(home: Home, users: list[dict], extra_roles: dict | None = None) -> None:
    policy = yaml.safe_load((ROOT / "parameters" / "access.yaml").read_text(encoding="utf-8"))
    policy["users"] = users
    policy["roles"].update(extra_roles or {})
    (home.parameters / "access.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def env(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Env:
    home = scratch_home(bank, tmp_path_factory.mktemp("access_home"))
    snap = warehouse(home).snapshot()
    counties = [
        r[0]
        for r in snap.query("SELECT county_code FROM dim_customer GROUP BY 1 ORDER BY count(*) DESC, 1")[1]
    ]
    a, b = counties[0], counties[1]
    branch, staff = snap.query(
        "SELECT home_org_code, manager_no FROM dim_customer WHERE county_code = ? AND manager_no IS NOT NULL "
        "GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1",
        [a],
    )[1][0]
    managed = snap.query("SELECT min(customer_id) FROM dim_customer WHERE manager_no = ?", [staff])[1][0][0]
    in_b = snap.query("SELECT min(customer_id) FROM dim_customer WHERE county_code = ?", [b])[1][0][0]
    loan_b = snap.query(
        "SELECT min(x.cust_no) FROM core_customer_xref x JOIN dim_customer d USING (customer_id) "
        "WHERE d.county_code = ? AND x.cust_no <> x.customer_id",
        [b],
    )[1][0][0]
    users = [
        {"user_id": "analyst", "display_name": "A", "role": "provincial_analyst", "org_code": "100000"},
        {"user_id": "cty_a", "display_name": "CA", "role": "county_manager", "org_code": a},
        {"user_id": "cty_b", "display_name": "CB", "role": "county_manager", "org_code": b},
        {"user_id": "br", "display_name": "BR", "role": "branch_manager", "org_code": branch},
        {
            "user_id": "cm",
            "display_name": "CM",
            "role": "customer_manager",
            "org_code": branch,
            "staff_no": staff,
        },
        {"user_id": "aud", "display_name": "AU", "role": "auditor"},
        {"user_id": "compliance", "display_name": "CO", "role": "compliance"},
    ]
    write_policy(
        home, users, {"compliance": {"scope": "all", "detail": True, "unmasked_classes": ["C1", "C2"]}}
    )
    return Env(home, a, b, branch, staff, managed, in_b, managed, loan_b or "")


# ------------------------------------------------------------------------------------------- policy
def test_shipped_policy_and_demo_users_work_with_the_test_bank(bank: Bank) -> None:
    home = Home(root=bank.home, parameters=ROOT / "parameters")
    policy = load_policy(home)
    assert {r for r in policy.roles} >= {
        "provincial_analyst",
        "county_manager",
        "branch_manager",
        "customer_manager",
        "auditor",
    }
    snap = warehouse(home).snapshot()
    for u in policy.users:
        p = principal_for(u.user_id, home)
        assert p.scope_label
        if p.can_view_detail:  # every demo user with detail sees customers in the test bank
            sql, params = scope_clause(p, "d")
            n = snap.query(f"SELECT count(*) FROM dim_customer AS d WHERE {sql}", params)[1][0][0]
            assert n > 0, (u.user_id, p.scope_label)
    assert principal_for("county_mgr_101", home).scope_label.startswith("county 101000 (")
    assert not principal_for("prov_analyst", home).can_view_detail
    assert principal_for("auditor", home).can_read_audit


def _bad_policy(tmp_path: Path, mutate) -> str:  # type: ignore[no-untyped-def]
    params = tmp_path / "parameters"
    params.mkdir(exist_ok=True)
    policy = yaml.safe_load((ROOT / "parameters" / "access.yaml").read_text(encoding="utf-8"))
    mutate(policy)
    (params / "access.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), "utf-8")
    with pytest.raises(PolicyError) as exc:
        load_policy(Home(root=tmp_path, parameters=params))
    msg = str(exc.value)
    assert str(params / "access.yaml") in msg
    assert "(line " in msg
    return msg


def test_policy_errors_name_file_key_and_line(tmp_path: Path) -> None:
    msg = _bad_policy(tmp_path, lambda p: p["users"][1].update(role="superuser"))
    assert "users[1].role" in msg and "unknown role 'superuser'" in msg
    msg = _bad_policy(tmp_path, lambda p: p["users"][1].update(org_code="TL-01"))
    assert "users[1].org_code" in msg and "not an org code" in msg
    msg = _bad_policy(tmp_path, lambda p: p["users"][4].pop("staff_no"))
    assert "users[4]" in msg and "staff_no is required" in msg
    msg = _bad_policy(tmp_path, lambda p: p["users"][1].pop("org_code"))
    assert "org_code is required" in msg
    msg = _bad_policy(tmp_path, lambda p: p["users"][1].update(org_code=101000))
    assert "users[1].org_code" in msg and "quoted string" in msg
    msg = _bad_policy(tmp_path, lambda p: p["roles"]["auditor"].update(see_everything=True))
    assert "roles.auditor.see_everything" in msg and "Extra inputs are not permitted" in msg
    msg = _bad_policy(tmp_path, lambda p: p["roles"]["auditor"].update(unmasked_classes=["C3"]))
    assert "roles.auditor.unmasked_classes" in msg
    msg = _bad_policy(tmp_path, lambda p: p["users"].append(dict(p["users"][0])))
    assert "duplicate user id" in msg
    msg = _bad_policy(tmp_path, lambda p: p["roles"]["county_manager"].update(scope="planet"))
    assert "roles.county_manager.scope" in msg


def test_unknown_user(env: Env) -> None:
    with pytest.raises(UnknownUser):
        principal_for("mallory", env.home)


def test_mask_text() -> None:
    assert mask_text("张伟", "name", (1, 0)) == "张*"
    assert mask_text("欧阳娜娜", "name", (1, 0)) == "欧阳**"
    assert mask_text("王", "name", (1, 0)) == "*"
    assert mask_text("33052319930117619X", "id_no", (1, 1)) == "3" + "*" * 16 + "X"
    assert mask_text("15961629527", "phone", (1, 1)) == "1*********7"
    assert mask_text("12", "phone", (1, 1)) == "1*"
    assert mask_text(None, "phone", (1, 1)) is None
    assert mask_text("6105006100000000000", "account_no", (0, 4)) == "*" * 15 + "0000"


# -------------------------------------------------------------------------------------------- scope
def _count(env: Env, p: Principal, where: str, params: list) -> int:
    sql, sp = scope_clause(p, "d")
    return env.q(f"SELECT count(*) FROM dim_customer AS d WHERE {where} AND {sql}", [*params, *sp])[0][0]


@pytest.mark.parametrize("user", ["cty_a", "cty_b", "br", "cm", "compliance"])
def test_search_counts_only_in_scope(env: Env, user: str) -> None:
    p = env.who(user)
    prefixes = [
        r[0]
        for r in env.q(
            "SELECT left(cust_name, 1) FROM dim_customer WHERE customer_type = 'I' "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 3"
        )
    ]
    for prefix in prefixes:
        found = search(p, prefix, home=env.home, limit=500)
        expected = _count(env, p, "starts_with(d.cust_name, ?)", [prefix])
        assert found.attrs["total"] == expected
        assert len(found) == min(expected, 500)
        scope_col = {"county": "county_code", "branch": "home_org_code", "managed": "manager_no"}.get(p.scope)
        if scope_col:
            ids = list(found["customer_id"])
            if ids:
                marks = ", ".join("?" * len(ids))
                sql = f"SELECT {scope_col} FROM dim_customer WHERE customer_id IN ({marks})"
                vals = {r[0] for r in env.q(sql, ids)}
                assert vals == {p.org_code if p.scope != "managed" else p.staff_no}


def test_out_of_scope_is_indistinguishable_from_missing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    a = env.who("cty_a")
    calls: list[str] = []
    orig = Snapshot.query

    def counting(self: Snapshot, sql: str, params=()):  # type: ignore[no-untyped-def]
        calls.append(sql)
        return orig(self, sql, params)

    monkeypatch.setattr(Snapshot, "query", counting)
    customer_360(a, env.managed, home=env.home)  # warm the per-snapshot caches first
    seen = []
    for key in (env.in_b, "9999999999", env.loan_no_b or env.in_b, "L000000000"):
        calls.clear()
        with pytest.raises(NotFoundOrNotPermitted) as exc:
            customer_360(a, key, home=env.home)
        assert str(exc.value) == NOT_FOUND_OR_NOT_PERMITTED == "not found or not permitted"
        assert exc.value.args == ("not found or not permitted",)
        seen.append(len(calls))
    assert len(set(seen)) == 1, f"different query paths: {seen}"
    # search: the out-of-scope customer is simply not there, and not counted
    for key in (env.in_b, env.loan_no_b):
        if key:
            found = search(a, key, home=env.home)
            assert len(found) == 0 and found.attrs["total"] == 0
    # ... while its own county manager finds it
    assert list(search(env.who("cty_b"), env.in_b, home=env.home)["customer_id"]) == [env.in_b]
    assert customer_360(env.who("cty_b"), env.in_b, home=env.home).customer_id == env.in_b


def test_each_scope(env: Env) -> None:
    cm, br, a, b = env.who("cm"), env.who("br"), env.who("cty_a"), env.who("cty_b")
    assert customer_360(cm, env.managed, home=env.home).customer_id == env.managed
    assert customer_360(br, env.managed, home=env.home).customer_id == env.managed
    assert customer_360(a, env.managed, home=env.home).customer_id == env.managed
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(b, env.managed, home=env.home)
    other = env.q(
        "SELECT min(customer_id) FROM dim_customer WHERE home_org_code = ? AND manager_no IS DISTINCT FROM ?",
        [env.branch, env.staff_no],
    )[0][0]
    assert customer_360(br, other, home=env.home).customer_id == other
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(cm, other, home=env.home)
    elsewhere = env.q(
        "SELECT min(customer_id) FROM dim_customer WHERE county_code = ? AND home_org_code <> ?",
        [env.county_a, env.branch],
    )[0][0]
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(br, elsewhere, home=env.home)
    assert customer_360(a, elsewhere, home=env.home).customer_id == elsewhere


def test_roles_without_detail_are_refused_before_any_lookup(env: Env) -> None:
    for user in ("analyst", "aud"):
        p = env.who(user)
        for key in (env.in_b, "9999999999"):
            with pytest.raises(NotPermitted) as exc:
                customer_360(p, key, home=env.home)
            assert key not in str(exc.value) and "no single-customer detail" in str(exc.value)
            with pytest.raises(NotPermitted):
                search(p, key, home=env.home)
    with pytest.raises(NotPermitted, match="aggregates only"):
        customer_360(env.who("analyst"), "x", home=env.home)


@pytest.mark.parametrize(
    "text",
    [
        "' OR 1=1 --",
        "%",
        "_",
        "王%",
        "' UNION SELECT * FROM dim_customer --",
        "1000000000' OR '1'='1",
        "); DROP TABLE dim_customer; --",
        "\\",
        "王'",
        "*",
        "?",
        "$1",
        "%' OR cust_name LIKE '%",
    ],
)
def test_injection_in_search_is_harmless(env: Env, text: str) -> None:
    p = env.who("compliance")
    found = search(p, text, home=env.home)
    # nothing but a literal prefix match can come back
    assert all(str(n).startswith(text.strip()) for n in found["cust_name"]) or found.empty
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(p, text, home=env.home)
    assert env.q("SELECT count(*) FROM dim_customer")[0][0] > 0


# -------------------------------------------------------------------------------------------- masking
def _a_person_with_phone(env: Env, where: str, params: list) -> str:
    sql = (
        "SELECT min(customer_id) FROM dim_customer AS d WHERE customer_type = 'I' AND phone IS NOT NULL AND "
    )
    sql += where
    return env.q(sql, params)[0][0]


@pytest.mark.parametrize(
    ("user", "clear"),
    [
        ("cty_a", {"name"}),
        ("br", {"name"}),
        ("cm", {"name", "phone"}),
        ("compliance", {"name", "id_no", "phone", "account_no", "card_no", "address"}),
    ],
)
def test_masking_for_each_role(env: Env, user: str, clear: set[str]) -> None:
    p = env.who(user)
    cid = _a_person_with_phone(env, "manager_no = ?", [env.staff_no])
    sql = "SELECT cust_name, id_no_or_credit_code, phone, address FROM dim_customer WHERE customer_id = ?"
    raw = env.q(sql, [cid])[0]
    v = customer_360(p, cid, home=env.home)
    ov = v.overview
    checks = [("name", "cust_name", raw[0]), ("id_no", "id_no", raw[1]), ("phone", "phone", raw[2])]
    for fld, col, value in [*checks, ("address", "address", raw[3])]:
        if value is None:
            continue
        if fld in clear:
            assert ov[col] == value, fld
        else:
            assert ov[col] != value and "*" in ov[col], fld
            assert ov[col][0] == value[0]
    assert set(v.masked_fields) == {"name", "id_no", "phone", "account_no", "card_no", "address"} - clear
    accounts = env.q(
        "SELECT account_no FROM core_deposit_month WHERE customer_id = ? AND as_of_date = ?", [cid, v.as_of]
    )
    shown = set(v.accounts["account_no"])
    if "account_no" in clear:
        assert shown == {r[0] for r in accounts}
    else:
        assert all("*" in a for a in shown) and not shown & {r[0] for r in accounts}
    found = search(p, cid, home=env.home)
    assert len(found) == 1
    row = found.iloc[0]
    assert (row["cust_name"] == raw[0]) == ("name" in clear)
    assert (row["id_no"] == raw[1]) == ("id_no" in clear)
    assert (row["phone"] == raw[2]) == ("phone" in clear)
    # the JSON export is masked the same way
    assert json.dumps(v.to_dict(), ensure_ascii=False).count(raw[1]) == (1 if "id_no" in clear else 0)


def test_corporate_name_and_credit_code_are_not_personal_data(env: Env) -> None:
    p = env.who("cty_a")
    cid, name, code, rep = env.q(
        "SELECT customer_id, cust_name, id_no_or_credit_code, legal_rep_name FROM dim_customer "
        "WHERE customer_type = 'C' AND county_code = ? AND legal_rep_name IS NOT NULL ORDER BY 1 LIMIT 1",
        [env.county_a],
    )[0]
    ov = customer_360(p, cid, home=env.home).overview
    assert ov["cust_name"] == name and ov["credit_code"] == code
    assert ov["legal_rep_name"] == rep  # a person's name: county managers see names


# ---------------------------------------------------------------------------------------------- audit
def _records(env: Env) -> list[dict]:
    out = []
    for p in sorted(audit_dir(env.home).glob("audit-*.jsonl")):
        out += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def test_every_view_search_and_refusal_is_audited(env: Env) -> None:
    before = len(_records(env))
    a = env.who("cty_a")
    snap_id = warehouse(env.home).snapshot().snapshot_id
    customer_360(a, env.managed, home=env.home)
    search(a, env.managed, home=env.home)
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(a, env.in_b, home=env.home)
    with pytest.raises(NotPermitted):
        customer_360(env.who("analyst"), env.in_b, home=env.home)
    with pytest.raises(NotPermitted):
        search(env.who("aud"), "王", home=env.home)
    new = _records(env)[before:]
    got = [(r["user_id"], r["action"], r["target"], r["outcome"]) for r in new]
    assert got == [
        ("cty_a", "view_360", env.managed, "ok"),
        ("cty_a", "search", env.managed, "ok"),
        ("cty_a", "view_360", env.in_b, "not_found_or_not_permitted"),
        ("analyst", "view_360", env.in_b, "refused"),
        ("aud", "search", "王", "refused"),
    ]
    assert [r["snapshot_id"] for r in new[:3]] == [snap_id] * 3
    assert all(r["ts"].endswith("Z") and r["role"] and "hash" in r for r in new)
    assert new[1]["detail"]["n_results"] == 1
    assert verify_audit(env.home)["ok"]


def test_read_audit_is_for_auditors_only(env: Env) -> None:
    customer_360(env.who("cm"), env.managed, home=env.home)
    with pytest.raises(NotPermitted):
        read_audit(env.home, env.who("cty_a"))
    log = read_audit(env.home, env.who("aud"), user="cm")
    assert len(log) >= 1 and set(log["user_id"]) == {"cm"}
    assert log["ts"].dt.tz is not None
    assert read_audit(env.home, env.who("aud"), since="2999-01-01").empty
    refused = read_audit(env.home, env.who("aud"), user="cty_a")
    assert ("read_audit", "refused") in set(zip(refused["action"], refused["outcome"], strict=True))
    with pytest.raises(ValueError):
        read_audit(env.home, env.who("aud"), since="yesterday")


def test_audit_chain_detects_tampering(tmp_path: Path) -> None:
    home = Home(root=tmp_path, parameters=ROOT / "parameters")
    p = Principal(user_id="u", display_name="u", role="county_manager")
    for i in range(5):
        audit_log(home, p, "view_360", f"C{i}", "snap", {"i": i})
    assert verify_audit(home) == {"ok": True, "records": 5, "files": 1}
    f = next(audit_dir(home).glob("audit-*.jsonl"))
    lines = f.read_text(encoding="utf-8").splitlines()
    f.write_text("\n".join([lines[0], lines[1].replace('"C1"', '"C9"'), *lines[2:]]) + "\n", encoding="utf-8")
    res = verify_audit(home)
    assert not res["ok"] and ":2:" in res["problem"]
    f.write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8")  # a record removed
    assert not verify_audit(home)["ok"]


_WRITER = """
import sys
from pathlib import Path
from cimlib.access import Principal, audit_log
from cimlib.config import Home
root, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
home = Home(root=Path(root), parameters=Path(root))
p = Principal(user_id=f"w{k}", display_name="w", role="county_manager")
for i in range(n):
    audit_log(home, p, "view_360", f"{k}-{i}", "snap", {"pad": "x" * (i * 37 % 3000)})
"""


def test_audit_log_is_safe_under_concurrent_writers(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(k), "60"], env=env)
        for k in range(4)
    ]
    assert [pr.wait(120) for pr in procs] == [0, 0, 0, 0]
    home = Home(root=tmp_path, parameters=ROOT / "parameters")
    res = verify_audit(home)
    assert res == {"ok": True, "records": 240, "files": 1}
    recs = [json.loads(x) for f in audit_dir(home).glob("*.jsonl") for x in f.read_text("utf-8").splitlines()]
    assert sorted(r["target"] for r in recs) == sorted(f"{k}-{i}" for k in range(4) for i in range(60))


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_export_out_of_scope_matches_missing(env: Env) -> None:
    root = env.home.root
    out_b = run_cim("customer", "show", env.in_b, "--as", "cty_a", home=root, check=False)
    missing = run_cim("customer", "show", "9999999999", "--as", "cty_a", home=root, check=False)
    assert out_b.returncode == missing.returncode == 1
    assert out_b.stderr == missing.stderr == "cim: error: not found or not permitted\n"
    assert out_b.stdout == missing.stdout == ""
    j1 = run_cim("customer", "show", env.in_b, "--as", "cty_a", "--json", home=root, check=False)
    j2 = run_cim("customer", "show", "9999999999", "--as", "cty_a", "--json", home=root, check=False)
    assert j1.stdout == j2.stdout and json.loads(j1.stdout) == {"error": "not found or not permitted"}
    s1 = run_cim("customer", "search", env.in_b, "--as", "cty_a", "--json", home=root)
    assert json.loads(s1.stdout) == {"total": 0, "results": []}
    ok = run_cim("customer", "show", env.in_b, "--as", "cty_b", "--json", home=root)
    assert json.loads(ok.stdout)["customer_id"] == env.in_b
    recs = _records(env)
    assert (
        recs[-1]["action"] == "export_360" and recs[-1]["user_id"] == "cty_b" and recs[-1]["outcome"] == "ok"
    )


def test_cli_refusals(env: Env) -> None:
    root = env.home.root
    r = run_cim("customer", "show", env.in_b, "--as", "analyst", home=root, check=False)
    assert r.returncode == 1 and "no single-customer detail" in r.stderr and env.in_b not in r.stderr
    r = run_cim("customer", "show", env.in_b, "--as", "mallory", home=root, check=False)
    assert r.returncode == 1 and "unknown user 'mallory'" in r.stderr
    assert _records(env)[-1]["outcome"] == "unknown_user"
    r = run_cim("audit", "--as", "cty_a", home=root, check=False)
    assert r.returncode == 1 and "auditors only" in r.stderr
    r = run_cim("customer", "show", env.in_b, "--as", "cty_b", "--as-of", "1999-01", home=root, check=False)
    assert r.returncode == 2 and "no warehouse data for 1999-01" in r.stderr


def test_cli_audit_for_auditor(env: Env) -> None:
    root = env.home.root
    run_cim("customer", "show", env.managed, "--as", "cm", home=root)
    r = run_cim("audit", "--as", "aud", "--user", "cm", "--json", "--verify", home=root)
    out = json.loads(r.stdout)
    assert out["verify"]["ok"]
    assert out["records"][-1]["action"] == "export_360" and out["records"][-1]["target"] == env.managed
    assert {x["user_id"] for x in out["records"]} == {"cm"}
    human = run_cim("audit", "--as", "aud", "--since", "2000-01-01", "--limit", "5", home=root)
    assert "Audit log" in human.stdout
