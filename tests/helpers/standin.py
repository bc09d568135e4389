"""A local stand-in HTTP server (http.server in a thread) that records every POST it receives
and answers as told: `mode` "ok" (201 with a JSON body), "fail" (500) or "hang" (never answers
until released). Used by the notification tests in place of Azure DevOps and a notify sink."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StandIn:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.mode = "ok"
        self.release = threading.Event()
        self.cond = threading.Condition()
        self.url = ""

    def wait_count(self, n: int, timeout: float = 60) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.received) >= n, timeout)


def _handler(stand: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with stand.cond:
                stand.received.append(Received("POST", self.path, dict(self.headers), body))
                stand.cond.notify_all()
            if stand.mode == "hang":
                stand.release.wait(60)
                return
            code = 500 if stand.mode == "fail" else 201
            out = b'{"id": 1}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def stand_in() -> Iterator[StandIn]:
    stand = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand))
    server.daemon_threads = True
    stand.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand
    finally:
        stand.release.set()
        server.shutdown()
        server.server_close()
