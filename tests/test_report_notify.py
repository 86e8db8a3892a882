"""The notification hook, against aiosmtpd on 127.0.0.1 as the local SMTP debugging server (no network)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtpd.controller as aiosmtpd_controller  # a dev dependency: CI must have it, never skip
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from cimlib.reports._notify import NotifyError, notify_run, recipients_for, run_message, send
from cimlib.reports._params import Notify

TITLE = {"en": "Monthly management pack", "zh_CN": "月度经营管理报告"}
LABELS = {"province": "province", "county:101000": "桐庐县农村商业银行 (101000)",
          "county:102000": "淳安县农村商业银行 (102000)"}
SCOPES = ["province", "county:101000", "county:102000"]


# ------------------------------------------------------------------------------------------- fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "raw": envelope.content,
            "msg": message_from_bytes(envelope.content, policy=policy.default),
            "login": getattr(session, "auth_data", None),
        })
        return "250 OK"

    def to(self, addr: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if addr in m["to"]]


class Auth:
    """Accepts one user and password; records the logins."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password, self.logins = user.encode(), password.encode(), []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user, self.password)
        self.logins.append((mechanism, auth_data.login if isinstance(auth_data, LoginPassword) else None, ok))
        return AuthResult(success=ok, handled=False)


def _serve(handler: Collector, **kw: Any) -> Iterator[tuple[Collector, int]]:
    port = free_port()
    ctl = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=port, **kw)
    ctl.start()
    try:
        yield handler, port
    finally:
        ctl.stop()


@pytest.fixture
def smtpd() -> Iterator[tuple[Collector, int]]:
    yield from _serve(Collector())


@pytest.fixture
def auth_smtpd() -> Iterator[tuple[Collector, int, Auth]]:
    auth = Auth("cim", "s3cret-pw")
    for handler, port in _serve(Collector(), authenticator=auth, auth_require_tls=False):
        yield handler, port, auth


def settings(port: int, **kw: Any) -> Notify:
    smtp = {"host": "127.0.0.1", "port": port, "timeout_seconds": 5, **kw.pop("smtp", {})}
    return Notify.model_validate({"enabled": True, "sender": "cim@bank.local", "smtp": smtp, **kw})


def publish(root: Path, scope: str, *, size: int = 2000, version: int = 1, dq_allowed: bool = False) -> dict:
    """A published folder with an HTML of ``size`` bytes; returns the run summary's entry for it."""
    scope_dir = scope.replace(":", "-")
    folder = root / "monthly_pack" / "2026-10" / scope_dir / f"v{version}"
    folder.mkdir(parents=True)
    body = f"<html><body>{scope} report</body></html>"
    (folder / "monthly_pack.html").write_text(body + " " * max(0, size - len(body)), encoding="utf-8")
    manifest = {
        "manifest_version": 1, "report": "monthly_pack", "title": TITLE, "period": "2026-10", "scope": scope,
        "scope_dir": scope_dir, "scope_label": LABELS[scope], "locale": "zh_CN", "version": version,
        "status": "published", "snapshot_id": "20261129T141433017Z-695efd", "as_of": "2026-10-31",
        "params": {}, "params_hash": "0123456789abcdef", "code_version": {},
        "dq": {"gate": True, "checks": [], "failures": ["gl_tieout: 1 branch off"] if dq_allowed else [],
               "allowed": dq_allowed},
        "audience": {}, "timings": {}, "files": {"monthly_pack.html": {"bytes": size, "sha256": "0" * 64}},
        "figures_sha256": "", "created_at": "2026-11-29T16:00:00+00:00",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return {**manifest, "folder": str(folder)}


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "outputs" / "reports"
    reports = [publish(root, s) for s in SCOPES]
    return {"command": "cim report monthly_pack --period 2026-10 --burst county", "period": "2026-10",
            "outcome": "success", "reports": reports, "failures": [], "index": str(root / "index.html"),
            "seconds": 12.3}


def attachments(m: dict[str, Any]) -> dict[str, bytes]:
    msg: EmailMessage = m["msg"]
    return {str(p.get_filename()): p.get_content().encode() if isinstance(p.get_content(), str)
            else p.get_content() for p in msg.iter_attachments()}


def bodies(m: dict[str, Any]) -> tuple[str, str]:
    msg: EmailMessage = m["msg"]
    return (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content())


# -------------------------------------------------------------------------------------------- routing
def test_recipients_for_exact_then_kind_plus_default() -> None:
    n = Notify.model_validate({"recipients": {
        "county:101000": ["a@x.cn", "ops@x.cn"], "county": ["c@x.cn"], "province": ["p@x.cn"],
        "default": ["OPS@x.cn", "all@x.cn"]}})
    assert recipients_for(n, "county:101000") == ["a@x.cn", "ops@x.cn", "all@x.cn"]
    assert recipients_for(n, "county:102000") == ["c@x.cn", "OPS@x.cn", "all@x.cn"]
    assert recipients_for(n, "province") == ["p@x.cn", "OPS@x.cn", "all@x.cn"]
    assert recipients_for(Notify(), "province") == []


def test_each_county_gets_only_its_own_report(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    n = settings(port, recipients={"county:101000": ["tonglu@bank.local"], "county": ["county@bank.local"],
                                   "province": ["province@bank.local"], "default": ["ops@bank.local"]})
    res = notify_run(n, outcome="success", run=run, lang="zh_CN", scope_of_recipients=SCOPES)
    assert res["sent"] == 4 and res["skipped"] is None and res["errors"] == []
    assert sorted(res["recipients"]) == ["county@bank.local", "ops@bank.local", "province@bank.local",
                                         "tonglu@bank.local"]
    assert len(box.messages) == 4 and all(len(m["to"]) == 1 for m in box.messages)

    (tonglu,) = box.to("tonglu@bank.local")
    assert list(attachments(tonglu)) == ["monthly_pack_2026-10_county-101000_v1.html"]
    assert b"county:101000 report" in attachments(tonglu)["monthly_pack_2026-10_county-101000_v1.html"]
    raw = tonglu["raw"].decode("utf-8", "replace")
    assert "102000" not in raw and "province" not in raw.lower().replace("province (all", "")
    assert "index.html" not in raw  # the index lists every county
    assert tonglu["msg"]["To"] == "tonglu@bank.local"
    assert tonglu["msg"]["Subject"] == "[CIM] 月度经营管理报告 2026-10：已发布 1 份，失败 0 份"

    # "county" covers every county without its own entry: here only 102000
    (chunan,) = box.to("county@bank.local")
    assert list(attachments(chunan)) == ["monthly_pack_2026-10_county-102000_v1.html"]
    assert "101000" not in chunan["raw"].decode("utf-8", "replace")

    (prov,) = box.to("province@bank.local")
    assert list(attachments(prov)) == ["monthly_pack_2026-10_province_v1.html"]
    text, _ = bodies(prov)
    assert "本次运行各范围的状态" in text and "桐庐县农村商业银行 (101000): 已发布" in text
    assert prov["msg"]["Subject"] == "[CIM] 月度经营管理报告 2026-10：已发布 3 份，失败 0 份"

    (ops,) = box.to("ops@bank.local")
    assert sorted(attachments(ops)) == ["monthly_pack_2026-10_county-101000_v1.html",
                                        "monthly_pack_2026-10_county-102000_v1.html",
                                        "monthly_pack_2026-10_province_v1.html"]
    assert "index.html" in bodies(ops)[0]


def test_links_never_cross_counties(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    n = settings(port, link_base="https://cim.bank.local/reports/",
                 recipients={"county:101000": ["tonglu@bank.local"], "province": ["province@bank.local"],
                             "default": ["ops@bank.local"]})
    res = notify_run(n, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)
    assert res["sent"] == 3
    (tonglu,) = box.to("tonglu@bank.local")
    assert attachments(tonglu) == {}
    text, html = bodies(tonglu)
    link = "https://cim.bank.local/reports/monthly_pack/2026-10/county-101000/v1/monthly_pack.html"
    assert link in text and f'href="{link}"' in html
    for body in (text, html):
        assert body.count("https://") == 1 and "county-102000" not in body and "/province/" not in body
    (prov,) = box.to("province@bank.local")
    ptext, phtml = bodies(prov)
    assert "monthly_pack/2026-10/province/v1/monthly_pack.html" in ptext
    assert "county-101000" not in ptext + phtml and "county-102000" not in ptext + phtml
    assert "Status of every scope of this run" in ptext
    (ops,) = box.to("ops@bank.local")
    otext, _ = bodies(ops)
    assert otext.count("https://cim.bank.local/reports/monthly_pack/") == 3
    assert "https://cim.bank.local/reports/index.html" in otext


def test_one_message_for_someone_of_two_counties(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    n = settings(port, recipients={"county:101000": ["both@bank.local", "a@bank.local"],
                                   "county:102000": ["both@bank.local"]})
    res = notify_run(n, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)
    assert res["sent"] == 2
    (both,) = box.to("both@bank.local")
    assert sorted(attachments(both)) == ["monthly_pack_2026-10_county-101000_v1.html",
                                         "monthly_pack_2026-10_county-102000_v1.html"]
    (a,) = box.to("a@bank.local")
    assert list(attachments(a)) == ["monthly_pack_2026-10_county-101000_v1.html"]


def test_only_the_scopes_asked_for_are_notified(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    n = settings(port, recipients={"county": ["county@bank.local"], "default": ["ops@bank.local"]})
    res = notify_run(n, outcome="success", run=run, lang="en", scope_of_recipients=["county:102000"])
    assert res["sent"] == 1  # both addresses see the same scopes: one message
    (m,) = box.messages
    assert sorted(m["to"]) == ["county@bank.local", "ops@bank.local"]
    for m in box.messages:
        assert list(attachments(m)) == ["monthly_pack_2026-10_county-102000_v1.html"]
        assert "index.html" not in m["raw"].decode()


def test_failures_go_to_their_own_scope(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    run = {**run, "outcome": "failure", "reports": run["reports"][:2],
           "failures": [{"report": "monthly_pack", "scope": "county:102000",
                         "scope_label": "淳安县农村商业银行 (102000)",
                         "error": "cell 5 (targets): KeyError 'x'"}]}
    rec = {"county:101000": ["tonglu@bank.local"], "county:102000": ["chunan@bank.local"],
           "province": ["province@bank.local"]}
    n = settings(port, recipients=rec)
    res = notify_run(n, outcome="failure", run=run, lang="en", scope_of_recipients=SCOPES)
    assert res["sent"] == 3
    (chunan,) = box.to("chunan@bank.local")
    text, _ = bodies(chunan)
    assert "The report run failed." in text and "cell 5 (targets): KeyError 'x'" in text
    assert attachments(chunan) == {} and "101000" not in chunan["raw"].decode("utf-8", "replace")
    assert chunan["msg"]["Subject"] == "[CIM] Monthly management pack 2026-10: 0 published, 1 failed"
    (tonglu,) = box.to("tonglu@bank.local")
    assert "KeyError" not in tonglu["raw"].decode("utf-8", "replace")
    (prov,) = box.to("province@bank.local")
    assert "淳安县农村商业银行 (102000): failed" in bodies(prov)[0]
    assert prov["msg"]["Subject"] == "[CIM] Monthly management pack 2026-10: 2 published, 1 failed"


# ----------------------------------------------------------------------------------- attach or link
def test_attachment_under_and_over_the_size_limit(smtpd: tuple[Collector, int], tmp_path: Path) -> None:
    box, port = smtpd
    root = tmp_path / "reports"
    small = publish(root, "county:101000", size=1000)
    big = publish(root, "county:102000", size=50_000)
    run = {"command": "cim report", "period": "2026-10", "reports": [small, big], "failures": [],
           "index": str(root / "index.html"), "seconds": 1.0}
    n = settings(port, attach_max_bytes=10_000, recipients={"default": ["ops@bank.local"]})
    scopes = ["county:101000", "county:102000"]
    notify_run(n, outcome="success", run=run, lang="en", scope_of_recipients=scopes)
    (m,) = box.messages
    files = attachments(m)
    assert list(files) == ["monthly_pack_2026-10_county-101000_v1.html"]
    assert files["monthly_pack_2026-10_county-101000_v1.html"] == (
        Path(small["folder"]) / "monthly_pack.html").read_bytes()
    text, html = bodies(m)
    assert "attached as monthly_pack_2026-10_county-101000_v1.html" in text
    assert "too large to attach (48.8 KB); on the report server at " \
           "monthly_pack/2026-10/county-102000/v1/monthly_pack.html" in text
    assert "too large to attach" in html


def test_link_base_links_instead_of_attaching(run: dict[str, Any]) -> None:
    n = Notify.model_validate({"link_base": "https://cim.bank.local/reports", "attach_max_bytes": 10**9})
    msg = run_message(n, outcome="success", run=run, lang="en")
    assert list(msg.iter_attachments()) == []
    text = msg.get_body(("plain",)).get_content()
    for scope_dir in ("province", "county-101000", "county-102000"):
        assert f"https://cim.bank.local/reports/monthly_pack/2026-10/{scope_dir}/v1/monthly_pack.html" in text
    assert "https://cim.bank.local/reports/index.html" in text


def test_message_text_and_escaping(run: dict[str, Any]) -> None:
    run["reports"][0] = {**run["reports"][0], "title": {"en": "<script>x</script>", "zh_CN": "<b>月报</b>"},
                         "dq": {"allowed": True, "failures": ["gl_tieout: <diff>"]}}
    msg = run_message(Notify(), outcome="success", run=run, lang="zh_CN")
    assert msg["Subject"].startswith("[CIM] <b>月报</b> / 月度经营管理报告 2026-10：已发布 3 份")
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "⚠ 数据质量检查未通过但仍发布：gl_tieout: <diff>" in text
    assert "<b>月报</b>" not in html and "&lt;b&gt;月报&lt;/b&gt;" in html and "&lt;diff&gt;" in html
    assert "cim report monthly_pack --period 2026-10 --burst county" in text and "12.3 秒" in text
    assert msg["To"] is None and msg["From"] == "cim-workbench@localhost"
    with pytest.raises(ValueError, match="outcome"):
        run_message(Notify(), outcome="maybe", run=run)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ filters
def test_disabled_and_when_filters(smtpd: tuple[Collector, int], run: dict[str, Any]) -> None:
    box, port = smtpd
    rec = {"default": ["ops@bank.local"]}
    off = settings(port, enabled=False, recipients=rec)
    assert notify_run(off, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)["skipped"] \
        == "disabled"
    only_failures = settings(port, when=["failure"], recipients=rec)
    res = notify_run(only_failures, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)
    assert res == {"sent": 0, "recipients": [], "skipped": "when", "errors": []}
    nobody = settings(port)
    assert notify_run(nobody, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)["skipped"] \
        == "no recipients"
    assert box.messages == []
    res = notify_run(only_failures, outcome="failure", run=run, lang="en", scope_of_recipients=SCOPES)
    assert res["sent"] == 1 and len(box.messages) == 1


# ------------------------------------------------------------------------------------------- sending
def test_login_with_the_password_from_the_environment(
    auth_smtpd: tuple[Collector, int, Auth], run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port, auth = auth_smtpd
    n = settings(port, smtp={"user": "cim", "password_env": "CIM_TEST_SMTP_PW"})
    msg = run_message(n, outcome="success", run=run, lang="en")
    monkeypatch.delenv("CIM_TEST_SMTP_PW", raising=False)
    with pytest.raises(NotifyError, match="CIM_TEST_SMTP_PW"):
        send(n, msg, recipients=["ops@bank.local"])
    assert auth.logins == [] and box.messages == []
    monkeypatch.setenv("CIM_TEST_SMTP_PW", "wrong")
    with pytest.raises(NotifyError, match="login as 'cim'"):
        send(n, msg, recipients=["ops@bank.local"])
    monkeypatch.setenv("CIM_TEST_SMTP_PW", "s3cret-pw")
    send(n, msg, recipients=["ops@bank.local"])
    assert auth.logins[-1][1:] == (b"cim", True)
    (m,) = box.messages
    assert m["from"] == "cim@bank.local" and m["to"] == ["ops@bank.local"]


def test_server_down_is_a_notify_error(run: dict[str, Any]) -> None:
    port = free_port()  # nothing listens there
    n = settings(port, recipients={"default": ["ops@bank.local"], "county": ["c@bank.local"]})
    msg = run_message(n, outcome="success", run=run, lang="en")
    started = time.monotonic()
    with pytest.raises(NotifyError, match=f"127.0.0.1:{port}"):
        send(n, msg, recipients=["ops@bank.local"])
    assert time.monotonic() - started < 5
    with pytest.raises(NotifyError) as info:
        notify_run(n, outcome="success", run=run, lang="en", scope_of_recipients=SCOPES)
    assert info.value.result is not None
    assert info.value.result["sent"] == 0 and len(info.value.result["errors"]) == 2
    with pytest.raises(NotifyError, match="no recipients"):
        send(n, msg, recipients=[])


def test_starttls_refused_by_the_server_is_a_notify_error(
    smtpd: tuple[Collector, int], run: dict[str, Any]
) -> None:
    box, port = smtpd
    n = settings(port, smtp={"starttls": True})
    with pytest.raises(NotifyError, match="STARTTLS"):
        send(n, run_message(n, outcome="success", run=run, lang="en"), recipients=["ops@bank.local"])
    assert box.messages == []
