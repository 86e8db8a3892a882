"""The notification hook: an email over SMTP when a report run ends.

Configured in ``parameters/reports/settings.yaml`` (``notify:``, the :class:`~cimlib.reports._params.Notify`
model). Recipients are set per scope: ``county:101000`` (one county), ``county`` (every county without its
own entry), ``province`` and ``default`` (every scope: the people who operate the runs).

Data protection is the rule of the routing: a recipient receives exactly the reports of the scopes they are
listed for, never another county's report, attached or linked. :func:`notify_run` works out, for each
address, the scopes of the run it may see, and sends one message per set of addresses that share the same
scopes. The provincial recipients also get a status summary of every scope (no links, no attachments of the
county editions), and only a recipient of every scope of the run gets the link to the report index (which
lists every edition).

A mail failure never fails a report: :func:`send` raises :class:`NotifyError`, and the runner logs it.
"""

from __future__ import annotations

import html
import logging
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

from cimlib.i18n import t
from cimlib.reports._params import Notify, ReportError, scope_dir_name

log = logging.getLogger(__name__)

Outcome = Literal["success", "failure"]


class NotifyError(ReportError):
    """A notification could not be sent (SMTP or socket error, missing password, no recipient).

    From :func:`notify_run`, ``result`` holds what was sent before and despite the failure.
    """

    result: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------- recipients
def recipients_for(notify: Notify, scope: str) -> list[str]:
    """The addresses that receive the report of one scope.

    Parameters
    ----------
    notify : Notify
        The notification settings.
    scope : str
        ``province`` or ``county:CODE``.

    Returns
    -------
    list of str
        The scope's own entry (``county:101000``) when there is one, else its kind's (``county`` or
        ``province``), then ``default``; de-duplicated (case-insensitively), in that order.
    """
    kind = scope.partition(":")[0]
    own = notify.recipients.get(scope)
    if own is None:
        own = notify.recipients.get(kind, [])
    out: dict[str, str] = {}
    for addr in [*own, *notify.recipients.get("default", [])]:
        a = addr.strip()
        out.setdefault(a.lower(), a)
    return list(out.values())


# --------------------------------------------------------------------------------------------- message
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def _title(report: dict[str, Any], lang: str) -> str:
    title = report.get("title") if isinstance(report.get("title"), dict) else {}
    return str(title.get(lang) or next(iter(title.values()), None) or report.get("report") or "report")


def _scope_label(scope: str, label: Any, lang: str) -> str:
    if scope == "province":
        return t("report_index.province", lang)
    return str(label or scope)


def _html_file(report: dict[str, Any]) -> tuple[Path, str] | None:
    """The report's HTML file, and its path under the published root (``NAME/PERIOD/SCOPE/vN/x.html``)."""
    folder = report.get("folder")
    if not folder:
        return None
    folder = Path(folder)
    files = report.get("files") if isinstance(report.get("files"), dict) else {}
    names = sorted(f for f in files if isinstance(f, str) and "/" not in f and f.endswith(".html"))
    name = names[0] if names else f"{report.get('report')}.html"
    parts = folder.parts[-4:] if len(folder.parts) >= 4 else folder.parts
    return folder / name, PurePosixPath(*parts, name).as_posix()


def _report_item(notify: Notify, report: dict[str, Any], lang: str) -> dict[str, Any]:
    """How one report appears in a message: text, optional link, optional attachment."""
    scope = str(report.get("scope"))
    item: dict[str, Any] = {
        "title": _title(report, lang),
        "scope": _scope_label(scope, report.get("scope_label"), lang),
        "version": report.get("version"),
        "snapshot": report.get("snapshot_id"),
        "as_of": report.get("as_of"),
        "link": None,
        "attachment": None,
        "note": None,
        "dq": None,
    }
    dq = report.get("dq") if isinstance(report.get("dq"), dict) else {}
    if dq.get("allowed") is True:
        failures = dq.get("failures") if isinstance(dq.get("failures"), list) else []
        item["dq"] = t("report_mail.dq_allowed", lang, failures="; ".join(map(str, failures)) or "-")
    found = _html_file(report)
    if found is None:
        item["note"] = t("report_mail.missing", lang, path="?")
        return item
    path, rel = found
    if notify.link_base is not None:
        item["link"] = notify.link_base.rstrip("/") + "/" + quote(rel, safe="/")
        return item
    try:
        size = path.stat().st_size
    except OSError:
        log.warning("notify: the HTML of a report is missing: %s", path, extra={"path": str(path)})
        item["note"] = t("report_mail.missing", lang, path=rel)
        return item
    if size > notify.attach_max_bytes:
        item["note"] = t("report_mail.on_server", lang, size=_size(size), path=rel)
        return item
    parts = (report.get("report"), report.get("period"), scope_dir_name(scope), f"v{report.get('version')}")
    name = "_".join(map(str, parts)) + ".html"
    item["attachment"] = (name, path.read_bytes())
    item["note"] = t("report_mail.attached", lang, name=name)
    return item


def _subject_title(run: dict[str, Any], lang: str) -> str:
    titles = [_title(r, lang) for r in run.get("reports") or []]
    titles += [_title_of_name(run, str(f.get("report") or ""), lang) for f in run.get("failures") or []]
    unique = [x for x in dict.fromkeys(titles) if x]
    if not unique:
        unique = [_title({"title": v, "report": k}, lang) for k, v in _titles(run).items()]
    return " / ".join(unique) or "reports"


def _titles(run: dict[str, Any]) -> dict[str, Any]:
    given = run.get("titles")
    return given if isinstance(given, dict) else {}


def _title_of_name(run: dict[str, Any], name: str, lang: str) -> str:
    for r in run.get("reports") or []:
        if r.get("report") == name:
            return _title(r, lang)
    return _title({"title": _titles(run).get(name), "report": name}, lang)


def run_message(
    notify: Notify, *, outcome: Outcome, run: dict[str, Any], lang: str = "zh_CN"
) -> EmailMessage:
    """The mail about one run: a subject, plain-text and HTML bodies, and the HTML reports attached.

    Parameters
    ----------
    notify : Notify
        The notification settings (sender, ``attach_max_bytes``, ``link_base``).
    outcome : {"success", "failure"}
        How the run ended.
    run : dict
        The run's summary: ``command``, ``period``, ``reports`` (manifest dicts, each with ``folder``: the
        version folder), ``failures`` (``report``, ``scope``, ``error``, optional ``scope_label``),
        optional ``index`` (the index file), ``seconds``, and optionally ``titles`` (``{report name:
        {"en": ..., "zh_CN": ...}}``, for a failed report with no manifest) and ``summary``
        (``[{"scope", "scope_label", "status"}]``, shown as a status table without links).
        Everything in ``run`` ends up in the message: pass only what its recipients may see.
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    EmailMessage
        From ``notify.sender``, without ``To`` (set by the caller). Each report's HTML is attached when
        ``link_base`` is None and the file is at most ``attach_max_bytes``; otherwise the message links it
        (``link_base`` + its path under ``outputs/reports``) or names its path on the server.
    """
    if outcome not in ("success", "failure"):
        raise ValueError(f"outcome {outcome!r}: expected success or failure")
    reports = list(run.get("reports") or [])
    failures = list(run.get("failures") or [])
    summary = run.get("summary")
    period = run.get("period") or ""
    if summary:
        published = sum(1 for s in summary if s.get("status") == "published")
        failed = sum(1 for s in summary if s.get("status") != "published")
    else:
        published, failed = len(reports), len(failures)
    msg = EmailMessage()
    msg["Subject"] = t(
        "report_mail.subject", lang, title=_subject_title(run, lang), period=period, published=published,
        failed=failed,
    )
    msg["From"] = notify.sender
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=notify.sender.rpartition("@")[2] or None)
    items = [_report_item(notify, r, lang) for r in reports]
    labels = {str(f.get("scope")): f.get("scope_label") for f in failures if f.get("scope_label")}
    labels.update({str(r.get("scope")): r.get("scope_label") for r in reports})
    for s in summary or []:
        labels.setdefault(str(s.get("scope")), s.get("scope_label"))
    fails = [
        {
            "report": _title_of_name(run, str(f.get("report") or ""), lang),
            "scope": _scope_label(str(f.get("scope")), labels.get(str(f.get("scope"))), lang)
            if f.get("scope") else "-",
            "error": str(f.get("error") or ""),
        }
        for f in failures
    ]
    index = run.get("index")
    index_ref = None
    if index:
        index_ref = (notify.link_base.rstrip("/") + "/index.html") if notify.link_base else str(index)
    heading = t(f"report_mail.heading_{outcome}", lang)
    facts = [(t("report_mail.command", lang), run.get("command")), (t("report_mail.period", lang), period)]
    if isinstance(run.get("seconds"), int | float):
        took = t("report_mail.seconds", lang, seconds=run["seconds"])
        facts.append((t("report_mail.duration", lang), took))

    # plain text
    text = [heading, ""]
    text += [f"{k}: {v}" for k, v in facts if v not in (None, "")]
    text += ["", f"{t('report_mail.reports', lang)} ({len(items)}):"]
    if not items:
        text.append("  " + t("report_mail.none", lang))
    for it in items:
        text.append(f"- {it['title']} · {it['scope']} · v{it['version']} · "
                    f"{t('report_mail.as_of', lang)} {it['as_of']} · {t('report_mail.snapshot', lang)} "
                    f"{it['snapshot']}")
        if it["dq"]:
            text.append(f"  ⚠ {it['dq']}")
        if it["link"]:
            text.append(f"  {it['link']}")
        if it["note"]:
            text.append(f"  {it['note']}")
    if fails:
        text += ["", f"{t('report_mail.failures', lang)} ({len(fails)}):"]
        text += [f"- {f['report']} · {f['scope']}: {f['error']}" for f in fails]
    if summary:
        text += ["", t("report_mail.summary", lang) + ":"]
        for s in summary:
            status = "published" if s.get("status") == "published" else "failed"
            label = _scope_label(str(s.get("scope")), s.get("scope_label"), lang)
            text.append(f"- {label}: {t('report_mail.status_' + status, lang)}")
    if index_ref:
        text += ["", f"{t('report_mail.index', lang)}: {index_ref}"]
    text += ["", "-- ", t("report_mail.footer", lang)]
    msg.set_content("\n".join(text) + "\n")

    # HTML alternative
    h = [f"<p><strong>{_e(heading)}</strong></p><table>"]
    h += [f"<tr><th align=left>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v not in (None, "")]
    h.append(f"</table><h3>{_e(t('report_mail.reports', lang))} ({len(items)})</h3>")
    if not items:
        h.append(f"<p>{_e(t('report_mail.none', lang))}</p>")
    else:
        cols = ("report_file", "scope", "version", "as_of", "snapshot")
        h.append("<table border=1 cellpadding=4 cellspacing=0><tr>"
                 + "".join(f"<th>{_e(t('report_mail.' + c, lang))}</th>" for c in cols) + "</tr>")
        for it in items:
            title = _e(it["title"])
            if it["link"]:
                title = f'<a href="{_e(it["link"])}">{title}</a>'
            extra = "".join(
                f"<br><small>{x}</small>"
                for x in (
                    f'<span style="color:#8d2b0b">⚠ {_e(it["dq"])}</span>' if it["dq"] else "",
                    _e(it["note"]) if it["note"] else "",
                )
                if x
            )
            h.append(f"<tr><td>{title}{extra}</td><td>{_e(it['scope'])}</td><td>v{_e(it['version'])}</td>"
                     f"<td>{_e(it['as_of'])}</td><td><code>{_e(it['snapshot'])}</code></td></tr>")
        h.append("</table>")
    if fails:
        h.append(f"<h3>{_e(t('report_mail.failures', lang))} ({len(fails)})</h3><ul>")
        h += [f"<li>{_e(f['report'])} · {_e(f['scope'])}: <code>{_e(f['error'])}</code></li>" for f in fails]
        h.append("</ul>")
    if summary:
        h.append(f"<h3>{_e(t('report_mail.summary', lang))}</h3><ul>")
        for s in summary:
            status = "published" if s.get("status") == "published" else "failed"
            h.append(f"<li>{_e(_scope_label(str(s.get('scope')), s.get('scope_label'), lang))}: "
                     f"{_e(t('report_mail.status_' + status, lang))}</li>")
        h.append("</ul>")
    if index_ref:
        ref = f"<code>{_e(index_ref)}</code>"
        if notify.link_base:
            ref = f'<a href="{_e(index_ref)}">{_e(index_ref)}</a>'
        h.append(f"<p>{_e(t('report_mail.index', lang))}: {ref}</p>")
    h.append(f"<hr><p><small>{_e(t('report_mail.footer', lang))}</small></p>")
    msg.add_alternative(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{"".join(h)}</body></html>',
        subtype="html",
    )
    for it in items:
        if it["attachment"]:
            name, data = it["attachment"]
            msg.add_attachment(data, maintype="text", subtype="html", filename=name)
    return msg


# ---------------------------------------------------------------------------------------------- sending
def send(notify: Notify, message: EmailMessage, *, recipients: list[str]) -> None:
    """Send one message over SMTP as configured.

    Parameters
    ----------
    notify : Notify
        ``smtp`` (host, port, ``ssl`` for SMTPS, ``starttls``, ``user``, ``password_env``,
        ``timeout_seconds``) and ``sender`` (the envelope sender).
    message : EmailMessage
        The message, e.g. from :func:`run_message`.
    recipients : list of str
        The envelope recipients.

    Raises
    ------
    NotifyError
        With a clear message: no recipients, ``smtp.user`` set but the password variable unset, or any
        SMTP, TLS or socket error (refused connection, timeout, authentication, every recipient refused).
    """
    smtp = notify.smtp
    where = f"{smtp.host}:{smtp.port}"
    if not recipients:
        raise NotifyError("notify: no recipients")
    password = None
    if smtp.user:
        if not smtp.password_env:
            raise NotifyError("notify: smtp.user is set but smtp.password_env is not (the password is read "
                              "from that environment variable)")
        password = os.environ.get(smtp.password_env)
        if password is None:
            raise NotifyError(f"notify: smtp.user is set but the environment variable {smtp.password_env} "
                              "(smtp.password_env) holding the SMTP password is not set")
        if not (smtp.ssl or smtp.starttls):
            log.warning("notify: logging in to %s without TLS; set smtp.ssl or smtp.starttls", where)
    try:
        client: smtplib.SMTP
        if smtp.ssl:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_seconds,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
        with client:
            if smtp.starttls and not smtp.ssl:
                client.starttls(context=ssl.create_default_context())
            if smtp.user and password is not None:
                client.login(smtp.user, password)
            refused = client.send_message(message, from_addr=notify.sender, to_addrs=list(recipients))
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyError(f"notify: SMTP login as {smtp.user!r} at {where} failed: {exc.smtp_code} "
                          f"{exc.smtp_error!r}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotifyError(f"notify: {where} refused every recipient: {', '.join(exc.recipients)}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(f"notify: sending mail via {where} failed: {type(exc).__name__}: {exc}") from exc
    if refused:
        log.warning("notify: %s refused some recipients: %s", where, ", ".join(refused),
                    extra={"refused": sorted(refused)})
    log.info("notify: mail sent", extra={"smtp": where, "recipients": len(recipients),
                                         "subject": str(message["Subject"])})


# ------------------------------------------------------------------------------------------------- a run
def _run_scopes(run: dict[str, Any]) -> list[str]:
    scopes = [str(r.get("scope")) for r in run.get("reports") or [] if r.get("scope")]
    scopes += [str(f.get("scope")) for f in run.get("failures") or [] if f.get("scope")]
    return list(dict.fromkeys(scopes))


def _summary(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in run.get("reports") or []:
        s = str(r.get("scope"))
        rows.setdefault(s, {"scope": s, "scope_label": r.get("scope_label"), "status": "published"})
    for f in run.get("failures") or []:
        if f.get("scope"):
            s = str(f.get("scope"))
            label = f.get("scope_label") or rows.get(s, {}).get("scope_label")
            rows[s] = {"scope": s, "scope_label": label, "status": "failed"}
    key = {"province": (0, "")}
    return sorted(rows.values(), key=lambda x: key.get(x["scope"], (1, x["scope"])))


def _sub_run(run: dict[str, Any], scopes: set[str], *, everything: bool) -> dict[str, Any]:
    """The part of ``run`` that recipients of ``scopes`` may see."""
    sub = {k: v for k, v in run.items() if k not in ("reports", "failures", "index", "summary")}
    # the titles of every report of the run (not sensitive), so a failure-only message names its report
    sub["titles"] = {**{r.get("report"): r.get("title") for r in run.get("reports") or []}, **_titles(run)}
    sub["reports"] = [r for r in run.get("reports") or [] if r.get("scope") in scopes]
    # a failure without a scope (the run died before any report) goes to the province and the operators
    sub["failures"] = [
        f for f in run.get("failures") or []
        if f.get("scope") in scopes or (not f.get("scope") and (everything or "province" in scopes))
    ]
    if "province" in scopes and not everything:
        sub["summary"] = _summary(run)
    if everything and run.get("index"):
        sub["index"] = run["index"]
    return sub


def notify_run(
    notify: Notify,
    *,
    outcome: Outcome,
    run: dict[str, Any],
    lang: str = "zh_CN",
    scope_of_recipients: list[str],
) -> dict[str, Any]:
    """Mail the end of a run to the recipients of its scopes, each seeing only their own scopes.

    Parameters
    ----------
    notify : Notify
        The notification settings.
    outcome : {"success", "failure"}
        How the run ended.
    run : dict
        The run's summary (see :func:`run_message`).
    lang : str
        ``"zh_CN"`` or ``"en"``.
    scope_of_recipients : list of str
        The scopes whose recipients this run notifies: normally every scope the run produced or tried
        (``province``, ``county:101000`` ...). Reports of other scopes are never sent.

    Returns
    -------
    dict
        ``sent`` (messages sent), ``recipients`` (the addresses mailed), ``skipped`` (why nothing was sent:
        ``"disabled"``, ``"when"``, ``"no recipients"``; None otherwise) and ``errors`` (one text per message
        that could not be sent).

    Raises
    ------
    NotifyError
        After trying every message, when one or more could not be sent; its ``result`` attribute holds the
        dict above. The caller logs it: a mail failure must not fail the report.

    Notes
    -----
    Each address gets the scopes it is listed for (:func:`recipients_for`); addresses with the same scopes
    share one message. A message holds only the reports and failures of its scopes: a county's recipients
    never get another county's report attached or linked. Recipients of ``province`` also get a status
    summary of every scope (no links), and only recipients of every scope of the run (``default``) get the
    link to the report index. A group with nothing of its own in the run gets no message.
    """
    result: dict[str, Any] = {"sent": 0, "recipients": [], "skipped": None, "errors": []}
    if not notify.enabled:
        result["skipped"] = "disabled"
        return result
    if outcome not in notify.when:
        result["skipped"] = "when"
        return result
    wanted = list(dict.fromkeys(scope_of_recipients))
    all_scopes = set(wanted) | set(_run_scopes(run))
    entitled: dict[str, tuple[str, list[str]]] = {}
    for scope in wanted:
        for addr in recipients_for(notify, scope):
            entitled.setdefault(addr.lower(), (addr, []))[1].append(scope)
    groups: dict[tuple[str, ...], list[str]] = {}
    for addr, scopes in entitled.values():
        groups.setdefault(tuple(scopes), []).append(addr)
    if not groups:
        result["skipped"] = "no recipients"
        return result
    for scopes, addrs in groups.items():
        everything = set(scopes) >= all_scopes
        sub = _sub_run(run, set(scopes), everything=everything)
        if not (sub["reports"] or sub["failures"] or sub.get("summary")):
            log.info("notify: nothing of %s in this run; no mail to %s", ", ".join(scopes), ", ".join(addrs))
            continue
        msg = run_message(notify, outcome=outcome, run=sub, lang=lang)
        msg["To"] = ", ".join(addrs)
        try:
            send(notify, msg, recipients=addrs)
        except NotifyError as exc:
            log.warning("%s", exc, extra={"scopes": list(scopes), "recipients": addrs})
            result["errors"].append(str(exc))
            continue
        result["sent"] += 1
        result["recipients"].extend(addrs)
    if result["sent"] == 0 and not result["errors"]:
        result["skipped"] = "nothing to send"
    if result["errors"]:
        err = NotifyError(f"notify: {len(result['errors'])} message(s) not sent: {result['errors'][0]}")
        err.result = result
        raise err
    return result
