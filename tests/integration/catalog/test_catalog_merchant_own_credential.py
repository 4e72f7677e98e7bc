"""A merchant's systems mark items sold out with their own credential alone, never the internal
token, and that credential opens nothing else of the catalog."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import with_demo_stores

LATTE, LEMONADE = "luckin-coconut-latte", "mixue-lemonade"


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("lk1", "luckin"), ("mx1", "mixue"))


def mark(cat, store_id, item_id, md):
    return cat.stub.SetItemAvailability(svc.SetItemAvailabilityRequest(store_id=store_id, item_id=item_id, available=False), metadata=md)


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


async def test_a_grant_alone_marks_its_own_stores_items_and_no_one_elses(cat):
    md = ((MERCHANT_TOKEN_KEY, mint_grant(cat.settings.merchant_signing_key, "luckin-hq", brands=["luckin"], clock=cat.clock)),)
    assert not (await mark(cat, "lk1", LATTE, md)).available
    assert await refused(mark(cat, "mx1", LEMONADE, md)) == (grpc.StatusCode.PERMISSION_DENIED, "STORE_NOT_YOURS")
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk1"), metadata=cat.md)
    assert [e.available for e in menu.entries if e.item.item_id == LATTE] == [False]
    # Reading, pricing and editing the catalog stay the platform's.
    for call in (
        cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk1"), metadata=md),
        cat.stub.ListBrands(svc.ListBrandsRequest(), metadata=md),
        cat.stub.UpsertBrand(svc.UpsertBrandRequest(), metadata=md),
    ):
        assert await refused(call) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_MISSING")


async def test_the_platform_merchant_token_alone_marks_any_store_and_a_guess_marks_none(cat):
    assert not (await mark(cat, "mx1", LEMONADE, ((MERCHANT_TOKEN_KEY, cat.settings.merchant_token),))).available
    assert await refused(mark(cat, "lk1", LATTE, ((MERCHANT_TOKEN_KEY, "guess"),))) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_INVALID")
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk1"), metadata=cat.md)
    assert all(e.available for e in menu.entries)
