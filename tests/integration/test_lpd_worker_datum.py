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
from localpachd.worker import DatumIO, DatumResult, JobContext, build_argv, rewrite_pfs, run_datum

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


# ---------------------------------------------------------------- err_cmd per attempt
# Pachyderm 2.7's Datum.run runs err_cmd after EVERY failed attempt, in that attempt's /pfs,
# under what is left of its datum_timeout; a success marks the datum RECOVERED for good while
# retries go on (localpachd.attempts).


def _run(tmp_path: Path, c: JobContext) -> tuple[DatumResult, str]:
    res = run_datum(c, datum(), tmp_path / "s", tmp_path / "log",
                    DatumIO(make_runtime("subprocess"), materialize, ingest))  # fmt: skip
    return res, (tmp_path / "log").read_text()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _nth_run_succeeds(marks: Path, n: int | None) -> tuple[str, ...]:
    """An err_cmd that records each run in `marks` and succeeds only on its `n`-th run."""
    ok = "false" if n is None else f'[ "$(wc -l < {marks})" -eq {n} ]'
    return ("sh", "-c", f"echo run >> {marks}; {ok}")


@pytest.mark.parametrize("tries", [1, 2, 3])
def test_err_cmd_runs_after_every_failed_attempt(tmp_path: Path, tries: int) -> None:
    marks = tmp_path / "marks"
    c = ctx(stdin=("exit 1",), datum_tries=tries, err_cmd=_nth_run_succeeds(marks, 1))
    res, log = _run(tmp_path, c)
    assert not res.ok and res.recovered and res.attempts == tries
    assert len(_lines(marks)) == tries
    assert log.count("err_cmd") == tries and f"attempt {tries}/{tries} failed" in log


@pytest.mark.parametrize("succeeds_on", [1, 2, 3, None])
def test_one_successful_err_cmd_recovers_the_datum_whatever_the_later_ones_do(
    tmp_path: Path, succeeds_on: int | None
) -> None:
    marks = tmp_path / "marks"
    c = ctx(stdin=("exit 1",), datum_tries=3, err_cmd=_nth_run_succeeds(marks, succeeds_on))
    res, _log = _run(tmp_path, c)
    assert not res.ok and res.attempts == 3
    assert res.recovered is (succeeds_on is not None)
    assert len(_lines(marks)) == 3


@pytest.mark.parametrize("fails", [1, 2])
def test_a_later_successful_attempt_wins_over_a_recovery(tmp_path: Path, fails: int) -> None:
    counter, marks = tmp_path / "n", tmp_path / "marks"
    script = (f"echo x >> {counter}",
              f'[ "$(wc -l < {counter})" -le {fails} ] && exit 1',
              "echo done > /pfs/out/f")  # fmt: skip
    c = ctx(stdin=script, datum_tries=3, err_cmd=_nth_run_succeeds(marks, 1))
    res, _log = _run(tmp_path, c)
    assert res.ok and not res.recovered and res.attempts == fails + 1
    assert [o.path for o in res.outputs] == ["/f"]
    assert len(_lines(marks)) == fails


def test_err_cmd_sees_the_failed_attempts_pfs_env_stdin_and_working_dir(tmp_path: Path) -> None:
    marks, wd = tmp_path / "marks", tmp_path / "wd"
    marks.mkdir()
    wd.mkdir()
    c = ctx(
        stdin=("echo partial > /pfs/out/f", f"pwd > {marks}/cmd_pwd", "exit 1"),
        err_cmd=("sh",),
        err_stdin=(f"cat /pfs/out/f > {marks}/out", f'cat "$c" > {marks}/input',
                   f'echo "$PACH_DATUM_ID $PACH_JOB_ID $GREETING" > {marks}/env',
                   f"pwd > {marks}/err_pwd"),
        env={"GREETING": "hi"}, working_dir=str(wd),
    )  # fmt: skip
    res, log = _run(tmp_path, c)
    assert res.recovered and not res.outputs, log
    assert (marks / "out").read_text() == "partial\n"  # what the attempt left in /pfs/out
    assert (marks / "input").read_text() == "0.5\n"
    assert (marks / "env").read_text().split() == [datum().id, "j" * 32, "hi"]
    assert (marks / "err_pwd").read_text() == (marks / "cmd_pwd").read_text() == f"{wd}\n"


@pytest.mark.parametrize(("code", "recovered"), [(0, True), (7, True), (9, False)])
def test_err_cmd_exit_status_counts_like_the_transforms(
    tmp_path: Path, code: int, recovered: bool
) -> None:
    c = ctx(stdin=("exit 5",), err_cmd=("sh", "-c", f"exit {code}"),
            accept_return_code=frozenset({7}))  # fmt: skip
    res, _log = _run(tmp_path, c)
    assert not res.ok and res.recovered is recovered


def test_err_cmd_does_not_run_once_the_attempt_timed_out(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    c = ctx(cmd=("sleep", "30"), datum_timeout=0.5, datum_tries=2,
            err_cmd=("sh", "-c", f"echo run >> {marks}"))  # fmt: skip
    res, log = _run(tmp_path, c)
    assert not res.ok and not res.recovered and res.attempts == 2
    assert not marks.exists() and log.count("err_cmd not run") == 2


def test_err_cmd_only_gets_what_is_left_of_the_datum_timeout(tmp_path: Path) -> None:
    # The attempt uses 2 of its 3 s; err_cmd needs 2 more: killed (a fresh 3 s would suffice).
    marks = tmp_path / "marks"
    c = ctx(stdin=("sleep 2", "exit 1"), datum_timeout=3.0,
            err_cmd=("sh", "-c", f"sleep 2; echo run >> {marks}"))  # fmt: skip
    res, log = _run(tmp_path, c)
    assert not res.ok and not res.recovered, log
    assert not marks.exists() and "err_cmd failed" in log


def test_err_cmd_does_not_run_when_the_outputs_cannot_be_stored(tmp_path: Path) -> None:
    # Pachyderm uploads /pfs/out after Datum.run, outside err_cmd's reach.
    marks = tmp_path / "marks"
    c = ctx(stdin=("ln -s /etc/passwd /pfs/out/x",), datum_tries=2,
            err_cmd=("sh", "-c", f"echo run >> {marks}"))  # fmt: skip
    res, log = _run(tmp_path, c)
    assert not res.ok and not res.recovered and res.attempts == 2, log
    assert not marks.exists()
