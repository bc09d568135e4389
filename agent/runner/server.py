"""HTTP endpoints of the agent: health, readiness, status, metrics and the two webhooks.

Started by `agent.commands.agent` next to the `Runner`; stdlib ThreadingHTTPServer, so a slow
scrape never blocks a webhook. Handlers are thin: authentication and payload rules live in the
pure `agent.runner.webhook`, the status document in `agent.runner.status`.

GET  /healthz                 200 while the process serves
GET  /readyz                  200 once the first sync finished, else 503
GET  /status                  JSON (see agent.runner.status.to_dict)
GET  /metrics                 Prometheus text format
POST /webhook/azure-devops    Azure DevOps "code pushed" service hook, HTTP basic auth
POST /webhook/generic         body signed with HMAC-SHA256 in X-Pachsync-Signature
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.errors import UsageError
from agent.runner.logs import LOGGER_NAME
from agent.runner.loop import Runner
from agent.runner.status import to_dict
from agent.runner.webhook import (
    GITHUB_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    BasicAuth,
    WebhookDecision,
    decide_azure,
    decide_generic,
)

MAX_BODY = 1 << 20  # Azure DevOps push payloads are a few KiB; refuse anything absurd
_log = logging.getLogger(f"{LOGGER_NAME}.http")


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
    server_version = "pachsync-agent"
    runner: Runner
    auth: WebhookAuth

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
        branch = self.runner.options.branch
        if path == "/webhook/azure-devops":
            endpoint = "azure-devops"
            decision = decide_azure(self.auth.basic_auth, self.headers.get("Authorization"),
                                    body, branch)
        else:
            endpoint = "generic"
            signature = (self.headers.get(SIGNATURE_HEADER)
                         or self.headers.get(GITHUB_SIGNATURE_HEADER))
            decision = decide_generic(self.auth.hmac_secret, signature, body, branch)
        self._answer(endpoint, decision)

    def _answer(self, endpoint: str, decision: WebhookDecision) -> None:
        triggered = decision.trigger and self.runner.trigger(f"webhook/{endpoint}")
        if decision.trigger and not triggered:
            decision = WebhookDecision(503, False, "the agent is shutting down; retry later")
        outcome = ("triggered" if triggered else "unauthorized" if decision.status == 401
                   else "ignored" if decision.status < 300 else "rejected")
        self.runner.metrics.webhooks.labels(endpoint=endpoint, outcome=outcome).inc()
        level = logging.WARNING if decision.status == 401 else logging.INFO
        _log.log(level, f"webhook {outcome}", extra={"fields": {
            "event": "webhook", "endpoint": endpoint, "status": decision.status,
            "reason": decision.reason, "client": self.client_address[0]}})
        self._json(decision.status, {"triggered": bool(triggered), "reason": decision.reason})

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._json(413 if length > MAX_BODY else 400, {"error": "bad Content-Length"})
            return None
        return self.rfile.read(length)

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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _log.debug(format % args)  # access log only at debug: probes would flood it


class AgentServer:
    """The HTTP server in a daemon thread; `address` is the bound (host, port)."""

    def __init__(self, runner: Runner, listen: str, auth: WebhookAuth) -> None:
        handler = type("Handler", (_Handler,), {"runner": runner, "auth": auth})
        self.httpd = ThreadingHTTPServer(parse_listen(listen), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,),
                                        name="pachsync-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return (str(host), int(port))

    def start(self) -> AgentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
