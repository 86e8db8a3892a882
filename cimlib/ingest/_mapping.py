"""The source mapping: which extract file feeds which canonical table, and how to read it."""

from __future__ import annotations

import codecs
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cimlib.config import Home
from cimlib.contracts import load_codes, load_contracts

from ._errors import IngestError


class Defaults(BaseModel):
    """Reading settings shared by every file unless a file overrides them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    date_format: str = "%Y-%m-%d"
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            info = codecs.lookup(v)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {v!r}") from exc
        if info.name.startswith(("utf-16", "utf-32")):
            raise ValueError(f"encoding {v!r} is not supported (use utf-8, gbk, gb18030, latin-1, ...)")
        return v

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1 or v in "\r\n":
            raise ValueError(f"must be a single character other than a newline, got {v!r}")
        return v


class FileSpec(BaseModel):
    """One extract file of an as-of date folder and the canonical table it feeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    table: str
    encoding: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    date_format: str | None = None
    timestamp_format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="source column -> canonical column")
    codes: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical column -> {source code: canonical code}"
    )
    constants: dict[str, str] = Field(default_factory=dict, description="canonical column -> constant value")
    absent: list[str] = Field(default_factory=list, description="canonical columns loaded as NULL")

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_strings(cls, v: object) -> object:
        if isinstance(v, dict):
            return {
                str(k): ({str(a): str(b) for a, b in m.items()} if isinstance(m, dict) else m)
                for k, m in v.items()
            }
        return v

    @field_validator("constants", mode="before")
    @classmethod
    def _constants_as_strings(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k): str(c) for k, c in v.items()}
        return v


class Mapping(BaseModel):
    """A source mapping file (``parameters/sources/*.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    files: list[FileSpec]
    path: str | None = Field(default=None, exclude=True, description="where the mapping was read from")

    @model_validator(mode="after")
    def _consistent(self) -> Mapping:
        contracts = load_contracts()
        codes = load_codes()
        seen: set[str] = set()
        for i, f in enumerate(self.files):
            where = f"files[{i}] ({f.file})"
            if f.file in seen:
                raise ValueError(f"{where}: file listed twice")
            seen.add(f.file)
            if f.table not in contracts:
                raise ValueError(f"{where}: unknown table {f.table!r}")
            contract = contracts[f.table]
            names = set(contract.column_names)
            targets = list(f.columns.values())
            for src, canon in f.columns.items():
                if canon not in names:
                    raise ValueError(f"{where}: columns.{src} maps to {canon!r}, not a column of {f.table}")
            if len(set(targets)) != len(targets):
                raise ValueError(f"{where}: two source columns map to the same canonical column")
            for key, label in ((f.codes, "codes"), (f.constants, "constants")):
                for canon in key:
                    if canon not in names:
                        raise ValueError(f"{where}: {label}.{canon} is not a column of {f.table}")
            for canon in f.absent:
                if canon not in names:
                    raise ValueError(f"{where}: absent lists {canon!r}, not a column of {f.table}")
                if contract.column(canon).required:
                    raise ValueError(f"{where}: absent lists {canon!r}, a required column of {f.table}")
            for canon, cmap in f.codes.items():
                lst = contract.column(canon).codes
                if lst is None:
                    raise ValueError(f"{where}: codes.{canon}: column {canon} of {f.table} is not coded")
                for src, target in cmap.items():
                    if target not in codes[lst]:
                        raise ValueError(
                            f"{where}: codes.{canon}.{src} -> {target!r} is not in code list {lst}"
                        )
            for opt in ("encoding", "delimiter", "quote"):
                value = getattr(f, opt)
                if value is not None:
                    Defaults.model_validate({opt: value})
        return self

    def setting(self, spec: FileSpec, name: str) -> str:
        """The effective reading setting ``name`` of ``spec`` (its own, else the mapping default)."""
        value = getattr(spec, name)
        return value if value is not None else getattr(self.defaults, name)


def load_mapping(path: Path | None, home: Home) -> Mapping:
    """Read and validate a source mapping.

    Parameters
    ----------
    path : Path or None
        The mapping YAML; ``None`` means ``home.parameters / "sources/default.yaml"``.
    home : Home
        The installation.

    Returns
    -------
    Mapping
        The validated mapping.

    Raises
    ------
    IngestError
        When the file is missing, is not YAML, or does not validate; the message names the file and the
        offending key (unknown keys are rejected).
    """
    p = Path(path) if path is not None else home.parameters / "sources" / "default.yaml"
    if not p.is_file():
        raise IngestError(f"{p}: mapping file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise IngestError(f"{p}: not a valid YAML file: {exc}") from exc
    if not isinstance(data, dict):
        raise IngestError(f"{p}: expected a mapping at the top level")
    try:
        m = Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise IngestError(f"{p}: invalid mapping: {problems}") from exc
    return m.model_copy(update={"path": str(p)})
