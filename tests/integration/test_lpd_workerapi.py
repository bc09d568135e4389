"""localpachd's worker API for one worker slot (issue 15, datum batching): `SlotEndpoint` serves
NextDatum only to its slot's user code, the process localpachd started with the slot's token.

Real endpoints, the real python-pachyderm client (`Client().worker.next_datum`) in real
subprocesses with PPS_WORKER_GRPC_PORT (and the token, or not) in their environment; the test
process itself is refused. Also: EndOfBatch holds the call until close(), oversized requests,
Status/Cancel, callers in private namespaces, and that threads do not grow.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from google.protobuf import empty_pb2
from helpers.wait import HANG, wait_for
from python_pachyderm.proto.v2.worker import worker_pb2, worker_pb2_grpc

from localpachd import peercheck, workerapi
from localpachd import runtime_pfsmount as pfsmount
from localpachd.workerapi import WORKER_TOKEN_ENV, EndOfBatch, SlotEndpoint

# The slot's user code: sends each error of the spec in turn (from `threads` threads at once
# when asked) and prints one JSON line per answer; `orphan` first leaves the server's process
# tree (its parent exits, so it is re-parented outside).
CLIENT = r'''
import json, os, sys, threading
spec = json.loads(sys.argv[1])
if spec.get("orphan"):
    parent = os.getpid()
    if os.fork():
        os._exit(0)
    while os.getppid() == parent:
        threading.Event().wait(0.01)
if "fork_token" in spec:  # a warm zygote's child: os.environ replaced, no exec
    child = os.fork()
    if child:
        os._exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
    os.environ.clear()
    os.environ.update(PPS_WORKER_GRPC_PORT=spec["port"], LOCALPACHD_WORKER_TOKEN=spec["fork_token"])
    if spec.get("present"):
        from localpachd import peercheck
        assert peercheck.present("LOCALPACHD_WORKER_TOKEN", spec["fork_token"])
out = open(spec["out"], "w") if spec.get("out") else sys.stdout
import python_pachyderm
worker = python_pachyderm.Client().worker
lock = threading.Lock()
def call(error):
    if isinstance(error, dict):
        error = error["char"] * error["n"]
    try:
        got = {"env": list(worker.next_datum(error=error).env)}
    except Exception as exc:
        got = {"code": exc.code().name, "details": exc.details()}
    with lock:
        out.write(json.dumps(got) + "\n")
        out.flush()
if spec.get("threads"):
    ts = [threading.Thread(target=call, args=(e,)) for e in spec["errors"]]
    [t.start() for t in ts]
    [t.join() for t in ts]
else:
    for e in spec["errors"]:
        call(e)
'''


class Slot:
    """A slot's next_datum callback: answers `steps` in order (a Mapping is the env, an
    exception is raised), then EndOfBatch; counts calls at once; may wait on `gate` first."""

    def __init__(self, steps: list[Mapping[str, str] | Exception] | None = None,
                 gate: threading.Event | None = None) -> None:
        self.steps = list(steps or [])
        self.gate = gate
        self.errors: list[str] = []
        self.active = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, error: str) -> Mapping[str, str]:
        with self._lock:
            self.errors.append(error)
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            if self.gate is not None:
                assert self.gate.wait(HANG)
            step = self.steps.pop(0) if self.steps else EndOfBatch()
            if isinstance(step, Exception):
                raise step
            return step
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def client_script(tmp_path: Path) -> Path:
    path = tmp_path / "client.py"
    path.write_text(CLIENT)
    return path


@pytest.fixture
def endpoints() -> Iterator[Callable[..., tuple[SlotEndpoint, str]]]:
    """Start endpoints (closed at the end): (endpoint, its token)."""
    started: list[SlotEndpoint] = []

    def make(slot: Callable[[str], Mapping[str, str]], name: str = "slot-0",
             ) -> tuple[SlotEndpoint, str]:
        token = secrets.token_hex(16)
        endpoint = SlotEndpoint(slot, token, name)
        started.append(endpoint)
        endpoint.start()
        return endpoint, token

    yield make
    for endpoint in started:
        endpoint.close()


def _env(port: int, token: str | None, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (WORKER_TOKEN_ENV, "PACH_CONFIG")}
    env.update(PPS_WORKER_GRPC_PORT=str(port), HOME=str(tmp))
    if token is not None:
        env[WORKER_TOKEN_ENV] = token
    return env


def _spawn(script: Path, port: int, token: str | None, spec: dict[str, Any],
           prefix: list[str] | None = None) -> subprocess.Popen[str]:
    argv = [*(prefix or []), sys.executable, str(script), json.dumps(spec)]
    return subprocess.Popen(argv, env=_env(port, token, script.parent), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _answers(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _run(script: Path, port: int, token: str | None, errors: list[Any], **spec: Any,
         ) -> list[dict[str, Any]]:
    prefix = spec.pop("prefix", None)
    proc = _spawn(script, port, token, {"errors": errors, **spec}, prefix=prefix)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    return _answers(out)


def test_the_slots_user_code_gets_its_datums(endpoints: Any, client_script: Path) -> None:
    slot = Slot([{"PACH_DATUM_ID": "d1", "X": "a=b"}, {"PACH_DATUM_ID": "d2"}])
    endpoint, token = endpoints(slot)
    got = _run(client_script, endpoint.port, token, ["", "boom: datum d1 failed"])
    assert got == [{"env": ["PACH_DATUM_ID=d1", "X=a=b"]}, {"env": ["PACH_DATUM_ID=d2"]}]
    assert slot.errors == ["", "boom: datum d1 failed"]
    assert endpoint.walks == 1  # one /proc walk for the connection, not one per call


def test_calls_are_serialised(endpoints: Any, client_script: Path) -> None:
    """Three calls at once from three threads: the callback runs one at a time."""
    gate = threading.Event()
    slot = Slot([{"N": "1"}, {"N": "2"}, {"N": "3"}], gate=gate)
    endpoint, token = endpoints(slot)
    proc = _spawn(client_script, endpoint.port, token,
                  {"errors": ["a", "b", "c"], "threads": True})
    try:
        wait_for(lambda: endpoint.running == 3, "three calls in the endpoint")
        assert len(slot.errors) == 1  # the other two wait their turn
    finally:
        gate.set()
    out, err = proc.communicate(timeout=HANG)
    assert sorted(a["env"][0] for a in _answers(out)) == ["N=1", "N=2", "N=3"], err
    assert slot.most == 1 and sorted(slot.errors) == ["a", "b", "c"]


@pytest.mark.parametrize("variant", ["none", "empty", "longer", "shorter", "other-slot"])
def test_refused_without_this_slots_token(endpoints: Any, client_script: Path,
                                          variant: str) -> None:
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    other = Slot([{"B": "1"}])
    _, other_token = endpoints(other, "slot-1")
    carried = {"none": None, "empty": "", "longer": token + "0", "shorter": token[:-1],
               "other-slot": other_token}[variant]
    got = _run(client_script, endpoint.port, carried, ["", ""])
    assert [a["code"] for a in got] == ["PERMISSION_DENIED"] * 2
    assert WORKER_TOKEN_ENV in got[0]["details"] and "slot-0" in got[0]["details"]
    assert token not in got[0]["details"]
    assert slot.errors == [] and other.errors == []


def test_slot_a_cannot_call_slot_b(endpoints: Any, client_script: Path) -> None:
    a, b = Slot([{"A": "1"}]), Slot([{"B": "1"}])
    endpoint_a, token_a = endpoints(a, "slot-a")
    endpoint_b, _ = endpoints(b, "slot-b")
    got = _run(client_script, endpoint_b.port, token_a, [""])
    assert got[0]["code"] == "PERMISSION_DENIED" and b.errors == []
    assert _run(client_script, endpoint_a.port, token_a, [""]) == [{"env": ["A=1"]}]


def test_without_netlink_the_proc_tables_identify_callers(endpoints: Any, client_script: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Where sock_diag is unavailable (no module, seccomp), /proc/net/tcp{,6} say the same."""

    def refused(*args: object) -> None:
        raise OSError("sock_diag refused (injected)")

    monkeypatch.setattr(peercheck, "diag_inode", refused)
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    assert _run(client_script, endpoint.port, token, [""]) == [{"env": ["A=1"]}]
    got = _run(client_script, endpoint.port, "0" * 32, [""])
    assert got[0]["code"] == "PERMISSION_DENIED" and slot.errors == [""]


def test_token_set_after_start_is_not_the_initial_environment(endpoints: Any,
                                                              client_script: Path) -> None:
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    script = client_script.with_name("late.py")
    script.write_text(f"import os; os.environ[{WORKER_TOKEN_ENV!r}] = {token!r}\n"
                      + client_script.read_text())
    got = _run(script, endpoint.port, None, [""])
    assert got[0]["code"] == "PERMISSION_DENIED" and slot.errors == []


@pytest.mark.parametrize("present", [True, False])
def test_a_forked_child_presents_its_token_over_the_placeholder(
        endpoints: Any, client_script: Path, present: bool) -> None:  # fmt: skip
    """As a warm zygote's child: forked from a process started with `reserve`d env, its
    os.environ replaced. Without `present` its /proc environ is the zygote's: refused."""
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    proc = subprocess.Popen(
        [sys.executable, str(client_script), json.dumps({
            "errors": [""], "fork_token": token, "port": str(endpoint.port),
            "present": present})],
        env=peercheck.reserve(_env(endpoint.port, None, client_script.parent), WORKER_TOKEN_ENV),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    got = _answers(out)
    if present:
        assert got == [{"env": ["A=1"]}] and slot.errors == [""]
    else:
        assert got[0]["code"] == "PERMISSION_DENIED" and slot.errors == []


def test_refused_from_the_server_process_itself(endpoints: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    monkeypatch.setenv("PPS_WORKER_GRPC_PORT", str(endpoint.port))
    monkeypatch.setenv(WORKER_TOKEN_ENV, token)  # not in this process's initial environment,
    with pytest.raises(grpc.RpcError) as caught:  # and the server is not its own descendant
        python_pachyderm.Client("localhost", 1).worker.next_datum(error="")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a process started by this localpachd server" in caught.value.details()
    assert slot.errors == []


def test_refused_outside_the_servers_process_tree(endpoints: Any, client_script: Path,
                                                  tmp_path: Path) -> None:
    """A process with the right token whose parent exited (re-parented away from us)."""
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    out = tmp_path / "orphan.jsonl"
    _run(client_script, endpoint.port, token, [""], orphan=True, out=str(out))
    got = wait_for(lambda: out.exists() and _answers(out.read_text()), "the orphan's answer")
    assert got[0]["code"] == "PERMISSION_DENIED" and slot.errors == []


def test_end_of_batch_holds_the_call_until_close(endpoints: Any, client_script: Path) -> None:
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    proc = _spawn(client_script, endpoint.port, token, {"errors": ["", "", ""]})
    wait_for(lambda: len(slot.errors) == 2 and endpoint.running == 1, "the held call")
    assert proc.poll() is None  # still waiting for its answer
    closer = threading.Thread(target=endpoint.close)
    closer.start()
    endpoint.close()  # idempotent, also while another close runs
    closer.join(HANG)
    assert not closer.is_alive()
    out, err = proc.communicate(timeout=HANG)
    got = _answers(out)
    assert got[0] == {"env": ["A=1"]}
    assert got[1]["code"] == "CANCELLED" and "no datum remains" in got[1]["details"], err
    assert got[2]["code"] in ("CANCELLED", "UNAVAILABLE")  # closing, or closed
    assert len(slot.errors) == 2  # EndOfBatch once; the callback is not asked again
    endpoint.close()


def test_close_during_a_callback_ends_the_call_and_waits_for_the_callback(
        endpoints: Any, client_script: Path) -> None:  # fmt: skip
    gate = threading.Event()
    slot = Slot([{"A": "1"}], gate=gate)
    endpoint, token = endpoints(slot)
    proc = _spawn(client_script, endpoint.port, token, {"errors": [""]})
    wait_for(lambda: slot.active == 1, "the callback to run")
    closer = threading.Thread(target=endpoint.close)
    closer.start()
    try:
        out, err = proc.communicate(timeout=HANG)  # grpc ends the call after GRACE
        assert _answers(out)[0]["code"] in ("CANCELLED", "UNAVAILABLE"), err
        assert closer.is_alive()  # close() still waits for the callback to return
    finally:
        gate.set()
    closer.join(HANG)
    assert not closer.is_alive() and endpoint.running == 0


def test_held_call_ends_when_the_caller_is_killed(endpoints: Any, client_script: Path) -> None:
    slot = Slot([])
    endpoint, token = endpoints(slot)
    proc = _spawn(client_script, endpoint.port, token, {"errors": [""]})
    wait_for(lambda: endpoint.running == 1 and slot.errors, "the held call")
    proc.kill()
    proc.communicate(timeout=HANG)
    wait_for(lambda: endpoint.running == 0, "the held call to end with its caller")


def test_callback_failure_is_internal_with_a_short_message(endpoints: Any, client_script: Path,
                                                           caplog: Any) -> None:
    slot = Slot([RuntimeError("disk full " * 500), {"A": "1"}])
    endpoint, token = endpoints(slot)
    got = _run(client_script, endpoint.port, token, ["", ""])
    assert got[0]["code"] == "INTERNAL" and "RuntimeError: disk full" in got[0]["details"]
    assert len(got[0]["details"]) < 1000
    assert got[1] == {"env": ["A=1"]}
    assert [r.levelname for r in caplog.records if "next datum failed" in r.getMessage()] \
        == ["ERROR"]


def test_oversized_requests_are_refused_and_long_errors_cut(endpoints: Any,
                                                            client_script: Path) -> None:
    slot = Slot([{"A": "1"}, {"A": "2"}])
    endpoint, token = endpoints(slot)
    big = {"char": "x", "n": 2 * workerapi.MAX_REQUEST}
    long = {"char": "\u00e9", "n": 300_000}  # 600,000 bytes: within the request limit
    got = _run(client_script, endpoint.port, token, [big, long])
    assert got[0]["code"] == "RESOURCE_EXHAUSTED"
    assert got[1] == {"env": ["A=1"]} and len(slot.errors) == 1
    cut = slot.errors[0]
    assert cut.startswith("\u00e9" * 1000) and "error text truncated, 600000 bytes" in cut
    assert len(cut.encode()) < workerapi.MAX_ERROR + 100


def test_bound_error() -> None:
    assert workerapi.bound_error("short") == "short"
    limit = 16
    assert workerapi.bound_error("a" * 16, limit) == "a" * 16
    assert workerapi.bound_error("a" * 17, limit).startswith("a" * 16 + "\n[localpachd")
    cut = workerapi.bound_error("\u20ac" * 10, limit)  # 3-byte characters: cut on a boundary
    assert cut.startswith("\u20ac" * 5 + "\n") and "30 bytes" in cut


def test_status_and_cancel_are_unimplemented(endpoints: Any, caplog: Any,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    slot = Slot([])
    endpoint, _ = endpoints(slot)
    with grpc.insecure_channel(f"localhost:{endpoint.port}") as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        for call, request, name in ((stub.Status, empty_pb2.Empty(), "Status"),
                                    (stub.Cancel, worker_pb2.CancelRequest(), "Cancel")):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=HANG)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert f"/pachyderm.worker.Worker/{name} is not implemented" in caught.value.details()
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert slot.errors == []


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_both_loopbacks_answer_on_one_port(endpoints: Any, host: str) -> None:
    if host == "[::1]" and not workerapi.ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    endpoint, _ = endpoints(Slot([]))
    with grpc.insecure_channel(f"{host}:{endpoint.port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:  # reached, and refused: the test process
            worker_pb2_grpc.WorkerStub(channel).NextDatum(worker_pb2.NextDatumRequest(),
                                                          timeout=HANG)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _namespace_prefix(kind: str, tmp: Path) -> list[str]:
    if kind == "pfsmount":
        if pfsmount.mode() != pfsmount.NAMESPACE:
            pytest.skip("this kernel refuses private mount namespaces (rewrite mode)")
        (tmp / "pfs" / "out").mkdir(parents=True)
        return pfsmount.wrap([], [(str(tmp / "pfs"), "/pfs")], str(tmp / "ns"))  # then "--"
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", "--map-root-user", "--mount", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True, check=False).returncode:
        pytest.skip("unshare --user --mount is not available or refused here")
    return probe[:-1]


@pytest.mark.parametrize("kind", ["pfsmount", "user+mount"])
def test_a_caller_in_private_namespaces_is_recognised(endpoints: Any, client_script: Path,
                                                      tmp_path: Path, kind: str) -> None:
    """The slot's user code as the namespace /pfs mode runs it (runtime_pfsmount's helper),
    and in its own user and mount namespaces: found all the same, token and all."""
    slot = Slot([{"A": "1"}])
    endpoint, token = endpoints(slot)
    prefix = _namespace_prefix(kind, tmp_path)
    got = _run(client_script, endpoint.port, token, [""], prefix=prefix)
    assert got == [{"env": ["A=1"]}]
    other = _run(client_script, endpoint.port, "f" * 32, [""], prefix=prefix)
    assert other[0]["code"] == "PERMISSION_DENIED" and len(slot.errors) == 1


def _threads() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/task"))


def test_threads_do_not_grow_over_many_endpoints() -> None:
    """Each endpoint started, called once (handler threads made) and closed."""

    def one() -> None:
        endpoint = SlotEndpoint(Slot([]), secrets.token_hex(16), "cycle")
        port = endpoint.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError):
                worker_pb2_grpc.WorkerStub(channel).NextDatum(worker_pb2.NextDatumRequest(),
                                                              timeout=HANG)
        endpoint.close()

    for _ in range(3):
        one()
    before = _threads()
    for _ in range(50):
        one()
    wait_for(lambda: all(now <= was for now, was in zip(_threads(), before, strict=True)),
             lambda: f"threads back to {before} (python, all) after 50 endpoints: {_threads()}")


def test_start_once_close_idempotent_token_required() -> None:
    with pytest.raises(ValueError):
        SlotEndpoint(Slot([]), " ")
    endpoint = SlotEndpoint(Slot([]), secrets.token_hex(16))
    endpoint.close()  # before start
    with pytest.raises(RuntimeError):
        endpoint.start()
    with SlotEndpoint(Slot([]), secrets.token_hex(16)) as started:
        assert started.start() == started.port > 0
        with pytest.raises(RuntimeError):
            started.start()
    started.close()
