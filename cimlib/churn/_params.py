"""``parameters/churn.yaml``: churn definitions, model settings and the watchlist, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cimlib.access._yamlfile import load_yaml_model
from cimlib.config import Home, get_home

#: Product lines whose attrition can be labelled, and the ``mart_customer_month`` test that one is held.
PRODUCT_LINES: dict[str, str] = {
    "DEMAND": "demand_balance > 0 OR demand_adb > 0",
    "TIME": "time_balance > 0",
    "WEALTH": "wealth_aum > 0",
    "LOAN": "n_active_loans > 0",
    "DEBIT_CARD": "n_debit_cards > 0",
    "CREDIT_CARD": "n_credit_cards > 0",
}


class ChurnParamsError(ValueError):
    """``parameters/churn.yaml`` is invalid (the message names the file, the key and the line)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Strict):
    en: str = Field(min_length=1)
    zh_CN: str = Field(min_length=1)


class _Definition(_Strict):
    name: Names
    outcome_months: int = Field(ge=1, le=12)


class HardChurn(_Definition):
    """All accounts closed: no product held at some month-end of the outcome window."""

    kind: Literal["hard"]


class ProductAttrition(_Definition):
    """The last account of a product line closed by the end of the outcome window."""

    kind: Literal["product_attrition"]
    products: list[Literal["DEMAND", "TIME", "WEALTH", "LOAN", "DEBIT_CARD", "CREDIT_CARD"]] = Field(
        min_length=1
    )


class ValueChurn(_Definition):
    """The measure at the end of the outcome window is down by ``drop`` or more against the baseline."""

    kind: Literal["value"]
    measure: Literal["deposit_adb", "aum"]
    drop: float = Field(gt=0, lt=1)
    baseline_months: int = Field(ge=1, le=12)
    min_baseline: float = Field(ge=0)


class Inactivity(_Definition):
    """No customer-initiated transaction in the last ``inactive_months`` of the outcome window."""

    kind: Literal["inactivity"]
    inactive_months: int = Field(ge=1, le=12)

    @model_validator(mode="after")
    def _fits(self) -> Inactivity:
        if self.inactive_months > self.outcome_months:
            raise ValueError("inactive_months must not exceed outcome_months")
        return self


Definition = Annotated[HardChurn | ProductAttrition | ValueChurn | Inactivity, Field(discriminator="kind")]


class BoosterParams(_Strict):
    """Hyper-parameters passed to :class:`cimlib.churn.ChurnModel` (unset ones keep its defaults)."""

    learning_rate: float | None = Field(default=None, gt=0, le=1)
    max_iter: int | None = Field(default=None, ge=1, le=5000)
    max_depth: int | None = Field(default=None, ge=1, le=32)
    max_leaf_nodes: int | None = Field(default=None, ge=2, le=1024)
    min_samples_leaf: int | None = Field(default=None, ge=1)
    l2_regularization: float | None = Field(default=None, ge=0)


class ModelSettings(_Strict):
    definition: str
    test_months: int = Field(default=2, ge=1, le=12)
    max_train_months: int = Field(default=6, ge=1, le=36)
    random_state: int = 7
    max_train_rows: int = Field(default=1_000_000, ge=1000)
    params: BoosterParams = BoosterParams()

    def estimator_params(self) -> dict[str, object]:
        """The keyword arguments of :class:`cimlib.churn.ChurnModel` these settings give."""
        return {"random_state": self.random_state, **self.params.model_dump(exclude_none=True)}


class WatchlistSettings(_Strict):
    tiers: list[str] = Field(default_factory=list)
    min_adb: float = Field(default=0, ge=0)
    min_risk_decile: int = Field(default=8, ge=1, le=10)
    value_measure: Literal["deposit_adb", "aum"] = "deposit_adb"
    reasons: int = Field(default=3, ge=1, le=10)


class ChurnParams(_Strict):
    """The whole of ``parameters/churn.yaml``."""

    version: Literal[1]
    observation_months: int = Field(ge=2, le=24)
    definitions: dict[str, Definition] = Field(min_length=1)
    model: ModelSettings
    watchlist: WatchlistSettings = WatchlistSettings()

    @model_validator(mode="after")
    def _check(self) -> ChurnParams:
        for key in self.definitions:
            if not key.replace("_", "").isalnum() or not key.islower():
                raise ValueError(f"definition id {key!r}: use lower-case letters, digits and _")
        if self.model.definition not in self.definitions:
            raise ValueError(
                f"model.definition {self.model.definition!r} is not one of the definitions "
                f"({', '.join(self.definitions)})"
            )
        for key, d in self.definitions.items():
            if isinstance(d, ValueChurn) and d.baseline_months > self.observation_months:
                raise ValueError(f"definitions.{key}.baseline_months exceeds observation_months")
        return self

    def definition(self, name: str | None = None) -> tuple[str, HardChurn | ProductAttrition | ValueChurn |
                                                           Inactivity]:
        """The definition called ``name`` (the model's when None), as ``(name, definition)``.

        Raises
        ------
        ChurnParamsError
            When there is no such definition (the message lists those there are).
        """
        key = name or self.model.definition
        if key not in self.definitions:
            raise ChurnParamsError(
                f"no churn definition {key!r} in parameters/churn.yaml; "
                f"there are: {', '.join(self.definitions)}"
            )
        return key, self.definitions[key]


def churn_path(home: Home | str | Path | None = None) -> Path:
    """``parameters/churn.yaml`` of the installation."""
    h = home if isinstance(home, Home) else get_home(home)
    return h.parameters / "churn.yaml"


def load_churn_params(home: Home | str | Path | None = None, path: Path | None = None) -> ChurnParams:
    """Load and validate ``parameters/churn.yaml`` (or ``path``).

    Parameters
    ----------
    home : Home, str, Path or None
        The installation (``$CIM_HOME`` when None).
    path : Path, optional
        Another file to read instead.

    Returns
    -------
    ChurnParams
        The validated parameters.

    Raises
    ------
    ChurnParamsError
        Naming the file, the key, the line and the problem.
    """
    model, _ = load_yaml_model(path or churn_path(home), ChurnParams, ChurnParamsError)
    return model
