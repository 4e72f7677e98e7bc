"""A server started with MIANDAN_HOST=::1 (no brackets) listens on IPv6 loopback and is reached
at the address its settings give. It failed to start ("Failed to bind"): gRPC read "::1:0" as the
IPv6 address ::1:0 on port 443."""
import dataclasses
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.metrics import RpcMetrics
from services.common.server import build_server


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")


async def test_a_server_on_a_bare_ipv6_host_serves_at_its_bracketed_address():
    settings = dataclasses.replace(Settings.from_env("card", {"MIANDAN_HOST": "::1"}), port=0, metrics_port=None)
    server = build_server(
        settings, service_names=["test.V6"], register=lambda s: None, policy=AccessPolicy(settings),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"{settings.host}:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="test.V6"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
