"""What every service module of localpachd is given: the server's config and shared context.

A leaf below the server and the servicers: `localpachd.server` builds one `ServerContext` and
calls each service module's `register(grpc_server, ctx)` (a `Registrar`, listed in
`localpachd.server.REGISTRARS`); the servicers keep `ctx` and reach the store, the transaction
registry, the job engine, the wait slots and the shutdown flag through it. `fill_unimplemented`
makes a servicer's unserved methods fail UNIMPLEMENTED with their full name. Nothing here
imports a servicer or the server, so no service module needs a function-local import.

A new RPC: a method on the servicer class of its service (`pfs/servicer.py`,
`pps/servicer.py`, `transaction.py`, `misc.py`); a new service: a module with a `register`
added to `REGISTRARS`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import message

from localpachd import errors
from localpachd.jobs import JobEngine
from localpachd.pfs.model import Commit
from localpachd.pfs.urls import UrlOptions
from localpachd.store import Store, Tx
from localpachd.waits import WaitSlots


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    auth_token: str | None = None
    runtime: str = "auto"  # worker runtime name (localpachd.runtimes.make_runtime)
    max_parallelism: int | None = None  # cap on datum workers; None = os.cpu_count()
    fsync: bool = True  # fsync blobs and SQLite commits (off only for throwaway benchmarks)
    workers: int = 64  # gRPC handler threads (a call holds one until it returns)
    # Blocking calls (waits, SubscribeCommit, GetLogs follow) hold at most `wait_slots` threads,
    # at most `wait_slots_per_peer` per client connection; None = localpachd.waits.sizes().
    wait_slots: int | None = None
    wait_slots_per_peer: int | None = None
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key the port serves TLS only
    tls_key: Path | None = None  # PEM private key of tls_cert
    # Put file from a URL: timeouts, size limit, file:// allow-list (off by default).
    urls: UrlOptions = field(default_factory=UrlOptions)

    @property
    def parallelism_cap(self) -> int:
        return self.max_parallelism or os.cpu_count() or 1


# `apply(ctx, tx, request)`: a transactional call performed inside a store transaction; returns
# the response message, or None for Empty (see localpachd.transaction).
Apply = Callable[["ServerContext", Tx, Any], "message.Message | None"]


class Transactions(Protocol):
    """The registry of transactional methods (`localpachd.transaction.Registry`)."""

    def register(self, method: str, request_type: type[message.Message], apply: Apply,
                 field: str | None = None) -> None: ...  # fmt: skip

    def is_transactional(self, method: str) -> bool: ...

    def record(self, ctx: ServerContext, txn: str, method: str, request: message.Message
               ) -> message.Message: ...  # fmt: skip


@dataclass
class ServerContext:
    config: ServerConfig
    store: Store
    transactions: Transactions
    stopping: threading.Event = field(default_factory=threading.Event)
    # Blocking calls take a slot first (localpachd.waits), so they never hold every handler thread.
    waits: WaitSlots = field(default_factory=lambda: WaitSlots(1, 1))
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # Checks the pps module may add, run by the DeleteRepo / FinishCommit RPCs (not by the
    # model functions) unless the request has `force`: `guard(tx, project, repo)` and
    # `guard(tx, commit)` raise a localpachd.errors type to refuse, e.g. Pachyderm's "cannot
    # delete a repo associated with a pipeline - delete the pipeline instead" and "cannot finish
    # a pipeline output or meta commit, use 'stop job' instead".
    delete_repo_guards: list[Callable[[Tx, str, str], None]] = field(default_factory=list)
    finish_commit_guards: list[Callable[[Tx, Commit], None]] = field(default_factory=list)
    # The job engine, once the pps module registered (`pps_engine` reads it).
    jobs: JobEngine | None = None

    @property
    def pps_engine(self) -> JobEngine:
        if self.jobs is None:
            raise errors.Unimplemented("the pps service is not registered on this server")
        return self.jobs


Registrar = Callable[[grpc.Server, ServerContext], None]


def fill_unimplemented(cls: type, service: str) -> type:
    """Make every generated-servicer method a class does not override fail UNIMPLEMENTED with
    the full method name (the generated default says only "Method not implemented!")."""
    for base in cls.__mro__[1:]:
        if not base.__module__.endswith("_pb2_grpc"):
            continue  # mixins of ours implement methods; only generated defaults are replaced
        for name, attr in vars(base).items():
            if name.startswith("_") or not callable(attr) or name in vars(cls):
                continue
            if getattr(cls, name) is not attr:
                continue

            def missing(self: Any, request: Any, context: Any, _n: str = name) -> Any:
                raise errors.Unimplemented(f"/{service}/{_n} is not implemented by localpachd")

            setattr(cls, name, missing)
    return cls
