"""Exactly-once submission: which ``(client, seq)`` the server committed, and what it answered.

Every submission carries the client's id (stable across restarts) and a sequence number. The server
records ``(client, seq) -> (t, tempids)`` in the same durable commit as the log entry, so a
resubmission (after a reconnect, a client restart, a server crash between commit and answer) is
answered with the original ``t`` and tempids and commits nothing.

Memory is bounded per client: the newest ``keep`` (default 1000) submissions are remembered; older
ones are forgotten and the client's ``floor`` rises to the highest forgotten ``seq``. A resubmission
at or below the floor that is not remembered cannot be answered (it may have committed, it may not):
it gets ``sync/submission-expired`` and commits nothing. Above the floor and not remembered means it
never committed: it is transacted.

Pure values and functions; the shell persists the rows and floors (``record`` says what changed).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyrsistent import PMap, pmap

from .delta import Origin
from .evolve import evolve

KEEP_PER_CLIENT = 1000
"""How many submissions the server remembers per client (the newest ones)."""

EXPIRED = "sync/submission-expired"
"""The answer code for a resubmission the server no longer remembers."""

@dataclass(frozen=True, slots=True)
class Answer:
    """What a committed submission was answered with: its ``t`` and tempids (server ids)."""

    t: int
    tempids: Mapping[Any, int]


@dataclass(frozen=True, slots=True)
class ClientSubmissions:
    """One client's remembered submissions (``seqs`` sorted ascending) and its floor."""

    answers: PMap = field(default_factory=pmap)
    seqs: tuple[int, ...] = ()
    floor: int = 0


@dataclass(frozen=True, slots=True)
class Submissions:
    """Every client's remembered submissions, and which ``t`` each one committed as."""

    clients: PMap = field(default_factory=pmap)
    by_t: PMap = field(default_factory=pmap)
    keep: int = KEEP_PER_CLIENT


class _Expired:
    def __repr__(self) -> str:
        return "EXPIRED"


EXPIRED_ANSWER = _Expired()
"""``recall``'s value for a submission at or below the client's floor that is not remembered."""


def recall(subs: Submissions, client: str, seq: int) -> Answer | _Expired | None:
    """The original answer of ``(client, seq)``, ``EXPIRED_ANSWER`` if it is too old to know, or
    None if it never committed."""
    c = subs.clients.get(client)
    if c is None:
        return None
    a = c.answers.get(seq)
    if a is not None:
        return a
    return EXPIRED_ANSWER if seq <= c.floor else None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record`` changed, for the store: the row to add and, when older rows were forgotten,
    the client's new floor (rows at or below it are deleted in the same commit)."""

    client: str
    seq: int
    answer: Answer
    floor: int | None


def record(subs: Submissions, client: str, seq: int, answer: Answer) -> tuple[Submissions, Recorded]:
    """``subs`` remembering ``(client, seq) -> answer`` (forgetting the client's oldest beyond
    ``keep``), and what changed."""
    c = subs.clients.get(client) or ClientSubmissions()
    seqs = list(c.seqs)
    insort(seqs, seq)
    answers = c.answers.set(seq, answer)
    by_t = subs.by_t.set(answer.t, (client, seq))
    floor = None
    if len(seqs) > subs.keep:
        drop = seqs[: len(seqs) - subs.keep]
        seqs = seqs[len(drop):]
        am, bm = answers.evolver(), by_t.evolver()
        for s in drop:
            bm.remove(answers[s].t)
            am.remove(s)
        answers, by_t = am.persistent(), bm.persistent()
        floor = max(c.floor, drop[-1])
    c2 = ClientSubmissions(answers, tuple(seqs), c.floor if floor is None else floor)
    return evolve(subs, clients=subs.clients.set(client, c2), by_t=by_t), Recorded(client, seq, answer, floor)


def origin_at(subs: Submissions, t: int) -> Origin | None:
    """The origin of the transaction committed as ``t``, if it was a remembered submission."""
    cs = subs.by_t.get(t)
    if cs is None:
        return None
    client, seq = cs
    return Origin(client, seq, subs.clients[client].answers[seq].tempids)


def learn(subs: Submissions, rows: Iterable[tuple[str, int, int, Mapping[Any, int]]],
          floors: Mapping[str, int]) -> Submissions:
    """``subs`` with submissions another process committed (rows ``(client, seq, t, tempids)`` read
    from a shared store) and its clients' floors."""
    for client, seq, t, tempids in rows:
        if subs.clients.get(client) is None or seq not in subs.clients[client].answers:
            subs, _ = record(subs, client, seq, Answer(t, tempids))
    clients = subs.clients
    for client, floor in floors.items():
        c = clients.get(client)
        if c is not None and floor > c.floor:
            keep = tuple(x for x in c.seqs if x > floor)
            dropped = [x for x in c.seqs if x <= floor]
            by_t = subs.by_t
            answers = c.answers
            for x in dropped:
                by_t = by_t.discard(answers[x].t)
                answers = answers.discard(x)
            clients = clients.set(client, ClientSubmissions(answers, keep, floor))
            subs = evolve(subs, by_t=by_t)
        elif c is None:
            clients = clients.set(client, ClientSubmissions(floor=floor))
    return evolve(subs, clients=clients)


def submissions_from_rows(
    rows: Iterable[tuple[str, int, int, Mapping[Any, int]]],
    floors: Mapping[str, int],
    keep: int = KEEP_PER_CLIENT,
) -> Submissions:
    """The bookkeeping from stored rows ``(client, seq, t, tempids)`` and floors (at start-up)."""
    per: dict[str, dict[int, Answer]] = {}
    by_t: dict[int, tuple[str, int]] = {}
    for client, seq, t, tempids in rows:
        per.setdefault(client, {})[seq] = Answer(t, tempids)
        by_t[t] = (client, seq)
    clients = {}
    for client in set(per) | set(floors):
        answers = per.get(client, {})
        clients[client] = ClientSubmissions(pmap(answers), tuple(sorted(answers)), floors.get(client, 0))
    subs = Submissions(pmap(clients), pmap(by_t), keep)
    return subs


__all__ = [
    "EXPIRED",
    "EXPIRED_ANSWER",
    "KEEP_PER_CLIENT",
    "Answer",
    "ClientSubmissions",
    "Recorded",
    "Submissions",
    "learn",
    "origin_at",
    "recall",
    "record",
    "submissions_from_rows",
]
