"""What localpachd's shutdown needs from the call path: refuse new calls, count running ones.

Used by `localpachd.server`: its interceptor passes every handler through `Calls.track`, and
`RunningServer.stop` waits on `Calls.wait_idle` before the store closes. grpc's `server.stop()`
ends the calls (after the grace period they are cancelled) but never waits for the servicer code
still running on its handler threads: a handler looping in a wait, or in the middle of a
statement, would otherwise use the store while it closes. Bounded: a handler that does not
notice its call ended within the timeout is reported, and the store then refuses it (never a
crash, see `localpachd.store.Store.close`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from localpachd import errors
from localpachd.rpctypes import Handler, Streaming, Unary


class Stopping(errors.PachError):
    """A call that arrived while the server stops."""

    code = grpc.StatusCode.UNAVAILABLE


STOPPING = "localpachd is stopping: retry once it is running again"


class Calls:
    """The number of calls whose servicer code is running now."""

    def __init__(self) -> None:
        self._running = 0
        self._cond = threading.Condition()

    @property
    def running(self) -> int:
        return self._running

    @contextmanager
    def _held(self) -> Iterator[None]:
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no call runs; False if some still do after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            return self._cond.wait_for(lambda: self._running == 0,
                                       max(0.0, deadline - time.monotonic()))

    def track(self, handler: Handler | None) -> Handler | None:
        """`handler` (a grpc.RpcMethodHandler) counted while its behaviour runs: a unary
        response until it returns, a streaming one until the stream ends or is dropped."""
        if handler is None:
            return None
        for kind in ("unary_unary", "stream_unary"):
            fn = getattr(handler, kind)
            if fn is not None:
                return handler._replace(**{kind: self._unary(fn)})
        for kind in ("unary_stream", "stream_stream"):
            fn = getattr(handler, kind)
            if fn is not None:
                return handler._replace(**{kind: self._stream(fn)})
        return handler

    def _unary(self, fn: Unary) -> Unary:
        def behaviour(request: object, context: grpc.ServicerContext) -> object:
            with self._held():
                return fn(request, context)

        return behaviour

    def _stream(self, fn: Streaming) -> Streaming:
        def behaviour(request: object, context: grpc.ServicerContext) -> Iterator[object]:
            with self._held():
                yield from fn(request, context)

        return behaviour
