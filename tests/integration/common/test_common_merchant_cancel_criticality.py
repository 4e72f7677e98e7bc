"""A call a merchant makes with its own credential alone runs at DEFAULT at most, whatever the
method's level. CancelOrder is CRITICAL for the platform's callers (the gateway cancelling for a
buyer, whose card and money go back), and a merchant's credential alone passes it too: an
outside party's flood of cancellations (of made-up order ids: each a NOT_FOUND) took the slots
kept for orders and payments, and was not shed before them."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.admission import CRITICAL, CRITICALITY_KEY, AdmissionController
from services.common.auth import INTERNAL_OR_MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from services.common.metrics import RpcMetrics
from services.common.server import build_server

pytestmark = pytest.mark.timeout(60)


async def test_a_merchant_alone_never_gets_a_methods_critical_level_the_platform_does():
    settings = dataclasses.replace(Settings.from_env("order", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None)
    release = asyncio.Event()

    async def cancel(request, context):
        await release.wait()
        return request

    def register(server):
        handler = grpc.unary_unary_rpc_method_handler(cancel)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Orders", {"Cancel": handler}),))

    # A limit of 5: DEFAULT may hold 4 slots, CRITICAL all 5.
    server = build_server(
        settings, service_names=["test.Orders"], register=register,
        policy=AccessPolicy(settings, {"/test.Orders/Cancel": INTERNAL_OR_MERCHANT}),
        criticality={"Cancel": CRITICAL},
        admission=AdmissionController(5, min_limit=5, max_limit=5, max_wait_ms=100),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Orders/Cancel")
            grant = mint_grant(settings.merchant_signing_key, "m-flood", stores=["s1"])
            for merchant in (((MERCHANT_TOKEN_KEY, grant),), ((MERCHANT_TOKEN_KEY, settings.merchant_token),)):
                held = [asyncio.ensure_future(call(b"m", metadata=merchant, timeout=10)) for _ in range(4)]
                while server.admission.in_flight < 4:  # DEFAULT's share of the limit, taken
                    await asyncio.sleep(0.005)
                for md in (merchant, merchant + ((CRITICALITY_KEY, CRITICAL),)):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call(b"m", metadata=md, timeout=5)
                    assert error_details(info.value)["reason"] == "OVERLOADED"
                # The platform's call (the gateway's, for a buyer) still finds the slot kept for it.
                held.append(asyncio.ensure_future(call(b"p", metadata=internal_metadata(settings), timeout=10)))
                while server.admission.in_flight < 5:
                    await asyncio.sleep(0.005)
                release.set()
                assert [await h for h in held] == [b"m"] * 4 + [b"p"]
                release.clear()
    finally:
        release.set()
        await server.stop(0)
