"""Quote against a brute-force pricing of the menu: seeded random menus (option groups with
positive, zero and negative deltas, defaults named or left to the first option), sold-out marks
set and lifted, and random orders (unknown items, quantities out of range, options not offered,
a choice repeated) at random instants of the store's week, through the servicer's translation."""
import random
from datetime import datetime, timedelta, timezone

from miandan.catalog.v1 import catalog_pb2 as pb

import tests.unit.catalog.test_catalog_handlers as base
from services.catalog.model import Brand, MenuItem, Option, OptionGroup, OpenClock, validate_store_row
from services.catalog.servicer import lines_from_pb, quote_pb
from services.common.clock import FakeClock
from services.common.errors import InvalidArgument


def random_item(rng, i):
    price = rng.randrange(1, 20_000)
    groups = []
    for g in range(rng.choice([0, 0, 1, 2, 3, 4])):
        options = tuple(Option(f"o{o}", f"选项{o}", rng.choice([0, 0, 100, 300, -50, rng.randrange(-price // 4, 5_000)]))
                        for o in range(rng.randrange(1, 6)))
        groups.append(OptionGroup(f"g{g}", f"组{g}", options, rng.choice(["", *(o.option_id for o in options)])))
    return MenuItem(f"i{i}", "b", f"商品{i}", price, option_groups=tuple(groups))


def priced_by_hand(menu, sold_out, lines, is_open):
    """(problems, lines, total) as the rules say, one line at a time."""
    problems, priced, total = [], [], 0
    if not is_open:
        problems.append((-1, "", "STORE_CLOSED"))
    for index, (item_id, quantity, chosen) in enumerate(lines):
        item = menu.get(item_id)
        if item is None:
            problems.append((index, item_id, "UNKNOWN_ITEM"))
            continue
        before = len(problems)
        if not 1 <= quantity <= 99:
            problems.append((index, item_id, "QUANTITY_OUT_OF_RANGE"))
        if item_id in sold_out:
            problems.append((index, item_id, "ITEM_SOLD_OUT"))
        groups = {g.group_id: {o.option_id: o for o in g.options} for g in item.option_groups}
        problems += [(index, item_id, "OPTION_NOT_OFFERED") for g, o in chosen.items() if o not in groups.get(g, {})]
        if len(problems) > before:
            continue
        unit, options = item.price_fen, []
        for g in item.option_groups:
            option_id = chosen.get(g.group_id) or g.default_option_id or g.options[0].option_id
            unit += groups[g.group_id][option_id].price_delta_fen
            options.append((g.group_id, option_id, groups[g.group_id][option_id].price_delta_fen))
        priced.append((index, item_id, quantity, tuple(options), unit, unit * quantity))
        total += unit * quantity
    return problems, priced, total


def random_order(rng, menu):
    request, lines = [], []
    for _ in range(rng.randrange(1, 51)):
        item_id = rng.choice([*menu, "nope"]) if rng.random() < 0.1 else rng.choice(list(menu))
        quantity = rng.choice([1, 1, 2, 99, rng.randrange(1, 100), *([0, -1, 100, 2**31 - 1] if rng.random() < 0.1 else [])])
        line, chosen = pb.LineSelection(item_id=item_id, quantity=quantity), {}
        for g in menu[item_id].option_groups if item_id in menu else ():
            if rng.random() < 0.6:
                option_id = rng.choice([o.option_id for o in g.options]) if rng.random() < 0.95 else "zz"
                chosen[g.group_id] = option_id
                for _ in range(rng.choice([1, 1, 1, 2])):  # the same choice twice is one choice
                    line.options.add(group_id=g.group_id, option_id=option_id)
        if rng.random() < 0.05:
            chosen["nog"] = "x"
            line.options.add(group_id="nog", option_id="x")
        request.append(line)
        lines.append((item_id, quantity, chosen))
    return request, lines


async def test_quote_equals_a_brute_force_pricing_of_the_menu():
    rng = random.Random(8848)
    clock = FakeClock(datetime(2026, 1, 28, tzinfo=timezone.utc))
    catalog, _ = await base.make_catalog(clock)
    await catalog.upsert_brand("", Brand("b", "品牌"))
    menu = {}
    for i in range(40):
        item = random_item(rng, i)
        try:
            await catalog.upsert_item("", item)
        except InvalidArgument:  # options that could price a line below zero
            continue
        menu[item.item_id] = item
    session = catalog.begin_import()
    await session.add([validate_store_row(0, "st", "b", "店", "", "", 30.0, 120.0, [(d, 480, 1320) for d in range(1, 8)], False, "",
                                          catalog.brands)])
    await session.finish()
    sold_out = set()
    for case in range(200):
        for _ in range(rng.randrange(3)):
            item_id, available = rng.choice(list(menu)), rng.random() < 0.5
            await catalog.set_availability("", "st", item_id, available)
            (sold_out.discard if available else sold_out.add)(item_id)
        clock.set(datetime(2026, 1, 26, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(7 * 1440)))
        request, lines = random_order(rng, menu)
        result = catalog.quote_stamped("st", lines_from_pb(request)).result
        wire = quote_pb(result)
        want = priced_by_hand(menu, sold_out, lines, OpenClock(clock.now()).is_open(catalog.stores["st"]))
        got = (
            [(p.line_index, p.item_id, p.reason) for p in result.problems],
            [(l.line_index, l.item_id, l.quantity, tuple((o.group_id, o.option_id, o.price_delta_fen) for o in l.options),
              l.unit_price_fen, l.line_total_fen) for l in wire.lines],
            wire.total_fen,
        )
        assert got == want, case
        assert result.orderable == (not want[0])
