"""Round 9 of held-out sentences (everyday orders, questions and complaints that name an item, options
said colloquially, sizes, several people, pasted lists, corrections, budgets, typos, English and mixed
text) and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import KNOWN_MISSES, asks as _asks, lines as _lines, misses, round_cases

ROUND9 = round_cases(9)


# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text, lines", [
    ("昨天的香辣鸡腿堡太咸了，今天换个原味鸡", [("吮指原味鸡", 1, ())]),
    ("生椰拿铁怎么这么贵，给我来两杯厚乳拿铁", [("厚乳拿铁", 2, ())]),
    ("上次的多肉葡萄太难喝了，这次要芝芝莓莓", [("芝芝莓莓", 1, ())]),
])
def test_an_item_complained_about_before_an_order_of_another_is_not_ordered(text, lines):
    # Both items were put on the order: the one complained about as well as the one asked for.
    assert _lines(text) == lines


@pytest.mark.parametrize("text, lines", [
    ("蛋挞多少钱一个？给我来四个", [("葡式蛋挞", 4, ())]),
])
def test_an_order_after_a_question_that_names_no_item_of_its_own_is_of_the_item_asked_about(text, lines):
    assert _lines(text) == lines


@pytest.mark.parametrize("text", [
    "香辣鸡腿堡辣不辣啊", "多肉葡萄甜不甜", "珍珠奶茶有多少卡路里", "车厘子是几J的", "请问坚果礼盒保质期多久",
    "丝绒拿铁现在卖几块？", "轻芒芒甘露里有芒果过敏原吗", "昨天的原味鸡太油了，差评",
])
def test_a_question_or_complaint_the_table_lacked_orders_nothing(text):
    assert _asks(text)


@pytest.mark.parametrize("text", [
    "帮我查下蜜桃四季春的订单到哪了", "下单了两个蛋挞怎么只到了一个", "草莓摇摇奶昔怎么停售了", "我的薯条少送了",
])
def test_a_word_about_an_order_already_placed_orders_nothing(text):
    assert _asks(text)


@pytest.mark.parametrize("text", ["可乐能换成雪碧吗", "生椰拿铁可以换成燕麦奶吗"])
def test_asking_whether_an_item_can_be_swapped_orders_nothing(text):
    # 换 is an order word, so the yes-no question read as an order of the item it asks about.
    assert _asks(text)


@pytest.mark.parametrize("text, lines", [
    ("要一杯生椰拿铁，别太甜", [("生椰拿铁", 1, (("sugar", "less"),))]),
    ("生椰拿铁来一杯，能换成热的吗", [("生椰拿铁", 1, (("temperature", "hot"),))]),
])
def test_an_order_that_only_sounds_like_a_complaint_stays_an_order(text, lines):
    assert _lines(text) == lines


# Left as they are (rounds.KNOWN_MISSES), out of the round's time: praise or a complaint before 再来 (再来一杯
# adds to the item praised instead of being it), a bare 大 as a size, 糖也少点, 鲜橙茶 read as 鲜橙 + 茶,
# and a reorder after 没送到.
def test_round_nine_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 116 of 135 (17 wrong orders, 2 refusals).
    assert len(ROUND9) >= 130
    assert sum(1 for c in ROUND9 if c["expect"].get("clarify")) >= 25
    assert set(misses(ROUND9)) <= KNOWN_MISSES[9], misses(ROUND9)
