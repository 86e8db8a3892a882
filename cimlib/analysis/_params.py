"""``parameters/provincial.yaml``: the thresholds and rates of the provincial analyses, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access._yamlfile import load_yaml_model
from cimlib.config import Home, get_home

PARAMS_FILE = "provincial.yaml"
#: The customer channels (``SYSTEM``, batch postings, is not one).
CHANNELS = ("COUNTER", "ATM", "POS", "PHONE", "ONLINE", "MOBILE")


class ProvincialParamsError(ValueError):
    """``parameters/provincial.yaml`` cannot be used: names the file, the key, the line and the problem."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TieoutParams(_M):
    """GL tie-out tolerances: a failure is above both."""

    tolerance_abs: float = Field(ge=0)
    tolerance_rel: float = Field(ge=0, le=1)


class KeyFocusParams(_M):
    """Thresholds of the key-focus list (changes against the previous month)."""

    org_change_rate: float = Field(gt=0, le=10)
    org_min_change: float = Field(ge=0)
    org_min_customer_change: int = Field(5, ge=0)
    product_change_rate: float = Field(gt=0, le=10)
    product_min_change: float = Field(ge=0)
    customer_min_change: float = Field(gt=0)
    customer_change_rate: float = Field(gt=0, le=1)
    limit: int = Field(ge=1, le=1000)


class ProductParams(_M):
    """Lifecycle stages and the affinity floor."""

    launch_months: int = Field(ge=0, le=120)
    window_months: int = Field(ge=1, le=24)
    growth_rate: float = Field(gt=0, le=10)
    decline_rate: float = Field(lt=0, ge=-1)
    min_pair_customers: int = Field(ge=1)


class UnderusedParams(_M):
    """Floors of the under-used devices and branches list."""

    trend_months: int = Field(ge=1, le=24)
    atm_min_monthly_txns: int = Field(ge=0)
    branch_min_monthly_txns: int = Field(ge=0)
    share_of_peer_median: float = Field(ge=0, le=1)


class ChannelParams(_M):
    """Cost per transaction, the digital channels and the under-used floors."""

    cost_per_txn: dict[str, float]
    digital: list[str] = Field(min_length=1)
    underused: UnderusedParams

    @model_validator(mode="after")
    def _channels(self) -> ChannelParams:
        unknown = sorted(set(self.cost_per_txn) - set(CHANNELS))
        missing = sorted(set(CHANNELS) - set(self.cost_per_txn))
        if unknown or missing:
            raise ValueError(
                f"cost_per_txn must name each of {', '.join(CHANNELS)} once"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        if any(v < 0 for v in self.cost_per_txn.values()):
            raise ValueError("cost_per_txn: a cost cannot be negative")
        bad = sorted(set(self.digital) - set(CHANNELS))
        if bad:
            raise ValueError(f"digital: unknown channels {bad}; expected some of {', '.join(CHANNELS)}")
        if "COUNTER" in self.digital:
            raise ValueError("digital: COUNTER is the channel customers migrate from")
        return self


class PerformanceParams(_M):
    """League-table settings."""

    min_customers_ranked: int = Field(ge=0)


class ProvincialParams(_M):
    """``parameters/provincial.yaml``."""

    version: Literal[1]
    tieout: TieoutParams
    key_focus: KeyFocusParams
    product: ProductParams
    channel: ChannelParams
    performance: PerformanceParams


def provincial_path(home: Home | str | None = None) -> Path:
    """``parameters/provincial.yaml`` of the installation."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.parameters / PARAMS_FILE


def load_provincial_params(home: Home | str | None = None, path: Path | None = None) -> ProvincialParams:
    """Load and validate ``parameters/provincial.yaml`` (or ``path``).

    Parameters
    ----------
    home : Home, str or None
        The installation (default ``$CIM_HOME``).
    path : Path, optional
        Another file to validate (a preview before saving).

    Returns
    -------
    ProvincialParams

    Raises
    ------
    ProvincialParamsError
        Naming the file, the key, the line and the problem.
    """
    model, _ = load_yaml_model(path or provincial_path(home), ProvincialParams, ProvincialParamsError)
    return model
