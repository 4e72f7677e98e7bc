"""Options: what people say (不要冰, no ice, 热的, 超大杯) -> the option an item offers.

An option mention carries *keys* (the words that name it); each item has a table from key to its own
(group_id, option_id). So a key is only ever applied to an item that offers it: 少冰 on a burger or
少糖 on a KFC cola (size only) is dropped, not forced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .lexicon import normalize
from .specs import ItemSpec

# Colloquial ways to say an option that a catalog would not list as an alias, keyed by the option's
# canonical name (the name used in the demo menu). Negations are whole phrases on purpose: "冰" or
# "糖" alone are parts of item names (冰鲜柠檬水, 黑糖) and never an option by themselves.
COLLOQUIAL_OPTIONS: dict[str, tuple[str, ...]] = {
    "大杯": ("大一点", "加大", "大份的", "大杯的", "超大杯的", "large cup", "big cup", "upsize",
             "venti", "grande", "xl",
             # sizes said as clothes are sized
             "大号", "大号的", "l号", "l杯", "l码", "l"),
    "中杯": ("中杯的", "中份的", "medium cup", "regular cup", "tall", "中号", "中号的", "m号", "m杯", "m码"),
    # Sweetness is said as 甜 as often as 糖 (七分甜, 三分甜), and Cantonese takes things out with 走
    # (走冰, 走甜): read as nothing, 走甜 ordered the standard sugar.
    "标准糖": ("正常甜", "正常糖的", "全糖的", "十分甜", "全甜", "normal sugar", "normal sweet", "regular sweet"),
    "少糖": ("七分甜", "少少甜", "少放糖", "糖少点", "糖少一点", "少一点糖", "少点糖", "不要太甜", "别太甜", "不太甜", "less sweetness",
             "not too sweet", "low sugar"),
    "半糖": ("五分甜", "半分糖", "一半糖", "50%糖", "50% sugar", "half sweetness"),
    "微糖": ("三分甜", "一点点糖", "一点糖", "微微甜", "slight sugar", "little sugar", "30%糖", "30% sugar"),
    "不另外加糖": ("糖最少", "最少糖", "糖最少的", "最少的糖", "甜度最低", "最低糖", "走甜", "走糖", "唔要糖", "零分甜", "不放糖", "别放糖", "不要放糖", "别加糖", "不要加糖", "不用加糖", "不用糖", "无糖的", "不加糖的", "without sugar",
                "zero sugar", "0 sugar", "sugarless", "no sweetener"),
    "正常冰": ("正常冰的", "要冰的", "冰镇", "冷的", "cold", "with normal ice", "full ice"),
    "少冰": ("少bing", "少放冰", "冰少点", "冰少一点", "少一点冰", "少点冰", "不要太冰", "别太冰", "less cold", "easy ice"),
    # 冰 typed in pinyin (去bing): read as nothing, the drink came with ice.
    "去冰": ("去bing", "唔要冰", "去冰的", "不放冰", "别放冰", "不要放冰", "别加冰", "不要加冰", "不用冰", "不要冰块", "冰不要", "无冰的", "hold the ice",
             "no ice please", "ice-free"),
    "常温": ("常温的", "室温", "不冰不热", "不要冰的也不要热的", "room-temperature"),
    "热": ("热饮的", "热一点", "烫的", "温热", "热乎的", "heated"),
}

# How much ice or sugar, said as the thing and how much of it, in either order (冰块少放点, 少放点冰,
# 冰块不要太多, 糖减半, 唔好落冰): each pairing, so one nobody listed is not read as nothing and the
# drink made with full ice and sugar.
_ICE, _SUGAR = ("冰", "冰块"), ("糖", "甜度")
_LESS_BEFORE = ("少放", "少放点", "少放一点", "少加", "少加点", "少加一点", "少点", "少一点")
_LESS_AFTER = ("少放点", "少放一点", "少放些", "放少点", "放少一点", "少一点", "少点", "少一些", "少些",
               "不要太多", "别太多", "别放太多", "不要放太多")
_NONE_BEFORE = ("不要", "不加", "不放", "别放", "别加", "不要放", "不要加", "唔好落", "唔好加", "唔落", "唔要", "走")


# Said between the thing and how much of it (糖也少点, 冰块一律不要, 冰都不要): they change nothing, and
# without them the option was dropped and the drink made with full ice and sugar.
_BETWEEN = ("", "也", "都", "一律", "全都", "也都")


def _pairings(things: tuple[str, ...], before: tuple[str, ...], after: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({b + t for b in before for t in things}
                        | {t + m + a for t in things for m in _BETWEEN for a in after}))


for _canonical, _phrases in {"少冰": _pairings(_ICE, _LESS_BEFORE, _LESS_AFTER),
                             "少糖": _pairings(_SUGAR, _LESS_BEFORE, _LESS_AFTER),
                             "去冰": _pairings(_ICE, _NONE_BEFORE, ("不要", "不用", "别放", "不放", "别加", "不加")),
                             "不另外加糖": _pairings(("糖",), _NONE_BEFORE, ("不要", "不用", "别放", "不放", "别加", "不加")),
                             "半糖": _pairings(_SUGAR, ("减半",), ("减半", "减一半", "一半"))}.items():
    COLLOQUIAL_OPTIONS[_canonical] += tuple(p for p in _phrases if p not in COLLOQUIAL_OPTIONS[_canonical])

# Words that give a direction, not a level, and the options (canonical names) that go that way:
# said with such an option for one line ("冰的，少冰": cold, with less ice; "别太甜，半糖") they
# agree with it, the option tells the rest. With an option the other way ("冰的热拿铁", an iced
# hot latte) they contradict it, and the resolver asks.
DIRECTIONS: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"冰的", "要冰的", "冷的", "冰镇", "冰镇的", "iced", "cold"}), frozenset({"正常冰", "少冰", "去冰"})),
    (frozenset({"不要太甜", "别太甜", "不太甜", "少甜", "less sweet", "not too sweet", "less sweetness", "low sugar"}),
     frozenset({"少糖", "半糖", "微糖", "不另外加糖"})),
    # "No ice" is said of hot and room-temperature drinks too (美式不要冰要热的): it is 去冰 only
    # when nothing warmer is asked for.
    (frozenset(w + end for w in ("不要冰", "不加冰", "别加冰", "不要加冰", "不放冰", "不用冰", "不要冰块", "冰不要")
               for end in ("", "的")) | {"no ice", "without ice", "hold the ice", "no ice please"},
     frozenset({"去冰", "常温", "热"})),
)


def agree(word: str, option_name: str) -> bool:
    """Whether `word` (as said, normalised) only gives the direction `option_name` goes."""
    return any(word in words and option_name in options for words, options in DIRECTIONS)


def is_direction(word: str) -> bool:
    """Whether `word` gives a direction only, which an option of that direction makes exact."""
    return any(word in words for words, _ in DIRECTIONS)


@dataclass(frozen=True)
class ItemOptions:
    """One item's option table: key (normalised name, alias or colloquial phrase) -> (group, option)."""
    by_key: dict[str, tuple[str, str]]
    names: dict[tuple[str, str], str]  # (group, option) -> display name, for explanations

    def lookup(self, keys: tuple[str, ...]) -> tuple[str, str] | None:
        for key in keys:
            hit = self.by_key.get(key)
            if hit is not None:
                return hit
        return None


def option_table(item: ItemSpec) -> ItemOptions:
    by_key: dict[str, tuple[str, str]] = {}
    names: dict[tuple[str, str], str] = {}
    for group in item.groups:
        for opt in group.options:
            target = (group.group_id, opt.option_id)
            names[target] = opt.name
            for word in (opt.name, *opt.aliases, opt.option_id):
                by_key.setdefault(normalize(word), target)
                by_key.setdefault(normalize(word) + "的", target)
    return ItemOptions(by_key=by_key, names=names)


def option_surfaces(items: Iterable[ItemSpec]) -> dict[str, tuple[str, ...]]:
    """Every phrase that names an option -> the keys to look it up with in an item's table.

    The keys are the phrase itself plus the canonical option names it stands for, so a colloquial
    phrase ("不要冰") resolves through the option's name (去冰) in whichever item offers it.
    """
    surfaces: dict[str, list[str]] = {}

    def add(surface: str, key: str) -> None:
        s = normalize(surface)
        if not s:
            return
        keys = surfaces.setdefault(s, [s])
        k = normalize(key)
        if k not in keys:
            keys.append(k)

    groups = {g for item in items for g in item.groups}
    for group in groups:
        for opt in group.options:
            for word in (opt.name, *opt.aliases):
                add(word, opt.name)
    for canonical, phrases in COLLOQUIAL_OPTIONS.items():
        for phrase in phrases:
            add(phrase, canonical)
    # "少冰的" must read as 少冰, not as 少 + 冰的 (正常冰): every Chinese option also with 的.
    for surface, keys in list(surfaces.items()):
        if not surface.isascii() and not surface.endswith("的"):
            for key in keys[1:] or keys:
                add(surface + "的", key)
    return {s: tuple(keys) for s, keys in surfaces.items()}
