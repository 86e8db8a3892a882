"""Accounts, loans, lines, guarantees, cards, wealth, corporate business, financials and manager history."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cimlib.synth import _arrow as A
from cimlib.synth._setup import PRODUCT_INDEX, TERM_RATE, TERMS, TIME_PRODUCTS, YEAR, World

INF = np.iinfo(np.int64).max // 4


def _prod(codes: list[str], idx: np.ndarray) -> np.ndarray:
    return np.array([PRODUCT_INDEX[c] for c in codes])[idx]


def build_churn(rng: np.random.Generator, w: World, borrower: np.ndarray) -> None:
    """Churners: pre-window, non-borrowing, active customers leaving in month index >= 1."""
    n, m = w.n, len(w.as_of)
    w.churn_month = np.full(n, -1)
    w.churn_kind = np.zeros(n, dtype=np.int8)
    w.churn_day = np.full(n, INF)
    if m < 2:
        return
    cand = (w.open < w.w0) & ~borrower & ~w.dormant
    ch = cand & (rng.random(n) < 0.005 * (m - 1))
    k = rng.integers(1, m, n)
    w.churn_month[ch] = k[ch]
    w.churn_kind[ch] = np.where(rng.random(ch.sum()) < 0.7, 1, 2)
    first = np.array([w.as_of[i - 1] + 1 if i > 0 else w.w0 for i in range(m)])
    last = np.array(w.as_of)
    day = first[k] + (rng.random(n) * (last[k] - first[k] + 1)).astype(np.int64)
    w.churn_day[ch] = day[ch]


def build_accounts(rng: np.random.Generator, w: World) -> dict:
    """Demand and time deposit accounts with their opening state."""
    n, corp = w.n, w.corp
    n_dem = np.where(corp, 1 + (rng.random(n) < 0.3) + (rng.random(n) < 0.1), 1 + (rng.random(n) < 0.15))
    r = rng.random(n)
    n_time = np.where(
        corp,
        np.where(r < 0.4, 1 + (rng.random(n) < 0.4), 0),
        np.where(r < 0.33, 1 + (rng.random(n) < 0.3) + (rng.random(n) < 0.1), 0),
    )
    cust = np.concatenate([np.repeat(np.arange(n), n_dem), np.repeat(np.arange(n), n_time)])
    typ = np.concatenate([np.zeros(n_dem.sum(), np.int8), np.ones(n_time.sum(), np.int8)])
    order = np.lexsort((typ, cust))
    cust, typ = cust[order], typ[order]
    na = len(cust)
    first_of_cust = np.r_[True, cust[1:] != cust[:-1]]
    c_open = w.open[cust]
    pre = c_open < w.w0
    later = np.where(pre, c_open + (rng.random(na) * (w.w0 - 1 - c_open)).astype(np.int64), c_open)
    open_ = np.where(first_of_cust, c_open, later)
    # wealth split: time deposits take most of it when present
    has_time = (n_time > 0)[cust]
    share_time = rng.uniform(0.55, 0.85, n)[cust]
    ndem_c, ntime_c = n_dem[cust], np.maximum(n_time[cust], 1)
    wl = w.wealth[cust]
    target = np.where(
        typ == 0,
        wl * np.where(has_time, 1 - share_time, 1.0) / ndem_c * rng.uniform(0.6, 1.4, na),
        wl * share_time / ntime_c * rng.uniform(0.6, 1.4, na),
    )
    target = np.maximum(target, 2000)
    term_i = rng.choice(6, na, p=[0.1, 0.15, 0.35, 0.2, 0.15, 0.05])
    term = np.where(typ == 1, TERMS[term_i], 0)
    principal = np.maximum((target / 10000).round() * 10000, 10000).astype(np.int64)
    # demand balances start near where the monthly flows settle them (about 1.3x the target)
    bal0 = np.where(typ == 1, principal, (target * rng.uniform(0.8, 1.8, na)).astype(np.int64))
    # next maturity on or after the window start
    mat = np.where(typ == 1, A.add_months(open_, term), INF)
    for _ in range(200):
        late = (typ == 1) & (mat < w.w0)
        if not late.any():
            break
        mat[late] = A.add_months(mat[late], term[late])
    rate = np.where(typ == 1, TERM_RATE[term_i], np.where(corp[cust], 2500, 1500))
    prod = np.where(
        typ == 1,
        np.where(corp[cust], _prod(TIME_PRODUCTS[1], term_i), _prod(TIME_PRODUCTS[0], term_i)),
        np.where(corp[cust], PRODUCT_INDEX["DP1002"], PRODUCT_INDEX["DP1001"]),
    )
    # accounts closed before the window (extra demand accounts), balance zero
    closed_pre = pre & ~first_of_cust & (typ == 0) & (rng.random(na) < 0.15) & (open_ < w.w0 - 30)
    close = np.full(na, INF)
    close[closed_pre] = open_[closed_pre] + (
        rng.random(closed_pre.sum()) * (w.w0 - 1 - open_[closed_pre])
    ).astype(np.int64)
    bal0[closed_pre] = 0
    # new accounts start with zero and get an opening deposit in their month
    bal0[open_ >= w.w0] = 0
    frozen = rng.random(na) < 0.003
    acct_no = A.ascii_strings(
        np.hstack(
            [
                np.full((na, 1), ord("6"), np.uint8),
                A.digits(w.br_code[w.branch[cust]], 6),
                A.digits(np.arange(na) + 10**11, 12),
            ]
        )
    )
    return {
        "cust": cust,
        "typ": typ,
        "open": open_,
        "target": target,
        "bal": bal0,
        "term": term,
        "mat": mat,
        "rate": rate,
        "prod": prod,
        "close": close,
        "frozen": frozen,
        "acct_no": acct_no,
        "first_demand": first_of_cust,
        "principal0": principal,
    }


def build_loans(rng: np.random.Generator, w: World) -> dict:
    """Loan contracts, their pre-window repayment and overdue state, and LOAN-system customer numbers."""
    n, corp = w.n, w.corp
    borrower = np.where(corp, rng.random(n) < 0.5, rng.random(n) < 0.15) & ~w.dormant
    nl_c = np.where(borrower, 1 + (rng.random(n) < 0.25), 0)
    cust = np.repeat(np.arange(n), nl_c)
    nl = len(cust)
    c_open = w.open[cust]
    lo = np.maximum(c_open, w.w0 - 5 * YEAR)
    start = lo + (rng.random(nl) * (w.end - lo + 1) ** 1.0).astype(np.int64)
    start = np.minimum(start, w.end)
    isc = corp[cust]
    kind_i = rng.choice(4, nl, p=[0.3, 0.3, 0.1, 0.3])  # consumer, business, mortgage, agri
    kind_c = rng.choice(2, nl, p=[0.7, 0.3])  # corporate, small business
    prod = np.where(
        isc,
        np.array([PRODUCT_INDEX["LN2005"], PRODUCT_INDEX["LN2006"]])[kind_c],
        np.array([PRODUCT_INDEX[c] for c in ("LN2001", "LN2002", "LN2003", "LN2004")])[kind_i],
    )
    is_mort = (~isc) & (kind_i == 2)
    term = np.where(
        isc,
        rng.choice([12, 24, 36], nl),
        np.select(
            [kind_i == 0, kind_i == 1, kind_i == 2],
            [rng.choice([12, 24, 36], nl), rng.choice([12, 24, 36], nl), rng.choice([120, 240, 360], nl)],
            rng.choice([12, 24], nl),
        ),
    )
    amt_y = np.where(
        isc,
        rng.lognormal(np.log(1.5e6), 1.0, nl),
        np.select(
            [kind_i == 0, kind_i == 1, kind_i == 2],
            [
                rng.lognormal(np.log(6e4), 0.6, nl),
                rng.lognormal(np.log(2e5), 0.7, nl),
                rng.lognormal(np.log(5e5), 0.5, nl),
            ],
            rng.lognormal(np.log(5e4), 0.6, nl),
        ),
    )
    contract = np.maximum((amt_y / 1000).round(), 1).astype(np.int64) * 100000
    rate = np.clip(
        rng.normal(np.where(is_mort, 39000, np.where(isc, 45000, 62000)), 9000), 25000, 150000
    ).astype(np.int64)
    maturity = A.add_months(start, term)
    form = np.where(
        is_mort, 2, rng.choice(4, nl, p=[0.35, 0.45, 0.12, 0.08])
    )  # CREDIT GUARANTEE MORTGAGE PLEDGE
    # payments made before the window (equal principal, monthly on the start day)
    y0, m0, _ = A.ymd(start)
    yw, mw, _ = A.ymd(np.full(nl, w.w0 - 1))
    elapsed = np.clip((yw - y0) * 12 + (mw - m0), 0, None)
    paid = np.where(start < w.w0, np.minimum(elapsed, term), 0)
    dpd = np.zeros(nl, dtype=np.int64)
    overdue0 = (start < w.w0 - 60) & (paid < term) & (rng.random(nl) < 0.025)
    dpd[overdue0] = rng.integers(1, 420, overdue0.sum())
    paid = np.where(overdue0, np.maximum(paid - dpd // 30, 0), paid)
    status = np.where((start < w.w0) & (paid >= term), 1, 0)  # 0 active 1 settled 2 written off
    extra = np.zeros(nl, dtype=np.int64)  # qualitative downgrade rank (0 = none)
    # LOAN-system customer numbers: ~2% of borrowers get their own 'L' number
    lnum = borrower & (rng.random(n) < 0.02)
    loan_cno = np.empty(n, dtype=object)
    loan_cno[:] = None
    core = w.cust_no.to_numpy(zero_copy_only=False)
    loan_cno[borrower] = core[borrower]
    loan_cno[lnum] = [f"L{i:09d}" for i in rng.choice(10**9, lnum.sum(), replace=False)]
    mgr = _pick_cm(rng, w, w.branch[cust], start)
    return {
        "cust": cust,
        "prod": prod,
        "term": term,
        "contract": contract,
        "rate": rate,
        "start": start,
        "maturity": maturity,
        "form": form,
        "paid": paid,
        "dpd": dpd,
        "status": status,
        "extra": extra,
        "borrower": borrower,
        "lnum": lnum,
        "loan_cno": pa.array(loan_cno, type=pa.string()),
        "mgr": mgr,
        "loan_no": A.code_strings("JJ", np.arange(nl) + 10**13, 14),
    }


def _pick_cm(
    rng: np.random.Generator, w: World, branch: np.ndarray, day: np.ndarray, stayers_only: bool = False
) -> np.ndarray:
    """A customer manager of each branch who is employed on ``day``."""
    sb, is_cm = w.tables["staff_branch"], w.tables["staff_is_cm"]
    cm = np.flatnonzero(is_cm)
    cm = cm[np.argsort(sb[cm], kind="stable")]
    counts = np.bincount(sb[cm], minlength=len(w.br_code))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = cm[starts[branch] + (rng.random(len(branch)) * counts[branch]).astype(np.int64)]
    for _ in range(50):
        bad = w.staff_leave[out] <= (w.end + 1 if stayers_only else day)
        if not bad.any():
            break
        b = branch[bad]
        out[bad] = cm[starts[b] + (rng.random(bad.sum()) * counts[b]).astype(np.int64)]
    return out


def build_lines(rng: np.random.Generator, w: World, ln: dict) -> dict:
    """Credit lines for ~60% of borrowers, covering their loans."""
    n = w.n
    has = ln["borrower"] & (rng.random(n) < 0.6)
    cust = np.flatnonzero(has)
    line_of_cust = np.full(n, -1)
    line_of_cust[cust] = np.arange(len(cust))
    loan_line = line_of_cust[ln["cust"]]
    nlines = len(cust)
    min_start = np.full(nlines, INF)
    max_start = np.zeros(nlines, dtype=np.int64)
    tot = np.zeros(nlines)
    sel = loan_line >= 0
    np.minimum.at(min_start, loan_line[sel], ln["start"][sel])
    np.maximum.at(max_start, loan_line[sel], ln["start"][sel])
    np.add.at(tot, loan_line[sel], ln["contract"][sel].astype(float))
    start = np.maximum(w.open[cust], min_start - rng.integers(0, 30, nlines))
    expiry = np.maximum(A.add_months(start, rng.choice([12, 24, 36], nlines)), max_start + 30)
    amount = (tot * rng.uniform(1.0, 1.6, nlines) / 100000).round().astype(np.int64) * 100000
    return {
        "cust": cust,
        "start": start,
        "expiry": expiry,
        "amount": np.maximum(amount, 100000),
        "loan_line": loan_line,
        "line_no": A.code_strings("SX", np.arange(nlines) + 10**13, 14),
    }


def build_guarantees(rng: np.random.Generator, w: World, ln: dict) -> tuple[pa.Table, np.ndarray]:
    """Guarantors (often customers; corporates guarantee each other) and collateral."""
    form = ln["form"]
    nl = len(form)
    ng = np.where(form == 1, 1 + (rng.random(nl) < 0.3), np.where(form >= 2, 1, 0))
    loan = np.repeat(np.arange(nl), ng)
    g = len(loan)
    gtype = np.where(form[loan] == 1, 0, form[loan] - 1)  # GUARANTEE MORTGAGE PLEDGE
    pool_c = np.flatnonzero(w.corp & (w.open < w.w0))
    pool_i = np.flatnonzero(~w.corp & (w.open < w.w0))
    borrower = ln["cust"][loan]
    use_corp = w.corp[borrower] & (rng.random(g) < 0.6) & (len(pool_c) > 1)
    gc = np.where(
        use_corp,
        pool_c[rng.integers(0, max(len(pool_c), 1), g)] if len(pool_c) else 0,
        pool_i[rng.integers(0, len(pool_i), g)],
    )
    gc = np.where(gc == borrower, np.where(use_corp, pool_c[0] if len(pool_c) else 0, pool_i[0]), gc)
    gc = np.where(gc == borrower, pool_i[-1], gc)
    is_cust = (gtype == 0) & (rng.random(g) < 0.7)
    contract = ln["contract"][loan]
    amount = np.where(gtype == 0, contract * rng.uniform(0.5, 1.2, g), contract * rng.uniform(1.2, 2.0, g))
    amount = np.maximum((amount / 100).round(), 1).astype(np.int64) * 100
    other_names = w.names.take(pa.array(rng.integers(0, w.n, g)))
    names = w.names.take(pa.array(gc))
    gname = pa.array(
        np.where(
            is_cust,
            names.to_numpy(zero_copy_only=False),
            np.where(gtype == 0, other_names.to_numpy(zero_copy_only=False), None),
        ),
        type=pa.string(),
    )
    end = A.add_months(ln["maturity"][loan], np.where(gtype == 0, 24, 0))
    return pa.table(
        {
            "guarantee_no": A.code_strings("DB", np.arange(g) + 10**13, 14),
            "loan_no": ln["loan_no"].take(pa.array(loan)),
            "guarantee_type": A.pick(["GUARANTEE", "MORTGAGE", "PLEDGE"], gtype),
            "guarantor_cust_no": A._null_where(w.cust_no.take(pa.array(gc)), ~is_cust),
            "guarantor_name": gname,
            "amount": A.money(amount),
            "start_date": A.date_arr(ln["start"][loan]),
            "end_date": A.date_arr(end, mask=rng.random(g) < 0.05),
        }
    ), ln["start"][loan]


def build_cards(rng: np.random.Generator, w: World, ac: dict) -> dict:
    """Debit cards on demand accounts of individuals, and some credit cards."""
    ind_dem = (ac["typ"] == 0) & ~w.corp[ac["cust"]] & (ac["close"] == INF)
    deb = np.flatnonzero(
        ind_dem
        & np.where(ac["first_demand"], rng.random(len(ac["typ"])) < 0.85, rng.random(len(ac["typ"])) < 0.4)
    )
    nd = len(deb)
    # cards are reissued: the current card was issued within the last ten years (or when the account opened)
    d_issue = np.minimum(ac["open"][deb] + rng.integers(0, 400, nd), w.end)
    d_issue = np.where(rng.random(nd) < 0.5, ac["open"][deb], d_issue)
    d_issue = np.maximum(d_issue, w.end - rng.integers(0, 3700, nd))
    ind = np.flatnonzero(~w.corp)
    cc = ind[rng.random(len(ind)) < 0.1]
    nc = len(cc)
    c_issue = np.maximum(w.open[cc], w.end - rng.integers(0, 6 * YEAR, nc))
    cust = np.concatenate([ac["cust"][deb], cc])
    issue = np.concatenate([d_issue, c_issue])
    expiry = np.concatenate([A.add_months(d_issue, np.full(nd, 120)), A.add_months(c_issue, np.full(nc, 60))])
    typ = np.r_[np.zeros(nd, np.int8), np.ones(nc, np.int8)]
    limit = np.r_[np.zeros(nd, np.int64), rng.choice([1, 2, 3, 5, 8, 10, 20, 50], nc) * 1_000_000]
    no = pa.concat_arrays(
        [A.code_strings("621", np.arange(nd) + 10**15, 16), A.code_strings("625", np.arange(nc) + 10**12, 13)]
    )
    return {
        "cust": cust,
        "issue": issue,
        "expiry": expiry,
        "typ": typ,
        "limit": limit,
        "acct": np.r_[deb, np.full(nc, -1)],
        "frozen": rng.random(len(cust)) < 0.005,
        "card_no": no,
        "use": rng.uniform(0, 0.8, len(cust)),
    }


def build_wealth(rng: np.random.Generator, w: World) -> dict:
    """Wealth holdings, more likely for wealthier customers."""
    n = w.n
    rank = np.argsort(np.argsort(w.wealth)) / max(n - 1, 1)
    p = np.where(w.corp, 0.15, 0.02 + 0.2 * rank**3)
    holder = (rng.random(n) < p) & ~w.dormant
    cnt = np.where(holder, 1 + (rng.random(n) < 0.4) + (rng.random(n) < 0.15), 0)
    cust = np.repeat(np.arange(n), cnt)
    h = len(cust)
    wt = rng.choice(5, h, p=[0.45, 0.2, 0.15, 0.12, 0.08])  # WMP FUND INSURANCE BOND GOLD
    lo = np.maximum(w.open[cust], w.w0 - 2 * YEAR)
    buy = lo + (rng.random(h) * (w.end - lo + 1)).astype(np.int64)
    months = np.select(
        [wt == 0, wt == 2, wt == 3],
        [rng.choice([6, 12], h), rng.choice([60, 120], h), rng.choice([36, 60], h)],
        0,
    )
    mat = np.where(months > 0, A.add_months(buy, months), INF)
    principal = (
        np.maximum((w.wealth[cust] * rng.uniform(0.1, 0.5, h) / 100000).round(), 1).astype(np.int64) * 100000
    )
    ret = np.select(
        [wt == 1, wt == 4],
        [rng.normal(0.03, 0.15, h), rng.normal(0.05, 0.12, h)],
        rng.normal(0.028, 0.006, h),
    )
    prod = np.array([PRODUCT_INDEX[c] for c in ("WM4001", "FD4002", "IN4003", "BD4004", "GD4005")])[wt]
    return {
        "cust": cust,
        "wt": wt,
        "buy": buy,
        "mat": mat,
        "principal": principal,
        "ret": ret,
        "prod": prod,
        "no": A.code_strings("WH", np.arange(h) + 10**13, 14),
    }


def build_corp_business(rng: np.random.Generator, w: World, month_firsts: list[int]) -> dict:
    """LC, acceptance and discount items, and a monthly settlement-volume row per active corporate."""
    ci = np.flatnonzero(w.corp & (rng.random(w.n) < 0.3))
    cnt = rng.poisson(2.5, len(ci))
    cust = np.repeat(ci, cnt)
    k = len(cust)
    lo = np.maximum(w.open[cust], w.w0 - YEAR)
    issue = lo + (rng.random(k) * (w.end - lo + 1)).astype(np.int64)
    typ = rng.choice(3, k, p=[0.15, 0.6, 0.25])
    mat = issue + rng.choice([90, 180], k)
    amount = (rng.lognormal(np.log(5e5), 1.0, k) / 100).round().astype(np.int64) * 10000
    fee = (amount * np.array([0.0015, 0.0005, 0.0])[typ]).astype(np.int64)
    fee = np.where(typ == 2, (amount * 0.025 * (mat - issue) / 360).astype(np.int64), fee)
    # settlement rows
    sc_, si, sm = [], [], []
    for f in month_firsts:
        ok = ci[w.open[ci] <= f]
        sc_.append(ok)
        si.append(np.full(len(ok), f))
        nxt = A.add_months(np.array([f]), np.array([1]))[0] - 1
        sm.append(np.full(len(ok), nxt))
    scust = np.concatenate(sc_) if sc_ else np.zeros(0, np.int64)
    s_amt = (w.wealth[scust] * rng.lognormal(0, 0.5, len(scust)) * 3 / 100).round().astype(np.int64) * 100
    s_amt = np.maximum(s_amt, 100)
    cust = np.r_[cust, scust]
    return {
        "cust": cust,
        "issue": np.r_[issue, np.concatenate(si) if si else []].astype(np.int64),
        "mat": np.r_[mat, np.concatenate(sm) if sm else []].astype(np.int64),
        "typ": np.r_[typ, np.full(len(scust), 3)],
        "amount": np.r_[amount, s_amt],
        "fee": np.r_[fee, (s_amt * 0.0002).astype(np.int64)],
        "no": A.code_strings("YW", np.arange(len(cust)) + 10**13, 14),
    }


def build_financials(rng: np.random.Generator, w: World) -> dict:
    """Yearly statements of each corporate, from 2018 (or its founding) to the last full year."""
    ci = w.cor_idx
    last_year = A.ymd(np.array([w.end]))[0][0] - 1
    y0 = 2018
    years = np.arange(y0, last_year + 1)
    cust = np.repeat(ci, len(years))
    fy = np.tile(years, len(ci))
    base = w.wealth[cust] * rng.lognormal(np.log(8), 0.5, len(cust))
    growth = (1 + rng.normal(0.06, 0.08, len(ci)))[np.repeat(np.arange(len(ci)), len(years))]
    rev = base * growth ** (fy - y0)
    assets = rev * rng.uniform(0.6, 2.0, len(cust))
    liab = assets * rng.uniform(0.2, 0.85, len(cust))
    profit = rev * rng.normal(0.05, 0.06, len(cust))
    open_year = A.ymd(w.open[cust])[0]
    keep = fy >= np.minimum(open_year, last_year)
    f = lambda x: (x[keep] / 100).round().astype(np.int64) * 100  # noqa: E731
    return {
        "cust": cust[keep],
        "fy": fy[keep],
        "rev": f(rev),
        "assets": f(assets),
        "liab": f(liab),
        "profit": f(profit),
    }


def build_assignments(rng: np.random.Generator, w: World, month_firsts: list[int]) -> dict:
    """Manager (管户) history: initial manager, monthly reassignments, handovers when a manager leaves."""
    n = w.n
    rank = np.argsort(np.argsort(w.wealth)) / max(n - 1, 1)
    covered = np.flatnonzero(w.corp | (rng.random(n) < 0.25 + 0.6 * rank))
    start0 = np.where(
        w.open[covered] < w.w0,
        np.maximum(w.open[covered], w.w0 - 1 - rng.integers(0, 4 * YEAR, len(covered))),
        w.open[covered],
    )
    cur = _pick_cm(rng, w, w.branch[covered], start0)
    cust_l, staff_l, start_l = [covered], [cur.copy()], [start0]
    for f in month_firsts:
        eligible = w.open[covered] < f
        moves = eligible & (rng.random(len(covered)) < 0.005)
        day = f + rng.integers(0, 15, len(covered))
        if moves.any():
            new = _pick_cm(rng, w, w.branch[covered[moves]], day[moves], stayers_only=True)
            cur[moves] = new
            cust_l.append(covered[moves])
            staff_l.append(new)
            start_l.append(day[moves])
        nxt = A.add_months(np.array([f]), np.array([1]))[0]
        leave = w.staff_leave[cur]
        hand = eligible & (leave >= f) & (leave < nxt)
        if hand.any():
            new = _pick_cm(rng, w, w.branch[covered[hand]], leave[hand], stayers_only=True)
            cur[hand] = new
            cust_l.append(covered[hand])
            staff_l.append(new)
            start_l.append(leave[hand])
    cust = np.concatenate(cust_l)
    staff = np.concatenate(staff_l)
    start = np.concatenate(start_l)
    order = np.lexsort((start, cust))
    cust, staff, start = cust[order], staff[order], start[order]
    same_next = np.r_[cust[1:] == cust[:-1], False]
    next_start = np.where(same_next, np.r_[start[1:], 0], INF)
    return {
        "cust": cust,
        "staff": staff,
        "start": start,
        "next": next_start,
        "no": A.code_strings("GH", np.arange(len(cust)) + 10**13, 14),
    }
