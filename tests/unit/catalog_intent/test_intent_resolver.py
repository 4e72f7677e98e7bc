"""Resolver behaviour beyond single sentences: the API contract, robustness, clarifications."""
import dataclasses

import pytest

from services.catalog.intent import (BrandSpec, GroupSpec, ItemSpec, OptionSpec, Reading, build_resolver,
                                     load_demo_specs)
from services.catalog.model import MAX_TEXT_CHARS

BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
ITEM = {i.item_id: i for i in ITEMS}
BRAND = {b.brand_id: b for b in BRANDS}


def test_demo_menu_has_the_five_brands_of_the_story_with_their_prices():
    assert {b.name: b.category for b in BRANDS} == {
        "蜜雪冰城": "茶饮", "瑞幸咖啡": "咖啡", "喜茶": "茶饮", "肯德基": "快餐", "盒马鲜生": "生鲜年货"}
    prices = {i.name: i.price_fen for i in ITEMS}
    assert prices["生椰拿铁"] == 2900 and prices["新鲜冰淇淋"] == 200 and prices["坚果年货礼盒"] == 9900
    assert len(ITEMS) == 29


def test_demo_menu_ids_are_ascii_and_unique():
    ids = [i.item_id for i in ITEMS] + [b.brand_id for b in BRANDS]
    assert len(ids) == len(set(ids)) and all(i.isascii() for i in ids)
    for item in ITEMS:
        for g in item.groups:
            assert g.default_option_id in {o.option_id for o in g.options}
            assert all(o.option_id.isascii() for o in g.options)


def test_drinks_take_size_sugar_temperature_kfc_drinks_size_food_none():
    groups = {i.name: [g.group_id for g in i.groups] for i in ITEMS}
    assert groups["珍珠奶茶"] == ["size", "sugar", "temperature"]
    assert groups["标准美式"] == ["size", "sugar", "temperature"]
    assert groups["百事可乐(中)"] == ["size"]
    assert groups["香辣鸡腿堡"] == [] and groups["鲜鸡蛋10枚"] == [] and groups["新鲜冰淇淋"] == []


def test_every_item_has_an_english_alias():
    for item in ITEMS:
        assert any(a.isascii() and a.strip() for a in item.aliases), item.name


@pytest.mark.parametrize("text", [
    "🙂🙂🙂", "x" * 10_000, "生椰拿铁" * 2_500, "\x00\x01\x02\x1b[31m", "   ", "", "😀生椰拿铁😀", "\ud800",
    "DROP TABLE stores;--", "１２３４５", "٣ كوب", "ﾗﾃ", "\u200b\u200b", "两杯" * 500, "and and and", "的的的的",
])
def test_no_string_makes_it_raise(text):
    reading = RESOLVER.resolve(text)
    assert isinstance(reading, Reading)
    assert reading.candidates or reading.clarification


def test_empty_text_gets_no_candidates():
    assert RESOLVER.resolve("").candidates == ()


def test_nonsense_gets_a_clarification_naming_the_brands_we_carry():
    reading = RESOLVER.resolve("今天天气怎么样")
    assert reading.candidates == ()
    for b in BRANDS:
        assert b.name in reading.clarification
    assert "Sorry" in reading.clarification


@pytest.mark.parametrize("text,brand", [
    ("星巴克拿铁一杯", "星巴克"), ("a starbucks latte", "星巴克"), ("麦当劳的薯条", "麦当劳"), ("costa americano", "Costa"),
    ("麥當勞的薯條", "麦当劳"),
])
def test_a_brand_we_do_not_carry_is_named_in_the_clarification(text, brand):
    reading = RESOLVER.resolve(text)
    assert reading.candidates == ()
    assert reading.mentioned_unknown_brand == brand
    assert brand in reading.clarification and "瑞幸咖啡" in reading.clarification


def test_an_item_of_another_brand_than_the_one_named_asks_instead_of_guessing():
    reading = RESOLVER.resolve("喜茶的生椰拿铁")
    assert reading.candidates == ()
    assert "生椰拿铁" in reading.clarification and "瑞幸咖啡" in reading.clarification


def test_items_from_two_brands_ask_which_brand_first():
    reading = RESOLVER.resolve("生椰拿铁和多肉葡萄")
    assert reading.candidates == ()
    assert "瑞幸咖啡" in reading.clarification and "喜茶" in reading.clarification


def test_items_of_two_named_brands_ask_which_brand_first_not_what_each_lacks():
    reading = RESOLVER.resolve("蜜雪冰城的柠檬水和喜茶的多肉葡萄")
    assert reading.candidates == ()
    assert "一单只能来自一家" in reading.clarification and "没有" not in reading.clarification


def test_a_named_brand_is_told_only_what_it_lacks():
    reading = RESOLVER.resolve("瑞幸的多肉葡萄和生椰拿铁")
    assert reading.candidates == ()
    assert "瑞幸咖啡没有：多肉葡萄（喜茶）。" in reading.clarification and "生椰拿铁" not in reading.clarification


def test_the_end_of_a_long_sentence_the_service_accepts_is_read():
    text = "今天好冷，" * 96 + "来两杯生椰拿铁，一杯少冰"
    assert len(text) <= MAX_TEXT_CHARS
    top = RESOLVER.resolve(text).candidates[0]
    assert sorted((ln.item_id, ln.quantity, tuple(ln.options.items())) for ln in top.lines) == [
        ("luckin-coconut-latte", 1, ()), ("luckin-coconut-latte", 1, (("temperature", "less_ice"),))]


def test_a_named_brand_with_an_unknown_item_asks_instead_of_guessing():
    reading = RESOLVER.resolve("帮我点个KFC的全家桶")
    assert reading.candidates == () and "全家桶" in reading.clarification


def test_a_category_gives_several_picks_the_card_covers_across_brands():
    reading = RESOLVER.resolve("来两杯奶茶")
    assert len(reading.candidates) >= 2
    assert {c.brand_id for c in reading.candidates} == {"mixue", "heytea"}
    for c in reading.candidates:
        assert c.by_category
        assert [ln.quantity for ln in c.lines] == [2]
        assert all(ITEM[ln.item_id].category == "奶茶" and ITEM[ln.item_id].price_fen <= 2500 for ln in c.lines)


def test_a_category_pick_respects_the_card_face_value():
    reading = RESOLVER.resolve("whatever coffee", card_face_value_fen=2000)
    assert [ITEM[ln.item_id].name for ln in reading.candidates[0].lines] == ["酱香拿铁"]


def test_a_brand_left_to_choose_from_suggests_its_items_the_card_covers():
    reading = RESOLVER.resolve("瑞幸随便来一杯")
    assert reading.candidates and all(c.brand_id == "luckin" and c.by_category for c in reading.candidates)
    assert all(ITEM[c.lines[0].item_id].price_fen <= 2500 for c in reading.candidates)


def test_an_ambiguous_name_prefers_the_standard_item_with_lower_confidence_and_offers_the_others():
    plain = RESOLVER.resolve("来杯美式").candidates
    assert ITEM[plain[0].lines[0].item_id].name == "标准美式"
    latte = RESOLVER.resolve("随便来杯拿铁").candidates
    assert len(latte) >= 3 and latte[0].confidence < plain[0].confidence
    assert {ITEM[c.lines[0].item_id].name for c in latte} >= {"酱香拿铁", "生椰拿铁"}


@pytest.mark.parametrize("text,item", [
    ("生耶拿铁", "生椰拿铁"), ("芝芝梅梅", "芝芝莓莓"), ("多肉葡桃", "多肉葡萄"), ("amercano", "标准美式"),
    ("cocunut latte", "生椰拿铁"), ("zingr burger", "香辣鸡腿堡"), ("duo rou pu tao", "多肉葡萄"),
    ("椰子拿铁", "生椰拿铁"), ("奥尔良烤鸡", "新奥尔良烤鸡腿堡"), ("智利车厘", "智利车厘子1kg"),
    ("來一杯生椰拿鐵", "生椰拿铁"), ("檸檬水", "冰鲜柠檬水"), ("pepsy", "百事可乐(中)"),
    ("可樂", "百事可乐(中)"), ("薯條兩份", "薯条(中)"), ("蛋撻", "葡式蛋挞"), ("雞蛋", "鲜鸡蛋10枚"),
])
def test_typos_homophones_and_partial_names_find_the_item_less_confidently(text, item):
    top = RESOLVER.resolve(text).candidates[0]
    assert [ITEM[ln.item_id].name for ln in top.lines] == [item]
    assert top.confidence < 0.97


@pytest.mark.parametrize("text,item", [
    ("草莓奶昔", "草莓摇摇奶昔"), ("黑糖波波", "烤黑糖波波牛乳"), ("蜜雪冰诚的柠檬水", "冰鲜柠檬水"), ("zinger", "香辣鸡腿堡"),
    ("pepsi", "百事可乐(中)"), ("薯条", "薯条(中)"), ("丹东草莓", "丹东草莓500g"), ("柠檬水", "冰鲜柠檬水"),
])
def test_aliases_and_short_names_find_the_item(text, item):
    top = RESOLVER.resolve(text).candidates[0]
    assert [ITEM[ln.item_id].name for ln in top.lines] == [item]


@pytest.mark.parametrize("text", ["克乐", "刻乐", "舒条", "蛋塔子"])
def test_two_character_homophones_in_simplified_spelling_are_not_items(text):
    assert RESOLVER.resolve(text).candidates == ()


def test_an_exact_name_is_more_confident_than_a_homophone():
    exact = RESOLVER.resolve("生椰拿铁").candidates[0].confidence
    sound = RESOLVER.resolve("生耶拿铁").candidates[0].confidence
    assert exact > sound


def test_it_works_on_any_catalog_not_only_the_demo_one():
    size = GroupSpec("size", "杯型", "m", (OptionSpec("size", "m", "中杯"), OptionSpec("size", "l", "大杯", ("large",))))
    brands = [BrandSpec("b1", "茶颜悦色", ("sexy tea",), "茶饮")]
    items = [ItemSpec("i1", "b1", "幽兰拿铁", ("orchid latte",), "奶茶", 1800, (size,)),
             ItemSpec("i2", "b1", "声声乌龙", ("oolong",), "果茶", 1700, (size,))]
    resolver = build_resolver(brands, items)
    top = resolver.resolve("两杯幽兰拿铁 大杯").candidates[0]
    assert top.brand_id == "b1" and top.lines[0].item_id == "i1" and top.lines[0].quantity == 2
    assert top.lines[0].options == {"size": "l"}
    # 茶颜悦色 is carried here, so it is a brand, not an unknown one.
    assert resolver.resolve("茶颜悦色 oolong").candidates[0].lines[0].item_id == "i2"


def test_readings_are_plain_frozen_data():
    top = RESOLVER.resolve("生椰拿铁").candidates[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        top.brand_id = "x"  # type: ignore[misc]
