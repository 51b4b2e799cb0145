"""The shared protocol vectors (tests/vectors/protocol/*.json) against the Python codec; the browser
client's codec reads the same files (tests/web/vectors.test.mjs), so the two cannot drift."""

from __future__ import annotations

import json

import pytest

from datsync.core.sync import ProtocolError, decode, encode
from tests.vectors.protocol_vectors import DIR, build, describe_message, render

FILES = sorted(DIR.glob("*.json"))
CASES = [(f.stem, case) for f in FILES for case in json.loads(f.read_text(encoding="utf-8"))]


def test_vector_files_are_current():
    built = build()
    assert sorted(built) == [f.stem for f in FILES]
    for name, rows in built.items():
        assert (DIR / f"{name}.json").read_text(encoding="utf-8") == render(rows), (
            f"{name}.json is stale: python -m tests.vectors.protocol_vectors")


@pytest.mark.parametrize(("file", "case"), CASES, ids=[c["name"] for _, c in CASES])
def test_vector(file, case):
    wire = case["wire"].encode("utf-8")
    if "error" in case:
        with pytest.raises(ProtocolError) as e:
            decode(wire)
        assert e.value.code == case["error"]
        return
    message = decode(wire)
    assert describe_message(message) == case["value"]
    assert encode(message) == wire
