"""HTTP endpoints of the agent: health, readiness, status, metrics and the two webhooks.

Started by `agent.commands.agent` next to the `Runner`. Hostile clients are met in two stages:
`agent.runner.intake` reads every request in one selector thread, with deadlines and size caps,
so a half-sent request costs no thread; only a complete request reaches the fixed pool of
`HttpLimits.workers` threads that run the handlers below (a full pool answers 503). Handlers are
thin: authentication and payload rules live in the pure `agent.runner.webhook`, the status
document in `agent.runner.status`. Everything this server logs, http.server's own lines and any
traceback included, goes through the `pachsync` logger (formatted and redacted).

GET  /healthz                 200 while the process serves
GET  /readyz                  200 once the first sync finished, else 503
GET  /status                  JSON (see agent.runner.status.to_dict)
GET  /metrics                 Prometheus text format
POST /webhook/azure-devops    Azure DevOps "code pushed" service hook, HTTP basic auth
POST /webhook/generic         X-Pachsync-Timestamp + X-Pachsync-Signature (agent.runner.webhook)
"""

from __future__ import annotations

import io
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from agent.errors import UsageError
from agent.runner.intake import HttpLimits, Intake
from agent.runner.logs import LOGGER_NAME
from agent.runner.loop import Runner
from agent.runner.status import to_dict
from agent.runner.webhook import (
    GITHUB_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BasicAuth,
    ReplayGuard,
    WebhookDecision,
    decide_azure,
    decide_generic,
)

_log = logging.getLogger(f"{LOGGER_NAME}.http")
_GONE = (ConnectionError, TimeoutError)  # the client vanished or stopped reading


@dataclass(frozen=True)
class WebhookAuth:
    """What the webhook endpoints accept; None disables an endpoint (404)."""

    hmac_secret: bytes | None = None
    basic_auth: BasicAuth | None = None


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port`, `[::]:port` or `:port` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen!r} is not host:port",
                         hint="e.g. --listen 0.0.0.0:8080 (port 0 picks a free port)")
    return (host.strip("[]") or "0.0.0.0", int(port))


class _Handler(BaseHTTPRequestHandler):
    """One complete, already-read request (`request` = (socket, bytes)); answers on the socket."""

    server_version = "pachsync-agent"
    default_request_version = "HTTP/1.0"  # even a malformed request line gets a status line
    runner: Runner
    auth: WebhookAuth
    guard: ReplayGuard
    limits: HttpLimits
    clock: Callable[[], float]

    def version_string(self) -> str:
        return self.server_version  # no Python version for scanners to match

    def setup(self) -> None:
        sock, raw = self.request
        self.connection = sock
        sock.setblocking(True)
        sock.settimeout(self.limits.write_timeout_s)  # a client that never reads cannot pin us
        self.rfile = io.BytesIO(raw)
        self.wfile = _SendAll(sock)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            ready = self.runner.status.ready
            self._send(200 if ready else 503, b"ready\n" if ready else b"first sync pending\n",
                       "text/plain; charset=utf-8")
        elif path == "/status":
            self._json(200, to_dict(self.runner.status))
        elif path == "/metrics":
            self._send(200, self.runner.metrics.render(), self.runner.metrics.content_type)
        else:
            self._json(404, {"error": f"no such endpoint {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path not in ("/webhook/azure-devops", "/webhook/generic"):
            self._json(404, {"error": f"no such endpoint {path}"})
            return
        body = self._body()
        if body is None:
            return
        branch, now = self.runner.options.branch, self.clock()
        if path == "/webhook/azure-devops":
            endpoint = "azure-devops"
            decision = decide_azure(self.auth.basic_auth, self.headers.get("Authorization"),
                                    body, branch, now)
        else:
            endpoint = "generic"
            signature = (self.headers.get(SIGNATURE_HEADER)
                         or self.headers.get(GITHUB_SIGNATURE_HEADER))
            decision = decide_generic(self.auth.hmac_secret, signature,
                                      self.headers.get(TIMESTAMP_HEADER), body, branch, now)
        self._answer(endpoint, decision, now)

    def _answer(self, endpoint: str, decision: WebhookDecision, now: float) -> None:
        delivery, outcome = decision.delivery, ""
        if decision.trigger and delivery and not self.guard.claim(delivery, decision.expires, now):
            decision, outcome = WebhookDecision(202, False, "duplicate delivery: this request "
                                                "was already accepted and triggered a sync"), \
                "duplicate"
        triggered = decision.trigger and self.runner.trigger(f"webhook/{endpoint}")
        if decision.trigger and not triggered:
            if delivery:
                self.guard.release(delivery)
            decision = WebhookDecision(503, False, "the agent is shutting down; retry later")
        outcome = outcome or ("triggered" if triggered else "unauthorized"
                              if decision.status == 401 else "ignored" if decision.status < 300
                              else "rejected")
        self.runner.metrics.webhooks.labels(endpoint=endpoint, outcome=outcome).inc()
        level = logging.WARNING if decision.status == 401 else logging.INFO
        _log.log(level, f"webhook {outcome}", extra={"fields": {
            "event": "webhook", "endpoint": endpoint, "status": decision.status,
            "reason": decision.reason, "client": self.client_address[0]}})
        doc: dict[str, Any] = {"triggered": bool(triggered), "reason": decision.reason}
        if decision.status >= 400:
            doc["error"] = decision.reason
        self._json(decision.status, doc)

    def _body(self) -> bytes | None:
        """The body the intake already read whole (checked again: never act on a part)."""
        raw = (self.headers.get("Content-Length") or "0").strip()
        length = int(raw) if raw.isascii() and raw.isdigit() else -1
        if length < 0 or length > self.limits.max_body:
            self._json(413 if length > self.limits.max_body else 400,
                       {"error": "bad Content-Length", "triggered": False})
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self._json(400, {"error": "truncated body", "triggered": False})
            return None
        return body

    def _json(self, code: int, doc: Any) -> None:
        body = (json.dumps(doc, indent=2, default=str) + "\n").encode()
        self._send(code, body, "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="pachsync"')
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's errors (malformed request line or headers, unknown method) as JSON."""
        short, long = self.responses.get(code, ("error", ""))
        self.log_error("code %d, message %s", code, message or short)
        self.close_connection = True
        self._json(code, {"error": message or short, "detail": explain or long})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _log.debug(format % args)  # access log only at debug: probes would flood it

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        _log.info("http request refused", extra={"fields": {
            "event": "http", "reason": format % args, "client": self.client_address[0]}})


class _SendAll(io.BufferedIOBase):
    """The handler's wfile: every write is one `sendall`, whose timeout bounds the whole write
    (a buffered socket file would allow a timeout per partial send: a trickling reader could
    keep a worker for ever)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket for an IPv4 or IPv6 host (name or literal)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=128)


class AgentServer:
    """The intake thread and the worker pool; `address` is the bound (host, port)."""

    def __init__(self, runner: Runner, listen: str, auth: WebhookAuth,
                 limits: HttpLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or HttpLimits()
        self._listener = _bind(*parse_listen(listen))
        self._handler = type("Handler", (_Handler,), {
            "runner": runner, "auth": auth, "guard": ReplayGuard(), "limits": self.limits,
            "clock": staticmethod(clock)})
        self._queue: queue.Queue[tuple[socket.socket, tuple[Any, ...], bytes]] = \
            queue.Queue(self.limits.max_queued)
        self._stop = threading.Event()
        refused = runner.metrics.http_refused
        self.intake = Intake(self._listener, self.limits, self._submit,
                             on_refuse=lambda status: refused.labels(status=str(status)).inc())
        self._threads = [threading.Thread(target=self.intake.serve, args=(self._stop,),
                                          name="pachsync-http", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"pachsync-http-{i}",
                                           daemon=True) for i in range(self.limits.workers)]

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return (str(host), int(port))

    def start(self) -> AgentServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)
        self._listener.close()
        while not self._queue.empty():
            self._queue.get_nowait()[0].close()

    def _submit(self, sock: socket.socket, addr: tuple[Any, ...], request: bytes) -> bool:
        try:
            self._queue.put_nowait((sock, addr, request))
        except queue.Full:
            return False
        return True

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr, request = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._handler((sock, request), addr, self)
            except _GONE as exc:
                _log.debug("http client went away", extra={"fields": {
                    "event": "http", "client": str(addr[0]), "error": str(exc)}})
            except Exception:  # noqa: BLE001 - one bad request must not kill a worker
                _log.exception("http handler failed", extra={"fields": {
                    "event": "http", "client": str(addr[0])}})
            finally:
                sock.close()
