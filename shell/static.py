"""Static files on the sync server's port: the browser client at ``/datsync/`` (shell/web, shipped in
the package) and, with ``datsync serve --static DIR``, an application's own files at ``/``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

WEB_DIR = Path(__file__).resolve().parent / "web"
"""The browser client's files (client.js, codec.js, values.js, replica.js, datascript.js)."""

CLIENT_PREFIX = "/datsync/"
"""Where ``datsync serve`` serves the browser client: ``/datsync/client.js``."""

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json",
    ".edn": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".map": "application/json",
}


def _inside(root: Path, rel: str) -> Path | None:
    """The file ``rel`` names under ``root``, or None (missing, a directory without index.html, or
    outside ``root``: ``..`` and symlinks out of it are refused)."""
    root = root.resolve()
    target = (root / rel.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def static_file(path: str, static_dir: Path | None) -> tuple[Path, str] | None:
    """The file an HTTP GET of ``path`` serves and its content type: ``/datsync/<name>`` from the
    browser client, anything else from ``static_dir`` (``/`` is its index.html); None: not found."""
    path = unquote(path)
    if "\x00" in path:
        return None
    if path.startswith(CLIENT_PREFIX):
        found = _inside(WEB_DIR, path[len(CLIENT_PREFIX):])
    elif static_dir is not None:
        found = _inside(static_dir, path)
    else:
        found = None
    if found is None:
        return None
    return found, CONTENT_TYPES.get(found.suffix.lower(), "application/octet-stream")
