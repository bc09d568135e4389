"""The namespace launcher's pure parts: what a request can carry, how descriptors arrive, what
the new root is built from. (The launcher process itself: tests/integration/test_lpd_nslaunch.py.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

import pytest

from localpachd import runtime_nslaunch as nslaunch
from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumRun
from localpachd.runtime_nsclient import LauncherUnavailable, _request


def _run(argv: tuple[str, ...] = ("sh", "-c", "true"), env: dict[str, str] | None = None,
         cwd: str = "/slot") -> DatumRun:  # fmt: skip
    return DatumRun(argv=argv, env={"PATH": "/bin"} if env is None else env, cwd=Path(cwd),
                    stdin=None, stdout_path=Path("/log"), stderr_path=Path("/log"),
                    binds=(("/slot/pfs", "/pfs"), ("/slot/secret", "/s")))  # fmt: skip


def test_a_request_carries_the_datum_exactly() -> None:
    env = {"PATH": "/bin", "X": "a=b c", "U": "\udcff", "E": ""}  # undecodable bytes survive
    req = json.loads(_request(_run(("sh", "-c", "echo é"), env)))
    assert req == {"argv": ["sh", "-c", "echo é"], "env": env, "cwd": "/slot",
                   "root": pfsmount.ns_root((("/slot/pfs", "/pfs"),)),
                   "binds": [["/slot/pfs", "/pfs"], ["/slot/secret", "/s"]]}  # fmt: skip


@pytest.mark.parametrize("run", [
    _run(env={"A=B": "1"}),  # Popen refuses these: the fallback raises as it always did
    _run(env={"": "1"}),
    _run(env={"A": "x\0y"}),
    _run(argv=("sh", "-c", "a\0b")),
    _run(cwd="/sl\0ot"),
    _run(env={"BIG": "x" * nslaunch.MAX_REQUEST}),  # beyond one socket message
], ids=["= in a name", "empty name", "NUL in a value", "NUL in argv", "NUL in cwd", "too large"])
def test_what_a_request_cannot_carry_goes_to_the_helper(run: DatumRun) -> None:
    with pytest.raises(LauncherUnavailable):
        _request(run)


def test_received_descriptors_are_close_on_exec() -> None:
    """socket.recv_fds ignores its flags in Python 3.11: a descriptor received without
    MSG_CMSG_CLOEXEC would leak into every datum the launcher starts afterwards."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    sent = [r, w, r, w]
    for fd in sent:
        os.set_inheritable(fd, True)
    try:
        socket.send_fds(a, [b"{}"], sent)
        msg, fds = nslaunch._recv_fds(b)
        assert msg == b"{}" and len(fds) == 4
        assert all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in fds)
    finally:
        for fd in [r, w, *fds]:
            os.close(fd)
        a.close()
        b.close()


def test_the_new_root_holds_every_top_level_entry_but_pfs() -> None:
    entries = pfsmount.top_level()
    assert [name for name, _, _ in entries] == sorted(set(os.listdir("/")) - {"pfs"})
    for name, kind, target in entries:
        host = "/" + name
        assert kind == ("link" if os.path.islink(host) else "dir" if os.path.isdir(host)
                        else "file")  # fmt: skip
        assert target == (os.readlink(host) if kind == "link" else "")


def test_cannot_start_reads_as_popens_error() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "/bin/nope")  # execvpe's last try
    assert pfsmount.cannot_start("nope", exc, "nope") == (
        "localpachd: cannot start 'nope': [Errno 2] No such file or directory: 'nope'")
