"""What the two fork servers share: the namespace launcher (`runtime_nslaunch`) and the warm
zygote (`warm.zygote`), and the one request send of their clients (`runtime_nsclient`,
`warm.pool`).

Both servers are single-threaded processes that read requests on a SOCK_SEQPACKET control
socket, fork one child per request and answer on that request's own reply socket: `{"pid": N}`
after the fork, `{"status": wait_status}` once the child is reaped. `ForkServer` holds that
loop's state (selector, SIGCHLD wakeup pipe, children by pid with their reply sockets) and the
steps that are the same on both sides: listening, adopting a child, releasing a reply socket,
reaping. What a message on a reply socket means (`kill`, `done`, EOF) stays with each server.

A leaf: the standard library only, and nothing the two processes did not import already (the
launcher starts as `python -I -S` and must stay small); it forks nothing itself.
"""

from __future__ import annotations

import array
import json
import os
import selectors
import signal
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class ForkServer:
    """A fork server loop's state (see the module doc); subclasses read requests and fork."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        # Each unreaped child's reply socket by pid (None once released: still to be reaped).
        self.children: dict[int, socket.socket | None] = {}

    def _listen(self) -> None:
        """Select on the control socket (data "control") and on SIGCHLD (data "wake")."""
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.control, selectors.EVENT_READ, "control")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _adopt(self, pid: int, reply: socket.socket) -> None:
        """A child just forked: watch its reply socket (data: the pid) and answer its pid."""
        self.children[pid] = reply
        self.sel.register(reply, selectors.EVENT_READ, pid)
        send(reply, {"pid": pid})

    def _release(self, pid: int, reply: socket.socket) -> None:
        """Close the child's reply socket: nobody waits for its status any more."""
        self.sel.unregister(reply)
        reply.close()
        self.children[pid] = None

    def _reap(self) -> None:
        """Reap every child that has exited (SIGCHLD woke the loop)."""
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._reaped(pid, status)

    def _reaped(self, pid: int, status: int) -> None:
        """Forget a reaped child; answer its status where its reply socket is still open."""
        reply = self.children.pop(pid, None)
        if reply is not None:
            self.sel.unregister(reply)
            send(reply, {"status": status})
            reply.close()


def command(reply: socket.socket) -> bytes:
    """The client's message on a reply socket (`kill`, `done`), or b"" at EOF or error."""
    try:
        return reply.recv(64)
    except OSError:
        return b""


def send(reply: socket.socket, message: dict[str, Any]) -> None:
    """One JSON answer; a client gone away is not an error (its child is killed on EOF)."""
    try:
        reply.send(json.dumps(message).encode())
    except OSError:
        pass


def kill(pid: int) -> None:
    """SIGKILL to the child's process group, and to the child itself (before its setsid)."""
    for fn in (os.killpg, os.kill):
        try:
            fn(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def recv_fds(sock: socket.socket, limit: int, flags: int) -> tuple[bytes, list[int]]:
    """One request of at most `limit` bytes and its descriptors (at most 4), as
    `socket.recv_fds`, whose `flags` argument Python 3.11 ignores (so MSG_CMSG_CLOEXEC would
    not apply and MSG_DONTWAIT would block)."""
    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(limit, socket.CMSG_LEN(4 * fds.itemsize), flags)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class NotSent(Exception):
    """A request did not reach the fork server; `error` is the socket's error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def send_request(control: socket.socket, lock: AbstractContextManager[Any], request: bytes,
                 fds: list[int]) -> socket.socket:  # fmt: skip
    """(Client side.) Send one request with a new reply socket and `fds` over `control`, under
    `lock`; returns our end of the reply socket, where its answers arrive. NotSent if the send
    failed (nothing reached the server)."""
    reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with lock:
            socket.send_fds(control, [request], [theirs.fileno(), *fds])
    except OSError as e:
        reply.close()
        raise NotSent(e) from e
    finally:
        theirs.close()
    return reply
