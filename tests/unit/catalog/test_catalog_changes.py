"""The catalog's change feed (WatchMenuChanges' source) and the clock bound of a Quote."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from services.catalog.changes import LAGGING, SHUTTING_DOWN, MenuChanges, SubscriptionEnded
from services.catalog.handlers import Catalog
from services.catalog.model import (
    Brand,
    MenuItem,
    OpeningPeriod,
    StoreDetails,
    StoreRecord,
    WantedLine,
    next_open_change,
    validate_store_row,
)
from services.catalog.store import Snapshot
from services.common.clock import FakeClock

# Wednesday 2026-01-28 12:00 in Shanghai.
NOON_SHANGHAI = datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)


def test_a_published_change_reaches_every_subscriber_in_order_and_merges_while_pending():
    feed = MenuChanges()
    a, b = feed.subscribe(), feed.subscribe()
    assert a.start_version == 0 and a.epoch == feed.epoch
    feed.publish(["s1"])
    feed.publish(["s2", "s1"])

    async def run():
        merged = await a.next(1)
        assert merged.version == 2 and set(merged.store_ids) == {"s1", "s2"} and not merged.all_stores
        feed.publish(all_stores=True)
        feed.publish(["s3"])
        assert (await a.next(1)).all_stores  # any all_stores in a batch wins
        assert (await b.next(1)).version == 4
        assert await a.next(0.01) is None  # idle: heartbeat time

    asyncio.run(run())


def test_a_subscriber_that_stops_reading_is_cut_off_without_slowing_the_publisher():
    feed = MenuChanges(backlog=10)
    slow, healthy = feed.subscribe(), feed.subscribe()

    async def run():
        for i in range(200):
            feed.publish([f"s{i}"])
            if i % 5 == 0:
                await healthy.next(1)
        assert slow.ended == LAGGING and feed.subscribers == 1
        with pytest.raises(SubscriptionEnded) as ended:
            await slow.next(1)
        assert ended.value.reason == LAGGING
        assert (await healthy.next(1)).version == 200

    asyncio.run(run())


def test_closing_the_feed_ends_every_subscription_and_a_new_feed_is_a_new_epoch():
    feed = MenuChanges()
    sub = feed.subscribe()
    feed.close()

    async def run():
        with pytest.raises(SubscriptionEnded) as ended:
            await sub.next(1)
        assert ended.value.reason == SHUTTING_DOWN

    asyncio.run(run())
    assert MenuChanges().epoch != feed.epoch


def _store(hours=(), closed=False, tz="Asia/Shanghai"):
    return StoreRecord("s", "b", "s", 30.0, 120.0, tuple(OpeningPeriod(*p) for p in hours), closed, tz)


def test_a_quote_may_change_by_the_clock_at_the_next_opening_or_closing_boundary():
    wednesday = 3
    store = _store([(wednesday, 7 * 60, 22 * 60), (4, 7 * 60, 22 * 60)])
    assert next_open_change(store, NOON_SHANGHAI) == datetime(2026, 1, 28, 14, 0, tzinfo=timezone.utc)  # 22:00 local
    late = datetime(2026, 1, 28, 15, 30, 20, tzinfo=timezone.utc)  # 23:30:20 local, closed
    assert next_open_change(store, late) == datetime(2026, 1, 28, 23, 0, tzinfo=timezone.utc)  # Thu 07:00 local
    overnight = _store([(wednesday, 20 * 60, 26 * 60)])  # 20:00 .. 02:00 next day
    assert next_open_change(overnight, late) == datetime(2026, 1, 28, 18, 0, tzinfo=timezone.utc)


def test_a_quote_of_an_always_open_or_closed_store_never_changes_by_the_clock():
    assert next_open_change(_store(), NOON_SHANGHAI) is None
    assert next_open_change(_store([(3, 0, 60)], closed=True), NOON_SHANGHAI) is None


def test_near_a_daylight_saving_shift_a_quote_is_promised_only_the_current_minute():
    store = _store([(1, 9 * 60, 17 * 60)], tz="Europe/Berlin")
    saturday_night = datetime(2026, 3, 28, 22, 0, 30, tzinfo=timezone.utc)  # shift at Sun 01:00 UTC
    assert next_open_change(store, saturday_night) == datetime(2026, 3, 28, 22, 1, tzinfo=timezone.utc)



def test_a_store_opening_in_the_hour_a_spring_shift_skips_is_not_promised_closed_past_its_opening():
    # New York skips 02:00..03:00 on Sunday 2026-03-08. A store opening at 02:30 that day opens
    # when the clock jumps, 03:00 EDT (07:00 UTC); the bound was 02:30 read as EST, 07:30 UTC,
    # and a kept Quote said STORE_CLOSED for half an hour of an open store.
    sunday = 7
    store = _store([(sunday, 150, 1200)], tz="America/New_York")
    one_am = datetime(2026, 3, 8, 6, 0, tzinfo=timezone.utc)  # 01:00 EST, closed
    bound = next_open_change(store, one_am)
    assert bound is not None and bound <= datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc)


def test_in_the_last_minute_before_an_autumn_shift_a_quote_is_promised_that_minute_not_an_hour_more():
    # Berlin turns 03:00 CEST back to 02:00 CET on Sunday 2026-10-25 (01:00 UTC). A store open
    # 02:00..02:30 (the hour that comes twice) is closed at 02:59:30 CEST and open again one
    # real minute later, at 02:00 CET: the bound read "the next wall minute" as 03:00 CET, an
    # hour and a minute away, and a kept Quote said STORE_CLOSED for that hour.
    sunday = 7
    store = _store([(sunday, 120, 150)], tz="Europe/Berlin")
    before_the_shift = datetime(2026, 10, 25, 0, 59, 30, tzinfo=timezone.utc)
    assert next_open_change(store, before_the_shift) == datetime(2026, 10, 25, 1, 0, tzinfo=timezone.utc)


def test_in_the_hour_an_autumn_shift_repeats_a_quote_is_not_promised_a_time_already_past():
    # 02:10 CET, the second 02:10 of the night (01:10 UTC): the next boundary, 02:30, was read
    # as the first 02:30 (00:30 UTC), and the promise fell before the quote was made.
    sunday = 7
    store = _store([(sunday, 120, 150)], tz="Europe/Berlin")
    second_time_round = datetime(2026, 10, 25, 1, 10, 15, tzinfo=timezone.utc)
    assert next_open_change(store, second_time_round) == datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)
    santiago = _store([(6, 20 * 60, 23 * 60 + 40)], tz="America/Santiago")  # back from 24:00 to 23:00
    assert next_open_change(santiago, datetime(2026, 4, 5, 3, 19, 24, tzinfo=timezone.utc)) == datetime(
        2026, 4, 5, 3, 40, tzinfo=timezone.utc)


class _Store:
    async def load(self):
        return Snapshot([], [], [], [])

    async def upsert_brand(self, request_id, brand, now_ms):
        return True, False

    async def upsert_item(self, request_id, item, now_ms):
        return True, False

    async def upsert_stores(self, rows, now_ms):
        return []

    async def set_availability(self, request_id, store_id, item_id, available, now_ms):
        return False

    async def store_details(self, ids):
        return {i: StoreDetails() for i in ids}

    async def close(self):
        pass


async def test_every_write_that_can_change_a_quote_is_published_after_it_is_applied():
    catalog = Catalog(_Store(), clock=FakeClock(NOON_SHANGHAI), resolver_factory=lambda b, m: None)
    await catalog.start()
    sub = catalog.changes.subscribe()
    await catalog.upsert_brand("", Brand("b", "品牌"))
    assert (await sub.next(1)).all_stores
    await catalog.upsert_item("", MenuItem("latte", "b", "拿铁", 1500))
    assert (await sub.next(1)).all_stores
    session = catalog.begin_import()
    await session.add([validate_store_row(0, "s1", "b", "s1", "addr", "杭州", 30.0, 120.0, (), False, "", catalog.brands)])
    await session.finish()
    change = await sub.next(1)
    assert change.store_ids == ("s1",) and not change.all_stores
    before = catalog.quote_stamped("s1", [WantedLine("latte", 1, {})])
    assert before.menu_version == change.version and before.epoch == catalog.changes.epoch and before.valid_until is None
    await catalog.set_availability("", "s1", "latte", False)
    change = await sub.next(1)
    assert change.store_ids == ("s1",) and change.version > before.menu_version
    after = catalog.quote_stamped("s1", [WantedLine("latte", 1, {})])
    assert after.menu_version == change.version and after.result.problems[0].reason == "ITEM_SOLD_OUT"
    await catalog.close()
