"""Datum logs on disk and their reading for GetLogs.

The worker appends each datum's stdout and stderr (all attempts) to
`<data_dir>/pps_logs/<project>/<pipeline>/<job>/<datum id>.log`; the pps servicer reads them back
as Pachyderm `LogMessage`s, one per line, optionally following a job until it is terminal.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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
    return root(data_dir) / project / pipeline / job / f"{datum}.log"


def remove_pipeline(data_dir: Path, project: str, pipeline: str) -> None:
    shutil.rmtree(root(data_dir) / project / pipeline, ignore_errors=True)


def remove_job(data_dir: Path, project: str, pipeline: str, job: str) -> None:
    shutil.rmtree(root(data_dir) / project / pipeline / job, ignore_errors=True)


def job_files(data_dir: Path, project: str, pipeline: str, job: str) -> list[Path]:
    d = root(data_dir) / project / pipeline / job
    if not d.is_dir():
        return []
    return sorted(d.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name))


class Tail:
    """Reads complete lines of one log file, remembering how far it got (for follow)."""

    def __init__(self, path: Path, project: str, pipeline: str, job: str) -> None:
        self.path, self.project, self.pipeline, self.job = path, project, pipeline, job
        self.datum = path.stem
        self.offset = 0

    def read(self) -> Iterator[LogLine]:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return
        if size <= self.offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        ts = os.path.getmtime(self.path)
        for raw in data[: end + 1].splitlines():
            line = raw.decode("utf-8", errors="replace")
            yield LogLine(self.project, self.pipeline, self.job, self.datum, ts, line)
