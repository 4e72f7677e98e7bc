"""MatchIntent's choice of store against a brute force over every store: seeded random stores of
the demo brands (clustered and sparse, at one spot, just inside and outside the 5 km and 20 km
reaches, closed for good, closed now in their own time zones, items sold out), random users and
clocks, and sentences read by the real resolver as it reads them. The expected answer walks the
reading's candidates in order and, for each, scans every store of its brand."""
import math
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import tests.unit.catalog.test_catalog_handlers as base
from services.catalog.demo import brand_messages, read_menu
from services.catalog.handlers import Catalog, default_resolver_factory
from services.catalog.model import card_cover, haversine_m, validate_store_row
from services.catalog.servicer import brand_from_pb, item_from_pb
from services.common.clock import FakeClock
from tests.unit.catalog.test_catalog_quote_oracle import priced_by_hand

HANGZHOU = (30.2741, 120.1551)
ZONES = ["", "Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin", "America/New_York", "Pacific/Auckland"]
TIMETABLES = [
    (),
    tuple((d, 540, 1380) for d in range(1, 8)),
    tuple((d, 600, 1500) for d in range(1, 8)),  # past midnight
    tuple((d, 420, 1320) for d in range(1, 6)),  # weekdays only
    tuple((d, 0, 1440) for d in range(1, 8)),
    ((7, 1320, 2880), (3, 60, 120)),
]
SENTENCES = [
    "来杯生椰拿铁", "两杯生椰拿铁少冰", "喝的", "拿铁", "奶茶", "蜜雪冰城柠檬水一杯", "多肉葡萄", "喜茶多肉葡萄和芝芝莓莓",
    "汉堡", "香辣鸡腿堡两个加一份薯条", "来杯咖啡", "盒马草莓", "随便", "瑞幸标准美式三杯", "珍珠奶茶去冰",
]
METRES_PER_DEG = 111_195.0


def offset(point, metres, bearing):
    lat, lng = point
    return (lat + metres * math.cos(bearing) / METRES_PER_DEG,
            lng + metres * math.sin(bearing) / (METRES_PER_DEG * math.cos(math.radians(lat))))


def random_spot(rng, user):
    kind = rng.random()
    bearing = rng.uniform(0, 6.283)
    if kind < 0.4:
        return offset(user, rng.uniform(0, 600), bearing)  # a dense block
    if kind < 0.6:
        return offset(user, rng.uniform(0, 25_000), bearing)  # sparse, out past the wide reach
    if kind < 0.8:
        return offset(user, rng.choice([4_990, 5_000, 5_010, 19_990, 20_010]) + rng.uniform(-5, 5), bearing)
    return None  # at a spot another store already has (a mall): ties in distance


def opens_at(hours, time_zone, now):
    """Open now, by the timetable read in the store's own zone (empty = always open)."""
    if not hours:
        return True
    local = now.astimezone(ZoneInfo(time_zone or "Asia/Shanghai"))
    weekday, minute = local.isoweekday(), local.hour * 60 + local.minute
    for wd, o, c in hours:
        if wd == weekday and o <= minute < c:
            return True
        if (wd % 7) + 1 == weekday and c > 1440 and minute < c - 1440:
            return True
    return False


async def demo_catalog(clock):
    catalog = Catalog(base.FakeStore(), clock=clock, resolver_factory=default_resolver_factory)
    await catalog.start()
    for brand, items in brand_messages(read_menu()):
        await catalog.upsert_brand("", brand_from_pb(brand))
        for item in items:
            await catalog.upsert_item("", item_from_pb(item))
    return catalog


async def import_rows(catalog, rows):
    session = catalog.begin_import()
    await session.add([validate_store_row(i, r["store_id"], r["brand_id"], r["store_id"], "addr", "杭州", r["lat"], r["lng"],
                                          r["hours"], r["closed"], r["time_zone"], catalog.brands) for i, r in enumerate(rows)])
    result = await session.finish()
    assert result.rejected == 0, result.rejections[:3]


def random_rows(rng, user, n, brands):
    rows, spots = [], []
    for i in range(n):
        spot = random_spot(rng, user)
        if spot is None and spots:
            spot = rng.choice(spots)
        elif spot is None:
            spot = user
        spots.append(spot)
        rows.append(dict(store_id=f"s{rng.randrange(10**4):04d}-{i}", brand_id=rng.choice(brands), lat=spot[0], lng=spot[1],
                         hours=rng.choice(TIMETABLES), closed=rng.random() < 0.05, time_zone=rng.choice(ZONES)))
    return rows


def expected(catalog, rows, sold_out, reading, user, now, wanted, face):
    """(store_id, distance, lines priced, total, covered, payable) per proposal, by brute force."""
    out, seen = [], set()
    for cand in reading.candidates:
        if len(out) >= wanted:
            break
        lines = [(l.item_id, int(l.quantity), dict(l.options)) for l in cand.lines]
        menu = catalog.menus.get(cand.brand_id)
        if not lines or menu is None or any(item not in menu for item, _, _ in lines) or len(lines) > 50:
            continue
        items = {item for item, _, _ in lines}
        best = None
        for r in rows:
            if r["brand_id"] != cand.brand_id or r["closed"] or not opens_at(r["hours"], r["time_zone"], now):
                continue
            if sold_out.get(r["store_id"], set()) & items:
                continue
            d = haversine_m(user[0], user[1], r["lat"], r["lng"])
            if d <= 20_000 and (best is None or (d, r["store_id"]) < best):
                best = (d, r["store_id"])
        if best is None:
            continue
        key = (best[1], tuple((i, q, tuple(sorted(o.items()))) for i, q, o in lines))
        if key in seen:
            continue
        problems, priced, total = priced_by_hand(menu, sold_out.get(best[1], set()), lines, True)
        if problems:
            continue
        seen.add(key)
        out.append((best[1], best[0], [(p[1], p[2], p[4], p[5]) for p in priced], total, *card_cover(total, face)))
    return out


def answered(outcome):
    return [(p.hit.store.store_id, p.hit.distance_m, [(l.item_id, l.quantity, l.unit_price_fen, l.line_total_fen) for l in p.quote.lines],
             p.quote.total_fen, p.card_covered_fen, p.payable_with_card_fen) for p in outcome.proposals]


async def test_match_intent_picks_the_stores_a_brute_force_over_every_store_picks():
    brands = ["mixue", "luckin", "heytea", "kfc", "freshippo"]
    cases = 0
    for seed in range(12):
        rng = random.Random(seed)
        clock = FakeClock(datetime(2026, 1, 28, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(7 * 1440)))
        catalog = await demo_catalog(clock)
        user = offset(HANGZHOU, rng.uniform(0, 3_000), rng.uniform(0, 6.283))
        rows = random_rows(rng, user, rng.choice([30, 200, 600]), rng.sample(brands, rng.randrange(1, 6)))
        await import_rows(catalog, rows)
        sold_out = {}
        for r in rng.sample(rows, len(rows) // 4):
            for item in rng.sample(sorted(catalog.menus[r["brand_id"]]), 2):
                await catalog.set_availability("", r["store_id"], item, False)
                sold_out.setdefault(r["store_id"], set()).add(item)
        for _ in range(10):
            clock.set(clock.now() + timedelta(minutes=rng.randrange(1, 900)))
            # A mark set or lifted between two calls counts at the next one.
            r = rng.choice(rows)
            item, available = rng.choice(sorted(catalog.menus[r["brand_id"]])), rng.random() < 0.5
            await catalog.set_availability("", r["store_id"], item, available)
            (sold_out.setdefault(r["store_id"], set()).discard if available else sold_out.setdefault(r["store_id"], set()).add)(item)
            here = rng.choice([user, offset(user, rng.uniform(0, 5_000), rng.uniform(0, 6.283)), (rows[0]["lat"], rows[0]["lng"])])
            text = rng.choice(SENTENCES)
            face, alternatives = rng.choice([0, 500, 2_500]), rng.randrange(0, 6)
            reading = catalog.resolver().resolve(text, card_face_value_fen=face or 2_500)
            want = expected(catalog, rows, sold_out, reading, here, clock.now(), 1 + alternatives, face or 2_500)
            outcome = await catalog.match_intent(text, *here, card_face_value_fen=face, max_alternatives=alternatives)
            assert answered(outcome) == want, (seed, text, here, clock.now())
            assert all(p.hit.open_now for p in outcome.proposals)
            cases += 1
    assert cases == 120


async def test_a_brand_whose_near_stores_are_closed_or_far_gets_a_clarification_not_a_proposal():
    clock = FakeClock(datetime(2026, 1, 27, 19, 30, tzinfo=timezone.utc))  # 03:30 in Hangzhou
    catalog = await demo_catalog(clock)
    await import_rows(catalog, [
        dict(store_id="closed-now", brand_id="luckin", lat=HANGZHOU[0], lng=HANGZHOU[1], hours=TIMETABLES[1], closed=False, time_zone=""),
        dict(store_id="closed-for-good", brand_id="luckin", lat=HANGZHOU[0], lng=HANGZHOU[1], hours=(), closed=True, time_zone=""),
        dict(store_id="too-far", brand_id="luckin", lat=HANGZHOU[0] + 0.19, lng=HANGZHOU[1], hours=(), closed=False, time_zone=""),
        dict(store_id="kfc-all-night", brand_id="kfc", lat=HANGZHOU[0] + 0.01, lng=HANGZHOU[1], hours=(), closed=False, time_zone=""),
    ])
    outcome = await catalog.match_intent("来杯生椰拿铁", *HANGZHOU, max_alternatives=5)
    assert not outcome.matched
    assert "瑞幸咖啡" in outcome.clarification and outcome.available_brands == ("肯德基",)
