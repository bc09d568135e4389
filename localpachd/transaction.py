"""Pachyderm transactions (`transaction_v2.API`) and the registry of transactional methods.

Called by the server's interceptor (any call carrying metadata `pach-transaction: ID` to a method
registered here is recorded instead of run) and by the transaction_v2 servicer below.

Extension point for pps: `ctx.transactions.register(method, request_type, apply, field=...)`, e.g.
`register("/pps_v2.API/CreatePipeline", pps_pb2.CreatePipelineRequest, apply_create_pipeline,
field="create_pipeline")`. `apply(ctx, tx, request)` performs the call inside the given store
transaction (`localpachd.store.Tx`; use `model`/`files` helpers and your own tables through `tx`)
and returns the response message, or None for Empty. It must have no side effect outside the
database: start threads/jobs from `tx.after_commit(...)` or from store events, because apply is
also used for dry runs that are rolled back. The servicer's ordinary (non-transaction) method
should call the same apply inside `with ctx.store.write() as tx:` so both paths behave alike.
`field` is the `transaction_v2.TransactionRequest` field that InspectTransaction reports
(omit it for methods the 2.7 proto cannot represent, e.g. DeletePipeline).

Semantics (as Pachyderm): recording a call first dry-runs every recorded call plus the new one; if
the new one fails, its error is returned and it is not recorded. FinishTransaction applies all
calls in order in ONE store transaction: if any fails, nothing is applied and the transaction
stays, as in Pachyderm. Every commit started inside has the transaction's ID as its commit-set ID.
Like Pachyderm 2.7's, the TransactionInfo that FinishTransaction, BatchTransaction and
InspectTransaction answer echoes every request with its response; where that would exceed the
20 MiB a client accepts, the requests are left out (`localpachd.limits.fit`), so an applied
transaction is never reported as failed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import grpc
from google.protobuf import empty_pb2, message, timestamp_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.transaction import transaction_pb2 as tpb
from python_pachyderm.proto.v2.transaction import transaction_pb2_grpc as tgrpc

from localpachd import errors, limits
from localpachd.context import Apply, ServerContext, fill_unimplemented
from localpachd.store import Tx


@dataclass(frozen=True)
class TxnMethod:
    method: str
    request_type: type[message.Message]
    apply: Apply
    field: str | None


class _Rollback(Exception):
    def __init__(self, response: message.Message | None) -> None:
        super().__init__("dry run")
        self.response = response


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, TxnMethod] = {}

    def register(self, method: str, request_type: type[message.Message], apply: Apply,
                 field: str | None = None) -> None:
        self._methods[method] = TxnMethod(method, request_type, apply, field)

    def is_transactional(self, method: str) -> bool:
        return method in self._methods

    def _by_field(self, name: str) -> TxnMethod:
        for m in self._methods.values():
            if m.field == name:
                return m
        raise errors.Unimplemented(f"transaction request {name} is not supported by localpachd")

    def _ops(self, tx: Tx, txn: str) -> list[tuple[TxnMethod, message.Message]]:
        out = []
        for row in tx.q("SELECT method, request FROM txn_ops WHERE txn=? ORDER BY seq", (txn,)):
            m = self._methods[row["method"]]
            out.append((m, m.request_type.FromString(row["request"])))
        return out

    def _commit_set(self, tx: Tx, txn: str) -> str:
        row = tx.one("SELECT commit_set FROM transactions WHERE id=?", (txn,))
        if row is None:
            raise errors.NotFound(f"transaction {txn} not found")
        return str(row["commit_set"])

    def _run(self, ctx: ServerContext, tx: Tx, ops: list[tuple[TxnMethod, message.Message]],
             ) -> list[message.Message | None]:
        """Apply calls in order; a failure names the call as Pachyderm does and keeps its code."""
        out = []
        for i, (op, req) in enumerate(ops, 1):
            try:
                out.append(op.apply(ctx, tx, req))
            except errors.PachError as exc:
                raise type(exc)(f"error running request {i} of {len(ops)}: {exc.message}") from exc
        return out

    def record(self, ctx: ServerContext, txn: str, method: str, request: message.Message
               ) -> message.Message:  # fmt: skip
        """Dry-run the transaction plus this call (rolled back); if it succeeds, append it."""
        m = self._methods[method]
        with ctx.store.write() as tx:
            try:
                with tx.savepoint():
                    tx.use_commit_set(self._commit_set(tx, txn))
                    ops = [*self._ops(tx, txn), (m, request)]
                    raise _Rollback(self._run(ctx, tx, ops)[-1])
            except _Rollback as rb:
                response = rb.response
            seq = tx.one("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM txn_ops WHERE txn=?", (txn,))
            tx.x("INSERT INTO txn_ops VALUES(?,?,?,?,?)",
                 (txn, seq["s"] if seq else 1, method, request.SerializeToString(),
                  response.SerializeToString() if response is not None else b""))
        return response if response is not None else empty_pb2.Empty()

    def finish(self, ctx: ServerContext, txn: str) -> tpb.TransactionInfo:
        """Apply every recorded call in one store transaction. On failure nothing is applied
        and the transaction stays (as in Pachyderm): fix the cause and finish it, or delete it."""
        with ctx.store.write() as tx:
            info = self.info(tx, txn)
            tx.use_commit_set(self._commit_set(tx, txn))
            del info.responses[:]
            info.responses.extend(_response(r) for r in self._run(ctx, tx, self._ops(tx, txn)))
            _delete(tx, txn)
            return limits.fit(info)  # inside the write: if it cannot be answered, undo it all

    def batch(self, ctx: ServerContext, requests: list[tpb.TransactionRequest]
              ) -> tpb.TransactionInfo:  # fmt: skip
        info = tpb.TransactionInfo(transaction=tpb.Transaction(id=uuid.uuid4().hex))
        info.started.FromSeconds(int(time.time()))
        with ctx.store.write() as tx:
            ops = []
            for treq in requests:
                name = _first_set(treq)
                ops.append((self._by_field(name), getattr(treq, name)))
                info.requests.append(treq)
            info.responses.extend(_response(r) for r in self._run(ctx, tx, ops))
            return limits.fit(info)

    def info(self, tx: Tx, txn: str) -> tpb.TransactionInfo:
        row = tx.one("SELECT id, started FROM transactions WHERE id=?", (txn,))
        if row is None:
            raise errors.NotFound(f"transaction {txn} not found")
        ts = timestamp_pb2.Timestamp()
        ts.FromNanoseconds(int(row["started"] * 1e9))
        info = tpb.TransactionInfo(transaction=tpb.Transaction(id=txn), started=ts)
        for r in tx.q("SELECT method, request, response FROM txn_ops WHERE txn=? ORDER BY seq",
                      (txn,)):
            m = self._methods[r["method"]]
            treq = tpb.TransactionRequest()
            if m.field:
                getattr(treq, m.field).CopyFrom(m.request_type.FromString(r["request"]))
            info.requests.append(treq)
            resp = tpb.TransactionResponse()
            if m.method.endswith("/StartCommit") and r["response"]:
                resp.commit.CopyFrom(pfs_pb2.Commit.FromString(r["response"]))
            info.responses.append(resp)
        info.version = len(info.requests)
        return info


def _first_set(treq: tpb.TransactionRequest) -> str:
    for f, _ in treq.ListFields():
        return str(f.name)
    raise errors.InvalidArgument("empty transaction request")


def _response(resp: message.Message | None) -> tpb.TransactionResponse:
    out = tpb.TransactionResponse()
    if isinstance(resp, pfs_pb2.Commit):
        out.commit.CopyFrom(resp)
    return out


def _delete(tx: Tx, txn: str) -> None:
    tx.x("DELETE FROM txn_ops WHERE txn=?", (txn,))
    tx.x("DELETE FROM transactions WHERE id=?", (txn,))


class TransactionServicer(tgrpc.APIServicer):  # type: ignore[misc]
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        reg = ctx.transactions
        assert isinstance(reg, Registry)  # the server builds its context with this registry
        self.reg = reg

    def StartTransaction(
        self, request: tpb.StartTransactionRequest, context: grpc.ServicerContext
    ) -> tpb.Transaction:
        txn = uuid.uuid4().hex
        with self.ctx.store.write() as tx:
            # as Pachyderm: commits made by the transaction get the transaction's ID
            tx.x("INSERT INTO transactions VALUES(?,?,?)", (txn, time.time(), txn))
        return tpb.Transaction(id=txn)

    def InspectTransaction(
        self, request: tpb.InspectTransactionRequest, context: grpc.ServicerContext
    ) -> tpb.TransactionInfo:
        with self.ctx.store.read() as tx:
            return limits.fit(self.reg.info(tx, request.transaction.id))

    def ListTransaction(
        self, request: tpb.ListTransactionRequest, context: grpc.ServicerContext
    ) -> tpb.TransactionInfos:
        with self.ctx.store.read() as tx:
            ids = [r["id"] for r in tx.q("SELECT id FROM transactions ORDER BY started")]
            return limits.fit(tpb.TransactionInfos(
                transaction_info=[self.reg.info(tx, i) for i in ids]))

    def DeleteTransaction(
        self, request: tpb.DeleteTransactionRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.ctx.store.write() as tx:
            self.reg.info(tx, request.transaction.id)
            _delete(tx, request.transaction.id)
        return empty_pb2.Empty()

    def FinishTransaction(
        self, request: tpb.FinishTransactionRequest, context: grpc.ServicerContext
    ) -> tpb.TransactionInfo:
        return self.reg.finish(self.ctx, request.transaction.id)

    def BatchTransaction(
        self, request: tpb.BatchTransactionRequest, context: grpc.ServicerContext
    ) -> tpb.TransactionInfo:
        return self.reg.batch(self.ctx, list(request.requests))

    def DeleteAll(
        self, request: tpb.DeleteAllRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.ctx.store.write() as tx:
            tx.x("DELETE FROM txn_ops")
            tx.x("DELETE FROM transactions")
        return empty_pb2.Empty()


def register(server: grpc.Server, ctx: ServerContext) -> None:
    fill_unimplemented(TransactionServicer, "transaction_v2.API")
    tgrpc.add_APIServicer_to_server(TransactionServicer(ctx), server)
