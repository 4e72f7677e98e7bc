"""Quantity phrases: digits, Chinese numerals, colloquial and English forms, and where they attach."""
import pytest

from services.catalog.intent import build_resolver, load_demo_specs
from services.catalog.intent.numbers import parse_chinese_numeral, parse_quantity, scan_quantities

RESOLVER = build_resolver(*load_demo_specs())


@pytest.mark.parametrize("text,value", [
    ("一", 1), ("两", 2), ("二", 2), ("十", 10), ("十二", 12), ("二十", 20), ("二十三", 23),
    ("一百", 100), ("一百零五", 105), ("两百", 200), ("12", 12),
])
def test_chinese_numerals_read_as_numbers(text, value):
    assert parse_chinese_numeral(text) == value


def test_a_word_that_is_not_a_numeral_is_not_a_number():
    assert parse_chinese_numeral("杯") is None
    assert parse_chinese_numeral("") is None


@pytest.mark.parametrize("text,value", [
    ("两杯", 2), ("3杯", 3), ("十二杯", 12), ("12 个", 12), ("一盒", 1), ("五斤", 5), ("一份", 1),
    ("俩", 2), ("仨", 3), ("一对", 2), ("两对", 4), ("一打", 12),
    ("x2", 2), ("×3", 3), ("2x", 2), ("*4", 4),
    ("兩杯", 2), ("倆", 2),
    ("a", 1), ("an", 1), ("two", 2), ("three", 3), ("a couple of", 2), ("a pair of", 2), ("a dozen", 12),
    ("半打", 6), ("a half dozen", 6), ("half-dozen", 6),
    ("兩個", 2), ("三隻", 3), ("一對", 2), ("兩盃", 2),
])
def test_quantity_phrases_state_their_count(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["500g", "1kg", "来杯", "帮我点一下", "一起", "一点", "then", "", "abc",
                                  "30块以内", "25块钱", "20元", "50%"])
def test_sizes_and_fillers_are_not_quantities(text):
    assert parse_quantity(text) is None


def test_every_quantity_in_a_stretch_is_found_in_order():
    found = scan_quantities("两杯，一杯少冰一杯去冰")
    assert [q.quantity for q in found] == [2, 1, 1]
    assert [q.start for q in found] == [0, 3, 7]


def _lines(text):
    top = RESOLVER.resolve(text).candidates[0]
    return sorted((ln.item_id, ln.quantity, tuple(sorted(ln.options.items()))) for ln in top.lines)


@pytest.mark.parametrize("text", ["两杯生椰拿铁", "生椰拿铁两杯", "生椰拿铁 x2", "生椰拿铁俩", "2 coconut lattes",
                                  "two coconut lattes", "a couple of coconut lattes", "生椰拿铁，要两杯"])
def test_the_count_attaches_before_or_after_the_item(text):
    assert _lines(text) == [("luckin-coconut-latte", 2, ())]


def test_counts_between_items_belong_to_the_following_item_when_counts_lead():
    assert _lines("两杯生椰拿铁一杯美式") == [("luckin-americano", 1, ()), ("luckin-coconut-latte", 2, ())]


def test_counts_between_items_belong_to_the_preceding_item_when_counts_trail():
    assert _lines("香辣鸡腿堡两个薯条一份") == [("kfc-fries-medium", 1, ()), ("kfc-zinger", 2, ())]


def test_a_total_split_by_later_counts_becomes_one_line_per_part():
    assert _lines("柠檬水三杯，两杯去冰") == [("mixue-lemonade", 1, ()), ("mixue-lemonade", 2, (("temperature", "no_ice"),))]


def test_the_same_item_asked_twice_with_the_same_options_is_one_line():
    assert _lines("一杯美式，再来一杯美式") == [("luckin-americano", 2, ())]


def test_no_count_means_one():
    assert _lines("来杯多肉葡萄") == [("heytea-very-grape", 1, ())]


def test_each_gives_every_line_the_count():
    assert _lines("柠檬水和珍珠奶茶各两杯") == [("mixue-lemonade", 2, ()), ("mixue-pearl-milk-tea", 2, ())]


def test_a_later_mention_with_only_options_refers_to_the_counted_line():
    assert _lines("两杯芝芝莓莓，芝芝莓莓要去冰") == [("heytea-cheezo-strawberry", 2, (("temperature", "no_ice"),))]


def test_two_uncounted_mentions_with_different_options_are_two_cups():
    assert _lines("生椰拿铁少冰，生椰拿铁去冰") == [
        ("luckin-coconut-latte", 1, (("temperature", "less_ice"),)), ("luckin-coconut-latte", 1, (("temperature", "no_ice"),))]


def test_a_budget_is_not_a_count():
    assert _lines("25块以内的珍珠奶茶") == [("mixue-pearl-milk-tea", 1, ())]


def test_half_a_dozen_is_six_not_one():
    assert _lines("半打蛋挞") == [("kfc-egg-tart", 6, ())]
    assert _lines("蛋挞来半打") == [("kfc-egg-tart", 6, ())]


def test_a_count_in_traditional_characters_is_read():
    assert _lines("肯德基香辣雞腿堡兩個") == [("kfc-zinger", 2, ())]


def test_a_budget_in_traditional_characters_is_not_a_count():
    assert _lines("25塊錢以內的珍珠奶茶") == [("mixue-pearl-milk-tea", 1, ())]


@pytest.mark.parametrize("text", ["1、生椰拿铁 2、厚乳拿铁", "1、生椰拿铁2、厚乳拿铁", "1）生椰拿铁 2）厚乳拿铁",
                                  "1) coconut latte 2) thick milk latte"])
def test_the_numbers_of_a_list_are_not_counts(text):
    assert _lines(text) == [("luckin-coconut-latte", 1, ()), ("luckin-thick-milk-latte", 1, ())]


def test_a_list_keeps_the_counts_of_its_lines():
    assert _lines("1、生椰拿铁两杯 2、厚乳拿铁") == [("luckin-coconut-latte", 2, ()), ("luckin-thick-milk-latte", 1, ())]


@pytest.mark.parametrize("text", ["生椰拿铁2、厚乳拿铁1", "生椰拿铁2，厚乳拿铁1"])
def test_a_count_after_an_item_before_a_comma_is_still_its_count(text):
    assert _lines(text) == [("luckin-coconut-latte", 2, ()), ("luckin-thick-milk-latte", 1, ())]


@pytest.mark.parametrize("text,count", [
    ("给办公室5个人每人一杯生椰拿铁", 5), ("每人一杯生椰拿铁，一共5人", 5), ("我们三个人，每人一杯生椰拿铁", 3),
    ("5个人每人两杯生椰拿铁", 10), ("一人一杯生椰拿铁，我们4个人", 4), ("coconut latte for each of us, 3 of us", 3),
])
def test_each_person_times_the_number_of_people_is_the_count(text, count):
    assert _lines(text) == [("luckin-coconut-latte", count, ())]


def test_a_split_of_per_person_cups_is_a_split_of_the_total():
    assert _lines("5个人每人一杯生椰拿铁，其中两杯少冰") == [
        ("luckin-coconut-latte", 2, (("temperature", "less_ice"),)), ("luckin-coconut-latte", 3, ())]


@pytest.mark.parametrize("text,count", [("每人一杯生椰拿铁", 1), ("三个人的生椰拿铁", 3), ("3人份生椰拿铁", 3)])
def test_without_both_each_and_a_number_of_people_the_count_is_as_said(text, count):
    assert _lines(text) == [("luckin-coconut-latte", count, ())]


@pytest.mark.parametrize("text", ["10^9杯美式", "美式10^9杯", "1e9杯美式", "10**9杯美式", "10的9次方杯美式", "美式 x1e9", "美式 2**3"])
def test_a_count_written_as_a_power_is_asked_about_not_read_as_its_last_digits(text):
    reading = RESOLVER.resolve(text)
    # 10^9杯 ordered 9 americanos, 2^10 ten.
    assert not reading.candidates
    assert "不是能下单的数量" in reading.clarification


@pytest.mark.parametrize("text,count", [
    ("美式 9,999,999杯", 9_999_999), ("美式 1,000", 1_000), ("美式 10k杯", 10_000), ("美式 1.5k", 1_500), ("2w杯美式", 20_000),
    ("a hundred americanos", 100), ("a thousand americanos", 1_000), ("two million americanos", 2_000_000),
])
def test_a_count_with_thousands_separators_or_a_magnitude_is_read_whole(text, count):
    # 9,999,999 ordered 2,007 (three counts added up), 1,000 asked about "000", 10k杯 ordered 10
    # and "a thousand" one: the catalog now answers "at most 99" instead.
    assert _lines(text) == [("luckin-americano", count, ())]
