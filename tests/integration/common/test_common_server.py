"""One real grpc.aio server on port 0, wired with build_server exactly as services are."""
import asyncio
import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from services.common.admission import AdmissionController
from services.common.auth import ADMIN, AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import FailedPrecondition, error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

SERVICE = "test.Echo"


class EchoState:
    def __init__(self):
        self.calls = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()


def make_register(state):
    async def echo(request, context):
        state.calls += 1
        return request

    async def fail(request, context):
        state.calls += 1
        raise FailedPrecondition("CARD_CAP_REACHED", "已达上限 / cap reached")

    async def crash(request, context):
        raise ZeroDivisionError("bug")

    async def slow(request, context):
        state.calls += 1
        state.started.set()
        await asyncio.sleep(0.2)
        return request

    async def hold(request, context):
        state.started.set()
        await state.release.wait()
        return b"done"

    async def times_out(request, context):
        await asyncio.wait_for(asyncio.sleep(1), 0.01)

    async def aborts(request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND, "gone")

    async def stream(request, context):
        for i in range(3):
            yield bytes([i])

    def unary(fn):
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)

    handlers = {
        "Echo": unary(echo), "Fail": unary(fail), "Crash": unary(crash), "Slow": unary(slow),
        "Hold": unary(hold), "Admin": unary(echo), "TimesOut": unary(times_out), "Aborts": unary(aborts),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }

    def register(server):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return register


@pytest.fixture
async def harness():
    settings = dataclasses.replace(Settings.from_env("card", {}), port=0, metrics_port=None, grace_seconds=2.0)
    state = EchoState()
    admission = AdmissionController(2, min_limit=2, max_limit=2, max_wait_ms=0)
    server = build_server(
        settings,
        service_names=[SERVICE],
        register=make_register(state),
        policy=AccessPolicy(settings, {f"/{SERVICE}/Admin": ADMIN}),
        admission=admission,
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel, state, settings
    await channel.close()
    await server.stop(0)


def call(channel, name):
    return channel.unary_unary(f"/{SERVICE}/{name}")


async def health_status(channel, service=SERVICE):
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)).status


async def test_health_reports_serving_for_the_service_and_overall(harness):
    _, channel, _, _ = harness
    assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    assert await health_status(channel, "") == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(harness):
    _, channel, _, _ = harness
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for response in stub.ServerReflectionInfo(requests(), timeout=2):
        names = [s.name for s in response.list_services_response.service]
    assert SERVICE in names and "grpc.health.v1.Health" in names


async def test_an_authenticated_call_succeeds(harness):
    _, channel, _, settings = harness
    assert await call(channel, "Echo")(b"hi", metadata=internal_metadata(settings), timeout=2) == b"hi"


async def test_a_domain_error_arrives_with_its_code_and_reason(harness):
    _, channel, _, settings = harness
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Fail")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(info.value)["reason"] == "CARD_CAP_REACHED"
    assert "cap reached" in info.value.details()


async def test_an_unexpected_exception_becomes_internal_without_leaking_details(harness):
    _, channel, _, settings = harness
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Crash")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert "ZeroDivision" not in info.value.details()


async def test_a_timeout_inside_the_handler_becomes_deadline_exceeded_and_handler_aborts_pass_through(harness):
    server, channel, _, settings = harness
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "TimesOut")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Aborts")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    samples = server.metrics.calls.collect()[0].samples
    codes = {s.labels["code"] for s in samples if s.labels["method"] == "Aborts" and s.name.endswith("_total")}
    assert codes == {"NOT_FOUND"}


async def test_a_call_without_the_internal_token_is_refused_before_the_handler_runs(harness):
    _, channel, state, settings = harness
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Echo")(b"", timeout=2)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_details(info.value)["reason"] == "CREDENTIAL_MISSING"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Echo")(b"", metadata=(("x-miandan-internal-token", "wrong"),), timeout=2)
    assert error_details(info.value)["reason"] == "CREDENTIAL_INVALID"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(channel, "Admin")(b"", metadata=internal_metadata(settings), timeout=2)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_details(info.value)["reason"] == "ADMIN_REQUIRED"
    assert state.calls == 0
    assert await call(channel, "Admin")(b"ok", metadata=internal_metadata(settings, admin=True), timeout=2) == b"ok"


async def test_server_streams_pass_through_the_pipeline(harness):
    _, channel, _, settings = harness
    stream = channel.unary_stream(f"/{SERVICE}/Stream")(b"", metadata=internal_metadata(settings), timeout=2)
    assert [m async for m in stream] == [b"\x00", b"\x01", b"\x02"]


async def test_a_burst_beyond_the_limit_is_shed_with_pushback_while_health_stays_serving(harness):
    _, channel, state, settings = harness
    md = internal_metadata(settings)

    async def one():
        try:
            await call(channel, "Slow")(b"x", metadata=md, timeout=5)
            return "OK", None
        except grpc.aio.AioRpcError as e:
            return e.code().name, e

    burst = asyncio.gather(*(one() for _ in range(20)))
    await state.started.wait()
    assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    results = await burst
    codes = [c for c, _ in results]
    assert set(codes) <= {"OK", "UNAVAILABLE"}
    assert 1 <= codes.count("OK") <= 2 and codes.count("UNAVAILABLE") >= 18
    delays = set()
    for code, err in results:
        if err is not None:
            d = error_details(err)
            assert d["reason"] == "OVERLOADED" and d["retry_after_ms"] > 0
            assert 750 <= d["retry_after_ms"] <= 1250 and d["pushback_ms"] == d["retry_after_ms"]
            assert "请 1 秒后再试" in d["message"]
            assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == str(d["retry_after_ms"])
            delays.add(d["retry_after_ms"])
    # Told apart, so that the crowd refused together does not come back together.
    assert len(delays) >= 5, delays
    assert state.calls == codes.count("OK")


async def test_graceful_stop_lets_an_in_flight_call_finish(harness):
    server, channel, state, settings = harness
    in_flight = asyncio.ensure_future(call(channel, "Hold")(b"", metadata=internal_metadata(settings), timeout=5))
    await state.started.wait()
    stopping = asyncio.ensure_future(server.stop(2.0))
    await asyncio.sleep(0.1)
    assert server.health._server_status[SERVICE] == health_pb2.HealthCheckResponse.NOT_SERVING
    state.release.set()
    assert await in_flight == b"done"
    await stopping


async def test_a_credential_check_that_breaks_fails_closed_as_unauthenticated_not_unknown(harness):
    server, channel, state, settings = harness

    def broken(role, metadata, context=None):
        raise OverflowError("int too large to convert to float")  # what a 10**400 exp once did

    server.policy.check = broken
    for name in ("Echo", "Stream"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if name == "Stream":
                async for _ in channel.unary_stream(f"/{SERVICE}/Stream")(b"", metadata=internal_metadata(settings), timeout=2):
                    pass
            else:
                await call(channel, name)(b"hi", metadata=internal_metadata(settings), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
        assert "int too large" not in (err.value.details() or "")
    assert state.calls == 0
