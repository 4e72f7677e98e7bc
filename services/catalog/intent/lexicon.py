"""Language knowledge that is not catalog data: category words, brands we do not carry, connectives,
and the text normalisation and pinyin helpers every index shares."""
from __future__ import annotations

import os
import re
import unicodedata
from functools import lru_cache

# pypinyin's phrase dictionary costs ~40 MB and ~190k long-lived lists and dicts in every process
# that loads it; the resolver compares pinyin of the sentence with pinyin of menu names computed
# the same way, so per-character readings are enough (dev and held-out accuracy are identical
# without it). Set here, where pypinyin is loaded, so the server, the tools and the tests all
# resolve as the server does: a pytest process that had loaded it spent 100-150 ms in each full
# garbage collection, long enough to stall a timed test's event loop (test_common_floor).
os.environ.setdefault("PYPINYIN_NO_PHRASES", "true")
os.environ.setdefault("PYPINYIN_NO_DICT_COPY", "true")

from pypinyin import Style, lazy_pinyin, pinyin  # noqa: E402

# Category words -> item categories they ask for (item categories are the catalog's own; brand
# categories such as 茶饮 and the item categories themselves are added from the data at build time).
DRINK_CATEGORIES = frozenset({"奶茶", "果茶", "纯茶", "奶昔", "咖啡", "汽水"})
# Item categories counted in 块 (原味鸡3块): after anything else a number of 块 is yuan (总共58块).
COUNTED_IN_KUAI = frozenset({"炸鸡"})
CATEGORY_TERMS: dict[str, frozenset[str]] = {
    "奶茶": frozenset({"奶茶"}), "milk tea": frozenset({"奶茶"}), "milktea": frozenset({"奶茶"}),
    "boba": frozenset({"奶茶"}), "珍奶": frozenset({"奶茶"}),
    "果茶": frozenset({"果茶"}), "fruit tea": frozenset({"果茶"}), "水果茶": frozenset({"果茶"}),
    "果汁": frozenset({"果茶"}), "juice": frozenset({"果茶"}), "冷饮": DRINK_CATEGORIES,
    "茶": frozenset({"奶茶", "果茶", "纯茶"}), "tea": frozenset({"奶茶", "果茶", "纯茶"}),
    "茶饮": frozenset({"奶茶", "果茶", "纯茶"}), "饮品": DRINK_CATEGORIES,
    "咖啡": frozenset({"咖啡"}), "coffee": frozenset({"咖啡"}), "kafei": frozenset({"咖啡"}),
    "汉堡": frozenset({"汉堡"}), "汉堡包": frozenset({"汉堡"}), "堡": frozenset({"汉堡"}),
    "burger": frozenset({"汉堡"}), "hamburger": frozenset({"汉堡"}),
    "炸鸡": frozenset({"炸鸡"}), "fried chicken": frozenset({"炸鸡"}), "chicken": frozenset({"炸鸡", "汉堡"}),
    "小吃": frozenset({"小食", "甜品"}), "小食": frozenset({"小食", "甜品"}), "snack": frozenset({"小食", "甜品"}),
    "甜品": frozenset({"甜品", "冰淇淋"}), "甜点": frozenset({"甜品", "冰淇淋"}),
    "dessert": frozenset({"甜品", "冰淇淋"}), "sweets": frozenset({"甜品", "冰淇淋"}),
    "饮料": DRINK_CATEGORIES, "喝的": DRINK_CATEGORIES, "drink": DRINK_CATEGORIES,
    "beverage": DRINK_CATEGORIES, "something to drink": DRINK_CATEGORIES,
    "水果": frozenset({"水果"}), "fruit": frozenset({"水果"}),
    "吃的": frozenset({"汉堡", "炸鸡", "小食", "甜品"}), "food": frozenset({"汉堡", "炸鸡", "小食", "甜品"}),
    "something to eat": frozenset({"汉堡", "炸鸡", "小食", "甜品"}),
    "快餐": frozenset({"汉堡", "炸鸡", "小食"}), "fast food": frozenset({"汉堡", "炸鸡", "小食"}),
    "奶昔": frozenset({"奶昔"}), "milkshake": frozenset({"奶昔"}), "shake": frozenset({"奶昔"}),
    "年货": frozenset({"礼盒"}), "礼盒": frozenset({"礼盒"}), "gift box": frozenset({"礼盒"}),
    "生鲜": frozenset({"水果", "蛋品"}), "groceries": frozenset({"水果", "蛋品"}),
}

# Well-known brands we do not carry: naming them lets the clarification say so instead of guessing.
UNKNOWN_BRANDS: dict[str, str] = {}
for _canonical, _names in {
    "星巴克": ["星巴克", "starbucks", "星爸爸", "sbux"],
    "麦当劳": ["麦当劳", "mcdonald's", "mcdonalds", "mcdonald", "金拱门", "麦记", "mcd"],
    "Costa": ["costa", "咖世家"],
    "必胜客": ["必胜客", "pizza hut", "pizzahut"],
    "汉堡王": ["汉堡王", "burger king"],
    "奈雪的茶": ["奈雪的茶", "奈雪", "nayuki"],
    "茶百道": ["茶百道", "chabaidao"],
    "古茗": ["古茗", "goodme"],
    "CoCo都可": ["coco都可", "coco"],
    "库迪咖啡": ["库迪", "cotti", "cotti coffee"],
    "Manner": ["manner"],
    "Tims": ["tims", "tim hortons", "天好咖啡"],
    "塔斯汀": ["塔斯汀"],
    "华莱士": ["华莱士", "wallace"],
    "德克士": ["德克士", "dicos"],
    "沪上阿姨": ["沪上阿姨"],
    "书亦烧仙草": ["书亦烧仙草", "书亦"],
    "霸王茶姬": ["霸王茶姬", "chagee"],
    "赛百味": ["赛百味", "subway"],
    "达美乐": ["达美乐", "domino's", "dominos"],
    "海底捞": ["海底捞", "haidilao"],
    "山姆": ["山姆", "sam's club", "sams club"],
    "永辉": ["永辉超市", "永辉"],
    "叮咚买菜": ["叮咚买菜", "叮咚"],
    "Peet's": ["peet's", "peets"],
    "茶颜悦色": ["茶颜悦色", "sexy tea"],
    # A cola by name: KFC pours Pepsi, and 可口可乐 read as 可乐 ordered a Pepsi nobody asked for.
    "可口可乐": ["可口可乐", "coca cola", "coca-cola", "cocacola"],
    # Sodas KFC here does not pour: read as nothing, 一杯可乐一杯雪碧 ordered one cola and dropped the other cup.
    "雪碧": ["雪碧", "sprite"],
    "芬达": ["芬达", "fanta"],
    "美年达": ["美年达", "mirinda"],
    "七喜": ["七喜", "7up", "7-up"],
    # A tea shop, said with 的 or a digit (一点点的波霸奶茶): 一点点 alone is "a little" (冰一点点).
    "一点点": ["一点点的", "1点点", "一點點的"],
}.items():
    for _n in _names:
        UNKNOWN_BRANDS[_n] = _canonical

# Words that join two order lines ("两杯拿铁和一杯美式", "a zinger and a pepsi").
SEPARATORS = ("和", "跟", "与", "及", "以及", "还有", "再来", "再要", "再加", "另外", "外加", "加上", "加", "再", "然后",
              "and", "plus", "also", "then", "&", "+")
# Separators that add to what came before: a count after them is more cups of the same item
# ("一杯生椰拿铁，再来一杯" is two), never a part of the count before ("两杯，一杯少冰").
ADDITIVE_SEPARATORS = frozenset(("再来", "再要", "再加", "再", "另外", "外加"))
# Words that make the option after them apply to every line ("都要大杯", "all large").
# Before a count it gives every line that count ("柠檬水和奶茶各两杯", "each").
GLOBAL_MARKERS = ("都要", "都是", "都", "全部", "全都", "统一", "各", "各来", "各要", "all", "both", "each", "every")
# Words that take back what comes right after them ("不要可乐，要一份薯条", "生椰拿铁不要大杯",
# "no coke", "不是芝芝莓莓，是多肉葡萄"): the item, category, brand or option they touch is not ordered. 要不 / 要不要 ("how
# about") are offers, not refusals. Option phrases that hold a negation themselves (不要冰, no ice)
# are whole phrases of the catalog and never reach this.
NEGATION_BEFORE = re.compile(
    # 别给我点 / 别又给我做成 / 不要再给我推荐: a refusal said to whoever makes the order (read as nothing,
    # 别给我点酱香拿铁了 ordered the 酱香拿铁).
    # 别给我去冰 (don't make it without ice) refuses the option after it, verb or not.
    r"(?:(?<!要)(?:(?:别|不要)(?:再|又)?(?:给|帮)(?:我们|我)?(?:(?:点|来|上|做成|弄成|做|弄|拿|加|推荐)了?)?|"
    # 除了X (all but X): X is not ordered; read as nothing, it was the one thing ordered.
    r"除了|除开|"
    r"喝不了|吃不了|不能喝|不能吃|不想要|不想喝|不想吃|不想点|不想买|不需要|不要|不用|不想|不喝|不吃|不来|不点|不加|别要|别给|别来|别点|别加|"
    r"(?<![啊哦噢呃额嗯是])不是|(?<![啊哦噢呃额嗯])不|别)"
    r"|去掉|取消|删掉|拿掉|(?<![a-z])(?:no|not|without|don't want|dont want|do not want|hold the|skip the|skip|minus))"
    r"\s*(?:那个|这个|那|这)?\s*$")
# ... and words that take back what came right before them ("生椰拿铁不要了，换成厚乳"): only at the
# end of a clause, so 香辣鸡腿堡不要辣 (no spice) does not drop the burger. Also as a clause of its
# own after the phrase ("一杯生椰拿铁，不要了", "…，算了吧", "…，还是不要了"): a user who changed their
# mind before sending; read as an order, OrderByText's confirm placed and paid it at once.
# 算了不喝了 (I won't drink it after all) takes the drink back like 不要了; X除外 leaves X out.
_TAKE_BACK = r"(?:还是|就|也|都|先)?(?:不要|不用|不需要|取消|去掉|删掉|拿掉|算了|太贵|太甜|太腻|不喝|不吃|不买|不点|除外)"
NEGATION_AFTER = re.compile(
    rf"^[\s,，、.。…]*{_TAKE_BACK}(?:[\s,，、]*{_TAKE_BACK})*(?:(?:了|吧|啦|啊)+|\s*(?=[,，、;；。.!！?？]|$))")
# Words never worth a fuzzy match (fillers of an order sentence).
STOPWORDS = frozenset("""i me my we us you your please pls plz want wanna would like love get give order buy
have take need some the a an of for to from at with and or please thanks thank can could may just
one two three four five six seven eight nine ten cup cups box boxes bottle bottles piece pieces
large medium small hot cold iced ice sugar less no not without more extra also then it them this that
size regular normal half light sweet make let's lets let is are be do does anything something whatever""".split())

# Head nouns of products no brand here sells: an item word right before one (草莓蛋糕, 葡萄干, 鸡蛋饼)
# names that product, and read as the item it ordered a box of strawberries for a strawberry cake.
OTHER_PRODUCT_HEADS = ("蛋糕", "面包", "冰沙", "酸奶", "果酱", "饼干", "布丁", "大福", "千层", "慕斯", "冰棍", "沙拉",
                       "罐头", "味", "干", "饼", "酱", "糖葫芦", "汤", "粥", "面", "饭", "套餐")

# Ways of making a drink no menu here offers (低因, 燕麦奶): said with an order, they are asked about. Read as
# nothing, 来一杯低因生椰拿铁 ordered the usual latte, caffeine and all, and 生椰拿铁换燕麦奶 made it with milk.
NOT_OFFERED = ("低因", "脱因", "无咖啡因", "咖啡因", "decaf", "caffeine", "燕麦奶", "oat milk", "豆奶", "soy milk",
               "杏仁奶", "almond milk", "脱脂奶", "脱脂", "skim milk", "零卡糖", "代糖", "sweetener", "浓缩加份", "extra shot",
               # An extra shot (双份浓缩, 加一份浓缩, 加浓): read as a count, 双份浓缩的生椰拿铁 ordered two lattes.
               "浓缩", "加浓", "double shot",
               # A size smaller than any here (小杯, 小份): read as nothing, 一杯美式，要小杯 ordered the medium cup.
               "小杯", "小份", "小号", "small cup")

# Two-character pieces of item names too generic to name an item by themselves.
GENERIC_PIECES = frozenset({"新鲜", "标准", "经典", "招牌", "原味", "年货", "中杯", "大杯", "满杯", "香辣",
                            "多肉", "鲜橙", "四季", "冰鲜", "鸡腿", "奥尔", "尔良", "鲜鸡", "丹东", "智利"})

# Characters of an order sentence that carry no order of their own ("帮我点个", "有什么推荐吗"): what
# is left after them and after every known phrase is something we did not understand (全家桶).
FILLER_CHARS = frozenset("来杯个份帮我你他她点给要一的吧呢啊呀嘛吗下想喝吃买整请麻烦谢谢好了在去附近家店外卖单"
                         "有什么推荐哪些啥样个款就再也还和跟今天现在马上先", )
# Words that leave the choice to us ("蜜雪冰城随便来一杯"): no order of their own, like the fillers
# above, so a brand said with them suggests from its menu instead of asking what 随便 is.
# So do words that only say the free-order card pays ("盒马买点免单卡能全包的"): it is what every
# suggestion is chosen by anyway, and read as unknown words the brand was refused.
ANYTHING_WORDS = ("随便", "随意", "一样东西", "都行", "都可以", "无所谓", "看着办", "什么都行", "啥都行",
                  "不用我补钱", "不用补钱", "不用补差价", "不补差价", "不用加钱", "不用我加钱",
                  "免单卡能全包", "免单卡能用", "免单卡能覆盖", "免单卡", "能全包", "全包", "全免", "能覆盖", "能抵", "能免")
# Words that ask for the cheapest pick ("瑞幸最便宜的咖啡"): a kind of thing or a brand said with
# them is chosen for by price, not by the standard item first.
CHEAPEST_WORDS = ("最便宜", "便宜点", "便宜一点", "便宜的", "便宜", "最实惠", "最划算", "实惠", "cheapest", "cheap")

# An option said as one character right before the item: a size (大可乐, 中薯), or iced (冰美式,
# 冰拿铁: the commonest way to ask for a cold coffee). Alone anywhere else "冰" is no option: it
# is part of item and brand names (冰鲜柠檬水, 蜜雪冰城), which are read first and cover it.
OPTION_PREFIXES = {"大": "大杯", "中": "中杯", "冰": "冰的"}

_SPACE = re.compile(r"\s+")
# Cantonese 嘅 is 的 (熱嘅美式): read as an unknown character, 熱嘅 was no option and the drink came iced.
_CANTONESE = str.maketrans("嘅", "的")
_CONTROL = dict.fromkeys(c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D))


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, control characters dropped, runs of space as one."""
    text = unicodedata.normalize("NFKC", text).translate(_CONTROL).translate(_CANTONESE).lower()
    text = text.replace("’", "'").replace("`", "'")
    return _SPACE.sub(" ", text).strip()


def is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@lru_cache(maxsize=65536)
def is_traditional(ch: str) -> bool:
    """A CJK character outside GB 2312, the simplified set every common word is written in: in an
    order sentence that is nearly always a traditional spelling (樂, 條, 鐵), not a typo."""
    if not is_cjk(ch):
        return False
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return True
    return False


@lru_cache(maxsize=65536)
def readings(ch: str) -> frozenset[str]:
    """Toneless pinyin of one CJK character, its usual reading only: with every rare reading of a
    polyphone (波 bo/bei/bi) unrelated words start to sound alike."""
    if not is_cjk(ch):
        return frozenset((ch,))
    got = pinyin(ch, style=Style.NORMAL, heteronym=False, errors="ignore")
    return frozenset(got[0]) if got and got[0] else frozenset((ch,))


def pinyin_words(text: str) -> list[str]:
    """Toneless pinyin of the CJK characters of a name, read as a phrase (多肉葡萄 -> duo rou pu tao)."""
    return lazy_pinyin("".join(ch for ch in text if is_cjk(ch)), style=Style.NORMAL, errors="ignore")
