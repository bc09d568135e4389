"""The warm zygote compiles project code once; children reuse it only while the file is unchanged.

Real zygotes and datum processes (localpachd.runtime_warm), no mocks. The cache key is the file's
(mtime_ns, size), the same kind of key CPython's own .pyc timestamp check uses.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from localpachd.runtime import DatumRun
from localpachd.runtime_warm import WarmRuntime


def _run(warm: WarmRuntime, cwd: Path, env: dict[str, str], module: str) -> tuple[int, bytes]:
    out = cwd / "out.log"
    out.unlink(missing_ok=True)
    run = DatumRun(argv=(sys.executable, "-m", module), env=env, cwd=cwd, stdin=None,
                   stdout_path=out, stderr_path=out)
    outcome = warm.run(run)
    return outcome.returncode, out.read_bytes()


def _setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    pkg, cwd = tmp_path / "lib", tmp_path / "cwd"
    pkg.mkdir()
    cwd.mkdir()
    (pkg / "pachsync_cc_helper.py").write_text("VALUE = 'helper-1'\n")
    (pkg / "pachsync_cc_main.py").write_text(
        "import pachsync_cc_helper\nprint('main-1', pachsync_cc_helper.VALUE)\n"
    )
    return pkg, cwd, {"PATH": os.environ["PATH"], "PYTHONPATH": str(pkg)}


def _rewrite(path: Path, text: str, keep_stat: bool) -> None:
    st = path.stat()
    assert len(text.encode()) == st.st_size  # same size: only the mtime tells them apart
    path.write_text(text)
    if keep_stat:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        # Whole seconds later: python's own .pyc check (the child may write one) counts seconds.
        later = max(st.st_mtime_ns, time.time_ns()) + 2 * 10**9
        os.utime(path, ns=(later, later))


def test_children_reuse_the_code_compiled_by_the_zygote(tmp_path: Path) -> None:
    pkg, cwd, env = _setup(tmp_path)
    warm = WarmRuntime()
    try:
        assert _run(warm, cwd, env, "pachsync_cc_main") == (0, b"main-1 helper-1\n")
        # Same size and mtime: the compiled code is reused, the new bytes are not read.
        _rewrite(pkg / "pachsync_cc_main.py",
                 "import pachsync_cc_helper\nprint('main-2', pachsync_cc_helper.VALUE)\n", True)
        _rewrite(pkg / "pachsync_cc_helper.py", "VALUE = 'helper-2'\n", True)
        assert _run(warm, cwd, env, "pachsync_cc_main") == (0, b"main-1 helper-1\n")
        assert warm.stats == {"warm": 2, "cold": 0, "zygotes": 1, "prewarmed": 0}
    finally:
        warm.close()


def test_an_edited_target_or_helper_is_compiled_afresh(tmp_path: Path) -> None:
    pkg, cwd, env = _setup(tmp_path)
    warm = WarmRuntime()
    try:
        assert _run(warm, cwd, env, "pachsync_cc_main") == (0, b"main-1 helper-1\n")
        _rewrite(pkg / "pachsync_cc_main.py",
                 "import pachsync_cc_helper\nprint('main-2', pachsync_cc_helper.VALUE)\n", False)
        assert _run(warm, cwd, env, "pachsync_cc_main") == (0, b"main-2 helper-1\n")
        _rewrite(pkg / "pachsync_cc_helper.py", "VALUE = 'helper-2'\n", False)
        assert _run(warm, cwd, env, "pachsync_cc_main") == (0, b"main-2 helper-2\n")
        # A syntax error introduced later is reported exactly as python reports it.
        _rewrite(pkg / "pachsync_cc_helper.py", "VALUE = (helper-33\n", False)
        code, out = _run(warm, cwd, env, "pachsync_cc_main")
        assert code == 1, out
        assert b"SyntaxError" in out and b"pachsync_cc_helper.py\", line 1" in out
        assert warm.stats == {"warm": 4, "cold": 0, "zygotes": 1, "prewarmed": 0}
    finally:
        warm.close()
