"""The order process frozen (SIGSTOP, what a stuck host, a long GC or a debugger does to it)
under a crowd of order-service calls: through the suite's own gateway, new users keep joining and
reading their wallet for the whole freeze, the calls beyond the order service's share of the
gateway are refused UNAVAILABLE / UPSTREAM_SATURATED with a retry delay, and after SIGCONT the
order service answers again. Before the per-upstream bulkhead the crowd held every gateway slot
and the Joins were refused OVERLOADED until the freeze ended."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter

import grpc
import pytest

from bench.loadgen import service_pids
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(90)

FREEZE_S = 2.5
CROWD = 80


async def _outcome(call) -> str:
    try:
        await call
        return "OK"
    except grpc.aio.AioRpcError as err:
        return f"{err.code().name}/{error_details(err)['reason']}"


async def test_join_and_wallet_keep_working_while_the_order_process_is_frozen(suite):
    order_pid = service_pids(suite.env)["order"]
    tag = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(suite.addr("gateway")) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        reader_md = (("authorization", f"Bearer {suite.token('reader-' + tag)}"),)
        await stub.ListOrders(gw.ListOrdersRequest(), metadata=reader_md, timeout=10)  # warm channels
        served: Counter[str] = Counter()
        os.kill(order_pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            crowd = [
                asyncio.create_task(_outcome(stub.ListOrders(gw.ListOrdersRequest(), metadata=reader_md, timeout=FREEZE_S + 1)))
                for _ in range(CROWD)
            ]
            await asyncio.sleep(0.8)  # past MIANDAN_UPSTREAM_STALL_MS: the order service has stalled
            i = 0
            while time.monotonic() - frozen_at < FREEZE_S:
                md = (("authorization", f"Bearer {suite.token(f'joiner-{tag}-{i}')}"),)
                served[await _outcome(stub.Join(gw.JoinRequest(request_id="j"), metadata=md, timeout=3))] += 1
                served[await _outcome(stub.GetWallet(gw.GetWalletRequest(), metadata=md, timeout=3))] += 1
                i += 1
            late_order = await _outcome(stub.ListOrders(gw.ListOrdersRequest(), metadata=reader_md, timeout=3))
        finally:
            os.kill(order_pid, signal.SIGCONT)
        outcomes = Counter(await asyncio.gather(*crowd))
        after = await _outcome(stub.ListOrders(gw.ListOrdersRequest(), metadata=reader_md, timeout=10))
    assert set(served) == {"OK"} and served["OK"] >= 4, served
    assert late_order == "UNAVAILABLE/UPSTREAM_SATURATED"
    # The crowd: up to 51 admitted (DEFAULT may fill 80 % of the gateway's limit, 64 at start;
    # the suite is shared with the other e2e files, and a limit their load brought down towards
    # the floor of 32 admits 25), the rest OVERLOADED; of those, half the limit waited on the
    # frozen process and the ones beyond were ended (19 at 64, 9 at 32).
    assert outcomes["UNAVAILABLE/UPSTREAM_SATURATED"] >= 1, outcomes
    assert outcomes["OK"] + outcomes["DEADLINE_EXCEEDED/None"] <= 32, outcomes
    assert set(outcomes) <= {"OK", "UNAVAILABLE/UPSTREAM_SATURATED", "DEADLINE_EXCEEDED/None", "UNAVAILABLE/OVERLOADED"}, outcomes
    assert after == "OK"
