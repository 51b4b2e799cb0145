"""EDN reader and writer: the text form of queries, pull patterns, transactions and values.

Pure functions (no I/O). Reading maps EDN onto plain Python values so that the rest of the core
never sees a parser type:

==================  ================================  =============================================
EDN                 Python                            notes
==================  ================================  =============================================
``nil true false``  ``None True False``
``42 -0 +1 42N``    ``int``                           arbitrary precision
``1.5 1e10 1.``     ``float``                         ``##Inf ##-Inf ##NaN`` are the specials
``1.5M 1M``         ``decimal.Decimal``
``"s"``             ``str``                           escapes ``\\" \\\\ \\n \\t \\r \\b \\f \\uXXXX``
``\\a \\newline``     ``str`` of length 1               ``\\space \\tab \\return \\formfeed
                                                      \\backspace \\uXXXX`` too
``:ns/name``        ``Keyword`` (``kw("ns/name")``)
``?e ... ns/name``  ``Symbol`` (``sym("?e")``)
``[...]``           ``list``
``(...)``           ``tuple``
``{...}``           ``dict``                          duplicate keys are an error
``#{...}``          ``frozenset``                     duplicate elements are an error
``#inst "..."``     aware ``datetime.datetime``       normalised to UTC; microsecond precision
``#uuid "..."``     ``uuid.UUID``
==================  ================================  =============================================

Map keys and set elements must be hashable, so *inside a map key or a set element* vectors are
read as tuples and maps as ``pyrsistent.pmap`` (recursively): ``{[:a 1] x}`` reads as
``{(kw("a"), 1): x}``, and ``{(:default :x {:a 1}) y}`` keeps its inner map as a ``pmap``.
Commas are whitespace, ``;`` starts a line comment and ``#_`` discards the next form.

Reading then writing is not always the identity on *text*: characters come back as strings, vectors
in map keys/set elements come back as lists ``(...)``, ``42N`` as ``42``. Writing then reading is
the identity on *values*: ``read_edn(write_edn(x)) == x`` for every type above.

The scanner is one compiled regular expression with a named group per token kind (whitespace and
comments are swallowed as the prefix of every token), driven by ``finditer``; collections are built
with an explicit stack, so there is no Python recursion and no per-character Python loop.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import functools
import math
import re
import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from .errors import DatsyncError
from .values import Keyword, Symbol, freeze

__all__ = ["EdnError", "TagReader", "read_edn", "read_edn_all", "read_edn_cached", "write_edn"]

TagReader = Callable[[Any], Any]
"""A function from the form following a tag (``#db/id [...]``) to the value it denotes."""


class EdnError(DatsyncError, ValueError):
    """Malformed EDN text: a ``ValueError`` and a ``DatsyncError`` with code ``"edn/parse-error"``.

    ``position`` is the 0-based character offset of the problem, ``line``/``column`` are 1-based and
    end the message as ``(at line:column)``; ``reason`` is the message without them.
    """

    code = "edn/parse-error"

    def __init__(self, reason: str, position: int, text: str = "", *,
                 line: int | None = None, column: int | None = None) -> None:
        if line is None or column is None:
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
        super().__init__("edn/parse-error", f"{reason} (at {line}:{column})",
                         {"position": position, "line": line, "column": column})
        self.reason = reason
        self.position = position
        self.line = line
        self.column = column

    def __reduce__(self):
        return (_rebuild_error, (self.reason, self.position, self.line, self.column))


def _rebuild_error(reason: str, position: int, line: int, column: int) -> EdnError:
    return EdnError(reason, position, line=line, column=column)


def _linecol(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"{line}:{position - (text.rfind(chr(10), 0, position) + 1) + 1}"


# ---------------------------------------------------------------------------------------------
# Scanner

_DELIM = r"""(?=[\s,()\[\]{}"\\;]|\Z)"""  # what may follow an atom
_NOT_DELIM = r"""[^\s,()\[\]{}"\\;]"""
_NC = r"[\w.*+!\-?$%&=<>#:']"  # a character inside a symbol/keyword name (no slash)
_FIRST = r"(?:[^\W\d]|[*!?$%&=<>]|[+\-.](?![0-9]))"  # first character of a symbol part
_PART = _FIRST + _NC + "*+"
_WORD = (
    r":(?!:)" + _NC + r"++(?:/" + _NC + r"++)?+"  # keyword
    r"|" + _PART + r"(?:/" + _PART + r")?+"  # symbol, nil, true, false
    r"|/"
)

_TOKEN = re.compile(
    r"(?:[\s,]++|;[^\n]*+)*+"  # leading whitespace, commas and comments
    r"(?:"
    r"(?P<word>" + _WORD + r")" + _DELIM
    + r"|(?P<open>[\[({]|\#\{)"
    r"|(?P<close>[\])}])"
    r"|(?P<int>[+-]?+(?:0|[1-9][0-9]*+))" + _DELIM
    + r'|"(?P<str>[^"\\]*+(?:\\.[^"\\]*+)*+)"'
    r"|(?P<num>[+-]?+(?:0|[1-9][0-9]*+)"
    r"(?:[NM]|\.[0-9]*+(?:[eE][+-]?+[0-9]++)?+M?+|[eE][+-]?+[0-9]++M?+))" + _DELIM
    + r"|\#(?P<tag>[^\W\d_]" + _NC + r"*+(?:/" + _PART + r")?+)" + _DELIM
    + r"|(?P<discard>\#_)"
    r"|\\(?P<char>u[0-9a-fA-F]{4}|newline|return|space|tab|formfeed|backspace|\S)" + _DELIM
    + r"|\#\#(?P<symval>" + _NOT_DELIM + r"*+)"
    r"|(?P<eof>\Z)"
    r"|(?P<junk>" + _NOT_DELIM + r"++|.)"
    r")",
    re.DOTALL,
)

_WORD_RE = re.compile(_WORD)
_NOT_DELIMS = re.compile(_NOT_DELIM + "*")
_NUMBER_START = re.compile(r"[+-]?\.?[0-9]")
_STR_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_CHAR_NAMES = {
    "newline": "\n", "return": "\r", "space": " ", "tab": "\t", "formfeed": "\f", "backspace": "\b",
}
_SYMBOLIC = {"Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_COLL_NAMES = {"[": "vector", "(": "list", "{": "map", "#{": "set"}
_CONSTANTS = {"nil": None, "true": True, "false": False}
_WORDS: dict[str, Any] = dict(_CONSTANTS)  # token text -> value (constants, Keywords, Symbols)
_WORDS_MAX = 100_000
_OPENER_LEN = {"str": 1, "char": 1, "symval": 2, "tag": 1}  # chars before a group's start
_SKIP = object()
_MISSING = object()


def _intern_word(t: str) -> Any:
    if len(_WORDS) >= _WORDS_MAX:
        _WORDS.clear()
        _WORDS.update(_CONSTANTS)
    v = _WORDS[t] = Keyword(t[1:]) if t[0] == ":" else Symbol(t)
    return v


def _unescape(s: str, base: int, text: str) -> str:
    """The string denoted by the body ``s`` of a string literal whose body starts at ``base``."""

    def replace(m: re.Match[str]) -> str:
        h = m.group(1)
        if h is not None:
            return chr(int(h, 16))
        c = _SIMPLE_ESCAPES.get(m.group(2))
        if c is None:
            if m.group(2) == "u":
                raise EdnError("invalid unicode escape in string: expected 4 hex digits after \\u",
                               base + m.start(), text)
            raise EdnError(f"invalid escape {m.group(0)!r} in string; expected one of "
                           '\\" \\\\ \\n \\t \\r \\b \\f \\uXXXX', base + m.start(), text)
        return c

    r = _STR_ESCAPE.sub(replace, s)
    if _SURROGATE.search(r):  # join UTF-16 surrogate pairs written as two \u escapes
        r = r.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return r


def _number(t: str) -> Any:
    last = t[-1]
    if last == "N":
        return _int(t[:-1])
    if last == "M":
        return _decimal.Decimal(t[:-1])
    return float(t)


def _int(t: str) -> int:
    try:
        return int(t)
    except ValueError:  # beyond int()'s digit limit; Decimal has none
        return int(_decimal.Decimal(t))


def _make_map(items: list[Any], fm: re.Match[str], text: str) -> dict[Any, Any]:
    n = len(items)
    if n & 1:
        raise EdnError(f"map literal must contain an even number of forms (key value pairs), found {n}",
                       fm.start("open"), text)
    it = iter(items)
    try:
        d = dict(zip(it, it, strict=False))
    except TypeError:
        try:
            keys = [freeze(k) for k in items[::2]]
            d = dict(zip(keys, items[1::2], strict=True))
        except TypeError as e:
            raise EdnError(f"unhashable map key: {e}", fm.start("open"), text) from None
        items = [x for kv in zip(keys, items[1::2], strict=True) for x in kv]
    if len(d) * 2 != n:
        seen: set[Any] = set()
        for k in items[::2]:
            if k in seen:
                raise EdnError(f"duplicate key {k!r} in map literal", fm.start("open"), text)
            seen.add(k)
    return d


def _make_set(items: list[Any], fm: re.Match[str], text: str) -> frozenset[Any]:
    try:
        s = frozenset(items)
    except TypeError:
        try:
            items = [freeze(x) for x in items]
            s = frozenset(items)
        except TypeError as e:
            raise EdnError(f"unhashable set element: {e}", fm.start("open"), text) from None
    if len(s) != len(items):
        seen: set[Any] = set()
        for x in items:
            if x in seen:
                raise EdnError(f"duplicate element {x!r} in set literal", fm.start("open"), text)
            seen.add(x)
    return s


def _char(t: str) -> str:
    if len(t) == 1:
        return t
    if t[0] == "u" and len(t) == 5:
        return chr(int(t[1:], 16))
    return _CHAR_NAMES[t]


# ---------------------------------------------------------------------------------------------
# Built-in tagged literals

_INST = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:[Tt]([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?)?)?)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_UTC = _dt.UTC


def _read_inst(v: Any) -> _dt.datetime:
    """RFC 3339 timestamp, possibly partial (``"2020"``, ``"2020-01-01"``); no offset means UTC.

    Fractions finer than a microsecond are truncated; the result is converted to UTC.
    """
    if not isinstance(v, str):
        raise ValueError(f"#inst expects a string, got {type(v).__name__}")
    m = _INST.fullmatch(v)
    if m is None:
        raise ValueError(f"#inst expects an RFC 3339 timestamp like \"2020-01-01T00:00:00.000Z\", got {v!r}")
    year, month, day, hour, minute, second, frac, _z, sign, oh, om = m.groups()
    tz = _UTC
    if sign is not None:
        oh_i, om_i = int(oh), int(om)
        if oh_i > 23 or om_i > 59:
            raise ValueError(f"#inst has an invalid UTC offset in {v!r}")
        offset = _dt.timedelta(hours=oh_i, minutes=om_i)
        tz = _dt.timezone(-offset if sign == "-" else offset)
    try:
        d = _dt.datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
            int(second or 0), int((frac or "").ljust(6, "0")[:6]), tzinfo=tz,
        )
        return d if tz is _UTC else d.astimezone(_UTC)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"#inst {v!r} is not a valid instant: {e}") from None


def _read_uuid(v: Any) -> _uuid.UUID:
    """A UUID in canonical 8-4-4-4-12 hex form."""
    if not isinstance(v, str) or not _UUID.fullmatch(v):
        raise ValueError(f"#uuid expects a string like \"8-4-4-4-12\" hex digits, got {v!r}")
    return _uuid.UUID(v)


_BUILTIN_TAGS: dict[str, TagReader] = {"inst": _read_inst, "uuid": _read_uuid}


def _apply_tag(tag: str, v: Any, fm: re.Match[str], text: str,
               tag_readers: Mapping[str, TagReader] | None) -> Any:
    reader = tag_readers.get(tag) if tag_readers else None
    if reader is None:
        reader = _BUILTIN_TAGS.get(tag)
        if reader is None:
            raise EdnError(f"no reader for tag #{tag} (known: #inst, #uuid"
                           + "".join(f", #{t}" for t in tag_readers or ()) + ")", fm.start("tag") - 1, text)
    try:
        return reader(v)
    except (ValueError, TypeError) as e:
        raise EdnError(f"invalid #{tag} literal: {e}", fm.start("tag") - 1, text) from e


# ---------------------------------------------------------------------------------------------
# Parser


def _prefix_name(kind: str) -> str:
    return "'#_'" if kind == "#_" else f"tag '{kind}'"


def _junk_error(m: re.Match[str], text: str) -> EdnError:
    t = m.group("junk")
    pos = m.start("junk")
    if t == '"':
        return EdnError("unterminated string: expected a closing '\"' before end of input", pos, text)
    if t == "\\":
        bad = _NOT_DELIMS.match(text, pos + 2).group(0)  # type: ignore[union-attr]
        return EdnError(f"invalid character literal {text[pos:pos + 2] + bad!r}; expected \\c, "
                        "\\newline, \\space, \\tab, \\return, \\formfeed, \\backspace or \\uXXXX", pos, text)
    if t[0] == "#":
        if t.startswith("##"):
            return EdnError(f"unknown symbolic value {t!r}; expected ##Inf, ##-Inf or ##NaN", pos, text)
        return EdnError(f"unsupported dispatch {text[pos:pos + 2]!r}; expected #{{, #_, ##, "
                        "or a tag such as #inst", pos, text)
    if _NUMBER_START.match(t):
        return EdnError(f"invalid number {t!r}", pos, text)
    if t[0] == ":":
        return EdnError(f"invalid keyword {t!r}", pos, text)
    return EdnError(f"invalid symbol {t!r}", pos, text)


def _parse(text: str, single: bool, tag_readers: Mapping[str, TagReader] | None) -> list[Any]:
    """All top-level forms of ``text`` (with ``single``: exactly one, else an EdnError)."""
    words = _WORDS
    stack: list[tuple[Any, Any, Any, bool]] = []
    push = stack.append
    pop = stack.pop
    out: list[Any] = []
    items: Any = out  # the list the next value goes into
    kind: Any = None  # innermost open frame: "[", "(", "{", "#{", "#_", "#tag"; None at top level
    fm: Any = None  # match that opened the innermost frame
    prefix = False  # innermost frame is "#_" or a tag, waiting for one form
    discarding = 0  # open "#_" frames: tag readers are not called inside a discarded form (EDN spec)
    m: Any = None
    g: Any = None
    try:
        for m in _TOKEN.finditer(text):
            g = m.lastgroup
            if g == "word":
                t = m.group(g)
                v = words.get(t, _MISSING)
                if v is _MISSING:
                    v = _intern_word(t)
            elif g == "open":
                if kind is None and single and out:
                    raise _trailing(m.start(g), text)
                push((kind, items, fm, prefix))
                kind = m.group(g)
                items = []
                fm = m
                prefix = False
                continue
            elif g == "close":
                c = m.group(g)
                if _CLOSERS.get(kind) != c:
                    raise _close_error(c, m.start(g), kind, fm, prefix, text)
                if kind == "[":
                    v = items
                elif kind == "(":
                    v = tuple(items)
                elif kind == "{":
                    v = _make_map(items, fm, text)
                else:
                    v = _make_set(items, fm, text)
                kind, items, fm, prefix = pop()
            elif g == "int":
                t = m.group(g)
                v = int(t) if len(t) < 4000 else _int(t)
            elif g == "str":
                v = m.group(g)
                if "\\" in v:
                    v = _unescape(v, m.start(g), text)
            elif g == "num":
                v = _number(m.group(g))
            elif g == "tag" or g == "discard":
                if g == "tag" and kind is None and single and out:
                    raise _trailing(m.start(g) - 1, text)
                push((kind, items, fm, prefix))
                if g == "tag":
                    kind = "#" + m.group(g)
                else:
                    kind = "#_"
                    discarding += 1
                items = None
                fm = m
                prefix = True
                continue
            elif g == "char":
                v = _char(m.group(g))
            elif g == "symval":
                v = _SYMBOLIC.get(m.group(g), _MISSING)
                if v is _MISSING:
                    raise EdnError(f"unknown symbolic value '##{m.group(g)}'; expected ##Inf, ##-Inf "
                                   "or ##NaN", m.start(g) - 2, text)
            elif g == "eof":
                break
            else:
                raise _junk_error(m, text)
            if prefix:  # the value completes "#_ v" or "#tag v" (possibly several nested)
                while True:
                    if kind == "#_":
                        v = _SKIP
                        discarding -= 1
                    elif not discarding:
                        v = _apply_tag(kind[1:], v, fm, text, tag_readers)
                    kind, items, fm, prefix = pop()
                    if v is _SKIP or not prefix:
                        break
                if v is _SKIP:
                    continue
            if kind is None and single and out:
                raise _trailing(m.start(g) - _OPENER_LEN.get(g, 0), text)
            items.append(v)
    except ValueError as e:
        if isinstance(e, EdnError):
            raise
        raise EdnError(f"invalid literal {m.group(g)!r}: {e}", m.start(g), text) from e
    if stack:
        end = len(text)
        if prefix:
            raise EdnError(f"expected a form after {_prefix_name(kind)}, but reached end of input", end, text)
        raise EdnError(
            f"unterminated {_COLL_NAMES[kind]}: expected {_CLOSERS[kind]!r} to close {kind!r} opened at "
            f"{_linecol(text, fm.start('open'))}, but reached end of input", end, text)
    if single and not out:
        raise EdnError("expected a form, but reached end of input", len(text), text)
    return out


def _trailing(pos: int, text: str) -> EdnError:
    snippet = text[pos:pos + 20]
    return EdnError(f"expected end of input after the form, found {snippet!r}", pos, text)


def _close_error(c: str, pos: int, kind: Any, fm: Any, prefix: bool, text: str) -> EdnError:
    if prefix:
        return EdnError(f"expected a form after {_prefix_name(kind)}, found {c!r}", pos, text)
    if kind is None:
        return EdnError(f"unmatched {c!r}: there is no open collection to close", pos, text)
    return EdnError(f"expected {_CLOSERS[kind]!r} to close {_COLL_NAMES[kind]} opened at "
                    f"{_linecol(text, fm.start('open'))}, found {c!r}", pos, text)


def read_edn(text: str, *, tag_readers: Mapping[str, TagReader] | None = None) -> Any:
    """The value of the single EDN form in ``text`` (surrounding whitespace, comments, ``#_`` allowed).

    ``tag_readers`` maps tag names (``"db/id"``) to functions of the tagged form; they take precedence
    over the built-in ``inst`` and ``uuid``. Raises ``EdnError`` on malformed input, on an unknown tag,
    and on anything but whitespace after the form.
    """
    return _parse(text, True, tag_readers)[0]


def read_edn_all(text: str, *, tag_readers: Mapping[str, TagReader] | None = None) -> list[Any]:
    """The values of all top-level EDN forms in ``text``, in order (``[]`` for blank text)."""
    return _parse(text, False, tag_readers)


@functools.lru_cache(maxsize=1024)
def read_edn_cached(text: str) -> Any:
    """``read_edn(text)``, memoised (LRU, 1024 texts) for queries and pull patterns parsed per call.

    The result is shared between callers: treat it as read-only. Mutating a returned list or dict
    corrupts every later read of the same text. Errors are not cached.
    """
    return read_edn(text)


# ---------------------------------------------------------------------------------------------
# Writer

_WRITE_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_WRITE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
_WORD_TEXT: dict[Any, str] = {}  # Keyword/Symbol -> its validated EDN text


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    return _WRITE_ESCAPES.get(c) or f"\\u{ord(c):04x}"


def _write_str(v: str, w: Callable[[str], Any]) -> None:
    w('"' + _WRITE_ESCAPE.sub(_escape_char, v) + '"' if _WRITE_ESCAPE.search(v) else '"' + v + '"')


def _word_text(v: Keyword | Symbol) -> str:
    t = _WORD_TEXT.get(v)
    if t is None:
        t = ":" + v.name if isinstance(v, Keyword) else v.name
        if not _WORD_RE.fullmatch(t) or t in _CONSTANTS:
            raise ValueError(f"{v!r} has a name that is not a valid EDN {type(v).__name__.lower()}")
        _WORD_TEXT[v] = t
    return t


def _write_float(v: float, w: Callable[[str], Any]) -> None:
    if math.isfinite(v):
        w(float.__repr__(v))
    else:
        w("##NaN" if v != v else "##Inf" if v > 0 else "##-Inf")


def _write_decimal(v: _decimal.Decimal, w: Callable[[str], Any]) -> None:
    if not v.is_finite():
        raise ValueError(f"{v!r} has no EDN form (only finite decimals)")
    w(str(v) + "M")


def _write_int(v: int, w: Callable[[str], Any]) -> None:
    try:
        w(int.__repr__(v))
    except ValueError:  # beyond int's str digit limit
        w(str(_decimal.Decimal(v)))


def _write_datetime(v: _dt.datetime, w: Callable[[str], Any]) -> None:
    if v.utcoffset() is None:
        raise ValueError(f"{v!r} is a naive datetime: attach a tzinfo so it denotes an instant")
    u = v.astimezone(_UTC)
    us = u.microsecond
    frac = f"{us // 1000:03d}" if us % 1000 == 0 else f"{us:06d}"
    w(f'#inst "{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{frac}Z"')


def _write_seq(v: Any, w: Callable[[str], Any], open_: str, close: str) -> None:
    w(open_)
    first = True
    for x in v:
        if first:
            first = False
        else:
            w(" ")
        _write(x, w)
    w(close)


def _write_map(v: Mapping[Any, Any], w: Callable[[str], Any]) -> None:
    w("{")
    first = True
    for k, x in v.items():
        if first:
            first = False
        else:
            w(", ")
        _write(k, w)
        w(" ")
        _write(x, w)
    w("}")


_WRITERS: dict[type, Callable[[Any, Callable[[str], Any]], None]] = {
    type(None): lambda v, w: w("nil"),
    bool: lambda v, w: w("true" if v else "false"),
    int: _write_int,
    float: _write_float,
    _decimal.Decimal: _write_decimal,
    str: _write_str,
    Keyword: lambda v, w: w(_word_text(v)),
    Symbol: lambda v, w: w(_word_text(v)),
    list: lambda v, w: _write_seq(v, w, "[", "]"),
    tuple: lambda v, w: _write_seq(v, w, "(", ")"),
    dict: _write_map,
    frozenset: lambda v, w: _write_seq(v, w, "#{", "}"),
    set: lambda v, w: _write_seq(v, w, "#{", "}"),
    _dt.datetime: _write_datetime,
    _uuid.UUID: lambda v, w: w(f'#uuid "{v}"'),
}
# Subclasses (OrderedTuple, Datom, IntEnum, ...) are written as their first listed base here; other
# Mappings, Sets and Sequences (pyrsistent's pmap, pset, pvector) as maps, sets and vectors.
_BASES = (bool, int, float, _decimal.Decimal, str, Keyword, Symbol, _dt.datetime, _uuid.UUID,
          tuple, list, dict, frozenset, set)


def _write(v: Any, w: Callable[[str], Any]) -> None:
    f = _WRITERS.get(type(v))
    if f is None:
        for base in _BASES:
            if isinstance(v, base):
                f = _WRITERS[base]
                break
        else:
            if isinstance(v, Mapping):
                f = _write_map
            elif isinstance(v, AbstractSet):
                f = _WRITERS[frozenset]
            elif isinstance(v, Sequence) and not isinstance(v, (bytes, bytearray, memoryview)):
                f = _WRITERS[list]
            else:
                raise TypeError(f"cannot write a {type(v).__name__} as EDN: {v!r}")
        _WRITERS[type(v)] = f
    f(v, w)


def write_edn(value: Any) -> str:
    """The EDN text of ``value``; ``read_edn(write_edn(x)) == x`` for every readable type.

    Tuples are written as lists ``(...)``, Python lists as vectors ``[...]``, sets as ``#{...}`` and
    maps as ``{:a 1, :b 2}``. Datetimes must be timezone-aware and are written in UTC with
    milliseconds, or microseconds when they are not whole milliseconds. Raises ``TypeError`` for
    unsupported types and ``ValueError`` for values with no EDN form (naive datetimes, NaN decimals,
    keywords whose names are not valid EDN).
    """
    out: list[str] = []
    _write(value, out.append)
    return "".join(out)
