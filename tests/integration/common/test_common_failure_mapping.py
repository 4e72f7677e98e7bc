"""Whatever a handler lets escape, the caller gets a status the pipeline chose, with a machine
reason, and nothing of the server's internals: not gRPC's own UNKNOWN "Unexpected <class ...>:
<text>", which is what a caller got when turning the exception into a status failed itself."""
import grpc
import pytest

from services.common.auth import internal_metadata
from services.common.errors import InvalidArgument, NotFound, error_details

from tests.integration.common.kit_server import kit_settings, start_generic

SERVICE, UPSTREAM = "test.Mapping", "test.Garbled"


@pytest.fixture
async def server():
    async def bad_description(request, context):
        # A servicer's slip: a violation described by a number, not a text.
        raise InvalidArgument("page_size", 5000)

    async def bad_message(request, context):
        raise NotFound("ORDER_NOT_FOUND", message=KeyError("order-42 in shard /var/db/7"))

    async def garbled(request, context):
        # A peer (a proxy, another stack) whose status details are not a google.rpc.Status.
        await context.abort_with_status(_Status(grpc.StatusCode.UNAVAILABLE, "busy", (("grpc-status-details-bin", b"\xff\xfe not a proto"),)))

    unary = grpc.unary_unary_rpc_method_handler
    upstream, up_port = await start_generic(UPSTREAM, {"Garbled": unary(garbled)})
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up_port}")
    settings = kit_settings()
    creds = internal_metadata(settings)

    async def relay(request, context):
        return await channel.unary_unary(f"/{UPSTREAM}/Garbled")(request, metadata=creds, timeout=5)

    srv, port = await start_generic(SERVICE, {
        "BadDescription": unary(bad_description), "BadMessage": unary(bad_message), "Relay": unary(relay),
    })
    caller = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield srv, lambda name: caller.unary_unary(f"/{SERVICE}/{name}")(b"x", metadata=creds, timeout=5)
    await caller.close()
    await channel.close()
    await srv.stop(0)
    await upstream.stop(0)


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


@pytest.mark.parametrize("name", ["BadDescription", "BadMessage"])
async def test_an_error_that_cannot_be_encoded_is_internal_with_a_reason_and_no_internals(server, name):
    srv, call = server
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(name)
    err = info.value
    assert err.code() is grpc.StatusCode.INTERNAL, (err.code(), err.details())
    assert error_details(err)["reason"] == "INTERNAL"
    for leak in ("Unexpected", "class", "attribute", "shard", "Decode", "proto"):
        assert leak not in err.details()
    # Counted as what the caller got, not as OK.
    samples = srv.metrics.calls.collect()[0].samples
    codes = {s.labels["code"] for s in samples if s.labels["method"] == name and s.name.endswith("_total")}
    assert codes == {"INTERNAL"}


async def test_an_upstream_refusal_with_garbled_details_is_passed_on_not_turned_into_unknown(server):
    srv, call = server
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call("Relay")
    err = info.value
    assert err.code() is grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    assert err.details() == "busy"
    assert error_details(err)["reason"] is None  # decodes what it can, refuses nothing
    samples = srv.metrics.refusals.collect()[0].samples
    assert {s.labels["reason"] for s in samples if s.name.endswith("_total")} == {"UPSTREAM_UNAVAILABLE"}
