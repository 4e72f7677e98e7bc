"""The demo catalog (brands and menus of the story) and its loader.

`demo_menu.json` beside the catalog package is the data; the tables below are only the source it
was written from (`python -m services.catalog.intent.demo` rewrites it), so the option groups that
every drink shares are spelled once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .specs import BrandSpec, GroupSpec, ItemSpec, OptionSpec

DEMO_MENU_PATH = Path(__file__).resolve().parent.parent / "demo_menu.json"

_SIZE = {
    "group_id": "size", "name": "杯型", "default_option_id": "medium",
    "options": [
        {"option_id": "medium", "name": "中杯", "price_delta_fen": 0,
         "aliases": ["medium", "regular size", "regular", "中份", "正常杯"]},
        {"option_id": "large", "name": "大杯", "price_delta_fen": 300,
         "aliases": ["large", "big", "large size", "超大杯", "超大", "大份", "大的"]},
    ],
}
_SUGAR = {
    "group_id": "sugar", "name": "甜度", "default_option_id": "standard",
    "options": [
        {"option_id": "standard", "name": "标准糖", "price_delta_fen": 0,
         "aliases": ["standard sugar", "regular sugar", "full sugar", "正常糖", "全糖", "标准甜"]},
        {"option_id": "less", "name": "少糖", "price_delta_fen": 0,
         "aliases": ["less sugar", "less sweet", "七分糖", "7分糖", "少甜"]},
        {"option_id": "half", "name": "半糖", "price_delta_fen": 0,
         "aliases": ["half sugar", "half sweet", "五分糖", "5分糖", "半甜"]},
        {"option_id": "light", "name": "微糖", "price_delta_fen": 0,
         "aliases": ["light sugar", "slightly sweet", "a little sugar", "三分糖", "3分糖", "微甜"]},
        {"option_id": "none", "name": "不另外加糖", "price_delta_fen": 0,
         "aliases": ["no sugar", "no added sugar", "sugar free", "sugar-free", "unsweetened",
                     "不加糖", "无糖", "不要糖", "零糖", "0糖", "去糖", "免糖"]},
    ],
}
_TEMPERATURE = {
    "group_id": "temperature", "name": "温度", "default_option_id": "regular_ice",
    "options": [
        {"option_id": "regular_ice", "name": "正常冰", "price_delta_fen": 0,
         "aliases": ["regular ice", "normal ice", "iced", "with ice", "加冰", "冰的", "多冰"]},
        {"option_id": "less_ice", "name": "少冰", "price_delta_fen": 0,
         "aliases": ["less ice", "light ice", "little ice", "微冰", "少点冰"]},
        {"option_id": "no_ice", "name": "去冰", "price_delta_fen": 0,
         "aliases": ["no ice", "without ice", "ice free", "不要冰", "不加冰", "无冰", "免冰", "走冰"]},
        {"option_id": "room", "name": "常温", "price_delta_fen": 0,
         "aliases": ["room temperature", "room temp", "not cold", "温的", "常温的"]},
        {"option_id": "hot", "name": "热", "price_delta_fen": 0,
         "aliases": ["hot", "warm", "热的", "热饮", "加热"]},
    ],
}
_DRINK = [_SIZE, _SUGAR, _TEMPERATURE]
_KFC_DRINK = [_SIZE]

# (item_id, name, category, price_fen, option groups, aliases: English name first)
_BRANDS: list[dict[str, Any]] = [
    {"brand_id": "mixue", "name": "蜜雪冰城", "aliases": ["蜜雪", "雪王", "Mixue", "mixue ice cream & tea"],
     "category": "茶饮", "items": [
        ("mixue-lemonade", "冰鲜柠檬水", "果茶", 400, _DRINK,
         ["Fresh Lemonade", "lemonade", "lemon water", "iced lemon tea", "柠檬水", "柠檬茶"]),
        ("mixue-pearl-milk-tea", "珍珠奶茶", "奶茶", 800, _DRINK,
         ["Pearl Milk Tea", "bubble tea", "boba milk tea", "boba tea", "pearl tea", "波霸奶茶"]),
        ("mixue-peach-tea", "蜜桃四季春", "果茶", 700, _DRINK,
         ["Peach Four Seasons Tea", "peach tea", "四季春", "蜜桃茶"]),
        ("mixue-orange-tea", "棒打鲜橙", "果茶", 600, _DRINK,
         ["Smashed Fresh Orange Tea", "orange tea", "fresh orange tea", "鲜橙", "橙子茶"]),
        ("mixue-passion-fruit", "满杯百香果", "果茶", 700, _DRINK,
         ["Passion Fruit Tea", "passion fruit", "百香果", "百香果茶"]),
        ("mixue-strawberry-shake", "草莓摇摇奶昔", "奶昔", 900, _DRINK,
         ["Strawberry Milkshake", "strawberry shake", "草莓奶昔", "摇摇奶昔"]),
        ("mixue-ice-cream", "新鲜冰淇淋", "冰淇淋", 200, [],
         ["Fresh Ice Cream", "ice cream", "soft serve", "冰淇淋", "冰激凌", "雪糕", "甜筒"]),
    ]},
    {"brand_id": "luckin", "name": "瑞幸咖啡", "aliases": ["瑞幸", "luckin", "luckin coffee", "小蓝杯"],
     "category": "咖啡", "items": [
        ("luckin-coconut-latte", "生椰拿铁", "咖啡", 2900, _DRINK,
         ["Coconut Latte", "raw coconut latte", "coconut milk latte", "生椰"]),
        ("luckin-thick-milk-latte", "厚乳拿铁", "咖啡", 2900, _DRINK,
         ["Thick Milk Latte", "rich milk latte", "厚乳"]),
        ("luckin-velvet-latte", "丝绒拿铁", "咖啡", 2900, _DRINK,
         ["Velvet Latte", "丝绒"]),
        ("luckin-orange-americano", "橙C美式", "咖啡", 2700, _DRINK,
         ["Orange C Americano", "orange americano", "橙C", "橙美式", "橙子美式"]),
        ("luckin-americano", "标准美式", "咖啡", 2400, _DRINK,
         ["Americano", "standard americano", "black coffee", "美式", "美式咖啡", "黑咖啡"]),
        ("luckin-moutai-latte", "酱香拿铁", "咖啡", 1900, _DRINK,
         ["Moutai Latte", "maotai latte", "sauce flavor latte", "酱香", "茅台拿铁"]),
    ]},
    {"brand_id": "heytea", "name": "喜茶", "aliases": ["HEYTEA", "hey tea", "喜茶GO"],
     "category": "茶饮", "items": [
        ("heytea-very-grape", "多肉葡萄", "果茶", 1900, _DRINK,
         ["Very Grape", "grape cheezo", "very grape cheezo", "grape tea", "葡萄"]),
        ("heytea-cheezo-strawberry", "芝芝莓莓", "果茶", 1900, _DRINK,
         ["Cheezo Strawberry", "very strawberry", "strawberry cheese tea", "芝芝草莓", "莓莓"]),
        ("heytea-brown-sugar-boba-milk", "烤黑糖波波牛乳", "奶茶", 1600, _DRINK,
         ["Roasted Brown Sugar Boba Milk", "brown sugar boba milk", "brown sugar boba", "黑糖波波", "波波牛乳", "黑糖牛乳"]),
        ("heytea-very-peach-plum", "多肉桃李", "果茶", 1900, _DRINK,
         ["Very Peach Plum", "peach plum", "桃李"]),
        ("heytea-mango-sago", "轻芒芒甘露", "果茶", 1900, _DRINK,
         ["Light Mango Pomelo Sago", "mango pomelo sago", "mango sago", "芒芒甘露", "杨枝甘露"]),
        ("heytea-green-tea", "纯绿妍茶", "纯茶", 900, _DRINK,
         ["Pure Green Tea", "green tea", "绿妍", "绿妍茶", "绿茶"]),
    ]},
    {"brand_id": "kfc", "name": "肯德基", "aliases": ["KFC", "开封菜", "kentucky", "kentucky fried chicken"],
     "category": "快餐", "items": [
        ("kfc-zinger", "香辣鸡腿堡", "汉堡", 2150, [],
         ["Zinger Burger", "zinger", "spicy chicken burger", "香辣堡", "香辣鸡堡"]),
        ("kfc-new-orleans-burger", "新奥尔良烤鸡腿堡", "汉堡", 2250, [],
         ["New Orleans Roasted Chicken Burger", "new orleans burger", "new orleans chicken burger", "奥尔良堡", "奥尔良鸡腿堡", "新奥尔良堡"]),
        ("kfc-original-chicken", "吮指原味鸡", "炸鸡", 1300, [],
         ["Original Recipe Chicken", "original chicken", "fried chicken", "原味鸡"]),
        ("kfc-fries-medium", "薯条(中)", "小食", 1200, [],
         ["French Fries (Medium)", "french fries", "fries", "chips", "薯条"]),
        ("kfc-pepsi-medium", "百事可乐(中)", "汽水", 900, _KFC_DRINK,
         ["Pepsi (Medium)", "pepsi", "pepsi cola", "cola", "coke", "可乐", "百事"]),
        ("kfc-egg-tart", "葡式蛋挞", "甜品", 800, [],
         ["Portuguese Egg Tart", "egg tart", "蛋挞"]),
    ]},
    {"brand_id": "freshippo", "name": "盒马鲜生", "aliases": ["盒马", "Freshippo", "hema"],
     "category": "生鲜年货", "items": [
        ("freshippo-dandong-strawberry-500g", "丹东草莓500g", "水果", 3990, [],
         ["Dandong Strawberries 500g", "dandong strawberries", "strawberries", "strawberry", "草莓"]),
        ("freshippo-chile-cherries-1kg", "智利车厘子1kg", "水果", 8990, [],
         ["Chilean Cherries 1kg", "chilean cherries", "cherries", "cherry", "车厘子", "樱桃"]),
        ("freshippo-eggs-10", "鲜鸡蛋10枚", "蛋品", 1290, [],
         ["Fresh Eggs (10)", "fresh eggs", "eggs", "鸡蛋"]),
        ("freshippo-nut-gift-box", "坚果年货礼盒", "礼盒", 9900, [],
         ["Nut Gift Box", "nuts gift box", "new year nut box", "坚果礼盒", "年货礼盒", "坚果"]),
    ]},
]


def demo_menu_document() -> dict[str, Any]:
    """The JSON document as written to demo_menu.json."""
    brands = []
    for b in _BRANDS:
        items = []
        for item_id, name, category, price, groups, aliases in b["items"]:
            items.append({"item_id": item_id, "name": name, "aliases": aliases, "category": category,
                          "price_fen": price, "option_groups": groups})
        brands.append({"brand_id": b["brand_id"], "name": b["name"], "aliases": b["aliases"],
                       "category": b["category"],
                       "logo_url": f"https://static.miandan.example/logos/{b['brand_id']}.png",
                       "items": items})
    return {"brands": brands}


def specs_from_document(doc: dict[str, Any]) -> tuple[list[BrandSpec], list[ItemSpec]]:
    brands: list[BrandSpec] = []
    items: list[ItemSpec] = []
    for b in doc["brands"]:
        brands.append(BrandSpec(brand_id=b["brand_id"], name=b["name"],
                                aliases=tuple(b.get("aliases", ())), category=b["category"]))
        for it in b.get("items", ()):
            groups = tuple(
                GroupSpec(group_id=g["group_id"], name=g["name"], default_option_id=g["default_option_id"],
                          options=tuple(OptionSpec(group_id=g["group_id"], option_id=o["option_id"],
                                                   name=o["name"], aliases=tuple(o.get("aliases", ())))
                                        for o in g["options"]))
                for g in it.get("option_groups", ()))
            items.append(ItemSpec(item_id=it["item_id"], brand_id=b["brand_id"], name=it["name"],
                                  aliases=tuple(it.get("aliases", ())), category=it["category"],
                                  price_fen=int(it["price_fen"]), groups=groups))
    return brands, items


def load_demo_specs(path: str | Path | None = None) -> tuple[list[BrandSpec], list[ItemSpec]]:
    """Brands and items of demo_menu.json (or of another file in the same shape)."""
    with open(path or DEMO_MENU_PATH, encoding="utf-8") as f:
        return specs_from_document(json.load(f))


if __name__ == "__main__":
    DEMO_MENU_PATH.write_text(json.dumps(demo_menu_document(), ensure_ascii=False, indent=1) + "\n",
                              encoding="utf-8")
    print(f"wrote {DEMO_MENU_PATH}")
