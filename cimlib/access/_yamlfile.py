"""Read a YAML parameter file into a pydantic model, with errors that name the file, the key and the line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = Sequence[str | int]


def _line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the deepest node of ``root`` that ``loc`` reaches."""
    node, line = root, (root.start_mark.line + 1) if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt, line = v, k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def key_of(loc: Loc) -> str:
    """``users[3].role`` style key path."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


class YamlProblem(Exception):
    """One problem at a key of a YAML file (raised by cross-field checks after validation)."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


#: Parsed files by (path, content digest, model): a report or an app reads the same parameter files dozens
#: of times (41 parses, 1.5 s, in one county pack at 1M customers). Reading and hashing a file is cheap next
#: to parsing and validating it, and a digest cannot miss an edit the way a coarse mtime can.
_parsed: dict[tuple[str, str, type], tuple[Any, Any]] = {}


def load_yaml_model(path: Path, model: type[M], error: type[Exception]) -> tuple[M, yaml.Node | None]:
    """Parse ``path`` and validate it against ``model``, once per content of the file (see
    :func:`_load_yaml_model`). The model is shared between callers: treat it as read-only."""
    import hashlib

    try:
        digest = hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return _load_yaml_model(path, model, error)
    key = (str(path), digest, model)
    hit = _parsed.get(key)
    if hit is None:
        hit = _load_yaml_model(path, model, error)
        if len(_parsed) > 256:
            _parsed.clear()
        _parsed[key] = hit
    return hit


def _load_yaml_model(path: Path, model: type[M], error: type[Exception]) -> tuple[M, yaml.Node | None]:
    """Parse ``path`` and validate it against ``model``.

    Parameters
    ----------
    path : Path
        The YAML file.
    model : type of pydantic.BaseModel
        The model (``extra="forbid"``).
    error : type of Exception
        Raised for every problem with a message ``FILE: KEY (line N): what was expected``.

    Returns
    -------
    (model instance, yaml node tree)
        The node tree lets later cross-field checks name lines too (see :func:`problem`).
    """
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a valid YAML file: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = [p for p in e["loc"] if isinstance(p, str | int)]
            line = _line_of(node, loc)
            where = f"{key_of(loc)}" + (f" (line {line})" if line else "")
            problems.append(f"{where}: {e['msg']}")
        raise error(f"{path}: " + "; ".join(problems)) from exc


def problem(path: Path, node: yaml.Node | None, exc: YamlProblem, error: type[Exception]) -> Exception:
    """Turn a :class:`YamlProblem` into ``error`` with the file, key and line."""
    line = _line_of(node, exc.loc)
    return error(f"{path}: {key_of(exc.loc)}" + (f" (line {line})" if line else "") + f": {exc.message}")
