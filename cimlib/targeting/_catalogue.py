"""The allow-list of the rule language: indicators, monthly measures, collections and functions.

Every name a rule may use is here, with its type and the SQL that computes it. The SQL text of the
compiled rules comes only from this module and the compiler's templates, never from a rule.

Indicator kinds
---------------
* customer attributes (``dim_customer``) and the as-of month's facts (``mart_customer_month``), read as
  columns of the base relation ``b``;
* derived indicators: SQL over those columns and the as-of date (``next_birthday``, ``main_channel``);
* history indicators, computed from the customer-month history (``months_inactive``);
* corporate financials of the two latest fiscal years reported by the as-of date (``fin_*``);
* monthly measures: the numeric columns that history functions (``pct_change(deposit_adb, 1)``) accept;
* collections: a customer's accounts, loans, lines, holdings, cards, bills and guarantees given at the
  as-of date, for ``any(...)`` and ``all(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUMBER, DATE, TEXT, BOOL = "number", "date", "text", "bool"


def code(list_name: str) -> str:
    """The type of a coded column: ``code:<code list of codes.yaml>``."""
    return f"code:{list_name}"


@dataclass(frozen=True)
class Indicator:
    """One name a customer-level condition may use."""

    name: str
    type: str
    sql: str  # over the columns of dim_customer (d), mart_customer_month (m) and the as-of date ($as_of)
    en: str
    zh: str
    applies: str = "IC"  # I individual, C corporate
    source: str = "base"  # base | fin | hist
    money: bool = False
    personal: str | None = None  # the access field a value is masked as


@dataclass(frozen=True)
class Collection:
    """A customer's items at the as-of date, for ``any(name, condition)`` / ``all(...)``."""

    name: str
    en: str
    zh: str
    sql: str  # one row per item at $as_of, with customer_id and the fields
    fields: dict[str, str]  # field -> type
    order_by: str  # which matching item a reason quotes first
    applies: str = "IC"
    money: frozenset[str] = field(default_factory=frozenset)


def _i(name: str, typ: str, en: str, zh: str, sql: str | None = None, **kw: object) -> Indicator:
    return Indicator(name, typ, sql or f"d.{name}", en, zh, **kw)  # type: ignore[arg-type]


def _m(name: str, typ: str, en: str, zh: str, **kw: object) -> Indicator:
    return Indicator(name, typ, f"m.{name}", en, zh, **kw)  # type: ignore[arg-type]


_CHANNELS = ("counter", "atm", "pos", "phone", "online", "mobile")
_GREATEST = "greatest(" + ", ".join(f"m.txn_count_{x}" for x in _CHANNELS) + ")"
_MAIN_CHANNEL = (
    "CASE WHEN greatest("
    + ", ".join(f"m.txn_count_{c}" for c in _CHANNELS)
    + ") = 0 THEN NULL "
    + " ".join(f"WHEN m.txn_count_{c} = {_GREATEST} THEN '{c.upper()}'" for c in _CHANNELS)
    + " END"
)
_NEXT_BIRTHDAY = (
    "CASE WHEN d.birthday IS NULL THEN NULL "
    "WHEN CAST(d.birthday + to_years(CAST(year($as_of) - year(d.birthday) AS INTEGER)) AS DATE) > $as_of "
    "THEN CAST(d.birthday + to_years(CAST(year($as_of) - year(d.birthday) AS INTEGER)) AS DATE) "
    "ELSE CAST(d.birthday + to_years(CAST(year($as_of) - year(d.birthday) + 1 AS INTEGER)) AS DATE) END"
)

INDICATORS: dict[str, Indicator] = {
    x.name: x
    for x in [
        # ---- who (dim_customer)
        _i("customer_type", code("customer_type"), "Customer type", "客户类型"),
        _i("sex", code("sex"), "Sex", "性别", applies="I"),
        _i("age", NUMBER, "Age", "年龄", applies="I"),
        _i("birthday", DATE, "Birthday", "出生日期", applies="I"),
        _i("next_birthday", DATE, "Next birthday", "下一个生日", _NEXT_BIRTHDAY, applies="I"),
        _i("education", code("education"), "Education", "学历", applies="I"),
        _i("occupation", code("occupation"), "Occupation", "职业", applies="I"),
        _i("monthly_income", NUMBER, "Monthly income", "月收入", applies="I", money=True),
        _i("marital_status", code("marital_status"), "Marital status", "婚姻状况", applies="I"),
        _i("id_expiry_date", DATE, "ID document expiry", "证件到期日", applies="I"),
        _i("economic_nature", code("economic_nature"), "Economic nature", "经济性质", applies="C"),
        _i("enterprise_form", code("enterprise_form"), "Enterprise form", "企业形式", applies="C"),
        _i("industry", code("industry"), "Industry", "行业", applies="C"),
        _i("registered_capital", NUMBER, "Registered capital", "注册资本", applies="C", money=True),
        _i("established_date", DATE, "Established", "成立日期", applies="C"),
        _i("group_code", TEXT, "Customer group", "集团代码", applies="C"),
        _i("home_org_code", TEXT, "Home branch", "归属网点"),
        _i("county_code", TEXT, "County bank", "县级行社"),
        _i("manager_no", TEXT, "Customer manager", "客户经理"),
        _i("first_open_date", DATE, "First account opened", "首次开户日"),
        _i("n_source_numbers", NUMBER, "Customer numbers", "客户号个数"),
        # ---- the as-of month (mart_customer_month)
        _m("deposit_balance", NUMBER, "Deposit balance", "存款余额", money=True),
        _m("demand_balance", NUMBER, "Demand deposits", "活期存款", money=True),
        _m("time_balance", NUMBER, "Time deposits", "定期存款", money=True),
        _m("deposit_adb", NUMBER, "Deposit ADB", "存款日均", money=True),
        _m("demand_adb", NUMBER, "Demand ADB", "活期日均", money=True),
        _m("n_deposit_accounts", NUMBER, "Deposit accounts", "存款账户数"),
        _m("wealth_aum", NUMBER, "Wealth holdings", "理财等金融资产", money=True),
        _m("aum", NUMBER, "AUM", "金融资产(AUM)", money=True),
        _m("loan_balance", NUMBER, "Loan balance", "贷款余额", money=True),
        _m("loan_adb", NUMBER, "Loan ADB", "贷款日均", money=True),
        _m("n_active_loans", NUMBER, "Active loans", "在贷笔数"),
        _m("max_days_past_due", NUMBER, "Days past due (max)", "最长逾期天数"),
        _m("worst_five_class", code("five_class"), "Worst five-tier class", "最差五级分类"),
        _m("npl_balance", NUMBER, "Non-performing balance", "不良贷款余额", money=True),
        _m("credit_line_amount", NUMBER, "Credit lines", "授信额度", money=True),
        _m("credit_line_used", NUMBER, "Credit drawn", "用信余额", money=True),
        _m("credit_line_utilisation", NUMBER, "Line utilisation", "授信使用率"),
        _m("n_debit_cards", NUMBER, "Debit cards", "借记卡数"),
        _m("n_credit_cards", NUMBER, "Credit cards", "信用卡数"),
        _m("credit_card_limit", NUMBER, "Credit card limit", "信用卡额度", money=True),
        _m("credit_card_balance", NUMBER, "Credit card balance", "信用卡透支余额", money=True),
        _m("n_products", NUMBER, "Products held", "持有产品数"),
        _m("txn_count", NUMBER, "Transactions", "交易笔数"),
        _m("txn_amount", NUMBER, "Transaction amount", "交易金额", money=True),
        _m("customer_txn_count", NUMBER, "Customer-initiated transactions", "主动交易笔数"),
        _m("customer_txn_amount", NUMBER, "Customer-initiated amount", "主动交易金额", money=True),
        _m("digital_txn_count", NUMBER, "Digital transactions", "电子渠道交易笔数"),
        _m("inflow_amount", NUMBER, "Inflow", "资金流入", money=True),
        _m("outflow_amount", NUMBER, "Outflow", "资金流出", money=True),
        _m("other_bank_txn_count", NUMBER, "Other-bank transactions", "他行交易笔数"),
        *[_m(f"txn_count_{c}", NUMBER, f"Transactions ({c})", f"{c}交易笔数") for c in _CHANNELS],
        # ---- derived
        Indicator(
            "settlement_volume",
            NUMBER,
            "m.customer_txn_amount",
            "Settlement volume",
            "结算量",
            money=True,
        ),
        Indicator(
            "digital_share",
            NUMBER,
            "CAST(m.digital_txn_count AS DOUBLE) / nullif(m.txn_count - m.txn_count_system, 0)",
            "Digital share of transactions",
            "电子渠道占比",
        ),
        Indicator("main_channel", code("channel"), _MAIN_CHANNEL, "Main channel", "主要渠道"),
        # ---- history (customer-month rows up to the as-of month)
        Indicator(
            "months_inactive",
            NUMBER,
            "@H(months_inactive,,0)@",
            "Months without customer-initiated activity (at least)",
            "无主动交易月数(至少)",
            source="hist",
        ),
        # ---- corporate financials (latest two fiscal years reported by the as-of date)
        Indicator("fin_year", NUMBER, "f.fin_year", "Fiscal year", "财报年度", applies="C", source="fin"),
        *[
            Indicator(
                f"fin_{n}{sfx}",
                NUMBER,
                f"f.{n}{sfx}",
                f"{en}{' (year before)' if sfx else ''}",
                f"{zh}{'(上年)' if sfx else ''}",
                applies="C",
                source="fin",
                money=money,
            )
            for n, en, zh, money in (
                ("revenue", "Revenue", "营业收入", True),
                ("net_profit", "Net profit", "净利润", True),
                ("total_assets", "Total assets", "总资产", True),
                ("total_liabilities", "Total liabilities", "总负债", True),
                ("debt_ratio", "Liabilities / assets", "资产负债率", False),
            )
            for sfx in ("", "_prev")
        ],
    ]
}

#: Output-only columns (shown in lists, never in conditions): who the customer is and who serves them.
IDENTITY_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cust_name": ("d.cust_name", "name"),
    "id_no": ("d.id_no_or_credit_code", "id_no"),
    "phone": ("d.phone", "phone"),
    "home_org_name": ("d.home_org_name", None),
    "county_name": ("d.county_name", None),
    "manager_name": ("d.manager_name", None),
}

#: Monthly measures the history functions accept (numeric columns of mart_customer_month + derived).
MONTHLY: dict[str, str] = {
    **{n: f"m.{n}" for n, x in INDICATORS.items() if x.type == NUMBER and x.sql == f"m.{n}"},
    "digital_share": INDICATORS["digital_share"].sql,
}
MONTHLY_CODED: dict[str, str] = {"main_channel": _MAIN_CHANNEL, "worst_five_class": "m.worst_five_class"}

_AS_OF = "$as_of"
_PREV = "CAST(last_day($as_of - INTERVAL 1 MONTH) AS DATE)"

COLLECTIONS: dict[str, Collection] = {
    c.name: c
    for c in [
        Collection(
            "deposits",
            "deposit accounts",
            "存款账户",
            f"SELECT customer_id, product_code, account_type, status, balance, adb, rate, open_date, "
            f"maturity_date, term_months FROM core_deposit_month WHERE as_of_date = {_AS_OF}",
            {
                "product_code": TEXT,
                "account_type": code("account_type"),
                "status": code("account_status"),
                "balance": NUMBER,
                "adb": NUMBER,
                "rate": NUMBER,
                "open_date": DATE,
                "maturity_date": DATE,
                "term_months": NUMBER,
            },
            "maturity_date",
            money=frozenset({"balance", "adb"}),
        ),
        Collection(
            "loans",
            "loans",
            "贷款",
            "SELECT l.customer_id, l.loan_no, l.product_code, l.loan_form, l.contract_amount, l.balance, "
            "l.start_date, l.maturity_date, l.days_past_due, l.five_class, r.rank AS five_class_rank, "
            "r.npl, l.status, p.days_past_due AS prev_days_past_due, p.five_class AS prev_five_class, "
            "pr.rank AS prev_five_class_rank "
            f"FROM core_loan_month AS l LEFT JOIN core_loan_month AS p ON p.loan_no = l.loan_no "
            f"AND p.as_of_date = {_PREV} "
            "LEFT JOIN ref_five_class AS r ON r.code = l.five_class "
            "LEFT JOIN ref_five_class AS pr ON pr.code = p.five_class "
            f"WHERE l.as_of_date = {_AS_OF}",
            {
                "loan_no": TEXT,
                "product_code": TEXT,
                "loan_form": code("loan_form"),
                "contract_amount": NUMBER,
                "balance": NUMBER,
                "start_date": DATE,
                "maturity_date": DATE,
                "days_past_due": NUMBER,
                "five_class": code("five_class"),
                "five_class_rank": NUMBER,
                "npl": BOOL,
                "status": code("loan_status"),
                "prev_days_past_due": NUMBER,
                "prev_five_class": code("five_class"),
                "prev_five_class_rank": NUMBER,
            },
            "maturity_date",
            money=frozenset({"contract_amount", "balance"}),
        ),
        Collection(
            "credit_lines",
            "credit lines",
            "授信",
            "SELECT customer_id, line_no, line_amount, used_amount, "
            "CAST(used_amount AS DOUBLE) / nullif(line_amount, 0) AS utilisation, start_date, expiry_date, "
            f"status FROM core_credit_line_month WHERE as_of_date = {_AS_OF}",
            {
                "line_no": TEXT,
                "line_amount": NUMBER,
                "used_amount": NUMBER,
                "utilisation": NUMBER,
                "start_date": DATE,
                "expiry_date": DATE,
                "status": code("credit_line_status"),
            },
            "expiry_date",
            money=frozenset({"line_amount", "used_amount"}),
        ),
        Collection(
            "wealth",
            "wealth holdings",
            "理财持仓",
            "SELECT customer_id, product_code, wealth_type, market_value, buy_date, maturity_date "
            f"FROM core_wealth_month WHERE as_of_date = {_AS_OF}",
            {
                "product_code": TEXT,
                "wealth_type": code("wealth_type"),
                "market_value": NUMBER,
                "buy_date": DATE,
                "maturity_date": DATE,
            },
            "maturity_date",
            money=frozenset({"market_value"}),
        ),
        Collection(
            "cards",
            "cards",
            "银行卡",
            "SELECT customer_id, card_type, product_code, status, issue_date, expiry_date, credit_limit, "
            f"balance FROM core_card_month WHERE as_of_date = {_AS_OF}",
            {
                "card_type": code("card_type"),
                "product_code": TEXT,
                "status": code("card_status"),
                "issue_date": DATE,
                "expiry_date": DATE,
                "credit_limit": NUMBER,
                "balance": NUMBER,
            },
            "expiry_date",
            money=frozenset({"credit_limit", "balance"}),
        ),
        Collection(
            "bills",
            "letters of credit and bills",
            "信用证与票据",
            "SELECT customer_id, biz_type, amount, fee, issue_date, maturity_date, status "
            f"FROM core_corp_business_month WHERE as_of_date = {_AS_OF}",
            {
                "biz_type": code("biz_type"),
                "amount": NUMBER,
                "fee": NUMBER,
                "issue_date": DATE,
                "maturity_date": DATE,
                "status": code("biz_status"),
            },
            "maturity_date",
            applies="C",
            money=frozenset({"amount", "fee"}),
        ),
        Collection(
            "guarantees_given",
            "guarantees given",
            "对外担保",
            "SELECT g.guarantor_customer_id AS customer_id, g.loan_no, g.guarantee_type, g.amount, "
            "g.loan_five_class, g.loan_balance, g.loan_days_past_due, r.npl AS loan_npl, g.end_date "
            "FROM core_guarantee_month AS g LEFT JOIN ref_five_class AS r ON r.code = g.loan_five_class "
            f"WHERE g.as_of_date = {_AS_OF} AND g.guarantor_customer_id IS NOT NULL",
            {
                "loan_no": TEXT,
                "guarantee_type": code("guarantee_type"),
                "amount": NUMBER,
                "loan_five_class": code("five_class"),
                "loan_balance": NUMBER,
                "loan_days_past_due": NUMBER,
                "loan_npl": BOOL,
                "end_date": DATE,
            },
            "loan_balance",
            money=frozenset({"amount", "loan_balance"}),
        ),
    ]
}

FIN_SQL = """
SELECT customer_id,
       max(fiscal_year) AS fin_year,
       arg_max(revenue, fiscal_year) AS revenue,
       arg_max(net_profit, fiscal_year) AS net_profit,
       arg_max(total_assets, fiscal_year) AS total_assets,
       arg_max(total_liabilities, fiscal_year) AS total_liabilities,
       arg_max(CAST(total_liabilities AS DOUBLE) / nullif(total_assets, 0), fiscal_year) AS debt_ratio,
       arg_max(revenue, fiscal_year) FILTER (WHERE rn = 2) AS revenue_prev,
       arg_max(net_profit, fiscal_year) FILTER (WHERE rn = 2) AS net_profit_prev,
       arg_max(total_assets, fiscal_year) FILTER (WHERE rn = 2) AS total_assets_prev,
       arg_max(total_liabilities, fiscal_year) FILTER (WHERE rn = 2) AS total_liabilities_prev,
       arg_max(CAST(total_liabilities AS DOUBLE) / nullif(total_assets, 0), fiscal_year)
           FILTER (WHERE rn = 2) AS debt_ratio_prev
FROM (
    SELECT customer_id, fiscal_year, revenue, net_profit, total_assets, total_liabilities,
           row_number() OVER (PARTITION BY customer_id ORDER BY fiscal_year DESC) AS rn
    FROM (
        SELECT customer_id, fiscal_year, arg_max(revenue, as_of_date) AS revenue,
               arg_max(net_profit, as_of_date) AS net_profit,
               arg_max(total_assets, as_of_date) AS total_assets,
               arg_max(total_liabilities, as_of_date) AS total_liabilities
        FROM core_corp_financials WHERE as_of_date <= $as_of
        GROUP BY customer_id, fiscal_year
    )
) WHERE rn <= 2
GROUP BY customer_id
"""


@dataclass(frozen=True)
class Function:
    """A function of the rule language: its arguments' kinds and its result type."""

    name: str
    args: tuple[str, ...]  # value | date | number | int | monthly | collection | condition
    en: str


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("days_until", ("date",), "days from the as-of date to a date (negative when past)"),
        Function("days_since", ("date",), "days from a date to the as-of date"),
        Function("months_since", ("date",), "whole months from a date to the as-of date"),
        Function("abs", ("number",), "absolute value"),
        Function("coalesce", ("value", "value"), "the first argument that is not null"),
        Function("least", ("number", "number"), "the smaller value"),
        Function("greatest", ("number", "number"), "the larger value"),
        Function("prior", ("monthly", "int"), "the value N months before the as-of month"),
        Function("pct_change", ("monthly", "int"), "% change against N months before (null from 0)"),
        Function("zscore", ("monthly", "int"), "z-score against the customer's previous N months"),
        Function("avg_prior", ("monthly", "int"), "mean of the previous N months"),
        Function("max_prior", ("monthly", "int"), "maximum of the previous N months"),
        Function("min_prior", ("monthly", "int"), "minimum of the previous N months"),
        Function("any", ("collection", "condition"), "true when at least one item matches"),
        Function("all", ("collection", "condition"), "true when the customer has items and all match"),
        Function("count", ("collection", "condition"), "how many items match"),
    ]
}
HISTORY_FUNCTIONS = frozenset({"prior", "pct_change", "zscore", "avg_prior", "max_prior", "min_prior"})
MAX_HISTORY_MONTHS = 36


def indicators_for(customer_type: str) -> dict[str, Indicator]:
    """The indicators a condition for ``customer_type`` (``I`` or ``C``) may use."""
    return {n: x for n, x in INDICATORS.items() if customer_type in x.applies}


def collections_for(customer_type: str) -> dict[str, Collection]:
    """The collections ``any``/``all``/``count`` accept for ``customer_type``."""
    return {n: c for n, c in COLLECTIONS.items() if customer_type in c.applies}
