"""System management of ``parameters/``: check every file, preview a dimensions change, apply a change.

* :func:`check_parameters` validates every parameter file with the loader that reads it, and, when a
  warehouse is published, checks that every customer of the latest month lands in exactly one member of
  every dimension.
* :func:`diff_dimensions` previews a proposed ``dimensions.yaml`` before it is saved: for each changed
  dimension, how many customers (and how much deposit ADB) move from each old member to each new one.
* :func:`apply_parameters` validates a new file, writes it atomically, records the change in
  ``data/state/params/changes.jsonl`` and re-runs exactly the outputs that depend on the file, from the
  explicit map :data:`DEPENDENCIES` (the specification's "the system triggers data generation").

The loaders live with the code that uses each file; this module imports them lazily, so importing
:mod:`cimlib.config` stays cheap and free of import cycles.
"""

from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimlib.config._paths import Home, get_home

if TYPE_CHECKING:
    import pandas as pd

    from cimlib.segmentation import Dimension, Dimensions

HomeLike = Home | str | os.PathLike[str] | None


def _home(home: HomeLike) -> Home:
    return home if isinstance(home, Home) else get_home(home)


class ParamsError(ValueError):
    """A parameter change that cannot be previewed or applied (invalid file, unknown user, bad name)."""


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`check_parameters`.

    Attributes
    ----------
    file : str
        The file, relative to the parameters folder (``dimensions.yaml``, ``targeting/risk.yaml``).
    message : str
        What is wrong; the loaders' messages name the file, the key or dimension, and the line.
    kind : str
        ``schema`` (the file does not validate) or ``data`` (it validates, but the warehouse's customers
        do not all land in exactly one member).
    """

    file: str
    message: str
    kind: str = "schema"

    def as_dict(self) -> dict[str, str]:
        """The problem as a JSON-ready dict."""
        return {"file": self.file, "kind": self.kind, "message": self.message}


# ------------------------------------------------------------------------------------------------ check
def _validators(h: Home) -> list[tuple[str, Callable[[], object]]]:
    """(relative file, loader call) for every parameter file of ``h``, in a stable order."""
    from cimlib.access import load_policy
    from cimlib.analysis._params import load_provincial_params
    from cimlib.churn._params import load_churn_params
    from cimlib.customer._settings import load_settings
    from cimlib.ingest import load_mapping
    from cimlib.segmentation import load_analyses_params, load_dimensions
    from cimlib.targeting import list_rulesets, load_ruleset
    from cimlib.targeting._backtest import load_params
    from cimlib.value import load_value_params

    out: list[tuple[str, Callable[[], object]]] = [
        ("access.yaml", lambda: load_policy(h)),
        ("customer360.yaml", lambda: load_settings(h)),
        ("dimensions.yaml", lambda: load_dimensions(h)),
        ("analyses.yaml", lambda: load_analyses_params(h)),
        ("value.yaml", lambda: load_value_params(h)),
        ("churn.yaml", lambda: load_churn_params(h)),
        ("provincial.yaml", lambda: load_provincial_params(h)),
    ]
    sources = h.parameters / "sources"
    for p in sorted(sources.glob("*.yaml")) if sources.is_dir() else []:
        out.append((f"sources/{p.name}", lambda p=p: load_mapping(p, h)))
    for name in list_rulesets(h):
        out.append((f"targeting/{name}.yaml", lambda name=name: load_ruleset(name, h)))
    out.append(("targeting/_backtest.yaml", lambda: load_params(h)))
    from cimlib.reports._params import load_report, load_report_settings, report_names

    if (h.parameters / "reports").is_dir():
        out.append(("reports/settings.yaml", lambda: load_report_settings(h)))
        for name in report_names(h):
            out.append((f"reports/{name}.yaml", lambda name=name: load_report(name, h)))
    return out


def _published(h: Home) -> bool:
    from cimlib.engine import current_snapshot

    try:
        return current_snapshot(h) is not None
    except (OSError, ValueError):
        return False


def coverage_problems(home: HomeLike, dims: Dimensions, as_of: str | dt.date | None = None) -> list[Problem]:
    """The customers of a month that ``dims`` puts in no member, as data problems.

    Parameters
    ----------
    home : Home, path or None
        The installation; its published warehouse is read.
    dims : Dimensions
        The dimensions to check (the saved ones or a proposed file).
    as_of : str or date, optional
        The month (``YYYY-MM``); default the latest.

    Returns
    -------
    list of Problem
        One per dimension with uncovered customers, naming the dimension, the count and the values.
    """
    from cimlib.customer._data import resolve_as_of, snapshot
    from cimlib.segmentation import BASE_SQL, coverage_sql, prepare

    snap = snapshot(_home(home))
    d = resolve_as_of(snap, as_of)
    checked = [x for x in dims if x.kind != "period"]
    if not checked:
        return []
    # One scan counts the uncovered customers of every dimension; coverage_sql then names the values.
    counts = ", ".join(
        f"count(*) FILTER (WHERE s.customer_type IN ({_types(x)}) AND ({x.member_sql('s')}) IS NULL)"
        for x in checked
    )
    with snap.lock:
        prepare(snap.con, home)
        row = snap.con.execute(f"SELECT {counts} FROM ({BASE_SQL}) AS s", {"as_of": d}).fetchone()
    out: list[Problem] = []
    for dim, n in zip(checked, row or (), strict=False):
        if not n:
            continue
        with snap.lock:
            values = snap.con.execute(coverage_sql(dim) + " LIMIT 5", {"as_of": d}).fetchall()
        shown = ", ".join(f"{v if v is not None else 'NULL'} ({c:,})" for v, c in values)
        out.append(Problem(
            dims.path.name,
            f"{dims.path}: dimension {dim.id}: {n:,} customers of {d:%Y-%m} land in no member "
            f"(values: {shown})",
            "data",
        ))  # fmt: skip
    return out


def check_parameters(home: HomeLike = None, *, data: bool = True) -> list[Problem]:
    """Validate every file of ``parameters/`` with the loader that reads it.

    Parameters
    ----------
    home : Home, path or None
        The installation (default ``$CIM_HOME``).
    data : bool
        Also check, when a warehouse is published, that every customer of the latest month lands in
        exactly one member of every dimension.

    Returns
    -------
    list of Problem
        Empty when everything is valid.
    """
    h = _home(home)
    problems: list[Problem] = []
    dims = None
    for rel, load in _validators(h):
        try:
            got = load()
        except Exception as exc:  # every loader raises a ValueError-like error naming the file and line
            problems.append(Problem(rel, str(exc)))
            continue
        if rel == "dimensions.yaml":
            dims = got
    if data and dims is not None and _published(h):
        try:
            problems.extend(coverage_problems(h, dims))  # type: ignore[arg-type]
        except Exception as exc:  # a warehouse that cannot be read is reported, not fatal
            problems.append(Problem("dimensions.yaml", f"could not check the warehouse: {exc}", "data"))
    return problems


# ------------------------------------------------------------------------------------------------- diff
def _types(dim: Dimension) -> str:
    return ", ".join(f"'{t}'" for t in dim.applies if t in ("I", "C"))


def _scoped(dim: Dimension | None, alias: str) -> str:
    """The member of ``dim`` for rows of its customer types, NULL otherwise (or when ``dim`` is None)."""
    if dim is None:
        return "CAST(NULL AS VARCHAR)"
    member = dim.member_sql(alias)
    return f"CASE WHEN {alias}.customer_type IN ({_types(dim)}) THEN CAST(({member}) AS VARCHAR) END"


def move_sql(pairs: Sequence[tuple[str, Dimension | None, Dimension | None]], base_sql: str) -> str:
    """SQL counting, per dimension, the customers and deposit ADB of each (old member, new member) pair.

    Parameters
    ----------
    pairs : sequence of (dimension id, old Dimension or None, new Dimension or None)
        The dimensions to compare (None: the dimension is added or removed).
    base_sql : str
        A query (or relation name) with one row per customer and the base columns the dimensions read,
        ``customer_type`` and ``deposit_adb``.

    Returns
    -------
    str
        Columns ``dimension, from_member, to_member, customers, deposit_adb``; customers in neither
        version's scope are left out.
    """
    parts = []
    for dim_id, old, new in pairs:
        if not dim_id.replace("_", "").isalnum():
            raise ValueError(f"not a dimension id: {dim_id!r}")
        parts.append(
            f"SELECT '{dim_id}' AS dimension, o AS from_member, n AS to_member, count(*) AS customers, "
            f"coalesce(sum(adb), 0) AS deposit_adb FROM (SELECT {_scoped(old, 's')} AS o, "
            f"{_scoped(new, 's')} AS n, s.deposit_adb AS adb FROM base AS s) "
            "WHERE o IS NOT NULL OR n IS NOT NULL GROUP BY ALL"
        )
    return f"WITH base AS MATERIALIZED ({base_sql})\n" + "\nUNION ALL\n".join(parts)


_DIFF_COLUMNS = [
    "dimension", "change", "from_member", "to_member", "from_label", "to_label", "customers", "deposit_adb",
    "moved",
]  # fmt: skip


def move_frame(
    con: Any,
    base_sql: str,
    old: Dimensions | None,
    new: Dimensions,
    params: dict[str, Any] | None = None,
    *,
    lang: str = "en",
) -> pd.DataFrame:
    """The move matrix of every dimension that differs between ``old`` and ``new``, on connection ``con``.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection where ``base_sql`` runs.
    base_sql : str
        The segment base (:data:`cimlib.segmentation.BASE_SQL`) or any relation with its columns.
    old, new : Dimensions
        The saved and the proposed dimensions (``old`` None: every dimension is new).
    params : dict, optional
        Named parameters of ``base_sql`` (``{"as_of": date}``).
    lang : str
        Language of the member labels.

    Returns
    -------
    pandas.DataFrame
        One row per (dimension, old member, new member): ``dimension, change`` (changed, added,
        removed), ``from_member, to_member`` and their labels, ``customers``, ``deposit_adb`` and
        ``moved`` (the member differs). Rows of a dimension follow the old then the new member order.
        ``attrs["unchanged"]`` lists the dimensions skipped.
    """
    import pandas as pd

    old_items = dict(old.items) if old is not None else {}
    pairs: list[tuple[str, Any, Any]] = []
    unchanged: list[str] = []
    for dim_id in [*old_items, *(k for k in new.items if k not in old_items)]:
        o, n = old_items.get(dim_id), new.items.get(dim_id)
        if o is not None and n is not None and o.model.model_dump() == n.model.model_dump():
            unchanged.append(dim_id)
            continue
        if (o is not None and o.kind == "period") or (n is not None and n.kind == "period"):
            continue  # the month is the month: nothing moves
        pairs.append((dim_id, o, n))
    if not pairs:
        frame = pd.DataFrame(columns=_DIFF_COLUMNS)
        frame.attrs["unchanged"] = unchanged
        return frame
    from cimlib.segmentation._dimensions import BASE_SQL as full_base
    from cimlib.segmentation._dimensions import base_sql as lean_base

    reads = {d.column for p in pairs for d in p[1:] if d is not None}
    if base_sql == full_base and "contribution" not in reads:
        base_sql = lean_base(contribution=False)  # no changed dimension reads it: skip the FTP computation
    rows = con.execute(move_sql(pairs, base_sql), params or {}).fetchall()
    frame = pd.DataFrame.from_records(
        rows, columns=["dimension", "from_member", "to_member", "customers", "deposit_adb"]
    )
    for col in ("from_member", "to_member"):  # NULL is "not in the dimension": None, never NaN
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    order = {d: i for i, (d, _, _) in enumerate(pairs)}
    change = {d: "changed" if o is not None and n is not None else ("added" if o is None else "removed")
              for d, o, n in pairs}  # fmt: skip

    def rank(dim: Dimension | None, member: Any) -> int:
        ids = [m for m, _ in dim.members] if dim is not None else []
        return ids.index(member) if member in ids else len(ids)

    def label(dim: Dimension | None, member: Any) -> str:
        return "" if dim is None or member is None else dim.label_of(member, lang)

    olds = {d: o for d, o, _ in pairs}
    news = {d: n for d, _, n in pairs}
    frame["change"] = frame["dimension"].map(change)
    dims, froms, tos = list(frame["dimension"]), list(frame["from_member"]), list(frame["to_member"])
    frame["from_label"] = [label(olds[d], m) for d, m in zip(dims, froms, strict=True)]
    frame["to_label"] = [label(news[d], m) for d, m in zip(dims, tos, strict=True)]
    frame["moved"] = [f is None or t is None or f != t for f, t in zip(froms, tos, strict=True)]
    frame["customers"] = frame["customers"].astype("int64")
    frame["deposit_adb"] = frame["deposit_adb"].astype("float64")
    frame["_k"] = [
        (order[d], rank(olds[d], f), str(f), rank(news[d], t), str(t))
        for d, f, t in zip(dims, froms, tos, strict=True)
    ]
    frame = frame.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)
    frame = frame[_DIFF_COLUMNS]
    frame.attrs["unchanged"] = unchanged
    return frame


def _proposed_text(new_path_or_text: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, name to show) of a proposed file given as a path or as YAML text."""
    if isinstance(new_path_or_text, os.PathLike) or (
        isinstance(new_path_or_text, str) and "\n" not in new_path_or_text and len(new_path_or_text) < 4096
    ):
        p = Path(new_path_or_text)
        if not p.is_file():
            raise ParamsError(f"{p}: file not found")
        return p.read_text(encoding="utf-8"), str(p)
    return str(new_path_or_text), "<proposed dimensions.yaml>"


def load_proposed_dimensions(new_path_or_text: str | os.PathLike[str]) -> Dimensions:
    """Validate a proposed ``dimensions.yaml`` given as a path or as YAML text.

    Raises
    ------
    cimlib.segmentation.DimensionError
        Naming the proposed file, the dimension, the line and the problem.
    """
    from cimlib.segmentation import DimensionError, load_dimensions

    text, shown = _proposed_text(new_path_or_text)
    with tempfile.TemporaryDirectory(prefix="cim-params-") as tmp:
        p = Path(tmp) / "dimensions.yaml"
        p.write_text(text, encoding="utf-8")
        try:
            dims = load_dimensions(path=p)
        except DimensionError as exc:
            raise DimensionError(str(exc).replace(str(p), shown)) from None
    return type(dims)(dims.items, dims.version, Path(shown))


def diff_dimensions(
    home: HomeLike, new_path_or_text: str | os.PathLike[str], as_of: str | dt.date | None = None,
    *, lang: str = "en",
) -> pd.DataFrame:  # fmt: skip
    """Preview a change to ``dimensions.yaml`` before it is saved: who moves between members.

    Parameters
    ----------
    home : Home, path or None
        The installation; its saved ``dimensions.yaml`` is the old version and its published warehouse
        the data.
    new_path_or_text : path or str
        The proposed file, as a path or as YAML text.
    as_of : str or date, optional
        The month (``YYYY-MM``); default the latest.
    lang : str
        Language of the member labels.

    Returns
    -------
    pandas.DataFrame
        See :func:`move_frame`. ``attrs`` also holds ``as_of``, ``old_version`` and ``new_version``.

    Raises
    ------
    cimlib.segmentation.DimensionError
        When the proposed (or the saved) file is invalid; the message names the file, dimension and line.
    cimlib.customer._data.AsOfError
        When ``as_of`` is not a month of the warehouse.
    """
    from cimlib.customer._data import resolve_as_of, snapshot
    from cimlib.engine import connect
    from cimlib.segmentation import BASE_SQL, load_dimensions, prepare

    h = _home(home)
    new = load_proposed_dimensions(new_path_or_text)
    old = load_dimensions(h)
    d = resolve_as_of(snapshot(h), as_of)
    # A connection of its own: the shared reader runs one thread, a whole-bank scan wants them all.
    con = connect(h)
    try:
        prepare(con, h)
        frame = move_frame(con, BASE_SQL, old, new, {"as_of": d}, lang=lang)
    finally:
        con.close()
    frame.attrs.update(as_of=d.isoformat(), old_version=old.version, new_version=new.version)
    return frame


# ------------------------------------------------------------------------------------------------ apply
@dataclass(frozen=True)
class Output:
    """A stored output that parameter files feed.

    Attributes
    ----------
    name : str
        Its id (``segment_cubes``).
    description : str
        What it is and what re-running it does.
    runner : str
        The name in :data:`RUNNERS` of the function that re-builds it.
    """

    name: str
    description: str
    runner: str


#: The stored outputs, by name.
OUTPUTS: dict[str, Output] = {
    "segment_cubes": Output(
        "segment_cubes", "segment cubes of the latest month (a new folder per dimensions version)", "cubes"
    ),
    "churn_model": Output("churn_model", "the churn model, trained on the churn definition", "churn"),
}

#: Which outputs depend on which parameter files (glob patterns relative to ``parameters/``). A file
#: matching no pattern, or a pattern with no outputs, triggers nothing: rule sets and the access policy
#: are read at every request, source mappings at the next ingest, the 360 thresholds at every view.
DEPENDENCIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dimensions.yaml", ("segment_cubes",)),
    # the cube's contribution measure and bucket; contribution itself is computed when read
    ("value.yaml", ("segment_cubes",)),
    ("analyses.yaml", ()),  # provision rates and bands, read at every analysis
    ("churn.yaml", ("churn_model",)),
    ("provincial.yaml", ()),  # thresholds and costs of the provincial analyses, read at every analysis
    ("targeting/*.yaml", ()),  # lists and backtests are computed on demand
    ("access.yaml", ()),  # read at every request
    ("customer360.yaml", ()),  # read at every view
    ("sources/*.yaml", ()),  # used by the next `cim ingest`
)


def dependents(file: str) -> list[str]:
    """The outputs to re-run after ``file`` (relative to ``parameters/``) changes (:data:`DEPENDENCIES`)."""
    out: list[str] = []
    for pattern, names in DEPENDENCIES:
        if fnmatch.fnmatchcase(file, pattern):
            out.extend(n for n in names if n not in out)
    return out


def _latest_month(h: Home) -> str | None:
    from cimlib.customer._data import as_of_dates, snapshot

    dates = as_of_dates(snapshot(h))
    return f"{dates[-1]:%Y-%m}" if dates else None


def _run_cubes(h: Home) -> dict[str, Any]:
    if not _published(h):
        return {"status": "skipped", "reason": "no published warehouse"}
    month = _latest_month(h)
    build_cube = importlib.import_module("cimlib.segmentation._cube").build_cube
    info = build_cube(h, month, force=True)  # value.yaml changes keep the dimensions version
    return {"status": "rebuilt", "as_of": month, "cube": _jsonable(info)}


def _run_churn(h: Home) -> dict[str, Any]:
    if not _published(h):
        return {"status": "skipped", "reason": "no published warehouse"}
    train_model = importlib.import_module("cimlib.churn").train_model
    return _jsonable(train_model(h))


#: The functions that re-run each output (looked up at call time, so tests can replace them).
RUNNERS: dict[str, Callable[[Home], dict[str, Any]]] = {"cubes": _run_cubes, "churn": _run_churn}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    return str(value)


@dataclass
class ApplyResult:
    """What :func:`apply_parameters` did.

    Attributes
    ----------
    file : str
        The file, relative to ``parameters/``.
    user : str
        Who applied it.
    at : str
        When (UTC, ISO 8601).
    changed : bool
        False when the new file equals the saved one (nothing written, logged or re-run).
    sha256_old, sha256_new : str
        Hashes of the old (empty string when there was none) and the new file.
    diff : str
        The unified diff.
    outputs : dict
        Output name -> what re-running it did (``{"status": "rebuilt", ...}``, or ``error``).
    log : str
        The change log file.
    """

    file: str
    user: str
    at: str
    changed: bool
    sha256_old: str
    sha256_new: str
    diff: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def changes_log(home: HomeLike = None) -> Path:
    """``data/state/params/changes.jsonl``: one JSON record per applied change, and per re-run."""
    return _home(home).state / "params" / "changes.jsonl"


def _relative(file: str | os.PathLike[str]) -> str:
    rel = Path(file).as_posix().removeprefix("parameters/")
    parts = rel.split("/")
    if (
        not rel.endswith(".yaml") or rel.startswith("/") or any(p in ("", ".", "..") for p in parts)
        or len(parts) > 2
    ):  # fmt: skip
        raise ParamsError(
            f"{file}: expected a YAML file of parameters/, e.g. dimensions.yaml or targeting/risk.yaml"
        )
    return rel


def _validate(h: Home, rel: str, text: str) -> list[Problem]:
    """Problems of ``text`` as ``parameters/<rel>``: checked in a copy of the parameters folder."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="cim-params-") as tmp:
        params = Path(tmp) / "parameters"
        if h.parameters.is_dir():
            shutil.copytree(h.parameters, params)
        target = params / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        copy = Home(root=h.root, parameters=params)
        probs = [p for p in check_parameters(copy, data=False) if p.file == rel]
        if not probs and rel == "dimensions.yaml" and _published(h):
            from cimlib.segmentation import load_dimensions

            probs = coverage_problems(h, load_dimensions(path=target))
        return [Problem(p.file, p.message.replace(str(params), "<proposed>"), p.kind) for p in probs]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_log(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def apply_parameters(
    home: HomeLike, file: str | os.PathLike[str], new_path: str | os.PathLike[str], *, user: str
) -> ApplyResult:
    """Validate a new parameter file, save it, log the change and re-run the outputs that depend on it.

    Parameters
    ----------
    home : Home, path or None
        The installation.
    file : str or path
        The file to replace, relative to ``parameters/`` (``dimensions.yaml``, ``targeting/risk.yaml``).
    new_path : path
        The new contents.
    user : str
        Who applies the change; must be a user of ``access.yaml`` whose role has ``parameter_admin``.

    Returns
    -------
    ApplyResult
        The change and what each dependent output did (:data:`DEPENDENCIES`). A re-run that fails is
        reported in ``outputs`` (``status: error``) and logged; the saved file stays.

    Raises
    ------
    ParamsError
        An unknown user, a bad file name, or a new file that does not validate (its problems listed).
    """
    from cimlib.access import load_policy

    h = _home(home)
    rel = _relative(file)
    policy = load_policy(h)
    u = policy.user(user)
    if u is None:
        raise ParamsError(f"unknown user {user!r}: not a user of {h.parameters / 'access.yaml'}")
    if not policy.roles[u.role].parameter_admin:
        raise ParamsError(
            f"user {user!r} (role {u.role}) may not change parameters: the role needs parameter_admin in "
            f"{h.parameters / 'access.yaml'}"
        )
    src = Path(new_path)
    if not src.is_file():
        raise ParamsError(f"{src}: file not found")
    new_bytes = src.read_bytes()
    try:
        new_text = new_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{src}: not UTF-8 text") from exc
    problems = _validate(h, rel, new_text)
    if problems:
        raise ParamsError(f"{src} is not a valid {rel}: " + "; ".join(p.message for p in problems))
    target = h.parameters / rel
    old_bytes = target.read_bytes() if target.is_file() else b""
    sha_old = hashlib.sha256(old_bytes).hexdigest() if target.is_file() else ""
    sha_new = hashlib.sha256(new_bytes).hexdigest()
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    diff = "".join(difflib.unified_diff(
        old_bytes.decode("utf-8", "replace").splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"a/parameters/{rel}", tofile=f"b/parameters/{rel}",
    ))  # fmt: skip
    log = changes_log(h)
    result = ApplyResult(rel, user, at, sha_old != sha_new, sha_old, sha_new, diff, {}, str(log))
    if not result.changed:
        return result
    outputs = dependents(rel)
    _write_atomic(target, new_bytes)
    _append_log(log, {
        "event": "change", "at": at, "user": user, "file": rel, "sha256_old": sha_old, "sha256_new": sha_new,
        "diff": diff, "outputs": outputs,
    })  # fmt: skip
    for name in outputs:
        try:
            result.outputs[name] = RUNNERS[OUTPUTS[name].runner](h)
        except Exception as exc:  # the change is saved; the failed re-run is reported and logged
            result.outputs[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    if outputs:
        _append_log(log, {
            "event": "rerun", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "user": user,
            "file": rel, "sha256_new": sha_new, "outputs": result.outputs,
        })  # fmt: skip
    return result


def read_changes(home: HomeLike = None) -> list[dict[str, Any]]:
    """The records of the change log, oldest first (empty when nothing was applied)."""
    p = changes_log(home)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
