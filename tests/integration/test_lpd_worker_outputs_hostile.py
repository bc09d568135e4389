"""Output collection of hostile or careless datums (issue 12, item 5), with the real server and
real `sh` datum commands: symlink loops, links out of /pfs, dangling links, deep trees, link
bombs, sockets and FIFOs, and names Pachyderm cannot store (newline, CR, non-UTF-8, glob
characters). Each datum must end FAILED with a clear reason in the job's reason and the datum's
log (or, for what Pachyderm itself accepts, succeed as Pachyderm would), the job must end, and
the server must keep answering.

Each case is a script file in the input repo, run as one datum with `sh "$in"`; `$OUT` is
`/pfs/out` (rewritten by the worker like any `/pfs` in env values). The limits themselves
(entries, bytes, depth) are checked below with small values through `run_datum` and a real
subprocess, and Pachyderm's file-name rule directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.jobs import state, wait_jobs
from lpd_pps_helpers import pfs, put, read_repo
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.datums import Datum, DatumInput, RepoFile
from localpachd.outputs import UNREPRESENTABLE, Limits, OutputError, check_name
from localpachd.runtimes import make_runtime
from localpachd.worker import DatumIO, DatumResult, JobContext, run_datum

WAIT = 240.0  # generous: every case below ends in well under a second of work

# case -> (script, words the datum's failure reason must contain)
FAILING: dict[str, tuple[str, tuple[str, ...]]] = {
    "loop": ('ln -s . "$OUT/a"; ln -s . "$OUT/b"; echo x > "$OUT/f"', ("loop",)),
    "loop_pair": ('mkdir "$OUT/d"; ln -s ../e "$OUT/d/x"; mkdir "$OUT/e"; ln -s ../d "$OUT/e/y"',
                  ("loop",)),
    "self_link": ('ln -s self "$OUT/self"', ("loop",)),
    "passwd": ('ln -s /etc/passwd "$OUT/passwd"', ("/etc/passwd", "outside")),
    "outside_dir": ('ln -s /usr "$OUT/usr"', ("/usr", "outside")),
    "relative_escape": (f'ln -s {"../" * 40}etc "$OUT/etc"', ("outside",)),
    "dangling": ('ln -s "$OUT/nowhere" "$OUT/dangling"', ("dangling",)),
    "deep": ('cd "$OUT"; i=0; while [ $i -lt 100 ]; do mkdir d; cd d; i=$((i+1)); done; '
             "echo x > f", ("deep",)),
    "bomb": ('cd "$OUT"; mkdir d0; i=1; while [ $i -le 22 ]; do mkdir d$i; '
             "ln -s ../d$((i-1)) d$i/a; ln -s ../d$((i-1)) d$i/b; i=$((i+1)); done",
             ("entries",)),
    "socket": ('cd "$OUT" && python3 -c "import socket; socket.socket(socket.AF_UNIX).bind(\'s\')"',
               ("socket",)),
    "device_link": ('ln -s /dev/zero "$OUT/zero"', ("outside",)),
    "newline": ('echo x > "$OUT/$(printf \'a\\nb\')"', ("printable ASCII",)),
    "carriage_return": ('echo x > "$OUT/$(printf \'a\\rb\')"', ("printable ASCII",)),
    "non_utf8": ('echo x > "$OUT/$(printf \'caf\\351\')"', ("printable ASCII",)),
    "non_utf8_dir": ('mkdir "$OUT/$(printf \'\\377\')"; echo x > "$OUT/$(printf \'\\377\')/f"',
                     ("printable ASCII",)),
    "glob_char": ('echo x > "$OUT/a*b"', ("globbing character",)),
    "out_is_a_link": ('rm -r "$OUT"; ln -s /etc "$OUT"', ("/pfs/out is no longer a directory",)),
    "out_removed": ('rm -r "$OUT"', ("/pfs/out is no longer a directory",)),
}


def _pipeline(client: Any, name: str, repo: str) -> None:
    client.create_pipeline(
        name,
        transform=pps_pb2.Transform(cmd=["sh"], stdin=['sh "$in"'], env={"OUT": "/pfs/out"}),
        input=pfs(repo, "/*", name="in"), datum_tries=1,
        parallelism_spec=pps_pb2.ParallelismSpec(constant=2),
    )  # fmt: skip


def _datums(client: Any, pipeline: str, job_id: str) -> dict[str, Any]:
    """Input file name (the case) -> DatumInfo."""
    return {d.data[0].file.path.lstrip("/"): d for d in client.list_datum(pipeline, job_id)}


def _log(client: Any, pipeline: str, job_id: str, datum: Any) -> str:
    return "\n".join(m.message for m in client.get_job_logs(pipeline, job_id, datum=datum.datum))


def test_hostile_outputs_fail_their_datum_with_a_reason_and_the_server_stays_up(
    pach_client: Any,
) -> None:
    client = pach_client
    client.create_repo("cases")
    put(client, "cases", {f"/{k}": script for k, (script, _) in FAILING.items()})
    _pipeline(client, "hostile", "cases")
    job = wait_jobs(client, ["hostile"], timeout=WAIT)["hostile"]
    assert state(job) == "JOB_FAILURE"
    assert job.data_failed == len(FAILING), job.reason
    assert "datum(s) failed" in job.reason
    datums = _datums(client, "hostile", job.job.id)
    assert set(datums) == set(FAILING)
    for case, (_script, words) in FAILING.items():
        d = datums[case]
        assert pps_pb2.DatumState.Name(d.state) == "FAILED", case
        log = _log(client, "hostile", job.job.id, d)
        failure = [line for line in log.splitlines() if "failed:" in line]
        assert failure, f"{case}: no failure line in the datum's log:\n{log}"
        for word in words:
            assert word in failure[0], f"{case}: {word!r} not in {failure[0]!r}"
        assert "Traceback" not in log and "internal error" not in log, (case, log)
    # the server keeps answering, and the failed pipeline can be deleted
    assert {r.repo.name for r in client.list_repo()} >= {"cases", "hostile"}
    client.delete_pipeline("hostile")
    assert "hostile" not in {r.repo.name for r in client.list_repo()}


def test_links_into_the_datum_tree_are_copied_as_pachyderm_does(pach_client: Any) -> None:
    """Links into /pfs/<input> (Pachyderm's documented way to pass input files on), relative or
    absolute, to a file or a directory, the same directory linked twice, a link to a sibling
    file in /pfs/out: their contents are copied. A FIFO in /pfs/out is skipped, as Pachyderm
    skips named pipes."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/d/a.txt": "A", "/d/sub/b.txt": "B"})
    script = (
        'ln -s "$in/a.txt" "$OUT/abs.txt"',
        'ln -s ../in/d/a.txt "$OUT/rel.txt"',  # relative to the link's own directory
        'ln -s "$in" "$OUT/tree1"',
        'ln -s "$in" "$OUT/tree2"',
        'echo own > "$OUT/own.txt"',
        'ln -s own.txt "$OUT/sibling.txt"',
        'mkfifo "$OUT/pipe"',
    )
    client.create_pipeline(
        "links",
        transform=pps_pb2.Transform(cmd=["sh"], stdin=list(script), env={"OUT": "/pfs/out"}),
        input=pfs("data", "/d", name="in"), datum_tries=1,
    )  # fmt: skip
    job = wait_jobs(client, ["links"], timeout=WAIT)["links"]
    assert state(job) == "JOB_SUCCESS", job.reason
    assert read_repo(client, "links") == {
        "/abs.txt": "A", "/rel.txt": "A", "/own.txt": "own\n", "/sibling.txt": "own\n",
        "/tree1/a.txt": "A", "/tree1/sub/b.txt": "B", "/tree2/a.txt": "A", "/tree2/sub/b.txt": "B",
    }  # fmt: skip
    logs = [m.message for m in client.get_pipeline_logs("links")]
    assert any("named pipe" in m and "/pipe" in m for m in logs), logs


def test_a_datum_that_leaves_a_loop_ends_and_can_be_deleted(pach_client: Any) -> None:
    """The issue's exact case with the default datum_tries: the job ends (it used to wedge a
    server thread forever, past job_timeout and DeletePipeline)."""
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    client.create_pipeline(
        "loopy", transform=pps_pb2.Transform(
            cmd=["sh"], stdin=["ln -s . /pfs/out/a", "ln -s . /pfs/out/b"]),
        input=pfs("data", "/*"),
    )  # fmt: skip
    job = wait_jobs(client, ["loopy"], timeout=WAIT)["loopy"]
    assert state(job) == "JOB_FAILURE"
    assert "symbolic link loop" in job.reason, job.reason
    assert "output /a " in job.reason or "output /b " in job.reason, job.reason
    client.delete_pipeline("loopy")
    assert [p.pipeline.name for p in client.list_pipeline()] == []


# ---------------------------------------------------------------- limits, through run_datum


def _run(tmp_path: Path, script: str, limits: Limits) -> DatumResult:
    ctx = JobContext(project="default", pipeline="p", job_id="j" * 32, output_commit="j" * 32,
                     cmd=("sh",), stdin=(script,), datum_tries=2)  # fmt: skip
    f = RepoFile("/in.txt", "h", 1024)
    inp = DatumInput(name="in", project="default", repo="r", branch="master", commit="c" * 32,
                     path="/in.txt", hash="h", files=(f,))  # fmt: skip
    return run_datum(ctx, Datum((inp,)), tmp_path / "slot", tmp_path / "log",
                     DatumIO(make_runtime("subprocess"),
                             lambda _f, dest: dest.write_bytes(b"i" * 1024),
                             lambda src: ("h", len(src.read())), limits=limits))  # fmt: skip


@pytest.mark.parametrize(("script", "limits", "words"), [
    ("for i in 1 2 3; do head -c 1024 /dev/zero > /pfs/out/f$i; done",
     Limits(bytes=2048), "more than 2048 bytes"),
    ("for i in 1 2 3 4 5; do ln -s /pfs/in/in.txt /pfs/out/l$i; done",
     Limits(bytes=4096), "more than 4096 bytes"),
    ("mkdir /pfs/out/d; for i in 1 2 3 4 5; do ln -s ../../in /pfs/out/d/l$i; done",
     Limits(bytes=4096), "more than 4096 bytes"),
    ("cd /pfs/out; for i in $(seq 30); do mkdir d$i; done", Limits(entries=20),
     "more than 20 entries"),
    ("mkdir -p /pfs/out/a/b/c/d/e && echo x > /pfs/out/a/b/c/d/e/f", Limits(depth=3),
     "more than 3 directories deep"),
])  # fmt: skip
def test_output_limits_fail_every_attempt(
    tmp_path: Path, script: str, limits: Limits, words: str
) -> None:
    res = _run(tmp_path, script, limits)
    assert not res.ok and res.attempts == 2 and words in res.reason, res.reason
    log = (tmp_path / "log").read_text()
    assert log.count(words) == 2, log
    assert not (tmp_path / "slot").exists()


def test_outputs_within_the_limits_are_kept(tmp_path: Path) -> None:
    res = _run(tmp_path, "ln -s /pfs/in/in.txt /pfs/out/l; mkdir -p /pfs/out/a/b/c && "
               "echo x > /pfs/out/a/b/c/f", Limits(bytes=1030, entries=5, depth=3))
    assert res.ok, res.reason
    assert [(o.path, o.size) for o in res.outputs] == [("/a/b/c/f", 2), ("/l", 1024)]


@pytest.mark.parametrize(("name", "ok"), [
    (b"a/b c.txt", True), (b"model_C1_G2.pkl", True), (b"~`'\"#$%&,;<=>|", True),
    (b"a\nb", False), (b"a\rb", False), (b"a\tb", False), (b"caf\xc3\xa9", False),
    (b"\xff", False), (b"a\x7f", False), (b"a*b", False), (b"x?", False), (b"[x]", False),
    (b"{a}", False), (b"!x", False), (b"(x)", False), (b"a@b", False), (b"a+b", False),
    (b"^x", False), (b"a/../b", False), (b"./a", False),
])  # fmt: skip
def test_output_names_follow_pachyderms_validate_filename(name: bytes, ok: bool) -> None:
    if ok:
        check_name(name)
        return
    with pytest.raises(OutputError) as err:
        check_name(name)
    assert str(err.value).startswith(UNREPRESENTABLE)
    assert "\n" not in str(err.value) and "\r" not in str(err.value)
