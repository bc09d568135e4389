"""localpachd.waits: every blocking call of the API is bounded, and the slot arithmetic.

The completeness check walks the services python-pachyderm's protos define: a request with a
`wait` or `follow` field is a call that can block, so its method must take a wait slot (a new
field in a future proto fails here instead of starving the server).
"""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import pytest
import python_pachyderm.proto.v2 as protos

from localpachd import errors, waits


def blocking_methods() -> set[str]:
    found = set()
    for mod in pkgutil.walk_packages(protos.__path__, protos.__name__ + "."):
        if not mod.name.endswith("_pb2"):
            continue
        for service in importlib.import_module(mod.name).DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                names = {f.name for f in m.input_type.fields}
                if names & {"wait", "follow"} or m.name.startswith(("Subscribe", "Watch")):
                    found.add(f"/{service.full_name}/{m.name}")
    return found


def test_every_method_that_can_block_takes_a_wait_slot() -> None:
    covered = set(waits.STREAMS) | waits.UNARY_WAITS
    unimplemented = {"/pps_v2.API/SubscribeJob"}  # localpachd answers UNIMPLEMENTED at once
    assert blocking_methods() - unimplemented <= covered
    assert "/pfs_v2.API/InspectCommit" in blocking_methods()  # the walk finds the protos


@pytest.mark.parametrize(("workers", "expected"), [
    (64, (48, 24)), (12, (8, 4)), (8, (4, 2)), (2, (1, 1)), (200, (150, 75)),
])
def test_default_sizes_keep_threads_for_ordinary_calls(workers: int,
                                                       expected: tuple[int, int]) -> None:
    total, per_peer = waits.sizes(workers)
    assert (total, per_peer) == expected
    assert 0 < per_peer <= total < workers


@pytest.mark.parametrize(("workers", "total", "per_peer"), [
    (1, None, None), (8, 8, None), (8, 0, None), (8, 4, 0),
])
def test_sizes_that_would_let_waits_take_every_thread_are_refused(
        workers: int, total: int | None, per_peer: int | None) -> None:
    with pytest.raises(ValueError, match="workers|wait_slots"):
        waits.sizes(workers, total, per_peer)


def test_slots_bound_the_total_and_each_peer_and_are_released() -> None:
    slots = waits.WaitSlots(total=3, per_peer=2)
    slots.acquire("a", "InspectCommit")
    slots.acquire("a", "InspectCommit")
    with pytest.raises(errors.ResourceExhausted, match="this connection") as per_peer:
        slots.acquire("a", "InspectCommit")
    assert per_peer.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    slots.acquire("b", "SubscribeCommit")
    with pytest.raises(errors.ResourceExhausted, match="all 3 wait slots") as full:
        slots.acquire("c", "GetLogs")
    assert "GetLogs would wait" in full.value.message and "retry" in full.value.message
    assert (slots.in_use, slots.refused) == (3, 2)
    slots.release("a")
    with slots.hold("c", "InspectJob"):
        assert slots.in_use == 3
    with pytest.raises(RuntimeError), slots.hold("c", "InspectJob"):
        raise RuntimeError("the wait failed")
    slots.release("a")
    slots.release("b")
    assert slots.in_use == 0 and not slots._by_peer
