"""Deterministic store generator for benchmarks: N stores spread over Chinese cities.

    python -m services.catalog.generate --stores 300000 [--target host:port]

Streams the stores into a running catalog through ImportStores (admin credential from the
MIANDAN_* environment), after making sure the demo brands and menus exist. Also a library:
`import_generated(stub, metadata, n)` is what bench/catalog.py uses, `load_generated(catalog, n)`
fills an in-process Catalog (no server) for benchmarks and tests that set its clock.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from typing import Any, AsyncIterator, Iterator, Sequence

import grpc

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc

from .model import Rejection, StoreRow, validate_store_row

# (city, latitude, longitude, weight): centres of the biggest Chinese cities; weight ~ store density.
CITIES: tuple[tuple[str, float, float, int], ...] = (
    ("上海", 31.2304, 121.4737, 10), ("北京", 39.9042, 116.4074, 10), ("深圳", 22.5431, 114.0579, 8),
    ("广州", 23.1291, 113.2644, 8), ("杭州", 30.2741, 120.1551, 7), ("成都", 30.5728, 104.0668, 8),
    ("重庆", 29.5630, 106.5516, 7), ("武汉", 30.5928, 114.3055, 6), ("西安", 34.3416, 108.9398, 5),
    ("南京", 32.0603, 118.7969, 5), ("天津", 39.3434, 117.3616, 5), ("苏州", 31.2989, 120.5853, 5),
    ("长沙", 28.2282, 112.9388, 5), ("郑州", 34.7466, 113.6254, 5), ("东莞", 23.0207, 113.7518, 4),
    ("青岛", 36.0671, 120.3826, 4), ("沈阳", 41.8057, 123.4315, 4), ("宁波", 29.8683, 121.5440, 4),
    ("昆明", 24.8801, 102.8329, 4), ("合肥", 31.8206, 117.2272, 4), ("佛山", 23.0215, 113.1214, 4),
    ("厦门", 24.4798, 118.0894, 3), ("福州", 26.0745, 119.2965, 3), ("济南", 36.6512, 117.1201, 3),
    ("大连", 38.9140, 121.6147, 3), ("哈尔滨", 45.8038, 126.5349, 3), ("长春", 43.8171, 125.3235, 3),
    ("南昌", 28.6820, 115.8579, 3), ("南宁", 22.8170, 108.3665, 3), ("贵阳", 26.6470, 106.6302, 3),
    ("石家庄", 38.0428, 114.5149, 3), ("太原", 37.8706, 112.5489, 3), ("无锡", 31.4912, 120.3119, 3),
    ("温州", 27.9943, 120.6994, 3), ("兰州", 36.0611, 103.8343, 2), ("海口", 20.0440, 110.1999, 2),
    ("乌鲁木齐", 43.8256, 87.6168, 2), ("呼和浩特", 40.8424, 111.7490, 2), ("银川", 38.4872, 106.2309, 1),
    ("西宁", 36.6171, 101.7782, 1), ("拉萨", 29.6500, 91.1000, 1), ("三亚", 18.2528, 109.5119, 1),
)

# brand_id -> (share of stores, opening minutes (open, close) on every weekday)
BRAND_MIX: dict[str, tuple[float, tuple[int, int]]] = {
    "mixue": (0.36, (9 * 60, 23 * 60)),
    "luckin": (0.28, (7 * 60, 22 * 60)),
    "kfc": (0.16, (6 * 60, 24 * 60)),
    "heytea": (0.10, (10 * 60, 22 * 60)),
    "freshippo": (0.10, (7 * 60 + 30, 22 * 60)),
}
_WORDS = ("中心", "万达", "银泰", "大悦城", "万象城", "火车站", "大学城", "步行街", "地铁站", "广场", "天街", "公园", "高新区", "软件园")


def hours_for(brand_id: str, rng: random.Random) -> list[catalog_pb2.OpeningPeriod]:
    """Realistic timetables: most stores keep the brand's hours; some KFC never close and some
    tea shops stay open past midnight (periods closing after 1440)."""
    open_m, close_m = BRAND_MIX.get(brand_id, (0.0, (8 * 60, 22 * 60)))[1]
    roll = rng.random()
    if brand_id == "kfc" and roll < 0.2:
        open_m, close_m = 0, 1440
    elif brand_id in ("mixue", "heytea") and roll < 0.1:
        close_m = 25 * 60  # until 01:00 the next morning
    return [catalog_pb2.OpeningPeriod(weekday=d, open_minute=open_m, close_minute=close_m) for d in range(1, 8)]


def generate_stores(n: int, *, seed: int = 2026, brands: Sequence[str] | None = None) -> Iterator[catalog_pb2.Store]:
    """The same n stores for the same seed, every run (store ids gen-000000 ...)."""
    rng = random.Random(seed)
    brand_ids = list(brands or BRAND_MIX)
    brand_weights = [BRAND_MIX.get(b, (0.1,))[0] for b in brand_ids]
    city_weights = [c[3] for c in CITIES]
    names = {"mixue": "蜜雪冰城", "luckin": "瑞幸咖啡", "kfc": "肯德基", "heytea": "喜茶", "freshippo": "盒马鲜生"}
    for i in range(n):
        city, clat, clng, _ = rng.choices(CITIES, city_weights)[0]
        brand_id = rng.choices(brand_ids, brand_weights)[0]
        # Dense core, long tail into the suburbs: a normal radius with sigma ~6 km.
        r_km = abs(rng.gauss(0.0, 6.0))
        theta = rng.random() * 2 * math.pi
        lat = clat + (r_km / 111.2) * math.sin(theta)
        lng = clng + (r_km / (111.2 * math.cos(math.radians(clat)))) * math.cos(theta)
        word = _WORDS[i % len(_WORDS)]
        store = catalog_pb2.Store(
            store_id=f"gen-{i:06d}",
            brand_id=brand_id,
            name=f"{names.get(brand_id, brand_id)}({city}{word}{i % 997}店)",
            address=f"{city}市{word}路{rng.randint(1, 999)}号",
            city=city,
            opening_hours=hours_for(brand_id, rng),
            closed=rng.random() < 0.01,
        )
        store.location.latitude = round(lat, 6)
        store.location.longitude = round(lng, 6)
        yield store


async def request_stream(stores: Iterator[catalog_pb2.Store], batch_size: int = 5_000) -> AsyncIterator[catalog_service_pb2.ImportStoresRequest]:
    batch: list[catalog_pb2.Store] = []
    for store in stores:
        batch.append(store)
        if len(batch) >= batch_size:
            yield catalog_service_pb2.ImportStoresRequest(stores=batch)
            batch = []
    if batch:
        yield catalog_service_pb2.ImportStoresRequest(stores=batch)


async def import_generated(
    stub: catalog_service_pb2_grpc.CatalogServiceStub, metadata, n: int, *, seed: int = 2026, timeout: float = 600.0
) -> catalog_service_pb2.ImportStoresResponse:
    return await stub.ImportStores(request_stream(generate_stores(n, seed=seed)), metadata=metadata, timeout=timeout)


async def load_generated(catalog: Any, n: int, *, seed: int = 2026) -> int:
    """The demo brands and menus and n generated stores, into a started in-process
    services.catalog.handlers.Catalog through its own write paths; returns the stores accepted."""
    from services.catalog.servicer import brand_from_pb, item_from_pb

    from .demo import brand_messages, read_menu

    for brand, items in brand_messages(read_menu()):
        await catalog.upsert_brand(f"generate-brand-{brand.brand_id}", brand_from_pb(brand))
        for item in items:
            await catalog.upsert_item(f"generate-item-{item.item_id}", item_from_pb(item))
    session = catalog.begin_import()
    batch: list[catalog_pb2.Store] = []
    for store in generate_stores(n, seed=seed):
        batch.append(store)
        if len(batch) >= 5_000:
            await session.add(_validated(batch, session.rows_seen, catalog.brands))
            batch = []
    await session.add(_validated(batch, session.rows_seen, catalog.brands))
    return (await session.finish()).accepted


def _validated(stores: Sequence[catalog_pb2.Store], start: int, brands: Any) -> list[StoreRow | Rejection]:
    return [
        validate_store_row(start + i, s.store_id, s.brand_id, s.name, s.address, s.city, s.location.latitude, s.location.longitude,
                 tuple((p.weekday, p.open_minute, p.close_minute) for p in s.opening_hours), s.closed, s.time_zone, brands)
        for i, s in enumerate(stores)
    ]


async def _main(args: argparse.Namespace) -> None:
    from services.common.auth import internal_metadata, open_channel
    from services.common.config import Settings

    from .demo import load_menu

    settings = Settings.from_env("catalog")
    target = args.target or settings.catalog_addr
    admin = internal_metadata(settings, admin=True)
    async with open_channel(settings, target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        try:
            await load_menu(stub, admin)
            started = time.perf_counter()
            response = await import_generated(stub, admin, args.stores, seed=args.seed)
        except grpc.aio.AioRpcError as err:
            hint = " (is the suite running? `make run`)" if err.code() == grpc.StatusCode.UNAVAILABLE else ""
            raise _Failed(f"cannot import into the catalog at {target}{hint}: {err.code().name}: {' '.join((err.details() or '').split())}") from None
        took = time.perf_counter() - started
    print(f"imported {response.accepted} stores ({response.rejected} rejected) into {target} in {took:.1f} s")


class _Failed(Exception):
    """The import did not happen: the one line to print."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`make catalog-300k`. Exit 0 once imported; otherwise one line on stderr (no traceback):
    2 for a bad setting or argument, 1 when the catalog could not be reached or refused, 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m services.catalog.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=_positive, default=300_000, help="how many stores (default 300000)")
    parser.add_argument("--target", default="", help="catalog host:port (default MIANDAN_CATALOG_ADDR)")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed (same seed, same stores)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except ValueError as exc:  # a MIANDAN_* setting (Settings.from_env names it)
        print(f"catalog generate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. MIANDAN_TLS_* files that cannot be read
        print(f"catalog generate: cannot connect: {exc}", file=sys.stderr)
        return 1
    except _Failed as exc:
        print(f"catalog generate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("catalog generate: interrupted (the stores sent so far may be imported)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
