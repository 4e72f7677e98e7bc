"""The order service's Quote cache over a fake catalog and a fake change feed."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone

import pytest

from services.common.clock import FakeClock, to_ms
from services.common.errors import NotFound
from services.order.model import Line, Problem, Quote, Selection
from services.order.quote_cache import MenuChange, QuoteCache, QuoteStamp, cache_enabled

START = datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)
EPOCH = "e1"
LATTE = (Selection("latte", 1),)


class FakeFeed:
    """A catalog: prices per item, a change version, a change feed the test pushes into."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: Counter[str] = Counter()
        self.prices = {"latte": 1500, "tea": 800}
        self.sold_out: set[tuple[str, str]] = set()
        self.epoch = EPOCH
        self.version = 0
        self.valid_until_ms: int | None = None
        self.streams: list[asyncio.Queue] = []
        # Set to hold answers back until released (an RPC in flight while a change lands).
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def quote_stamped(self, store_id, selections, *, timeout):
        self.calls["Quote"] += 1
        if store_id == "missing":
            raise NotFound("STORE_NOT_FOUND", "no store")
        stamp = QuoteStamp(self.epoch, self.version, self.valid_until_ms)  # computed now...
        lines, problems, total = [], [], 0
        for i, s in enumerate(selections):
            if (store_id, s.item_id) in self.sold_out:
                problems.append(Problem(i, s.item_id, "ITEM_SOLD_OUT", "sold out"))
                continue
            price = self.prices[s.item_id]
            lines.append(Line(s.item_id, s.item_id, s.quantity, (), price, price * s.quantity))
            total += price * s.quantity
        quote = Quote(store_id, "store", "brand", tuple(lines), tuple(range(len(lines))), total, tuple(problems))
        if self.gate is not None:
            await self.gate.wait()  # ...and answered later
        return quote, stamp

    def watch_changes(self):
        self.calls["WatchMenuChanges"] += 1
        queue: asyncio.Queue = asyncio.Queue()
        self.streams.append(queue)
        queue.put_nowait(MenuChange(self.epoch, self.version, hello=True))
        return FakeStream(queue)

    def change(self, *store_ids: str, all_stores: bool = False) -> int:
        self.version += 1
        for q in self.streams:
            q.put_nowait(MenuChange(self.epoch, self.version, tuple(store_ids), all_stores))
        return self.version

    def drop_streams(self, error: BaseException | None = None) -> None:
        for q in self.streams:
            q.put_nowait(error)
        self.streams.clear()

    async def close(self):
        self.closed = True


class FakeStream:
    """Like a gRPC stream call: cancel() makes the pending read raise CancelledError."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue
        self.cancelled = False

    async def __aiter__(self):
        while True:
            item = await self.queue.get()
            if item == "cancelled":
                raise asyncio.CancelledError()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                return
            yield item

    def cancel(self):
        if not self.cancelled:
            self.cancelled = True
            self.queue.put_nowait("cancelled")


@pytest.fixture
def clock():
    return FakeClock(START)


@pytest.fixture
async def feed(clock):
    return FakeFeed(clock)


@pytest.fixture
async def cache(feed, clock):
    c = QuoteCache(feed, clock=clock, max_entries=100, max_age_seconds=60, idle_seconds=5)
    c.start()
    assert await c.wait_live(2)
    yield c
    await c.close()


async def until(predicate, timeout=2.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def announced(cache, version):
    await until(lambda: cache.version >= version)


async def test_a_repeated_quote_is_answered_from_the_cache_without_an_rpc(cache, feed):
    first = await cache.quote("s1", LATTE, timeout=1)
    again = await cache.quote("s1", LATTE, timeout=1)
    assert again == first and first.total_fen == 1500
    assert feed.calls["Quote"] == 1 and (cache.hits, cache.misses) == (1, 1)
    assert cache.calls is feed.calls  # server.upstream_calls keeps counting real RPCs


async def test_different_stores_lines_or_quantities_are_different_entries(cache, feed):
    await cache.quote("s1", LATTE, timeout=1)
    await cache.quote("s2", LATTE, timeout=1)
    await cache.quote("s1", (Selection("latte", 2),), timeout=1)
    await cache.quote("s1", (Selection("tea", 1), Selection("latte", 1)), timeout=1)
    await cache.quote("s1", (Selection("latte", 1), Selection("tea", 1)), timeout=1)
    assert feed.calls["Quote"] == 5 and cache.hits == 0


async def test_option_order_does_not_matter_but_options_do(cache, feed):
    a = (Selection("latte", 1, (("size", "l"), ("milk", "oat"))),)
    b = (Selection("latte", 1, (("milk", "oat"), ("size", "l"))),)
    c = (Selection("latte", 1, (("milk", "oat"),)),)
    await cache.quote("s1", a, timeout=1)
    await cache.quote("s1", b, timeout=1)
    await cache.quote("s1", c, timeout=1)
    assert feed.calls["Quote"] == 2 and cache.hits == 1


async def test_a_change_to_a_store_invalidates_only_that_store(cache, feed):
    await cache.quote("s1", LATTE, timeout=1)
    await cache.quote("s2", LATTE, timeout=1)
    feed.prices["latte"] = 1800
    await announced(cache, feed.change("s1"))
    assert (await cache.quote("s1", LATTE, timeout=1)).total_fen == 1800
    assert (await cache.quote("s2", LATTE, timeout=1)).total_fen == 1500  # not announced: kept
    assert feed.calls["Quote"] == 3
    assert (await cache.quote("s1", LATTE, timeout=1)).total_fen == 1800
    assert feed.calls["Quote"] == 3


async def test_an_all_stores_change_drops_every_entry(cache, feed):
    for store in ("s1", "s2", "s3"):
        await cache.quote(store, LATTE, timeout=1)
    feed.prices["latte"] = 1700
    await announced(cache, feed.change(all_stores=True))
    assert len(cache) == 0
    for store in ("s1", "s2", "s3"):
        assert (await cache.quote(store, LATTE, timeout=1)).total_fen == 1700
    assert feed.calls["Quote"] == 6


async def test_sold_out_answers_are_kept_and_invalidated_like_any_other(cache, feed):
    feed.sold_out.add(("s1", "latte"))
    await announced(cache, feed.change("s1"))
    assert (await cache.quote("s1", LATTE, timeout=1)).problems[0].reason == "ITEM_SOLD_OUT"
    assert (await cache.quote("s1", LATTE, timeout=1)).problems
    assert feed.calls["Quote"] == 1
    feed.sold_out.clear()
    await announced(cache, feed.change("s1"))
    assert not (await cache.quote("s1", LATTE, timeout=1)).problems


async def test_errors_are_never_kept(cache, feed):
    for _ in range(2):
        with pytest.raises(NotFound):
            await cache.quote("missing", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2 and len(cache) == 0


async def test_a_quote_computed_before_a_change_is_not_kept_once_the_change_is_announced(cache, feed):
    feed.gate = asyncio.Event()
    in_flight = asyncio.ensure_future(cache.quote("s1", LATTE, timeout=1))
    await until(lambda: feed.calls["Quote"] == 1)  # priced at the old version, answer held back
    feed.prices["latte"] = 2000
    await announced(cache, feed.change("s1"))
    feed.gate.set()
    assert (await in_flight).total_fen == 1500  # the caller asked before the change: fine
    assert cache.refused == 1 and len(cache) == 0
    feed.gate = None
    assert (await cache.quote("s1", LATTE, timeout=1)).total_fen == 2000
    assert feed.calls["Quote"] == 2


async def test_an_entry_kept_before_the_announcement_arrives_is_never_served_after_it(cache, feed):
    await cache.quote("s1", LATTE, timeout=1)
    feed.prices["latte"] = 2100
    await announced(cache, feed.change("s1"))
    assert (await cache.quote("s1", LATTE, timeout=1)).total_fen == 2100


async def test_an_answer_of_another_epoch_is_not_kept(cache, feed):
    feed.epoch = "restarted-but-stream-not-yet-told"
    await cache.quote("s1", LATTE, timeout=1)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2 and cache.refused == 2


async def test_a_new_epoch_on_reconnect_drops_everything(cache, feed):
    await cache.quote("s1", LATTE, timeout=1)
    feed.drop_streams()
    await until(lambda: not cache.live)
    feed.epoch, feed.version = "e2", 0  # a restarted catalog counts from zero again
    feed.prices["latte"] = 900
    assert await cache.wait_live(2) and cache.epoch == "e2"
    assert (await cache.quote("s1", LATTE, timeout=1)).total_fen == 900
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2 and cache.hits == 1


async def test_while_the_feed_is_down_every_quote_goes_to_the_catalog(cache, feed):
    await cache.quote("s1", LATTE, timeout=1)
    feed.drop_streams(ConnectionError("catalog gone"))
    await until(lambda: not cache.live)
    assert len(cache) == 0
    for _ in range(3):
        await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 4 and cache.bypasses == 3
    # It reconnects by itself (with backoff) and caches again.
    assert await cache.wait_live(2)
    await cache.quote("s1", LATTE, timeout=1)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 5 and feed.calls["WatchMenuChanges"] == 2


async def test_a_quote_in_flight_across_a_reconnect_is_not_kept(cache, feed):
    feed.gate = asyncio.Event()
    in_flight = asyncio.ensure_future(cache.quote("s1", LATTE, timeout=1))
    await until(lambda: feed.calls["Quote"] == 1)
    feed.drop_streams()  # changes may be missed while disconnected
    await until(lambda: feed.calls["WatchMenuChanges"] == 2)
    assert await cache.wait_live(2)
    feed.gate.set()
    await in_flight
    assert len(cache) == 0 and cache.refused == 1


async def test_a_silent_feed_is_treated_as_dead(feed, clock):
    c = QuoteCache(feed, clock=clock, idle_seconds=0.05)
    c.start()
    try:
        assert await c.wait_live(2)
        await until(lambda: feed.calls["WatchMenuChanges"] >= 2)  # no heartbeat: reconnected
        assert c.idle_resets >= 1
    finally:
        await c.close()
    assert feed.closed


async def test_an_answer_expires_at_its_valid_until_time(cache, feed, clock):
    feed.valid_until_ms = to_ms(clock.now()) + 10_000  # the store closes in 10 s
    await cache.quote("s1", LATTE, timeout=1)
    clock.advance(9.9)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 1
    clock.advance(0.1)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2


async def test_an_answer_already_past_its_valid_until_time_is_not_kept(cache, feed, clock):
    feed.valid_until_ms = to_ms(clock.now())
    await cache.quote("s1", LATTE, timeout=1)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2 and len(cache) == 0


async def test_an_answer_expires_after_the_maximum_age_whatever_the_catalog_says(cache, feed, clock):
    await cache.quote("s1", LATTE, timeout=1)
    clock.advance(59)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 1
    clock.advance(1)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2


async def test_an_answer_kept_before_the_wall_clock_stepped_back_is_asked_again(cache, feed, clock):
    # Stepped back a minute (NTP), the maximum age counted from the ask used to stretch to two
    # minutes. An answer asked "after now" is of unknown age: asked again.
    await cache.quote("s1", LATTE, timeout=1)
    clock.advance(-60)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2
    clock.advance(59)
    await cache.quote("s1", LATTE, timeout=1)
    assert feed.calls["Quote"] == 2


async def test_the_cache_holds_at_most_max_entries_dropping_the_least_recently_used(feed, clock):
    c = QuoteCache(feed, clock=clock, max_entries=3)
    c.start()
    try:
        assert await c.wait_live(2)
        for store in ("a", "b", "c"):
            await c.quote(store, LATTE, timeout=1)
        await c.quote("a", LATTE, timeout=1)  # a is now the most recent
        await c.quote("d", LATTE, timeout=1)  # evicts b
        assert len(c) == 3 and feed.calls["Quote"] == 4
        await c.quote("a", LATTE, timeout=1)
        await c.quote("c", LATTE, timeout=1)
        await c.quote("d", LATTE, timeout=1)
        assert feed.calls["Quote"] == 4
        await c.quote("b", LATTE, timeout=1)
        assert feed.calls["Quote"] == 5 and len(c) == 3
    finally:
        await c.close()


async def test_what_the_kept_answers_hold_is_bounded_as_well_as_their_number(feed, clock):
    # LATTE weighs 3 (the request, its line, the priced line); five lattes of a store weigh 11.
    five = tuple(Selection("latte", q) for q in range(1, 6))
    c = QuoteCache(feed, clock=clock, max_entries=100, max_weight=30, max_entry_weight=12)
    c.start()
    try:
        assert await c.wait_live(2)
        for store in ("a", "b", "c", "d"):
            await c.quote(store, five, timeout=1)
            assert c.weight <= 30
        assert len(c) == 2 and c.weight == 22  # the two most recent; the others made room
        await c.quote("d", five, timeout=1)
        assert feed.calls["Quote"] == 4  # d was kept and served
        await c.quote("e", five + five[:1], timeout=1)  # weighs 13: answered, not kept
        assert len(c) == 2 and c.weight == 22 and c.refused == 1
        feed.change(all_stores=True)
        await announced(c, feed.version)
        assert len(c) == 0 and c.weight == 0
    finally:
        await c.close()


async def test_too_many_tracked_store_announcements_collapse_into_dropping_everything(feed, clock):
    c = QuoteCache(feed, clock=clock, max_tracked_stores=10)
    c.start()
    try:
        assert await c.wait_live(2)
        await c.quote("s1", LATTE, timeout=1)
        await announced(c, feed.change(*[f"x{i}" for i in range(11)]))
        assert len(c) == 0 and not c._store_floor
        await c.quote("s1", LATTE, timeout=1)
        await c.quote("s1", LATTE, timeout=1)
        assert feed.calls["Quote"] == 2
    finally:
        await c.close()


async def test_many_concurrent_quotes_during_changes_never_serve_a_price_older_than_the_announcement(cache, feed):
    """Hammer: 300 concurrent quotes over 3 stores while prices change; after each announcement
    is applied, every answer served must carry the price of that version or newer."""
    stores = ("s1", "s2", "s3")
    price_by_version = {0: 1500}

    async def buyer(i: int) -> None:
        store = stores[i % 3]
        floor_price = price_by_version[cache.version]
        q = await cache.quote(store, LATTE, timeout=1)
        # Prices only go up here, so "not older" means ">= the price announced when asked".
        assert q.total_fen >= floor_price

    for round_ in range(10):
        tasks = [asyncio.ensure_future(buyer(i)) for i in range(30)]
        await asyncio.sleep(0)
        feed.prices["latte"] += 100
        version = feed.change(*stores)
        price_by_version[version] = feed.prices["latte"]
        await asyncio.gather(*tasks)
        await announced(cache, version)
    assert cache.hits + cache.misses == 300


def test_the_environment_switch_turns_the_cache_off():
    assert cache_enabled({}) and cache_enabled({"MIANDAN_QUOTE_CACHE": "1"})
    assert not cache_enabled({"MIANDAN_QUOTE_CACHE": "0"}) and not cache_enabled({"MIANDAN_QUOTE_CACHE": "off"})


@pytest.mark.parametrize("value", ["2", "disabled", "of"])
def test_a_value_that_is_no_switch_position_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match=f"MIANDAN_QUOTE_CACHE='{value}'"):
        cache_enabled({"MIANDAN_QUOTE_CACHE": value})
