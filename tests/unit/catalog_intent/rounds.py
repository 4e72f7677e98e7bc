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
               "heldout_round11.jsonl", "heldout_round12.jsonl", "heldout_round13.jsonl")
EVERY_SET = [c for name in ROUND_FILES for c in load_cases(HERE / name)] + load_cases(ROOT / "tests/data/nl_dev_set.jsonl")
# Left as they are, each for the reason its round's test file gives.
KNOWN_MISSES = {
    5: {"一个鸡腿堡"},
    6: {"订单号 2026021512345 再来一份：原味鸡 2块", "蛋塔3个", "芒果冰淇淋",
        "预算一共40，两杯咖啡", "美试两杯"},
    7: {"two lattes please", "生椰拿铁 大 少冰 少糖", "薯条2可乐2汉堡2", "9块9的咖啡来一杯",
        "来点水果", "给我弄杯热乎的柠檬水，老人家不能喝冰的", "来杯拿铁",
        "孩子他爸要一个奥尔良的，我要香辣的", "两杯生椰拿铁，其中一杯不要了", "luckin的latte来一杯"},
    8: {"别再给我推荐奶茶了", "要一个新奥尔良烤鸡腿堡，不要了换成香辣的"},
    9: {"上次的生椰拿铁太甜了，这次来杯半糖的", "美式 冰 大", "鲜橙茶两杯，全糖",
        "上次点的橙C美式不错，这回再来一杯", "刚才那杯厚乳拿铁好喝，再点两杯", "香辣鸡腿堡上次没送到，重新给我下一个",
        "薯条是中份还是大份？"},
    10: {"蛋塔两个，薯调一份",
         "今天好热啊，来杯冰的柠檬水解解暑"},
    11: {"要杯多肉葡萄，冰块减半，糖七分", "芝芝莓莓两杯，一杯就好了",
         "25元以内快餐来一份", "蛋达三个", "蛋挞一盒(4个)", "百香果 大 少冰", "生椰拿铁和美式有什么区别？"},
    12: {"拿铁", "瑞幸", "两杯拿铁一杯少糖", "喜茶来一杯", "来个汉堡", "三分糖吧 还是五分吧 珍珠奶茶一杯",
         "先来个新奥尔良烤鸡腿堡，等等，还是香辣的吧，辣一点好", "瑞幸的椰云拿铁来一杯", "我要一杯深夜拿铁大杯的", "肯得鸡两个蛋塔",
         "嗯嗯那个那个就是一杯美食瑞幸的", "来个🍦", "kfc dan ta liang ge"},
    13: {"team lunch at KFC: 5 zingers, 5 medium fries and 5 pepsis, one of the pepsis large",
         "each of us wants a peach four seasons tea - there are four of us - and two of them hot",
         "She'll have what I'm having: a large brown sugar boba milk, half sugar. So two of those.",
         "25块钱，KFC能买几个蛋挞就买几个", "the free-order card covers 25 right? grab me a zinger and fries within that",
         "帮我看看有什么好喝的", "喜茶", "来杯奶茶，喜茶和蜜雪哪家近就哪家", "嗯……那个……就是想要一杯喜茶那个芒果的"},
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
