"""The shipped demo catalog: the story's brands and menus (demo_menu.json) and a few hundred
stores in 杭州, 上海, 北京 and 深圳, every brand in every city.

Loaded through the public admin API (so it obeys the same validation as an operator's call) and
idempotent: request ids are derived from the content, stores are upserted by id, and the
pseudo-random placement is seeded, so a re-run changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any, Iterator

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc

DEMO_MENU_PATH = Path(__file__).resolve().parent / "demo_menu.json"

# city -> districts (name, latitude, longitude) around which stores are placed.
DEMO_CITIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "杭州": (
        ("西湖文化广场", 30.2775, 120.1640), ("武林广场", 30.2728, 120.1637), ("湖滨银泰", 30.2569, 120.1657),
        ("钱江新城", 30.2459, 120.2110), ("滨江星光大道", 30.2072, 120.2105), ("西溪湿地", 30.2726, 120.0640),
        ("城西银泰", 30.2946, 120.1100), ("杭州东站", 30.2906, 120.2127),
    ),
    "上海": (
        ("人民广场", 31.2335, 121.4750), ("陆家嘴", 31.2397, 121.4998), ("静安寺", 31.2235, 121.4452),
        ("徐家汇", 31.1950, 121.4374), ("五角场", 31.2990, 121.5145), ("虹桥天地", 31.1935, 121.3190),
        ("南京东路", 31.2382, 121.4844), ("中山公园", 31.2208, 121.4178),
    ),
    "北京": (
        ("国贸", 39.9087, 116.4606), ("三里屯", 39.9334, 116.4548), ("西单", 39.9078, 116.3744),
        ("中关村", 39.9834, 116.3162), ("望京", 39.9964, 116.4700), ("王府井", 39.9143, 116.4111),
        ("五道口", 39.9925, 116.3380), ("北京南站", 39.8650, 116.3786),
    ),
    "深圳": (
        ("福田CBD", 22.5415, 114.0579), ("华强北", 22.5453, 114.0851), ("南山科技园", 22.5405, 113.9530),
        ("深圳湾", 22.5168, 113.9440), ("罗湖东门", 22.5478, 114.1197), ("宝安中心", 22.5555, 113.8840),
        ("龙华", 22.6559, 114.0293), ("前海", 22.5275, 113.8957),
    ),
}

# brand_id -> (open, close) minutes since local midnight on every day, and how many stores per city.
DEMO_HOURS: dict[str, tuple[tuple[int, int], int]] = {
    "mixue": ((9 * 60, 23 * 60), 16),
    "luckin": ((7 * 60, 22 * 60), 16),
    "heytea": ((10 * 60, 22 * 60), 12),
    "kfc": ((6 * 60, 24 * 60), 12),
    "freshippo": ((7 * 60 + 30, 22 * 60), 6),
}
DEFAULT_HOURS = ((8 * 60, 22 * 60), 8)


def _rid(kind: str, payload: Any) -> str:
    # Content-derived: a re-run of the same data is a replay; edited demo data is applied.
    digest = hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]
    return f"demo-{kind}-{digest}"


def read_menu(path: str | Path | None = None) -> dict[str, Any]:
    with open(path or DEMO_MENU_PATH, encoding="utf-8") as f:
        return json.load(f)


def brand_messages(doc: dict[str, Any]) -> Iterator[tuple[catalog_pb2.Brand, list[catalog_pb2.MenuItem]]]:
    for b in doc["brands"]:
        brand = catalog_pb2.Brand(
            brand_id=b["brand_id"], name=b["name"], aliases=b.get("aliases", []), category=b.get("category", ""),
            logo_url=b.get("logo_url", ""),
        )
        items = [
            catalog_pb2.MenuItem(
                item_id=i["item_id"],
                brand_id=b["brand_id"],
                name=i["name"],
                aliases=i.get("aliases", []),
                category=i.get("category", ""),
                price_fen=int(i["price_fen"]),
                option_groups=[
                    catalog_pb2.OptionGroup(
                        group_id=g["group_id"],
                        name=g["name"],
                        default_option_id=g.get("default_option_id", ""),
                        options=[
                            catalog_pb2.Option(
                                option_id=o["option_id"], name=o["name"], price_delta_fen=int(o.get("price_delta_fen", 0)),
                                aliases=o.get("aliases", []),
                            )
                            for o in g["options"]
                        ],
                    )
                    for g in i.get("option_groups", [])
                ],
            )
            for i in b.get("items", [])
        ]
        yield brand, items


def demo_stores(brand_ids: list[str], brand_names: dict[str, str], *, seed: int = 25) -> Iterator[catalog_pb2.Store]:
    """Deterministic stores: each brand in every city, spread over the city's districts with
    offsets of up to ~1.5 km; a few KFC run 24 h, a few tea shops close after midnight."""
    rng = random.Random(seed)
    for city, districts in DEMO_CITIES.items():
        for brand_id in brand_ids:
            (open_m, close_m), per_city = DEMO_HOURS.get(brand_id, DEFAULT_HOURS)
            for n in range(per_city):
                district, dlat, dlng = districts[n % len(districts)]
                r_km = 1.5 * math.sqrt(rng.random())
                theta = rng.random() * 2 * math.pi
                lat = dlat + (r_km / 111.2) * math.sin(theta)
                lng = dlng + (r_km / (111.2 * math.cos(math.radians(dlat)))) * math.cos(theta)
                o, c = open_m, close_m
                if brand_id == "kfc" and n % 4 == 0:
                    o, c = 0, 1440
                elif brand_id in ("mixue", "heytea") and n % 5 == 0:
                    c = 25 * 60
                suffix = "" if n < len(districts) else f"{n // len(districts) + 1}"
                store = catalog_pb2.Store(
                    store_id=f"demo-{brand_id}-{_city_code(city)}-{n:02d}",
                    brand_id=brand_id,
                    name=f"{brand_names[brand_id]}({district}{suffix}店)",
                    address=f"{city}市{district}附近{rng.randint(1, 300)}号",
                    city=city,
                    opening_hours=[catalog_pb2.OpeningPeriod(weekday=d, open_minute=o, close_minute=c) for d in range(1, 8)],
                    time_zone="Asia/Shanghai",
                )
                store.location.latitude = round(lat, 6)
                store.location.longitude = round(lng, 6)
                yield store


def _city_code(city: str) -> str:
    return {"杭州": "hz", "上海": "sh", "北京": "bj", "深圳": "sz"}.get(city, hashlib.md5(city.encode()).hexdigest()[:4])


async def load_menu(stub: catalog_service_pb2_grpc.CatalogServiceStub, metadata: Any, path: str | Path | None = None) -> list[catalog_pb2.Brand]:
    """Upserts the demo brands and their menus; returns the brands."""
    doc = read_menu(path)
    brands = []
    for brand, items in brand_messages(doc):
        brand_payload = catalog_pb2.Brand.SerializeToString(brand, deterministic=True).hex()
        await stub.UpsertBrand(
            catalog_service_pb2.UpsertBrandRequest(request_id=_rid("brand", brand_payload), brand=brand), metadata=metadata, timeout=10
        )
        for item in items:
            item_payload = catalog_pb2.MenuItem.SerializeToString(item, deterministic=True).hex()
            await stub.UpsertMenuItem(
                catalog_service_pb2.UpsertMenuItemRequest(request_id=_rid("item", item_payload), item=item), metadata=metadata, timeout=10
            )
        brands.append(brand)
    return brands


async def load_demo(stub: catalog_service_pb2_grpc.CatalogServiceStub, metadata: Any) -> None:
    """Brands, menus and demo stores; `make run` calls it once the catalog is SERVING."""
    brands = await load_menu(stub, metadata)
    names = {b.brand_id: b.name for b in brands}
    stores = list(demo_stores(list(names), names))

    async def stream() -> Any:
        for start in range(0, len(stores), 1_000):
            yield catalog_service_pb2.ImportStoresRequest(stores=stores[start : start + 1_000])

    response = await stub.ImportStores(stream(), metadata=metadata, timeout=60)
    if response.rejected:
        first = response.rejections[0]
        raise RuntimeError(f"demo stores rejected: {response.rejected} (first: {first.reason} {first.message})")
