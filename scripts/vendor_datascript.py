#!/usr/bin/env python3
"""Write shell/web/datascript.js: DataScript's UMD build from npm (tests/oracle/node_modules, the
version the oracle pins) wrapped as an ES module, so browsers import it without a bundler.

Usage: python3 scripts/vendor_datascript.py   (after `npm ci` in tests/oracle)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPM = ROOT / "tests" / "oracle" / "node_modules" / "datascript"
OUT = ROOT / "shell" / "web" / "datascript.js"
API = (
    "empty_db", "init_db", "serializable", "from_serializable", "q", "pull", "pull_many", "db_with", "entity",
    "touch", "entity_db", "filter", "is_filtered", "create_conn", "conn_from_db", "conn_from_datoms", "db",
    "transact", "reset_conn", "listen", "unlisten", "resolve_tempid", "datoms", "seek_datoms", "index_range",
    "squuid", "squuid_time_millis",
)


def wrap(umd: str, version: str) -> str:
    """The ES module around DataScript's UMD text: the UMD sees a CommonJS ``module``."""
    names = ", ".join(API)
    return (
        f"// DataScript {version} (npm `datascript`, Eclipse Public License 1.0, https://github.com/tonsky/datascript):\n"
        "// its UMD build wrapped as an ES module by scripts/vendor_datascript.py. Do not edit.\n"
        "const module = { exports: {} };\n"
        "(function (module, exports) {\n"
        f"{umd}\n"
        "}).call(globalThis, module, module.exports);\n"
        "const datascript = module.exports;\n"
        "export default datascript;\n"
        f"export const {{ {names} }} = datascript;\n"
    )


def expected() -> str:
    """What shell/web/datascript.js must hold for the installed npm package."""
    version = json.loads((NPM / "package.json").read_text())["version"]
    return wrap((NPM / "datascript.js").read_text(encoding="utf-8"), version)


def main() -> int:
    if not NPM.exists():
        print(f"{NPM} is missing: run (cd tests/oracle && npm ci)", file=sys.stderr)
        return 1
    OUT.write_text(expected(), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
