"""Tests for the EDN reader/writer (datsync.core.edn)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import pickle
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datsync.core.edn import EdnError, read_edn, read_edn_all, read_edn_cached, write_edn
from datsync.core.errors import DatsyncError
from datsync.core.values import Datom, Keyword, Symbol, kw, sym

UTC = dt.UTC

# ---------------------------------------------------------------------------------------------
# Literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nil", None),
        ("true", True),
        ("false", False),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("+1", 1),
        ("-0", 0),
        ("42N", 42),
        ("-42N", -42),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("1.5", 1.5),
        ("-1.5", -1.5),
        ("1e10", 1e10),
        ("1E-3", 1e-3),
        ("2.5e+2", 250.0),
        ("1.", 1.0),
        ("1.5M", Decimal("1.5")),
        ("1M", Decimal("1")),
        ("-0.001M", Decimal("-0.001")),
        ("1e3M", Decimal("1e3")),
        ("##Inf", math.inf),
        ("##-Inf", -math.inf),
        ('""', ""),
        ('"hello"', "hello"),
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\n\t\r\b\f"', "\n\t\r\b\f"),
        (r'"\u00e9\u0041"', "\u00e9A"),
        (r'"\ud83d\ude00"', "\U0001f600"),  # surrogate pair joins into one code point
        ('"multi\nline"', "multi\nline"),
        ('"😀 ünïcode"', "😀 ünïcode"),
        (r"\a", "a"),
        (r"\newline", "\n"),
        (r"\space", " "),
        (r"\tab", "\t"),
        (r"\return", "\r"),
        (r"\formfeed", "\f"),
        (r"\backspace", "\b"),
        (r"\u0041", "A"),
        (r"\u", "u"),
        (r"\\", "\\"),
        (r"\(", "("),
        (":foo", kw("foo")),
        (":ns/foo", kw("ns/foo")),
        (":db.type/ref", kw("db.type/ref")),
        (":db/id", kw("db/id")),
        (":a-b?", kw("a-b?")),
        ("?e", sym("?e")),
        ("...", sym("...")),
        ("_", sym("_")),
        ("pull", sym("pull")),
        (">", sym(">")),
        ("<=", sym("<=")),
        ("re-find", sym("re-find")),
        ("%", sym("%")),
        ("$", sym("$")),
        ("$x", sym("$x")),
        ("ns/name", sym("ns/name")),
        ("-", sym("-")),
        ("+", sym("+")),
        ("-foo", sym("-foo")),
        ("/", sym("/")),
        ("nil?", sym("nil?")),
        ("truex", sym("truex")),
    ],
)
def test_literals(text: str, expected: object) -> None:
    v = read_edn(text)
    assert v == expected
    assert type(v) is type(expected)


def test_nan() -> None:
    assert math.isnan(read_edn("##NaN"))


def test_keywords_and_symbols_are_interned() -> None:
    assert read_edn(":person/name") is kw("person/name")
    assert read_edn("?e") is sym("?e")
    k = read_edn(":db.type/ref")
    assert isinstance(k, Keyword)
    assert (k.ns, k.local) == ("db.type", "ref")
    assert isinstance(read_edn("ns/name"), Symbol)


def test_collections() -> None:
    assert read_edn("[]") == []
    assert read_edn("()") == ()
    assert read_edn("{}") == {}
    assert read_edn("#{}") == frozenset()
    assert read_edn("[1 2 3]") == [1, 2, 3]
    assert read_edn("(1 2 3)") == (1, 2, 3)
    assert read_edn("{:a 1 :b 2}") == {kw("a"): 1, kw("b"): 2}
    assert read_edn("#{1 2 3}") == frozenset({1, 2, 3})
    assert type(read_edn("[1]")) is list
    assert type(read_edn("(1)")) is tuple
    assert type(read_edn("#{1}")) is frozenset
    assert read_edn("{:a 1, :b 2,}") == {kw("a"): 1, kw("b"): 2}  # commas are whitespace
    assert read_edn(",,[,1,,2,],,") == [1, 2]


def test_nesting() -> None:
    text = '{:a [1 (2 #{3 "x"}) {:b {:c [[]]}}] "k" nil}'
    assert read_edn(text) == {
        kw("a"): [1, (2, frozenset({3, "x"})), {kw("b"): {kw("c"): [[]]}}],
        "k": None,
    }
    deep = "[" * 5000 + "]" * 5000  # no Python recursion in the reader
    v = read_edn(deep)
    for _ in range(4999):
        v = v[0]
    assert v == []


def test_any_hashable_map_keys_vectors_become_tuples() -> None:
    assert read_edn("{[1 2] :a}") == {(1, 2): kw("a")}
    assert read_edn("{(1 [2 [3]]) :a}") == {(1, (2, (3,))): kw("a")}
    assert read_edn("#{[1 2] [3 [4]]}") == frozenset({(1, 2), (3, (4,))})
    assert read_edn("{nil 1 true 2 1.5 3 #{1} 4 \"s\" 5}") == {
        None: 1, True: 2, 1.5: 3, frozenset({1}): 4, "s": 5,
    }
    # the lookup-ref key case that matters for transactions
    assert read_edn('{[:person/email "a@b"] 1}') == {(kw("person/email"), "a@b"): 1}


def test_adjacent_tokens_and_delimiters() -> None:
    assert read_edn('[1"a":b[2](3){:c 4}#{5}]') == [1, "a", kw("b"), [2], (3,), {kw("c"): 4}, frozenset({5})]
    assert read_edn(r"[\a\b \c]") == ["a", "b", "c"]
    assert read_edn('#inst"2020-01-01"') == dt.datetime(2020, 1, 1, tzinfo=UTC)


def test_comments_and_discard() -> None:
    assert read_edn("; leading comment\n[1 ; inner\n 2] ; trailing") == [1, 2]
    assert read_edn(";only\n42") == 42
    assert read_edn("[1 #_ 2 3]") == [1, 3]
    assert read_edn("[1 #_[2 [3]] 4]") == [1, 4]
    assert read_edn("#_ #_ 1 2 3") == 3
    assert read_edn("{:a #_ :b 1}") == {kw("a"): 1}
    assert read_edn("1 #_ 2") == 1  # a discarded trailing form is not trailing garbage
    assert read_edn("#_1 2") == 2
    assert read_edn('#uuid #_ "junk" "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"') == uuid.UUID(
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    # tag readers are not called inside a discarded form (EDN spec), so unknown tags are fine there
    assert read_edn('[#_ #unknown/tag {:a #inst "not a date"} 1]') == [1]
    assert read_edn('#_ [#inst "bad"] #_ #_ #x 1 #y 2 3') == 3
    assert read_edn_all("1 ; c\n 2 #_ 3 [4]") == [1, 2, [4]]
    assert read_edn_all("") == []
    assert read_edn_all("  ; nothing\n #_ 1") == []


# ---------------------------------------------------------------------------------------------
# Tagged literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"1985-04-12T23:20:50.52Z"', dt.datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=UTC)),
        ('"1985-04-12T23:20:50.52-07:00"', dt.datetime(1985, 4, 13, 6, 20, 50, 520000, tzinfo=UTC)),
        ('"1985-04-12T23:20:50+05:30"', dt.datetime(1985, 4, 12, 17, 50, 50, tzinfo=UTC)),
        ('"2020-01-01T00:00:00.000-00:00"', dt.datetime(2020, 1, 1, tzinfo=UTC)),
        ('"2020-01-01T00:00:00.123456789Z"', dt.datetime(2020, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ('"2020-01-01"', dt.datetime(2020, 1, 1, tzinfo=UTC)),
        ('"2020-03"', dt.datetime(2020, 3, 1, tzinfo=UTC)),
        ('"2020"', dt.datetime(2020, 1, 1, tzinfo=UTC)),
        ('"2020-01-01T10:20"', dt.datetime(2020, 1, 1, 10, 20, tzinfo=UTC)),
        ('"2020-01-01T10:20:30"', dt.datetime(2020, 1, 1, 10, 20, 30, tzinfo=UTC)),
    ],
)
def test_inst(text: str, expected: dt.datetime) -> None:
    v = read_edn("#inst " + text)
    assert v == expected
    assert v.utcoffset() == dt.timedelta(0)


def test_uuid() -> None:
    u = read_edn('#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"')
    assert u == uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")


def test_custom_tag_readers() -> None:
    readers = {"db/id": lambda v: ("tempid", *v), "point": lambda v: complex(*v)}
    assert read_edn("[#db/id [:db.part/user -1] #point [1 2]]", tag_readers=readers) == [
        ("tempid", kw("db.part/user"), -1), complex(1, 2),
    ]
    # a custom reader overrides a built-in one
    assert read_edn('#inst "x"', tag_readers={"inst": str.upper}) == "X"
    # nested tags
    assert read_edn("#twice #twice 1", tag_readers={"twice": lambda v: v * 2}) == 4


# ---------------------------------------------------------------------------------------------
# Datomic forms


def test_datomic_query() -> None:
    q = read_edn("[:find ?e ?n :in $ ?x :where [?e :person/name ?n] [(> ?n 1)] (not [?e :a 1])]")
    e, n = sym("?e"), sym("?n")
    assert q == [
        kw("find"), e, n,
        kw("in"), sym("$"), sym("?x"),
        kw("where"),
        [e, kw("person/name"), n],
        [(sym(">"), n, 1)],
        (sym("not"), [e, kw("a"), 1]),
    ]


def test_pull_pattern() -> None:
    p = read_edn("[:db/id :name {:friends [:name]} {(:follows :limit 2) ...}]")
    assert p == [
        kw("db/id"),
        kw("name"),
        {kw("friends"): [kw("name")]},
        {(kw("follows"), kw("limit"), 2): sym("...")},
    ]


def test_transaction() -> None:
    tx = read_edn('[{:db/id "t1" :person/name "Ann" :person/born #inst "1990-05-01"} '
                  '[:db/add "t1" :person/friend [:person/email "b@x"]] [:db/retractEntity 42]]')
    assert tx[0][kw("person/born")] == dt.datetime(1990, 5, 1, tzinfo=UTC)
    assert tx[1] == [kw("db/add"), "t1", kw("person/friend"), [kw("person/email"), "b@x"]]
    assert tx[2] == [kw("db/retractEntity"), 42]


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "position", "line_col", "fragment"),
    [
        ('"abc', 0, (1, 1), "unterminated string"),
        ('[1 "abc', 3, (1, 4), "unterminated string"),
        ("[1 2", 4, (1, 5), "unterminated vector: expected ']' to close '[' opened at 1:1"),
        ("{:a [1\n 2}", 9, (2, 3), "expected ']' to close vector opened at 1:5, found '}'"),
        ("(1 (2)", 6, (1, 7), "unterminated list"),
        ("#{1", 3, (1, 4), "unterminated set"),
        ("{:a 1", 5, (1, 6), "unterminated map"),
        (")", 0, (1, 1), "unmatched ')'"),
        ("[1]]", 3, (1, 4), "unmatched ']'"),
        ("[1 2)", 4, (1, 5), "expected ']'"),
        ("{:a 1 :b}", 0, (1, 1), "even number of forms"),
        ("[{:a}]", 1, (1, 2), "even number of forms"),
        ("{:a 1 :a 2}", 0, (1, 1), "duplicate key"),
        ("#{1 1}", 0, (1, 1), "duplicate element"),
        ("#foo 1", 0, (1, 1), "no reader for tag #foo"),
        ("[1 #my/tag 2]", 3, (1, 4), "no reader for tag #my/tag"),
        ("1 2", 2, (1, 3), "expected end of input after the form"),
        ("[1] [2]", 4, (1, 5), "expected end of input"),
        ("{} :a", 3, (1, 4), "expected end of input"),
        ('1 "x"', 2, (1, 3), "expected end of input"),
        ("1 #_2 3", 6, (1, 7), "expected end of input"),
        ('1\n#inst "2020"', 2, (2, 1), "expected end of input"),
        ("1a", 0, (1, 1), "invalid number '1a'"),
        ("[1 0x1F]", 3, (1, 4), "invalid number '0x1F'"),
        ("007", 0, (1, 1), "invalid number"),
        ("1.5N", 0, (1, 1), "invalid number"),
        ("1/2", 0, (1, 1), "invalid number"),
        (".5", 0, (1, 1), "invalid number"),
        ("1..2", 0, (1, 1), "invalid number"),
        ("1e", 0, (1, 1), "invalid number"),
        ("::a", 0, (1, 1), "invalid keyword"),
        (":a/b/c", 0, (1, 1), "invalid keyword"),
        ("a/b/c", 0, (1, 1), "invalid symbol"),
        ("##Foo", 0, (1, 1), "unknown symbolic value"),
        ("#:ns{:a 1}", 0, (1, 1), "unsupported dispatch '#:'"),
        ('#"re"', 0, (1, 1), "unsupported dispatch"),
        (r"\abc", 0, (1, 1), "invalid character literal"),
        (r'"bad \q escape"', 5, (1, 6), "invalid escape"),
        (r'"\u12"', 1, (1, 2), "expected 4 hex digits"),
        ("", 0, (1, 1), "expected a form, but reached end of input"),
        ("  ; just a comment", 18, (1, 19), "expected a form"),
        ("#_", 2, (1, 3), "expected a form after '#_'"),
        ("[1 #_]", 5, (1, 6), "expected a form after '#_', found ']'"),
        ("#inst", 5, (1, 6), "expected a form after tag '#inst'"),
        ('#inst "2020-13-01"', 0, (1, 1), "month must be in 1..12"),
        ('#inst "yesterday"', 0, (1, 1), "RFC 3339"),
        ("#inst 5", 0, (1, 1), "#inst expects a string"),
        ('#uuid "nope"', 0, (1, 1), "invalid #uuid literal"),
    ],
)
def test_errors(text: str, position: int, line_col: tuple[int, int], fragment: str) -> None:
    with pytest.raises(EdnError) as info:
        read_edn(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, DatsyncError)
    assert err.code == "edn/parse-error"
    assert err.data == {"position": position, "line": line_col[0], "column": line_col[1]}
    assert fragment in str(err)
    assert err.position == position
    assert (err.line, err.column) == line_col
    assert str(err).endswith(f"(at {line_col[0]}:{line_col[1]})")


def test_error_pickles() -> None:
    with pytest.raises(EdnError) as info:
        read_edn("[1\n 2")
    err = pickle.loads(pickle.dumps(info.value))
    assert (err.position, err.line, err.column, err.reason, str(err)) == (
        info.value.position, info.value.line, info.value.column, info.value.reason, str(info.value))
    assert err.to_value() == {"code": "edn/parse-error", "message": str(err)}


def test_tag_reader_failure_is_edn_error() -> None:
    def boom(v: object) -> object:
        raise ValueError("no good")

    with pytest.raises(EdnError, match="invalid #x literal: no good") as info:
        read_edn("[#x 1]", tag_readers={"x": boom})
    assert info.value.position == 1


def test_unhashable_tag_values_in_keys_are_edn_errors() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __init__(self, v: object) -> None:
            self.v = v

    with pytest.raises(EdnError, match="unhashable set element"):
        read_edn("#{#s [1]}", tag_readers={"s": Unhashable})
    with pytest.raises(EdnError, match="unhashable map key"):
        read_edn("{#s [1] 2}", tag_readers={"s": Unhashable})
    # mutable collections a tag reader makes are frozen, as vectors and maps are
    assert read_edn("#{#s [1]}", tag_readers={"s": set}) == frozenset({frozenset({1})})
    assert read_edn("{#s [1] 2}", tag_readers={"s": set}) == {frozenset({1}): 2}


def test_read_edn_all_errors_too() -> None:
    with pytest.raises(EdnError, match="unmatched"):
        read_edn_all("1 2 )")


# ---------------------------------------------------------------------------------------------
# Cache


def test_read_edn_cached() -> None:
    text = "[:find ?e :where [?e :cached/attr 1]]"
    a = read_edn_cached(text)
    assert a == read_edn(text)
    assert read_edn_cached(text) is a  # shared: callers must not mutate it
    with pytest.raises(EdnError):
        read_edn_cached("[")


# ---------------------------------------------------------------------------------------------
# Writer


def test_write_scalars() -> None:
    assert write_edn(None) == "nil"
    assert write_edn(True) == "true"
    assert write_edn(False) == "false"
    assert write_edn(42) == "42"
    assert write_edn(-7) == "-7"
    assert write_edn(1.0) == "1.0"
    assert write_edn(1e22) == "1e+22"
    assert write_edn(math.inf) == "##Inf"
    assert write_edn(-math.inf) == "##-Inf"
    assert write_edn(math.nan) == "##NaN"
    assert write_edn(Decimal("1.5")) == "1.5M"
    assert write_edn(Decimal("1")) == "1M"
    assert write_edn('a"b\\c\n\t\x01') == r'"a\"b\\c\n\t\u0001"'
    assert write_edn("ünï😀") == '"ünï😀"'
    assert write_edn(kw("db.type/ref")) == ":db.type/ref"
    assert write_edn(sym("?e")) == "?e"
    assert write_edn(uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")) == (
        '#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"')


def test_write_collections() -> None:
    assert write_edn([1, [2], (3, 4)]) == "[1 [2] (3 4)]"
    assert write_edn(()) == "()"
    assert write_edn({kw("a"): 1, kw("b"): 2}) == "{:a 1, :b 2}"
    assert write_edn({}) == "{}"
    assert write_edn(frozenset({1})) == "#{1}"
    assert write_edn({1}) == "#{1}"
    assert write_edn(Datom(1, "a", 2, 3)) == '(1 "a" 2 3 true)'  # tuple subclasses write as lists


def test_write_inst() -> None:
    d = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert write_edn(d) == '#inst "2020-01-01T00:00:00.000Z"'
    d2 = dt.datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    assert write_edn(d2) == '#inst "1985-04-13T06:20:50.520Z"'
    d3 = dt.datetime(2020, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert write_edn(d3) == '#inst "2020-01-01T00:00:00.123456Z"'  # sub-ms precision is kept
    assert read_edn(write_edn(d2)) == d2
    assert read_edn(write_edn(d3)) == d3


def test_write_errors() -> None:
    with pytest.raises(ValueError, match="naive"):
        write_edn(dt.datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="finite"):
        write_edn(Decimal("NaN"))
    with pytest.raises(ValueError, match="not a valid EDN keyword"):
        write_edn(kw("has space"))
    with pytest.raises(ValueError, match="not a valid EDN symbol"):
        write_edn(sym("nil"))
    with pytest.raises(TypeError, match="cannot write a bytes"):
        write_edn(b"x")
    with pytest.raises(TypeError, match="cannot write a object"):
        write_edn([object()])


def test_big_ints_round_trip() -> None:
    big = 10**5000 + 7  # beyond int()'s default 4300-digit str conversion limit
    text = write_edn(big)
    assert read_edn(text) == big
    assert read_edn("-" + text + "N") == -big


# ---------------------------------------------------------------------------------------------
# Round-trip property

_name = st.from_regex(r"[a-zA-Z_*!?<>=][a-zA-Z0-9_.*!?<>=+-]{0,6}(/[a-z][a-z0-9.-]{0,6})?", fullmatch=True)
keywords = st.builds(kw, _name)
symbols = st.builds(sym, _name.filter(lambda s: s not in ("nil", "true", "false"))) | st.sampled_from(
    [sym(s) for s in ("...", "_", "$", "$x", "%", ">", "-", "+", "/", "?e", "re-find", "ns/name")]
)
_offsets = st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-7)), dt.timezone(dt.timedelta(hours=5, minutes=30))])
instants = st.datetimes(
    min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=_offsets
)
ms_instants = instants.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(),
    keywords,
    symbols,
    st.uuids(),
    instants,
    ms_instants,
)
hashables = st.recursive(
    scalars,
    lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.sets(hashables, max_size=3),
    ),
    max_leaves=16,
)


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip(x: object) -> None:
    text = write_edn(x)
    assert read_edn(text) == x


@settings(max_examples=25, deadline=None)
@given(st.lists(values, max_size=5))
def test_round_trip_all(xs: list[object]) -> None:
    text = "\n".join(write_edn(x) for x in xs)
    assert read_edn_all(text) == xs


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_strings_round_trip_exactly(s: str) -> None:
    assert read_edn(write_edn(s)) == s


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[](){}#_:"\\ ;,\n019.-+eMNuxa/?', max_size=30))
def test_reader_only_raises_edn_error(s: str) -> None:
    """Arbitrary EDN-ish text either parses or raises EdnError, never anything else."""
    with contextlib.suppress(EdnError):
        read_edn_all(s)


def test_maps_inside_map_keys_and_sets_are_frozen():
    from pyrsistent import pmap

    assert read_edn("#{{:a 1}}") == frozenset({pmap({kw("a"): 1})})
    key = (kw("default"), kw("x"), pmap({kw("a"): [1]}))
    assert read_edn("{(:default :x {:a [1]}) y}") == {(kw("default"), kw("x"), pmap({kw("a"): (1,)})): sym("y")}
    assert key[2] == {kw("a"): [1]}
