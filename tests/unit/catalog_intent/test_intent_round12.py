"""Round 12 of held-out sentences (spoken orders with fillers and self-corrections, refusals of an item,
sodas and ways of making a drink the menu lacks, pack units, options said for one line, budgets said
with a brand, pinyin) and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import ITEM, RESOLVER, KNOWN_MISSES, asks as _asks, said as _said, lines as _lines, misses, round_cases

ROUND12 = round_cases(12)

# --- rules the round's misses showed wrong or missing ---------------------------------------------

def test_an_interjection_and_a_no_inside_a_clause_corrects_the_count_and_the_things_after_it():
    # 嗯不是 read as a refusal of the grape tea after it: only the peach plum was ordered.
    assert [(n, q) for n, q, _ in _lines("那个就是嗯嗯多肉葡萄两杯嗯不是一杯多肉葡萄一杯多肉桃李")] == [
        ("多肉桃李", 1), ("多肉葡萄", 1)]


def test_a_bare_no_between_spaces_takes_back_the_option_before_it():
    # 哦不 中杯 read as "not 中杯": the large cup first said was kept.
    assert _said("大杯 哦不 中杯就行 生椰拿铁") == [("生椰拿铁", 1, {"size": "中杯"})]


@pytest.mark.parametrize("text, lines", [
    ("别给我点酱香拿铁了我不喝酒 丝绒的来一杯", [("丝绒拿铁", 1)]),
    ("满杯百香果一杯 别又给我做成珍珠奶茶了上次就搞错", [("满杯百香果", 1)]),
])
def test_a_drink_refused_to_whoever_makes_the_order_is_not_ordered(text, lines):
    # 别给我点 / 别又给我做成 were no refusal: the drink refused was ordered too.
    assert [(n, q) for n, q, _ in _lines(text)] == lines


def test_a_refusal_after_a_question_is_no_order():
    # 有的话我不要 read 要 as an order word, and ordered the latte asked about.
    assert _asks("嗯那个酱香拿铁是不是有酒啊 有的话我不要")


def test_a_kind_taken_back_after_then_leaves_the_other_lines():
    # 然后饮料 was read as an unknown word, so 就不要了 took back the egg tart before it.
    text = "中午吃啥啊我也不知道要不你帮我点个肯德基吧就那个新奥尔良烤鸡腿堡加一个蛋挞然后饮料就不要了"
    assert [(n, q) for n, q, _ in _lines(text)] == [("新奥尔良烤鸡腿堡", 1), ("葡式蛋挞", 1)]


@pytest.mark.parametrize("text", ["一杯可乐一杯雪碧", "可乐两杯，雪碧一杯"])
def test_a_soda_the_shop_does_not_pour_is_asked_about(text):
    # 雪碧 was read as nothing: one cola was ordered for two drinks.
    assert _asks(text)


@pytest.mark.parametrize("text", ["生椰拿铁换燕麦奶", "来一杯低因生椰拿铁", "不喝含咖啡因的，瑞幸随便来一杯"])
def test_a_way_of_making_it_the_menu_does_not_offer_is_asked_about(text):
    # The usual latte was ordered: with milk, with caffeine.
    assert _asks(text)


@pytest.mark.parametrize("text, boxes", [
    ("鸡蛋２０个", 2), ("鸡蛋10个", 1), ("车厘子2斤", 1), ("草莓两斤", 2),
])
def test_a_count_in_another_unit_of_the_pack_is_counted_in_packs(text, boxes):
    # 鸡蛋20个 ordered twenty boxes of ten eggs; 车厘子2斤 two boxes of a kilogram.
    [(_, quantity, _)] = _lines(text)
    assert quantity == boxes


def test_a_weight_that_is_part_of_a_pack_is_asked_about():
    # 车厘子一斤 ordered a whole kilogram box.
    assert _asks("车厘子一斤")


def test_an_option_said_after_a_line_after_every_line_was_given_one_is_that_lines_alone():
    # 都少冰 made 丝绒的要半糖 an option of every line, and 丝绒的 a third velvet latte.
    assert _said("瑞幸 两杯丝绒 一杯生椰 都少冰 丝绒的要半糖") == [
        ("丝绒拿铁", 2, {"sugar": "半糖", "temperature": "少冰"}), ("生椰拿铁", 1, {"temperature": "少冰"})]


def test_the_cup_said_for_someone_gets_what_is_said_of_their_cup():
    # 我的那杯要热的 made the two cups for downstairs hot.
    assert _said("帮我点三杯生椰拿铁一杯给我两杯给楼下的我的那杯要热的") == sorted([
        ("生椰拿铁", 1, {"temperature": "热"}), ("生椰拿铁", 2, {})], key=repr)


def test_a_budget_and_the_card_paying_in_full_said_with_a_brand_suggest_from_it():
    # 25以内 and 不用我补钱 were read as things KFC does not sell.
    reading = RESOLVER.resolve("肯德基25以内随便来一样 不用我补钱就行")
    assert reading.candidates and all(ITEM[c.lines[0].item_id].brand_id == "kfc"
                                      and ITEM[c.lines[0].item_id].price_fen <= 2500 for c in reading.candidates)


def test_english_words_nothing_explains_with_a_brand_are_asked_about():
    # kfc dan ta liang ge (pinyin) ignored the words and ordered a piece of chicken.
    assert _asks("kfc dan ta liang ge")


# Left as they are (rounds.KNOWN_MISSES): 五分 for 五分糖
# after a correction, 香辣的 (a generic piece) after 还是, 椰云拿铁 (云 glued to a piece of 生椰拿铁: the rule that
# would ask dropped the typo 奥尔良考鸡腿堡), and the cheap refusals: 深夜拿铁 (front and back nasals), 肯得鸡 with
# 蛋塔, 美食 for 美式, 🍦, and pinyin.
def test_round_twelve_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 121 of 148 (22 wrong orders, 5 refusals).
    assert len(ROUND12) >= 145
    assert sum(1 for c in ROUND12 if c["expect"].get("clarify")) >= 25
    assert set(misses(ROUND12)) <= KNOWN_MISSES[12], misses(ROUND12)
