"""The static world of the synthetic bank: orgs, staff, products, customers and their contracts.

Everything is drawn once, vectorised, with all dates (open, start, maturity, leave...) laid out over the
whole simulated window; the monthly step in ``_months`` then only filters by date and evolves balances.
Dates are ``int64`` day numbers (days since 1970-01-01), money is ``int64`` cents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from cimlib.synth import _arrow as A
from cimlib.synth import _names as NM

YEAR = 365

# Product catalogue: code, name, category, subtype, term_months, base_rate (micros), gl_subject, launch.
PRODUCTS: tuple[tuple[str, str, str, str, int | None, int | None, str | None, str], ...] = (
    ("DP1001", "个人活期储蓄存款", "DEPOSIT", "DEMAND", 0, 1500, "2011", "2005-01-01"),
    ("DP1002", "单位活期存款", "DEPOSIT", "DEMAND", 0, 2500, "2013", "2005-01-01"),
    ("DP1103", "个人整存整取3个月", "DEPOSIT", "TIME", 3, 11500, "2012", "2005-01-01"),
    ("DP1106", "个人整存整取6个月", "DEPOSIT", "TIME", 6, 13500, "2012", "2005-01-01"),
    ("DP1112", "个人整存整取1年", "DEPOSIT", "TIME", 12, 15500, "2012", "2005-01-01"),
    ("DP1124", "个人整存整取2年", "DEPOSIT", "TIME", 24, 16500, "2012", "2005-01-01"),
    ("DP1136", "个人整存整取3年", "DEPOSIT", "TIME", 36, 19500, "2012", "2005-01-01"),
    ("DP1160", "个人整存整取5年", "DEPOSIT", "TIME", 60, 20000, "2012", "2005-01-01"),
    ("DP1203", "单位定期存款3个月", "DEPOSIT", "TIME", 3, 11500, "2014", "2005-01-01"),
    ("DP1206", "单位定期存款6个月", "DEPOSIT", "TIME", 6, 13500, "2014", "2005-01-01"),
    ("DP1212", "单位定期存款1年", "DEPOSIT", "TIME", 12, 15500, "2014", "2005-01-01"),
    ("DP1224", "单位定期存款2年", "DEPOSIT", "TIME", 24, 16500, "2014", "2005-01-01"),
    ("DP1236", "单位定期存款3年", "DEPOSIT", "TIME", 36, 19500, "2014", "2005-01-01"),
    ("DP1260", "单位定期存款5年", "DEPOSIT", "TIME", 60, 20000, "2014", "2005-01-01"),
    ("LN2001", "个人消费贷款", "LOAN", "CONSUMER", 36, 55000, "1301", "2010-01-01"),
    ("LN2002", "个人经营贷款", "LOAN", "BUSINESS", 36, 48000, "1301", "2010-01-01"),
    ("LN2003", "个人住房按揭贷款", "LOAN", "MORTGAGE", 360, 39500, "1301", "2010-01-01"),
    ("LN2004", "农户小额信用贷款", "LOAN", "AGRI", 24, 45000, "1301", "2010-01-01"),
    ("LN2005", "流动资金贷款", "LOAN", "CORPORATE", 36, 42000, "1302", "2010-01-01"),
    ("LN2006", "小微企业经营贷款", "LOAN", "BUSINESS", 36, 46000, "1302", "2015-06-01"),
    ("CD3001", "丰收借记卡", "CARD", "DEBIT", None, None, None, "2008-01-01"),
    ("CD3002", "丰收信用卡", "CARD", "CREDIT", None, None, None, "2012-01-01"),
    ("WM4001", "丰收理财稳健系列", "WEALTH", "WMP", 12, 32000, None, "2016-01-01"),
    ("FD4002", "代销混合型基金", "WEALTH", "FUND", None, None, None, "2016-01-01"),
    ("IN4003", "代理分红型保险", "WEALTH", "INSURANCE", 120, None, None, "2016-01-01"),
    ("BD4004", "储蓄国债(电子式)", "WEALTH", "BOND", 36, 25000, None, "2014-01-01"),
    ("GD4005", "积存金", "WEALTH", "GOLD", None, None, None, "2018-01-01"),
    ("IB5001", "国内信用证", "INTERMEDIATE", "LC", None, None, None, "2012-01-01"),
    ("IB5002", "银行承兑汇票", "INTERMEDIATE", "ACCEPTANCE", None, None, None, "2008-01-01"),
    ("IB5003", "票据贴现", "INTERMEDIATE", "DISCOUNT", None, None, None, "2008-01-01"),
    ("IB5004", "对公结算服务", "INTERMEDIATE", "SETTLEMENT", None, None, None, "2005-01-01"),
)
TERMS = np.array([3, 6, 12, 24, 36, 60])
TERM_RATE = np.array([11500, 13500, 15500, 16500, 19500, 20000])  # micros
TIME_PRODUCTS = (
    ["DP1103", "DP1106", "DP1112", "DP1124", "DP1136", "DP1160"],
    ["DP1203", "DP1206", "DP1212", "DP1224", "DP1236", "DP1260"],
)
PRODUCT_INDEX = {p[0]: i for i, p in enumerate(PRODUCTS)}


@dataclass
class World:
    """All static arrays; see the module docstring for units."""

    w0: int  # first day of the window
    end: int  # last as-of date
    as_of: list[int]
    n: int
    # orgs
    org: pa.Table = None  # type: ignore[assignment]
    br_code: np.ndarray = None  # type: ignore[assignment]
    br_region: np.ndarray = None  # type: ignore[assignment]
    br_county: np.ndarray = None  # type: ignore[assignment]
    br_codes_pa: pa.Array = None  # type: ignore[assignment]
    staff: pa.Table = None  # type: ignore[assignment]
    staff_leave: np.ndarray = None  # type: ignore[assignment]
    product: pa.Table = None  # type: ignore[assignment]
    # customers
    corp: np.ndarray = None  # type: ignore[assignment]
    branch: np.ndarray = None  # type: ignore[assignment]
    open: np.ndarray = None  # type: ignore[assignment]
    cust_no: pa.Array = None  # type: ignore[assignment]
    names: pa.Array = None  # type: ignore[assignment]
    id_key: pa.Array = None  # type: ignore[assignment]
    birth: np.ndarray = None  # type: ignore[assignment]
    wealth: np.ndarray = None  # type: ignore[assignment]
    activity: np.ndarray = None  # type: ignore[assignment]
    dormant: np.ndarray = None  # type: ignore[assignment]
    ind: pa.Table = None  # type: ignore[assignment]  # canonical individual_customer, CORE, all customers
    ind_idx: np.ndarray = None  # type: ignore[assignment]
    cor: pa.Table = None  # type: ignore[assignment]
    cor_idx: np.ndarray = None  # type: ignore[assignment]
    churn_month: np.ndarray = None  # type: ignore[assignment]  # -1 none, else month index
    churn_kind: np.ndarray = None  # type: ignore[assignment]  # 0 none 1 attrition 2 silent
    churn_day: np.ndarray = None  # type: ignore[assignment]
    tables: dict[str, object] = field(default_factory=dict)


def dn(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Day numbers from year, month, day arrays."""
    months = (np.asarray(y, dtype=np.int64) - 1970) * 12 + np.asarray(m, dtype=np.int64) - 1
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + np.asarray(d) - 1


def person_names(rng: np.random.Generator, n: int) -> pa.Array:
    """Chinese personal names: a frequency-weighted surname and one or two given-name characters."""
    ns = len(NM.SURNAMES)
    p = 1.0 / (np.arange(ns) + 4.0)
    s = rng.choice(ns, n, p=p / p.sum())
    g = list(NM.GIVEN_CHARS)
    g1 = rng.integers(0, len(g), n)
    g2 = np.where(rng.random(n) < 0.72, rng.integers(0, len(g), n), len(g))
    return A.concat(A.pick(list(NM.SURNAMES), s), A.pick(g, g1), A.pick([*g, ""], g2))


def _place_names(rng: np.random.Generator, n: int) -> list[str]:
    c = NM.PLACE_CHARS
    idx = rng.integers(0, len(c), (n, 2))
    return [c[a] + c[b] for a, b in idx]


def build_orgs(rng: np.random.Generator, w: World) -> None:
    """Province, ten county banks, 8-15 branches each."""
    prov_region, _, prov_org = NM.PROVINCE
    codes, names, levels, parents, regions, opens = (
        ["100000"],
        [prov_org],
        ["PROVINCE"],
        [None],
        [prov_region],
        [A.days(__import__("datetime").date(2004, 8, 1))],
    )
    br_code, br_region, br_county, br_town = [], [], [], []
    n_br = rng.integers(8, 16, len(NM.COUNTIES))
    for k, (region, county) in enumerate(NM.COUNTIES):
        ccode = f"1{k + 1:02d}000"
        codes.append(ccode)
        names.append(f"{county}农村商业银行")
        levels.append("COUNTY")
        parents.append("100000")
        regions.append(region)
        opens.append(opens[0] + int(rng.integers(0, 2000)))
        towns = _place_names(rng, int(n_br[k]))
        for j in range(int(n_br[k])):
            code = f"1{k + 1:02d}{j + 1:03d}"
            if j == 0:
                name, town = f"{county}农村商业银行营业部", county[:-1] + "城关"
            else:
                town = towns[j]
                name = f"{county}农村商业银行{town}{'分理处' if rng.random() < 0.3 else '镇支行'}"
            codes.append(code)
            names.append(name)
            levels.append("BRANCH")
            parents.append(ccode)
            regions.append(region)
            opens.append(opens[-1] + int(rng.integers(0, 3000)))
            br_code.append(int(code))
            br_region.append(int(region))
            br_county.append(k)
            br_town.append(town)
    w.org = pa.table(
        {
            "org_code": pa.array(codes),
            "org_name": pa.array(names),
            "org_level": pa.array(levels),
            "parent_code": pa.array(parents, type=pa.string()),
            "region_code": pa.array(regions),
            "open_date": A.date_arr(np.array(opens)),
        }
    )
    w.br_code = np.array(br_code)
    w.br_region = np.array(br_region)
    w.br_county = np.array(br_county)
    w.br_codes_pa = pa.array([str(c) for c in br_code])
    w.tables["br_town"] = br_town


def build_staff(rng: np.random.Generator, w: World) -> None:
    """Tellers, customer managers and a manager per branch; some customer managers leave in the window."""
    nb = len(w.br_code)
    tellers = rng.integers(2, 6, nb)
    cms = rng.integers(2, 7, nb)
    org_idx, role = [], []
    for b in range(nb):
        org_idx += [b] * (1 + int(tellers[b]) + int(cms[b]))
        role += [2] + [0] * int(tellers[b]) + [1] * int(cms[b])
    org_idx_a, role_a = np.array(org_idx), np.array(role)
    n = len(role_a)
    hire = w.w0 - rng.integers(60, 25 * YEAR, n)
    leave = np.full(n, np.iinfo(np.int64).max)
    is_cm = role_a == 1
    # Some customer managers leave during the window (their customers are reassigned).
    if len(w.as_of) >= 2:
        leaving = is_cm & (rng.random(n) < 0.08)
        leave[leaving] = rng.integers(min(w.as_of[0] + 16, w.end), w.end + 1, leaving.sum())
        # keep at least one customer manager per branch who stays
        stays = np.bincount(org_idx_a[is_cm & ~leaving], minlength=nb)
        for b in np.flatnonzero(stays == 0):
            first = np.flatnonzero(is_cm & (org_idx_a == b))[0]
            leave[first] = np.iinfo(np.int64).max
    w.staff_leave = leave
    w.tables["staff_branch"] = org_idx_a
    w.tables["staff_is_cm"] = is_cm
    w.staff = pa.table(
        {
            "staff_no": A.code_strings("E", np.arange(n) + 1000001, 7),
            "staff_name": person_names(rng, n),
            "org_code": w.br_codes_pa.take(pa.array(org_idx_a)),
            "role": A.pick(["TELLER", "CUSTOMER_MANAGER", "BRANCH_MANAGER"], role_a),
            "hire_date": A.date_arr(hire),
        }
    )


def build_products(w: World) -> None:
    """The product catalogue (static)."""
    import datetime as dt

    cols = list(zip(*PRODUCTS, strict=True))
    term = np.array([t if t is not None else 0 for t in cols[4]])
    base = np.array([r if r is not None else 0 for r in cols[5]])
    w.product = pa.table(
        {
            "product_code": pa.array(cols[0]),
            "product_name": pa.array(cols[1]),
            "category": pa.array(cols[2]),
            "subtype": pa.array(cols[3]),
            "term_months": A.int_arr(term, mask=np.array([t is None for t in cols[4]])),
            "base_rate": A._null_where(A.rate(base), np.array([r is None for r in cols[5]])),
            "gl_subject": pa.array(cols[6], type=pa.string()),
            "launch_date": A.date_arr(np.array([A.days(dt.date.fromisoformat(s)) for s in cols[7]])),
        }
    )


def build_customers(rng: np.random.Generator, w: World) -> None:
    """Individual and corporate customers (CORE view), with wealth and activity levels."""
    n = w.n
    nb = len(w.br_code)
    corp = rng.random(n) < 0.07
    bw = rng.lognormal(0, 0.5, nb)
    branch = rng.choice(nb, n, p=bw / bw.sum())
    new = rng.random(n) < 0.06
    open_ = np.where(
        new, rng.integers(w.w0, w.end + 1, n), w.w0 - 1 - (rng.power(0.8, n) * 15 * YEAR).astype(np.int64)
    )
    # individuals: ages 18-85 at the end date
    age = np.clip(rng.normal(46, 15, n), 18.2, 85.5)
    birth0 = w.end - (age * 365.25).astype(np.int64)
    by, bm, bd = A.ymd(birth0)
    bd = np.where((bm == 2) & (bd == 29), 28, bd)
    birth = dn(by, bm, bd)
    open_ = np.where(corp, open_, np.minimum(np.maximum(open_, birth + 18 * 366), w.end))
    w.corp, w.branch, w.open, w.birth = corp, branch, open_, birth
    w.cust_no = A.code_strings("", np.where(corp, 8_000_000_000, 1_000_000_000) + np.arange(n), 10)
    w.names = person_names(rng, n)
    # Wealth (target deposit balance, cents): lognormal, corporates larger.
    w.wealth = np.where(corp, rng.lognormal(np.log(1.2e7), 1.1, n), rng.lognormal(np.log(1.2e6), 1.0, n))
    w.activity = np.where(corp, rng.lognormal(np.log(11.0), 0.6, n), rng.lognormal(np.log(2.6), 0.75, n))
    w.dormant = (~corp) & (rng.random(n) < 0.07)
    w.activity[w.dormant] = 0.0

    region = w.br_region[branch]
    ii = np.flatnonzero(~corp)
    ci = np.flatnonzero(corp)
    w.ind_idx, w.cor_idx = ii, ci
    ni, nc = len(ii), len(ci)
    male = rng.random(ni) < 0.51
    seq = rng.integers(0, 500, ni) * 2 + male
    y, m, d = A.ymd(birth[ii])
    id_no = A.id_numbers(region[ii], y * 10000 + m * 100 + d, seq)
    age_i = age[ii]
    edu = np.select(
        [age_i > 60, age_i > 40],
        [
            rng.choice(8, ni, p=[0.45, 0.35, 0.12, 0.03, 0.02, 0, 0, 0.03]),
            rng.choice(8, ni, p=[0.15, 0.4, 0.22, 0.1, 0.09, 0.01, 0, 0.03]),
        ],
        rng.choice(8, ni, p=[0.03, 0.2, 0.2, 0.25, 0.25, 0.04, 0.01, 0.02]),
    )
    occ = np.where(
        age_i > 62, 8, rng.choice(11, ni, p=[0.32, 0.16, 0.1, 0.04, 0.04, 0.03, 0.06, 0.15, 0, 0.03, 0.07])
    )
    occ = np.where(age_i < 23, 9, occ)
    mar = np.where(
        age_i < 26,
        rng.choice(5, ni, p=[0.8, 0.18, 0.01, 0, 0.01]),
        rng.choice(5, ni, p=[0.06, 0.82, 0.05, 0.05, 0.02]),
    )
    income = (rng.lognormal(np.log(4200), 0.6, ni) * 100).round(-2).astype(np.int64)
    phone = np.hstack(
        [
            np.full((ni, 1), ord("1"), np.uint8),
            (rng.integers(3, 10, (ni, 1)) + 48).astype(np.uint8),
            A.digits(rng.integers(0, 10**9, ni), 9),
        ]
    )
    towns = w.tables["br_town"]
    county_names = [c for _, c in NM.COUNTIES]
    village = _place_names(rng, 97)
    addr = A.concat(
        pa.array([NM.PROVINCE[1]] * ni),
        A.pick(county_names, w.br_county[branch[ii]]),
        A.pick(towns, branch[ii]),
        A.pick(["镇", "乡", "街道"], rng.choice(3, ni, p=[0.6, 0.25, 0.15])),
        A.pick(village, rng.integers(0, 97, ni)),
        pa.array(["村"] * ni),
        A.code_strings("", rng.integers(1, 300, ni), 3),
        pa.array(["号"] * ni),
    )
    expiry = np.where(age_i > 46, 0, w.end + rng.integers(-300, 20 * YEAR, ni))
    w.ind = pa.table(
        {
            "src_system": pa.array(["CORE"] * ni),
            "cust_no": w.cust_no.take(pa.array(ii)),
            "id_no": id_no,
            "cust_name": w.names.take(pa.array(ii)),
            "birth_date": A.date_arr(birth[ii]),
            "sex": A.pick(["F", "M"], male.astype(np.int8)),
            "education": A.pick(
                ["PRIMARY", "JUNIOR", "SENIOR", "VOCATIONAL", "BACHELOR", "MASTER", "DOCTOR", "UNKNOWN"],
                edu,
                mask=rng.random(ni) < 0.05,
            ),
            "occupation": A.pick(
                [
                    "FARMER",
                    "WORKER",
                    "MERCHANT",
                    "CIVIL_SERVANT",
                    "TEACHER",
                    "MEDICAL",
                    "PROFESSIONAL",
                    "SELF_EMPLOYED",
                    "RETIRED",
                    "STUDENT",
                    "OTHER",
                ],
                occ,
                mask=rng.random(ni) < 0.08,
            ),
            "monthly_income": A.money(income, mask=rng.random(ni) < 0.25),
            "marital_status": A.pick(
                ["SINGLE", "MARRIED", "DIVORCED", "WIDOWED", "UNKNOWN"], mar, mask=rng.random(ni) < 0.05
            ),
            "phone": A._null_where(A.ascii_strings(phone), rng.random(ni) < 0.04),
            "address": A._null_where(addr, rng.random(ni) < 0.03),
            "id_expiry_date": A.date_arr(expiry, mask=expiry == 0),
            "open_date": A.date_arr(open_[ii]),
            "org_code": w.br_codes_pa.take(pa.array(branch[ii])),
        }
    )
    # corporates
    uscc = A.uscc_codes(region[ci], rng.integers(0, 31, (nc, 9)))
    short = [c[:-1] for _, c in NM.COUNTIES]
    cname = A.concat(
        A.pick(short, w.br_county[branch[ci]]),
        A.pick(NM.FIRM_WORDS, rng.integers(0, 28, nc)),
        A.pick(NM.FIRM_TRADES, rng.integers(0, len(NM.FIRM_TRADES), nc)),
        A.pick(NM.FIRM_SUFFIX, rng.integers(0, len(NM.FIRM_SUFFIX), nc)),
    )
    est = open_[ci] - rng.integers(0, 20 * YEAR, nc)
    cphone = np.hstack(
        [
            np.full((nc, 1), ord("1"), np.uint8),
            (rng.integers(3, 10, (nc, 1)) + 48).astype(np.uint8),
            A.digits(rng.integers(0, 10**9, nc), 9),
        ]
    )
    w.cor = pa.table(
        {
            "src_system": pa.array(["CORE"] * nc),
            "cust_no": w.cust_no.take(pa.array(ci)),
            "credit_code": uscc,
            "cust_name": cname,
            "economic_nature": A.pick(
                [
                    "STATE_OWNED",
                    "COLLECTIVE",
                    "PRIVATE",
                    "INDIVIDUAL_BUSINESS",
                    "FOREIGN_FUNDED",
                    "HMT_FUNDED",
                    "OTHER",
                ],
                rng.choice(7, nc, p=[0.03, 0.07, 0.7, 0.15, 0.01, 0.01, 0.03]),
            ),
            "enterprise_form": A.pick(
                ["LIMITED", "JOINT_STOCK", "PARTNERSHIP", "SOLE_PROPRIETORSHIP", "COOPERATIVE", "OTHER"],
                rng.choice(6, nc, p=[0.62, 0.06, 0.05, 0.12, 0.12, 0.03]),
            ),
            "industry": A.pick(
                list("ABCDEFGHIJKLMNOPQRS"),
                rng.choice(
                    19, nc, p=np.array([14, 1, 22, 2, 9, 20, 5, 7, 2, 1, 3, 4, 2, 1, 3, 1, 1, 1, 1]) / 100
                ),
            ),
            "registered_capital": A.money(
                (rng.lognormal(np.log(2e6), 1.2, nc)).round(-4).astype(np.int64) * 100,
                mask=rng.random(nc) < 0.05,
            ),
            "legal_rep_name": w.names.take(pa.array(ci)),
            "phone": A._null_where(A.ascii_strings(cphone), rng.random(nc) < 0.1),
            "established_date": A.date_arr(est, mask=rng.random(nc) < 0.05),
            "open_date": A.date_arr(open_[ci]),
            "org_code": w.br_codes_pa.take(pa.array(branch[ci])),
        }
    )
    key = np.empty(n, dtype=object)
    key[ii] = id_no.to_numpy(zero_copy_only=False)
    key[ci] = uscc.to_numpy(zero_copy_only=False)
    w.id_key = pa.array(key, type=pa.string())


def build_groups(rng: np.random.Generator, w: World) -> None:
    """Put about 12% of corporates into enterprise groups (集团) of 2-6 members.

    Members of a group mostly bank in the same county (a group is formed among corporates ordered by
    branch); the group's name is its parent's (first member's) name with the company suffix replaced by
    集团. Adds ``group_code`` and ``group_name`` to ``w.cor`` (NULL for corporates outside a group).
    """
    nc = w.cor.num_rows
    code = np.full(nc, None, dtype=object)
    name = np.full(nc, None, dtype=object)
    if nc >= 2:
        chosen = np.flatnonzero(rng.random(nc) < 0.12)
        orgs = np.asarray(w.cor.column("org_code").to_pylist(), dtype=object)[chosen]
        chosen = chosen[np.argsort(orgs, kind="stable")]
        names = w.cor.column("cust_name").to_pylist()
        i, g = 0, 0
        while i + 1 < len(chosen):
            size = int(min(rng.integers(2, 7), len(chosen) - i))
            members = chosen[i : i + size]
            parent = names[members[0]]
            stem = next((parent[: -len(x)] for x in NM.FIRM_SUFFIX if parent.endswith(x)), parent)
            g += 1
            code[members] = f"G{g:08d}"
            name[members] = stem + "集团"
            i += size
    w.cor = w.cor.append_column("group_code", pa.array(code, pa.string())).append_column(
        "group_name", pa.array(name, pa.string())
    )
