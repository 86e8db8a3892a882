"""Thresholds of the 360 view: ``parameters/customer360.yaml``."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cimlib.access._yamlfile import YamlProblem, load_yaml_model, problem
from cimlib.config import Home, get_home

log = logging.getLogger(__name__)
SETTINGS_FILE = "customer360.yaml"
_SHIPPED = Path(__file__).resolve().parents[2] / "parameters" / SETTINGS_FILE


class SettingsError(ValueError):
    """``parameters/customer360.yaml`` is missing or invalid; the message names the file, key and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Events(_Strict):
    """Upcoming-event window."""

    horizon_days: int = Field(default=30, ge=1, le=366)


class Risk(_Strict):
    """Risk-flag thresholds."""

    line_utilisation_high: float = Field(default=0.9, gt=0, le=2)
    line_expiry_days: int = Field(default=30, ge=0, le=366)
    line_unused_months: int = Field(default=6, ge=1, le=36)
    value_drop_pct: float = Field(default=30, gt=0, le=100)
    value_drop_baseline_months: int = Field(default=3, ge=1, le=12)
    value_drop_min_adb: float = Field(default=10000, ge=0)
    leverage_high: float = Field(default=0.85, gt=0, le=10)


class Tier(_Strict):
    """One AUM tier: its lower bound in yuan and its labels."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,30}$")
    min: float = Field(ge=0)
    en: str
    zh: str


class Value(_Strict):
    """The value section: how many months of contribution trend, and which churn definition's scores."""

    trend_months: int = Field(default=6, ge=1, le=24)
    churn_definition: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")


class Settings(_Strict):
    """The validated contents of ``parameters/customer360.yaml``."""

    version: Literal[1] = 1
    trend_months: int = Field(default=12, ge=1, le=60)
    events: Events = Events()
    risk: Risk = Risk()
    value: Value = Value()
    tiers: list[Tier] = Field(min_length=1)

    def tier_of(self, value: float) -> Tier:
        """The tier whose band holds ``value`` (the ladder starts at 0, so there always is one)."""
        found = self.tiers[0]
        for t in self.tiers:
            if value >= t.min:
                found = t
        return found


def _check(s: Settings) -> None:
    if s.tiers[0].min != 0:
        raise YamlProblem(["tiers", 0, "min"], "the first tier must start at 0 (no gap below it)")
    for i in range(1, len(s.tiers)):
        if s.tiers[i].min <= s.tiers[i - 1].min:
            raise YamlProblem(["tiers", i, "min"], "tier lower bounds must rise (no overlaps)")
    codes = [t.code for t in s.tiers]
    if len(set(codes)) != len(codes):
        raise YamlProblem(["tiers"], "tier codes must be unique")


_cache: dict[str, tuple[tuple[int, int, int], Settings]] = {}
_lock = threading.Lock()


def load_settings(home: Home | str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate ``parameters/customer360.yaml`` (cached until the file changes).

    A parameters folder without the file (one made before the 360 existed) falls back to the shipped
    defaults.

    Raises
    ------
    SettingsError
        When the file is missing or invalid.
    """
    h = home if isinstance(home, Home) else get_home(home)
    path = h.parameters / SETTINGS_FILE
    if not path.exists() and _SHIPPED.exists():
        log.info("no %s in %s; using the shipped defaults", SETTINGS_FILE, h.parameters)
        path = _SHIPPED
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SettingsError(f"{path}: file not found") from None
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _lock:
        hit = _cache.get(str(path))
        if hit and hit[0] == stamp:
            return hit[1]
    settings, node = load_yaml_model(path, Settings, SettingsError)
    try:
        _check(settings)
    except YamlProblem as exc:
        raise problem(path, node, exc, SettingsError) from None
    with _lock:
        _cache[str(path)] = (stamp, settings)
    return settings
