"""Who sees what: principals, Datalog read and write rules, scopes, and ``explain``.

Pure functions over database values: ``parse_policy`` (EDN text or data, checked), ``open_view`` /
``visible_datoms`` / ``filter_for`` (what a principal's replica holds), ``check_write`` (may a
principal commit a transaction), ``explain`` (which rule made an entity visible, or why not), and
``parse_tokens`` (token -> principal). See docs/security.md.
"""

from .explain import Explanation, Failure, explain, explain_rule
from .maintain import Unbounded, change_scopes, diff, route, rule_deltas
from .principals import parse_principal, parse_tokens, principal_for
from .spec import Policy, PolicyError, Scope, parse_policy, principal_args
from .visibility import View, datom_visible, filter_for, open_view, view_datoms, visible_datoms
from .writes import FORBIDDEN, check_write, refused, transact_as, tx_datoms

__all__ = [
    "FORBIDDEN", "Explanation", "Failure", "Policy", "PolicyError", "Scope", "Unbounded", "View", "change_scopes",
    "check_write", "datom_visible", "diff", "explain", "explain_rule", "filter_for", "open_view", "parse_policy",
    "parse_principal", "parse_tokens", "principal_args", "principal_for", "refused", "route", "rule_deltas",
    "transact_as", "tx_datoms", "view_datoms", "visible_datoms",
]
