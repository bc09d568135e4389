"""Reads spec files from a checkout without ever leaving it: regular files only, links never
followed, at most `MAX_SPEC_BYTES` read from any file.

Used by `agent.specs` (to load specs/) and by `pachsync validate`'s snippets, so both read the
same bytes the same way. A pull request controls everything under the checkout: a spec may be a
symbolic link to a token file (whose text would then be printed in a snippet and logged by the
agent), to /dev/zero, or a FIFO that blocks forever. So every directory below the trusted
anchor and every file is opened relative to its parent's descriptor with `O_NOFOLLOW` (a link,
even one resolving inside the tree, is refused: git stores it as a link, the file name would
not be the pipeline it defines, and where it points depends on the checkout's location), files
with `O_NONBLOCK` too, and `fstat` of the open descriptor decides: what was checked is what is
read, so a race cannot swap a FIFO or a link in between.

`agent.bump` rewrites specs through the same descriptors: `spec_files` walks a folder refusing
links and special files, and `CheckoutDir.replace_text` writes a new file beside the old one
(`O_EXCL | O_NOFOLLOW`) and renames it over it, so a link swapped in after reading is replaced,
never written through.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_SPEC_BYTES = 1 << 20  # 1 MiB per file: real specs are a few KB
_CHUNK = 1 << 16
# Line breaks as YAML counts them (PyYAML's Reader), so a snippet shows the line an error names.
LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
LINK_HINT = (
    "commit the file itself, not a symbolic link: pachsync reads specs only from regular "
    "files inside the checkout"
)


class Unreadable(Exception):
    """`where` (a path relative to the checkout) cannot be read (or rewritten) as a spec; `line`
    is 1-based, 0 for the whole file."""

    def __init__(self, where: str, message: str, hint: str, line: int = 0) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message, self.hint, self.line = where, message, hint, line


@dataclass(frozen=True)
class Entry:
    """One name in a directory and what it is ("file", "directory", "link", "FIFO", ...)."""

    name: str
    kind: str


def kind_of(mode: int) -> str:
    """A file type in words, for error messages."""
    kinds = [
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


class CheckoutDir:
    """An open directory inside the checkout; `where` is its path for messages."""

    def __init__(self, fd: int, where: str) -> None:
        self.fd, self.where = fd, where

    def __enter__(self) -> CheckoutDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def path_of(self, name: str) -> str:
        """How `name` in this directory is shown in messages (relative to the checkout)."""
        if not self.where:
            return name
        return f"{self.where}{name}" if self.where.endswith("/") else f"{self.where}/{name}"

    def entries(self) -> list[Entry]:
        """Every name in the directory, sorted, with its kind (links are not followed)."""
        found = []
        try:
            with os.scandir(self.fd) as scan:
                for item in scan:
                    try:
                        mode = item.stat(follow_symlinks=False).st_mode
                    except FileNotFoundError:  # removed while we listed
                        continue
                    found.append(Entry(item.name, kind_of(mode)))
        except OSError as exc:
            raise _cannot(self.where or ".", "be listed", exc) from None
        return sorted(found, key=lambda e: e.name)

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _cannot(self.path_of(name), "be read", exc) from None

    def _refuse(self, name: str, kind: str, wanted: str) -> Unreadable:
        where = self.path_of(name)
        if kind == "link":
            try:
                target = os.readlink(name, dir_fd=self.fd)
            except OSError:
                target = "?"
            return Unreadable(where, f"is a symbolic link (to {target[:200]!r}), not a {wanted}",
                              LINK_HINT)
        return Unreadable(where, f"is a {kind}, not a {wanted}",
                          f"replace it with a {wanted} or remove it from the checkout")

    def subdir(self, name: str) -> CheckoutDir | None:
        """The child directory `name`, None if it does not exist; a link is refused."""
        info = self._lstat(name)
        if info is None:
            return None
        if not stat.S_ISDIR(info.st_mode):
            raise self._refuse(name, kind_of(info.st_mode), "directory")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:  # swapped for a link or a file since the lstat
            raise self._refuse(name, _kind_after(exc), "directory") from None
        return CheckoutDir(fd, self.path_of(name))

    def read_bytes(self, name: str, cap: int = MAX_SPEC_BYTES) -> bytes | None:
        """The content of the regular file `name` (None if it does not exist); at most `cap`
        bytes are accepted and at most cap + 1 are ever read."""
        info = self._lstat(name)
        if info is None:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse(name, kind_of(info.st_mode), "regular file")
        return _read_capped(self.fd, name, self.path_of(name), cap)

    def read_text(self, name: str, cap: int = MAX_SPEC_BYTES) -> str | None:
        """`read_bytes` decoded as UTF-8; bad bytes are an `Unreadable` at their line."""
        data = self.read_bytes(name, cap)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise Unreadable(self.path_of(name), f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                             "save the file as UTF-8", line) from None

    def replace_text(self, name: str, text: str) -> None:
        """Replace the regular file `name` by `text` (UTF-8, line endings as given) with the
        same permissions: written to a new file in this directory, then renamed over `name`.
        A link or special file at `name` is refused; one swapped in later is replaced."""
        info = self._lstat(name)
        if info is None:
            raise Unreadable(self.path_of(name), "disappeared before it could be rewritten",
                             "run again on a clean checkout")
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse(name, kind_of(info.st_mode), "regular file")
        temp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temp, _NEW_FILE_FLAGS, 0o600, dir_fd=self.fd)
            try:
                os.fchmod(fd, stat.S_IMODE(info.st_mode))
                _write_all(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            _unlink_quietly(temp, self.fd)
            raise _cannot(self.path_of(name), "be rewritten", exc) from None
        except BaseException:
            _unlink_quietly(temp, self.fd)
            raise


def spec_files(folder: CheckoutDir, suffixes: Sequence[str]) -> list[tuple[str, ...]]:
    """Every regular file below `folder` whose name ends in one of `suffixes`, as path parts
    relative to it, sorted. A link anywhere below (to a file or a folder), or a special file
    with such a name, is an `Unreadable`: what is rewritten must be the file in the tree."""
    found: list[tuple[str, ...]] = []
    for entry in folder.entries():
        if entry.kind == "directory":
            child = folder.subdir(entry.name)
            if child is not None:
                with child:
                    found += [(entry.name, *rest) for rest in spec_files(child, suffixes)]
        elif entry.kind == "link" or (entry.kind != "file" and entry.name.endswith(
                tuple(suffixes))):
            wanted = "regular file or folder" if entry.kind == "link" else "regular file"
            raise folder._refuse(entry.name, entry.kind, wanted)
        elif entry.name.endswith(tuple(suffixes)):
            found.append((entry.name,))
    return sorted(found)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _cannot(where: str, what: str, exc: OSError) -> Unreadable:
    return Unreadable(where, f"cannot {what}: {exc.strerror or exc}",
                      "check that the checkout is readable by the user running pachsync")


def _kind_after(exc: OSError) -> str:
    return "link" if exc.errno == errno.ELOOP else "file" if exc.errno == errno.ENOTDIR else (
        f"path that cannot be opened ({exc.strerror})"
    )


def _read_capped(dir_fd: int, name: str, where: str, cap: int) -> bytes:
    """Opens without following a link and without blocking, then trusts only fstat."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        kind = "link" if exc.errno == errno.ELOOP else "socket or device" if exc.errno in (
            errno.ENXIO, errno.ENODEV) else None
        message = f"is a {kind}, not a regular file" if kind else f"cannot be read: {exc.strerror}"
        raise Unreadable(where, message, LINK_HINT if kind == "link" else
                         "check the file's permissions and that it is a regular file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Unreadable(where, f"is a {kind_of(mode)}, not a regular file",
                             "replace it with a regular file")
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(_CHUNK, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _cannot(where, "be read", exc) from None
    finally:
        os.close(fd)
    if size > cap:
        raise Unreadable(where, f"is larger than {_mib(cap)}, the limit for one spec file",
                         "specs are a few KB: move large data into a repo and read it from /pfs")
    return b"".join(chunks)


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size} bytes"


def open_tree(anchor: str, parts: Sequence[str], shown: str) -> CheckoutDir:
    """Opens `anchor` (trusted: the checkout, links allowed) then each of `parts` below it
    without following links. `shown` is how the anchor is named in messages ("" for none).
    Raises `Unreadable` (a link or a non-directory on the way) or FileNotFoundError."""
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    current = CheckoutDir(fd, shown)
    try:
        for part in parts:
            child = current.subdir(part)
            if child is None:
                raise FileNotFoundError(errno.ENOENT, "no such directory", current.path_of(part))
            current.close()
            current = child
    except BaseException:
        current.close()
        raise
    return current


def read_line(root: str, file: str, line: int) -> str | None:
    """Line `line` (1-based) of `file` (relative to `root`), read through the same checks as
    the specs themselves: None when it cannot be read safely or is not inside `root`."""
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts or line < 1:
        return None
    try:
        with open_tree(root, path.parts[:-1], "") as folder:
            text = folder.read_text(path.name)
    except (OSError, Unreadable):
        return None
    lines = LINE_BREAK.split(text) if text is not None else []
    return lines[line - 1] if line <= len(lines) else None
