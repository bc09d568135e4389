"""localpachd.wire: a remembered message is served with the bytes it had when remembered;
any other message (even an equal one) is serialised as usual."""

from __future__ import annotations

from python_pachyderm.proto.v2.pfs import pfs_pb2

from localpachd import wire


def test_remembered_messages_keep_their_bytes() -> None:
    calls: list[object] = []

    def default(msg: pfs_pb2.RepoInfo) -> bytes:
        calls.append(msg)
        return bytes(msg.SerializeToString())

    serialize = wire._serializer(default)
    kept = wire.remember(pfs_pb2.RepoInfo(description="kept"))
    assert serialize(kept) == kept.SerializeToString() and calls == []
    other = pfs_pb2.RepoInfo(description="kept")
    assert serialize(other) == kept.SerializeToString() and calls == [other]
