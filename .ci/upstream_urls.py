"""pytest plugin for `make test-upstream`: python-pachyderm's URL puts go to a loopback server.

python-pachyderm v7.6.0's tests put files from internet URLs (a GitHub gist, pachyderm.com); the
server fetches them, so a test run would need the internet. Loaded with `-p upstream_urls` by
.ci/test_upstream.py (never by `make test`), this plugin rewrites every http(s) URL a put sends to
`UPSTREAM_URL_BASE/<host>/<path>` (the script's loopback HTTP server) without touching the
upstream test files: it wraps the one place python-pachyderm 7.6.0 builds a URL put
(`_AtomicModifyFileURLOp`, behind `put_file_url` and `ModifyFileClient.put_file_from_url`).
Other schemes (file://, s3://) pass through unchanged.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

BASE_ENV = "UPSTREAM_URL_BASE"


def loopback_url(url: str, base: str) -> str:
    """`https://host/a/b?q` -> `<base>/host/a/b?q`; non-http(s) URLs are returned unchanged."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    path = f"/{parts.hostname or ''}{parts.path or '/'}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{base.rstrip('/')}{path}{query}"


def install(base: str) -> None:
    """Wraps python-pachyderm's URL put operation so its URL is rewritten onto `base`."""
    from python_pachyderm.mixin import pfs

    op = pfs._AtomicModifyFileURLOp
    original = op.__init__
    if getattr(original, "_upstream_loopback", False):
        return

    def init(self: Any, path: str, url: str, *args: Any, **kwargs: Any) -> None:
        original(self, path, loopback_url(url, base), *args, **kwargs)

    init._upstream_loopback = True  # type: ignore[attr-defined]
    op.__init__ = init


def pytest_configure(config: Any) -> None:
    base = os.environ.get(BASE_ENV)
    if base:
        install(base)
