"""Put file from a URL (issue 16, item 2) through python-pachyderm's `put_file_url`.

A loopback HTTP server in the test serves the content (http.server in a thread). Every failure
fails the whole ModifyFile stream and writes nothing of it (an earlier put_file_bytes of the
same stream included), and its error names the URL (credentials redacted) and why. file:// is
refused unless the server was given an allow-list directory, and never follows a link.
"""

from __future__ import annotations

import functools
import hashlib
import os
import select
import shutil
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import python_pachyderm
from helpers.pachd import client as connect
from helpers.pachd import in_process_client, serve, stop
from helpers.wait import wait_for
from hypothesis import given
from hypothesis import strategies as st
from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc

from localpachd.pfs.urls import UrlOptions, redacted
from localpachd.server import start

MIB = 1024 * 1024
RELEASE = threading.Event()  # set at teardown: handlers that hang return
STALLED = threading.Event()  # set by /stall once it has sent its first bytes
DROPPED = threading.Event()  # set by /stall when the fetching side closed the connection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, size: int, declare: bool) -> None:
        self.send_response(200)
        if declare:
            self.send_header("Content-Length", str(size))
        else:
            self.send_header("Connection", "close")  # body ends when the connection closes
        self.end_headers()
        block = b"z" * MIB
        while size > 0:
            n = min(size, MIB)
            self.wfile.write(block[:n])
            size -= n

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path, _, query = self.path.partition("?")
        routes: dict[str, Callable[[], None]] = {
            "/small": lambda: self._send(200, b"hello\n"),
            "/more": lambda: self._send(200, b"more\n"),
            "/empty": lambda: self._send(200, b""),
            "/missing": lambda: self._send(404, b"no such thing"),
            "/declared-2mib": lambda: self._stream(2 * MIB, declare=True),
            "/undeclared-2mib": lambda: self._stream(2 * MIB, declare=False),
            "/loop": lambda: self._send(302, Location="/loop"),
            "/hop": lambda: self._send(301, Location="/small"),
            "/to-ftp": lambda: self._send(302, Location="ftp://127.0.0.1/x"),
            "/to-file": lambda: self._send(302, Location=f"file://{query}"),
            "/auth": self._auth,
            "/no-answer": lambda: RELEASE.wait(60) and None,
            "/stall": self._stall,
        }
        routes.get(path, lambda: self._send(404, b""))()

    def _auth(self) -> None:
        ok = self.headers.get("Authorization") == "Basic dXNlcjpzM2NyZXQ="  # user:s3cret
        self._send(200 if ok else 401, b"secret data\n" if ok else b"")

    def _stall(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        STALLED.set()
        while not RELEASE.wait(0.05):  # stall, watching for the fetcher to hang up
            if select.select([self.connection], [], [], 0)[0]:
                try:
                    closed = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    closed = True
                if closed:
                    DROPPED.set()
                    return


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    RELEASE.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    d = tmp_path / "allowed"
    (d / "set" / "sub").mkdir(parents=True)
    (d / "one.txt").write_text("one\n")
    (d / "set" / "a.csv").write_text("a\n")
    (d / "set" / "sub" / "b.csv").write_text("b\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    return d


@pytest.fixture
def client(tmp_path: Path, allowed: Path) -> Iterator[Any]:
    options = UrlOptions(allow_dirs=(allowed,), timeout=0.5, max_bytes=MIB)
    with in_process_client(tmp_path / "pachd", urls=options) as c:
        c.create_repo("r")
        yield c


def _read(c: Any, path: str) -> bytes:
    return bytes(c.get_file(("r", "master"), path).read())


def _files(c: Any) -> dict[str, int]:
    try:
        return {f.file.path: f.size_bytes for f in c.walk_file(("r", "master"), "/")
                if f.file_type == 1}
    except grpc.RpcError:
        return {}


def _put_fails(c: Any, url: str, **kw: Any) -> grpc.RpcError:
    """A stream with an ordinary put and then `url`: it fails and leaves the repo as it was."""
    before = (_files(c), len(list(c.list_commit("r"))))
    with pytest.raises(grpc.RpcError) as exc:
        with c.modify_file_client(("r", "master")) as mf:
            mf.put_file_from_bytes("/earlier.txt", b"written in the same stream")
            mf.put_file_from_url("/dst", url, **kw)
    assert (_files(c), len(list(c.list_commit("r")))) == before, "the failed stream wrote"
    return exc.value


# ------------------------------------------------------------ http


def test_put_file_url_streams_a_small_file(client: Any, web: str) -> None:
    c = client
    with c.commit("r", "master") as commit:
        c.put_file_url(commit, "/a.txt", f"{web}/small")
        c.put_file_url(commit, "/empty", f"{web}/empty")
    assert _read(c, "/a.txt") == b"hello\n" and _files(c)["/empty"] == 0
    c.put_file_url(("r", "master"), "/a.txt", f"{web}/more", append=True)
    assert _read(c, "/a.txt") == b"hello\nmore\n"
    c.put_file_url(("r", "master"), "/a.txt", f"{web}/small")  # no append: replaced
    assert _read(c, "/a.txt") == b"hello\n"
    c.put_file_url(("r", "master"), "/r.txt", f"{web}/small", recursive=True)  # http: one file
    assert _read(c, "/r.txt") == b"hello\n"
    c.put_file_url(("r", "master"), "/hop.txt", f"{web}/hop")  # a redirect is followed
    assert _read(c, "/hop.txt") == b"hello\n"
    host = web.removeprefix("http://")
    c.put_file_url(("r", "master"), "/auth.txt", f"http://user:s3cret@{host}/auth")
    assert _read(c, "/auth.txt") == b"secret data\n"


def test_a_url_among_other_puts_of_one_stream(client: Any, web: str) -> None:
    """python-pachyderm's own test_put_file_atomic/test_put_file_empty, on a loopback URL."""
    c = client
    with c.modify_file_client(("r", "master")) as mf:
        mf.put_file_from_bytes("file1.dat", b"")
        mf.put_file_from_url("index.html", f"{web}/small")
        mf.put_file_from_bytes("file2.dat", b"DATA2")
    assert [f.file.path for f in c.list_file(("r", "master"), "")] == [
        "/file1.dat", "/file2.dat", "/index.html"]
    assert len(list(c.list_commit("r"))) == 1


def test_an_http_error_status_fails_the_stream_naming_url_and_status(client: Any,
                                                                      web: str) -> None:
    err = _put_fails(client, f"{web}/missing")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == f'error retrieving content from "{web}/missing": 404 Not Found'
    host = web.removeprefix("http://")
    err = _put_fails(client, f"http://user:hunter2@{host}/auth?token=abc&sig=def")
    assert "401 Unauthorized" in err.details()
    assert f"http://user:xxxxx@{host}/auth?token=xxxxx&sig=xxxxx" in err.details()
    assert "hunter2" not in err.details() and "abc" not in err.details()


@pytest.mark.parametrize("route", ["declared-2mib", "undeclared-2mib"])
def test_a_body_over_the_size_limit_is_refused(client: Any, web: str, route: str) -> None:
    err = _put_fails(client, f"{web}/{route}")
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f'"{web}/{route}"' in err.details()
    assert f"over the limit of {MIB} bytes per URL" in err.details()


@pytest.mark.parametrize("route", ["no-answer", "stall"])
def test_a_slow_server_times_out(client: Any, web: str, route: str) -> None:
    err = _put_fails(client, f"{web}/{route}")
    assert err.details() == (f'error retrieving content from "{web}/{route}": timed out (0.5 s '
                             "to connect or for a read; localpachd serve --url-timeout)")


@pytest.mark.parametrize("how", ["server stop", "client cancel"])
def test_a_stalled_fetch_ends_with_the_call(tmp_path: Path, web: str, how: str) -> None:
    """The fetch is blocked on a read with a 600 s timeout: ending the call (the server stops,
    or the client cancels) cuts it short at once, while the remote still stalls."""
    srv = start(tmp_path / "pachd", port=0, urls=UrlOptions(timeout=600))
    channel = grpc.insecure_channel(f"{srv.host}:{srv.port}")
    try:
        c = python_pachyderm.Client(host=srv.host, port=srv.port)
        c.create_repo("r")
        commit = pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name="r", type="user"),
                                                      name="master"))
        reqs = [pfs_pb2.ModifyFileRequest(set_commit=commit),
                pfs_pb2.ModifyFileRequest(add_file=pfs_pb2.AddFile(
                    path="/x", url=pfs_pb2.AddFile.URLSource(URL=f"{web}/stall")))]
        STALLED.clear()
        DROPPED.clear()
        call = pfs_pb2_grpc.APIStub(channel).ModifyFile.future(iter(reqs))
        wait_for(STALLED.is_set, "the remote to stall")
        if how == "server stop":
            srv.stop()
        else:
            call.cancel()
        wait_for(DROPPED.is_set, "the server to drop its fetch while the remote still stalls")
        assert not RELEASE.is_set() and call.done()
        if how == "client cancel":
            assert _files(c) == {}
    finally:
        channel.close()
        srv.stop()


def test_redirects_are_bounded_and_only_to_http(client: Any, web: str, allowed: Path) -> None:
    err = _put_fails(client, f"{web}/loop")
    assert err.details() == (f'error retrieving content from "{web}/loop": '
                             "stopped after 10 redirects")
    err = _put_fails(client, f"{web}/to-ftp")
    assert "redirected to a ftp URL" in err.details()
    # never to file://, even to a file the allow-list would serve to a client asking directly
    err = _put_fails(client, f"{web}/to-file?{allowed / 'one.txt'}")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "redirected to a file URL" in err.details()


@pytest.mark.parametrize(("url", "code", "text"), [
    ("s3://bucket/key", grpc.StatusCode.UNIMPLEMENTED, "put file from s3:// URLs is not supported"),
    ("ftp://127.0.0.1/x", grpc.StatusCode.INVALID_ARGUMENT, "unrecognized object store: ftp"),
    ("nonsense", grpc.StatusCode.INVALID_ARGUMENT, "unrecognized object store: "),
    ("http://127.0.0.1:notaport/x", grpc.StatusCode.INVALID_ARGUMENT, "Port could not be cast"),
    ("http:///nohost", grpc.StatusCode.INVALID_ARGUMENT, "no host in http:///nohost"),
    ("http://127.0.0.1:1/refused", grpc.StatusCode.FAILED_PRECONDITION, "Connection refused"),
])
def test_unsupported_schemes(client: Any, url: str, code: grpc.StatusCode, text: str) -> None:
    err = _put_fails(client, url)
    assert err.code() == code and text in err.details()


def test_redacted_hides_passwords_and_query_values() -> None:
    assert redacted("https://u:p@h:1/x?a=1&b") == "https://u:xxxxx@h:1/x?a=xxxxx&b"
    assert redacted("http://u@h/x") == "http://u@h/x"
    assert redacted("http://h/x#frag") == "http://h/x"
    assert redacted("http://u:pa#ss@h/x") == "(a URL that does not parse)"  # raw '#' in it
    assert redacted("http://u:pa/ss@h/x") == "(a URL that does not parse)"
    assert redacted("http://h:8080/users/@me") == "http://h:8080/users/@me"


SECRET = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                 max_size=30).map(lambda t: "SECRET" + t)


@pytest.mark.fuzz
@given(password=SECRET, values=st.lists(SECRET, max_size=3), scheme=st.sampled_from(
    ["http", "https", "s3", "file"]))
def test_redacted_never_shows_a_password_or_query_value(password: str, values: list[str],
                                                        scheme: str) -> None:
    quote = functools.partial(urllib.parse.quote, safe="")
    query = "&".join(f"k{i}={quote(v)}" for i, v in enumerate(values))
    url = f"{scheme}://user:{quote(password)}@host.example:8080/p/a?{query}"
    shown = redacted(url)
    assert "SECRET" not in shown and "SECRET" not in urllib.parse.unquote(shown)
    assert shown.startswith(f"{scheme}://user:xxxxx@host.example:8080/p/a")


# ------------------------------------------------------------ file://


def test_file_urls_are_refused_by_default(tmp_path: Path, allowed: Path) -> None:
    with in_process_client(tmp_path / "pachd-default") as c:
        c.create_repo("r")
        err = _put_fails(c, f"file://{allowed / 'one.txt'}")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "file:// URLs are off on this server" in err.details()
    assert "--url-allow-dir" in err.details()


def test_file_urls_under_the_allow_list(client: Any, allowed: Path) -> None:
    c = client
    c.put_file_url(("r", "master"), "/one.txt", f"file://{allowed / 'one.txt'}")
    c.put_file_url(("r", "master"), "/data", f"file://{allowed / 'set'}", recursive=True)
    c.put_file_url(("r", "master"), "/all", f"file://{allowed}", recursive=True)
    assert _files(c) == {"/one.txt": 4, "/data/a.csv": 2, "/data/sub/b.csv": 2,
                         "/all/one.txt": 4, "/all/set/a.csv": 2, "/all/set/sub/b.csv": 2}
    assert _read(c, "/data/sub/b.csv") == b"b\n"
    err = _put_fails(c, f"file://{allowed / 'set'}")  # a directory needs recursive
    assert "is a directory: put it with recursive=True" in err.details()
    err = _put_fails(c, f"file://{allowed / 'nope.txt'}")
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_file_urls_never_follow_links_or_leave_the_allowed_directory(client: Any,
                                                                     allowed: Path) -> None:
    outside = allowed.parent / "outside"
    (allowed / "link.txt").symlink_to(outside / "secret.txt")
    (allowed / "linkdir").symlink_to(outside)
    (allowed / "set" / "inner-link").symlink_to(allowed / "one.txt")  # even inside: refused
    os.mkfifo(allowed / "fifo")
    cases = {
        f"file://{allowed / 'link.txt'}": "is a symbolic link",
        f"file://{allowed / 'linkdir' / 'secret.txt'}": "is a symbolic link",
        f"file://{allowed}/set/../../outside/secret.txt": "'..' segment",
        f"file://{outside / 'secret.txt'}": "is not under an allowed directory",
        f"file://{allowed / 'fifo'}": "is not a regular file or directory",
        f"file://elsewhere{allowed / 'one.txt'}": "must be empty or localhost",
    }
    for url, text in cases.items():
        err = _put_fails(client, url)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, url
        assert text in err.details(), (url, err.details())
    err = _put_fails(client, f"file://{allowed / 'set'}", recursive=True)
    assert "inner-link is a symbolic link" in err.details()


def test_the_size_limit_covers_a_recursive_file_url(client: Any, allowed: Path) -> None:
    big = allowed / "big"
    big.mkdir()
    for i in range(3):
        (big / f"{i}.bin").write_bytes(b"x" * (MIB // 2))
    err = _put_fails(client, f"file://{big}", recursive=True)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_cli_options(tmp_path: Path) -> None:
    from localpachd.cli import _parser, url_options

    args = _parser().parse_args(["serve", "--url-allow-dir", str(tmp_path), "--url-allow-dir",
                                 str(tmp_path / "."), "--url-timeout", "2", "--url-max-bytes",
                                 "10"])
    opts = url_options(args)
    assert opts.allow_dirs == (tmp_path, tmp_path) and opts.timeout == 2 and opts.max_bytes == 10
    assert url_options(_parser().parse_args(["serve"])) == UrlOptions()
    with pytest.raises(ValueError, match="--url-allow-dir .*: not a directory"):
        url_options(_parser().parse_args(["serve", "--url-allow-dir", str(tmp_path / "no")]))
    with pytest.raises(ValueError, match="--url-timeout 0.0: must be positive"):
        url_options(_parser().parse_args(["serve", "--url-timeout", "0"]))


# ------------------------------------------------------------ memory


class _Generator(BaseHTTPRequestHandler):
    """Serves `size` pseudo-random bytes made on the fly (never held whole), hashing them."""

    protocol_version = "HTTP/1.1"
    size = 200 * MIB
    sha = hashlib.sha256()

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        size = int(self.path.lstrip("/"))
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block, sha, i = os.urandom(MIB), hashlib.sha256(), 0
        while size > 0:
            chunk = (i.to_bytes(8, "big") + block[8:])[: min(size, MIB)]
            sha.update(chunk)
            self.wfile.write(chunk)
            size -= len(chunk)
            i += 1
        type(self).sha = sha


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.mark.slow
def test_200mib_from_a_url_streams_with_bounded_server_memory(tmp_path: Path) -> None:
    if shutil.disk_usage(tmp_path).free < 1024 * MIB:
        pytest.skip(f"needs 1 GiB free under {tmp_path}")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Generator)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    web = f"http://127.0.0.1:{httpd.server_address[1]}"
    proc, port = serve(tmp_path / "pachd")
    try:
        c = connect(port)
        c.create_repo("big")
        c.put_file_url(("big", "master"), "/warm.bin", f"{web}/{4 * MIB}")  # first-call costs
        before = _peak_rss(proc.pid)
        c.put_file_url(("big", "master"), "/big.bin", f"{web}/{200 * MIB}")
        info = c.inspect_file(("big", "master"), "/big.bin")
        assert info.size_bytes == 200 * MIB
        assert info.hash.hex() == _Generator.sha.hexdigest()  # FileInfo hash: content SHA-256
        growth = _peak_rss(proc.pid) - before
        assert growth < 64 * MIB, f"server peak RSS grew {growth // MIB} MiB for 200 MiB"
        print(f"server peak RSS growth for a 200 MiB URL put: {growth / MIB:.1f} MiB")
    finally:
        stop(proc)
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(tmp_path / "pachd", ignore_errors=True)
