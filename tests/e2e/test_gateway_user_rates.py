"""`make run` paces each end user at the gateway by default: a script hammering with one account
gets RESOURCE_EXHAUSTED / USER_RATE_LIMITED with a retry delay, while the crowd goes on."""
from __future__ import annotations

import asyncio

import grpc

from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.common.errors import error_details
from tests.e2e.suite_process import start_suite


def test_one_account_hammering_the_gateway_is_paced_and_the_others_are_served(tmp_path):
    running = start_suite(tmp_path, MIANDAN_USER_RATE="")  # "" = the default, as make run has it

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(running.addr("gateway")) as channel:
            stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
            bot = (("authorization", f"Bearer {running.token('script-kiddie')}"),)
            crowd = [(("authorization", f"Bearer {running.token(f'phone-{n}')}"),) for n in range(20)]
            answers = await asyncio.gather(
                *(stub.GetWallet(gw.GetWalletRequest(), metadata=bot, timeout=10) for _ in range(200)),
                *(stub.GetWallet(gw.GetWalletRequest(), metadata=md, timeout=10) for md in crowd),
                return_exceptions=True,
            )
            mine, theirs = answers[:200], answers[200:]
            refused = [a for a in mine if isinstance(a, grpc.aio.AioRpcError)]
            assert {(e.code(), error_details(e)["reason"]) for e in refused} == {
                (grpc.StatusCode.RESOURCE_EXHAUSTED, "USER_RATE_LIMITED")
            }
            # The default burst (20) passed, and barely more: the 200 arrived within a second.
            assert 20 <= len(mine) - len(refused) <= 30, len(refused)
            assert all(error_details(e)["retry_after_ms"] for e in refused)
            assert not [a for a in theirs if isinstance(a, BaseException)], theirs

    try:
        asyncio.run(scenario())
    finally:
        assert running.stop(timeout=30) == 0
