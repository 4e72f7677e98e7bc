"""Rules of the catalog model: opening hours, validation of import rows and menus, quotes."""
from datetime import datetime, timezone

import pytest

from services.catalog import model
from services.catalog.model import (
    Brand, MenuItem, OpenClock, Option, OptionGroup, StoreRecord, WantedLine, decode_hours, encode_hours,
    haversine_m, open_at, quote, validate_hours, validate_store_row,
)
from services.common.errors import InvalidArgument

SIZE = OptionGroup("size", "杯型", (Option("medium", "中杯", 0), Option("large", "大杯", 300)), "medium")
ICE = OptionGroup("temperature", "温度", (Option("regular_ice", "正常冰"), Option("less_ice", "少冰"), Option("hot", "热")), "regular_ice")
LATTE = MenuItem("latte", "luckin", "生椰拿铁", 2900, ("coconut latte",), "咖啡", (SIZE, ICE))
FRIES = MenuItem("fries", "kfc", "薯条(中)", 1200)
MENU = {"latte": LATTE, "fries": FRIES}
NOW = datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)  # Wednesday 12:00 in Shanghai


def store(hours=(), closed=False):
    return StoreRecord("s1", "luckin", "瑞幸(西湖店)", 30.27, 120.16, hours, closed, "Asia/Shanghai")


def hours(*periods):
    h, why = validate_hours(periods)
    assert h is not None, why
    return h


def test_a_period_past_midnight_covers_the_early_hours_of_the_next_day():
    late = hours((3, 18 * 60, 26 * 60))  # Wednesday 18:00 .. Thursday 02:00
    assert open_at(late, 3, 23 * 60)
    assert open_at(late, 4, 60)
    assert not open_at(late, 4, 2 * 60)
    assert not open_at(late, 3, 17 * 60)


def test_a_sunday_night_period_runs_into_monday_morning():
    assert open_at(hours((7, 20 * 60, 25 * 60)), 1, 30)


def test_an_empty_timetable_means_always_open_and_the_closed_flag_wins():
    clock = OpenClock(NOW)
    assert clock.is_open(store())
    assert not clock.is_open(store(closed=True))


def test_open_now_uses_the_store_time_zone():
    # 04:00 UTC is 12:00 in Shanghai: open 09:00-11:00 there means closed now.
    morning = hours(*[(d, 9 * 60, 11 * 60) for d in range(1, 8)])
    assert not OpenClock(NOW).is_open(store(morning))
    assert OpenClock(NOW.replace(hour=2)).is_open(store(morning))


@pytest.mark.parametrize("period", [(0, 60, 120), (8, 60, 120), (1, -1, 120), (1, 1440, 1500), (1, 600, 600), (1, 600, 2881)])
def test_bad_periods_are_refused_with_a_reason(period):
    h, why = validate_hours([period])
    assert h is None and why


def test_hours_round_trip_through_their_text_form_and_are_shared():
    h = hours((1, 420, 1320), (2, 420, 1500))
    assert decode_hours(encode_hours(h)) == h
    assert decode_hours(encode_hours(h)) is decode_hours(encode_hours(h))


def row(**kw):
    args = dict(row_index=7, store_id="s1", brand_id="luckin", name="瑞幸", address="", city="杭州", lat=30.0, lng=120.0,
                periods=[], closed=False, time_zone="", known_brands={"luckin": object()})
    args.update(kw)
    return validate_store_row(**args)


@pytest.mark.parametrize("kw, reason", [
    ({"store_id": ""}, model.MISSING_STORE_ID),
    ({"name": " "}, model.MISSING_NAME),
    ({"brand_id": "starbucks"}, model.UNKNOWN_BRAND),
    ({"lat": 91.0}, model.LOCATION_OUT_OF_RANGE),
    ({"lng": -181.0}, model.LOCATION_OUT_OF_RANGE),
    ({"lat": float("nan")}, model.LOCATION_OUT_OF_RANGE),
    ({"lat": 0.0, "lng": 0.0}, model.LOCATION_OUT_OF_RANGE),
    ({"periods": [(1, 600, 500)]}, model.BAD_OPENING_HOURS),
    ({"time_zone": "Mars/Olympus"}, model.BAD_TIME_ZONE),
    # Zones the host decides: the hours would move with the machine the catalog runs on.
    ({"time_zone": "localtime"}, model.BAD_TIME_ZONE),
    ({"time_zone": "Factory"}, model.BAD_TIME_ZONE),
    ({"store_id": "x" * 200}, model.FIELD_TOO_LONG),
    # Ids the order service and merchant grants then could not carry.
    ({"store_id": " s1"}, model.INVALID_STORE_ID),
    ({"store_id": "s 1"}, model.INVALID_STORE_ID),
    ({"store_id": "s1\n"}, model.INVALID_STORE_ID),
    ({"store_id": "s\x001"}, model.INVALID_STORE_ID),
    ({"store_id": "s\u30001"}, model.INVALID_STORE_ID),
])
def test_a_bad_import_row_is_rejected_with_its_index_and_reason(kw, reason):
    out = row(**kw)
    assert isinstance(out, model.Rejection)
    assert (out.row_index, out.reason) == (7, reason)


def test_a_good_row_defaults_to_shanghai_time():
    out = row()
    assert isinstance(out, model.StoreRow) and out.time_zone == "Asia/Shanghai"


def test_quote_prices_options_and_defaults():
    q = quote(store(), MENU, set(), [WantedLine("latte", 2, {"size": "large", "temperature": "less_ice"}), WantedLine("fries", 1)], NOW, is_open=True)
    assert q.orderable
    latte, fries = q.lines
    assert latte.unit_price_fen == 3200 and latte.line_total_fen == 6400
    assert [(o.group_id, o.option_id) for o in latte.options] == [("size", "large"), ("temperature", "less_ice")]
    assert fries.line_total_fen == 1200 and fries.options == ()
    assert q.total_fen == 7600


def test_quote_reports_every_problem_of_every_line():
    q = quote(
        store(), MENU, {"fries"},
        [WantedLine("nope", 1), WantedLine("fries", 1), WantedLine("latte", 1, {"size": "venti"}),
         WantedLine("latte", 1, {"sugar": "half"}), WantedLine("latte", 0), WantedLine("latte", 100), WantedLine("latte", 99)],
        NOW, is_open=False,
    )
    got = [(p.line_index, p.reason) for p in q.problems]
    assert got == [
        (-1, model.STORE_CLOSED), (0, model.UNKNOWN_ITEM), (1, model.ITEM_SOLD_OUT), (2, model.OPTION_NOT_OFFERED),
        (3, model.OPTION_NOT_OFFERED), (4, model.QUANTITY_OUT_OF_RANGE), (5, model.QUANTITY_OUT_OF_RANGE),
    ]
    assert [l.line_index for l in q.lines] == [6] and q.total_fen == 99 * 2900
    assert not q.orderable


def test_card_covers_at_most_its_face_value():
    assert model.card_cover(1900, 2500) == (1900, 0)
    assert model.card_cover(5800, 2500) == (2500, 3300)


def test_haversine_matches_a_known_distance():
    # Shanghai People's Square to Hangzhou West Lake: about 165 km.
    assert 160_000 < haversine_m(31.2335, 121.4750, 30.2590, 120.1300) < 170_000


def test_menu_validation_names_the_bad_fields():
    with pytest.raises(InvalidArgument) as err:
        model.validate_item(MenuItem("", "luckin", "", 0, option_groups=(OptionGroup("size", "杯型", (), "x"),)))
    fields = {f for f, _ in err.value.violations}
    assert {"item.item_id", "item.name", "item.price_fen", "item.option_groups[0].options"} <= fields
    with pytest.raises(InvalidArgument):
        model.validate_brand(Brand("", ""))


def test_names_with_control_characters_are_refused_and_other_scripts_and_emoji_are_kept():
    # A NUL or a line break in a store name was stored and served to every app and kitchen
    # ticket; ideographic spaces, emoji and zero-width joiners are ordinary text.
    def row(**fields):
        values = dict(name="喜茶(测试店)", address="南京东路1号", city="上海") | fields
        return model.validate_store_row(
            0, "s1", "heytea", values["name"], values["address"], values["city"], 31.0, 121.0, (), False, "", {"heytea": None}
        )

    for bad in ({"name": "喜茶\x00店"}, {"name": "喜茶\n店"}, {"address": "南京东路\r\n1号"}, {"city": "上海\x85"}, {"name": "店\x7f"},
                {"name": "喜茶\u2028店"}, {"address": "南京东路\u20291号"}, {"name": "\u202e店茶喜"}, {"name": "喜\u2066茶\u2069"}):
        rejected = row(**bad)
        assert isinstance(rejected, model.Rejection) and rejected.reason == model.CONTROL_CHARACTERS, bad
    kept = row(name="🍵喜茶\u3000(测试)\u200d店", address="Rue de l'Église 1")
    assert isinstance(kept, model.StoreRow) and kept.name == "🍵喜茶\u3000(测试)\u200d店"
    for bad_brand in (Brand("b", "品牌\x00"), Brand("b", "品牌", aliases=("别\n名",))):
        with pytest.raises(InvalidArgument):
            model.validate_brand(bad_brand)
    for bad_item in (
        MenuItem("i", "b", "拿\x1b铁", 100),
        MenuItem("i", "b", "拿铁", 100, aliases=("latte\t",)),
        MenuItem("i", "b", "拿铁", 100, option_groups=(OptionGroup("size", "杯\x00型", (Option("l", "大杯"),)),)),
        MenuItem("i", "b", "拿铁", 100, option_groups=(OptionGroup("size", "杯型", (Option("l", "大\n杯"),)),)),
    ):
        with pytest.raises(InvalidArgument):
            model.validate_item(bad_item)
    model.validate_item(MenuItem("i", "b", "生椰拿铁🥥", 100, aliases=("coconut latte",)))


def test_a_negative_option_is_taken_when_a_group_every_line_must_choose_from_keeps_the_price_above_zero():
    # A set meal priced from 10 yuan: its main course adds at least 15, "no drink" takes 12 off.
    # No line can cost less than 13 yuan, so the item is valid, though 10 - 12 alone is below 0.
    main = OptionGroup("main", "主食", (Option("burger", "汉堡", 1500), Option("wrap", "卷", 2000)))
    drink = OptionGroup("drink", "饮料", (Option("cola", "可乐", 0), Option("none", "不要饮料", -1200)))
    meal = MenuItem("meal", "kfc", "超值套餐", 1000, option_groups=(main, drink))
    model.validate_item(meal)
    line = quote(store(), {"meal": meal}, set(), [WantedLine("meal", 1, {"drink": "none"})], NOW, is_open=True)
    assert line.total_fen == 1300


def test_options_whose_cheapest_choice_goes_below_zero_are_still_refused():
    drink = OptionGroup("drink", "饮料", (Option("cola", "可乐", 0), Option("none", "不要饮料", -1200)))
    with pytest.raises(InvalidArgument):
        model.validate_item(MenuItem("meal", "kfc", "超值套餐", 1000, option_groups=(drink,)))
