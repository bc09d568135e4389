"""The read side of pfs_v2.API: GetFile, GetFileTAR, InspectFile, ListFile, WalkFile, GlobFile.

A mixin of `localpachd.pfs.servicer.PfsServicer` (which provides `self.store`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import wrappers_pb2
from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd import errors
from localpachd.globs import clean_glob, compile_glob
from localpachd.paths import clean_path, parent_dirs
from localpachd.pfs import files, transfer
from localpachd.pfs.convert import file_info, resolve_read
from localpachd.pfs.model import Commit
from localpachd.store import Store, Tx


def _paginate(entries: list[files.Entry], req: Any) -> list[files.Entry]:
    if req.reverse:
        entries = entries[::-1]
    if req.HasField("paginationMarker") and req.paginationMarker.path:
        marker = clean_path(req.paginationMarker.path)
        entries = [e for e in entries if (e.path < marker if req.reverse else e.path > marker)]
    return entries[: req.number] if req.number > 0 else entries


def _outermost(entries: list[files.Entry]) -> list[files.Entry]:
    """The entries that lie under no other matched directory (whose subtree brings them)."""
    dirs = {e.path for e in entries if e.is_dir}
    return [e for e in entries if not any(d in dirs for d in parent_dirs(e.path))]


class FileReads:
    store: Store

    def _file(self, tx: Tx, f: pfs_pb2.File) -> tuple[Commit, str, files.Entry]:
        c = resolve_read(tx, f.commit)
        path = clean_path(f.path)
        e = files.lookup(tx, c.cid, path)
        if e is None:
            raise errors.file_not_found(c.project, c.repo, c.id, path)
        return c, path, e

    def _selection(self, tx: Tx, f: pfs_pb2.File, tar: bool) -> tuple[Commit, list[files.Entry]]:
        """What GetFile/GetFileTAR send: a file, a directory's subtree, or (Pachyderm 2.x) every
        match of a glob path such as `/dir/*.csv`."""
        c = resolve_read(tx, f.commit)
        path = clean_path(f.path)
        e = files.lookup(tx, c.cid, path)
        tops = [e] if e is not None else []
        if e is not None and e.is_dir and not tar:
            raise errors.PachError(errors.MATCHED_NON_FILE)
        if e is None and any(ch in path for ch in "*?[{"):
            glob = compile_glob(clean_glob(path))
            tops = _outermost([x for x in files.walk(tx, c.cid, "/")[1:] if glob.matches(x.path)])
        if not tops:
            raise errors.file_not_found(c.project, c.repo, c.id, path)
        out: list[files.Entry] = []
        for t in tops:
            if not t.is_dir:
                out.append(t)
            elif tar:
                out.extend(x for x in files.walk(tx, c.cid, t.path) if x.path != "/")
            else:
                out.extend(files.files_under(tx, c.cid, t.path))
        return c, out

    def GetFile(
        self, req: pfs_pb2.GetFileRequest, context: grpc.ServicerContext
    ) -> Iterator[wrappers_pb2.BytesValue]:
        if req.URL:
            raise errors.Unimplemented("GetFile to a URL is not supported by localpachd")
        with self.store.read() as tx:
            _, entries = self._selection(tx, req.file, tar=False)
        if len(entries) != 1 or entries[0].is_dir:  # Pachyderm 2.x: one regular file only
            raise errors.PachError(errors.MATCHED_MULTIPLE if len(entries) > 1
                                   else errors.MATCHED_NON_FILE)
        for chunk in transfer.file_bytes(self.store.blobs, entries, req.offset):
            yield wrappers_pb2.BytesValue(value=chunk)

    def GetFileTAR(
        self, req: pfs_pb2.GetFileRequest, context: grpc.ServicerContext
    ) -> Iterator[wrappers_pb2.BytesValue]:
        with self.store.read() as tx:
            c, entries = self._selection(tx, req.file, tar=True)
        mtime = c.finished or c.started
        for chunk in transfer.tar_stream(self.store.blobs, entries, mtime):
            yield wrappers_pb2.BytesValue(value=chunk)

    def InspectFile(
        self, req: pfs_pb2.InspectFileRequest, context: grpc.ServicerContext
    ) -> pfs_pb2.FileInfo:
        with self.store.read() as tx:
            c, _, e = self._file(tx, req.file)
            return file_info(c, e)

    def ListFile(
        self, req: pfs_pb2.ListFileRequest, context: grpc.ServicerContext
    ) -> Iterator[pfs_pb2.FileInfo]:
        with self.store.read() as tx:
            c, path, e = self._file(tx, req.file)
            entries = files.children(tx, c.cid, path) if e.is_dir else [e]
            out = [file_info(c, x) for x in _paginate(entries, req)]
        yield from out

    def WalkFile(
        self, req: pfs_pb2.WalkFileRequest, context: grpc.ServicerContext
    ) -> Iterator[pfs_pb2.FileInfo]:
        with self.store.read() as tx:
            c, path, _ = self._file(tx, req.file)
            out = [file_info(c, x) for x in _paginate(files.walk(tx, c.cid, path), req)]
        yield from out

    def GlobFile(
        self, req: pfs_pb2.GlobFileRequest, context: grpc.ServicerContext
    ) -> Iterator[pfs_pb2.FileInfo]:
        pattern = clean_glob(req.pattern)
        glob = compile_glob(pattern)
        lo, hi = req.path_range.lower, req.path_range.upper
        with self.store.read() as tx:
            c = resolve_read(tx, req.commit)
            entries = files.walk(tx, c.cid, "/")
            out = [file_info(c, e) for e in entries if glob.matches(e.path)
                   and (e.path != "/" or pattern == "/")
                   and (not lo or e.path >= lo) and (not hi or e.path < hi)]
        yield from out
