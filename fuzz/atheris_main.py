"""The atheris child process: ``python fuzz/atheris_main.py TARGET SECONDS [RUNS]`` (started by
``python -m fuzz``). A script, not a module of the package, so that datsync is imported, and
instrumented for coverage, only inside ``atheris.instrument_imports`` (h11 too: the ``http`` target's
parser)."""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["datsync", "h11"]):
    from fuzz.harness import atheris_child

if __name__ == "__main__":
    atheris_child(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
