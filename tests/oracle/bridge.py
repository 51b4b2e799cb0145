"""Python side of the differential-testing harness against the real DataScript (npm ``datascript`` 1.8.1).

``DataScriptOracle`` keeps one ``node ds_runner.js`` process open and exchanges JSON lines with it; the
``to_js_*`` functions translate the project's Python spelling of schemas, tx forms and values into
DataScript's JS spelling, and the ``*_from_js`` functions translate results back.

Our spelling -> DataScript's JS spelling:

- attributes are plain strings either way (``"person/name"``; a ``Keyword`` attribute is accepted too);
- ``"db/id"`` -> ``":db/id"``; ops ``"db/add"`` -> ``":db/add"`` (any op string or ``Keyword`` gets a colon);
- schema property names and keyword-valued properties get a colon (``kw("db.type/ref")`` or
  ``"db.type/ref"`` -> ``":db.type/ref"``); ``db/tupleAttrs`` stays a list of attribute strings;
- tempids (negative ints, strings) pass through; ``"db/current-tx"`` / ``kw("db/current-tx")`` ->
  ``":db/current-tx"``; lookup refs ``("attr", value)`` -> ``["attr", value]``;
- values: ``None``, ``bool``, ``int`` (|i| <= 2**53), finite ``float``, ``str`` pass through; tuples and
  lists become JS arrays (DataScript turns them into vectors: a tuple value, or a lookup ref for a ref
  attribute).  ``Keyword`` values (other than ``db/current-tx``), ``Symbol``, uuid, datetime, Decimal and
  bytes values raise ``UnsupportedValue``: the JS API never turns a value into a keyword (``":foo"``
  stays a string), so they cannot be represented faithfully.

JS arrays in value position (what we found in DataScript 1.8.1):

- list form ``[":db/add", e, a, [x, y]]`` always means ONE vector value (a lookup ref if ``a`` is a
  ref attribute);
- map form ``{a: [x, y]}`` means the values x and y when ``a`` is cardinality-many or a reverse
  attribute (``"_friends"``), and one vector value otherwise.  DataScript keeps a 2-array whose first
  element is a ``:db.unique/identity`` attribute as ONE lookup ref even in a multi-valued context.
  Hence ``to_js_tx(forms, schema)`` wraps a Python *tuple* given for a multi-valued attribute in map
  form into a one-element array (one tuple value / lookup ref), and turns a list/set/frozenset into
  the array of its elements (in iteration order, which DataScript follows when allocating ids).
  Without a schema it cannot know which attributes are cardinality-many, so pass the schema.

Results: datoms come back as tuples ``(e, a, v, tx, added)`` / ``(e, a, v, tx)`` with JS arrays turned
into Python tuples (tuple values); numbers that are integral come back as ``int`` (JS has one number
type); tempids come back keyed by ``int`` for negative-int tempids, ``"db/current-tx"`` for the
current tx, and ``str`` otherwise (so a *string* tempid ``"-1"`` is reported as ``-1``).
"""

from __future__ import annotations

import atexit
import json
import math
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ORACLE_DIR = Path(__file__).resolve().parent
RUNNER = ORACLE_DIR / "ds_runner.js"
DATASCRIPT_PACKAGE = ORACLE_DIR / "node_modules" / "datascript" / "package.json"
INSTALL_HINT = "Node.js/npm or tests/oracle/node_modules missing: run (cd tests/oracle && npm ci)"
DATASCRIPT_VERSION = "1.8.1"
TX0 = 536870912  # DataScript's tx0; the first transaction gets TX0 + 1
MAX_SAFE_INT = 2**53

CURRENT_TX = "db/current-tx"  # our key for the current tx in tempids dicts
_JS_CURRENT_TX = ":db/current-tx"
_NEG_INT = re.compile(r"-[0-9]+")
_SCHEMA_KEYWORD_PROPS = frozenset({"db/valueType", "db/cardinality", "db/unique", "db/tupleType"})


class OracleError(RuntimeError):
    """The runner process failed, or DataScript rejected a request as a whole (``fatal``/``init_error``).

    ``error`` and ``code`` carry DataScript's message and ex-data ``:error`` when there is one.
    """

    def __init__(self, message: str, *, error: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.code = code


def is_keyword(x: Any) -> bool:
    """True for the project's ``Keyword`` (duck-typed, so this harness does not import the engine and
    works whether the core is imported as ``datsync.core`` or as ``core``)."""
    return type(x).__name__ == "Keyword" and isinstance(getattr(x, "name", None), str)


class UnsupportedValue(ValueError):
    """A value that cannot cross into DataScript's JS API faithfully (keywords, uuids, big ints...)."""


# ---------------------------------------------------------------------------------------------
# availability


def node_executable() -> str | None:
    """Path of ``node`` on PATH, or None."""
    return shutil.which("node")


def node_available() -> bool:
    """True when ``node`` is on PATH and ``tests/oracle/node_modules/datascript`` is installed."""
    return node_executable() is not None and DATASCRIPT_PACKAGE.is_file()


def require_oracle() -> None:
    """In a test: skip it (``pytest.skip``) unless node and tests/oracle/node_modules are present."""
    if not node_available():
        import pytest

        pytest.skip(INSTALL_HINT)


# ---------------------------------------------------------------------------------------------
# the runner process


class DataScriptOracle:
    """One long-lived ``node ds_runner.js``; ``run(request) -> response`` over JSON lines.

    Use as a context manager (``with DataScriptOracle() as ds: ds.run({...})``) or call ``close()``.
    The process starts lazily on the first request; if it dies, that request raises ``OracleError``
    and the next one starts a new process.
    Requests and responses are in DataScript's JS spelling (see ds_runner.js); ``run`` returns the raw
    response dict, including ``{"fatal": ...}`` / ``{"init_error": {...}}`` ones.  Thread-safe.
    """

    def __init__(self, node: str | None = None) -> None:
        self._node = node
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> DataScriptOracle:
        with self._lock:
            self._ensure_started()
        return self

    def _ensure_started(self) -> subprocess.Popen[str]:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                return proc
            _discard(proc)  # died between requests: start a new one
        node = self._node or node_executable()
        if node is None or not DATASCRIPT_PACKAGE.is_file():
            raise OracleError(INSTALL_HINT)
        self._proc = proc = subprocess.Popen(
            [node, str(RUNNER)],
            cwd=str(ORACLE_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        return proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> DataScriptOracle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests --------------------------------------------------------------------------------

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request (JS spelling) and return the runner's response."""
        line = _dumps(request)
        with self._lock:
            proc = self._ensure_started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                out = proc.stdout.readline()
            except OSError as e:  # broken pipe: the runner died
                out = ""
                err: BaseException | None = e
            else:
                err = None
            if not out.endswith("\n"):  # EOF or a truncated line: the runner died
                self._proc = None
                rc = _discard(proc)
                raise OracleError(f"ds_runner.js exited unexpectedly (returncode {rc})") from err
        return json.loads(out)

    def run_many(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send many requests pipelined (a writer thread feeds stdin) and return the responses in order."""
        lines = [_dumps(r) for r in requests]
        if not lines:
            return []
        with self._lock:
            proc = self._ensure_started()
            assert proc.stdin is not None and proc.stdout is not None
            stdin = proc.stdin
            write_error: list[BaseException] = []

            def feed() -> None:
                try:
                    for chunk_start in range(0, len(lines), 256):
                        stdin.write("".join(lines[chunk_start : chunk_start + 256]))
                    stdin.flush()
                except OSError as e:
                    write_error.append(e)

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            results: list[dict[str, Any]] = []
            for _ in lines:
                out = proc.stdout.readline()
                if not out.endswith("\n"):
                    self._proc = None
                    rc = _discard(proc)
                    writer.join(timeout=1)
                    raise OracleError(
                        f"ds_runner.js exited unexpectedly (returncode {rc})",
                    ) from (write_error[0] if write_error else None)
                results.append(json.loads(out))
            writer.join()
        return results


def _discard(proc: subprocess.Popen[str]) -> int | None:
    """Kill a runner that stopped answering, close its pipes, and return its exit code."""
    if proc.poll() is None:
        proc.kill()
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    return proc.wait()


def _dumps(request: Mapping[str, Any]) -> str:
    try:
        return json.dumps(request, separators=(",", ":"), allow_nan=False) + "\n"
    except ValueError as e:
        raise UnsupportedValue(f"request is not valid JSON: {e}") from e


_shared: DataScriptOracle | None = None
_shared_lock = threading.Lock()


def shared_oracle() -> DataScriptOracle:
    """A process-wide ``DataScriptOracle``, started on first use and closed at interpreter exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DataScriptOracle()
            atexit.register(_shared.close)
        return _shared.start()


# ---------------------------------------------------------------------------------------------
# our spelling -> DataScript's JS spelling


def _kname(x: Any) -> str:
    """``"db/add"``, ``":db/add"`` or ``kw("db/add")`` -> ``"db/add"``."""
    if is_keyword(x):
        return x.name
    if isinstance(x, str):
        return x[1:] if x.startswith(":") else x
    raise UnsupportedValue(f"expected a keyword name, got {x!r}")


def _colon(x: Any) -> str:
    return ":" + _kname(x)


def to_js_attr(a: Any) -> str:
    """An attribute: plain strings pass through, a ``Keyword`` becomes its name."""
    if is_keyword(a):
        return a.name
    if isinstance(a, str):
        return a
    raise UnsupportedValue(f"attribute must be a str, got {a!r}")


def to_js_value(v: Any) -> Any:
    """A value: JSON scalars pass through, tuples/lists/sets -> arrays, dicts -> entity maps."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if abs(v) > MAX_SAFE_INT:
            raise UnsupportedValue(f"integer {v} does not fit a JS number exactly")
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise UnsupportedValue(f"non-finite float {v!r} has no JSON form")
        return v
    if is_keyword(v):
        if v.name == CURRENT_TX:
            return _JS_CURRENT_TX
        raise UnsupportedValue(
            f"keyword value {v!r} cannot cross into DataScript JS (it has no keyword values)"
        )
    if isinstance(v, (tuple, list)):
        return [to_js_value(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return [to_js_value(x) for x in v]
    if isinstance(v, Mapping):
        return to_js_entity_map(v)
    raise UnsupportedValue(f"value {v!r} of type {type(v).__name__} is not supported by the oracle")


def to_js_eid(e: Any) -> Any:
    """An entity position: an id or tempid, ``"db/current-tx"``, or a lookup ref ``("attr", value)``."""
    if isinstance(e, bool):
        raise UnsupportedValue(f"bad entity id {e!r}")
    if isinstance(e, int):
        return to_js_value(e)
    if isinstance(e, str):
        return _JS_CURRENT_TX if e == CURRENT_TX else e
    if is_keyword(e):
        if e.name == CURRENT_TX:
            return _JS_CURRENT_TX
        raise UnsupportedValue(f"bad entity id {e!r}")
    if isinstance(e, (tuple, list)) and len(e) == 2:
        return [to_js_attr(e[0]), to_js_value(e[1])]
    raise UnsupportedValue(f"bad entity id {e!r}")


def _is_db_id_key(k: Any) -> bool:
    return (isinstance(k, str) or is_keyword(k)) and _kname(k) == "db/id"


def _is_reverse(a: str) -> bool:
    return a.rpartition("/")[2].startswith("_")


def _schema_prop(schema: Mapping[Any, Any] | None, attr: str, prop: str) -> Any:
    if not schema:
        return None
    props = schema.get(attr)
    if props is None:
        return None
    for k, v in props.items():
        if (isinstance(k, str) or is_keyword(k)) and _kname(k) == prop:
            return v
    return None


def _is_many(schema: Mapping[Any, Any] | None, attr: str) -> bool:
    card = _schema_prop(schema, attr, "db/cardinality")
    return (isinstance(card, str) or is_keyword(card)) and _kname(card) == "db.cardinality/many"


def to_js_entity_map(m: Mapping[Any, Any], schema: Mapping[Any, Any] | None = None) -> dict[str, Any]:
    """A map-form entity (nested maps included)."""
    out: dict[str, Any] = {}
    for k, v in m.items():
        if _is_db_id_key(k):
            out[":db/id"] = to_js_eid(v)
            continue
        a = to_js_attr(k)
        if isinstance(v, Mapping):
            out[a] = to_js_entity_map(v, schema)
        elif _is_reverse(a) or _is_many(schema, a):
            if isinstance(v, (list, set, frozenset)):
                out[a] = [
                    to_js_entity_map(x, schema) if isinstance(x, Mapping) else to_js_value(x) for x in v
                ]
            elif isinstance(v, tuple):
                out[a] = [to_js_value(v)]  # one tuple value / lookup ref, not a collection
            else:
                out[a] = to_js_value(v)
        else:
            out[a] = to_js_value(v)
    return out


def to_js_tx_form(form: Any, schema: Mapping[Any, Any] | None = None) -> Any:
    """One tx form: a map (entity) or a list/tuple ``[op, e, a?, v...]``."""
    if isinstance(form, Mapping):
        return to_js_entity_map(form, schema)
    if isinstance(form, (list, tuple)) and form:
        op = _kname(form[0])
        if op == "db.fn/call":
            raise UnsupportedValue("db.fn/call cannot cross into DataScript JS")
        out: list[Any] = [":" + op]
        if len(form) > 1:
            out.append(to_js_eid(form[1]))
        if len(form) > 2:
            out.append(to_js_attr(form[2]))
        out.extend(to_js_value(x) for x in form[3:])
        return out
    raise UnsupportedValue(f"bad tx form {form!r}")


def to_js_tx(forms: Iterable[Any], schema: Mapping[Any, Any] | None = None) -> list[Any]:
    """A transaction's tx-data (list of forms); pass the schema so map forms split multi-values right."""
    return [to_js_tx_form(f, schema) for f in forms]


def _schema_value(prop: str, v: Any) -> Any:
    if prop in _SCHEMA_KEYWORD_PROPS:
        return _colon(v) if (isinstance(v, str) or is_keyword(v)) else v
    if prop == "db/tupleTypes":
        return [_colon(x) for x in v]
    if prop == "db/tupleAttrs":
        return [to_js_attr(x) for x in v]
    if is_keyword(v):
        return _colon(v)
    return v


def to_js_schema(schema: Mapping[Any, Mapping[Any, Any]] | None) -> dict[str, dict[str, Any]]:
    """A schema, e.g. ``{"friends": {"db/valueType": kw("db.type/ref")}}`` ->
    ``{"friends": {":db/valueType": ":db.type/ref"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for attr, props in (schema or {}).items():
        js_props: dict[str, Any] = {}
        for k, v in props.items():
            prop = _kname(k)
            js_props[":" + prop] = _schema_value(prop, v)
        out[to_js_attr(attr)] = js_props
    return out


def to_js_datoms(datoms: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Datoms ``(e, a, v)`` / ``(e, a, v, tx)`` / ``(e, a, v, tx, added)`` for ``init_datoms``.

    ``added`` is dropped (DataScript's ``init_db`` treats every datom as an assertion); a missing tx
    means ``TX0``.
    """
    out: list[list[Any]] = []
    for dt in datoms:
        row = [dt[0], to_js_attr(dt[1]), to_js_value(dt[2])]
        if len(dt) > 3 and dt[3] is not None:
            row.append(dt[3])
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# DataScript's JS results -> our spelling


def from_js_value(v: Any) -> Any:
    """A datom value: arrays (tuple values) -> tuples, recursively."""
    if isinstance(v, list):
        return tuple(from_js_value(x) for x in v)
    return v


def datoms_from_js(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """``[[e, a, v, tx, added], ...]`` -> ``[(e, a, v, tx, added), ...]`` (4-element rows stay 4 long)."""
    return [(r[0], r[1], from_js_value(r[2]), *r[3:]) for r in rows]


def tempids_from_js(tempids: Mapping[str, int]) -> dict[int | str, int]:
    """``{"-1": 1, "foo": 2, ":db/current-tx": tx}`` -> ``{-1: 1, "foo": 2, "db/current-tx": tx}``."""
    out: dict[int | str, int] = {}
    for k, v in tempids.items():
        if k == _JS_CURRENT_TX:
            out[CURRENT_TX] = v
        elif _NEG_INT.fullmatch(k):
            out[int(k)] = v
        else:
            out[k] = v
    return out


def pull_from_js(result: Any) -> Any:
    """A pull / entity result: ``":db/id"`` keys -> ``"db/id"``, recursively; everything else as is."""
    if isinstance(result, dict):
        return {("db/id" if k == ":db/id" else k): pull_from_js(v) for k, v in result.items()}
    if isinstance(result, list):
        return [pull_from_js(x) for x in result]
    return result


def tx_result_from_js(r: Mapping[str, Any]) -> dict[str, Any]:
    """One element of a response's ``txs``: ``{"tempids", "tx_data"}`` or ``{"error", "code"}``.

    With ``snapshot_each`` the runner also sent ``"db"``; it is kept as a list of ``(e, a, v, tx)``.
    """
    if "error" in r:
        out: dict[str, Any] = {"error": r["error"], "code": r.get("code")}
    else:
        out = {"tempids": tempids_from_js(r["tempids"]), "tx_data": datoms_from_js(r["tx_data"])}
    if "db" in r:
        out["db"] = datoms_from_js(r["db"])
    return out


# ---------------------------------------------------------------------------------------------
# convenience


def transact_request(
    schema: Mapping[Any, Any] | None,
    txs: Iterable[Iterable[Any]],
    init_datoms: Iterable[Sequence[Any]] | None = None,
    *,
    snapshot_each: bool = False,
) -> dict[str, Any]:
    """The runner request (JS spelling) for ``schema`` + ``txs`` (+ ``init_datoms``), all in our spelling."""
    req: dict[str, Any] = {"schema": to_js_schema(schema), "txs": [to_js_tx(tx, schema) for tx in txs]}
    if init_datoms is not None:
        req["init_datoms"] = to_js_datoms(init_datoms)
    if snapshot_each:
        req["snapshot_each"] = True
    return req


def transact_response(resp: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """``(per-tx results, final datoms)`` from a runner response; raises ``OracleError`` on fatal ones."""
    if "fatal" in resp:
        raise OracleError(f"ds_runner.js: {resp['fatal']}", error=resp["fatal"])
    if "init_error" in resp:
        ie = resp["init_error"]
        raise OracleError(
            f"DataScript rejected the schema/init_datoms: {ie.get('error')}",
            error=ie.get("error"),
            code=ie.get("code"),
        )
    return [tx_result_from_js(r) for r in resp["txs"]], datoms_from_js(resp["datoms"])


def ds_transact_stream(
    schema: Mapping[Any, Any] | None,
    txs: Iterable[Iterable[Any]],
    init_datoms: Iterable[Sequence[Any]] | None = None,
    *,
    snapshot_each: bool = False,
    oracle: DataScriptOracle | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Run ``txs`` (each a list of tx forms, our spelling) one after another on a fresh DataScript conn.

    Returns ``(results, datoms)``: one result per tx, ``{"tempids": {...}, "tx_data": [(e, a, v, tx,
    added), ...]}`` or ``{"error": message, "code": "transact/upsert" | None}`` (a failed tx changes
    nothing; later txs still run), and the final db as ``[(e, a, v, tx), ...]`` in DataScript's EAVT
    order.  Uses ``shared_oracle()`` unless ``oracle`` is given.
    """
    req = transact_request(schema, txs, init_datoms, snapshot_each=snapshot_each)
    return transact_response((oracle or shared_oracle()).run(req))
