"""Pachyderm's message size limits, enforced where localpachd receives and answers calls.

Pachyderm 2.7 serves gRPC with MaxRecvMsgSize = MaxSendMsgSize = grpcutil.MaxMsgSize (20 MiB),
and python-pachyderm 7.6 accepts responses up to 20 MiB (`max_receive_message_length`) but sets
no send limit, so a bigger request reaches the server. Here:

- A request message over MAX_MESSAGE is refused before any handler runs, with the error Pachyderm
  (grpc-go) answers: RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. 20971520)".
  grpc's own limit is set higher (TRANSPORT_CAP) so that such messages reach `bounded`'s
  deserializer and get that text; above TRANSPORT_CAP grpc refuses them itself (same code).
- A unary request over MAX_STORED (MAX_MESSAGE less 1 MiB, as Pachyderm's MaxMsgPayloadSize) is
  refused too: its content (a pipeline spec, a repo, project or commit description) is stored and
  comes back inside a larger message (PipelineInfo, RepoInfo, CommitInfo, TransactionInfo),
  which must still fit the client's 20 MiB, or every later listing would fail. Streamed request
  messages (ModifyFile: the client's 19 MiB chunks plus a header) may use the full MAX_MESSAGE.
- Responses: grpc refuses to send a message over MAX_MESSAGE (RESOURCE_EXHAUSTED). TransactionInfo
  is the one response that echoes requests (FinishTransaction and BatchTransaction return every
  request and response, as Pachyderm 2.7's do): `fit` leaves the requests out when they would not
  fit, so a transaction that was applied is always reported as applied.

Used by `localpachd.server` (grpc options, `bounded` on every handler, `check` on requests
recorded into transactions) and `localpachd.transaction` (`fit`, `check_size`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar, cast

from google.protobuf import message

from localpachd import errors
from localpachd.rpctypes import Behaviour, Handler

M = TypeVar("M", bound=message.Message)

MIB = 1024 * 1024
MAX_MESSAGE = 20 * MIB  # Pachyderm's grpcutil.MaxMsgSize; python-pachyderm's receive limit
MAX_STORED = MAX_MESSAGE - MIB  # unary requests: room for the envelope of what echoes them
TRANSPORT_CAP = 64 * MIB  # grpc's own receive limit: above it, grpc refuses with its own text
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", TRANSPORT_CAP),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


class Oversized:
    """Stands in for a request message that was too big (made by the deserializer, which cannot
    fail a call itself; `check` turns it into the error)."""

    def __init__(self, error: errors.ResourceExhausted) -> None:
        self.error = error


def too_large(size: int) -> errors.ResourceExhausted:
    """Pachyderm's (grpc-go's) refusal of a request message over 20 MiB."""
    return errors.ResourceExhausted(
        f"grpc: received message larger than max ({size} vs. {MAX_MESSAGE})")


def too_large_to_store(size: int) -> errors.ResourceExhausted:
    return errors.ResourceExhausted(
        f"request of {size} bytes is over localpachd's limit of {MAX_STORED} bytes for a "
        f"request whose content is stored (Pachyderm's {MAX_MESSAGE // MIB} MiB message limit "
        "less 1 MiB for the responses that return it): make the spec or description smaller")


def check_size(size: int, streamed: bool = False) -> None:
    """Raise the refusal for a request message of `size` bytes (streamed: a stream's message)."""
    if size > MAX_MESSAGE:
        raise too_large(size)
    if not streamed and size > MAX_STORED:
        raise too_large_to_store(size)


def check(request: object) -> object:
    """The request, or raise its refusal if the deserializer replaced it with `Oversized`."""
    if isinstance(request, Oversized):
        raise request.error
    return request


def _checked_stream(requests: Iterator[object]) -> Iterator[object]:
    for request in requests:
        yield check(request)


def _deserializer(inner: Callable[[bytes], object] | None, streamed: bool
                  ) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            check_size(len(data), streamed)
        except errors.ResourceExhausted as exc:
            return Oversized(exc)  # nothing is parsed: the call fails before its handler runs
        return inner(data) if inner is not None else data

    return deserialize


def bounded(handler: Handler) -> Handler:
    """The grpc method handler with the request size limits applied (see the module doc).

    Its behaviour raises errors.ResourceExhausted for an oversized request (a unary one before
    it runs, a streamed one when the stream reaches it), for the server's error boundary."""
    streamed = bool(handler.request_streaming)
    out = handler._replace(request_deserializer=_deserializer(handler.request_deserializer,
                                                              streamed))
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        fn = getattr(handler, kind)
        if fn is not None:
            return out._replace(**{kind: _checking(fn, streamed)})
    return out


def _checking(fn: Behaviour, streamed: bool) -> Behaviour:
    if streamed:
        return lambda requests, context: fn(_checked_stream(cast(Iterator[object], requests)),
                                            context)
    return lambda request, context: fn(check(request), context)


def fit(info: M) -> M:
    """A TransactionInfo (or TransactionInfos) a client can receive: as is when it fits
    MAX_MESSAGE, else without the echoed requests (the client sent them; responses, which carry
    the commits a transaction started, are kept). Raises errors.ResourceExhausted if even that
    does not fit, so a caller inside a store write rolls back instead of answering an error
    after applying."""
    if info.ByteSize() <= MAX_MESSAGE:
        return info
    out: M = type(info)()
    out.CopyFrom(info)
    for one in [out] if hasattr(out, "requests") else out.transaction_info:
        del one.requests[:]
    size = out.ByteSize()
    if size > MAX_MESSAGE:
        raise errors.ResourceExhausted(
            f"the transaction's responses alone are {size} bytes, over the {MAX_MESSAGE}-byte "
            "message limit: split it into smaller transactions")
    return out
