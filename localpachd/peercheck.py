"""Who is calling? The process behind a loopback gRPC call, found through /proc, and its token.

Used by `localpachd.workerapi`: a worker slot's endpoint serves only the user code of that slot.
python-pachyderm's worker channel sends no metadata, so the caller cannot present a token in the
call; instead the endpoint finds the calling process and reads the token from its environment:

1. `parse_peer(context.peer())` -> the client side of the TCP connection (address, port);
2. the client socket's inode: asked of the kernel for exactly that connection (netlink
   sock_diag, a few microseconds), or where netlink is unavailable, the ESTABLISHED row of
   `/proc/net/tcp` / `tcp6` whose local end is that (address, port) and whose remote port is
   the endpoint's (a few milliseconds: the kernel walks its whole socket table);
3. the server process's descendants (`/proc/<pid>/task/*/children`, recursively; where the
   kernel lacks that file, the parent pid of every `/proc/<pid>/stat`), at most MAX_PIDS of
   them: the one holding `socket:[inode]` among its `/proc/<pid>/fd` links;
4. its `/proc/<pid>/environ` (its initial environment, read up to MAX_ENVIRON bytes): the
   variable named by the endpoint must equal the slot's token (`hmac.compare_digest`).

The server process itself is not its own descendant, so a call from it is refused; so is a
call from any process outside its process tree, and one from a descendant without the token
(another slot's user code carries another token). Every step is bounded and every failure
refuses (fail closed). `PeerCheck` caches the verdict per socket inode, so one /proc walk is
done per connection, not per call.

Threat model, honestly: this stops accidental and casual use of a slot's endpoint by another
slot's user code, by the server's own clients, and by anything outside the server's process
tree. It is not a boundary between processes of the same user: a same-uid process can ptrace
the slot's user code (or read its /proc/<pid>/environ) and take the token or the connection.
Real isolation would need another uid or a container per slot. Pid reuse between finding the
holder and reading its environment is closed by re-reading the fd link afterwards.

A process forked without exec (a warm zygote's child) keeps its parent's initial environment
block, whatever it puts in os.environ. For it, `reserve` adds a placeholder of the token's
length to the zygote's own startup environment, and `present(name, token)`, called by the
forked child, writes its token over that placeholder in its copy of the block (its own stack
memory: the zygote and other children are unchanged), so /proc/<pid>/environ shows it. Only the
placeholder's bytes are written: no pointer that code may have kept into the block changes.

The parsers (`parse_peer`, `diag_request`, `parse_diag_reply`, `parse_socket_line`,
`parse_stat_ppid`, `parse_pids`, `socket_inode`, `environ_value`) are pure and take hostile
input (short lines, junk) without raising anything but ValueError where documented; the rest
reads /proc under `proc` (netlink only for the real /proc).
"""

from __future__ import annotations

import collections
import ctypes
import hmac
import ipaddress
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ESTABLISHED = 0x01  # /proc/net/tcp "st" of an established connection
MAX_SOCKET_LINES = 65_536  # per /proc/net/tcp{,6}: more sockets than this -> refuse
MAX_PIDS = 4_096  # descendants of the server looked at
MAX_SCAN = 16_384  # /proc entries read for parent pids where task/*/children is missing
MAX_FDS = 65_536  # fd links read in all, per lookup
MAX_ENVIRON = 2 * 1024 * 1024  # bytes of /proc/<pid>/environ read
MAX_SMALL = 1024 * 1024  # bytes of a children or stat file read
CACHE_SIZE = 1_024  # verdicts kept per PeerCheck (one per connection seen)


# --- pure parsers --------------------------------------------------------------------------

def parse_peer(peer: str) -> tuple[IPAddress, int]:
    """grpc's `context.peer()` ("ipv4:127.0.0.1:5", "ipv6:[::1]:5", "ipv6:[::ffff:127.0.0.1]:5";
    grpc 1.5x+ percent-encodes the brackets: "ipv6:%5B::1%5D:5") -> (address, port); an
    IPv4-mapped IPv6 address becomes its IPv4 address. ValueError for anything else."""
    kind, sep, rest = peer.partition(":")
    rest = rest.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    host, colon, port_text = rest.rpartition(":")
    if not sep or not colon or kind not in ("ipv4", "ipv6"):
        raise ValueError(f"not a TCP peer: {peer[:80]!r}")
    if kind == "ipv6":
        if not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"IPv6 peer without brackets: {peer[:80]!r}")
        host = host[1:-1]
    address = _address(host, kind)
    return address, _port(port_text)


def _address(text: str, kind: str) -> IPAddress:
    if "%" in text or not text:
        raise ValueError(f"unexpected peer address {text[:80]!r}")
    address: IPAddress = (ipaddress.IPv4Address(text) if kind == "ipv4"
                          else ipaddress.IPv6Address(text))  # fmt: skip
    return _unmapped(address)


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 0 < int(text) < 65536:
        raise ValueError(f"not a port: {text[:20]!r}")
    return int(text)


@dataclass(frozen=True)
class SocketLine:
    """One row of /proc/net/tcp or tcp6 (addresses unmapped: ::ffff:a.b.c.d is a.b.c.d)."""

    local: IPAddress
    local_port: int
    remote: IPAddress
    remote_port: int
    state: int
    inode: int


def parse_socket_line(line: str, byteorder: str = sys.byteorder) -> SocketLine | None:
    """A /proc/net/tcp{,6} row, or None for the header or anything malformed. The kernel prints
    each 32-bit word of an address as a native integer in hex (`byteorder` of this machine)."""
    fields = line.split()
    if len(fields) < 10 or not fields[0].endswith(":"):
        return None
    try:
        local, local_port = _hex_endpoint(fields[1], byteorder)
        remote, remote_port = _hex_endpoint(fields[2], byteorder)
        state, inode = int(fields[3], 16), int(fields[9], 10)
    except ValueError:
        return None
    return SocketLine(local, local_port, remote, remote_port, state, inode)


def _hex_endpoint(text: str, byteorder: str) -> tuple[IPAddress, int]:
    host, sep, port = text.partition(":")
    if not sep or len(port) != 4 or len(host) not in (8, 32):
        raise ValueError(text)
    raw = bytes.fromhex(host)  # ValueError on junk
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    if byteorder == "little":
        words = [w[::-1] for w in words]
    packed = b"".join(words)
    address: IPAddress = (ipaddress.IPv4Address(packed) if len(packed) == 4
                          else ipaddress.IPv6Address(packed))  # fmt: skip
    return _unmapped(address), int(port, 16)


# netlink sock_diag (linux/sock_diag.h, linux/inet_diag.h)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # inet_diag_msg: ... uid, inode
_NO_COOKIE = b"\xff" * 8
DIAG_TIMEOUT = 5.0


def diag_request(peer: tuple[IPAddress, int], server: IPAddress, port: int) -> bytes:
    """A SOCK_DIAG_BY_FAMILY request for the one TCP socket whose local end is `peer` and whose
    remote end is (`server`, `port`): the client side of a connection to us."""
    family = socket.AF_INET if peer[0].version == 4 else socket.AF_INET6
    sockid = (struct.pack("!HH", peer[1], port) + peer[0].packed.ljust(16, b"\0")
              + server.packed.ljust(16, b"\0") + struct.pack("=I", 0) + _NO_COOKIE)
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << ESTABLISHED) + sockid
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body


def parse_diag_reply(data: bytes) -> int | None:
    """The socket inode from the kernel's answer to `diag_request`; None when no such socket
    (or not established). ValueError for an answer that is neither."""
    if len(data) < _NLMSG.size:
        raise ValueError(f"short netlink answer ({len(data)} bytes)")
    length, kind = _NLMSG.unpack_from(data)[:2]
    if kind == NLMSG_ERROR and len(data) >= _NLMSG.size + 4:
        if struct.unpack_from("=i", data, _NLMSG.size)[0] in (-2, -22):  # ENOENT, EINVAL
            return None
        raise ValueError(f"netlink error {struct.unpack_from('=i', data, _NLMSG.size)[0]}")
    if kind != SOCK_DIAG_BY_FAMILY or len(data) < _NLMSG.size + _DIAG_MSG.size:
        raise ValueError(f"unexpected netlink answer (type {kind}, {len(data)} bytes)")
    fields = _DIAG_MSG.unpack_from(data, _NLMSG.size)
    state, inode = fields[1], fields[-1]
    return inode if state == ESTABLISHED and inode > 0 else None


def diag_inode(peer: tuple[IPAddress, int], port: int) -> int | None:
    """The client socket's inode asked of the kernel (sock_diag). OSError or ValueError when
    netlink cannot answer (the caller then reads /proc/net/tcp)."""
    server = (ipaddress.IPv4Address("127.0.0.1") if peer[0].version == 4
              else ipaddress.IPv6Address("::1"))  # fmt: skip
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
        s.settimeout(DIAG_TIMEOUT)
        s.sendto(diag_request(peer, server, port), (0, 0))
        return parse_diag_reply(s.recv(65536))


def matches(row: SocketLine, peer: tuple[IPAddress, int], port: int) -> bool:
    """True for the client side of the connection from `peer` to our loopback `port`."""
    return (row.state == ESTABLISHED and row.inode > 0 and (row.local, row.local_port) == peer
            and row.remote_port == port and row.remote.is_loopback)  # fmt: skip


def parse_stat_ppid(text: str) -> int | None:
    """The parent pid from a /proc/<pid>/stat line ("pid (comm) state ppid ..."); the command
    name may hold spaces and parentheses, so fields are counted after its last ')'."""
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 2 or not (fields[1].isascii() and fields[1].isdigit()):
        return None
    return int(fields[1])


def parse_pids(text: str) -> list[int]:
    """The pids of a /proc/<pid>/task/<tid>/children file (space separated); junk is skipped."""
    return [int(word) for word in text.split()
            if word.isascii() and word.isdigit() and len(word) < 11]


def socket_inode(link: str) -> int | None:
    """The inode of an fd link "socket:[12345]", None for any other link."""
    if not (link.startswith("socket:[") and link.endswith("]")):
        return None
    digits = link[len("socket:[") : -1]
    ok = digits.isascii() and digits.isdigit() and len(digits) < 21
    return int(digits) if ok else None


def environ_value(data: bytes, name: str) -> bytes | None:
    """The value of `name` in a NUL-separated environment block (the first one, as getenv)."""
    prefix = name.encode() + b"="
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :]
    return None


# --- a forked child's token in its initial environment block ------------------------------

TOKEN_LENGTH = 32  # secrets.token_hex(16)
PLACEHOLDER = "-" * TOKEN_LENGTH  # never a token: tokens are hex


def reserve(env: dict[str, str], name: str) -> dict[str, str]:
    """`env` for a process that will fork children presenting tokens: `name`=PLACEHOLDER."""
    return {**env, name: PLACEHOLDER}


def placeholder_offset(block: bytes, name: str) -> int | None:
    """Where the value of `name` starts in an environment block, if its first entry (the one
    `environ_value` reads) is `name`=PLACEHOLDER; None otherwise."""
    prefix, at = name.encode() + b"=", 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            return at + len(prefix) if entry[len(prefix) :] == PLACEHOLDER.encode() else None
        at += len(entry) + 1
    return None


def env_block_start(stat: str) -> int | None:
    """`env_start` (field 50) of a /proc/<pid>/stat line, None when absent or junk."""
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 49 or not (fields[47].isascii() and fields[47].isdigit()):
        return None
    return int(fields[47])


def present(name: str, token: str) -> bool:
    """In a process forked from one started with `reserve`d env: write `token` over the
    placeholder in this process's initial environment block. False (nothing written) when
    there is no placeholder, the token is not TOKEN_LENGTH hex digits, or /proc is unreadable."""
    if len(token) != TOKEN_LENGTH or not all(c in "0123456789abcdef" for c in token):
        return False
    try:
        block = _read("/proc/self/environ", MAX_ENVIRON)
        start = env_block_start(_read("/proc/self/stat", MAX_SMALL).decode("ascii", "replace"))
    except OSError:
        return False
    offset = placeholder_offset(block, name)
    if start is None or offset is None:
        return False
    ctypes.memmove(start + offset, token.encode(), TOKEN_LENGTH)
    return _read("/proc/self/environ", MAX_ENVIRON)[offset : offset + TOKEN_LENGTH] == (
        token.encode())  # fmt: skip


# --- the /proc lookup -------------------------------------------------------------------------

class Unidentified(Exception):
    """A bound was reached: the lookup refuses rather than deciding on part of /proc."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # why not (empty when allowed); says the rule, never the token
    pid: int | None = None  # the calling process, when found


def _read(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def client_inode(peer: tuple[IPAddress, int], port: int, proc: str = "/proc") -> int | None:
    """The inode of the client socket of the connection `peer` -> loopback `port`, or None:
    from netlink when it answers (and `proc` is the real one), else from /proc/net/tcp{,6}."""
    if proc == "/proc":
        try:
            return diag_inode(peer, port)
        except (OSError, ValueError):
            pass  # no sock_diag here (module, seccomp): the tables below say the same
    return scan_inode(peer, port, proc)


def scan_inode(peer: tuple[IPAddress, int], port: int, proc: str = "/proc") -> int | None:
    """`client_inode` from /proc/net/tcp{,6} (IPv4 peers are looked for in tcp first)."""
    for name in (("tcp", "tcp6") if peer[0].version == 4 else ("tcp6",)):
        try:
            f = open(os.path.join(proc, "net", name), encoding="ascii", errors="replace")
        except OSError:
            continue  # no IPv6 here
        with f:
            for count, line in enumerate(f):
                if count > MAX_SOCKET_LINES:
                    raise Unidentified(f"more than {MAX_SOCKET_LINES} sockets in {f.name}")
                row = parse_socket_line(line)
                if row is not None and matches(row, peer, port):
                    return row.inode
    return None


def descendants(root: int, proc: str = "/proc") -> list[int]:
    """The pids below `root` (not `root` itself), breadth first, at most MAX_PIDS."""
    if os.path.exists(os.path.join(proc, str(root), "task", str(root), "children")):
        return _walk(root, lambda pid: _children_of(pid, proc))
    tree: dict[int, list[int]] = {}
    for pid, ppid in _parents(proc):
        tree.setdefault(ppid, []).append(pid)
    return _walk(root, lambda pid: tree.get(pid, []))


def _walk(root: int, children: Callable[[int], list[int]]) -> list[int]:
    found: list[int] = []
    seen, todo = {root}, collections.deque([root])
    while todo:
        for child in children(todo.popleft()):
            if child not in seen:
                if len(found) >= MAX_PIDS:
                    raise Unidentified(f"more than {MAX_PIDS} processes below the server")
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


def _children_of(pid: int, proc: str) -> list[int]:
    out: list[int] = []
    task = os.path.join(proc, str(pid), "task")
    try:
        tids = os.listdir(task)
    except OSError:
        return out  # the process is gone
    for tid in tids[:MAX_PIDS]:
        try:
            out += parse_pids(_read(os.path.join(task, tid, "children"), MAX_SMALL).decode(
                "ascii", "replace"))  # fmt: skip
        except OSError:
            continue
    return out


def _parents(proc: str) -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process, from /proc/<pid>/stat (at most MAX_SCAN entries)."""
    with os.scandir(proc) as entries:
        for count, entry in enumerate(entries):
            if count > MAX_SCAN:
                raise Unidentified(f"more than {MAX_SCAN} entries in {proc}")
            if not entry.name.isdigit():
                continue
            try:
                ppid = parse_stat_ppid(_read(os.path.join(entry.path, "stat"), MAX_SMALL)
                                       .decode("utf-8", "replace"))  # fmt: skip
            except OSError:
                continue
            if ppid is not None:
                yield int(entry.name), ppid


def holders(inode: int, pids: Iterable[int], proc: str = "/proc") -> list[tuple[int, str]]:
    """(pid, fd link path) of each of `pids` holding socket `inode` (one fd per process)."""
    out: list[tuple[int, str]] = []
    budget = MAX_FDS
    for pid in pids:
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at
        budget -= len(fds)
        if budget < 0:
            raise Unidentified(f"more than {MAX_FDS} open files below the server")
        for fd in fds:
            path = os.path.join(fd_dir, fd)
            if _link(path) == inode:
                out.append((pid, path))
                break
    return out


def _link(path: str) -> int | None:
    try:
        return socket_inode(os.readlink(path))
    except OSError:
        return None


def carries(pid: int, fd_path: str, inode: int, name: str, token: str,
            proc: str = "/proc") -> bool:
    """True if process `pid` has `name`=`token` in its initial environment and still holds the
    socket afterwards (so a reused pid is never taken for the holder)."""
    try:
        data = _read(os.path.join(proc, str(pid), "environ"), MAX_ENVIRON)
    except OSError:
        return False
    value = environ_value(data, name)
    ok = value is not None and hmac.compare_digest(value, token.encode())
    return ok and _link(fd_path) == inode


def judge(inode: int, server: int, name: str, token: str, proc: str = "/proc") -> Verdict:
    """Whether the process holding client socket `inode` may call: a descendant of `server`
    carrying `name`=`token`."""
    found = holders(inode, descendants(server, proc), proc)
    if not found:
        return Verdict(False, "the caller is not a process started by this localpachd server")
    for pid, fd_path in found:
        if carries(pid, fd_path, inode, name, token, proc):
            return Verdict(True, "", pid)
    return Verdict(False, f"the caller (pid {found[0][0]}) does not carry this worker slot's "
                   f"{name} in its environment", found[0][0])


class PeerCheck:
    """The verdict for each caller of one endpoint, cached per client socket inode."""

    def __init__(self, port: int, variable: str, token: str, proc: str = "/proc") -> None:
        self.port, self.variable, self.token, self.proc = port, variable, token, proc
        self.walks = 0  # /proc walks done (tests: one per connection)
        self._cache: dict[int, Verdict] = {}
        self._lock = threading.Lock()

    def check(self, peer_text: str) -> Verdict:
        try:
            peer = parse_peer(peer_text)
            inode = client_inode(peer, self.port, self.proc)
        except (ValueError, Unidentified) as exc:
            return Verdict(False, f"the caller cannot be identified ({exc})")
        if inode is None:
            return Verdict(False, "the caller's connection is not a loopback connection "
                           "found in /proc/net/tcp")
        with self._lock:
            cached = self._cache.get(inode)
        if cached is not None:
            return cached
        try:
            verdict = judge(inode, os.getpid(), self.variable, self.token, self.proc)
        except Unidentified as exc:
            return Verdict(False, f"the caller cannot be identified ({exc})")
        with self._lock:
            self.walks += 1
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[inode] = verdict
        return verdict
