"""Round 11 of held-out sentences (everyday orders, questions and complaints that name an item, options
said colloquially, sizes, several people, pasted lists, corrections, budgets, typos, English and mixed
text) and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import KNOWN_MISSES, lines as _lines, misses, round_cases

ROUND11 = round_cases(11)


# --- rules the round's misses showed wrong or missing ---------------------------------------------

@pytest.mark.parametrize("text, options", [
    ("要一杯珍珠奶茶，冰少点，糖也少点", (("sugar", "less"), ("temperature", "less_ice"))),
    ("柠檬水不要太甜，冰也少点", (("sugar", "less"), ("temperature", "less_ice"))),
    ("草莓摇摇奶昔去冰，糖也不要", (("sugar", "none"), ("temperature", "no_ice"))),
    ("珍珠奶茶冰块一律不要", (("temperature", "no_ice"),)),
    ("棒打鲜橙冰都不要", (("temperature", "no_ice"),)),
])
def test_a_word_between_the_ice_or_sugar_and_how_much_of_it_keeps_the_option(text, options):
    # 糖也少点 and 冰块一律不要 were dropped: the drink came with full sugar and full ice.
    [(_, _, chosen)] = _lines(text)
    assert tuple(kv for kv in chosen if kv[0] != "size") == options


@pytest.mark.parametrize("text, options", [
    ("波霸奶茶一杯，冰块别放", (("temperature", "no_ice"),)),
    ("柠檬水糖不放", (("sugar", "none"),)),
    ("珍珠奶茶甜度一半", (("sugar", "half"),)),
])
def test_no_ice_or_sugar_said_with_the_thing_first_is_chosen(text, options):
    # 冰块别放 and 甜度一半 were ignored: full ice, full sugar.
    [(_, _, chosen)] = _lines(text)
    assert tuple(kv for kv in chosen if kv[0] != "size") == options


# Left as they are (rounds.KNOWN_MISSES), out of the round's time: 冰块减半 / 糖七分, a correction of the
# count (一杯就好了), budgets said before the brand (预算15块, 5块钱以下的蜜雪, 25元以内快餐), 蛋达, a
# pack count in brackets (一盒(4个) ordered five), a bare 大 as the size, a question comparing two items,
# and 好吃的话 (a condition) read as 吃的 (something to eat).
def test_round_eleven_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 120 of 132 (8 wrong orders, 4 refusals).
    assert len(ROUND11) >= 130
    assert sum(1 for c in ROUND11 if c["expect"].get("clarify")) >= 25
    assert set(misses(ROUND11)) <= KNOWN_MISSES[11], misses(ROUND11)


@pytest.mark.parametrize("text, lines", [
    ("原味鸡好吃吗？好吃的话来两块", [("吮指原味鸡", 2, ())]),
    ("好喝的话来两杯生椰拿铁", [("生椰拿铁", 2, ())]),
])
def test_a_condition_on_taste_is_no_kind_of_thing_to_order(text, lines):
    # 好吃的话 ("if it is good") was read as 吃的 ("something to eat"): two fries were added.
    assert _lines(text) == lines
