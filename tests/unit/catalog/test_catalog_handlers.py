"""Catalog use cases over an in-memory fake store and a fake resolver."""
import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from services.catalog.handlers import Catalog
from services.catalog.model import Brand, MenuItem, Option, OptionGroup, StoreDetails, WantedLine, validate_store_row
from services.catalog.store import Snapshot
from services.common.clock import FakeClock
from services.common.errors import InvalidArgument, NotFound

ICE = OptionGroup("temperature", "温度", (Option("regular_ice", "正常冰"), Option("less_ice", "少冰")), "regular_ice")
LUCKIN = Brand("luckin", "瑞幸咖啡", ("瑞幸",), "咖啡")
HEYTEA = Brand("heytea", "喜茶", (), "茶饮")
LATTE = MenuItem("latte", "luckin", "生椰拿铁", 2900, option_groups=(ICE,))
GRAPE = MenuItem("grape", "heytea", "多肉葡萄", 1900)
HANGZHOU = (30.2741, 120.1551)


class FakeStore:
    def __init__(self):
        self.requests = {}
        self.rows = {}
        self.marks = set()
        self.writes = 0

    async def load(self):
        return Snapshot([], [], [], [])

    async def upsert_brand(self, request_id, brand, now_ms):
        return self._once(("brand", request_id), True)

    async def upsert_item(self, request_id, item, now_ms):
        return self._once(("item", request_id), True)

    def _once(self, key, created):
        self.writes += 1
        if key[1] and key in self.requests:
            return self.requests[key], True
        self.requests[key] = created
        return created, False

    async def upsert_stores(self, rows, now_ms):
        self.writes += 1
        moved = {r.store_id for r in rows if r.store_id in self.rows and self.rows[r.store_id].brand_id != r.brand_id}
        dropped = sorted(m for m in self.marks if m[0] in moved)
        self.marks.difference_update(dropped)
        for r in rows:
            self.rows[r.store_id] = r
        return dropped

    async def set_availability(self, request_id, store_id, item_id, available, now_ms):
        replayed = self._once(("avail", request_id), available)[1]
        if not replayed:
            (self.marks.discard if available else self.marks.add)((store_id, item_id))
        return replayed

    async def store_details(self, ids):
        return {i: StoreDetails(self.rows[i].address, self.rows[i].city) for i in ids if i in self.rows}

    async def close(self):
        pass


@dataclass(frozen=True)
class Cand:
    brand_id: str
    lines: tuple
    confidence: float = 0.9
    explanation: str = "读作"
    by_category: bool = False


@dataclass(frozen=True)
class Reading:
    candidates: tuple = ()
    clarification: str = ""
    mentioned_unknown_brand: str = ""


@dataclass
class FakeResolver:
    answers: dict = field(default_factory=dict)

    def resolve(self, text, card_face_value_fen=2500):
        return self.answers.get(text, Reading(clarification="听不懂"))


class Factory:
    def __init__(self):
        self.builds = 0
        self.resolver = FakeResolver()

    def __call__(self, brands, menus):
        self.builds += 1
        self.seen = ([b.brand_id for b in brands], {k: [i.item_id for i in v] for k, v in menus.items()})
        return self.resolver


async def make_catalog(clock=None):
    factory = Factory()
    catalog = Catalog(FakeStore(), clock=clock or FakeClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)), resolver_factory=factory)
    await catalog.start()
    for b in (LUCKIN, HEYTEA):
        await catalog.upsert_brand("", b)
    await catalog.upsert_item("", LATTE)
    await catalog.upsert_item("", GRAPE)
    return catalog, factory


async def add_store(catalog, store_id, brand_id, dlat, periods=(), closed=False):
    session = catalog.begin_import()
    await session.add([validate_store_row(0, store_id, brand_id, store_id, "addr", "杭州", HANGZHOU[0] + dlat, HANGZHOU[1],
                                          periods, closed, "", catalog.brands)])
    assert session.result.accepted == 0  # buffered until the stream ends or a batch fills
    assert (await session.finish()).accepted == 1


async def test_match_picks_the_nearest_open_store_that_has_every_item():
    catalog, factory = await make_catalog()
    await add_store(catalog, "near-closed", "luckin", 0.001, closed=True)
    await add_store(catalog, "near-soldout", "luckin", 0.002)
    await add_store(catalog, "farther", "luckin", 0.01)
    await catalog.set_availability("", "near-soldout", "latte", False)
    factory.resolver.answers["两杯生椰拿铁"] = Reading((Cand("luckin", (WantedLine("latte", 2, {"temperature": "less_ice"}),)),))
    out = await catalog.match_intent("两杯生椰拿铁", *HANGZHOU)
    assert out.matched
    best = out.proposals[0]
    assert best.hit.store.store_id == "farther"
    assert best.quote.total_fen == 5800 and best.card_covered_fen == 2500 and best.payable_with_card_fen == 3300
    assert 1000 < best.hit.distance_m < 1200


async def test_match_widens_to_twenty_km_when_nothing_is_near():
    catalog, factory = await make_catalog()
    await add_store(catalog, "far", "heytea", 0.1)  # ~11 km
    factory.resolver.answers["多肉葡萄"] = Reading((Cand("heytea", (WantedLine("grape", 1),)),))
    out = await catalog.match_intent("多肉葡萄", *HANGZHOU)
    assert out.proposals[0].hit.store.store_id == "far"
    assert out.proposals[0].card_covered_fen == 1900 and out.proposals[0].payable_with_card_fen == 0


async def test_match_falls_back_to_the_next_candidate_and_returns_alternatives():
    catalog, factory = await make_catalog()
    await add_store(catalog, "tea", "heytea", 0.003)
    await add_store(catalog, "coffee", "luckin", 0.004)
    factory.resolver.answers["喝点"] = Reading((
        Cand("luckin", (WantedLine("unknown-item", 1),)),
        Cand("heytea", (WantedLine("grape", 1),), 0.8),
        Cand("luckin", (WantedLine("latte", 1),), 0.6),
    ))
    out = await catalog.match_intent("喝点", *HANGZHOU, max_alternatives=5)
    assert [p.hit.store.store_id for p in out.proposals] == ["tea", "coffee"]
    out = await catalog.match_intent("喝点", *HANGZHOU, max_alternatives=0)
    assert len(out.proposals) == 1


async def test_no_orderable_store_means_a_clarification_naming_nearby_brands():
    catalog, factory = await make_catalog()
    await add_store(catalog, "tea", "heytea", 0.003)
    factory.resolver.answers["星巴克拿铁"] = Reading(mentioned_unknown_brand="星巴克")
    out = await catalog.match_intent("星巴克拿铁", *HANGZHOU)
    assert not out.matched
    assert out.available_brands == ("喜茶",)
    assert "星巴克" in out.clarification and "喜茶" in out.clarification
    factory.resolver.answers["拿铁"] = Reading((Cand("luckin", (WantedLine("latte", 1),)),))
    out = await catalog.match_intent("拿铁", *HANGZHOU)
    assert not out.matched and "瑞幸咖啡" in out.clarification


async def test_the_resolver_is_rebuilt_only_when_brands_or_menus_change():
    catalog, factory = await make_catalog()
    await catalog.match_intent("x", *HANGZHOU)
    await catalog.match_intent("y", *HANGZHOU)
    assert factory.builds == 1
    await add_store(catalog, "s", "luckin", 0.0)  # stores do not change what the resolver knows
    await catalog.match_intent("x", *HANGZHOU)
    assert factory.builds == 1
    await catalog.upsert_item("", MenuItem("americano", "luckin", "标准美式", 2400))
    await catalog.match_intent("x", *HANGZHOU)
    assert factory.builds == 2 and "americano" in factory.seen[1]["luckin"]


@pytest.mark.parametrize("text, reason", [("", "EMPTY_TEXT"), ("   ", "EMPTY_TEXT"), ("茶" * 501, "TEXT_TOO_LONG")])
async def test_match_refuses_empty_and_overlong_text(text, reason):
    catalog, _ = await make_catalog()
    with pytest.raises(InvalidArgument) as err:
        await catalog.match_intent(text, *HANGZHOU)
    assert err.value.reason == reason and err.value.violations[0][0] == "text"


async def test_match_refuses_coordinates_out_of_range():
    catalog, _ = await make_catalog()
    with pytest.raises(InvalidArgument) as err:
        await catalog.match_intent("拿铁", 95.0, 120.0)
    assert err.value.violations[0][0] == "location"


async def test_a_replayed_request_id_changes_nothing():
    catalog, _ = await make_catalog()
    await add_store(catalog, "s", "luckin", 0.0)
    assert await catalog.set_availability("r1", "s", "latte", False) is False
    assert await catalog.set_availability("r2", "s", "latte", True) is True
    # Replay: the first answer again (sold out), and nothing changes: still available.
    assert await catalog.set_availability("r1", "s", "latte", False) is False
    assert "latte" not in catalog.sold_out.get("s", ())


async def test_an_import_that_moves_a_store_to_another_brand_forgets_its_sold_out_marks():
    catalog, _ = await make_catalog()
    await add_store(catalog, "s", "luckin", 0.0)
    await add_store(catalog, "t", "luckin", 0.001)
    await catalog.set_availability("", "s", "latte", False)
    await catalog.set_availability("", "t", "latte", False)
    sub = catalog.changes.subscribe()
    await add_store(catalog, "s", "heytea", 0.0)
    await add_store(catalog, "t", "luckin", 0.001)  # same brand: its marks stay
    assert "s" not in catalog.sold_out and catalog.sold_out["t"] == {"latte"}
    assert set((await sub.next(1)).store_ids) == {"s", "t"}
    assert catalog.quote("s", [WantedLine("grape", 1)]).orderable
    await add_store(catalog, "s", "luckin", 0.0)
    assert catalog.quote("s", [WantedLine("latte", 1)]).orderable
    assert [e for e in (await catalog.get_menu("s")).entries if not e[1]] == []


async def test_quote_uses_no_store_call():
    catalog, _ = await make_catalog()
    await add_store(catalog, "s", "luckin", 0.0)
    writes = catalog.store.writes
    q = catalog.quote("s", [WantedLine("latte", 1)])
    assert q.orderable and q.total_fen == 2900 and catalog.store.writes == writes
    with pytest.raises(NotFound):
        catalog.quote("nope", [WantedLine("latte", 1)])
    with pytest.raises(InvalidArgument):
        catalog.quote("s", [])
    with pytest.raises(InvalidArgument):
        catalog.quote("s", [WantedLine("latte", 1)] * 51)


async def test_search_pages_through_stores_nearest_first():
    catalog, _ = await make_catalog()
    for i in range(25):
        await add_store(catalog, f"s{i:02d}", "luckin" if i % 2 else "heytea", 0.0005 * (i + 1))
    seen, token = [], ""
    while True:
        hits, token = await catalog.search_stores(*HANGZHOU, page_size=10, page_token=token)
        seen += [h.store.store_id for h in hits]
        if not token:
            break
    assert seen == [f"s{i:02d}" for i in range(25)]
    hits, _ = await catalog.search_stores(*HANGZHOU, category="咖啡", page_size=100)
    assert {h.brand.brand_id for h in hits} == {"luckin"} and len(hits) == 12


async def test_a_resolver_that_crashes_gives_a_clarification_not_an_error():
    catalog, factory = await make_catalog()
    await add_store(catalog, "s", "luckin", 0.0)

    def boom(text, card_face_value_fen=2500):
        raise ZeroDivisionError("bug")

    factory.resolver.resolve = boom
    out = await catalog.match_intent("拿铁", *HANGZHOU)
    assert not out.matched and out.clarification and out.available_brands == ("瑞幸咖啡",)


class SlowStore(FakeStore):
    """A store whose writes commit only when `gate` opens, as a real writer's batch does whether
    or not its caller still waits."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()

    async def upsert_brand(self, request_id, brand, now_ms):
        await self.gate.wait()
        return await super().upsert_brand(request_id, brand, now_ms)

    async def set_availability(self, request_id, store_id, item_id, available, now_ms):
        await self.gate.wait()
        return await super().set_availability(request_id, store_id, item_id, available, now_ms)

    async def upsert_stores(self, rows, now_ms):
        await self.gate.wait()
        return await super().upsert_stores(rows, now_ms)


async def test_a_write_whose_caller_gave_up_still_reaches_what_searches_and_quotes_read():
    catalog, _ = await make_catalog()
    await add_store(catalog, "s1", "luckin", 0.001)
    store = catalog.store = SlowStore()
    calls = [
        asyncio.ensure_future(catalog.set_availability("so-1", "s1", "latte", False)),
        asyncio.ensure_future(catalog.upsert_brand("b-1", Brand("mixue", "蜜雪冰城", (), "茶饮"))),
    ]
    session = catalog.begin_import()
    await session.add([validate_store_row(0, "s2", "luckin", "s2", "addr", "杭州", HANGZHOU[0], HANGZHOU[1], (), False, "", catalog.brands)])
    calls.append(asyncio.ensure_future(session.finish()))
    await asyncio.sleep(0.01)
    for call in calls:
        call.cancel()  # the clients' deadlines pass while the writes are in the store's hands
    await asyncio.gather(*calls, return_exceptions=True)
    store.gate.set()  # the store commits them anyway
    for _ in range(10):
        await asyncio.sleep(0)
    assert "latte" in catalog.sold_out.get("s1", ())
    assert "mixue" in catalog.brands
    assert "s2" in catalog.stores and store.rows.keys() >= {"s2"}
