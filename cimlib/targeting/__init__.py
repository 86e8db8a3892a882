"""Target-customer search: a safe rule language, rule sets in ``parameters/targeting/``, lists, backtests.

A rule's condition is an expression over the customer indicators of :mod:`cimlib.targeting._catalogue`;
it is parsed with sqlglot, checked against an allow-list and compiled to SQL with bound parameters
(:func:`compile_condition`). :func:`run` returns a scoped, masked, audit-logged customer list;
:func:`counts` the hits per branch for any role; :func:`write_list` exports it safely; :func:`backtest`
shows what happened to the customers a rule found. See ``docs/targeting.md``.
"""

from cimlib.targeting._backtest import backtest, backtest_chart
from cimlib.targeting._export import ExportError, list_bytes, write_list
from cimlib.targeting._language import Compiled, RuleError, compile_condition
from cimlib.targeting._rules import Rule, RuleSet, RuleSetError, adhoc_ruleset, list_rulesets, load_ruleset
from cimlib.targeting._run import LIST_COLUMNS, counts, run

__all__ = [
    "LIST_COLUMNS",
    "Compiled",
    "ExportError",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleSetError",
    "adhoc_ruleset",
    "backtest",
    "backtest_chart",
    "compile_condition",
    "counts",
    "list_bytes",
    "list_rulesets",
    "load_ruleset",
    "run",
    "write_list",
]
