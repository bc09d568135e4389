"""A bounded background queue per notification target, with retry and backoff.

Called by `agent.notify.notifier`. `submit` never blocks and never raises: the sync loop hands a
delivery over and goes on. One worker thread per target sends deliveries in order (so a
commit's `pending` never lands after its `succeeded`), retries a failed one with exponential
backoff (network errors, 408, 429, 5xx; other 4xx are permanent), gives it up when a newer
delivery for the same (commit, context) is queued (the newer state is what counts) or after
`attempts`, and drops a new delivery when `capacity` are waiting. Every delivery given up or
dropped is reported to `on_failure` (the `pachsync_notifications_failed` metric) and logged
without the request's headers (which hold the token). Redirects are not followed: a redirect
must not carry the Authorization header to another host.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.notify.sink import signed_headers

log = logging.getLogger("pachsync.notify")
RETRYABLE = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Delivery:
    """One POST: `key` (commit, context) lets a newer delivery supersede a retried one."""

    key: tuple[str, str]
    url: str
    body: bytes
    headers: dict[str, str] = field(repr=False)
    sign_with: bytes | None = field(default=None, repr=False)  # HMAC secret, signed at send


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_s: float = 1.0
    max_s: float = 60.0
    timeout_s: float = 10.0  # per request (connect and each read)

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** (attempt - 1)))


class Permanent(Exception):
    """The endpoint refused the request for good (a 4xx other than 408/425/429)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_send(delivery: Delivery, timeout_s: float) -> None:
    """POST the delivery; returns on 2xx, raises Permanent or another exception (retryable)."""
    headers = dict(delivery.headers)
    if delivery.sign_with is not None:
        headers.update(signed_headers(delivery.sign_with, delivery.body, time.time()))
    request = urllib.request.Request(delivery.url, data=delivery.body, headers=headers,
                                     method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in RETRYABLE:
            raise Permanent(f"HTTP {exc.code} {exc.reason}") from None
        raise


def where(url: str) -> str:
    """Scheme, host and path of `url`, without credentials or query: fit for a log line."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Dispatcher:
    """Sends one target's deliveries from a worker thread (see the module doc)."""

    def __init__(self, target: str, *, capacity: int = 256, policy: RetryPolicy | None = None,
                 send: Callable[[Delivery, float], None] = http_send,
                 on_failure: Callable[[str, str], None] = lambda target, why: None,
                 on_sent: Callable[[str], None] = lambda target: None) -> None:
        self.target, self.capacity = target, capacity
        self.policy = policy or RetryPolicy()
        self._send, self._on_failure, self._on_sent = send, on_failure, on_sent
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._idle = True
        self._thread = threading.Thread(target=self._work, name=f"notify-{target}", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery) -> bool:
        """Queue `delivery`; False (and counted as failed) when the queue is full or stopped."""
        with self._cond:
            if self._stop.is_set() or len(self._queue) >= self.capacity:
                full = True
            else:
                self._queue.append(delivery)
                self._cond.notify_all()
                full = False
        if full:
            self._fail(delivery, "queue full" if not self._stop.is_set() else "stopped")
        return not full

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or being sent (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle and not self._queue, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._queue or self._stop.is_set())
                if self._stop.is_set():
                    return
                delivery = self._queue.popleft()
                self._idle = False
            self._deliver(delivery)

    def _superseded(self, delivery: Delivery) -> bool:
        with self._cond:
            return any(d.key == delivery.key for d in self._queue)

    def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(1, self.policy.attempts + 1):
            try:
                self._send(delivery, self.policy.timeout_s)
            except Permanent as exc:
                self._fail(delivery, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - any failure to send is retried
                why = f"{type(exc).__name__}: {exc}"
                if attempt == self.policy.attempts or self._superseded(delivery):
                    self._fail(delivery, why)
                    return
                if self._stop.wait(self.policy.delay(attempt)):
                    return
                continue
            self._on_sent(self.target)
            return

    def _fail(self, delivery: Delivery, why: str) -> None:
        log.warning(f"notification to {self.target} not delivered: {why}", extra={"fields": {
            "event": "notify_failed", "target": self.target, "url": where(delivery.url),
            "commit": delivery.key[0], "context": delivery.key[1], "reason": why}})
        try:
            self._on_failure(self.target, why)
        except Exception:  # noqa: BLE001 - a metric must never stop the worker
            log.exception("notification failure hook crashed")
