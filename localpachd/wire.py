"""Responses serialised once: memoised protobuf messages keep their wire bytes.

protobuf 3.20 is pure Python here, so serialising 200 PipelineInfos costs tens of milliseconds
on every ListPipeline. The listing modules (`localpachd.pps.listing`, `localpachd.pfs.convert`)
memoise finished messages and never modify them; `remember` stores such a message's bytes, and
the registration code of those services (`register_fast`) swaps the generated response
serialiser of the listed methods for one that returns the stored bytes of a remembered message
(identity-checked) and serialises anything else as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

from localpachd.rpctypes import CallDetails, Handler

M = TypeVar("M")
_MAX = 4096
_bytes: dict[int, tuple[object, bytes]] = {}


def remember(msg: M) -> M:
    """Serialise `msg` now and serve these bytes for it from then on; it must never change."""
    if len(_bytes) >= _MAX:  # crude bound: forgotten messages are simply serialised again
        _bytes.clear()
    _bytes[id(msg)] = (msg, msg.SerializeToString())  # type: ignore[attr-defined]
    return msg


def _serializer(default: Callable[[object], bytes]) -> Callable[[object], bytes]:
    def serialize(msg: object) -> bytes:
        hit = _bytes.get(id(msg))
        if hit is not None and hit[0] is msg:  # the dict keeps msg alive, so ids are not reused
            return hit[1]
        return default(msg)

    return serialize


class _Fast(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, inner: Any, methods: frozenset[str]) -> None:
        self.inner = inner
        self.methods = methods

    def service(self, details: CallDetails) -> Handler | None:
        handler = self.inner.service(details)
        if handler is None or details.method not in self.methods:
            return handler
        return handler._replace(response_serializer=_serializer(handler.response_serializer))


class _Capture:
    """Stands in for the grpc.Server the generated `add_*Servicer_to_server` expects."""

    def __init__(self, server: grpc.Server, methods: frozenset[str]) -> None:
        self.server = server
        self.methods = methods

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_Fast(h, self.methods) for h in handlers))


def register_fast(add: Callable[[Any, Any], None], servicer: Any, server: grpc.Server,
                  methods: Iterable[str]) -> None:  # fmt: skip
    """`add(servicer, server)` (a generated add_*Servicer_to_server) with `methods` (full names,
    e.g. `/pps_v2.API/ListPipeline`) answering remembered messages with their stored bytes."""
    add(servicer, _Capture(server, frozenset(methods)))
