"""Small services: version, health, admin (InspectCluster) and the auth/identity/license stubs.

Registered by `localpachd.server`. localpachd has no auth service: every auth_v2, identity_v2 and
license_v2 method fails UNIMPLEMENTED with Pachyderm's "the auth service is not activated" text,
which python-pachyderm's `delete_all()` expects and skips. (Access control, when wanted, is the
server's `--auth-token` check, not Pachyderm auth.)
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from python_pachyderm.proto.v2.admin import admin_pb2, admin_pb2_grpc
from python_pachyderm.proto.v2.version.versionpb import version_pb2, version_pb2_grpc

from localpachd import errors
from localpachd.context import ServerContext, fill_unimplemented
from localpachd.rpctypes import CallDetails, Handler

VERSION = (2, 7, 0)
ADDITIONAL = "-localpachd"


class VersionServicer(version_pb2_grpc.APIServicer):  # type: ignore[misc]
    def GetVersion(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> version_pb2.Version:
        major, minor, micro = VERSION
        return version_pb2.Version(
            major=major, minor=minor, micro=micro, additional=ADDITIONAL,
            go_version=f"python{sys.version_info.major}.{sys.version_info.minor}",
            platform=f"{platform.system().lower()}/{platform.machine()}")


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = (health_pb2.HealthCheckResponse.NOT_SERVING if self.ctx.stopping.is_set()
                  else health_pb2.HealthCheckResponse.SERVING)
        return health_pb2.HealthCheckResponse(status=status)


    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        """Send the status now and again when the server starts stopping."""
        yield self.Check(request, context)
        while context.is_active() and not self.ctx.stopping.wait(1.0):
            pass
        if context.is_active():
            yield self.Check(request, context)


class AdminServicer(admin_pb2_grpc.APIServicer):  # type: ignore[misc]
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def InspectCluster(
        self, request: admin_pb2.InspectClusterRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ClusterInfo:
        cid = self.ctx.store.meta("cluster_id")
        return admin_pb2.ClusterInfo(id=cid, deployment_id=cid, version_warnings_ok=True)


class _AuthNotActivated(grpc.GenericRpcHandler):  # type: ignore[misc]
    SERVICES = ("/auth_v2.API/", "/identity_v2.API/", "/license_v2.API/",
                "/enterprise_v2.API/")

    def service(self, details: CallDetails) -> Handler | None:
        if not details.method.startswith(self.SERVICES):
            return None

        def behaviour(request: object, context: grpc.ServicerContext) -> object:
            raise errors.Unimplemented(errors.AUTH_NOT_ACTIVATED)

        return grpc.unary_unary_rpc_method_handler(behaviour)


def register(server: grpc.Server, ctx: ServerContext) -> None:
    fill_unimplemented(VersionServicer, "versionpb_v2.API")
    fill_unimplemented(HealthServicer, "grpc.health.v1.Health")
    fill_unimplemented(AdminServicer, "admin_v2.API")
    version_pb2_grpc.add_APIServicer_to_server(VersionServicer(), server)
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(ctx), server)
    admin_pb2_grpc.add_APIServicer_to_server(AdminServicer(ctx), server)
    server.add_generic_rpc_handlers((_AuthNotActivated(),))
