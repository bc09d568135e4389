"""localpachd survives `kill -9`: a real `python -m localpachd serve` subprocess is killed
mid-upload after a finished commit; after a restart on the same data dir every finished commit
is intact and no half-written file is visible anywhere."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import python_pachyderm
from helpers.pachd import serve

ROOT = Path(__file__).resolve().parents[2]


class _StallingReader:
    """A file object that yields `before` bytes, then blocks until released (or forever)."""

    def __init__(self, before: int) -> None:
        self.left = before
        self.release = threading.Event()

    def read(self, n: int) -> bytes:
        if self.left > 0:
            chunk = b"z" * min(n, self.left, 1024 * 1024)
            self.left -= len(chunk)
            return chunk
        self.release.wait(30)
        return b""


def test_kill_9_mid_upload_keeps_finished_commits(tmp_path: Path) -> None:
    data_dir = tmp_path / "pachd"
    proc, port = serve(data_dir)
    try:
        c = python_pachyderm.Client(host="127.0.0.1", port=port)
        c.create_repo("r")
        payload = os.urandom(3 * 1024 * 1024)
        with c.commit("r", "master") as done:
            c.put_file_bytes(done, "/kept.bin", payload)
            c.put_file_bytes(done, "/small.txt", b"small")
        open_commit = c.start_commit("r", "master")
        c.put_file_bytes(open_commit, "/in-open-commit.txt", b"pending")
        reader = _StallingReader(before=5 * 1024 * 1024)
        errors: list[BaseException] = []

        def upload() -> None:
            try:
                c2 = python_pachyderm.Client(host="127.0.0.1", port=port)
                c2.put_file_bytes(open_commit, "/half.bin", reader)
            except BaseException as exc:  # noqa: BLE001 (the server dies under it)
                errors.append(exc)

        t = threading.Thread(target=upload)
        t.start()
        tmp_dir = data_dir / "blobs" / "tmp"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 0 for p in tmp_dir.iterdir()
        ):
            time.sleep(0.05)
        assert any(p.stat().st_size > 0 for p in tmp_dir.iterdir()), "upload never reached disk"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.release.set()
        t.join(30)
        assert errors, "the upload cannot have succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc, port = serve(data_dir)
    try:
        c = python_pachyderm.Client(host="127.0.0.1", port=port)
        info = next(c.inspect_commit(("r", done.id)))
        assert info.finished.seconds > 0
        got = c.get_file(("r", done.id), "/kept.bin").read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert c.get_file(("r", done.id), "/small.txt").read() == b"small"
        head = next(c.inspect_commit(("r", "master")))
        assert head.commit.id == open_commit.id and head.finished.seconds == 0
        paths = [f.file.path for f in c.walk_file(("r", "master"), "/")]
        assert paths == ["/", "/in-open-commit.txt", "/kept.bin", "/small.txt"]  # no /half.bin
        assert list((data_dir / "blobs" / "tmp").iterdir()) == []  # partial upload discarded
        c.finish_commit(open_commit)
        assert list(c.fsck()) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0  # SIGTERM stops it cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_restart_frees_blobs_of_deleted_data(tmp_path: Path) -> None:
    from localpachd.server import start

    data_dir = tmp_path / "pachd"
    blobs = data_dir / "blobs"

    def count() -> int:
        return sum(1 for p in blobs.glob("??/*"))

    with start(data_dir) as server:
        c = python_pachyderm.Client(host=server.host, port=server.port)
        c.create_repo("keep")
        c.create_repo("drop")
        c.put_file_bytes(("keep", "master"), "/k", b"kept content")
        c.put_file_bytes(("drop", "master"), "/d", b"dropped content")
        c.put_file_bytes(("drop", "master"), "/k2", b"kept content")  # shared blob
        before = count()
        c.delete_repo("drop")
    with start(data_dir) as server:
        assert count() == before - 1  # only the blob no commit references any more
        c = python_pachyderm.Client(host=server.host, port=server.port)
        assert c.get_file(("keep", "master"), "/k").read() == b"kept content"
        assert list(c.fsck()) == []


def test_cancelled_upload_leaves_no_trace(localpachd: Any) -> None:
    import grpc
    from google.protobuf import wrappers_pb2
    from python_pachyderm.proto.v2.pfs import pfs_pb2, pfs_pb2_grpc

    stub = pfs_pb2_grpc.APIStub(grpc.insecure_channel(localpachd.address))
    repo = pfs_pb2.Repo(name="r", type="user")
    stub.CreateRepo(pfs_pb2.CreateRepoRequest(repo=repo))
    release = threading.Event()

    def requests() -> Any:
        yield pfs_pb2.ModifyFileRequest(set_commit=pfs_pb2.Commit(
            branch=pfs_pb2.Branch(repo=repo, name="master")))
        yield pfs_pb2.ModifyFileRequest(add_file=pfs_pb2.AddFile(
            path="/partial", raw=wrappers_pb2.BytesValue(value=b"p" * 1_000_000)))
        release.wait(30)

    call = stub.ModifyFile.future(requests())
    tmp_dir = localpachd.data_dir / "blobs" / "tmp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(tmp_dir.iterdir()):
        time.sleep(0.02)
    call.cancel()
    release.set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(tmp_dir.iterdir()):
        time.sleep(0.02)
    assert list(tmp_dir.iterdir()) == []
    assert list(stub.ListCommit(pfs_pb2.ListCommitRequest(repo=repo, all=True))) == []


CLIENT = """
import sys, time, python_pachyderm
class Stall:
    sent = False
    def read(self, n):
        if not self.sent:
            self.sent = True
            return b"c" * 2_000_000
        time.sleep(60)
        return b""
c = python_pachyderm.Client(host="127.0.0.1", port=int(sys.argv[1]))
c.put_file_bytes(("r", "master"), "/from-dead-client", Stall())
"""


def test_client_killed_mid_upload_commits_nothing(pach_client: Any, localpachd: Any) -> None:
    pach_client.create_repo("r")
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(localpachd.port)], cwd=ROOT)
    try:
        tmp_dir = localpachd.data_dir / "blobs" / "tmp"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                p.stat().st_size >= 2_000_000 for p in tmp_dir.iterdir()):
            time.sleep(0.05)
        assert any(tmp_dir.iterdir()), "the upload never reached the server"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(tmp_dir.iterdir()):
        time.sleep(0.05)
    assert list(tmp_dir.iterdir()) == []
    assert list(pach_client.list_commit("r", all=True)) == []
