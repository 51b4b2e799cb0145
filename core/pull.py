"""``pull``: declarative, nested reads of entities, with DataScript 1.8.1's grammar and results.

A pattern is parsed once per (pattern, schema) into a tree of ``PullPattern``/``PullAttr`` records
kept in an LRU cache. Evaluation follows DataScript's frame machine: an entity's forward attributes
are matched against its EAVT datoms in attribute order (merging in wildcard attributes), then
reverse attributes are looked up in VAET. Each entity is evaluated by a generator that yields the
refs it wants pulled; a driver runs those generators on an explicit stack, so recursion depth is
bounded by memory, not by Python's recursion limit. Only ``seen`` (ids on the current recursion
path) and the per-attribute recursion budgets are shared along a path, as DataScript threads them.

Grammar (``[...]`` is a list or EDN vector, ``(...)`` a tuple or EDN list; either works)::

    pattern      = [attr-spec*]
    attr-spec    = attr-name | "*" | map-spec | attr-expr
    attr-name    = "person/name" | "person/_friends" | "db/id"   (EDN keywords too)
    map-spec     = {(attr-name | attr-expr): (pattern | "..." | positive-number), ...}
    attr-expr    = [attr-name-or-expr option value ...]          options: as limit default xform
                 | ("limit" attr-name-or-expr (positive-number | None))
                 | ("default" attr-name-or-expr value)

In EDN text the options are keywords (``:as``); in Python data they may be strings (``"as"``) too;
``xform`` takes a Python callable. Results are dicts keyed by attribute name (or the ``as`` alias,
as given); refs without a sub-pattern come back as ``{"db/id": e}``; cardinality-many values (and
reverse refs) as lists in index order, at most 1000 of them for many-valued attributes unless
``limit`` says otherwise; the reverse ref of a component is a single map; components are pulled
whole, recursively. A missing entity pulls as None. Specs with the same result key: the last wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from typing import Any

from pyrsistent import PMap, thaw

from .db import DB, datoms, entid
from .edn import EdnError, read_edn, write_edn
from .errors import QueryError
from .forms import FormCache
from .index import TOP
from .schema import Props, is_reverse_attr, reverse_attr
from .values import Keyword, Symbol

__all__ = ["PullPattern", "clear_pull_cache", "parse_pull_pattern", "pull", "pull_many"]

DB_ID = "db/id"
DEFAULT_LIMIT = 1000
"""Cardinality-many attributes (and reverse refs of them) return at most this many values by default."""

_K_ID, _K_PLAIN, _K_MANY, _K_REF, _K_MANYREF = range(5)

_WILDCARDS = frozenset({Symbol("*"), Keyword("*"), "*"})
_RECURSE = frozenset({Symbol("..."), "..."})
_LIMIT_HEADS = frozenset({Symbol("limit"), "limit"})
_DEFAULT_HEADS = frozenset({Symbol("default"), "default"})
_OPTIONS = frozenset({"as", "limit", "default", "xform"})


class PullAttr:
    """One attribute of a parsed pattern (DataScript's ``PullAttr``)."""

    __slots__ = (
        "auto",
        "component",
        "default",
        "key",
        "kind",
        "limit",
        "multival",
        "name",
        "pattern",
        "recursive",
        "ref",
        "reverse",
        "rkey",
        "rlimit",
        "shallow",
        "take",
        "xform",
    )

    def __init__(self, name: str, key: Any):
        self.name = name
        self.key = key
        self.kind = _K_PLAIN
        self.default: Any = None
        self.limit: Any = None
        self.xform: Callable[[Any], Any] | None = None
        self.pattern: PullPattern | None = None
        self.recursive = False
        self.rlimit: Any = None
        self.reverse = False
        self.component = False
        self.multival = False
        self.ref = False
        self.auto = False
        self.shallow: Any = None
        self.rkey: Any = None
        self.take: int | None = None

    def finish(self) -> PullAttr:
        """Derive the evaluation flags once the options and sub-pattern are known."""
        if self.kind != _K_ID:
            if self.ref:
                self.kind = _K_MANYREF if self.multival else _K_REF
            else:
                self.kind = _K_MANY if self.multival else _K_PLAIN
        pat = self.pattern
        # DataScript's ``auto-expanding?``: recursion, or a component pulled with a wildcard pattern.
        self.auto = self.recursive or (self.component and pat is not None and pat.wildcard)
        self.shallow = None
        if not self.auto and pat is not None and pat.id_only is not None:
            self.shallow = pat.id_only
        self.rkey = None
        if self.recursive:
            self.rkey = (
                self.name,
                self.reverse,
                _hkey(self.key),
                self.limit,
                _hkey(self.xform),
                self.rlimit,
            )
        self.take = None if self.limit is None else math.ceil(self.limit)
        return self

    def __repr__(self) -> str:
        return f"<pull attr {self.name!r} as {self.key!r}>"



def _thaw(value: Any) -> Any:
    """A ``:default`` read from inside an EDN map key comes frozen (``pmap``, tuples); give it back
    as the plain data the user wrote."""
    return thaw(value) if isinstance(value, PMap) else value

def _hkey(x: Any) -> Any:
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return (type(x), x)


class PullPattern:
    """A parsed pull pattern (opaque): forward attributes in match order (by name, ``db/id`` specs
    last, as DataScript orders them), reverse attributes, and the range of EAVT datoms they need."""

    __slots__ = ("attrs", "hi", "id_only", "lo", "rattrs", "wildcard")

    def __init__(self, attrs: tuple[PullAttr, ...], rattrs: tuple[PullAttr, ...], wildcard: bool):
        self.attrs = attrs
        self.rattrs = rattrs
        self.wildcard = wildcard
        named = [a.name for a in attrs if a.kind != _K_ID]
        self.lo = named[0] if named else None
        self.hi = named[-1] if named else None
        # A pattern that can only produce ``{key: e}`` (``[:db/id]``): refs under it need no read.
        self.id_only = None
        if not wildcard and not rattrs and len(attrs) == 1 and attrs[0].kind == _K_ID and attrs[0].xform is None:
            self.id_only = attrs[0].key


def _id_attr(key: Any = DB_ID) -> PullAttr:
    a = PullAttr(DB_ID, key)
    a.kind = _K_ID
    return a


DEFAULT_REF_PATTERN = PullPattern((_id_attr(),), (), False)
DEFAULT_COMPONENT_PATTERN = PullPattern((_id_attr(),), (), True)


# ------------------------------------------------------------------------------------------------
# Parsing


def _show(x: Any) -> str:
    try:
        return write_edn(x)
    except Exception:
        return repr(x)


def _err(message: str, fragment: Any) -> QueryError:
    return QueryError("pull/syntax", message, {"fragment": fragment})


def _is_seq(x: Any) -> bool:
    return type(x) is list or type(x) is tuple


def _is_name(x: Any) -> bool:
    return type(x) is str or type(x) is Keyword


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


class _Parser:
    """Parses one pattern against one schema's attribute properties."""

    __slots__ = ("edn", "props")

    def __init__(self, props: Props, edn: bool):
        self.props = props
        self.edn = edn

    def pattern(self, spec: Any) -> PullPattern:
        if not _is_seq(spec):
            raise _err(f"Expected pattern to be sequential?, got: {_show(spec)}", spec)
        fwd: dict[Any, PullAttr] = {}
        rev: dict[Any, PullAttr] = {}
        wildcard = False

        def put(attr: PullAttr) -> None:
            attr.finish()
            (rev if attr.reverse else fwd)[_hkey(attr.key)] = attr

        for item in spec:
            if _is_name(item) or type(item) is Symbol:
                if item in _WILDCARDS:
                    wildcard = True
                    continue
                if type(item) is Symbol:
                    raise _err(f"Expected attr-name | attr-expr | map-spec | *, got: {_show(item)}", item)
                put(self.attr_name(item))
            elif isinstance(item, dict | PMap):
                for k, v in item.items():
                    put(self.map_entry(k, v))
            elif _is_seq(item):
                put(self.attr_expr(item))
            else:
                raise _err(f"Expected attr-name | attr-expr | map-spec | *, got: {_show(item)}", item)
        attrs = sorted(fwd.values(), key=lambda a: (a.kind == _K_ID, a.name))
        if wildcard and not any(a.kind == _K_ID for a in attrs):
            attrs.append(_id_attr())
        return PullPattern(tuple(attrs), tuple(rev.values()), wildcard)

    def attr_name(self, spec: Any, allow_reverse: bool = True) -> PullAttr:
        name = spec.name if type(spec) is Keyword else spec
        attr = PullAttr(name, name)
        if name == DB_ID:
            attr.kind = _K_ID
            return attr
        props = self.props
        reverse = allow_reverse and is_reverse_attr(name)
        straight = reverse_attr(name) if reverse else name
        ref = straight in props.ref
        if reverse and not ref:
            raise _err(f"Expected reverse attribute having :db.type/ref, got: {_show(spec)}", spec)
        attr.name = straight
        attr.reverse = reverse
        attr.ref = ref
        attr.component = ref and straight in props.component
        attr.multival = straight in props.many
        if attr.multival:
            attr.limit = DEFAULT_LIMIT
        if attr.component and not reverse:
            attr.pattern = DEFAULT_COMPONENT_PATTERN
        elif ref:
            attr.pattern = DEFAULT_REF_PATTERN
        return attr

    def attr_spec(self, spec: Any, whole: Any, message: str) -> PullAttr:
        if _is_name(spec):
            return self.attr_name(spec)
        if _is_seq(spec):
            return self.attr_expr(spec)
        raise _err(f"{message}, got: {_show(whole)}", whole)

    def attr_expr(self, spec: Any) -> PullAttr:
        generic = (
            "Expected [attr-name attr-option+] | ['limit attr-name (positive-num | nil)] | ['default attr-name any-val]"
        )
        if not spec:
            raise _err(f"{generic}, got: {_show(spec)}", spec)
        head = spec[0]
        if (type(head) is Symbol or type(head) is str) and head in _LIMIT_HEADS:
            msg = "Expected ['limit attr-name (positive-number | nil)]"
            if len(spec) != 3:
                raise _err(f"{msg}, got: {_show(spec)}", spec)
            attr = self.attr_spec(spec[1], spec, msg)
            self.set_limit(attr, spec[2])
            return attr
        if (type(head) is Symbol or type(head) is str) and head in _DEFAULT_HEADS:
            msg = "Expected ['default attr-name any-value]"
            if len(spec) != 3:
                raise _err(f"{msg}, got: {_show(spec)}", spec)
            attr = self.attr_spec(spec[1], spec, msg)
            attr.default = _thaw(spec[2])
            return attr
        if _is_name(head):
            attr = self.attr_name(head)
        elif _is_seq(head):
            attr = self.attr_expr(head)
        else:
            raise _err(f"{generic}, got: {_show(spec)}", spec)
        if len(spec) % 2 == 0:
            raise _err(f"Expected even number of opts, got: {_show(spec)}", spec)
        for i in range(1, len(spec), 2):
            opt, value = spec[i], spec[i + 1]
            if type(opt) is Keyword:
                opt = opt.name
            elif type(opt) is not str or self.edn:
                opt = None
            if opt not in _OPTIONS:
                raise _err(f"Expected one of :as, :limit, :default, :xform, got: {_show(spec)}", spec)
            if opt == "as":
                attr.key = value
            elif opt == "limit":
                self.set_limit(attr, value)
            elif opt == "default":
                attr.default = _thaw(value)
            else:
                attr.xform = self.xform(value)
        return attr

    def set_limit(self, attr: PullAttr, limit: Any) -> None:
        if not (limit is None or (_is_number(limit) and limit > 0)):
            raise _err(f"Expected (positive-number | nil), got: {_show(limit)}", limit)
        if not attr.multival:
            name = attr.name
            raise _err(f"Expected limit attribute having :db.cardinality/many, got: {_show(name)}", name)
        attr.limit = limit

    def xform(self, value: Any) -> Callable[[Any], Any]:
        if callable(value) and type(value) is not Symbol:
            return value
        # Symbols would name functions; the core resolves none (pass a callable in Python data).
        shown = value.name if type(value) is Symbol else _show(value)
        raise _err(f"Can't resolve symbol {shown}", value)

    def map_entry(self, k: Any, v: Any) -> PullAttr:
        if _is_name(k):
            attr = self.attr_name(k)
        elif _is_seq(k):
            attr = self.attr_expr(k)
        else:
            raise _err(f"Expected attr-name | attr-expr, got: {_show(k)}", k)
        recursion = (type(v) is Symbol or type(v) is str) and v in _RECURSE
        if recursion or (_is_number(v) and v > 0):
            self.check_ref(attr)
            attr.recursive = True
            attr.rlimit = None if recursion else v
            attr.pattern = None
        elif _is_number(v):
            raise _err(f"Expected (positive-num | ...), got: {_show({k: v})}", {k: v})
        elif _is_seq(v):
            self.check_ref(attr)
            attr.pattern = self.pattern(v)
        else:
            raise _err(f"Expected pattern to be sequential?, got: {_show(v)}", v)
        return attr

    def check_ref(self, attr: PullAttr) -> None:
        if not attr.ref:
            name = attr.name
            raise _err(f"Expected attribute having :db.type/ref, got: {_show(name)}", name)

    def wildcard_attr(self, name: str) -> PullAttr:
        """The attribute a wildcard pulls for datoms of ``name`` (no options, never reverse)."""
        return self.attr_name(name, allow_reverse=False).finish()


def _read(text: str) -> Any:
    try:
        return read_edn(text)
    except EdnError as err:
        raise QueryError("pull/syntax", f"Cannot read pull pattern {text!r}: {err}", {"pattern": text}) from err


def parse_pull_pattern(db_or_props: DB | Props, pattern: Any) -> PullPattern:
    """Parse ``pattern`` (EDN text or Python data) against a schema, raising ``QueryError``
    (code ``pull/syntax``) when it is malformed. For validating patterns up front; ``pull`` parses
    (and caches) on its own."""
    props = db_or_props.props if isinstance(db_or_props, DB) else db_or_props
    if isinstance(pattern, str):
        return _Parser(props, True).pattern(_read(pattern))
    return _Parser(props, False).pattern(pattern)


# ------------------------------------------------------------------------------------------------
# Pattern cache


class _Compiled:
    """A parsed pattern plus the wildcard attributes met so far under its schema."""

    __slots__ = ("parser", "pattern", "wild")

    def __init__(self, parser: _Parser, pattern: PullPattern):
        self.parser = parser
        self.pattern = pattern
        self.wild: dict[str, PullAttr] = {}


_CACHE = FormCache(512)


def _compiled(props: Props, pattern: Any) -> _Compiled:
    def parse(form: Any, edn: bool) -> _Compiled:
        parser = _Parser(props, edn)
        return _Compiled(parser, parser.pattern(_read(form) if edn else form))

    return _CACHE.get_or_parse(pattern, parse, props)


def clear_pull_cache() -> None:
    """Forget every cached parsed pattern (they are also evicted least-recently-used first)."""
    _CACHE.clear()


# ------------------------------------------------------------------------------------------------
# Evaluation

_NO_KEYS: tuple = ()


class _Reader:
    """Index access for one pull: straight from the indexes for a current database, through
    ``datoms`` (which applies time views and filters) otherwise."""

    __slots__ = ("entity_keys", "range_keys", "rev", "wild", "wild_attr")

    def __init__(self, db: DB, compiled: _Compiled):
        self.wild = compiled.wild
        self.wild_attr = compiled.parser.wildcard_attr
        if db.view is None and db.pred is None:
            slice_list = db.eavt.slice_list
            vaet_prefix = db.vaet.prefix_list
            self.entity_keys = lambda e: slice_list((e,), (e, TOP))
            self.range_keys = lambda e, lo, hi: slice_list((e, lo), (e, hi, TOP))
            self.rev = lambda e, a: [k[2] for k in vaet_prefix((e, a))]
        else:

            def entity_keys(e: int) -> list:
                return [(d.e, d.a, 0, d.v, d.tx) for d in datoms(db, "eavt", e)]

            self.entity_keys = entity_keys
            self.range_keys = lambda e, lo, hi: [k for k in entity_keys(e) if lo <= k[1] <= hi]
            self.rev = lambda e, a: [d.e for d in datoms(db, "vaet", e, a)]


def _pull_entity(rd: _Reader, pat: PullPattern, e: int) -> Generator[tuple, Any, dict | None]:
    """Evaluate ``pat`` on entity ``e``: a generator that yields ``(attr, pattern, id)`` for every
    ref it needs pulled (the driver sends the result back) and returns the entity's map or None."""
    acc: dict = {}
    wild = pat.wildcard
    if wild:
        ks = rd.entity_keys(e)
    elif pat.lo is None:
        ks = _NO_KEYS
    else:
        ks = rd.range_keys(e, pat.lo, pat.hi)
    n = len(ks)
    i = 0
    attrs = pat.attrs
    na = len(attrs)
    ai = 0
    wild_cache = rd.wild
    while True:
        if ai < na:
            attr = attrs[ai]
            if attr.kind == _K_ID:
                acc[attr.key] = e if attr.xform is None else attr.xform(e)
                ai += 1
                continue
            name = attr.name
            a = ks[i][1] if i < n else None
            if a is not None and a < name:
                if not wild:
                    i += 1
                    while i < n and ks[i][1] < name:
                        i += 1
                    continue
                # a wildcard attribute for the datom ahead of the explicit one
                attr = wild_cache.get(a)
                if attr is None:
                    attr = wild_cache[a] = rd.wild_attr(a)
                name = a
            elif a == name:
                ai += 1
            else:
                ai += 1
                if attr.default is not None:
                    acc[attr.key] = attr.default
                elif attr.xform is not None:
                    v = attr.xform(None)
                    if v is not None:
                        acc[attr.key] = v
                continue
        elif wild and i < n:
            name = ks[i][1]
            attr = wild_cache.get(name)
            if attr is None:
                attr = wild_cache[name] = rd.wild_attr(name)
        else:
            break
        # ks[i] is the first datom of attribute ``name``; ``attr`` consumes it.
        kind = attr.kind
        if kind == _K_PLAIN:
            v = ks[i][3]
            i += 1
            acc[attr.key] = v if attr.xform is None else attr.xform(v)
            continue
        if kind == _K_REF:
            v = ks[i][3]
            i += 1
            raw = {attr.shallow: v} if attr.shallow is not None else (yield attr, pat, v)
        else:
            j = i + 1
            while j < n and ks[j][1] == name:
                j += 1
            take = attr.take
            if kind == _K_MANY:
                stop = j if take is None or take >= j - i else i + take
                raw = [k[3] for k in ks[i:stop]]
            elif attr.shallow is not None:
                stop = j if take is None or take >= j - i else i + take
                sk = attr.shallow
                raw = [{sk: k[3]} for k in ks[i:stop]]
            else:
                limit = attr.limit
                raw = []
                for x in range(i, j):
                    if limit is not None and len(raw) >= limit:
                        break
                    r = yield attr, pat, ks[x][3]
                    if r is not None:
                        raw.append(r)
                raw = raw or None
            i = j
        if attr.xform is not None:
            raw = attr.xform(raw)
        if raw is not None:
            acc[attr.key] = raw
    for attr in pat.rattrs:
        es = rd.rev(e, attr.name)
        if not es:
            if attr.default is not None:
                acc[attr.key] = attr.default
            continue
        sk = attr.shallow
        if attr.component:
            raw = {sk: es[0]} if sk is not None else (yield attr, pat, es[0])
        elif sk is not None:
            take = attr.take
            raw = [{sk: x} for x in (es if take is None or take >= len(es) else es[:take])]
        else:
            limit = attr.limit
            raw = []
            for x in es:
                if limit is not None and len(raw) >= limit:
                    break
                r = yield attr, pat, x
                if r is not None:
                    raw.append(r)
            raw = raw or None
        if attr.xform is not None:
            raw = attr.xform(raw)
        if raw is not None:
            acc[attr.key] = raw
    return acc or None


def _run(rd: _Reader, pat: PullPattern, e: int) -> dict | None:
    """Drive the entity generators on an explicit stack, tracking DataScript's ``seen`` ids and
    recursion budgets along the current path."""
    g = _pull_entity(rd, pat, e)
    val = None
    stack: list = []
    seen: set = set()
    budgets: dict = {}
    while True:
        try:
            attr, cpat, cid = g.send(val)
        except StopIteration as stop:
            val = stop.value
            if not stack:
                return val
            g, undo = stack.pop()
            if undo is not None:
                sid, rk, lim = undo
                seen.discard(sid)
                if rk is not None:
                    if lim is None:
                        del budgets[rk]
                    else:
                        budgets[rk] = lim
            continue
        if not attr.auto:
            stack.append((g, None))
            g = _pull_entity(rd, attr.pattern, cid)
            val = None
            continue
        if cid in seen:
            val = {DB_ID: cid}
            continue
        rk = attr.rkey
        lim = None
        if rk is not None:
            lim = budgets.get(rk)
            if lim is not None:
                if lim <= 0:
                    val = None
                    continue
                budgets[rk] = lim - 1
            elif attr.rlimit is not None:
                budgets[rk] = attr.rlimit - 1
            else:
                rk = None
        seen.add(cid)
        stack.append((g, (cid, rk, lim)))
        g = _pull_entity(rd, cpat if attr.recursive else attr.pattern, cid)
        val = None


def pull(db: DB, pattern: Any, eid: Any) -> dict | None:
    """The entity ``eid`` (id, lookup ref or ident) as a nested dict shaped by ``pattern``.

    ``pattern`` is EDN text (``'[:person/name {:person/friends [:person/name]}]'``) or Python data
    (``["person/name", {"person/friends": ["person/name"]}]``). None when ``eid`` resolves to nothing
    or the pattern finds nothing. Raises ``QueryError`` for a malformed pattern and ``ResolveError``
    for a malformed entity id.
    """
    compiled = _compiled(db.props, pattern)
    e = entid(db, eid)
    if e is None:
        return None
    return _run(_Reader(db, compiled), compiled.pattern, e)


def pull_many(db: DB, pattern: Any, eids: Iterable[Any]) -> list[dict | None]:
    """``[pull(db, pattern, eid) for eid in eids]``, parsing the pattern once."""
    compiled = _compiled(db.props, pattern)
    rd = _Reader(db, compiled)
    pat = compiled.pattern
    out: list[dict | None] = []
    for eid in eids:
        e = entid(db, eid)
        out.append(None if e is None else _run(rd, pat, e))
    return out
