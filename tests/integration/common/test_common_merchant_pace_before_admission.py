"""A merchant calling beyond its pace is refused by the pipeline right after its credential check,
before admission: its excess takes no slot (nor a place in the wait queue) from the calls
admission is there for, and it hears RESOURCE_EXHAUSTED MERCHANT_RATE_LIMITED with the wait, not
OVERLOADED. Before the pace, one merchant's grant could fill a service's every slot."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.admission import AdmissionController
from services.common.auth import MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import PUSHBACK_KEY, error_details
from services.common.merchant_grant import mint_grant
from services.common.metrics import RpcMetrics
from services.common.server import build_server

pytestmark = pytest.mark.timeout(60)


async def test_a_merchant_beyond_its_pace_takes_no_admission_slot_from_another():
    env = {"MIANDAN_LOG_CALLS": "0", "MIANDAN_MERCHANT_RATE": "1", "MIANDAN_MERCHANT_BURST": "2"}
    settings = dataclasses.replace(Settings.from_env("order", env), port=0, metrics_port=None)
    clock = FakeClock()
    release = asyncio.Event()
    reached = []

    async def mark(request, context):
        reached.append(request)
        await release.wait()
        return request

    def register(server):
        handler = grpc.unary_unary_rpc_method_handler(mark)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Store", {"Mark": handler}),))

    registry = CollectorRegistry()
    server = build_server(
        settings, service_names=["test.Store"], register=register,
        policy=AccessPolicy(settings, {"/test.Store/Mark": MERCHANT}, clock=clock),
        # A limit of 4, of which DEFAULT (a merchant's level) may hold 3.
        admission=AdmissionController(4, min_limit=4, max_limit=4, max_wait_ms=0),
        metrics=RpcMetrics(registry),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Store/Mark")

            def grant(merchant):
                return ((MERCHANT_TOKEN_KEY, mint_grant(settings.merchant_signing_key, merchant, stores=["s1"], clock=clock)),)

            flood = grant("m-flood")
            held = [asyncio.ensure_future(call(b"f", metadata=flood, timeout=10)) for _ in range(2)]
            while server.admission.in_flight < 2:  # its burst, holding two of DEFAULT's three slots
                await asyncio.sleep(0.005)
            for _ in range(5):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(b"f", metadata=flood, timeout=5)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                details = error_details(info.value)
                assert details["reason"] == "MERCHANT_RATE_LIMITED" and details["retry_after_ms"] == 1000
                assert dict(info.value.trailing_metadata())[PUSHBACK_KEY] == "1000"
            assert server.admission.in_flight == 2 and len(reached) == 2
            # The third slot is still there for another merchant (the flood used to have taken it).
            held.append(asyncio.ensure_future(call(b"o", metadata=grant("m-other"), timeout=10)))
            while server.admission.in_flight < 3:
                await asyncio.sleep(0.005)
            release.set()
            assert [await h for h in held] == [b"f", b"f", b"o"]
            refusals = {"service": "order", "code": "RESOURCE_EXHAUSTED", "reason": "MERCHANT_RATE_LIMITED"}
            assert registry.get_sample_value("miandan_rpc_refusals_total", refusals) == 5
            # Its pace comes back with time, on the policy's clock.
            clock.advance(1)
            assert await call(b"f", metadata=flood, timeout=5) == b"f"
    finally:
        release.set()
        await server.stop(0)
