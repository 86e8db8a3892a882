"""Voila apps: widget logic, unit-tested without a browser; ``notebooks/apps`` only calls in."""

from cimlib.apps._identity import principal_from_request
from cimlib.apps.customer_360 import CustomerApp, customer_360_app, denied_view, warm_up

__all__ = ["CustomerApp", "customer_360_app", "denied_view", "principal_from_request", "warm_up"]
