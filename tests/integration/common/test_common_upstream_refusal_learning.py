"""An upstream that refuses calls for load (its core turned them away, or it said OVERLOADED) is
the clearest congestion signal a relaying service gets: its own admission limit must shrink, as
for a missed deadline, so it stops admitting calls it can only pass on as refusals. An upstream
that is down is not busy: its calls fail at once and hold nothing. Two real servers, wired as
services are; the relay's admission runs on a fake clock."""
import grpc
import pytest

from services.common.admission import AdmissionController, Overloaded
from services.common.auth import internal_metadata
from services.common.errors import NotFound, error_details
from gateway.servicer import restated

from tests.integration.common.kit_server import kit_settings, start_generic

UPSTREAM, RELAY = "test.Upstream", "test.Relay"
LIMIT = 20


class FakeTime:
    t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
async def relay():
    async def overloaded(request, context):
        raise Overloaded(1000)

    async def unknown(request, context):
        raise NotFound("ORDER_NOT_FOUND", "no such order")

    async def echo(request, context):
        return request

    unary = grpc.unary_unary_rpc_method_handler
    upstream, up_port = await start_generic(
        UPSTREAM, {"Overloaded": unary(overloaded), "Unknown": unary(unknown), "Echo": unary(echo)}
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up_port}")
    creds = internal_metadata(kit_settings())

    def forwarding(method):
        async def handler(request, context):
            return await channel.unary_unary(f"/{UPSTREAM}/{method}")(request, metadata=creds, timeout=5)
        return unary(handler)

    def after_retries(code, details):
        # What the gateway says when its last attempt failed in gRPC, not in the upstream.
        async def handler(request, context):
            raise restated(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details))
        return unary(handler)

    now = FakeTime()
    admission = AdmissionController(LIMIT, min_limit=2, max_limit=LIMIT, max_wait_ms=0, min_samples=1, time_source=now)
    relay_server, relay_port = await start_generic(
        RELAY,
        {name: forwarding(name) for name in ("Overloaded", "Unknown", "Echo")} | {
            "CoreRefused": after_retries(grpc.StatusCode.CANCELLED, "CANCELLED"),
            "Down": after_retries(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
        },
        admission=admission,
    )
    caller = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")

    async def call(name):
        try:
            await caller.unary_unary(f"/{RELAY}/{name}")(b"x", metadata=creds, timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code(), error_details(err)["reason"]
        return grpc.StatusCode.OK, None

    async def limit_after(name):
        """Two calls an update interval apart: the second's release updates the limit."""
        await call(name)
        now.t += 2 * admission.update_interval
        code = await call(name)
        return code, admission.limit

    yield limit_after
    await caller.close()
    await channel.close()
    await relay_server.stop(0)
    await upstream.stop(0)


@pytest.mark.parametrize("name, reason", [("Overloaded", "OVERLOADED"), ("CoreRefused", "UPSTREAM_UNAVAILABLE")])
async def test_an_upstream_refusal_for_load_shrinks_the_relays_admission_limit(relay, name, reason):
    answer, limit = await relay(name)
    assert answer == (grpc.StatusCode.UNAVAILABLE, reason)
    assert limit < LIMIT


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Echo", (grpc.StatusCode.OK, None)),
        ("Unknown", (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")),
        # Told to the user exactly as a busy upstream is; only admission tells them apart.
        ("Down", (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")),
    ],
)
async def test_an_answer_or_an_upstream_that_is_down_leaves_the_limit_alone(relay, name, expected):
    answer, limit = await relay(name)
    assert answer == expected
    assert limit == LIMIT
