"""The catalog's request ids are remembered a week (model.REQUEST_MEMORY_MS), as the card, order
and lottery services remember theirs, then forgotten by a background pass on the injected clock:
kept for good, merchants' SetItemAvailability ids alone grew the table for the whole campaign."""
import asyncio
import sqlite3

import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.catalog.model import REQUEST_MEMORY_MS
from services.catalog.wiring import build
from services.common.clock import FakeClock
from services.common.errors import error_details
from tests.integration.catalog.conftest import EVENING, Running, catalog_settings, store_pb

HZ = (30.2741, 120.1551)
GRAPE = "heytea-very-grape"
REUSED = (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cat(tmp_path):
    settings = catalog_settings(tmp_path)
    clock = FakeClock(EVENING)
    # A pass every 10 ms: the test moves the clock and waits for the background pass.
    server = await build(settings, clock=clock, forget_interval_s=0.01)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    running = Running(server, settings, clock, channel)
    await load_menu(running.stub, running.admin)
    await running.stub.ImportStores(iter([svc.ImportStoresRequest(stores=[store_pb("ht1", "heytea", *HZ)])]), metadata=running.admin)
    try:
        yield running
    finally:
        await channel.close()
        await server.stop(0)


def set_availability(cat, request_id, available):
    return cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id=request_id, store_id="ht1", item_id=GRAPE, available=available),
        metadata=cat.merchant,
    )


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


def remembered(cat) -> set[str]:
    """The request ids the catalog holds (the demo menu's load left some too)."""
    conn = sqlite3.connect(str(cat.settings.db_path))
    try:
        return {r for (r,) in conn.execute("SELECT request_id FROM requests")}
    finally:
        conn.close()


async def until_forgotten(cat, *request_ids: str) -> None:
    for _ in range(500):
        if not remembered(cat) & set(request_ids):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still remembered: {remembered(cat) & set(request_ids)}")


async def test_a_request_id_is_told_from_a_reuse_for_a_week(cat):
    await set_availability(cat, "so-1", False)
    cat.clock.advance(REQUEST_MEMORY_MS / 1000 - 60)
    await cat.server.catalog.forget_old_requests()
    assert "so-1" in remembered(cat)
    assert await refused(set_availability(cat, "so-1", True)) == REUSED


async def test_the_running_catalog_forgets_request_ids_older_than_a_week(cat):
    await set_availability(cat, "so-1", False)
    await cat.stub.UpsertBrand(
        svc.UpsertBrandRequest(request_id="b-1", brand={"brand_id": "bh-a", "name": "品牌A"}), metadata=cat.admin
    )
    assert {"so-1", "b-1"} <= remembered(cat)
    cat.clock.advance(REQUEST_MEMORY_MS / 1000 + 60)
    # By the background pass alone: nothing here calls it.
    await until_forgotten(cat, "so-1", "b-1")
    assert not remembered(cat)  # the demo menu's ids went with them
    # Forgotten: the id is free again, and the call under it is applied as a new one.
    r = await set_availability(cat, "so-1", True)
    assert r.available
    assert remembered(cat) == {"so-1"}


async def test_only_ids_older_than_a_week_are_forgotten(cat):
    await set_availability(cat, "so-old", False)
    cat.clock.advance(REQUEST_MEMORY_MS / 1000 - 3600)
    await set_availability(cat, "so-new", True)
    cat.clock.advance(3600 + 60)
    await until_forgotten(cat, "so-old")
    assert "so-new" in remembered(cat)
    assert await refused(set_availability(cat, "so-new", False)) == REUSED
