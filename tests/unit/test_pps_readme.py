"""localpachd/pps/README.md says how many pps_v2.API methods are served and which are not: both
are checked against the servicer itself (the methods `PPSServicer` defines, as opposed to the
generated defaults `context.fill_unimplemented` replaces), so the README cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.pps.servicer import PPSServicer

README = Path(__file__).resolve().parents[2] / "localpachd" / "pps" / "README.md"


def served_and_missing() -> tuple[list[str], list[str]]:
    names = [m.name for m in pps_pb2.DESCRIPTOR.services_by_name["API"].methods]
    served = [n for n in names if getattr(PPSServicer, n).__name__ != "missing"]
    return served, [n for n in names if n not in served]


def test_the_served_count_is_the_servicers() -> None:
    served, missing = served_and_missing()
    text = README.read_text()
    got = re.search(r"## Served \(`pps_v2\.API`, (\d+) of (\d+)\)", text)
    assert got is not None, "the README's 'Served (`pps_v2.API`, N of M)' heading is gone"
    assert (int(got[1]), int(got[2])) == (len(served), len(served) + len(missing))


def test_the_not_served_list_is_the_servicers() -> None:
    _served, missing = served_and_missing()
    text = README.read_text()
    block = text.split("Not served (UNIMPLEMENTED", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- ([A-Z][A-Za-z]+): \S", block, re.MULTILINE)  # each with its reason
    assert sorted(listed) == sorted(missing)
