"""The ``cim`` command line.

Every command takes ``--home DIR`` (or ``$CIM_HOME``) and ``--json``, and returns a non-zero exit code
on failure: 1 unexpected error, 2 bad usage, 3 bad input data (a file-level extract problem),
4 a warehouse contract failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cimlib.config import Home, get_home

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_CONTRACT = 4

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
log = logging.getLogger("cimlib.cli")


class CliError(Exception):
    """An error the user can fix; carries its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def _emit(args: argparse.Namespace, payload: Any, human: Callable[[Console], None]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        human(_console())


def _print_marts(c: Console, snapshot: dict[str, Any]) -> None:
    """Print the row counts of a snapshot's marts and dimensions."""
    rows = {k: n for k, n in (snapshot.get("row_counts") or {}).items() if k.startswith(("mart_", "dim_"))}
    if rows:
        t = Table(title="Published marts")
        t.add_column("model")
        t.add_column("rows", justify="right")
        for name, n in rows.items():
            t.add_row(name, f"{n:,}")
        c.print(t)


def _cmd_synth(args: argparse.Namespace, home: Home) -> int:
    from cimlib.synth import generate

    out = Path(args.out) if args.out else home.raw
    end = dt.date.fromisoformat(args.end_date) if args.end_date else None
    summary = generate(
        out, customers=args.customers, months=args.months, seed=args.seed, end_date=end,
        clean=args.clean, progress=not args.json,
    )

    def human(c: Console) -> None:
        c.print(f"[bold]Synthetic bank[/] written to {out}")
        for k, v in summary.items():
            if not isinstance(v, dict | list):
                c.print(f"  {k}: {v}")

    _emit(args, summary, human)
    return EXIT_OK


def _cmd_ingest(args: argparse.Namespace, home: Home) -> int:
    src = Path(args.dir)
    if not src.is_dir():
        raise CliError(f"{src}: no such folder", EXIT_USAGE)
    from cimlib.ingest import IngestError, ingest_all, ingest_date

    mapping = Path(args.mapping) if args.mapping else None
    try:
        if _DATE_DIR.match(src.name):
            reports = [ingest_date(src, home, mapping=mapping, progress=not args.json)]
        else:
            reports = ingest_all(src, home, mapping=mapping, progress=not args.json)
    except IngestError as exc:
        raise CliError(str(exc), EXIT_DATA) from exc
    if not reports:
        raise CliError(f"{src}: no as-of date folders (YYYY-MM-DD) found", EXIT_USAGE)

    def human(c: Console) -> None:
        t = Table(title="Load report")
        for col in ("as of", "table", "read", "loaded", "quarantined", "reasons"):
            t.add_column(col, justify="right" if col in ("read", "loaded", "quarantined") else "left")
        for r in reports:
            for name, tr in r["tables"].items():
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(tr.get("reasons", {}).items()))
                t.add_row(r["as_of_date"], name, f"{tr['rows_read']:,}", f"{tr['rows_loaded']:,}",
                          f"{tr['rows_quarantined']:,}", reasons)
        c.print(t)

    _emit(args, reports, human)
    return EXIT_OK


def _cmd_build(args: argparse.Namespace, home: Home) -> int:
    from cimlib.engine import BuildError, build

    try:
        summary = build(home, progress=not args.json, incremental=True if args.incremental else None)
    except BuildError as exc:
        raise CliError(str(exc), EXIT_CONTRACT) from exc

    def human(c: Console) -> None:
        c.print(f"[bold]Published snapshot[/] {summary.get('snapshot_id')}")
        for k, v in summary.items():
            if k != "snapshot_id" and not isinstance(v, dict | list):
                c.print(f"  {k}: {v}")
        _print_marts(c, summary)

    _emit(args, summary, human)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace, home: Home) -> int:
    from cimlib.engine import status
    from cimlib.ingest import load_reports

    st = status(home)
    reports = load_reports(home)
    payload = {
        "home": str(home.root),
        **st,
        "loaded_dates": [r["as_of_date"] for r in reports],
        "last_loads": reports[-3:],
        "quarantine": {
            r["as_of_date"]: {
                name: tr["rows_quarantined"] for name, tr in r["tables"].items() if tr["rows_quarantined"]
            }
            for r in reports
        },
    }

    def human(c: Console) -> None:
        c.print(f"[bold]CIM home[/] {home.root}")
        cur = st.get("current") or {}
        if cur:
            c.print(f"Published snapshot: {cur.get('snapshot_id')} (built {cur.get('built_at')})")
        else:
            c.print("Published snapshot: none yet (run `cim build`)")
        dates = payload["loaded_dates"]
        c.print(f"Loaded as-of dates: {len(dates)}" + (f" ({dates[0]} .. {dates[-1]})" if dates else ""))
        if reports:
            t = Table(title="Quarantined rows by date")
            t.add_column("as of")
            t.add_column("read", justify="right")
            t.add_column("quarantined", justify="right")
            t.add_column("by table")
            for r in reports:
                read = sum(tr["rows_read"] for tr in r["tables"].values())
                q = sum(tr["rows_quarantined"] for tr in r["tables"].values())
                by = ", ".join(f"{k} {v}" for k, v in payload["quarantine"][r["as_of_date"]].items())
                t.add_row(r["as_of_date"], f"{read:,}", f"{q:,}", by)
            c.print(t)
        _print_marts(c, cur)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_lab(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import PolicyError, UnknownUser
    from cimlib.serve import lab_command, run_lab

    try:
        cmd = lab_command(args.user, home=home, port=args.port, open_browser=not args.no_browser)
    except UnknownUser as exc:
        raise CliError(f"{args.user}: not a user of access.yaml", EXIT_USAGE) from exc
    except PolicyError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    except FileNotFoundError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    payload = {"argv": cmd.argv, "env": cmd.env, "root_dir": str(cmd.root_dir)}
    if args.dry_run:
        _emit(args, payload, lambda c: c.print(
            f"{' '.join(f'{k}={v}' for k, v in cmd.env.items())} {' '.join(cmd.argv)}"))
        return EXIT_OK
    if not (home.warehouse / "CURRENT").exists():
        log.warning("no published warehouse under %s yet: run `cim build` (or `make demo`) first", home.root)
    print(f"JupyterLab on {cmd.root_dir} as {args.user} (CIM_HOME={home.root}); Ctrl-C stops it",
          file=sys.stderr)  # fmt: skip
    return run_lab(cmd)


def _cmd_serve(args: argparse.Namespace, home: Home) -> int:
    from cimlib.serve import ServeOptions, password_file, serve, set_password

    pwfile = Path(args.password_file) if args.password_file else password_file(home)
    if args.set_password:
        import getpass

        from cimlib.access import UnknownUser, principal_for

        try:
            principal_for(args.set_password, home=home)
        except UnknownUser as exc:
            raise CliError(f"{args.set_password}: not a user of access.yaml", EXIT_USAGE) from exc
        if sys.stdin.isatty():
            pw = getpass.getpass(f"New password for {args.set_password}: ")
        else:
            pw = sys.stdin.readline().rstrip("\n")
        if not pw:
            raise CliError("empty password", EXIT_USAGE)
        set_password(pwfile, args.set_password, pw)
        _emit(args, {"user": args.set_password, "password_file": str(pwfile)},
              lambda c: c.print(f"Password set for {args.set_password} in {pwfile}"))
        return EXIT_OK
    if args.auth == "header" and not args.trusted_proxy:
        raise CliError("--auth header needs at least one --trusted-proxy address", EXIT_USAGE)
    host, port, base_url = args.host, args.port, args.base_url
    if args.auth == "jupyterhub":
        import os
        from urllib.parse import urlparse

        if not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise CliError("--auth jupyterhub runs as a JupyterHub service (no JUPYTERHUB_* variables)",
                           EXIT_USAGE)
        # A Hub-managed service is told where to listen and under which prefix it is proxied.
        hub_url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
        host = host or hub_url.hostname or "127.0.0.1"
        port = port or hub_url.port or 8866
        base_url = base_url or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    if args.auth == "password" and not pwfile.exists():
        raise CliError(f"no password file {pwfile}; set one with `cim serve --set-password USER`", EXIT_USAGE)
    opts = ServeOptions(
        home=home, port=port or 8866, host=host or "127.0.0.1", open_browser=not args.no_browser,
        preheat=not args.no_preheat, pool_size=args.pool_size, auth_mode=args.auth, password_file=pwfile,
        trusted_proxies=list(args.trusted_proxy or []), user_header=args.user_header,
        base_url=base_url or "/",
    )
    if not args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    return serve(opts)


def _principal(args: argparse.Namespace, home: Home) -> Any:
    """The principal named by ``--as``, or a CliError (exit 1) for an unknown user or a bad policy."""
    from cimlib.access import PolicyError, Principal, UnknownUser, audit_log, principal_for

    try:
        return principal_for(args.as_user, home)
    except UnknownUser as exc:  # audited too: someone tried a name that is not a user
        nobody = Principal(user_id=str(args.as_user)[:64], display_name="", role="<unknown user>")
        # the audited action: read_audit, or <command>_<sub-command> (customer_show, target_run, ...)
        sub = getattr(args, f"{args.command}_command", None)
        action = "read_audit" if args.command == "audit" else f"{args.command}_{sub}" if sub else args.command
        audit_log(home, nobody, action, getattr(args, "customer_id", ""), None, outcome="unknown_user")
        raise CliError(str(exc), EXIT_ERROR) from exc
    except PolicyError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc


def _frame_table(c: Console, title: str, frame: Any, max_rows: int = 30) -> None:
    """Print a small pandas frame as a rich table (nothing when it is empty)."""
    if frame is None or len(frame) == 0:
        return
    t = Table(title=f"{title} ({len(frame)})" if len(frame) > max_rows else title)
    for col in frame.columns:
        t.add_column(str(col), overflow="fold")
    for row in frame.head(max_rows).itertuples(index=False):
        t.add_row(*["" if v is None or v != v else str(v) for v in row])
    c.print(t)


def _cmd_customer_show(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError
    from cimlib.customer import AsOfError, customer_360

    who = _principal(args, home)
    try:
        view = customer_360(who, args.customer_id, as_of=args.as_of, home=home, action="export_360")
    except AsOfError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    payload = view.to_dict()

    def human(c: Console) -> None:
        ov = payload["overview"]
        kind = "corporate" if view.is_corporate else "individual"
        c.print(f"[bold]{ov.get('cust_name')}[/] {view.customer_id} ({kind}) as of {view.as_of}"
                f" - snapshot {view.snapshot_id}")  # fmt: skip
        c.print(f"Viewed by {who.display_name} [{who.role}, {who.scope_label}]; masked: "
                f"{', '.join(view.masked_fields) or 'nothing'}")  # fmt: skip
        t = Table(title="Overview", show_header=False)
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k, v in ov.items():
            if v not in (None, [], ""):
                t.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
        c.print(t)
        for name, frame in view.frames().items():
            if name in ("contribution_by_product", "contribution_trend"):
                continue
            if name != "channel_mix" or frame["txn_count_window"].sum() > 0:
                _frame_table(c, name.replace("_", " ").capitalize(), frame)
        val = payload.get("value") or {}
        if val.get("available"):
            vt = Table(title=f"Value {str(val.get('as_of', ''))[:7]} (yuan for the month)", show_header=False)
            vt.add_column("field")
            vt.add_column("value", overflow="fold")
            from cimlib.customer._value import COMPONENTS

            for k in COMPONENTS:
                vt.add_row(k, f"{val.get(k, 0):,.2f}")
            for k in ("aum_tier", "contribution_tier"):
                if val.get(k):
                    vt.add_row(k, f"{val[k]['id']} {val[k]['en']}")
            rule = val.get("quality_rule")
            vt.add_row("quality", rule["en"] if rule else "no")
            pot = val.get("potential")
            vt.add_row("potential", "not assessed" if pot is None else "yes" if pot["is_potential"] else "no")
            rfm = val.get("rfm")
            vt.add_row("rfm", f"{rfm['en']} ({rfm['rfm']})" if rfm else "not assessed")
            churn = val.get("churn")
            if churn:
                risk = f"decile {churn['risk_decile']}/10, score {churn['churn_score']:.1%}"
                vt.add_row("churn risk", risk)
                vt.add_row("reasons", "; ".join(churn["reasons_en"]) or "-")
            c.print(vt)
            _frame_table(c, "Contribution by product", view.contribution_by_product)
            _frame_table(c, "Contribution trend", view.contribution_trend)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_customer_search(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError
    from cimlib.customer import SearchError, search

    who = _principal(args, home)
    try:
        found = search(who, args.query, home=home, limit=args.limit)
    except SearchError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    from cimlib.customer._data import json_safe

    payload = {"total": found.attrs.get("total", len(found)), "results": json_safe(found)}

    def human(c: Console) -> None:
        _frame_table(c, f"Customers matching {args.query!r}: {payload['total']} in scope", found, args.limit)
        if not len(found):
            c.print(f"No customer in scope matches {args.query!r}")

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError, read_audit, verify_audit

    who = _principal(args, home)
    try:
        log_frame = read_audit(home, who, user=args.user, since=args.since, limit=args.limit)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    from cimlib.customer._data import json_safe

    check = verify_audit(home) if args.verify else None
    payload = {"records": json_safe(log_frame.drop(columns=["prev", "hash"]))}
    if check is not None:
        payload["verify"] = check

    def human(c: Console) -> None:
        shown = log_frame[["ts", "user_id", "role", "action", "target", "outcome", "snapshot_id"]].copy()
        shown["ts"] = shown["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
        _frame_table(c, "Audit log (UTC)", shown, args.limit)
        if not len(log_frame):
            c.print("No audit records match")
        if check is not None:
            c.print(("[green]hash chain intact[/]" if check["ok"] else f"[red]{check['problem']}[/]")
                    + f" ({check['records']} records in {check['files']} files)")  # fmt: skip

    _emit(args, payload, human)
    if check is not None and not check["ok"]:
        return EXIT_DATA
    return EXIT_OK


def _ruleset(args: argparse.Namespace, home: Home) -> Any:
    """The rule set of ``args.ruleset``, or of ``--condition`` with ``--type`` (exit 2 when it is wrong)."""
    from cimlib.targeting import RuleError, RuleSetError, load_ruleset
    from cimlib.targeting._rules import adhoc_ruleset

    try:
        if getattr(args, "condition", None):
            if args.ruleset:
                raise CliError("give a RULESET or --condition, not both", EXIT_USAGE)
            return adhoc_ruleset(args.condition, args.type)
        if not args.ruleset:
            raise CliError("give a RULESET (see `cim target list`) or --condition", EXIT_USAGE)
        return load_ruleset(args.ruleset, home)
    except (RuleError, RuleSetError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _cmd_target_list(args: argparse.Namespace, home: Home) -> int:
    from cimlib.targeting import RuleError, RuleSetError, list_rulesets, load_ruleset

    payload: dict[str, Any] = {}
    problems = []
    for name in list_rulesets(home):
        try:
            rs = load_ruleset(name, home)
        except (RuleError, RuleSetError) as exc:
            problems.append(str(exc))
            continue
        payload[name] = {
            "title": rs.title,
            "rules": [
                {"id": r.id, "customer_type": r.customer_type, "family": r.family, "severity": r.severity,
                 "name": r.name, "condition": r.condition}
                for r in rs.rules
            ],
        }  # fmt: skip

    def human(c: Console) -> None:
        for name, rs in payload.items():
            t = Table(title=f"{name}: {rs['title']['en']} ({rs['title']['zh']})")
            for col in ("id", "type", "severity", "name", "condition"):
                t.add_column(col, overflow="fold")
            for r in rs["rules"]:
                name = f"{r['name']['en']} / {r['name']['zh']}"
                t.add_row(r["id"], r["customer_type"], r["severity"], name, r["condition"])
            c.print(t)
        for p in problems:
            c.print(f"[red]{p}[/]")

    _emit(args, {"rulesets": payload, "problems": problems}, human)
    return EXIT_USAGE if problems else EXIT_OK


def _cmd_target_check(args: argparse.Namespace, home: Home) -> int:
    from cimlib.targeting import RuleError, RuleSetError, list_rulesets, load_ruleset

    names = args.rulesets or list_rulesets(home)
    results = []
    for name in names:
        try:
            rs = load_ruleset(name, home)
            results.append({"ruleset": name, "ok": True, "rules": len(rs.rules)})
        except (RuleError, RuleSetError) as exc:
            results.append({"ruleset": name, "ok": False, "error": str(exc)})

    def human(c: Console) -> None:
        for r in results:
            if r["ok"]:
                c.print(f"{r['ruleset']}: {r['rules']} rules compile")
            else:
                c.print(f"[red]{r['error']}[/]")

    _emit(args, results, human)
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_USAGE


def _cmd_target_compile(args: argparse.Namespace, home: Home) -> int:
    from cimlib.targeting import RuleError, compile_condition

    try:
        c = compile_condition(args.expression, args.type)
    except RuleError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    payload = {"expression": c.expression, "customer_type": c.customer_type, "sql": c.sql, "params": c.params,
               "indicators": c.base, "history": sorted(c.calls),
               "collections": [x.collection for x in c.collections]}  # fmt: skip

    def human(con: Console) -> None:
        con.print(f"[bold]SQL[/] {c.sql}")
        con.print(f"[bold]parameters[/] {c.params}")

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_target_indicators(args: argparse.Namespace, home: Home) -> int:
    from cimlib.targeting._catalogue import COLLECTIONS, FUNCTIONS, INDICATORS

    types = [args.type] if args.type else ["I", "C"]
    inds = [
        {"name": x.name, "type": x.type, "applies": x.applies, "en": x.en, "zh": x.zh}
        for x in INDICATORS.values()
        if any(t in x.applies for t in types)
    ]
    colls = [
        {"name": c.name, "fields": c.fields, "applies": c.applies, "en": c.en, "zh": c.zh}
        for c in COLLECTIONS.values()
        if any(t in c.applies for t in types)
    ]
    funcs = [{"name": f.name, "args": list(f.args), "en": f.en} for f in FUNCTIONS.values()]

    def human(c: Console) -> None:
        t = Table(title="Indicators")
        for col in ("name", "type", "for", "label"):
            t.add_column(col)
        for x in inds:
            t.add_row(x["name"], x["type"], x["applies"], f"{x['en']} / {x['zh']}")
        c.print(t)
        t = Table(title="Collections (any / all / count)")
        t.add_column("name")
        t.add_column("fields", overflow="fold")
        for x in colls:
            t.add_row(x["name"], ", ".join(f"{k} ({v})" for k, v in x["fields"].items()))
        c.print(t)
        t = Table(title="Functions")
        t.add_column("name")
        t.add_column("arguments")
        t.add_column("what")
        for x in funcs:
            t.add_row(x["name"], ", ".join(x["args"]), x["en"])
        c.print(t)

    _emit(args, {"indicators": inds, "collections": colls, "functions": funcs}, human)
    return EXIT_OK


def _cmd_target_run(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError
    from cimlib.customer import AsOfError
    from cimlib.customer._data import json_safe
    from cimlib.targeting import counts, run
    from cimlib.targeting._export import ExportError, write_list

    who = _principal(args, home)
    rs = _ruleset(args, home)
    try:
        if args.counts:
            frame = counts(rs, who, args.as_of, rules=args.rule, home=home)
        else:
            app_url = args.app_url or os.environ.get("CIM_APP_URL")
            frame = run(rs, who, args.as_of, rules=args.rule, lang=args.lang, home=home, app_url=app_url)
    except AsOfError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except KeyError as exc:
        raise CliError(str(exc.args[0]), EXIT_USAGE) from exc
    except AccessError as exc:
        hint = "" if args.counts else "; aggregate-only roles can use --counts"
        raise CliError(f"{exc}{hint}", EXIT_ERROR) from exc
    written: list[str] = []
    if args.out:
        try:
            written = [str(p) for p in write_list(frame, args.out, split=args.split, lang=args.lang)]
        except ExportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
    elif args.split:
        raise CliError("--split needs --out FILE.xlsx or FILE.csv", EXIT_USAGE)
    attrs = dict(frame.attrs)
    payload = {**{k: attrs.get(k) for k in ("ruleset", "as_of", "snapshot_id", "rules", "hits")},
               "n": len(frame), "files": written, "rows": json_safe(frame)}  # fmt: skip

    def human(c: Console) -> None:
        what = "branches with hits" if args.counts else "customers"
        c.print(f"[bold]{attrs.get('ruleset')}[/] as of {attrs.get('as_of')} for {who.display_name} "
                f"[{who.role}, {who.scope_label}]: {len(frame):,} {what}")  # fmt: skip
        if attrs.get("hits"):
            c.print("hits per rule: " + ", ".join(f"{k} {v:,}" for k, v in attrs["hits"].items()))
        cols = list(frame.columns) if args.counts else [
            "customer_id", "cust_name", "home_org_name", "manager_name", "severity", "reasons"]
        _frame_table(c, "Counts per branch" if args.counts else "Customers", frame[cols], args.limit)
        for f in written:
            c.print(f"wrote {f}")

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_target_backtest(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError
    from cimlib.customer import AsOfError
    from cimlib.customer._data import json_safe
    from cimlib.targeting import backtest, backtest_chart

    who = _principal(args, home)
    rs = _ruleset(args, home)
    try:
        frame = backtest(rs, who, args.start, args.end, rules=args.rule, horizon=args.horizon, home=home)
    except AsOfError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except KeyError as exc:
        raise CliError(str(exc.args[0]), EXIT_USAGE) from exc
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    if args.chart:
        backtest_chart(frame, lang=args.lang).save(args.chart)

    outcomes = frame.attrs.get("outcomes", {})

    def pct(v: Any) -> str:
        return "" if v is None or v != v else f"{100 * float(v):.1f}%"

    def human(c: Console) -> None:
        c.print(f"[bold]Backtest of {rs.name}[/] {args.start} .. {args.end}, outcomes over the next "
                f"{args.horizon} months, for {who.display_name} [{who.scope_label}]")  # fmt: skip
        c.print("Each outcome: the hits' rate / the base rate (all customers of the type in scope) and the "
                "lift; a month without the full horizon after it shows none.")  # fmt: skip
        for rid, part in frame.groupby("rule_id", sort=False):
            t = Table(title=f"{rid} ({part['customer_type'].iloc[0]}, {part['family'].iloc[0]})")
            for col in ("month", "hits", "base", *outcomes.get(rid, ["churn"])):
                t.add_column(col, justify="left" if col == "month" else "right")
            for r in part.itertuples(index=False):
                cells = [str(r.as_of), f"{int(r.n_hits):,}", f"{int(r.n_base):,}"]
                for o in outcomes.get(rid, ["churn"]):
                    rate, base, lift = (getattr(r, f"{o}_{k}") for k in ("rate", "base_rate", "lift"))
                    lift_s = "" if lift is None or lift != lift else f" x{float(lift):.2f}"
                    cells.append(f"{pct(rate)} / {pct(base)}{lift_s}" if rate == rate else "")
                t.add_row(*cells)
            c.print(t)
        if args.chart:
            c.print(f"wrote {args.chart}")

    _emit(args, {"ruleset": rs.name, "rows": json_safe(frame), "chart": args.chart}, human)
    return EXIT_OK


def _segment_pairs(items: Sequence[str] | None, what: str) -> dict[str, list[str]]:
    """``dim=m1,m2`` arguments as ``{dim: [m1, m2]}``."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        dim, sep, members = item.partition("=")
        if not sep or not dim.strip() or not members.strip():
            raise CliError(f"{what}: expected DIM=MEMBER[,MEMBER...], got {item!r}", EXIT_USAGE)
        out.setdefault(dim.strip(), []).extend(m.strip() for m in members.split(",") if m.strip())
    return out


def _segment_call(fn: Callable[[], Any]) -> Any:
    """Run a segmentation call, turning its errors into CLI errors with the right exit codes."""
    from cimlib.access import AccessError
    from cimlib.customer import AsOfError
    from cimlib.segmentation import CubeError, DimensionError

    try:
        return fn()
    except (AsOfError, CubeError, DimensionError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc


def _cmd_segment_build(args: argparse.Namespace, home: Home) -> int:
    from cimlib.segmentation import build_cube

    dims = [d.strip() for d in args.dims.split(",") if d.strip()] if args.dims else None
    info = _segment_call(lambda: build_cube(home, args.as_of, dims, force=args.force))
    payload = {"path": str(info.path), "snapshot_id": info.snapshot_id, "dims_version": info.dims_version,
               "dimensions": list(info.dimensions), "as_of": info.as_of.isoformat(), "rows": info.rows,
               "built": info.built, "timings": info.timings}  # fmt: skip

    def human(c: Console) -> None:
        verb = "built" if info.built else "already built"
        c.print(f"cube {info.as_of:%Y-%m} over {', '.join(info.dimensions)}: {info.rows:,} cells, {verb}"
                f" ({info.timings.get('total_s', 0)} s)\n{info.path}")  # fmt: skip

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_segment_pivot(args: argparse.Namespace, home: Home) -> int:
    from cimlib.segmentation import pivot

    who = _principal(args, home)
    filters = _segment_pairs(args.filter, "--filter")
    frame = _segment_call(lambda: pivot(who, args.rows, args.cols, args.measure, args.as_of, filters,
                                        home, args.lang))  # fmt: skip
    attrs = frame.attrs
    cells = {str(r): {str(c): (None if v != v else v) for c, v in row.items()}
             for r, row in frame.to_dict(orient="index").items()}  # fmt: skip
    payload = {**{k: attrs.get(k) for k in ("measure", "rows", "cols", "filters", "as_of", "snapshot_id",
                                            "dims_version", "min_cell", "prev_month", "year_ago")},
               "cells": cells, **{k: attrs.get(k) for k in ("customers", "share", "suppressed", "mom", "yoy",
                                                             "row_labels", "col_labels")}}  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"[bold]{args.measure}[/] by {args.rows}{' x ' + args.cols if args.cols else ''} as of "
                f"{attrs['as_of']} for {who.display_name} [{who.role}, {who.scope_label}]")  # fmt: skip
        t = Table()
        t.add_column(args.rows)
        for col in frame.columns:
            t.add_column(str(attrs["col_labels"].get(col, col)), justify="right")
        sup = attrs["suppressed"]
        for rid, row in frame.iterrows():
            vals = ["<" + str(attrs["min_cell"]) if sup[str(rid)][str(k)] else ("" if v != v else f"{v:,.4g}"
                    if abs(v) < 10 else f"{v:,.0f}") for k, v in row.items()]  # fmt: skip
            t.add_row(str(attrs["row_labels"].get(rid, rid)), *vals)
        c.print(t)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_segment_drill(args: argparse.Namespace, home: Home) -> int:
    from cimlib.customer._data import json_safe
    from cimlib.segmentation import drill

    who = _principal(args, home)
    cell = {k: v[0] for k, v in _segment_pairs(args.cell, "--cell").items()}
    app_url = args.app_url or os.environ.get("CIM_APP_URL")
    frame = _segment_call(lambda: drill(who, cell, args.as_of, home, args.limit, args.lang, app_url))
    payload = {"cell": frame.attrs["cell"], "as_of": frame.attrs["as_of"], "total": frame.attrs["total"],
               "snapshot_id": frame.attrs["snapshot_id"], "rows": json_safe(frame)}  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"cell {cell or 'all'} as of {frame.attrs['as_of']} for {who.display_name} "
                f"[{who.role}, {who.scope_label}]: {frame.attrs['total']:,} customers")  # fmt: skip
        cols = ["customer_id", "cust_name", "home_org_name", "manager_name", "deposit_adb", "aum", "link"]
        _frame_table(c, "Customers", frame[cols], 30)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_params_check(args: argparse.Namespace, home: Home) -> int:
    from cimlib.config import check_parameters

    problems = check_parameters(home, data=not args.no_data)

    def human(c: Console) -> None:
        if not problems:
            c.print(f"{home.parameters}: every parameter file is valid")
        for p in problems:
            c.print(f"[red]{p.file} ({p.kind}): {p.message}[/]", soft_wrap=True)

    _emit(args, {"parameters": str(home.parameters), "problems": [p.as_dict() for p in problems]}, human)
    return EXIT_USAGE if problems else EXIT_OK


def _cmd_params_diff(args: argparse.Namespace, home: Home) -> int:
    from cimlib.config import ParamsError, diff_dimensions
    from cimlib.customer._data import AsOfError
    from cimlib.segmentation import DimensionError

    try:
        frame = diff_dimensions(home, Path(args.new), args.as_of)
    except (DimensionError, ParamsError, AsOfError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    payload = {
        "as_of": frame.attrs.get("as_of"),
        "old_version": frame.attrs.get("old_version"),
        "new_version": frame.attrs.get("new_version"),
        "unchanged": frame.attrs.get("unchanged", []),
        "moves": frame.to_dict(orient="records"),
    }

    def human(c: Console) -> None:
        if frame.empty:
            c.print(f"no dimension changes ({payload['old_version']} -> {payload['new_version']})")
        for dim, part in frame.groupby("dimension", sort=False):
            moved = part[part["moved"]]
            t = Table(title=f"{dim} ({part['change'].iloc[0]}), {payload['as_of']}: "
                      f"{int(moved['customers'].sum()):,} customers move")  # fmt: skip
            for col in ("from", "to", "customers", "deposit ADB"):
                t.add_column(col, justify="right" if col in ("customers", "deposit ADB") else "left")
            for r in part.itertuples():
                style = "bold" if r.moved else "dim"
                t.add_row(f"{r.from_member or '-'} {r.from_label}", f"{r.to_member or '-'} {r.to_label}",
                          f"{r.customers:,}", f"{r.deposit_adb:,.0f}", style=style)  # fmt: skip
            c.print(t)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_params_apply(args: argparse.Namespace, home: Home) -> int:
    from cimlib.config import ParamsError, apply_parameters

    try:
        result = apply_parameters(home, args.file, Path(args.new), user=args.as_user)
    except ParamsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc

    def human(c: Console) -> None:
        if not result.changed:
            c.print(f"parameters/{result.file} is unchanged; nothing to do")
            return
        c.print(f"parameters/{result.file} saved by {result.user} at {result.at} (logged in {result.log})")
        if not result.outputs:
            c.print("no stored output depends on it")
        for name, out in result.outputs.items():
            c.print(f"{name}: {out.get('status')}" + (f" ({out['error']})" if "error" in out else ""))

    _emit(args, result.as_dict(), human)
    return EXIT_ERROR if any(o.get("status") == "error" for o in result.outputs.values()) else EXIT_OK


# ---------------------------------------------------------------------------------------------- value
def _value_call(fn: Callable[[], Any]) -> Any:
    """Run a customer-value call, turning its errors into CLI errors with the right exit codes."""
    from cimlib.access import AccessError
    from cimlib.customer import AsOfError
    from cimlib.value import ValueParamsError

    try:
        return fn()
    except (AsOfError, ValueParamsError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc


def _value_rows(frame: Any) -> Any:
    from cimlib.customer._data import json_safe

    return json_safe(frame)


def _value_list_out(args: argparse.Namespace, frame: Any) -> list[str]:
    """Write a customer list to ``--out`` (.xlsx or .csv) when asked; the files written."""
    if not getattr(args, "out", None):
        return []
    from cimlib.targeting._export import write_list

    return [str(p) for p in write_list(frame, args.out, lang=getattr(args, "lang", "en"))]


def _value_list(args: argparse.Namespace, home: Home, frame: Any, title: str, cols: list[str]) -> int:
    who = _principal(args, home)
    files = _value_list_out(args, frame)
    payload = {"as_of": frame.attrs.get("as_of"), "total": frame.attrs.get("total"), "files": files,
               "snapshot_id": frame.attrs.get("snapshot_id"), "rows": _value_rows(frame)}  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"{title} as of {frame.attrs.get('as_of')} for {who.display_name} [{who.role}, "
                f"{who.scope_label}]: {frame.attrs.get('total', 0):,} customers")  # fmt: skip
        _frame_table(c, "Customers", frame[[k for k in cols if k in frame.columns]], 30)
        for f in files:
            c.print(f"written: {f}")

    _emit(args, payload, human)
    return EXIT_OK


def _value_table(args: argparse.Namespace, frame: Any, title: str) -> int:
    payload = {**{k: v for k, v in frame.attrs.items()}, "rows": _value_rows(frame)}

    def human(c: Console) -> None:
        c.print(f"{title} as of {frame.attrs.get('as_of')} [{frame.attrs.get('scope', '')}]")
        shown = frame.copy()
        for col in shown.columns:
            if shown[col].dtype.kind == "f":
                shown[col] = [("" if v != v else f"{v:,.4f}" if 0 < abs(v) < 1 else f"{v:,.0f}")
                              for v in shown[col]]  # fmt: skip
        _frame_table(c, title, shown, 50)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_value_contribution(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import customer_value

    who = _principal(args, home)
    frame = _value_call(lambda: customer_value(who, args.as_of, home=home))
    num = ["aum_adb", "contribution"]
    g = frame.groupby("customer_type")[num].sum() if len(frame) else None
    payload = {"as_of": frame.attrs["as_of"], "customers": len(frame),
               "totals": {k: float(frame[k].sum()) for k in num},
               "by_type": {t: {k: float(v) for k, v in r.items()} for t, r in (g.iterrows() if g is not None
                                                                              else [])}}  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"contribution as of {payload['as_of']} [{who.scope_label}]: {len(frame):,} customers, "
                f"{payload['totals']['contribution']:,.2f} yuan this month, AUM (ADB) "
                f"{payload['totals']['aum_adb']:,.0f} yuan")  # fmt: skip

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_value_tiers(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import tier_chart, tier_distribution

    who = _principal(args, home)
    frame = _value_call(lambda: tier_distribution(who, args.as_of, kind=args.kind, customer_type=args.type,
                                                  home=home, lang=args.lang))  # fmt: skip
    if args.chart:
        _value_chart(tier_chart(frame, args.lang), args.chart)
    return _value_table(args, frame, f"{args.kind} tiers")


def _value_chart(chart: Any, path: str) -> None:
    from cimlib.charts import to_png, to_svg

    p = Path(path)
    if p.suffix == ".png":
        p.write_bytes(to_png(chart))
    elif p.suffix == ".svg":
        p.write_text(to_svg(chart), encoding="utf-8")
    elif p.suffix == ".html":
        chart.save(str(p))
    else:
        raise CliError(f"--chart: expected a .png, .svg or .html file, got {path!r}", EXIT_USAGE)


def _cmd_value_migration(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import migration_chart, migration_customers, migration_matrix

    who = _principal(args, home)
    if args.cell:
        f, sep, t = args.cell.partition(":")
        if not sep:
            raise CliError(f"--cell: expected FROM_TIER:TO_TIER, got {args.cell!r}", EXIT_USAGE)
        app_url = args.app_url or os.environ.get("CIM_APP_URL")
        frame = _value_call(lambda: migration_customers(who, args.start, args.end, f, t, kind=args.kind,
                                                        home=home, limit=args.limit, app_url=app_url))
        cols = ["customer_id", "cust_name", "home_org_name", "manager_name", "from_tier", "to_tier",
                "from_aum_adb", "to_aum_adb", "link"]  # fmt: skip
        return _value_list(args, home, frame, f"migration {args.cell}", cols)
    m = _value_call(lambda: migration_matrix(who, args.start, args.end, kind=args.kind, home=home,
                                             lang=args.lang))  # fmt: skip
    if args.chart:
        _value_chart(migration_chart(m, args.lang), args.chart)
    a = m.attrs
    cells = {str(r): {str(c): (None if v != v else int(v)) for c, v in row.items()}
             for r, row in m.to_dict(orient="index").items()}  # fmt: skip
    payload = {**{k: a.get(k) for k in ("from_month", "to_month", "kind", "up", "down", "same", "min_cell",
                                        "snapshot_id", "row_labels", "col_labels", "suppressed")},
               "cells": cells}  # fmt: skip

    def human(c: Console) -> None:
        moved = f": up {a['up']:,}, down {a['down']:,}, same {a['same']:,}" if a["up"] is not None else ""
        c.print(f"{args.kind} tier migration {a['from_month']} -> {a['to_month']} [{who.scope_label}]{moved}")
        t = Table()
        t.add_column("from \\ to")
        for col in m.columns:
            t.add_column(str(a["col_labels"].get(col, col)), justify="right")
        for rid, row in m.iterrows():
            t.add_row(str(a["row_labels"].get(rid, rid)),
                      *[f"<{a['min_cell']}" if v != v else f"{int(v):,}" for v in row])  # fmt: skip
        c.print(t)

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_value_quality(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import quality_customers, quality_summary

    who = _principal(args, home)
    app_url = args.app_url or os.environ.get("CIM_APP_URL")
    if args.list or args.out:
        frame = _value_call(lambda: quality_customers(who, args.as_of, rule=args.rule, home=home,
                                                      limit=args.limit, app_url=app_url))  # fmt: skip
        cols = ["customer_id", "cust_name", "home_org_name", "manager_name", "quality_rule", "aum_tier",
                "contribution_tier", "aum_adb", "link"]  # fmt: skip
        return _value_list(args, home, frame, "quality customers", cols)
    frame = _value_call(lambda: quality_summary(who, args.as_of, home=home, lang=args.lang))
    return _value_table(args, frame, "quality customers by rule")


def _cmd_value_potential(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import potential_customers, potential_summary

    who = _principal(args, home)
    app_url = args.app_url or os.environ.get("CIM_APP_URL")
    if args.list or args.out:
        frame = _value_call(lambda: potential_customers(who, args.as_of, customer_type=args.type, home=home,
                                                        limit=args.limit, app_url=app_url))  # fmt: skip
        cols = ["customer_id", "cust_name", "home_org_name", "manager_name", "peer_group", "benchmark",
                "measure", "share_of_wallet", "link"]  # fmt: skip
        return _value_list(args, home, frame, "potential quality customers", cols)
    frame = _value_call(lambda: potential_summary(who, args.as_of, home=home, lang=args.lang))
    return _value_table(args, frame, "potential quality customers")


def _cmd_value_concentration(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import concentration, concentration_trend

    who = _principal(args, home)
    measures = args.measure or ["deposits", "aum", "loans", "contribution"]
    by = None if args.by == "bank" else args.by
    if args.trend:
        frame = _value_call(lambda: concentration_trend(who, args.trend, measures=measures, by=by, home=home,
                                                        lang=args.lang))  # fmt: skip
    else:
        frame = _value_call(lambda: concentration(who, args.as_of, measures=measures, by=by, home=home,
                                                  lang=args.lang))  # fmt: skip
    if args.chart:
        from cimlib.charts import to_png
        from cimlib.value._concentration import lorenz, pareto
        from cimlib.value._concentration_charts import concentration_trend_chart, lorenz_chart, pareto_chart

        if args.trend:
            chart = concentration_trend_chart(frame, lang=args.lang)
        elif args.chart_kind == "pareto":
            chart = pareto_chart(_value_call(lambda: pareto(who, args.as_of, measures=measures[:1], by=by,
                                                            home=home, lang=args.lang)), lang=args.lang)
        else:
            chart = lorenz_chart(_value_call(lambda: lorenz(who, args.as_of, measures=measures[:1], by=by,
                                                            home=home, lang=args.lang)), lang=args.lang)
        Path(args.chart).write_bytes(to_png(chart))
    payload = {"by": args.by, "measures": measures, "rows": _value_rows(frame), "chart": args.chart}

    def human(c: Console) -> None:
        def pct(v: Any) -> str:
            return "" if v is None or v != v else f"{100 * float(v):.1f}%"

        c.print(f"[bold]80/20[/] for {who.display_name} [{who.scope_label}]: the top 20% of customers' "
                "share, the share of customers making up 80%, and the Gini")  # fmt: skip
        t = Table()
        for col in ("month", "measure", "group", "customers", "total", "top 20%", "for 80%", "Gini", "note"):
            t.add_column(col, justify="left" if col in ("month", "measure", "group", "note") else "right")
        for r in frame.itertuples(index=False):
            group = str(r.label or "") if r.group in (None, "ALL") else f"{r.group} {r.label or ''}".strip()
            t.add_row(str(r.as_of)[:7], r.measure, group, f"{r.n:,}", f"{r.total:,.0f}",
                      pct(r.top_20pct_share), pct(r.share_for_80),
                      "" if r.gini != r.gini else f"{r.gini:.3f}", r.note or "")  # fmt: skip
        c.print(t)
        if args.chart:
            c.print(f"wrote {args.chart}")

    _emit(args, payload, human)
    return EXIT_OK


def _cmd_value_rfm(args: argparse.Namespace, home: Home) -> int:
    from cimlib.value import rfm_customers, rfm_summary

    who = _principal(args, home)
    app_url = args.app_url or os.environ.get("CIM_APP_URL")
    if args.list or args.out:
        frame = _value_call(lambda: rfm_customers(who, args.as_of, segment=args.segment, home=home,
                                                  limit=args.limit, app_url=app_url))  # fmt: skip
        cols = ["customer_id", "cust_name", "home_org_name", "manager_name", "segment", "rfm", "recency_days",
                "frequency", "monetary", "link"]  # fmt: skip
        return _value_list(args, home, frame, f"RFM {args.segment or 'all'}", cols)
    frame = _value_call(lambda: rfm_summary(who, args.as_of, customer_type=args.type, home=home,
                                            lang=args.lang))  # fmt: skip
    return _value_table(args, frame, "RFM segments")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser of ``cim``."""
    # The global options are accepted before or after the command. The sub-commands' copies default to
    # SUPPRESS, so `cim --json status` is not undone by the sub-parser's own default. (The two parsers
    # need separate argument objects: set_defaults would otherwise change both.)
    def global_options(parser: argparse.ArgumentParser, top: bool) -> argparse.ArgumentParser:
        d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
        parser.add_argument("--home", default=d(None), help="installation folder (default: $CIM_HOME)")
        parser.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
        parser.add_argument("-v", "--verbose", action="store_true", default=d(False), help="log to stderr")
        return parser

    common = global_options(argparse.ArgumentParser(add_help=False), top=False)
    p = global_options(argparse.ArgumentParser(prog="cim", description="CIM Workbench command line"), True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", parents=[common], help="generate a synthetic bank's extracts")
    s.add_argument("--customers", type=int, default=5000)
    s.add_argument("--months", type=int, default=12)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--end-date", help="last month-end as-of date, YYYY-MM-DD (default 2026-10-31)")
    s.add_argument("--out", help="output folder (default: HOME/data/raw)")
    s.add_argument("--clean", action="store_true", help="remove earlier date folders in --out first")
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("ingest", parents=[common], help="validate and load extracts (one date or all)")
    i.add_argument("dir", help="an as-of date folder (YYYY-MM-DD) or a folder of them")
    i.add_argument("--mapping", help="source mapping YAML (default: parameters/sources/default.yaml)")
    i.set_defaults(func=_cmd_ingest)

    b = sub.add_parser("build", parents=[common], help="build and publish a new warehouse snapshot")
    b.add_argument(
        "--incremental",
        action="store_true",
        help="replace only new or reloaded months in a copy of the published snapshot (faster; "
        "single-customer lookups slow down until the next full build)",
    )
    b.set_defaults(func=_cmd_build)

    st = sub.add_parser("status", parents=[common], help="published snapshot, loads and quarantine")
    st.set_defaults(func=_cmd_status)

    sv = sub.add_parser("serve", parents=[common], help="serve the Voila apps (sign-in, preheated kernels)")
    sv.add_argument("--port", type=int, help="port (default 8866)")
    sv.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--no-browser", action="store_true", help="do not open a browser")
    sv.add_argument("--no-preheat", action="store_true", help="start a kernel per visit (slow first paint)")
    sv.add_argument("--pool-size", type=int, default=2, help="preheated kernels kept ready (default 2)")
    sv.add_argument("--auth", choices=["password", "header", "jupyterhub"], default="password",
                    help="password: our sign-in form; header: trust the SSO proxy's user header; "
                    "jupyterhub: JupyterHub's OAuth (run as a Hub service)")
    sv.add_argument("--password-file", help="password hashes (default HOME/data/state/serve/passwords.json)")
    sv.add_argument("--trusted-proxy", action="append", metavar="ADDR",
                    help="SSO proxy address or CIDR whose user header is believed (header mode; repeatable)")
    sv.add_argument("--user-header", default="X-Remote-User", help="the SSO proxy's user header")
    sv.add_argument("--base-url", help="URL prefix behind a reverse proxy, e.g. /cim/ (default /)")
    sv.add_argument("--set-password", metavar="USER",
                    help="set USER's sign-in password (read from stdin) and exit")
    sv.set_defaults(func=_cmd_serve)

    lb = sub.add_parser("lab", parents=[common],
                        help="JupyterLab on notebooks/, the warehouse connected, a user's principal set")
    lb.add_argument("--as", dest="user", required=True, help="the analyst (a user of parameters/access.yaml)")
    lb.add_argument("--port", type=int, help="port (JupyterLab's default 8888)")
    lb.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lb.add_argument("--dry-run", action="store_true", help="print the command and environment, start nothing")
    lb.set_defaults(func=_cmd_lab)

    cu = sub.add_parser("customer", parents=[common], help="single-customer views (scoped, masked, audited)")
    cus = cu.add_subparsers(dest="customer_command", required=True, metavar="ACTION")
    cs = cus.add_parser("show", parents=[common], help="the 360 view of one customer (an audited export)")
    cs.add_argument("customer_id", help="customer id or any source system's customer number")
    cs.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    cs.add_argument("--as-of", help="month to view, YYYY-MM (default: the latest)")
    cs.set_defaults(func=_cmd_customer_show)
    cf = cus.add_parser("search", parents=[common], help="find customers in scope")
    cf.add_argument("query")
    cf.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    cf.add_argument("--limit", type=int, default=50)
    cf.set_defaults(func=_cmd_customer_search)

    tg = sub.add_parser("target", parents=[common], help="target-customer search: rule sets, lists, backtest")
    tgs = tg.add_subparsers(dest="target_command", required=True, metavar="ACTION")
    tl = tgs.add_parser("list", parents=[common], help="the rule sets of parameters/targeting, their rules")
    tl.set_defaults(func=_cmd_target_list)
    tc = tgs.add_parser("check", parents=[common], help="validate and compile rule sets (exit 2 on error)")
    tc.add_argument("rulesets", nargs="*", help="rule set names (default: all)")
    tc.set_defaults(func=_cmd_target_check)
    tx = tgs.add_parser("compile", parents=[common], help="compile one condition and show its SQL")
    tx.add_argument("expression")
    tx.add_argument("--type", choices=["I", "C"], default="I", help="individual (I) or corporate (C)")
    tx.set_defaults(func=_cmd_target_compile)
    ti = tgs.add_parser("indicators", parents=[common], help="what a condition may use")
    ti.add_argument("--type", choices=["I", "C"], help="only what applies to this customer type")
    ti.set_defaults(func=_cmd_target_indicators)

    def rule_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("ruleset", nargs="?", help="a rule set in parameters/targeting (cim target list)")
        parser.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user in access.yaml")
        parser.add_argument("--rule", action="append", metavar="ID", help="only this rule (repeatable)")
        parser.add_argument("--condition", help="an ad-hoc condition instead of a rule set")
        parser.add_argument("--type", choices=["I", "C"], default="I", help="customer type of --condition")
        parser.add_argument("--lang", choices=["en", "zh_CN"], default="en", help="language of the text")

    tr = tgs.add_parser("run", parents=[common], help="a rule set's customer list (scoped, masked, audited)")
    rule_args(tr)
    tr.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    tr.add_argument("--out", help="write the list to FILE.xlsx or FILE.csv")
    tr.add_argument("--split", choices=["branch", "manager"],
                    help="branch: a sheet per branch (csv: a file each); manager: a file per manager")
    tr.add_argument("--counts", action="store_true", help="hits per branch and rule only (any role)")
    tr.add_argument("--app-url", help="base URL of cim serve, for the 360 links (default $CIM_APP_URL)")
    tr.add_argument("--limit", type=int, default=30, help="rows to print (the file and --json hold all)")
    tr.set_defaults(func=_cmd_target_run)
    tb = tgs.add_parser("backtest", parents=[common], help="what happened to the customers a rule found")
    rule_args(tb)
    tb.add_argument("--from", dest="start", required=True, metavar="YYYY-MM", help="first month")
    tb.add_argument("--to", dest="end", required=True, metavar="YYYY-MM", help="last month")
    tb.add_argument("--horizon", type=int, default=3, help="months after each month to follow (default 3)")
    tb.add_argument("--chart", help="also save the chart (.png, .svg or .html)")
    tb.set_defaults(func=_cmd_target_backtest)

    sg = sub.add_parser("segment", parents=[common], help="segmentation cubes: build, pivot, drill-through")
    sgs = sg.add_subparsers(dest="segment_command", required=True, metavar="ACTION")
    sb = sgs.add_parser("build", parents=[common], help="build a month's cube (warehouse/cubes/...)")
    sb.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    sb.add_argument("--dims", help="dimension ids, comma-separated (default: the standard six)")
    sb.add_argument("--force", action="store_true", help="rebuild even when it exists")
    sb.set_defaults(func=_cmd_segment_build)
    sp = sgs.add_parser("pivot", parents=[common], help="a measure by one or two dimensions (scoped)")
    sp.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    sp.add_argument("--rows", required=True, metavar="DIM", help="dimension of the rows")
    sp.add_argument("--cols", metavar="DIM", help="dimension of the columns")
    sp.add_argument("--measure", default="customers", help="customers (default), aum, avg_aum...")
    sp.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    sp.add_argument("--filter", action="append", metavar="DIM=M1,M2", help="keep these members (repeatable)")
    sp.add_argument("--lang", choices=["en", "zh_CN"], default="en", help="language of the labels")
    sp.set_defaults(func=_cmd_segment_pivot)
    sd = sgs.add_parser("drill", parents=[common], help="the customers of one cell (scoped, masked, audited)")
    sd.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    sd.add_argument("--cell", action="append", metavar="DIM=MEMBER", help="the cell's members (repeatable)")
    sd.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    sd.add_argument("--limit", type=int, default=500, help="at most this many customers (default 500)")
    sd.add_argument("--lang", choices=["en", "zh_CN"], default="en", help="language of the text")
    sd.add_argument("--app-url", help="base URL of cim serve, for the 360 links (default $CIM_APP_URL)")
    sd.set_defaults(func=_cmd_segment_drill)

    va = sub.add_parser("value", parents=[common], help="customer value: tiers, migration, quality, RFM")
    vas = va.add_subparsers(dest="value_command", required=True, metavar="ACTION")

    def value_args(parser: argparse.ArgumentParser, lists: bool = True) -> argparse.ArgumentParser:
        parser.add_argument("--as", dest="as_user", required=True, metavar="USER",
                            help="user id from access.yaml")
        parser.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
        parser.add_argument("--lang", choices=["en", "zh_CN"], default="en", help="language of the labels")
        if lists:
            parser.add_argument("--list", action="store_true", help="the customers (needs detail; audited)")
            parser.add_argument("--limit", type=int, default=500, help="at most this many customers")
            parser.add_argument("--out", metavar="F.xlsx|F.csv", help="write the customer list to a file")
            parser.add_argument("--app-url", help="base URL of cim serve, for the 360 links")
        return parser

    vc = value_args(vas.add_parser("contribution", parents=[common], help="a month's contribution totals"),
                    lists=False)
    vc.set_defaults(func=_cmd_value_contribution)
    vt = value_args(vas.add_parser("tiers", parents=[common], help="customers and AUM by tier"), lists=False)
    vt.add_argument("--kind", choices=["aum", "contribution"], default="aum", help="which tiers")
    vt.add_argument("--type", choices=["I", "C"], help="only individuals or corporates")
    vt.add_argument("--chart", help="also save the chart (.png, .svg or .html)")
    vt.set_defaults(func=_cmd_value_tiers)
    vm = value_args(vas.add_parser("migration", parents=[common], help="tier migration between two months"),
                    lists=False)
    vm.add_argument("--from", dest="start", required=True, metavar="YYYY-MM", help="the earlier month")
    vm.add_argument("--to", dest="end", metavar="YYYY-MM", help="the later month (default: the latest)")
    vm.add_argument("--kind", choices=["aum", "contribution"], default="aum", help="which tiers")
    vm.add_argument("--cell", metavar="FROM:TO", help="list the customers of one cell (e.g. A1:A0, NEW:A2)")
    vm.add_argument("--limit", type=int, default=500, help="at most this many customers (with --cell)")
    vm.add_argument("--out", metavar="F.xlsx|F.csv", help="write the cell's customers to a file")
    vm.add_argument("--app-url", help="base URL of cim serve, for the 360 links")
    vm.add_argument("--chart", help="also save the heat map (.png, .svg or .html)")
    vm.set_defaults(func=_cmd_value_migration)
    vq = value_args(vas.add_parser("quality", parents=[common], help="quality customers (or --list)"))
    vq.add_argument("--rule", help="one rule id (with --list)")
    vq.set_defaults(func=_cmd_value_quality)
    vp = value_args(vas.add_parser("potential", parents=[common], help="potential quality customers"))
    vp.add_argument("--type", choices=["I", "C"], help="only individuals or corporates")
    vp.set_defaults(func=_cmd_value_potential)
    vk = value_args(vas.add_parser("concentration", parents=[common],
                                   help="80/20: top shares, share for 80%%, Gini"),
                    lists=False)  # fmt: skip
    vk.add_argument("--measure", action="append", choices=["deposits", "aum", "loans", "contribution"],
                    help="a measure (repeatable; default: all four)")
    vk.add_argument("--by", choices=["bank", "org", "county", "branch", "product", "customer_type"],
                    default="bank", help="groups (org: one level below your scope)")
    vk.add_argument("--trend", type=int, metavar="N", help="the last N months instead of one month")
    vk.add_argument("--chart", help="also save a chart (.png): the Lorenz/whale curve, Pareto, or the trend")
    vk.add_argument("--chart-kind", choices=["lorenz", "pareto"], default="lorenz")
    vk.set_defaults(func=_cmd_value_concentration)
    vr = value_args(vas.add_parser("rfm", parents=[common], help="RFM segments (or --list a segment)"))
    vr.add_argument("--segment", help="one segment id (with --list)")
    vr.add_argument("--type", choices=["I", "C"], help="only individuals or corporates (summary)")
    vr.set_defaults(func=_cmd_value_rfm)

    from cimlib.churn._cli import add_churn_parser

    add_churn_parser(sub, common)

    from cimlib.reports._cli import add_report_parser

    add_report_parser(sub, common)

    from cimlib.analysis._cli import add_analysis_parser

    add_analysis_parser(sub, common, list(sys.argv[1:] if argv is None else argv))

    pa = sub.add_parser("params", parents=[common], help="manage parameters/: check, diff, apply")
    pas = pa.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    pc = pas.add_parser("check", parents=[common], help="validate every parameter file (exit 2 on a problem)")
    pc.add_argument("--no-data", action="store_true", help="skip the warehouse check of dimension coverage")
    pc.set_defaults(func=_cmd_params_check)
    pd_ = pas.add_parser("diff", parents=[common], help="customers and ADB a proposed dimensions.yaml moves")
    pd_.add_argument("new", metavar="NEW_YAML", help="the proposed dimensions.yaml")
    pd_.add_argument("--as-of", help="month, YYYY-MM (default: the latest)")
    pd_.set_defaults(func=_cmd_params_diff)
    pp = pas.add_parser("apply", parents=[common], help="save a parameter file, log it, re-run its outputs")
    pp.add_argument("new", metavar="NEW_FILE", help="the new contents")
    pp.add_argument("--file", required=True, help="the file of parameters/ to replace, e.g. dimensions.yaml")
    pp.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    pp.set_defaults(func=_cmd_params_apply)

    au = sub.add_parser("audit", parents=[common], help="show the audit log (auditors only)")
    au.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
    au.add_argument("--user", help="only this user's records")
    au.add_argument("--since", help="only records from this UTC date (YYYY-MM-DD) or time on")
    au.add_argument("--limit", type=int, default=1000, help="at most this many (the most recent)")
    au.add_argument("--verify", action="store_true", help="also check the hash chain (exit 3 when broken)")
    au.set_defaults(func=_cmd_audit)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cim``; return the exit code."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    home = get_home(args.home)
    try:
        return int(args.func(args, home))
    except CliError as exc:
        _report_error(args, str(exc))
        return exc.code
    except KeyboardInterrupt:
        _report_error(args, "interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`cim ... | head`): stop quietly, as Unix tools do, with no traceback
        # when the interpreter flushes stdout on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # the last line of defence: a clear message and a non-zero exit
        log.debug("unexpected error", exc_info=True)
        _report_error(args, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _report_error(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
    sys.stderr.write(f"cim: error: {message}\n")


if __name__ == "__main__":  # pragma: no cover
    # `python -m cimlib.cli` runs this file as __main__: hand over to the imported module, so that the
    # sub-command modules (cimlib.churn._cli, cimlib.analysis._cli) raise the CliError main() catches.
    from cimlib.cli import main as _main

    sys.exit(_main())
