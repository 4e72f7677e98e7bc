"""ascii_int: caller-supplied whole numbers (page tokens, payment references, beacon rounds)."""
import pytest

from services.common.decimal_text import INT64_MAX, INT64_MIN, ascii_int


@pytest.mark.parametrize("text, value", [("0", 0), ("123", 123), ("007", 7), (str(INT64_MAX), INT64_MAX)])
def test_ascii_digits_within_int64_are_their_value(text, value):
    assert ascii_int(text) == value


def test_one_past_int64_is_refused():
    assert INT64_MAX == 9223372036854775807
    assert ascii_int("9223372036854775807") == INT64_MAX
    assert ascii_int("9223372036854775808") is None


def test_a_minus_sign_only_when_negative_is_asked_for():
    assert ascii_int("-5") is None
    assert ascii_int("-5", negative=True) == -5
    assert ascii_int("-0", negative=True) == 0
    assert ascii_int("5", negative=True) == 5
    assert ascii_int(str(INT64_MIN), negative=True) == INT64_MIN == -9223372036854775808
    assert ascii_int("-9223372036854775809", negative=True) is None
    assert ascii_int("--5", negative=True) is None


@pytest.mark.parametrize("text", [
    "", "-", "+1", " 1", "1 ", "1_000", "1.0", "0x10", "1e3",
    "²",  # superscript two: str.isdigit() says yes, int() raises ValueError
    "①",  # circled one: likewise
    "١٢",  # Arabic-Indic digits: isdigit() and int() both accept them
    "１２",  # full-width digits: likewise
    "1²",
    "9" * 20,
    "0" * 20,  # 20 digits even though the value is small
])
def test_anything_but_ascii_digits_within_int64_is_none(text):
    assert ascii_int(text) is None
    assert ascii_int(text, negative=True) is None


@pytest.mark.parametrize("text", ["-", "-²", "-١٢", "-" + "9" * 20, "- 1"])
def test_a_bad_number_after_a_minus_sign_is_none(text):
    assert ascii_int(text, negative=True) is None


def test_minimum_and_maximum_are_inclusive_bounds():
    assert ascii_int("0", minimum=0, maximum=1000) == 0
    assert ascii_int("1000", minimum=0, maximum=1000) == 1000
    assert ascii_int("1001", minimum=0, maximum=1000) is None
    assert ascii_int("-1", negative=True, minimum=0) is None
    assert ascii_int("4", minimum=5) is None
    assert ascii_int("5", minimum=5) == 5
    assert ascii_int("-3", negative=True, minimum=-3, maximum=-1) == -3
    assert ascii_int("-4", negative=True, minimum=-3, maximum=-1) is None
    assert ascii_int("0", negative=True, minimum=-3, maximum=-1) is None
