"""The customer 360 app, its charts, locale files and sign-in pieces, without a browser or a server."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from tornado.httputil import HTTPHeaders

from cimlib import charts
from cimlib.apps import CustomerApp, customer_360_app
from cimlib.apps.customer_360 import format_cell, is_money_column, table_html
from cimlib.i18n import LANGS, code_label, column_label, format_money, locale_keys, t
from cimlib.serve import (
    CimIdentityProvider,
    IdentityError,
    ServeOptions,
    check_password,
    hash_password,
    normalize_remote_user,
    set_password,
    sign_identity,
    verify_identity,
    voila_config,
)
from cimlib.serve._identity import _ip_allowed
from cimlib.serve._token import SECRET_ENV, TOKEN_ENV, TOKEN_HEADER

ROOT = Path(__file__).resolve().parent.parent
SECRET = "unit-test-secret-0123456789"


# ---- fakes: a principal and a customer service with the real access errors --------------------------------


@dataclass(frozen=True)
class FakePrincipal:
    user_id: str
    display_name: str
    role: str
    org_code: str | None = None
    staff_no: str | None = None
    scope_label: str = "县A"

    @property
    def can_view_detail(self) -> bool:
        return self.role not in ("provincial_analyst", "auditor")


MANAGER = FakePrincipal("cm_a", "王经理", "county_manager", "C01")
ANALYST = FakePrincipal("prov", "李分析", "provincial_analyst", scope_label="全省")


@dataclass
class FakeC360:
    customer_id: str
    customer_type: str = "I"
    as_of: str = "2026-10-31"
    snapshot_id: str = "snap"
    available_months: list[str] = field(default_factory=lambda: ["2026-09", "2026-10"])
    overview: dict[str, Any] = field(default_factory=dict)
    accounts: pd.DataFrame = field(default_factory=pd.DataFrame)
    assets: pd.DataFrame = field(default_factory=pd.DataFrame)
    credit_lines: pd.DataFrame = field(default_factory=pd.DataFrame)
    loans: pd.DataFrame = field(default_factory=pd.DataFrame)
    products: pd.DataFrame = field(default_factory=pd.DataFrame)
    trend: pd.DataFrame = field(default_factory=pd.DataFrame)
    channel_mix: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    risk_flags: pd.DataFrame = field(default_factory=pd.DataFrame)


class FakeService:
    """Knows one customer, C0001, visible to county manager cm_a only."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def search(self, principal: Any, query: str, *, home: Any = None, limit: int = 50) -> pd.DataFrame:
        from cimlib.access import NotFoundOrNotPermitted

        self.calls.append(("search", query))
        if not principal.can_view_detail:
            raise NotFoundOrNotPermitted()
        rows = [
            {
                "customer_id": "C0001",
                "customer_type": "I",
                "cust_name": "张*",
                "id_no": "3****2",
                "phone": "1****8",
                "home_org_name": "城关网点",
                "county_name": "县A",
                "manager_name": "赵*",
                "matched_on": "name",
            }
        ]
        return pd.DataFrame(rows if query in ("张", "C0001") and principal.user_id == "cm_a" else [])

    def customer_360(
        self, principal: Any, customer_id: str, *, as_of: Any = None, home: Any = None
    ) -> FakeC360:
        from cimlib.access import NotFoundOrNotPermitted

        self.calls.append(("customer_360", (customer_id, as_of)))
        if customer_id != "C0001" or principal.user_id != "cm_a":
            raise NotFoundOrNotPermitted()
        months = ["2026-09", "2026-10"]
        return FakeC360(
            customer_id="C0001",
            as_of=f"{as_of or '2026-10'}-30" if as_of else "2026-10-31",
            overview={"cust_name": "张*", "age": 41, "deposit_balance": 123456.78},
            accounts=pd.DataFrame(
                {
                    "account_no": ["6217****0001"],
                    "account_type": ["DEMAND"],
                    "balance": [123456.78],
                    "month_adb": [120000.0],
                }
            ),
            assets=pd.DataFrame({"asset_type": ["DEPOSIT", "WMP"], "value": [123456.78, 50000.0]}),
            products=pd.DataFrame({"product_name": ["活期储蓄"]}),
            trend=pd.DataFrame(
                {
                    "month": months,
                    "deposit_adb": [100000.0, 120000.0],
                    "aum": [150000.0, 173456.78],
                    "loan_balance": [0.0, 0.0],
                }
            ),
            channel_mix=pd.DataFrame({"channel": ["MOBILE", "COUNTER"], "txn_count": [12, 3]}),
        )


def all_html(app: CustomerApp) -> str:
    """Every HTML string the app's widgets show."""
    out = []

    def walk(widget: Any) -> None:
        if hasattr(widget, "value") and isinstance(widget.value, str):
            out.append(widget.value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(app.widget)
    return "\n".join(out)


# ---- locale files ----------------------------------------------------------------------------------------


def test_both_locales_have_the_same_keys_and_no_empty_text() -> None:
    en, zh = locale_keys("en"), locale_keys("zh_CN")
    assert en == zh, f"only in en: {sorted(en - zh)}; only in zh_CN: {sorted(zh - en)}"
    for lang in LANGS:
        assert all(t(k, lang).strip() for k in locale_keys(lang))


def test_every_message_key_used_in_the_code_exists() -> None:
    used: set[str] = set()
    for pkg in ("apps", "charts", "serve"):
        for path in (ROOT / "cimlib" / pkg).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= set(re.findall(r"""\b(?:t|_both)\(\s*["']([a-z_]+\.[a-z_.]+)["']""", text))
            used |= {f"tabs.{m}" for m in re.findall(r'"tabs\.([a-z_]+)"', text)}
            used |= {f"sections.{m}" for m in re.findall(r'"sections\.([a-z_]+)"', text)}
    assert len(used) > 20
    missing = used - locale_keys("en")
    assert not missing, f"keys used in code but missing in the locale files: {sorted(missing)}"


def test_money_is_in_wan_yuan_in_chinese_and_with_separators_in_english() -> None:
    assert format_money(1234567.891, "zh_CN") == "123.46"
    assert format_money(1234567.891, "zh_CN", unit=True) == "123.46 万元"
    assert format_money(1234567.891, "en") == "1,234,567.89"
    assert format_money(None, "en") == "-"
    assert code_label("channel", "MOBILE", "zh_CN") == "手机银行"
    assert code_label("channel", "MOBILE", "en") == "Mobile banking"
    assert column_label("deposit_adb", "zh_CN") == "存款日均"
    assert is_money_column("deposit_adb") and is_money_column("line_amount")
    assert not is_money_column("n_products") and not is_money_column("days_past_due")
    assert not is_money_column("txn_count")
    assert format_cell("balance", 100000, "zh_CN") == "10.00"
    assert format_cell("five_class", "SUBSTANDARD", "zh_CN") == "次级"


def test_table_html_escapes_and_labels() -> None:
    frame = pd.DataFrame({"cust_name": ["<script>x</script>"], "balance": [20000.0]})
    out = table_html(frame, "zh_CN")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "余额 (万元)" in out and "2.00" in out
    assert "Balance (CNY)" in table_html(frame, "en")


# ---- charts ----------------------------------------------------------------------------------------------

TREND = pd.DataFrame(
    {
        "month": [f"2026-{m:02d}" for m in range(1, 13)],
        "deposit_adb": [100000.0 + 1000 * i for i in range(12)],
        "aum": [200000.0] * 12,
        "loan_balance": [50000.0] * 12,
    }
)


def test_balance_trend_chart_data_and_encodings() -> None:
    chart = charts.balance_trend(TREND, "zh_CN")
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "line"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("month", "ordinal")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("value", "quantitative")
    assert enc["color"]["field"] == "series"
    assert "万元" in enc["y"]["title"]
    data = chart.data
    assert len(data) == 36 and set(data["series"]) == {"存款日均", "金融资产(AUM)", "贷款余额"}
    first = data[(data["series"] == "存款日均") & (data["month"] == "2026-01")]["value"].iloc[0]
    assert first == pytest.approx(10.0)  # 100,000 yuan = 10 万元
    en = charts.balance_trend(TREND, "en").data
    assert (
        en[(en["series"] == "Deposits (avg. daily)") & (en["month"] == "2026-01")]["value"].iloc[0]
        == 100000.0
    )
    assert spec["title"] == "近12个月余额"


def test_channel_mix_chart_sums_and_sorts_channels() -> None:
    mix = pd.DataFrame({"channel": ["ATM", "MOBILE", "ATM"], "txn_count": [2, 10, 3]})
    chart = charts.channel_mix(mix, "en")
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["field"] == "channel" and spec["encoding"]["x"]["field"] == "count"
    data = chart.data
    assert list(data["code"]) == ["MOBILE", "ATM"] and list(data["count"]) == [10, 5]
    assert list(data["channel"]) == ["Mobile banking", "ATM"]
    assert data["share"].sum() == pytest.approx(1.0)


def test_assets_by_type_chart() -> None:
    assets = pd.DataFrame({"asset_type": ["WMP", "DEPOSIT"], "value": [50000.0, 150000.0]})
    chart = charts.assets_by_type(assets, "zh_CN")
    spec = chart.to_dict()
    assert spec["encoding"]["x"]["field"] == "value" and spec["encoding"]["y"]["field"] == "asset_type"
    assert list(chart.data["asset_type"]) == ["存款", "理财产品"]
    assert list(chart.data["value"]) == [15.0, 5.0]


def test_empty_data_gives_empty_charts_not_errors() -> None:
    for chart in (
        charts.balance_trend(pd.DataFrame(), "en"),
        charts.channel_mix(pd.DataFrame(), "en"),
        charts.assets_by_type(pd.DataFrame(), "en"),
    ):
        assert len(chart.data) == 0
        assert charts.to_svg(chart).startswith("<svg")


def test_charts_export_offline_and_render_chinese_glyphs() -> None:
    svg = charts.to_svg(charts.balance_trend(TREND, "zh_CN"))
    assert "http" not in svg.replace("http://www.w3.org", "")  # nothing fetched from a CDN
    assert "近12个月余额" in svg
    png = charts.to_png(charts.channel_mix(pd.DataFrame({"channel": ["ATM"], "txn_count": [1]}), "zh_CN"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # With a CJK font, two different Chinese titles give different pixels; without one both are the same
    # empty boxes (tofu). (Debian: fonts-noto-cjk; .ci/run installs it.)
    def title_png(title: str) -> bytes:
        spec = {
            "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": title,
            "config": {"font": charts.CJK_FONT},
            "data": {"values": [{"x": 1}]},
            "mark": "point",
            "encoding": {"x": {"field": "x", "type": "quantitative"}},
        }
        return charts.to_png(spec, scale=1)

    assert title_png("存款余额") != title_png("贷款风险")


# ---- the app's widget logic ------------------------------------------------------------------------------


def test_manager_searches_and_opens_a_customer() -> None:
    service = FakeService()
    app = CustomerApp(MANAGER, service=service, lang="zh_CN")
    assert "王经理" in app.principal_label.value and "县行管理者" in app.principal_label.value
    assert "县A" in app.principal_label.value
    rows = app.search("张", force=True)
    assert rows is not None and list(rows["customer_id"]) == ["C0001"]
    buttons = [c.children[0] for c in app.results_box.children if hasattr(c, "children") and c.children]
    assert [b.description for b in buttons] == ["C0001"]
    buttons[0].click()  # the same path as a user's click
    assert app.current is not None and app.current.customer_id == "C0001"
    assert app.detail.layout.display == "flex"
    assert "概况" in app.tabs.titles and "渠道" in app.tabs.titles and "近12个月趋势" in app.tabs.titles
    pages = "\n".join(p.value for p in app.tabs.children)
    assert "cim-chart-trend" in pages and "cim-chart-channels" in pages and "cim-chart-assets" in pages
    assert "<svg" in pages and "6217****0001" in pages
    assert "12.35" in pages  # 123,456.78 yuan in 万元
    assert app.as_of.options == ("2026-09", "2026-10") and app.as_of.value == "2026-10"


def test_out_of_scope_customer_and_unknown_customer_read_the_same() -> None:
    service = FakeService()
    app = CustomerApp(MANAGER, service=service, lang="en")
    assert app.open("C9999") is None
    message = app.status.value
    assert "not found or not permitted" in message.lower()
    other = CustomerApp(FakePrincipal("cm_b", "Other", "county_manager", "C02"), service=service, lang="en")
    assert other.open("C0001") is None and other.status.value == message
    assert other.search("C0001", force=True) is not None and not len(other.results)
    assert "No customer found" in other.status.value
    assert other.detail.layout.display == "none"


def test_provincial_analyst_gets_no_detail_and_no_service_call() -> None:
    service = FakeService()
    app = CustomerApp(ANALYST, service=service, lang="zh_CN")
    assert app.query.disabled and app.search_button.disabled
    assert t("app.no_detail", "zh_CN") in app.notice.value
    assert app.search("张", force=True) is None
    assert app.open("C0001") is None
    assert service.calls == []
    assert app.current is None and app.results_box.children == ()


def test_language_switch_relabels_everything() -> None:
    app = CustomerApp(MANAGER, service=FakeService(), lang="zh_CN")
    app.search("张", force=True)
    app.open("C0001")
    app.lang_toggle.value = "en"  # what the toggle buttons do
    assert app.lang == "en"
    assert app.search_button.description == "Search"
    assert "County manager" in app.principal_label.value
    assert app.tabs.titles[0] == "Overview" and "Channels" in app.tabs.titles
    html_en = all_html(app)
    assert "Mobile banking" in html_en and "123,456.78" in html_en and "万元" not in html_en
    app.set_language("zh_CN")
    assert app.tabs.titles[0] == "概况" and "手机银行" in all_html(app)


def test_as_of_change_reloads_the_view() -> None:
    service = FakeService()
    app = CustomerApp(MANAGER, service=service, lang="en")
    app.open("C0001")
    app.as_of.value = "2026-09"
    assert service.calls[-1] == ("customer_360", ("C0001", "2026-09"))


def test_enter_then_click_searches_once() -> None:
    service = FakeService()
    app = CustomerApp(MANAGER, service=service, lang="en")
    app.query.value = "张"  # Enter in the box (or the blur when the button is clicked)
    assert service.calls == [("search", "张")]
    app.search_button.click()  # the same query right away is not searched (nor audit-logged) again
    assert len(service.calls) == 1
    app.search("张", force=True)
    assert len(service.calls) == 2
    app.query.value = "李"
    assert service.calls[-1] == ("search", "李")


def test_an_unexpected_error_shows_a_message_not_a_traceback() -> None:
    class Broken(FakeService):
        def search(self, *a: Any, **k: Any) -> pd.DataFrame:
            raise RuntimeError("secret internals /var/lib/x")

    app = CustomerApp(MANAGER, service=Broken(), lang="en")
    app.search_button.click() if app.query.value else None
    app.query.value = "x"
    assert "secret internals" not in app.status.value
    assert t("app.error", "en") in app.status.value


# ---- identity: the signed token, and the app refusing without one ----------------------------------------


def test_token_round_trip() -> None:
    token = sign_identity("cm_a", SECRET)
    assert verify_identity(token, SECRET) == "cm_a"


@pytest.mark.parametrize(
    "case", ["absent", "empty", "forged_secret", "tampered_user", "expired", "garbage", "no_secret"]
)
def test_bad_tokens_are_refused(case: str) -> None:
    now = time.time()
    good = sign_identity("cm_a", SECRET, now=now)
    body, sig = good.split(".")
    token: str | None
    secret: str | None = SECRET
    if case == "absent":
        token = None
    elif case == "empty":
        token = ""
    elif case == "forged_secret":
        token = sign_identity("prov", "attacker-guess")
    elif case == "tampered_user":
        import base64

        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["sub"] = "prov"
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        token = f"{forged}.{sig}"
    elif case == "expired":
        token = sign_identity("cm_a", SECRET, ttl=60, now=now - 3600)
    elif case == "garbage":
        token = "not-a-token"
    else:
        token, secret = good, None
    with pytest.raises(IdentityError):
        verify_identity(token, secret)


@pytest.mark.parametrize("case", ["absent", "forged", "expired"])
def test_app_without_a_valid_identity_shows_no_data(case: str) -> None:
    service = FakeService()
    env = {SECRET_ENV: SECRET}
    if case == "forged":
        env[TOKEN_ENV] = sign_identity("cm_a", "not-the-secret")
    elif case == "expired":
        env[TOKEN_ENV] = sign_identity("cm_a", SECRET, ttl=1, now=time.time() - 120)
    widget = customer_360_app(lang="en", environ=env, service=service)
    assert "cim-denied" in widget._dom_classes
    text = "\n".join(getattr(c, "value", "") for c in widget.children)
    assert "could not confirm who you are" in text
    assert service.calls == []


def test_app_with_a_valid_identity_builds_for_that_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import cimlib.access

    seen: list[str] = []

    def fake_principal_for(user_id: str, home: Any = None) -> FakePrincipal:
        seen.append(user_id)
        return MANAGER

    monkeypatch.setattr(cimlib.access, "principal_for", fake_principal_for)
    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("cm_a", SECRET),
        "QUERY_STRING": "user=prov",
        "HTTP_X_REMOTE_USER": "prov",
    }  # nothing but the token counts
    widget = customer_360_app(lang="zh_CN", environ=env, service=FakeService())
    assert "cim-app" in widget._dom_classes and "cim-denied" not in widget._dom_classes
    assert seen == ["cm_a"]


# ---- deep links: ?customer=<id> opens that customer, through the service --------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("customer=C0001", "C0001"),
        ("customer=+C0001+&lang=en", "C0001"),
        ("x=1&customer=1000%200001", "1000 0001"),
        ("customer=C0001&customer=C0002", "C0001"),
        ("customer=", None),
        ("user=cm_a", None),
        ("", None),
    ],
)
def test_requested_customer_reads_the_query_string(query: str, expected: str | None) -> None:
    from cimlib.apps.customer_360 import requested_customer

    assert requested_customer({"QUERY_STRING": query}) == expected
    assert requested_customer({}) is None


def deep_link(monkeypatch: pytest.MonkeyPatch, user: FakePrincipal, query: str, service: FakeService) -> Any:
    """Build the app as a kernel would for a visit with ``query``, signed in as ``user``."""
    import cimlib.access

    monkeypatch.setattr(cimlib.access, "principal_for", lambda user_id, home=None: user)
    env = {SECRET_ENV: SECRET, TOKEN_ENV: sign_identity(user.user_id, SECRET), "QUERY_STRING": query}
    return customer_360_app(lang="en", environ=env, service=service)


def test_deep_link_opens_the_customer(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService()
    widget = deep_link(monkeypatch, MANAGER, "customer=C0001", service)
    assert service.calls == [("customer_360", ("C0001", None))]
    html_text = "\n".join(getattr(c, "value", "") for c in widget.children)
    detail = next(c for c in widget.children if "cim-detail" in c._dom_classes)
    assert detail.layout.display == "flex"
    assert "C0001" in detail.children[0].children[0].value
    assert "not found" not in html_text.lower()


@pytest.mark.parametrize("customer", ["C9999", "C0001"])
def test_deep_link_out_of_scope_or_unknown_reads_the_same(
    monkeypatch: pytest.MonkeyPatch, customer: str
) -> None:
    service = FakeService()
    other = FakePrincipal("cm_b", "Other", "county_manager", "C02")
    widget = deep_link(monkeypatch, other, f"customer={customer}", service)
    assert service.calls == [("customer_360", (customer, None))]  # asked (and audited) by the service
    status = next(c for c in widget.children if "cim-status" in c._dom_classes)
    assert "not found or not permitted" in status.value.lower()
    detail = next(c for c in widget.children if "cim-detail" in c._dom_classes)
    assert detail.layout.display == "none"


def test_deep_link_cannot_change_who_the_user_is(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService()
    widget = deep_link(monkeypatch, ANALYST, "customer=C0001&user=cm_a&principal=cm_a", service)
    assert service.calls == []  # the analyst has no detail, whatever the link says
    status = next(c for c in widget.children if "cim-status" in c._dom_classes)
    assert t("app.no_detail", "en") in status.value


def test_deep_link_with_an_absurd_id_is_refused_without_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService()
    widget = deep_link(monkeypatch, MANAGER, "customer=" + "9" * 500, service)
    assert service.calls == []
    status = next(c for c in widget.children if "cim-status" in c._dom_classes)
    assert "not found or not permitted" in status.value.lower()


def test_real_deep_link_is_scoped_and_audited(
    bank: Any, real_customers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cimlib.access
    from cimlib.access import read_audit

    real = cimlib.access.principal_for
    monkeypatch.setattr(
        cimlib.access, "principal_for", lambda user_id, home=None: real(user_id, home=bank.home)
    )
    cid = real_customers["I"]

    def visit(user: str) -> Any:
        env = {SECRET_ENV: SECRET, TOKEN_ENV: sign_identity(user, SECRET), "QUERY_STRING": f"customer={cid}"}
        return customer_360_app(lang="en", home=bank.home, environ=env)

    mine = visit("county_mgr_101")
    detail = next(c for c in mine.children if "cim-detail" in c._dom_classes)
    assert detail.layout.display == "flex" and cid in detail.children[0].children[0].value
    other = visit("county_mgr_102")
    status = next(c for c in other.children if "cim-status" in c._dom_classes)
    assert "not found or not permitted" in status.value.lower()
    assert cid not in "\n".join(getattr(c, "value", "") for c in other.children)
    log = read_audit(bank.home, real("auditor", home=bank.home), user="county_mgr_102", limit=20)
    refused = log[(log["target"] == cid) & (log["outcome"] == "not_found_or_not_permitted")]
    assert len(refused) >= 1


# ---- the server side: identity provider, passwords, Voila configuration ----------------------------------


def fake_handler(headers: dict[str, str], peer: str) -> Any:
    request = SimpleNamespace(
        headers=HTTPHeaders(headers),
        remote_ip=peer,
        connection=SimpleNamespace(context=SimpleNamespace(address=(peer, 5555))),
    )
    return SimpleNamespace(request=request)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> CimIdentityProvider:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    p = CimIdentityProvider(auth_mode="header", trusted_proxies=["10.1.2.3", "192.168.0.0/24"], token="")
    monkeypatch.setattr(p, "display_name_of", lambda uid: {"cm_a": "王经理"}.get(uid))
    return p


def test_trusted_proxy_header_signs_in_and_stamps_a_token(provider: CimIdentityProvider) -> None:
    handler = fake_handler({"X-Remote-User": "BANK\\CM_A", TOKEN_HEADER: "forged"}, "10.1.2.3")
    user = asyncio.run(provider.get_user(handler))
    assert user is not None and user.username == "cm_a"
    token = handler.request.headers.get(TOKEN_HEADER)
    assert token != "forged" and verify_identity(token, SECRET) == "cm_a"


def test_user_header_from_an_untrusted_address_is_ignored(provider: CimIdentityProvider) -> None:
    handler = fake_handler(
        {"X-Remote-User": "cm_a", TOKEN_HEADER: sign_identity("cm_a", "x"), "X-Forwarded-For": "10.1.2.3"},
        "10.9.9.9",
    )
    assert asyncio.run(provider.get_user(handler)) is None
    assert TOKEN_HEADER not in handler.request.headers  # a client's own token never reaches a kernel


def test_unknown_sso_user_is_refused(provider: CimIdentityProvider) -> None:
    assert asyncio.run(provider.get_user(fake_handler({"X-Remote-User": "mallory"}, "192.168.0.7"))) is None


def test_remote_user_normalisation_and_proxy_networks() -> None:
    assert normalize_remote_user(" BANK\\Alice ") == "alice"
    assert normalize_remote_user("alice@BANK.CN") == "alice"
    assert _ip_allowed("192.168.0.9", ["192.168.0.0/24"]) and not _ip_allowed(
        "192.168.1.9", ["192.168.0.0/24"]
    )
    assert _ip_allowed("::ffff:10.1.2.3", ["10.1.2.3"]) and not _ip_allowed("junk", ["10.1.2.3"])


def test_passwords_are_hashed_and_the_file_is_private(tmp_path: Path) -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert check_password(stored, "s3cret") and not check_password(stored, "S3cret")
    assert not check_password("garbage", "s3cret")
    path = tmp_path / "state" / "passwords.json"
    set_password(path, "cm_a", "pw1")
    set_password(path, "prov", "pw2")
    data = json.loads(path.read_text())
    assert set(data) == {"cm_a", "prov"} and check_password(data["prov"], "pw2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_voila_config_hides_tracebacks_preheats_and_passes_only_the_token(tmp_path: Path) -> None:
    from cimlib.config import get_home

    cfg = voila_config(ServeOptions(home=get_home(tmp_path), port=9999))
    vc = cfg["VoilaConfiguration"]
    assert vc["show_tracebacks"] is False
    assert vc["preheat_kernel"] is True and vc["default_pool_size"] >= 1
    assert vc["http_header_envs"] == [TOKEN_HEADER]
    assert cfg["Voila"]["identity_provider_class"] == "cimlib.serve._identity.CimIdentityProvider"
    assert cfg["Voila"]["port_retries"] == 0
    no_preheat = voila_config(ServeOptions(home=get_home(tmp_path), preheat=False))
    assert no_preheat["VoilaConfiguration"]["default_pool_size"] == 0


# ---- the notebook ----------------------------------------------------------------------------------------


def test_app_notebook_has_no_logic_and_no_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "apps" / "customer_360.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]


# ---- the app on the shared test bank, through the real access layer and customer service -----------------

FRAMES = (
    "accounts",
    "assets",
    "credit_lines",
    "loans",
    "products",
    "trend",
    "channel_mix",
    "events",
    "risk_flags",
    "cards",
    "wealth",
    "financials",
    "guarantees_given",
    "guarantees_received",
    "business",
    "settlement",
)
# Code values whose label is the code itself in English.
SAME_IN_ENGLISH = {("channel", "ATM"), ("channel", "POS")}


def unlabelled(c360: Any) -> set[str]:
    """Columns, overview keys and code values of a 360 view that either locale has no label for."""
    from cimlib.apps.customer_360 import _CODE_COLUMNS, _HIDDEN_COLUMNS, visible_columns

    found: set[str] = set()

    def check(col: str, values: list[Any]) -> None:
        for lang in LANGS:
            if column_label(col, lang) == col:
                found.add(f"column {col} ({lang})")
            domain = _CODE_COLUMNS.get(col)
            for v in values if domain else ():
                if (
                    isinstance(v, str)
                    and code_label(domain, v, lang) == v
                    and (domain, v) not in SAME_IN_ENGLISH
                ):
                    found.add(f"code {domain}.{v} ({lang})")

    for key, value in c360.overview.items():
        if key not in _HIDDEN_COLUMNS:
            check(key, value if isinstance(value, list) else [value])
    for name in FRAMES:
        frame = getattr(c360, name)
        for col in visible_columns(frame, name):
            check(col, frame[col].dropna().tolist())
    return found


@pytest.fixture(scope="module")
def real_customers(bank: Any) -> dict[str, Any]:
    from cimlib.access import principal_for
    from cimlib.customer import search

    manager = principal_for("county_mgr_101", home=bank.home)
    found: dict[str, Any] = {"manager": manager}
    for query in ("王", "李", "张", "刘", "陈", "桐庐"):
        rows = search(manager, query, home=bank.home, limit=50)
        for rec in rows.to_dict("records"):
            found.setdefault(rec["customer_type"], rec["customer_id"])
    by_number = search(manager, found.get("I", ""), home=bank.home)
    found["matched_on"] = set(rows["matched_on"]) | set(by_number["matched_on"])
    assert {"I", "C"} <= set(found), found
    return found


@pytest.mark.parametrize("ctype", ["I", "C"])
def test_real_360_renders_every_tab_with_labels_in_both_languages(
    bank: Any, real_customers: dict[str, Any], ctype: str
) -> None:
    app = CustomerApp(real_customers["manager"], home=bank.home, lang="zh_CN")
    assert "县行 101000" in app.principal_label.value
    c360 = app.open(real_customers[ctype])
    assert c360 is not None and c360.customer_id == real_customers[ctype]
    titles = app.tabs.titles
    assert ("财务" in titles) == (ctype == "C") and "渠道" in titles and "近12个月趋势" in titles
    pages = "\n".join(p.value for p in app.tabs.children)
    assert pages.count("<svg") == 3  # trend, assets, channel mix: rendered in the kernel, no CDN
    assert not unlabelled(c360), sorted(unlabelled(c360))
    for how in real_customers["matched_on"]:  # the results list says what matched
        assert code_label("matched_on", how, "zh_CN") != how and code_label("matched_on", how, "en") != how
    app.set_language("en")
    assert app.tabs.titles[0] == "Overview" and "County bank 101000" in app.principal_label.value


def test_real_search_from_another_county_lists_nothing(bank: Any, real_customers: dict[str, Any]) -> None:
    from cimlib.access import principal_for

    other = CustomerApp(principal_for("county_mgr_102", home=bank.home), home=bank.home, lang="en")
    rows = other.search(real_customers["I"], force=True)
    assert rows is not None and len(rows) == 0
    assert other.open(real_customers["I"]) is None
    assert "not found or not permitted" in other.status.value.lower()


class FakeHubAuth:
    """Stands in for jupyterhub's HubOAuth: a user model for the request, and its scope check."""

    access_scopes = frozenset({"access:services!service=cim"})

    def __init__(self, model: dict[str, Any] | None) -> None:
        self.model = model

    async def get_user(self, handler: Any, *, sync: bool = True) -> dict[str, Any] | None:
        assert sync is False
        return self.model

    def check_scopes(self, required: Any, model: dict[str, Any]) -> set[str]:
        return set(required) & set(model.get("scopes", []))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"kind": "user", "name": "CM_A", "scopes": ["access:services!service=cim"]}, "cm_a"),
        ({"kind": "user", "name": "cm_a", "scopes": []}, None),  # the Hub did not grant this service
        ({"kind": "user", "name": "mallory", "scopes": ["access:services!service=cim"]}, None),
        ({"kind": "service", "name": "cm_a", "scopes": ["access:services!service=cim"]}, None),
        (None, None),
    ],
)
def test_jupyterhub_mode_maps_hub_users_to_access_yaml(
    provider: CimIdentityProvider, model: dict[str, Any] | None, expected: str | None
) -> None:
    provider.auth_mode = "jupyterhub"
    provider.hub_auth = FakeHubAuth(model)
    handler = fake_handler({TOKEN_HEADER: "forged", "X-Remote-User": "cm_a"}, "10.1.2.3")
    user = asyncio.run(provider.get_user(handler))
    assert (user.username if user else None) == expected
    token = handler.request.headers.get(TOKEN_HEADER)
    assert (verify_identity(token, SECRET) if token else None) == expected


def test_sign_in_routes_live_under_the_base_url(provider: CimIdentityProvider) -> None:
    from traitlets.config import Configurable

    server = Configurable()
    server.server_url = server.base_url = "/cim/"  # type: ignore[attr-defined]
    provider.parent = server
    paths = [path for path, _ in provider.get_handlers()]
    assert "/cim/login" in paths and "/cim/logout" in paths
