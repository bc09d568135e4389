"""The agent's HTTP server under hostile and careless clients, with real sockets.

Half-sent requests (slowloris), a trickle of bytes, floods of connections, bodies nested
200,000 deep, bodies shorter than their Content-Length, oversized and chunked bodies, replayed
and stale webhook signatures. The server must keep answering /healthz, hold a bounded number of
threads, answer every parse error with a JSON 4xx (never drop the connection, never process a
truncated body), and log nothing outside its formatter (checked on a real agent process's stderr).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from runner_gitops import UpperGitOps

from agent.runner import AgentServer, Runner, RunnerConfig, WebhookAuth
from agent.runner.intake import HttpLimits, Intake
from agent.runner.webhook import TIMESTAMP_HEADER, BasicAuth, sign
from agent.sync import SyncOptions, SyncResult

SECRET = b"hostile-hook-secret"
AUTH = BasicAuth("azure", "hook-pass")
BASIC = "Basic " + base64.b64encode(b"azure:hook-pass").decode()
PUSH = json.dumps({"id": "evt-1", "eventType": "git.push", "resource": {
    "refUpdates": [{"name": "refs/heads/main"}], "repository": {"name": "gitops"}}}).encode()
# Short limits so the timeout tests take seconds; the defaults are 10 s / 30 s.
LIMITS = HttpLimits(head_timeout_s=1.0, request_timeout_s=2.0, max_pending=64, workers=4,
                    max_body=64 * 1024)


@dataclass
class Agent:
    server: AgentServer
    runner: Runner
    syncs: list[str] = field(default_factory=list)

    @property
    def addr(self) -> tuple[str, int]:
        return self.server.address


@pytest.fixture
def agent() -> Iterator[Agent]:
    syncs: list[str] = []

    def fake_sync(opts: SyncOptions) -> SyncResult:
        syncs.append("sync")
        return SyncResult("c1", "unchanged", time.time(), 0.0, {}, (), None, 0, 0, 0)

    runner = Runner(SyncOptions(source="/srv/gitops", branch="main"), fake_sync,
                    config=RunnerConfig(interval_s=3600, jitter=0.0))
    server = AgentServer(runner, "127.0.0.1:0", WebhookAuth(SECRET, AUTH), limits=LIMITS).start()
    runner.start()
    assert runner.wait_for(lambda s: s.runs == 1, timeout=30)
    try:
        yield Agent(server, runner, syncs)
    finally:
        runner.stop(wait=True)
        server.stop()


def exchange(addr: tuple[str, int], data: bytes, shut: bool = False,
             timeout: float = 30.0) -> bytes:
    """Send `data` (then half-close if `shut`) and read the whole answer."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1."), reply[:200]
    return int(reply.split(b" ", 2)[1])


def json_of(reply: bytes) -> dict[str, object]:
    doc = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert isinstance(doc, dict)
    return doc


def post(path: str, body: bytes, headers: dict[str, str], length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    lines = [f"POST {path} HTTP/1.1", "Host: agent", f"Content-Length: {size}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def signed(body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-Pachsync-Signature": sign(SECRET, body, stamp), TIMESTAMP_HEADER: stamp}


def healthz(addr: tuple[str, int]) -> int:
    return status_of(exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"))


def settle(agent: Agent) -> int:
    """Stop the loop (waiting for a triggered run, if any) and count the syncs that ran."""
    agent.runner.stop(wait=True)
    return len(agent.syncs)


# -- time and count bounds ------------------------------------------------------------------------


def test_half_sent_requests_neither_hold_threads_nor_block_healthz(agent: Agent) -> None:
    before = threading.active_count()
    held = []
    try:
        for i in range(200):
            s = socket.create_connection(agent.addr, timeout=30)
            # half of them stop inside the head, half inside a declared body
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                      post("/webhook/generic", b"{", signed(b"{}"), length=2))
            held.append(s)
        assert healthz(agent.addr) == 200
        # a thread per half-sent request (the old server: +200) is exactly what must not happen
        assert threading.active_count() - before <= LIMITS.workers + 2
        # every one of them is answered 408 or 503 (evicted) and closed, none stays open
        for s in held:
            reply = read_all(s)
            assert status_of(reply) in (408, 503), reply[:120]
    finally:
        for s in held:
            s.close()
    assert healthz(agent.addr) == 200


def test_a_trickle_of_bytes_cannot_keep_a_request_open(agent: Agent) -> None:
    with socket.create_connection(agent.addr, timeout=30) as s:
        s.sendall(b"GET /status HTTP/1.1\r\n")
        sent = 0
        s.settimeout(0.2)
        reply = b""
        while not reply and sent < 1000:  # 1000 x 0.2 s: far past the 1 s head deadline
            try:
                s.sendall(b"X-Drip: y\r\n")
            except OSError:
                break  # the server closed on us: read what it said
            sent += 1
            try:
                reply = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        s.settimeout(30)
        reply += read_all(s) if reply else b""
    if reply:
        assert status_of(reply) == 408
    assert sent < 1000, "the server let a trickling client hold the connection"


def test_more_connections_than_the_cap_evict_the_oldest_not_healthz(agent: Agent) -> None:
    held = [socket.create_connection(agent.addr, timeout=30) for _ in range(LIMITS.max_pending * 2)]
    try:
        for s in held:
            s.sendall(b"GET /status HTTP/1.1\r\n")
        assert healthz(agent.addr) == 200
    finally:
        for s in held:
            s.close()


# -- parse errors are JSON 4xx, never a dropped connection, never processed ---------------------


@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"a":' * 100_000, b"[" * 2000 + b"]" * 2000])
def test_deeply_nested_json_is_400_on_both_webhooks(agent: Agent, body: bytes) -> None:
    body = body[: LIMITS.max_body]
    for path, headers in (("/webhook/azure-devops", {"Authorization": BASIC}),
                          ("/webhook/generic", signed(body))):
        reply = exchange(agent.addr, post(path, body, headers))
        assert status_of(reply) == 400, reply[:200]
        assert "nested" in str(json_of(reply)["reason"])
    assert settle(agent) == 1


@pytest.mark.parametrize(("path", "body"), [
    ("/webhook/azure-devops", b"{broken"),
    ("/webhook/azure-devops", b'{"eventType": "git.push", "resource": []}'),
    ("/webhook/azure-devops", b'{"eventType": "git.push", "resource": {"refUpdates": {}}}'),
    ("/webhook/azure-devops",
     b'{"eventType": "git.push", "resource": {"refUpdates": [{"name": 1}]}}'),
    ("/webhook/azure-devops", b"\xff\xfe"),
    ("/webhook/generic", b'{"ref": 5}'),
    ("/webhook/generic", b"[1, 2]"),
    ("/webhook/generic", b'{"ref": "refs/heads/main"'),
])
def test_bad_json_and_wrong_shapes_are_400(agent: Agent, path: str, body: bytes) -> None:
    headers = {"Authorization": BASIC} if "azure" in path else signed(body)
    reply = exchange(agent.addr, post(path, body, headers))
    assert status_of(reply) == 400, reply[:300]
    assert json_of(reply)["triggered"] is False
    assert settle(agent) == 1


@pytest.mark.parametrize("missing", [1, 100, 10_000])
def test_truncated_body_is_400_and_not_processed(agent: Agent, missing: int) -> None:
    for path, body, headers in (
            ("/webhook/azure-devops", PUSH, {"Authorization": BASIC}),
            ("/webhook/generic", b'{"ref": "refs/heads/main"}',
             signed(b'{"ref": "refs/heads/main"}'))):
        # the sender promised more than it sent, then closed: what arrived is validly
        # authenticated and parses, but it is not the request that was announced
        reply = exchange(agent.addr, post(path, body, headers, length=len(body) + missing),
                         shut=True)
        assert status_of(reply) == 400, reply[:300]
        assert "truncated" in str(json_of(reply)["error"])
    assert settle(agent) == 1


def test_huge_chunked_and_malformed_lengths(agent: Agent) -> None:
    huge = exchange(agent.addr, post("/webhook/generic", b"x", signed(b"x"), length=10 << 20))
    assert status_of(huge) == 413 and "limit" in str(json_of(huge)["error"])
    for length in ("-1", "abc", "1 2", "+5", "0x10"):
        reply = exchange(agent.addr, post("/webhook/generic", b"", {}, length=None).replace(
            b"Content-Length: 0", f"Content-Length: {length}".encode()))
        assert status_of(reply) == 400, (length, reply[:200])
    two = exchange(agent.addr, b"POST /webhook/generic HTTP/1.1\r\nContent-Length: 2\r\n"
                               b"Content-Length: 3\r\n\r\n{}")
    assert status_of(two) == 400
    chunked = exchange(agent.addr, b"POST /webhook/generic HTTP/1.1\r\nTransfer-Encoding: chunked"
                                   b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status_of(chunked) == 411
    head = exchange(agent.addr, b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    assert status_of(head) == 431
    assert healthz(agent.addr) == 200
    assert settle(agent) == 1


def test_garbage_is_answered_not_dropped(agent: Agent) -> None:
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
                 b"GET\r\n\r\n", b"BREW /pot HTCPCP/1.0\r\n\r\n",
                 b"GET /" + b"\xff" * 10 + b" HTTP/1.1\r\n\r\n"):
        reply = exchange(agent.addr, junk)
        assert reply == b"" or 400 <= status_of(reply) < 500, reply[:200]
    assert healthz(agent.addr) == 200


# -- replays ----------------------------------------------------------------------------------


def test_generic_webhook_needs_a_fresh_timestamp_and_refuses_replays(agent: Agent) -> None:
    body = b'{"ref": "refs/heads/main"}'
    now = int(time.time())
    refused = {
        "no timestamp": {"X-Pachsync-Signature": sign(SECRET, body, str(now))},
        "old": signed(body, now - 301),
        "future": signed(body, now + 301),
        "not a number": {"X-Pachsync-Signature": sign(SECRET, body, "soon"),
                         TIMESTAMP_HEADER: "soon"},
        # the old scheme (HMAC of the body alone) is no longer accepted
        "body-only": {"X-Pachsync-Signature": "sha256=" + hmac.new(SECRET, body, "sha256")
                      .hexdigest(), TIMESTAMP_HEADER: str(now)},
    }
    for why, headers in refused.items():
        reply = exchange(agent.addr, post("/webhook/generic", body, headers))
        assert status_of(reply) == 401, (why, reply[:300])
    fresh = signed(body)
    first = exchange(agent.addr, post("/webhook/generic", body, fresh))
    assert status_of(first) == 202 and json_of(first)["triggered"] is True
    assert agent.runner.wait_for(lambda s: s.runs == 2, timeout=30)
    replay = exchange(agent.addr, post("/webhook/generic", body, fresh))
    assert status_of(replay) == 202 and json_of(replay)["triggered"] is False
    assert "duplicate" in str(json_of(replay)["reason"])
    assert settle(agent) == 2


def test_replayed_azure_push_is_deduplicated_by_event_id(agent: Agent) -> None:
    first = exchange(agent.addr, post("/webhook/azure-devops", PUSH, {"Authorization": BASIC}))
    assert status_of(first) == 202 and json_of(first)["triggered"] is True
    assert agent.runner.wait_for(lambda s: s.runs == 2, timeout=30)
    for _ in range(5):
        again = exchange(agent.addr, post("/webhook/azure-devops", PUSH, {"Authorization": BASIC}))
        assert status_of(again) == 202 and json_of(again)["triggered"] is False
    other = PUSH.replace(b"evt-1", b"evt-2")
    assert json_of(exchange(agent.addr, post("/webhook/azure-devops", other,
                                             {"Authorization": BASIC})))["triggered"] is True
    assert agent.runner.wait_for(lambda s: s.runs == 3, timeout=30)
    assert settle(agent) == 3


# -- every log line through the formatter ------------------------------------------------------


def test_agent_process_stderr_has_only_formatted_lines(tmp_path: Path) -> None:
    repo = UpperGitOps(tmp_path / "git")
    repo.commit("v1")
    (tmp_path / "hook").write_text(SECRET.decode() + "\n")
    (tmp_path / "basic").write_text("azure:hook-pass\n")
    with socket.socket() as s:  # a pachd address nobody listens on: syncs fail, and log it
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    env = dict(os.environ, PACH_CONFIG=str(tmp_path / "none"), PACHSYNC_RPC_TIMEOUT="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "agent", "--source", str(repo.remote), "--pachd", dead,
         "--listen", "127.0.0.1:0", "--interval", "3600", "--log-format", "json",
         "--webhook-secret-file", str(tmp_path / "hook"),
         "--basic-auth-file", str(tmp_path / "basic"), "--cache-dir", str(tmp_path / "cache")],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    lines: list[bytes] = []
    for line in proc.stderr:
        lines.append(line)
        if b"agent listening on" in line:
            break
    host, port = json.loads(lines[-1])["listen"].rsplit(":", 1)
    addr = (host, int(port))
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        deep = b"[" * 200_000
        exchange(addr, post("/webhook/azure-devops", deep, {"Authorization": BASIC}))
        exchange(addr, post("/webhook/generic", deep, signed(deep)))
        exchange(addr, post("/webhook/azure-devops", PUSH, {"Authorization": BASIC},
                            length=len(PUSH) + 9), shut=True)
        exchange(addr, b"\x16\x03\x01garbage\r\n\r\n")
        exchange(addr, b"GET /" + b"\xff" * 3 + b"\n" + b" HTTP/1.1\r\n\r\n")
        for _ in range(20):  # clients that vanish before reading their answer
            with socket.create_connection(addr) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                # SO_LINGER 0: close() resets the connection
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        half = [socket.create_connection(addr) for _ in range(30)]
        for s in half:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        for s in half:
            s.close()
        assert healthz(addr) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
    assert code == 0
    for raw in lines + rest:
        text = raw.decode("utf-8")
        doc = json.loads(text)  # a raw traceback or http.server's own line would not parse
        assert {"ts", "level", "logger", "msg"} <= doc.keys(), text
        assert SECRET.decode() not in text and "hook-pass" not in text


# -- the intake on its own: a full worker pool, the byte budget ---------------------------------


@contextlib.contextmanager
def intake(limits: HttpLimits, accept: bool) -> Iterator[tuple[tuple[str, int], list[bytes]]]:
    """An Intake on port 0 whose dispatch takes (and answers) requests only when `accept`."""
    got: list[bytes] = []

    def dispatch(sock: socket.socket, addr: object, request: bytes) -> bool:
        if accept:
            got.append(request)
            sock.sendall(b"HTTP/1.0 204 No Content\r\n\r\n")
            sock.close()
        return accept

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=Intake(listener, limits, dispatch).serve, args=(stop,))
    thread.start()
    try:
        yield listener.getsockname(), got
    finally:
        stop.set()
        thread.join(timeout=30)
        listener.close()


def test_a_full_worker_pool_is_answered_503() -> None:
    with intake(HttpLimits(), accept=False) as (addr, _):
        reply = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert status_of(reply) == 503 and "busy" in str(json_of(reply)["error"])


def test_pending_bytes_stay_under_the_budget_oldest_shed_first() -> None:
    limits = HttpLimits(max_buffered=3000, max_body=10_000)
    with intake(limits, accept=True) as (addr, got):
        partial = post("/x", b"a" * 1400, {}, length=5000)
        socks = [socket.create_connection(addr, timeout=30) for _ in range(3)]
        for s in socks:  # accepted in connect order: the first is the oldest
            s.sendall(partial)  # 3 x ~1.45 KB pending > 3 KB: the oldest is shed
        first = read_all(socks[0])
        assert status_of(first) == 503 and "bytes" in str(json_of(first)["error"])
        socks[1].sendall(b"b" * 3600)  # completes the second: it is served in full
        assert status_of(read_all(socks[1])) == 204
        for s in socks:
            s.close()
    assert len(got) == 1 and got[0].endswith(b"a" * 1400 + b"b" * 3600)
