"""A WatchOrder stream and its caller's token. The token was checked once, when the stream opened,
and the stream then lived as long as the phone kept it open: an order the merchant never completes
is watched for days on a token that stopped working after its hour (a stolen one, a signed-out
account's). Every other call stops the moment its token expires (auth.TokenVerifier); the stream
now ends then too, UNAUTHENTICATED / TOKEN_EXPIRED, and the app reopens it with a fresh token (the
reopened stream sends the order as it is at once, so nothing is missed)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.order.v1 import order_pb2
from services.common.config import Settings
from services.common.errors import Unauthenticated

from gateway.auth import LEEWAY_S, TokenVerifier
from gateway.servicer import GatewayServicer
from gateway.token import mint
from gateway.watches import WatchSlots

SETTINGS = Settings.from_env("gateway", {})


class Context:
    def __init__(self, token: str) -> None:
        self.token = token

    def invocation_metadata(self) -> tuple:
        return (("authorization", f"Bearer {self.token}"),)

    def time_remaining(self) -> Any:
        return None  # a stream opened without a deadline, as apps do


def servicer_of(fakes: Any) -> GatewayServicer:
    servicer = GatewayServicer(
        fakes.gateway, TokenVerifier(SETTINGS, clock=fakes.clock), lambda level: (), WatchSlots(5, 100)
    )
    servicer.token_check_s = 0.01  # how often a quiet stream looks at the clock
    return servicer


async def test_a_quiet_stream_ends_token_expired_once_its_token_expires_and_frees_the_upstream_stream(fakes):
    fakes.order.watch_hangs = True  # the order moves no further: no update would end the stream
    servicer = servicer_of(fakes)
    stream = servicer.WatchOrder(gw.WatchOrderRequest(order_id="o-1"), Context(mint(SETTINGS, "alice", clock=fakes.clock, ttl=3600)))
    assert (await stream.__anext__()).order.status == order_pb2.ORDER_STATUS_PAID
    assert (await stream.__anext__()).order.status == order_pb2.ORDER_STATUS_ACCEPTED
    fakes.clock.advance(3600 + LEEWAY_S + 1)
    with pytest.raises(Unauthenticated) as info:
        await asyncio.wait_for(stream.__anext__(), 30)
    assert info.value.reason == "TOKEN_EXPIRED"
    assert fakes.order.watches[0].cancelled  # the order service keeps no watcher for nobody
    assert servicer.watches.of("alice") == 0


async def test_a_stream_whose_token_is_valid_passes_every_update_and_ends_with_the_order(fakes):
    servicer = servicer_of(fakes)
    stream = servicer.WatchOrder(gw.WatchOrderRequest(order_id="o-1"), Context(mint(SETTINGS, "alice", clock=fakes.clock, ttl=3600)))
    statuses = [update.order.status async for update in stream]
    assert statuses == [order_pb2.ORDER_STATUS_PAID, order_pb2.ORDER_STATUS_ACCEPTED]
    assert servicer.watches.of("alice") == 0


async def test_an_update_arriving_after_the_token_expired_is_not_sent(fakes):
    servicer = servicer_of(fakes)
    stream = servicer.WatchOrder(gw.WatchOrderRequest(order_id="o-1"), Context(mint(SETTINGS, "alice", clock=fakes.clock, ttl=3600)))
    assert (await stream.__anext__()).order.status == order_pb2.ORDER_STATUS_PAID
    fakes.clock.advance(3600 + LEEWAY_S + 1)
    with pytest.raises(Unauthenticated):
        await stream.__anext__()
