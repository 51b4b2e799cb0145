"""The installed package holds every module of the source tree: `packages` in pyproject.toml is a list."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"datsync.core": ROOT / "core", "datsync.shell": ROOT / "shell"}


def source_packages() -> set[str]:
    """Dotted names of every folder with an ``__init__.py`` under the mapped package roots."""
    found = set()
    for name, root in PACKAGE_DIRS.items():
        for init in root.rglob("__init__.py"):
            if "node_modules" in init.parts:
                continue
            relative = init.parent.relative_to(root).parts
            found.add(".".join((name, *relative)))
    return found


def test_every_source_package_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {k: ROOT / v for k, v in config["package-dir"].items()} == PACKAGE_DIRS
    missing = source_packages() - set(config["packages"])
    assert not missing, f"packages missing from pyproject.toml: {sorted(missing)}"


def test_the_browser_client_ships_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["datsync.shell"]
    shipped = {p for pattern in patterns for p in (ROOT / "shell").glob(pattern)}
    assert {p for p in (ROOT / "shell" / "web").glob("*.js")} <= shipped
