"""Round 13 of held-out sentences (orders for several people with options and counts said per person,
halves, "the same", comparisons by price, budgets and the card, questions and polite requests, things
the menu lacks) and the rules its misses showed were wrong or missing."""
import pytest

from .rounds import ITEM, RESOLVER, KNOWN_MISSES, asks as _asks, said as _said, lines as _lines, misses, round_cases

ROUND13 = round_cases(13)

# --- rules the round's misses showed wrong or missing ---------------------------------------------

def test_a_figure_a_clause_before_the_item_is_no_count_of_it():
    # 免单卡只有25 ordered 25 lattes, and 换成美式 was heard as 成美式 (橙C美式).
    assert _said("免单卡只有25，生椰拿铁超了吧？那换成美式") == sorted([("标准美式", 1, {})], key=repr)


@pytest.mark.parametrize("text, lines", [
    ("柠檬水和珍珠奶茶哪个便宜点哪个", [("冰鲜柠檬水", 1, {})]),
    ("美式和橙C美式比一下，便宜的那个来一杯大杯", [("标准美式", 1, {"size": "大杯"})]),
    ("薯条跟蛋挞选便宜的那个，来两份", [("葡式蛋挞", 2, {})]),
    ("蜜雪的珍珠奶茶和喜茶的黑糖波波，挑便宜的", [("珍珠奶茶", 1, {})]),
    ("草莓和车厘子哪个便宜？就买便宜的", [("丹东草莓500g", 1, {})]),
    ("Which is cheaper, the Zinger or the New Orleans burger? Order me the cheaper one.", [("香辣鸡腿堡", 1, {})]),
    ("蛋挞和冰淇淋，要贵的那个", [("葡式蛋挞", 1, {})]),
])
def test_a_comparison_orders_the_one_the_catalogs_prices_pick(text, lines):
    # Every item compared was ordered (or the sentence refused as two shops or a choice).
    assert _said(text) == sorted(lines, key=repr)


def test_a_comparison_of_things_of_one_price_is_asked_about():
    assert _asks("多肉葡萄、芝芝莓莓，谁便宜买谁")


@pytest.mark.parametrize("text", ["生椰拿铁太贵了，来杯美式", "生椰拿铁，不要太贵的"])
def test_too_dear_is_no_comparison(text):
    assert len(_lines(text)) == 1


@pytest.mark.parametrize("text, lines", [
    ("帮我们组点咖啡：小王大杯生椰拿铁，小李和我各一杯丝绒拿铁少糖，老陈要热的美式",
     [("标准美式", 1, {"temperature": "热"}), ("丝绒拿铁", 2, {"sugar": "少糖"}), ("生椰拿铁", 1, {"size": "大杯"})]),
    ("给爸妈各买一杯热的四季春，少糖", [("蜜桃四季春", 2, {"sugar": "少糖", "temperature": "热"})]),
    ("我和老婆各一杯珍珠奶茶，儿子要一个冰淇淋", [("新鲜冰淇淋", 1, {}), ("珍珠奶茶", 2, {})]),
    ("我跟我弟一人两个蛋挞，我妈要个香辣鸡腿堡", [("葡式蛋挞", 4, {}), ("香辣鸡腿堡", 1, {})]),
    ("爸妈年纪大了喝不了冰的，二老各一个热的珍珠奶茶，我要一个大杯冰的",
     [("珍珠奶茶", 1, {"size": "大杯", "temperature": "正常冰"}), ("珍珠奶茶", 2, {"temperature": "热"})]),
])
def test_one_each_for_the_people_named_is_their_line_alone(text, lines):
    # 各 gave its count to the lines before and its options to every line, and carried to the next
    # person (儿子 got two ice creams); 爸妈 and 二老 were one person.
    assert _said(text) == sorted(lines, key=repr)


@pytest.mark.parametrize("text, lines", [
    ("我们组一共八个人，一半要厚乳拿铁一半要生椰拿铁，全部少冰",
     [("厚乳拿铁", 4, {"temperature": "少冰"}), ("生椰拿铁", 4, {"temperature": "少冰"})]),
    ("给研发部点12杯酱香拿铁，一半热一半冰", [("酱香拿铁", 6, {}), ("酱香拿铁", 6, {"temperature": "热"})]),
])
def test_halves_split_the_people_or_the_count_said_before_them(text, lines):
    # Eight lattes and one, or twelve hot ones, were ordered.
    assert _said(text) == sorted(lines, key=repr)


def test_halves_of_an_odd_count_are_asked_about():
    assert _asks("七个人，一半要厚乳拿铁一半要生椰拿铁")


@pytest.mark.parametrize("text, lines", [
    ("我一杯冰美式，同事一杯一样的但要热的，还有一杯橙C",
     [("标准美式", 1, {"temperature": "正常冰"}), ("标准美式", 1, {"temperature": "热"}), ("橙C美式", 1, {})]),
    ("我要一杯热的丝绒拿铁，他也一样，不过他要冰的",
     [("丝绒拿铁", 1, {"temperature": "正常冰"}), ("丝绒拿铁", 1, {"temperature": "热"})]),
    ("生椰拿铁一杯，同样的再来一杯", [("生椰拿铁", 2, {})]),
    ("生椰拿铁和上次一样少冰", [("生椰拿铁", 1, {"temperature": "少冰"})]),
])
def test_the_same_again_is_one_more_of_the_line_before_with_what_it_changes(text, lines):
    # 一样的 was read as nothing (the colleague's cup lost), or its 冰 and 热 as a contradiction.
    assert _said(text) == sorted(lines, key=repr)


def test_the_cup_of_one_of_the_people_named_gets_their_option():
    # 前台那杯要热的 made both cups hot.
    assert _said("麻烦帮前台和财务各带一杯丝绒拿铁，前台那杯要热的") == sorted([
        ("丝绒拿铁", 1, {}), ("丝绒拿铁", 1, {"temperature": "热"})], key=repr)


def test_people_said_with_a_count_of_what_they_share_are_no_count():
    # 我们俩再合吃一份薯条 made the burger before two.
    assert _said("肯德基：我要香辣鸡腿堡，小张要新奥尔良的，我们俩再合吃一份薯条") == sorted([
        ("新奥尔良烤鸡腿堡", 1, {}), ("薯条(中)", 1, {}), ("香辣鸡腿堡", 1, {})], key=repr)


def test_all_of_an_item_counted_before_is_that_item_alone():
    # 四季春都要去冰 took the ice out of the passion fruit teas too, and added a fifth peach tea.
    assert _said("帮大家点一下：4杯四季春、3杯百香果，四季春都要去冰") == sorted([
        ("满杯百香果", 3, {}), ("蜜桃四季春", 4, {"temperature": "去冰"})], key=repr)


def test_a_thing_said_to_have_run_out_is_the_order_after_it():
    # 鸡蛋没了 was a box of eggs more.
    assert _said("家里鸡蛋没了，麻烦盒马送两盒鸡蛋过来") == sorted([("鲜鸡蛋10枚", 2, {})], key=repr)


@pytest.mark.parametrize("text", [
    "一家四口，爸爸热美式，妈妈生椰拿铁半糖，两个孩子喝什么你推荐一下", "昨天的蛋挞少给了一个",
    "哪个快就点哪个：肯德基还是瑞幸", "一点点的波霸奶茶三分糖",
])
def test_a_question_a_complaint_or_a_choice_of_shops_orders_nothing(text):
    assert _asks(text)


@pytest.mark.parametrize("text, lines", [
    ("可以帮忙订一杯橙C美式吗？大杯的，谢谢", [("橙C美式", 1, {"size": "大杯"})]),
    ("能不能别放冰啊，上次冰太多了，这次厚乳拿铁两杯", [("厚乳拿铁", 2, {"temperature": "去冰"})]),
])
def test_a_polite_request_is_an_order(text, lines):
    # Both were asked about as questions.
    assert _said(text) == sorted(lines, key=repr)


def test_the_least_sugar_is_no_added_sugar():
    assert _said("减肥中，要糖最少的多肉桃李") == sorted([("多肉桃李", 1, {"sugar": "不另外加糖"})], key=repr)


def test_the_card_paying_in_full_with_a_brand_suggests_from_it():
    # 不用补差价 was read as something 喜茶 does not sell.
    reading = RESOLVER.resolve("免单卡25块，帮我在喜茶挑一杯不用补差价的")
    assert reading.candidates and all(ITEM[c.lines[0].item_id].brand_id == "heytea"
                                      and ITEM[c.lines[0].item_id].price_fen <= 2500 for c in reading.candidates)


# Left as they are (rounds.KNOWN_MISSES): English per-person and partial counts (one of the pepsis, each of us
# … there are four of us, two of those), as many as a sum buys (能买几个就买几个), a budget for the whole
# order said as "within that", and the cheap refusals: 哪家近就哪家, 那个芒果的 (no alias).
def test_round_thirteen_held_out_sentences_are_understood_at_least_as_well_as_when_tuned():
    # First measured before any rule of this round: 109 of 150 (32 wrong orders, 9 refusals).
    assert len(ROUND13) >= 145
    assert sum(1 for c in ROUND13 if c["expect"].get("clarify")) >= 40
    assert set(misses(ROUND13)) <= KNOWN_MISSES[13], misses(ROUND13)
