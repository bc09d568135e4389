"""localpachd ModifyFile under concurrency: appends, puts and deletes from many clients at once
serialise as Pachyderm's do (an append adds to whatever the file holds when it is applied, a put
replaces it, a delete removes it), on a branch head (a commit per stream) and inside one open
commit, on one file and across files. Every call that reports success is kept.

Real server, the real python-pachyderm client, one client per thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import python_pachyderm

from localpachd.pfs import modify

THREADS = 16
PER_THREAD = 15


def _hammer(server: Any, n_threads: int, work: Callable[[Any, int], None]) -> None:
    """Run work(client, thread_index) on n_threads threads started together; re-raise errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def run(t: int) -> None:
        client = python_pachyderm.Client(host=server.host, port=server.port)
        try:
            start.wait()
            work(client, t)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]


def _lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def _appended(t: int, i: int) -> bytes:
    return f"append-{t}-{i}\n".encode()


def _all_appends(n_threads: int, per_thread: int) -> Counter[str]:
    return Counter(_appended(t, i).decode().strip() for t in range(n_threads)
                   for i in range(per_thread))


@pytest.fixture(params=["inline", "retried"])
def rebase_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """"inline": appends re-based inside the write lock (small files); "retried": as large
    files are, outside the lock and the transaction retried (then inside, on the last try)."""
    if request.param == "retried":
        monkeypatch.setattr(modify, "INLINE_REBASE", 0)
    return str(request.param)


@pytest.mark.parametrize(("n_threads", "per_thread"), [(2, 20), (THREADS, PER_THREAD)])
def test_appends_on_a_branch_head_are_all_kept(localpachd: Any, pach_client: Any,
                                               rebase_mode: str, n_threads: int,
                                               per_thread: int) -> None:
    pach_client.create_repo("r")

    def work(client: Any, t: int) -> None:
        for i in range(per_thread):
            client.put_file_bytes(("r", "master"), "/log", _appended(t, i), append=True)

    _hammer(localpachd, n_threads, work)
    lines = _lines(pach_client.get_file(("r", "master"), "/log").read())
    assert Counter(lines) == _all_appends(n_threads, per_thread)
    for t in range(n_threads):  # one client's appends keep their order
        mine = [x for x in lines if x.startswith(f"append-{t}-")]
        assert mine == [f"append-{t}-{i}" for i in range(per_thread)]


@pytest.mark.parametrize(("n_threads", "per_thread"), [(2, 20), (THREADS, PER_THREAD)])
def test_appends_inside_one_open_commit_are_all_kept(localpachd: Any, pach_client: Any,
                                                     rebase_mode: str, n_threads: int,
                                                     per_thread: int) -> None:
    pach_client.create_repo("r")
    pach_client.put_file_bytes(("r", "master"), "/log", b"first\n")
    commit = pach_client.start_commit("r", "master")

    def work(client: Any, t: int) -> None:
        for i in range(per_thread):
            client.put_file_bytes(commit, "/log", _appended(t, i), append=True)

    _hammer(localpachd, n_threads, work)
    pach_client.finish_commit(commit)
    lines = _lines(pach_client.get_file(commit, "/log").read())
    assert lines[0] == "first"
    assert Counter(lines[1:]) == _all_appends(n_threads, per_thread)


def test_streams_touching_several_files_keep_every_append(localpachd: Any,
                                                          pach_client: Any) -> None:
    """Each stream appends to two shared files (bytes, and a CopyFile with append) and puts and
    deletes files of its own: every append lands, each thread's last put survives, its deletes
    hold."""
    pach_client.create_repo("src")
    with pach_client.commit("src", "master") as src:
        for t in range(THREADS):
            pach_client.put_file_bytes(src, f"/t{t}", f"copy-{t}\n".encode())
    pach_client.create_repo("r")
    commit = pach_client.start_commit("r", "master")

    def work(client: Any, t: int) -> None:
        for i in range(PER_THREAD):
            with client.modify_file_client(commit) as mfc:
                mfc.put_file_from_bytes("/shared/a", _appended(t, i), append=True)
                mfc.put_file_from_bytes(f"/own/{t}/put", f"{t}-{i}".encode())
                mfc.put_file_from_bytes(f"/own/{t}/gone-{i}", b"x")
                if i:
                    mfc.delete_file(f"/own/{t}/gone-{i - 1}")
                mfc.copy_file(src, f"/t{t}", "/shared/b", append=True)

    _hammer(localpachd, THREADS, work)
    pach_client.finish_commit(commit)
    lines = _lines(pach_client.get_file(commit, "/shared/a").read())
    assert Counter(lines) == _all_appends(THREADS, PER_THREAD)
    copied = _lines(pach_client.get_file(commit, "/shared/b").read())
    assert Counter(copied) == Counter({f"copy-{t}": PER_THREAD for t in range(THREADS)})
    for t in range(THREADS):
        last_put = f"{t}-{PER_THREAD - 1}".encode()
        assert pach_client.get_file(commit, f"/own/{t}/put").read() == last_put
        own = sorted(f.file.path for f in pach_client.list_file(commit, f"/own/{t}"))
        assert own == [f"/own/{t}/gone-{PER_THREAD - 1}", f"/own/{t}/put"]


def test_failed_streams_write_nothing_while_others_append(localpachd: Any,
                                                         pach_client: Any) -> None:
    """A stream that appends and then fails (a path with a NUL byte) leaves no trace, even when
    other streams re-base their appends around it."""
    pach_client.create_repo("r")
    commit = pach_client.start_commit("r", "master")

    def work(client: Any, t: int) -> None:
        for i in range(PER_THREAD):
            if i % 3 != 2:
                client.put_file_bytes(commit, "/log", _appended(t, i), append=True)
                continue
            with pytest.raises(grpc.RpcError) as err:
                with client.modify_file_client(commit) as mfc:
                    mfc.put_file_from_bytes("/log", _appended(t, i), append=True)
                    mfc.put_file_from_bytes("/bad\x00name", b"x")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]

    _hammer(localpachd, THREADS, work)
    pach_client.finish_commit(commit)
    lines = _lines(pach_client.get_file(commit, "/log").read())
    kept = Counter(_appended(t, i).decode().strip() for t in range(THREADS)
                   for i in range(PER_THREAD) if i % 3 != 2)
    assert Counter(lines) == kept


def _op_of_step(before: bytes | None, after: bytes | None,
                remaining: Counter[tuple[str, bytes]]) -> tuple[str, bytes]:
    """Which single operation turned `before` into `after` (one commit on the branch)."""
    if after is None:
        return ("delete", b"")
    if after.startswith(b"put-") and after.count(b"\n") == 1 and ("put", after) in remaining:
        return ("put", after)
    base = before or b""
    assert after.startswith(base), f"a commit dropped content: {base!r} -> {after!r}"
    return ("append", after[len(base):])


def test_mixed_appends_puts_and_deletes_on_a_branch_serialise(localpachd: Any,
                                                              pach_client: Any) -> None:
    """Every stream on a branch head makes one commit: walking the commits in order, each must
    be exactly one of the operations sent (an append on top of its parent's content, a put that
    replaces it, a delete), and every operation sent must appear exactly once."""
    pach_client.create_repo("r")
    sent: Counter[tuple[str, bytes]] = Counter()
    lock = threading.Lock()

    def work(client: Any, t: int) -> None:
        for i in range(PER_THREAD):
            kind = ("delete", "put")[t % 2] if i % 5 == 4 else "append"
            data = b""
            if kind == "delete":
                client.delete_file(("r", "master"), "/f")
            elif kind == "put":
                data = f"put-{t}-{i}\n".encode()
                client.put_file_bytes(("r", "master"), "/f", data)
            else:
                data = _appended(t, i)
                client.put_file_bytes(("r", "master"), "/f", data, append=True)
            with lock:
                sent[(kind, data)] += 1

    _hammer(localpachd, THREADS, work)
    commits = list(pach_client.list_commit("r"))[::-1]  # oldest first (master only)
    seen: Counter[tuple[str, bytes]] = Counter()
    before: bytes | None = None
    for ci in commits:
        exists = pach_client.path_exists(ci.commit, "/f")
        after = bytes(pach_client.get_file(ci.commit, "/f").read()) if exists else None
        op = _op_of_step(before, after, sent - seen)
        seen[op] += 1
        before = after
    assert seen == sent
