"""Writing and reading PFS files through the real python-pachyderm client: one commit of many
files, and a whole branch read back as {path: content}.

Used by the localpachd pps/jobs tests (through lpd_pps_helpers), the agent sync tests and the
warm pipeline test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FILE = 1  # pfs_pb2.FileType.FILE


def put(client: Any, repo: str, files: Mapping[str, str | bytes], delete: tuple[str, ...] = (),
        branch: str = "master") -> str:
    """One commit on `branch` that deletes `delete` and writes `files` (text is UTF-8); its id."""
    with client.commit(repo, branch) as c:
        for path in delete:
            client.delete_file(c, path)
        for path, data in files.items():
            client.put_file_bytes(c, path, data.encode() if isinstance(data, str) else data)
    return str(c.id)


def read_repo_bytes(client: Any, repo: str, branch: str = "master") -> dict[str, bytes]:
    """Every file of the branch's head: path -> content."""
    return {fi.file.path: bytes(client.get_file((repo, branch), fi.file.path).read())
            for fi in client.walk_file((repo, branch), "/") if fi.file_type == FILE}


def read_repo(client: Any, repo: str, branch: str = "master") -> dict[str, str]:
    """`read_repo_bytes`, decoded as UTF-8."""
    return {path: data.decode() for path, data in read_repo_bytes(client, repo, branch).items()}
