"""GetLogs: by pipeline, job and datum, with follow, through the real client."""

from __future__ import annotations

import threading
from typing import Any

from lpd_pps_helpers import last_job, pfs, put, sh_pipeline


def test_logs_by_pipeline_job_and_datum(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1", "/b": "2"})
    sh_pipeline(client, "talk", pfs("data", "/*"),
                'echo "out $(basename $data)"', 'echo "err $(basename $data)" >&2')  # fmt: skip
    job = last_job(client, "talk")
    msgs = list(client.get_pipeline_logs("talk"))
    assert sorted(m.message for m in msgs) == ["err a", "err b", "out a", "out b"]
    assert all(m.pipeline_name == "talk" and m.job_id == job.job.id and m.user for m in msgs)
    assert {m.data[0].path for m in msgs} == {"/a", "/b"}
    by_job = list(client.get_job_logs("talk", job.job.id))
    assert len(by_job) == 4
    datum = next(d for d in client.list_datum("talk", job.job.id) if d.data[0].file.path == "/a")
    only_a = [m.message for m in client.get_job_logs("talk", job.job.id, datum=datum.datum)]
    assert sorted(only_a) == ["err a", "out a"]
    filtered = [m.message for m in client.get_pipeline_logs("talk", data_filters=["/b"])]
    assert sorted(filtered) == ["err b", "out b"]
    assert [m.message for m in client.get_pipeline_logs("talk", tail=1)] in (
        ["out b"],
        ["err b"],
        ["out a"],
        ["err a"],
    )


def test_follow_streams_until_the_job_ends(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/a": "1"})
    sh_pipeline(client, "slow", pfs("data", "/"), "echo first", "sleep 1", "echo second")
    job = next(iter(client.list_job("slow")))
    got: list[str] = []

    def follow() -> None:
        for m in client.get_job_logs("slow", job.job.id, follow=True):
            got.append(m.message)

    t = threading.Thread(target=follow)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert got == ["first", "second"]
