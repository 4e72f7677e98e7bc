"""Round 15 of held-out sentences (quantities and options: dozens, halves, per-person counts, totals, money
said beside counts, refusals of an option, options an item lacks, vague counts, questions about an order)
and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import ITEM, RESOLVER, KNOWN_MISSES, asks as _asks, said as _said, misses, round_cases

ROUND15 = round_cases(15)

# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text, lines", [
    ("两杯生椰拿铁，总共58块对吧，下单", [("生椰拿铁", 2, {})]),
    ("蛋挞来一打，一百块够吧", [("葡式蛋挞", 12, {})]),
    ("一杯生椰拿铁，要是超过25块就换成美式", [("标准美式", 1, {})]),
    ("卡里就25块，想喝杯咖啡，别超了", [("标准美式", 1, {})]),
])
def test_a_number_of_kuai_is_money_unless_it_counts_chicken(text, lines):
    # 58 lattes, 112 egg tarts, 25 americanos were ordered.
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text, lines", [
    ("原味鸡3块 蛋挞2个", [("吮指原味鸡", 3, {}), ("葡式蛋挞", 2, {})]),
    ("麻烦帮我拿一份薯条和两块原味鸡，谢谢啦～", [("吮指原味鸡", 2, {}), ("薯条(中)", 1, {})]),
    ("原味鸡两块，哦不对是三块", [("吮指原味鸡", 3, {})]),
])
def test_pieces_of_chicken_are_still_counted_in_kuai(text, lines):
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text", ["珍珠奶茶除外，别的随便", "除了香辣鸡腿堡，肯德基的其他东西都来一份"])
def test_all_but_an_item_never_orders_that_item(text):
    # 除了X and X除外 ordered X.
    reading = RESOLVER.resolve(text)
    assert all(ITEM[ln.item_id].name not in ("珍珠奶茶", "香辣鸡腿堡") for c in reading.candidates for ln in c.lines)


def test_an_option_refused_to_whoever_makes_it_is_not_chosen():
    assert _said("冰要正常放，别给我去冰，一杯棒打鲜橙") == [("棒打鲜橙", 1, {})]


@pytest.mark.parametrize("text", ["柠檬水不要全糖", "一杯橙C美式，不要咖啡"])
def test_refusing_what_the_item_is_without_saying_what_instead_is_asked_about(text):
    # Ordered, the refused full sugar (the default) or the coffee refused came all the same.
    assert _asks(text)


@pytest.mark.parametrize("text", ["双份浓缩的生椰拿铁", "美式加一份浓缩", "一杯美式，要小杯", "两大杯一小杯多肉葡萄"])
def test_an_extra_shot_or_a_smaller_size_no_menu_offers_is_asked_about(text):
    # 双份 ordered two lattes; 小杯 was read as nothing and the medium cup ordered.
    assert _asks(text)


@pytest.mark.parametrize("text", ["热可乐一杯", "无糖可乐两瓶", "薯条要大份的", "一个冰淇淋，大杯半糖", "可乐能不能换成热的"])
def test_an_option_the_item_lacks_is_asked_about(text):
    # The cola came cold and sweet, the fries medium: "options not offered, ignored".
    assert _asks(text)


@pytest.mark.parametrize("text", ["可乐要大杯 去冰", "香辣鸡腿堡少冰", "肯德基 大杯可乐 去冰 少糖", "一杯大可乐加一份中份薯条"])
def test_less_ice_or_sugar_of_what_comes_without_a_choice_is_still_ignored(text):
    # Established by rounds 1 and 4: nothing the user gets is what they said they did not want.
    assert RESOLVER.resolve(text).candidates


@pytest.mark.parametrize("text", ["来几杯生椰拿铁", "蛋挞来个十几个", "一杯半柠檬水"])
def test_a_count_not_said_is_asked_about(text):
    assert _asks(text)


def test_half_sugar_after_a_cup_is_no_half_cup():
    assert _said("一杯半糖的柠檬水") == [("冰鲜柠檬水", 1, {"sugar": "半糖"})]


@pytest.mark.parametrize("text", [
    "是不是买一打蛋挞更便宜", "三十块钱够不够买两杯生椰拿铁", "多肉葡萄一杯，要热的还是冰的好？", "蛋挞一打还是半打好呢",
    "要一杯大杯的多肉葡萄，还是中杯吧，不对还是大杯……我再想想",
])
def test_a_question_holding_its_own_verb_orders_nothing(text):
    # 买 in 够不够买 / 是不是买 was read as an order word after the question.
    assert _asks(text)


def test_a_request_said_as_a_question_still_orders():
    assert _said("能不能帮我点两杯热的多肉葡萄") == [("多肉葡萄", 2, {"temperature": "热"})]


def test_a_thing_counted_that_no_shop_sells_beside_one_that_is_is_asked_about():
    # 两份鸡米花加一杯可乐 ordered the cola alone.
    reading = RESOLVER.resolve("两份鸡米花加一杯可乐")
    assert reading.candidates == () and "鸡米花" in reading.clarification


def test_a_dozen_of_what_comes_in_tens_is_asked_about():
    # 一打鸡蛋 ordered twelve boxes of ten.
    assert _asks("一打鸡蛋")


def test_a_count_a_correction_replaces_is_not_asked_about():
    assert _said("来十五个鲜鸡蛋…哦不，20个鸡蛋") == [("鲜鸡蛋10枚", 2, {})]


def test_what_the_card_must_pay_in_full_and_cannot_is_asked_about():
    # 卡能全免的水果 ordered strawberries over the card.
    assert _asks("来一份卡能全免的水果")


# Left as they are (rounds.KNOWN_MISSES): what earlier rounds established (香辣鸡腿堡不要辣 orders the burger,
# test_intent_negations; 再来一个 is one more of the line before), counts this round's time did not reach (各一个
# after a total of two, 剩下的 of a total, cups said in clauses before their item, 一大一中两杯, a bare 大 as the
# size, as round 11 left it), and the cheap refusals: 冻柠茶 (no such name), all but one of a shop (除了…其他东西),
# every kind (每样, 两款多肉), and the total asked after an order (一共多少钱).
def test_round_fifteen_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 104 of 145 (38 wrong orders, 3 refusals).
    assert len(ROUND15) >= 140
    assert sum(1 for c in ROUND15 if c["expect"].get("clarify")) >= 50
    assert set(misses(ROUND15)) <= KNOWN_MISSES[15], misses(ROUND15)
