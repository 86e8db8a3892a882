"""Report settings and parameters: ``parameters/reports/*.yaml`` and the typed parameters of each report.

``parameters/reports/settings.yaml`` holds what every report shares (timeouts, the audiences, the
data-quality gate, bursting, notification). ``parameters/reports/<name>.yaml`` defines one report: its
notebook, titles, the scopes it is made for, whether the data-quality gate applies, and default options.

Each report's parameters are a pydantic model with ``extra="forbid"``, checked *before* Papermill starts a
kernel: Papermill itself ignores a parameter the notebook does not declare, so a misspelt option would
otherwise produce a report with the default silently. A test checks that each model's fields are exactly
the notebook's ``parameters`` cell.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cimlib.access._yamlfile import load_yaml_model
from cimlib.config import Home, get_home

#: Exit codes of ``cim report`` and ``cim run`` (documented in docs/reports.md).
EXIT_OK = 0
EXIT_REPORT_FAILED = 1
EXIT_USAGE = 2
EXIT_DQ_GATE = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
SCOPE_RE = re.compile(r"^(province|county:\d{6})$")
#: Parameters the runner sets; a user cannot pass them.
RUNNER_PARAMS = ("out_dir", "snapshot_id", "dq_failures")


class ReportError(Exception):
    """A report could not be produced; ``exit_code`` says how a scheduler should treat it."""

    exit_code = EXIT_REPORT_FAILED


class ReportParamsError(ReportError, ValueError):
    """Bad input: an unknown report, an unknown or ill-typed parameter, a bad period or scope."""

    exit_code = EXIT_USAGE


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------- settings.yaml
class Timeouts(_M):
    """Papermill's kernel-start and per-cell timeouts, and the HTML/PDF render timeout (seconds)."""

    start_seconds: int = Field(60, ge=5, le=600)
    cell_seconds: int = Field(900, ge=10, le=86400)
    render_seconds: int = Field(180, ge=10, le=3600)


class Gate(_M):
    """When a report refuses to publish (reports whose definition has ``gate: true``)."""

    gl_tieout: bool = True
    contract_warnings: bool = True
    max_quarantine_share: float = Field(0.01, ge=0, le=1)


class Smtp(_M):
    """The mail server of the notification hook."""

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    ssl: bool = False
    starttls: bool = False
    user: str | None = None
    password_env: str | None = "CIM_SMTP_PASSWORD"
    timeout_seconds: float = Field(30, gt=0, le=600)


class Notify(_M):
    """Mail sent when a run ends: who gets which scope's report, attached or linked."""

    enabled: bool = False
    when: list[Literal["success", "failure"]] = Field(default_factory=lambda: ["success", "failure"])
    smtp: Smtp = Field(default_factory=Smtp)
    sender: str = "cim-workbench@localhost"
    #: Recipients by scope: ``province``, ``county`` (every county), ``county:101000`` or ``default``.
    recipients: dict[str, list[str]] = Field(default_factory=dict)
    #: The HTML is attached up to this size; above it (or when ``link_base`` is set) it is linked.
    attach_max_bytes: int = Field(5_000_000, ge=0)
    #: Where ``outputs/reports/`` is published on the intranet, e.g. ``https://cim.bank.local/reports/``.
    link_base: str | None = None

    @field_validator("recipients")
    @classmethod
    def _keys(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for k, addrs in v.items():
            if k not in ("province", "county", "default") and not SCOPE_RE.match(k):
                raise ValueError(f"recipients: {k!r} is not province, county, county:CODE or default")
            for a in addrs:
                if "@" not in a:
                    raise ValueError(f"recipients: {a!r} is not an email address")
        return v


class ReportSettings(_M):
    """``parameters/reports/settings.yaml``."""

    version: Literal[1]
    output_root: str = "outputs/reports"
    timeouts: Timeouts = Field(default_factory=Timeouts)
    #: Parallel reports in a burst: a number, or ``auto`` for the machine's cores.
    burst_workers: int | Literal["auto"] = "auto"
    #: The role each edition is made for (roles of parameters/access.yaml).
    audiences: dict[Literal["province", "county"], str]
    gate: Gate = Field(default_factory=Gate)
    notify: Notify = Field(default_factory=Notify)

    @field_validator("burst_workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 64:
            raise ValueError("burst_workers: 1..64 or auto")
        return v


class ReportDefinition(_M):
    """``parameters/reports/<name>.yaml``: one report."""

    version: Literal[1]
    title: dict[Literal["en", "zh_CN"], str]
    notebook: str
    scopes: list[Literal["province", "county"]] = Field(min_length=1)
    gate: bool = True
    defaults: dict[str, Any] = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _both(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) != {"en", "zh_CN"}:
            raise ValueError("title: give both en and zh_CN")
        return v


# ------------------------------------------------------------------------------------ report parameters
class BaseReportParams(_M):
    """What every report notebook takes."""

    period: str | None = None
    scope: str = "province"
    locale: Literal["en", "zh_CN"] = "en"
    out_dir: str | None = None
    snapshot_id: str | None = None
    dq_failures: list[str] = Field(default_factory=list)

    @field_validator("period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is not None and not PERIOD_RE.match(v):
            raise ValueError(f"period {v!r}: expected YYYY-MM")
        return v

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        if not SCOPE_RE.match(v):
            raise ValueError(f"scope {v!r}: expected province or county:CODE (a 6-digit org code)")
        return v


class MonthlyPackParams(BaseReportParams):
    """The monthly management pack's parameters."""

    top_n: int = Field(10, ge=1, le=100)
    rulesets: list[str] | None = None
    attach_lists: bool = True


class DataQualityParams(BaseReportParams):
    """The data-quality report's parameters."""

    trend_months: int = Field(13, ge=1, le=60)


#: The parameter model of each report notebook.
PARAM_MODELS: dict[str, type[BaseReportParams]] = {
    "monthly_pack": MonthlyPackParams,
    "data_quality": DataQualityParams,
}


# ---------------------------------------------------------------------------------------------- loading
def _home(home: Home | str | None) -> Home:
    return home if isinstance(home, Home) else get_home(home)


def reports_dir(home: Home | str | None = None) -> Path:
    """``parameters/reports/`` of the installation."""
    return _home(home).parameters / "reports"


def load_report_settings(home: Home | str | None = None) -> ReportSettings:
    """Load and validate ``parameters/reports/settings.yaml``.

    Parameters
    ----------
    home : Home, str or None
        The installation (default ``$CIM_HOME``).

    Returns
    -------
    ReportSettings

    Raises
    ------
    ReportParamsError
        Naming the file, the key, the line and the problem.
    """
    model, _ = load_yaml_model(reports_dir(home) / "settings.yaml", ReportSettings, ReportParamsError)
    return model


def report_names(home: Home | str | None = None) -> list[str]:
    """The reports defined in ``parameters/reports/`` (every ``*.yaml`` but ``settings.yaml``)."""
    d = reports_dir(home)
    return sorted(p.stem for p in d.glob("*.yaml") if p.stem != "settings") if d.is_dir() else []


def load_report(name: str, home: Home | str | None = None) -> ReportDefinition:
    """Load and validate ``parameters/reports/<name>.yaml``, including its default options.

    Parameters
    ----------
    name : str
        A report of :func:`report_names`.
    home : Home, str or None
        The installation.

    Returns
    -------
    ReportDefinition

    Raises
    ------
    ReportParamsError
        For an unknown report or an invalid file (its defaults are checked against the report's model).
    """
    names = report_names(home)
    if name not in names:
        raise ReportParamsError(f"unknown report {name!r}; expected one of {', '.join(names) or '(none)'}")
    if name not in PARAM_MODELS:
        raise ReportParamsError(f"parameters/reports/{name}.yaml: no parameter model for report {name!r}")
    path = reports_dir(home) / f"{name}.yaml"
    model, _ = load_yaml_model(path, ReportDefinition, ReportParamsError)
    bad = sorted(set(model.defaults) & {"period", "scope", "locale", *RUNNER_PARAMS})
    if bad:
        raise ReportParamsError(f"{path}: defaults: {', '.join(bad)} cannot have a default here")
    try:
        PARAM_MODELS[name].model_validate(model.defaults)
    except ValidationError as exc:
        raise ReportParamsError(f"{path}: defaults: {_explain(exc)}") from None
    return model


def _explain(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {loc!r}")
        else:
            parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(parts)


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``-p``: the value is read as YAML (``10`` an int, ``[a, b]`` a list, ``no`` False)."""
    import yaml

    if "=" not in text:
        raise ReportParamsError(f"-p {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def report_params(
    name: str,
    *,
    period: str | None,
    scope: str,
    locale: str = "en",
    options: dict[str, Any] | None = None,
    home: Home | str | None = None,
) -> BaseReportParams:
    """The validated parameters of one run: the definition's defaults, then ``options``.

    Parameters
    ----------
    name : str
        The report.
    period, scope, locale : str
        ``YYYY-MM``; ``province`` or ``county:CODE``; ``en`` or ``zh_CN``.
    options : dict, optional
        The report's options (``-p KEY=VALUE``); an unknown or ill-typed one is an error.
    home : Home, str or None
        The installation.

    Returns
    -------
    BaseReportParams
        The report's own model.

    Raises
    ------
    ReportParamsError
        Before any kernel starts, naming each bad parameter.
    """
    d = load_report(name, home)
    opts = dict(options or {})
    runner = sorted(set(opts) & {"period", "scope", "locale", *RUNNER_PARAMS})
    if runner:
        raise ReportParamsError(
            f"{', '.join(runner)}: not an option (period, scope and locale have their own flags; "
            "out_dir, snapshot_id and dq_failures are set by the runner)"
        )
    values = {**d.defaults, **opts, "period": period, "scope": scope, "locale": locale}
    try:
        params = PARAM_MODELS[name].model_validate(values)
    except ValidationError as exc:
        raise ReportParamsError(f"report {name}: {_explain(exc)}") from None
    kind = params.scope.split(":")[0]
    if kind not in d.scopes:
        raise ReportParamsError(f"report {name} is made for {', '.join(d.scopes)}, not {kind}")
    return params


def params_hash(params: BaseReportParams) -> str:
    """A digest of the parameters that decide the figures (not where the files go)."""
    data = params.model_dump(mode="json", exclude={"out_dir", "snapshot_id"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def scope_dir_name(scope: str) -> str:
    """The folder of a scope: ``province`` or ``county-101000`` (no colon in a path)."""
    return scope.replace(":", "-")


def audience(scope: str, report: str = "report", home: Home | str | None = None) -> Any:
    """The principal a report of ``scope`` runs as: the audience's role at the scope's org.

    Parameters
    ----------
    scope : str
        ``province`` or ``county:CODE``.
    report : str
        The report's name (the audit log shows ``report:<name>`` as the user).
    home : Home, str or None
        The installation.

    Returns
    -------
    cimlib.access.Principal
        For ``province`` the role of ``audiences.province`` (all orgs); for a county the role of
        ``audiences.county`` at that county.

    Raises
    ------
    ReportParamsError
        For a bad scope, a county the warehouse lacks, or a role the access policy lacks.
    """
    from cimlib.access import PolicyError, service_principal

    if not SCOPE_RE.match(scope):
        raise ReportParamsError(f"scope {scope!r}: expected province or county:CODE")
    h = _home(home)
    settings = load_report_settings(h)
    kind, _, code = scope.partition(":")
    role = settings.audiences.get(kind)  # type: ignore[call-overload]
    if role is None:
        raise ReportParamsError(f"parameters/reports/settings.yaml: audiences: no role for {kind}")
    try:
        who = service_principal(
            role, code or None, user_id=f"report:{report}", display_name=f"report {report} ({scope})", home=h
        )
    except PolicyError as exc:
        raise ReportParamsError(f"parameters/reports/settings.yaml: audiences.{kind}: {exc}") from None
    if code and who.org_name is None:
        raise ReportParamsError(f"scope {scope}: no org {code} in the published warehouse")
    return who
