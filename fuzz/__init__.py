"""Fuzzing datsync's parsers and its server session.

Targets (``fuzz.targets.TARGETS``): ``codec`` (the wire codec's decode), ``edn`` (the EDN reader),
``query`` and ``pull`` (the query and pull-pattern parsers), ``wire-tx`` (a submit's transaction:
decode, validate, transact, encode the delta), ``session`` (a server session fed arbitrary frames) and
``http`` (a request head on the WebSocket port, read by h11 and answered).
Each may raise only the error types it documents; anything else is a crash.

    python -m fuzz list                       the targets
    python -m fuzz codec --seconds 600        one target, with atheris if installed (else pure Python)
    python -m fuzz all --seconds 300          every target in turn
    python -m fuzz replay                     every seed and regression input once
    python -m fuzz seed                       rebuild fuzz/corpus/ from the test suite

Every crash found becomes a file in ``fuzz/regressions/<target>/`` (replayed by tests/test_fuzz.py)
once it is fixed. docs/operations.md records the long runs.
"""

from .harness import Stats, check, random_run, replay
from .targets import TARGETS, FuzzFailure, Target

__all__ = ["TARGETS", "FuzzFailure", "Stats", "Target", "check", "random_run", "replay"]
