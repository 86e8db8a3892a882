"""Customer value: contribution by funds transfer pricing (``parameters/value.yaml``)."""

from cimlib.value._contribution import (
    ValueParams,
    ValueParamsError,
    contribution,
    contribution_by_product,
    contribution_by_product_sql,
    contribution_sql,
    load_value_params,
)

__all__ = [
    "ValueParams",
    "ValueParamsError",
    "contribution",
    "contribution_by_product",
    "contribution_by_product_sql",
    "contribution_sql",
    "load_value_params",
]
