"""Bytes that are not the method's request message, sent to one real server wired as services
are: the caller gets INVALID_ARGUMENT with reason MALFORMED_REQUEST, never grpc.aio's own
UNKNOWN "Unexpected DecodeError", and the server goes on serving. Also: an error that echoes
huge input still reaches the caller as itself."""
import dataclasses

import grpc
import pytest
from google.rpc import status_pb2
from prometheus_client import CollectorRegistry

from services.common.admission import AdmissionController
from services.common.auth import AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import InvalidArgument, error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

SERVICE = "test.Parse"
Message = status_pb2.Status  # any generated message: field 2 is a string, so bad UTF-8 fails
GOOD = Message(code=3, message="好").SerializeToString()
# Truncated varint; a length running past the end; a string field holding invalid UTF-8.
MALFORMED = [b"\x08", b"\x12\x05ab", b"\x12\x02\xc3\x28", b"\xff\xff\xff"]


@pytest.fixture
async def server_and_channel():
    settings = dataclasses.replace(Settings.from_env("card", {}), port=0, metrics_port=None, grace_seconds=1.0)
    seen = []

    async def unary(request, context):
        seen.append(request)
        return request

    async def server_stream(request, context):
        seen.append(request)
        yield request

    async def client_stream(requests, context):
        n = 0
        async for request in requests:
            seen.append(request)
            n += 1
        return Message(code=n)

    async def echo_everything(request, context):
        raise InvalidArgument(violations=[(f"items[{i}].name", request.message * 1000) for i in range(100)])

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, Message.FromString, Message.SerializeToString),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, Message.FromString, Message.SerializeToString),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, Message.FromString, Message.SerializeToString),
        "EchoEverything": grpc.unary_unary_rpc_method_handler(echo_everything, Message.FromString, Message.SerializeToString),
    }
    metrics = RpcMetrics(CollectorRegistry())
    server = build_server(
        settings,
        service_names=[SERVICE],
        register=lambda s: s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),)),
        policy=AccessPolicy(settings),
        admission=AdmissionController(8, min_limit=8, max_limit=8, max_wait_ms=0),
        metrics=metrics,
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel, internal_metadata(settings), seen, metrics
    await channel.close()
    await server.stop(0)


def raw(channel, kind, name):
    return getattr(channel, kind)(f"/{SERVICE}/{name}")  # bytes in, bytes out


def assert_malformed(err):
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err
    d = error_details(err)
    assert d["reason"] == "MALFORMED_REQUEST", d
    assert "google.rpc.Status" in d["message"], d  # names the message the bytes should have been


@pytest.mark.parametrize("payload", MALFORMED)
async def test_a_malformed_unary_request_is_invalid_argument_and_never_reaches_the_handler(server_and_channel, payload):
    channel, md, seen, metrics = server_and_channel
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(channel, "unary_unary", "Unary")(payload, metadata=md, timeout=5)
    assert_malformed(info.value)
    assert seen == []
    codes = {s.labels["code"]: s.value for s in metrics.calls.collect()[0].samples if s.name.endswith("_total")}
    assert codes == {"INVALID_ARGUMENT": 1.0}
    # The server is unharmed: a well-formed call right after is served.
    assert await raw(channel, "unary_unary", "Unary")(GOOD, metadata=md, timeout=5) == GOOD


async def test_a_malformed_request_of_a_server_stream_is_invalid_argument(server_and_channel):
    channel, md, seen, _ = server_and_channel
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in raw(channel, "unary_stream", "ServerStream")(MALFORMED[2], metadata=md, timeout=5):
            pass
    assert_malformed(info.value)
    assert seen == []
    assert [m async for m in raw(channel, "unary_stream", "ServerStream")(GOOD, metadata=md, timeout=5)] == [GOOD]


async def test_a_malformed_message_inside_a_client_stream_stops_it_with_invalid_argument(server_and_channel):
    channel, md, seen, _ = server_and_channel
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(channel, "stream_unary", "ClientStream")(iter([GOOD, MALFORMED[1], GOOD]), metadata=md, timeout=5)
    assert_malformed(info.value)
    assert len(seen) == 1  # the good message before it was read; nothing after
    reply = await raw(channel, "stream_unary", "ClientStream")(iter([GOOD, GOOD]), metadata=md, timeout=5)
    assert Message.FromString(reply).code == 2


async def test_the_credential_is_checked_before_the_bytes(server_and_channel):
    channel, _, seen, _ = server_and_channel
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(channel, "unary_unary", "Unary")(MALFORMED[0], timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert seen == []


async def test_an_error_echoing_huge_input_reaches_the_caller_as_itself(server_and_channel):
    # 100 violations of 5,000 characters each: unbounded, the trailer exceeded the client's 16 KiB
    # metadata limit and the caller saw RESOURCE_EXHAUSTED "Stream removed" instead.
    channel, md, _, _ = server_and_channel
    request = Message(message="名" * 5).SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(channel, "unary_unary", "EchoEverything")(request, metadata=md, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    d = error_details(info.value)
    assert d["violations"][0][0] == "items[0].name"
    assert "more not shown" in d["violations"][-1][1]
