"""Reading HTTP requests off the network before any thread is spent on them.

`agent.runner.server` hands its listening socket to `Intake.serve`, which runs in ONE thread: a
selector accepts connections and buffers each request until its head and its Content-Length body
are complete, then passes the bytes to `dispatch` (the server's bounded worker pool). A client
that sends half a request therefore costs a socket and a buffer, never a thread. Bounded here:

- time: the head must arrive within `head_timeout_s` and the whole request within
  `request_timeout_s` of the accept, however slowly the bytes trickle in (408);
- count: at most `max_pending` connections are read at once; one more evicts the oldest (503);
- memory: a head over `max_head` (431) or a declared body over `max_body` (413) is refused
  before it is read, and the bytes held by all pending connections stay under `max_buffered`;
- shape: a body shorter than its Content-Length (the client closed early) is refused (400),
  never processed as complete; a body without a Content-Length (chunked) is refused (411).

Refusals are small JSON answers written without blocking; the socket then lingers (reading and
discarding for a moment) so the client sees the answer instead of a connection reset.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.runner.logs import LOGGER_NAME

_log = logging.getLogger(f"{LOGGER_NAME}.http")
_DIGITS = re.compile(r"[0-9]{1,19}")
LINGER_S = 2.0
_REASONS = {400: "Bad Request", 408: "Request Timeout", 411: "Length Required",
            413: "Content Too Large", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the agent's HTTP server (see the module docstring)."""

    max_head: int = 64 * 1024
    max_body: int = 1 << 20  # Azure DevOps push payloads are a few KiB
    head_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    max_pending: int = 256
    max_buffered: int = 64 << 20
    workers: int = 8
    max_queued: int = 64
    write_timeout_s: float = 10.0


class Refusal(Exception):
    """A request answered by the intake itself with `status` and a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(status: int, doc: dict[str, Any]) -> bytes:
    """A complete HTTP/1.0 response with a JSON body (the connection closes after it)."""
    body = (json.dumps(doc) + "\n").encode()
    head = (f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def head_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Index just past the blank line ending the head (CRLF or bare LF), searched from `start`."""
    crlf, lf = buf.find(b"\r\n\r\n", start), buf.find(b"\n\n", start)
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else None


@dataclass(frozen=True)
class Head:
    """What the intake needs from a request head: the body length and `Expect: 100-continue`."""

    length: int
    expects_continue: bool


def parse_head(head: bytes, max_body: int) -> Head:
    """Read Content-Length/Transfer-Encoding from a complete head; Refusal for bad ones."""
    first, _, rest = head.partition(b"\n")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except (http.client.HTTPException, ValueError) as exc:
        raise Refusal(431 if "header" in str(exc).lower() else 400,
                      f"malformed request headers: {exc}") from None
    if headers.get("Transfer-Encoding") is not None:
        raise Refusal(411, "send the body with a Content-Length (chunked bodies are not accepted)")
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if len(values) > 1:
        raise Refusal(400, "conflicting Content-Length headers")
    raw = values.pop() if values else "0"
    if not _DIGITS.fullmatch(raw):
        raise Refusal(400, f"bad Content-Length {raw[:40]!r}")
    length = int(raw)
    if length > max_body:
        raise Refusal(413, f"body of {length} bytes is over the limit of {max_body} bytes")
    expect = (headers.get("Expect") or "").strip().lower() == "100-continue"
    return Head(length, expect and first.rstrip().endswith(b"HTTP/1.1"))


@dataclass
class _Conn:
    sock: socket.socket
    addr: tuple[Any, ...]
    accepted: float
    buf: bytearray = field(default_factory=bytearray)
    scanned: int = 0  # head_end searched up to here
    need: int | None = None  # total bytes of the request once the head is parsed
    head_len: int = 0
    linger_until: float | None = None  # refused: discarding input until then


Dispatch = Callable[[socket.socket, tuple[Any, ...], bytes], bool]


class Intake:
    """The selector loop; `dispatch(sock, addr, request_bytes)` returns False when it is full."""

    def __init__(self, listener: socket.socket, limits: HttpLimits, dispatch: Dispatch,
                 on_refuse: Callable[[int], None] = lambda status: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listener, self.limits, self.dispatch, self.clock = listener, limits, dispatch, clock
        self.on_refuse = on_refuse
        self._conns: dict[socket.socket, _Conn] = {}  # insertion order = accept order
        self._buffered = 0
        self._sel = selectors.DefaultSelector()

    def serve(self, stop: threading.Event) -> None:
        """Run until `stop` is set; then close every pending connection."""
        self.listener.setblocking(False)
        self._sel.register(self.listener, selectors.EVENT_READ)
        try:
            while not stop.is_set():
                for key, _ in self._sel.select(timeout=0.1):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj in self._conns:
                        self._read(self._conns[key.fileobj])
                self._expire()
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._sel.close()

    # -- connections ------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):  # a burst at most per wake-up, so reads are never starved
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving the others
                _log.warning("cannot accept a connection", extra={"fields": {
                    "event": "http", "error": str(exc)}})
                return
            if len(self._conns) >= self.limits.max_pending:
                self._evict(next(iter(self._conns.values())),
                            "server busy: too many connections; this one was the oldest")
            sock.setblocking(False)
            self._conns[sock] = _Conn(sock, addr, self.clock())
            self._sel.register(sock, selectors.EVENT_READ)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.linger_until is not None:
            if not data:
                self._close(conn)
            return
        if not data:
            self._eof(conn)
            return
        conn.buf += data
        self._buffered += len(data)
        try:
            self._progress(conn)
        except Refusal as refusal:
            self._refuse(conn, refusal.status, refusal.message)
        self._shed()

    def _progress(self, conn: _Conn) -> None:
        if conn.need is None:
            end = head_end(conn.buf, max(0, conn.scanned - 3))
            conn.scanned = len(conn.buf)
            if end is None:
                if len(conn.buf) > self.limits.max_head:
                    raise Refusal(431, f"request head over {self.limits.max_head} bytes")
                return
            if end > self.limits.max_head:
                raise Refusal(431, f"request head over {self.limits.max_head} bytes")
            head = parse_head(bytes(conn.buf[:end]), self.limits.max_body)
            conn.head_len, conn.need = end, end + head.length
            if head.expects_continue and len(conn.buf) < conn.need:
                _send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(conn.buf) >= conn.need:
            self._complete(conn)

    def _complete(self, conn: _Conn) -> None:
        assert conn.need is not None
        request = bytes(conn.buf[:conn.need])
        self._forget(conn)
        if not self.dispatch(conn.sock, conn.addr, request):
            self._conns[conn.sock] = conn  # back under our care, to be refused and closed
            self._sel.register(conn.sock, selectors.EVENT_READ)
            self._refuse(conn, 503, "server busy: every worker is answering; retry later")

    def _eof(self, conn: _Conn) -> None:
        """The client closed its side. A head without its full body is refused: the request
        that was announced never arrived, so nothing of it may be acted on."""
        if conn.need is not None:
            got, length = len(conn.buf) - conn.head_len, conn.need - conn.head_len
            self._refuse(conn, 400, f"truncated body: the client closed the connection after "
                         f"{got} of the {length} bytes its Content-Length announced")
        else:
            self._close(conn)

    def _expire(self) -> None:
        now = self.clock()
        for conn in list(self._conns.values()):
            if conn.linger_until is not None:
                if now >= conn.linger_until:
                    self._close(conn)
            elif conn.need is None and now - conn.accepted > self.limits.head_timeout_s:
                self._refuse(conn, 408, f"request head not received within "
                             f"{self.limits.head_timeout_s:g} s")
            elif now - conn.accepted > self.limits.request_timeout_s:
                self._refuse(conn, 408, f"request not received within "
                             f"{self.limits.request_timeout_s:g} s")

    def _shed(self) -> None:
        """Keep the bytes buffered by pending requests under the budget: the oldest go first."""
        for conn in list(self._conns.values()):
            if self._buffered <= self.limits.max_buffered:
                return
            if conn.linger_until is None:
                self._evict(conn, "server busy: too many request bytes pending")

    # -- answers and closing ------------------------------------------------------------------
    def _evict(self, conn: _Conn, message: str) -> None:
        """Close at once (no lingering: the point is to free the slot); input already sent is
        drained first, so closing does not reset the connection before the answer is read."""
        if conn.linger_until is None:
            _drain(conn.sock)
            self._refuse(conn, 503, message, linger=False)
        else:
            self._close(conn)  # already answered

    def _refuse(self, conn: _Conn, status: int, message: str, linger: bool = True) -> None:
        self.on_refuse(status)
        level = logging.INFO if status in (400, 411, 413, 431) else logging.DEBUG
        _log.log(level, "http request refused", extra={"fields": {
            "event": "http", "status": status, "reason": message, "client": str(conn.addr[0])}})
        _send_quietly(conn.sock, json_response(status, {"error": message, "triggered": False}))
        self._drop_buffer(conn)
        if not linger:
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.linger_until = self.clock() + LINGER_S

    def _drop_buffer(self, conn: _Conn) -> None:
        self._buffered -= len(conn.buf)
        conn.buf = bytearray()

    def _forget(self, conn: _Conn) -> None:
        self._drop_buffer(conn)
        self._conns.pop(conn.sock, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: _Conn) -> None:
        self._forget(conn)
        try:
            conn.sock.close()
        except OSError:
            pass


def _drain(sock: socket.socket, limit: int = 1 << 20) -> None:
    """Read and drop what the client already sent, without blocking (at most `limit` bytes)."""
    try:
        while limit > 0 and (data := sock.recv(65536)):
            limit -= len(data)
    except OSError:
        pass


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Best effort, never blocking: a refusal is a few hundred bytes, which fit in any socket
    buffer; a client that does not read them loses them."""
    try:
        sock.send(data)
    except OSError:
        pass
