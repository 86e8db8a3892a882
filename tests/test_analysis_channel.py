"""Channel analysis (cimlib.analysis._channel) on the 13-month analysis bank.

Golden numbers are recomputed independently in pandas from other tables than the function reads where
possible (channel volume from ``mart_customer_month`` against the function's ``mart_channel_month``), and
the planted under-used ATMs (``_answers/devices.csv``) must all be listed.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import pandas as pd
import pytest

from cimlib.access import NotPermitted, principal_for, read_audit
from cimlib.analysis import _channel as C
from cimlib.analysis import _channel_charts as K
from cimlib.analysis import load_provincial_params
from cimlib.customer import _data as D
from tests.conftest import Bank

CHANNELS = ["COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE"]
DIGITAL = ["PHONE", "ONLINE", "MOBILE"]
AS_OF = dt.date(2026, 10, 31)
BASE = dt.date(2025, 10, 31)
COUNTY = "101000"


def _frame(home: Any, sql: str) -> pd.DataFrame:
    cols, rows = D.snapshot(home).query(sql)
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture(scope="module")
def home(analysis_bank: Bank) -> Any:
    return analysis_bank.home


@pytest.fixture(scope="module")
def who(home: Any) -> dict[str, Any]:
    users = ("prov_analyst", "county_mgr_101", "branch_mgr_101001", "cust_mgr_e1000005", "auditor")
    return {u: principal_for(u, home) for u in users}


@pytest.fixture(scope="module")
def cm(home: Any) -> pd.DataFrame:
    """Per customer: the channel counts of this month and a year ago, with county, branch and age."""
    cols = ", ".join(f"m.txn_count_{c.lower()} AS {c}" for c in [*CHANNELS, "SYSTEM"])
    df = _frame(
        home,
        f"SELECT m.customer_id, m.as_of_date, d.customer_type, d.county_code, d.home_org_code, d.age, {cols} "
        "FROM mart_customer_month AS m JOIN dim_customer AS d USING (customer_id) "
        f"WHERE m.as_of_date IN (DATE '{AS_OF}', DATE '{BASE}')",
    )
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).dt.date
    df[[*CHANNELS, "SYSTEM"]] = df[[*CHANNELS, "SYSTEM"]].astype("int64")
    df["total"] = df[CHANNELS].sum(axis=1)
    df["digital"] = df[DIGITAL].sum(axis=1)
    return df


@pytest.fixture(scope="module")
def params(home: Any) -> Any:
    return load_provincial_params(home).channel


# ----------------------------------------------------------------------------------------------- volume
def test_volume_matches_the_customer_month_mart_and_shares_add_to_one(who, home, cm) -> None:
    df = C.channel_volume(who["prov_analyst"], home=home)
    assert df.attrs["as_of"] == AS_OF.isoformat() and df.attrs["edition"] == "provincial"
    assert list(df["period"].unique()) == ["current", "prev_month", "last_year", "year_start"]
    assert set(df["channel"]) == set(CHANNELS)  # SYSTEM is not a customer channel
    for _, g in df.groupby("period"):
        assert g["count_share"].sum() == pytest.approx(1.0)
        assert g["amount_share"].sum() == pytest.approx(1.0)
    for day in (AS_OF, BASE):
        got = df[df["as_of_date"] == day].set_index("channel")["txn_count"]
        want = cm[cm["as_of_date"] == day][CHANNELS].sum()
        assert got.to_dict() == want.to_dict()
    assert df.attrs["excluded"]["txn_count"] == int(cm[cm["as_of_date"] == AS_OF]["SYSTEM"].sum()) > 0
    zh = C.channel_volume(who["prov_analyst"], home=home, lang="zh_CN")
    assert "柜面" in set(zh["label"]) and "本月" in set(zh["period_label"])


def test_volume_by_type_adds_up_to_the_channels(who, home) -> None:
    by_channel = C.channel_volume(who["county_mgr_101"], home=home)
    by_type = C.channel_volume(who["county_mgr_101"], home=home, by_txn_type=True)
    summed = by_type.groupby(["period", "channel"])[["txn_count", "txn_amount"]].sum()
    mine = by_channel.set_index(["period", "channel"])[["txn_count", "txn_amount"]]
    pd.testing.assert_frame_equal(summed.sort_index(), mine.sort_index(), check_dtype=False)
    assert not set(by_type["txn_type"]) & {"INTEREST", "FEE", "SALARY", "JUDICIAL", "LOAN_DISBURSE"}


def test_trend_shares_add_to_one_and_show_the_migration(who, home) -> None:
    df = C.channel_trend(who["prov_analyst"], home=home, months=13)
    assert len(df) == 13 * 6 and df["month"].iloc[-1] == "2026-10"
    assert df.groupby("month")["count_share"].sum().to_numpy() == pytest.approx([1.0] * 13)
    share = df.pivot(index="month", columns="channel", values="count_share")
    assert share[DIGITAL].sum(axis=1).iloc[-1] > share[DIGITAL].sum(axis=1).iloc[0]
    assert share["COUNTER"].iloc[-1] < share["COUNTER"].iloc[0]


# -------------------------------------------------------------------------------------------- migration
def test_migration_by_county_is_the_golden_digital_share(who, home, cm) -> None:
    df = C.channel_migration(who["prov_analyst"], home=home, by="county")
    assert df.attrs["base_date"] == BASE.isoformat() and len(df) == 10
    for _, row in df.iterrows():
        for day, col in ((AS_OF, "digital_share"), (BASE, "digital_share_base")):
            g = cm[(cm["as_of_date"] == day) & (cm["county_code"] == row["member"])]
            assert row[col] == pytest.approx(g["digital"].sum() / g["total"].sum())
        now = cm[(cm["as_of_date"] == AS_OF) & (cm["county_code"] == row["member"])]
        assert row["customers"] == (now["total"] > 0).sum()
        assert row["digital_share_change"] == pytest.approx(row["digital_share"] - row["digital_share_base"])
    total = df.attrs["total"]
    now = cm[cm["as_of_date"] == AS_OF]
    assert total["digital_share"] == pytest.approx(now["digital"].sum() / now["total"].sum())
    assert (df["digital_share_change"] > 0).all()  # the synthetic bank migrates everywhere


def test_migration_by_age_uses_the_dimension_bands(who, home, cm) -> None:
    df = C.channel_migration(who["county_mgr_101"], home=home, by="age", base=12)
    assert df.attrs["base_date"] == BASE.isoformat()
    assert list(df["member"]) == ["AGE0", "AGE1", "AGE2", "AGE3", "AGE4", "AGE5", "AGE_NA"]  # NA: no age
    ind = cm[(cm["customer_type"] == "I") & (cm["county_code"] == COUNTY) & (cm["as_of_date"] == AS_OF)]
    old = ind[ind["age"] >= 65]
    assert df.set_index("member").loc["AGE5", "digital_share"] == pytest.approx(
        old["digital"].sum() / old["total"].sum()
    )
    assert df["customers"].sum() == (ind["total"] > 0).sum()  # every individual in exactly one band


def test_county_manager_sees_only_its_county(who, home) -> None:
    p = who["county_mgr_101"]
    assert set(C.channel_migration(p, home=home)["member"]) == {COUNTY}
    assert set(C.channel_migration(p, home=home, by="branch")["member"].str[:3]) == {"101"}
    assert set(C.channel_cost(p, home=home)["org_code"].str[:3]) == {"101"}
    assert set(C.underused_devices(p, home=home, listed_only=False)["county_code"]) == {COUNTY}
    prov = C.channel_cost(who["prov_analyst"], home=home)
    mine = C.channel_cost(p, home=home)
    assert mine["cost"].sum() == pytest.approx(prov[prov["org_code"] == COUNTY]["cost"].sum())
    with pytest.raises(Exception, match="not found or not permitted"):
        C.channel_volume(p, home=home, org="102000")
    with pytest.raises(NotPermitted):
        C.channel_volume(who["cust_mgr_e1000005"], home=home)


def test_small_groups_are_blanked_for_the_provincial_analyst(who, home) -> None:
    prov = C.channel_migration(who["prov_analyst"], home=home, by="age", org="101001")
    full = C.channel_migration(who["county_mgr_101"], home=home, by="age", org="101001")
    k = who["prov_analyst"].min_cell
    cell = full[["customers", "customers_base"]].min(axis=1)
    small = (cell > 0) & (cell < k)
    assert small.any(), "the fixture should have a small age band in one branch"
    assert prov.loc[small, "suppressed"].all() and prov.loc[small, "digital_share"].isna().all()
    assert not full["suppressed"].any()


# ------------------------------------------------------------------------------------------ card usage
def test_card_usage_splits_atm_and_pos_by_device_owner(who, home) -> None:
    df = C.card_usage(who["prov_analyst"], home=home)
    assert set(df["channel"]) == {"ATM", "POS"} and {"OWN", "OTHER"} <= set(df["device_owner"])
    for _, g in df.groupby(["period", "channel"]):
        assert g["count_share"].sum() == pytest.approx(1.0)
    vol = C.channel_volume(who["prov_analyst"], home=home).set_index(["period", "channel"])["txn_count"]
    parts = df.groupby(["period", "channel"])["txn_count"].sum()
    for key, n in parts.items():
        assert n == vol[key]
    cur = df[df["period"] == "current"].set_index(["channel", "device_owner"])["count_share"]
    assert cur[("ATM", "OWN")] == 1.0 and cur[("POS", "OTHER")] == 1.0  # our ATMs; merchants' POS


# ------------------------------------------------------------------------------------------------ cost
def test_cost_is_volume_times_the_parameter(who, home, params) -> None:
    cost = C.channel_cost(who["prov_analyst"], home=home)
    vol = C.channel_volume(who["prov_analyst"], home=home)
    cur = vol[vol["period"] == "current"].set_index("channel")["txn_count"]
    by_channel = cost.groupby("channel")["txn_count"].sum()
    assert by_channel.to_dict() == cur.to_dict()
    want = sum(cur[c] * params.cost_per_txn[c] for c in CHANNELS)
    assert cost.attrs["total_cost"] == pytest.approx(want)
    assert cost.groupby("org_code")["cost_share"].sum().to_numpy() == pytest.approx([1.0] * 10)


def test_cost_per_customer(who, home, cm) -> None:
    df = C.channel_cost_per_customer(who["county_mgr_101"], home=home)
    cost = C.channel_cost(who["county_mgr_101"], home=home)
    assert len(df) == 11 and df["cost"].sum() == pytest.approx(cost["cost"].sum())
    now = cm[(cm["as_of_date"] == AS_OF) & (cm["total"] > 0) & (cm["county_code"] == COUNTY)]
    want = now.groupby("home_org_code").size()
    got = df.set_index("org_code")["customers"]
    assert got.to_dict() == want.reindex(got.index, fill_value=0).to_dict()
    row = df.iloc[0]
    assert row["cost_per_customer"] == pytest.approx(row["cost"] / row["customers"])


def test_saving_prices_this_months_volume_at_last_years_mix(who, home, params) -> None:
    df = C.channel_saving(who["prov_analyst"], home=home)
    vol = C.channel_volume(who["prov_analyst"], home=home)
    now = vol[vol["period"] == "current"].set_index("channel")["txn_count"]
    was = vol[vol["period"] == "last_year"].set_index("channel")["txn_count"]
    at_base = sum(now.sum() * was[c] / was.sum() * params.cost_per_txn[c] for c in CHANNELS)
    actual = sum(now[c] * params.cost_per_txn[c] for c in CHANNELS)
    assert df.attrs["cost"] == pytest.approx(actual) and df.attrs["cost_at_base_mix"] == pytest.approx(
        at_base
    )
    assert df.attrs["saving"] == pytest.approx(at_base - actual) and df.attrs["saving"] > 0
    assert df["saving"].sum() == pytest.approx(df.attrs["saving"])
    assert df["txn_count_at_base_mix"].sum() == pytest.approx(now.sum())


# ------------------------------------------------------------------------------------ under-used devices
def test_underused_atms_find_every_planted_one(who, home, analysis_bank: Bank) -> None:
    planted = pd.read_csv(analysis_bank.raw / "_answers" / "devices.csv", dtype=str)
    assert len(planted) > 0
    default = C.underused_devices(who["prov_analyst"], home=home)
    assert set(planted["terminal_id"]) <= set(default["device"])
    # the absolute floor (200 a month) lists every ATM of a 3,000-customer bank; the peer rule alone:
    peer = C.underused_devices(who["prov_analyst"], home=home, min_monthly_txns=0)
    assert set(planted["terminal_id"]) <= set(peer["device"])
    assert set(peer["reason"]) == {"PEER"} and len(peer) < default.attrs["devices"] / 5
    assert (peer["avg_monthly_txns"] < peer["peer_threshold"]).all()
    every = C.underused_devices(who["prov_analyst"], home=home, min_monthly_txns=0, listed_only=False)
    assert every.attrs["devices"] == len(every) and every["listed"].sum() == len(peer)
    # the county manager's list: the planted ATMs of its county, the same verdicts
    mine = C.underused_devices(who["county_mgr_101"], home=home, min_monthly_txns=0)
    in_county = planted[planted["org_code"].str[:3] == "101"]
    assert set(in_county["terminal_id"]) <= set(mine["device"])
    assert set(mine["device"]) == set(peer[peer["county_code"] == COUNTY]["device"])


def test_underused_average_and_trend_are_golden(who, home) -> None:
    dev = C.underused_devices(who["county_mgr_101"], home=home, listed_only=False, trend_months=6)
    trend = C.underused_trend(who["county_mgr_101"], home=home, listed_only=False, trend_months=6)
    raw = _frame(
        home,
        "SELECT terminal_id, as_of_date, sum(txn_count) AS n FROM mart_channel_month WHERE channel = 'ATM' "
        "AND terminal_id LIKE 'ATM101%' AND as_of_date > DATE '2026-04-30' GROUP BY ALL",
    )
    avg = raw.groupby("terminal_id")["n"].sum() / 6
    got = dev.set_index("device")["avg_monthly_txns"]
    for t, v in avg.items():
        assert got[t] == pytest.approx(float(v))
    assert trend.groupby("device").size().eq(6).all() and set(trend["device"]) == set(dev["device"])
    med = dev["avg_monthly_txns"].median()
    assert dev["peer_median"].iloc[0] == pytest.approx(med)
    br = C.underused_devices(who["prov_analyst"], home=home, kind="BRANCH", listed_only=False)
    rule = (br["avg_monthly_txns"] < br["floor"]) | (br["avg_monthly_txns"] < br["peer_threshold"])
    assert len(br) == 110 and br["listed"].equals(rule) and 0 < rule.sum() < 110


# ------------------------------------------------------------------------------------------------ drill
def test_drill_is_refused_and_audited_for_the_provincial_analyst(who, home) -> None:
    with pytest.raises(NotPermitted):
        C.channel_customers(who["prov_analyst"], home=home)
    log = read_audit(home, who["auditor"], user="prov_analyst", limit=20)
    mine = log[log["action"] == "analysis_drill_channel"]
    assert len(mine) and mine.iloc[-1]["outcome"] == "refused"


def test_counter_only_customers(who, home, cm) -> None:
    df = C.channel_customers(who["county_mgr_101"], home=home, limit=1000)
    now = cm[(cm["as_of_date"] == AS_OF) & (cm["county_code"] == COUNTY)]
    want = now[(now["total"] > 0) & (now["COUNTER"] == now["total"])]
    assert df.attrs["total"] == len(want) == len(df) > 0
    assert set(df["customer_id"]) == set(want["customer_id"])
    assert (df["counter_count"] == df["txn_count"]).all() and (df["digital_count"] == 0).all()
    assert df["link"].str.contains("customer=").all()
    moved = C.channel_customers(who["county_mgr_101"], home=home, pattern="moved_to_digital", by="age",
                                member="AGE5", limit=5)  # fmt: skip
    assert len(moved) <= 5 and (moved["digital_share_change"] > 0).all()
    assert moved["digital_share_change"].is_monotonic_decreasing and (moved["age"] >= 65).all()


# ----------------------------------------------------------------------------------------------- charts
def test_charts_carry_the_frames_data_and_encodings(who, home) -> None:
    p = who["prov_analyst"]
    share = K.channel_share_chart(C.channel_trend(p, home=home, lang="zh_CN"), "zh_CN").to_dict()
    data = next(iter(share["datasets"].values()))
    assert share["mark"]["type"] == "area" and share["encoding"]["y"]["field"] == "count_share"
    assert share["encoding"]["color"]["field"] == "label" and len(data) == 13 * 6
    assert {r["label"] for r in data} >= {"柜面", "手机银行"}
    mig = K.migration_chart(C.channel_migration(p, home=home, by="age"), "en").to_dict()
    assert [layer["mark"]["type"] for layer in mig["layer"]] == ["rule", "circle"]
    cost = K.cost_chart(C.channel_cost(p, home=home, lang="zh_CN"), "zh_CN").to_dict()
    cost_data = next(iter(cost["datasets"].values()))
    total = C.channel_cost(p, home=home).attrs["total_cost"]
    assert sum(r["cost"] for r in cost_data) == pytest.approx(total / 10000)  # 万元 in Chinese
    under = C.underused_trend(p, home=home, min_monthly_txns=0)
    chart = K.underused_chart(under, "en", max_devices=8).to_dict()
    assert chart["facet"]["field"] == "panel" and chart["columns"] == 4
    assert len({r["device"] for r in next(iter(chart["datasets"].values()))}) == 8
    card = K.card_usage_chart(C.card_usage(p, home=home), "en").to_dict()
    assert card["facet"]["row"]["field"] == "label"
    import vl_convert as vlc

    png = vlc.vegalite_to_png(K.migration_chart(C.channel_migration(p, home=home), "zh_CN").to_json())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_options_are_errors(who, home) -> None:
    p = who["county_mgr_101"]
    with pytest.raises(ValueError, match="by must be"):
        C.channel_migration(p, home=home, by="industry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base must be"):
        C.channel_migration(p, home=home, base="yesterday")
    with pytest.raises(ValueError, match="kind must be"):
        C.underused_devices(p, home=home, kind="POS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pattern must be"):
        C.channel_customers(p, home=home, pattern="all")  # type: ignore[arg-type]
    early = C.channel_migration(p, home=home, as_of="2025-12")  # no month a year earlier
    assert early.attrs["base_date"] is None and early["digital_share_base"].isna().all()


def test_every_analysis_is_fast(who, home) -> None:
    p = who["prov_analyst"]
    t0 = time.perf_counter()
    funcs = (C.channel_volume, C.channel_trend, C.channel_migration, C.card_usage, C.channel_cost)
    more = (C.channel_cost_per_customer, C.channel_saving, C.underused_devices, C.underused_trend)
    for f in (*funcs, *more):
        f(p, home=home)
    assert time.perf_counter() - t0 < 10
    assert not math.isnan(C.channel_saving(p, home=home).attrs["saving"])
