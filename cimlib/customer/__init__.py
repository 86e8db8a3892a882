"""Single-customer services: search and the 360 view (individual and corporate).

Every function takes a :class:`cimlib.access.Principal`; the row scope is a condition of the query,
personal data is masked as the principal's role requires, and every call (refusals too) is written to the
audit log. See ``docs/access.md``.
"""

from cimlib.customer._data import AsOfError, warm_up
from cimlib.customer._search import SearchError, available_months, search
from cimlib.customer._settings import Settings, SettingsError, load_settings
from cimlib.customer._value import precompute_value
from cimlib.customer._view import Customer360, customer_360

__all__ = [
    "AsOfError",
    "Customer360",
    "SearchError",
    "Settings",
    "SettingsError",
    "available_months",
    "customer_360",
    "load_settings",
    "precompute_value",
    "search",
    "warm_up",
]
