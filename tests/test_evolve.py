"""``evolve``: a copy of a frozen dataclass with some fields changed, the original untouched."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field, fields

import pytest

from datsync.core.sync import ServerConfig, new_server_session
from datsync.core.sync.evolve import evolve


@dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: tuple = ()
    c: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plain:
    a: int
    b: str = "b"


@dataclass(frozen=True, slots=True)
class Child(Slotted):
    d: int = 4


@pytest.mark.parametrize("value", [Slotted(1, (2,), {"c": 3}), Plain(1), Child(1, (2,), {}, 5)])
def test_evolve_copies_every_field_and_changes_only_those_named(value):
    new = evolve(value, a=10)
    assert type(new) is type(value) and new is not value and value.a == 1 and new.a == 10
    for f in fields(value):
        if f.name != "a":
            assert getattr(new, f.name) is getattr(value, f.name)
    assert evolve(value) == value
    with pytest.raises(FrozenInstanceError):
        new.a = 3  # type: ignore[misc]


def test_evolve_of_a_server_session_equals_dataclasses_replace():
    from dataclasses import replace

    s = new_server_session(ServerConfig(db_id="x"), 7)
    assert evolve(s, server_t=9, errors=2) == replace(s, server_t=9, errors=2)
