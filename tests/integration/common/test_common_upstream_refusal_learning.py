"""An upstream that refuses calls (its core turned them away, or it said OVERLOADED) is the
clearest congestion signal a relaying service gets: its own admission limit must shrink, as for
a missed deadline, so it stops admitting calls it can only pass on as refusals. Two real
servers, wired as services are; the relay's admission runs on a fake clock."""
import grpc
import pytest

from services.common.admission import AdmissionController, Overloaded
from services.common.auth import internal_metadata
from services.common.errors import NotFound, Unavailable

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

    async def unreachable(request, context):
        # What the gateway says after its retries when an upstream's core refused the call.
        raise Unavailable("UPSTREAM_UNAVAILABLE", "service temporarily unavailable", 1000)

    now = FakeTime()
    admission = AdmissionController(LIMIT, min_limit=2, max_limit=LIMIT, max_wait_ms=0, min_samples=1, time_source=now)
    relay_server, relay_port = await start_generic(
        RELAY,
        {name: forwarding(name) for name in ("Overloaded", "Unknown", "Echo")} | {"Unreachable": unary(unreachable)},
        admission=admission,
    )
    caller = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")

    async def call(name):
        try:
            await caller.unary_unary(f"/{RELAY}/{name}")(b"x", metadata=creds, timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

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


@pytest.mark.parametrize("name", ["Overloaded", "Unreachable"])
async def test_an_upstream_refusal_shrinks_the_relays_admission_limit(relay, name):
    code, limit = await relay(name)
    assert code is grpc.StatusCode.UNAVAILABLE
    assert limit < LIMIT


@pytest.mark.parametrize("name, expected", [("Echo", grpc.StatusCode.OK), ("Unknown", grpc.StatusCode.NOT_FOUND)])
async def test_an_upstream_answer_leaves_the_limit_alone(relay, name, expected):
    code, limit = await relay(name)
    assert code is expected
    assert limit == LIMIT
