"""Negations: what a sentence says not to order is not ordered ("不要可乐，要一份薯条"), and
offers (要不来两杯) or refusals the menu cannot follow (不要辣) do not drop what was asked for."""
import pytest

from services.catalog.intent import build_resolver, load_demo_specs

BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
ITEM = {i.item_id: i for i in ITEMS}


def _lines(text):
    top = RESOLVER.resolve(text).candidates[0]
    return sorted((ITEM[ln.item_id].name, ln.quantity, tuple(sorted(ln.options.items()))) for ln in top.lines)


@pytest.mark.parametrize("text", ["不要可乐，要一份薯条", "一份薯条，不要可乐", "别点可乐，来份薯条", "no coke, just fries",
                                  "fries no coke", "可乐不要了，来份薯条", "可乐算了，薯条一份"])
def test_an_item_said_not_to_order_is_left_out(text):
    assert _lines(text) == [("薯条(中)", 1, ())]


@pytest.mark.parametrize("text", ["不要生椰拿铁，要厚乳拿铁", "生椰拿铁不要了，换成厚乳拿铁", "生椰拿铁不要了换成厚乳拿铁",
                                  "生椰拿铁去掉，加一杯厚乳拿铁"])
def test_a_changed_mind_orders_only_the_replacement(text):
    assert _lines(text) == [("厚乳拿铁", 1, ())]


@pytest.mark.parametrize("text", ["不要两杯生椰拿铁，要一杯美式", "两杯生椰拿铁，算了不要生椰拿铁了，来杯美式",
                                  "生椰拿铁两杯不要了，美式一杯"])
def test_the_count_of_an_item_taken_back_goes_with_it(text):
    assert _lines(text) == [("标准美式", 1, ())]


def test_the_explanation_says_what_was_left_out():
    top = RESOLVER.resolve("不要可乐，要一份薯条").candidates[0]
    assert "left out" in top.explanation and "可乐" in top.explanation


@pytest.mark.parametrize("text", ["不要可乐", "不要奶茶", "取消生椰拿铁"])
def test_only_refusals_order_nothing(text):
    reading = RESOLVER.resolve(text)
    assert reading.candidates == () and reading.clarification


@pytest.mark.parametrize("text", ["不要咖啡要茶，随便哪种", "我不喝咖啡，来杯奶茶", "not coffee, whatever tea"])
def test_a_category_said_not_to_order_leaves_the_other(text):
    reading = RESOLVER.resolve(text)
    assert reading.candidates
    for c in reading.candidates:
        assert all(ITEM[ln.item_id].category != "咖啡" for ln in c.lines)


@pytest.mark.parametrize("text,options", [
    ("生椰拿铁不要大杯", ()), ("生椰拿铁不加大", ()), ("生椰拿铁不要热的", ()), ("生椰拿铁不热", ()),
    ("生椰拿铁不要少冰，正常冰", (("temperature", "regular_ice"),)),
])
def test_an_option_said_not_to_take_is_not_chosen(text, options):
    assert _lines(text) == [("生椰拿铁", 1, options)]


def test_a_brand_said_not_to_order_from_is_not_picked_for_an_unbranded_item():
    reading = RESOLVER.resolve("拿铁，不要瑞幸的")
    assert reading.candidates == () and "瑞幸咖啡" in reading.clarification


def test_a_brand_said_not_to_order_from_leaves_the_named_one():
    assert {c.brand_id for c in RESOLVER.resolve("不要瑞幸的，喜茶随便来一杯").candidates} == {"heytea"}


@pytest.mark.parametrize("text,lines", [
    ("要不来两杯生椰拿铁", [("生椰拿铁", 2, ())]), ("要不要来杯生椰拿铁", [("生椰拿铁", 1, ())]),
    ("香辣鸡腿堡不要辣", [("香辣鸡腿堡", 1, ())]), ("薯条不要番茄酱", [("薯条(中)", 1, ())]),
    ("两杯生椰拿铁，一杯不要冰", [("生椰拿铁", 1, ()), ("生椰拿铁", 1, (("temperature", "no_ice"),))]),
    ("除了生椰拿铁还要一杯厚乳拿铁", [("厚乳拿铁", 1, ()), ("生椰拿铁", 1, ())]),
])
def test_offers_and_refusals_the_menu_cannot_follow_keep_the_order(text, lines):
    assert _lines(text) == lines


def test_taking_a_topping_out_is_reported_not_a_second_cup():
    top = RESOLVER.resolve("珍珠奶茶不要珍珠").candidates[0]
    assert [(ITEM[ln.item_id].name, ln.quantity) for ln in top.lines] == [("珍珠奶茶", 1)]
    assert "珍珠」" in top.explanation
