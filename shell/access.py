"""The server's side of policies: principals from a tokens file, each session's view, the per-commit
routing that fills each session's ``delta_filter``, and the write check of submissions.

``Access`` holds the tokens (token -> principal) and the policy, both read and checked at start-up
(``datsync serve --tokens FILE --policy FILE``).
The pure work is ``datsync.core.policy``'s; this module only keeps, per session, the view it was
bootstrapped with and the routed deltas waiting for the session's filter:

- bootstrap: a session's snapshot is the database filtered by its view (``open_view`` with the scopes
  its hello's credentials ask for: ``{"token": ..., "scopes": [["team", ["red"]]]}``);
- resume: a hello with a ``t`` whose deltas since are all in memory opens the view of the database
  as of that ``t`` and routes those deltas to it (the log read then hands them out filtered), instead
  of a new snapshot;
- every commit: ``route`` over the views of the sessions at the previous ``t``; each session's filter
  hands its own delta to the session's state machine under the same ``t``;
- submissions: ``check_write`` runs in the writer, against the database the transaction applies to;
- a change of scopes while live (``scopes`` message): ``change_scopes`` on the session's view and the
  database at its ``t``; the datoms it gains or loses go out under that ``t``.

A session whose view cannot follow (a commit it was not routed, or one from another process, whose
report this process does not have) is closed: its client reconnects and bootstraps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from datsync.core import TxError, TxReport
from datsync.core.history import as_of, basis_t
from datsync.core.policy import Policy, View, change_scopes, check_write, datom_visible, open_view, route
from datsync.core.sync import Delta

log = logging.getLogger("datsync.server")


@dataclass
class SessionAccess:
    """One session's share: its principal, scopes, view (of ``db``, at ``t``) and deltas routed to it."""

    principal: Mapping[str, Any]
    scopes: Any = None
    view: View | None = None
    t: int = -1
    routed: dict[int, tuple] | None = None
    db: Any = None


class Access:
    """Tokens and policy of a server (either may be absent)."""

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]] | None = None, policy: Policy | None = None):
        self.tokens = dict(tokens or {})
        self.policy = policy

    def principal(self, token: str | None) -> dict[str, Any] | None:
        """The principal of a token of the tokens file (None: not one of them)."""
        p = self.tokens.get(token) if token is not None else None
        return dict(p) if p is not None else None

    # -- reads -----------------------------------------------------------------------------------

    def open(self, share: SessionAccess, db: Any) -> Callable[[int, str], bool]:
        """Compute the session's view of ``db`` (its bootstrap) and the snapshot's datom filter."""
        assert self.policy is not None
        policy = self.policy
        view = open_view(policy, db, share.principal, share.scopes)
        share.view, share.t, share.routed, share.db = view, basis_t(db), {}, db
        return lambda e, a: datom_visible(policy, view, e, a)

    def resume(self, share: SessionAccess, db: Any, t: int, deltas: Iterable[Delta]) -> None:
        """Open the view of a session resuming from ``t``: of ``db`` as of ``t``, then routed through
        ``deltas`` (every delta after ``t`` up to ``db``'s, in order), which wait for its filter."""
        assert self.policy is not None
        policy, before = self.policy, as_of(db, t)
        view = open_view(policy, before, share.principal, share.scopes)
        routed = {}
        for d in deltas:
            after = as_of(db, d.t)
            new, out = route(policy, before, after, d.datoms, {0: view})
            view, routed[d.t], before = new[0], tuple(out[0]), after
        share.view, share.t, share.routed, share.db = view, basis_t(before), routed, before

    def route(self, shares: Iterable[SessionAccess], delta: Delta, report: TxReport | None) -> list[SessionAccess]:
        """Route a commit to every share whose view is at ``delta.t - 1``; the shares that cannot
        follow (returned: close their sessions)."""
        assert self.policy is not None
        ready, lost = {}, []
        for i, sh in enumerate(shares):
            if sh.view is None or sh.t >= delta.t:
                continue
            if sh.t == delta.t - 1 and report is not None:
                ready[i] = sh
            else:
                sh.view = None
                lost.append(sh)
        if ready:
            views = {i: sh.view for i, sh in ready.items()}
            new, out = route(self.policy, report.db_before, report.db_after, delta.datoms, views)  # type: ignore[union-attr]
            for i, sh in ready.items():
                sh.view, sh.t, sh.db = new[i], delta.t, report.db_after  # type: ignore[union-attr]
                assert sh.routed is not None
                sh.routed[delta.t] = tuple(out[i])
        return lost

    def change(self, share: SessionAccess, scopes: Any) -> tuple:
        """Subscribe ``share`` to ``scopes`` instead, at its ``t``: the datoms it gains (asserted) or
        loses (retracted). ``PolicyError`` for an unknown scope or wrong arguments (nothing changes)."""
        assert self.policy is not None and share.view is not None
        view, datoms = change_scopes(self.policy, share.db, share.view, scopes)
        share.view, share.scopes = view, list(scopes)
        return tuple(datoms)

    @staticmethod
    def delta_filter(share: SessionAccess) -> Callable[[Any, Delta], Delta]:
        """The session's ``ServerConfig.delta_filter``: the delta routed to it for that ``t``. A delta
        it was not routed raises (the session closes rather than send what it may not see)."""
        def deliver(_principal: Any, delta: Delta) -> Delta:
            routed = share.routed.pop(delta.t, None) if share.routed is not None else None
            if routed is None:
                raise RuntimeError(f"no routed delta for t={delta.t}: reconnect to bootstrap")
            return delta if routed == delta.datoms else replace(delta, datoms=routed)
        return deliver

    # -- writes ----------------------------------------------------------------------------------

    def write_check(self, principal: Mapping[str, Any]) -> Callable[[TxReport], TxError | None] | None:
        """What the writer runs on a submission's report before committing it (None: no policy)."""
        policy = self.policy
        if policy is None:
            return None
        return lambda report: check_write(policy, principal, report)


__all__ = ["Access", "SessionAccess"]
