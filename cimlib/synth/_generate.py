"""The generator: builds the world once, then steps month by month, one extract folder per as-of date."""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from cimlib.config import get_home
from cimlib.contracts import load_contracts
from cimlib.synth import _arrow as A
from cimlib.synth import _contracts as C
from cimlib.synth import _devices as DV
from cimlib.synth import _setup as S

log = logging.getLogger(__name__)

DEFAULT_END = dt.date(2026, 10, 31)
TYPES = [
    "DEPOSIT",
    "WITHDRAW",
    "TRANSFER_IN",
    "TRANSFER_OUT",
    "PAYMENT",
    "CONSUME",
    "SALARY",
    "INTEREST",
    "FEE",
    "JUDICIAL",
    "LOAN_REPAY",
    "LOAN_DISBURSE",
    "WEALTH_BUY",
    "WEALTH_REDEEM",
    "SETTLEMENT",
]
T = {t: i for i, t in enumerate(TYPES)}
CHANNELS = ["COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE", "SYSTEM"]
CH = {c: i for i, c in enumerate(CHANNELS)}
COUNTERPARTIES = ["OWN", "OTHER", "NONE"]
MCC = ["5411", "5812", "5541", "5311", "5912", "4900", "5999", "7011", "5732", "8062"]
FIVE = ["NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL", "LOSS"]
# type probabilities: (credit?, corporate?) -> {type: p}
TYPE_P = {
    (True, False): {
        "DEPOSIT": 0.3,
        "TRANSFER_IN": 0.4,
        "SALARY": 0.2,
        "WEALTH_REDEEM": 0.05,
        "LOAN_DISBURSE": 0.05,
    },
    (True, True): {"DEPOSIT": 0.1, "TRANSFER_IN": 0.35, "SETTLEMENT": 0.5, "LOAN_DISBURSE": 0.05},
    (False, False): {
        "WITHDRAW": 0.22,
        "TRANSFER_OUT": 0.25,
        "PAYMENT": 0.15,
        "CONSUME": 0.28,
        "LOAN_REPAY": 0.05,
        "WEALTH_BUY": 0.03,
        "FEE": 0.019,
        "JUDICIAL": 0.001,
    },
    (False, True): {
        "WITHDRAW": 0.1,
        "TRANSFER_OUT": 0.3,
        "PAYMENT": 0.1,
        "SETTLEMENT": 0.45,
        "LOAN_REPAY": 0.04,
        "FEE": 0.01,
    },
}
DIGITAL_ABLE = np.isin(
    np.arange(len(TYPES)),
    [
        T[t]
        for t in (
            "TRANSFER_IN",
            "TRANSFER_OUT",
            "PAYMENT",
            "LOAN_REPAY",
            "WEALTH_BUY",
            "WEALTH_REDEEM",
            "SETTLEMENT",
        )
    ],
)
SYSTEM_TYPES = np.isin(
    np.arange(len(TYPES)), [T[t] for t in ("SALARY", "INTEREST", "FEE", "JUDICIAL", "LOAN_DISBURSE")]
)
CASH_TYPES = np.isin(np.arange(len(TYPES)), [T["DEPOSIT"], T["WITHDRAW"]])
# planted 360 answers (customers.csv): events fall in (as-of, as-of + this many days]
EVENT_HORIZON_DAYS = 30
CUSTOMER_ANSWER_COLUMNS = (
    "cust_no", "customer_type", "other_cust_no", "picked_as", "as_of_date", "deposit_balance", "loan_balance",
    "n_products", "products", "events",
)  # fmt: skip
# counterparty: probability of OTHER bank, or -1 for NONE, per type
CP_OTHER = np.array([-1, -1, 0.55, 0.55, 1, 1, 0, -1, -1, -1, 0, 0, 0, 0, 0.6])


def _month_ends(end: dt.date, months: int) -> list[dt.date]:
    out = []
    base = end.year * 12 + end.month - 1
    for i in range(months):
        y, m = divmod(base - i, 12)
        m += 1
        out.append(end if i == 0 else dt.date(y, m, calendar.monthrange(y, m)[1]))
    return out[::-1]


def _mapping_path() -> Path:
    p = get_home().parameters / "sources" / "default.yaml"
    if p.exists():
        return p
    return Path(__file__).resolve().parents[2] / "parameters" / "sources" / "default.yaml"


class _Sim:
    def __init__(self, out_dir: Path, customers: int, months: int, seed: int, end: dt.date) -> None:
        self.out = out_dir
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.seed = seed
        self.dates = _month_ends(end, months)
        as_of = [A.days(d) for d in self.dates]
        self.firsts = [A.days(d.replace(day=1)) for d in self.dates]
        self.w = S.World(w0=self.firsts[0], end=as_of[-1], as_of=as_of, n=customers)
        self.contracts = load_contracts()
        self.writer = A.ExtractWriter(yaml.safe_load(_mapping_path().read_text(encoding="utf-8")))
        self.rows: dict[str, int] = {}
        self.answers: dict[str, list[tuple]] = {"swings": [], "risk": []}

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        rng, w = self.rng, self.w
        S.build_orgs(rng, w)
        S.build_staff(rng, w)
        S.build_products(w)
        S.build_customers(rng, w)
        # Groups draw from their own stream, so adding them changed no other value of the bank.
        S.build_groups(np.random.Generator(np.random.PCG64([self.seed, 7301])), w)
        self.ac = C.build_accounts(rng, w)
        self.ln = C.build_loans(rng, w)
        C.build_churn(rng, w, self.ln["borrower"])
        self.cl = C.build_lines(rng, w, self.ln)
        self.gu, self.gu_start = C.build_guarantees(rng, w, self.ln)
        self.cd = C.build_cards(rng, w, self.ac)
        self.wh = C.build_wealth(rng, w)
        self.cb = C.build_corp_business(rng, w, self.firsts)
        self.fin = C.build_financials(rng, w)
        self.ma = C.build_assignments(rng, w, self.firsts)
        # Tellers and ATMs come from index hashing, not from rng: every other value stays the same.
        self.dev = DV.build_devices(
            w.br_code, w.br_county, np.asarray(w.tables["staff_branch"]), w.staff.column("role")
        )
        n = w.n
        self.pos_ind = np.full(n, -1)
        self.pos_ind[w.ind_idx] = np.arange(len(w.ind_idx))
        self.pos_cor = np.full(n, -1)
        self.pos_cor[w.cor_idx] = np.arange(len(w.cor_idx))
        ac = self.ac
        self.n_time = np.bincount(ac["cust"][ac["typ"] == 1], minlength=n)
        self.n_dem = np.bincount(ac["cust"][ac["typ"] == 0], minlength=n)
        ln = self.ln
        nl = len(ln["cust"])
        self.loan_bal = np.where(
            ln["status"] == 0, ln["contract"] * (ln["term"] - ln["paid"]) // ln["term"], 0
        )
        self.loan_bal[ln["start"] >= w.w0] = 0
        self.loan_rank = np.maximum(self._floor(ln["dpd"]), 1)
        self.prev_adb: np.ndarray | None = None
        self.loan_first = np.full(n, C.INF)
        np.minimum.at(self.loan_first, ln["cust"], ln["start"])
        np.minimum.at(self.loan_first, self.cl["cust"], self.cl["start"])
        self.txn_seq = 0
        self.dig_share: list[float] = []
        del nl

    @staticmethod
    def _floor(dpd: np.ndarray) -> np.ndarray:
        return np.select([dpd > 360, dpd > 270, dpd > 90, dpd > 0], [5, 4, 3, 2], 1)

    # ------------------------------------------------------------------ month step
    def month(self, k: int) -> dict[str, pa.Table]:
        rng, w, ac = self.rng, self.w, self.ac
        f, e = self.firsts[k], w.as_of[k]
        D = e - f + 1
        y, mo = self.dates[k].year, self.dates[k].month
        g = (y - 2024) * 12 + (mo - 1)
        cust = ac["cust"]
        na = len(cust)
        exists = ac["open"] <= e
        in_period = exists & (ac["close"] >= f)
        cm = w.churn_month[cust]
        kind = w.churn_kind[cust]
        closing = in_period & (cm == k)  # churners drain/close this month
        post_silent = (kind == 2) & (cm >= 0) & (cm < k)
        ahead = np.where((cm > k) & (cm - k <= 3), cm - k, 0)
        fac = np.where(ahead > 0, np.array([1.0, 0.45, 0.65, 0.85])[ahead], 1.0)
        fac = np.where(post_silent, 0.0, fac)
        tgt = ac["target"] * fac
        bal0 = ac["bal"].copy()
        opened_now = (ac["open"] >= f) & (ac["open"] <= e)
        parts: list[dict[str, np.ndarray]] = []

        def add(
            acc: np.ndarray,
            day: np.ndarray,
            amt: np.ndarray,
            credit: np.ndarray,
            typ: np.ndarray,
            scalable: bool = False,
            chan: np.ndarray | None = None,
            other_bank: bool = False,
        ) -> None:
            parts.append(
                {
                    "acc": acc,
                    "day": day,
                    "amt": amt.astype(np.int64),
                    "credit": credit,
                    "typ": typ.astype(np.int8),
                    "scal": np.full(len(acc), scalable),
                    "chan": np.full(len(acc), -1, np.int8) if chan is None else chan.astype(np.int8),
                    "other": np.full(len(acc), other_bank),
                }
            )

        # opening deposits
        op = np.flatnonzero(opened_now & ~closing)
        amt = np.where(
            ac["typ"][op] == 1,
            ac["principal0"][op],
            np.maximum((ac["target"][op] * rng.uniform(0.3, 1.0, len(op))).round(-2), 10000),
        )
        add(
            op,
            ac["open"][op],
            amt,
            np.ones(len(op), bool),
            np.full(len(op), T["DEPOSIT"]),
            chan=np.full(len(op), CH["COUNTER"]),
        )
        # swings (planted): large early inflow or outflow on the first demand account
        swing_cust = np.zeros(0, np.int64)
        if k >= 1:
            cand = (
                ac["first_demand"]
                & (ac["typ"] == 0)
                & in_period
                & ~opened_now
                & (cm < 0)
                & ~w.dormant[cust]
                & (self.n_time[cust] == 0)
                & (self.n_dem[cust] == 1)
                & (bal0 >= 1_000_000)
                & ~ac["frozen"]
            )
            sw = np.flatnonzero(cand & (rng.random(na) < 0.004))
            up = rng.random(len(sw)) < 0.6
            amt = np.where(
                up, bal0[sw] * rng.uniform(2.5, 6.0, len(sw)), bal0[sw] * rng.uniform(0.88, 0.97, len(sw))
            )
            amt = np.maximum(amt.round(-2), 100).astype(np.int64)
            add(
                sw,
                f + rng.integers(0, 3, len(sw)),
                amt,
                up,
                np.where(up, T["TRANSFER_IN"], T["TRANSFER_OUT"]),
            )
            # targets are left alone: the swing is a one-off that mean reversion works off over later months
            swing_cust = cust[sw]
        else:
            sw = np.zeros(0, np.int64)
        special = np.zeros(na, bool)
        special[sw] = True
        # churn: drain or close
        ch = np.flatnonzero(closing & (bal0 > 0))
        cday = w.churn_day[cust[ch]]
        rest = np.where(kind[ch] == 2, np.minimum(bal0[ch], rng.integers(0, 5000, len(ch))), 0)
        add(
            ch,
            cday,
            bal0[ch] - rest,
            np.zeros(len(ch), bool),
            np.where(rng.random(len(ch)) < 0.5, T["WITHDRAW"], T["TRANSFER_OUT"]),
            chan=np.full(len(ch), 0),
        )
        close_now = np.flatnonzero(closing & (kind == 1))
        ac["close"][close_now] = w.churn_day[cust[close_now]]
        # before leaving, money walks out: in each of the 4 months before the churn month a leaver moves a
        # growing share of its main demand account to another bank (the precursor a churn model must see)
        ahead4 = np.where((cm > k) & (cm - k <= 4), cm - k, 0)
        dd = np.flatnonzero(
            (ahead4 > 0) & ac["first_demand"] & (ac["typ"] == 0) & in_period & ~opened_now & ~ac["frozen"]
            & (bal0 > 0)
        )
        share = np.array([0.0, 0.5, 0.35, 0.25, 0.15])[ahead4[dd]] * rng.uniform(0.8, 1.2, len(dd))
        amt = np.maximum((bal0[dd] * share).round(-2), 100).astype(np.int64)
        ok = amt < bal0[dd]
        dd, amt = dd[ok], amt[ok]
        add(
            dd,
            f + rng.integers(0, max(D - 1, 1), len(dd)),
            amt,
            np.zeros(len(dd), bool),
            np.full(len(dd), T["TRANSFER_OUT"]),
            other_bank=True,  # the channel follows the month's digital share, like any transfer
        )
        # time-deposit maturities: interest capitalised, rolled over
        td = np.flatnonzero((ac["typ"] == 1) & in_period & ~closing & (ac["mat"] <= e) & (ac["mat"] >= f))
        intr = bal0[td] * ac["rate"][td] * ac["term"][td] // 12_000_000
        keep = intr > 0
        add(
            td[keep],
            ac["mat"][td][keep],
            intr[keep],
            np.ones(keep.sum(), bool),
            np.full(keep.sum(), T["INTEREST"]),
        )
        ac["mat"][td] = A.add_months(ac["mat"][td], ac["term"][td])
        # quarterly demand interest on the 21st
        if mo in (3, 6, 9, 12) and e >= f + 20:
            di = np.flatnonzero((ac["typ"] == 0) & in_period & ~closing & ~opened_now & (bal0 > 0))
            intr = bal0[di] * ac["rate"][di] // 4_000_000
            keep = intr > 0
            add(
                di[keep],
                np.full(keep.sum(), f + 20),
                intr[keep],
                np.ones(keep.sum(), bool),
                np.full(keep.sum(), T["INTEREST"]),
            )
        # regular activity on demand accounts
        act = (ac["typ"] == 0) & in_period & ~closing & ~special & ~ac["frozen"]
        lam = w.activity[cust] * fac * np.where(ac["first_demand"], 1.0, 0.35) * np.where(act, 1.0, 0.0)
        cnt = rng.poisson(lam)
        acc = np.repeat(np.arange(na), cnt)
        nt = len(acc)
        sday = np.maximum(ac["open"][acc], f)
        day = sday + (rng.random(nt) * (e - sday + 1)).astype(np.int64)
        b0, tg = bal0[acc].astype(float), tgt[acc]
        # mean reversion to the target; debits are sized to what the account holds, credits to the target
        pcred = np.clip(0.5 + 0.4 * (tg - b0) / (tg + b0 + 1), 0.15, 0.85)
        credit = rng.random(nt) < pcred
        per_txn = 1.0 / np.maximum(lam[acc], 1.0)
        scale = np.where(credit, tg, np.minimum(tg, np.maximum(b0, 0.2 * tg)))
        amt = scale * np.clip(per_txn, 0.08, 0.5) * rng.lognormal(-0.2, 0.8, nt)
        amt = np.where(rng.random(nt) < 0.5, amt.round(-4), amt.round(-2))
        amt = np.maximum(amt, 100)
        corp = w.corp[cust[acc]]
        typ = np.zeros(nt, np.int64)
        u = rng.random(nt)
        for (cr, co), probs in TYPE_P.items():
            sel = (credit == cr) & (corp == co)
            keys = list(probs)
            cum = np.cumsum([probs[t] for t in keys])
            cum /= cum[-1]
            typ[sel] = np.array([T[t] for t in keys])[np.minimum(np.searchsorted(cum, u[sel]), len(keys) - 1)]
        add(acc, day, amt, credit, typ, scalable=True)

        # ---- combine, cap debits, balances and accumulators
        tx = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        sign = np.where(tx["credit"], 1, -1)
        inflow = np.bincount(tx["acc"], weights=np.where(tx["credit"], tx["amt"], 0), minlength=na)
        fixed_out = np.bincount(
            tx["acc"], weights=np.where(~tx["credit"] & ~tx["scal"], tx["amt"], 0), minlength=na
        )
        scal_out = np.bincount(
            tx["acc"], weights=np.where(~tx["credit"] & tx["scal"], tx["amt"], 0), minlength=na
        )
        avail = bal0 + inflow - fixed_out
        factor = np.where(scal_out > avail, np.maximum(avail, 0) / np.maximum(scal_out, 1), 1.0)
        sd = ~tx["credit"] & tx["scal"]
        tx["amt"] = np.where(sd, np.maximum(np.floor(tx["amt"] * factor[tx["acc"]]), 1), tx["amt"]).astype(
            np.int64
        )
        for _ in range(3):
            scal_out = np.bincount(tx["acc"], weights=np.where(sd, tx["amt"], 0), minlength=na)
            over = scal_out > avail
            if not over.any():
                break
            drop = sd & over[tx["acc"]]
            tx = {key: v[~drop] for key, v in tx.items()}
            sd = sd[~drop]
            sign = sign[~drop]
        signed = sign * tx["amt"]
        net = np.rint(np.bincount(tx["acc"], weights=signed, minlength=na)).astype(np.int64)
        wsum = np.rint(np.bincount(tx["acc"], weights=signed * (e - tx["day"] + 1), minlength=na)).astype(
            np.int64
        )
        bal = bal0 + net
        if (bal[in_period] < 0).any():
            raise AssertionError("negative balance in synthetic month")
        accum = np.maximum(bal0 * D + wsum, 0)
        ac["bal"] = bal
        # ---- transaction fields
        nt = len(tx["acc"])
        typ = tx["typ"].astype(np.int64)
        # channel drift: digital adoption rises by ~1.5 points a month from 20% in January 2023
        p_dig = float(np.clip(0.20 + 0.015 * (g + 12), 0.05, 0.95))
        chan = tx["chan"].astype(np.int64)
        r = rng.random(nt)
        r2 = rng.random(nt)
        online_share = float(np.clip(0.45 - 0.008 * (g + 12), 0.1, 0.45))
        dig_ch = np.where(
            r2 < 0.05, CH["PHONE"], np.where(r2 < 0.05 + online_share, CH["ONLINE"], CH["MOBILE"])
        )
        qr = (typ == T["CONSUME"]) & (r < p_dig * 0.6)
        auto = np.select(
            [SYSTEM_TYPES[typ], qr, typ == T["CONSUME"], CASH_TYPES[typ], DIGITAL_ABLE[typ] & (r < p_dig)],
            [CH["SYSTEM"], CH["MOBILE"], CH["POS"], np.where(r < 0.45, CH["ATM"], CH["COUNTER"]), dig_ch],
            CH["COUNTER"],
        )
        chan = np.where(chan >= 0, chan, auto)
        cpp = CP_OTHER[typ]
        cp = np.where(cpp < 0, 2, (rng.random(nt) < cpp).astype(np.int64))
        cp = np.where(tx["other"], 1, cp)
        secs = np.where(
            chan == CH["SYSTEM"],
            3600 + rng.integers(0, 3 * 3600, nt),
            7 * 3600 + (rng.beta(2, 2, nt) * 15 * 3600).astype(np.int64),
        )
        ts = tx["day"] * 86400 + secs
        order = np.argsort(ts, kind="stable")
        # A flow that rounds to 0.00 is no transaction: a real core system posts none (contract min 0.01).
        order = order[tx["amt"][order] > 0]
        mcc = np.where(chan == CH["POS"], rng.integers(0, len(MCC), nt), -1)
        o_acc, o_chan = tx["acc"][order], chan[order]
        teller_no, terminal_id = DV.assign(
            self.dev,
            w.staff.column("staff_no"),
            w.branch[cust[o_acc]],
            o_acc,
            tx["day"][order],
            tx["amt"][order],
            o_chan == CH["COUNTER"],
            o_chan == CH["ATM"],
        )
        ymd = y * 10000 + mo * 100 + self.dates[k].day
        ci = ~SYSTEM_TYPES[typ]
        self.dig_share.append(float(np.isin(chan[ci], [3, 4, 5]).mean()) if ci.any() else 0.0)
        txn = pa.table(
            {
                "txn_id": A.ascii_strings(
                    np.hstack([A.digits(np.full(len(order), ymd), 8), A.digits(np.arange(len(order)), 10)])
                ),
                "account_no": ac["acct_no"].take(pa.array(tx["acc"][order])),
                "txn_time": pa.array(ts[order].astype("datetime64[s]")),
                "amount": A.money(tx["amt"][order]),
                "direction": pa.DictionaryArray.from_arrays(
                    pa.array(np.where(tx["credit"][order], 0, 1).astype(np.int8)), pa.array(["C", "D"])
                ),
                "channel": pa.DictionaryArray.from_arrays(
                    pa.array(chan[order].astype(np.int8)), pa.array(CHANNELS)
                ),
                "txn_type": pa.DictionaryArray.from_arrays(
                    pa.array(typ[order].astype(np.int8)), pa.array(TYPES)
                ),
                "counterparty": pa.DictionaryArray.from_arrays(
                    pa.array(cp[order].astype(np.int8)), pa.array(COUNTERPARTIES)
                ),
                "mcc": A.pick(MCC, np.maximum(mcc[order], 0), mask=mcc[order] < 0),
                "teller_no": teller_no,
                "terminal_id": terminal_id,
            }
        )
        # ---- swings answers: customer ADB change
        adb = np.bincount(cust[in_period], weights=accum[in_period] / D, minlength=w.n)
        if self.prev_adb is not None and len(swing_cust):
            prev = self.prev_adb[swing_cust]
            ok = prev > 0
            ok[ok] = (
                np.abs(adb[swing_cust][ok] - prev[ok]) >= 0.5 * prev[ok]
            )  # keep swings that show as abnormal
            pct = (adb[swing_cust][ok] - prev[ok]) / prev[ok] * 100
            iso = self.dates[k].isoformat()
            cn = w.cust_no.take(pa.array(swing_cust[ok])).to_pylist()
            self.answers["swings"] += [(c, iso, "ADB", f"{p:.2f}") for c, p in zip(cn, pct, strict=True)]
        self.prev_adb = adb
        tables = {"transaction": txn}
        tables.update(self._deposit_tables(k, in_period, bal, accum, D))
        tables.update(self._loan_tables(k, f, e, D))
        tables.update(self._other_tables(k, e))
        return tables

    def _deposit_tables(
        self, k: int, in_period: np.ndarray, bal: np.ndarray, accum: np.ndarray, D: int
    ) -> dict[str, pa.Table]:
        w, ac = self.w, self.ac
        e = w.as_of[k]
        ex = np.flatnonzero(ac["open"] <= e)
        cust = ac["cust"][ex]
        closed = ac["close"][ex] <= e
        status = np.where(
            closed, 3, np.where(ac["frozen"][ex], 2, np.where(w.dormant[cust] & (ac["typ"][ex] == 0), 1, 0))
        )
        is_time = ac["typ"][ex] == 1
        dep = pa.table(
            {
                "account_no": ac["acct_no"].take(pa.array(ex)),
                "cust_no": w.cust_no.take(pa.array(cust)),
                "product_code": self.w.product.column("product_code").take(pa.array(ac["prod"][ex])),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[cust])),
                "account_type": A.pick(["DEMAND", "TIME"], ac["typ"][ex]),
                "currency": pa.array(["CNY"] * len(ex)),
                "open_date": A.date_arr(ac["open"][ex]),
                "close_date": A.date_arr(np.where(closed, ac["close"][ex], 0), mask=~closed),
                "status": A.pick(["NORMAL", "DORMANT", "FROZEN", "CLOSED"], status),
                "rate": A.rate(ac["rate"][ex]),
                "term_months": A.int_arr(ac["term"][ex], mask=~is_time),
                "maturity_date": A.date_arr(np.where(is_time, ac["mat"][ex], 0), mask=~is_time),
            }
        )
        ip = np.flatnonzero(in_period)
        bal_t = pa.table(
            {
                "account_no": ac["acct_no"].take(pa.array(ip)),
                "balance": A.money(bal[ip]),
                "accum_balance": A.money(accum[ip]),
                "days": A.int_arr(np.full(len(ip), D)),
            }
        )
        # GL: deposits by branch x subject (2011 2012 2013 2014), loans later added
        nb = len(w.br_code)
        c = ac["cust"][ip]
        subj = w.corp[c] * 2 + ac["typ"][ip]
        self.gl = np.zeros((nb, 6))
        self.gl[:, :4] = np.bincount(w.branch[c] * 4 + subj, weights=bal[ip], minlength=nb * 4).reshape(nb, 4)
        return {"deposit_account": dep, "account_balance": bal_t}

    def _loan_tables(self, k: int, f: int, e: int, D: int) -> dict[str, pa.Table]:
        rng, w, ln = self.rng, self.w, self.ln
        nl = len(ln["cust"])
        started_before = ln["start"] < f
        new = (ln["start"] >= f) & (ln["start"] <= e)
        active = started_before & (ln["status"] == 0)
        prev_bal = self.loan_bal.copy()
        prev_dpd = ln["dpd"].copy()
        prev_rank = self.loan_rank.copy()
        # due day this month
        sd = A.ymd(ln["start"])[2]
        dim = (
            e - f + 1
            if self.dates[k].day != calendar.monthrange(self.dates[k].year, self.dates[k].month)[1]
            else calendar.monthrange(self.dates[k].year, self.dates[k].month)[1]
        )
        due = f + np.minimum(sd, dim) - 1
        due_ok = due <= e
        r = rng.random(nl)
        od = active & (prev_dpd > 0)
        cure = od & (r < 0.2)
        stay = od & ~cure
        fresh = active & (prev_dpd == 0) & due_ok
        go_od = fresh & (r < np.where(w.corp[ln["cust"]], 0.005, 0.007))
        pay = fresh & ~go_od
        ln["dpd"] = np.where(cure, 0, np.where(stay, prev_dpd + (e - (f - 1)), prev_dpd))
        ln["dpd"] = np.where(go_od, np.maximum(e - due + 1, 1), ln["dpd"])
        behind = np.where(cure, np.maximum(prev_dpd // 30, 0) + 1, 0)
        ln["paid"] = np.minimum(ln["paid"] + pay + behind, ln["term"])
        # planted qualitative downgrades
        ln["extra"] = np.where(
            active & (ln["dpd"] == 0) & (rng.random(nl) < 0.002), np.maximum(ln["extra"], 2), ln["extra"]
        )
        ln["extra"] = np.where(
            active & (ln["dpd"] > 0) & (ln["dpd"] <= 90) & (rng.random(nl) < 0.03),
            np.maximum(ln["extra"], 3),
            ln["extra"],
        )
        settled = active & (ln["paid"] >= ln["term"])
        written = active & (ln["dpd"] > 360) & (rng.random(nl) < 0.25)
        ln["status"] = np.where(settled, 1, np.where(written, 2, ln["status"]))
        ln["dpd"] = np.where(settled, 0, ln["dpd"])
        bal = np.where(ln["status"] == 0, ln["contract"] * (ln["term"] - ln["paid"]) // ln["term"], 0)
        bal = np.where(new, ln["contract"], bal)
        bal = np.where(ln["start"] > e, 0, bal)
        self.loan_bal = bal
        exists = ln["start"] <= e
        rank = np.where(ln["status"] == 1, 1, np.maximum(np.maximum(self._floor(ln["dpd"]), ln["extra"]), 1))
        rank = np.where(ln["status"] == 2, 5, rank)
        self.loan_rank = rank
        cd = np.clip(due, f, e)
        accum = np.where(started_before, prev_bal * (cd - f) + bal * (e - cd + 1), 0)
        accum = np.where(new, ln["contract"] * (e - ln["start"] + 1), accum)
        if k >= 1:
            iso = self.dates[k].isoformat()
            core = w.cust_no
            ovd = np.flatnonzero(started_before & (prev_dpd == 0) & (ln["dpd"] > 0) & (ln["status"] == 0))
            dgr = np.flatnonzero(started_before & (rank > prev_rank) & (ln["status"] == 0))
            for idx, kind in ((ovd, "OVERDUE"), (dgr, "DOWNGRADE")):
                cn = core.take(pa.array(ln["cust"][idx])).to_pylist()
                lnos = ln["loan_no"].take(pa.array(idx)).to_pylist()
                self.answers["risk"] += [(c, lno, iso, kind) for c, lno in zip(cn, lnos, strict=True)]
        ex = np.flatnonzero(exists)
        cust = ln["cust"][ex]
        line = self.cl["loan_line"][ex]
        loan = pa.table(
            {
                "loan_no": ln["loan_no"].take(pa.array(ex)),
                "cust_no": ln["loan_cno"].take(pa.array(cust)),
                "product_code": w.product.column("product_code").take(pa.array(ln["prod"][ex])),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[cust])),
                "manager_no": w.staff.column("staff_no").take(pa.array(ln["mgr"][ex])),
                "loan_form": A.pick(["CREDIT", "GUARANTEE", "MORTGAGE", "PLEDGE"], ln["form"][ex]),
                "contract_amount": A.money(ln["contract"][ex]),
                "rate": A.rate(ln["rate"][ex]),
                "start_date": A.date_arr(ln["start"][ex]),
                "maturity_date": A.date_arr(ln["maturity"][ex]),
                "balance": A.money(bal[ex]),
                "accum_balance": A.money(accum[ex]),
                "days_past_due": A.int_arr(ln["dpd"][ex]),
                "five_class": A.pick(FIVE, rank[ex] - 1),
                "status": A.pick(["ACTIVE", "SETTLED", "WRITTEN_OFF"], ln["status"][ex]),
                "credit_line_no": A._null_where(
                    self.cl["line_no"].take(pa.array(np.maximum(line, 0))), line < 0
                ),
            }
        )
        nb = len(w.br_code)
        self.gl[:, 4:] = np.bincount(
            w.branch[cust] * 2 + w.corp[cust], weights=bal[ex], minlength=nb * 2
        ).reshape(nb, 2)
        # credit lines
        cl = self.cl
        lx = np.flatnonzero(cl["start"] <= e)
        used = np.rint(
            np.bincount(
                np.maximum(self.cl["loan_line"], 0),
                weights=np.where((cl["loan_line"] >= 0) & (ln["status"] == 0), bal, 0),
                minlength=len(cl["cust"]),
            )
        ).astype(np.int64)
        npl_cust = np.zeros(w.n, bool)
        npl_cust[ln["cust"][exists & (rank >= 3) & (ln["status"] == 0)]] = True
        st = np.where(cl["expiry"] < e, 1, np.where(npl_cust[cl["cust"]], 2, 0))
        self.line_status = st
        lines = pa.table(
            {
                "line_no": cl["line_no"].take(pa.array(lx)),
                "cust_no": ln["loan_cno"].take(pa.array(cl["cust"][lx])),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[cl["cust"][lx]])),
                "line_amount": A.money(cl["amount"][lx]),
                "used_amount": A.money(used[lx]),
                "start_date": A.date_arr(cl["start"][lx]),
                "expiry_date": A.date_arr(cl["expiry"][lx]),
                "status": A.pick(["ACTIVE", "EXPIRED", "FROZEN"], st[lx]),
            }
        )
        guar = self.gu.filter(pa.array(self.gu_start <= e))
        # LOAN-system customers
        lc = np.flatnonzero(self.loan_first <= e)
        ind = lc[~w.corp[lc]]
        cor = lc[w.corp[lc]]
        li = w.ind.take(pa.array(self.pos_ind[ind]))
        li = li.set_column(0, "src_system", pa.array(["LOAN"] * len(ind)))
        li = li.set_column(1, "cust_no", ln["loan_cno"].take(pa.array(ind)))
        li = li.set_column(li.column_names.index("open_date"), "open_date", A.date_arr(self.loan_first[ind]))
        lcor = w.cor.take(pa.array(self.pos_cor[cor]))
        lcor = lcor.set_column(0, "src_system", pa.array(["LOAN"] * len(cor)))
        lcor = lcor.set_column(1, "cust_no", ln["loan_cno"].take(pa.array(cor)))
        lcor = lcor.set_column(
            lcor.column_names.index("open_date"), "open_date", A.date_arr(self.loan_first[cor])
        )
        return {
            "loan": loan,
            "credit_line": lines,
            "guarantee": guar,
            "LOAN_individual_customer": li,
            "LOAN_corporate_customer": lcor,
        }

    def _other_tables(self, k: int, e: int) -> dict[str, pa.Table]:
        w = self.w
        out: dict[str, pa.Table] = {"org": w.org, "product": w.product}
        left = w.staff_leave <= e
        out["staff"] = w.staff.append_column("status", A.pick(["ACTIVE", "LEFT"], left.astype(np.int8)))
        out["individual_customer"] = w.ind.filter(pa.array(w.open[w.ind_idx] <= e))
        out["corporate_customer"] = w.cor.filter(pa.array(w.open[w.cor_idx] <= e))
        fy_max = self.dates[k].year - 1
        fi = self.fin
        sel = np.flatnonzero((fi["fy"] <= fy_max) & (w.open[fi["cust"]] <= e))
        out["corporate_financials"] = pa.table(
            {
                "cust_no": w.cust_no.take(pa.array(fi["cust"][sel])),
                "fiscal_year": A.int_arr(fi["fy"][sel]),
                "revenue": A.money(fi["rev"][sel]),
                "total_assets": A.money(fi["assets"][sel]),
                "total_liabilities": A.money(fi["liab"][sel]),
                "net_profit": A.money(fi["profit"][sel]),
            }
        )
        ma = self.ma
        sel = np.flatnonzero(ma["start"] <= e)
        ended = ma["next"][sel] <= e
        out["manager_assignment"] = pa.table(
            {
                "assignment_no": ma["no"].take(pa.array(sel)),
                "cust_no": w.cust_no.take(pa.array(ma["cust"][sel])),
                "staff_no": w.staff.column("staff_no").take(pa.array(ma["staff"][sel])),
                "start_date": A.date_arr(ma["start"][sel]),
                "end_date": A.date_arr(np.where(ended, ma["next"][sel] - 1, 0), mask=~ended),
            }
        )
        nb = len(w.br_code)
        subj = ["2011", "2012", "2013", "2014", "1301", "1302"]
        cents = np.rint(self.gl).astype(np.int64)
        out["gl_balance"] = pa.table(
            {
                "org_code": w.br_codes_pa.take(pa.array(np.repeat(np.arange(nb), 6))),
                "subject_code": A.pick(subj, np.tile(np.arange(6), nb)),
                "balance": A.money(cents.ravel()),
            }
        )
        cb = self.cb
        sel = np.flatnonzero(cb["issue"] <= e)
        out["corporate_business"] = pa.table(
            {
                "biz_no": cb["no"].take(pa.array(sel)),
                "cust_no": w.cust_no.take(pa.array(cb["cust"][sel])),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[cb["cust"][sel]])),
                "biz_type": A.pick(["LC", "ACCEPTANCE", "DISCOUNT", "SETTLEMENT"], cb["typ"][sel]),
                "amount": A.money(cb["amount"][sel]),
                "fee": A.money(cb["fee"][sel]),
                "issue_date": A.date_arr(cb["issue"][sel]),
                "maturity_date": A.date_arr(cb["mat"][sel]),
                "status": A.pick(["OPEN", "SETTLED"], (cb["mat"][sel] <= e).astype(np.int8)),
            }
        )
        cd = self.cd
        sel = np.flatnonzero(cd["issue"] <= e)
        c = cd["cust"][sel]
        gone = (w.churn_kind[c] == 1) & (w.churn_day[c] <= e)
        st = np.where(gone, 2, np.where(cd["expiry"][sel] < e, 3, np.where(cd["frozen"][sel], 1, 0)))
        credit = cd["typ"][sel] == 1
        use = (cd["limit"][sel] * cd["use"][sel] * (0.8 + 0.4 * np.sin(k + sel % 7))).astype(np.int64)
        use = np.where(st == 0, (use // 100) * 100, 0)
        acct = cd["acct"][sel]
        out["card"] = pa.table(
            {
                "card_no": cd["card_no"].take(pa.array(sel)),
                "cust_no": w.cust_no.take(pa.array(c)),
                "card_type": A.pick(["DEBIT", "CREDIT"], cd["typ"][sel]),
                "product_code": A.pick(["CD3001", "CD3002"], cd["typ"][sel]),
                "account_no": A._null_where(self.ac["acct_no"].take(pa.array(np.maximum(acct, 0))), acct < 0),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[c])),
                "issue_date": A.date_arr(cd["issue"][sel]),
                "expiry_date": A.date_arr(cd["expiry"][sel]),
                "status": A.pick(["ACTIVE", "FROZEN", "CANCELLED", "EXPIRED"], st),
                "credit_limit": A.money(cd["limit"][sel], mask=~credit),
                "balance": A.money(use, mask=~credit),
            }
        )
        wh = self.wh
        end_eff = np.minimum(wh["mat"], w.churn_day[wh["cust"]])
        sel = np.flatnonzero((wh["buy"] <= e) & (end_eff > e))
        mv = wh["principal"][sel] * np.maximum(0.3, 1 + wh["ret"][sel] * (e - wh["buy"][sel]) / 365)
        hasmat = wh["mat"][sel] < C.INF
        out["wealth_holding"] = pa.table(
            {
                "holding_no": wh["no"].take(pa.array(sel)),
                "cust_no": w.cust_no.take(pa.array(wh["cust"][sel])),
                "product_code": w.product.column("product_code").take(pa.array(wh["prod"][sel])),
                "wealth_type": A.pick(["WMP", "FUND", "INSURANCE", "BOND", "GOLD"], wh["wt"][sel]),
                "org_code": w.br_codes_pa.take(pa.array(w.branch[wh["cust"][sel]])),
                "market_value": A.money(np.rint(mv).astype(np.int64)),
                "buy_date": A.date_arr(wh["buy"][sel]),
                "maturity_date": A.date_arr(np.where(hasmat, wh["mat"][sel], 0), mask=~hasmat),
            }
        )
        return out

    # ------------------------------------------------------------------ writing
    def write_month(self, k: int, tables: dict[str, pa.Table]) -> None:
        folder = self.out / self.dates[k].isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for file, spec in self.writer.specs.items():
            table = spec["table"]
            key = f"LOAN_{table}" if file.startswith("LOAN_") and table.endswith("_customer") else table
            t = tables[key]
            names = self.contracts[table].column_names
            missing = [c for c in names if c not in t.column_names]
            if missing:
                raise KeyError(f"{file}: generator lacks columns {missing}")
            n = self.writer.write(folder, file, t.select(names))
            self.rows[file] = self.rows.get(file, 0) + n

    def write_answers(self) -> None:
        w, ac, e = self.w, self.ac, self.w.end
        d = self.out / "_answers"
        d.mkdir(parents=True, exist_ok=True)
        ch = np.flatnonzero(w.churn_month >= 0)
        months = [dt.date.fromordinal(self.dates[0].toordinal()).replace(day=1)]
        del months
        cn = w.cust_no.to_numpy(zero_copy_only=False)
        rows = [
            (
                cn[i],
                self.dates[w.churn_month[i]].strftime("%Y-%m"),
                "ATTRITION" if w.churn_kind[i] == 1 else "SILENT",
            )
            for i in ch
        ]
        _csv(d / "churners.csv", ("cust_no", "churn_month", "kind"), rows)
        ev: list[tuple] = []
        td = np.flatnonzero(
            (ac["typ"] == 1) & (ac["open"] <= e) & (ac["close"] > e) & (ac["mat"] > e) & (ac["mat"] <= e + 30)
        )
        an = ac["acct_no"].to_numpy(zero_copy_only=False)
        ev += [(cn[ac["cust"][i]], "TIME_DEPOSIT_MATURITY", an[i], _iso(ac["mat"][i])) for i in td]
        cl = self.cl
        li = np.flatnonzero(
            (cl["start"] <= e) & (cl["expiry"] > e) & (cl["expiry"] <= e + 30) & (self.line_status == 0)
        )
        lno = cl["line_no"].to_numpy(zero_copy_only=False)
        ev += [(cn[cl["cust"][i]], "CREDIT_LINE_EXPIRY", lno[i], _iso(cl["expiry"][i])) for i in li]
        ii = w.ind_idx[(w.open[w.ind_idx] <= e) & ~(w.churn_kind[w.ind_idx] == 1)]
        _, bm, bd = A.ymd(w.birth[ii])
        ey = A.ymd(np.array([e]))[0][0]
        nxt = S.dn(np.full(len(ii), ey), bm, bd)
        nxt = np.where(nxt <= e, S.dn(np.full(len(ii), ey + 1), bm, bd), nxt)
        sel = nxt <= e + 30
        ev += [(cn[i], "BIRTHDAY", "", _iso(x)) for i, x in zip(ii[sel], nxt[sel], strict=True)]
        ev.sort(key=lambda r: (r[3], r[1], r[0], r[2]))
        _csv(d / "events.csv", ("cust_no", "event_type", "ref_no", "event_date"), ev)
        _csv(d / "swings.csv", ("cust_no", "as_of_date", "measure", "pct_change"), self.answers["swings"])
        _csv(d / "risk.csv", ("cust_no", "loan_no", "as_of_date", "kind"), self.answers["risk"])
        dup = np.flatnonzero(self.ln["lnum"] & (self.loan_first <= e))
        keys = w.id_key.to_numpy(zero_copy_only=False)
        other = self.ln["loan_cno"].to_numpy(zero_copy_only=False)
        _csv(
            d / "duplicates.csv",
            ("id_key", "core_cust_no", "other_system", "other_cust_no"),
            [(keys[i], cn[i], "LOAN", other[i]) for i in dup],
        )
        _csv(d / "customers.csv", CUSTOMER_ANSWER_COLUMNS, self._customer_answers())
        _csv(d / "devices.csv", ("terminal_id", "org_code", "kind"), self.dev.planted(w.br_codes_pa))

    def _customer_answers(self) -> list[tuple]:
        """A fixed sample of customers with what a 360 view must show at the last as-of date.

        Chosen without the random generator (the extracts stay byte-identical): customers with each kind
        of upcoming event, borrowers, wealth and card holders, merged duplicates, corporates with bills
        and guarantees, churners, then evenly spaced others, about 20 in all. Balances are month-end
        yuan; products follow the warehouse's count (open deposits, active loans and cards, wealth with
        a value); events fall in (as-of, as-of + 30 days].
        """
        w, ac, ln, cl, cd, wh, cb = self.w, self.ac, self.ln, self.cl, self.cd, self.wh, self.cb
        e, f, h = w.end, self.firsts[-1], EVENT_HORIZON_DAYS
        n = w.n
        codes = w.product.column("product_code").to_pylist()
        exists = w.open <= e

        def win(x: np.ndarray) -> np.ndarray:
            return (x > e) & (x <= e + h)

        # per-customer facts
        in_period = (ac["open"] <= e) & (ac["close"] >= f)
        dep = np.bincount(ac["cust"][in_period], weights=ac["bal"][in_period], minlength=n)
        l_ex = ln["start"] <= e
        loan = np.bincount(ln["cust"][l_ex], weights=self.loan_bal[l_ex], minlength=n)
        card_st = np.where(
            (w.churn_kind[cd["cust"]] == 1) & (w.churn_day[cd["cust"]] <= e),
            2,
            np.where(cd["expiry"] < e, 3, np.where(cd["frozen"], 1, 0)),
        )
        card_ex = cd["issue"] <= e
        end_eff = np.minimum(wh["mat"], w.churn_day[wh["cust"]])
        wh_ex = (wh["buy"] <= e) & (end_eff > e)
        mv = np.rint(wh["principal"] * np.maximum(0.3, 1 + wh["ret"] * (e - wh["buy"]) / 365))
        held: dict[int, set[str]] = {}
        open_acc = (ac["open"] <= e) & (ac["close"] > e)
        active_ln = l_ex & (ln["status"] == 0)
        for c, p in zip(ac["cust"][open_acc], ac["prod"][open_acc], strict=True):
            held.setdefault(int(c), set()).add(codes[p])
        for c, p in zip(ln["cust"][active_ln], ln["prod"][active_ln], strict=True):
            held.setdefault(int(c), set()).add(codes[p])
        act = card_ex & (card_st == 0)
        for c, t in zip(cd["cust"][act], cd["typ"][act], strict=True):
            held.setdefault(int(c), set()).add("CD3002" if t == 1 else "CD3001")
        val = wh_ex & (mv > 0)
        for c, p in zip(wh["cust"][val], wh["prod"][val], strict=True):
            held.setdefault(int(c), set()).add(codes[p])
        # events
        ev: dict[int, list[tuple[str, str, int]]] = {}
        an = ac["acct_no"].to_numpy(zero_copy_only=False)
        for i in np.flatnonzero((ac["typ"] == 1) & (ac["open"] <= e) & (ac["close"] > e) & win(ac["mat"])):
            ev.setdefault(int(ac["cust"][i]), []).append(("TIME_DEPOSIT_MATURITY", an[i], int(ac["mat"][i])))
        lno = cl["line_no"].to_numpy(zero_copy_only=False)
        for i in np.flatnonzero((cl["start"] <= e) & (self.line_status == 0) & win(cl["expiry"])):
            ev.setdefault(int(cl["cust"][i]), []).append(("CREDIT_LINE_EXPIRY", lno[i], int(cl["expiry"][i])))
        lnn = ln["loan_no"].to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(l_ex & (ln["status"] == 0) & win(ln["maturity"])):
            ev.setdefault(int(ln["cust"][i]), []).append(("LOAN_MATURITY", lnn[i], int(ln["maturity"][i])))
        whn = wh["no"].to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(val & win(wh["mat"])):
            ev.setdefault(int(wh["cust"][i]), []).append(("WEALTH_MATURITY", whn[i], int(wh["mat"][i])))
        cno = cd["card_no"].to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(card_ex & (card_st <= 1) & win(cd["expiry"])):
            ev.setdefault(int(cd["cust"][i]), []).append(("CARD_EXPIRY", cno[i], int(cd["expiry"][i])))
        bno = cb["no"].to_numpy(zero_copy_only=False)
        kinds = ["LC", "ACCEPTANCE", "DISCOUNT"]
        for i in np.flatnonzero((cb["issue"] <= e) & (cb["typ"] < 3) & win(cb["mat"])):
            kind = f"{kinds[cb['typ'][i]]}_MATURITY"
            ev.setdefault(int(cb["cust"][i]), []).append((kind, bno[i], int(cb["mat"][i])))
        ii = w.ind_idx
        _, bm, bd = A.ymd(w.birth[ii])
        ey = A.ymd(np.array([e]))[0][0]
        nxt = S.dn(np.full(len(ii), ey), bm, bd)
        nxt = np.where(nxt <= e, S.dn(np.full(len(ii), ey + 1), bm, bd), nxt)
        for i, x in zip(ii[win(nxt)], nxt[win(nxt)], strict=True):
            ev.setdefault(int(i), []).append(("BIRTHDAY", "", int(x)))
        idx_exp = pc.fill_null(w.ind.column("id_expiry_date").cast(pa.int32()), 0).to_numpy().astype(np.int64)
        for i, x in zip(ii[win(idx_exp)], idx_exp[win(idx_exp)], strict=True):
            ev.setdefault(int(i), []).append(("ID_EXPIRY", "", int(x)))
        # the sample
        picks: list[tuple[int, str]] = []

        def take(mask: np.ndarray, why: str, k: int) -> None:
            chosen = {p for p, _ in picks}
            for i in np.flatnonzero(mask & exists):
                if k == 0:
                    break
                if int(i) not in chosen:
                    picks.append((int(i), why))
                    k -= 1

        def has(kind: str) -> np.ndarray:
            m = np.zeros(n, bool)
            m[[c for c, xs in ev.items() if any(x[0] == kind for x in xs)]] = True
            return m
        ind, corp = ~w.corp, w.corp
        dup = np.zeros(n, bool)
        dup[ln["lnum"] & (self.loan_first <= e)] = True
        biz = np.zeros(n, bool)
        biz[cb["cust"][(cb["issue"] <= e) & (cb["typ"] < 3)]] = True
        given = np.zeros(n, bool)
        gcn = self.gu.column("guarantor_cust_no").to_pylist()
        pos = {c: i for i, c in enumerate(w.cust_no.to_pylist())}
        for c in gcn:
            if c is not None and c in pos:
                given[pos[c]] = True
        take(ind & has("TIME_DEPOSIT_MATURITY"), "time deposit maturing", 2)
        take(has("CREDIT_LINE_EXPIRY"), "credit line expiring", 2)
        take(ind & has("BIRTHDAY"), "birthday", 1)
        take(ind & (loan > 0), "individual borrower", 2)
        take(ind & dup, "merged duplicate (individual)", 1)
        take(corp & dup, "merged duplicate (corporate)", 1)
        take(corp & biz, "corporate with bills or LC", 2)
        take(corp & given, "corporate guarantor", 1)
        take(corp & (loan > 0), "corporate borrower", 1)
        take(np.isin(np.arange(n), wh["cust"][val]), "wealth holder", 2)
        take(w.churn_kind == 1, "attrition churner", 1)
        rest = 20 - len(picks)
        if rest > 0:
            spaced = np.zeros(n, bool)
            spaced[np.linspace(0, n - 1, rest + 2).astype(np.int64)[1:-1]] = True
            take(spaced, "spread", rest)
        cn = w.cust_no.to_numpy(zero_copy_only=False)
        other = ln["loan_cno"].to_numpy(zero_copy_only=False)

        def yuan(cents: float) -> str:
            c = round(cents)
            return f"{c // 100}.{c % 100:02d}"

        rows = []
        for i, why in sorted(picks):
            evs = sorted(ev.get(i, []), key=lambda x: (x[2], x[0], x[1]))
            rows.append(
                (
                    cn[i],
                    "C" if w.corp[i] else "I",
                    other[i] if dup[i] else "",
                    why,
                    _iso(e),
                    yuan(dep[i]),
                    yuan(loan[i]),
                    len(held.get(i, ())),
                    ";".join(sorted(held.get(i, ()))),
                    ";".join(f"{t}|{r}|{_iso(x)}" for t, r, x in evs),
                )
            )
        return rows


def _iso(day: int) -> str:
    return (A.EPOCH + dt.timedelta(days=int(day))).isoformat()


def _csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def generate(
    out_dir: Path,
    customers: int,
    months: int,
    seed: int,
    end_date: dt.date | None = None,
    clean: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a synthetic bank's monthly extracts and the planted answers.

    Parameters
    ----------
    out_dir : Path
        Folder to write into: one ``YYYY-MM-DD/`` folder per month-end as-of date, and ``_answers/``.
    customers : int
        Number of customers (about 7% corporate).
    months : int
        Number of month-end as-of dates.
    seed : int
        Seed; the same arguments give byte-identical files.
    end_date : datetime.date, optional
        The last as-of date (default 2026-10-31); earlier dates are the preceding month-ends.
    clean : bool
        Remove ``out_dir``'s date folders and ``_answers`` first.
    progress : bool
        Log a line per month at INFO level.

    Returns
    -------
    dict
        ``dates`` (ISO strings), ``rows`` (data rows per file, summed over dates), ``rows_by_table``
        (the same per canonical table), ``seconds``, ``bytes``, ``out_dir``, ``customers``, ``months``,
        ``seed`` and ``digital_share`` (digital share of customer-initiated transactions per month).
    """
    if customers < 100 or months < 1:
        raise ValueError("need at least 100 customers and 1 month")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if clean and out_dir.exists():
        for p in sorted(out_dir.iterdir()):
            if p.is_dir() and (_DATE_DIR.match(p.name) or p.name == "_answers"):
                shutil.rmtree(p)
    out_dir.mkdir(parents=True, exist_ok=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    sim = _Sim(out_dir, customers, months, seed, end_date or DEFAULT_END)
    with Progress(
        TextColumn("synth {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not progress, transient=False,
    ) as bar:
        task = bar.add_task("building the bank", total=months)
        sim.setup()
        log.info("synth: world built in %.1fs", time.perf_counter() - t0)
        for k in range(months):
            bar.update(task, description=f"month {sim.dates[k].isoformat()}")
            tables = sim.month(k)
            sim.write_month(k, tables)
            del tables
            bar.advance(task)
            log.info(
                "synth: %s written (%d transactions) at %.1fs",
                sim.dates[k].isoformat(),
                sim.rows.get("CORE_transaction.csv", 0),
                time.perf_counter() - t0,
            )
    sim.write_answers()
    by_table: dict[str, int] = {}
    for file, n in sim.rows.items():
        table = sim.writer.specs[file]["table"]
        by_table[table] = by_table.get(table, 0) + n
    return {
        "dates": [d.isoformat() for d in sim.dates],
        "rows": dict(sorted(sim.rows.items())),
        "rows_by_table": dict(sorted(by_table.items())),
        "seconds": round(time.perf_counter() - t0, 2),
        "bytes": sim.writer.bytes_written,
        "out_dir": str(out_dir),
        "customers": customers,
        "months": months,
        "seed": seed,
        "digital_share": [round(x, 4) for x in sim.dig_share],
    }
