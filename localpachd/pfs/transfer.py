"""Streaming file contents out of PFS: GetFile bytes and GetFileTAR archives, in bounded memory.

Used by the pfs servicer. Both generators always yield at least one message (python-pachyderm
reads the first message as soon as the call starts).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator

from localpachd.blobs import BlobStore
from localpachd.pfs.files import Entry

# Bytes per response message. Small on purpose: python-pachyderm's PFSFile deletes each read
# from the front of one bytearray, so big messages make reads quadratic on the client
# (measured: 128 KiB gets twice the MiB/s of 2 MiB; 16 KiB quadruples tarfile's small reads).
MSG = 128 * 1024
TAR_MSG = 16 * 1024


def file_bytes(blobs: BlobStore, entries: Iterable[Entry], offset: int = 0) -> Iterator[bytes]:
    """The concatenated content of `entries` (files only), skipping `offset` bytes."""
    sent = False
    for e in entries:
        if e.is_dir:
            continue
        if offset >= e.size and e.size:
            offset -= e.size
            continue
        for chunk in blobs.read_chunks(e.hash, offset, MSG):
            sent = True
            yield chunk
        offset = 0
    if not sent:
        yield b""


def tar_stream(blobs: BlobStore, entries: Iterable[Entry], mtime: float) -> Iterator[bytes]:
    """A ustar/PAX archive of `entries` (absolute paths, as Pachyderm writes them)."""
    buf = bytearray()
    for e in entries:
        info = tarfile.TarInfo(e.display if e.is_dir else e.path)
        info.mtime = int(mtime)
        if e.is_dir:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info.size, info.mode = e.size, 0o644
        buf += info.tobuf(format=tarfile.PAX_FORMAT)
        if len(buf) >= TAR_MSG:
            yield bytes(buf)
            buf.clear()
        if e.is_dir:
            continue
        for chunk in blobs.read_chunks(e.hash, 0, TAR_MSG):
            buf += chunk
            if len(buf) >= TAR_MSG:
                yield bytes(buf)
                buf.clear()
        pad = (-e.size) % tarfile.BLOCKSIZE
        buf += b"\0" * pad
    buf += b"\0" * (tarfile.BLOCKSIZE * 2)
    yield bytes(buf)
