"""Option words: names, aliases, negations, placement, and only what the item offers."""
import pytest

from services.catalog.intent import build_resolver, load_demo_specs

RESOLVER = build_resolver(*load_demo_specs())


def _options(text):
    top = RESOLVER.resolve(text).candidates[0]
    assert len(top.lines) == 1, top.explanation
    return top.lines[0].options


@pytest.mark.parametrize("phrase,group,option", [
    ("去冰", "temperature", "no_ice"), ("不要冰", "temperature", "no_ice"), ("不加冰", "temperature", "no_ice"),
    ("no ice", "temperature", "no_ice"), ("without ice", "temperature", "no_ice"), ("不要冰的", "temperature", "no_ice"),
    ("少冰", "temperature", "less_ice"), ("less ice", "temperature", "less_ice"), ("少冰的", "temperature", "less_ice"),
    ("冰少一点", "temperature", "less_ice"), ("正常冰", "temperature", "regular_ice"), ("iced", "temperature", "regular_ice"),
    ("热的", "temperature", "hot"), ("热", "temperature", "hot"), ("hot", "temperature", "hot"),
    ("常温", "temperature", "room"), ("room temperature", "temperature", "room"),
    ("不加糖", "sugar", "none"), ("无糖", "sugar", "none"), ("不要糖", "sugar", "none"), ("no sugar", "sugar", "none"),
    ("少糖", "sugar", "less"), ("less sugar", "sugar", "less"), ("不要太甜", "sugar", "less"), ("七分糖", "sugar", "less"),
    ("半糖", "sugar", "half"), ("五分糖", "sugar", "half"), ("微糖", "sugar", "light"), ("三分糖", "sugar", "light"),
    ("标准糖", "sugar", "standard"), ("大杯", "size", "large"), ("超大杯", "size", "large"), ("large", "size", "large"),
    ("中杯", "size", "medium"), ("medium", "size", "medium"),
])
def test_option_phrases_choose_the_option_before_or_after_the_item(phrase, group, option):
    assert _options(f"多肉葡萄 {phrase}") == {group: option}
    assert _options(f"{phrase} 多肉葡萄") == {group: option}


def test_options_not_said_are_not_chosen():
    assert _options("多肉葡萄") == {}


def test_several_options_in_any_order_all_apply():
    assert _options("大杯 多肉葡萄 去冰 半糖") == {"size": "large", "temperature": "no_ice", "sugar": "half"}


def test_a_later_option_of_the_same_group_wins():
    assert _options("多肉葡萄 少冰 算了还是去冰") == {"temperature": "no_ice"}


def test_an_option_the_item_does_not_offer_is_ignored_and_explained():
    top = RESOLVER.resolve("香辣鸡腿堡少冰").candidates[0]
    assert top.lines[0].options == {}
    assert "少冰" in top.explanation


def test_kfc_cola_takes_size_but_not_sugar_or_ice():
    assert _options("肯德基 大杯可乐 去冰 少糖") == {"size": "large"}


def test_ice_in_an_item_name_is_not_an_option():
    assert _options("冰鲜柠檬水") == {}
    assert _options("烤黑糖波波牛乳") == {}


def test_options_go_to_the_item_of_their_clause():
    top = RESOLVER.resolve("生椰拿铁少冰，热的美式").candidates[0]
    got = {ln.item_id: ln.options for ln in top.lines}
    assert got == {"luckin-coconut-latte": {"temperature": "less_ice"}, "luckin-americano": {"temperature": "hot"}}


def test_an_option_after_all_items_with_all_applies_to_every_line():
    top = RESOLVER.resolve("多肉葡萄和芝芝莓莓都要大杯").candidates[0]
    assert {ln.item_id: ln.options["size"] for ln in top.lines} == {
        "heytea-very-grape": "large", "heytea-cheezo-strawberry": "large"}


def test_split_options_make_one_line_each():
    top = RESOLVER.resolve("珍珠奶茶两杯，一杯少糖一杯半糖").candidates[0]
    assert sorted((ln.quantity, ln.options["sugar"]) for ln in top.lines) == [(1, "half"), (1, "less")]


@pytest.mark.parametrize("text, first, second", [
    ("来杯冰的热拿铁", "正常冰", "热"), ("冰的热的拿铁", "正常冰", "热"), ("热拿铁去冰", "热", "去冰"),
    ("一杯生椰拿铁少冰热的", "少冰", "热"), ("an iced hot latte", "正常冰", "热"),
])
def test_two_temperatures_for_one_line_are_asked_about_not_guessed(text, first, second):
    reading = RESOLVER.resolve(text)
    assert reading.candidates == ()
    assert f"{first}还是{second}" in reading.clarification and f"{first} or {second}" in reading.clarification


@pytest.mark.parametrize("text, want", [
    # 冰 right before the item asks for it iced (said, not left to the menu's default, which at
    # another shop may be hot); elsewhere it is part of names (冰鲜柠檬水, 蜜雪冰城).
    ("来杯冰酱香拿铁", [("luckin-moutai-latte", {"temperature": "regular_ice"})]),
    ("大冰美式", [("luckin-americano", {"size": "large", "temperature": "regular_ice"})]),
    ("冰大美式", [("luckin-americano", {"temperature": "regular_ice", "size": "large"})]),
    ("冰鲜柠檬水", [("mixue-lemonade", {})]),
    ("蜜雪冰城柠檬水", [("mixue-lemonade", {})]),
    ("热的酱香拿铁", [("luckin-moutai-latte", {"temperature": "hot"})]),
    ("一杯冰美式一杯热酱香拿铁", [("luckin-americano", {"temperature": "regular_ice"}), ("luckin-moutai-latte", {"temperature": "hot"})]),
    ("两杯酱香拿铁，一杯热的一杯冰的", [("luckin-moutai-latte", {"temperature": "hot"}),
                                  ("luckin-moutai-latte", {"temperature": "regular_ice"})]),
])
def test_one_temperature_a_line_is_taken_as_said(text, want):
    top = RESOLVER.resolve(text).candidates[0]
    assert [(ln.item_id, ln.options) for ln in top.lines] == want


@pytest.mark.parametrize("text, option", [
    ("热的酱香拿铁，不对，冰的", "regular_ice"), ("生椰拿铁热的，算了还是少冰", "less_ice"), ("热酱香拿铁，改成去冰", "no_ice"),
    ("a hot maotai latte, actually iced", "regular_ice"),
])
def test_an_option_said_as_a_correction_replaces_the_one_before(text, option):
    top = RESOLVER.resolve(text).candidates[0]
    assert [ln.options for ln in top.lines] == [{"temperature": option}]


@pytest.mark.parametrize("text, group, option", [
    ("生椰拿铁冰的少冰", "temperature", "less_ice"), ("要冰的生椰拿铁，去冰", "temperature", "no_ice"),
    ("an iced coconut latte with no ice", "temperature", "no_ice"), ("珍珠奶茶别太甜，半糖", "sugar", "half"),
])
def test_a_word_for_the_direction_agrees_with_the_level_said_beside_it(text, group, option):
    top = RESOLVER.resolve(text).candidates[0]
    assert [ln.options for ln in top.lines] == [{group: option}]


def test_two_sizes_for_one_line_are_asked_about_too():
    reading = RESOLVER.resolve("大杯中杯生椰拿铁")
    assert reading.candidates == () and "大杯还是中杯" in reading.clarification
