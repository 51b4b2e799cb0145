"""Shared fixtures: a PostgreSQL database of its own for each test, and the store engines to run the
store-interface tests on.

PostgreSQL is the one at ``DATSYNC_TEST_PG`` (default: 127.0.0.1:5432, database ``test``, user
``postgres``, trust auth). Each test gets a fresh schema, dropped after it. When PostgreSQL cannot be
reached the tests that need it skip with the reason, except under ``CI=true`` where they fail: CI
must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def pg_base_url() -> str:
    """The PostgreSQL server the tests use."""
    return os.environ.get("DATSYNC_TEST_PG", PG_DEFAULT)


def _admin():
    try:
        import psycopg

        return psycopg.connect(pg_base_url(), autocommit=True, connect_timeout=3)
    except Exception as e:
        reason = f"PostgreSQL at {pg_base_url()} is not reachable ({type(e).__name__}: {e}); set DATSYNC_TEST_PG"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A ``postgresql://`` URL whose tables live in a schema of this test's own, dropped after it."""
    admin = _admin()
    schema = f"datsync_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        from datsync.shell.store_postgres import with_search_path

        yield with_search_path(pg_base_url(), schema)
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture
def pg_database() -> str:
    """The PostgreSQL database URL itself (reachable), for code that makes its own schemas."""
    _admin().close()
    return pg_base_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path) -> str:
    """The location of an empty store, once per engine."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def servers(tmp_path) -> Iterator:
    """Starts ``datsync serve`` processes for a test (``tests.sync_server.Servers``); none outlives it."""
    from tests.sync_server import Servers

    s = Servers(tmp_path)
    yield s
    s.close()
