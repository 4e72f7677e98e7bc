"""Two merchants marking items at one store each have their own request ids. A chain's
headquarters (a brand grant) and the store's franchisee (a grant for the store) both mark its
items, and neither knows the other's ids: with one namespace per store, the franchisee's "so-1"
marking an item sold out after headquarters had used "so-1" for the same mark (and restored the
item since with "so-2") was taken for a retry of it and silently changed nothing: the item
stayed on sale."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import with_demo_stores

GRAPE, GREEN = "heytea-very-grape", "heytea-green-tea"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("ht1", "heytea"))


def grant(cat, merchant, **scope):
    return ((MERCHANT_TOKEN_KEY, mint_grant(cat.settings.merchant_signing_key, merchant, clock=cat.clock, **scope)),)


def mark(cat, md, request_id, item_id, available):
    request = svc.SetItemAvailabilityRequest(request_id=request_id, store_id="ht1", item_id=item_id, available=available)
    return cat.stub.SetItemAvailability(request, metadata=md)


async def on_sale(cat, item_id):
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="ht1"), metadata=cat.md)
    return next(e.available for e in menu.entries if e.item.item_id == item_id)


async def test_a_franchisees_mark_is_not_taken_for_a_retry_of_its_headquarters(cat):
    hq, franchisee = grant(cat, "heytea-hq", brands=["heytea"]), grant(cat, "ht1-franchisee", stores=["ht1"])
    await mark(cat, hq, "so-1", GRAPE, False)
    await mark(cat, hq, "so-2", GRAPE, True)
    assert await on_sale(cat, GRAPE)
    await mark(cat, franchisee, "so-1", GRAPE, False)
    assert not await on_sale(cat, GRAPE)
    # Nor is its other mark refused for an id headquarters used.
    await mark(cat, franchisee, "so-2", GREEN, False)
    assert not await on_sale(cat, GREEN)


async def test_one_merchants_ids_are_shared_by_its_grants(cat):
    first, renewed = grant(cat, "heytea-hq", brands=["heytea"]), grant(cat, "heytea-hq", stores=["ht1"])
    await mark(cat, first, "so-1", GRAPE, False)
    await mark(cat, first, "so-2", GRAPE, True)
    await mark(cat, renewed, "so-1", GRAPE, False)  # a late retry of the first mark: changes nothing
    assert await on_sale(cat, GRAPE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mark(cat, renewed, "so-1", GREEN, False)
    assert error_details(err.value)["reason"] == "REQUEST_ID_REUSED"
