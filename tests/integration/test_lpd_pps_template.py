"""RenderTemplate (Jsonnet pipeline templates, `pachctl create pipeline --jsonnet`) as Pachyderm
2.7 serves it (src/server/pps/server/api_server.go `RenderTemplate`, src/internal/pachtmpl):
string top-level arguments, one object or a list of specs, "template err: " + Jsonnet's text.
The template is untrusted code: it is evaluated in its own process, so a loop, an allocation, an
import or too much output ends in an error and the server goes on serving. Real server, real
python-pachyderm client (`_req`: 7.6 has no method for it), real Jsonnet evaluation.

The limit tests lower localpachd's limits (`runtime_template.DEFAULT_LIMITS`) so a runaway
template is stopped within a second of CPU, and assert what stopped it, never a time."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.wait import wait_for
from python_pachyderm.proto.v2.pps import pps_pb2
from python_pachyderm.proto.v2.pps import pps_pb2_grpc as grpc_pb
from python_pachyderm.service import Service

from localpachd import runtime_template
from localpachd.pps import template
from localpachd.server import start

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
LOOP = "local f(n) = f(n + 1) tailstrict; f(0)"  # constant stack: only CPU stops it
SERVER_PATHS = (str(Path(runtime_template.__file__).resolve().parent.parent), sys.executable,
                str(Path(sys.executable).resolve()))  # fmt: skip


def render(client: Any, source: str, **args: str) -> Any:
    return client._req(Service.PPS, "RenderTemplate", template=source, args=args)


def refused(client: Any, source: str, code: grpc.StatusCode, **args: str) -> str:
    """The error text of a render that must fail with `code` (and name no server path)."""
    with pytest.raises(grpc.RpcError) as err:
        render(client, source, **args)
    assert err.value.code() == code, err.value.details()
    text = str(err.value.details())
    assert not [p for p in SERVER_PATHS if p in text], text
    return text


def still_serves(client: Any) -> None:
    got = render(client, "function(name) {pipeline: {name: name}}", name="after")
    assert [s.pipeline.name for s in got.specs] == ["after"]
    client.create_repo("still-here")
    assert "still-here" in {r.repo.name for r in client.list_repo()}


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No server traceback and no error logged while the test runs."""
    caplog.set_level(logging.INFO)
    yield
    assert [r.getMessage() for r in caplog.records
            if r.exc_info or r.levelno >= logging.ERROR] == []  # fmt: skip


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> runtime_template.Limits:
    lim = runtime_template.Limits(memory=256 * 2**20, cpu_seconds=1, wall_seconds=120,
                                  output=256 * 1024)  # fmt: skip
    monkeypatch.setattr(runtime_template, "DEFAULT_LIMITS", lim)
    return lim


# ------------------------------------------------------------------ what 2.7 renders


SPEC = """
function(name, image, tries="3") {
  pipeline: {name: name, project: {name: "default"}},
  transform: {image: image, cmd: ["python3", "/app/%s.py" % name]},
  input: {pfs: {repo: "data", glob: "/*"}},
  datum_tries: std.parseInt(tries),
  datumTimeout: "30s",
}
"""


def test_args_reach_the_template_as_string_top_level_arguments(pach_client: Any, quiet: None
                                                               ) -> None:  # fmt: skip
    got = render(pach_client, SPEC, name="train", image="iris:1.2", tries="5")
    (spec,) = got.specs
    assert spec.pipeline.name == "train" and spec.pipeline.project.name == "default"
    assert (spec.transform.image, list(spec.transform.cmd)) == ("iris:1.2", ["python3",
                                                                             "/app/train.py"])
    assert (spec.datum_tries, spec.datum_timeout.seconds) == (5, 30)  # both field spellings
    assert spec.input.pfs.repo == "data" and spec.input.pfs.glob == "/*"
    assert '"name": "train"' in got.json  # the rendered text itself, as pachctl reads it
    assert render(pach_client, SPEC, name="x", image="i:1").specs[0].datum_tries == 3  # default
    # 2.7's test (api_server_test.go TestRenderTemplate), and a plain object ignoring args
    assert len(render(pach_client, "function (arg1) {pipeline: {name: arg1}}",
                      arg1="value1").specs) == 1  # fmt: skip
    assert render(pach_client, "{pipeline: {name: 'p'}}", unused="x").specs[0].pipeline.name == "p"


def test_a_missing_or_unknown_argument_is_jsonnet_error(pach_client: Any, quiet: None) -> None:
    text = refused(pach_client, SPEC, INVALID, name="only")
    assert text.startswith("template err: RUNTIME ERROR: function parameter image not bound")
    text = refused(pach_client, "function(a) {}", INVALID, a="1", b="2")
    assert "function has no parameter b" in text


def test_a_list_renders_several_pipelines(pach_client: Any, quiet: None) -> None:
    source = """
    function(stages) [
      {pipeline: {name: s}, transform: {cmd: ["true"]}, input: {pfs: {repo: "data", glob: "/"}},
       note_for_humans: "ignored in a list, as 2.7 decodes a list with encoding/json"}
      for s in std.split(stages, ",")
    ]
    """
    got = render(pach_client, source, stages="split,model,test,select")
    assert [s.pipeline.name for s in got.specs] == ["split", "model", "test", "select"]
    assert all(list(s.transform.cmd) == ["true"] for s in got.specs)
    assert len(render(pach_client, "[]").specs) == 0
    assert got.json.lstrip().startswith("[")


@pytest.mark.parametrize(("source", "expected"), [
    ("'just a string'", 'not a json object or list: "just a string"'),
    ("42", "not a json object or list: 42"),
    ("{pipeline: {name: 'p'}, no_such_field: 1}", "the rendered template is not a pipeline spec"),
    ("{pipeline: 'p'}", "the rendered template is not a pipeline spec"),
    ("[{pipeline: {name: 'p'}}, 'x']", "item 1 of the rendered list is not a pipeline spec"),
    ("[{datum_tries: 'many'}]", "item 0 of the rendered list is not a pipeline spec"),
])  # fmt: skip
def test_json_that_is_no_spec_is_refused(pach_client: Any, quiet: None, source: str,
                                         expected: str) -> None:  # fmt: skip
    assert expected in refused(pach_client, source, INVALID)


# ------------------------------------------------------------------ the template's own errors


@pytest.mark.parametrize(("source", "expected"), [
    ("{a: }", "template err: STATIC ERROR: main:1:5"),
    ("{pipeline: {name: 'p'}", "template err: STATIC ERROR: main:1:"),
    ("local x = ; x", "template err: STATIC ERROR: main:1:11"),
    ("function(a b) {}", "template err: STATIC ERROR: main:1:"),
])  # fmt: skip
def test_a_syntax_error_is_jsonnet_static_error(pach_client: Any, quiet: None, source: str,
                                                expected: str) -> None:  # fmt: skip
    assert refused(pach_client, source, INVALID).startswith(expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("error 'boom'", "template err: RUNTIME ERROR: boom"),
    ("{a: 1 - 'x'}", "template err: RUNTIME ERROR: "),
    ("std.parseInt('x')", "template err: RUNTIME ERROR: "),
    ("{a: {}.missing}", "template err: RUNTIME ERROR: field does not exist: missing"),
    ("assert 1 == 2 : 'nope'; {}", "template err: RUNTIME ERROR: nope"),
])  # fmt: skip
def test_a_runtime_error_is_jsonnet_runtime_error(pach_client: Any, quiet: None, source: str,
                                                  expected: str) -> None:  # fmt: skip
    text = refused(pach_client, source, INVALID)
    assert text.startswith(expected) and "main:1:" in text


@pytest.mark.parametrize("source", [
    'import "/etc/passwd"',
    'importstr "/etc/passwd"',
    'importbin "/etc/passwd"',
    'importstr "../../../../../../../../etc/hostname"',
    'import "lib.libsonnet"',
    'importstr "test_lpd_pps_template.py"',  # this very file, by a relative path
    'import "http://127.0.0.1:1/x.jsonnet"',  # 2.7 would fetch it; localpachd fetches nothing
    '{a: import "/etc/passwd"}.a',
])  # fmt: skip
def test_every_import_is_refused(pach_client: Any, quiet: None, source: str) -> None:
    text = refused(pach_client, source, INVALID)
    assert "template err: RUNTIME ERROR: couldn't open import" in text
    assert "import not available" in text and "resolves no imports" in text
    assert "root:" not in text and "RenderTemplate (Jsonnet" not in text  # no file's content


def test_a_nul_character_is_refused_before_evaluation(pach_client: Any, quiet: None) -> None:
    assert "NUL character at offset 5" in refused(pach_client, "{a: '\0'}", INVALID)
    assert "NUL character" in refused(pach_client, "function(a) a", INVALID, a="x\0y")


# ------------------------------------------------------------------ limits


def test_a_loop_is_stopped_by_the_cpu_limit(pach_client: Any, quiet: None,
                                            small_limits: runtime_template.Limits) -> None:
    nested = ("std.foldl(function(a, i) std.foldl(function(b, j) b + j, std.range(1, 100000), a),"
              " std.range(1, 100000), 0)")  # 10^10 additions in bounded memory
    for source in (LOOP, "local loop(i, acc) = loop(i + 1, acc + i) tailstrict; loop(0, 0)",
                   nested):
        text = refused(pach_client, source, EXHAUSTED)
        assert text.startswith("template err: rendering used more than 1 s of CPU"), text
    still_serves(pach_client)


@pytest.mark.parametrize("source", [
    "local f(n) = f(n + 1) + 1; f(0)",  # unbounded recursion
    "local f(n) = [f(n + 1)]; f(0)",  # unbounded nesting
    "local f(s) = f(s + s); f('x')",  # a string doubling on the stack
])  # fmt: skip
def test_recursion_is_stopped_by_max_stack(pach_client: Any, quiet: None, source: str,
                                           small_limits: runtime_template.Limits) -> None:
    text = refused(pach_client, source, INVALID)
    assert text.startswith("template err: RUNTIME ERROR: max stack frames exceeded"), text
    assert len(text) < template.MAX_TEXT + 100  # the trace is bounded
    still_serves(pach_client)


@pytest.mark.parametrize("source", [
    "std.makeArray(100000000, function(i) i)",
    "std.length(std.range(1, 100000000))",
    "std.length(std.repeat('x', 1000000000))",
])  # fmt: skip
def test_an_allocation_is_stopped_by_the_memory_limit(pach_client: Any, quiet: None, source: str,
                                                      small_limits: runtime_template.Limits
                                                      ) -> None:  # fmt: skip
    text = refused(pach_client, source, EXHAUSTED)
    assert text.startswith("template err: rendering needed more than 256 MiB of memory"), text
    still_serves(pach_client)


def test_too_much_output_is_stopped(pach_client: Any, quiet: None,
                                    small_limits: runtime_template.Limits) -> None:
    for source in ("std.range(1, 200000)", "std.repeat('x', 300000)",
                   "[{pipeline: {name: 'p' + i}} for i in std.range(1, 5000)]"):
        text = refused(pach_client, source, EXHAUSTED)
        assert text == ("template err: the rendered JSON is over 262144 bytes, localpachd's "
                        "limit for a template"), text
    still_serves(pach_client)


def test_the_wall_clock_deadline_stops_a_slow_render(pach_client: Any, quiet: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the CPU limit far above the deadline, so only the deadline can stop it
    lim = runtime_template.Limits(cpu_seconds=3600, wall_seconds=1)
    monkeypatch.setattr(runtime_template, "DEFAULT_LIMITS", lim)
    text = refused(pach_client, LOOP, EXHAUSTED)
    assert text.startswith("template err: rendering took more than 1 s"), text
    still_serves(pach_client)


def test_a_huge_template_or_arguments_are_refused_before_evaluation(pach_client: Any,
                                                                    quiet: None) -> None:
    big = "{pipeline: {name: 'p'}, description: '%s'}" % ("x" * template.MAX_TEMPLATE)
    text = refused(pach_client, big, EXHAUSTED)
    assert text.startswith(f"template err: the template is {len(big)} bytes, over localpachd's")
    text = refused(pach_client, "function(a) {}", EXHAUSTED, a="x" * template.MAX_ARGS)
    assert "the arguments are" in text
    with pytest.raises(grpc.RpcError) as err:  # past the message limit: grpc's own refusal
        render(pach_client, "x" * (21 * 2**20))
    assert err.value.code() == EXHAUSTED
    still_serves(pach_client)


def test_renders_past_the_concurrency_bound_are_refused(pach_client: Any, quiet: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_template, "_running", threading.BoundedSemaphore(1))
    assert runtime_template._running.acquire(blocking=False)  # one render "running"
    try:
        text = refused(pach_client, "{}", EXHAUSTED)
        assert "templates are being rendered already" in text
    finally:
        runtime_template._running.release()
    assert render(pach_client, "{pipeline: {name: 'p'}}").specs[0].pipeline.name == "p"


def test_every_way_an_evaluation_fails_has_its_status_code() -> None:
    assert set(template._CODE_OF_KIND) == {str(k) for k in runtime_template.Kind}


def _evaluators() -> list[int]:
    """Processes of this test's server (this process) evaluating a template."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"runtime_template" in cmd:
            out.append(int(pid))
    return out


def test_a_cancelled_call_kills_its_evaluator(pach_client: Any, quiet: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lim = runtime_template.Limits(cpu_seconds=3600, wall_seconds=3600)
    monkeypatch.setattr(runtime_template, "DEFAULT_LIMITS", lim)
    render(pach_client, "{}")  # makes the client's pps stub
    stub = pach_client._stubs[Service.PPS]
    future = stub.RenderTemplate.future(pps_pb2.RenderTemplateRequest(template=LOOP))
    wait_for(_evaluators, "the template's evaluator to start")
    future.cancel()
    wait_for(lambda: not _evaluators(), "the evaluator to be killed")
    still_serves(pach_client)


def test_a_server_stop_kills_a_running_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:  # fmt: skip
    lim = runtime_template.Limits(cpu_seconds=3600, wall_seconds=3600)
    monkeypatch.setattr(runtime_template, "DEFAULT_LIMITS", lim)
    server = start(data_dir=tmp_path / "pachd", host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            future = grpc_pb.APIStub(channel).RenderTemplate.future(
                pps_pb2.RenderTemplateRequest(template=LOOP))
            wait_for(_evaluators, "the template's evaluator to start")
            server.stop()
            assert not _evaluators()  # stop waited for the call, which killed its evaluator
            with pytest.raises(grpc.RpcError):
                future.result(timeout=120)
    finally:
        server.stop()
