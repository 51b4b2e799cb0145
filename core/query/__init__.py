"""Datalog ``q``: Datomic's and DataScript's query language over database values.

``q(query, *inputs)`` parses (and caches) the query, binds the inputs named by ``:in`` (default
``[$]``), evaluates the where clauses with a cost-based greedy planner over the indexes, and shapes
the result as the find spec says. Modules, one concern each: ``parser`` (text/data -> ``Query``),
``builtins`` (functions, predicates, aggregates), ``planner`` (clause order), ``engine`` (relations,
patterns, joins, ``not``/``or``), ``rules`` (semi-naive evaluation of rules), ``find`` (results),
``sources`` (what a pattern reads), ``relation`` (relations and joins).
"""

from __future__ import annotations

import random as _random
from typing import Any

from ..db import DB
from ..errors import QueryError
from .engine import Env, add_input, bind_values, solve
from .find import collect
from .parser import (
    DEFAULT_SRC,
    BindIgnore,
    InPatternName,
    InRules,
    InSrc,
    Query,
    clear_query_cache,
    parse_query,
    parse_rules,
)
from .relation import Rel
from .sources import make_source

__all__ = ["Query", "clear_query_cache", "parse_query", "parse_rules", "q"]


def _rng(random: Any, inputs: tuple) -> _random.Random | None:
    if random is None:
        for x in inputs:
            if isinstance(x, _random.Random):
                return x
        return None
    if isinstance(random, _random.Random):
        return random
    if isinstance(random, int) and not isinstance(random, bool):
        return _random.Random(random)
    raise TypeError(f"random must be a random.Random or an int seed, got {type(random).__name__}")


def _distinct(rows: list) -> list:
    if len(rows) < 2:
        return rows
    try:
        return list(set(rows))
    except TypeError:  # unhashable input values (a pull pattern, a list): keep them as given
        return rows


def q(query: Any, *inputs: Any, random: _random.Random | int | None = None) -> Any:
    """Run a Datalog query against ``inputs`` (databases, collections, values, rules).

    ``query`` is EDN text (``'[:find ?e :where [?e :person/name "Ivan"]]'``, vector or map form) or
    the same structure as Python data (``{"find": ["?e"], "where": [["?e", "person/name", "Ivan"]]}``).
    ``inputs`` match ``:in`` in order (default ``:in $``): a database or a collection of tuples for
    ``$``/``$name``, rules (EDN text or data) for ``%``, values for bindings (``?x``, ``[?x ...]``,
    ``[?a ?b]``, ``[[?a ?b]]``), callables for function variables. ``random`` (a ``random.Random``
    or a seed) is the randomness of ``rand``, ``rand-int``, ``sample`` and the ``rand`` aggregate.

    Raises ``QueryError``: ``query/syntax`` for a malformed query, ``query/inputs`` for the wrong
    number of inputs, ``db.error/insufficient-binding`` for a predicate, function or ``not`` whose
    variables nothing binds, ``query/unknown-function`` / ``query/unknown-rule``, ``query/fn-error``
    when a function fails, ``query/binding`` when a value doesn't fit its binding form.
    """
    pq = parse_query(query)
    bindings = pq.inputs
    if not bindings and not pq.in_given and len(inputs) == 1 and isinstance(inputs[0], DB) \
            and inputs[0].flavor == "datomic":
        bindings = (InSrc(DEFAULT_SRC),)  # Datomic's :in defaults to $ whatever the query reads
    if len(inputs) != len(bindings):
        word = "Too few" if len(inputs) < len(bindings) else "Extra"
        expected = " ".join(map(repr, bindings))
        raise QueryError("query/inputs", f"{word} inputs passed, expected: [{expected}], got: {len(inputs)}",
                         {"expected": len(bindings), "got": len(inputs)})
    sources: dict[str, Any] = {}
    rules = None
    values: dict[str, Any] = {}
    rels: list[Rel] = []
    for b, val in zip(bindings, inputs):
        t = type(b)
        if t is InSrc:
            try:
                sources[b.src.name] = make_source(val)
            except TypeError as err:
                raise QueryError("query/inputs", f"Input {b.src.name}: {err}", {"source": b.src.name}) from err
        elif t is InRules:
            rules = parse_rules(val)
        elif t is InPatternName:
            values[b.name] = val
        elif t is BindIgnore:
            continue
        else:
            vars = b.vars()
            rows = bind_values(b, val, pq.form)
            if len(set(vars)) != len(vars):
                firsts = {}
                keep = []
                for i, v in enumerate(vars):
                    if v not in firsts:
                        firsts[v] = i
                        keep.append(i)
                rows = [tuple(r[i] for i in keep) for r in rows
                        if all(r[i] == r[firsts[v]] for i, v in enumerate(vars))]
                vars = tuple(vars[i] for i in keep)
            rels = add_input(rels, Rel(vars, _distinct(rows), frozenset(vars)))
    env = Env(sources, rules, _rng(random, inputs))
    env.values = values
    rels = solve(env, rels, pq.where, "$")
    return collect(env, pq, rels)
