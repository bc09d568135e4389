"""Bounds and wording shared by the URL sources of put-file-from-URL (`localpachd.pfs.urls`
for http(s), `localpachd.pfs.urlfiles` for file://): the server options (`UrlOptions`, held by
`ServerConfig.urls`), the per-source `Budget` (bytes, files, time, cancellation), and errors in
Pachyderm's wording that never show a URL's credentials (`failed`, `redacted`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localpachd import errors

CHUNK = 1024 * 1024
GIB = 1024 * 1024 * 1024

Sink = Callable[[str, bytes], None]  # (relative path, "" for the URL itself; chunk)
Stop = Callable[[], bool]  # True when the call ended (client cancelled, server stopping)


@dataclass(frozen=True)
class UrlOptions:
    """Server options of put-file-from-URL (`ServerConfig.urls`)."""

    allow_dirs: tuple[Path, ...] = ()  # file:// sources allowed under these; none by default
    timeout: float = 30.0  # seconds to connect, and for each read of the body
    deadline: float = 3600.0  # seconds for one URL source as a whole
    max_bytes: int = 8 * GIB  # per URL source (all files of a recursive file:// directory)
    max_redirects: int = 10  # Go's http.Client default, which Pachyderm uses
    max_files: int = 100_000  # files of one recursive file:// source


def redacted(url: str) -> str:
    """`url` safe to show: the password of its user info and the values of its query (a
    presigned URL's signature is a credential) become `xxxxx`; keys and the rest stay."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in url and "@" not in netloc and ":" in netloc:
            parts.port  # noqa: B018 (raises on a password cut by a raw '#' or '/')
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:xxxxx@{host}" if ":" in userinfo else f"{user}@{host}"
        query = "&".join(f"{p.split('=', 1)[0]}=xxxxx" if "=" in p else p
                         for p in parts.query.split("&")) if parts.query else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(a URL that does not parse)"


def failed(url: str, reason: str,
           kind: type[errors.PachError] = errors.FailedPrecondition) -> errors.PachError:
    """Pachyderm's wording: `error retrieving content from "URL": REASON` (URL redacted)."""
    return kind(f'error retrieving content from "{redacted(url)}": {reason}')


class Budget:
    """Bytes, files and time one URL source may still use; `take` raises past any of them."""

    def __init__(self, url: str, options: UrlOptions, stop: Stop) -> None:
        self.url, self.options, self.stop = url, options, stop
        self.bytes = 0
        self.files = 0
        self.ends = time.monotonic() + options.deadline

    def check(self) -> None:
        if self.stop():
            raise errors.Aborted(f'put file from "{redacted(self.url)}" ended: the call was '
                                 "cancelled or the server is stopping; nothing was written")
        if time.monotonic() > self.ends:
            raise failed(self.url, f"not done after {self.options.deadline:g} s (the whole-fetch "
                         "deadline, localpachd serve --url-deadline)")

    def announce(self, size: int) -> None:
        """Refuse at once a body whose declared size is over the limit."""
        if self.bytes + size > self.options.max_bytes:
            raise self._too_big(f"{self.bytes + size} bytes declared")

    def take(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.options.max_bytes:
            raise self._too_big(f"more than {self.options.max_bytes} bytes received")
        self.check()

    def new_file(self) -> None:
        self.files += 1
        if self.files > self.options.max_files:
            raise failed(self.url, f"more than {self.options.max_files} files",
                         errors.ResourceExhausted)

    def _too_big(self, what: str) -> errors.PachError:
        return failed(self.url, f"{what}, over the limit of {self.options.max_bytes} bytes per "
                      "URL (localpachd serve --url-max-bytes)", errors.ResourceExhausted)
