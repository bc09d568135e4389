"""`file://` sources of put-file-from-URL: only under an allowed directory, never through a link.

Called by `localpachd.pfs.urls.fetch_url` (bounds: `localpachd.pfs.urlbounds`). A server that
reads its own disk for a client is a hole, so this is off unless the operator names directories
(`localpachd serve --url-allow-dir`).
The URL's path must lie lexically under one of them (`localpachd.safepath.safe_join` proves the
rest of the path has no `..`), and it is opened from the allowed directory one segment at a time
relative to its parent's descriptor with O_NOFOLLOW: a symbolic link anywhere below the allowed
directory is refused (never followed, so none leads out of it), as are FIFOs, devices and
sockets. `recursive` puts every regular file under a directory at `dst/<path below it>` (names
sorted, at most 64 levels); without it a directory is refused.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localpachd import errors
from localpachd.pfs.urlbounds import CHUNK, Budget, Sink, failed
from localpachd.safepath import UnsafePath, safe_join

MAX_DEPTH = 64
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks


def _refused(url: str, why: str) -> errors.PachError:
    return failed(url, why, errors.PermissionDenied)


def _allowed_root(url: str, path: str, allow: tuple[Path, ...]) -> tuple[Path, str]:
    """(the allowed directory, the path relative to it) for the URL's absolute `path`."""
    if not allow:
        raise _refused(url, "file:// URLs are off on this server: start it with "
                       "`localpachd serve --url-allow-dir DIR` to serve files under DIR")
    norm = path.rstrip("/") or "/"
    for root in allow:
        for spelling in {os.path.abspath(root), os.path.realpath(root)}:
            top = spelling.rstrip("/") or "/"
            if norm == top:
                return Path(os.path.realpath(root)), ""
            if norm.startswith(top.rstrip("/") + "/"):
                rel = norm[len(top.rstrip("/")) + 1:]
                try:
                    safe_join(Path(top), rel)
                except UnsafePath as exc:
                    raise _refused(url, str(exc)) from exc
                return Path(os.path.realpath(root)), rel
    dirs = ", ".join(str(d) for d in allow)
    raise _refused(url, f"{path} is not under an allowed directory ({dirs}; localpachd serve "
                   "--url-allow-dir)")


@contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_at(url: str, parent: int, name: str, flags: int, where: str) -> int:
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if _is_link(parent, name):
            raise _refused(url, f"{where} is a symbolic link: links are never followed") from exc
        kind = errors.NotFound if isinstance(exc, FileNotFoundError) else errors.FailedPrecondition
        raise failed(url, f"{where}: {exc.strerror}", kind) from exc


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode)
    except OSError:
        return False


def fetch_file(url: str, parts: urllib.parse.SplitResult, recursive: bool, budget: Budget,
               sink: Sink) -> None:
    if parts.netloc not in ("", "localhost"):
        raise _refused(url, f"file:// URLs name this server's files: host {parts.netloc!r} "
                       "must be empty or localhost")
    path = urllib.parse.unquote(parts.path)
    if "\x00" in path or ".." in path.split("/"):
        raise _refused(url, "a '..' segment or NUL byte in a file:// path is not allowed")
    root, rel = _allowed_root(url, os.path.normpath(path) if path else "/",
                              budget.options.allow_dirs)
    segments = [s for s in rel.split("/") if s not in ("", ".")]
    fd = os.open(root, DIR_FLAGS)
    where = str(root)
    for seg in segments[:-1]:
        where = f"{where}/{seg}"
        with _fd(fd):
            fd = _open_at(url, fd, seg, DIR_FLAGS, where)
    with _fd(fd):
        if not segments:
            _put_tree(url, os.dup(fd), where, "", recursive, budget, sink, 0)
            return
        where = f"{where}/{segments[-1]}"
        target = _open_at(url, fd, segments[-1], FILE_FLAGS, where)
    _put_entry(url, target, where, "", recursive, budget, sink, 0)


def _put_entry(url: str, fd: int, where: str, rel: str, recursive: bool, budget: Budget,
               sink: Sink, depth: int) -> None:
    """Put the open `fd` (closed here): a regular file, or a directory's files if recursive."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        _put_tree(url, fd, where, rel, recursive, budget, sink, depth)
    elif stat.S_ISREG(mode):
        with _fd(fd):
            os.set_blocking(fd, True)
            _put_regular(fd, rel, budget, sink)
    else:
        os.close(fd)
        raise _refused(url, f"{where} is not a regular file or directory")


def _put_regular(fd: int, rel: str, budget: Budget, sink: Sink) -> None:
    budget.new_file()
    budget.announce(os.fstat(fd).st_size)
    sink(rel, b"")
    while chunk := os.read(fd, CHUNK):
        budget.take(len(chunk))
        sink(rel, chunk)


def _put_tree(url: str, fd: int, where: str, rel: str, recursive: bool, budget: Budget,
              sink: Sink, depth: int) -> None:
    with _fd(fd):
        if not recursive:
            raise failed(url, f"{where} is a directory: put it with recursive=True",
                         errors.InvalidArgument)
        if depth >= MAX_DEPTH:
            raise failed(url, f"{where} is more than {MAX_DEPTH} levels deep",
                         errors.ResourceExhausted)
        for name in sorted(os.listdir(fd)):
            budget.check()
            child = _open_at(url, fd, name, FILE_FLAGS, f"{where}/{name}")
            _put_entry(url, child, f"{where}/{name}", f"{rel}/{name}", recursive, budget, sink,
                       depth + 1)
