"""localpachd's gRPC server: builds the shared context, registers every service, one error boundary.

Called by `localpachd.cli` (`localpachd serve`) and in-process by tests (`start(...)`, contract C2).

Extension points for pps
------------------------
- `REGISTRARS` lists the `register(grpc_server, ctx)` functions, one per service module (a new
  service is one more entry). A registrar adds its
  servicer with the generated `add_APIServicer_to_server(servicer, grpc_server)` and may
  subscribe to `ctx.store.events` (commit started/finished, see `localpachd.events`) and
  append a cleanup callable to `ctx.on_stop` (run by `RunningServer.stop` before the store closes).
- `ctx` is a `ServerContext` (`localpachd.context`, a leaf module, so servicers import it
  without importing the server): `config` (frozen `ServerConfig`: runtime, max_parallelism, ...),
  `store` (`localpachd.store.Store`: SQLite write transactions shared by all modules, blobs,
  events), `transactions` (`localpachd.transaction.Registry`: register transactional methods such
  as `/pps_v2.API/CreatePipeline` with an apply function; calls carrying `pach-transaction`
  metadata are then recorded and applied at FinishTransaction, all or nothing), `stopping` (a
  threading.Event), `pps_engine` (the job engine, `localpachd.jobs.JobEngine`).
- `ctx.delete_repo_guards` / `ctx.finish_commit_guards`: refuse DeleteRepo / FinishCommit on a
  pipeline's output repo or commit unless `force`, as Pachyderm does (see ServerContext).
- Errors: servicers raise `localpachd.errors` types (NotFound, AlreadyExists, InvalidArgument,
  FailedPrecondition, ...); the interceptor below turns them into gRPC status codes with their text.
  Any other exception becomes INTERNAL with its message (and is logged). Never call context.abort.
- Limits: request and response sizes are Pachyderm's 20 MiB (`localpachd.limits`). A servicer
  method that blocks until some state is reached waits through `localpachd.waits.wait_until`, and
  a stream that lasts until the client leaves is listed in `localpachd.waits.STREAMS`: both take
  a bounded wait slot, so blocking calls never hold every handler thread.
- Shutdown (`RunningServer.stop`, also on SIGTERM/SIGINT of `localpachd serve`) goes in order,
  so no thread of localpachd outlives it and none uses the store as it closes: refuse new calls
  (UNAVAILABLE), end the calls in flight (`grace`, then cancelled) and wake their waits, run the
  `ctx.on_stop` hooks (the job engine cancels jobs, kills datums, joins its threads), wait for
  servicer code still running (`localpachd.shutdown.Calls`), close the store, then end the
  handler threads. Every wait is bounded.
- PFS helpers for the job engine: `localpachd.pfs.model` (commits, branches, provenance, finish with
  `error`) and `localpachd.pfs.files` (`tree`, `replace_tree`, `write_entries`).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc

from localpachd import errors, limits, misc, pfs, pps, transaction, waits
from localpachd.context import Registrar, ServerConfig, ServerContext
from localpachd.rpctypes import Behaviour, CallDetails, Handler, Streaming, Wrap
from localpachd.shutdown import STOPPING, Calls, Stopping
from localpachd.store import Store
from localpachd.transaction import Registry
from localpachd.waits import WaitSlots

__all__ = ["RunningServer", "ServerConfig", "ServerContext", "start"]

log = logging.getLogger("localpachd")

GRPC_OPTIONS = [
    *limits.GRPC_OPTIONS,  # Pachyderm's 20 MiB messages (localpachd.limits)
    ("grpc.so_reuseport", 0),
    ("grpc.http2.bdp_probe", 0),  # no window growth: receive memory bounded per message
]
CALLS_WAIT = 30.0  # seconds stop() waits for servicer code still running once calls ended


# One `register(grpc_server, ctx)` per service module, in order.
REGISTRARS: tuple[Registrar, ...] = (
    misc.register, transaction.register, pfs.register, pps.register,
)


class _Boundary(grpc.ServerInterceptor):  # type: ignore[misc]
    """Auth check, transaction recording and the error boundary, for every method."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.calls = Calls()  # what stop() waits for before the store closes

    def intercept_service(self, continuation: Callable[[CallDetails], Handler | None],
                          details: CallDetails) -> Handler | None:
        handler = continuation(details)
        if handler is not None and self.ctx.stopping.is_set():
            return _replace(handler, lambda fn: _fail(Stopping(STOPPING)))
        return self.calls.track(self._intercept(handler, details))

    def _intercept(self, handler: Handler | None, details: CallDetails) -> Handler | None:
        if handler is None:
            return None
        handler = limits.bounded(handler)  # oversized requests fail before the servicer runs
        meta = dict(details.invocation_metadata or ())
        token = self.ctx.config.auth_token
        if token is not None and not hmac.compare_digest(
                str(meta.get("authn-token", "")).encode(), token.encode()):
            return _replace(handler, lambda fn: _fail(errors.Unauthenticated(
                "no authentication token, or a wrong one: send metadata `authn-token`")))
        txn = meta.get("pach-transaction")
        if txn and self.ctx.transactions.is_transactional(details.method):
            txn_method = details.method
            return _replace(handler, lambda fn: _guard(
                lambda req, c: self.ctx.transactions.record(self.ctx, txn, txn_method,
                                                            limits.check(req)),
                txn_method))
        method = details.method
        return _replace(handler, lambda fn: _guard(fn, method),
                        lambda fn: _guard_stream(fn, method, self.ctx.waits))


def _fail(exc: errors.PachError) -> Behaviour:
    def behaviour(request: object, context: grpc.ServicerContext) -> NoReturn:
        context.abort(exc.code, exc.message)
        raise AssertionError("unreachable: grpc's abort raises")

    return behaviour


def _abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    if isinstance(exc, errors.PachError):
        context.abort(exc.code, exc.message)
    if isinstance(exc, grpc.RpcError) or not context.is_active():
        raise exc  # the client cancelled or went away: nothing to report, nobody to tell
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    raise AssertionError("unreachable: grpc's abort raises")


def _settle(context: grpc.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """Turn an exception into the call's status (always raises)."""
    if context.code() is not None:  # the generated default servicer or grpc set it already
        if isinstance(exc, NotImplementedError):
            context.set_details(f"{method} is not implemented by localpachd")
        raise exc
    _abort(context, exc)


def _guard(fn: Behaviour, method: str = "") -> Behaviour:
    def behaviour(request: object, context: grpc.ServicerContext) -> object:
        try:
            return fn(request, context)
        except Exception as exc:
            _settle(context, exc, method)

    return behaviour


def _guard_stream(fn: Behaviour, method: str = "",
                  slots: WaitSlots | None = None) -> Streaming:
    """The error boundary of a streaming response; a stream that lasts until the client leaves
    (localpachd.waits.STREAMS) holds a wait slot for its whole life."""
    name = method.rsplit("/", 1)[-1]

    def behaviour(request: object, context: grpc.ServicerContext) -> Iterator[object]:
        try:
            if slots is not None and waits.stream_holds_slot(method, request):
                with slots.hold(waits.peer_of(context), name):
                    yield from cast(Iterator[object], fn(request, context))
            else:
                yield from cast(Iterator[object], fn(request, context))
        except Exception as exc:
            _settle(context, exc, method)

    return behaviour


def _replace(handler: Handler, wrap: Wrap, stream_wrap: Wrap | None = None) -> Handler:
    """Wrap whichever behaviour the handler has (`stream_wrap` for streaming responses)."""
    if handler.unary_unary:
        return handler._replace(unary_unary=wrap(handler.unary_unary))
    if handler.stream_unary:
        return handler._replace(stream_unary=wrap(handler.stream_unary))
    swrap = stream_wrap or wrap
    if handler.unary_stream:
        return handler._replace(unary_stream=swrap(handler.unary_stream))
    return handler._replace(stream_stream=swrap(handler.stream_stream))


class _Fallback(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves `/pps_v2.API/DeleteAll` as a no-op while no pps module is registered, so the
    client's `delete_all()` works on a PFS-only server (a real pps servicer takes precedence)."""

    def service(self, details: CallDetails) -> Handler | None:
        if details.method != "/pps_v2.API/DeleteAll":
            return None
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"",
                                                   response_serializer=lambda b: b)


class _Unimplemented(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Catch-all, registered last: any method nobody serves fails UNIMPLEMENTED, naming it."""

    def service(self, details: CallDetails) -> Handler | None:
        method = details.method

        def behaviour(request_iterator: object, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{method} is not implemented by localpachd")
            yield b""  # pragma: no cover (abort raises)

        return grpc.stream_stream_rpc_method_handler(behaviour)


@dataclass
class RunningServer:
    host: str
    port: int
    data_dir: Path
    ctx: ServerContext
    _server: grpc.Server
    _calls: Calls = field(default_factory=Calls)
    _executor: futures.ThreadPoolExecutor | None = None
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def tls(self) -> bool:
        """True when the port serves TLS only (clients must use grpcs://)."""
        return self.ctx.config.tls_cert is not None

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop in order (see the module docstring); returns once every thread localpachd
        started has ended, or a bounded wait for one of them gave up (logged). Idempotent; a
        second caller waits for the first."""
        with self._stop_lock:
            if self.ctx.stopping.is_set():
                return
            self.ctx.stopping.set()  # 1. the interceptor refuses new calls
            self.ctx.store.events.bump()  # streams that end on `stopping` see it now
            # 2. no new connection or call from now on; calls in flight get `grace` s, then
            # are cancelled (the return is not the end of their servicer code: see 4.)
            self._server.stop(grace).wait()
            self.ctx.store.events.bump()  # waits re-check now: their call is over
            for fn in reversed(self.ctx.on_stop):  # 3. the job engine, ...
                try:
                    fn()
                except Exception:
                    log.exception("stop hook failed")
            idle = self._calls.wait_idle(CALLS_WAIT)  # 4. servicer code still running
            if not idle:
                log.warning("%d call(s) still ran %.0f s after the server stopped; the store "
                            "refuses them from now on", self._calls.running, CALLS_WAIT)
            self.ctx.store.close()  # 5.
            if self._executor is not None:  # 6. the handler threads (idle: join them)
                self._executor.shutdown(wait=idle)  # (a call never started fails cleanly)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(data_dir: Path, host: str = "127.0.0.1", port: int = 0,
          auth_token: str | None = None, **options: Any) -> RunningServer:
    """Start localpachd on host:port (0 = a free port) storing under data_dir; returns at once.

    Options `tls_cert` and `tls_key` (PEM files) make the port serve TLS (clients use
    grpcs://); without them the port is plaintext.
    """
    known = {f.name for f in fields(ServerConfig)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown localpachd option(s): {', '.join(sorted(unknown))}")
    if auth_token is not None and not auth_token.strip():
        # An empty token must never mean "no auth": None is the only way to switch auth off.
        raise ValueError("localpachd auth_token is empty or blank; pass None to serve without auth")
    config = ServerConfig(data_dir=Path(data_dir), host=host, port=port, auth_token=auth_token,
                          **options)
    credentials = _tls_credentials(config)  # before the store: a bad file leaves nothing open
    slots = WaitSlots(*waits.sizes(config.workers, config.wait_slots,
                                         config.wait_slots_per_peer))
    store = Store(config.data_dir, fsync=config.fsync)
    ctx = ServerContext(config=config, store=store, transactions=Registry(), waits=slots)
    executor = futures.ThreadPoolExecutor(max_workers=config.workers,
                                          thread_name_prefix="localpachd")
    boundary = _Boundary(ctx)
    server = grpc.server(executor, interceptors=[boundary], options=GRPC_OPTIONS)
    try:
        if credentials is None:
            bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
        else:
            bound = server.add_secure_port(f"{_bracket(host)}:{port}", credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        store.close()
        executor.shutdown()
        raise OSError(f"localpachd could not bind {host}:{port}: is the port in use?")
    running = RunningServer(host=host, port=bound, data_dir=config.data_dir, ctx=ctx,
                            _server=server, _calls=boundary.calls, _executor=executor)
    ctx.config = replace(config, port=bound)  # the bound port: spouts and services dial it
    try:
        for register in REGISTRARS:
            register(server, ctx)
        server.add_generic_rpc_handlers((_Fallback(), _Unimplemented()))
        server.start()
    except BaseException:
        running.stop(grace=None)  # runs the stop hooks registered so far, frees the data dir
        raise
    return running


def _tls_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials when both tls_cert and tls_key are set, None for a plaintext port.

    Raises OSError (as a failed bind does) for half a pair or an unreadable/non-PEM file, so
    the CLI reports every startup problem the same way.
    """
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise OSError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    pair = []
    for what, path in (("key", config.tls_key), ("certificate", config.tls_cert)):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise OSError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from exc
        if b"-----BEGIN " not in data:
            raise OSError(f"TLS {what} {path} is not PEM (no -----BEGIN line)")
        pair.append(data)
    return grpc.ssl_server_credentials([(pair[0], pair[1])])


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
