"""`stages.train` and `stages.evaluate` under a batching worker: one real process works through
every datum a real worker endpoint (localpachd.workerapi.SlotEndpoint, python-pachyderm's own
`batch_datum` loop on the other side) hands it, re-reading the same /pfs paths for each; a bad
datum fails alone (its error, naming the file, goes to the worker) and the rest are
byte-identical to one-datum runs; without PPS_WORKER_GRPC_PORT, neither `--help` nor a datum
loads grpc.

The test plays the worker: before answering each NextDatum it collects /pfs/out of the datum
just processed, empties the tree and lays the next datum out at the same paths.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.wait import wait_for

from stages import evaluate, train

workerapi = pytest.importorskip("localpachd.workerapi")

ROOT = Path(__file__).resolve().parents[2]
IRIS = (ROOT / "data" / "iris.csv").read_text().splitlines()
TRAIN_ROWS, TEST_ROWS = IRIS[:80], IRIS[80:100]

Layout = Callable[[Path, str], None]  # lays one datum (given by its value) out under /pfs


@dataclass
class Slot:
    """The worker's side of one slot: lays out each datum, records each datum's outcome."""

    pfs: Path
    datums: list[str]
    layout: Layout
    outputs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    current: str | None = None

    def next_datum(self, error: str) -> Mapping[str, str]:
        self.calls += 1
        if self.current is not None:
            out = self.pfs / "out"
            self.outputs[self.current] = {p.name: p.read_bytes() for p in out.rglob("*")
                                          if p.is_file()}
            if error:
                self.errors[self.current] = error
        if not self.datums:
            self.current = None
            self.done.set()
            raise workerapi.EndOfBatch()
        self.current = self.datums.pop(0)
        for child in self.pfs.iterdir():
            shutil.rmtree(child)
        (self.pfs / "out").mkdir()
        self.layout(self.pfs, self.current)
        return {"PACH_DATUM_ID": f"datum-{self.calls}"}


def _run_batch(slot: Slot, module: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Starts the stage once under the slot's endpoint; returns it after the batch ended."""
    token = secrets.token_hex(16)
    endpoint = workerapi.SlotEndpoint(slot.next_datum, token, name="test-slot")
    port = endpoint.start()
    env = {**os.environ, "PPS_WORKER_GRPC_PORT": str(port), "LOCALPACHD_WORKER_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: slot.done.is_set() or proc.poll() is not None, "the batch to end")
    finally:
        endpoint.close()  # answers the held NextDatum CANCELLED: the stage exits cleanly
        stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _train_layout(pfs: Path, datum: str) -> None:
    """A model datum: train.csv, one C file and one gamma file whose names differ per datum."""
    c, gamma = datum.split("/")
    _write(pfs / "split" / "train.csv", "\n".join(TRAIN_ROWS) + "\n")
    _write(pfs / "c" / "c_parameters.txt" / c, c + "\n")
    _write(pfs / "gamma" / "gamma_parameters.txt" / gamma, gamma + "\n")


TRAIN_ARGV = ["--train", "{pfs}/split/train.csv", "--c", "{pfs}/c", "--gamma", "{pfs}/gamma",
              "--output", "{pfs}/out", "--kernel", "rbf"]


def _argv(template: list[str], pfs: Path) -> list[str]:
    return [a.format(pfs=pfs) for a in template]


def _one_datum(main: Callable[[list[str]], int], layout: Layout, template: list[str],
               datum: str, tmp: Path) -> dict[str, bytes]:
    """What the stage writes for `datum` when run the ordinary way (one datum, in-process)."""
    pfs = tmp / "single" / datum.replace("/", "_")
    (pfs / "out").mkdir(parents=True)
    layout(pfs, datum)
    assert main(_argv(template, pfs)) == 0
    return {p.name: p.read_bytes() for p in (pfs / "out").rglob("*") if p.is_file()}


GOOD = ["0.5/0.25", "2.0/0.001", "32768.0/4.0", "0.031/1.0"]  # C/gamma of good datums


@pytest.mark.parametrize("where,bad,problem", [
    (0, "abc/0.25", "C is not a number"),  # the first datum
    (2, "0.5/-1", "gamma must be a positive finite number"),  # one in the middle
    (4, "8.0/1e999", "gamma must be a positive finite number"),  # the last: reported at the end
])
def test_train_runs_every_datum_in_one_process_and_fails_only_the_bad_one(
        tmp_path: Path, where: int, bad: str, problem: str) -> None:
    datums = [*GOOD[:where], bad, *GOOD[where:]]
    pfs = tmp_path / "pfs"
    pfs.mkdir()
    slot = Slot(pfs, list(datums), _train_layout)
    done = _run_batch(slot, "stages.train", _argv(TRAIN_ARGV, pfs))
    assert done.returncode == 0, done.stderr
    assert slot.calls == len(datums) + 1  # one NextDatum per datum, and the one that ends it
    assert set(slot.errors) == {bad}
    assert "StageError" in slot.errors[bad] and problem in slot.errors[bad]
    assert f"stages.train: error: {pfs}/" in done.stderr and problem in done.stderr
    assert slot.outputs[bad] == {}
    for datum in GOOD:
        expected = _one_datum(train.main, _train_layout, TRAIN_ARGV, datum, tmp_path)
        assert slot.outputs[datum] == expected, datum
        assert list(expected) == [train.model_name(*(float(v) for v in datum.split("/")))]


def _models(tmp: Path) -> dict[str, bytes]:
    """Three real models (name -> pickle bytes), trained the ordinary way."""
    out: dict[str, bytes] = {}
    for datum in ("0.5/0.25", "2.0/0.001", "32768.0/4.0"):
        out.update(_one_datum(train.main, _train_layout, TRAIN_ARGV, datum, tmp / "models"))
    return out


EVAL_ARGV = ["--models", "{pfs}/model", "--test", "{pfs}/split/test.csv", "--train",
             "{pfs}/train/train.csv", "--output", "{pfs}/out"]


def test_evaluate_runs_every_datum_in_one_process_and_fails_only_the_bad_one(
        tmp_path: Path) -> None:
    models = _models(tmp_path)
    models["model_C1.0_G1.0.pkl"] = b"not a pickle"

    def layout(pfs: Path, datum: str) -> None:
        _write(pfs / "split" / "test.csv", "\n".join(TEST_ROWS) + "\n")
        _write(pfs / "train" / "train.csv", "\n".join(TRAIN_ROWS) + "\n")
        (pfs / "model").mkdir()
        (pfs / "model" / datum).write_bytes(models[datum])

    names = sorted(models)
    pfs = tmp_path / "pfs"
    pfs.mkdir()
    slot = Slot(pfs, list(names), layout)
    done = _run_batch(slot, "stages.evaluate", _argv(EVAL_ARGV, pfs))
    assert done.returncode == 0, done.stderr
    assert slot.calls == len(names) + 1
    assert set(slot.errors) == {"model_C1.0_G1.0.pkl"}
    assert "cannot load model" in slot.errors["model_C1.0_G1.0.pkl"]
    for name in names:
        if name in slot.errors:
            assert slot.outputs[name] == {}
            continue
        expected = _one_datum(evaluate.main, layout, EVAL_ARGV, name, tmp_path)
        assert slot.outputs[name] == expected, name
        stem = name.removesuffix(".pkl")
        assert set(expected) == {f"{stem}_metric.txt", f"{stem}_cv.txt"}


def test_a_bad_command_line_fails_before_asking_for_a_datum(tmp_path: Path) -> None:
    slot = Slot(tmp_path, ["0.5/0.25"], _train_layout)
    done = _run_batch(slot, "stages.train", ["--train", str(tmp_path), "--kernel", "cubic"])
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert slot.calls == 0


PROBE = """
import sys, contextlib, io
from stages import {module}
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = {module}.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(code, sorted(m for m in ("grpc", "python_pachyderm") if m in sys.modules))
"""


@pytest.mark.parametrize("module", ["train", "evaluate"])
def test_without_a_batching_worker_nothing_loads_grpc(tmp_path: Path, module: str) -> None:
    pfs = tmp_path / "pfs"
    (pfs / "out").mkdir(parents=True)
    if module == "train":
        _train_layout(pfs, "0.5/0.25")
        argv = _argv(TRAIN_ARGV, pfs)
    else:
        _write(pfs / "split" / "test.csv", "\n".join(TEST_ROWS) + "\n")
        _write(pfs / "train" / "train.csv", "\n".join(TRAIN_ROWS) + "\n")
        (pfs / "model").mkdir()
        for name, data in _models(tmp_path).items():
            (pfs / "model" / name).write_bytes(data)
            break
        argv = _argv(EVAL_ARGV, pfs)
    env = {k: v for k, v in os.environ.items() if k != "PPS_WORKER_GRPC_PORT"}
    for args in (["--help"], argv):
        done = subprocess.run([sys.executable, "-c", PROBE.format(module=module), *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == "0 []", done.stderr
    assert len(list((pfs / "out").iterdir())) >= 1
