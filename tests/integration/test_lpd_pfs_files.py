"""localpachd PFS files: ModifyFile (add, append, delete, copy), GetFile/GetFileTAR, InspectFile,
ListFile, WalkFile, GlobFile, DiffFile, Fsck, a file larger than 20 MiB, and hostile paths."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from python_pachyderm.proto.v2.pfs import pfs_pb2


def _paths(infos: Any) -> list[str]:
    return [i.file.path for i in infos]


@pytest.fixture
def tree(pach_client: Any) -> Any:
    c = pach_client
    c.create_repo("r")
    with c.commit("r", "master") as commit:
        c.put_file_bytes(commit, "/a.txt", b"alpha")
        c.put_file_bytes(commit, "/dir/b.csv", b"1,2\n")
        c.put_file_bytes(commit, "/dir/sub/c.csv", b"3,4\n")
        c.put_file_bytes(commit, "/dir/sub/d.txt", b"delta")
    return c


def test_put_get_append_overwrite(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("r")
    c.put_file_bytes(("r", "master"), "/f", b"one")
    c.put_file_bytes(("r", "master"), "/f", b"-two", append=True)
    assert c.get_file(("r", "master"), "/f").read() == b"one-two"
    c.put_file_bytes(("r", "master"), "f", io.BytesIO(b"fresh"))
    assert c.get_file(("r", "master"), "/f").read() == b"fresh"
    assert c.get_file(("r", "master"), "/f", offset=2).read() == b"esh"
    c.put_file_bytes(("r", "master"), "/empty", b"")
    assert c.get_file(("r", "master"), "/empty").read() == b""  # one empty message still sent
    assert len(list(c.list_commit("r"))) == 4  # each put on a branch opened+finished a commit
    with pytest.raises(ConnectionError) as cerr:  # the client wraps the first message's error
        c.get_file(("r", "master"), "/missing").read()
    assert cerr.value.__cause__.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[union-attr]
    assert not c.path_exists(("r", "master"), "/missing")
    assert c.path_exists(("r", "master"), "/f")
    with pytest.raises(ValueError):
        c.path_exists(("r", "nobranch"), "/f")


def test_modify_file_client_delete_copy(tree: Any) -> None:
    c = tree
    with c.modify_file_client(("r", "master")) as mfc:
        mfc.delete_file("/dir/sub")
        mfc.put_file_from_bytes("/dir/new.txt", b"new")
        mfc.copy_file(("r", "master"), "/a.txt", "/copy/a.txt")
    assert _paths(c.walk_file(("r", "master"), "/")) == [
        "/",
        "/a.txt",
        "/copy/",
        "/copy/a.txt",
        "/dir/",
        "/dir/b.csv",
        "/dir/new.txt",
    ]
    c.create_repo("other")
    c.copy_file(("r", "master"), "/dir", ("other", "master"), "/imported")
    assert _paths(c.list_file(("other", "master"), "/imported")) == [
        "/imported/b.csv",
        "/imported/new.txt",
    ]
    c.copy_file(("r", "master"), "/a.txt", ("other", "master"), "/imported/b.csv", append=True)
    assert c.get_file(("other", "master"), "/imported/b.csv").read() == b"1,2\nalpha"
    c.delete_file(("other", "master"), "/imported/new.txt")
    assert _paths(c.list_file(("other", "master"), "/")) == ["/imported/"]


def test_file_and_directory_at_one_path_is_refused(tree: Any) -> None:
    c = tree
    for path in ("/a.txt/inner", "/dir/sub"):  # append: no delete of the path is sent first
        with pytest.raises(grpc.RpcError) as exc:
            c.put_file_bytes(("r", "master"), path, b"clash", append=True)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "both a file and a directory" in exc.value.details()
    assert len(list(c.list_commit("r"))) == 1  # the refused writes opened no commit
    c.put_file_bytes(("r", "master"), "/dir/sub", b"now a file")  # overwrite deletes the dir
    assert c.get_file(("r", "master"), "/dir/sub").read() == b"now a file"


def test_inspect_list_walk_glob(tree: Any) -> None:
    c = tree
    info = c.inspect_file(("r", "master"), "/dir/sub/d.txt")
    assert info.file_type == pfs_pb2.FILE and info.size_bytes == 5
    assert info.hash == hashlib.sha256(b"delta").digest()
    d = c.inspect_file(("r", "master"), "/dir")
    assert d.file_type == pfs_pb2.DIR and d.size_bytes == 4 + 4 + 5 and d.file.path == "/dir/"
    assert _paths(c.list_file(("r", "master"), "/")) == ["/a.txt", "/dir/"]
    assert _paths(c.list_file(("r", "master"), "/dir")) == ["/dir/b.csv", "/dir/sub/"]
    assert _paths(c.list_file(("r", "master"), "/a.txt")) == ["/a.txt"]
    assert _paths(c.list_file(("r", "master"), "/", number=1, reverse=True)) == ["/dir/"]
    assert _paths(c.walk_file(("r", "master"), "/dir")) == [
        "/dir/",
        "/dir/b.csv",
        "/dir/sub/",
        "/dir/sub/c.csv",
        "/dir/sub/d.txt",
    ]
    assert _paths(c.glob_file(("r", "master"), "/*")) == ["/a.txt", "/dir/"]
    assert _paths(c.glob_file(("r", "master"), "/*/*")) == ["/dir/b.csv", "/dir/sub/"]
    assert _paths(c.glob_file(("r", "master"), "/**.csv")) == ["/dir/b.csv", "/dir/sub/c.csv"]
    assert _paths(c.glob_file(("r", "master"), "/dir/sub/?.txt")) == ["/dir/sub/d.txt"]
    assert _paths(c.glob_file(("r", "master"), "/[ab]*")) == ["/a.txt"]
    assert _paths(c.glob_file(("r", "master"), "/")) == ["/"]
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_file(("r", "master"), "/nope")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert exc.value.details().startswith("file /nope not found in repo default/r at commit ")


def test_get_file_tar(tree: Any) -> None:
    c = tree
    with c.get_file_tar(("r", "master"), "/dir") as tar:
        got = {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}
    assert got == {
        "dir": None,
        "dir/b.csv": b"1,2\n",
        "dir/sub": None,
        "dir/sub/c.csv": b"3,4\n",
        "dir/sub/d.txt": b"delta",
    }
    with c.get_file_tar(("r", "master"), "/a.txt") as tar:
        assert [m.name for m in tar] == ["a.txt"]
    with c.get_file_tar(("r", "master"), "/dir/**.csv") as tar:  # glob paths, as Pachyderm 2.x
        assert [m.name for m in tar] == ["dir/b.csv", "dir/sub/c.csv"]
    assert c.get_file(("r", "master"), "/dir/*/*.txt").read() == b"delta"
    for path, text in (("/dir", "cannot get directory"), ("/dir/**.csv", "matched multiple")):
        with pytest.raises(ConnectionError) as cerr:  # GetFile wants exactly one regular file
            c.get_file(("r", "master"), path)
        assert text in cerr.value.__cause__.details()  # type: ignore[union-attr]


def test_diff_file(tree: Any) -> None:
    c = tree
    with c.commit("r", "master") as commit:
        c.put_file_bytes(commit, "/dir/b.csv", b"changed")
        c.put_file_bytes(commit, "/z.txt", b"z")
    diffs = list(c.diff_file(("r", "master"), "/"))
    changed = [(d.new_file.file.path, d.old_file.file.path) for d in diffs]
    assert changed == [("/dir/", "/dir/"), ("/dir/b.csv", "/dir/b.csv"), ("/z.txt", "")]


def test_fsck_clean_and_detects_missing_blob(tree: Any, localpachd: Any) -> None:
    c = tree
    assert list(c.fsck()) == []
    blob = localpachd.data_dir / "blobs"
    victim = next(
        p
        for p in blob.rglob("*")
        if p.is_file() and p.stat().st_size == 5 and p.read_bytes() == b"delta"
    )
    os.chmod(victim, 0o644)
    victim.unlink()
    errs = [r.error for r in c.fsck()]
    assert len(errs) == 1 and "is missing" in errs[0]


def test_large_file_over_20mib_roundtrip(pach_client: Any) -> None:
    c = pach_client
    c.create_repo("big")
    data = os.urandom(1024 * 1024) * 42  # 42 MiB: three client chunks of 19 MiB
    c.put_file_bytes(("big", "master"), "/big.bin", data)
    info = c.inspect_file(("big", "master"), "/big.bin")
    assert info.size_bytes == len(data)
    assert info.hash == hashlib.sha256(data).digest()
    got = c.get_file(("big", "master"), "/big.bin").read()
    assert len(got) == len(data) and got == data


@pytest.mark.parametrize(
    "hostile",
    [
        "../../etc/passwd",
        "/a/../../escape",
        "/x\x00y",
        "/line\nbreak",
    ],
)
def test_hostile_paths_invalid_argument(pach_client: Any, tmp_path: Path, hostile: str) -> None:
    c = pach_client
    c.create_repo("h")
    with pytest.raises(grpc.RpcError) as exc:
        c.put_file_bytes(("h", "master"), hostile, b"evil")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as exc:
        c.inspect_file(("h", "master"), hostile)
    assert exc.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert list(c.list_commit("h")) == []  # nothing was committed
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "escape").exists()


def test_file_sets_cache_and_storage(tree: Any, localpachd: Any) -> None:
    from google.protobuf import any_pb2, wrappers_pb2
    from python_pachyderm.proto.v2.pfs import pfs_pb2_grpc

    stub = pfs_pb2_grpc.APIStub(grpc.insecure_channel(localpachd.address))

    def add(path: str, data: bytes) -> pfs_pb2.ModifyFileRequest:
        return pfs_pb2.ModifyFileRequest(add_file=pfs_pb2.AddFile(
            path=path, raw=wrappers_pb2.BytesValue(value=data)))

    fs1 = stub.CreateFileSet(iter([add("/fs/a.txt", b"A"), add("/fs/b.txt", b"B")])).file_set_id
    fs2 = stub.CreateFileSet(iter([pfs_pb2.ModifyFileRequest(
        delete_file=pfs_pb2.DeleteFile(path="/fs/b.txt"))])).file_set_id
    both = stub.ComposeFileSet(pfs_pb2.ComposeFileSetRequest(file_set_ids=[fs1, fs2]))
    stub.RenewFileSet(pfs_pb2.RenewFileSetRequest(file_set_id=both.file_set_id, ttl_seconds=60))
    assert len(stub.ShardFileSet(pfs_pb2.ShardFileSetRequest(
        file_set_id=both.file_set_id)).shards) == 1
    commit = tree.start_commit("r", "master")
    stub.AddFileSet(pfs_pb2.AddFileSetRequest(commit=commit, file_set_id=both.file_set_id))
    tree.finish_commit(commit)
    assert _paths(tree.list_file(("r", "master"), "/fs")) == ["/fs/a.txt"]
    snap = stub.GetFileSet(pfs_pb2.GetFileSetRequest(commit=commit)).file_set_id
    copy = tree.start_commit("r", "copy")
    stub.AddFileSet(pfs_pb2.AddFileSetRequest(commit=copy, file_set_id=snap))
    tree.finish_commit(copy)
    assert _paths(tree.walk_file(("r", "copy"), "/fs")) == ["/fs/", "/fs/a.txt"]
    with pytest.raises(grpc.RpcError) as exc:
        stub.AddFileSet(pfs_pb2.AddFileSetRequest(commit=copy, file_set_id="nope"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    value = any_pb2.Any()
    value.Pack(wrappers_pb2.StringValue(value="cached"))
    stub.PutCache(pfs_pb2.PutCacheRequest(key="k", value=value, tag="t1"))
    got = stub.GetCache(pfs_pb2.GetCacheRequest(key="k")).value
    assert got.type_url == value.type_url and got.value == value.value
    stub.ClearCache(pfs_pb2.ClearCacheRequest(tag_prefix="t"))
    with pytest.raises(grpc.RpcError) as exc:
        stub.GetCache(pfs_pb2.GetCacheRequest(key="k"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    blobs = stub.CheckStorage(pfs_pb2.CheckStorageRequest(read_chunk_data=True))
    assert blobs.chunk_object_count == len(list((localpachd.data_dir / "blobs").glob("??/*")))
