"""Evaluates an untrusted Jsonnet template in a short-lived process with hard limits.

Called by `localpachd.pps.servicer.PPSServicer.RenderTemplate` through `evaluate`; the request
bounds and what the rendered JSON becomes are `localpachd.pps.template`'s. Pachyderm 2.7
renders in pachd itself (src/internal/pachtmpl/pachtmpl.go `RenderTemplate`: go-jsonnet,
`EvaluateAnonymousSnippet("main", …)`, each arg a string top-level argument, imports from
memory or http(s)) with no limit but the message size. A template is code: a loop, a deep
recursion or an allocation without end would take a server thread, a core or the memory. So each
evaluation runs in a new process (`python -I` on this file, which imports only the stdlib and
`_jsonnet`, Google's official binding) that first limits itself (address space, CPU seconds,
no core file, no file writes) and only then reads the template's code; the server kills it past
a wall-clock deadline, past `Limits.output` bytes of output, or when the call is cancelled or
the server stops. Imports are refused (an import callback that answers none: `import
"/etc/passwd"` fails), max_stack is bounded, and at most MAX_RUNNING evaluations run at once
(more are refused at once, not queued). The Jsonnet file name is `main`, as 2.7's, so error
positions read `main:3:5` and never name a server path.

Protocol: the request is JSON on stdin (a temporary file, so the server never blocks writing);
the answer on stdout is one byte, then text: `O` + the rendered JSON, `E` + Jsonnet's error,
`M` when Python ran out of memory. The evaluator aborts on a failed C++ allocation ("FATAL
ERROR: a memory allocation error occurred." on stderr), and the kernel ends it with SIGXCPU
(SIGKILL one second later) when its CPU time is up.
"""

from __future__ import annotations

import enum
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

MIB = 1024 * 1024
FILENAME = "main"  # as 2.7's EvaluateAnonymousSnippet("main", …)
POLL = 0.1  # seconds between checks of the deadline and of `stop` while the child runs
STDERR_KEPT = 4096  # bytes of the child's stderr kept to tell an allocation failure apart
ALLOC_FAILED = b"memory allocation error"


@dataclass(frozen=True)
class Limits:
    """What one evaluation may use. Pipeline templates render in milliseconds with a few MiB."""

    memory: int = 512 * MIB  # RLIMIT_AS of the child (the bare interpreter is ~20 MiB)
    cpu_seconds: int = 10  # RLIMIT_CPU: SIGXCPU then, SIGKILL a second later
    wall_seconds: float = 60.0  # generous: a busy machine may give the child little CPU
    output: int = 8 * MIB  # rendered JSON bytes; the response holds it twice (json and specs)
    max_stack: int = 500  # Jsonnet's own default (go-jsonnet's too)
    max_trace: int = 20  # stack frames in an error text


DEFAULT_LIMITS = Limits()
MAX_RUNNING = 4  # evaluations at once in this server process
_running = threading.BoundedSemaphore(MAX_RUNNING)


class Kind(enum.StrEnum):
    """Why an evaluation gave no JSON."""

    JSONNET = "jsonnet"  # the template's own error (syntax, runtime, import, stack): Jsonnet's text
    CPU = "cpu"
    MEMORY = "memory"
    TIME = "time"
    OUTPUT = "output"
    BUSY = "busy"
    STOPPED = "stopped"  # the call was cancelled or the server is stopping
    CRASHED = "crashed"  # the evaluator died some other way


class Failure(Exception):
    """An evaluation that gave no JSON: its `kind` and a text for the client (no server path)."""

    def __init__(self, kind: Kind, text: str) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind = kind
        self.text = text


def _never() -> bool:
    return False


def evaluate(template: str, args: Mapping[str, str], limits: Limits | None = None,
             stop: Callable[[], bool] = _never) -> str:
    """The JSON `template` renders to with `args` as string top-level arguments, or raise
    Failure. `stop()` is polled while the child runs: True kills it (Kind.STOPPED)."""
    lim = limits if limits is not None else DEFAULT_LIMITS
    if not _running.acquire(blocking=False):
        raise Failure(Kind.BUSY, f"{MAX_RUNNING} templates are being rendered already, "
                                 "localpachd's limit: retry once one has finished")
    try:
        return _run_child(template, dict(args), lim, stop)
    finally:
        _running.release()


def _run_child(template: str, args: dict[str, str], lim: Limits, stop: Callable[[], bool]
               ) -> str:  # fmt: skip
    request = {"template": template, "args": args, "limits": asdict(lim)}
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(request).encode())
        stdin.seek(0)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__)],
                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd="/", env=_child_env(), start_new_session=True,
            )
        except OSError as exc:  # its text would name the interpreter's path
            raise Failure(Kind.CRASHED, "could not start the Jsonnet evaluator "
                                        f"({exc.strerror or type(exc).__name__})") from exc
    try:
        out, err, cut = _collect(proc, lim, stop)
    finally:
        if proc.poll() is None:
            proc.kill()
        returncode = proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return _result(out, err, cut, returncode, lim)


def _child_env() -> dict[str, str]:
    """Nothing of the server's environment but what may be needed to start its interpreter."""
    return {k: os.environ[k] for k in ("LD_LIBRARY_PATH",) if k in os.environ}


def _collect(proc: subprocess.Popen[bytes], lim: Limits, stop: Callable[[], bool]
             ) -> tuple[bytes, bytes, Kind | None]:  # fmt: skip
    """The child's stdout and the head of its stderr, read until both end; or the reason it
    must be killed now (a deadline, too much output, `stop`) with what was read so far."""
    deadline = time.monotonic() + lim.wall_seconds
    out, err = bytearray(), bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout.fileno()
    bufs = {stdout: (out, 1 + lim.output), proc.stderr.fileno(): (err, STDERR_KEPT)}
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            if stop():
                return bytes(out), bytes(err), Kind.STOPPED
            if time.monotonic() > deadline:
                return bytes(out), bytes(err), Kind.TIME
            for key, _events in sel.select(timeout=POLL):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf, cap = bufs[key.fd]
                if key.fd == stdout and len(buf) + len(chunk) > cap:
                    return bytes(out), bytes(err), Kind.OUTPUT
                buf += chunk[: max(0, cap - len(buf))]  # stderr: the head kept, the rest drained
    return bytes(out), bytes(err), None


def _result(out: bytes, err: bytes, cut: Kind | None, returncode: int, lim: Limits) -> str:
    """The rendered JSON, or the Failure the child's answer and exit status say."""
    if cut is not None:
        raise Failure(cut, _CUT_TEXT[cut](lim))
    if returncode == 0 and out[:1] == b"O":
        return out[1:].decode("utf-8", errors="replace")
    if returncode == 0 and out[:1] == b"E":
        raise Failure(Kind.JSONNET, out[1:].decode("utf-8", errors="replace"))
    if out[:1] == b"M" or (returncode == -signal.SIGABRT and ALLOC_FAILED in err):
        raise Failure(Kind.MEMORY, f"rendering needed more than {_size(lim.memory)} of "
                                   "memory, localpachd's limit for a template")
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # the CPU limit's soft, then hard signal
        raise Failure(Kind.CPU, f"rendering used more than {lim.cpu_seconds} s of CPU, "
                                "localpachd's limit for a template: does it loop?")
    raise Failure(Kind.CRASHED, f"the Jsonnet evaluator stopped ({_status(returncode)})")


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def _status(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


_CUT_TEXT: dict[Kind, Callable[[Limits], str]] = {
    Kind.STOPPED: lambda lim: "rendering stopped: the call was cancelled or localpachd is "
                              "stopping",
    Kind.TIME: lambda lim: f"rendering took more than {lim.wall_seconds:g} s, localpachd's "
                           "limit for a template",
    Kind.OUTPUT: lambda lim: f"the rendered JSON is over {_size(lim.output)}, localpachd's "
                             "limit for a template",
}


# ------------------------------------------------------------------ the child (run as a script)


def _limit_self(lim: Mapping[str, Any]) -> None:
    """Limits this process sets on itself before it reads any of the template's code."""
    mem, cpu = int(lim["memory"]), int(lim["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU and SIGABRT would dump one
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # nothing here writes files


def _refuse_import(base: str, rel: str) -> tuple[str, bytes]:
    raise RuntimeError(f"import not available {rel}: localpachd's RenderTemplate resolves no "
                       "imports; put the imported text in the template")


def _child() -> None:
    request = json.loads(sys.stdin.buffer.read())
    lim = request["limits"]
    _limit_self(lim)
    answer: bytes
    try:
        import _jsonnet  # after the limits: its memory counts too

        rendered = _jsonnet.evaluate_snippet(
            FILENAME, request["template"], tla_vars=request["args"],
            import_callback=_refuse_import, max_stack=int(lim["max_stack"]),
            max_trace=int(lim["max_trace"]))
        answer = b"O" + rendered.encode("utf-8", errors="replace")
    except MemoryError:
        answer = b"M"
    except Exception as exc:  # Jsonnet's errors are RuntimeError; a NUL in the text ValueError
        answer = b"E" + str(exc).encode("utf-8", errors="replace")
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _child()
