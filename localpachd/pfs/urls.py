"""Put file from a URL: the `url` source of a ModifyFile `add_file` (python-pachyderm's
`put_file_url`), as Pachyderm 2.7's `putFileURL` does it, with bounds.

Called by `localpachd.pfs.modify`, which hands `fetch_url` a `sink(path, chunk)` that writes
through the stream's session (the same chunked blob path as an ordinary put), so a body is never
held whole in memory, and a failure anywhere fails the whole stream before anything is applied.

- `http://` and `https://` (certificates verified): one GET, streamed in CHUNK pieces, bounded
  by `UrlOptions.timeout` (connect and each read), `deadline` (the whole fetch) and `max_bytes`
  (refused from Content-Length before reading, else at the limit). Redirects are followed as
  Go's client does (at most `max_redirects`, 10), only to http/https. A status >= 400 fails with
  Pachyderm's text `error retrieving content from "URL": 404 Not Found`. `recursive` is ignored
  for http, as in Pachyderm. Credentials in the URL are sent (Basic, to the URL's own host only)
  and never shown: errors carry `redacted(url)`. `Interrupt` ends a fetch blocked on a stalled
  remote as soon as the RPC ends (client cancel, server stop).
- `file://` (a localpachd extension, off by default): only under `UrlOptions.allow_dirs`
  (`localpachd serve --url-allow-dir DIR`), see `localpachd.pfs.urlfiles`. Bounds, options and
  error wording: `localpachd.pfs.urlbounds`.
- Object stores (`s3`, `gs`, `azblob`, `wasb`, `minio`, `local`) are not served; any other
  scheme gets Pachyderm's `unrecognized object store: SCHEME`.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import urllib.parse

from localpachd import errors
from localpachd.pfs.urlbounds import CHUNK, Budget, Sink, Stop, UrlOptions, failed, redacted
from localpachd.pfs.urlfiles import fetch_file

__all__ = ["Interrupt", "UrlOptions", "fetch_url", "redacted"]

REDIRECTS = (301, 302, 303, 307, 308)
OBJECT_STORES = ("s3", "gs", "gcs", "azblob", "wasb", "minio", "test-minio", "local")


class Interrupt:
    """Ends a fetch blocked on its socket when the RPC ends (client cancel, server stop):
    `fire` is given to grpc's `context.add_callback`; it shuts the watched connection down, so
    a stalled read returns at once instead of after the read timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self.ended = False

    def watch(self, conn: http.client.HTTPConnection | None) -> bool:
        """Follow `conn` (None: stop following); False if the call already ended."""
        with self._lock:
            self._conn = conn
            return not self.ended

    def fire(self) -> None:
        with self._lock:
            self.ended = True
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def fetch_url(url: str, recursive: bool, options: UrlOptions, sink: Sink, stop: Stop,
              interrupt: Interrupt | None = None) -> None:
    """Stream the content of `url` into `sink`: one file (path "") for http(s) and a file://
    file, or every file under a file:// directory when `recursive` (its path below it).
    `stop` is polled between pieces; `interrupt` (if given) also cuts a blocked read short."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise errors.InvalidArgument(f"error parsing url {redacted(url)}: {exc}") from exc
    scheme = parts.scheme.lower()
    budget = Budget(url, options, stop)
    if scheme in ("http", "https"):
        _http(url, budget, sink, interrupt or Interrupt())
        budget.check()  # a read cut short by the interrupt looks like the end of the body
    elif scheme == "file":
        fetch_file(url, parts, recursive, budget, sink)
    elif scheme in OBJECT_STORES:
        raise errors.Unimplemented(
            f"put file from {scheme}:// URLs is not supported by localpachd: use http://, "
            "https://, or file:// under a directory given with localpachd serve --url-allow-dir")
    else:
        raise errors.InvalidArgument(f"unrecognized object store: {scheme}")


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    host, port = parts.hostname or "", parts.port
    if parts.scheme.lower() == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _request(current: str, auth: tuple[str, str] | None, budget: Budget, interrupt: Interrupt
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urllib.parse.urlsplit(current)
    if not parts.hostname:
        raise failed(budget.url, f"no host in {redacted(current)}", errors.InvalidArgument)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    headers = {"User-Agent": "localpachd", "Accept-Encoding": "identity"}
    if auth is not None and parts.username is not None and auth[0] == parts.netloc:
        token = base64.b64encode(auth[1].encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn = _connection(parts, budget.options.timeout)
    try:
        conn.connect()
        if not interrupt.watch(conn):
            budget.check()  # raises: the call ended
        conn.request("GET", target, headers=headers)
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _credentials(url: str) -> tuple[str, str] | None:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    return parts.netloc, f"{user}:{password}"


def _open(url: str, budget: Budget, interrupt: Interrupt
          ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """The final response of `url` after its redirects (an http(s) one each)."""
    current, auth = url, _credentials(url)
    for _ in range(budget.options.max_redirects + 1):
        budget.check()
        conn, resp = _request(current, auth, budget, interrupt)
        location = resp.getheader("Location")
        if resp.status not in REDIRECTS or not location:
            return conn, resp
        conn.close()
        nxt = urllib.parse.urljoin(current, location.strip())
        scheme = urllib.parse.urlsplit(nxt).scheme.lower()
        if scheme not in ("http", "https"):
            raise failed(url, f"redirected to a {scheme or 'scheme-less'} URL "
                         f"({redacted(nxt)}): only http and https redirects are followed",
                         errors.PermissionDenied)
        current = nxt
    raise failed(url, f"stopped after {budget.options.max_redirects} redirects")


def _http(url: str, budget: Budget, sink: Sink, interrupt: Interrupt) -> None:
    try:
        conn, resp = _open(url, budget, interrupt)
        try:
            if resp.status >= 400:
                raise failed(url, f"{resp.status} {resp.reason}".strip())
            declared = resp.getheader("Content-Length")
            if declared is not None and declared.strip().isdigit():
                budget.announce(int(declared))
            budget.new_file()
            sink("", b"")
            while chunk := resp.read(CHUNK):
                budget.take(len(chunk))
                sink("", chunk)
        finally:
            interrupt.watch(None)
            conn.close()
    except TimeoutError as exc:
        raise failed(url, f"timed out ({budget.options.timeout:g} s to connect or for a read; "
                     "localpachd serve --url-timeout)") from exc
    except ssl.SSLError as exc:
        raise failed(url, f"TLS: {exc.reason or exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise failed(url, reason) from exc
    except ValueError as exc:  # e.g. a port that is not a number
        raise failed(url, str(exc), errors.InvalidArgument) from exc
