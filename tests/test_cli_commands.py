"""The ``datsync`` commands on targets (q, pull, transact, import, export, status), run as real
processes against store files, and against a real server where the replica client is present."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datsync.core import kw
from datsync.core.edn import read_edn

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = str(ROOT / "docs" / "examples" / "people.edn")


def datsync(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATSYNC_TOKEN"}
    return subprocess.run([sys.executable, "-m", "datsync.shell", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, input=stdin, env=env)


def ok(*args: str, stdin: str | None = None):
    r = datsync(*args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return read_edn(r.stdout)


def fails(status: int, code: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    r = datsync(*args, stdin=stdin)
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert f": {code}: " in r.stderr, r.stderr
    return r


def body(export_text: str) -> str:
    """An export without its header comment (which names the source and its db-id)."""
    return "".join(line for line in export_text.splitlines(keepends=True) if not line.startswith(";;"))


K = kw


@pytest.fixture
def people(tmp_path) -> str:
    store = str(tmp_path / "people.sqlite")
    summary = ok("import", store, PEOPLE)
    assert summary == {K("t"): 4, K("attributes"): 4, K("datoms"): 0, K("entities"): 0, K("batches"): 0,
                       K("transactions"): 3}
    return store


# ------------------------------------------------------------------------------------------------
# q and pull


def test_q_relation_scalar_collection_and_inputs(people, tmp_path):
    assert ok("q", people, "[:find ?n ?a :where [?e :person/name ?n] [?e :person/age ?a]]") == frozenset(
        {("Ivan", 32), ("Petr", 27), ("Oleg", 40)})
    r = datsync("q", people, "[:find ?n ?a :where [?e :person/name ?n] [?e :person/age ?a]]")
    assert r.stdout.splitlines() == ['#{["Ivan" 32]', '  ["Oleg" 40]', '  ["Petr" 27]}']  # a row a line, sorted
    assert ok("q", people, "[:find ?a . :in $ ?n :where [?e :person/name ?n] [?e :person/age ?a]]", '"Ivan"') == 32
    assert ok("q", people, "[:find [?n ...] :in $ [?a ...] :where [?e :person/age ?a] [?e :person/name ?n]]",
              "[27 40]") == ["Oleg", "Petr"]
    assert ok("q", people, "[:find ?a . :in $ ?e :where [?e :person/age ?a]]", '[:person/name "Petr"]') == 27
    assert ok("q", people, "[:find (pull ?e [:person/name]) . :where [?e :person/age 40]]") == {
        K("person/name"): "Oleg"}
    (tmp_path / "reach.edn").write_text("[:find [?n ...] :in $ ?start % :where (reach ?start ?f) [?f :person/name ?n]]")
    (tmp_path / "rules.edn").write_text("[[(reach ?a ?b) [?a :person/friends ?b]]\n"
                                        " [(reach ?a ?b) [?a :person/friends ?x] (reach ?x ?b)]]")
    assert ok("q", people, f"@{tmp_path / 'reach.edn'}", '[:person/name "Oleg"]', f"@{tmp_path / 'rules.edn'}") == [
        "Ivan", "Petr"]


def test_q_passes_the_database_only_to_a_query_that_reads_one(people):
    assert ok("q", people, "[:find ?x . :where [(ground 42) ?x]]") == 42  # no :in, no $: no inputs
    assert ok("q", people, "[:find ?x . :in ?y :where [(inc ?y) ?x]]", "41") == 42
    assert ok("q", people, "[:find (count ?e) . :where [?e :person/name]]") == 3


def test_q_time_views_on_a_store(people):
    # t=3 is before Ivan's age changed to 32 (transaction 3 of people.edn, t=4)
    assert ok("q", people, "--as-of", "3", '[:find ?a . :where [?e :person/name "Ivan"] [?e :person/age ?a]]') == 31
    assert ok("q", people, "--history", '[:find ?a ?added :where [?e :person/name "Ivan"] [?e :person/age ?a _ ?added]]'
              ) == frozenset({(31, True), (31, False), (32, True)})


def test_pull_one_and_many(people, tmp_path):
    assert ok("pull", people, "[:person/name {:person/friends [:person/name]}]", '[:person/name "Oleg"]') == {
        K("person/name"): "Oleg",
        K("person/friends"): [{K("person/name"): "Ivan"}, {K("person/name"): "Petr"}],
    }
    (tmp_path / "pattern.edn").write_text("[:person/name :person/age]")
    assert ok("pull", people, f"@{tmp_path / 'pattern.edn'}", '[:person/name "Ivan"]', '[:person/name "Petr"]') == [
        {K("person/name"): "Ivan", K("person/age"): 32}, {K("person/name"): "Petr", K("person/age"): 27}]
    attr = ok("pull", people, "[:db/ident {:db/valueType [:db/ident]}]", ":person/age")
    assert attr == {K("db/ident"): K("person/age"), K("db/valueType"): {K("db/ident"): K("db.type/long")}}
    assert ok("pull", people, "[:person/name]", '[:person/name "Nobody"]') is None


# ------------------------------------------------------------------------------------------------
# transact


def test_transact_one_and_many(people, tmp_path):
    out = ok("transact", people, "-", stdin='[{:db/id "anna" :person/name "Anna" :person/age 25 '
                                            ':person/friends [[:person/name "Ivan"] [:person/name "Petr"]]}'
                                            ' [:db/add [:person/name "Petr"] :person/aliases "Petya"]]')
    assert out[K("t")] == 5 and out[K("tx")] == 0x20000000 + 5
    anna = out[K("tempids")]["anna"]
    assert ok("pull", people, "[:person/name {:person/friends [:person/name]}]", str(anna)) == {
        K("person/name"): "Anna", K("person/friends"): [{K("person/name"): "Ivan"}, {K("person/name"): "Petr"}]}
    many = tmp_path / "many.edn"
    many.write_text('[[{:db/ident :person/email :db/valueType :db.type/string :db/cardinality :db.cardinality/one'
                    '   :db/unique :db.unique/identity}]'
                    ' [[:db/add [:person/name "Anna"] :person/email "anna@example.com"]]'
                    ' [[:db/cas [:person/name "Anna"] :person/age 25 26]]]')
    r = datsync("transact", people, str(many), "--many")
    assert r.returncode == 0, r.stderr
    assert [m[K("t")] for m in map(read_edn, r.stdout.splitlines())] == [6, 7, 8]
    assert ok("pull", people, "[:person/age]", '[:person/email "anna@example.com"]') == {K("person/age"): 26}


def test_transact_refusals_exit_1_with_the_error_code(people, tmp_path):
    fails(1, "db.error/wrong-type-for-attribute", "transact", people, "-",
          stdin='[[:db/add [:person/name "Ivan"] :person/age "old"]]')
    fails(1, "db.error/cas-failed", "transact", people, "-", stdin='[[:db/cas [:person/name "Ivan"] :person/age 1 2]]')
    many = tmp_path / "many.edn"
    many.write_text('[[{:person/name "Zed"}] [[:db/add [:person/name "Nobody"] :person/age 1]] [{:person/name "Y"}]]')
    r = fails(1, "db.error/not-an-entity", "transact", people, str(many), "--many")
    assert "transaction 1 failed (1 committed before it)" in r.stderr
    assert [read_edn(line)[K("t")] for line in r.stdout.splitlines()] == [5]  # the first one is committed
    assert ok("q", people, '[:find ?e . :where [?e :person/name "Y"]]') is None


def test_usage_and_io_errors_exit_2(people, tmp_path):
    fails(2, "store/not-found", "q", str(tmp_path / "missing.sqlite"), "[:find ?e :where [?e :person/name]]")
    assert not (tmp_path / "missing.sqlite").exists()  # reads never create a store
    fails(2, "edn/parse-error", "q", people, "[:find ?e :where [?e :person/name]")
    fails(2, "io/unreadable", "transact", people, str(tmp_path / "nope.edn"))
    fails(2, "edn/shape", "transact", people, "-", stdin='[[{:person/name "A"}] [{:person/name "B"}]]')  # --many?
    fails(2, "edn/shape", "transact", people, "-", stdin='{:person/name "A"}')
    notastore = tmp_path / "text.sqlite"
    notastore.write_text("hello, I am not a database" * 100)
    fails(2, "store/unreadable", "q", str(notastore), "[:find ?e :where [?e :a]]")
    fails(1, "db.error/insufficient-binding", "q", people, "[:find ?x :where [(> ?x 1)]]")
    r = datsync("q", people)
    assert r.returncode == 2 and "QUERY" in r.stderr
    fails(2, "usage/time-view", "q", "ws://127.0.0.1:9/", "--as-of", "1", "[:find ?e :where [?e :a]]")


# ------------------------------------------------------------------------------------------------
# import and export


TYPES = """
{:schema {:thing/name   {:db/valueType :db.type/string :db/cardinality :db.cardinality/one
                         :db/unique :db.unique/identity :db/doc "a name"}
          :thing/kw     {:db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}
          :thing/long   {:db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/index true}
          :thing/bigint {:db/valueType :db.type/bigint :db/cardinality :db.cardinality/one}
          :thing/double {:db/valueType :db.type/double :db/cardinality :db.cardinality/one}
          :thing/bool   {:db/valueType :db.type/boolean :db/cardinality :db.cardinality/one}
          :thing/inst   {:db/valueType :db.type/instant :db/cardinality :db.cardinality/one}
          :thing/uuid   {:db/valueType :db.type/uuid :db/cardinality :db.cardinality/one}
          :thing/uri    {:db/valueType :db.type/uri :db/cardinality :db.cardinality/one}
          :thing/bytes  {:db/valueType :db.type/bytes :db/cardinality :db.cardinality/one}
          :thing/bigdec {:db/valueType :db.type/bigdec :db/cardinality :db.cardinality/one}
          :thing/sym    {:db/valueType :db.type/symbol :db/cardinality :db.cardinality/one}
          :thing/pair   {:db/valueType :db.type/tuple :db/tupleTypes [:db.type/long :db.type/string]
                         :db/cardinality :db.cardinality/one}
          :thing/pairs  {:db/valueType :db.type/tuple :db/tupleType :db.type/long :db/cardinality :db.cardinality/many}
          :thing/color  {:db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
          :thing/parts  {:db/valueType :db.type/ref :db/cardinality :db.cardinality/many :db/isComponent true}
          :thing/key    {:db/valueType :db.type/tuple :db/tupleAttrs [:thing/name :thing/long]
                         :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
          :thing/about  {:db/valueType :db.type/ref :db/cardinality :db.cardinality/one}}
 :datoms [["red" :db/ident :color/red]
          ["red" :db/doc "the red one"]
          [:thing/name :thing/kw :meta/on-an-attribute]
          [1 :thing/name "one"] [1 :thing/kw :a/b] [1 :thing/long 42] [1 :thing/bigint 123456789012345678901234567890N]
          [1 :thing/double 1.5] [1 :thing/bool false] [1 :thing/inst #inst "2026-01-02T03:04:05.678Z"]
          [1 :thing/uuid #uuid "8e4d8d36-0d2c-4f3b-8b8e-7f0c6f0a8a11"] [1 :thing/uri "https://example.com/x?y=1"]
          [1 :thing/bytes #datsync/bytes "AAEC/w=="] [1 :thing/bigdec 3.14159M] [1 :thing/sym foo/bar]
          [1 :thing/pair [7 "seven"]] [1 :thing/pairs [1 2]] [1 :thing/pairs [3 4 5]] [1 :thing/color "red"]
          [1 :thing/parts 2] [1 :thing/parts 3] [1 :thing/about :thing/name]
          [2 :thing/name "two"] [3 :thing/name "three"] [3 :thing/color "red"]]
 :tx-data [[{:thing/name "four" :thing/pair [1 "x"] :thing/pairs [[9 9] [8 8]] :thing/color :color/red
             :thing/parts [{:thing/name "five"}]}]]}
"""


def test_import_export_round_trip_every_value_type(tmp_path):
    src = tmp_path / "types.edn"
    src.write_text(TYPES)
    a, b = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    summary = ok("import", a, str(src))
    assert summary[K("attributes")] == 18 and summary[K("datoms")] == 25 and summary[K("transactions")] == 1
    exported = tmp_path / "a.edn"
    assert datsync("export", a, "--out", str(exported)).returncode == 0
    text = exported.read_text()
    data = read_edn(text, tag_readers={"datsync/bytes": base64.b64decode})
    assert set(data) == {K("schema"), K("datoms")}
    assert data[K("schema")][K("thing/pair")][K("db/tupleTypes")] == [K("db.type/long"), K("db.type/string")]
    assert data[K("schema")][K("thing/name")][K("db/doc")] == "a name"
    rows = {(r[1], r[2]) for r in data[K("datoms")]}
    assert (K("thing/bytes"), b"\x00\x01\x02\xff") in rows and (K("thing/pair"), (7, "seven")) in rows
    assert (K("thing/about"), K("thing/name")) in rows  # refs to attributes are written as idents
    assert not any(r[1] == K("thing/key") for r in data[K("datoms")])  # composite tuples are recomputed
    assert [K("thing/name"), K("thing/kw"), K("meta/on-an-attribute")] in data[K("datoms")]
    # import(export(x)) has the same data: exporting it again gives the same file
    ok("import", b, str(exported))
    again = datsync("export", b)
    assert again.returncode == 0 and body(again.stdout) == body(text)
    assert ok("pull", b, "[:thing/key {:thing/color [:db/ident]} {:thing/parts [:thing/name]}]",
              '[:thing/name "one"]') == {
        K("thing/key"): ("one", 42), K("thing/color"): {K("db/ident"): K("color/red")},
        K("thing/parts"): [{K("thing/name"): "two"}, {K("thing/name"): "three"}]}


RANKED = """
{:schema {:p/name {:db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
          :p/boss {:db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
          :p/rank {:db/valueType :db.type/long :db/cardinality :db.cardinality/one}
          :p/boss+rank {:db/valueType :db.type/tuple :db/tupleAttrs [:p/boss :p/rank]
                        :db/cardinality :db.cardinality/one}}
 :datoms [[1 :p/name "A"] [2 :p/name "B"] [2 :p/boss 1] [2 :p/rank 1]]}
"""


def test_export_names_a_composites_renamed_member_as_it_is_named_now(tmp_path):
    src = tmp_path / "ranked.edn"
    src.write_text(RANKED)
    a, b = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    ok("import", a, str(src))
    ok("transact", a, "-", stdin="[{:db/id :p/boss :db/ident :p/manager}]")
    text = datsync("export", a).stdout
    schema = read_edn(text)[K("schema")]
    assert schema[K("p/boss+rank")][K("db/tupleAttrs")] == [K("p/manager"), K("p/rank")]
    exported = tmp_path / "a.edn"
    exported.write_text(text)
    ok("import", b, str(exported))
    assert body(datsync("export", b).stdout) == body(text)
    assert ok("pull", b, "[:p/boss+rank]", '[:p/name "B"]')[K("p/boss+rank")][1] == 1
    if _client_missing():
        return
    server = Server(a)
    try:
        # a replica bootstrapped after the rename exports the same, and finds its schema unchanged
        assert body(datsync("export", server.url).stdout) == body(text)
        schema_only = tmp_path / "schema.edn"
        schema_only.write_text(text.split(" :datoms")[0] + "}")
        assert ok("import", server.url, str(schema_only))[K("attributes")] == 0
    finally:
        server.stop()


def test_import_batches_forward_refs_and_cycles(tmp_path):
    # entity 1 refers forward to 6; 4 and 5 refer to each other and are described by nothing else;
    # with --batch-size 1 every ref crosses a batch boundary
    src = tmp_path / "graph.edn"
    src.write_text("""{:schema {:n/name {:db/valueType :db.type/string :db/cardinality :db.cardinality/one
                                         :db/unique :db.unique/identity}
                                :n/next {:db/valueType :db.type/ref :db/cardinality :db.cardinality/many}}
                       :datoms [[1 :n/name "a"] [1 :n/next 6] [2 :n/name "b"] [2 :n/next 1] [3 :n/next 3]
                                [4 :n/next 5] [5 :n/next 4] [6 :n/name "f"] [6 :n/next 1]]}""")
    store = str(tmp_path / "g.sqlite")
    ids = tmp_path / "ids.edn"
    summary = ok("import", store, str(src), "--batch-size", "1", "--id-map", str(ids))
    assert summary[K("datoms")] == 9 and summary[K("entities")] == 6 and summary[K("batches")] >= 5
    m = read_edn(ids.read_text())
    assert sorted(m) == [1, 2, 3, 4, 5, 6] and len(set(m.values())) == 6
    edges = ok("q", store, "[:find ?a ?b :where [?a :n/next ?b]]")
    assert edges == frozenset({(m[1], m[6]), (m[2], m[1]), (m[3], m[3]), (m[4], m[5]), (m[5], m[4]), (m[6], m[1])})
    # the same file in one batch gives the same graph
    ids1 = tmp_path / "ids1.edn"
    ok("import", str(tmp_path / "one.sqlite"), str(src), "--id-map", str(ids1))
    m1 = read_edn(ids1.read_text())
    back = {v: k for k, v in m1.items()}
    edges1 = ok("q", str(tmp_path / "one.sqlite"), "[:find ?a ?b :where [?a :n/next ?b]]")
    assert {(back[a], back[b]) for a, b in edges1} == {(1, 6), (2, 1), (3, 3), (4, 5), (5, 4), (6, 1)}


def test_import_merges_by_unique_identity_and_checks_refs_first(people, tmp_path):
    more = tmp_path / "more.edn"
    more.write_text('{:datoms [[1 :person/name "Ivan"] [1 :person/aliases "Ivanushka"] [2 :person/name "Lena"] '
                    '[2 :person/friends 1]]}')
    ok("import", people, str(more))
    assert ok("pull", people, "[:person/aliases {:person/_friends [:person/name]}]", '[:person/name "Ivan"]') == {
        K("person/aliases"): ["Ivanushka", "John", "Vanya"],
        K("person/_friends"): [{K("person/name"): "Petr"}, {K("person/name"): "Oleg"}, {K("person/name"): "Lena"}]}
    t = ok("status", people)[K("t")]
    bad = tmp_path / "bad.edn"
    bad.write_text('{:datoms [[1 :person/name "Q"] [1 :person/friends 99]]}')
    fails(2, "import/dangling-ref", "import", people, str(bad))
    fails(2, "edn/shape", "import", people, "-", stdin='{:tx_data []}')
    fails(2, "edn/shape", "import", people, "-", stdin='{:datoms [[1 :person/name]]}')
    r = fails(1, "db.error/wrong-type-for-attribute", "import", people, "-",
              stdin='{:datoms [[1 :person/name "R"]] :tx-data [[[:db/add [:person/name "R"] :person/age "x"]]]}')
    assert ":tx-data transaction 0 failed" in r.stderr and "1 datoms" in r.stderr
    assert ok("status", people)[K("t")] == t + 1  # the datoms batch before the failure stays committed


def test_import_progress_bar_on_stderr_only_when_asked(tmp_path):
    rows = " ".join(f'[{i} :person/name "p{i}"] [{i} :person/friends {i % 50 + 1}]' for i in range(1, 51))
    src = tmp_path / "p.edn"
    src.write_text(f"{{:schema {read_text_schema()} :datoms [{rows}]}}")
    r = datsync("import", str(tmp_path / "a.sqlite"), str(src), "--batch-size", "10", "--progress")
    assert r.returncode == 0, r.stderr
    assert "import datoms [" in r.stderr and "100/100 datoms" in r.stderr
    assert read_edn(r.stdout)[K("datoms")] == 100
    r = datsync("import", str(tmp_path / "b.sqlite"), str(src))  # stderr is no terminal here
    assert r.returncode == 0 and r.stderr == ""


def read_text_schema() -> str:
    text = Path(PEOPLE).read_text()
    return text[text.index("{:person/name"):text.index(" :tx-data")].strip()


# ------------------------------------------------------------------------------------------------
# status, help, a store a server holds


def test_status_of_a_store(people):
    s = ok("status", people)
    assert s[K("t")] == 4 and s[K("attributes")] == 4 and s[K("in-use")] is False
    assert re.fullmatch(r"[0-9a-f-]{36}", s[K("db-id")])
    assert s[K("store")][K("log-entries")] == 4 and s[K("store")][K("last-t")] == 4


def test_every_command_teaches(tmp_path):
    for command in ("q", "pull", "transact", "import", "export", "status", "db"):
        r = datsync(command, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout and f"datsync {command}" in r.stdout, command
    top = datsync("--help").stdout
    assert all(c in top for c in ("q", "pull", "transact", "import", "export", "status", "ws://", "@FILE"))


def test_a_store_a_server_holds_is_refused_for_writes(people, tmp_path):
    server = pytest.importorskip("datsync.shell.server", reason="the server (its store lock) is not there yet")
    lock = server.StoreLock(people).acquire()  # exactly what a running server holds
    try:
        fails(2, "store/in-use", "transact", people, "-", stdin='[{:person/name "Q"}]')
        fails(2, "store/in-use", "import", people, PEOPLE)
        assert ok("q", people, '[:find ?n . :where [?e :person/age 40] [?e :person/name ?n]]') == "Oleg"  # reads work
        assert ok("status", people)[K("in-use")] is True
    finally:
        lock.release()
    assert ok("transact", people, "-", stdin='[{:person/name "Q"}]')[K("t")] == 5


# ------------------------------------------------------------------------------------------------
# Server URLs


def _client_missing() -> str | None:
    try:
        import datsync.shell.client  # noqa: F401
    except ImportError as e:
        return f"the replica client (datsync.shell.client) is not importable yet: {e}"
    return None


class Server:
    """``datsync serve --port 0`` as a process; ``url`` from the first line it prints."""

    def __init__(self, store: str, *extra: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "datsync.shell", "serve", "--port", "0", "--store", store,
                                      *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        m = re.search(r"ws://\S+", line)
        if not m:
            self.stop()
            pytest.fail(f"the server printed no URL: {line!r} {self.proc.stderr.read()}")
        self.url = m.group(0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real server on a free port over a store holding people.edn: ``(url, store path)``."""
    missing = _client_missing()
    if missing:
        pytest.skip(missing)
    store = str(tmp_path_factory.mktemp("served") / "served.sqlite")
    ok("import", store, PEOPLE)
    server = Server(store)
    try:
        yield server.url, store
    finally:
        server.stop()


def test_url_reads_run_on_the_replica(served):
    url, store = served
    query = "[:find ?n ?a :where [?e :person/name ?n] [?e :person/age ?a]]"
    assert ok("q", url, query) == ok("q", store, query)
    assert ok("pull", url, "[:person/name {:person/friends [:person/name]}]", '[:person/name "Oleg"]') == {
        K("person/name"): "Oleg", K("person/friends"): [{K("person/name"): "Ivan"}, {K("person/name"): "Petr"}]}
    r = datsync("q", url, "[:find (count ?e) . :where [?e :person/name]]", "--progress")
    assert r.returncode == 0 and read_edn(r.stdout) >= 3 and "bootstrap ws://" in r.stderr


def test_url_writes_go_through_the_server(served, tmp_path):
    url, store = served
    out = ok("transact", url, "-", stdin='[{:db/id "v" :person/name "Vera" :person/friends [[:person/name "Ivan"]]}]')
    vera = out[K("tempids")]["v"]
    assert ok("pull", store, "[:person/name]", str(vera)) == {K("person/name"): "Vera"}  # durable in the store
    fails(1, "db.error/wrong-type-for-attribute", "transact", url, "-",
          stdin='[[:db/add [:person/name "Vera"] :person/age "x"]]')
    fails(2, "store/in-use", "transact", store, "-", stdin='[{:person/name "Nope"}]')
    src = tmp_path / "more.edn"
    src.write_text('{:datoms [[1 :person/name "Gleb"] [1 :person/friends 2] [2 :person/name "Dora"]]}')
    summary = ok("import", url, str(src), "--batch-size", "1")
    assert summary[K("datoms")] == 3 and summary[K("entities")] == 2
    assert ok("q", url, '[:find ?f . :where [?e :person/name "Gleb"] [?e :person/friends ?d] [?d :person/name ?f]]'
              ) == "Dora"
    # the replica's export equals the server database's, read from its store
    assert body(datsync("export", url).stdout) == body(datsync("export", store).stdout)
    status = ok("status", url)
    assert status[K("t")] == ok("status", store)[K("t")] and status[K("target")] == url


def test_unreachable_url_exits_2():
    missing = _client_missing()
    if missing:
        pytest.skip(missing)
    r = datsync("q", "ws://127.0.0.1:9/", "[:find ?e :where [?e :a]]", "--timeout", "2")
    assert r.returncode == 2 and r.stderr.startswith("datsync q: "), r.stderr
    r = datsync("status", "ws://127.0.0.1:9/", "--timeout", "2")
    assert r.returncode == 2 and r.stderr.startswith("datsync status: "), r.stderr


def test_url_token_from_option_or_environment(tmp_path):
    missing = _client_missing()
    if missing:
        pytest.skip(missing)
    server = Server(str(tmp_path / "tok.sqlite"), "--token", "s3cret")
    try:
        query = "[:find ?e . :where [?e :db/ident :db/ident]]"
        r = datsync("q", server.url, query)
        assert r.returncode == 2 and "unauthorized" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert ok("q", server.url, query, "--token", "s3cret") == 1
        env = {**os.environ, "DATSYNC_TOKEN": "s3cret"}
        r = subprocess.run([sys.executable, "-m", "datsync.shell", "q", server.url, query], capture_output=True,
                           text=True, cwd=ROOT, timeout=60, env=env)
        assert r.returncode == 0 and read_edn(r.stdout) == 1, r.stderr
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------
# The pure pieces, in process


def test_tx_text_means_what_it_means_to_datomic():
    from datsync.core import empty_db
    from datsync.core.edn import read_edn as r
    from datsync.shell.commands._edn import TxConverter

    schema = {
        "person/name": {"db/valueType": K("db.type/string"), "db/unique": K("db.unique/identity")},
        "person/friends": {"db/valueType": K("db.type/ref"), "db/cardinality": K("db.cardinality/many")},
        "person/best": {"db/valueType": K("db.type/ref")},
        "person/pair": {"db/valueType": K("db.type/tuple")},
        "person/pairs": {"db/valueType": K("db.type/tuple"), "db/cardinality": K("db.cardinality/many")},
    }
    c = TxConverter({**empty_db(flavor="datomic").schema, **schema})
    assert c.tx(r('[{:db/id [:person/name "A"] :person/best [:person/name "B"]'
                  '  :person/friends [[:person/name "C"] 7 {:person/name "D"}]}]')) == [
        {"db/id": ("person/name", "A"), "person/best": ("person/name", "B"),
         "person/friends": [("person/name", "C"), 7, {"person/name": "D"}]}]
    assert c.tx(r('[{:person/friends [:person/name "C"]} {:person/friends [:color/red :color/blue]}]')) == [
        {"person/friends": ("person/name", "C")}, {"person/friends": [K("color/red"), K("color/blue")]}]
    assert c.tx(r('[{:person/pair [1 "x"] :person/pairs [[1 2] [3 4]]} {:person/pairs [5 6]}]')) == [
        {"person/pair": (1, "x"), "person/pairs": [(1, 2), (3, 4)]}, {"person/pairs": (5, 6)}]
    assert c.tx(r('[[:db/add [:person/name "A"] :person/pair [1 "x"]] [:db/retractEntity [:person/name "B"]]'
                  ' [:db/cas 5 :person/best [:person/name "B"] nil] {:person/_friends [[:person/name "A"]]}]')) == [
        ["db/add", ("person/name", "A"), "person/pair", (1, "x")], ["db/retractEntity", ("person/name", "B")],
        ["db/cas", 5, "person/best", ("person/name", "B"), None], {"person/_friends": [("person/name", "A")]}]
    assert c.tx(r('[{:db/ident :a/b :db/tupleAttrs [:x/y :x/z]}]')) == [
        {"db/ident": K("a/b"), "db/tupleAttrs": (K("x/y"), K("x/z"))}]


def test_datom_plan_batches_are_each_valid_on_their_own():
    from datsync.shell.commands._edn import TxConverter
    from datsync.shell.commands.import_ import DatomPlan

    rows = [(1, "f", 2), (2, "f", 1), (3, "name", "c"), (4, "f", 3), (5, "f", 6), (6, "f", 5)]
    plan = DatomPlan(rows, {"f"}, batch_size=1)
    assert [r for r in plan.dangling()] == []
    conv = TxConverter({})
    next_id = iter(range(100, 200))
    seen: list = []
    while (batch := plan.next_batch()) is not None:
        tx = plan.tx(batch, conv)
        temp = {x for form in tx for x in (form[1], form[3] if form[2] == "f" else None) if isinstance(x, str)}
        assert temp <= {form[1] for form in tx if isinstance(form[1], str)}  # no tempid only as a value
        plan.committed({t: next(next_id) for t in temp})
        seen += batch
    assert sorted(seen) == sorted(rows) and sorted(plan.ids) == [("i", n) for n in range(1, 7)]
    assert DatomPlan([(1, "f", 9)], {"f"}, 10).dangling() == [(1, "f", 9)]
