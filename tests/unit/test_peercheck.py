"""localpachd.peercheck: the pure parsers of grpc peers and /proc content (hostile input: short
lines, junk, lookalikes), and the /proc lookup on a /proc-shaped tree in tmp (each bound), plus
one walk of the real /proc."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localpachd import peercheck as pc

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
LO = V4("127.0.0.1")

# Real rows (x86, little-endian words): 127.0.0.1:41397 -> 127.0.0.1:8080, and [::1] likewise.
ROW4 = ("   3: 0100007F:A1B5 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0"
        "        0 4242 1 0000000000000000 20 4 30 10 -1")
ROW6 = ("   0: 00000000000000000000000001000000:A1B5 00000000000000000000000001000000:1F90 01 "
        "00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 1 10 -1")
ROW_MAPPED = ("   1: 0000000000000000FFFF00000100007F:A1B5 0000000000000000FFFF00000100007F:1F90 "
              "01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 20 4 1 10 -1")
HEADER4 = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
           "timeout inode")


@pytest.mark.parametrize(("peer", "want"), [
    ("ipv4:127.0.0.1:41397", (LO, 41397)),
    ("ipv6:[::1]:5", (V6("::1"), 5)),
    ("ipv6:%5B::1%5D:43564", (V6("::1"), 43564)),
    ("ipv6:%5b::1%5d:43564", (V6("::1"), 43564)),
    ("ipv6:[::ffff:127.0.0.1]:80", (LO, 80)),  # mapped: the client's socket is AF_INET
    ("ipv6:%5B::ffff:127.0.0.1%5D:80", (LO, 80)),
])
def test_parse_peer_reads_grpc_peers(peer: str, want: tuple[object, int]) -> None:
    assert pc.parse_peer(peer) == want


@pytest.mark.parametrize("peer", [
    "", "ipv4", "ipv4:", "ipv4:127.0.0.1", "ipv4:127.0.0.1:", "ipv4:127.0.0.1:0",
    "ipv4:127.0.0.1:65536", "ipv4:127.0.0.1:999999", "ipv4:127.0.0.1:+5", "ipv4:127.0.0.1:-5",
    "ipv4:127.0.0.1: 5", "ipv4:127.0.0.1:\u0663", "ipv4:1.2.3:5", "ipv4:::1:5", "ipv6:::1:5",
    "ipv6:[::1:5", "ipv6:[fe80::1%eth0]:5", "ipv6:[]:5", "ipv6:[127.0.0.1]:5",
    "unix:/tmp/sock", "unix-abstract:x", "vsock:3:5", "IPV4:127.0.0.1:5", "ipv4:[127.0.0.1]:5",
    "ipv4:127.0.0.1:5:6",
])
def test_parse_peer_refuses_anything_else(peer: str) -> None:
    with pytest.raises(ValueError):
        pc.parse_peer(peer)


def test_parse_socket_line_reads_rows_of_both_tables() -> None:
    assert pc.parse_socket_line(ROW4, "little") == pc.SocketLine(LO, 41397, LO, 8080, 1, 4242)
    assert pc.parse_socket_line(ROW6, "little") == pc.SocketLine(
        V6("::1"), 41397, V6("::1"), 8080, 1, 4343)
    assert pc.parse_socket_line(ROW_MAPPED, "little") == pc.SocketLine(
        LO, 41397, LO, 8080, 1, 4444)


def test_parse_socket_line_big_endian_words() -> None:
    row = ROW4.replace("0100007F", "7F000001")
    assert pc.parse_socket_line(row, "big") == pc.SocketLine(LO, 41397, LO, 8080, 1, 4242)
    row6 = ROW6.replace("00000000000000000000000001000000", "00000000000000000000000000000001")
    parsed = pc.parse_socket_line(row6, "big")
    assert parsed is not None and parsed.local == V6("::1")


@pytest.mark.parametrize("line", [
    "", "\n", HEADER4, "   3:", "   3: 0100007F:A1B5", ROW4.split(" 4242")[0],
    ROW4.replace("0100007F:A1B5", "0100007F"), ROW4.replace("0100007F:A1B5", "0100007G:A1B5"),
    ROW4.replace("0100007F:A1B5", "100007F:A1B5"), ROW4.replace("0100007F:A1B5", "0100007F:A1B"),
    ROW4.replace("0100007F:A1B5", "0100007F:ZZZZ"), ROW4.replace(" 4242 ", " 42x2 "),
    ROW4.replace(" 01 ", " QQ "), ROW4.replace("3:", "3", 1), "junk " * 20,
    ROW6.replace("00000000000000000000000001000000:A1B5", "0000000000000000000000000100000:A1B5"),
])
def test_parse_socket_line_skips_junk(line: str) -> None:
    assert pc.parse_socket_line(line, "little") is None


def test_matches_only_the_client_side_of_our_connection() -> None:
    row = pc.parse_socket_line(ROW4, "little")
    assert row is not None
    assert pc.matches(row, (LO, 41397), 8080)
    assert not pc.matches(row, (LO, 41397), 8081)  # another endpoint
    assert not pc.matches(row, (LO, 41398), 8080)  # another connection
    assert not pc.matches(row, (V4("127.0.0.2"), 41397), 8080)
    server_side = pc.SocketLine(LO, 8080, LO, 41397, 1, 77)
    assert not pc.matches(server_side, (LO, 41397), 8080)
    for other in (pc.SocketLine(LO, 41397, LO, 8080, 6, 4242),  # TIME_WAIT
                  pc.SocketLine(LO, 41397, LO, 8080, 1, 0),  # no inode
                  pc.SocketLine(LO, 41397, V4("10.0.0.1"), 8080, 1, 4242)):  # not loopback
        assert not pc.matches(other, (LO, 41397), 8080)


@pytest.mark.parametrize(("text", "want"), [
    ("123 (python3) S 45 123 123 0 -1", 45),
    ("123 (a b) c) S 46 1 1", 46),  # the command name holds ") " : count from the last ')'
    ("123 ((() R 47 1", 47),
    ("123 (x)\nS 48 1", 48),
    ("", None), ("123", None), ("123 (x)", None), ("123 (x) S", None), ("123 (x) S -1", None),
    ("123 (x) S abc", None), ("123 (x) S \u0663", None), ("123 x S 45", None),
])
def test_parse_stat_ppid(text: str, want: int | None) -> None:
    assert pc.parse_stat_ppid(text) == want


def test_parse_pids_and_socket_links() -> None:
    assert pc.parse_pids("12 34 \n") == [12, 34]
    assert pc.parse_pids("12 x 34 -5 \u0663 99999999999999 5") == [12, 34, 5]
    assert pc.parse_pids("") == []
    assert pc.socket_inode("socket:[4242]") == 4242
    for link in ("socket:[]", "socket:[12a]", "socket:[-1]", "socket:4242", "pipe:[4242]",
                 "anon_inode:[eventfd]", "/dev/null", "socket:[4242", "socket:[\u0663]",
                 "socket:[" + "9" * 30 + "]", ""):
        assert pc.socket_inode(link) is None, link


def test_environ_value_takes_the_exact_name_first_occurrence() -> None:
    name = "LOCALPACHD_WORKER_TOKEN"
    assert pc.environ_value(b"A=1\0LOCALPACHD_WORKER_TOKEN=abc\0B=2\0", name) == b"abc"
    assert pc.environ_value(b"LOCALPACHD_WORKER_TOKEN=a\0LOCALPACHD_WORKER_TOKEN=b\0", name) == b"a"
    assert pc.environ_value(b"LOCALPACHD_WORKER_TOKEN=\0", name) == b""
    for data in (b"", b"\0\0", b"LOCALPACHD_WORKER_TOKEN_X=abc\0", b"XLOCALPACHD_WORKER_TOKEN=abc",
                 b"LOCALPACHD_WORKER_TOKEN\0", b"A=LOCALPACHD_WORKER_TOKEN=abc\0", b"\xff\xfe"):
        assert pc.environ_value(data, name) is None, data


@pytest.mark.fuzz
@given(st.text(max_size=200))
def test_parsers_take_any_text(text: str) -> None:
    for parse in (pc.parse_stat_ppid, pc.parse_pids, pc.socket_inode):
        parse(text)
    assert pc.parse_socket_line(text) is None or text.split()[0].endswith(":")
    pc.environ_value(text.encode("utf-8", "surrogatepass"), "X")
    pc.placeholder_offset(text.encode("utf-8", "surrogatepass"), "X")
    pc.env_block_start(text)
    try:
        pc.parse_peer(text)
    except ValueError:
        pass


@pytest.mark.fuzz
@given(st.binary(max_size=200))
def test_diag_reply_parser_takes_any_bytes(data: bytes) -> None:
    try:
        got = pc.parse_diag_reply(data)
    except ValueError:
        return
    assert got is None or got > 0


# --- the lookup on a /proc-shaped tree ------------------------------------------------------

SERVER = 100
TOKEN = "t0ken"
VAR = "LOCALPACHD_WORKER_TOKEN"


def _process(proc: Path, pid: int, ppid: int, env: bytes = b"", sockets: tuple[int, ...] = (),
             children: list[int] | None = None) -> None:
    """A /proc/<pid> with stat, environ, fd links and (when `children` is given) the
    task/<pid>/children file."""
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "stat").write_text(f"{pid} (py thon) S {ppid} 1 1 0")
    (d / "environ").write_bytes(env)
    os.symlink("/dev/null", d / "fd" / "0")
    for n, inode in enumerate(sockets, start=3):
        os.symlink(f"socket:[{inode}]", d / "fd" / str(n))
    if children is not None:
        (d / "task" / str(pid)).mkdir(parents=True)
        (d / "task" / str(pid) / "children").write_text(" ".join(map(str, children)) + " ")


@pytest.fixture(params=["children", "stat"])
def proc(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Server 100 -> 101 (token, socket 4242) -> 102 (no token, socket 4343); 200 outside the
    tree (token, socket 4545); the server itself holds socket 4646. Walked through the
    children files, or (as on kernels without them) through every stat's parent pid."""
    tree = request.param == "children"
    p = tmp_path / "proc"
    token = f"A=1\0{VAR}={TOKEN}\0".encode()
    _process(p, SERVER, 1, token, (4646,), [101] if tree else None)
    _process(p, 101, SERVER, token, (4242,), [102] if tree else None)
    _process(p, 102, 101, b"A=1\0", (4343,), [] if tree else None)
    _process(p, 200, 1, token, (4545,), [] if tree else None)
    (p / "self").mkdir()  # non-numeric entries are skipped
    (p / "net").mkdir()
    rows = [HEADER4, ROW4, ROW4.replace(":A1B5", ":A1B6").replace("4242", "4343")]
    (p / "net" / "tcp").write_text("\n".join(rows) + "\n")
    return p


def test_descendants_and_holders(proc: Path) -> None:
    assert pc.descendants(SERVER, str(proc)) == [101, 102]
    assert pc.descendants(101, str(proc)) == [102]
    assert pc.holders(4242, [101, 102], str(proc)) == [(101, str(proc / "101" / "fd" / "3"))]
    assert pc.holders(4242, [999], str(proc)) == []  # gone


def test_judge_allows_only_a_descendant_with_the_token(proc: Path) -> None:
    p = str(proc)
    assert pc.judge(4242, SERVER, VAR, TOKEN, p) == pc.Verdict(True, "", 101)
    assert not pc.judge(4242, SERVER, VAR, TOKEN + "x", p).allowed
    assert not pc.judge(4242, SERVER, VAR, TOKEN[:-1], p).allowed
    refused = pc.judge(4343, SERVER, VAR, TOKEN, p)  # a descendant without the token
    assert not refused.allowed and refused.pid == 102 and VAR in refused.reason
    assert TOKEN not in refused.reason
    assert not pc.judge(4545, SERVER, VAR, TOKEN, p).allowed  # outside the tree
    assert not pc.judge(4646, SERVER, VAR, TOKEN, p).allowed  # the server itself


def test_peercheck_finds_the_socket_and_caches_per_inode(proc: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getpid", lambda: SERVER)
    check = pc.PeerCheck(8080, VAR, TOKEN, str(proc))
    assert check.check("ipv4:127.0.0.1:41397").allowed
    assert check.check("ipv4:127.0.0.1:41397").allowed
    assert check.walks == 1  # one walk per connection
    assert not check.check("ipv4:127.0.0.1:41398").allowed  # 4343: no token
    assert check.walks == 2
    for peer in ("ipv4:127.0.0.1:41399", "ipv6:[::1]:41397", "unix:/x", "junk"):
        verdict = check.check(peer)  # no such connection, or not a TCP peer at all
        assert not verdict.allowed and verdict.reason
    assert check.walks == 2
    assert not pc.PeerCheck(8081, VAR, TOKEN, str(proc)).check("ipv4:127.0.0.1:41397").allowed


def test_every_bound_refuses_rather_than_guessing(proc: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getpid", lambda: SERVER)
    for name, value in (("MAX_PIDS", 1), ("MAX_FDS", 2), ("MAX_SOCKET_LINES", 0)):
        with monkeypatch.context() as m:
            m.setattr(pc, name, value)
            verdict = pc.PeerCheck(8080, VAR, TOKEN, str(proc)).check("ipv4:127.0.0.1:41397")
            assert not verdict.allowed and "cannot be identified" in verdict.reason, name
    if not (proc / str(SERVER) / "task").exists():
        monkeypatch.setattr(pc, "MAX_SCAN", 2)
        assert not pc.PeerCheck(8080, VAR, TOKEN, str(proc)).check("ipv4:127.0.0.1:41397").allowed


def test_environ_is_read_bounded(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (proc / "101" / "environ").write_bytes(b"A=" + b"x" * 100 + f"\0{VAR}={TOKEN}\0".encode())
    assert pc.judge(4242, SERVER, VAR, TOKEN, str(proc)).allowed
    monkeypatch.setattr(pc, "MAX_ENVIRON", 64)  # the token lies beyond what is read
    assert not pc.judge(4242, SERVER, VAR, TOKEN, str(proc)).allowed


def test_real_proc_descendants_include_a_grandchild() -> None:
    """Whichever way this kernel offers (task/*/children, or every stat's parent pid)."""
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
            "'import sys; sys.stdin.read()'], stdin=subprocess.PIPE); print(p.pid, flush=True); "
            "sys.stdin.read(); p.stdin.close(); p.wait()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        found = pc.descendants(os.getpid())
        assert child.pid in found and grandchild in found
        assert os.getpid() not in found
        assert found.index(child.pid) < found.index(grandchild)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=120)


# --- the client socket's inode: netlink sock_diag, and /proc/net/tcp{,6} ---------------------

def _reply(kind: int, body: bytes) -> bytes:
    return pc._NLMSG.pack(pc._NLMSG.size + len(body), kind, 0, 1, 0) + body


def _diag_msg(state: int, inode: int) -> bytes:
    return pc._DIAG_MSG.pack(2, state, 0, 0, b"\0\1", b"\0\2", bytes(16), bytes(16), 0,
                             bytes(8), 0, 0, 0, 0, inode)


def test_diag_request_names_the_client_side_of_the_connection() -> None:
    req = pc.diag_request((LO, 41397), LO, 8080)
    length, kind, flags = pc._NLMSG.unpack_from(req)[:3]
    assert (length, kind, flags) == (len(req), pc.SOCK_DIAG_BY_FAMILY, pc.NLM_F_REQUEST)
    body = req[pc._NLMSG.size :]
    assert body[:2] == bytes([2, 6])  # AF_INET, TCP
    assert body[8:12] == (41397).to_bytes(2, "big") + (8080).to_bytes(2, "big")
    assert body[12:16] == LO.packed and body[28:32] == LO.packed
    six = pc.diag_request((V6("::1"), 5), V6("::1"), 6)[pc._NLMSG.size :]
    assert six[0] == 10 and six[12:28] == V6("::1").packed


@pytest.mark.parametrize(("data", "want"), [
    (_reply(pc.SOCK_DIAG_BY_FAMILY, _diag_msg(1, 4242)), 4242),
    (_reply(pc.SOCK_DIAG_BY_FAMILY, _diag_msg(6, 4242)), None),  # TIME_WAIT
    (_reply(pc.SOCK_DIAG_BY_FAMILY, _diag_msg(1, 0)), None),
    (_reply(pc.NLMSG_ERROR, (-2).to_bytes(4, "little", signed=True) + bytes(16)), None),
])
def test_parse_diag_reply(data: bytes, want: int | None) -> None:
    assert pc.parse_diag_reply(data) == want


@pytest.mark.parametrize("data", [
    b"", b"\0" * 15, _reply(pc.SOCK_DIAG_BY_FAMILY, _diag_msg(1, 4242)[:20]),
    _reply(3, b""),  # NLMSG_DONE
    _reply(pc.NLMSG_ERROR, (-1).to_bytes(4, "little", signed=True)),  # EPERM: not ours to say
    _reply(pc.NLMSG_ERROR, b"\0\0"),
])
def test_parse_diag_reply_refuses_junk(data: bytes) -> None:
    with pytest.raises(ValueError):
        pc.parse_diag_reply(data)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_both_lookups_find_a_real_connections_client_socket(family: str) -> None:
    host = "127.0.0.1" if family == "v4" else "::1"
    kind = socket.AF_INET if family == "v4" else socket.AF_INET6
    try:
        server = socket.socket(kind)
        server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    with server:
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection((host, port)) as client, server.accept()[0]:
            addr = ipaddress.ip_address(host)
            peer = (addr, client.getsockname()[1])
            inode = os.fstat(client.fileno()).st_ino
            assert pc.scan_inode(peer, port) == inode
            try:
                assert pc.diag_inode(peer, port) == inode
            except OSError:
                pass  # no sock_diag on this kernel: client_inode uses the scan
            assert pc.client_inode(peer, port) == inode
            assert pc.client_inode(peer, port + 1 if port < 65535 else 1) is None
            assert pc.client_inode((addr, peer[1] ^ 1 or 1), port) is None


# --- a forked child's token over the placeholder ---------------------------------------------

def test_placeholder_offset_only_for_the_first_entry_of_the_name() -> None:
    ph = pc.PLACEHOLDER.encode()
    block = b"A=1\0" + VAR.encode() + b"=" + ph + b"\0"
    assert pc.placeholder_offset(block, VAR) == 4 + len(VAR) + 1
    assert pc.placeholder_offset(VAR.encode() + b"=" + ph, VAR) == len(VAR) + 1
    for block in (b"", b"A=1\0", VAR.encode() + b"=" + ph[:-1] + b"\0",
                  VAR.encode() + b"=abc\0" + VAR.encode() + b"=" + ph + b"\0",  # not the first
                  VAR.encode() + b"X=" + ph + b"\0", b"X" + VAR.encode() + b"=" + ph):
        assert pc.placeholder_offset(block, VAR) is None, block


def test_env_block_start() -> None:
    fields = " ".join(str(n) for n in range(3, 53))  # fields 3..52: env_start is field 50
    assert pc.env_block_start(f"1 (a) b) {fields}") == 50
    assert pc.env_block_start("1 (a) S 1 2 3") is None
    assert pc.env_block_start("") is None
    assert pc.env_block_start(f"1 (a) {fields}".replace(" 50 ", " x ")) is None


def test_present_writes_only_a_real_token_over_a_real_placeholder() -> None:
    """In a child process: refused without a placeholder or with a non-token; with both, its
    /proc environ shows the token where the placeholder was, and nothing else changed."""
    code = (
        "import os, sys\nfrom localpachd import peercheck as pc\n"
        "before = open('/proc/self/environ', 'rb').read()\n"
        f"assert not pc.present('NOPE', 'a' * 32)\n"
        f"assert not pc.present({VAR!r}, 'A' * 32) and not pc.present({VAR!r}, 'a' * 31)\n"
        f"assert pc.present({VAR!r}, '0123456789abcdef' * 2)\n"
        "after = open('/proc/self/environ', 'rb').read()\n"
        "assert after == before.replace(pc.PLACEHOLDER.encode(), b'0123456789abcdef' * 2)\n"
        f"assert os.environ[{VAR!r}] == pc.PLACEHOLDER  # os.environ is not the block\n"
    )
    env = pc.reserve({"PATH": os.environ.get("PATH", ""), "A": "1"}, VAR)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=False)
    assert got.returncode == 0, got.stderr
    without = subprocess.run([sys.executable, "-c", "from localpachd import peercheck as pc; "
                              f"assert not pc.present({VAR!r}, 'a' * 32)"],
                             env={"PATH": os.environ.get("PATH", "")}, check=False)
    assert without.returncode == 0
