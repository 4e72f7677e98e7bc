"""Quantities in natural-language orders (MatchIntent, and so OrderByText) are read whole or refused.

A bug hunt found counts read from the tail of a longer number and orders placed for them: 1005杯 as 5,
3.5杯 as 5, -2杯 as 2, and 一百万杯 (no known numeral) as 1. A number is now read from its first
character: too big is the same out-of-range outcome as 100杯, and a fraction, a negative, a range or
zero is a clarification asking for a whole number, never some other count.
"""
from datetime import datetime, timezone

import pytest

from services.catalog.handlers import Catalog
from services.catalog.intent import build_resolver, load_demo_specs
from services.catalog.intent.numbers import parse_chinese_numeral, parse_quantity, scan_quantities
from services.catalog.model import Brand, MenuItem, validate_store_row
from services.catalog.store import Snapshot
from services.common.clock import FakeClock

RESOLVER = build_resolver(*load_demo_specs())
LATTE_ID = "luckin-coconut-latte"


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("一百万", 1_000_000), ("十万", 100_000), ("两千", 2000), ("三千万", 30_000_000), ("一万零五百", 10_500),
    ("两万五", 25_000), ("一百二", 120), ("一亿", 100_000_000), ("一万亿", 10**12), ("萬", 10_000),
    ("零", 0), ("〇", 0), ("一百零五", 105), ("十二", 12), ("两", 2),
])
def test_big_chinese_numerals_read_whole(text, value):
    assert parse_chinese_numeral(text) == value


@pytest.mark.parametrize("text", ["两三", "七八", "一二", "一零"])
def test_two_digits_in_a_row_are_an_estimate_not_a_number(text):
    assert parse_chinese_numeral(text) is None


@pytest.mark.parametrize("text,value", [
    # the bug cases: the whole number, never its tail
    ("1005杯", 1005), ("一百万杯", 1_000_000),
    # what already read whole stays so
    ("100杯", 100), ("一百杯", 100), ("10杯", 10), ("99杯", 99),
    # neighbours
    ("两千杯", 2000), ("三万个", 30_000), ("一亿杯", 100_000_000), ("2.0杯", 2),
    ("两杯", 2), ("来3杯", 3), ("一杯", 1), ("三份", 3), ("十二个", 12), ("2 杯", 2), ("x2", 2), ("2x", 2),
    ("x1000", 1000), ("× 3", 3), ("一对", 2), ("一打", 12),
])
def test_a_count_is_read_from_its_first_digit(text, value):
    assert [q.quantity for q in scan_quantities(text)] == [value]
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text,problem", [
    ("3.5杯", "fraction"), ("2.5 杯", "fraction"), ("0.5杯", "fraction"), ("1/2杯", "fraction"), ("半杯", "fraction"),
    ("x1.5", "fraction"), ("1.5x", "fraction"), ("2.5", "fraction"),
    ("-2杯", "negative"), ("−2杯", "negative"), ("负两杯", "negative"), ("x-1", "negative"), ("-3", "negative"),
    ("2-3杯", "range"), ("2~3杯", "range"), ("两到三杯", "range"), ("两三杯", "range"),
    ("0杯", "zero"), ("零杯", "zero"), ("x0", "zero"),
])
def test_a_count_that_cannot_be_ordered_is_found_whole_and_flagged(text, problem):
    found = scan_quantities(text)
    assert len(found) == 1, found
    q = found[0]
    assert (q.start, q.end, q.quantity, q.problem) == (0, len(text), 0, problem)
    assert parse_quantity(text) is None


@pytest.mark.parametrize("text", ["第2杯半价", "第二杯", "第十二杯"])
def test_an_ordinal_is_not_a_count(text):
    assert scan_quantities(text) == []


@pytest.mark.parametrize("text,value", [("一杯半糖", 1), ("两杯半价", 2)])
def test_half_sugar_and_half_price_leave_the_count_alone(text, value):
    assert [q.quantity for q in scan_quantities(text)] == [value]


@pytest.mark.parametrize("text", ["20-30元", "25.5块钱", "1.5kg", "1. ", "周一"])
def test_prices_sizes_and_list_numbers_stay_out(text):
    assert parse_quantity(text) is None and scan_quantities(text) == []


# --- the resolver ----------------------------------------------------------------------------


def _read(text):
    return RESOLVER.resolve(text)


@pytest.mark.parametrize("text,value", [
    ("1005杯生椰拿铁", 1005), ("一百万杯生椰拿铁", 1_000_000), ("100杯生椰拿铁", 100), ("一百杯生椰拿铁", 100),
    ("生椰拿铁 1000", 1000), ("生椰拿铁x1000", 1000),
    ("10杯生椰拿铁", 10), ("两杯生椰拿铁", 2), ("来3杯生椰拿铁", 3), ("生椰拿铁 2 杯", 2), ("生椰拿铁 - 2杯", 2),
    ("周一3杯生椰拿铁", 3),
])
def test_the_resolver_keeps_the_number_that_was_said(text, value):
    top = _read(text).candidates[0]
    assert [(ln.item_id, ln.quantity) for ln in top.lines] == [(LATTE_ID, value)]


@pytest.mark.parametrize("text,surface", [
    ("3.5杯生椰拿铁", "3.5杯"), ("2.5 杯生椰拿铁", "2.5 杯"), ("-2杯生椰拿铁", "-2杯"), ("生椰拿铁x1.5", "x1.5"),
    ("半杯生椰拿铁", "半杯"), ("2-3杯生椰拿铁", "2-3杯"), ("两三杯生椰拿铁", "两三杯"), ("0杯生椰拿铁", "0杯"),
    ("两杯生椰拿铁，一杯美式，3.5杯柠檬水", "3.5杯"),
])
def test_the_resolver_asks_for_a_whole_number_instead_of_guessing(text, surface):
    reading = _read(text)
    assert reading.candidates == ()
    assert surface in reading.clarification and "整数" in reading.clarification and "whole number" in reading.clarification


def test_an_ordinal_in_the_sentence_does_not_change_the_count():
    top = _read("两杯生椰拿铁，第二杯半价").candidates[0]
    assert sum(ln.quantity for ln in top.lines) == 2
    top = _read("第2杯半价生椰拿铁").candidates[0]
    assert [(ln.item_id, ln.quantity) for ln in top.lines] == [(LATTE_ID, 1)]


# --- MatchIntent (what OrderByText orders from) ----------------------------------------------


LUCKIN = Brand("luckin", "瑞幸咖啡", ("瑞幸",), "咖啡")
LATTE = MenuItem(LATTE_ID, "luckin", "生椰拿铁", 2900)
HANGZHOU = (30.2741, 120.1551)


class SnapshotStore:
    def __init__(self, snapshot):
        self.snapshot = snapshot

    async def load(self):
        return self.snapshot

    async def store_details(self, ids):
        return {}

    async def close(self):
        pass


async def _catalog():
    row = validate_store_row(0, "s1", "luckin", "瑞幸(武林)", "addr", "杭州", HANGZHOU[0] + 0.001, HANGZHOU[1],
                             (), False, "", {"luckin": LUCKIN})
    store = SnapshotStore(Snapshot([LUCKIN], [LATTE], [row.record()], []))
    catalog = Catalog(store, clock=FakeClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)))
    await catalog.start()
    return catalog


@pytest.mark.parametrize("text,value", [("10杯生椰拿铁", 10), ("两杯生椰拿铁", 2), ("99杯生椰拿铁", 99)])
async def test_match_orders_the_count_that_was_said(text, value):
    out = await (await _catalog()).match_intent(text, *HANGZHOU)
    assert out.matched
    assert [(ln.item_id, ln.quantity) for ln in out.proposals[0].lines] == [(LATTE_ID, value)]


@pytest.mark.parametrize("text", ["1005杯生椰拿铁", "一百万杯生椰拿铁", "一万杯生椰拿铁"])
async def test_a_number_too_big_is_out_of_range_like_a_hundred(text):
    catalog = await _catalog()
    hundred = await catalog.match_intent("100杯生椰拿铁", *HANGZHOU)
    assert not hundred.matched and hundred.clarification
    out = await catalog.match_intent(text, *HANGZHOU)
    assert not out.matched  # not 5 cups, not 1
    assert out.clarification == hundred.clarification
    assert "最多点 99 份" in out.clarification and "At most 99" in out.clarification  # says what is wrong


@pytest.mark.parametrize("text", ["3.5杯生椰拿铁", "2.5 杯生椰拿铁", "-2杯生椰拿铁", "半杯生椰拿铁"])
async def test_a_fraction_or_a_negative_is_a_clarification_not_an_order(text):
    out = await (await _catalog()).match_intent(text, *HANGZHOU)
    assert not out.matched
    assert "整数" in out.clarification and "whole number" in out.clarification
