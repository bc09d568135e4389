"""Datum logs on disk and their bounded reading for GetLogs.

The worker appends each datum's stdout and stderr (all attempts) to
`<data_dir>/pps_logs/<project>/<pipeline>/<job>/<datum id>.log` (paths built with `safe_join`);
the pps servicer (`localpachd.pps.logstream`) reads them back as Pachyderm `LogMessage`s, one
per line, optionally following a job until it is terminal. The worker's own lines about a job
(job started, each datum's start and finish with its duration, job finished) go to
`<job>/worker.jsonl`, one JSON object per line with its own time (`WorkerLine`); as in
Pachyderm 2.7 GetLogs sends the job's lines as `master` lines and the datums' as non-master,
non-user lines.

Reading is streamed: a file is read CHUNK bytes at a time and at most MAX_LINE bytes of one line
are kept, so memory stays bounded whatever the log's size. A longer line is cut there and ends
with a marker saying how long it was (or, for a line still being written, that it was cut).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from localpachd.safepath import safe_join

WORKER_LOG = "worker.jsonl"  # not `*.log`: never taken for a datum's log by `job_files`
WORKER_STEM = Path(WORKER_LOG).stem  # `Tail.datum` of a worker log (no datum id looks so)
MAX_LINE = 1 << 20  # bytes of one line sent; gRPC messages must stay far below 20 MiB
CHUNK = 1 << 16


@dataclass(frozen=True)
class LogLine:
    project: str
    pipeline: str
    job: str
    datum: str
    ts: float
    message: str


def root(data_dir: Path) -> Path:
    return data_dir / "pps_logs"


def datum_log(data_dir: Path, project: str, pipeline: str, job: str, datum: str) -> Path:
    return safe_join(root(data_dir), project, pipeline, job, f"{datum}.log")


def append(path: Path, line: str) -> None:
    """Append one line to a datum's log. A log whose directory is gone belongs to a pipeline or
    job deleted meanwhile (its datum was being killed): the line is dropped, never re-creating
    the directory the delete removed."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{line}\n")
    except FileNotFoundError:
        pass


def worker_log(data_dir: Path, project: str, pipeline: str, job: str) -> Path:
    return safe_join(root(data_dir), project, pipeline, job, WORKER_LOG)


def append_worker(path: Path, datum: str, message: str) -> None:
    """One worker line about the job (`datum` empty) or one of its datums, timed now."""
    append(path, json.dumps({"ts": time.time(), "datum": datum, "message": message}))


@dataclass(frozen=True)
class WorkerLine:
    ts: float
    datum: str
    message: str


def worker_line(text: str) -> WorkerLine | None:
    """A line of `worker.jsonl` read back (None: not one the worker wrote whole)."""
    try:
        rec = json.loads(text)
        return WorkerLine(float(rec["ts"]), str(rec["datum"]), str(rec["message"]))
    except (ValueError, KeyError, TypeError):
        return None


def remove_pipeline(data_dir: Path, project: str, pipeline: str) -> None:
    shutil.rmtree(safe_join(root(data_dir), project, pipeline), ignore_errors=True)


def remove_job(data_dir: Path, project: str, pipeline: str, job: str) -> None:
    shutil.rmtree(safe_join(root(data_dir), project, pipeline, job), ignore_errors=True)


def job_files(data_dir: Path, project: str, pipeline: str, job: str) -> list[Path]:
    d = safe_join(root(data_dir), project, pipeline, job)
    if not d.is_dir():
        return []
    return sorted(d.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name))


@dataclass(frozen=True)
class RawLine:
    head: bytes  # the line's first MAX_LINE bytes, without its newline
    length: int  # the line's length in bytes (as far as it was read), without its newline
    end: int  # file offset just after it
    complete: bool  # it ended with a newline
    shown: bool = True  # False: the rest of a line already sent cut, only consumed


def scan(f: BinaryIO, pos: int, end: int, final: bool, skipping: bool) -> Iterator[RawLine]:
    """The lines of `f` between offsets `pos` and `end`, holding at most MAX_LINE bytes of one.

    A last line without its newline is yielded only if `final` (the writer is done) or if it
    is already longer than MAX_LINE: it is sent cut, and the next call (`skipping`) consumes
    the rest of it up to its newline without showing it."""
    f.seek(pos)
    head, length = bytearray(), 0
    while pos < end and (chunk := f.read(min(CHUNK, end - pos))):
        start = 0
        while start < len(chunk):
            nl = chunk.find(b"\n", start)
            stop = len(chunk) if nl < 0 else nl
            room = MAX_LINE - len(head)
            if not skipping and room > 0:
                head += chunk[start : start + min(stop - start, room)]
            length += stop - start
            if nl < 0:
                break
            yield RawLine(bytes(head), length, pos + nl + 1, True, shown=not skipping)
            head, length, skipping = bytearray(), 0, False
            start = nl + 1
        pos += len(chunk)
    if skipping:
        if length:
            yield RawLine(b"", length, pos, False, shown=False)
    elif length > MAX_LINE or (final and length):
        yield RawLine(bytes(head), length, pos, False)


def message(raw: RawLine) -> str:
    text = raw.head.decode("utf-8", errors="replace")
    if raw.length <= MAX_LINE:
        return text
    size = f"{raw.length} bytes" if raw.complete else f"{raw.length} bytes so far"
    return f"{text} [localpachd: line truncated: {size}, the first {MAX_LINE} kept]"


class Tail:
    """Reads the lines of one log file, remembering how far it got (for follow)."""

    def __init__(self, path: Path, project: str, pipeline: str, job: str) -> None:
        self.path, self.project, self.pipeline, self.job = path, project, pipeline, job
        self.datum = path.stem
        self.offset = 0
        self.skipping = False  # inside a line that was already sent cut

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _scan(self, final: bool, end: int | None) -> Iterator[RawLine]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed by the with, also when abandoned)
        except OSError:
            return
        with f:
            stop = os.fstat(f.fileno()).st_size if end is None else end
            if stop > self.offset:
                yield from scan(f, self.offset, stop, final, self.skipping)

    def count(self, final: bool, end: int) -> int:
        """How many lines `read(final, end)` would yield now (nothing is consumed)."""
        return sum(1 for raw in self._scan(final, end) if raw.shown)

    def read(self, final: bool = False, end: int | None = None) -> Iterator[LogLine]:
        """The lines from where the last read stopped up to `end` (default: the file's size);
        with `final`, also a last line that has no newline."""
        try:
            ts = os.path.getmtime(self.path)
        except OSError:
            return
        for raw in self._scan(final, end):
            self.offset, self.skipping = raw.end, not raw.complete
            if raw.shown:
                yield LogLine(self.project, self.pipeline, self.job, self.datum, ts, message(raw))
