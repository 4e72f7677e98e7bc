"""Round 6 of held-out sentences (menu questions mixed with orders, conditional orders, later
pickup, apologies, the card and coupons, addresses, summaries pasted from other apps, children
and elders, Cantonese, several people, budgets) and the rules its misses showed were wrong or
missing."""
import pytest

from .rounds import ITEM, KNOWN_MISSES, RESOLVER, asks as _asks, lines as _lines, misses, round_cases

ROUND6 = round_cases(6)


# --- rules the round's misses showed wrong or missing ---------------------------------------------

def test_keycap_numbers_that_start_the_lines_of_a_pasted_list_are_not_counts():
    text = "1️⃣ 生椰拿铁\n2️⃣ 厚乳拿铁 热\n3️⃣ 生椰拿铁 x2"
    assert _lines(text) == [("厚乳拿铁", 1, (("temperature", "hot"),)), ("生椰拿铁", 3, ())]


@pytest.mark.parametrize("text, lines", [
    ("来一杯29的生椰拿铁", [("生椰拿铁", 1, ())]),
    ("两个8的蛋挞", [("葡式蛋挞", 2, ())]),
])
def test_a_bare_number_said_with_de_before_an_item_is_its_price_not_a_count(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("薯条多少钱一份？来两份", [("薯条(中)", 2, ())]),
    ("可乐几块钱一杯，要三杯", [("百事可乐(中)", 3, ())]),
])
def test_asking_what_one_costs_is_no_count(text, lines):
    assert _lines(text) == lines


def test_a_family_counted_in_kou_is_a_number_of_people():
    assert _lines("我们家五口人，每人一个蛋挞") == [("葡式蛋挞", 5, ())]


@pytest.mark.parametrize("text, lines", [
    ("我们三个人，每人一杯柠檬水，再每人一个甜筒", [("冰鲜柠檬水", 3, ()), ("新鲜冰淇淋", 3, ())]),
    # Without 每人 again, what is added is one more for the table (as before).
    ("我们三个人，每人一杯柠檬水，再加一个甜筒", [("冰鲜柠檬水", 3, ()), ("新鲜冰淇淋", 1, ())]),
])
def test_each_said_again_after_one_more_is_still_per_person(text, lines):
    assert _lines(text) == lines


def test_the_speakers_counted_then_ge_is_one_each():
    assert _lines("我们俩各要一杯厚乳拿铁") == [("厚乳拿铁", 2, ())]


@pytest.mark.parametrize("text, lines", [
    ("不是生椰拿铁，是厚乳拿铁", [("厚乳拿铁", 1, ())]),
    ("美式要半糖，不是全糖", [("标准美式", 1, (("sugar", "half"),))]),
    ("是不是有生椰拿铁？来一杯", [("生椰拿铁", 1, ())]),
])
def test_not_this_but_that_orders_only_that(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("来杯多肉葡萄，没有的话就芝芝莓莓", [("多肉葡萄", 1, ())]),
    ("要大杯的美式，没有大杯就中杯", [("标准美式", 1, (("size", "large"),))]),
    ("两个香辣鸡腿堡，卖完了就换两个奥尔良的", [("香辣鸡腿堡", 2, ())]),
])
def test_what_to_take_if_the_first_is_missing_is_not_ordered_too(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("奥尔良的汉堡来一个", [("新奥尔良烤鸡腿堡", 1, ())]),
    ("百事的可乐两杯", [("百事可乐(中)", 2, ())]),
    ("我要草莓的那个奶昔", [("草莓摇摇奶昔", 1, ())]),
])
def test_an_item_then_de_then_its_kind_or_another_of_its_names_is_one_thing(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("来杯美式，橙C的", [("橙C美式", 1, ())]),
    ("两杯拿铁，厚乳的", [("厚乳拿铁", 2, ())]),
    # A different item said so is another line.
    ("一杯生椰拿铁，厚乳的也来一杯", [("厚乳拿铁", 1, ()), ("生椰拿铁", 1, ())]),
])
def test_a_later_uncounted_x_de_that_narrows_the_thing_said_before_is_that_thing(text, lines):
    assert _lines(text) == lines


def test_one_of_several_changed_to_another_item_keeps_the_rest():
    assert _lines("三杯生椰拿铁，其中一杯换成厚乳") == [("厚乳拿铁", 1, ()), ("生椰拿铁", 2, ())]


def test_cantonese_ge_is_de():
    assert _lines("熱嘅生椰拿鐵") == [("生椰拿铁", 1, (("temperature", "hot"),))]


def test_bie_fang_tang_is_no_sugar():
    assert _lines("柠檬水别放糖") == [("冰鲜柠檬水", 1, (("sugar", "none"),))]


@pytest.mark.parametrize("text", ["可口可乐两杯", "a coca cola please"])
def test_a_cola_of_a_brand_we_do_not_carry_is_asked_about(text):
    assert _asks(text)


def test_whatever_the_card_can_pay_for_with_a_brand_suggests_from_it():
    reading = RESOLVER.resolve("能免的都行，来杯瑞幸")
    assert reading.candidates and reading.candidates[0].by_category
    assert all(ITEM[ln.item_id].price_fen <= 2500 for c in reading.candidates for ln in c.lines)


@pytest.mark.parametrize("text, lines", [
    ("想喝生椰拿铁了，来两杯生椰拿铁", [("生椰拿铁", 2, ())]),
    # A pasted list names each person's cup: the same drink twice is two lines still.
    ("小王 生椰拿铁\n小李 两杯生椰拿铁", [("生椰拿铁", 3, ())]),
])
def test_a_wish_then_the_order_of_the_same_thing_is_one_thing(text, lines):
    assert _lines(text) == lines


# --- the held-out round -------------------------------------------------------------------------

# Left as they are (rounds.KNOWN_MISSES, see the round's report):
# 再来一份：原味鸡 2块 says the count twice; 蛋塔 and
# 美试 are typos no homophone rule covers (塔 and 试 sound unlike 挞 and 式 in the reader's pinyin);
# a flavour before an item's name (芒果冰淇淋) is not known as a different product; a total budget
# for several (预算一共40，两杯) is not divided among them.

def test_round_six_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 119 of 146 (21 wrong orders, 6 refusals).
    assert len(ROUND6) >= 120
    assert set(misses(ROUND6)) <= KNOWN_MISSES[6], misses(ROUND6)
