"""A service whose handler lets an upstream's error through (the pipeline's _forward), with two
real servers wired as services are: the upstream's answer about the request reaches the caller
as itself, while a refusal of our own service credential is our deployment fault, passed on as an
upstream that cannot be used now (UNAVAILABLE), never INTERNAL."""
import grpc
import pytest

from services.common.auth import ADMIN, internal_metadata
from services.common.errors import PermissionDenied, error_details

from tests.integration.common.kit_server import kit_settings, start_generic

UPSTREAM, RELAY = "test.Upstream", "test.Relay"


@pytest.fixture
async def relay():
    async def not_yours(request, context):
        raise PermissionDenied("CARD_NOT_OWNED", "不是你的卡 / the card belongs to another user")

    async def echo(request, context):
        return request

    unary = grpc.unary_unary_rpc_method_handler
    upstream, up_port = await start_generic(
        UPSTREAM, {"NotYours": unary(not_yours), "Echo": unary(echo), "AdminEcho": unary(echo)},
        roles={f"/{UPSTREAM}/AdminEcho": ADMIN},
    )
    settings = kit_settings()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up_port}")

    def forwarding(method, metadata):
        async def handler(request, context):
            return await channel.unary_unary(f"/{UPSTREAM}/{method}")(request, metadata=metadata, timeout=5)
        return unary(handler)

    creds = internal_metadata(settings)
    relay_server, relay_port = await start_generic(RELAY, {
        "NotYours": forwarding("NotYours", creds),
        "NoCredential": forwarding("Echo", ()),
        "NotAdmin": forwarding("AdminEcho", creds),
    })
    caller = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
    yield lambda name: caller.unary_unary(f"/{RELAY}/{name}")(b"x", metadata=creds, timeout=5)
    await caller.close()
    await channel.close()
    await relay_server.stop(0)
    await upstream.stop(0)


async def test_an_upstreams_permission_denied_about_the_request_reaches_the_caller_with_its_reason(relay):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await relay("NotYours")
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_details(info.value)["reason"] == "CARD_NOT_OWNED"
    assert "belongs to another user" in info.value.details()


@pytest.mark.parametrize("name", ["NoCredential", "NotAdmin"])
async def test_an_upstream_refusing_our_own_credential_is_unavailable_and_says_nothing_of_it(relay, name):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await relay(name)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_details(info.value)["reason"] == "UPSTREAM_UNAVAILABLE"
    assert "credential" not in info.value.details()
