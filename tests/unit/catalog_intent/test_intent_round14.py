"""Round 14 of held-out sentences (everyday orders; items described by look or taste; counts spread over
people; options said again for one line; questions, complaints and cancellations; typos) and the rules its
misses showed were wrong or missing, and: a bare word that names several items (拿铁) is asked about."""
import pytest

from .rounds import ITEM, RESOLVER, KNOWN_MISSES, asks as _asks, said as _said, misses, round_cases

ROUND14 = round_cases(14)

# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text, lines", [
    ("小蓝杯家椰子味的那款拿铁，少冰", [("生椰拿铁", 1, {"temperature": "少冰"})]),
    ("瑞幸喝起来像丝绸一样顺滑的那个拿铁", [("丝绒拿铁", 1, {})]),
    ("喜茶那个桃子李子混在一起的果茶，少糖", [("多肉桃李", 1, {"sugar": "少糖"})]),
    ("肯德基不辣的那个烤鸡腿堡来一个", [("新奥尔良烤鸡腿堡", 1, {})]),
    ("来个汉堡，香辣的", [("香辣鸡腿堡", 1, {})]),
])
def test_a_thing_described_by_words_of_one_items_name_is_that_item(text, lines):
    # The standard latte, the first fruit tea, or a second burger of the kind was ordered.
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text, lines", [
    ("两个小朋友，一人一个蛋挞一杯可乐", [("百事可乐(中)", 2, {}), ("葡式蛋挞", 2, {})]),
    ("三个孩子每人一个甜筒", [("新鲜冰淇淋", 3, {})]),
])
def test_people_counted_by_who_they_are_multiply_one_each(text, lines):
    # 两个小朋友 was read as two of the thing, and 一人一个 multiplied nobody: one tart, one ice cream.
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text, lines", [
    ("生椰拿铁，和昨天一样，少冰", [("生椰拿铁", 1, {"temperature": "少冰"})]),
    ("给孩子来个冰淇淋，再来一杯草莓奶昔，奶昔不要冰",
     [("新鲜冰淇淋", 1, {}), ("草莓摇摇奶昔", 1, {"temperature": "去冰"})]),
])
def test_an_option_said_again_of_a_line_is_no_second_cup(text, lines):
    # 和昨天一样 was one more cup, and 奶昔不要冰 a second shake: each added a cup at the default options.
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text", [
    "請問蛋撻一個多少錢？", "上次点的珍珠奶茶甜得发齁，你们能不能注意点", "my coffee was cold when it arrived",
    "给我来杯冰美式……算了不喝了",
])
def test_a_question_a_complaint_or_a_drink_taken_back_orders_nothing(text):
    assert _asks(text)


def test_ice_typed_in_pinyin_is_the_ice_option():
    assert _said("柠檬水一杯 去bing") == [("冰鲜柠檬水", 1, {"temperature": "去冰"})]


def test_a_kind_someone_cannot_have_leaves_the_item_ordered_for_them():
    # 不能喝咖啡 was read as an order of coffee beside the tea: two brands, a question.
    assert _said("小孩不能喝咖啡，给他来杯热的黑糖波波牛乳，微糖") == [
        ("烤黑糖波波牛乳", 1, {"sugar": "微糖", "temperature": "热"})]


# --- a bare word that names several items is asked about, naming them ------------------------------
# A kind (来个汉堡, 给我来杯茶, 来杯奶茶) or a brand alone is still suggested from: the catalog's labelled
# sentences (tests/data/nl_dev_set.jsonl, "来杯奶茶", "a coffee please") take any card-covered item of the kind.

@pytest.mark.parametrize("text, names", [
    ("来杯拿铁", ("生椰拿铁", "厚乳拿铁", "丝绒拿铁", "酱香拿铁")),
    ("鸡腿堡来一个", ("香辣鸡腿堡", "新奥尔良烤鸡腿堡")),
    ("草莓的来一个", ("丹东草莓500g", "芝芝莓莓")),
])
def test_a_bare_word_of_several_items_is_asked_about_naming_the_choices(text, names):
    # The standard or first item was ordered: a drink nobody chose, on their card.
    reading = RESOLVER.resolve(text)
    assert reading.candidates == () and all(n in reading.clarification for n in names)


@pytest.mark.parametrize("text", ["随便来杯拿铁", "喜茶随便来一杯", "喜茶有什么推荐的来一杯", "十块钱以下的奶茶来一杯",
                                  "来杯免单卡能全包的咖啡"])
def test_a_choice_handed_over_is_still_suggested(text):
    assert RESOLVER.resolve(text).candidates


@pytest.mark.parametrize("text, lines", [("来杯奶茶", [("珍珠奶茶", 1, {})]), ("炸鸡两块", [("吮指原味鸡", 2, {})])])
def test_a_kind_with_one_item_at_its_shop_is_ordered(text, lines):
    assert _said(text) == lines


def test_anything_under_a_budget_at_a_brand_is_suggested():
    reading = RESOLVER.resolve("肯德基随便来一样东西，25块以内")
    assert reading.candidates and all(ITEM[c.lines[0].item_id].brand_id == "kfc"
                                      and ITEM[c.lines[0].item_id].price_fen <= 2500 for c in reading.candidates)


# Left as they are (rounds.KNOWN_MISSES): 美式里兑了橙汁的 (美式 is 标准美式's own name: a description does not
# overrule a name), 中薯 (no short name for the fries: the cola alone was ordered), and the cheap refusals:
# 芒果加西柚加西米 and 装满百香果籽 (descriptions made of other words, read as things no shop here sells), 辣的那款
# 鸡腿汉堡 (a kind after unknown words is another shop's product, round 5's rule), 蛋塔 (two-character sound-alikes
# only in traditional spelling, as rounds 6, 10 and 12 left it).
# 来杯奶茶 keeps its order label: 奶茶 is one item at any one shop here, not a word of several.
def test_round_fourteen_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 119 of 146 (21 wrong orders, 6 refusals).
    assert len(ROUND14) >= 145
    assert sum(1 for c in ROUND14 if c["expect"].get("clarify")) >= 40
    assert set(misses(ROUND14)) <= KNOWN_MISSES[14], misses(ROUND14)
