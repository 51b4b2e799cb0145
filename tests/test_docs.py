"""The Python examples in README.md and docs/*.md run and their assertions hold (each file's blocks
in order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_files() -> list[Path]:
    files = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    return [p for p in files if BLOCK.search(p.read_text())]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_doc_examples_run(path: Path):
    namespace: dict = {}
    for i, block in enumerate(BLOCK.findall(path.read_text())):
        code = compile(block, f"{path.name}[block {i}]", "exec")
        exec(code, namespace)
