"""Temporary file sets and the small storage RPCs: CreateFileSet, AddFileSet, GetFileSet,
ComposeFileSet, RenewFileSet, ShardFileSet, PutCache/GetCache/ClearCache, CheckStorage.

Used by the pfs servicer. A file set is an ordered list of deletes and puts (the net effect of a
ModifyFile-like stream) kept in `pfs_filesets` until it expires (default 10 minutes, as
Pachyderm's default TTL); AddFileSet applies it to an open commit. File sets do not survive a
restart (Pachyderm's are temporary as well), which also keeps start-up blob collection simple.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd import errors
from localpachd.blobs import BlobRef, BlobStore
from localpachd.pfs import files, model
from localpachd.pfs.convert import resolve
from localpachd.pfs.files import Entry
from localpachd.pfs.session import ModifySession
from localpachd.store import Store, Tx

DEFAULT_TTL = 600.0
MAX_TTL = 1800.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS pfs_filesets(
    id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    hash TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0,
    datum TEXT NOT NULL DEFAULT '', PRIMARY KEY(id, seq));
CREATE TABLE IF NOT EXISTS pfs_fileset_ttl(id TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pfs_cache(
    key TEXT PRIMARY KEY, value BLOB NOT NULL, tag TEXT NOT NULL DEFAULT '');
DELETE FROM pfs_filesets;
DELETE FROM pfs_fileset_ttl;
"""


class _Target:
    """What `modify._handle` needs: a session and the previous content of a path (none here)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.session = ModifySession(blobs)

    def existing(self, path: str) -> Entry | None:
        return self.session.pending(path)[1]


def _ttl(seconds: int) -> float:
    return min(float(seconds), MAX_TTL) if seconds > 0 else DEFAULT_TTL


def _save(tx: Tx, rows: Iterable[tuple[str, str, str, int, str]], ttl: float) -> str:
    fid = uuid.uuid4().hex
    tx.conn.executemany("INSERT INTO pfs_filesets VALUES(?,?,?,?,?,?,?)",
                        [(fid, i, *r) for i, r in enumerate(rows)])
    tx.x("INSERT INTO pfs_fileset_ttl VALUES(?,?)", (fid, time.time() + ttl))
    return fid


def _rows(tx: Tx, fid: str) -> list[tuple[str, str, str, int, str]]:
    tx.x("DELETE FROM pfs_filesets WHERE id IN (SELECT id FROM pfs_fileset_ttl WHERE expires<?)",
         (time.time(),))
    tx.x("DELETE FROM pfs_fileset_ttl WHERE expires<?", (time.time(),))
    if tx.one("SELECT 1 FROM pfs_fileset_ttl WHERE id=?", (fid,)) is None:
        raise errors.NotFound(f"file set {fid} not found (it may have expired)")
    return [(r["kind"], r["path"], r["hash"], r["size"], r["datum"]) for r in tx.q(
        "SELECT kind, path, hash, size, datum FROM pfs_filesets WHERE id=? ORDER BY seq", (fid,))]


def create(ctx: Any, requests: Iterable[Any]) -> str:
    from localpachd.pfs.modify import _handle

    target = _Target(ctx.store.blobs)
    try:
        for req in requests:
            if req.WhichOneof("body") == "set_commit":
                raise errors.InvalidArgument("CreateFileSet takes no set_commit")
            _handle(ctx, target, req)
        deletes, puts = target.session.net_effect()
        rows = [("delete", p, "", 0, "") for p in deletes]
        rows += [("put", p, ref.hash, ref.size, datum) for p, (ref, datum) in puts.items()]
        with ctx.store.write() as tx:
            return _save(tx, rows, DEFAULT_TTL)
    finally:
        target.session.abort()


def add(tx: Tx, commit: model.Commit, fid: str) -> None:
    """Apply a file set to an open commit: its deletes, then its puts."""
    deletes: list[str] = []
    puts: dict[str, tuple[BlobRef, str]] = {}
    for kind, path, h, size, datum in _rows(tx, fid):
        if kind == "delete":
            deletes.append(path)
            for p in [p for p in puts if p == path or p.startswith(path.rstrip("/") + "/")]:
                del puts[p]
        else:
            puts[path] = (BlobRef(h, size), datum)
    files.apply_changes(tx, commit, deletes, puts)


def snapshot(tx: Tx, commit: model.Commit, ttl_seconds: int = 0) -> str:
    """GetFileSet: a file set holding a commit's whole tree."""
    rows = [("put", e.path, e.hash, e.size, e.datum) for e in files.tree(tx, commit.cid)]
    return _save(tx, rows, _ttl(ttl_seconds))


def compose(tx: Tx, fids: list[str], ttl_seconds: int) -> str:
    rows = [r for fid in fids for r in _rows(tx, fid)]
    return _save(tx, rows, _ttl(ttl_seconds))


def renew(tx: Tx, fid: str, ttl_seconds: int) -> None:
    _rows(tx, fid)
    tx.x("UPDATE pfs_fileset_ttl SET expires=? WHERE id=?", (time.time() + _ttl(ttl_seconds), fid))


def check_storage(blobs: BlobStore, verify: bool) -> int:
    """Count blobs; with `verify`, re-hash each one and fail on the first corrupt blob."""
    count = 0
    for blob in sorted(blobs.root.glob("??/*")):
        count += 1
        if verify:
            h = hashlib.sha256()
            with open(blob, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            if h.hexdigest() != blob.name:
                raise errors.Internal(f"blob {blob.name} is corrupt (content hash {h.hexdigest()})")
    return count


class FileSetMethods:
    """The file-set, cache and storage RPCs, a mixin of `PfsServicer`."""

    ctx: Any
    store: Store

    def CreateFileSet(
        self, request_iterator: Iterator[pfs_pb2.ModifyFileRequest], context: grpc.ServicerContext
    ) -> pfs_pb2.CreateFileSetResponse:
        return pfs_pb2.CreateFileSetResponse(
            file_set_id=create(self.ctx, request_iterator))

    def AddFileSet(
        self, req: pfs_pb2.AddFileSetRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            add(tx, resolve(tx, req.commit), req.file_set_id)
        return empty_pb2.Empty()

    def GetFileSet(
        self, req: pfs_pb2.GetFileSetRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.CreateFileSetResponse:
        with self.store.write() as tx:
            fid = snapshot(tx, resolve(tx, req.commit))
        return pfs_pb2.CreateFileSetResponse(file_set_id=fid)

    def ComposeFileSet(
        self, req: pfs_pb2.ComposeFileSetRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.CreateFileSetResponse:
        with self.store.write() as tx:
            fid = compose(tx, list(req.file_set_ids), req.ttl_seconds)
        return pfs_pb2.CreateFileSetResponse(file_set_id=fid)

    def RenewFileSet(
        self, req: pfs_pb2.RenewFileSetRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            renew(tx, req.file_set_id, req.ttl_seconds)
        return empty_pb2.Empty()

    def ShardFileSet(
        self, req: pfs_pb2.ShardFileSetRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.ShardFileSetResponse:
        with self.store.read() as tx:
            _rows(tx, req.file_set_id)  # exists?
        return pfs_pb2.ShardFileSetResponse(shards=[pfs_pb2.PathRange()])  # one shard: all

    def PutCache(
        self, req: pfs_pb2.PutCacheRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            tx.x("INSERT OR REPLACE INTO pfs_cache VALUES(?,?,?)",
                 (req.key, req.value.SerializeToString(), req.tag))
        return empty_pb2.Empty()

    def GetCache(
        self, req: pfs_pb2.GetCacheRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.GetCacheResponse:
        with self.store.read() as tx:
            row = tx.one("SELECT value FROM pfs_cache WHERE key=?", (req.key,))
        if row is None:
            raise errors.NotFound(f"cache key {req.key} not found")
        resp = pfs_pb2.GetCacheResponse()
        resp.value.ParseFromString(row["value"])
        return resp

    def ClearCache(
        self, req: pfs_pb2.ClearCacheRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.store.write() as tx:
            tx.x("DELETE FROM pfs_cache WHERE substr(tag, 1, ?) = ?",
                 (len(req.tag_prefix), req.tag_prefix))
        return empty_pb2.Empty()

    def CheckStorage(
        self, req: pfs_pb2.CheckStorageRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.CheckStorageResponse:
        count = check_storage(self.store.blobs, req.read_chunk_data)
        return pfs_pb2.CheckStorageResponse(chunk_object_count=count)

    def ListTask(self, req: Any, context: Any) -> Iterator[Any]:
        return iter(())  # localpachd runs no storage tasks (compaction, validation)
