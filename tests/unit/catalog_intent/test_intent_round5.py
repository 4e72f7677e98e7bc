"""Round 5 of held-out sentences (orders for several people, budgets, prices said in the sentence,
pasted group orders, Cantonese and traditional spellings) and the rules its misses showed were wrong
or missing."""
import pytest

from .rounds import ITEM, KNOWN_MISSES, RESOLVER, asks as _asks, lines as _lines, misses, round_cases

ROUND5 = round_cases(5)


# --- prices and budgets are money, not counts ---------------------------------------------------

@pytest.mark.parametrize("text,lines", [
    ("4块的柠檬水来两杯", [("冰鲜柠檬水", 2, ())]),
    ("9块的草莓摇摇奶昔一杯", [("草莓摇摇奶昔", 1, ())]),
    ("19块的多肉桃李，大杯", [("多肉桃李", 1, (("size", "large"),))]),
    ("生椰拿铁(¥29)x2", [("生椰拿铁", 2, ())]),
    ("厚乳拿铁 ￥29.00 ×1", [("厚乳拿铁", 1, ())]),
    ("肯德基：香辣鸡腿堡（21.5元）×2", [("香辣鸡腿堡", 2, ())]),
    ("生椰拿铁29块一杯，来两杯", [("生椰拿铁", 2, ())]),
    ("9块9的柠檬水", [("冰鲜柠檬水", 1, ())]),
    ("生椰拿铁29块太贵了，来杯酱香拿铁吧", [("酱香拿铁", 1, ())]),
])
def test_a_price_said_with_the_item_is_not_its_count(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text,lines", [
    ("原味鸡两块", [("吮指原味鸡", 2, ())]), ("两块原味鸡", [("吮指原味鸡", 2, ())]),
    ("原味鸡3块，蛋挞2个", [("吮指原味鸡", 3, ()), ("葡式蛋挞", 2, ())]),
])
def test_pieces_of_chicken_counted_in_kuai_are_still_counts(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text,most", [
    ("不超过22块的汉堡来一个", 2200), ("30块以内的咖啡来一杯", 3000), ("something from heytea under 20", 2000),
    ("人均15以内，三个人每人一杯奶茶", 1500), ("预算20元，来杯奶茶", 2000),
])
def test_a_budget_is_no_count_and_caps_what_is_offered(text, most):
    reading = RESOLVER.resolve(text)
    assert reading.candidates
    for c in reading.candidates:
        assert all(ITEM[ln.item_id].price_fen <= most for ln in c.lines), c.explanation
    top = reading.candidates[0]
    assert sum(ln.quantity for ln in top.lines) == (3 if "三个人" in text else 1), top.explanation


@pytest.mark.parametrize("text", ["预算不超过10块的咖啡", "5块钱以内的奶茶", "coffee under 10 yuan"])
def test_a_budget_nothing_of_the_kind_fits_is_asked_about(text):
    assert _asks(text)


# --- pasted lists -------------------------------------------------------------------------------

def test_numbers_that_start_the_lines_of_a_pasted_list_are_not_counts():
    text = "KFC接龙\n1 香辣鸡腿堡+可乐\n2 新奥尔良烤鸡腿堡\n3 原味鸡2块\n4 蛋挞x2\n5 薯条\n6 香辣鸡腿堡\n7 可乐 大杯\n8 蛋挞"
    assert _lines(text) == [("吮指原味鸡", 2, ()), ("新奥尔良烤鸡腿堡", 1, ()), ("百事可乐(中)", 1, ()),
                            ("百事可乐(中)", 1, (("size", "large"),)), ("葡式蛋挞", 3, ()), ("薯条(中)", 1, ()),
                            ("香辣鸡腿堡", 2, ())]


def test_circled_numbers_of_a_pasted_list_are_not_counts():
    text = "喜茶拼单🧋\n①多肉葡萄 少冰\n②芝芝莓莓 去冰\n③多肉葡萄 少冰\n④多肉桃李 大杯"
    assert _lines(text) == [("多肉桃李", 1, (("size", "large"),)), ("多肉葡萄", 2, (("temperature", "less_ice"),)),
                            ("芝芝莓莓", 1, (("temperature", "no_ice"),))]


def test_a_count_on_a_line_of_its_own_is_still_the_count_of_the_item_on_it():
    assert _lines("生椰拿铁\n2杯") == [("生椰拿铁", 2, ())]


# --- counts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,lines", [
    ("两个蛋挞，再加一个，一共三个", [("葡式蛋挞", 3, ())]),
    ("生椰拿铁两杯，总共四杯", [("生椰拿铁", 4, ())]),
])
def test_a_count_said_as_the_total_replaces_the_counts_before(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text,lines", [
    ("3公里内的盒马 买10枚鸡蛋", [("鲜鸡蛋10枚", 1, ())]), ("500米内的盒马 买鸡蛋", [("鲜鸡蛋10枚", 1, ())]),
    ("十枚鸡蛋来两盒", [("鲜鸡蛋10枚", 2, ())]),
    ("鸡蛋10枚", [("鲜鸡蛋10枚", 1, ())]),
    ("买20枚鸡蛋", [("鲜鸡蛋10枚", 2, ())]),
])
def test_a_pack_size_said_before_the_item_is_part_of_its_name_not_a_count(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text,lines", [
    ("我们俩每人一杯丝绒拿铁，再加一杯美式", [("丝绒拿铁", 2, ()), ("标准美式", 1, ())]),
    ("5个人每人一杯生椰拿铁，再加一杯美式", [("标准美式", 1, ()), ("生椰拿铁", 5, ())]),
    ("一人一个原味鸡，我们五个", [("吮指原味鸡", 5, ())]),
    ("我们仨一人一杯珍奶", [("珍珠奶茶", 3, ())]),
])
def test_a_group_said_as_we_two_or_we_five_is_the_number_of_people(text, lines):
    assert _lines(text) == lines


# --- negations and corrections ------------------------------------------------------------------

@pytest.mark.parametrize("text", ["我不想喝咖啡", "今天不想吃汉堡"])
def test_not_wanting_a_kind_of_thing_orders_none_of_it(text):
    assert _asks(text)


def test_a_correction_before_an_option_glued_to_the_item_corrects_the_item():
    assert _lines("要热的美式，啊说错了，冰美式") == [("标准美式", 1, (("temperature", "regular_ice"),))]


# --- spellings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,lines", [
    ("喜茶芝芝莓莓一杯，熱的", [("芝芝莓莓", 1, (("temperature", "hot"),))]),
    ("無糖綠茶一杯去冰", [("纯绿妍茶", 1, (("sugar", "none"), ("temperature", "no_ice")))]),
    ("柠檬茶走冰走甜", [("冰鲜柠檬水", 1, (("sugar", "none"), ("temperature", "no_ice")))]),
    ("麻烦来一杯厚乳拿铁，加热，七分甜", [("厚乳拿铁", 1, (("sugar", "less"), ("temperature", "hot")))]),
])
def test_options_in_traditional_characters_cantonese_and_sweetness_levels_are_understood(text, lines):
    assert _lines(text) == lines


# --- things no brand sells ----------------------------------------------------------------------

@pytest.mark.parametrize("text", ["order me a matcha latte", "an oat latte please"])
def test_another_word_before_a_known_head_noun_is_another_drink_not_a_typo(text):
    assert _asks(text)


@pytest.mark.parametrize("text", ["芋泥波波奶茶", "港式奶茶一杯", "挂耳咖啡来两包", "草莓蛋糕一个", "葡萄干一袋"])
def test_a_kind_of_thing_named_by_words_we_do_not_know_is_asked_about(text):
    assert _asks(text)


@pytest.mark.parametrize("text,lines", [("便宜奶茶来一杯", [("珍珠奶茶", 1, ())]), ("草莓两盒", [("丹东草莓500g", 2, ())]),
                                        ("草莓味的奶昔", [("草莓摇摇奶昔", 1, ())])])
def test_known_words_around_a_kind_or_an_item_still_order_it(text, lines):
    assert _lines(text) == lines


def test_the_card_said_with_a_brand_suggests_what_the_card_covers():
    reading = RESOLVER.resolve("盒马买点免单卡能全包的")
    assert reading.candidates and reading.candidates[0].by_category
    assert all(ITEM[ln.item_id].price_fen <= 2500 for c in reading.candidates for ln in c.lines)


# --- the held-out round -------------------------------------------------------------------------

# Left as they are (rounds.KNOWN_MISSES) (see the round's report): 一点点 is a tea shop we do not carry but also "a little", said of ice and sugar; 我和我老婆各 counts
# people without a number.

def test_round_five_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 95 of 125 (28 wrong orders, 2 refusals).
    assert len(ROUND5) >= 120
    assert set(misses(ROUND5)) <= KNOWN_MISSES[5], misses(ROUND5)
