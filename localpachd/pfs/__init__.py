"""PFS for localpachd: the pfs_v2 gRPC service over the store.

`model` (projects, repos, branches, commits, provenance), `files` (file trees, ModifyFile
sessions), `convert` (protobuf), `servicer` (the gRPC methods), `transfer` (GetFile/TAR streams).
`register` is called by `localpachd.server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from localpachd.context import ServerContext


def register(server: grpc.Server, ctx: ServerContext) -> None:
    # Imported here: the package is loaded by every `from localpachd.pfs import model`.
    from localpachd.pfs.servicer import register as _register

    _register(server, ctx)
