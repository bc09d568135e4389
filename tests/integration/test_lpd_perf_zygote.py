"""A warm datum whose imports its zygote has loaded is forked before prewarms sent earlier
(issue 15, benchmark (1): the loader zygote gets every pipeline's prewarm at CreatePipeline, so
`model`'s first datums waited behind `test`'s and `select`'s preloads).

Real zygote processes (localpachd.runtime_warm). Two libraries block their import until the
test creates their release file, so "the zygote is busy importing" is a state the test
controls; the datum must finish while the later preload is still blocked, which code serving
requests in arrival order never does (it waits for that import: the test's generous bound)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.procs import module_run
from helpers.wait import wait_for

from localpachd.runtime import DatumOutcome
from localpachd.runtime_warm import WarmRuntime

GATED = """
    import os, time
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "imports.log"), "a") as log:
        log.write("{name} %d\\n" % os.getpid())
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(here, "{gate}")) and time.monotonic() < deadline:
        time.sleep(0.02)
"""
PROGRAMS = {
    "pz_gate1.py": GATED.format(name="gate1", gate="release1"),
    "pz_gate2.py": GATED.format(name="gate2", gate="release2"),
    "pz_first.py": "import pz_gate1\nprint('first')\n",
    "pz_second.py": "import pz_gate2\nprint('second')\n",
    "pz_light.py": "print('light')\n",
}


@pytest.fixture
def progs(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "progs"
    root.mkdir()
    for name, body in PROGRAMS.items():
        (root / name).write_text(textwrap.dedent(body))
    yield root
    for gate in ("release1", "release2"):  # never leave a zygote importing
        (root / gate).touch()


def _imports(progs: Path) -> list[str]:
    log = progs / "imports.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_a_datum_of_a_preloaded_target_goes_before_later_prewarms_in_a_loader(
    progs: Path, tmp_path: Path
) -> None:
    """As at CreatePipeline: a light pipeline first (the current zygote), then two heavy ones
    (one loader zygote gets both preloads), then the first heavy pipeline's datum."""
    warm = WarmRuntime()
    nowhere = str(tmp_path / "nowhere")
    try:
        assert warm.prewarm(module_run(progs, tmp_path / "p0", "pz_light"), nowhere)
        assert warm.prewarm(module_run(progs, tmp_path / "p1", "pz_first"), nowhere)
        wait_for(lambda: _imports(progs) == ["gate1"], "the first preload to begin")
        assert warm.prewarm(module_run(progs, tmp_path / "p2", "pz_second"), nowhere)
        loader = next(iter(warm.pool.loading.values()))
        wait_for(lambda: loader.pending == 2, "the loader to answer the light seed")
        busy = loader.inflight  # the two preloads it has not answered
        with ThreadPoolExecutor(1) as pool:
            datum = pool.submit(warm.run, module_run(progs, tmp_path / "d1", "pz_first"))
            wait_for(lambda: loader.inflight == busy + 1, "the datum to reach the loader")
            (progs / "release1").touch()  # the loader goes on to pz_second: blocked again
            assert datum.result(timeout=30) == DatumOutcome(0)
        wait_for(lambda: "gate2" in _imports(progs), "the second preload to begin")
        assert (tmp_path / "d1" / "out.log").read_text() == "first\n"
        (progs / "release2").touch()
        assert warm.run(module_run(progs, tmp_path / "d2", "pz_second")) == DatumOutcome(0)
        assert (tmp_path / "d2" / "out.log").read_text() == "second\n"
        assert warm.stats == {"warm": 2, "cold": 0, "zygotes": 2, "prewarmed": 3}
    finally:
        warm.close()


def test_a_datum_of_a_preloaded_target_goes_before_a_new_targets_import(
    progs: Path, tmp_path: Path
) -> None:
    """Datums alone (no prewarm): one zygote, a datum of a new target queued before a second
    datum of the target it has loaded."""
    warm = WarmRuntime()
    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(warm.run, module_run(progs, tmp_path / "d1", "pz_first"))
            wait_for(lambda: _imports(progs) == ["gate1"], "the first import to begin")
            zygote = next(iter(warm.pool.current.values()))
            second = pool.submit(warm.run, module_run(progs, tmp_path / "d2", "pz_second"))
            wait_for(lambda: zygote.inflight == 2, "the second datum to reach the zygote")
            again = pool.submit(warm.run, module_run(progs, tmp_path / "d3", "pz_first"))
            wait_for(lambda: zygote.inflight == 3, "the third datum to reach the zygote")
            (progs / "release1").touch()  # then pz_second's import blocks the zygote
            assert first.result(timeout=30) == again.result(timeout=30) == DatumOutcome(0)
            assert not second.done() and not (progs / "release2").exists()
            (progs / "release2").touch()
            assert second.result(timeout=30) == DatumOutcome(0)
        assert [(tmp_path / d / "out.log").read_text() for d in ("d1", "d2", "d3")] == [
            "first\n", "second\n", "first\n"]
        assert warm.stats == {"warm": 3, "cold": 0, "zygotes": 1, "prewarmed": 0}
    finally:
        warm.close()
