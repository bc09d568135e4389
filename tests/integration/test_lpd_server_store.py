"""The store's extension points the pps module builds on: re-entrant write transactions, all or
nothing rollback, events delivered only after COMMIT and in order, savepoints, other modules'
tables in the same database, and wait_until."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localpachd import errors
from localpachd.events import COMMIT_FINISHED, COMMIT_STARTED, Event
from localpachd.pfs import files, model
from localpachd.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data")
    yield s  # type: ignore[misc]
    s.close()


def test_nested_writes_join_and_roll_back_together(store: Store) -> None:
    store.register_schema("CREATE TABLE IF NOT EXISTS pps_demo(name TEXT PRIMARY KEY);")
    seen: list[Event] = []
    store.events.subscribe(seen.append)
    with pytest.raises(errors.AlreadyExists):
        with store.write() as outer:
            model.create_repo(outer, "default", "in")
            with store.write() as inner:  # joins the outer transaction
                assert inner is outer
                inner.x("INSERT INTO pps_demo VALUES('p')")
                model.start_commit(inner, "default", "in", "master")
            model.create_repo(outer, "default", "in")  # fails: everything above rolls back
    store.events.drain()
    with store.read() as tx:
        assert tx.q("SELECT * FROM repos") == [] and tx.q("SELECT * FROM pps_demo") == []
    assert seen == []  # nothing committed, nothing announced


def test_events_after_commit_in_order_with_shared_commit_set(store: Store) -> None:
    seen: list[Event] = []
    store.events.subscribe(seen.append)
    with store.write() as tx:
        model.create_repo(tx, "default", "in")
        model.create_repo(tx, "default", "out")
        model.create_branch(tx, model.BranchKey("default", "in", "master"), None, [])
        model.create_branch(tx, model.BranchKey("default", "out", "master"), None,
                            [model.BranchKey("default", "in", "master")])
    with store.write() as tx:
        c = model.start_commit(tx, "default", "in", "master")
        out = model.find_commit(tx, "default", "out", c.id)
        assert out is not None and out.origin == "AUTO"
        assert [p.id for p in model.commit_provenance(tx, out.cid)] == [c.id]
        assert not seen or seen[-1].commit_id != c.id  # not delivered before COMMIT
    with store.write() as tx:
        files.write_entries(tx, out.cid, [("/o", store.blobs.put_bytes(b"out"), "d1")])
        model.finish_commit(tx, model.get_commit(tx, out.cid), error="boom")
    store.events.drain()
    tail = [(e.kind, e.repo, e.commit_set, e.error) for e in seen[-3:]]
    assert tail == [(COMMIT_STARTED, "in", c.id, ""), (COMMIT_STARTED, "out", c.id, ""),
                    (COMMIT_FINISHED, "out", c.id, "boom")]
    with store.read() as tx:
        assert [(e.path, e.datum) for e in files.tree(tx, out.cid)] == [("/o", "d1")]
        assert model.get_commit(tx, out.cid).error == "boom"


def test_savepoint_and_wait_until(store: Store) -> None:
    with store.write() as tx:
        model.create_repo(tx, "default", "a")
        with pytest.raises(errors.AlreadyExists):
            with tx.savepoint():
                model.create_repo(tx, "default", "b")
                model.create_repo(tx, "default", "a")
    with store.read() as tx:
        assert [r["name"] for r in tx.q("SELECT name FROM repos")] == ["a"]

    def later() -> None:
        with store.write() as tx:
            model.create_repo(tx, "default", "c")

    threading.Timer(0.2, later).start()
    found = store.wait_until(
        lambda tx: tx.one("SELECT name FROM repos WHERE name='c'"), timeout=10)
    assert found is not None and found["name"] == "c"
