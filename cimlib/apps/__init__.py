"""Voila apps: widget logic, unit-tested without a browser; ``notebooks/apps`` only calls in."""

from cimlib.apps._identity import principal_from_request
from cimlib.apps.customer_360 import CustomerApp, customer_360_app, denied_view, requested_customer, warm_up
from cimlib.apps.segment_explorer import SegmentApp, segment_explorer_app
from cimlib.apps.segment_explorer import warm_up as segment_warm_up
from cimlib.apps.target_search import TargetApp, adhoc_ruleset, target_search_app
from cimlib.apps.target_search import warm_up as target_warm_up

__all__ = [
    "CustomerApp",
    "SegmentApp",
    "TargetApp",
    "adhoc_ruleset",
    "customer_360_app",
    "denied_view",
    "principal_from_request",
    "requested_customer",
    "segment_explorer_app",
    "segment_warm_up",
    "target_search_app",
    "target_warm_up",
    "warm_up",
]
