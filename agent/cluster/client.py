"""Connecting to pachd: a python-pachyderm client whose every RPC is counted, and error mapping.

Called by every command and by `agent.sync` through `connected(address)`, the context manager
that resolves the address (`agent.cluster.address`), connects, and closes the channels when the
block ends, however it ends. The count
(`Connection.rpc_count`) backs the no-op efficiency guarantee (a sync that changes nothing makes
at most 3 RPCs) and `SyncResult.rpc_count`. `rpc_errors()` is the one boundary where
`grpc.RpcError` becomes an `agent.errors` type: unreachable/overloaded -> Transient, an existing
thing or a failed precondition -> Conflict, anything else -> PachsyncError with the server text.
`outcome_unknown()` tells a refusal (nothing changed) from a failure that may have come after the
server acted (`agent.cluster.apply` then re-observes the cluster instead of guessing).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import python_pachyderm

from agent.cluster.address import PachdTarget, resolve
from agent.errors import Conflict, PachsyncError, Transient, UsageError

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.CANCELLED}
_CONFLICT = {grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION}
# Answers that say the server refused the call, so it changed nothing. Any other failure of a
# call that was sent (lost or oversized answer, timeout, broken connection, internal error) may
# have come after the server acted.
_REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED}


DEFAULT_TIMEOUT_S = 300.0  # no call may hang a sync forever (a stuck pachd = Transient)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """ClientCallDetails with a deadline filled in."""


def _with_deadline(details: Any, timeout: float | None) -> Any:
    if timeout is None or getattr(details, "timeout", None) is not None:
        return details
    return _CallDetails(details.method, timeout, details.metadata, details.credentials,
                        getattr(details, "wait_for_ready", None),
                        getattr(details, "compression", None))


class RpcCounter(  # grpc ships no type stubs, hence the ignores
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Counts RPCs started on every channel it wraps, per method too (thread-safe), and gives
    every call without one a deadline (`timeout` seconds; None = none)."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.count = 0
        self.by_method: dict[str, int] = {}
        self._lock = threading.Lock()

    def _hit(self, details: Any) -> Any:
        with self._lock:
            self.count += 1
            name = str(getattr(details, "method", "?"))
            self.by_method[name] = self.by_method.get(name, 0) + 1
        return _with_deadline(details, self.timeout)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        return continuation(self._hit(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        return continuation(self._hit(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               request_iterator: Any) -> Any:
        return continuation(self._hit(details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                request_iterator: Any) -> Any:
        return continuation(self._hit(details), request_iterator)


class CountingClient(python_pachyderm.Client):  # type: ignore[misc]
    """python_pachyderm.Client whose channels (also those a transaction re-creates) are counted.

    The client builds its stubs from `self._channel` in its constructor and again whenever the
    transaction id or token changes; intercepting the assignment covers every one of them.
    """

    def __init__(self, counter: RpcCounter, **kwargs: Any) -> None:
        self._rpc_counter = counter
        super().__init__(**kwargs)
        if kwargs.get("auth_token") is None and self._auth_token is not None \
                and not self._auth_token.strip():
            # python-pachyderm falls back to PACH_PYTHON_AUTH_TOKEN even when it is "" (CI maps
            # unset secrets to ""), which would send an empty authn-token: send none instead.
            self.auth_token = None

    @property
    def _channel(self) -> grpc.Channel:
        return self._counted_channel

    @_channel.setter
    def _channel(self, channel: grpc.Channel) -> None:
        # The client replaces its channel on every transaction start/end: keep them all so
        # `close()` releases every connection, not just the last one.
        self.__dict__.setdefault("_all_channels", []).append(channel)
        self._counted_channel = grpc.intercept_channel(channel, self._rpc_counter)

    def close_channels(self) -> None:
        for channel in self.__dict__.get("_all_channels", []):
            channel.close()


@dataclass
class Connection:
    """A connected client plus what it cost. Not frozen: the counter moves."""

    client: Any
    target: PachdTarget
    counter: RpcCounter = field(default_factory=RpcCounter)

    @property
    def rpc_count(self) -> int:
        return self.counter.count

    def close(self) -> None:
        if isinstance(self.client, CountingClient):
            self.client.close_channels()


def connect(target: PachdTarget, timeout: float | None = DEFAULT_TIMEOUT_S) -> Connection:
    """A client for `target`. Makes no RPC: failures surface on the first call (as Transient).
    Every call gets a deadline of `timeout` seconds (env PACHSYNC_RPC_TIMEOUT overrides)."""
    counter = RpcCounter(_env_timeout(timeout))
    try:
        client = CountingClient(counter, host=target.host, port=target.port,
                                auth_token=target.auth_token, root_certs=target.root_certs,
                                tls=target.tls, use_default_host=False)
    except (ValueError, TypeError) as exc:  # python-pachyderm rejects non-PEM root certs
        raise UsageError(f"cannot use the TLS CA certificates for {target.address}: {exc}",
                         hint="PACHSYNC_CA_FILE or the config's server_cas must be PEM") from exc
    return Connection(client, target, counter)


@contextmanager
def connected(pachd: str | None) -> Iterator[Connection]:
    """A connection to the pachd `pachd` names (the --pachd value; None: env, pachctl config,
    in-cluster service, localhost, in that order), closed when the block ends."""
    conn = connect(resolve(pachd))
    try:
        yield conn
    finally:
        conn.close()


def _env_timeout(default: float | None) -> float | None:
    raw = os.environ.get("PACHSYNC_RPC_TIMEOUT", "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise UsageError(f"PACHSYNC_RPC_TIMEOUT={raw!r} is not a positive number of seconds",
                         hint="set it to e.g. 300, or unset it for the default")
    return value


def _details(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return str(exc.details() or exc)
    return str(exc)


# How gRPC's resolvers (c-ares, native getaddrinfo) say a host name does not resolve.
_NAME_NOT_RESOLVED = ("dns resolution failed", "errors resolving", "address lookup failed",
                      "domain name not found", "name or service not known",
                      "temporary failure in name resolution", "nodename nor servname",
                      "no address associated with hostname")
# How gRPC's TLS says the certificate names another host (checked after the names above: a
# resolver's text says "hostname lookup error").
_CERT_NAMES_OTHER = ("hostname verification", "not in peer certificate", "peer name")


def _unreachable_hint(details: str, target: PachdTarget | None) -> str:
    """What to do about UNAVAILABLE: a name that does not resolve and TLS mismatches look like
    an outage but are not one."""
    tls = bool(target and target.tls)
    lower = details.lower()
    if any(words in lower for words in _NAME_NOT_RESOLVED):
        host = repr(target.host) if target else "of pachd"
        return (f"cannot resolve the host name {host}: check the address in --pachd / "
                "PACHD_ADDRESS (in a cluster: the service name and namespace) and DNS")
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return ("pachd's TLS certificate is not trusted: set PACHSYNC_CA_FILE to the PEM CA "
                "bundle that signed it (or server_cas in the pachctl config)")
    if any(words in lower for words in _CERT_NAMES_OTHER):
        return "pachd's TLS certificate does not name this host: connect with a name it lists"
    if tls and ("WRONG_VERSION_NUMBER" in details or "handshake" in details.lower()):
        return "TLS handshake failed: if pachd serves plaintext on this port, use grpc://HOST:PORT"
    if not tls and "Socket closed" in details:
        return ("pachd closed the connection: if it serves TLS, use grpcs://HOST:PORT "
                "(and PACHSYNC_CA_FILE for a private CA)")
    return "is pachd running? check --pachd / PACHD_ADDRESS"


def map_error(exc: BaseException, what: str, target: PachdTarget | None = None) -> PachsyncError:
    """The agent error for a failed call: what we tried, what pachd said, what to do."""
    where = f" at {target.describe()}" if target else ""
    if isinstance(exc, ConnectionError) and isinstance(exc.__cause__, grpc.RpcError):
        exc = exc.__cause__  # python-pachyderm's wrapper hides grpc's details (TLS mismatch...)
    if isinstance(exc, ConnectionError):
        return Transient(f"{what}: cannot reach pachd{where}",
                         hint="is pachd running? check --pachd / PACHD_ADDRESS")
    code = exc.code() if isinstance(exc, grpc.RpcError) else None
    text = f"{what}: {_details(exc)}" + (f" ({code.name})" if code else "")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Transient(f"{what}: cannot reach pachd{where}: {_details(exc)}",
                         hint=_unreachable_hint(_details(exc), target))
    if code in _TRANSIENT:
        return Transient(text + where, hint="pachd busy or interrupted; retrying later may pass")
    if code in _CONFLICT:
        return Conflict(text, hint="the cluster state forbids this change; see the message")
    if code == grpc.StatusCode.NOT_FOUND:
        return PachsyncError(text, hint="it does not exist on this pachd: check the name "
                                        "(`pachsync apply` creates the repos of repos.yaml and "
                                        "the pipelines; `pachsync status` lists them)")
    if code == grpc.StatusCode.UNAUTHENTICATED or code == grpc.StatusCode.PERMISSION_DENIED:
        return PachsyncError(text, hint="set PACH_PYTHON_AUTH_TOKEN or PACHSYNC_AUTH_TOKEN_FILE")
    return PachsyncError(text)


def outcome_unknown(exc: BaseException) -> bool:
    """True when a failed call may still have taken effect: look before reporting it failed."""
    if isinstance(exc, ConnectionError):
        return True
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code not in _REFUSED
    return False


@contextmanager
def rpc_errors(what: str, target: PachdTarget | None = None) -> Iterator[None]:
    """Turn grpc/connection failures inside the block into agent.errors types."""
    try:
        yield
    except PachsyncError:
        raise
    except (grpc.RpcError, ConnectionError) as exc:
        raise map_error(exc, what, target) from exc
