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
# 万 and 亿 close a section: 一百万 is (一百) x 万, 三千万 is (三千) x 万, 一万亿 is (一万) x 亿.
_CN_BIG_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}
_CN_NUM_CHARS = "".join(_CN_DIGITS) + "".join(_CN_UNITS) + "".join(_CN_BIG_UNITS)

# Measure words people put after a number when ordering food and groceries.
MEASURE_WORDS = "杯个份盒只块瓶袋斤枚包罐桶串根听支件箱碗颗粒条张客套桶"
# Measures that multiply: 一对 = 2, 一双 = 2, 一打 = 12.
_MULTIPLYING = {"对": 2, "双": 2, "打": 12}
# Traditional spellings of the measure words and money words above, one character for one, so a
# match keeps its place in the text as written (兩個 is 两个: two, not one).
_TRADITIONAL = str.maketrans("個隻塊條張顆盃對雙聽錢內", "个只块条张颗杯对双听钱内")

_EN_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
    "a couple": 2, "couple of": 2, "a pair of": 2, "pair of": 2, "a dozen": 12, "dozen": 12,
    "half a dozen": 6, "a half dozen": 6, "half dozen": 6, "a half-dozen": 6, "half-dozen": 6,
}


def parse_chinese_numeral(s: str) -> int | None:
    """一 -> 1, 十二 -> 12, 二十 -> 20, 两百 -> 200, 一百零五 -> 105, 一百二 -> 120, 一百万 -> 1000000,
    12 -> 12; None if not a number. Two digits in a row (两三, 七八: "two or three") are an estimate,
    not a number, so they are None too."""
    if not s:
        return None
    if s.isascii() and s.isdigit():
        return int(s)
    total = 0       # whole 亿 sections
    wan = 0         # whole 万 sections since the last 亿
    small = 0       # below 万
    current = None  # a digit waiting for its unit
    last_unit = 0   # the unit just before `current` (一百二 is 120), 0 after 零 or at the start
    for ch in s:
        if ch in _CN_DIGITS:
            d = _CN_DIGITS[ch]
            if current is not None:
                return None  # 两三, 一零: not one number
            if d == 0:
                last_unit = 0  # 零 only holds a place: 一百零五
                continue
            current = d
        elif ch in _CN_UNITS:
            # 十二: a unit with no digit before it counts one of it.
            small += (1 if current is None else current) * _CN_UNITS[ch]
            current, last_unit = None, _CN_UNITS[ch]
        elif ch in _CN_BIG_UNITS:
            big = _CN_BIG_UNITS[ch]
            below = small + (current or 0)
            if big == 10_000:
                wan += (below or 1) * big
            else:
                total += ((wan + below) or 1) * big
                wan = 0
            small, current, last_unit = 0, None, big
        else:
            return None
    if current is not None and last_unit >= 100:
        current *= last_unit // 10  # 一百二 is 120, 两万五 is 25000: the digit is one place lower
    return total + wan + small + (current or 0)


@dataclass(frozen=True)
class QuantityMatch:
    start: int
    end: int
    quantity: int
    # True when a measure word, x-marker or number word makes it unmistakably a count; bare digits are
    # weaker ("3 生椰拿铁" is a count, but the resolver only trusts them next to an item).
    marked: bool = True
    # Set (and quantity 0) when the phrase is a count that cannot be ordered as said: "fraction"
    # (3.5杯, 半杯), "negative" (-2杯), "range" (2-3杯, 两三杯) or "zero" (0杯). The caller must
    # ask, not guess: reading 3.5杯 as 5 or -2杯 as 2 orders something nobody asked for.
    problem: str = ""
    # True for a number of people (5个人, 三位, 4 people): a count of cups only with 每人 (each).
    people: bool = False
    # True for the size of a pack (10个装): the caller counts it only when nothing counts the packs.
    pack: bool = False


_CN_NUM = f"[{_CN_NUM_CHARS}]+"
# Who a number of people are (两个小朋友, 三个孩子): see the "people" patterns.
_PEOPLE_NOUNS = "小朋友|朋友|孩子|小孩|宝宝|同事|同学|大人|老人|男生|女生|室友|人"
_DIGITS = r"\d+(?:\.\d+|/\d+)?"  # 3, 3.5, 1/2
_MEASURE_CLASS = f"[{MEASURE_WORDS}对双打]"
# A number starts where nothing before it could be part of it: no digit, decimal point or minus sign
# before digits (else 1005杯 reads as 005杯, 3.5杯 as 5杯, 1/2杯 as 2杯), no numeral before Chinese numerals
# (一百万杯 is not 万杯), and no 第 (第2杯半价 is "the second cup", not a count).
_DIGIT_LEFT = r"(?<![\d.\-−第负])(?<!\d/)"
_CN_LEFT = f"(?<![{_CN_NUM_CHARS}第负])"
_RANGE_SEP = r"\s?[-−~～到至]\s?"
# Where an address goes on after a building, unit, floor or road, a number is the next part of it.
_ADDRESS_LEFT = r"(?<!单元)(?<![号楼栋层座室路街巷弄])"
_NUMBER = (rf"(?:{_DIGIT_LEFT}(?P<sign>[-−]|负)?(?P<num>{_DIGITS})|{_CN_LEFT}(?P<csign>负)?(?P<cnum>{_CN_NUM}))"
           rf"(?:{_RANGE_SEP}(?P<num2>{_DIGITS}|{_CN_NUM}))?")
# Magnitudes written after a number: 10k, 2w (万, as people type it), a thousand, two million.
_MAGNITUDES = {"k": 1_000, "w": 10_000, "hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_EN_SMALL = "|".join(k for k, v in _EN_NUMBERS.items() if " " not in k and v <= 12)
# 块 is money, not pieces, when money words follow it (25块钱, 30块以内, 4块的柠檬水, 29块太贵了, 9块9,
# 29块一杯), or when it points at the one that costs so much (29块那个: read as pieces, 29 lattes).
_KUAI_MONEY = rf"块(?=钱|以内|以下|之内|内|左右|多|的|太|那|这|\d|一[{MEASURE_WORDS}]|每)"
_MONEY_UNIT = r"(?:块钱|块|元|rmb|yuan|刀)"
# Words that make the amount after them, or before them, a ceiling on the price: 预算 and 人均 are
# money words themselves; 不超过 and 最多 are money only with a unit (最多两杯 is a count), or after a
# word for the price (价格别超过25: read as a count, it ordered twenty-five coffees).
_BUDGET_AFTER = r"(?:以内|以下|之内|内)"
_CEILING = r"(?:不超过|不超|别超过|别超|不要超过|不能超过|不到|低于|少于|最多|顶多)"
_PRICE_WORD = r"(?:价格|价钱|价位|单价|售价)"
_EN_BUDGET = r"(?<![a-z])(?:under|below|less than|within|max|up to|budget)\s?"
# Amounts of money: a price (¥29, 4块的, 9块9) or a budget (30块以内, under 20). They are never counts:
# read as one, 不超过22块的汉堡 ordered 22 burgers and 生椰拿铁(¥29)x2 twenty-nine lattes.
_MONEY_PATTERNS = [
    (re.compile(rf"(?:预算|人均)\s?[¥$]?\s?{_NUMBER}\s?{_MONEY_UNIT}?\s?{_BUDGET_AFTER}?"), True),
    (re.compile(rf"{_PRICE_WORD}\s?(?:在|要|得)?\s?{_CEILING}\s?[¥$]?\s?{_NUMBER}\s?{_MONEY_UNIT}?\s?{_BUDGET_AFTER}?"), True),
    (re.compile(rf"{_CEILING}\s?(?P<cur>[¥$])?\s?{_NUMBER}\s?(?P<unit>{_MONEY_UNIT})?\s?{_BUDGET_AFTER}?"), True),
    (re.compile(rf"{_EN_BUDGET}(?:[¥$]|rmb\s?)?{_NUMBER}(?:\s?(?:{_MONEY_UNIT}|dollars?|bucks?)|(?!\s?[a-z]))"), True),
    (re.compile(rf"{_NUMBER}\s?{_MONEY_UNIT}?\s?{_BUDGET_AFTER}"), True),
    (re.compile(rf"[¥$]\s?{_NUMBER}"), False),
    # 29块一杯 is the price of one cup, not a cup more.
    (re.compile(rf"{_NUMBER}\s?(?:{_KUAI_MONEY}\d?|块钱|元|rmb|yuan)(?:\s?一[{MEASURE_WORDS}])?"), False),
]
_MONEY_HINT = re.compile(r"[¥$块元钱刀以内预均超到于多]|(?<![a-z])(?:under|below|less|within|max|up|budget|yuan|rmb)")
_PATTERNS = [
    # A number written as a power (10^9, 10**9, 1e9, 10的9次方) is a count this reader does not
    # work out: its last digits alone were read (10^9杯 ordered 9 cups). It is asked about.
    (re.compile(rf"{_DIGIT_LEFT}(?:\d+(?:\.\d+)?|{_CN_NUM})\s?(?:\^|\*\*|e(?=[+\-−]?\d)|的\s?(?=(?:\d+|{_CN_NUM})\s?次方))"
                rf"\s?[+\-−]?(?:\d+|{_CN_NUM})(?:\s?次方)?(?:\s?{_MEASURE_CLASS})?"), "power"),
    # Digits grouped by thousands (9,999,999 and 1,000): one number, not three counts that added
    # up (9,999,999 ordered 2,007 cups) nor a count of 000.
    (re.compile(rf"{_DIGIT_LEFT}(?P<grouped>\d{{1,3}}(?:,\d{{3}})+)(?![\d.]|,\d)(?:\s?(?P<measure>{_MEASURE_CLASS}))?"), "grouped"),
    # 10k, 2w, 1.5k; a hundred, two thousand, 3 million: the magnitude is part of the number
    # (10k杯 ordered 10 cups, "a thousand lattes" one).
    (re.compile(rf"(?<![a-z]){_DIGIT_LEFT}(?P<num>\d+(?:\.\d+)?)(?P<mag>[kw])(?![a-z])(?:\s?(?P<measure>{_MEASURE_CLASS}))?"), "magnitude"),
    (re.compile(rf"(?<![a-z])(?P<num>\d+|{_EN_SMALL})\s(?P<mag>hundred|thousand|million|billion)(?![a-z])"), "magnitude"),
    # 5个人, 三位, 5人 (but 3人份 is three portions), 4 people, 3 of us: a number of people.
    # 五口人, 一家四口: a family counts its members in 口.
    (re.compile(rf"{_NUMBER}\s?(?:个人|口人|位|人|口(?=\s*(?:$|[,，。.!！;；])))(?!份)"), "people"),
    # 两个小朋友, 三个孩子, 四位同事: people named by who they are. Read as a count of the thing, 三个孩子每人一个甜筒
    # ordered one ice cream, the 每人 multiplying nobody.
    (re.compile(rf"{_NUMBER}\s?[个位名]\s?(?:{_PEOPLE_NOUNS})"), "people"),
    (re.compile(r"(?<![a-z])(?P<num>\d+|two|three|four|five|six|seven|eight|nine|ten)\s(?:people|persons|of us)(?![a-z])"),
     "english-people"),
    # 我们俩, 咱仨, 我们五个: the speakers, counted; a number of people like 5个人.
    (re.compile(r"(?<=[们我咱])\s?[俩倆仨]"), "colloquial-people"),
    (re.compile(rf"(?<=们)\s?{_NUMBER}\s?个(?=\s*(?:$|[,，。.!！;；]|一人|每))"), "people"),
    # x2, ×3, *2 and 2x (not inside a word); x1.5 and x-1 are read whole, to be refused.
    (re.compile(rf"(?<![a-z0-9])[x×*]\s?(?P<sign>[-−])?(?P<num>{_DIGITS})(?![0-9a-z]|[./]\d)"), "x"),
    (re.compile(rf"(?<![a-z]){_DIGIT_LEFT}(?P<sign>[-−])?(?P<num>{_DIGITS})\s?[x×](?![a-z0-9])"), "x"),
    # 几杯, 十几个, 好几份: how many is not said. Read as nothing, 来几杯生椰拿铁 ordered one.
    (re.compile(rf"(?:好|十|[{_CN_NUM_CHARS}]?[十百])?几[十百]?\s?{_MEASURE_CLASS}(?!钱)"), "vague"),
    # 一杯半 (one and a half cups) is no whole count; 一杯半糖 is one cup at half sugar.
    (re.compile(rf"{_NUMBER}\s?{_MEASURE_CLASS}半(?![糖甜价打冰])"), "vague-half"),
    # 10个装, 三块装: the size of a pack (see QuantityMatch.pack).
    (re.compile(rf"{_NUMBER}\s?(?P<measure>{_MEASURE_CLASS})\s?装(?<!{_KUAI_MONEY}装)"), "pack"),
    # 3杯, 12 个, 两杯, 十二杯, 一对, 1005杯, 一百万杯; 3.5杯, -2杯, 2-3杯 (to be refused)
    # (but 25块钱 / 30块以内 is money, not a count)
    (re.compile(rf"{_NUMBER}\s?(?P<measure>{_MEASURE_CLASS})(?<!{_KUAI_MONEY})"), "measured"),
    # 半打 is half a dozen: six, a whole count (unlike 半杯).
    (re.compile(f"{_CN_LEFT}半\\s?打"), "half-dozen"),
    # 半杯 (half a cup) is not a count either.
    (re.compile(f"{_CN_LEFT}半\\s?[{MEASURE_WORDS}](?<!{_KUAI_MONEY})"), "half"),
    # 俩 (two), 仨 (three) stand alone; 双份 / 双杯 (a double) is two portions
    (re.compile(r"[俩倆仨]"), "colloquial"),
    (re.compile(f"{_CN_LEFT}双\\s?[份杯]"), "colloquial"),
    # English number words (longest first) before a noun.
    (re.compile(r"(?<![a-z])(" + "|".join(sorted((re.escape(k) for k in _EN_NUMBERS), key=len, reverse=True))
                + r")(?![a-z])"), "english"),
    # bare digits, not part of a size like 500g or 1kg, a list number (1.) or a price range (20-30元),
    # nor a price said as "19的" or "21.5那个" (两杯19的多肉葡萄: the 19-yuan one, not 19 cups), nor
    # the parts of an address (5号楼2单元1102, 建国路88: read as counts, 1,108 egg tarts were ordered)
    (re.compile(rf"(?<![a-z]){_ADDRESS_LEFT}{_DIGIT_LEFT}(?P<sign>[-−])?(?P<num>{_DIGITS})(?:{_RANGE_SEP}(?P<num2>{_DIGITS}))?"
                r"(?![0-9.]|/\d|\s?[-−~～到至]\s?\d|\s?的|\s?[那这][个款种杯份]|\s?(?:g|kg|ml|l|km|克|毫升|元|块|点|号|楼|层|栋|单元|室|分|岁|%|折|公里|千米|米|小时)(?![a-z]))"),
     "bare"),
]


# Asking what one costs (蛋挞多少钱一个？) counts nothing: read as a count, 多少钱一个？来四个 was five.
_UNIT_PRICE_QUESTION = re.compile(rf"(?:多少钱|几块钱|几块|几元|什么价|啥价)\s?一\s?[{MEASURE_WORDS}]")


def scan_quantities(text: str, *, money_masked: bool = False) -> list[QuantityMatch]:
    """Every non-overlapping quantity phrase in `text` (lower-cased), leftmost first. A count that cannot
    be ordered as said (3.5杯, -2杯, 两三杯) is found too, with its `problem` set. Amounts of money are
    no counts (`money_masked`: the caller has blanked them already)."""
    text = text.translate(_TRADITIONAL)
    found: list[QuantityMatch] = []
    taken = [False] * len(text)
    for start, end, _, _ in ([] if money_masked else scan_money(text)):
        taken[start:end] = [True] * (end - start)
    for m in _UNIT_PRICE_QUESTION.finditer(text):
        taken[m.start():m.end()] = [True] * (m.end() - m.start())
    for pattern, kind in _PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start():m.end()]):
                continue
            value = _value(m, kind)
            if value is None:
                continue
            q, problem = value
            if q <= 0 and not problem:
                problem = "negative" if q < 0 else "zero"
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append(QuantityMatch(m.start(), m.end(), 0 if problem else q, marked=kind != "bare",
                                       people=kind in ("people", "english-people", "colloquial-people"),
                                       problem=problem, pack=kind == "pack"))
    found.sort(key=lambda q: q.start)
    return found


def scan_money(text: str) -> list[tuple[int, int, int, bool]]:
    """(start, end, fen, is_budget) of every amount of money in `text` (lower-cased): prices (¥29,
    4块的柠檬水) and budgets (30块以内, 不超过22块, under 20), leftmost first, none overlapping."""
    if not _MONEY_HINT.search(text):
        return []  # most stretches of a sentence (，一杯) hold no money: six searches saved
    text = text.translate(_TRADITIONAL)
    taken = [False] * len(text)
    found = []
    for pattern, budget in _MONEY_PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start():m.end()]) or m.group("num2"):
                continue
            if "cur" in pattern.groupindex and not (m.group("cur") or m.group("unit")):
                continue  # 最多两杯: at most two cups, no money
            raw = m.group("num") or m.group("cnum")
            if "." in raw:
                whole, _, frac = raw.partition(".")
                fen = int(whole) * 100 + int((frac + "00")[:2])
            else:
                n, problem = _number(raw)
                if problem:
                    continue
                fen = n * 100
            taken[m.start():m.end()] = [True] * (m.end() - m.start())
            found.append((m.start(), m.end(), fen, budget))
    found.sort()
    return found


def budget_fen(text: str) -> int | None:
    """The most the sentence says one thing may cost (30块以内的咖啡: 3,000 fen), None if it says none."""
    caps = [fen for _, _, fen, budget in scan_money(text) if budget]
    return min(caps) if caps else None


def _number(s: str) -> tuple[int, str]:
    """The whole number `s` states (digits, 3.0 or Chinese numerals), or a problem: 3.5 and 1/2 are
    fractions, 两三 an estimate."""
    if "/" in s:
        return 0, "fraction"
    if "." in s:
        whole, _, frac = s.partition(".")
        return (int(whole), "") if not frac.strip("0") else (0, "fraction")
    if s.isdigit():
        return int(s), ""
    n = parse_chinese_numeral(s)
    return (n, "") if n is not None else (0, "range")


def _value(m: re.Match[str], kind: str) -> tuple[int, str] | None:
    """(count, problem) of a match, None if it is no quantity after all."""
    if kind in ("colloquial", "colloquial-people"):
        return (3 if m.group(0).strip() == "仨" else 2), ""
    if kind == "english":
        return _EN_NUMBERS[m.group(1)], ""
    if kind == "english-people":
        num = m.group("num")
        return (int(num) if num.isdigit() else _EN_NUMBERS[num]), ""
    if kind == "half-dozen":
        return 6, ""
    if kind in ("half", "vague-half"):
        return 0, "fraction"
    if kind == "vague":
        return 0, "range"
    if kind == "power":
        return 0, "power"
    if kind == "grouped":
        return int(m.group("grouped").replace(",", "")) * _MULTIPLYING.get(m.group("measure") or "", 1), ""
    if kind == "magnitude":
        num = m.group("num")
        whole, problem = _number(num) if num[0].isdigit() else (_EN_NUMBERS[num], "")
        scale = _MAGNITUDES[m.group("mag")]
        if problem == "fraction" and "." in num:
            # 1.5k is 1,500: a whole number once scaled.
            whole_part, _, frac = num.partition(".")
            scaled = int(whole_part) * scale + int(frac) * scale // 10 ** len(frac)
            if int(frac) * scale % 10 ** len(frac) == 0:
                return scaled, ""
            return 0, "fraction"
        return (0, problem) if problem else (whole * scale, "")
    groups = m.groupdict()
    if groups.get("num2"):
        return 0, "range"  # 2-3杯, 两到三杯: which is it?
    n, problem = _number(groups.get("num") or groups.get("cnum") or "")
    if problem:
        return 0, problem
    if groups.get("sign") or groups.get("csign"):
        return 0, "negative"
    return n * _MULTIPLYING.get(groups.get("measure") or "", 1), ""


def parse_quantity(text: str) -> int | None:
    """The single quantity a short phrase states ("两杯" -> 2, "a couple of" -> 2), else None (also
    when the phrase is a count that cannot be ordered: "3.5杯", "-2杯")."""
    qs = scan_quantities(text.lower())
    return qs[0].quantity if qs and not qs[0].problem else None
