"""A revoked or expired grant's store streams end while the store is quiet, and give their slots
back. Before, a stream checked its grant only when an order came: on a quiet store (or a store id
of no order, which a brand grant may watch) a leaked grant's streams stayed open after its
revocation, and since a merchant's streams are counted together, the merchant's new grant was
refused TOO_MANY_WATCHES for as long as the holder of the leaked one kept them open."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.order.v1 import order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import grant_id_of, mint_grant
from services.order.handlers import STREAMS_PER_MERCHANT_STORE

STORE = "it-store-1"  # the seed of conftest.py; no order is placed: the store stays quiet


def watch(stack, grant):
    return stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=((MERCHANT_TOKEN_KEY, grant),), timeout=30)


async def ended(stream, within=5.0):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(stream.read(), within)
    return err.value.code(), error_details(err.value)["reason"]


async def open_streams(stack, grant):
    streams = [watch(stack, grant) for _ in range(STREAMS_PER_MERCHANT_STORE)]
    for _ in range(100):  # every stream is open (the order service counts it)
        if stack.service.events.stores.open >= STREAMS_PER_MERCHANT_STORE:
            break
        await asyncio.sleep(0.02)
    return streams


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_a_quiet_stream_of_a_grant_no_longer_valid_ends_and_frees_its_slots(stack, tmp_path, how):
    key = stack.settings.merchant_signing_key
    leaked = mint_grant(key, "m-quiet", stores=[STORE], ttl=60, clock=stack.clock)
    streams = await open_streams(stack, leaked)
    if how == "revoked":
        revoked = tmp_path / "revoked"
        revoked.write_text(f"grant:{grant_id_of(leaked)}\n")  # that grant only
        policy = stack.order_server.policy
        policy._revoked.path = revoked  # as if started with MIANDAN_MERCHANT_REVOKED_FILE
        policy._revoked.check_s = 0
    else:
        stack.clock.advance(60 + 31)  # past exp and the leeway
    # The stack checks a quiet stream every second (OrderConfig.watch_poll_seconds).
    for stream in streams:
        assert await ended(stream) == (grpc.StatusCode.UNAUTHENTICATED, "MERCHANT_GRANT_INVALID")
    for _ in range(100):
        if stack.service.events.stores.open == 0:
            break
        await asyncio.sleep(0.02)
    assert stack.service.events.stores.open == 0
    # The merchant's new grant watches the store again.
    renewed = mint_grant(key, "m-quiet", stores=[STORE], clock=stack.clock)
    again = await open_streams(stack, renewed)
    assert stack.service.events.stores.open == STREAMS_PER_MERCHANT_STORE
    for stream in again:
        stream.cancel()
