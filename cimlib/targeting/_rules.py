"""Rule sets: ``parameters/targeting/*.yaml``, validated and compiled on load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access._yamlfile import YamlProblem, load_yaml_model, problem
from cimlib.config import get_home
from cimlib.targeting import _catalogue as K
from cimlib.targeting._language import Compiled, RuleError, compile_expression, suggest

FAMILIES = ("key", "event", "abnormal", "risk")
SEVERITIES = ("low", "medium", "high")
SEVERITY_RANK = {s: i + 1 for i, s in enumerate(SEVERITIES)}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
FORMATS = ("money", "number", "int", "pct", "ratio", "date", "label", "text")
_ID = r"^[a-z][a-z0-9_]{1,47}$"


class RuleSetError(ValueError):
    """A rule set file that cannot be loaded: names the file, the key or rule, and the line."""


class Text(BaseModel):
    """A text in both languages."""

    model_config = ConfigDict(extra="forbid")
    en: str = Field(min_length=1, max_length=300)
    zh: str = Field(min_length=1, max_length=300)


class RuleModel(BaseModel):
    """One rule of a rule set file."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    name: Text
    customer_type: Literal["I", "C"]
    family: Literal["key", "event", "abnormal", "risk"] | None = None
    severity: Literal["low", "medium", "high"] = "medium"
    condition: str = Field(min_length=1, max_length=2000)
    output: list[str] = Field(default_factory=list, max_length=12)
    reason: Text
    enabled: bool = True


class RuleSetModel(BaseModel):
    """A rule set file."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    name: Text
    family: Literal["key", "event", "abnormal", "risk"] | None = None
    description: str = ""
    rules: list[RuleModel] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _unique(self) -> RuleSetModel:
        seen: set[str] = set()
        for i, r in enumerate(self.rules):
            if r.id in seen:
                raise ValueError(f"rules[{i}]: rule id {r.id!r} is used twice")
            seen.add(r.id)
            if r.family is None and self.family is None:
                raise ValueError(f"rules[{i}] ({r.id}): no family (set it on the rule or the rule set)")
        return self


@dataclass
class Placeholder:
    """One ``{...}`` of a reason template, compiled to a value column."""

    text: str
    column: str
    fmt: str
    compiled: Compiled


@dataclass
class Rule:
    """A loaded, compiled rule."""

    id: str
    name: dict[str, str]
    customer_type: str
    family: str
    severity: str
    condition: str
    output: list[str]
    reason: dict[str, str]
    compiled: Compiled
    placeholders: dict[str, Placeholder] = field(default_factory=dict)  # placeholder text -> compiled
    ruleset: str = ""


@dataclass
class RuleSet:
    """A loaded rule set: its rules compiled, in file order."""

    name: str
    title: dict[str, str]
    description: str
    path: Path
    rules: list[Rule]

    def rule(self, rule_id: str) -> Rule:
        """The rule ``rule_id``.

        Raises
        ------
        KeyError
            With a suggestion when there is no such rule.
        """
        for r in self.rules:
            if r.id == rule_id:
                return r
        hint = suggest(rule_id, [r.id for r in self.rules])
        raise KeyError(
            f"rule set {self.name} has no rule {rule_id!r}" + (f"; did you mean {hint!r}?" if hint else "")
        )

    def select(self, rule_ids: list[str] | None) -> list[Rule]:
        """The rules ``rule_ids`` (all rules when None)."""
        return list(self.rules) if not rule_ids else [self.rule(r) for r in rule_ids]


def targeting_dir(home: object = None) -> Path:
    """``parameters/targeting`` of the installation."""
    from cimlib.config import Home

    h = home if isinstance(home, Home) else get_home(home)  # type: ignore[arg-type]
    return h.parameters / "targeting"


def list_rulesets(home: object = None) -> list[str]:
    """The names of the rule sets in ``parameters/targeting`` (file names without ``.yaml``)."""
    d = targeting_dir(home)
    return sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")) if d.is_dir() else []


def _default_format(c: Compiled) -> str:
    kind = c.type.split(":")[0]
    if kind == "date":
        return "date"
    if kind == "code":
        return "label"
    if kind == "number":
        return c.fmt or ("money" if c.money else "number")
    return "text"


def compile_rule(
    m: RuleModel, family: str, *, index: int, ruleset: str = "", file: str | None = None
) -> Rule:
    """Compile one rule model: its condition, its output columns and its reason placeholders.

    Raises
    ------
    RuleError
        Located at the file, the rule id and the field (``condition``, ``output[i]``, ``reason.en``).
    """
    prefix = f"r{index}_"
    try:
        comp = compile_expression(m.condition, m.customer_type, prefix=prefix)
    except RuleError as e:
        raise e.located(file=file, rule_id=m.id, field="condition") from None
    allowed = K.indicators_for(m.customer_type)
    for i, col in enumerate(m.output):
        if col not in allowed:
            raise RuleError(
                f"unknown output column {col!r}",
                suggestion=suggest(col, allowed),
                file=file,
                rule_id=m.id,
                field=f"output[{i}]",
            )
    match_alias = comp.collections[0].alias if comp.collections else None
    placeholders: dict[str, Placeholder] = {}
    for lang in ("en", "zh"):
        template = getattr(m.reason, lang)
        for k, hit in enumerate(_PLACEHOLDER.finditer(template)):
            inner = hit.group(1)
            expr, _, fmt = inner.partition("|")
            expr, fmt = expr.strip(), fmt.strip()
            if inner in placeholders:
                continue
            if fmt and fmt not in FORMATS:
                raise RuleError(
                    f"unknown format {fmt!r} in {{{inner}}} (formats: {', '.join(FORMATS)})",
                    suggestion=suggest(fmt, FORMATS),
                    file=file,
                    rule_id=m.id,
                    field=f"reason.{lang}",
                )
            try:
                value = compile_expression(
                    expr, m.customer_type, prefix=prefix, want="value", match_alias=match_alias, into=comp
                )
            except RuleError as e:
                raise e.located(file=file, rule_id=m.id, field=f"reason.{lang} {{{inner}}}") from None
            col = f"{prefix}v{len(placeholders)}"
            placeholders[inner] = Placeholder(inner, col, fmt or _default_format(value), value)
            del k
    return Rule(
        m.id,
        m.name.model_dump(),
        m.customer_type,
        m.family or family,
        m.severity,
        m.condition,
        list(m.output),
        m.reason.model_dump(),
        comp,
        placeholders,
        ruleset,
    )


def load_ruleset(name_or_path: str | Path, home: object = None) -> RuleSet:
    """Load, validate and compile a rule set.

    Parameters
    ----------
    name_or_path : str or Path
        A rule set name in ``parameters/targeting`` (``events``) or a path to a YAML file.
    home : Home or path, optional
        The installation.

    Returns
    -------
    RuleSet

    Raises
    ------
    RuleSetError
        Unknown rule set (with a suggestion), YAML or schema problems (file, key, line).
    RuleError
        A rule that does not compile (file, rule id, field and position).
    """
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        names = list_rulesets(home)
        if str(name_or_path) not in names:
            hint = suggest(str(name_or_path), names)
            raise RuleSetError(
                f"no rule set {str(name_or_path)!r} in {targeting_dir(home)} "
                f"(rule sets: {', '.join(names) or 'none'})" + (f"; did you mean {hint!r}?" if hint else "")
            )
        p = targeting_dir(home) / f"{name_or_path}.yaml"
    model, node = load_yaml_model(p, RuleSetModel, RuleSetError)
    rules = []
    for i, rm in enumerate(model.rules):
        if not rm.enabled:
            continue
        try:
            rules.append(
                compile_rule(rm, rm.family or model.family or "", index=i, ruleset=p.stem, file=str(p))
            )
        except RuleError as e:
            line = _rule_line(node, i, e.field)
            raise (RuleError(
                e.message, expression=e.expression, position=e.position, suggestion=e.suggestion,
                file=f"{p} (line {line})" if line else str(p), rule_id=e.rule_id, field=e.field,
            )) from None  # fmt: skip
    return RuleSet(p.stem, model.name.model_dump(), model.description, p, rules)


def adhoc_ruleset(condition: str, customer_type: str, *, name: str = "adhoc") -> RuleSet:
    """A one-rule set from an ad-hoc condition (the CLI's ``--condition`` and the app's builder).

    Parameters
    ----------
    condition : str
        A condition of the rule language.
    customer_type : {"I", "C"}
        Individual or corporate customers.
    name : str
        The rule id (and rule set name).

    Returns
    -------
    RuleSet
        One rule whose output columns are the indicators the condition reads (at most 12).

    Raises
    ------
    RuleError
        When the condition does not compile: reported as the user's condition (position and "did you
        mean"), not as a rule of a file.
    """
    text = (condition or "").strip()
    if not text:
        raise RuleError("the condition is empty", expression="")
    if customer_type not in ("I", "C"):
        raise ValueError(f"customer_type must be 'I' or 'C', not {customer_type!r}")
    model = RuleModel(
        id=name,
        name=Text(en="Ad-hoc condition", zh="临时条件"),
        customer_type=customer_type,  # type: ignore[arg-type]
        severity="medium",
        condition=text[:2000],
        reason=Text(en="matches the condition", zh="符合条件"),
    )
    try:
        rule = compile_rule(model, "adhoc", index=0, ruleset=name)
    except RuleError as e:
        raise RuleError(
            e.message, expression=e.expression, position=e.position, suggestion=e.suggestion
        ) from None
    rule.output = [n for n in rule.compiled.base if n != "customer_type"][:12]  # what the condition reads
    return RuleSet(name, {"en": "Ad-hoc condition", "zh": "临时条件"}, text, Path(name), [rule])


def _rule_line(node: yaml.Node | None, index: int, field_name: str) -> int | None:
    from cimlib.access._yamlfile import _line_of

    key = field_name.split(".")[0].split("[")[0].split(" ")[0]
    return _line_of(node, ["rules", index, key])


__all__ = [
    "FAMILIES",
    "SEVERITIES",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "YamlProblem",
    "list_rulesets",
    "load_ruleset",
    "problem",
]
