"""ModifyFile: apply one client stream of set_commit / add_file / delete_file / copy_file.

Called by the pfs servicer. File contents are streamed to blobs as chunks arrive (bounded memory);
the metadata changes of the whole stream are applied in ONE store transaction at the end, so a
stream that breaks (client gone, server killed) leaves no trace. Writing to a branch whose head is
finished (or that does not exist yet) opens a commit on it and finishes it, as Pachyderm does.
Concurrent streams serialise at that transaction: an append lands on the file's content at that
moment (`session.ModifySession.apply`), never on a copy read when the stream started. An
add_file with a URL source streams the URL's content through the same session
(`localpachd.pfs.urls`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from localpachd import errors
from localpachd.blobs import BlobRef
from localpachd.paths import clean_path
from localpachd.pfs import files, model
from localpachd.pfs.convert import commit_ref, resolve
from localpachd.pfs.files import Entry
from localpachd.pfs.model import BranchKey, Commit
from localpachd.pfs.session import INLINE_REBASE, ModifySession, Stale
from localpachd.pfs.urls import Interrupt, fetch_url
from localpachd.store import Tx

OPTIMISTIC_TRIES = 3  # re-bases of large appends outside the lock before one inside it


class Writable(Protocol):
    """Where `_handle` puts a stream's operations: a ModifyFile target or a new file set."""

    session: ModifySession

    def existing(self, path: str) -> Entry | None: ...


class _Target:
    """One set_commit of the stream and the session of operations aimed at it."""

    def __init__(self, ctx: Any, commit_msg: Any) -> None:
        self.ctx = ctx
        self.msg = commit_msg
        self.session = ModifySession(ctx.store.blobs)
        with ctx.store.read() as tx:
            self.base_cid = self._base(tx)

    def _base(self, tx: Tx) -> int | None:
        """The commit whose tree the writes start from (validated now for early errors)."""
        project, repo, branch, cid = commit_ref(self.msg)
        model.require_repo(tx, project, repo)
        if cid:
            c = resolve(tx, self.msg)
            model.require_open(c)
            return c.cid
        head = model.branch_head(tx, BranchKey(project, repo, branch))
        return head.cid if head is not None else None

    def existing(self, path: str) -> Entry | None:
        known, entry = self.session.pending(path)
        if known or self.base_cid is None:
            return entry
        with self.ctx.store.read() as tx:
            return files.lookup(tx, self.base_cid, path)

    def commit_for_apply(self, tx: Tx) -> tuple[Commit, bool]:
        project, repo, branch, cid = commit_ref(self.msg)
        if cid:
            c = resolve(tx, self.msg)
            model.require_open(c)
            return c, False
        head = model.branch_head(tx, BranchKey(project, repo, branch))
        if head is not None and not head.is_finished:
            return head, False
        return model.start_commit(tx, project, repo, branch), True


def _copy(ctx: Any, target: Writable, req: Any) -> None:
    dst = clean_path(req.dst)
    src_path = clean_path(req.src.path)
    with ctx.store.read() as tx:
        src = resolve(tx, req.src.commit)
        entry = files.lookup(tx, src.cid, src_path)
        if entry is None:
            raise errors.file_not_found(src.project, src.repo, src.id, src_path)
        pairs = ([(dst, entry)] if not entry.is_dir else
                 [(dst.rstrip("/") + f.path[len(src_path.rstrip("/")):], f)
                  for f in files.files_under(tx, src.cid, src_path)])
    for path, f in pairs:
        if req.append:
            target.session.append_blob(path, BlobRef(f.hash, f.size), req.datum,
                                       target.existing(path))
        else:
            target.session.put(path, BlobRef(f.hash, f.size), req.datum or f.datum)


def _write(target: Writable, path: str, data: bytes, datum: str) -> None:
    """Append `data` to `path` in the stream (a first write appends to the file's content)."""
    existing = None if target.session.current(path) else target.existing(path)
    target.session.add(path, data, datum, existing)


def _put_url(ctx: Any, target: Writable, af: Any, interrupt: Interrupt) -> None:
    """An add_file with a URL source: streamed through the session as a raw put would be."""
    dst = clean_path(af.path)

    def sink(rel: str, chunk: bytes) -> None:
        path = clean_path(dst + rel) if rel else dst
        if path == "/":
            raise errors.InvalidArgument("cannot write a file at the repo root path /")
        _write(target, path, chunk, af.datum)

    fetch_url(af.url.URL, af.url.recursive, ctx.config.urls, sink,
              lambda: interrupt.ended or ctx.stopping.is_set(), interrupt)


def _handle(ctx: Any, target: Writable, req: Any, interrupt: Interrupt | None = None) -> None:
    which = req.WhichOneof("body")
    if which == "add_file":
        af = req.add_file
        if af.WhichOneof("source") == "url":
            _put_url(ctx, target, af, interrupt or Interrupt())
            return
        path = clean_path(af.path)
        if path == "/":
            raise errors.InvalidArgument("cannot write a file at the repo root path /")
        _write(target, path, af.raw.value, af.datum)
    elif which == "delete_file":
        target.session.delete(clean_path(req.delete_file.path))
    elif which == "copy_file":
        _copy(ctx, target, req.copy_file)


def run_modify(ctx: Any, requests: Iterable[Any], alive: Callable[[], bool] = lambda: True,
               interrupt: Interrupt | None = None) -> None:
    """Apply a ModifyFile stream. `alive` is the RPC's `is_active` after a short grace: gRPC
    ends the request iterator quietly when the client cancels, and a cancelled upload must leave
    no trace. `interrupt` is fired when the RPC ends: it cuts a URL source's fetch short."""
    targets: list[_Target] = []
    try:
        for req in requests:
            if req.WhichOneof("body") == "set_commit":
                targets.append(_Target(ctx, req.set_commit))
            elif not targets:
                raise errors.InvalidArgument("ModifyFile: the first message must be set_commit")
            else:
                _handle(ctx, targets[-1], req, interrupt)
        if not alive():
            raise errors.Aborted("ModifyFile was cancelled by the client: nothing was written")
        for t in targets:
            t.session.flush()
        _apply(ctx, targets)
    finally:
        for t in targets:
            t.session.abort()


def _apply(ctx: Any, targets: list[_Target]) -> None:
    """Apply every target in one store transaction. A large append whose file another stream
    changed meanwhile is re-based outside the write lock and the transaction retried; the last
    try re-bases whatever it must inside the lock, so the stream always lands."""
    for attempt in range(OPTIMISTIC_TRIES + 1):
        inline = INLINE_REBASE if attempt < OPTIMISTIC_TRIES else sys.maxsize
        try:
            with ctx.store.write() as tx:
                for t in targets:
                    commit, opened = t.commit_for_apply(tx)
                    t.session.apply(tx, commit, inline)
                    if opened:
                        model.finish_commit(tx, model.get_commit(tx, commit.cid))
            return
        except Stale as stale:
            stale.rebase()
