"""agent.notify.dispatch and sink against a local stand-in HTTP server: submit never blocks (a
hanging endpoint fills a bounded queue, the overflow is counted), a 500 is retried with backoff
and then counted, a newer state for the same (commit, context) supersedes a retried one, order
is kept, redirects are not followed, and the sink's signature is the one the agent's own generic
webhook accepts."""

from __future__ import annotations

import json
import time

from helpers.standin import stand_in

from agent.notify.dispatch import Delivery, Dispatcher, RetryPolicy
from agent.notify.events import Event, PipelineNote
from agent.notify.sink import event_body
from agent.runner.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_hmac

FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05, timeout_s=0.5)


def delivery(url: str, n: int, key: str = "sync") -> Delivery:
    return Delivery((f"{n:040x}", key), url + "/x", json.dumps({"n": n}).encode(),
                    {"Content-Type": "application/json"})


def test_hanging_endpoint_never_blocks_submit_and_overflow_is_counted() -> None:
    failures: list[str] = []
    with stand_in() as stand:
        stand.mode = "hang"
        d = Dispatcher("t", capacity=4, policy=RetryPolicy(attempts=1, timeout_s=30),
                       on_failure=lambda t, why: failures.append(why))
        try:
            accepted = [d.submit(delivery(stand.url, i)) for i in range(50)]
            assert stand.wait_count(1)
            # One in flight (hung), 4 queued; the rest were refused at once, never waited for.
            assert accepted.count(True) <= 5 and failures.count("queue full") >= 45
        finally:
            stand.release.set()
            d.stop()


def test_500_is_retried_then_counted() -> None:
    failures: list[str] = []
    with stand_in() as stand:
        stand.mode = "fail"
        d = Dispatcher("t", policy=FAST, on_failure=lambda t, why: failures.append(why))
        d.submit(delivery(stand.url, 1))
        assert d.wait_idle(30)
        d.stop()
    assert len(stand.received) == 3 and len(failures) == 1 and "500" in failures[0]


def test_permanent_4xx_and_redirects_are_not_retried() -> None:
    failures: list[str] = []
    d = Dispatcher("t", policy=FAST, on_failure=lambda t, why: failures.append(why))
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(401 if self.path == "/x" else 302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        d.submit(delivery(url, 1))
        d.submit(Delivery(("r" * 40, "sync"), url + "/redirect", b"{}", {}))
        assert d.wait_idle(30)
    finally:
        d.stop()
        server.shutdown()
    assert hits.count("/x") == 1 and "401" in failures[0]
    assert "/elsewhere" not in hits and hits.count("/redirect") == 3  # 3xx: error, no follow


def test_order_is_kept_and_newer_state_supersedes_a_retry() -> None:
    sent: list[int] = []
    calls = {"n": 0}

    def flaky(d: Delivery, timeout: float) -> None:
        calls["n"] += 1
        if json.loads(d.body)["n"] == 1:
            time.sleep(0.05)  # give the next submit time to land while this one fails
            raise OSError("down")
        sent.append(json.loads(d.body)["n"])

    d = Dispatcher("t", policy=RetryPolicy(attempts=50, base_s=0.01, max_s=0.01), send=flaky)
    d.submit(Delivery(("c" * 40, "sync"), "http://x", b'{"n": 1}', {}))
    d.submit(Delivery(("c" * 40, "sync"), "http://x", b'{"n": 2}', {}))
    d.submit(Delivery(("c" * 40, "health"), "http://x", b'{"n": 3}', {}))
    assert d.wait_idle(30)
    d.stop()
    assert sent == [2, 3] and calls["n"] < 50


def test_sink_signature_is_accepted_by_the_generic_webhook_check() -> None:
    secret = b"s3cret"
    event = Event("a" * 40, "health", "failed", "Degraded: up\n##vso[x]",
                  (PipelineNote("up", "Synced", "Degraded", "job failed"),))
    with stand_in() as stand:
        d = Dispatcher("t", policy=FAST)
        body = event_body(event, "https://dev.azure.com/o/p/_git/r", "main", time.time())
        d.submit(Delivery((event.commit, event.context), stand.url + "/hook", body,
                          {"Content-Type": "application/json"}, secret))
        assert d.wait_idle(30)
        d.stop()
    [got] = stand.received
    assert check_hmac(secret, got.body, got.headers[SIGNATURE_HEADER],
                      got.headers[TIMESTAMP_HEADER])
    doc = got.json()
    assert doc["kind"] == "health" and doc["state"] == "failed" and doc["commit"] == "a" * 40
    assert "\n" not in doc["message"] and "##" not in got.body.decode()
    assert doc["pipelines"] == [{"name": "up", "sync": "Synced", "health": "Degraded",
                                 "reason": "job failed"}]
