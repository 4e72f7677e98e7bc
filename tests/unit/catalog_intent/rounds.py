"""What the held-out round tests share: the demo resolver and judge, each round's sentences, the
sentences each round's report left as known misses, and readers of a reading's top candidate."""
from pathlib import Path

from services.catalog.intent import build_resolver, load_demo_specs
from services.catalog.intent.evaluation import Judge, load_cases

BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
JUDGE = Judge(BRANDS, ITEMS)
ITEM = {i.item_id: i for i in ITEMS}
HERE = Path(__file__).parent
ROOT = HERE.parents[2]
ROUND_FILES = ("heldout.jsonl", "heldout_round2.jsonl", "heldout_round3.jsonl", "heldout_round4.jsonl",
               "heldout_round5.jsonl", "heldout_round6.jsonl", "heldout_round7.jsonl", "heldout_round8.jsonl",
               "heldout_round9.jsonl", "heldout_round10.jsonl",
               "heldout_round11.jsonl", "heldout_round12.jsonl", "heldout_round13.jsonl", "heldout_round14.jsonl",
               "heldout_round15.jsonl")
EVERY_SET = [c for name in ROUND_FILES for c in load_cases(HERE / name)] + load_cases(ROOT / "tests/data/nl_dev_set.jsonl")
# Left as they are, each for the reason its round's test file gives. A kind or a brand said alone
# (来个汉堡, 给我来杯茶, 瑞幸, 来点水果) is suggested from, as the catalog's labelled sentences
# (tests/data/nl_dev_set.jsonl: 来杯奶茶, a coffee please) say, where later rounds' writers asked.
KNOWN_MISSES = {
    5: set(),
    6: {"订单号 2026021512345 再来一份：原味鸡 2块", "蛋塔3个", "芒果冰淇淋",
        "预算一共40，两杯咖啡", "美试两杯"},
    7: {"来点水果", "薯条2可乐2汉堡2", "生椰拿铁 大 少冰 少糖", "9块9的咖啡来一杯",
        "孩子他爸要一个奥尔良的，我要香辣的", "两杯生椰拿铁，其中一杯不要了"},
    8: {"别再给我推荐奶茶了", "要一个新奥尔良烤鸡腿堡，不要了换成香辣的"},
    9: {"上次的生椰拿铁太甜了，这次来杯半糖的", "美式 冰 大", "鲜橙茶两杯，全糖",
        "上次点的橙C美式不错，这回再来一杯", "刚才那杯厚乳拿铁好喝，再点两杯", "香辣鸡腿堡上次没送到，重新给我下一个"},
    10: {"蛋塔两个，薯调一份",
         "今天好热啊，来杯冰的柠檬水解解暑"},
    11: {"要杯多肉葡萄，冰块减半，糖七分", "芝芝莓莓两杯，一杯就好了",
         "25元以内快餐来一份", "蛋达三个", "蛋挞一盒(4个)", "百香果 大 少冰", "生椰拿铁和美式有什么区别？"},
    12: {"喜茶来一杯", "来个汉堡", "瑞幸", "三分糖吧 还是五分吧 珍珠奶茶一杯",
         "先来个新奥尔良烤鸡腿堡，等等，还是香辣的吧，辣一点好", "瑞幸的椰云拿铁来一杯", "我要一杯深夜拿铁大杯的", "肯得鸡两个蛋塔",
         "嗯嗯那个那个就是一杯美食瑞幸的", "来个🍦", "kfc dan ta liang ge"},
    13: {"喜茶", "帮我看看有什么好喝的", "team lunch at KFC: 5 zingers, 5 medium fries and 5 pepsis, one of the pepsis large",
         "each of us wants a peach four seasons tea - there are four of us - and two of them hot",
         "She'll have what I'm having: a large brown sugar boba milk, half sugar. So two of those.",
         "25块钱，KFC能买几个蛋挞就买几个", "the free-order card covers 25 right? grab me a zinger and fries within that",
         "来杯奶茶，喜茶和蜜雪哪家近就哪家", "嗯……那个……就是想要一杯喜茶那个芒果的"},
    14: {"喜茶芒果加西柚加西米的那杯", "瑞幸那个美式里兑了橙汁的，大杯去冰", "蜜雪冰城那个装满百香果籽、酸酸的那杯",
         "KFC辣的那款鸡腿汉堡，两个", "蛋塔 4个", "一杯大可乐加一个中薯",
         "来个汉堡", "桃子味的茶来一杯", "给我来杯茶"},
    15: {"两个汉堡：香辣的和新奥尔良的各一个", "总共五杯：三杯柠檬水，剩下的要满杯百香果", "帮同事带一杯，我自己也要一杯，都是丝绒拿铁去冰",
         "瑞幸 生椰 大 热 少糖 1", "一大一中两杯美式", "香辣鸡腿堡一个，不要辣的", "两个香辣鸡腿堡，一个薯条，再来一个",
         "唔该，两杯冻柠茶，走甜", "除了香辣鸡腿堡，肯德基的其他东西都来一份", "蜜雪的果茶每样来一杯", "两款多肉各来一杯",
         "给我来两杯柠檬水，一共多少钱？"},
}


def round_cases(n: int) -> list[dict]:
    return load_cases(HERE / ROUND_FILES[n - 1])


def lines(text):
    """The top candidate's lines as (item name, quantity, sorted options)."""
    top = RESOLVER.resolve(text).candidates[0]
    return sorted((ITEM[ln.item_id].name, ln.quantity, tuple(sorted(ln.options.items()))) for ln in top.lines)


def asks(text):
    reading = RESOLVER.resolve(text)
    return reading.candidates == () and bool(reading.clarification)


def misses(cases):
    return [c["text"] for c in cases if JUDGE.check(c["expect"], RESOLVER.resolve(c["text"]))]


def option_name(item, group_id, option_id):
    group = next(g for g in item.groups if g.group_id == group_id)
    return next(o.name for o in group.options if o.option_id == option_id)


def said(text):
    """The top candidate's lines as (item name, quantity, {group: option name} the sentence chose), in a
    fixed order."""
    top = RESOLVER.resolve(text).candidates[0]
    out = [(ITEM[ln.item_id].name, ln.quantity,
            {g: option_name(ITEM[ln.item_id], g, o) for g, o in sorted(ln.options.items())}) for ln in top.lines]
    return sorted(out, key=repr)
