"""Round 8 of held-out sentences (everyday orders, questions and complaints that name an item, options
said as phrases, sizes, several people, pasted lists, corrections, prices and budgets, typos, English
and mixed text) and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import KNOWN_MISSES, RESOLVER, asks as _asks, lines as _lines, misses, round_cases

ROUND8 = round_cases(8)


# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text", [
    "柠檬水是现做的吗？", "瑞幸的酱香拿铁里有酒吗？", "生椰拿铁能做热的吗", "薯条凉了能退吗",
])
def test_a_yes_no_question_about_an_item_orders_nothing(text):
    # Each was proposed as an order of the item it asks about (with confirm, placed on the card).
    assert _asks(text)


@pytest.mark.parametrize("text, lines", [
    ("能帮我来一杯生椰拿铁吗", [("生椰拿铁", 1, ())]),
    ("可以给我两杯柠檬水吗？", [("冰鲜柠檬水", 2, ())]),
    ("有热的生椰拿铁吗？有的话来一杯", [("生椰拿铁", 1, (("temperature", "hot"),))]),
    ("两杯柠檬水，能用免单卡吗", [("冰鲜柠檬水", 2, ())]),  # the question is not about the drink
    ("和上次的一样，两杯生椰拿铁", [("生椰拿铁", 2, ())]),
])
def test_an_order_asked_politely_as_a_question_is_still_the_order(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text", [
    "你们的珍珠奶茶是不是有珍珠啊", "芝芝莓莓会不会太腻", "多肉葡萄和芝芝莓莓哪个没那么甜？", "为什么我的生椰拿铁是常温的",
    "蜜雪冰城的冰淇淋怎么这么便宜", "车厘子几号发货", "is the bubble tea sweet?", "what's in the very grape?",
])
def test_a_question_word_the_table_lacked_orders_nothing(text):
    assert _asks(text)


@pytest.mark.parametrize("text", ["昨天的香辣鸡腿堡太咸了", "i didnt get my fries", "上次的多肉葡萄太难喝了"])
def test_a_complaint_about_an_earlier_order_orders_nothing(text):
    assert _asks(text)


@pytest.mark.parametrize("text, lines", [
    ("我和我老公一人一杯生椰拿铁", [("生椰拿铁", 2, ())]),
    ("我和室友各一个香辣鸡腿堡", [("香辣鸡腿堡", 2, ())]),
    ("我、小王、小李，一人一个香辣鸡腿堡", [("香辣鸡腿堡", 3, ())]),
    ("一家四口，每人一个甜筒", [("新鲜冰淇淋", 4, ())]),
    ("我跟我妈一人一个蛋挞", [("葡式蛋挞", 2, ())]),
])
def test_one_each_for_people_named_or_counted_as_a_family_is_one_per_person(text, lines):
    # Each ordered one: the people were named, not counted, so 一人一个 multiplied by nobody.
    assert _lines(text) == lines


@pytest.mark.parametrize("text, option", [
    ("冰块少放点的柠檬水", ("temperature", "less_ice")),
    ("冰块不要太多的百香果", ("temperature", "less_ice")),
    ("一杯珍奶，冰塊少一點", ("temperature", "less_ice")),
    ("唔好落冰，两杯百香果", ("temperature", "no_ice")),
    ("甜度减半的多肉桃李", ("sugar", "half")),
    ("糖少放点的多肉桃李", ("sugar", "less")),
])
def test_an_option_said_as_a_phrase_about_ice_or_sugar_is_that_option(text, option):
    # Each phrase was read as nothing, and the drink came at the default (full ice, full sugar).
    assert option in _lines(text)[0][2]


@pytest.mark.parametrize("text", ["两杯百香果", "来两杯百香果"])
def test_a_count_before_an_item_whose_name_starts_with_a_cup_keeps_its_cup(text):
    # 杯百香果 (a piece of 满杯百香果) took the 杯 of 两杯: 两 alone counted nothing and the sentence
    # was not understood at all.
    assert _lines(text) == [("满杯百香果", 2, ())]


@pytest.mark.parametrize("text", ["蜜桃四季春 L 去冰", "生椰拿铁 L"])
def test_a_lone_l_beside_a_drink_is_the_large_cup(text):
    # L杯 and L号 were read, a lone L was dropped and the medium cup ordered.
    assert ("size", "large") in _lines(text)[0][2]


# --- the held-out round -------------------------------------------------------------------------

# Left as they are (rounds.KNOWN_MISSES): 别再给我推荐奶茶了 is read as asking for a milk tea (the order
# word 给我 comes after the 别再 that takes it back); a correction that takes the item back and names
# the new one by its kind only (不要了换成香辣的) is asked about.

def test_round_eight_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 113 of 139 (24 wrong orders, 2 refusals).
    assert len(ROUND8) >= 130
    assert set(misses(ROUND8)) <= KNOWN_MISSES[8], misses(ROUND8)
