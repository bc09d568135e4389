"""The worker runs one datum through the real subprocess runtime: layout, env, /pfs, retries."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from localpachd.datums import Datum, DatumInput, RepoFile
from localpachd.outputs import Reader
from localpachd.runtimes import make_runtime
from localpachd.worker import DatumIO, JobContext, build_argv, rewrite_pfs, run_datum

CONTENT = {"/c_parameters.txt/0000000000000000": b"0.5\n", "/dir/x.txt": b"xx"}


def materialize(f: RepoFile, dest: Path) -> None:
    dest.write_bytes(CONTENT[f.path])


STORED: dict[str, bytes] = {}


def ingest(src: Reader) -> tuple[str, int]:
    data = src.read()
    STORED[hashlib.sha256(data).hexdigest()] = data
    return hashlib.sha256(data).hexdigest(), len(data)


def datum() -> Datum:
    f = RepoFile("/c_parameters.txt/0000000000000000", "h1", 4)
    inp = DatumInput(
        name="c", project="default", repo="parameters", branch="master", commit="a" * 32,
        path="/c_parameters.txt/0000000000000000", hash="h1", files=(f,),
    )  # fmt: skip
    return Datum((inp,))


def ctx(**kw: object) -> JobContext:
    base: dict[str, object] = dict(
        project="default", pipeline="p", job_id="j" * 32, output_commit="j" * 32,
        cmd=("sh",), datum_tries=1,
    )  # fmt: skip
    base.update(kw)
    return JobContext(**base)  # type: ignore[arg-type]


def test_rewrite_only_touches_pfs_paths() -> None:
    root = Path("/tmp/s/pfs")
    assert rewrite_pfs("cp /pfs/in/* /pfs/out/", root) == "cp /tmp/s/pfs/in/* /tmp/s/pfs/out/"
    assert rewrite_pfs("/pfs", root) == "/tmp/s/pfs"
    assert rewrite_pfs("/pfsx /a/pfs/b x/pfs", root) == "/pfsx /a/pfs/b x/pfs"
    assert build_argv(["python3", "-c", "1"], root)[0] == sys.executable


def test_shell_datum_sees_pachyderm_layout_and_env(tmp_path: Path) -> None:
    script = (
        'cat "$c" > /pfs/out/value.txt',
        'echo "$c_COMMIT $PACH_JOB_ID $PACH_OUTPUT_COMMIT_ID $PPS_PIPELINE_NAME"'
        ' "$PPS_PROJECT_NAME $GREETING" > /pfs/out/env',
        "mkdir -p /pfs/out/sub && ls /pfs/c/c_parameters.txt > /pfs/out/sub/ls",
        'python3 -c "import sys; print(sys.prefix)" > /pfs/out/py',
    )
    # an output commit id other than the job id, so the test tells the two variables apart
    res = run_datum(
        ctx(stdin=script, env={"GREETING": "hi /pfs/out"}, output_commit="o" * 32), datum(),
        tmp_path / "s",
        tmp_path / "log", DatumIO(make_runtime("subprocess"), materialize, ingest),
    )  # fmt: skip
    assert res.ok, (tmp_path / "log").read_text()
    assert [o.path for o in res.outputs] == ["/env", "/py", "/sub/ls", "/value.txt"]
    out = {o.path: STORED[o.hash].decode() for o in res.outputs}
    assert out["/value.txt"] == "0.5\n"
    assert out["/env"].split() == [
        "a" * 32,
        "j" * 32,
        "o" * 32,  # PACH_OUTPUT_COMMIT_ID = the job's output commit
        "p",
        "default",
        "hi",
        f"{tmp_path}/s/pfs/out",
    ]
    assert out["/sub/ls"] == "0000000000000000\n"
    assert out["/py"].strip() == sys.prefix
    assert not (tmp_path / "s").exists()  # scratch removed


def test_failed_datum_is_retried_then_fails_and_accepted_codes_pass(tmp_path: Path) -> None:
    rt = make_runtime("subprocess")
    counter = tmp_path / "n"
    fail = ctx(stdin=(f"echo x >> {counter}", "echo partial > /pfs/out/f", "exit 3"), datum_tries=3)
    io = DatumIO(rt, materialize, ingest)
    res = run_datum(fail, datum(), tmp_path / "s", tmp_path / "log", io)
    assert not res.ok and res.attempts == 3 and res.outputs == ()
    assert counter.read_text().count("x") == 3
    assert "exit status 3" in res.reason
    ok = ctx(stdin=("exit 3",), accept_return_code=frozenset({3}))
    assert run_datum(ok, datum(), tmp_path / "s", tmp_path / "log", io).ok


def test_datum_timeout_kills_the_process(tmp_path: Path) -> None:
    slow = ctx(cmd=("sleep", "30"), datum_timeout=0.3)
    res = run_datum(slow, datum(), tmp_path / "s", tmp_path / "log",
                    DatumIO(make_runtime("subprocess"), materialize, ingest))  # fmt: skip
    assert not res.ok and "timed out" in res.reason


def test_working_dir_is_honoured(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    c = ctx(stdin=("pwd > /pfs/out/pwd",), working_dir=str(wd))
    res = run_datum(c, datum(), tmp_path / "s", tmp_path / "log",
                    DatumIO(make_runtime("subprocess"), materialize, ingest))  # fmt: skip
    assert res.ok
    bad = ctx(stdin=("true",), working_dir="/nonexistent/dir")
    res = run_datum(bad, datum(), tmp_path / "s", tmp_path / "log",
                    DatumIO(make_runtime("subprocess"), materialize, ingest))  # fmt: skip
    assert not res.ok and "working_dir" in res.reason


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_make_runtime_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown worker runtime"):
        make_runtime("docker")


def test_empty_cmd_fails_the_datum_with_a_clear_reason(tmp_path: Path) -> None:
    res = run_datum(ctx(cmd=()), datum(), tmp_path / "s", tmp_path / "log",
                    DatumIO(make_runtime("subprocess"), materialize, ingest))  # fmt: skip
    assert not res.ok and "transform.cmd is empty" in res.reason
    assert "transform.cmd is empty" in (tmp_path / "log").read_text()
