"""Quantities: digits, Chinese numerals, colloquial forms (俩 仨 一对), English number words.

`scan_quantities(text)` finds every quantity phrase in a stretch of text that is known not to be part
of an item or option name (the resolver masks those first, so 四季春 or 10枚 never read as numbers).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}

# Measure words people put after a number when ordering food and groceries.
MEASURE_WORDS = "杯个份盒只块瓶袋斤枚包罐桶串根听支件箱碗颗粒条张客套桶"
# Measures that multiply: 一对 = 2, 一双 = 2, 一打 = 12.
_MULTIPLYING = {"对": 2, "双": 2, "打": 12}

_EN_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
    "a couple": 2, "couple of": 2, "a pair of": 2, "pair of": 2, "a dozen": 12, "dozen": 12,
    "half a dozen": 6,
}


def parse_chinese_numeral(s: str) -> int | None:
    """一 -> 1, 十二 -> 12, 二十 -> 20, 两百 -> 200, 一百零五 -> 105, 12 -> 12; None if not a number."""
    if not s:
        return None
    if s.isascii() and s.isdigit():
        return int(s)
    section, current = 0, None
    for ch in s:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            # 十二: a unit with no digit before it counts one of it.
            section += (1 if current is None else current) * _CN_UNITS[ch]
            current = None
        else:
            return None
    return section + (current or 0)


@dataclass(frozen=True)
class QuantityMatch:
    start: int
    end: int
    quantity: int
    # True when a measure word, x-marker or number word makes it unmistakably a count; bare digits are
    # weaker ("3 生椰拿铁" is a count, but the resolver only trusts them next to an item).
    marked: bool = True


_CN_NUM = "[零〇一二两兩三四五六七八九十百千]+"
_MEASURE_CLASS = f"[{MEASURE_WORDS}对双打]"
_PATTERNS = [
    # x2, ×3, *2 and 2x (not inside a word).
    (re.compile(r"(?<![a-z0-9])[x×*]\s?(\d{1,3})(?![0-9a-z])"), "x"),
    (re.compile(r"(?<![a-z0-9])(\d{1,3})\s?[x×](?![a-z0-9])"), "x"),
    # 3杯, 12 个, 两杯, 十二杯, 一对
    # (but 25块钱 / 30块以内 is money, not a count)
    (re.compile(rf"(\d{{1,3}}|{_CN_NUM})\s?({_MEASURE_CLASS})(?<!块(?=钱|以内|以下|左右|内|多))"), "measured"),
    # 俩 (two), 仨 (three) stand alone
    (re.compile(r"[俩倆仨]"), "colloquial"),
    # English number words (longest first) before a noun.
    (re.compile(r"(?<![a-z])(" + "|".join(sorted((re.escape(k) for k in _EN_NUMBERS), key=len, reverse=True))
                + r")(?![a-z])"), "english"),
    # bare digits, not part of a size like 500g or 1kg
    (re.compile(r"(?<![0-9a-z.])(\d{1,3})(?![0-9.]|\s?(?:g|kg|ml|l|克|毫升|元|块|点|号|楼|分|岁|%)(?![a-z]))"), "bare"),
]


def scan_quantities(text: str) -> list[QuantityMatch]:
    """Every non-overlapping quantity phrase in `text` (lower-cased), leftmost first."""
    found: list[QuantityMatch] = []
    taken = [False] * len(text)
    for pattern, kind in _PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start():m.end()]):
                continue
            q = _value(m, kind)
            if q is None or q <= 0:
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append(QuantityMatch(m.start(), m.end(), q, marked=kind != "bare"))
    found.sort(key=lambda q: q.start)
    return found


def _value(m: re.Match[str], kind: str) -> int | None:
    if kind == "x" or kind == "bare":
        return int(m.group(1))
    if kind == "colloquial":
        return 3 if m.group(0) == "仨" else 2
    if kind == "english":
        return _EN_NUMBERS[m.group(1)]
    n = parse_chinese_numeral(m.group(1))
    if n is None:
        return None
    return n * _MULTIPLYING.get(m.group(2), 1)


def parse_quantity(text: str) -> int | None:
    """The single quantity a short phrase states ("两杯" -> 2, "a couple of" -> 2), else None."""
    qs = scan_quantities(text.lower())
    return qs[0].quantity if qs else None
