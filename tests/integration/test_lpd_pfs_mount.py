"""A real /pfs (issue 16, item 8): where the kernel allows private mount namespaces, a datum that
hard-codes `/pfs` (in a script from its input, or spelled so the worker's rewriting cannot see
it) reads its inputs and writes its outputs there, and sees its secrets at their mount_path;
the host's own /pfs is untouched. Where namespaces are refused (injected through our own probe),
the server falls back to rewriting, says so, and well-behaved stages still run.

Real localpachd (in process, and a `serve` subprocess for the start-up line), the real
python-pachyderm client, datums as real `sh` processes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.pfs import put, read_repo
from lpd_pps_helpers import last_job, pfs, sh_pipeline
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumRun
from localpachd.runtime_subprocess import SubprocessRuntime
from localpachd.runtime_warm import WarmRuntime

# Hard-coded /pfs the worker cannot rewrite: `${P}fs` is /pfs only once the shell expands it.
HIDDEN = 'P=/p; D="${P}fs"'


def _host_pfs() -> object:
    """What the host's /pfs is (absent, or its listing), to compare before and after."""
    if not os.path.lexists("/pfs"):
        return None
    return sorted(os.listdir("/pfs")) if os.path.isdir("/pfs") else os.lstat("/pfs").st_ino


@pytest.fixture(autouse=True)
def _fresh_mode() -> Iterator[None]:
    """Each test finds the mode itself, never one cached by an earlier file's test."""
    pfsmount.forget_mode()
    yield
    pfsmount.forget_mode()


@pytest.fixture
def namespace_mode() -> None:
    if pfsmount.mode() != pfsmount.NAMESPACE:
        pytest.skip("this kernel refuses private mount namespaces to this user "
                    "(unshare(CLONE_NEWNS), or CLONE_NEWUSER when not root, failed): "
                    "localpachd runs datums in rewrite mode here")  # fmt: skip


@pytest.fixture
def rewrite_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The probe says the kernel refused namespaces; the mode is found again, then restored."""
    monkeypatch.setattr(pfsmount, "probe", lambda: False)
    monkeypatch.setattr(pfsmount, "_found", [])
    yield


def _ok(c: Any, pipeline: str) -> None:
    job = last_job(c, pipeline)
    assert job.state == pps_pb2.JobState.JOB_SUCCESS, (job.state, job.reason)


@pytest.mark.usefixtures("namespace_mode")
def test_hard_coded_pfs_paths_work_in_namespace_mode(pach_client: Any) -> None:
    c, before = pach_client, _host_pfs()
    c.create_repo("in")
    script = "cat /pfs/in/x > /pfs/out/y\nls /pfs | tr '\\n' ' ' > /pfs/out/seen\n"
    put(c, "in", {"x": "hello\n", "run.sh": script})
    # 1. a script from the input whose /pfs paths no rewriting reaches
    sh_pipeline(c, "script", pfs("in", "/"), 'sh "$in/run.sh"')
    # 2. the brief's command, /pfs spelled so the worker cannot rewrite it
    c.create_pipeline("cmd", input=pfs("in", "/"), transform=pps_pb2.Transform(
        cmd=["sh", "-c", HIDDEN + '; cat "$D/in/x" > "$D/out/y"']))  # fmt: skip
    # 3. a Python datum opening /pfs by a computed name (subprocess: python -c is not warm)
    c.create_pipeline("py", input=pfs("in", "/"), transform=pps_pb2.Transform(cmd=[
        "python3", "-c", "p = '/' + 'pfs'; open(p + '/out/y', 'w').write("
        "open(p + '/in/x').read().upper())"]))  # fmt: skip
    for name in ("script", "cmd", "py"):
        _ok(c, name)
    assert read_repo(c, "script") == {"/y": "hello\n", "/seen": "in out "}
    assert read_repo(c, "cmd") == {"/y": "hello\n"}
    assert read_repo(c, "py") == {"/y": "HELLO\n"}
    assert _host_pfs() == before  # the host's /pfs (present or not) never changed


@pytest.mark.usefixtures("namespace_mode")
def test_each_datum_sees_only_its_own_pfs(pach_client: Any) -> None:
    """Two datums at once (parallelism 2): each /pfs/in holds its own file only."""
    c = pach_client
    c.create_repo("in")
    put(c, "in", {f"f{i}": f"{i}\n" for i in range(6)})
    c.create_pipeline("own", input=pfs("in", "/*"), parallelism_spec=pps_pb2.ParallelismSpec(
        constant=2), transform=pps_pb2.Transform(cmd=["sh", "-c", HIDDEN + (
            '; for f in "$D"/in/*; do n=$(basename "$f"); cat "$f" > "$D/out/$n"; done;'
            ' ls "$D/in" | wc -l > "$D/out/count_$(ls "$D/in")"')]))  # fmt: skip
    _ok(c, "own")
    got = read_repo(c, "own")
    assert {k: v for k, v in got.items() if not k.startswith("/count_")} == {
        f"/f{i}": f"{i}\n" for i in range(6)}  # fmt: skip
    assert {k: v.strip() for k, v in got.items() if k.startswith("/count_")} == {
        f"/count_f{i}": "1" for i in range(6)}  # fmt: skip


@pytest.mark.usefixtures("namespace_mode")
def test_secret_mount_path_is_real_in_namespace_mode(pach_client: Any) -> None:
    """A script reads the secret at its mount_path (top-level and inside an existing host dir)."""
    c = pach_client
    c.create_repo("in")
    put(c, "in", {"run.sh": "cat /zsecret/k > /pfs/out/top\ncat /tmp/zsecret-in-tmp/k "
                            "> /pfs/out/nested 2>/dev/null || echo absent > /pfs/out/nested\n"})
    c.create_secret("s", {"k": "v1"})
    host_tmp = not os.path.lexists("/tmp/zsecret-in-tmp")
    sh_pipeline(c, "sec", pfs("in", "/"), 'sh "$in/run.sh"', transform={"secrets": [
        pps_pb2.SecretMount(name="s", mount_path="/zsecret"),
        pps_pb2.SecretMount(name="s", mount_path="/tmp/zsecret-in-tmp")]})  # fmt: skip
    _ok(c, "sec")
    # /tmp/zsecret-in-tmp does not exist on the host: creating it would change the host, so
    # that mount path is reached through the rewriting only (cmd, stdin, env)
    assert read_repo(c, "sec") == {"/top": "v1", "/nested": "absent\n" if host_tmp else "v1"}
    assert not os.path.lexists("/zsecret")


SCRIPT = """import os, sys
p = '/' + 'pfs'
data = open(p + '/in/x').read()
open(p + '/out/y', 'w').write(data.upper() + ' ' + ' '.join(sorted(os.listdir(p))))
print('cwd', os.getcwd())
"""


@pytest.mark.usefixtures("namespace_mode")
@pytest.mark.parametrize("kind", ["subprocess", "warm"])
def test_both_runtimes_give_a_real_pfs(tmp_path: Path, kind: str) -> None:
    """The same DatumRun through the subprocess runtime and forked warm from a zygote."""
    root = tmp_path / "slot"
    (root / "pfs" / "in").mkdir(parents=True)
    (root / "pfs" / "out").mkdir()
    (root / "pfs" / "in" / "x").write_text("hi")
    (root / "run.py").write_text(SCRIPT)
    log = tmp_path / "log"
    run = DatumRun(argv=(sys.executable, "run.py"), env=dict(os.environ), cwd=root, stdin=None,
                   stdout_path=log, stderr_path=log, binds=((str(root / "pfs"), "/pfs"),))
    runtime = SubprocessRuntime() if kind == "subprocess" else WarmRuntime(shared=False)
    try:
        outcome = runtime.run(run)
        if kind == "warm":
            assert isinstance(runtime, WarmRuntime) and runtime.stats["warm"] == 1
    finally:
        runtime.close()
    assert outcome.returncode == 0, log.read_text()
    assert (root / "pfs" / "out" / "y").read_text() == "HI in out"
    assert f"cwd {root}" in log.read_text()
    assert not os.path.lexists("/pfs") or os.listdir("/pfs") != ["in", "out"]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory nobody can reach (pytest's tmp_path lies below a 0700 directory of root's)."""
    with tempfile.TemporaryDirectory(prefix="lpd-pfs-nobody-", dir="/tmp") as d:
        yield Path(d)


def test_unprivileged_user_gets_a_real_pfs_through_a_user_namespace(open_tmp: Path) -> None:
    """The non-root path (CLONE_NEWUSER mapping the user to itself): run the helper as nobody."""
    setpriv, py = shutil.which("setpriv"), shutil.which("python3", path="/usr/bin:/bin")
    if os.getuid() != 0 or setpriv is None or py is None:
        pytest.skip("needs root, setpriv and a system python3 to run the helper as nobody")
    nobody, tmp_path = pwd.getpwnam("nobody"), open_tmp
    (tmp_path / "pfs" / "in").mkdir(parents=True)
    (tmp_path / "pfs" / "out").mkdir()
    (tmp_path / "pfs" / "in" / "x").write_text("hey")
    shutil.copy(pfsmount.__file__, tmp_path / "helper.py")  # the venv may be closed to nobody
    for p in [tmp_path, *tmp_path.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)
    argv = pfsmount.wrap(["sh", "-c", "id -u; cat /pfs/in/x > /pfs/out/y"],
                         [(str(tmp_path / "pfs"), "/pfs")], str(tmp_path / "ns"))  # fmt: skip
    argv[0], argv[3] = py, str(tmp_path / "helper.py")
    got = subprocess.run([setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                          "--clear-groups", *argv], cwd=tmp_path, capture_output=True, text=True,
                         check=False)  # fmt: skip
    if got.returncode == pfsmount.SETUP_FAILED:
        pytest.skip(f"this kernel refuses user namespaces to nobody: {got.stderr.strip()}")
    assert got.returncode == 0, got
    assert got.stdout.strip() == str(nobody.pw_uid)  # still nobody inside: no privilege gained
    assert (tmp_path / "pfs" / "out" / "y").read_text() == "hey"


def test_rewrite_mode_when_namespaces_are_refused(rewrite_mode: None, pach_client: Any) -> None:
    c = pach_client
    assert pfsmount.mode() == pfsmount.REWRITE
    c.create_repo("in")
    put(c, "in", {"x": "hello\n"})
    sh_pipeline(c, "good", pfs("in", "/"), "cat /pfs/in/x > /pfs/out/y")  # rewritten: runs
    c.create_pipeline("hard", input=pfs("in", "/"), transform=pps_pb2.Transform(
        cmd=["sh", "-c", HIDDEN + '; cat "$D/in/x" > "$D/out/y"']))  # fmt: skip
    _ok(c, "good")
    assert read_repo(c, "good") == {"/y": "hello\n"}
    assert last_job(c, "hard").state == pps_pb2.JobState.JOB_FAILURE  # no /pfs on this host


def test_probe_refused_by_the_kernel_means_rewrite(tmp_path: Path) -> None:
    """The helper's own failure path: a namespace it cannot create exits SETUP_FAILED, says
    why, and runs nothing (unshare refused: the flag set makes the syscall fail with EINVAL)."""
    marker = tmp_path / "ran"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import runtime_pfsmount as p; "
            "p._CLONE_NEWNS = -1; raise SystemExit(p.main(sys.argv[2:]))")
    got = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(Path(pfsmount.__file__).parent),
         "--root", str(tmp_path / "ns"), "--bind", str(tmp_path), "/pfs", "--",
         "touch", str(marker)], capture_output=True, text=True, check=False)  # fmt: skip
    assert got.returncode == pfsmount.SETUP_FAILED, got
    assert "cannot give the datum a private /pfs" in got.stderr
    assert not marker.exists()


def _serve_first_lines(launcher: list[str], tmp_path: Path, flags: list[str],
                       env: dict[str, str]) -> list[str]:
    """The first two lines `localpachd serve` prints (`listening on`, then the /pfs mode)."""
    proc = subprocess.Popen([*launcher, "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                             *flags], stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        return [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("refused", [False, True])
def test_serve_reports_the_mode(tmp_path: Path, refused: bool) -> None:
    """`localpachd serve` says which mode it runs in, right after `listening on` (which stays the
    first line: callers such as test_tls read only that one)."""
    code = ("import sys; from localpachd import runtime_pfsmount as pfsmount, cli; "
            + ("pfsmount.probe = lambda: False; " if refused else "")
            + "raise SystemExit(cli.main(sys.argv[1:]))")  # fmt: skip
    lines = _serve_first_lines([sys.executable, "-c", code], tmp_path, [], dict(os.environ))
    expected = pfsmount.REWRITE if refused else pfsmount.mode()
    assert "listening on" in lines[0], lines
    assert lines[1].startswith(f"localpachd: /pfs mode {expected}: datums see"), lines


@pytest.mark.parametrize("how", ["flag", "env"])
def test_rewrite_mode_can_be_chosen(tmp_path: Path, how: str) -> None:
    """`--pfs-mode rewrite` (or LOCALPACHD_PFS_MODE=rewrite) skips namespaces even where the
    kernel allows them, and `serve` says which choice made it rewrite."""
    env = {**os.environ, pfsmount.MODE_ENV: "rewrite"} if how == "env" else dict(os.environ)
    flag = ["--pfs-mode", "rewrite"] if how == "flag" else []
    lines = _serve_first_lines([sys.executable, "-m", "localpachd"], tmp_path, flag, env)
    assert "listening on" in lines[0], lines
    assert lines[1].startswith("localpachd: /pfs mode rewrite:"), lines
    assert "--pfs-mode rewrite" in lines[1], lines


def test_an_unknown_pfs_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pfsmount, "_found", [])
    monkeypatch.setenv(pfsmount.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="choose one of auto, namespace, rewrite"):
        pfsmount.mode()


def test_one_transient_probe_failure_does_not_turn_the_server_to_rewrite(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The mode holds for the server's life: a probe failing once (a busy machine) is asked
    again; failing every time means rewrite, with the last reason logged."""
    real = pfsmount._probe_once
    if real():
        pytest.skip("this kernel refuses private mount namespaces: nothing to retry here")
    answers = iter(["exit status 126: EAGAIN", ""])
    monkeypatch.setattr(pfsmount, "_probe_once", lambda: next(answers))
    assert pfsmount.mode() == pfsmount.NAMESPACE
    pfsmount.forget_mode()
    monkeypatch.setattr(pfsmount, "_probe_once", lambda: "exit status 126: refused")
    with caplog.at_level("INFO", logger="localpachd"):
        assert pfsmount.mode() == pfsmount.REWRITE
    assert "probe failed: exit status 126: refused" in caplog.text
