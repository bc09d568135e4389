"""Names for the grpc shapes localpachd's call plumbing passes around (a leaf module).

Used by `localpachd.server` (the error boundary), `shutdown` (call tracking), `limits` (request
bounds) and `wire` (cached serialisation). Requests and responses travel through that plumbing
unopened, so they are `object`; grpc itself has no type information, so `Handler` and
`CallDetails` are names for the reader (Any to the checker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

Handler = grpc.RpcMethodHandler  # the behaviour and (de)serialisers of one method
CallDetails = grpc.HandlerCallDetails  # `.method` (full name) and `.invocation_metadata`
Unary = Callable[[object, grpc.ServicerContext], object]  # a unary-response behaviour
Streaming = Callable[[object, grpc.ServicerContext], Iterator[object]]  # a streaming one
Behaviour = Callable[[object, grpc.ServicerContext], object]  # either (a generator is an object)
Wrap = Callable[[Behaviour], Behaviour]
