"""The base run's cache: one folder per base tree hash, holding localpachd's state and results.

Used by `agent.preview.flow`. `<cache>/<tree>-v<N>/state/` is the data dir of the localpachd that
ran the base tree (copied after it stopped: SQLite and blobs, which localpachd reopens as after a
restart) and `result.json` its `RunResult`. An entry appears whole or not at all: it is written
in a temp folder beside it and renamed. Bump FORMAT when what is cached changes meaning.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.preview.run import RunResult

FORMAT = 1


@dataclass(frozen=True)
class Entry:
    path: Path

    @property
    def state(self) -> Path:
        return self.path / "state"

    def result(self) -> RunResult:
        return RunResult.from_json(json.loads((self.path / "result.json").read_text()))


def key(tree: str) -> str:
    return f"{tree}-v{FORMAT}"


def lookup(cache: Path, tree: str) -> Entry | None:
    entry = Entry(cache / key(tree))
    ok = (entry.path / "result.json").is_file() and entry.state.is_dir()
    return entry if ok else None


def store(cache: Path, tree: str, state: Path, result: RunResult) -> Entry:
    """Copy a stopped server's data dir and its results in; an entry already there (another
    job stored it meanwhile) wins and is returned."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=cache))
    shutil.copytree(state, tmp / "state", ignore=shutil.ignore_patterns("*.log", "scratch"))
    (tmp / "result.json").write_text(json.dumps(result.to_json(), sort_keys=True))
    final = cache / key(tree)
    try:
        os.rename(tmp, final)
    except OSError:  # already there
        shutil.rmtree(tmp, ignore_errors=True)
    return Entry(final)


def restore(entry: Entry, dest: Path) -> Path:
    """A private copy of the cached state for one head run (the cache is never written to)."""
    shutil.copytree(entry.state, dest)
    return dest
