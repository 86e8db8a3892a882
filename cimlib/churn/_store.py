"""Versioned storage of fitted churn models, each beside its model card.

Layout, one folder per saved model::

    <root>/<definition>/<YYYYMMDDTHHMMSSZ>-<sha8>/
        model.skops        the fitted estimator, in skops' safe format (no pickle)
        model_card.json    the card: data window, definition, features, metrics, versions, SHA-256 …
        model_card.md      the same card for people

``root`` defaults to ``<CIM_HOME>/outputs/models/churn``. A version folder is written under a temporary
name and renamed into place, so a reader never sees half a model. Loading checks the file's SHA-256
against the card and refuses object types outside an allow-list, so a tampered or foreign file is refused
instead of run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
#: Version of the card's layout (bump when a key changes meaning).
CARD_SCHEMA = 1

#: Object types that skops does not trust by default but our estimators are made of. Anything else in a
#: model file is refused unless the caller trusts it explicitly.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "cimlib.churn._model.ChurnModel",
        "cimlib.churn._model.RuleBaseline",
        "cimlib.churn._model._to_float",
        "cimlib.churn._model._EmptyAsZero",
        "cimlib.churn._model._to_object",
        "functools.partial",
        "sklearn.utils.validation.check_array",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.compose._column_transformer.make_column_selector",
        "numpy.dtype",  # dtype objects, e.g. in a column selector of the logistic baseline
        "numpy.number",  # the abstract number type a column selector matches
    }
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}(-\d+)?$")


class ModelIntegrityError(ValueError):
    """A stored model does not match its card, or holds object types that are not trusted."""


@dataclass(frozen=True)
class ModelVersion:
    """One saved model.

    Attributes
    ----------
    path : Path
        The version folder.
    definition : str
        The churn definition it predicts.
    version : str
        The folder name, ``<YYYYMMDDTHHMMSSZ>-<sha8>``.
    created : str
        ISO 8601 UTC time of saving.
    sha256 : str
        Digest of the model file.
    """

    path: Path
    definition: str
    version: str
    created: str
    sha256: str


def default_root() -> Path:
    """``<CIM_HOME>/outputs/models/churn`` (see :func:`cimlib.config.get_home`)."""
    from cimlib.config import get_home

    return get_home().outputs / "models" / "churn"


def _check_name(definition: str) -> str:
    if not isinstance(definition, str) or not _NAME.match(definition):
        raise ValueError(
            f"definition name {definition!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )
    return definition


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN/inf as ``null``, paths and dates as text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _packages() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("cimlib", "scikit-learn", "numpy", "pandas", "skops"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_version() -> str | None:
    """The git commit of the code (``<sha>`` or ``<sha>-dirty``), from ``$CIM_CODE_VERSION`` if set.

    Returns
    -------
    str or None
        ``None`` when the code is not in a git work tree.
    """
    env = os.environ.get("CIM_CODE_VERSION")
    if env:
        return env
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def _estimator_info(model: Any) -> dict[str, Any]:
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    info: dict[str, Any] = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": {
            k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
            for k, v in params.items()
        },
    }
    for attr in ("classes_", "n_features_in_", "n_iter_", "categorical_features_"):
        if hasattr(model, attr):
            info[attr.rstrip("_")] = getattr(model, attr)
    return info


def save_model(
    model: Any,
    card: Mapping[str, Any] | None,
    folder: str | os.PathLike[str],
    *,
    created: datetime | None = None,
) -> Path:
    """Save a fitted model and its card in a new version folder.

    Parameters
    ----------
    model : fitted estimator
        Usually a :class:`~cimlib.churn._model.ChurnModel`.
    card : mapping or None
        What the caller knows, any JSON-able keys, e.g. ``definition`` (the name) and
        ``definition_params``, ``data_window``, ``features`` (list of names, or name -> description),
        ``train_months``/``test_months``, ``metrics`` (``{"churn_model": evaluate(...), "rule": ...}``) or a
        ``backtest`` block holding them, ``notes``. Saving adds ``schema``, ``version``, ``created``,
        ``model_file``, ``format``, ``sha256``, ``estimator`` (class, parameters, classes …),
        ``packages`` and ``code_version``; ``definition`` defaults to the folder's name and ``features``
        to the model's ``feature_names_in_``. NaN and infinity are written as ``null``.
    folder : path
        The definition's folder, e.g. ``<CIM_HOME>/outputs/models/churn/<definition>`` (see
        :func:`model_folder`); created if needed. Its name must be a plain name (letters, digits,
        ``_ - .``).
    created : datetime, optional
        Time stamp (default now, UTC).

    Returns
    -------
    Path
        The new version folder ``<folder>/<YYYYMMDDTHHMMSSZ>-<sha8>``.
    """
    import skops.io as sio

    folder = Path(folder)
    _check_name(folder.name)
    card = dict(card or {})
    folder.mkdir(parents=True, exist_ok=True)
    created = (created or datetime.now(UTC)).astimezone(UTC)
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        model_path = tmp / MODEL_FILE
        sio.dump(model, model_path)
        digest = _sha256(model_path)
        version = f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}"
        target = folder / version
        n = 1
        while target.exists():
            n += 1
            target = folder / f"{version}-{n}"
        names = getattr(model, "feature_names_in_", None)
        full = {
            "schema": CARD_SCHEMA,
            "definition": card.pop("definition", folder.name),
            "version": target.name,
            "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **card,
            "model_file": MODEL_FILE,
            "format": "skops",
            "sha256": digest,
            "estimator": _estimator_info(model),
            "packages": _packages(),
            "code_version": code_version(),
        }
        if "features" not in card and names is not None:
            full["features"] = list(names)
        full = _jsonable(full)
        (tmp / CARD_JSON).write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / CARD_MD).write_text(render_card(full), encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved churn model %s", target)
    return target


def model_folder(definition: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of one definition's models: ``<root>/<definition>``.

    Parameters
    ----------
    definition : str
        The churn definition's name.
    root : path, optional
        Models folder; default :func:`default_root`.

    Returns
    -------
    Path
        The folder (not created).
    """
    return (Path(root) if root is not None else default_root()) / _check_name(definition)


def load_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a version folder's ``model_card.json``.

    Parameters
    ----------
    path : path
        The version folder.

    Returns
    -------
    dict
        The card.
    """
    return json.loads((Path(path) / CARD_JSON).read_text(encoding="utf-8"))


def load_model(path: str | os.PathLike[str], *, trusted: Iterable[str] = ()) -> tuple[Any, dict[str, Any]]:
    """Load a saved model after checking it.

    The model file's SHA-256 must equal the card's, and every object type skops does not trust by default
    must be in :data:`TRUSTED_TYPES` or ``trusted``; nothing is unpickled.

    Parameters
    ----------
    path : path
        The version folder (e.g. from :func:`latest`).
    trusted : iterable of str
        Further fully qualified type names to allow (for estimators other than ours).

    Returns
    -------
    tuple
        ``(model, card)``: the fitted estimator and its card.

    Raises
    ------
    ModelIntegrityError
        When the digest differs from the card's or the file holds an untrusted type.
    FileNotFoundError
        When the folder has no model or card.
    """
    import skops.io as sio

    folder = Path(path)
    card = load_card(folder)
    model_path = folder / str(card.get("model_file", MODEL_FILE))
    if model_path.resolve().parent != folder.resolve():
        raise ModelIntegrityError(f"model_file {card.get('model_file')!r} points outside {folder}")
    digest = _sha256(model_path)
    if digest != card.get("sha256"):
        raise ModelIntegrityError(
            f"{model_path} has SHA-256 {digest[:12]}…, but its card says {str(card.get('sha256'))[:12]}…: "
            "the file was changed after saving; refusing to load it"
        )
    try:
        untrusted = sio.get_untrusted_types(file=model_path)
    except Exception as exc:  # a corrupt archive
        raise ModelIntegrityError(f"{model_path} is not a readable skops file: {exc}") from exc
    allowed = TRUSTED_TYPES | set(trusted)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise ModelIntegrityError(f"{model_path} holds types that are not trusted: {', '.join(refused)}")
    return sio.load(model_path, trusted=list(untrusted)), card


def list_versions(folder: str | os.PathLike[str]) -> list[ModelVersion]:
    """Saved versions in a definition's folder, oldest first.

    Parameters
    ----------
    folder : path
        The definition's folder (see :func:`model_folder`).

    Returns
    -------
    list of ModelVersion
        Complete version folders only (with a readable card); an empty list when there is none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out: list[ModelVersion] = []
    for sub in folder.iterdir():
        if not (sub.is_dir() and _VERSION.match(sub.name) and (sub / CARD_JSON).is_file()):
            continue
        try:
            card = load_card(sub)
        except (OSError, json.JSONDecodeError):
            log.warning("skipping %s: unreadable model card", sub)
            continue
        definition = card.get("definition")
        out.append(
            ModelVersion(
                path=sub,
                definition=str(definition if isinstance(definition, str) else folder.name),
                version=sub.name,
                created=str(card.get("created", "")),
                sha256=str(card.get("sha256", "")),
            )
        )
    return sorted(out, key=lambda v: (v.created, v.version))


def latest_model(folder: str | os.PathLike[str]) -> Path | None:
    """The newest version folder in a definition's folder.

    Parameters
    ----------
    folder : path
        The definition's folder (see :func:`model_folder`).

    Returns
    -------
    Path or None
        The version folder to pass to :func:`load_model`; ``None`` when nothing was saved.
    """
    versions = list_versions(folder)
    return versions[-1].path if versions else None


# -- Markdown rendering -------------------------------------------------------------------------------------

_METRIC_COLS = ("roc_auc", "pr_auc", "top_decile_lift", "brier", "base_rate", "n", "positives")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | dict):
        return "`" + json.dumps(value, ensure_ascii=False) + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _kv_table(mapping: Mapping[str, Any]) -> list[str]:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in mapping.items()]
    return lines


def _metrics_section(metrics: Any) -> list[str]:
    if isinstance(metrics, Mapping) and metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        cols = [c for c in _METRIC_COLS if any(c in v for v in metrics.values())]
        lines = ["| scorer | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
        for name, vals in metrics.items():
            lines.append(f"| {name} | " + " | ".join(_cell(vals.get(c)) for c in cols) + " |")
        notes = [f"- {name}: {vals['note']}" for name, vals in metrics.items() if vals.get("note")]
        return lines + (["", *notes] if notes else [])
    if isinstance(metrics, Mapping):
        return _kv_table(metrics)
    return [_cell(metrics)]


def _records_table(records: Any) -> list[str]:
    if not isinstance(records, list) or not records or not isinstance(records[0], Mapping):
        return [_cell(records)]
    cols = list(records[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in records]
    return lines


def _features_list(features: Any) -> list[str]:
    if isinstance(features, Mapping):
        return [f"{len(features)} features:", "", *[f"- `{k}`: {_cell(v)}" for k, v in features.items()]]
    if isinstance(features, list):
        return [f"{len(features)} features:", "", *[f"- `{f}`" for f in features]]
    return [_cell(features)]


def render_card(card: Mapping[str, Any]) -> str:
    """The model card as Markdown.

    Parameters
    ----------
    card : mapping
        A card as written by :func:`save_model`.

    Returns
    -------
    str
        Markdown: summary (version, dates, code version, digest), definition and its parameters, data,
        backtest (months, counts, one metrics row per scorer, the decile and calibration tables when
        present), top-level metrics, final model, features, estimator, packages, and any other key.
    """
    shown: set[str] = set()

    def take(*keys: str) -> dict[str, Any]:
        shown.update(keys)
        return {k: card[k] for k in keys if k in card}

    definition = card.get("definition")
    if isinstance(definition, Mapping):
        name, params = definition.get("name", "?"), definition.get("params")
    else:
        name, params = str(definition), card.get("definition_params")
    shown.update({"definition", "definition_params", "schema"})
    lines = [f"# Churn model card: {name}", ""]
    summary = take(
        "version", "created", "code_version", "snapshot_id", "trained_by", "format", "model_file", "sha256"
    )
    lines += ["## Summary", "", *_kv_table(summary), ""]
    if isinstance(params, Mapping) and params:
        lines += ["## Definition", "", *_kv_table(params), ""]
    data = take("data_window", "observation_months", "train_months", "test_months", "n_train", "n_test")
    if data:
        lines += ["## Data", "", *_kv_table(data), ""]
    backtest = take("backtest").get("backtest")
    if isinstance(backtest, Mapping):
        plain = {k: v for k, v in backtest.items() if k not in ("metrics", "deciles", "calibration")}
        lines += ["## Backtest", "", *_kv_table(plain), ""]
        if backtest.get("metrics"):
            lines += ["### Metrics on the test months", "", *_metrics_section(backtest["metrics"]), ""]
        if backtest.get("deciles"):
            lines += ["### Lift and capture by decile", "", *_records_table(backtest["deciles"]), ""]
        if backtest.get("calibration"):
            lines += ["### Calibration", "", *_records_table(backtest["calibration"]), ""]
    metrics = take("metrics").get("metrics")
    if metrics:
        lines += ["## Metrics", "", *_metrics_section(metrics), ""]
    final = take("final_model").get("final_model")
    if isinstance(final, Mapping):
        lines += ["## Final model", "", *_kv_table(final), ""]
    features = take("features").get("features")
    if features:
        lines += ["## Features", "", *_features_list(features), ""]
    est = take("estimator").get("estimator")
    if isinstance(est, Mapping):
        lines += ["## Estimator", "", f"`{est.get('class')}`", ""]
        if est.get("params"):
            lines += [*_kv_table(est["params"]), ""]
        fitted = {k: v for k, v in est.items() if k not in ("class", "params")}
        if fitted:
            lines += [*_kv_table(fitted), ""]
    packages = take("packages").get("packages")
    if packages:
        lines += ["## Packages", "", *_kv_table(packages), ""]
    rest = {k: v for k, v in card.items() if k not in shown}
    if rest:
        lines += ["## Other", "", *_kv_table(rest), ""]
    return "\n".join(lines)
