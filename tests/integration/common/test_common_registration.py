"""The CallPipeline is applied where handlers are registered (no ServerInterceptor): every way a
service can register handlers — generated add_*Servicer_to_server (registered methods + generic),
registered methods alone, generic handlers alone — must get auth, admission and metrics."""
import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

SERVICE = "test.Registered"


async def echo(request, context):
    return request


def _handlers():
    return {"Echo": grpc.unary_unary_rpc_method_handler(echo)}


def _registered_only(server):
    server.add_registered_method_handlers(SERVICE, _handlers())


def _generic_only(server):
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _handlers()),))


def _like_generated_code(server):
    handlers = _handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


@pytest.fixture(params=[_registered_only, _generic_only, _like_generated_code])
async def served(request):
    settings = dataclasses.replace(Settings.from_env("card", {}), port=0, metrics_port=None, grace_seconds=1.0)
    metrics = RpcMetrics(CollectorRegistry())
    server = build_server(
        settings, service_names=[SERVICE], register=request.param, policy=AccessPolicy(settings), metrics=metrics
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel, settings, metrics
    await channel.close()
    await server.stop(0)


def _count(metrics, code):
    return sum(
        s.value for s in metrics.calls.collect()[0].samples
        if s.name.endswith("_total") and s.labels["method"] == "Echo" and s.labels["code"] == code
    )


async def test_every_registration_path_is_authenticated_and_counted(served):
    _, channel, settings, metrics = served
    call = channel.unary_unary(f"/{SERVICE}/Echo")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(b"x", timeout=2)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_details(info.value)["reason"] == "CREDENTIAL_MISSING"
    assert await call(b"x", metadata=internal_metadata(settings), timeout=2) == b"x"
    assert await call(b"y", metadata=internal_metadata(settings), timeout=2) == b"y"
    assert _count(metrics, "UNAUTHENTICATED") == 1
    assert _count(metrics, "OK") == 2


async def test_unknown_methods_are_unimplemented_and_health_needs_no_credential(served):
    server, channel, settings, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(f"/{SERVICE}/Nope")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.admission.in_flight == 0
