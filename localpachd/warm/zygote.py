"""The zygote: a single-threaded process that preloads imports and forks one child per datum.

Started by `localpachd.runtime_warm` (never forked from the multi-threaded gRPC server) with
the startup environment of its datums, through the BOOT line below, and given one end of a
SOCK_SEQPACKET control socket. Each request on it is a JSON datum description plus four file
descriptors: a reply socket for that datum and the datum's stdin, stdout and stderr (a prewarm,
`"preload_only": true`, sends the reply socket only: the zygote preloads, answers `watch` and
forks nothing). The zygote
preloads what the target imports (first time only: the installed and project modules its source
names, never the target itself nor modules of the datum's own sys.path[0]), then on the reply
socket:
`{"watch": {file: mtime}}` (after a preload, before the fork), `{"pid": N}` after the fork,
and `{"status": wait_status}` once the child is reaped. The child itself sends `{"exit": code}`
just before it exits (see `child.py`), usually first. From the runtime: `kill` kills the
child's process group; `done` says the exit code arrived; EOF without `done` kills the child.

It serves many datums at once (one selector loop; children run in parallel), and exits — killing
its children — when the control socket reaches EOF, i.e. when the server goes away. Requests
wait in a queue (everything the socket holds is read whenever the loop looks at it); the next
one served is the oldest fork of a target already preloaded, else the oldest request: a datum
whose imports are loaded never waits behind another pipeline's preload sent earlier (a loader
zygote is given every prewarm at CreatePipeline, before the first datum arrives).
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import sysconfig
from collections import deque
from typing import Any

from localpachd import forkserve
from localpachd.forkserve import close_fds, kill, send
from localpachd.warm import codecache, hugepages, scan
from localpachd.warm.child import become_datum

# Run as `python -c BOOT ROOT FD`: records what a bare interpreter has loaded and its sys.path
# before anything else is imported, and finds this package even when it is not installed.
BOOT = (
    "import sys;s=frozenset(sys.modules);b=sys.path[0 if sys.flags.safe_path else 1:];"
    "sys.path.insert(0,sys.argv[1]);from localpachd.warm.zygote import main;"
    "main(s,list(b),int(sys.argv[2]))"
)
_MAX_REQUEST = 1 << 20
_HIGH_FD = 1000  # where a child keeps its reply socket, out of the datum's way
# Memoised, argument-free lookups that preloaded libraries run on first use and that depend
# only on the installed packages. Filled once here, every child inherits the result instead
# of recomputing it (narwhals scans every distribution's entry points: ~6 ms per sklearn call).
PRIMERS = (("narwhals.plugins", "_discover_entrypoints"),)
_LIBC = ctypes.CDLL(None)


class Zygote(forkserve.ForkServer):
    """The loop's state: `forkserve.ForkServer`'s, the requests not served yet, what is
    preloaded."""

    def __init__(self, control: socket.socket, base_path: list[str]) -> None:
        super().__init__(control)
        self.base_path = base_path
        self.queue: deque[tuple[dict[str, Any], list[int]]] = deque()  # requests not served yet
        self.preloaded: set[tuple[str, str]] = set()
        self.library_dirs = _library_dirs()
        self.own = _own_modules()

    def serve(self) -> tuple[dict[str, Any], list[int]] | None:
        """Serve until the control socket closes (None); in a forked child, its request."""
        self._listen()
        while True:
            for key, _ in self.sel.select(0 if self.queue else None):
                if key.data == "control":
                    if not self._receive():
                        self._shutdown()
                        return None
                elif key.data == "wake":
                    self._reap()
                else:
                    self._on_reply_socket(key.fileobj, key.data)  # type: ignore[arg-type]
            if self.queue:  # one request per round: reaps and kills are never held up
                job = self._on_request(*self._next())
                if job is not None:
                    return job

    def _receive(self) -> bool:
        """Queue every request the control socket holds now; False once it reached EOF."""
        while True:
            try:
                msg, fds = forkserve.recv_fds(
                    self.control, _MAX_REQUEST,
                    getattr(socket, "MSG_CMSG_CLOEXEC", 0) | socket.MSG_DONTWAIT)  # fmt: skip
            except (BlockingIOError, InterruptedError):
                return True
            if not msg:
                close_fds(fds)
                return False
            self.queue.append((json.loads(msg), fds))

    def _next(self) -> tuple[dict[str, Any], list[int]]:
        """The oldest fork whose target is preloaded (it runs at once), else the oldest request."""
        for i, (req, fds) in enumerate(self.queue):
            if not req.get("preload_only") and (req["kind"], req["name"]) in self.preloaded:
                del self.queue[i]
                return req, fds
        return self.queue.popleft()

    def _on_request(self, req: dict[str, Any], fds: list[int]
                    ) -> tuple[dict[str, Any], list[int]] | None:  # fmt: skip
        reply = socket.socket(fileno=fds[0])
        stdio = fds[1:4]
        watch = self._preload(req)
        if req.get("preload_only"):  # a prewarm: import now, run nothing
            send(reply, {"watch": watch or {}})
            reply.close()
            close_fds(stdio)
            return None
        if watch is not None:
            send(reply, {"watch": watch})  # before the fork: the child's `exit` comes later
        try:
            pid = os.fork()
        except OSError as e:
            send(reply, {"error": f"fork failed: {e}"})
            reply.close()
            close_fds(stdio)
            return None
        if pid == 0:
            req["reply_fd"] = fcntl.fcntl(reply.fileno(), fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
            self._close_in_child(reply)
            return req, stdio
        close_fds(stdio)
        self._adopt(pid, reply)
        return None

    def _on_reply_socket(self, reply: socket.socket, pid: int) -> None:
        """`kill`: kill the child's group. `done`: the child already reported its exit code
        (it is being torn down). EOF without `done`: the client is gone, kill the child."""
        if self.children.get(pid) is not reply or reply.fileno() < 0:
            return  # reaped and closed earlier in this same select() round
        msg = forkserve.command(reply)
        if msg == b"kill":
            kill(pid)
            return
        if msg != b"done":
            kill(pid)
        self._release(pid, reply)

    def _preload(self, req: dict[str, Any]) -> dict[str, int] | None:
        """Import what the target imports, once per target; returns the files to watch."""
        key = (req["kind"], req["name"])
        if key in self.preloaded:
            return None
        self.preloaded.add(key)
        source_file, names = _first_imports(req, self.base_path)
        saved = sys.path[:]
        sys.path[:] = self.base_path
        try:
            for name in scan.preload_names(names, req.get("path0")):
                try:
                    importlib.import_module(name)
                except BaseException:  # noqa: BLE001 - the child will raise it, exactly as python would
                    pass
            _prime()
        finally:
            sys.path[:] = saved
        self._forget_project_modules()
        codecache.remember(source_file)  # the target itself: each child runs it as __main__
        _flush_all()
        gc.collect()
        gc.freeze()  # children then share these pages instead of copying them on GC
        hugepages.collapse_heap()
        self.own = _own_modules()
        return self._watch(req.get("path0"))

    def _forget_project_modules(self) -> None:
        """Drop the modules that live outside the Python installation (the project's own code,
        PYTHONPATH entries) once their imports are loaded: each child imports them afresh, so
        their module-level code runs with the datum's own environment and working directory,
        and an edited file is always the one that runs. Installed libraries stay preloaded."""
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if (path and not path.startswith(self.library_dirs) and name != "__main__"
                    and name not in self.own and not name.startswith("localpachd.")):
                codecache.remember(path)  # the child imports it again, without compiling it
                del sys.modules[name]

    def _watch(self, path0: str | None) -> dict[str, int]:
        """mtime of every loaded source file outside the Python installation (editable installs
        and the zygote's own code): the runtime checks them before each datum and restarts the
        zygote when one changed."""
        files: dict[str, int] = {}
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or path.startswith(self.library_dirs):
                continue
            if path0 and path.startswith(path0 + os.sep):
                continue
            try:
                files[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
        return files

    def _close_in_child(self, reply: socket.socket) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.sel.close()
        for other in self.children.values():
            if other is not None:
                other.close()
        self.children.clear()
        self._drop_queue()
        reply.close()
        self.control.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _drop_queue(self) -> None:
        """Close the descriptors of requests not served (a child must not hold other datums'
        reply sockets and stdio: their runtimes would never see them close)."""
        while self.queue:
            close_fds(self.queue.popleft()[1])

    def _shutdown(self) -> None:
        self._drop_queue()
        for pid in list(self.children):
            kill(pid)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.control.close()


def _first_imports(req: dict[str, Any], base_path: list[str]) -> tuple[str | None, list[str]]:
    """The target's source file and the names it imports (read, not executed)."""
    path0 = req.get("path0")
    if req["kind"] == "script":
        source_file: str | None = os.path.join(req["cwd"], req["name"])
        package = None
    else:
        source_file, package = _module_source(req["name"], path0, base_path)
    if not source_file:
        return None, []
    try:
        with open(source_file, "rb") as f:
            return source_file, scan.imports_in_source(f.read(), package)
    except OSError:
        return None, []


def _module_source(name: str, path0: str | None, base_path: list[str]) -> tuple[str | None, str]:
    local = scan.local_file(name, path0)
    if local is not None:
        return local or None, name.rpartition(".")[0]
    saved = sys.path[:]
    sys.path[:] = base_path
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            name = f"{name}.__main__"
            spec = importlib.util.find_spec(name)
    except BaseException:  # noqa: BLE001 - a broken package: the child reports it
        spec = None
    finally:
        sys.path[:] = saved
    origin = spec.origin if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return None, ""
    return origin, name.rpartition(".")[0]


def _prime() -> None:
    for module_name, function in PRIMERS:
        module = sys.modules.get(module_name)
        fn = getattr(module, function, None)
        if fn is not None and hasattr(fn, "cache_info"):  # only ever a memoised function
            try:
                fn()
            except Exception:  # noqa: BLE001 - a primer is an optimisation, never an error
                pass


def _own_modules() -> list[str]:
    return [n for n in sys.modules if n == "localpachd" or n.startswith("localpachd.")]


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(os.path.join(d, "") for d in dirs)


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - the zygote's own stdio is /dev/null or the server's
            pass
    _LIBC.fflush(None)


def main(startup: frozenset[str], base_path: list[str], control_fd: int) -> None:
    """Entry point (see BOOT): serve, and in a forked child become the datum."""
    control = socket.socket(fileno=control_fd)
    codecache.install()
    zygote = Zygote(control, base_path)
    job = zygote.serve()
    if job is None:
        return
    become_datum(job[0], job[1], base_path, startup, zygote.own, job[0].pop("reply_fd"))
