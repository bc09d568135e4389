"""The project's own iris pipeline on a real server, through the raw python-pachyderm client:
its input repos loaded from data/ the way `pachsync demo` loads them, and its specs as
CreatePipelineRequests.

Used by the slow tests that run all 77 models (tests/e2e/test_lpd_iris.py,
tests/integration/test_warm_pipeline.py; the agent's own loading is tested elsewhere) and, for
the C x gamma grid, by the report tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from python_pachyderm.proto.v2.pps import pps_pb2

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ("split", "model", "test", "select")
PARAMETER_FILES = ("c_parameters.txt", "gamma_parameters.txt")
# data/parameters/*: the 11 x 7 grid of the search, as literals for tests of the report's grid.
C_VALUES = (0.031, 0.125, 0.5, 2.0, 8.0, 32.0, 128.0, 512.0, 2048.0, 8192.0, 32768.0)
GAMMA_VALUES = (0.001, 0.004, 0.016, 0.063, 0.25, 1.0, 4.0)


def pipeline_request(name: str, **changes: Any) -> pps_pb2.CreatePipelineRequest:
    """specs/pipelines/<name>.yaml with top-level fields replaced by `changes`."""
    doc = yaml.safe_load((ROOT / "specs" / "pipelines" / f"{name}.yaml").read_text())
    doc.update(changes)
    import python_pachyderm  # here: unit tests use the constants above without loading grpc

    return python_pachyderm.parse_dict_pipeline_spec(doc)


def param_files(name: str) -> dict[str, bytes]:
    """One file per value of data/parameters/<name>, named with 16 hex digits (as Pachyderm 1.x's
    split by line did): /<name>/0000000000000000, …"""
    values = (ROOT / "data" / "parameters" / name).read_text().split()
    return {f"/{name}/{i:016x}": f"{v}\n".encode() for i, v in enumerate(values)}


def load_inputs(client: Any) -> None:
    """Creates `raw_data` (iris.csv) and `parameters` (one file per C and gamma value), one
    commit each."""
    client.create_repo("raw_data")
    client.create_repo("parameters")
    with client.commit("raw_data", "master") as c:
        client.put_file_bytes(c, "/iris.csv", (ROOT / "data" / "iris.csv").read_bytes())
    with client.commit("parameters", "master") as c:
        for name in PARAMETER_FILES:
            for path, data in param_files(name).items():
                client.put_file_bytes(c, path, data)
