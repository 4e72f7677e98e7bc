"""A merchant's own credential passes merchant RPCs without the internal token, but only a proven
internal caller may raise its call's criticality: a merchant marking its calls CRITICAL would take
the slots kept for orders."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.admission import CRITICALITY_KEY, SHEDDABLE, AdmissionController
from services.common.auth import MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

pytestmark = pytest.mark.timeout(60)


async def test_a_merchant_alone_cannot_make_its_calls_critical_an_internal_caller_can():
    settings = dataclasses.replace(Settings.from_env("order", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None)
    release = asyncio.Event()

    async def mark(request, context):
        await release.wait()
        return request

    def register(server):
        handler = grpc.unary_unary_rpc_method_handler(mark)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Store", {"Mark": handler}),))

    server = build_server(
        settings, service_names=["test.Store"], register=register,
        policy=AccessPolicy(settings, {"/test.Store/Mark": MERCHANT}),
        criticality={"Mark": SHEDDABLE},
        admission=AdmissionController(4, min_limit=4, max_limit=4, max_wait_ms=100),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Store/Mark")
            merchant = ((MERCHANT_TOKEN_KEY, settings.merchant_token),)
            held = [asyncio.ensure_future(call(b"m", metadata=merchant, timeout=10)) for _ in range(2)]
            while server.admission.in_flight < 2:  # SHEDDABLE's half of the limit, taken
                await asyncio.sleep(0.005)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"m", metadata=merchant + ((CRITICALITY_KEY, "CRITICAL"),), timeout=5)
            assert error_details(info.value)["reason"] == "OVERLOADED"
            # The same claim from the platform, with the merchant's token beside the internal one.
            platform = internal_metadata(settings, merchant=True) + ((CRITICALITY_KEY, "CRITICAL"),)
            held.append(asyncio.ensure_future(call(b"p", metadata=platform, timeout=10)))
            while server.admission.in_flight < 3:
                await asyncio.sleep(0.005)
            release.set()
            assert [await h for h in held] == [b"m", b"m", b"p"]
    finally:
        release.set()
        await server.stop(0)
