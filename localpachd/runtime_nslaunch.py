"""The namespace launcher: one small single-threaded process that starts every namespace datum.

Started by `localpachd.runtime_nsclient` (once per runtime, at the first datum that gets a
private /pfs, and again if it dies) as `python -I -S -c BOOT ROOT FD`: never a fork of the
threaded server, and it imports only the standard library, `runtime_pfsmount` and `forkserve`
(the loop it shares with `warm.zygote`). A datum is a fork of it (about 2 ms of CPU with its
namespace and mounts) instead of a fresh interpreter running the `runtime_pfsmount` helper
(7-14 ms before the mounts).

Protocol (as `warm.zygote`'s): the control socket is SOCK_SEQPACKET; each request is one JSON
message (`argv`, `env`, `cwd`, `root`, `binds`) with four descriptors: a reply socket for that
datum and the datum's stdin, stdout and stderr. The launcher forks; the child becomes the datum
(`become`: parent-death signal, own session, default signals, stdio, working directory, the
mount namespace of `runtime_pfsmount.enter`, exec of argv with exactly env), and the launcher
answers `{"pid": N}` at once and `{"status": wait_status}` once it reaped the child (`{"error":
...}` if it could not fork: nothing ran). On the reply socket the server sends `kill` (SIGKILL to
the child's process group, and to the child itself before its setsid); EOF there before the
status also kills the child (nobody waits for it any more). EOF on the control socket (the
server stopped, or died) kills every child, reaps them and exits; should the launcher die
first, each child gets SIGKILL from the kernel (PR_SET_PDEATHSIG), so no datum runs unwatched.
The C library calls are looked up once, and the host's top-level entries (what the new root is
built from) listed once and again whenever `/` itself changes, not in every child.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
from typing import Any, NoReturn

from localpachd import forkserve
from localpachd import runtime_pfsmount as pfsmount
from localpachd.forkserve import close_fds, kill, send

# Run as `python -I -S -c BOOT ROOT FD`: finds this package under ROOT without site-packages.
BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    "from localpachd.runtime_nslaunch import main;main(int(sys.argv[2]))"
)
# Below the default socket send buffer (wmem_default, 208 KiB): a larger request (a huge env)
# is started by the per-datum helper instead (`runtime_nsclient`).
MAX_REQUEST = 128 * 1024
_PR_SET_PDEATHSIG = 1
_HIGH_FD = 10  # where the child first moves the datum's stdio, clear of 0, 1 and 2
_RESTORE = ("SIGPIPE", "SIGXFSZ", "SIGCHLD")  # Python's (and our) own dispositions, undone


class Launcher(forkserve.ForkServer):
    """The loop's state: `forkserve.ForkServer`'s (a child whose reply socket the server closed
    is killed and still to be reaped), the C library, the host's top-level entries."""

    def __init__(self, control: socket.socket) -> None:
        super().__init__(control)
        self.lib = pfsmount.libc()  # looked up once, not in every child
        self.top: tuple[tuple[int, ...], tuple[pfsmount.Entry, ...]] = ((), ())

    def top_level(self) -> tuple[pfsmount.Entry, ...]:
        """The host's top-level entries, listed again whenever `/` itself changed."""
        st = os.stat("/")
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        if key != self.top[0]:
            self.top = (key, pfsmount.top_level())
        return self.top[1]

    def serve(self) -> None:
        """Serve until the control socket closes (a forked child never returns from here)."""
        self._listen()
        while True:
            for key, _ in self.sel.select():
                if key.data == "control":
                    if not self._on_request():
                        return
                elif key.data == "wake":
                    self._reap()
                else:
                    self._on_reply(key.fileobj, key.data)  # type: ignore[arg-type]

    def _on_request(self) -> bool:
        """Fork one datum (or answer why not); False at EOF (after the shutdown)."""
        msg, fds = _recv_fds(self.control)
        if not msg:
            self._shutdown()
            return False
        if len(fds) != 4:
            close_fds(fds)
            return True
        reply, stdio, me = socket.socket(fileno=fds[0]), fds[1:], os.getpid()
        try:
            req = json.loads(msg)
            if req.get("binds"):
                req["entries"] = self.top_level()
            pid = os.fork()
        except (OSError, ValueError) as e:
            send(reply, {"error": f"cannot start the datum: {e}"})
            reply.close()
            close_fds(stdio)
            return True
        if pid == 0:
            become(req, stdio, me, self.lib)
        close_fds(stdio)
        self._adopt(pid, reply)
        return True

    def _on_reply(self, reply: socket.socket, pid: int) -> None:
        """`kill`: kill the child's group. EOF: the server stopped waiting, kill the child."""
        if self.children.get(pid) is not reply:
            return  # reaped and closed earlier in this same select() round
        msg = forkserve.command(reply)
        kill(pid)
        if msg != b"kill":
            self._release(pid, reply)

    def _shutdown(self) -> None:
        """The server is gone: kill every child, reap each, report where still asked."""
        for pid in list(self.children):
            kill(pid)
        for pid in list(self.children):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            self._reaped(pid, status)
        self.control.close()


def become(req: dict[str, Any], stdio: list[int], launcher: int, lib: ctypes.CDLL) -> NoReturn:
    """In the forked child: turn into the datum's process (never returns). What it sets up is
    what `subprocess.Popen(argv, cwd=, env=, start_new_session=True)` gives, plus the namespace;
    errors go to the datum's stderr with the exit status the per-datum helper uses."""
    code = pfsmount.NOT_FOUND
    try:
        lib.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != launcher:  # it died before the line above: nobody watches us
            os._exit(pfsmount.SETUP_FAILED)
        os.setsid()
        signal.set_wakeup_fd(-1)
        for name in _RESTORE:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        _stdio(stdio)
        code = _enter_and_exec(req, lib)
    finally:
        os._exit(code)


def _stdio(stdio: list[int]) -> None:
    """The datum's stdin, stdout and stderr at 0, 1 and 2 (inheritable), the rest closed on exec."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD) for fd in stdio]
    for target, fd in enumerate(high):
        os.dup2(fd, target)


def _enter_and_exec(req: dict[str, Any], lib: ctypes.CDLL) -> int:
    argv: list[str] = req["argv"]
    try:
        os.chdir(req["cwd"])
    except OSError as e:
        return _fail(pfsmount.cannot_start(argv[0], e, req["cwd"]), pfsmount.NOT_FOUND)
    if req.get("binds"):
        try:
            binds = [(src, dst) for src, dst in req["binds"]]
            pfsmount.enter(req["root"], binds, lib, req["entries"])
        except OSError as e:
            return _fail(pfsmount.setup_failure(e), pfsmount.SETUP_FAILED)
    try:
        os.execvpe(argv[0], argv, req["env"])
    except OSError as e:
        return _fail(pfsmount.cannot_start(argv[0], e, argv[0]), pfsmount.NOT_FOUND)


def _fail(message: str, code: int) -> int:
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass
    return code


def _recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One request and its descriptors, received close-on-exec (without, they would leak into
    every later datum)."""
    return forkserve.recv_fds(sock, MAX_REQUEST, socket.MSG_CMSG_CLOEXEC)


def main(control_fd: int) -> None:
    """Entry point (see BOOT): serve; in a forked child `become` never returns."""
    os.set_inheritable(control_fd, False)  # pass_fds made it inheritable: not the datums'
    Launcher(socket.socket(fileno=control_fd)).serve()
    sys.exit(0)
