"""The default, offline, rule-based resolver.

How a sentence is read:
1. normalise (NFKC, lower case) and cap its length;
2. find every phrase the catalog knows (brand, item name / alias / piece of a name, option, category
   word, brand we do not carry, connective), exact or by pinyin (homophones and typos such as
   生耶拿铁), and keep the set of non-overlapping phrases that explains most of the sentence
   (weighted interval scheduling, so 生耶拿铁 beats the piece 拿铁);
3. in what is left, find quantities (两杯, 俩, x2, a couple of), punctuation, and fuzzy English
   words (amercano);
4. walk the phrases left to right into order lines: a quantity before an item is its count, one after
   it too, later quantities with options split it (两杯，一杯少冰一杯去冰); options go to the item of
   their clause;
5. pick the brand that can serve every line (a named brand first), the best item per line within it,
   and turn option words into the options that item offers.
Everything that depends only on the catalog is indexed once in __init__.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Collection, Sequence

from rapidfuzz import fuzz, process

from .lexicon import (
    ADDITIVE_SEPARATORS, CATEGORY_TERMS, COUNTED_IN_KUAI, FILLER_CHARS, GENERIC_PIECES, GLOBAL_MARKERS, SEPARATORS, OPTION_PREFIXES,
)
from .lexicon import ANYTHING_WORDS, CHEAPEST_WORDS, NEGATION_AFTER, NEGATION_BEFORE
from .lexicon import NOT_OFFERED, OTHER_PRODUCT_HEADS, STOPWORDS, UNKNOWN_BRANDS
from .lexicon import is_cjk, is_traditional, normalize, pinyin_words, readings
from .numbers import MEASURE_WORDS, budget_fen, scan_money, scan_quantities
from .options import ItemOptions, agree, is_direction, option_surfaces, option_table
from .specs import BrandSpec, Candidate, ItemSpec, Reading, WantedLine

_log = logging.getLogger(__name__)

# Sentences longer than this are read only this far: it bounds the work per call whatever a caller
# sends. It is the longest text MatchIntent accepts (model.MAX_TEXT_CHARS): reading less dropped the
# end of an accepted sentence without a word (its last item or options) and still ordered the rest.
MAX_CHARS = 500
MAX_CANDIDATES = 8
# Things one sentence may ask for (an order holds at most 50 lines). Why a bound: every mention
# is chosen for at every brand that sells it, and 250 mentions of 奶茶 fill 500 characters; with
# hundreds of brands selling it one such sentence took seconds of the event loop that serves
# Quote. More is asked to be split, as no order could take them anyway.
MAX_MENTIONS = 50

BRAND, ITEM, CAT, OPT, UNKNOWN, SEP, GLOBAL, QTY = "brand", "item", "cat", "opt", "unknown", "sep", "global", "qty"
# A negation before (不要可乐) or after (可乐不要了) the phrase it takes back.
NEG_BEFORE, NEG_AFTER = "neg_before", "neg_after"
# 每人 (each person): the counts are per person, times the number of people said (5个人每人一杯).
PER_PERSON = "per_person"
# Quality of a phrase per kind when lengths tie: a category word beats a piece of an item name
# (奶茶 is a category, not 珍珠奶茶), a connective is worth little.
_KIND_QUALITY = {BRAND: 1.0, UNKNOWN: 1.0, OPT: 1.0, CAT: 0.9, SEP: 0.3, GLOBAL: 0.4}
_STANDARD_MARKERS = ("标准", "经典", "原味", "招牌", "standard", "classic", "original")
_PUNCT = re.compile(r"[,，、;；。.!！?？/|~～\n]+")
_SIZE_SUFFIX = re.compile(r"\s*(\([^)]*\)|\d+(\.\d+)?\s*(g|kg|ml|l|枚|个|只|斤|克|片)?)\s*$")
_WORD = re.compile(r"[a-z][a-z'\-]*")
_LIST_NUMBER = re.compile(r"(\d{1,2})\s?[、)]")
# The number that starts a line of a pasted list: 1 / 1. / 1、/ (1) / ① (NFKC would make ① a plain 1,
# and "7 可乐 大杯" ordered seven colas).
# Keycap digits (1️⃣ 2️⃣ … 🔟) number such lists too: each is a digit, U+FE0F and U+20E3, and NFKC keeps
# the digit, so a group order pasted with them added each line's number to its count.
_CIRCLED = "\u2460-\u2473\u2776-\u2793\U0001F51F"
_LINE_NUMBER = re.compile(rf"^[ \t\u3000]*(?:[{_CIRCLED}]|([0-9])\ufe0f?\u20e3|[(（]?([0-9０-９]{{1,2}})(?:[.．、:：)）]|[ \t\u3000]+))")
_PER_PERSON = re.compile(r"每个人|每人|每位|人手|一人(?=\s?(?:\d|[一两二三四五六七八九十俩]))"
                         r"|(?<![a-z])(?:each person|per person|each of us|everyone)(?![a-z])")
_LEAD_WORD = re.compile(r"[a-z0-9']+")
_OTHER_PRODUCT = re.compile("|".join(sorted(OTHER_PRODUCT_HEADS, key=len, reverse=True)))
# "Anything" and "the cheapest" name nothing to order: a brand said with them suggests from its menu.
_ANYTHING = re.compile("|".join((*ANYTHING_WORDS, *(w for w in CHEAPEST_WORDS if not w.isascii()))))
_CHEAPEST = re.compile("|".join(rf"(?<![a-z]){w}(?![a-z])" if w.isascii() else w for w in CHEAPEST_WORDS))
# Words that take back the option said before and put the next one in its place ("少冰，算了还是
# 去冰", "热的拿铁，不对，冰的", "hot, actually iced"): the later option is meant. Without one, two
# options of one group for one line ("冰的热拿铁", an iced hot latte) contradict each other.
# A bare no as a clause of its own: 大杯，啊不，中杯 / 热的，不不，冰的.
_BARE_NO = r"(?<![^\s,，、;；。.!！?？])(?:啊|哦|噢|呃|额|嗯)?不+(?=[\s,，、;；。.!！?？]|$)"
# An interjection and a no said inside the clause (两杯嗯不是一杯, 大杯哦不中杯): "I mean", never a refusal of
# what follows (read as one, 嗯不是一杯多肉葡萄 dropped the grape tea the user was correcting to).
_UM_NO = r"(?:啊|哦|噢|呃|额|嗯)(?:不是|不对|不)"
# 一共 / 总共 (in all) states the whole count again: 两个蛋挞，再加一个，一共三个 is three, not six.
_SAID_WRONG = r"说错了|打错了|写错了|搞错了|弄错了|错了"
_CORRECTION = re.compile(rf"算了|还是|改成|改为|改|换成|换为|换|不对|其实|应该|{_SAID_WRONG}|一共|总共|总计|合计|{_BARE_NO}|{_UM_NO}|"
                         r"(?<![a-z])(?:actually|instead|rather|make it|change|switch|i mean|no wait|sorry)(?![a-z])")

# The same for an item, less 还是 (生椰拿铁还是厚乳拿铁: "which of the two", not a change of mind).
# A sentence about an order one has (取消刚才那杯, 还没到) or a question (生椰拿铁多少钱, 还有吗,
# 好喝吗, 哪个近) names items without ordering them: read as an order it proposed, or with confirm
# placed, an order nobody asked for, on the user's card. A question followed by an order word
# (蛋挞多少钱一个？给我来四个, 有没有低糖的？有的话来一杯) is an order.
_ABOUT_AN_ORDER = re.compile(r"取消|退款|退单|退钱|还没到|没送到|还没送|怎么还没|投诉|催单|催一下|少给|漏给|"
                             r"到哪了|到哪里了|只到了|少送|漏送|送错|停售|下架了|"
                             r"(?<![a-z])(?:cancel|refund|where is my|didn'?t get|did not get|never got|never arrived|"
                             r"when it arrived|was cold|were cold|was wrong|spilled)(?![a-z])")
# Asking words (是不是, 会不会, 哪个, 为什么, 几号) and the English question that starts with its verb
# (is the bubble tea sweet?) ask about the item; so does a complaint about one received (太咸了, 难喝).
_QUESTION = re.compile(r"(?:喝|吃)(?:什么|啥)(?!都)|推荐一下|多少[钱錢]|几块[钱錢]|什么价|价格是|还有吗|还有没有|有没有|有吗|卖完了吗|好喝吗|好吃吗|哪个|"
                       r"哪家|怎么样|是什么|什么味|是不是|会不会|为什么|为啥|怎么这么|怎么那么|几号|"
                       r"太咸|太淡|难喝|难吃|不好喝|不好吃|洒了|撒了|有头发|有虫|变质|差评|太油了|太甜了|太腻了|"
                       r"(?<![天变转])凉了|拉肚子|喝腻了|吃腻了|有破的|破了|碎了|哪些|怎么回事|怎么办|"
                       r"几\s?[个只块枚片颗]\s?一\s?[盒份包袋箱桶]|"
                       r"卡路里|热量|保质期|过敏|几块(?=\s*(?:[?？]|$))|几[jJ]|([^\W\d_])[不唔]\1(?!要)|"
                       # 要热的还是冰的好？, 一打还是半打好呢: which is better is asked; 我再想想: not decided yet.
                       r"还是[^,，。.;；!！?？]{0,10}好(?:呢|吗|啊|嘞)?(?=\s*(?:[?？。.!！]|$))|好呢|再想想|想一想|考虑一下|"
                       # A complaint about a drink had (甜得发齁，你们能不能注意点).
                       r"发齁|太齁|注意点|注意一下|"
                       r"(?<![a-z])(?:how much|what'?s on|what is on|what'?s in|what is in|do you have|is there)(?![a-z])|"
                       r"^(?:is|are|does|did|was|were|why|which)(?![a-z])")
# 要 after 不 or 别 refuses (有的话我不要): it orders nothing. 订 orders (可以帮忙订一杯…吗), 订单 is an order one has.
_ORDER_WORD = re.compile(r"来|(?<![不别])要|(?<!注意)点|买|给我|帮我|帮忙|订(?!单)|整|下单|的话就|那就|就行|换|"
                         r"(?<![a-z])(?:order|want|get me|i'?ll have|give me)(?![a-z])")
# A clause that ends in 吗 and names a thing asks about it (柠檬水是现做的吗, 生椰拿铁能做热的吗) unless
# it asks for it (能帮我来一杯生椰拿铁吗); one that names nothing (两杯柠檬水，能用免单卡吗) leaves the order.
_YES_NO = re.compile(r"[^,，。.;；!！?？]*吗(?=\s*(?:[,，。.;；!！?？]|$))")


# 能换成雪碧吗 asks whether a swap is possible; 换 asks for nothing inside a yes-no question.
_ORDER_IN_YES_NO = re.compile(_ORDER_WORD.pattern.replace("|换|", "|"))


def _asked(text: str, tokens: list[_Token]) -> list[re.Match]:
    asked = [m for m in (_QUESTION.search(text),) if m]
    asked += [m for m in _YES_NO.finditer(text) if not _ORDER_IN_YES_NO.search(m.group())
              and any(t.kind in (ITEM, CAT) and m.start() <= t.start < m.end() for t in tokens)]
    return asked


def _not_an_order(text: str, tokens: list[_Token]) -> bool:
    if _ABOUT_AN_ORDER.search(text):
        return True
    return any(not _ordered_after(text, m) and not _counted_after(tokens, m.end()) for m in _asked(text, tokens))


# A request said as a question (能不能帮我点, 可不可以来一杯) orders; a real question (是不是买一打更便宜, 三十块钱够不够买两杯)
# holds the verb of its own clause: only an order word in a later clause orders.
_REQUEST_FORMS = frozenset(("能不能", "可不可", "要不要", "行不行", "好不好", "可唔可"))


def _ordered_after(text: str, asked: re.Match[str]) -> bool:
    at = asked.end()
    said = asked.group()
    if said == "是不是" or re.fullmatch(r"([^\W\d_])[不唔]\1", said) and said not in _REQUEST_FORMS:
        brk = _CLAUSE_BREAK.search(text, at)
        if brk is None:
            return False
        at = brk.end()
    return _ORDER_WORD.search(text, at) is not None


def _counted_after(tokens: list[_Token], at: int) -> bool:
    """A thing and its count said in a clause after a question (能不能别放冰啊，…，这次厚乳拿铁两杯): an order
    follows it."""
    brk = next((t.end for t in tokens if t.start >= at and t.kind == SEP and t.surface not in SEPARATORS), None)
    if brk is None:
        return False
    after = [t for t in tokens if t.start >= brk]
    return any(t.kind in (ITEM, CAT) for t in after) and any(
        t.kind == QTY and not t.people and not t.problem and not t.bare for t in after)


def _without_pack_sizes_when_packs_are_counted(tokens: list[_Token]) -> list[_Token]:
    """10个装鸡蛋来2份: the pack size describes the thing and 2份 counts it (read as a count, ten boxes of
    eggs were ordered). Alone (原味鸡来个三块装) the pack size is the count."""
    if not any(t.kind == QTY and not t.pack and not t.people for t in tokens):
        return tokens
    return [t for t in tokens if not t.pack]


# 还有吗？没有的话就柠檬水: what follows is a fallback for the item asked about, which is still wanted.
_IF_SO = re.compile(r"的话|(?:没有|没了|卖完了?)就|不然|否则")


def _without_what_was_asked_about(text: str, tokens: list[_Token]) -> list[_Token]:
    """A question or complaint followed by an order of another item (昨天的香辣鸡腿堡太咸了，今天换个原味鸡,
    生椰拿铁有吗？没有的话来两杯厚乳拿铁): the item asked about is not ordered. When the order names no
    item (蛋挞多少钱一个？给我来四个) it is of the item asked about, so that stays."""
    ends = [o.start() for m in _asked(text, tokens) if (o := _ORDER_WORD.search(text, m.end()))]
    if not ends or _IF_SO.search(text):
        return tokens
    order_from = max(ends)
    named = [t.start >= order_from for t in tokens if t.kind in (ITEM, CAT)]
    if not (any(named) and not all(named)):
        return tokens
    return [t for t in tokens if t.start >= order_from or t.kind == BRAND]


# 除了X还要Y / 除了X也来Y: X and Y both (besides); without 还 / 也 in its clause 除了X is "all but X".
_BESIDES = re.compile(r"[^,，。;；!！?？]*?(?:还|也|再|另外)")


# Asking for the cheaper or the dearer of the things named (A和B哪个便宜, 谁便宜买谁, 选便宜的那个, 要贵的那个,
# the cheaper one). 太贵 and 不便宜 say no such thing.
_COMPARED = re.compile(r"(?P<cheap>(?:哪个|哪样|哪杯|哪份|谁)(?:更|最)?(?:便宜|实惠)|(?<![太不别])(?:便宜|实惠)(?:点|一点|些)?的"
                       r"|(?<![a-z])(?:cheaper|less expensive)(?![a-z]))"
                       r"|(?P<dear>(?:哪个|哪样|哪杯|哪份|谁)(?:更|最)?贵|(?<![太不别])贵(?:点|一点|些)?的(?:那|一)"
                       r"|(?<![a-z])(?:dearer|pricier|more expensive)(?![a-z]))")
# 还是 between two things: after a clause break a change of mind (拿铁，还是美式吧), else a
# question (生椰拿铁还是厚乳拿铁).
_EITHER = re.compile(r"还是|(?<![a-z])or(?![a-z])")
_CLAUSE_BREAK = re.compile(r"[,，。.;；!！?？]")
_ITEM_CORRECTION = re.compile(rf"算了|改成|改为|换成|换为|不对|{_SAID_WRONG}|{_BARE_NO}|{_UM_NO}|"
                              r"(?<![a-z])(?:actually|instead|make it|change|switch|i mean|no wait|sorry)(?![a-z])")
# What to take if the thing asked for is sold out: 没有的话就芝芝莓莓, 没有大杯就中杯, 卖完了就换奥尔良的,
# 不然厚乳也行. Read as one more line it put both drinks on the card. 要不然 is "how about" (an offer).
_FALLBACK = re.compile(r"(?:(?:没有|没了|卖完了?|售罄|缺货)(?:的话)?[^,，。;；!！?？]{0,6}?就|(?<!要)不然|否则)"
                       r"(?:的话)?(?:就)?(?:要|来|换成|换|点|拿)?\s*$")
# A wish said before the thing (想喝生椰拿铁了，来两杯生椰拿铁): the order after it says it again.
_WISH = re.compile(r"(?:想喝|想吃|想要|馋|好想)\s*$")
# A thing said to have run out at home (家里鸡蛋没了，…送两盒鸡蛋过来): why the order after it names it, like a wish.
_RAN_OUT = re.compile(r"\s*(?:也|都)?(?:没了|没有了|用完了|吃完了|喝完了)")
# What someone had or ordered (小李点了大杯生椰少冰): what a later "the same" (我也要一杯一样的) is like.
_HAD = re.compile(r"(?:点了|买了|喝了|点的是|喝的是|要的是)[^,，。;；!！?？]{0,4}$")
# "X的" ending its clause (橙C的, 百事的就行): said of the thing before, to say which one it is.
_SAID_AS_KIND = re.compile(r"的(?:就行|就好|就可以|也行|吧)?\s*(?:[,，。.!！;；?？~～]|$)")
# Between an item and its kind or another of its names, nothing but 的 (奥尔良的汉堡, 百事的可乐,
# 草莓的那个奶昔): one thing, said twice.
_OF = re.compile(r"\s*的\s*(?:那个|这个|那种|那款)?\s*$")


@dataclass
class _Meaning:
    """What one surface phrase can mean (a phrase may name several items: 美式, 拿铁)."""
    items: dict[str, float] = field(default_factory=dict)   # item_id -> quality
    item_how: dict[str, str] = field(default_factory=dict)  # item_id -> name/alias/piece
    brand: tuple[str, float] | None = None
    option_keys: tuple[str, ...] = ()
    cats: frozenset[str] | None = None
    unknown: str = ""
    sep: bool = False
    glob: bool = False

    def best(self) -> tuple[str, float]:
        """The kind this phrase is read as, with its quality."""
        best_kind, best_q = "", 0.0
        if self.items:
            best_kind, best_q = ITEM, max(self.items.values())
        for kind, present in ((BRAND, self.brand is not None), (UNKNOWN, bool(self.unknown)),
                              (OPT, bool(self.option_keys)), (CAT, self.cats is not None),
                              (GLOBAL, self.glob), (SEP, self.sep)):
            if present:
                q = self.brand[1] if kind == BRAND and self.brand else _KIND_QUALITY[kind]
                if q > best_q:
                    best_kind, best_q = kind, q
        return best_kind, best_q


@dataclass
class _Token:
    kind: str
    start: int
    end: int
    quality: float
    surface: str
    meaning: _Meaning | None = None
    quantity: int = 0
    how: str = ""
    items: dict[str, float] = field(default_factory=dict)
    problem: str = ""  # a count that cannot be ordered as said (3.5杯, -2杯): see numbers.QuantityMatch
    people: bool = False  # a number of people (5个人), not of cups
    pack: bool = False  # the size of a pack (10个装), not a count of packs
    bare: bool = False  # digits with no measure word (25): a count only against its item
    half: bool = False  # 一半 (half of them): a count once the whole is known
    # One of the cups counted before, named by whose it is (我的那杯, 前台那杯): its options are that cup's.
    part: bool = False
    # Whom a count is for (一杯给我 -> 我), or whose cup a part is (我的那杯 -> 我).
    who: str = ""
    # The thing said before, again (一杯一样的, 他也一样): its options, unless this one says others.
    same: bool = False
    # A count multiplied by the people named before 各 / 一人 (前台和财务各一杯): theirs, one each.
    each: bool = False
    theirs: bool = False  # said as what someone had (小李点了大杯生椰): ordered only by "the same"
    # An option, count or item said after a correction (算了还是去冰, 三个，不对，五个, 多肉葡萄，不对，
    # 要多肉桃李): it replaces the one before.
    corrects: bool = False
    cheapest: bool = False  # a kind of thing said with 最便宜 (cheapest): chosen for by price
    either: bool = False  # a thing offered as the other choice (生椰拿铁还是厚乳拿铁): which one is asked
    # What to take if the thing before is sold out (没有的话就芝芝莓莓, 没有大杯就中杯): not ordered too.
    fallback: bool = False
    # An item said as "X的" closing its clause (来杯美式，橙C的): it may narrow the mention before.
    said_as_kind: bool = False
    # An item that replaces part of the count before (三杯生椰拿铁，其中一杯换成厚乳).
    partial: bool = False
    # "X的" said as the thing (草莓的来一个: the strawberry one): of every item X is a word of.
    flavour: bool = False
    # An item said as a wish (想喝生椰拿铁了): the order that follows may name it again.
    wished: bool = False


@dataclass
class _Seg:
    quantity: int
    opts: list[_Token] = field(default_factory=list)
    pre: bool = False
    # Said after 再来 / 再加 (one more): cups on top of the ones before, never a part of them.
    more: bool = False
    who: str = ""  # whom the cups are for (一杯给我)
    each: bool = False  # one each for the people named (see _Token.each)
    part: bool = False  # one of the cups before (我的那杯要热的)


@dataclass
class _Draft:
    """One thing the sentence asks for, before the brand is chosen."""
    token: _Token
    shared: list[_Token] = field(default_factory=list)
    segs: list[_Seg] = field(default_factory=list)
    inherited: int = 0  # options taken from the line before ("the same"), first in `shared`

    def portions(self, global_opts: list[_Token]) -> list[tuple[int, list[_Token]]]:
        """(quantity, option words) per order line this draft becomes."""
        base = global_opts + self.shared
        if not self.segs:
            return [(1, base)]
        if len(self.segs) == 1:
            return [(self.segs[0].quantity, base + self.segs[0].opts)]
        head = self.segs[0]
        # Cups for the people counted with 各 are theirs: a count said after them is someone else's
        # (二老各一个热的，我要一个大杯的), unless it names one of those cups (前台那杯要热的).
        added = [s for s in self.segs[1:] if s.more or (head.each and not s.part)]
        rest = [s for s in self.segs[1:] if not any(s is x for x in added)]
        more = [(s.quantity, base + s.opts) for s in added]
        rest_total = sum(s.quantity for s in rest)
        if not head.opts and head.quantity >= rest_total:
            # 两杯，一杯少冰一杯去冰: the first count is the total, the others split it. But
            # 一杯生椰拿铁，再来一杯 is two: a count after 再来 is on top (it read as one cup).
            out = [(s.quantity, base + s.opts) for s in rest]
            if head.quantity > rest_total:
                out.append((head.quantity - rest_total, base))
            return out + more
        return [(s.quantity, base + s.opts) for s in self.segs]


@dataclass(frozen=True)
class _Pick:
    item: ItemSpec
    confidence: float
    note: str


class RuleBasedResolver:
    def __init__(self, brands: Sequence[BrandSpec], items: Sequence[ItemSpec]) -> None:
        self._brands = {b.brand_id: b for b in brands}
        self._brand_order = [b.brand_id for b in brands]
        self._items = {i.item_id: i for i in items if i.brand_id in self._brands}
        self._menu_index = {item_id: n for n, item_id in enumerate(self._items)}
        self._items_by_brand: dict[str, list[ItemSpec]] = {b: [] for b in self._brands}
        for item in self._items.values():
            self._items_by_brand[item.brand_id].append(item)
        tables: dict[tuple, ItemOptions] = {}  # most items share their option groups: build each table once
        self._options: dict[str, ItemOptions] = {
            i.item_id: tables.get(i.groups) or tables.setdefault(i.groups, option_table(i)) for i in self._items.values()}
        self._standard = {i.item_id: _is_standard(i.name) for i in self._items.values()}
        self._by_category: dict[tuple[str, str], list[ItemSpec]] = {}
        for item in self._items.values():
            self._by_category.setdefault((item.brand_id, item.category), []).append(item)
        self._core = {i.item_id: _core_name(i.name) for i in self._items.values()}
        self._category = {i.item_id: i.category for i in self._items.values()}
        self._pack = {i.item_id: pack for i in self._items.values() if (pack := _pack_size(i.name))}
        self._surfaces: dict[str, _Meaning] = {}
        self._index_catalog()
        self._by_first: dict[str, list[tuple[str, _Meaning, bool, bool]]] = {}
        self._by_word: dict[str, list[tuple[str, _Meaning, bool, bool]]] = {}
        self._by_reading: dict[str, list[tuple[str, tuple[frozenset[str], ...], _Meaning]]] = {}
        # Options by reading, matched in traditional spelling only (熱的, 無糖), never by sound.
        self._by_spelling: dict[str, list[tuple[str, tuple[frozenset[str], ...], _Meaning]]] = {}
        self._longest_spelling = 0
        self._index_surfaces()
        self._fuzzy_choices = [s for s in self._surfaces if s.isascii() and len(s) >= 4
                               and s not in STOPWORDS and not self._surfaces[s].sep]
        # What no menu here offers; a catalog that offers one of them (a 燕麦奶 option) takes it off this list.
        unoffered = [w for w in NOT_OFFERED if w not in self._surfaces]
        self._not_offered = re.compile("|".join(rf"(?<![a-z]){re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w)
                                                for w in sorted(unoffered, key=len, reverse=True)) or r"(?!)")

    # ----------------------------------------------------------------------------------- indexing
    def _meaning(self, surface: str, *, normalized: bool = False) -> _Meaning | None:
        s = surface if normalized else normalize(surface)
        if not s:
            return None
        return self._surfaces.setdefault(s, _Meaning())

    def _add_item(self, surface: str, item_id: str, quality: float, how: str, normalized: bool = False) -> None:
        m = self._meaning(surface, normalized=normalized)
        if m is not None and quality > m.items.get(item_id, 0.0):
            m.items[item_id] = quality
            m.item_how[item_id] = how

    def _index_catalog(self) -> None:
        for brand in self._brands.values():
            for word, q in [(brand.name, 1.0)] + [(a, 0.99) for a in brand.aliases]:
                m = self._meaning(word)
                if m is not None and (m.brand is None or m.brand[1] < q):
                    m.brand = (brand.brand_id, q)
            py = pinyin_words(brand.name)
            if len(py) >= 2:
                for word in (" ".join(py), "".join(py)):
                    m = self._meaning(word)
                    if m is not None and m.brand is None:
                        m.brand = (brand.brand_id, 0.9)
        generic = set(GENERIC_PIECES) | set(CATEGORY_TERMS) | set(UNKNOWN_BRANDS)
        generic |= {normalize(w) for b in self._brands.values() for w in (b.name, *b.aliases)}
        generic |= {normalize(i.category) for i in self._items.values()}
        for item in self._items.values():
            core = self._core[item.item_id]
            self._add_item(item.name, item.item_id, 1.0, "name")
            self._add_item(core, item.item_id, 0.99, "name")
            for alias in item.aliases:
                self._add_item(alias, item.item_id, 0.97, "alias")
                a = normalize(alias)
                if a.isascii():
                    self._add_item(_plural(a), item.item_id, 0.95, "alias")
                    words = a.split()
                    if len(words) >= 2 and words[-1] not in STOPWORDS and len(words[-1]) >= 4:
                        # "latte" for every ... latte: the head noun names the kind, weakly.
                        for head in (words[-1], _plural(words[-1])):
                            if head not in CATEGORY_TERMS:
                                self._add_item(head, item.item_id, 0.6, "piece")
            py = pinyin_words(core)
            if len(py) >= 2:
                self._add_item(" ".join(py), item.item_id, 0.9, "pinyin")
                self._add_item("".join(py), item.item_id, 0.9, "pinyin")
            # Pieces of the Chinese name and aliases: 柠檬水 -> 冰鲜柠檬水, 草莓奶昔 -> 草莓摇摇奶昔.
            for word in {core, *(normalize(a) for a in item.aliases if any(is_cjk(c) for c in a))}:
                for piece, share in _pieces(word):
                    # 杯百香果 (of 满杯百香果) took the 杯 of 两杯百香果, and 两 alone counted nothing:
                    # a measure word starting a piece is the count's.
                    if piece in generic or piece == word or piece[0] in MEASURE_WORDS:
                        continue
                    self._add_item(piece, item.item_id, 0.5 + 0.35 * share, "piece", normalized=True)
        for surface, keys in option_surfaces(self._items.values()).items():
            m = self._meaning(surface)
            if m is not None:
                m.option_keys = keys
        brand_cats: dict[str, set[str]] = {}
        for item in self._items.values():
            brand_cats.setdefault(self._brands[item.brand_id].category, set()).add(item.category)
        terms: dict[str, set[str]] = {t: set(c) for t, c in CATEGORY_TERMS.items()}
        for item in self._items.values():
            terms.setdefault(item.category, set()).add(item.category)
        for bcat, icats in brand_cats.items():
            terms.setdefault(bcat, set()).update(icats)
        for term, cats in terms.items():
            for word in {term, _plural(term) if term.isascii() else term}:
                m = self._meaning(word)
                if m is not None:
                    m.cats = frozenset(cats)
        for word, canonical in UNKNOWN_BRANDS.items():
            m = self._meaning(word)
            if m is not None and m.brand is None:
                m.unknown = canonical
        for word in SEPARATORS:
            m = self._meaning(word)
            if m is not None:
                m.sep = True
        for word in GLOBAL_MARKERS:
            m = self._meaning(word)
            if m is not None:
                m.glob = True

    def _index_surfaces(self) -> None:
        for surface, meaning in self._surfaces.items():
            left = surface[0].isascii() and surface[0].isalnum()
            right = surface[-1].isascii() and surface[-1].isalnum()
            if left:
                # English phrases are looked up by their first word, so a big English menu does
                # not make every letter of the sentence scan a long list.
                self._by_word.setdefault(_LEAD_WORD.match(surface).group(), []).append((surface, meaning, left, right))
            else:
                self._by_first.setdefault(surface[0], []).append((surface, meaning, left, right))
            # Homophones only for whole names and aliases (and brands we do not carry): pieces of
            # names are everywhere in ordinary speech. Two-character ones only in traditional
            # spelling (可樂, 薯條): their homophones are everywhere too. Options only in traditional
            # spelling (熱的, 無糖): a sound-alike of 少冰 is no option, but 熱的 read as nothing
            # ordered the drink iced.
            if left or len(surface) < 2 or not all(is_cjk(c) for c in surface):
                continue
            named = meaning.brand is not None or meaning.unknown or any(h != "piece" for h in meaning.item_how.values())
            if named or meaning.option_keys:
                rd = tuple(readings(c) for c in surface)
                index = self._by_reading if named else self._by_spelling
                for r in rd[0]:
                    index.setdefault(r, []).append((surface, rd, meaning))
        for bucket in (*self._by_first.values(), *self._by_word.values()):
            bucket.sort(key=lambda e: -len(e[0]))
        self._longest_spelling = max((len(e[0]) for b in self._by_spelling.values() for e in b), default=0)

    # ----------------------------------------------------------------------------------- reading
    def resolve(self, text: str, *, card_face_value_fen: int = 2500) -> Reading:
        try:
            return self._resolve(text, card_face_value_fen)
        except Exception:  # pragma: no cover - a sentence must never fail the RPC: ask instead, and log
            _log.exception("intent resolver failed on %r", text[:80] if isinstance(text, str) else text)
            return self._clarify_nothing()

    def _resolve(self, text: str, face: int) -> Reading:
        raw = text if isinstance(text, str) else str(text)
        norm = _without_list_numbers(normalize(_lines_as_clauses(raw[:MAX_CHARS * 2]))[:MAX_CHARS])
        tokens, unexplained = self._tokens(norm)
        said = list(tokens)
        if _not_an_order(norm, tokens) and any(t.kind in (ITEM, CAT, BRAND) for t in tokens):
            return self._clarify_not_an_order()
        tokens = _without_what_was_asked_about(norm, tokens)
        tokens = self._without_pack_sizes(tokens)
        cheapest = _CHEAPEST.search(norm) is not None
        # 30块以内的咖啡: nothing dearer is offered, whatever the card covers.
        cap = budget_fen(norm)
        for t in tokens:
            t.cheapest = cheapest and t.kind == CAT
        compared = _COMPARED.search(norm)
        either = next((k for k, t in enumerate(tokens) if t.either), None)
        if either is not None and compared is None:
            return self._clarify_either(tokens, either)
        tokens = _without_fallbacks(tokens)
        tokens, refused = _negated(tokens)
        tokens = _halves(_one_each_for_the_named(tokens, norm))
        tokens, people, per_person_until = _headcount(tokens, norm)
        drafts, global_opts = _parse(tokens, self._category)
        drafts, left_out, not_offered = _without(drafts, refused)
        kind_refused = self._a_kind_refused_of_an_item_ordered(drafts, refused)
        if kind_refused:
            return Reading(candidates=(), clarification=kind_refused)
        if len(drafts) > MAX_MENTIONS:
            return self._clarify_too_many(len(drafts))
        drafts = self._kinds_named_by_their_item(tokens, drafts)
        known_now = [t.meaning.brand[0] for t in tokens if t.kind == BRAND and t.meaning and t.meaning.brand]
        drafts = [self._narrowed_by_description(norm, said, d, known_now, cap) for d in drafts]
        for d in drafts:
            if d.token.start < per_person_until:
                _times(d, people)
        avoid = {t.meaning.brand[0] for t in refused if t.kind == BRAND and t.meaning and t.meaning.brand}
        known = list(dict.fromkeys(t.meaning.brand[0] for t in tokens
                                   if t.kind == BRAND and t.meaning and t.meaning.brand))
        if compared is not None and len(drafts) >= 2 and all(d.token.kind == ITEM for d in drafts):
            drafts, tie = self._the_one_compared(drafts, compared, known)
            if tie:
                return Reading(candidates=(), clarification=tie)
            known = [b for b in known if self._sold_by(drafts[0], [b])] or known
        unknown = next((t.meaning.unknown for t in tokens if t.kind == UNKNOWN and t.meaning), "")
        if unknown and not known:
            return self._clarify_unknown(unknown)
        asked_for = self._not_offered.search(norm)
        if asked_for is not None and (drafts or known):
            return self._clarify_not_offered(asked_for.group())
        unsold = _counted_unknown(norm, said)
        if unsold:
            # 两份鸡米花加一杯可乐: a thing counted that no menu here has, beside one that is: ordered, the cola
            # alone went on the card for an order of two things.
            return self._clarify_mismatch([], known, unsold) if known else Reading(
                candidates=(), clarification=f"没有「{unsold}」。要换一样吗？ / We don't sell \"{unsold}\". Something else?")
        # A count a correction replaces (来十五个鲜鸡蛋…哦不，20个) is not asked about.
        corrected = max((t.start for t in tokens if t.kind == QTY and t.corrects), default=-1)
        unusable = next((t for t in tokens if t.kind == QTY and t.problem and t.start >= corrected), None)
        if unusable is not None:
            # 3.5杯, -2杯, 2-3杯: ask for the count rather than order some other one.
            return self._clarify_quantity(unusable.surface)
        # A price or a ceiling said (八块钱能买到的, 不超过25的, 卡里就25块) chooses by price: no question.
        handed_over = cap is not None or _HANDED_OVER.search(norm) is not None or bool(scan_money(norm))
        if not drafts:
            if known and not unexplained:
                counts = [t.quantity for t in tokens if t.kind == QTY and not t.people and not t.problem]
                # 蜜雪随便来两杯: two of the suggestion (it was one).
                return self._brand_only(known, face, cheapest=cheapest, cap=cap, quantity=counts[0] if len(counts) == 1 else 1)
            if known:
                return self._clarify_mismatch([], known, unexplained)
            return self._clarify_nothing()
        reading = self._candidates(drafts, global_opts, known, face, avoid=avoid, left_out=left_out,
                                   not_offered=not_offered, cap=cap)
        question = self._the_default_refused(reading, refused)
        if not question and not handed_over:
            question = self._which_of_several(reading, drafts, cap, known)
        if not question and reading.candidates and _CARD_PAYS_ALL.search(norm):
            question = self._over_the_card(reading.candidates[0], face)
        return Reading(candidates=(), clarification=question) if question else reading

    def _over_the_card(self, top: Candidate, face: int) -> str:
        """卡能全免的水果 with nothing of the kind the card covers: the pick over the card is asked about, since the
        user said the card must pay it all (ordered, they paid the difference they said they would not)."""
        total = sum(self._items[ln.item_id].price_fen * ln.quantity for ln in top.lines)
        if total <= face:
            return ""
        yuan = f"{face / 100:g}"
        return (f"免单卡（{yuan}元）全包不了：{top.explanation}。要补差价点，还是换一样？ / The card ({yuan} yuan) does not "
                f"cover {top.explanation}. Pay the difference, or pick something else?")

    def _which_of_several(self, reading: Reading, drafts: list[_Draft], cap: int | None, known: list[str]) -> str:
        """A bare word that names several items (拿铁, 鸡腿堡来一个, 草莓的来一个) is asked
        about, naming the choices, unless the sentence leaves the choice to us (随便, 推荐一个, a budget: checked
        by the caller). Ordered, the pick (the standard or first one) was a drink nobody chose, on their card."""
        if not reading.candidates:
            return ""
        brand_id = reading.candidates[0].brand_id
        for d in drafts:
            t = d.token
            # A kind (来杯奶茶, a coffee please, 来个汉堡) or a brand alone is suggested from, not asked: the
            # catalog's labelled sentences (tests/data/nl_dev_set.md) take any card-covered item of the kind.
            if t.kind == ITEM and t.flavour:
                choices = [self._items[i] for i, q in t.items.items() if q >= 0.5 and _within(self._items[i], cap)
                           and (not known or self._items[i].brand_id in known)]
            elif t.kind == ITEM:
                mine = {i: q for i, q in t.items.items() if self._items[i].brand_id == brand_id}
                top = max(mine.values(), default=0.0)
                # Context (椰子拿铁: 椰 of 生椰拿铁) lifts one by 0.04 a character: then it is no tie.
                choices = [self._items[i] for i, q in mine.items() if q > top - 0.035 and _within(self._items[i], cap)]
            else:
                continue
            if len({i.item_id for i in choices}) >= 2:
                return self._clarify_which(t.surface, choices)
        return ""

    @staticmethod
    def _clarify_which(word: str, items: Sequence[ItemSpec]) -> str:
        names = "、".join(dict.fromkeys(i.name for i in items[:8]))
        return f"哪种{word}：{names}？ / Which {word}: {names}?"

    def _narrowed_by_description(self, text: str, said: list[_Token], draft: _Draft, known: list[str],
                                 cap: int | None) -> _Draft:
        """A kind or a word of several items described by words the menu does not hold (桃子李子混在一起的果茶,
        小蓝杯家椰子味的那款拿铁, 像丝绸一样顺滑的那个拿铁, 来个汉堡，香辣的): the one item whose name shares the most
        of those characters is meant. A character said after 不 / 没 / 别 (不辣的) rules its items out. Without one
        such item the word stays as it was (and is asked about when it fits several)."""
        t = draft.token
        if t.kind == CAT:
            cats = t.meaning.cats if t.meaning and t.meaning.cats else frozenset()
            brands = known or self._brand_order
            pool = [i for b in brands for c in cats for i in self._by_category.get((b, c), ()) if _within(i, cap)]
        elif t.kind == ITEM and len(t.items) > 1:
            top = max(t.items.values())
            pool = [self._items[i] for i, q in t.items.items() if q > top - 0.035
                    and (not known or self._items[i].brand_id in known)]
        else:
            return draft
        if len(pool) < 2:
            return draft
        wanted, unwanted = _description(text, said, t)
        if not wanted and not unwanted:
            return draft

        def score(item: ItemSpec) -> int:
            name = self._core[item.item_id] + "".join(a for a in item.aliases if any(is_cjk(c) for c in a))
            return -100 if any(c in name for c in unwanted) else sum(1 for c in wanted if c in name)

        scored = sorted(((score(i), i) for i in pool), key=lambda e: -e[0])
        if scored[0][0] <= 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
            return draft
        item = scored[0][1]
        token = dataclasses.replace(t, kind=ITEM, items={item.item_id: 0.9}, how="described", flavour=False)
        return dataclasses.replace(draft, token=token)

    def _a_kind_refused_of_an_item_ordered(self, drafts: list[_Draft], refused: list[_Token]) -> str:
        """一杯橙C美式，不要咖啡: the item ordered is of the kind refused after it, which cannot both be followed;
        ordered, the user got coffee they said they did not want. The question names the item and the kind."""
        for r in refused:
            cats = r.meaning.cats if r.kind == CAT and r.meaning and r.meaning.cats else None
            if not cats:
                continue
            for d in drafts:
                # Said after the item (…，不要咖啡); said before it, it may be someone else's (小孩不要咖啡，大人要…).
                if d.token.kind == ITEM and d.token.end <= r.start and d.token.items and all(
                        self._category[i] in cats for i in d.token.items):
                    name = self._items[max(d.token.items, key=d.token.items.__getitem__)].name
                    return (f"{name}就是{r.surface}，还要它吗？ / {name} is {r.surface}: still want it?")
        return ""

    def _the_default_refused(self, reading: Reading, refused: list[_Token]) -> str:
        """不要全糖 with no other sugar said: the item's own default is refused and nothing put in its place, so
        which level is meant is asked. Ordered, the refused option was what the user got (not obeyed: no option
        chosen is the default)."""
        said = [t for t in refused if t.kind == OPT and t.meaning and t.meaning.option_keys]
        if not reading.candidates or not said:
            return ""
        for line in reading.candidates[0].lines:
            item = self._items[line.item_id]
            defaults = {g.group_id: g.default_option_id for g in item.groups}
            for t in said:
                hit = self._options[line.item_id].lookup(t.meaning.option_keys)
                if hit is not None and hit[0] not in line.options and defaults.get(hit[0]) == hit[1]:
                    group = next(g for g in item.groups if g.group_id == hit[0])
                    choices = "、".join(o.name for o in group.options if o.option_id != hit[1])
                    return (f"{item.name}不要{self._options[line.item_id].names[hit]}，要哪一种：{choices}？ / "
                            f"{item.name} without \"{t.surface}\": which one then ({choices})?")
        return ""

    def _the_one_compared(self, drafts: list[_Draft], compared: re.Match[str],
                          known: list[str]) -> tuple[list[_Draft], str]:
        """A comparison (A和B哪个便宜, 谁便宜买谁, 要贵的那个) orders one of the things compared, by the
        catalog's prices: read as a list it ordered every one. The one chosen takes the count and
        options said for "the one" (便宜的那个来两份); equal prices are asked about."""
        def best(d: _Draft) -> ItemSpec:
            mine = [(q, self._items[i]) for i, q in d.token.items.items() if not known or self._items[i].brand_id in known]
            mine = mine or [(q, self._items[i]) for i, q in d.token.items.items()]
            return min(mine, key=lambda e: (-round(e[0], 3), not self._standard[e[1].item_id],
                                            self._menu_index[e[1].item_id]))[1]

        dearest = compared.group("dear") is not None
        priced = sorted(((best(d).price_fen, n) for n, d in enumerate(drafts)), reverse=dearest)
        if priced[0][0] == priced[1][0]:
            a, b = (best(drafts[n]) for _, n in priced[:2])
            yuan = f"{priced[0][0] / 100:g}"
            return drafts, (f"{a.name}和{b.name}一样价（{yuan}元），要哪一个？ / {a.name} and {b.name} cost the same "
                            f"({yuan} yuan): which one?")
        chosen = drafts[priced[0][1]]
        if not chosen.segs:
            chosen.segs = next((d.segs for d in reversed(drafts) if d.segs), [])
        chosen.shared += [o for d in drafts if d is not chosen for o in d.shared if o.start > compared.start()]
        return [chosen], ""

    def _without_pack_sizes(self, tokens: list[_Token]) -> list[_Token]:
        """"买10枚鸡蛋", "鸡蛋10枚": a count against an item that is the pack its name holds
        (鲜鸡蛋10枚) names the item, it counts nothing: read as a count it ordered ten boxes. A
        whole number of packs (20枚鸡蛋) is that many packs."""
        if not self._pack:
            return tokens
        out = []
        for k, t in enumerate(tokens):
            said = _in_pack_units(t) if t.kind == QTY and not t.problem else None
            if said is not None:
                near = [n for n in (tokens[k - 1] if k else None, tokens[k + 1] if k + 1 < len(tokens) else None)
                        if n is not None and n.kind == ITEM and (n.end == t.start or t.end == n.start)]
                packs = {self._pack[i][0] for n in near for i in n.items if self._pack.get(i, (0, ""))[1] == said[1]}
                if said[0] in packs:
                    continue
                whole = [p for p in packs if said[0] % p == 0]
                if len(whole) == 1:
                    t = dataclasses.replace(t, quantity=said[0] // whole[0])  # 20枚鸡蛋: two boxes of ten
                elif packs and said[1] in ("g", "piece"):
                    # 车厘子一斤 of a 1 kg box, 一打鸡蛋 of boxes of ten: part of a box cannot be ordered (read as
                    # one box, twice the fruit; 一打 as counted, twelve boxes of eggs).
                    t = dataclasses.replace(t, quantity=0, problem="fraction")
            out.append(t)
        return out

    def _kinds_named_by_their_item(self, tokens: list[_Token], drafts: list[_Draft]) -> list[_Draft]:
        """"点杯喝的，要瑞幸的美式": a kind of thing (喝的, 咖啡, 奶茶) then, with no 和 / 再来
        between, an item of that kind is the one thing said twice, the second time exactly; read
        as two lines it put a second, unasked-for drink on the card. The item takes the kind's
        count and options. A kind counted, then items of it counted (咖啡两杯，一杯美式一杯生椰拿铁),
        is split by them: the items are its parts, and it keeps only the cups they leave unnamed
        (it was four coffees)."""
        at = {id(t): k for k, t in enumerate(tokens)}

        def said_between(a: _Draft, b: _Draft, words: Collection[str]) -> bool:
            return any(t.kind == SEP and t.surface in words for t in tokens[at[id(a.token)] + 1:at[id(b.token)]])

        out: list[_Draft] = []
        for k, d in enumerate(drafts):
            kind = out[-1] if out else None
            if (kind is not None and kind.token.kind == CAT and d.token.kind == ITEM
                    and not (kind.segs and d.segs) and self._of_kind(d.token, kind.token)
                    and not said_between(kind, d, SEPARATORS)):
                d.shared[:0] = kind.shared
                d.segs = d.segs or kind.segs
                out[-1] = d
                continue
            if d.token.kind == CAT and d.segs:
                parts = self._parts(d, drafts[k + 1:], said_between)
                named = sum(q for p in parts for q, _ in p.portions([]))
                for p in parts:
                    # 咖啡两杯少冰，一杯美式一杯拿铁: what is said of the whole is said of each part.
                    p.shared[:0] = d.shared + d.segs[0].opts
                if parts and named == d.segs[0].quantity:
                    continue
                if parts and named < d.segs[0].quantity:
                    d.segs[0] = dataclasses.replace(d.segs[0], quantity=d.segs[0].quantity - named)
            out.append(d)
        return out

    def _parts(self, kind: _Draft, after: list[_Draft],
               said_between: Callable[[_Draft, _Draft, Collection[str]], bool]) -> list[_Draft]:
        """The counted items of `kind` said right after it, up to anything added on top (再来…)."""
        parts: list[_Draft] = []
        for d in after:
            prev = parts[-1] if parts else kind
            if (d.token.kind != ITEM or not d.segs or not self._of_kind(d.token, kind.token)
                    or said_between(prev, d, SEPARATORS if not parts else ADDITIVE_SEPARATORS)):
                break
            parts.append(d)
        return parts

    def _of_kind(self, item: _Token, kind: _Token) -> bool:
        cats = kind.meaning.cats if kind.meaning and kind.meaning.cats else frozenset()
        return any(self._items[i].category in cats for i in item.items)

    # tokens ------------------------------------------------------------------------------------
    def _tokens(self, text: str) -> tuple[list[_Token], str]:
        """The phrases of the sentence in order, and its Chinese characters nothing explained."""
        n = len(text)
        matches: list[list[tuple[int, float, _Meaning, str, float]]] = [[] for _ in range(n)]
        # next_traditional[i]: where the first traditional character at or after i is (n if none).
        # A sentence GB 2312 can spell (nearly all) has none: no character is looked at.
        next_traditional = [n] * (n + 1)
        if not _in_gb2312(text):
            for i in range(n - 1, -1, -1):
                next_traditional[i] = i if is_traditional(text[i]) else next_traditional[i + 1]
        # No sound-alike starts inside a word of correction: 换成美式 is no 成美式 (橙C美式).
        inside_a_correction = {c for m in _CORRECTION.finditer(text) for c in range(m.start() + 1, m.end())}
        for i, ch in enumerate(text):
            bucket = self._by_first.get(ch, ())
            if ch.isascii() and ch.isalnum():
                if i > 0 and _is_word_char(text[i - 1]):
                    continue
                bucket = self._by_word.get(_LEAD_WORD.match(text, i).group(), ())
            for surface, meaning, left, right in bucket:
                j = i + len(surface)
                if j > n or not text.startswith(surface, i):
                    continue
                if left and i > 0 and _is_word_char(text[i - 1]):
                    continue
                if right and j < n and _is_word_char(text[j]):
                    continue
                kind, q = meaning.best()
                if kind:
                    matches[i].append((j, q, meaning, "exact", 1.0))
            if is_cjk(ch) and i not in inside_a_correction:
                seen: set[str] = set()
                # Option spellings only where a traditional character is near: they match nothing else.
                indexes = (self._by_reading, self._by_spelling) if next_traditional[i] < i + self._longest_spelling \
                    else (self._by_reading,)
                for index, r in ((index, r) for index in indexes for r in readings(ch)):
                    spelling_only = index is self._by_spelling
                    for surface, rd, meaning in index.get(r, ()):
                        if surface in seen:
                            continue
                        seen.add(surface)
                        j = i + len(surface)
                        if j > n:
                            continue
                        exact = variant = 0
                        for k in range(len(surface)):
                            c = text[i + k]
                            if c == surface[k]:
                                exact += 1
                            elif not is_cjk(c) or not (readings(c) & rd[k]):
                                break
                            elif is_traditional(c):
                                variant += 1
                        else:
                            sounds_alike = exact * 2 >= len(surface) if len(surface) >= 3 and not spelling_only else False
                            if exact < len(surface) and (sounds_alike or exact + variant == len(surface)):
                                kind, q = meaning.best()
                                scale = 0.6 + 0.3 * exact / len(surface)
                                matches[i].append((j, q * scale, meaning, "sound", scale))
        self._fuzzy_matches(text, matches)
        # Weighted interval scheduling: the reading that explains the most of the sentence.
        best = [0.0] * (n + 1)
        choice: list[tuple[int, float, _Meaning, str, float] | None] = [None] * (n + 1)
        for i in range(n - 1, -1, -1):
            best[i], choice[i] = best[i + 1], None
            for m in matches[i]:
                score = (m[0] - i) * m[1] + best[m[0]]
                if score > best[i] + 1e-9:
                    best[i], choice[i] = score, m
        tokens: list[_Token] = []
        gaps: list[tuple[int, int]] = []
        i, gap_start = 0, 0
        while i < n:
            m = choice[i]
            if m is None:
                i += 1
                continue
            if gap_start < i:
                gaps.append((gap_start, i))
            j, q, meaning, how, scale = m
            tokens.append(self._token(text, i, j, meaning, how, scale))
            i = gap_start = j
        if gap_start < n:
            gaps.append((gap_start, n))
        for a, b in gaps:
            tokens.extend(self._gap_tokens(text, a, b, clause_ends=b == n))
        tokens = _without_pack_sizes_when_packs_are_counted(tokens)
        tokens.sort(key=lambda t: t.start)
        covered = {c for t in tokens for c in range(t.start, t.end)}
        for t in list(tokens):
            p = t.start - 1
            # Each of a run of them (大冰美式, 冰大美式).
            while t.kind == ITEM and p >= 0 and p not in covered and text[p] in OPTION_PREFIXES:
                option = self._surfaces.get(OPTION_PREFIXES[text[p]])
                if option is None or not option.option_keys:
                    break
                tokens.append(_Token(kind=OPT, start=p, end=p + 1, quality=1.0, surface=text[p], meaning=option))
                covered.add(p)
                p -= 1
        tokens.sort(key=lambda t: t.start)
        tokens = _without_conditions(text, tokens, covered)
        tokens, money_in_kuai = self._without_money_said_in_kuai(tokens)
        tokens = _joined_name_parts(text, self._without_parts_of_unknown_words(text, tokens, covered), self._category)
        said_before, thing_before, thing_end, brand_end = 0, False, 0, 0
        for k, t in enumerate(tokens):
            lead = k
            while lead and tokens[lead - 1].kind == QTY:
                lead -= 1  # 卖完了就换两个奥尔良的: the words come before the count
            said_at = tokens[lead].start
            if t.kind in (ITEM, CAT, OPT) and thing_end and _FALLBACK.search(text, max(0, said_at - 12), said_at):
                t.fallback = True
            if t.kind == ITEM:
                t.said_as_kind = _SAID_AS_KIND.match(text, t.end) is not None
                nxt = tokens[k + 1] if k + 1 < len(tokens) else None
                t.flavour = text.startswith("的", t.end) and t.how in ("name", "alias") and not (
                    nxt is not None and nxt.kind in (ITEM, CAT) and not _CLAUSE_BREAK.search(text, t.end, nxt.start))
                t.wished = (_WISH.search(text, max(0, t.start - 3), t.start) is not None
                            or _RAN_OUT.match(text, t.end) is not None)
                t.theirs = _HAD.search(text, max(0, t.start - 6), t.start) is not None
            if t.kind in (OPT, QTY) and _CORRECTION.search(text, said_before, t.start):
                t.corrects = True
            elif t.kind == ITEM and (_ITEM_CORRECTION.search(text, said_before, t.start) or _counted_by_a_correction(tokens, k, text)):
                t.corrects = True
                t.partial = "其中" in text[thing_end:t.start]
            elif t.kind in (ITEM, CAT) and thing_before and (either := _EITHER.search(text, said_before, t.start)):
                # 拿铁，还是美式吧: a change of mind; 生椰拿铁还是厚乳拿铁: "which of the two?", and
                # ordering both put an unasked-for drink on the card.
                if _CLAUSE_BREAK.search(text, said_before, either.start()):
                    t.corrects = True
                else:
                    t.either = True
            if t.kind == BRAND and brand_end and _EITHER.fullmatch(text[brand_end:t.start].strip()):
                t.either = True  # 肯德基还是瑞幸: which shop is asked, not the first one's suggestion ordered
            if t.kind == BRAND:
                brand_end = t.end
            glued = t.kind == OPT and k + 1 < len(tokens) and tokens[k + 1].kind == ITEM \
                and not text[t.end:tokens[k + 1].start].strip()
            if t.kind in (ITEM, CAT):
                thing_end = t.end
            if t.kind in (ITEM, CAT, OPT, QTY) and not glued:
                # An option against its item (冰美式, 热的美式) is said with it: a correction before
                # the option (说错了，冰美式) is one of the item too, else both were ordered.
                said_before, thing_before = t.end, t.kind in (ITEM, CAT)
        runs, run = [], ""
        # An amount of money (25以内, 免单卡25块) is understood, though no catalog phrase: read as unknown
        # words, a budget said with a brand alone was refused.
        money = {c for start, end, _, _ in scan_money(text) for c in range(start, end)} | money_in_kuai
        for c in range(n + 1):
            if c < n and c not in covered and c not in money and is_cjk(text[c]):
                run += text[c]
            elif run:
                runs.append(_ANYTHING.sub("", run).strip("".join(FILLER_CHARS)))
                run = ""
        # English words we do not know (kfc dan ta liang ge: pinyin) are unknown words too: with a brand
        # alone they were ignored, and a suggestion of the brand's was ordered for them.
        runs += [m.group() for m in _WORD.finditer(text) if len(m.group()) >= 2 and m.group() not in STOPWORDS
                 and m.group() not in self._surfaces and m.start() not in covered and m.start() not in money]
        unexplained = "、".join(r for r in runs if sum(ch not in FILLER_CHARS for ch in r) >= 2)
        return tokens, unexplained

    def _without_money_said_in_kuai(self, tokens: list[_Token]) -> tuple[list[_Token], set[int]]:
        """块 counts pieces of chicken (原味鸡3块, 两块原味鸡, 原味鸡两块，哦不对是三块) and is yuan everywhere else: a
        number of 块 when neither the thing next in its clause nor the last one named before it is counted in
        块 (总共58块对吧, 卡里就25块, 蛋挞来一打，一百块够吧) is money. Read as a count it ordered 58 lattes. Returns
        the phrases without those amounts, and where the amounts stand."""
        if not any(t.kind == QTY and t.surface.rstrip().endswith("块") for t in tokens):
            return tokens, set()
        kept, said, last = [], set(), None
        for k, t in enumerate(tokens):
            if t.kind in (ITEM, CAT):
                last = t
            if t.kind == QTY and t.surface.rstrip().endswith("块"):
                after = next((x for x in tokens[k + 1:] if x.kind in (ITEM, CAT)
                              or x.kind == SEP and x.surface not in SEPARATORS), None)
                if not any(x is not None and x.kind != SEP and self._counted_in_kuai(x) for x in (after, last)):
                    said.update(range(t.start, t.end))
                    continue
            kept.append(t)
        return kept, said

    def _counted_in_kuai(self, t: _Token) -> bool:
        if t.kind == ITEM:
            return any(self._category[i] in COUNTED_IN_KUAI for i in t.items)
        return t.kind == CAT and t.meaning is not None and bool(t.meaning.cats & COUNTED_IN_KUAI)

    def _without_parts_of_unknown_words(self, text: str, tokens: list[_Token], covered: set[int]) -> list[_Token]:
        """Drop a one-character category word (茶) or a piece of an item's name (芒芒) written
        against characters nothing explained: it is part of a word we do not know, not a mention
        (下午茶 is no tea, 椰椰芒芒 another shop's drink). Read as one, it ordered ten milk teas for
        an afternoon tea, and 轻芒芒甘露 for 椰椰芒芒. A piece keeps its item when the characters
        around it are of that item's name too (椰子拿铁 is 生椰拿铁). The characters dropped become
        unexplained, so the clarification names them."""
        # A correction (换成奥尔良的) is no part of the word after it, nor 随便 or 便宜 of the kind after it.
        said = {c for m in _CORRECTION.finditer(text) for c in range(m.start(), m.end())}
        said |= {c for m in _ANYTHING.finditer(text) for c in range(m.start(), m.end())}

        def unexplained(edge: int, step: int) -> str:
            """Up to three unexplained characters from `edge` on, as far as _token looks for context."""
            out, c = "", edge
            while len(out) < 3 and 0 <= c < len(text) and c not in covered and c not in said and is_cjk(text[c]) \
                    and text[c] not in FILLER_CHARS:
                out, c = out + text[c], c + step
            return out

        def unknown_word_before(start: int) -> bool:
            """An English word we do not know right before (oat latte, vanilla latte). Read backwards
            from `start`: a search from the sentence's start for each mention is quadratic."""
            end = start
            while end > 0 and text[end - 1] == " ":
                end -= 1
            begin = end
            while begin > 0 and (text[begin - 1].isascii() and text[begin - 1].isalpha() or text[begin - 1] in "'-"):
                begin -= 1
            word = text[begin:end]
            return end < start and len(word) >= 2 and word not in STOPWORDS and word not in self._surfaces \
                and not covered.intersection(range(begin, end))

        kept = []
        for t in tokens:
            glued = unexplained(t.start - 1, -1) + unexplained(t.end, 1)
            if glued and t.kind == CAT and t.end - t.start == 1 and is_cjk(text[t.start]):
                covered.difference_update(range(t.start, t.end))
                continue
            if t.kind == CAT and len(unexplained(t.start - 1, -1)) >= 2:
                # 芋泥波波奶茶, 港式奶茶, 挂耳咖啡: a kind of thing named by words we do not know is a
                # product no brand here sells; read as the kind, it ordered a 珍珠奶茶.
                covered.difference_update(range(t.start, t.end))
                continue
            if t.kind == ITEM and _OTHER_PRODUCT.match(text, t.end) and t.end not in covered:
                covered.difference_update(range(t.start, t.end))
                continue
            if t.kind == ITEM and t.how == "piece" and t.surface.isascii() and unknown_word_before(t.start):
                # The English head noun alone (latte) after a word we do not know (oat latte).
                covered.difference_update(range(t.start, t.end))
                continue
            if glued and t.kind == ITEM and t.how == "piece" and all(is_cjk(c) for c in t.surface) and not any(
                    ch in self._core[item_id] for ch in glued for item_id in t.items):
                covered.difference_update(range(t.start, t.end))
                continue
            kept.append(t)
        return kept

    def _token(self, text: str, i: int, j: int, meaning: _Meaning, how: str, scale: float) -> _Token:
        kind, q = meaning.best()
        tok = _Token(kind=kind, start=i, end=j, quality=q * scale, surface=text[i:j], meaning=meaning, how=how)
        if kind == ITEM:
            tok.items = {item_id: iq * scale for item_id, iq in meaning.items.items()}
            if len(tok.items) > 1:
                # Context: 椰子拿铁 -> the latte whose name shares 椰 with the words around it.
                near = text[max(0, i - 3):i] + text[j:j + 3]
                for item_id in tok.items:
                    extra = sum(1 for c in set(self._core[item_id]) if is_cjk(c) and c in near and c not in tok.surface)
                    tok.items[item_id] += 0.04 * extra
            best_item = max(tok.items, key=tok.items.__getitem__)
            tok.how = how if how in ("sound", "fuzzy") else meaning.item_how.get(best_item, how)
        return tok

    def _fuzzy_matches(self, text: str, matches: list[list]) -> None:
        """English typos (amercano, cocunut latte): windows of 1-3 words that hold a word we do not
        know are compared with every English phrase of the catalog. Sentences made only of known
        words skip this, which keeps the usual call cheap."""
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        unknown = [w[2] not in STOPWORDS and w[2] not in self._surfaces and len(w[2]) >= 3 for w in words]
        if not any(unknown):
            return
        for size in (1, 2, 3):
            for k in range(len(words) - size + 1):
                window = words[k:k + size]
                if not any(unknown[k:k + size]) or window[0][2] in STOPWORDS or window[-1][2] in STOPWORDS:
                    continue
                start, end = window[0][0], window[-1][1]
                phrase = text[start:end]
                if len(phrase) < 4:
                    continue
                hit = process.extractOne(phrase, self._fuzzy_choices, scorer=fuzz.ratio, score_cutoff=80)
                if hit is None:
                    continue
                surface, score, _ = hit
                # One slip in five letters (pepsy, fires) is 80; below 84 the first letter must agree.
                if score < 84 and surface[0] != phrase[0]:
                    continue
                if not _each_word_a_slip(phrase, surface):
                    continue
                meaning = self._surfaces[surface]
                kind, q = meaning.best()
                scale = 0.5 + 0.35 * (score - 80) / 20
                matches[start].append((end, q * scale, meaning, "fuzzy", scale))

    def _gap_tokens(self, text: str, a: int, b: int, *, clause_ends: bool) -> list[_Token]:
        """Quantities, negations and punctuation in a stretch no catalog phrase explained."""
        gap = text[a:b]
        out: list[_Token] = []
        masked = list(gap)
        for m in _PER_PERSON.finditer(gap):
            out.append(_Token(kind=PER_PERSON, start=a + m.start(), end=a + m.end(), quality=1.0, surface=m.group()))
            masked[m.start():m.end()] = " " * (m.end() - m.start())
        for start, end, _, _ in scan_money(gap):
            # 生椰拿铁29块太贵了: a price is no count, nor anything between an item and what is said of it.
            masked[start:end] = " " * (end - start)
        for pattern, kind in ((_HALF, "half"), (_WHOSE_CUP, "part"), (_SAME, "same")):
            for m in pattern.finditer("".join(masked)):
                if kind == "same" and _ALIKE.search(text, max(0, a + m.start() - 6), a + m.start()):
                    continue  # 四杯，都一样 (all of them alike), 和上次一样 (like before): no cup more
                tok = _Token(kind=QTY, start=a + m.start(), end=a + m.end(), quality=1.0, surface=m.group(), quantity=1)
                if kind == "same":
                    tok.kind, tok.same = ITEM, True
                else:
                    setattr(tok, kind, True)
                    tok.who = m.groupdict().get("who") or ""
                out.append(tok)
                masked[m.start():m.end()] = " " * (m.end() - m.start())
        for q in scan_quantities("".join(masked), money_masked=True):
            who = _FOR_WHOM.match("".join(masked), q.end)
            out.append(_Token(kind=QTY, start=a + q.start, end=a + q.end, quality=1.0, surface=gap[q.start:q.end],
                              quantity=q.quantity, problem=q.problem, people=q.people, pack=q.pack, bare=not q.marked,
                              who=who.group("who") if who else ""))
            for c in range(q.start, q.end):
                masked[c] = " "
        plain = "".join(masked)
        taken = 0
        after = NEGATION_AFTER.match(plain) if a > 0 else None
        if after is not None and (after.end() < len(plain) or clause_ends or plain[after.end() - 1] in "了吧啦啊"):
            out.append(_Token(kind=NEG_AFTER, start=a + after.start(), end=a + after.end(), quality=1.0,
                              surface=after.group().strip()))
            taken = after.end()
        before = NEGATION_BEFORE.search(plain, taken) if b < len(text) else None
        if before is not None and before.group().lstrip().startswith("除") and (
                _BESIDES.match(text, b) or before.group() != before.group().rstrip()):
            # 除了生椰拿铁还要一杯厚乳拿铁: besides, not except; 除了一杯不要糖 (a count follows): all but one cup
            # are as said, that one is not refused.
            before = None
        if before is not None:
            out.append(_Token(kind=NEG_BEFORE, start=a + before.start(), end=a + before.end(), quality=1.0,
                              surface=before.group().strip()))
        for m in _PUNCT.finditer(plain):
            out.append(_Token(kind=SEP, start=a + m.start(), end=a + m.end(), quality=1.0, surface=m.group()))
        return out

    # choosing ----------------------------------------------------------------------------------
    def _candidates(self, drafts: list[_Draft], global_opts: list[_Token], known: list[str], face: int, *,
                    avoid: set[str] = frozenset(), left_out: Sequence[str] = (),
                    not_offered: Sequence[str] = (), cap: int | None = None) -> Reading:
        brands = known or [b for b in self._brands_for(drafts) if b not in avoid]
        per_brand: list[tuple[float, str, list[list[_Pick]]]] = []
        choices_at = self._choices_memo(drafts, face, cap)
        for brand_id in brands:
            choices = choices_at(brand_id)
            if choices is not None:
                conf = min(c[0].confidence for c in choices)
                per_brand.append((conf, brand_id, choices))
        dropped: list[_Draft] = []
        if not per_brand:
            # A weak piece-of-a-name match from another brand should not sink a clear order. At a
            # named brand only a guess at an English word is that weak: a name in a pasted group
            # order (Grace, close to grape) made the whole order at 瑞幸 a question.
            strong = [d for d in drafts if d.token.kind == CAT or max(d.token.items.values()) >= 0.75
                      or (known and d.token.how != "fuzzy")]
            if strong and len(strong) < len(drafts):
                kept = {id(d) for d in strong}
                dropped = [d for d in drafts if id(d) not in kept]
                drafts = strong
                choices_at = self._choices_memo(drafts, face, cap)
                for brand_id in (known or [b for b in self._brands_for(drafts) if b not in avoid]):
                    choices = choices_at(brand_id)
                    if choices is not None:
                        per_brand.append((min(c[0].confidence for c in choices) * 0.8, brand_id, choices))
        if not per_brand and cap is not None:
            return self._clarify_budget(drafts, cap)
        if not per_brand:
            return self._clarify_mismatch(drafts, known, avoid=avoid)
        if not known:
            per_brand.sort(key=lambda e: -e[0])
        all_category = all(d.token.kind == CAT for d in drafts)
        out: list[Candidate] = []
        questions: dict[int, str] = {}  # id of a candidate whose words contradict -> what to ask
        if all_category:
            # One candidate per good pick, best pick of every brand first, so the service can take
            # the nearest store that has any of them.
            ranked = []
            for conf, brand_id, choices in per_brand:
                for rank, pick in enumerate(choices[0]):
                    ranked.append((rank, -pick.confidence, self._menu_index[pick.item.item_id], brand_id, pick))
            ranked.sort(key=lambda r: r[:3])
            for rank, _, _, brand_id, pick in ranked[:MAX_CANDIDATES]:
                picks = [pick] + [c[0] for c in next(e[2] for e in per_brand if e[1] == brand_id)[1:]]
                out.append(self._candidate(brand_id, drafts, picks, global_opts, True, dropped, rank, questions))
        else:
            by_cat = any(d.token.kind == CAT for d in drafts)
            # Every reading is ranked by its confidence first and only the MAX_CANDIDATES kept are
            # built: building one reads the whole sentence, and an ambiguous word said 500 times
            # (茶茶茶…) has 1,000 alternatives, so building them all took a second of the event
            # loop that serves Quote. Same readings, same order (the sort is stable).
            ranked_picks = sorted(_readings(per_brand), key=lambda r: -r[0])
            if ranked_picks and ranked_picks[0][0] >= 0.9:
                # A clear reading (草莓 -> 盒马's strawberries): a far weaker one from another
                # brand (芝芝莓莓) is a different order, not an alternative store for this one.
                ranked_picks = [r for r in ranked_picks if r[0] >= 0.8 * ranked_picks[0][0]]
            for _, brand_id, picks, rank in ranked_picks[:MAX_CANDIDATES]:
                out.append(self._candidate(brand_id, drafts, picks(), global_opts, by_cat, dropped, rank, questions))
        if out and id(out[0]) in questions:
            # 冰的热拿铁: whichever option were taken, the user would get a drink they did not ask
            # for; ask, as for any other reading that cannot be decided.
            return Reading(candidates=(), clarification=questions[id(out[0])])
        notes = []
        if left_out:
            notes.append("left out as asked: " + ", ".join(f"「{w}」" for w in dict.fromkeys(left_out)))
        if not_offered:
            notes.append("cannot take out, not a menu option: " + ", ".join(f"「{w}」" for w in dict.fromkeys(not_offered)))
        if notes:
            out = [dataclasses.replace(c, explanation="; ".join([c.explanation, *notes])) for c in out]
        return Reading(candidates=tuple(out[:MAX_CANDIDATES]))

    def _brands_for(self, drafts: list[_Draft]) -> list[str]:
        seen: dict[str, float] = {}
        for d in drafts:
            if d.token.kind == ITEM:
                for item_id, q in d.token.items.items():
                    b = self._items[item_id].brand_id
                    seen[b] = max(seen.get(b, 0.0), q)
        if not seen:
            cats = {c for d in drafts if d.token.meaning and d.token.meaning.cats for c in d.token.meaning.cats}
            return [b for b in self._brand_order if any((b, c) in self._by_category for c in cats)]
        return sorted(seen, key=lambda b: -seen[b])

    def _choices_memo(self, drafts: list[_Draft], face: int, cap: int | None = None):
        """brand_id -> every draft's choices at that brand, or None when a draft has none there.
        A word said many times is chosen for once per brand: 500 mentions of an item a hundred
        brands sell (茶茶茶…) were 50,000 choices, seconds of the event loop."""
        kinds: dict[tuple, int] = {}
        # What _choices reads of a draft; its items depend on the words around it, so they count.
        sigs = [kinds.setdefault((d.token.kind, d.token.surface, d.token.how, id(d.token.meaning), d.token.cheapest,
                                  tuple(d.token.items.items()), max((s.quantity for s in d.segs), default=1)),
                                 len(kinds))
                for d in drafts]
        memo: dict[tuple[int, str], list[_Pick]] = {}

        def choices_at(brand_id: str) -> list[list[_Pick]] | None:
            out = []
            for d, sig in zip(drafts, sigs):
                got = memo.get((sig, brand_id))
                if got is None:
                    got = memo[(sig, brand_id)] = self._choices(d, brand_id, face, cap)
                if not got:
                    return None
                out.append(got)
            return out

        return choices_at

    def _choices(self, draft: _Draft, brand_id: str, face: int, cap: int | None = None) -> list[_Pick]:
        tok = draft.token
        qty = max(1, max((s.quantity for s in draft.segs), default=1))
        if tok.kind == ITEM:
            mine = [(q, self._items[i]) for i, q in tok.items.items()
                    if self._items[i].brand_id == brand_id and _within(self._items[i], cap)]
            if not mine:
                return []
            mine.sort(key=lambda e: (-round(e[0], 3), e[1].price_fen > face, not self._standard[e[1].item_id],
                                     self._menu_index[e[1].item_id]))
            top = mine[0][0]
            picks = []
            for rank, (q, item) in enumerate(mine):
                conf = min(0.97, q)
                note = _how_note(tok, item)
                if rank == 0 and len(mine) > 1 and mine[1][0] >= top - 0.05:
                    conf *= 0.75  # a tie: 拿铁 could be any latte
                    others = "/".join(i.name for q2, i in mine[1:4] if q2 >= top - 0.05)
                    note += f" (ambiguous, also {others}; took the standard or card-covered one)"
                picks.append(_Pick(item, conf if rank == 0 else conf * 0.8, note))
            return picks[:4]
        cats = tok.meaning.cats if tok.meaning and tok.meaning.cats else frozenset()
        pool = [i for c in cats for i in self._by_category.get((brand_id, c), ()) if _within(i, cap)]
        if not pool:
            return []
        words = tok.surface

        def key(item: ItemSpec) -> tuple:
            return (item.price_fen * qty > face, item.price_fen > face, tok.cheapest and item.price_fen,
                    words not in item.name, not self._standard[item.item_id], self._menu_index[item.item_id])

        pool.sort(key=key)
        if pool[0].price_fen <= face:
            # A pick the card covers in full exists: offer only such picks.
            pool = [i for i in pool if i.price_fen <= face]
        picks = []
        for rank, item in enumerate(pool[:4]):
            conf = 0.7 if item.price_fen <= face else 0.45
            note = f"「{tok.surface}」→ {item.name}" + ("" if item.price_fen <= face else " (over the card)")
            picks.append(_Pick(item, conf * (0.95 ** rank), note))
        return picks

    def _candidate(self, brand_id: str, drafts: list[_Draft], picks: list[_Pick], global_opts: list[_Token],
                   by_category: bool, dropped: list[_Draft], rank: int, questions: dict[int, str]) -> Candidate:
        lines: list[WantedLine] = []
        line_of: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        notes: list[str] = []
        ignored: list[str] = []
        for draft, pick in zip(drafts, picks):
            table = self._options[pick.item.item_id]
            for qty, opts in draft.portions(global_opts):
                chosen: dict[str, str] = {}
                for o in opts:
                    hit = table.lookup(o.meaning.option_keys if o.meaning else ())
                    if hit is None:
                        ignored.append(f"{o.surface} ({pick.item.name})")
                    elif not _only_agrees(o.surface, chosen.get(hit[0]), hit[0], table):
                        chosen[hit[0]] = hit[1]
                # One line per item and options, found by key: a scan of the lines for every
                # part made a sentence of 250 different items 250 x 250 steps a reading.
                key = (pick.item.item_id, tuple(sorted(chosen.items())))
                n = line_of.get(key)
                if n is not None:
                    line = lines[n]
                    lines[n] = WantedLine(line.item_id, line.quantity + qty, line.options)
                else:
                    line_of[key] = len(lines)
                    lines.append(WantedLine(pick.item.item_id, qty, chosen))
            notes.append(pick.note)
        conf = min(p.confidence for p in picks) if picks else 0.0
        if dropped:
            notes.append("ignored " + ", ".join(f"「{d.token.surface}」" for d in dropped))
        if ignored:
            notes.append("options not offered, ignored: " + ", ".join(dict.fromkeys(ignored)))
        brand = self._brands[brand_id]
        parts = ", ".join(f"{ln.quantity}×{self._items[ln.item_id].name}"
                          + (" [" + ",".join(self._options[ln.item_id].names[(g, o)] for g, o in ln.options.items()) + "]"
                             if ln.options else "") for ln in lines)
        explanation = "; ".join([f"{brand.name}: {parts}", *(n for n in notes if n)])
        candidate = Candidate(brand_id=brand_id, lines=tuple(lines), confidence=round(conf * (0.9 ** rank), 3),
                              explanation=explanation, by_category=by_category)
        question = self._contradiction(drafts, picks) or self._not_on_the_item(drafts, picks, global_opts)
        if question:
            questions[id(candidate)] = question
        return candidate

    def _contradiction(self, drafts: list[_Draft], picks: list[_Pick]) -> str:
        """The question to ask when one line is given two options of one group and nothing takes
        the first back (冰的热拿铁: iced or hot?), else "". Only the line's own words count: an
        option for every line (都要热的) gives way to one said for this line, and a split
        (两杯，一杯热的一杯冰的) is one line per part."""
        for draft, pick in zip(drafts, picks):
            table = self._options[pick.item.item_id]
            for said in (draft.shared, *(seg.opts for seg in draft.segs)):
                chosen: dict[str, tuple[str, _Token]] = {}
                for o in said:
                    hit = table.lookup(o.meaning.option_keys if o.meaning else ())
                    if hit is None:
                        continue
                    earlier = chosen.get(hit[0])
                    if earlier is not None and earlier[0] != hit[1] and not o.corrects:
                        first, second = table.names[(hit[0], earlier[0])], table.names[hit]
                        what, s1, s2 = draft.token.surface, earlier[1].surface, o.surface
                        if not (agree(s1, second) or agree(s2, first)):
                            return (f"{what}要{first}还是{second}？「{s1}」和「{s2}」只能选一个。 / "
                                    f"{what}: {first} or {second}? \"{s1}\" and \"{s2}\" cannot both apply.")
                    chosen[hit[0]] = (hit[1], o)
        return ""

    def _not_on_the_item(self, drafts: list[_Draft], picks: list[_Pick], global_opts: list[_Token]) -> str:
        """The question to ask when a line is said with an option its item does not offer (热可乐, 无糖可乐,
        薯条要大份的, 冰淇淋大杯半糖), else "": ordered without it, the user gets what they said they did not
        want. Ice said of what comes without it (可乐去冰, 香辣鸡腿堡少冰) asks for nothing it lacks; an option said
        before the thing and apart from it (今天好热啊…冰淇淋) is no option of it; one said for every line
        (都要大杯) is a question only when no line offers it."""
        for draft, pick in zip(drafts, picks):
            table = self._options[pick.item.item_id]
            said = draft.shared + [o for seg in draft.segs for o in seg.opts]
            for o in said:
                keys = o.meaning.option_keys if o.meaning else ()
                if table.lookup(keys) is not None or _named_in(pick.item.name, keys):
                    continue
                glued = o.end == draft.token.start
                if o.end < draft.token.start and not glued or _less_of(keys) and not glued:
                    continue
                return self._clarify_option_not_offered(pick.item.name, o.surface)
        for o in global_opts:
            keys = o.meaning.option_keys if o.meaning else ()
            if _less_of(keys) or any(self._options[p.item.item_id].lookup(keys) is not None
                                       or _named_in(p.item.name, keys) for p in picks):
                continue
            return self._clarify_option_not_offered(picks[0].item.name if len(picks) == 1 else "这几样", o.surface)
        return ""

    @staticmethod
    def _clarify_option_not_offered(name: str, said: str) -> str:
        return (f"{name}没有「{said}」可选。要按菜单上的做法点吗？ / {name} does not come \"{said}\". "
                f"Order it as the menu makes it?")

    def _brand_only(self, known: list[str], face: int, *, cheapest: bool = False, cap: int | None = None,
                    quantity: int = 1) -> Reading:
        out = []
        for brand_id in known:
            pool = sorted((i for i in self._items_by_brand.get(brand_id, ()) if _within(i, cap)),
                          key=lambda i: (i.price_fen > face, cheapest and i.price_fen, not self._standard[i.item_id],
                                         self._menu_index[i.item_id]))
            if pool and pool[0].price_fen <= face:
                pool = [i for i in pool if i.price_fen <= face]
            for rank, item in enumerate(pool[:3]):
                out.append(Candidate(brand_id=brand_id, lines=(WantedLine(item.item_id, quantity, {}),),
                                     confidence=round(0.4 * 0.9 ** rank, 3), by_category=True,
                                     explanation=f"{self._brands[brand_id].name}: no item named; suggesting {item.name}"))
        if not out and cap is not None:
            return self._clarify_budget([], cap)
        return Reading(candidates=tuple(out[:MAX_CANDIDATES]))

    def _sold_by(self, draft: _Draft, brand_ids: Collection[str]) -> bool:
        if draft.token.kind == ITEM:
            return any(self._items[i].brand_id in brand_ids for i in draft.token.items)
        cats = draft.token.meaning.cats if draft.token.meaning and draft.token.meaning.cats else ()
        return any((b, c) in self._by_category for b in brand_ids for c in cats)

    # clarifications ----------------------------------------------------------------------------
    def _carried(self) -> tuple[str, str]:
        zh = "、".join(self._brands[b].name for b in self._brand_order)
        en = ", ".join(_english_name(self._brands[b]) for b in self._brand_order)
        return zh, en

    def _clarify_unknown(self, unknown: str) -> Reading:
        zh, en = self._carried()
        return Reading(candidates=(), mentioned_unknown_brand=unknown,
                       clarification=f"抱歉，暂不支持{unknown}。可以选：{zh}，想点哪家？ / "
                                     f"Sorry, we don't carry {unknown}. We have {en}: which would you like?")

    def _clarify_not_an_order(self) -> Reading:
        zh, en = self._carried()
        return Reading(candidates=(),
                       clarification=f"这像是在问问题或说已有的订单。想点单请直接说，比如“来一杯生椰拿铁”（可以选：{zh}）；"
                                     f"查看或取消订单请到“我的订单”。 / That sounds like a question or a word about an order "
                                     f"you have. To order, say e.g. \"a coconut latte\" (we have {en}); to check or cancel "
                                     f"an order, see your orders.")

    def _clarify_not_offered(self, what: str) -> Reading:
        return Reading(candidates=(),
                       clarification=f"菜单上没有「{what}」可选。要按菜单上的做法点吗？ / \"{what}\" is not offered "
                                     f"on the menu. Order it as the menu makes it?")

    def _clarify_nothing(self) -> Reading:
        zh, en = self._carried()
        return Reading(candidates=(),
                       clarification=f"没听懂想点什么。可以选：{zh}，比如“来一杯生椰拿铁”。 / "
                                     f"Sorry, I couldn't find an order in that. We have {en}; "
                                     f"try e.g. \"a coconut latte from luckin\".")

    def _clarify_quantity(self, surface: str) -> Reading:
        return Reading(candidates=(),
                       clarification=f"“{surface}”不是能下单的数量，请说要几份（整数），比如“来两杯生椰拿铁”。 / "
                                     f"\"{surface}\" is not a quantity we can order: please say a whole number, "
                                     f"e.g. \"2 coconut lattes\".")

    def _clarify_either(self, tokens: list[_Token], k: int) -> Reading:
        first = next(t for t in reversed(tokens[:k]) if t.kind in ((BRAND,) if tokens[k].kind == BRAND else (ITEM, CAT)))
        return Reading(candidates=(),
                       clarification=f"要“{first.surface}”还是“{tokens[k].surface}”？请说要哪一个。 / "
                                     f"\"{first.surface}\" or \"{tokens[k].surface}\"? Please say which one.")

    def _clarify_budget(self, drafts: list[_Draft], cap: int) -> Reading:
        what = self._listing(drafts) if drafts else "东西"
        yuan = f"{cap // 100}" + (f".{cap % 100:02d}" if cap % 100 else "")
        return Reading(candidates=(),
                       clarification=f"{yuan}元以内没有{what}。要放宽预算，或换一样吗？ / "
                                     f"Nothing of that ({what}) costs {yuan} yuan or less. Raise the budget or "
                                     f"pick something else?")

    def _clarify_too_many(self, mentions: int) -> Reading:
        return Reading(candidates=(),
                       clarification=f"一句话里点了{mentions}样，最多{MAX_MENTIONS}样，请分几次说。 / "
                                     f"That is {mentions} things in one sentence; at most {MAX_MENTIONS}: "
                                     f"please order them in parts.")

    def _listing(self, drafts: list[_Draft], words: str = "") -> str:
        where = [words] if words else []
        for d in drafts:
            if d.token.kind == ITEM:
                best = max(d.token.items, key=d.token.items.__getitem__)
                where.append(f"{self._items[best].name}（{self._brands[self._items[best].brand_id].name}）")
            else:
                where.append(d.token.surface)
        return "、".join(where)

    def _clarify_mismatch(self, drafts: list[_Draft], known: list[str], words: str = "", *,
                          avoid: set[str] = frozenset()) -> Reading:
        listing = self._listing(drafts, words)
        if avoid and not known and all(self._sold_by(d, avoid) for d in drafts):
            names = "、".join(self._brands[b].name for b in avoid)
            return Reading(candidates=(),
                           clarification=f"只有{names}有：{listing}。还是从{names}点吗？ / "
                                         f"Only {names} sells {listing}. Order it from {names} after all?")
        if known and (len(known) == 1 or not drafts or not all(self._sold_by(d, known) for d in drafts)):
            names = "、".join(self._brands[b].name for b in known)
            # What the named brand lacks, not the lines it does sell (瑞幸的多肉葡萄和生椰拿铁).
            listing = self._listing([d for d in drafts if not self._sold_by(d, known)], words) or listing
            return Reading(candidates=(),
                           clarification=f"{names}没有：{listing}。要换一家吗？ / "
                                         f"{names} doesn't sell {listing}. Order from another brand?")
        return Reading(candidates=(),
                       clarification=f"一单只能来自一家：{listing}。先点哪家？ / "
                                     f"One order comes from one brand: {listing}. Which one first?")


# ------------------------------------------------------------------------------------- parsing
def _parse(tokens: list[_Token], category: dict[str, str]) -> tuple[list[_Draft], list[_Token]]:
    """Order lines from the phrase sequence (see the module docstring, step 4)."""
    drafts: list[_Draft] = []
    global_opts: list[_Token] = []
    pending_qty: int | None = None
    pending_bare = False
    pending_tok: _Token | None = None  # the count pending_qty was said as
    pending_opts: list[_Token] = []
    cur: _Draft | None = None
    seg_open: _Seg | None = None
    clause_break = False
    global_next = False
    more_next = False  # a 再来 / 再加 since the last line or count: the next count is on top
    skip = (OPT, BRAND, UNKNOWN, GLOBAL)

    def ahead(k: int) -> int | None:
        """Index of the next line-making token in this clause after k (None if a clause ends first)."""
        for x in range(k + 1, len(tokens)):
            if tokens[x].kind in skip:
                continue
            if tokens[x].kind in (ITEM, CAT):
                return x
            if tokens[x].kind == SEP:
                return None
            return None  # another count comes first: this one is not the next item's
        return None

    def has_post_count(x: int) -> bool:
        for y in range(x + 1, len(tokens)):
            if tokens[y].kind in skip:
                continue
            return tokens[y].kind == QTY
        return False

    for k, t in enumerate(tokens):
        if t.kind == SEP:
            if (pending_bare or pending_tok is not None and pending_tok.people) and t.surface not in SEPARATORS:
                # 免单卡只有25，生椰拿铁…: bare digits a clause before any item are no count of it (an
                # amount, a time); read as one, 25 lattes were ordered. Nor is a number of people said
                # alone (一家四口，爸爸热美式: not four coffees). 两杯，生椰拿铁 still counts.
                pending_qty, pending_bare, pending_tok = None, False, None
            clause_break, seg_open, global_next = True, None, False
            more_next = more_next or t.surface in ADDITIVE_SEPARATORS
        elif t.kind == GLOBAL:
            # 4杯四季春、3杯百香果，四季春都要去冰: 都 after an item counted before is all of its cups, not
            # every line (the passion fruit teas came without ice too).
            global_next = not (k and tokens[k - 1].kind == ITEM and tokens[k - 1].end == t.start and any(
                d is not cur and d.segs and d.token.kind == ITEM and d.token.items.keys() == tokens[k - 1].items.keys()
                for d in drafts))
        elif t.kind == ITEM and t.same:
            d = _the_same_again(t, drafts)
            if d is None:
                continue
            if pending_qty is not None:
                d.segs = [_Seg(pending_qty, pre=True)]
            d.shared.extend(pending_opts)
            pending_qty, pending_opts, pending_tok = None, [], None
            drafts.append(d)
            cur, seg_open, clause_break, more_next = d, None, False, False
        elif t.kind in (ITEM, CAT):
            d = _Draft(t)
            if pending_qty is not None:
                d.segs.append(_Seg(pending_qty, pre=True, who=pending_tok.who if pending_tok else "",
                                   each=pending_tok is not None and pending_tok.each))
            d.shared.extend(pending_opts)
            pending_qty, pending_opts, pending_tok = None, [], None
            taken = sum(s.quantity for s in d.segs)
            if (t.partial and cur is not None and cur is drafts[-1] and len(cur.segs) == 1
                    and 0 < taken < cur.segs[0].quantity):
                # 三杯生椰拿铁，其中一杯换成厚乳: one of the three is changed, the other two stay.
                cur.segs[0] = dataclasses.replace(cur.segs[0], quantity=cur.segs[0].quantity - taken)
            elif t.corrects and cur is not None and cur is drafts[-1]:
                # 两杯多肉葡萄，不对，要多肉桃李: the item said before is not wanted, its count is.
                d.segs = d.segs or cur.segs
                drafts.pop()
            drafts.append(d)
            # 都少冰 丝绒的要半糖: what 都 said was for every line; what is said after a thing is its own.
            cur, seg_open, clause_break, more_next, global_next = d, None, False, False, False
        elif t.kind == QTY and global_next and drafts:
            for d in drafts:
                if not d.segs:
                    d.segs.append(_Seg(t.quantity))
        elif t.kind == QTY and t.part and cur is not None:
            # 我的那杯要热的: the cup said to be for 我, if one was; else one of the cups said.
            mine = next((s for s in cur.segs if t.who and s.who == t.who), None)
            if mine is None and sum(s.quantity for s in cur.segs) > 1:
                mine = _Seg(1, part=True)
                cur.segs.append(mine)
            seg_open = mine
        elif t.kind == QTY:
            nxt = ahead(k)
            pre = nxt is not None
            if pre and cur is not None and not cur.segs and not clause_break and has_post_count(nxt):
                pre = False  # 鸡腿堡两个薯条一份: the count follows its item here
            if pre or cur is None:
                pending_qty, pending_bare, pending_tok = t.quantity, t.bare, t
            elif t.corrects and cur.segs:
                # 三个蛋挞，不对，五个: five, not eight; what was said with the old count stays.
                seg_open = _Seg(t.quantity, opts=[o for s in cur.segs for o in s.opts])
                cur.segs = [seg_open]
            else:
                if more_next and not cur.segs and not cur.token.same:
                    cur.segs.append(_Seg(1))  # 来杯生椰拿铁，再来一杯: the cup said first
                seg_open = _Seg(t.quantity, more=more_next, who=t.who, each=t.each)
                cur.segs.append(seg_open)
            more_next = False
        elif t.kind == OPT:
            if global_next:
                global_opts.append(t)
            elif cur is None or ((clause_break or pending_qty is not None) and ahead(k) is not None):
                pending_opts.append(t)
            elif seg_open is not None:
                seg_open.opts.append(t)
            else:
                cur.shared.append(t)
    if pending_opts and cur is not None:
        cur.shared.extend(pending_opts)
    for d in drafts:
        if d.inherited:
            # 一样的但要热的: what this cup says replaces what it took from the one before.
            for o in d.shared[d.inherited:] + [o for s in d.segs for o in s.opts]:
                o.corrects = True
    return _merge_references(drafts, category), global_opts


def _the_same_again(t: _Token, drafts: list[_Draft]) -> _Draft | None:
    """A line for "the same" (一杯一样的, 他也一样): the item of the last line and its options."""
    before = next((d for d in reversed(drafts) if d.token.kind == ITEM), None)
    if before is None:
        return None
    said = before.shared + (before.segs[0].opts if before.segs else [])
    token = dataclasses.replace(before.token, start=t.start, end=t.end, surface=t.surface, same=True,
                                corrects=False, partial=False, wished=False, theirs=False)
    if before.token.theirs:
        drafts.remove(before)  # 小李点了大杯生椰少冰，我也要一杯一样的: one cup, the one like 小李's
    return _Draft(token, shared=list(said), inherited=len(said))


# Ice, and less sugar: of a thing whose ice and sugar are not chosen (a cola, a burger), they ask for nothing it
# lacks (可乐去冰, 香辣鸡腿堡少冰, 大杯可乐 去冰 少糖: established as ignored). Glued to its name (无糖可乐) such a word
# names another product, and is asked about.
_LESS_OF = frozenset({"正常冰", "少冰", "去冰", "冰的", "要冰的", "不要冰", "no ice", "less ice", "iced",
                      "少糖", "半糖", "微糖"})


def _less_of(keys: tuple[str, ...]) -> bool:
    return any(k in _LESS_OF for k in keys)


def _named_in(name: str, keys: tuple[str, ...]) -> bool:
    """Whether the item's name states the option (薯条(中) is the medium: 中薯, 中份 ask for nothing it lacks)."""
    stated = "".join(re.findall(r"\(([^)]*)\)", normalize(name)))
    return bool(stated) and any(k[:1] in stated for k in keys if k)


# Words that leave the choice to us: a bare brand or a word of several items is then suggested from, not asked.
_HANDED_OVER = re.compile("|".join((*ANYTHING_WORDS, *CHEAPEST_WORDS, "最贵", "推荐", "看着办", "你定", "你选", "你挑",
                                    "不超过", "别超过", "不超", "别超", "以内", "以下", "之内", "预算", "人均",
                                    "帮我挑", "帮我选", "whatever", "anything", "recommend", "surprise me")))
_NOT_THIS = re.compile(r"[不没别非]")
# Words that say the card must pay it all (卡能全免的, 免单卡全包, 不用补差价).
_CARD_PAYS_ALL = re.compile(r"全包|全免|不用我?补|不补差价|不用我?加钱")


def _description(text: str, said: list[_Token], t: _Token) -> tuple[str, str]:
    """The characters of the mention's clause (and of the clause after it, when that names nothing) that no
    phrase explained: what the thing is described by (桃子李子混在一起的), and those said after 不 / 没 (不辣)."""
    breaks = [x for x in said if x.kind == SEP and x.surface not in SEPARATORS]
    start = max((b.end for b in breaks if b.end <= t.start), default=0)
    ends = [b.start for b in breaks if b.start >= t.end]
    end = ends[0] if ends else len(text)
    if len(ends) >= 1 and not any(x.kind in (ITEM, CAT) and end <= x.start < (ends[1] if len(ends) > 1 else len(text))
                                  for x in said):
        end = ends[1] if len(ends) > 1 else len(text)  # 来个汉堡，香辣的: the clause after describes it
    covered = {c for x in said if x.kind not in (SEP,) for c in range(x.start, x.end)}
    wanted, unwanted = [], []
    for c in range(start, end):
        ch = text[c]
        if c in covered or not is_cjk(ch) or ch in FILLER_CHARS or ch in _DESCRIPTION_FILLERS:
            continue
        (unwanted if _NOT_THIS.search(text, max(start, c - 2), c) else wanted).append(ch)
    return "".join(dict.fromkeys(wanted)), "".join(dict.fromkeys(unwanted))


# Characters of a description that describe nothing (那个…的那款, 喝起来像…一样).
_DESCRIPTION_FILLERS = frozenset("那这个款种样起像似里面上下在混兑了是不没别非得很超特别有味道")


def _counted_unknown(text: str, said: list[_Token]) -> str:
    """Words no phrase explained right after a count and up to a break or a joining word (两份鸡米花加…): a
    thing counted that no menu here sells, or ""."""
    covered = {c for t in said for c in range(t.start, t.end)}
    money = {c for start, end, _, _ in scan_money(text) for c in range(start, end)}
    # Only up to a joining word (加, 和): after other words (两个送爸妈, 来一杯尝尝) the count is of the thing before.
    seps = {t.start for t in said if t.kind == SEP and t.surface in SEPARATORS}
    for t in said:
        if t.kind != QTY or t.people or t.problem:
            continue
        j = t.end
        while j < len(text) and text[j] == " ":
            j += 1
        k = j
        while k < len(text) and k not in covered and k not in money and is_cjk(text[k]) and text[k] not in FILLER_CHARS:
            k += 1
        if k - j >= 2 and k in seps:
            return text[j:k]
    return ""


def _within(item: ItemSpec, cap: int | None) -> bool:
    """Whether the item's price keeps to the budget the sentence said (none said: any price)."""
    return cap is None or item.price_fen <= cap


def _only_agrees(word: str, earlier: str | None, group_id: str, table: ItemOptions) -> bool:
    """Whether `word` only gives the direction of the option already chosen in its group ("热的，
    不要冰": hot, which has no ice; "少冰，冰的"): the exact option stays, whichever came first."""
    return earlier is not None and is_direction(word) and agree(word, table.names[(group_id, earlier)])


def _joined_name_parts(text: str, tokens: list[_Token], category: dict[str, str]) -> list[_Token]:
    """An item word and, right against it, a piece of a name of the same item are one mention
    (生椰latte, 黑糖波波牛乳 read as 黑糖波波 + 牛乳): two mentions ordered two cups, the options on
    one of them. The mention names what both parts can name. So are an item word and, after 的,
    another name of it or its kind (百事的可乐, 草莓的那个摇摇, 奥尔良的汉堡): read as two, they
    ordered two colas, or a second burger of the kind nobody asked for."""
    out: list[_Token] = []
    for t in tokens:
        prev = out[-1] if out else None
        of = prev is not None and prev.kind == ITEM and _OF.match(text, prev.end, t.start) is not None
        # 烤鸡腿 + 堡: a piece of a name right against its kind is one mention (read as two, 不辣的那个烤鸡腿堡 was
        # a New Orleans burger and a second burger of the kind).
        glued = prev is not None and prev.kind == ITEM and prev.how == "piece" and prev.end == t.start
        if (of or glued) and t.kind == CAT and t.meaning and t.meaning.cats:
            items = {i: q for i, q in prev.items.items() if category[i] in t.meaning.cats}
            if items:
                out[-1] = dataclasses.replace(prev, end=t.end, surface=text[prev.start:t.end], items=items,
                                              quality=max(items.values()))
                continue
        if (prev is not None and prev.kind == ITEM and t.kind == ITEM
                and ("piece" in (prev.how, t.how) and not text[prev.end:t.start].strip() or of)
                and prev.items.keys() & t.items.keys()):
            whole = t if prev.how == "piece" else prev
            items = {i: max(prev.items[i], t.items[i]) for i in prev.items.keys() & t.items.keys()}
            out[-1] = dataclasses.replace(whole, start=prev.start, end=t.end, surface=text[prev.start:t.end],
                                          items=items, quality=max(items.values()))
            continue
        out.append(t)
    return out


def _counted_by_a_correction(tokens: list[_Token], k: int, text: str) -> bool:
    """The item right after a count that corrects (两杯，嗯不是，一杯多肉葡萄一杯多肉桃李): the correction is of
    the thing too. Read as one more line, the two cups said first were kept beside the corrected order."""
    q = tokens[k - 1] if k else None
    return q is not None and q.kind == QTY and q.corrects and not text[q.end:tokens[k].start].strip()


def _without_fallbacks(tokens: list[_Token]) -> list[_Token]:
    """The phrases without what to take if the first is sold out, nor the count said with it
    (卖完了就换两个奥尔良的): the order is the first choice; the store says if it is sold out."""
    out: list[_Token] = []
    for t in tokens:
        if t.fallback:
            while out and out[-1].kind == QTY and t.kind != OPT:
                out.pop()
            continue
        out.append(t)
    return out


def _negated(tokens: list[_Token]) -> tuple[list[_Token], list[_Token]]:
    """The phrases to parse, without the negations and the options and brands they take back, and
    every phrase taken back ("不要可乐，要一份薯条": 可乐). Items and categories taken back stay in
    the phrases, so the counts around them still attach to them (不要两杯美式); `_without`
    drops their lines after parsing. A count between a negation and its phrase goes with it."""
    gone: set[int] = set()
    refused: list[_Token] = []
    for k, t in enumerate(tokens):
        if t.kind not in (NEG_BEFORE, NEG_AFTER):
            continue
        gone.add(k)
        step = 1 if t.kind == NEG_BEFORE else -1
        x = k + step
        while 0 <= x < len(tokens) and tokens[x].kind == QTY:
            x += step
        if 0 <= x < len(tokens) and tokens[x].kind in (ITEM, CAT, OPT, BRAND, UNKNOWN):
            refused.append(tokens[x])
            if tokens[x].kind not in (ITEM, CAT):
                gone.add(x)
    return [t for k, t in enumerate(tokens) if k not in gone], refused


def _headcount(tokens: list[_Token], text: str) -> tuple[list[_Token], int, int]:
    """The phrases to parse, how many people each count is for, and where the counts per person
    end: with 每人 (each person), the number of people said (5个人每人一杯生椰拿铁 is five cups,
    每人一杯，一共5人 too) is no count of its own. Without 每人 a number of people stays a count, as
    people say it (3个人的奶茶). What is added after it (…，再加一杯美式) is one more cup for the
    table, not one each: read per person it put four unasked-for coffees on the order."""
    each = [t for t in tokens if t.kind == PER_PERSON or _each_of_the_speakers(tokens, t, text)]
    if not each:
        return _without_people_beside_a_count(tokens), 1, 0
    people = next((t.quantity for t in tokens if t.kind == QTY and t.people and not t.problem), None)
    if people is None:
        people = _named_people(tokens, each[0], text)
    # 每人 said again after 再 (…，再每人一个甜筒) is again one each: the span ends after the last one.
    until = next((t.start for t in tokens if t.kind == SEP and t.start > each[-1].end and t.surface in ADDITIVE_SEPARATORS),
                 math.inf)
    gone = {id(t) for t in each}
    return ([t for t in tokens if id(t) not in gone and not (t.kind == QTY and t.people and not t.problem)],
            people, until)


def _one_each_for_the_named(tokens: list[_Token], text: str) -> list[_Token]:
    """各 / 一人 after people named one by one (小李和我各一杯丝绒拿铁, 给爸妈各买一杯, 我跟我弟一人两个蛋挞): the
    count after it is per person, for that line alone. Read as "each of the lines" it gave its count to
    the lines before and its options to every line; read for the whole sentence, the next person's
    burger (…，我妈要个香辣鸡腿堡) was one each too. A number of people said (我们俩各要一杯) is _headcount's."""
    if any(t.kind == QTY and t.people for t in tokens):
        return tokens
    out = list(tokens)
    for t in tokens:
        if not (t.kind == PER_PERSON or t.kind == GLOBAL and t.surface.startswith("各")):
            continue
        people = _named_people(out, t, text)
        if people < 2:
            continue
        at = out.index(t)
        count = next((x for x in out[at + 1:] if x.kind in (QTY, SEP, ITEM, CAT)), None)
        if count is not None and count.kind == QTY and not count.problem:
            out[out.index(count)] = dataclasses.replace(count, quantity=count.quantity * people, each=True)
            del out[at]
        else:
            out[at] = dataclasses.replace(t, kind=QTY, quantity=people, each=True, meaning=None)
    return out


def _halves(tokens: list[_Token]) -> list[_Token]:
    """一半…一半 (八个人，一半要厚乳拿铁一半要生椰拿铁; 12杯酱香拿铁，一半热一半冰): two halves of the number
    of people or of the count said before them. Without a whole that splits evenly it is asked about."""
    halves = [t for t in tokens if t.kind == QTY and t.half]
    if not halves:
        return tokens
    first = tokens.index(halves[0])
    whole = next((t for t in reversed(tokens[:first]) if t.kind == QTY and not t.problem and not t.half), None)
    n = whole.quantity if whole is not None else 0
    out = []
    for t in tokens:
        if t.half:
            ok = len(halves) == 2 and n and n % 2 == 0
            t = dataclasses.replace(t, quantity=n // 2 if ok else 0, problem="" if ok else "fraction", half=False)
        elif t is whole and t.people:
            continue  # the people are the whole, not a count of their own
        out.append(t)
    return out


def _without_people_beside_a_count(tokens: list[_Token]) -> list[_Token]:
    """A number of people in a clause that counts its thing too (我们俩再合吃一份薯条) says who shares it:
    read as a count, the burger before was two. Alone (3个人的奶茶) it still counts."""
    out, clause = [], []
    for t in tokens + [_Token(kind=SEP, start=-1, end=-1, quality=0.0, surface="。")]:
        if t.kind == SEP and t.surface not in SEPARATORS:
            counted = any(c.kind == QTY and not c.people for c in clause)
            out += [c for c in clause if not (counted and c.kind == QTY and c.people and not c.problem)]
            clause = []
            if t.start >= 0:
                out.append(t)
        else:
            clause.append(t)
    return out


def _each_of_the_speakers(tokens: list[_Token], t: _Token, text: str) -> bool:
    """各 after the speakers are counted and before anything is named (我们俩各要一杯厚乳拿铁) is 每人:
    read as "each of the lines" it ordered one cup for two people. After the items (柠檬水和奶茶各一杯)
    it still gives each line the count."""
    if t.kind != GLOBAL or not t.surface.startswith("各"):
        return False
    before = tokens[:tokens.index(t)]
    if any(b.kind in (ITEM, CAT) for b in before):
        return False
    return any(b.kind == QTY and b.people for b in before) or _named_people(tokens, t, text) > 1


# 一半…一半 (half of them …, the other half …): counts once the whole is known (see _halves).
_HALF = re.compile(r"(?<![减化吃喝剩了])(?:另)?一半(?!糖|甜)")
# Whose cup (我的那杯, 前台那杯): one of the cups counted before, the one said to be for them.
_WHOSE_CUP = re.compile(r"(?P<who>[^\W\d_的给要来点和跟与]{1,4}?)的?那一?[杯份]")
# Whom a count is for (一杯给我, 两杯给楼下的).
_FOR_WHOM = re.compile(r"\s*给(?P<who>[^\W\d_的给要来点和跟与]{1,4}?)(?=的|\s|[,，。;；]|$|[一两二三四五六七八九十\d])")
# The thing said before, again (再来一杯一样的, 他也一样): "the same" is no thing we do not know.
_SAME = re.compile(r"(?<![不])(?:一样的|同样的|一样)(?!东西)")  # 来一样东西: one thing, any
# Before 一样, what makes it "like that" rather than "one more of the same": 都一样, 和上次一样, 跟他一样的.
_ALIKE = re.compile(r"(?:都|全|都是|不|(?:跟|和|同|像)(?:上次|上回|之前|以前|平时|昨天|前天|那天|他|她|我|你|它)?的?)\s*$"
                    r"|上次|上回|之前|以前|平时|昨天|前天|老样子")
# Words that name two people at once (给爸妈各买一杯, 二老各一个).
_TWO_PEOPLE = ("爸妈", "父母", "二老", "两老", "老两口", "两口子", "夫妻", "爸爸妈妈", "他俩", "她俩", "你俩")

# Between the people named for 一人一杯 / 各一个: 我和我老公, 我、小王、小李, 给我和我老婆.
_BETWEEN_PEOPLE = re.compile(r"\s*(?:和|跟|与|及|还有|、|,|，|&)\s*")
_A_PERSON = re.compile(r"[^\W\d_]{1,5}")


def _named_people(tokens: list[_Token], marker: _Token, text: str) -> int:
    """How many people are named right before 一人 / 每人 / 各 (我和室友各一个): without it 一人一杯
    multiplied by nobody and two people got one cup. 1 when they are not named one by one."""
    start = max((t.end for t in tokens if t.end <= marker.start and (
        t.kind in (ITEM, CAT, BRAND, QTY)
        # A clause before the people is not of them (爸妈年纪大了…，二老各一个); the names may end one (我、小王，一人一个).
        or t.kind == SEP and t.surface not in SEPARATORS and "、" not in t.surface and text[t.end:marker.start].strip())),
        default=0)
    names = [n for n in _BETWEEN_PEOPLE.split(text[start:marker.start].strip(" ,，、;；。:：")) if n]
    if not all(_A_PERSON.fullmatch(n) for n in names):
        return 1
    count = sum(2 if n.endswith(_TWO_PEOPLE) else 1 for n in names)
    return count if count >= 2 else 1


def _times(draft: _Draft, people: int) -> None:
    """The line's first count is per person; later ones split the total (5个人每人一杯，其中两杯少冰)."""
    if people == 1:
        return
    if not draft.segs:
        draft.segs.append(_Seg(1))
    draft.segs[0].quantity *= people


def _without(drafts: list[_Draft], refused: list[_Token]) -> tuple[list[_Draft], list[str], list[str]]:
    """The drafts left once the items and categories taken back are gone, every mention of them
    (两杯美式…算了不要美式了), with what was left out and the refusals that could not be followed.
    A piece of the name of an item still ordered (珍珠奶茶不要珍珠) asks to take something out of
    that item, which no menu option offers: it is reported, not obeyed by dropping a line."""
    left_out: list[str] = []
    not_offered: list[str] = []
    for r in refused:
        if r.kind not in (ITEM, CAT):
            continue
        if r.kind == ITEM and r.how == "piece" and any(
                d.token is not r and r.surface in d.token.surface for d in drafts if d.token.kind == ITEM):
            not_offered.append(r.surface)
            drafts = [d for d in drafts if d.token is not r]
            continue
        left_out.append(r.surface)
        drafts = [d for d in drafts if d.token is not r and not (d.token.kind == r.kind and _same_thing(d.token, r))]
    return drafts, left_out, not_offered


def _same_thing(a: _Token, b: _Token) -> bool:
    if a.kind == ITEM:
        return set(a.items) == set(b.items)
    return a.surface == b.surface


def _merge_references(drafts: list[_Draft], category: dict[str, str]) -> list[_Draft]:
    """"两杯芝芝莓莓，芝芝莓莓要去冰": a later mention with no count of its own and only options
    refers back to the counted line of the same item, it is not one more cup; nor is "X的" that
    narrows the mention right before it (两杯拿铁，厚乳的)."""
    out: list[_Draft] = []
    # The first counted line of each item, by what the item's word may name: looked up, not
    # searched for (a sentence of 500 items compared every one with every other).
    counted: dict[frozenset[str], _Draft] = {}
    wished: dict[frozenset[str], _Draft] = {}
    for d in drafts:
        wish = wished.pop(frozenset(d.token.items), None) if d.token.kind == ITEM and d.segs else None
        if wish is not None and any(x is wish for x in out):
            # 想吃鸡蛋，买一盒鸡蛋: the wish and the order are one box; read as two lines it was two.
            out = [x for x in out if x is not wish]
            d.shared[:0] = wish.shared
        prev = out[-1] if out else None
        if (prev is not None and prev.token.kind == ITEM and d.token.kind == ITEM and d.token.said_as_kind
                and not d.segs and d.token.items.keys() <= prev.token.items.keys()):
            # 来杯美式，橙C的 / 来杯可乐，百事的就行: "X的" with no count of its own says which one
            # the thing before is; read as one more line it ordered two drinks for one.
            prev.token = d.token
            prev.shared.extend(d.shared)
            continue
        earlier = counted.get(frozenset(d.token.items)) if d.token.kind == ITEM else _the_one_of_kind(d, out, category)
        if earlier is not None and not d.segs and d.shared and not d.inherited:
            earlier.shared.extend(d.shared)
            continue
        out.append(d)
        if d.token.kind == ITEM and d.segs:
            counted.setdefault(frozenset(d.token.items), d)
        elif d.token.kind == ITEM and d.token.wished:
            wished.setdefault(frozenset(d.token.items), d)
    return out


def _the_one_of_kind(d: _Draft, before: list[_Draft], category: dict[str, str]) -> _Draft | None:
    """The one line said before that a kind said with options only refers to (再来一杯草莓奶昔，奶昔不要冰): read as
    one more line, a second shake came with ice. None unless exactly one item line before is of that kind."""
    cats = d.token.meaning.cats if d.token.kind == CAT and d.token.meaning and d.token.meaning.cats else None
    if not cats:
        return None
    same = [x for x in before if x.token.kind == ITEM and x.token.items
            and all(category.get(i) in cats for i in x.token.items)]
    return same[0] if len(same) == 1 else None


# ------------------------------------------------------------------------------------- helpers
def _lines_as_clauses(raw: str) -> str:
    """A pasted list (a WeChat group's 接龙) as clauses: each line ends a clause, and the numbers 1, 2,
    3 … or ①②③ that start its lines are no counts. Numbers that do not run from 1 stay (a line
    "2杯" under its item is that item's count)."""
    if "\n" not in raw:
        return raw
    lines = raw.split("\n")
    marks = [_LINE_NUMBER.match(line) for line in lines]
    numbered = [(k, m) for k, m in enumerate(marks) if m]
    expected, ordered = 1, True
    for _, m in numbered:
        said = m.group(1) or m.group(2)
        if said is not None and int(unicodedata.normalize("NFKC", said)) != expected:
            ordered = False
            break
        expected += 1
    if len(numbered) >= 2 and ordered:
        for k, m in numbered:
            lines[k] = lines[k][m.end():]
    return "，".join(lines)


def _in_gb2312(text: str) -> bool:
    try:
        text.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _each_word_a_slip(phrase: str, surface: str) -> bool:
    """Whether each word of a phrase of several words is a typo of its word in the surface: a shared
    head noun made "matcha latte" close to "maotai latte" (酱香拿铁), another drink than asked for."""
    said, named = phrase.split(), surface.split()
    if len(said) < 2 or len(said) != len(named):
        return True
    return all(a == b or fuzz.ratio(a, b) >= 75 for a, b in zip(said, named))



def _without_conditions(text: str, tokens: list[_Token], covered: set[int]) -> list[_Token]:
    """Drop a kind of thing that starts a condition: 好吃的话 ("if it is good") read as 吃的
    ("something to eat") and added fries to 原味鸡好吃吗？好吃的话来两块."""
    kept = []
    for t in tokens:
        if t.kind == CAT and t.surface.endswith("的") and text.startswith("话", t.end):
            covered.difference_update(range(t.start, t.end))
            continue
        kept.append(t)
    return kept

def _without_list_numbers(text: str) -> str:
    """"1、生椰拿铁 2、厚乳拿铁": the numbers of a list, 1, 2, 3 … in order, are separators, not
    counts (2、 read as two more 生椰拿铁). A lone "2、" after an item is still its count
    (生椰拿铁2、厚乳拿铁1), and so is a list that does not start at 1."""
    marks: list[re.Match[str]] = []
    for m in _LIST_NUMBER.finditer(text):
        if text[max(0, m.start() - 2):m.start()].rstrip()[-1:] in ("x", "×", "*"):
            continue  # 香辣鸡腿堡×1、薯条×2、: counts, which read as a list 1、2、 lost both
        if int(m.group(1)) == len(marks) + 1 and (marks or m.start() == 0 or not text[m.start() - 1].isalnum()):
            marks.append(m)
    if len(marks) < 2:
        return text
    out = list(text)
    for m in marks:
        out[m.start():m.end()] = "，" * (m.end() - m.start())
    return "".join(out)


def _readings(per_brand: list[tuple[float, str, list[list[_Pick]]]]):
    """(confidence, brand_id, picks(), rank) of every reading of a sentence that is not all
    category words, in the order they are offered before ranking: per brand its best picks, then
    each ambiguous line's alternatives (拿铁: which latte?). The confidence is the one the built
    Candidate gets (the weakest pick, 0.9 for an alternative), worked out without building it:
    the weakest of the other lines comes from running minima, so this is linear in the lines."""
    for _, brand_id, choices in per_brand:
        best = [c[0] for c in choices]
        yield round(min(p.confidence for p in best), 3), brand_id, best.copy, 0
        before = [math.inf]  # before[i]: the weakest of best[:i]
        for p in best:
            before.append(min(before[-1], p.confidence))
        after = [math.inf] * (len(best) + 1)  # after[i]: the weakest of best[i:]
        for i in range(len(best) - 1, -1, -1):
            after[i] = min(after[i + 1], best[i].confidence)
        for li, c in enumerate(choices):
            for alt in c[1:3]:
                if alt.confidence < c[0].confidence * 0.8 and c[0].confidence >= 0.9:
                    continue  # 美式 is 标准美式: 橙C美式 is not an alternative worth a store search
                conf = min(before[li], alt.confidence, after[li + 1])

                def picks(best: list[_Pick] = best, li: int = li, alt: _Pick = alt) -> list[_Pick]:
                    out = best.copy()
                    out[li] = alt
                    return out

                yield round(conf * 0.9, 3), brand_id, picks, 1


_PACK = re.compile(r"(\d+)\s*(枚|个|只|片|kg|千克|公斤|g|克|斤)\s*$")
# A measure -> (the unit packs are compared in, how many of it one is): 个, 枚 and 只 all count pieces
# (鸡蛋20个 is two boxes of 鲜鸡蛋10枚: read as its own measure, twenty boxes), weights are in grams.
_PACK_UNITS = {"枚": ("piece", 1), "个": ("piece", 1), "只": ("piece", 1), "打": ("piece", 1), "片": ("片", 1),
               "g": ("g", 1), "克": ("g", 1), "kg": ("g", 1000), "千克": ("g", 1000), "公斤": ("g", 1000),
               "斤": ("g", 500)}


def _pack_size(name: str) -> tuple[int, str] | None:
    """鲜鸡蛋10枚 -> (10, piece), 智利车厘子1kg -> (1000, g): how much the item holds, when its name says so."""
    m = _PACK.search(normalize(name))
    if not m:
        return None
    unit, times = _PACK_UNITS[m.group(2)]
    return int(m.group(1)) * times, unit


def _in_pack_units(t: _Token) -> tuple[int, str] | None:
    """A count said in a measure packs are sized in (20个, 2斤), in that unit: (20, piece), (1000, g)."""
    unit = _PACK_UNITS.get(t.surface.strip()[-1:])
    return (t.quantity * unit[1], unit[0]) if unit else None


def _core_name(name: str) -> str:
    """丹东草莓500g -> 丹东草莓, 薯条(中) -> 薯条: the part people say."""
    s = normalize(name)
    prev = None
    while prev != s:
        prev, s = s, _SIZE_SUFFIX.sub("", s)
    return s or normalize(name)


def _pieces(word: str) -> list[tuple[str, float]]:
    """Contiguous pieces (2+ chars) and one-gap pieces (3+ chars) of a Chinese name, with the share
    of the name each keeps. Only the CJK part is cut."""
    w = "".join(c for c in word if is_cjk(c))
    n = len(w)
    if n < 3:
        return []
    out: dict[str, float] = {}
    for i in range(n):
        for j in range(i + 2, n + 1):
            if j - i < n:
                out[w[i:j]] = max(out.get(w[i:j], 0.0), (j - i) / n)
    if n <= 8:
        for a in range(1, n - 1):
            for b in range(a + 1, n):
                piece = w[:a] + w[b:]
                if len(piece) >= 3:
                    out[piece] = max(out.get(piece, 0.0), len(piece) / n)
    return list(out.items())


def _plural(word: str) -> str:
    if not word or not word[-1].isalpha():
        return word
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def _is_word_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "'")


def _is_standard(name: str) -> bool:
    return any(m in name.lower() for m in _STANDARD_MARKERS)


def _english_name(brand: BrandSpec) -> str:
    for a in brand.aliases:
        if a.isascii():
            return a
    return brand.name


def _how_note(tok: _Token, item: ItemSpec) -> str:
    if tok.surface == normalize(item.name):
        return ""
    how = {"sound": "sounds like", "fuzzy": "close to", "piece": "part of", "pinyin": "pinyin of"}.get(tok.how, "=")
    return f"「{tok.surface}」{how} {item.name}"


__all__ = ["RuleBasedResolver", "MAX_CHARS"]
