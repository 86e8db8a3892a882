"""The monthly management pack (月度经营管理报告): one method per section, each a cell of
``notebooks/reports/monthly_pack.ipynb``.

Two editions, decided by the scope (:func:`~cimlib.reports._params.audience`):

* **Provincial** (``province``, the provincial analyst): every county, aggregates only. No customer row
  appears anywhere and no list is attached; groups below the access policy's minimum cell are blanked by
  the services themselves.
* **County** (``county:CODE``, that county's manager): the county's figures only, its branch and customer
  manager league tables, a short list of its most valuable at-risk customers, and (``attach_lists``) its
  target lists and churn watchlist as Excel attachments split by branch, masked for the role by the
  services that produce them.

Every figure comes from the public services (:mod:`cimlib.analysis`, :mod:`cimlib.value`,
:mod:`cimlib.segmentation`, :mod:`cimlib.targeting`, :mod:`cimlib.churn`) called with the audience's
principal, so row scope, small-cell suppression, masking and the audit log are theirs. A frame shown as a
table and drawn as a chart is read once (:meth:`~cimlib.reports._document.ReportDocument.memo`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pandas as pd

from cimlib.reports._document import ReportDocument, is_missing
from cimlib.reports._params import MonthlyPackParams

#: The sections, in the notebook's order.
SECTIONS = ("macro", "groups", "segments", "targets", "churn", "product", "channel", "performance")
#: The key figures shown as cards on the overview.
KPI_MEASURES = (
    "customers",
    "deposit_balance",
    "deposit_adb",
    "loan_balance",
    "npl_ratio",
    "provision_coverage",
    "fee_income",
    "contribution",
)
#: The 13-month trend table's measures.
TREND_MEASURES = ("customers", "deposit_balance", "deposit_adb", "loan_balance", "npl_balance", "npl_ratio")
#: The value measures of the 80/20 statistics.
CONCENTRATION_MEASURES = ("aum", "deposits", "loans", "contribution")


class MonthlyPack(ReportDocument):
    """The monthly management pack for one period and scope.

    Parameters
    ----------
    params : MonthlyPackParams, optional
        The validated parameters; or pass them as keywords (``period=…, scope=…``), as the notebook does.
    name : str, optional
        The report's name (default ``monthly_pack``).
    home : Home, str or None
        The installation.
    sink : list, optional
        Collect the outputs instead of displaying them (in-process runs and tests).
    **values
        The parameters, when ``params`` is omitted.

    Examples
    --------
    >>> rep = MonthlyPack(scope="county:101000", locale="zh_CN", sink=[])  # doctest: +SKIP
    >>> rep.cover(); rep.macro(); rep.finish()  # doctest: +SKIP
    """

    report_name = "monthly_pack"
    params_model = MonthlyPackParams
    SECTIONS = SECTIONS
    params: MonthlyPackParams

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def top_n(self) -> int:
        """Rows of each "largest" table."""
        return int(self.params.top_n)

    @property
    def org_dim(self) -> str:
        """The segmentation dimension of the scope's child orgs: ``county`` (province) or ``branch``."""
        return "branch" if self.org else "county"

    @property
    def org_groups(self) -> str:
        """The customer-group spec of the child orgs (``dim:county`` or ``dim:branch``)."""
        return f"dim:{self.org_dim}"

    def _call(self, fn: Any, **kw: Any) -> Any:
        """A service call with the report's principal, month, installation and language."""
        return fn(self.principal, self.as_of, home=self.home, lang=self.lang, **kw)

    def _a(self, name: str, **kw: Any) -> pd.DataFrame:
        """:mod:`cimlib.analysis` ``name`` for the report, read once per document."""
        from cimlib import analysis as A

        key = ("analysis", name, tuple(sorted(kw.items())))
        return self.memo(key, lambda: self._call(getattr(A, name), **kw))

    def _head(self, text_key: str) -> None:
        self.h2(self.t(f"pack.sections.{text_key}"))

    # --------------------------------------------------------------------------------------------- cover
    def cover(self) -> None:
        """The first page: title, scope, period, as-of date, snapshot, audience, the data-quality banner
        when published despite failures, and the contents."""
        with self.section("cover"):
            self.title_page([self.t(f"pack.sections.{s}") for s in SECTIONS])

    # --------------------------------------------------------------------------------------------- macro
    def macro(self) -> None:
        """Overview against the previous month, last year and the start of the year; the 13-month trend;
        the key-focus list (``top_n`` per kind) with its chart."""
        from cimlib import analysis as A

        with self.section("macro"):
            self._head("macro")
            ov = self._a("overview")
            self.kpi_cards("macro.kpis", ov, KPI_MEASURES)
            table = ov.copy()
            cols: list[tuple[str, str]] = [("label", "text"), ("current", "row")]
            headers = {}
            for k in ("prev_month", "last_year", "year_start"):
                # growth for amounts and counts, the change in percentage points for rates (as the cards)
                rate = table["kind"].astype(str).isin(["rate", "ratio"])
                table[f"{k}_delta"] = table[f"{k}_change"].where(rate, table[f"{k}_growth"])
                cols += [(k, "row"), (f"{k}_delta", "delta")]
                headers[f"{k}_delta"] = self.t(f"vs.{k}")
            table.attrs = dict(ov.attrs)
            self.table(
                "macro.overview", table, cols, note=self.t("note_units"), keys=("measure",), headers=headers
            )
            trend = self._a("overview_trend", months=13)
            self.chart("macro.trend", A.kpi_trend_chart(trend, self.lang))
            wide = trend.pivot_table(
                index="month", columns="measure", values="value", aggfunc="first", dropna=False
            ).reset_index()
            wide = wide[["month", *[m for m in TREND_MEASURES if m in wide.columns]]]
            wide.attrs = dict(trend.attrs)
            self.table(
                "macro.trend",
                wide,
                [
                    ("month", "text"),
                    ("customers", "count"),
                    ("deposit_balance", "money"),
                    ("deposit_adb", "money"),
                    ("loan_balance", "money"),
                    ("npl_balance", "money"),
                    ("npl_ratio", "percent"),
                ],
            )
            focus = self._a("key_focus", limit=self.top_n)
            self.h3(self.t("tables.macro.focus"))
            if len(focus):
                self.chart("macro.focus", A.key_focus_chart(focus, self.lang))
            cols = [
                ("kind_label", "text"),
                ("label", "text"),
                ("measure_label", "text"),
                ("previous", "row"),
                ("current", "row"),
                ("change", "row"),
                ("change_rate", "percent"),
                ("drivers", "text"),
            ]
            self.table(
                "macro.focus",
                focus,
                cols,
                title="",
                row_kind=_focus_kind,
                keys=("kind", "code", "measure"),
                note=self.t("pack.focus_note", n=self.top_n)
                + " "
                + self.t("unit_note", unit=self.t("unit_money")),
            )
            n = focus.attrs.get("n_customer_movements")
            if self.aggregate_only and n is not None:
                self.paragraph(self.t("pack.focus_customers", n=int(n)), note=True)

    # -------------------------------------------------------------------------------------------- groups
    def groups(self) -> None:
        """Customer groups by AUM tier: value, activity and dormancy; the 80/20 statistics of AUM,
        deposits, loans and contribution, with the Lorenz (whale) and Pareto charts."""
        from cimlib import analysis as A
        from cimlib import value as V
        from cimlib.value._concentration_charts import lorenz_chart, pareto_chart

        with self.section("groups"):
            self._head("groups")
            value = self._a("group_value", groups="dim:aum")
            self.table(
                "groups.value",
                value,
                [
                    ("label", "text"),
                    ("customers", "count"),
                    ("customer_share", "percent"),
                    ("aum_adb", "money"),
                    ("aum_adb_share", "percent"),
                    ("deposit_adb", "money"),
                    ("contribution", "money"),
                    ("contribution_share", "percent"),
                    ("contribution_per_customer", "yuan"),
                ],
                keys=("group",),
            )
            self.chart("groups.value", A.group_value_chart(value, self.lang, measure="aum_adb"))
            activity = self._a("group_activity", groups="dim:aum")
            self.table(
                "groups.activity",
                activity,
                [
                    ("label", "text"),
                    ("customers", "count"),
                    ("active", "count"),
                    ("active_share", "percent"),
                    ("dormant", "count"),
                    ("dormant_share", "percent"),
                    ("txns_per_active", "number"),
                ],
                keys=("group",),
            )
            conc = self.memo(
                "concentration",
                lambda: V.concentration(
                    self.principal,
                    self.as_of,
                    measures=CONCENTRATION_MEASURES,
                    home=self.home,
                    lang=self.lang,
                ),
            )
            self.table(
                "groups.concentration",
                conc,
                [
                    ("measure_label", "text"),
                    ("n", "count"),
                    ("total", "money"),
                    ("top_1pct_share", "percent"),
                    ("top_20pct_share", "percent"),
                    ("customers_for_80", "count"),
                    ("share_for_80", "percent"),
                    ("gini", "number"),
                ],
                note=self.t("pack.concentration_note"),
                keys=("measure",),
            )
            points = self.memo(
                "lorenz",
                lambda: V.lorenz(
                    self.principal, self.as_of, measures=["aum"], home=self.home, lang=self.lang
                ),
            )
            self.chart("groups.lorenz", lorenz_chart(points, self.lang))
            bins = self.memo(
                "pareto",
                lambda: V.pareto(
                    self.principal, self.as_of, measures=["aum"], home=self.home, lang=self.lang
                ),
            )
            self.chart("groups.pareto", pareto_chart(bins, self.lang))

    # ------------------------------------------------------------------------------------------ segments
    def segments(self) -> None:
        """Segmentation highlights: deposits, AUM and loans by customer type, and customers and AUM by
        child org (county or branch) and AUM tier (cells below the minimum blanked for aggregate roles)."""
        from cimlib import segmentation as S

        with self.section("segments"):
            self._head("segments")
            totals = self.memo(
                "deposit_loan_totals",
                lambda: S.deposit_loan_totals(
                    self.principal, self.as_of, by="customer_type", home=self.home, lang=self.lang
                ),
            )
            self.table(
                "segments.customer_type",
                totals,
                [
                    ("label", "text"),
                    ("customers", "count"),
                    ("customer_share", "percent"),
                    ("deposit_adb", "money"),
                    ("deposit_balance", "money"),
                    ("aum", "money"),
                    ("aum_share", "percent"),
                    ("loan_balance", "money"),
                    ("loan_balance_share", "percent"),
                ],
                keys=("member",),
            )
            first = True
            for measure, kind in (("customers", "count"), ("aum", "money")):
                pv = self.memo(
                    ("pivot", measure),
                    lambda m=measure: S.pivot(
                        self.principal,
                        self.org_dim,
                        "aum",
                        measure=m,
                        as_of=self.as_of,
                        home=self.home,
                        lang=self.lang,
                    ),
                )
                frame, cols = self._pivot_frame(pv)
                self.table(
                    f"segments.{measure}_by_org_tier",
                    frame,
                    [("org", "text"), ("label", "text"), *[(c, kind) for c in cols]],
                    headers={"org": self.label(self.org_dim), **cols},
                    total_row=lambda r: r.get("org") == "",
                    note=self.t("pack.suppressed_note") if self.aggregate_only and first else None,
                )
                if measure == "customers":
                    tiers = pd.DataFrame(
                        {
                            "label": [cols[c] for c in cols if c != "_total"],
                            "customers": [frame.iloc[-1][c] for c in cols if c != "_total"],
                        }
                    )
                    tiers["customer_share"] = tiers["customers"] / float(frame.iloc[-1]["_total"] or 1)
                    self.chart(
                        "segments.tiers",
                        S.distribution_chart(
                            tiers, self.lang, value="customers", title=self.t("pack.tier_chart")
                        ),
                    )
                first = False

    def _pivot_frame(self, pv: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
        """A pivot of :func:`cimlib.segmentation.pivot` as a flat frame with org names, and its value
        columns' labels (tier labels)."""
        col_labels = dict(pv.attrs.get("col_labels") or {})
        frame = pv.reset_index()
        key = frame.columns[0]
        frame = frame.rename(columns={key: "org"})
        frame["org"] = [("" if str(c) == "_total" else str(c)) for c in frame["org"]]
        frame.insert(1, "label", [self.t("total") if c == "" else self.org_name(c) for c in frame["org"]])
        frame.columns = [str(c) for c in frame.columns]
        cols = {
            str(c): (self.t("total") if str(c) == "_total" else str(col_labels.get(c, c))) for c in pv.columns
        }
        frame.attrs = dict(pv.attrs)
        return frame, cols

    # ------------------------------------------------------------------------------------------- targets
    def targets(self) -> None:
        """Target rule sets (``rulesets``, default every one): customers hit per rule and per child org;
        in the county edition with ``attach_lists`` also the lists as Excel files split by branch."""
        from cimlib import targeting as TG

        with self.section("targets"):
            self._head("targets")
            names = list(self.params.rulesets) if self.params.rulesets else TG.list_rulesets(self.home)
            zh = self.lang == "zh_CN"
            rules_rows, by_org = [], {}
            for name in names:
                rs = TG.load_ruleset(name, self.home)
                counts = TG.counts(rs, self.principal, self.as_of, home=self.home)
                title = rs.title["zh" if zh else "en"]
                for rid in counts.attrs.get("rules", []):
                    rule = rs.rule(rid)
                    rules_rows.append(
                        {
                            "ruleset": name,
                            "ruleset_label": title,
                            "rule": rid,
                            "rule_label": rule.name["zh" if zh else "en"],
                            "customer_type": self.t(f"pack.customer_type.{rule.customer_type}"),
                            "hits": int(counts[rid].sum()) if rid in counts else 0,
                        }
                    )
                key = "county_code" if not self.org else "home_org_code"
                per = counts.groupby(key)["n_customers"].sum() if len(counts) else pd.Series(dtype="int64")
                by_org[name] = (title, per)
                self._memo[("counts", name)] = counts
            rules = pd.DataFrame(
                rules_rows,
                columns=["ruleset", "ruleset_label", "rule", "rule_label", "customer_type", "hits"],
            )
            rules.attrs["snapshot_id"] = self.snapshot_id
            self.table(
                "targets.rules",
                rules,
                [
                    ("ruleset_label", "text"),
                    ("rule_label", "text"),
                    ("customer_type", "text"),
                    ("hits", "count"),
                ],
                keys=("ruleset", "rule"),
            )
            if len(rules):
                self.chart(
                    "targets.rules",
                    rule_hits_chart(rules, self.lang, self.t("pack.rule_chart"), self.t("col.hits")),
                )
            children = [o.code for o in self._children()]
            orgs = pd.DataFrame({"org": children, "label": [self.org_name(c) for c in children]})
            for name, (_, per) in by_org.items():
                orgs[name] = [int(per.get(c, 0)) for c in orgs["org"]]
            orgs.attrs["snapshot_id"] = self.snapshot_id
            self.table(
                "targets.by_org",
                orgs,
                [("label", "text"), *[(n, "count") for n in by_org]],
                headers={"label": self.label(self.org_dim), **{n: t for n, (t, _) in by_org.items()}},
                note=self.t("pack.targets_note"),
                keys=("org",),
            )
            if self.org and self.params.attach_lists:
                self._target_lists(names)
            elif self.aggregate_only:
                self.paragraph(self.t("pack.no_lists_province"), note=True)

    def _children(self) -> list[Any]:
        return sorted((o for o in self._orgs.values() if o.parent == self.focus.code), key=lambda o: o.code)

    def _target_lists(self, names: list[str]) -> None:
        from cimlib import targeting as TG

        if self.out_dir is None:
            self.paragraph(self.t("pack.lists_not_written"), note=True)
            return
        zh = self.lang == "zh_CN"
        rows = []
        for name in names:
            rs = TG.load_ruleset(name, self.home)
            lst = TG.run(rs, self.principal, self.as_of, lang=self.lang, home=self.home)
            path = self.attachment_path(f"targets-{name}.xlsx")
            assert path is not None
            self.in_background(TG.write_list, lst, path, split="branch", lang=self.lang)
            rel = self.attach(path)
            rows.append(
                {
                    "ruleset_label": rs.title["zh" if zh else "en"],
                    "customers": len(lst),
                    "branches": int(lst["home_org_code"].nunique()) if len(lst) else 0,
                    "file": rel,
                }
            )
        frame = pd.DataFrame(rows, columns=["ruleset_label", "customers", "branches", "file"])
        frame.attrs["snapshot_id"] = self.snapshot_id
        self.table(
            "targets.lists",
            frame,
            [("ruleset_label", "text"), ("customers", "count"), ("branches", "count"), ("file", "text")],
        )

    # --------------------------------------------------------------------------------------------- churn
    def churn(self) -> None:
        """The churn watchlist summary: scored customers, high-risk count and share by child org; in the
        county edition also the listed customers' value at risk per branch, the top reasons, the most
        valuable at-risk customers and the watchlist attached as Excel. A month without churn scores is
        said so, not failed."""
        from cimlib import analysis as A
        from cimlib import churn as C

        with self.section("churn"):
            self._head("churn")
            cp = C.load_churn_params(self.home)
            definition, _ = cp.definition(None)
            if not C.scores_path(self.home, self.snapshot_id, definition, self.as_of).is_file():
                self.warning(self.t("pack.no_scores", period=self.period))
                return
            risk = self._a("group_risk", groups=self.org_groups)
            scored = float(risk["scored"].sum(skipna=True))
            high = float(risk["top_risk"].sum(skipna=True))
            facts: list[tuple[str, str, Any, str]] = [
                ("scored", self.t("col.scored"), scored, "count"),
                ("top_risk", self.t("col.top_risk"), high, "count"),
                (
                    "top_risk_share",
                    self.t("col.top_risk_share"),
                    high / scored if scored else None,
                    "percent",
                ),
            ]
            wl = None
            if not self.aggregate_only:
                wl = self.memo(
                    "watchlist",
                    lambda: C.watchlist(
                        self.principal, self.as_of, definition, lang=self.lang, home=self.home
                    ),
                )
                facts += [
                    ("watchlist", self.t("col.watchlist"), len(wl), "count"),
                    ("value_at_risk", self.t("col.value_at_risk"), float(wl["risk_x_value"].sum()), "money"),
                ]
            self.facts("churn.summary", facts)
            self.paragraph(
                self.t("pack.churn_note", decile=int(risk.attrs.get("top_risk_decile") or 0)), note=True
            )
            table = risk.copy()
            cols: list[tuple[str, str]] = [
                ("label", "text"),
                ("customers", "count"),
                ("scored", "count"),
                ("mean_churn_score", "score"),
                ("top_risk", "count"),
                ("top_risk_share", "percent"),
            ]
            if wl is not None:
                per = wl.groupby("home_org_code").agg(
                    watchlist=("customer_id", "size"), value_at_risk=("risk_x_value", "sum")
                )
                table["watchlist"] = [int(per["watchlist"].get(g, 0)) for g in table["group"]]
                table["value_at_risk"] = [float(per["value_at_risk"].get(g, 0.0)) for g in table["group"]]
                cols += [("watchlist", "count"), ("value_at_risk", "money")]
            table.attrs = dict(risk.attrs)
            self.table(
                "churn.by_org", table, cols, headers={"label": self.label(self.org_dim)}, keys=("group",)
            )
            self.chart("churn.by_org", A.group_risk_chart(risk, self.lang))
            if wl is None:
                self.paragraph(self.t("pack.churn_province"), note=True)
                return
            reasons = top_reasons(wl, self.lang)
            reasons["label"] = [self.t(f"reasons.{r}") for r in reasons["reason"]]
            reasons.attrs["snapshot_id"] = wl.attrs.get("snapshot_id")
            self.table(
                "churn.reasons",
                reasons,
                [("label", "text"), ("customers", "count"), ("share", "percent")],
                max_rows=self.top_n,
                keys=("reason",),
            )
            top = wl.sort_values(["risk_x_value", "customer_id"], ascending=[False, True]).head(self.top_n)
            top.attrs = dict(wl.attrs)
            self.table(
                "churn.top",
                top,
                [
                    ("cust_name", "text"),
                    ("customer_id", "text"),
                    ("home_org_name", "text"),
                    ("manager_name", "text"),
                    ("churn_score", "score"),
                    ("risk_decile", "count"),
                    ("value", "money"),
                    ("risk_x_value", "yuan"),
                    ("reasons", "text"),
                ],
                note=self.t("pack.watchlist_note", n=len(wl)),
            )
            if self.params.attach_lists and self.out_dir is not None:
                from cimlib import targeting as TG

                path = self.attachment_path("churn-watchlist.xlsx")
                assert path is not None
                self.in_background(TG.write_list, wl, path, split="branch", lang=self.lang)
                self.attach(path)

    # ------------------------------------------------------------------------------------------- product
    def product(self) -> None:
        """Products: the largest by balance with their share and growth, income and contribution, NPL by
        loan product, and how many products customers hold."""
        from cimlib import analysis as A

        with self.section("product"):
            self._head("product")
            ps = self._a("product_structure")
            top = ps.sort_values(["balance", "product_code"], ascending=[False, True], na_position="last")
            top.attrs = dict(ps.attrs)
            self.table(
                "product.structure",
                top,
                [
                    ("category_label", "text"),
                    ("label", "text"),
                    ("balance", "money"),
                    ("balance_share", "percent"),
                    ("holders", "count"),
                    ("penetration", "percent"),
                    ("balance_prev_month_growth", "percent"),
                    ("balance_last_year_growth", "percent"),
                ],
                max_rows=self.top_n,
                keys=("product_code",),
            )
            self.chart("product.structure", A.structure_chart(ps, self.lang))
            inc = self._a("product_income")
            inc_top = inc.sort_values(
                ["contribution", "product_code"], ascending=[False, True], na_position="last"
            )
            inc_top.attrs = dict(inc.attrs)
            self.table(
                "product.income",
                inc_top,
                [
                    ("category_label", "text"),
                    ("label", "text"),
                    ("adb", "money"),
                    ("fee_income", "money"),
                    ("contribution", "money"),
                    ("contribution_share", "percent"),
                    ("contribution_per_account", "yuan"),
                ],
                max_rows=self.top_n,
                keys=("product_code",),
            )
            risk = self._a("loan_risk")
            self.table(
                "product.loan_risk",
                risk,
                [
                    ("label", "text"),
                    ("loans", "count"),
                    ("loan_balance", "money"),
                    ("npl_balance", "money"),
                    ("npl_ratio", "percent"),
                    ("npl_ratio_prev_month_change", "pp"),
                    ("npl_ratio_last_year_change", "pp"),
                ],
                keys=("product_code",),
            )
            self.chart("product.npl", A.npl_chart(risk, self.lang))
            ppc = self._a("products_per_customer")
            self.table(
                "product.per_customer",
                ppc,
                [("label", "text"), ("customers", "count"), ("customer_share", "percent")],
                keys=("n_products",),
            )
            self.chart("product.per_customer", A.products_per_customer_chart(ppc, self.lang))

    # ------------------------------------------------------------------------------------------- channel
    def channel(self) -> None:
        """Channels: this month's volume and shares against the comparison months, the 13-month share
        trend, counter-to-digital migration per child org, cost by channel and under-used ATMs."""
        from cimlib import analysis as A

        with self.section("channel"):
            self._head("channel")
            vol = self._a("channel_volume")
            cur = vol[vol["period"] == "current"]
            cur.attrs = dict(vol.attrs)
            self.table(
                "channel.volume",
                cur,
                [
                    ("label", "text"),
                    ("txn_count", "count"),
                    ("count_share", "percent"),
                    ("txn_amount", "money"),
                    ("amount_share", "percent"),
                ],
                keys=("channel",),
            )
            self.chart("channel.volume", A.channel_volume_chart(vol, self.lang))
            trend = self._a("channel_trend", months=13)
            self.chart("channel.trend", A.channel_share_chart(trend, self.lang))
            mig = self._a("channel_migration", by=self.org_dim)
            self.table(
                "channel.migration",
                mig,
                [
                    ("label", "text"),
                    ("customers", "count"),
                    ("counter_share_base", "percent"),
                    ("counter_share", "percent"),
                    ("digital_share_base", "percent"),
                    ("digital_share", "percent"),
                    ("digital_share_change", "pp"),
                ],
                headers={"label": self.label(self.org_dim)},
                keys=("member",),
                note=self.t("pack.migration_note", base=str(mig.attrs.get("base_date", ""))[:7]),
            )
            self.chart("channel.migration", A.migration_chart(mig, self.lang))
            cost = self._a("channel_cost")
            by_channel = cost.groupby(["channel", "label"], as_index=False, sort=False).agg(
                txn_count=("txn_count", "sum"), cost=("cost", "sum")
            )
            total = float(by_channel["cost"].sum()) or 1.0
            by_channel["cost_share"] = by_channel["cost"] / total
            by_channel["cost_per_txn"] = by_channel["cost"] / by_channel["txn_count"].where(
                by_channel["txn_count"] > 0
            )
            by_channel.attrs = dict(cost.attrs)
            self.table(
                "channel.cost",
                by_channel,
                [
                    ("label", "text"),
                    ("txn_count", "count"),
                    ("cost_per_txn", "yuan"),
                    ("cost", "money"),
                    ("cost_share", "percent"),
                ],
                keys=("channel",),
            )
            self.chart("channel.cost", A.cost_chart(cost, self.lang))
            dev = self._a("underused_devices")
            self.table(
                "channel.underused",
                dev,
                [
                    ("device", "text"),
                    ("org_label", "text"),
                    ("avg_monthly_txns", "number"),
                    ("peer_median", "number"),
                    ("floor", "number"),
                    ("reason_label", "text"),
                ],
                max_rows=self.top_n,
            )

    # --------------------------------------------------------------------------------------- performance
    def performance(self) -> None:
        """Performance. County edition: the branch league table, branch figures and the customer
        managers' league within the county. Provincial edition: the county league and the best branches
        against their county peers."""
        if self.org:
            self._performance_county()
        else:
            self._performance_province()

    def _league_cols(self, value_kind: str) -> list[tuple[str, str]]:
        return [
            ("rank", "count"),
            ("label", "text"),
            ("value", value_kind),
            ("count", "number"),
            ("percentile", "percent"),
            ("zscore", "number"),
            ("rank_change", "count"),
        ]

    def _performance_county(self) -> None:
        from cimlib import analysis as A

        with self.section("performance"):
            self._head("performance")
            lt = self._a("league_table", member="branch", measure="contribution")
            self.table(
                "performance.branch_league",
                lt,
                self._league_cols("money"),
                headers={"value": self.label("contribution"), "count": self.t("col.managed")},
                note=self.t("pack.league_note"),
                keys=("member",),
            )
            self.chart("performance.branch_league", A.league_table_chart(lt, self.lang, top=self.top_n))
            bp = self._a("branch_performance")
            self.table(
                "performance.branches",
                bp,
                [
                    ("label", "text"),
                    ("customers", "count"),
                    ("managed_share", "percent"),
                    ("deposit_adb", "money"),
                    ("loan_balance", "money"),
                    ("npl_ratio", "percent"),
                    ("contribution", "money"),
                    ("quality_share", "percent"),
                    ("counter_txn_count", "count"),
                    ("other_bank_share", "percent"),
                ],
                keys=("org_code",),
            )
            ml = self._a("league_table", member="manager", measure="deposit_adb")
            self.table(
                "performance.manager_league",
                ml,
                [
                    ("rank", "count"),
                    ("label", "text"),
                    ("org_label", "text"),
                    ("value", "money"),
                    ("count", "number"),
                    ("percentile", "percent"),
                    ("rank_change", "count"),
                ],
                headers={"value": self.label("deposit_adb"), "count": self.t("col.managed")},
                max_rows=self.top_n,
                keys=("member",),
            )
            self.chart("performance.manager_league", A.league_table_chart(ml, self.lang, top=self.top_n))

    def _performance_province(self) -> None:
        from cimlib import analysis as A

        with self.section("performance"):
            self._head("performance")
            gv = self._a("group_value", groups=self.org_groups)
            gr = self._a("group_risk", groups=self.org_groups)
            league = gv[
                [
                    "group",
                    "label",
                    "customers",
                    "aum_adb",
                    "deposit_adb",
                    "contribution",
                    "contribution_per_customer",
                ]
            ].copy()
            risk = gr.set_index("group")
            league["loan_balance"] = [risk["loan_balance"].get(g) for g in league["group"]]
            league["npl_ratio"] = [risk["npl_ratio"].get(g) for g in league["group"]]
            league["rank_deposit_adb"] = league["deposit_adb"].rank(ascending=False, method="min")
            league["rank_contribution"] = league["contribution_per_customer"].rank(
                ascending=False, method="min"
            )
            league["rank_npl_ratio"] = league["npl_ratio"].rank(ascending=True, method="min")
            league = league.sort_values(["rank_contribution", "group"], na_position="last")
            league.attrs = dict(gv.attrs)
            self.table(
                "performance.county_league",
                league,
                [
                    ("rank_contribution", "count"),
                    ("label", "text"),
                    ("customers", "count"),
                    ("deposit_adb", "money"),
                    ("rank_deposit_adb", "count"),
                    ("loan_balance", "money"),
                    ("npl_ratio", "percent"),
                    ("rank_npl_ratio", "count"),
                    ("contribution", "money"),
                    ("contribution_per_customer", "yuan"),
                ],
                note=self.t("pack.county_league_note"),
                keys=("group",),
            )
            self.chart(
                "performance.county_league", A.group_value_chart(gv, self.lang, measure="contribution")
            )
            lt = self._a("league_table", member="branch", measure="contribution")
            best = lt[lt["ranked"].fillna(False).astype(bool)] if "ranked" in lt else lt
            best = best.sort_values(["percentile", "zscore", "member"], ascending=[False, False, True])
            best.attrs = dict(lt.attrs)
            self.table(
                "performance.best_branches",
                best,
                [
                    ("label", "text"),
                    ("peer_label", "text"),
                    ("value", "money"),
                    ("rank", "count"),
                    ("peer_size", "count"),
                    ("percentile", "percent"),
                    ("zscore", "number"),
                ],
                headers={"value": self.label("contribution")},
                max_rows=self.top_n,
                note=self.t("pack.best_branches_note"),
                keys=("member",),
            )


def _focus_kind(rec: dict[str, Any]) -> str:
    """Key-focus rows: customers are counts, everything else money."""
    return "count" if rec.get("measure") == "customers" or rec.get("kind") == "customer_count" else "money"


# ----------------------------------------------------------------------------------------- churn reasons
@cache
def reason_patterns(lang: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Regular expressions recognising each churn feature's reason text in ``lang``, most specific first.

    Built from :data:`cimlib.churn.REASON_TEMPLATES` (format strings, or phrase functions that are called
    with a placeholder), so a new or reworded template is recognised without a change here.
    """
    from cimlib.churn import REASON_TEMPLATES

    mark = "\x00"
    out: list[tuple[int, str, re.Pattern[str]]] = []

    class _Any(dict):  # every field a template may use
        def __missing__(self, key: str) -> str:
            return mark

    for feature, tpl in REASON_TEMPLATES.items():
        texts: set[str] = set()
        if isinstance(tpl, dict):
            parts = re.split(r"\{[^}]*\}", tpl[lang])
            texts.add(mark.join(parts))
        else:
            for v in (1.0, -1.0, 0.0):
                try:
                    texts.add(tpl(_Any(value=v), lang))
                except Exception:  # a template that needs more than a placeholder: skip that form
                    continue
        for text in texts:
            literal = len(text.replace(mark, ""))
            rx = re.compile(".+?".join(re.escape(p) for p in text.split(mark)), re.S)
            out.append((literal, feature, rx))
    out.sort(key=lambda x: -x[0])
    return tuple((f, rx) for _, f, rx in out)


def classify_reason(text: str, lang: str) -> str:
    """The churn feature a reason text was written from, ``no_single`` or ``other``."""
    from cimlib.churn._score import NO_SINGLE_REASON

    s = text.strip()
    if s == NO_SINGLE_REASON.get(lang, ""):
        return "no_single"
    for feature, rx in reason_patterns(lang):
        if rx.fullmatch(s):
            return feature
    return "other"


def top_reasons(watchlist: pd.DataFrame, lang: str) -> pd.DataFrame:
    """How many watchlist customers have each kind of reason, most frequent first.

    Parameters
    ----------
    watchlist : DataFrame
        :func:`cimlib.churn.watchlist` (its ``reasons`` column: texts joined by ``；`` or ``;``).
    lang : str
        The language the reasons were written in.

    Returns
    -------
    DataFrame
        ``reason`` (a churn feature, ``no_single`` or ``other``), ``customers``, ``share`` of the list.
    """
    n = len(watchlist)
    counts: dict[str, int] = {}
    for text in watchlist.get("reasons", pd.Series(dtype=object)):
        if is_missing(text):
            continue
        kinds = {classify_reason(p, lang) for p in re.split(r"[;；]", str(text)) if p.strip()}
        for k in kinds:
            counts[k] = counts.get(k, 0) + 1
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = pd.DataFrame(rows, columns=["reason", "customers"])
    out["share"] = out["customers"] / n if n else float("nan")
    return out


# ------------------------------------------------------------------------------------------------ charts
def rule_hits_chart(rules: pd.DataFrame, lang: str, title: str, x_title: str) -> Any:
    """Horizontal bars of the customers each target rule hits, coloured by rule set.

    Parameters
    ----------
    rules : DataFrame
        ``ruleset_label, rule_label, hits`` (one row per rule).
    lang : str
        ``en`` or ``zh_CN`` (the font list covers Chinese).
    title, x_title : str
        The chart's and the x axis' titles.

    Returns
    -------
    altair.Chart
        y = rule (in the frame's order), x = hits, colour = rule set.
    """
    import altair as alt

    from cimlib.charts import CJK_FONT

    data = pd.DataFrame(
        {
            "ruleset": rules["ruleset_label"].astype(str).to_numpy(),
            "rule": rules["rule_label"].astype(str).to_numpy(),
            "hits": pd.to_numeric(rules["hits"], errors="coerce").fillna(0).astype(int).to_numpy(),
        }
    )
    order = list(dict.fromkeys(data["rule"]))
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("rule:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("hits:Q", title=x_title, axis=alt.Axis(format=",d", tickMinStep=1)),
            color=alt.Color("ruleset:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("ruleset:N"), alt.Tooltip("rule:N"), alt.Tooltip("hits:Q", format=",d")],
        )
        .properties(title=title, width=380, height=alt.Step(14))
    )
    return (
        chart.configure(font=CJK_FONT)
        .configure_title(anchor="start", fontSize=14)
        .configure_view(stroke=None)
    )


__all__ = ["SECTIONS", "MonthlyPack", "classify_reason", "reason_patterns", "rule_hits_chart", "top_reasons"]
