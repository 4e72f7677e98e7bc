"""Round 7 of held-out sentences (typed in a hurry, delivery notes and addresses, counting words,
sizes as 大号/L, prices said before an item, Cantonese and traditional characters, pasted group
orders, questions, cancellations and complaints) and the rules its misses showed were wrong or
missing."""
import pytest

from .rounds import KNOWN_MISSES, RESOLVER, asks as _asks, lines as _lines, misses, round_cases

ROUND7 = round_cases(7)


# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text, lines", [
    ("蛋挞4个 送到5号楼2单元1102", [("葡式蛋挞", 4, ())]),
    ("送到建国路88，两杯柠檬水", [("冰鲜柠檬水", 2, ())]),
])
def test_the_numbers_of_a_delivery_address_are_not_counts(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("生椰拿铁29块那个，两杯", [("生椰拿铁", 2, ())]),
    ("21.5那个香辣鸡腿堡来俩", [("香辣鸡腿堡", 2, ())]),
])
def test_a_price_that_points_at_that_one_is_not_a_count(text, lines):
    assert _lines(text) == lines


def test_double_portion_is_two():
    assert _lines("薯条双份") == [("薯条(中)", 2, ())]


@pytest.mark.parametrize("text", ["L号的珍珠奶茶", "奶昔来一个大号的"])
def test_a_size_said_as_a_clothing_size_is_the_large_cup(text):
    assert _lines(text)[0][2] == (("size", "large"),)


# --- the held-out round -------------------------------------------------------------------------

# Left as they are (rounds.KNOWN_MISSES, see the round's report): questions, cancellations and complaints that name an item
# (多少钱, 还有吗, 取消, 还没到, 哪个近) are read as orders; an option said as a phrase the option table
# lacks (冰块少放点, 冰塊少一點, 唔好落冰, a lone 大) is dropped; a correction of an option (热的，啊不是，要冰的)
# or a reason (不能喝冰的) is asked about; per-person counts with 一人 after two named people, a
# per-cup option for one of two, 其中一杯不要了, 我要香辣的 after another item; a bare 汉堡 in a list
# takes one burger; 9块9 (no such price) and 水果 (none the card covers) suggest instead of asking;
# 10块钱以内的 leaves 钱以内 unread.

def test_round_seven_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 119 of 148 (25 wrong orders, 4 refusals).
    assert len(ROUND7) >= 120
    assert set(misses(ROUND7)) <= KNOWN_MISSES[7], misses(ROUND7)


@pytest.mark.parametrize("text", [
    "生椰拿铁多少钱", "酱香拿铁还有吗", "你们家的生椰拿铁好喝吗", "肯德基和瑞幸哪个近？", "what's on the menu at luckin",
    "取消刚才那杯生椰拿铁", "我昨天点的两杯厚乳拿铁还没到", "cancel my latte",
])
def test_a_question_or_a_word_about_an_order_one_has_orders_nothing(text):
    # Each named an item and was proposed as an order of it (placed, with confirm, on the card).
    assert _asks(text)
    assert "我的订单" in RESOLVER.resolve(text).clarification


@pytest.mark.parametrize("text, lines", [
    ("蛋挞多少钱一个？给我来四个", [("葡式蛋挞", 4, ())]),
    ("有没有生椰拿铁，来两杯", [("生椰拿铁", 2, ())]),
    ("草莓奶昔还有吗？没有的话就柠檬水", [("草莓摇摇奶昔", 1, ())]),  # the fallback is not ordered too
])
def test_a_question_followed_by_an_order_is_the_order(text, lines):
    assert _lines(text) == lines
