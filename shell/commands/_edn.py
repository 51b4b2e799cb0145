"""EDN in and out for the commands: arguments and files, tx data in our Python spelling, results.

Reading: an argument is EDN text, ``@FILE`` (the file's text) or ``-`` (stdin) where a file is
expected. Bytes values travel as ``#datsync/bytes "BASE64"`` (EDN has no bytes literal).

Tx data is read as EDN and turned into the core's spelling with the target database's schema at
hand, so that the same text means what it means to Datomic: ``:person/name`` in attribute position is
the attribute ``"person/name"``; ``[:person/name "Ivan"]`` in entity position, or as the value of a
ref attribute, is a lookup ref; a vector of lookup refs or of entity ids as the value of a
cardinality-many attribute is a collection; a vector as the value of a tuple attribute is one tuple.

Writing: attribute names in results become keywords (``:person/name``); relations print one tuple
per line as vectors inside a set.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from datsync.core import Entity, Keyword, compare_values, kw
from datsync.core.edn import EdnError, read_edn, write_edn
from datsync.core.schema import CARDINALITY_MANY, TYPE_REF, TYPE_TUPLE

from ._errors import CliError

BYTES_TAG = "datsync/bytes"
BUILTIN_TUPLE_ATTRS = frozenset({"db/tupleAttrs", "db/tupleTypes"})
"""Tuple-valued built-in attributes (a replica's DataScript schema does not type them)."""


def _read_bytes(form: Any) -> bytes:
    if not isinstance(form, str):
        raise ValueError("expects a base64 string")
    try:
        return base64.b64decode(form, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from None


TAG_READERS = {BYTES_TAG: _read_bytes}


def read_text(source: str, what: str) -> str:
    """The text of a file argument (``-`` is stdin); a ``CliError`` if it cannot be read."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError("io/unreadable", f"cannot read {what} {source}: {e}") from None


def parse(text: str, what: str) -> Any:
    """One EDN form; a ``CliError`` naming ``what`` if the text is not EDN."""
    try:
        return read_edn(text, tag_readers=TAG_READERS)
    except EdnError as e:
        raise CliError(e.code, f"{what} is not valid EDN: {e.message}") from None


def read_arg(arg: str, what: str) -> Any:
    """An EDN argument: the text itself, or ``@FILE`` for the text of a file."""
    if arg.startswith("@"):
        return parse(read_text(arg[1:], what), f"{what} ({arg[1:]})")
    return parse(arg, what)


def arg_text(arg: str, what: str) -> str:
    """An argument's text (``@FILE`` read), for the core functions that take EDN text themselves."""
    text = read_text(arg[1:], what) if arg.startswith("@") else arg
    parse(text, what)  # a readable error for malformed EDN, before the core sees it
    return text


def read_file(source: str, what: str) -> Any:
    """The single EDN form of a file (``-`` is stdin)."""
    return parse(read_text(source, what), f"{what} {source}")


# ---------------------------------------------------------------------------------------------
# EDN data -> the core's spelling


def _name(x: Any) -> Any:
    return x.name if isinstance(x, Keyword) else x


def is_lookup_ref(x: Any, schema: Mapping[str, Any] | None = None) -> bool:
    """``[:attr value]``: a two-element vector whose first element is a keyword (an attribute). With
    a schema, two keywords of which the first is no attribute are two idents, not a lookup ref."""
    if not (isinstance(x, list | tuple) and len(x) == 2 and isinstance(x[0], Keyword | str)):
        return False
    if isinstance(x[1], dict):
        return False
    if isinstance(x[1], list | tuple):  # a tuple value: only for a tuple attribute
        return schema is None or (_name(x[0]) in schema and schema[_name(x[0])].get("db/valueType") == TYPE_TUPLE)
    return not (schema is not None and isinstance(x[0], Keyword) and isinstance(x[1], Keyword)
                and x[0].name not in schema)


def eid(x: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """An entity position: a lookup ref ``[:a v]`` becomes ``("a", v)``; ids, tempids and idents stay."""
    if isinstance(x, list | tuple) and is_lookup_ref(x, schema):
        return _lookup_ref(x)
    return x


def _lookup_ref(x: Any) -> tuple:
    v = x[1]
    return (_name(x[0]), tuple(v) if isinstance(v, list) else v)


class TxConverter:
    """Tx forms read from EDN -> tx forms in the core's spelling, using ``schema`` (``DB.schema``)."""

    def __init__(self, schema: Mapping[str, Mapping[str, Any]]):
        self.schema = schema

    def attr_kind(self, attr: str) -> tuple[bool, bool, bool]:
        """``(ref, many, tuple)`` for an attribute name (reverse refs are many-valued refs)."""
        local = attr.rsplit("/", 1)[-1]
        if local.startswith("_"):
            return True, True, False
        p = self.schema.get(attr) or {}
        vt = p.get("db/valueType")
        tup = vt == TYPE_TUPLE or attr in BUILTIN_TUPLE_ATTRS
        return vt == TYPE_REF, p.get("db/cardinality") == CARDINALITY_MANY, tup

    def value(self, attr: str, v: Any, *, ref: bool, tup: bool) -> Any:
        """One value of ``attr``."""
        if ref:
            if isinstance(v, dict):
                return self.map_form(v)
            if is_lookup_ref(v, self.schema):
                return _lookup_ref(v)
            return v
        if tup and isinstance(v, list):
            return tuple(v)
        return v

    def map_value(self, attr: str, v: Any) -> Any:
        """The value of ``attr`` in a map form: one value, or a collection for a many attribute."""
        ref, many, tup = self.attr_kind(attr)
        if many and isinstance(v, list | frozenset | set):
            single = (ref and is_lookup_ref(v, self.schema)) or (tup and not all(
                isinstance(x, list | tuple) for x in v))
            if not single:
                return [self.value(attr, x, ref=ref, tup=tup) for x in v]
        return self.value(attr, v, ref=ref, tup=tup)

    def map_form(self, m: Mapping[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in m.items():
            a = _name(k)
            out[a] = eid(v, self.schema) if a == "db/id" else self.map_value(a, v)
        return out

    def list_form(self, f: list | tuple) -> list:
        if not f:
            return list(f)
        op = _name(f[0])
        out: list[Any] = [op, *f[1:]]
        if len(out) > 1:
            out[1] = eid(out[1], self.schema)
        if len(out) > 2:
            out[2] = _name(out[2])
            if isinstance(out[2], str) and len(out) > 3:
                ref, _, tup = self.attr_kind(out[2])
                for i in range(3, len(out)):
                    out[i] = self.value(out[2], out[i], ref=ref, tup=tup)
        return out

    def form(self, f: Any) -> Any:
        if isinstance(f, dict):
            return self.map_form(f)
        if isinstance(f, list | tuple):
            return self.list_form(f)
        return f

    def tx(self, tx: Any, what: str = "transaction") -> list:
        """A whole transaction (a vector of forms)."""
        if not isinstance(tx, list | tuple):
            raise CliError("edn/shape", f"{what} must be a vector of tx forms, got {preview(tx)}")
        return [self.form(f) for f in tx]


# ---------------------------------------------------------------------------------------------
# Results -> EDN text


def keywordize(x: Any) -> Any:
    """Results for EDN output: attribute-name keys of maps become keywords, entities ``{:db/id e}``."""
    if isinstance(x, dict):
        return {(kw(k) if isinstance(k, str) else k): keywordize(v) for k, v in x.items()}
    if isinstance(x, list):
        return [keywordize(v) for v in x]
    if isinstance(x, Entity):
        return {kw("db/id"): x.id}
    if isinstance(x, frozenset | set) and any(isinstance(v, Entity) for v in x):
        return [keywordize(v) for v in sorted(x, key=lambda v: getattr(v, "id", 0))]
    return x


def _sort_key(x: Any) -> Any:
    return functools.cmp_to_key(compare_values)(x)


def sorted_values(xs: Iterable[Any]) -> list[Any]:
    """``xs`` in the database's total order of values (as given where they cannot be ordered)."""
    xs = list(xs)
    try:
        return sorted(xs, key=_sort_key)
    except TypeError:
        return xs


def to_edn(x: Any) -> str:
    """``write_edn`` with bytes as ``#datsync/bytes "BASE64"``."""
    try:
        return write_edn(x)
    except TypeError:
        pass
    if isinstance(x, bytes | bytearray | memoryview):
        return f'#{BYTES_TAG} "{base64.b64encode(bytes(x)).decode()}"'
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{to_edn(k)} {to_edn(v)}" for k, v in x.items()) + "}"
    if isinstance(x, tuple):
        return "(" + " ".join(map(to_edn, x)) + ")"
    if isinstance(x, frozenset | set):
        return "#{" + " ".join(map(to_edn, x)) + "}"
    if isinstance(x, list):
        return "[" + " ".join(map(to_edn, x)) + "]"
    return write_edn(x)  # raises the TypeError that names the type


def result_edn(result: Any) -> str:
    """A query result as EDN text: relations as a set of vectors, one per line; collections and
    tuples as vectors; pull maps with keyword keys. Sets and collections print in value order (a
    query's result has none of its own), so the same data always prints the same."""
    if isinstance(result, frozenset | set | list):
        rows = [to_edn([keywordize(v) for v in row]) if isinstance(row, tuple) else to_edn(keywordize(row))
                for row in sorted_values(result)]
        opening, closing = ("#{", "}") if isinstance(result, frozenset | set) else ("[", "]")
        tall = any(isinstance(row, tuple | dict) for row in result)  # rows: one a line
        separator = "\n" + " " * len(opening) if tall else " "
        return opening + separator.join(rows) + closing
    if isinstance(result, tuple):
        return to_edn([keywordize(v) for v in result])
    return to_edn(keywordize(result))


def preview(x: Any, limit: int = 80) -> str:
    """A short EDN rendering of ``x`` for error messages."""
    try:
        s = to_edn(x)
    except (TypeError, ValueError):
        s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def emit(text: str) -> None:
    """Write one EDN form (and a newline) to stdout."""
    sys.stdout.write(text + "\n")
