"""Wait slots: calls that block may hold only some of localpachd's gRPC handler threads.

grpc's synchronous server runs each call on a thread of a fixed pool (`ServerConfig.workers`)
until it returns, and a wait (InspectCommit wait=FINISHED on an open commit, ...) holds its
thread until another client's call (FinishCommit, ...) changes the state. Unbounded, enough
waiters take every thread, and the call that would release them is never served. So a call that
is about to block first takes a wait slot: `total` slots, fewer than the handler threads (so
`workers - total` threads always remain for ordinary calls), and at most `per_peer` of them per
client connection (one process cannot take them all; python-pachyderm clients of one process
share a connection). A call that finds no slot is answered at once with RESOURCE_EXHAUSTED
saying why and what to do; Pachyderm's clients (pachctl, python-pachyderm) do not retry that
code, they report it.

grpc's own `maximum_concurrent_rpcs` cannot do this: it counts every call alike, so with the
waiters over the limit it refuses the FinishCommit that would release them instead of queueing it.

The long calls, all of them (a unit test checks that every request with a `wait` or `follow`
field is listed):
- unary waits take a slot only when they must block (`wait_until`), so a wait whose state is
  already reached is never refused: pfs InspectCommit and InspectCommitSet with `wait`, pps
  InspectJob and InspectJobSet with `wait`;
- streams that last until the client leaves (`STREAMS`, held by the server's interceptor for the
  whole call): pfs SubscribeCommit, pps GetLogs with `follow` and SubscribeJob,
  grpc.health.v1 Health/Watch.

Used by `localpachd.server` (builds `ctx.waits`, holds slots for STREAMS) and by the pfs and pps
servicers (`wait_until`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import grpc

from localpachd import errors
from localpachd.store import Store, Tx

T = TypeVar("T")

# Streams that hold a slot for their whole life; the predicate sees the request.
STREAMS: dict[str, Callable[[Any], bool]] = {
    "/pfs_v2.API/SubscribeCommit": lambda req: True,
    "/pps_v2.API/GetLogs": lambda req: bool(req.follow),
    "/pps_v2.API/SubscribeJob": lambda req: True,
    "/grpc.health.v1.Health/Watch": lambda req: True,
}
# Unary methods that call `wait_until` (for the completeness test and the docs).
UNARY_WAITS = frozenset({"/pfs_v2.API/InspectCommit", "/pfs_v2.API/InspectCommitSet",
                         "/pps_v2.API/InspectJob", "/pps_v2.API/InspectJobSet"})


def sizes(workers: int, total: int | None = None, per_peer: int | None = None
          ) -> tuple[int, int]:
    """(total, per_peer) wait slots for `workers` handler threads; None picks the default:
    a quarter of the threads (at least 4) kept for ordinary calls, half the slots per peer."""
    if workers < 2:
        raise ValueError(f"localpachd needs at least 2 gRPC workers (got {workers}): "
                         "one for blocking waits and one for the calls that end them")
    if total is None:
        total = max(1, workers - max(4, workers // 4))
    if not 0 < total < workers:
        raise ValueError(f"wait_slots must be between 1 and workers - 1 = {workers - 1} "
                         f"(got {total}): the other handler threads serve ordinary calls")
    if per_peer is None:
        per_peer = max(1, total // 2)
    if per_peer < 1:
        raise ValueError(f"wait_slots_per_peer must be at least 1 (got {per_peer})")
    return total, min(per_peer, total)


class WaitSlots:
    """Counts the blocking calls in progress, in total and per peer (a client connection)."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self.in_use = 0
        self.refused = 0  # calls answered RESOURCE_EXHAUSTED since the start (tests, metrics)
        self._by_peer: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, peer: str, what: str) -> None:
        """Take a slot for `peer`, or raise errors.ResourceExhausted naming `what` would wait."""
        with self._lock:
            if self.in_use >= self.total:
                self.refused += 1
                raise errors.ResourceExhausted(
                    f"{what} would wait, but all {self.total} wait slots of localpachd are in "
                    "use (each waiting call holds a server thread; the other threads are kept "
                    "for ordinary calls): retry once some waits have returned, or give the "
                    "server more threads and slots (`localpachd serve --workers N --wait-slots M`)")
            if self._by_peer[peer] >= self.per_peer:
                self.refused += 1
                raise errors.ResourceExhausted(
                    f"{what} would wait, but this connection already holds {self.per_peer} of "
                    f"localpachd's {self.total} wait slots, the most one connection may hold: "
                    "retry once some of its waits have returned, or wait from another process")
            self.in_use += 1
            self._by_peer[peer] += 1

    def release(self, peer: str) -> None:
        with self._lock:
            self.in_use -= 1
            self._by_peer[peer] -= 1
            if self._by_peer[peer] <= 0:
                del self._by_peer[peer]

    @contextmanager
    def hold(self, peer: str, what: str) -> Iterator[None]:
        self.acquire(peer, what)
        try:
            yield
        finally:
            self.release(peer)


class Waiting(Protocol):
    """What `wait_until` needs of the server context (`localpachd.context.ServerContext`)."""

    store: Store
    waits: WaitSlots


def peer_of(context: grpc.ServicerContext) -> str:
    """The call's client connection ("ipv4:127.0.0.1:54321"), the unit of the per-peer bound."""
    try:
        return str(context.peer())
    except Exception:  # a context without a transport (in-process fakes): one shared peer
        return ""


def wait_until(ctx: Waiting, context: grpc.ServicerContext, what: str, check: Callable[[Tx], T]
               ) -> T:  # fmt: skip
    """`check(tx)` once it is truthy, re-checked after every store commit, holding a wait slot
    only while it actually waits; the last value when the call ends (cancelled, server stopping).

    Raises errors.ResourceExhausted when it would wait and no slot is free."""
    with ctx.store.read() as tx:
        value = check(tx)
    if value or not context.is_active():
        return value
    with ctx.waits.hold(peer_of(context), what):
        return ctx.store.wait_until(check, alive=context.is_active)


def stream_holds_slot(method: str, request: object) -> bool:
    """True when this call of a streaming method lasts until the client leaves."""
    long = STREAMS.get(method)
    return long is not None and long(request)
