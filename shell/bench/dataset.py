"""DataScript's benchmark datasets, generated exactly as its benchmark suite does (same seed, same data).

The suite's seeded generator (mulberry32) is reproduced bit for bit, so our engine and DataScript
(``tests/oracle/bench_ds.js``) run on identical tx data without exchanging files.
"""

from __future__ import annotations

from typing import Any

from datsync.core import kw

_M32 = 0xFFFFFFFF

FIRST_NAMES = ("Ivan", "Petr", "Sergei", "Oleg", "Yuri", "Dmitry", "Fedor", "Denis")
LAST_NAMES = ("Ivanov", "Petrov", "Sidorov", "Kovalev", "Kuznetsov", "Voronoi")
ALIASES = ("A. C. Q. W.", "A. J. Finn", "A.A. Fair", "Aapeli", "Aaron Wolfe", "Abigail Van Buren",
           "Jeanne Phillips", "Abram Tertz", "Abu Nuwas", "Acton Bell", "Adunis")

SCHEMA: dict[str, dict[str, Any]] = {
    "id": {"db/unique": kw("db.unique/identity")},
    "follows": {"db/valueType": kw("db.type/ref"), "db/cardinality": kw("db.cardinality/many")},
    "alias": {"db/cardinality": kw("db.cardinality/many")},
}


class Mulberry32:
    """The 32-bit generator DataScript's JS benchmark uses; floats in [0, 1)."""

    def __init__(self, seed: int):
        self.state = seed & _M32

    def __call__(self) -> float:
        a = self.state = (self.state + 0x6D2B79F5) & _M32
        t = ((a ^ (a >> 15)) * (1 | a)) & _M32
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & _M32)) & _M32) ^ t
        return ((t ^ (t >> 14)) & _M32) / 4294967296

    def randint(self, n: int) -> int:
        return int(self() * n)

    def choice(self, xs: tuple) -> Any:
        return xs[self.randint(len(xs))]


class Datasets:
    """The people (20k entities, ~192k datoms) and pull (wide 4x5 tree) datasets for one seed."""

    def __init__(self, seed: int = 42):
        self.rand = Mulberry32(seed)
        self._next_eid = 0
        people = [self.random_man() for _ in range(20000)]
        for i in range(len(people) - 1, 0, -1):
            j = self.rand.randint(i + 1)
            people[i], people[j] = people[j], people[i]
        self.people = people
        self.wide_4x5 = self.wide_tx(1, 4, 5)

    def random_man(self) -> dict[str, Any]:
        r = self.rand
        name = r.choice(FIRST_NAMES)
        last = r.choice(LAST_NAMES)
        alias = [r.choice(ALIASES) for _ in range(r.randint(10))]
        self._next_eid += 1
        return {
            "db/id": str(self._next_eid),
            "name": name,
            "last-name": last,
            "full-name": f"{name} {last}",
            "alias": alias,
            "sex": r.choice(("male", "female")),
            "age": r.randint(100),
            "salary": r.randint(100000),
        }

    def wide_tx(self, id_: int, depth: int, width: int) -> list[dict[str, Any]]:
        """A tree of people ``depth`` levels deep, each following ``width`` children."""
        if depth > 0:
            children = [id_ * width + i for i in range(width)]
            me = {**self.random_man(), "db/id": str(id_), "id": id_, "follows": [str(c) for c in children]}
            out = [me]
            for c in children:
                out += self.wide_tx(c, depth - 1, width)
            return out
        return [{**self.random_man(), "db/id": str(id_)}]

    @staticmethod
    def long_tx(depth: int, width: int) -> list[dict[str, Any]]:
        """``width`` chains of ``depth`` follows each."""
        out: list[dict[str, Any]] = []
        for x in range(width):
            for y in range(depth):
                src, dst = x * (depth + 1) + y, x * (depth + 1) + y + 1
                out.append({"db/id": src + 1, "name": "Ivan", "follows": dst + 1})
                out.append({"db/id": dst + 1, "name": "Ivan"})
        return out
