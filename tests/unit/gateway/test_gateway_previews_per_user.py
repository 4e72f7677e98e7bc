"""Previews are held in the gateway's memory for their TTL, and the store's bound was for all
users together: one account scripting OrderByText (5 a second, within its pace) held thousands
of them, and a few such accounts pushed every other user's preview out before it was confirmed
(PREVIEW_NOT_FOUND on the confirm) while holding the gateway's memory. A person on a phone needs
a few previews at a time: each user keeps its newest ones only."""
from __future__ import annotations

import pytest

from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.common.clock import FakeClock
from services.common.errors import NotFound

from gateway.preview import PreviewRecord, PreviewStore


def record(store: PreviewStore, user: str) -> PreviewRecord:
    r = PreviewRecord(store.new_id(), user, "两杯生椰拿铁", b"", "s1", b"", store.expiry())
    store.put(r)
    return r


def test_one_user_holds_at_most_its_share_and_keeps_its_newest():
    store = PreviewStore(ttl_seconds=600, max_size=1000, per_user=4, clock=FakeClock())
    mine = [record(store, "mallory") for _ in range(50)]
    assert len(store) == 4 and store.held_by("mallory") == 4
    assert [store.get(r.preview_id, "mallory") for r in mine[-4:]] == mine[-4:]
    assert store.get(mine[0].preview_id, "mallory") is None


def test_a_flood_from_one_user_does_not_push_out_another_users_preview():
    store = PreviewStore(ttl_seconds=600, max_size=10, per_user=4, clock=FakeClock())
    alice = record(store, "alice")
    for _ in range(100):
        record(store, "mallory")
    assert store.get(alice.preview_id, "alice") == alice


def test_the_per_user_index_forgets_what_the_store_forgot():
    clock = FakeClock()
    store = PreviewStore(ttl_seconds=60, max_size=1000, per_user=4, clock=clock)
    first = record(store, "alice")
    store.discard(first.preview_id)
    record(store, "alice")
    clock.advance(61)
    record(store, "bob")  # sweeps alice's expired one
    assert store.held_by("alice") == 0 and len(store) == 1


def test_bounds_below_one_are_refused():
    with pytest.raises(ValueError):
        PreviewStore(per_user=0)


async def test_a_users_preview_survives_another_account_scripting_order_by_text(fakes):
    fakes.gateway.previews = PreviewStore(ttl_seconds=600, max_size=40, clock=fakes.clock)
    alice = await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())
    for i in range(60):
        await fakes.gateway.order_by_text("mallory", gw.OrderByTextRequest(text=f"两杯生椰拿铁 {i}"), fakes.options())
    try:
        placed = await fakes.gateway.order_by_text(
            "alice", gw.OrderByTextRequest(request_id="c1", preview_id=alice.preview.preview_id, confirm=True), fakes.options()
        )
    except NotFound as gone:
        pytest.fail(f"alice's preview was pushed out by mallory's: {gone.reason}")
    assert placed.order.user_id == "alice"
