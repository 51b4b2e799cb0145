"""Policy benchmarks: routing a transaction to 1,000 sessions with distinct principals, each
subscribed to its team's todos, on a ~100k-datom database (the todos example's schema and policy).

The database: 100 teams of 10 users, 5 lists per team and ~47 todos per list (~24k todos, ~100k
datoms), plus a team "big" with 1,000 todos and no members. Every user has one session, subscribed
to the scope ``team`` with the user's team: about 250 entities each.

* ``policy-route-1-datom``: a todo's title changes (one datom; no rule mentions the attribute): who
  gets what, for all 1,000 sessions (``core.policy.route``).
* ``policy-route-new-todo``: a todo is added to a list (four datoms, ``todo/list`` is in the rules):
  the rules' delta finds the ten sessions of that team, which re-check one entity.
* ``policy-route-naive-100``: the same one-datom routing done naively for 100 of the sessions (the
  whole 1,000 take minutes): each session's read rule and scope re-run on the database after the
  transaction, and the difference sent. Multiply by ten for the 1,000 sessions.
* ``policy-join-250`` / ``policy-join-1000``: one user joins a second team with ~250 entities, or the
  "big" team with ~1,000: the cost follows the entities that become visible, not the database.

``python -m datsync.shell.bench.policy`` also prints p50 and p99 of single calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from datsync.core import empty_db, entid, kw, transact
from datsync.core.policy import diff, open_view, parse_policy, route

from .harness import bench

TEAMS, USERS_PER_TEAM, LISTS_PER_TEAM, TODOS_PER_LIST, BIG = 100, 10, 5, 47, 1000
INSTANT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "todos"
_STR, _REF, _BOOL = kw("db.type/string"), kw("db.type/ref"), kw("db.type/boolean")
_ONE, _MANY = kw("db.cardinality/one"), kw("db.cardinality/many")
SCHEMA = {
    "user/id": (_STR, _ONE, True), "user/name": (_STR, _ONE, False), "user/email": (_STR, _ONE, False),
    "user/password-hash": (_STR, _ONE, False), "user/teams": (_REF, _MANY, False),
    "team/name": (_STR, _ONE, True), "team/parent": (_REF, _ONE, False), "list/name": (_STR, _ONE, False),
    "list/team": (_REF, _ONE, False), "todo/title": (_STR, _ONE, False), "todo/done": (_BOOL, _ONE, False),
    "todo/list": (_REF, _ONE, False), "todo/owner": (_REF, _ONE, False),
}


@cache
def policy() -> Any:
    """The todos example's policy."""
    return parse_policy((EXAMPLE / "policy.edn").read_text())


@cache
def world() -> tuple[Any, dict[str, Any]]:
    """The database and every user's session view (built once: about a minute)."""
    schema = [{"db/ident": kw(a), "db/valueType": t, "db/cardinality": c,
               **({"db/unique": kw("db.unique/identity")} if u else {})} for a, (t, c, u) in SCHEMA.items()]
    db = transact(empty_db(None, flavor="datomic"), schema, instant=INSTANT).db_after
    for t in range(TEAMS):
        tx: list = [{"db/id": "team", "team/name": f"team{t}"}]
        for u in range(USERS_PER_TEAM):
            uid = f"u{t}-{u}"
            tx.append({"db/id": uid, "user/id": uid, "user/name": uid, "user/email": f"{uid}@example.com",
                       "user/teams": ["team"]})
        for li in range(LISTS_PER_TEAM):
            tx.append({"db/id": f"l{li}", "list/name": f"list {li}", "list/team": "team"})
            tx += [{"todo/title": f"todo {t}.{li}.{i}", "todo/done": False, "todo/list": f"l{li}",
                    "todo/owner": f"u{t}-{i % USERS_PER_TEAM}"} for i in range(TODOS_PER_LIST)]
        db = transact(db, tx, instant=INSTANT).db_after
    tx = [{"db/id": "team", "team/name": "big"}, {"db/id": "l", "list/name": "big list", "list/team": "team"}]
    tx += [{"todo/title": f"big {i}", "todo/list": "l"} for i in range(BIG - 2)]
    db = transact(db, tx, instant=INSTANT).db_after
    pol = policy()
    views = {}
    for t in range(TEAMS):
        for u in range(USERS_PER_TEAM):
            uid = f"u{t}-{u}"
            views[uid] = open_view(pol, db, {"user/id": uid}, [("team", (f"team{t}",))])
    return db, views


def _tx_datoms(report: Any) -> list:
    return [(d.e, d.a, d.v, d.added) for d in report.tx_data]


@cache
def _case(kind: str) -> tuple[Any, Any, list]:
    db, _ = world()
    if kind == "title":
        todo = next(k[0] for k in db.aevt.prefix(("todo/title",)))
        report = transact(db, [["db/add", todo, "todo/title", "renamed"]], instant=INSTANT)
    elif kind == "new-todo":
        lst = next(k[0] for k in db.aevt.prefix(("list/team",)))
        owner = entid(db, ("user/id", "u0-1"))
        report = transact(db, [{"todo/title": "new", "todo/done": False, "todo/list": lst, "todo/owner": owner}],
                          instant=INSTANT)
    else:
        team = entid(db, ("team/name", "big" if kind == "join-1000" else "team1"))
        report = transact(db, [["db/add", entid(db, ("user/id", "u0-0")), "user/teams", team]], instant=INSTANT)
    return report.db_before, report.db_after, _tx_datoms(report)


def _route(kind: str) -> Callable[[], Any]:
    def run() -> Any:
        before, after, tx = _case(kind)
        return route(policy(), before, after, tx, world()[1])
    return run


def _only(kind: str, uid: str) -> Callable[[], Any]:
    def run() -> Any:
        before, after, tx = _case(kind)
        return route(policy(), before, after, tx, {uid: world()[1][uid]})
    return run


NAIVE_SESSIONS = 100


def naive_route() -> Any:
    """Sessions' views re-derived from scratch after the transaction (read rule, scope roots, closure)
    and the difference with before sent: what routing costs without the rules' delta."""
    before, after, tx = _case("title")
    pol = policy()
    out = {}
    for uid, v in list(world()[1].items())[:NAIVE_SESSIONS]:
        new = open_view(pol, after, {"user/id": uid}, v.scopes)
        out[uid] = diff(pol, before, after, v, new, tx)
    return out


POLICY_BENCHMARKS: dict[str, Callable[[], Any]] = {
    "policy-route-1-datom": _route("title"),
    "policy-route-new-todo": _route("new-todo"),
    "policy-route-naive-100": naive_route,
    "policy-join-250": _only("join-250", "u0-0"),
    "policy-join-1000": _only("join-1000", "u0-0"),
}
"""Benchmark name -> the operation timed."""

POLICY_SETUP: dict[str, Callable[[], Any]] = {
    name: (lambda kind=kind: (world(), _case(kind))) for name, kind in (
        ("policy-route-1-datom", "title"), ("policy-route-new-todo", "new-todo"), ("policy-route-naive-100", "title"),
        ("policy-join-250", "join-250"), ("policy-join-1000", "join-1000"))
}
"""Fixtures built before timing starts."""

SLOW = frozenset({"policy-route-naive-100"})
"""Benchmarks timed once (each call takes seconds)."""


def percentiles(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``n`` single calls of ``fn``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    """Run the policy benchmarks named (all by default) and print median, p50 and p99."""
    p = argparse.ArgumentParser(prog="python -m datsync.shell.bench.policy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"benchmarks (default: all): {' '.join(POLICY_BENCHMARKS)}")
    p.add_argument("--calls", type=int, default=200, help="single calls timed for p50/p99 (default 200)")
    args = p.parse_args(argv)
    names = args.names or list(POLICY_BENCHMARKS)
    unknown = [n for n in names if n not in POLICY_BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {' '.join(unknown)}")
    t0 = time.perf_counter()
    db, views = world()
    gc.collect()
    gc.freeze()  # the database and the views live for the whole run: keep the collector off them
    sizes = sorted(len(v.visible or ()) for v in views.values())
    print(f"{len(db.eavt)} datoms, {len(views)} sessions, {sizes[len(sizes) // 2]} visible entities per session "
          f"(median); built in {time.perf_counter() - t0:.0f} s", flush=True)
    width = max(len(n) for n in names)
    print(f"{'bench':<{width}}  {'median ms':>10}  {'p50 ms':>8}  {'p99 ms':>8}")
    for name in names:
        POLICY_SETUP[name]()
        fn = POLICY_BENCHMARKS[name]
        slow = name in SLOW
        t = bench(fn, samples=1 if slow else 5, sample_ms=0 if slow else 500, warmup_ms=0 if slow else 500)
        gc.collect()
        gc.freeze()  # the harness unfreezes after its samples
        p50, p99 = percentiles(fn, 1 if slow else args.calls)
        print(f"{name:<{width}}  {t.median:10.3f}  {p50:8.3f}  {p99:8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
