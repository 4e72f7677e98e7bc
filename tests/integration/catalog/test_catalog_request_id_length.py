"""A catalog write's request_id is kept for good with its fingerprint (the requests table is
never swept), so it is bounded as the order service bounds its own: 128 characters. Any length
was stored: a merchant's terminal sending the whole payload as its request_id (a megabyte a
tap, SetItemAvailability being a merchant's RPC) grew the catalog's database by that much per
call, for good."""
import sqlite3

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.common.errors import error_details
from tests.integration.catalog.conftest import with_demo_stores

LATTE = "luckin-coconut-latte"


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("lk1", "luckin"))


def writes(cat, request_id):
    return [
        cat.stub.SetItemAvailability(
            svc.SetItemAvailabilityRequest(request_id=request_id, store_id="lk1", item_id=LATTE, available=False), metadata=cat.merchant
        ),
        cat.stub.UpsertBrand(
            svc.UpsertBrandRequest(request_id=request_id, brand=catalog_pb2.Brand(brand_id="b-long", name="长", category="茶饮")),
            metadata=cat.admin,
        ),
        cat.stub.UpsertMenuItem(
            svc.UpsertMenuItemRequest(
                request_id=request_id,
                item=catalog_pb2.MenuItem(item_id="i-long", brand_id="luckin", name="长", price_fen=100),
            ),
            metadata=cat.admin,
        ),
    ]


def stored_request_ids(cat):
    with sqlite3.connect(cat.settings.db_path) as db:
        return [row[0] for row in db.execute("SELECT request_id FROM requests")]


async def test_a_request_id_longer_than_128_characters_is_refused_and_nothing_is_kept(cat):
    before = stored_request_ids(cat)
    for call in writes(cat, "r" * 1_000_000):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        details = error_details(err.value)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (details["reason"], [f for f, _ in details["violations"]]) == ("FIELD_TOO_LONG", ["request_id"])
    assert stored_request_ids(cat) == before
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk1"), metadata=cat.md)
    assert dict((e.item.item_id, e.available) for e in menu.entries)[LATTE]  # not sold out


async def test_a_request_id_of_128_characters_is_kept_and_replayed(cat):
    request_id = "长" * 128
    for call in writes(cat, request_id):
        await call
    for call in writes(cat, request_id):  # the retries: the first answers again
        await call
    assert sum(r == request_id for r in stored_request_ids(cat)) == 3
