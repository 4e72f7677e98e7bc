"""Menus whose options add up below zero, and sentences naming more lines than an order takes (real gRPC and SQLite)."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from miandan.common.v1 import common_pb2
from services.catalog.demo import load_demo, load_menu
from services.common.errors import error_details

from tests.integration.catalog.conftest import store_pb

pytestmark = pytest.mark.timeout(30)


async def stream_of(*batches):
    for batch in batches:
        yield svc.ImportStoresRequest(stores=batch)


@pytest.fixture
async def cat(start_catalog):
    running = await start_catalog()
    await load_menu(running.stub, running.admin)
    r = await running.stub.ImportStores(stream_of([store_pb("rv-1", "mixue", 30.27, 120.15)]), metadata=running.admin)
    assert r.accepted == 1
    return running


def discounted_item(item_id: str) -> catalog_pb2.MenuItem:
    """100 fen, with two option groups that each take 80 off: each option alone leaves the price
    positive, the two together make it -60."""
    return catalog_pb2.MenuItem(
        item_id=item_id, brand_id="mixue", name="折上折", category="茶饮", price_fen=100,
        option_groups=[
            catalog_pb2.OptionGroup(
                group_id=g, name=g, default_option_id="plain",
                options=[
                    catalog_pb2.Option(option_id="plain", name="原价"),
                    catalog_pb2.Option(option_id="off", name="减八毛", price_delta_fen=-80),
                ],
            )
            for g in ("coupon-a", "coupon-b")
        ],
    )


async def test_options_that_together_make_the_price_negative_are_refused(cat):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await cat.stub.UpsertMenuItem(
            svc.UpsertMenuItemRequest(request_id="neg-1", item=discounted_item("rv-negative")), metadata=cat.admin
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error_details(info.value)
    # Nothing of it reached the menu: no quote can come out negative.
    resp = await cat.stub.Quote(
        svc.QuoteRequest(
            store_id="rv-1",
            lines=[catalog_pb2.LineSelection(
                item_id="rv-negative", quantity=1,
                options=[catalog_pb2.OptionChoice(group_id=g, option_id="off") for g in ("coupon-a", "coupon-b")],
            )],
        ),
        metadata=cat.md,
    )
    assert [p.reason for p in resp.problems] == ["UNKNOWN_ITEM"], resp


async def test_options_that_together_bring_the_price_to_zero_or_more_are_kept(cat):
    item = discounted_item("rv-free")
    item.price_fen = 160
    resp = await cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id="free-1", item=item), metadata=cat.admin)
    assert resp.created


HANGZHOU = common_pb2.GeoPoint(latitude=30.2741, longitude=120.1551)


@pytest.fixture
async def demo(start_catalog):
    running = await start_catalog()
    await load_demo(running.stub, running.admin)
    return running


def sixty_different_drinks() -> str:
    """One sentence (449 characters, within the 500 allowed) naming 60 different lines of one
    brand: 6 drinks x 5 temperatures x 2 sizes."""
    names = ("柠檬水", "奶茶", "四季春", "鲜橙", "百香果", "奶昔")
    temperatures = ("热", "去冰", "少冰", "常温", "正常冰")
    return "、".join(f"{s}{t}{n}" for n in names for t in temperatures for s in ("中杯", "大杯"))


async def test_a_sentence_of_more_lines_than_an_order_takes_is_not_proposed_as_an_order(demo):
    text = sixty_different_drinks()
    assert len(text) <= 500
    r = await demo.stub.MatchIntent(svc.MatchIntentRequest(text=text, location=HANGZHOU), metadata=demo.md)
    # Whatever is proposed must be an order the order service takes (PlaceOrder: 1..50 lines)
    # and a quote the catalog itself answers: 60 lines are neither.
    for p in [r.proposal, *r.alternatives] if r.status == catalog_pb2.INTENT_STATUS_MATCHED else []:
        assert len(p.lines) <= 50, (len(p.lines), r.status)
        await demo.stub.Quote(svc.QuoteRequest(store_id=p.store.store.store_id, lines=p.lines), metadata=demo.md)
    assert r.status == catalog_pb2.INTENT_STATUS_NEEDS_CLARIFICATION
    assert "50" in r.clarification
