"""Pachyderm's worker API (`pachyderm.worker.Worker`) for one worker slot: NextDatum for datum
batching (`transform.datum_batching`).

Pachyderm starts a batching pipeline's user code once per worker and the code asks for each
datum in turn: python-pachyderm 7.6's `Client().worker.next_datum(error=...)` (and
`batch_datum()`, `batch_all_datums`) dials `localhost:$PPS_WORKER_GRPC_PORT` on a plain channel
that sends no metadata. `SlotEndpoint` is that server for one slot, started by the batching
controller (`localpachd.batching`) once per slot and job, and closed when the slot is done:

- NextDatum: the caller must be the slot's own user code (`localpachd.peercheck`: a process
  started below this server whose initial environment carries `WORKER_TOKEN_ENV`=<the slot's
  token>); anyone else gets PERMISSION_DENIED naming that rule and the slot's callback is never
  called. Accepted calls run `next_datum(error)` one at a time (the request's error text, cut
  to MAX_ERROR bytes with a marker) and answer the env it returns. When the callback raises
  `EndOfBatch` the call is held (the worker kills the user code meanwhile) until `close()` or
  until the caller goes away, then answered CANCELLED; later calls are held the same way. Any
  other exception: INTERNAL with a short message (the first one of an endpoint is logged with
  its traceback, later ones counted at close).
- Status and Cancel (and any other method): UNIMPLEMENTED naming the method.
- Bounds: THREADS handler threads, at most MAX_CALLS calls at once (more: RESOURCE_EXHAUSTED
  from grpc), requests up to MAX_REQUEST bytes (bigger: RESOURCE_EXHAUSTED from grpc).
- Binding: 127.0.0.1 on an ephemeral port and, where the machine has an IPv6 loopback, [::1] on
  the same port (grpc resolves "localhost" to either), never a non-loopback address; without
  SO_REUSEPORT, so no other process can share the port. A port taken on one family is retried.
- `close()` is idempotent: ends held calls, stops the server, waits (bounded) for handler code
  still running and joins the handler threads. A call whose callback still runs is given
  GRACE, then grpc ends it (the client sees UNAVAILABLE); close() waits up to CALLS_WAIT for
  the callback to return, so the controller makes its callback return when the slot stops.
- The slot's process must carry the token in its *initial* environment (/proc/<pid>/environ):
  an exec'd process does; a process forked without exec (a warm zygote's child) must call
  `peercheck.present(WORKER_TOKEN_ENV, token)` after fork, its zygote started with
  `peercheck.reserve(env, WORKER_TOKEN_ENV)`.

Costs (2 cores, median of 200): start + close of an endpoint ~2.2 ms (a grpc server each);
a NextDatum round trip from python-pachyderm ~0.5 ms; the first call of a connection also walks
/proc once (~2 ms with ~100 processes).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures

import grpc
from python_pachyderm.proto.v2.worker import worker_pb2

from localpachd import limits
from localpachd.peercheck import PeerCheck
from localpachd.rpctypes import CallDetails, Handler
from localpachd.shutdown import Calls

log = logging.getLogger("localpachd")

WORKER_TOKEN_ENV = "LOCALPACHD_WORKER_TOKEN"  # env var carrying the slot's secret token
PORT_ENV = "PPS_WORKER_GRPC_PORT"  # where python-pachyderm's `Client().worker` dials
SERVICE = "pachyderm.worker.Worker"
NEXT_DATUM = f"/{SERVICE}/NextDatum"
MAX_REQUEST = 1024 * 1024  # NextDatumRequest is one error string
MAX_ERROR = 64 * 1024  # bytes of that error handed to the callback
THREADS = 4  # handler threads per endpoint (one slot: one caller)
MAX_CALLS = THREADS  # calls at once; more are refused by grpc, never queued
GRACE = 1.0  # seconds close() lets a call in its callback finish before grpc cancels it
CALLS_WAIT = 30.0  # seconds close() waits for handler code still running
BIND_TRIES = 8
OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_REQUEST),
    ("grpc.max_send_message_length", limits.MAX_MESSAGE),
    ("grpc.http2.bdp_probe", 0),
]


class EndOfBatch(Exception):
    """Raised by the slot's next_datum callback when no datum remains for this slot."""


def bound_error(text: str, limit: int = MAX_ERROR) -> str:
    """`text` cut to `limit` UTF-8 bytes (on a character boundary) plus a marker saying so."""
    if len(text) <= limit // 4:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    cut = data[:limit].decode("utf-8", "ignore")
    return f"{cut}\n[localpachd: error text truncated, {len(data)} bytes in all]"


@functools.cache
def ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (found once)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _add_port(server: grpc.Server, address: str) -> int:
    try:
        return int(server.add_insecure_port(address))
    except RuntimeError:  # grpc raises when it cannot bind
        return 0


class SlotEndpoint:
    """The worker API of one worker slot (see the module docstring)."""

    def __init__(self, next_datum: Callable[[str], Mapping[str, str]], token: str,
                 name: str = "") -> None:
        if not token or not token.strip():
            raise ValueError("a worker slot endpoint needs a non-blank token")
        self._next = next_datum
        self._token = token
        self.name = name or "worker slot"
        self._port = 0
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._peers: PeerCheck | None = None
        self._calls = Calls()
        self._serial = threading.Lock()  # one callback at a time
        self._state = threading.Lock()  # _held, _closed, _ended
        self._close_lock = threading.Lock()
        self._closed = threading.Event()
        self._ended = False
        self._held: set[threading.Event] = set()
        self._failures = 0

    @property
    def port(self) -> int:
        """The bound port (0 before `start`)."""
        return self._port

    @property
    def running(self) -> int:
        """NextDatum calls in handler code now (waiting their turn, in the callback, or held)."""
        return self._calls.running

    @property
    def walks(self) -> int:
        """/proc walks done to identify callers (one per connection)."""
        return self._peers.walks if self._peers is not None else 0

    def start(self) -> int:
        """Bind loopback on an ephemeral port, serve, and return the port."""
        with self._close_lock:
            if self._server is not None or self._closed.is_set():
                raise RuntimeError(f"{self.name}: a worker endpoint starts once")
            for _ in range(BIND_TRIES):
                executor = futures.ThreadPoolExecutor(THREADS, f"localpachd-{self.name}")
                server = grpc.server(executor, handlers=[_Handlers(self)], options=OPTIONS,
                                     maximum_concurrent_rpcs=MAX_CALLS)
                port = _add_port(server, "127.0.0.1:0")
                if port and (not ipv6_loopback() or _add_port(server, f"[::1]:{port}")):
                    break
                server.stop(None)
                executor.shutdown()
            else:
                raise OSError(f"{self.name}: could not bind a loopback port for the worker "
                              f"API ({BIND_TRIES} tries): are ephemeral ports exhausted?")
            self._peers = PeerCheck(port, WORKER_TOKEN_ENV, self._token)
            self._server, self._executor, self._port = server, executor, port
            server.start()
            return port

    def close(self) -> None:
        """End held calls (CANCELLED), stop serving, join the handler threads. Idempotent."""
        with self._close_lock:
            with self._state:
                if self._closed.is_set() and self._server is None:
                    return
                self._closed.set()
                for event in self._held:
                    event.set()
            server, executor, self._server = self._server, self._executor, None
            if server is None or executor is None:
                return
            server.stop(GRACE).wait()
            idle = self._calls.wait_idle(CALLS_WAIT)
            if not idle:
                log.warning("%s: %d worker API call(s) still ran %.0f s after the endpoint "
                            "closed", self.name, self._calls.running, CALLS_WAIT)
            executor.shutdown(wait=idle)
            if self._failures > 1:
                log.warning("%s: next datum failed %d times (the first is logged above)",
                            self.name, self._failures)

    def __enter__(self) -> SlotEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- NextDatum ------------------------------------------------------------------------

    def next_datum(self, request: object, context: grpc.ServicerContext) -> object:
        self._admit(context)
        error = bound_error(str(getattr(request, "error", "")))
        with self._serial:
            if self._closed.is_set() or not context.is_active():
                context.abort(grpc.StatusCode.CANCELLED, self._over())
            if not self._ended:
                try:
                    env = self._next(error)
                    return worker_pb2.NextDatumResponse(
                        env=[f"{key}={value}" for key, value in env.items()])
                except EndOfBatch:
                    self._ended = True
                except Exception as exc:
                    self._failed(exc)
                    context.abort(grpc.StatusCode.INTERNAL, f"{self.name}: localpachd could "
                                  f"not prepare the next datum: {type(exc).__name__}: "
                                  f"{str(exc)[:500]}")
        self._hold(context)
        context.abort(grpc.StatusCode.CANCELLED, self._over())
        raise AssertionError("unreachable: grpc's abort raises")

    def _admit(self, context: grpc.ServicerContext) -> None:
        assert self._peers is not None  # started
        verdict = self._peers.check(str(context.peer()))
        if not verdict.allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, (
                f"{self.name}: NextDatum refused: {verdict.reason}. Only the user code of this "
                "worker slot may call its worker API: a process localpachd started with this "
                f"slot's {PORT_ENV} and {WORKER_TOKEN_ENV} in its environment"))

    def _hold(self, context: grpc.ServicerContext) -> None:
        """Block until close() or until the caller goes away."""
        event = threading.Event()
        with self._state:
            if self._closed.is_set():
                event.set()
            self._held.add(event)
        try:
            if not context.add_callback(event.set):
                event.set()  # the call is already over
            event.wait()
        finally:
            with self._state:
                self._held.discard(event)

    def _over(self) -> str:
        return (f"{self.name}: no datum remains for this worker slot (datum batching is done; "
                "the worker ends the user code)")

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures == 1:
            log.error("%s: next datum failed", self.name, exc_info=exc)


class _Handlers(grpc.GenericRpcHandler):  # type: ignore[misc]
    """NextDatum (counted for close), and UNIMPLEMENTED naming any other method."""

    def __init__(self, endpoint: SlotEndpoint) -> None:
        self.next_datum = endpoint._calls.track(grpc.unary_unary_rpc_method_handler(
            endpoint.next_datum,
            request_deserializer=worker_pb2.NextDatumRequest.FromString,
            response_serializer=worker_pb2.NextDatumResponse.SerializeToString))

    def service(self, details: CallDetails) -> Handler | None:
        method = str(details.method)
        if method == NEXT_DATUM:
            return self.next_datum
        text = (f"{method[:200]} is not implemented by localpachd's worker API (it serves "
                f"only {NEXT_DATUM}, for datum batching)")

        def behaviour(requests: object, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, text)
            yield b""  # pragma: no cover (abort raises)

        return grpc.stream_stream_rpc_method_handler(behaviour)
