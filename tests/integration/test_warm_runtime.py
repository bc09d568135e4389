"""The warm runtime gives byte-for-byte the results of the subprocess runtime.

Each program runs under both runtimes with the same argv, env, cwd and stdin; stdout, stderr,
exit code and the files written must be identical, and the warm run must really have been warm
(forked from a zygote, counted in WarmRuntime.stats). Real processes, no mocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.runtime_subprocess import SubprocessRuntime
from localpachd.runtime_warm import WarmRuntime

PROGRAMS = {
    "exits.py": """
        import os, sys
        how = sys.argv[1]
        print("about to", how)
        if how == "int": sys.exit(int(sys.argv[2]))
        if how == "msg": sys.exit("a message for stderr")
        if how == "none": sys.exit()
        if how == "raise": raise ValueError("boom " + how)
        if how == "_exit": sys.stdout.flush(); os._exit(7)
        if how == "signal": sys.stdout.flush(); os.kill(os.getpid(), 15)
        if how == "chained":
            try: {}["k"]
            except KeyError as e: raise RuntimeError("wrapped") from e
        print("fell through")
    """,
    "world.py": """
        import os, sys
        print("argv", sys.argv, sys.orig_argv)
        print("cwd", os.getcwd())
        print("path", sys.path[0], [p for p in sys.path if "pachsync-warm" in p])
        print("env", sorted(os.environ.items()))
        print("main", __name__, __file__, __package__, __spec__ and __spec__.name)
        print("stdin", repr(sys.stdin.read()))
        print("streams", sys.stdout.line_buffering, sys.stderr.line_buffering, sys.stdout.encoding)
        print("flags", sys.flags.optimize, sys.flags.dont_write_bytecode, sys.flags.safe_path)
        with os.popen("echo $FOO") as shell:
            print("c-level getenv", shell.read().strip())
        print("first free fd", os.open(os.devnull, os.O_RDONLY))
    """,
    "interleave.py": """
        import os, subprocess, sys
        print("python line 1")
        os.write(1, b"fd-level write\\n")
        os.write(2, b"fd-level error\\n")
        print("python line 2", file=sys.stderr)
        subprocess.run(["sh", "-c", "echo from a child; echo child error >&2"], check=True)
        print("python line 3")
    """,
    "files.py": """
        import os, sys
        os.makedirs("out", exist_ok=True)
        with open("out/a.txt", "w") as f:
            f.write("A" * 1000)
        leaked = open("out/leaked.txt", "w")  # never closed: flushed at interpreter exit
        leaked.write("written at exit\\n")
        import atexit
        atexit.register(lambda: print("atexit ran"))
    """,
    "sleeper.py": """
        import time
        print("sleeping", flush=True)
        time.sleep(60)
    """,
    "counter.py": """
        import sys
        import pachsync_warm_state as state
        state.items.append(sys.argv[1])
        state.count += 1
        print("count", state.count, state.items)
    """,
    "rng.py": """
        import random
        import numpy as np
        print(random.random(), np.random.rand())
    """,
    "syntax_error.py": "def broken(:\n    pass\n",
    "shadow.py": """
        import pachsync_warm_state as state
        print("state from", state.__file__, state.count)
    """,
}
STATE = "items = []\ncount = 0\n"


@pytest.fixture(scope="module")
def progs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pachsync-warm")
    for name, body in PROGRAMS.items():
        (root / name).write_text(textwrap.dedent(body))
    (root / "pachsync_warm_state.py").write_text(STATE)
    return root


@pytest.fixture(scope="module")
def runtimes() -> Iterator[tuple[SubprocessRuntime, WarmRuntime]]:
    cold, warm = SubprocessRuntime(), WarmRuntime()
    try:
        yield cold, warm
    finally:
        warm.close()
        cold.close()


def _env(progs: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(progs), "FOO": "bar", **extra}


def _run(runtime: object, argv: tuple[str, ...], cwd: Path, **kw: object) -> tuple[object, ...]:
    out, err = cwd / "stdout.log", cwd / "stderr.log"
    for p in (out, err):
        p.unlink(missing_ok=True)
    run = DatumRun(argv=argv, cwd=cwd, stdout_path=out, stderr_path=err, **kw)  # type: ignore[arg-type]
    outcome = runtime.run(run)  # type: ignore[attr-defined]
    files = {
        str(p.relative_to(cwd)): p.read_bytes()
        for p in sorted(cwd.rglob("*"))
        if p.is_file() and p.name not in ("stdout.log", "stderr.log")
    }
    for p in sorted(cwd.rglob("*"), reverse=True):
        if p.name not in ("stdout.log", "stderr.log"):
            p.unlink() if p.is_file() else p.rmdir()
    return outcome, out.read_bytes(), err.read_bytes(), files


def _both(runtimes, tmp_path: Path, argv: tuple[str, ...], **kw: object) -> tuple[object, ...]:
    cold, warm = runtimes
    before = warm.stats["warm"]
    expected = _run(cold, argv, tmp_path, **kw)
    got = _run(warm, argv, tmp_path, **kw)
    assert warm.stats["warm"] == before + 1, "the warm runtime fell back to a subprocess"
    assert got == expected
    return got


def _module(name: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", name, *args)


@pytest.mark.parametrize(
    ("how", "code"),
    [(("int", "0"), 0), (("int", "1"), 1), (("int", "3"), 3), (("int", "300"), 44),
     (("msg",), 1), (("none",), 0), (("raise",), 1), (("_exit",), 7), (("signal",), -15),
     (("chained",), 1), (("fall",), 0)],
)
def test_exit_codes_and_tracebacks(runtimes, progs, tmp_path, how, code) -> None:
    outcome, out, err, _ = _both(
        runtimes, tmp_path, _module("exits", *how), env=_env(progs), stdin=None
    )
    assert outcome == DatumOutcome(returncode=code)
    assert out.startswith(b"about to")
    if how == ("raise",):
        assert err.startswith(b"Traceback (most recent call last):\n  File \"<frozen runpy>\"")
        assert b"localpachd" not in err


def test_argv_env_cwd_stdin_and_main_module(runtimes, progs, tmp_path) -> None:
    _, out, _, _ = _both(
        runtimes, tmp_path, _module("world", "--x", "1"), env=_env(progs), stdin=b"line 1\nline 2\n"
    )
    assert b"stdin 'line 1\\nline 2\\n'" in out and b"c-level getenv bar" in out
    _both(runtimes, tmp_path, _module("world"), env=_env(progs, LANG="C.UTF-8"), stdin=None)


def test_script_form(runtimes, progs, tmp_path) -> None:
    script = str(progs / "world.py")
    _both(runtimes, tmp_path, (sys.executable, script, "a b"), env=_env(progs), stdin=b"x")
    _, _, err, _ = _both(
        runtimes, tmp_path, (sys.executable, str(progs / "exits.py"), "raise"),
        env=_env(progs), stdin=None,
    )
    assert err.startswith(b"Traceback (most recent call last):\n  File \"" + str(progs).encode())
    outcome, _, err, _ = _both(
        runtimes, tmp_path, (sys.executable, str(progs / "syntax_error.py")),
        env=_env(progs), stdin=None,
    )
    assert outcome.returncode == 1 and b"SyntaxError" in err  # type: ignore[attr-defined]


def test_fd_level_writes_and_subprocesses_land_in_the_logs(runtimes, progs, tmp_path) -> None:
    _, out, err, _ = _both(runtimes, tmp_path, _module("interleave"), env=_env(progs), stdin=None)
    assert b"from a child" in out and b"child error" in err and b"fd-level write" in out


def test_output_files_and_exit_time_finalisation(runtimes, progs, tmp_path) -> None:
    _, out, _, files = _both(runtimes, tmp_path, _module("files"), env=_env(progs), stdin=None)
    assert files == {"out/a.txt": b"A" * 1000, "out/leaked.txt": b"written at exit\n"}
    assert out == b"atexit ran\n"


def test_timeout_kills_the_datum(runtimes, progs, tmp_path) -> None:
    outcome, out, _, _ = _both(
        runtimes, tmp_path, _module("sleeper"), env=_env(progs), stdin=None, timeout=1.0
    )
    assert outcome == DatumOutcome(returncode=-signal.SIGKILL, timed_out=True)
    assert out == b"sleeping\n"


def test_project_modules_run_their_top_level_code_in_each_datum(progs, tmp_path) -> None:
    """A project module reading the environment at import sees each datum's own value."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "pachsync_warm_cfg.py").write_text(
        "import os, json\nVALUE = os.environ['PER_DATUM']\n")
    (tmp_path / "lib" / "pachsync_warm_uses_cfg.py").write_text(
        "import pachsync_warm_cfg\nprint(pachsync_warm_cfg.VALUE)\n")
    warm = WarmRuntime()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path / "lib")}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    try:
        outs = [_run(warm, _module("pachsync_warm_uses_cfg"), cwd,
                     env={**env, "PER_DATUM": v}, stdin=None)[1] for v in ("one", "two")]
        assert outs == [b"one\n", b"two\n"] and warm.stats["warm"] == 2
    finally:
        warm.close()


def test_state_does_not_leak_between_datums(runtimes, progs, tmp_path) -> None:
    for arg in ("first", "second", "third"):
        argv = _module("counter", arg)
        _, out, _, _ = _both(runtimes, tmp_path, argv, env=_env(progs), stdin=None)
        assert out == f"count 1 ['{arg}']\n".encode()


def test_a_module_in_the_working_directory_shadows_a_preloaded_one(runtimes, progs, tmp_path):
    """python -m puts the cwd first on sys.path: a local file wins over the zygote's module."""
    _, warm = runtimes
    argv = _module("shadow")
    env = _env(progs, PYTHONDONTWRITEBYTECODE="1")  # a .pyc would record each copy's mtime
    plain = _both(runtimes, tmp_path, argv, env=env, stdin=None)  # preloads the module
    assert f"state from {progs}".encode() in plain[1]
    (tmp_path / "pachsync_warm_state.py").write_text("count = 42\n")
    cold_out = _run(runtimes[0], argv, tmp_path, env=env, stdin=None)
    (tmp_path / "pachsync_warm_state.py").write_text("count = 42\n")
    warm_out = _run(warm, argv, tmp_path, env=env, stdin=None)
    assert warm_out == cold_out
    assert b"count" not in cold_out[2] and b" 42\n" in cold_out[1]


def test_each_datum_gets_fresh_randomness(runtimes, progs, tmp_path) -> None:
    _, warm = runtimes
    outs = {_run(warm, _module("rng"), tmp_path, env=_env(progs), stdin=None)[1] for _ in range(3)}
    assert len(outs) == 3


def test_concurrent_datums_share_one_zygote(progs, tmp_path) -> None:
    warm = WarmRuntime()
    try:
        def one(i: int) -> tuple[object, ...]:
            cwd = tmp_path / f"d{i}"
            cwd.mkdir()
            return _run(warm, _module("counter", str(i)), cwd, env=_env(progs), stdin=None)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(16)))
        assert [r[1] for r in results] == [f"count 1 ['{i}']\n".encode() for i in range(16)]
        assert all(r[0] == DatumOutcome(0) for r in results)
        assert warm.stats == {"warm": 16, "cold": 0, "zygotes": 1, "prewarmed": 0}
    finally:
        warm.close()


def test_non_python_commands_fall_back(runtimes, tmp_path) -> None:
    cold, warm = runtimes
    before = dict(warm.stats)
    argv = ("sh", "-c", "echo $FOO; exit 4")
    expected = _run(cold, argv, tmp_path, env={"FOO": "x"}, stdin=None)
    assert _run(warm, argv, tmp_path, env={"FOO": "x"}, stdin=None) == expected
    assert warm.stats["cold"] == before["cold"] + 1


def test_edited_project_module_is_never_run_stale(progs, tmp_path) -> None:
    warm = WarmRuntime()
    pkg = tmp_path / "lib"
    pkg.mkdir()
    (pkg / "pachsync_warm_edit.py").write_text("VALUE = 'old'\n")
    (pkg / "pachsync_warm_main.py").write_text(
        "import pachsync_warm_edit\nprint(pachsync_warm_edit.VALUE)\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(pkg)}
    try:
        assert _run(warm, _module("pachsync_warm_main"), cwd, env=env, stdin=None)[1] == b"old\n"
        (pkg / "pachsync_warm_edit.py").write_text("VALUE = 'new'\n")
        os.utime(pkg / "pachsync_warm_edit.py", ns=(time.time_ns() + 10**9,) * 2)
        assert _run(warm, _module("pachsync_warm_main"), cwd, env=env, stdin=None)[1] == b"new\n"
        # project code is never preloaded
        assert warm.stats == {"warm": 2, "cold": 0, "zygotes": 1, "prewarmed": 0}
    finally:
        warm.close()


def test_kill_job_kills_only_that_jobs_datums(progs, tmp_path) -> None:
    warm = WarmRuntime()
    try:
        def one(job: str) -> DatumOutcome:
            cwd = tmp_path / job
            cwd.mkdir()
            env = _env(progs, PACH_JOB_ID=job)
            timeout = 4 if job == "survivor" else 30
            outcome = _run(warm, _module("sleeper"), cwd, env=env, stdin=None, timeout=timeout)
            return outcome[0]  # type: ignore[return-value]

        with ThreadPoolExecutor(2) as pool:
            doomed = pool.submit(one, "doomed")
            survivor = pool.submit(one, "survivor")
            while not (tmp_path / "doomed" / "stdout.log").exists() or not (
                tmp_path / "doomed" / "stdout.log"
            ).read_bytes():
                time.sleep(0.05)
            warm.kill_job("doomed")
            assert doomed.result() == DatumOutcome(returncode=-signal.SIGKILL)
        assert survivor.result() == DatumOutcome(returncode=-signal.SIGKILL, timed_out=True)
    finally:
        warm.close()


def test_zygote_and_datums_die_with_the_server(progs, tmp_path) -> None:
    """kill -9 of the process that owns the runtime leaves no zygote and no datum behind."""
    server = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from localpachd.runtime import DatumRun
        from localpachd.runtime_warm import WarmRuntime
        cwd = Path({str(tmp_path)!r})
        code = ("import os, time; open('pids', 'w').write(f'{{os.getppid()}} {{os.getpid()}}');"
                "time.sleep(60)")
        (cwd / "hang.py").write_text(code)
        WarmRuntime().run(DatumRun(argv=(sys.executable, "hang.py"), env={{}}, cwd=cwd,
                          stdin=None, stdout_path=cwd / "o", stderr_path=cwd / "e"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", server])
    pids_file = tmp_path / "pids"
    deadline = time.monotonic() + 60
    while not (pids_file.exists() and pids_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    zygote, datum = (int(p) for p in pids_file.read_text().split())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while _alive(zygote) or _alive(datum):
        assert time.monotonic() < deadline, "zygote or datum survived the server"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_a_zygote_that_cannot_start_the_datum_falls_back_exactly_once(
    progs, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in our own wrapper: nothing ran warm, so the datum runs cold, once."""
    from localpachd.warm import pool

    def refuse(self: object, request: bytes, fds: list[int]) -> object:
        raise pool.ZygoteUnavailable("injected")

    monkeypatch.setattr(pool.ZygoteHandle, "start", refuse)
    warm = WarmRuntime()
    try:
        for arg in ("a", "b", "c"):
            outcome, out, _, _ = _run(warm, _module("counter", arg), tmp_path, env=_env(progs),
                                      stdin=b"ignored")
            assert outcome == DatumOutcome(0) and out == f"count 1 ['{arg}']\n".encode()
        # then the key stays cold
        assert warm.stats == {"warm": 0, "cold": 3, "zygotes": 2, "prewarmed": 0}
    finally:
        warm.close()


def test_a_killed_zygote_fails_its_running_datum_and_is_replaced(progs, tmp_path) -> None:
    warm = WarmRuntime()
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(_run, warm, _module("sleeper"), tmp_path, env=_env(progs),
                                  stdin=None, timeout=2)
            while not (tmp_path / "stdout.log").exists() or not (
                    tmp_path / "stdout.log").read_bytes():
                time.sleep(0.05)
            zygote = next(iter(warm.pool.current.values()))
            zygote.proc.kill()
            outcome = running.result()[0]
        # the orphaned child keeps running; its datum_timeout is still enforced (by the runtime)
        assert outcome == DatumOutcome(returncode=-signal.SIGKILL, timed_out=True)
        again = _run(warm, _module("counter", "x"), tmp_path, env=_env(progs), stdin=None)
        assert again[0] == DatumOutcome(0) and again[1] == b"count 1 ['x']\n"
        assert warm.stats["zygotes"] == 2
    finally:
        warm.close()
