"""A merchant's systems marking items with their grant alone get 20 calls a second with bursts
of 100 (the defaults), shared by all of the merchant's grants; beyond that RESOURCE_EXHAUSTED
MERCHANT_RATE_LIMITED with the wait in RetryInfo, and the item is left as it was. Other merchants
and the platform's merchant token are not held back by it."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import PUSHBACK_KEY, error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import with_demo_stores

LATTE, LEMONADE = "luckin-coconut-latte", "mixue-lemonade"
BURST = 100  # Settings.merchant_burst's default
INTERVAL_MS = 50  # 1 / Settings.merchant_rate's default


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("lk1", "luckin"), ("mx1", "mixue"))


def grant(cat, merchant, **scope):
    return ((MERCHANT_TOKEN_KEY, mint_grant(cat.settings.merchant_signing_key, merchant, clock=cat.clock, **scope)),)


def mark(cat, store_id, item_id, available, md):
    request = svc.SetItemAvailabilityRequest(store_id=store_id, item_id=item_id, available=available)
    return cat.stub.SetItemAvailability(request, metadata=md)


async def available(cat, store_id, item_id):
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md)
    return [e.available for e in menu.entries if e.item.item_id == item_id] == [True]


async def test_a_merchant_beyond_its_pace_is_told_when_to_come_back_and_its_item_stays(cat):
    md = grant(cat, "luckin-hq", brands=["luckin"])
    for n in range(BURST):
        await mark(cat, "lk1", LATTE, n % 2 == 1, md)  # sold out, back, ... ends available
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mark(cat, "lk1", LATTE, False, grant(cat, "luckin-hq", stores=["lk1"]))  # another of its grants
    details = error_details(err.value)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (details["reason"], details["retry_after_ms"]) == ("MERCHANT_RATE_LIMITED", INTERVAL_MS)
    assert dict(err.value.trailing_metadata())[PUSHBACK_KEY] == str(INTERVAL_MS)
    assert await available(cat, "lk1", LATTE)

    assert not (await mark(cat, "mx1", LEMONADE, False, grant(cat, "mixue-hq", brands=["mixue"]))).available
    platform = ((MERCHANT_TOKEN_KEY, cat.settings.merchant_token),)
    for _ in range(BURST + 10):
        await mark(cat, "mx1", LEMONADE, True, platform)

    cat.clock.advance(INTERVAL_MS / 1000)
    assert not (await mark(cat, "lk1", LATTE, False, md)).available
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mark(cat, "lk1", LATTE, True, md)
    assert error_details(err.value)["reason"] == "MERCHANT_RATE_LIMITED"
    assert not await available(cat, "lk1", LATTE)
