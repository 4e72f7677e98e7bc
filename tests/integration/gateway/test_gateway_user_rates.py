"""The real gateway paces each end user (services default: 5 calls/s, bursts of 20): a script
hammering with one account is refused with RESOURCE_EXHAUSTED / USER_RATE_LIMITED and the
wait, while other users go on."""
from __future__ import annotations

import grpc
import pytest

from miandan.card.v1 import card_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.common.errors import error_details


async def test_a_hammering_account_is_paced_and_others_are_not(tmp_path, card_lottery_gateway):
    async with card_lottery_gateway(tmp_path, card_pb2.CampaignRules(budget_fen=10**9)) as env:
        bot, alice = env.auth("bot"), env.auth("alice")
        await env.gateway.Join(gw.JoinRequest(request_id="j-bot"), metadata=bot)
        await env.gateway.Join(gw.JoinRequest(request_id="j-alice"), metadata=alice)
        for _ in range(env.settings.user_burst - 1):
            await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=bot)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=bot)
        details = error_details(err.value)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and details["reason"] == "USER_RATE_LIMITED"
        assert details["retry_after_ms"] == 200 and details["pushback_ms"] == 200
        # Every RPC counts, streams included; another account is untouched.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in env.gateway.WatchOrder(gw.WatchOrderRequest(order_id="o1"), metadata=bot):
                pass
        assert error_details(err.value)["reason"] == "USER_RATE_LIMITED"
        assert (await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=alice)).wallet.wallet.cards_granted == 1
        env.clock.advance(0.2)
        assert (await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=bot)).wallet.wallet.cards_granted == 1
