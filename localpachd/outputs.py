"""Collect a datum's `/pfs/out` as Pachyderm's worker uploads it, bounded and link-safe.

Called by `localpachd.worker.run_datum` after a successful attempt; `ingest` (from
`localpachd.jobrun`) stores each file's content. What the datum left decides, as in Pachyderm 2.7
(`worker/datum`: regular files are uploaded, named pipes skipped, symbolic links copied):

- regular files are stored under their path; their names must pass Pachyderm's
  `ValidateFilename` (printable ASCII only, no glob characters) or the datum fails with its text;
- a symbolic link is resolved; its target must lie inside the datum's `/pfs` (the documented
  pattern is a link into `/pfs/<input>`). A file is copied; a directory is copied file by file
  (links inside it follow the same rule). A link out of `/pfs`, a dangling link, a loop (a
  directory that is one of its own parents) or a link to anything but a file or a directory
  fails the datum. Pachyderm would copy a link to the worker container's own files; here that
  would be the user's machine, so localpachd refuses it;
- named pipes are skipped with a note in the datum's log; sockets and devices fail the datum.

Everything is bounded (`Limits`): entries visited (directories reached twice through links count
twice), bytes stored, directory depth. The walk opens every directory and file relative to its
parent's descriptor without following links (`O_NOFOLLOW`, `O_NONBLOCK`), so a process the datum
left behind cannot swap a directory for a link, or a file for a FIFO, to make the server read
elsewhere or block.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

MAX_ENTRIES = 100_000
MAX_BYTES = 32 << 30  # 32 GiB
MAX_DEPTH = 64
MAX_LINKS = 40  # links followed to resolve one link, as Linux's MAXSYMLINKS

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PRINTABLE = re.compile(rb"[ -~]+")
_GLOB = re.compile(rb"[*?\[\]{}!()@+^]")  # Pachyderm's globRegex
UNREPRESENTABLE = (
    "cannot upload file produced by the user code because its name cannot be represented in PFS"
)



class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


Ingest = Callable[[Reader], tuple[str, int]]  # store a file's content: (content hash, size)


class OutputError(Exception):
    """What the datum left in /pfs/out cannot be stored; the message is the datum's reason."""


@dataclass(frozen=True)
class Limits:
    entries: int = MAX_ENTRIES
    bytes: int = MAX_BYTES
    depth: int = MAX_DEPTH


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class OutputFile:
    path: str  # "/model_C1_G2.pkl"
    hash: str
    size: int


@dataclass(frozen=True)
class Collected:
    files: tuple[OutputFile, ...]  # sorted by path
    notes: tuple[str, ...] = ()  # lines for the datum's log


def show(raw: bytes) -> str:
    """A path for a message: printable ASCII as is, every other byte as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)


def check_name(rel: bytes) -> None:
    """Pachyderm 2.7's ValidateFilename on an output path relative to /pfs/out."""
    if not _PRINTABLE.fullmatch(rel):
        raise OutputError(f"{UNREPRESENTABLE}: path ({show(rel)}) invalid: "
                          "only printable ASCII characters allowed")  # fmt: skip
    glob = _GLOB.search(rel)
    if glob:
        raise OutputError(f"{UNREPRESENTABLE}: path ({show(rel)}) invalid: "
                          f"globbing character ({glob.group().decode()}) not allowed in path")
    if any(seg in (b".", b"..") for seg in rel.split(b"/")):
        raise OutputError(f"{UNREPRESENTABLE}: path ({show(rel)}) invalid: "
                          "relative file paths are not allowed")  # fmt: skip


class _Budget:
    """A read-only view of a file that refuses to hand out more than `left` bytes."""

    def __init__(self, f: Reader, left: int, what: str) -> None:
        self.f, self.left, self.what = f, left, what

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        data = self.f.read(min(n, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise OutputError(self.what)
        return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISSOCK, "socket"), (stat.S_ISFIFO, "named pipe"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


@dataclass
class _Walk:
    pfs_real: str  # the datum's /pfs, links resolved: links may point anywhere below it
    ingest: Ingest
    limits: Limits
    cancelled: Callable[[], bool]
    entries: int = 0
    stored: int = 0  # bytes
    files: list[OutputFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def directory(self, fd: int, real: str, rel: bytes, depth: int,
                  parents: frozenset[tuple[int, int]]) -> None:  # fmt: skip
        """Every entry of the open directory `fd` (at `real`, output path `rel`)."""
        with os.scandir(fd) as it:
            for entry in it:
                self._count()
                name = entry.name
                child = rel + b"/" + os.fsencode(name)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    self.descend(os.open(name, _DIR_FLAGS, dir_fd=fd),
                                  os.path.join(real, name), child, depth + 1, parents)
                elif stat.S_ISREG(st.st_mode):
                    self._store(functools.partial(os.open, name, _FILE_FLAGS, dir_fd=fd), child)
                elif stat.S_ISLNK(st.st_mode):
                    self._link(fd, name, real, child, depth, parents)
                elif stat.S_ISFIFO(st.st_mode):
                    self.notes.append(f"skipped named pipe {show(child)} in /pfs/out "
                                      "(Pachyderm does not upload named pipes)")
                else:
                    raise OutputError(f"output {show(child)} is a {_kind(st.st_mode)}: only "
                                      "files, directories and links to them can be output")

    def _count(self) -> None:
        self.entries += 1
        if self.entries > self.limits.entries:
            raise OutputError(
                f"/pfs/out holds more than {self.limits.entries} entries (files, directories "
                "and links; a directory reached through links counts each time): "
                "localpachd's limit on one datum's output")
        if self.cancelled():
            raise OutputError("job was stopped")

    def descend(self, fd: int, real: str, rel: bytes, depth: int,
                 parents: frozenset[tuple[int, int]]) -> None:  # fmt: skip
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in parents:
                raise OutputError(
                    f"output {show(rel)} is a symbolic link loop: it leads to one of its own "
                    "parent directories; link to files or to other directories instead")
            if depth > self.limits.depth:
                raise OutputError(f"output {show(rel)} is more than {self.limits.depth} "
                                  "directories deep below /pfs/out: localpachd's limit")
            self.directory(fd, real, rel, depth, parents | {(st.st_dev, st.st_ino)})
        finally:
            os.close(fd)

    def _link(self, fd: int, name: str, real: str, rel: bytes, depth: int,
              parents: frozenset[tuple[int, int]]) -> None:  # fmt: skip
        target = show(os.fsencode(os.readlink(name, dir_fd=fd)))
        try:
            resolved = resolve(real, name)
        except FileNotFoundError:
            raise OutputError(f"output {show(rel)} is a dangling symbolic link (to {target}): "
                              "make it point to a file, or remove it") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise OutputError(f"output {show(rel)}: cannot follow its link to {target}: "
                                  f"{exc.strerror}") from None
            raise OutputError(f"output {show(rel)} is a symbolic link loop (to {target})") from None
        if resolved != self.pfs_real and not resolved.startswith(self.pfs_real + "/"):
            raise OutputError(
                f"output {show(rel)} is a symbolic link to {target}, outside the datum's /pfs: "
                "localpachd copies links into /pfs only (such as /pfs/<input>/file, "
                "Pachyderm's way to pass an input file on); write the file into /pfs/out")
        st = os.stat(resolved, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            self._store(functools.partial(os.open, resolved, _FILE_FLAGS), rel)
        elif stat.S_ISDIR(st.st_mode):
            self.descend(os.open(resolved, _DIR_FLAGS), resolved, rel, depth + 1, parents)
        else:
            raise OutputError(f"output {show(rel)} is a symbolic link to a "
                              f"{_kind(st.st_mode)} ({target}): only files can be output")

    def _store(self, opener: Callable[[], int], rel: bytes) -> None:
        check_name(rel.lstrip(b"/"))
        fd = opener()
        with open(fd, "rb", closefd=True) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # swapped since it was listed
                raise OutputError(f"output {show(rel)} changed into a {_kind(st.st_mode)}")
            left = self.limits.bytes - self.stored
            too_much = (f"/pfs/out holds more than {self.limits.bytes} bytes (files reached "
                        "through links count each time): localpachd's limit on one datum's output")
            if st.st_size > left:
                raise OutputError(too_much)
            digest, size = self.ingest(_Budget(f, left, too_much))
        self.stored += size
        self.files.append(OutputFile(rel.decode("ascii"), digest, size))


def resolve(real: str, name: str) -> str:
    """The path, without links, that the entry `name` of the directory `real` (a path without
    links) leads to; raises FileNotFoundError (dangling) or OSError ELOOP as the kernel would
    (at most MAX_LINKS links). Only components after `real` are looked at: os.path.realpath
    would lstat every component of the long scratch path again for every link."""
    path, todo, links = real, [name], 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            path = os.path.dirname(path)  # `path` has no links: its parent is its dirname
            continue
        step = os.path.join(path, part)
        st = os.lstat(step)
        if not stat.S_ISLNK(st.st_mode):
            path = step
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), step)
        target = os.readlink(step)
        if target.startswith("/"):
            path = "/"
        todo.extend(reversed(target.split("/")))
    return path


def collect(out_dir: str, pfs_root: str, ingest: Ingest, limits: Limits = DEFAULT_LIMITS,
            cancelled: Callable[[], bool] = lambda: False) -> Collected:  # fmt: skip
    """Store every file of `out_dir` (the datum's /pfs/out inside `pfs_root`) through `ingest`;
    raises OutputError, whose message is the datum's failure reason."""
    walk = _Walk(os.path.realpath(pfs_root), ingest, limits, cancelled)
    try:
        fd = os.open(out_dir, _DIR_FLAGS)
    except OSError as exc:
        raise OutputError(f"/pfs/out is no longer a directory: {exc.strerror}") from None
    try:
        walk.descend(fd, os.path.realpath(out_dir), b"", 0, frozenset())
    except OSError as exc:  # an entry vanished or changed while it was read, or a full disk
        where = f" ({show(os.fsencode(exc.filename))})" if isinstance(exc.filename, str) else ""
        raise OutputError(f"collecting /pfs/out failed{where}: {exc.strerror or exc}") from None
    files = tuple(sorted(walk.files, key=lambda o: o.path))
    return Collected(files, tuple(walk.notes))
