"""A take-back said as a clause of its own, after a comma ("一杯生椰拿铁，不要了"): the user
changed their mind, and the sentence orders nothing. It was read as an order of the latte at
0.97 confidence, which OrderByText with confirm places (and pays with the user's card) at once."""
import pytest

from services.catalog.intent import build_resolver, load_demo_specs

BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
ITEM = {i.item_id: i for i in ITEMS}


def _lines(text):
    top = RESOLVER.resolve(text).candidates[0]
    return sorted((ITEM[ln.item_id].name, ln.quantity, tuple(sorted(ln.options.items()))) for ln in top.lines)


@pytest.mark.parametrize("text", [
    "来一杯珍珠奶茶，不要了", "一杯生椰拿铁，算了", "一杯生椰拿铁，算了吧", "来杯生椰拿铁，算了不要了",
    "一杯生椰拿铁，还是不要了吧", "一杯生椰拿铁，取消", "两杯生椰拿铁、不要了。",
])
def test_an_order_taken_back_in_a_clause_of_its_own_orders_nothing(text):
    reading = RESOLVER.resolve(text)
    assert reading.candidates == () and reading.clarification


@pytest.mark.parametrize("text,lines", [
    ("一份薯条，不要了，来杯可乐", [("百事可乐(中)", 1, ())]),
    ("生椰拿铁，算了，换成厚乳拿铁", [("厚乳拿铁", 1, ())]),
    # Refusals the menu cannot follow, or that name what they refuse, keep the order as before.
    ("香辣鸡腿堡，不要辣", [("香辣鸡腿堡", 1, ())]),
    ("一份薯条，不要可乐", [("薯条(中)", 1, ())]),
    ("两杯生椰拿铁，一杯不要冰", [("生椰拿铁", 1, ()), ("生椰拿铁", 1, (("temperature", "no_ice"),))]),
])
def test_a_take_back_clause_drops_only_what_came_before_it(text, lines):
    assert _lines(text) == lines


# --- "再来一杯": one more, not the same one again ------------------------------------------------


@pytest.mark.parametrize("text,lines", [
    # 再来 / 再加 (one more) adds to what came before: "再来两杯" already made three, "再来一杯"
    # made one, read as the two-cup split "两杯，一杯少冰" is.
    ("来杯生椰拿铁，再来一杯", [("生椰拿铁", 2, ())]),
    ("生椰拿铁一杯，再加一杯", [("生椰拿铁", 2, ())]),
    ("一杯生椰拿铁再来一杯少冰的", [("生椰拿铁", 1, ()), ("生椰拿铁", 1, (("temperature", "less_ice"),))]),
    ("生椰拿铁来一杯，再来两杯", [("生椰拿铁", 3, ())]),
    # ... while a later count without 再 still splits the first one.
    ("两杯生椰拿铁，一杯少冰", [("生椰拿铁", 1, ()), ("生椰拿铁", 1, (("temperature", "less_ice"),))]),
    ("两杯生椰拿铁，一杯少冰，再来一杯", [("生椰拿铁", 1, (("temperature", "less_ice"),)), ("生椰拿铁", 2, ())]),
])
def test_one_more_adds_a_cup(text, lines):
    assert _lines(text) == lines
