"""The catalog's admin and merchant writes played at random against a plain model of what the
protos and the conventions promise: brands, menu items with options, imported stores, sold-out
marks per store and item, request ids remembered per RPC (admin) or per store and merchant
(SetItemAvailability), the menu's count and size limits. After every step GetMenu, GetStore,
SearchStores, Quote and ListBrands, and the status and reason of every write, must be what the
model says, across restarts on the same data. The model is written from the documents, not from
the code: a disagreement is a bug of one or the other.

MIANDAN_CATALOG_MODEL_SEEDS=100 plays more seeds locally."""
from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2 as pb
from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog import store as catalog_store
from services.catalog.wiring import build
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.clock import FakeClock
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import EVENING, Running, catalog_settings

SEEDS = int(os.environ.get("MIANDAN_CATALOG_MODEL_SEEDS", "3"))
STEPS = int(os.environ.get("MIANDAN_CATALOG_MODEL_STEPS", "90"))
# Small limits so a random walk reaches them (the store reads them at each write).
MENU_ITEMS_LIMIT = 5
MENU_BYTES_LIMIT = 1_800
WEEK = timedelta(days=7)
CENTRE = (30.2741, 120.1551)

BRAND_IDS = ["luckin", "heytea", "mixue"]
CATEGORIES = ["咖啡", "茶饮", ""]
STORE_IDS = [f"s{i}" for i in range(14)]
ITEM_IDS = [f"i{i}" for i in range(7)]
ZONES = ["", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
MERCHANTS = ["hq", "franchisee"]


# --- the model -------------------------------------------------------------------------------


def render_item(item: pb.MenuItem) -> pb.MenuItem:
    """An item as the catalog answers it: a group without a default takes its first option."""
    out = pb.MenuItem()
    out.CopyFrom(item)
    for g in out.option_groups:
        if not g.default_option_id:
            g.default_option_id = g.options[0].option_id
    return out


def entry_bytes(item: pb.MenuItem) -> int:
    """What the item weighs in a GetMenu answer (its entry, on sale)."""
    return svc.GetMenuResponse(entries=[pb.MenuEntry(item=render_item(item), available=True)]).ByteSize()


def open_now(store: pb.Store, now: datetime) -> bool:
    if store.closed:
        return False
    if not store.opening_hours:
        return True
    local = now.astimezone(ZoneInfo(store.time_zone or "Asia/Shanghai"))
    weekday, minute = local.isoweekday(), local.hour * 60 + local.minute
    yesterday = 7 if weekday == 1 else weekday - 1
    for p in store.opening_hours:
        if p.weekday == weekday and p.open_minute <= minute < p.close_minute:
            return True
        if p.weekday == yesterday and p.close_minute > 1440 and minute < p.close_minute - 1440:
            return True
    return False


class Refused(Exception):
    def __init__(self, code: str, reason: str | None = None, field: str | None = None) -> None:
        super().__init__(code, reason, field)
        self.code, self.reason, self.field, self.message = code, reason, field, ""

    def __repr__(self) -> str:
        return f"Refused({self.code}, {self.reason}, {self.field}, {self.message!r})"


class Model:
    def __init__(self) -> None:
        self.brands: dict[str, pb.Brand] = {}
        self.menus: dict[str, dict[str, pb.MenuItem]] = {}
        self.stores: dict[str, pb.Store] = {}
        self.sold: set[tuple[str, str]] = set()
        # (kind, scope, request_id) -> (request content, first answer, when)
        self.requests: dict[tuple[str, object, str], tuple[bytes, object, datetime]] = {}

    # Each write returns its answer or raises Refused.

    def _replay(self, key, content: bytes):
        if not key[2]:
            return None
        seen = self.requests.get(key)
        if seen is None:
            return None
        if seen[0] != content:
            raise Refused("ALREADY_EXISTS", "REQUEST_ID_REUSED")
        return seen

    def _remember(self, key, content: bytes, answer, now: datetime) -> None:
        if key[2]:
            self.requests[key] = (content, answer, now)

    def upsert_brand(self, request_id: str, brand: pb.Brand, now: datetime):
        if len(request_id) > 128:
            raise Refused("INVALID_ARGUMENT", "FIELD_TOO_LONG", "request_id")
        bad = brand_problem(brand)
        if bad:
            raise Refused("INVALID_ARGUMENT", None, bad)
        key, content = ("brand", "", request_id), brand.SerializeToString(deterministic=True)
        seen = self._replay(key, content)
        if seen is not None:
            return seen[1]
        created = brand.brand_id not in self.brands
        self.brands[brand.brand_id] = brand
        self.menus.setdefault(brand.brand_id, {})
        self._remember(key, content, (brand, created), now)
        return brand, created

    def upsert_item(self, request_id: str, item: pb.MenuItem, now: datetime):
        if len(request_id) > 128:
            raise Refused("INVALID_ARGUMENT", "FIELD_TOO_LONG", "request_id")
        bad = item_problem(item)
        if bad:
            raise Refused("INVALID_ARGUMENT", None, bad)
        if item.brand_id not in self.brands:
            raise Refused("NOT_FOUND", "BRAND_NOT_FOUND")
        key, content = ("item", "", request_id), item.SerializeToString(deterministic=True)
        seen = self._replay(key, content)
        if seen is not None:
            return seen[1]
        menu = self.menus[item.brand_id]
        previous = menu.get(item.item_id)
        if previous is None and len(menu) >= MENU_ITEMS_LIMIT:
            raise Refused("FAILED_PRECONDITION", "MENU_FULL")
        grows = previous is None or entry_bytes(item) > entry_bytes(previous)
        others = sum(entry_bytes(it) for i, it in menu.items() if i != item.item_id)
        if grows and others + entry_bytes(item) > MENU_BYTES_LIMIT:
            raise Refused("FAILED_PRECONDITION", "MENU_TOO_LARGE")
        menu[item.item_id] = item
        answer = (render_item(item), previous is None)
        self._remember(key, content, answer, now)
        return answer

    def import_stores(self, rows: list[pb.Store]):
        accepted, rejections = 0, []
        before = {s: self.stores[s].brand_id for s in self.stores}
        for index, row in enumerate(rows):
            reason = store_problem(row, self.brands)
            if reason:
                rejections.append((index, reason))
                continue
            accepted += 1
            stored = pb.Store()
            stored.CopyFrom(row)
            stored.time_zone = row.time_zone or "Asia/Shanghai"
            self.stores[row.store_id] = stored
        # A store moved to another brand loses its marks: they named the old brand's items.
        for store_id, brand_id in before.items():
            if self.stores[store_id].brand_id != brand_id:
                self.sold = {(s, i) for s, i in self.sold if s != store_id}
        return accepted, rejections

    def set_availability(self, caller: "Caller", request_id: str, store_id: str, item_id: str, available: bool, now: datetime):
        if not store_id:
            raise Refused("INVALID_ARGUMENT", None, "store_id")
        if not item_id:
            raise Refused("INVALID_ARGUMENT", None, "item_id")
        if len(request_id) > 128:
            raise Refused("INVALID_ARGUMENT", "FIELD_TOO_LONG", "request_id")
        store = self.stores.get(store_id)
        if store is None:
            raise Refused("NOT_FOUND", "STORE_NOT_FOUND")
        if not caller.covers(store):
            raise Refused("PERMISSION_DENIED", "STORE_NOT_YOURS")
        if item_id not in self.menus.get(store.brand_id, {}):
            raise Refused("NOT_FOUND", "ITEM_NOT_FOUND")
        key = ("availability", (caller.merchant, store_id), request_id)
        content = repr((item_id, available)).encode()
        seen = self._replay(key, content)
        if seen is not None:
            return seen[1]
        if available:
            self.sold.discard((store_id, item_id))
        else:
            self.sold.add((store_id, item_id))
        self._remember(key, content, available, now)
        return available

    def forget(self, now: datetime) -> None:
        self.requests = {k: v for k, v in self.requests.items() if v[2] >= now - WEEK}

    def quote(self, store_id: str, lines: list[pb.LineSelection], now: datetime):
        store = self.stores.get(store_id)
        if store is None:
            raise Refused("NOT_FOUND", "STORE_NOT_FOUND")
        menu = self.menus.get(store.brand_id, {})
        problems, priced, total = [], [], 0
        if not open_now(store, now):
            problems.append((-1, "", "STORE_CLOSED"))
        for index, line in enumerate(lines):
            item = menu.get(line.item_id)
            if item is None:
                problems.append((index, line.item_id, "UNKNOWN_ITEM"))
                continue
            mine = []
            if not 1 <= line.quantity <= 99:
                mine.append((index, item.item_id, "QUANTITY_OUT_OF_RANGE"))
            if (store_id, item.item_id) in self.sold:
                mine.append((index, item.item_id, "ITEM_SOLD_OUT"))
            groups = {g.group_id: g for g in render_item(item).option_groups}
            chosen = {c.group_id: c.option_id for c in line.options}
            for group_id, option_id in chosen.items():
                if group_id not in groups or option_id not in {o.option_id for o in groups[group_id].options}:
                    mine.append((index, item.item_id, "OPTION_NOT_OFFERED"))
            problems += mine
            if mine:
                continue
            unit = item.price_fen
            options = []
            for g in groups.values():
                option_id = chosen.get(g.group_id, g.default_option_id)
                delta = next(o.price_delta_fen for o in g.options if o.option_id == option_id)
                options.append((g.group_id, option_id, delta))
                unit += delta
            priced.append((index, item.item_id, item.name, line.quantity, tuple(options), unit, unit * line.quantity))
            total += unit * line.quantity
        return sorted(problems), priced, total


def brand_problem(b: pb.Brand) -> str:
    if not b.brand_id:
        return "brand.brand_id"
    if not b.name.strip() or len(b.name) > 200:
        return "brand.name"
    if len(b.aliases) > 100:
        return "brand.aliases"
    if len(b.category) > 200:
        return "brand.category"
    if len(b.logo_url) > 2048:
        return "brand.logo_url"
    return ""


def item_problem(it: pb.MenuItem) -> str:
    if not it.item_id:
        return "item.item_id"
    if not it.name.strip() or len(it.name) > 200:
        return "item.name"
    if it.price_fen <= 0:
        return "item.price_fen"
    if len(it.aliases) > 100:
        return "item.aliases"
    if len(it.option_groups) > 20 or sum(len(g.options) for g in it.option_groups) > 100:
        return "item.option_groups"
    for gi, g in enumerate(it.option_groups):
        if any(len(o.aliases) > 20 for o in g.options):
            return f"item.option_groups[{gi}].options"
    if it.price_fen + sum(min(o.price_delta_fen for o in g.options) for g in it.option_groups) < 0:
        return "item.option_groups"  # or the group whose option alone goes below 0
    return ""


def store_problem(s: pb.Store, brands) -> str:
    if not s.store_id:
        return "MISSING_STORE_ID"
    if len(s.store_id) > 128 or len(s.name) > 200 or len(s.address) > 500 or len(s.city) > 100:
        return "FIELD_TOO_LONG"
    if " " in s.store_id:
        return "INVALID_STORE_ID"
    if not s.name.strip():
        return "MISSING_NAME"
    if "\n" in s.name + s.address + s.city:
        return "CONTROL_CHARACTERS"
    if s.brand_id not in brands:
        return "UNKNOWN_BRAND"
    lat, lng = s.location.latitude, s.location.longitude
    if not (-90 <= lat <= 90 and -180 <= lng <= 180) or (lat == 0 and lng == 0):
        return "LOCATION_OUT_OF_RANGE"
    hours = s.opening_hours
    if len(hours) > 56 or any(not (1 <= p.weekday <= 7 and 0 <= p.open_minute <= 1439 and p.open_minute < p.close_minute <= 2880) for p in hours):
        return "BAD_OPENING_HOURS"
    if s.time_zone and s.time_zone not in ZONES:
        return "BAD_TIME_ZONE"
    return ""


# --- callers -------------------------------------------------------------------------------


class Caller:
    """Who marks an item: the admin, the platform's merchant token, or a merchant's grant (with
    or without the internal credential)."""

    def __init__(self, kind: str, merchant: str = "", brands=(), stores=(), alone: bool = False) -> None:
        self.kind, self.merchant, self.brands, self.stores, self.alone = kind, merchant, tuple(brands), tuple(stores), alone

    def covers(self, store: pb.Store) -> bool:
        return self.kind != "grant" or store.brand_id in self.brands or store.store_id in self.stores

    def metadata(self, cat: Running):
        if self.kind == "admin":
            return cat.admin
        if self.kind == "platform":
            return cat.merchant
        grant = mint_grant(cat.settings.merchant_signing_key, self.merchant, brands=self.brands, stores=self.stores, ttl=86_400,
                           clock=cat.clock)
        md = ((MERCHANT_TOKEN_KEY, grant),)
        return md if self.alone else ((INTERNAL_TOKEN_KEY, cat.settings.internal_token),) + md

    def __repr__(self) -> str:
        return f"Caller({self.kind}, {self.merchant}, brands={self.brands}, stores={self.stores})"


def random_caller(rng: random.Random, model: Model) -> Caller:
    kind = rng.choice(["admin", "platform", "grant", "grant", "grant"])
    if kind != "grant":
        return Caller(kind)
    merchant = rng.choice(MERCHANTS)
    if rng.random() < 0.5:
        # Mostly the brand of the stores the walk marks: a chain's headquarters.
        return Caller("grant", merchant, brands=[rng.choice(BRAND_IDS[:2])], alone=rng.random() < 0.5)
    return Caller("grant", merchant, stores=rng.sample(STORE_IDS, 5), alone=rng.random() < 0.5)


# --- random requests -----------------------------------------------------------------------


def random_brand(rng: random.Random) -> pb.Brand:
    b = pb.Brand(brand_id=rng.choice(BRAND_IDS), name=rng.choice(["瑞幸", "喜茶", "蜜雪冰城", "新名字"]),
                 category=rng.choice(CATEGORIES), aliases=rng.sample(["lk", "ht", "mx", "咖啡店"], rng.randint(0, 2)))
    flaw = rng.random()
    if flaw < 0.04:
        b.name = ""
    elif flaw < 0.07:
        b.name = "名" * 201
    elif flaw < 0.09:
        b.logo_url = "https://x/" + "a" * 2040
    elif flaw < 0.11:
        b.category = "c" * 201
    elif flaw < 0.13:
        b.aliases.extend(f"a{n}" for n in range(101))
    elif flaw < 0.15:
        b.brand_id = ""
    return b


def random_item(rng: random.Random, brands: list[str]) -> pb.MenuItem:
    item = pb.MenuItem(item_id=rng.choice(ITEM_IDS), brand_id=rng.choice(brands + ["nobrand"] * (rng.random() < 0.05)),
                       name=rng.choice(["拿铁", "美式", "柠檬水", "芝芝莓莓"]), category="饮品",
                       price_fen=rng.choice([30, 900, 1500, 2800]))
    item.aliases.extend(rng.choice(["x", "名"]) * rng.randint(1, 200) for _ in range(rng.choice([0, 0, 1, 2, 4])))
    for gi in range(rng.choice([0, 1, 1, 2, 3])):
        group = item.option_groups.add(group_id=f"g{gi}", name=f"组{gi}")
        for k in range(rng.randint(1, 3)):
            group.options.add(option_id=f"o{k}", name=f"选{k}", price_delta_fen=rng.choice([0, 0, 100, 300, -50]),
                              aliases=["大"] * rng.randint(0, 2))
        if rng.random() < 0.5:
            group.default_option_id = rng.choice(group.options).option_id
    flaw = rng.random()
    if flaw < 0.03:
        item.name = ""
    elif flaw < 0.06:
        item.price_fen = rng.choice([0, -100])
    elif flaw < 0.08:
        item.name = "n" * 201
    elif flaw < 0.10:
        group = item.option_groups.add(group_id="big", name="大组")
        for k in range(101):
            group.options.add(option_id=f"b{k}", name="x")
    elif flaw < 0.12:
        for k in range(21):
            item.option_groups.add(group_id=f"many{k}", name="x").options.add(option_id="o", name="x")
    elif flaw < 0.13:
        item.item_id = ""
    return item


def random_store_row(rng: random.Random) -> pb.Store:
    s = pb.Store(store_id=rng.choice(STORE_IDS), brand_id=rng.choice(BRAND_IDS), name=rng.choice(["西湖店", "武林店", "滨江店"]),
                 address=rng.choice(["", "西湖区1号"]), city=rng.choice(["", "杭州"]), closed=rng.random() < 0.1,
                 time_zone=rng.choice(ZONES))
    s.location.latitude = CENTRE[0] + rng.uniform(-0.01, 0.01)
    s.location.longitude = CENTRE[1] + rng.uniform(-0.01, 0.01)
    timetable = rng.choice([[], [(d, 540, 1380) for d in range(1, 8)], [(d, 600, 1500) for d in range(1, 8)], [(1, 480, 1200), (3, 0, 2880)]])
    s.opening_hours.extend(pb.OpeningPeriod(weekday=w, open_minute=o, close_minute=c) for w, o, c in rng.sample(timetable, len(timetable)))
    flaw = rng.random()
    if flaw < 0.03:
        s.store_id = ""
    elif flaw < 0.05:
        s.store_id = "bad id"
    elif flaw < 0.07:
        s.name = " "
    elif flaw < 0.09:
        s.brand_id = "nobrand"
    elif flaw < 0.11:
        s.location.latitude = 91.0
    elif flaw < 0.12:
        s.ClearField("location")
    elif flaw < 0.14:
        s.opening_hours.add(weekday=8, open_minute=0, close_minute=60)
    elif flaw < 0.16:
        s.time_zone = rng.choice(["Mars/Olympus", "localtime"])
    elif flaw < 0.18:
        s.address = "a" * 501
    elif flaw < 0.20:
        s.city = "杭州\n西湖"
    elif flaw < 0.21:
        s.opening_hours.extend(pb.OpeningPeriod(weekday=1 + n % 7, open_minute=n, close_minute=n + 1) for n in range(57))
    return s


def random_request_id(rng: random.Random, used: list[str]) -> str:
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.13:
        return "r" * 129
    if used and roll < 0.55:
        return rng.choice(used)
    rid = f"req-{rng.randrange(10**9)}"
    used.append(rid)
    return rid


def random_lines(rng: random.Random, model: Model, store: pb.Store) -> list[pb.LineSelection]:
    menu = list(model.menus.get(store.brand_id, {}).values())
    lines = []
    for _ in range(rng.randint(1, 4)):
        item = rng.choice(menu) if menu and rng.random() < 0.8 else None
        line = pb.LineSelection(item_id=item.item_id if item else rng.choice(ITEM_IDS + ["ghost"]),
                                quantity=rng.choice([1, 1, 2, 99, 0, 100]))
        groups = list(item.option_groups) if item else []
        for g in rng.sample(groups, rng.randint(0, len(groups))):
            line.options.add(group_id=g.group_id, option_id=rng.choice([o.option_id for o in g.options] + ["nope"]))
        if rng.random() < 0.05:
            line.options.add(group_id="nogroup", option_id="o0")
        lines.append(line)
    return lines


# --- the real catalog --------------------------------------------------------------------------


class Catalog:
    def __init__(self, tmp_path, clock: FakeClock) -> None:
        self.tmp_path, self.clock, self.running = tmp_path, clock, None

    async def start(self) -> Running:
        settings = catalog_settings(self.tmp_path)
        server = await build(settings, clock=self.clock)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.running = Running(server, settings, self.clock, channel)
        return self.running

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.channel.close()
            await self.running.server.stop(0)
            self.running = None


async def outcome(call):
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        details = error_details(err)
        refused = Refused(err.code().name, details["reason"], tuple(f for f, _ in details["violations"]))
        refused.message = err.details()
        return refused


def same_refusal(got, want: Refused) -> bool:
    if not isinstance(got, Refused) or got.code != want.code:
        return False
    if want.reason is not None and got.reason != want.reason:
        return False
    # A field's parts count as the field (an option of a group names the group's options).
    return want.field is None or any(f.startswith(want.field) for f in got.field)


def expect(model_call, *args):
    try:
        return model_call(*args)
    except Refused as refused:
        return refused


def check_writes_answer(step, got, want):
    if isinstance(want, Refused):
        assert same_refusal(got, want), f"step {step}: got {got!r}, the model says {want.code} {want.reason} {want.field}"
    else:
        assert not isinstance(got, Refused), f"step {step}: refused {got.code} {got.reason} {got.field}, the model says {want!r}"


def store_view(s: pb.Store):
    return (s.store_id, s.brand_id, s.name, s.address, s.city, round(s.location.latitude, 9), round(s.location.longitude, 9),
            sorted((p.weekday, p.open_minute, p.close_minute) for p in s.opening_hours), s.closed, s.time_zone or "Asia/Shanghai")


async def check_reads(step, cat: Running, model: Model, rng: random.Random, *, everything: bool = False) -> None:
    now = cat.clock.now()
    where = f"step {step}"
    brands = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=100), metadata=cat.md)
    assert {b.brand_id: b for b in brands.brands} == model.brands, where
    store_ids = STORE_IDS if everything else rng.sample(STORE_IDS, 4)
    for store_id in store_ids:
        want = model.stores.get(store_id)
        menu = await outcome(cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md))
        got_store = await outcome(cat.stub.GetStore(svc.GetStoreRequest(store_id=store_id), metadata=cat.md))
        if want is None:
            assert same_refusal(menu, Refused("NOT_FOUND", "STORE_NOT_FOUND")), where
            assert same_refusal(got_store, Refused("NOT_FOUND", "STORE_NOT_FOUND")), where
            continue
        assert not isinstance(menu, Refused) and not isinstance(got_store, Refused), (where, menu, got_store)
        assert store_view(got_store.store) == store_view(want), where
        assert store_view(menu.store) == store_view(want), where
        assert menu.brand == model.brands[want.brand_id], where
        assert menu.open_now == open_now(want, now), where
        entries = {e.item.item_id: (e.item, e.available) for e in menu.entries}
        expected = {i: (render_item(it), (store_id, i) not in model.sold) for i, it in model.menus[want.brand_id].items()}
        assert entries == expected, f"{where}: menu of {store_id}"
        for _ in range(2):
            lines = random_lines(rng, model, want)
            got = await outcome(cat.stub.Quote(svc.QuoteRequest(store_id=store_id, lines=lines), metadata=cat.md))
            problems, priced, total = model.quote(store_id, lines, now)
            assert not isinstance(got, Refused), (where, got)
            assert sorted((p.line_index, p.item_id, p.reason) for p in got.problems) == problems, f"{where}: quote at {store_id}"
            assert got.orderable == (not problems), where
            assert [
                (l.line_index, l.item_id, l.item_name, l.quantity, tuple((o.group_id, o.option_id, o.price_delta_fen) for o in l.options),
                 l.unit_price_fen, l.line_total_fen)
                for l in got.quote.lines
            ] == priced, f"{where}: quote at {store_id}"
            assert got.quote.total_fen == total and got.quote.brand_id == want.brand_id, where
    for brand_id, category, only_open in [("", "", False), (rng.choice(BRAND_IDS), "", rng.random() < 0.5),
                                          ("", rng.choice(CATEGORIES[:2]), rng.random() < 0.5)]:
        request = svc.SearchStoresRequest(radius_meters=50_000, page_size=100, brand_id=brand_id, category=category, open_now=only_open)
        request.location.latitude, request.location.longitude = CENTRE
        got = await outcome(cat.stub.SearchStores(request, metadata=cat.md))
        if brand_id and brand_id not in model.brands:
            assert same_refusal(got, Refused("NOT_FOUND", "BRAND_NOT_FOUND")), where
            continue
        want_ids = sorted(
            s.store_id for s in model.stores.values()
            if (not brand_id or s.brand_id == brand_id) and (not category or model.brands[s.brand_id].category == category)
            and (not only_open or open_now(s, now))
        )
        assert not isinstance(got, Refused), (where, got)
        assert sorted(h.store.store_id for h in got.stores) == want_ids, f"{where}: search {request}"
        distances = [h.distance_meters for h in got.stores]
        assert distances == sorted(distances), where
        for hit in got.stores:
            want = model.stores[hit.store.store_id]
            assert store_view(hit.store) == store_view(want) and hit.brand == model.brands[want.brand_id], where
            assert hit.open_now == open_now(want, now), where


# --- the walk ----------------------------------------------------------------------------------


async def open_the_catalog(cat: Running, model: Model, rng: random.Random) -> None:
    """Every brand and store once, so that most of the walk acts on things that exist."""
    now = cat.clock.now()
    for n, brand_id in enumerate(BRAND_IDS):
        brand = pb.Brand(brand_id=brand_id, name=f"品牌{n}", category=CATEGORIES[n])
        model.upsert_brand("", brand, now)
        await cat.stub.UpsertBrand(svc.UpsertBrandRequest(brand=brand), metadata=cat.admin)
    rows = []
    for store_id in STORE_IDS:
        row = random_store_row(rng)
        while store_problem(row, model.brands):
            row = random_store_row(rng)
        row.store_id = store_id
        rows.append(row)
    model.import_stores(rows)
    await cat.stub.ImportStores(iter([svc.ImportStoresRequest(stores=rows)]), metadata=cat.admin)


async def play(seed: int, tmp_path, steps: int = STEPS) -> None:
    rng = random.Random(seed)
    clock = FakeClock(EVENING + timedelta(minutes=rng.randrange(7 * 1440)))
    catalog = Catalog(tmp_path / f"seed{seed}", clock)
    (tmp_path / f"seed{seed}").mkdir()
    cat = await catalog.start()
    model = Model()
    ids: list[str] = []  # one pool: an id of one RPC is no id of another's
    used = {"brand": ids, "item": ids, "availability": ids}
    sent: dict[str, list[tuple]] = {"brand": [], "item": [], "availability": []}  # earlier requests, to replay
    try:
        await open_the_catalog(cat, model, rng)
        for step in range(steps):
            roll = rng.random()
            now = clock.now()
            if roll < 0.14 or not model.brands:
                if sent["brand"] and rng.random() < 0.25:
                    request_id, brand = rng.choice(sent["brand"])
                else:
                    request_id, brand = random_request_id(rng, used["brand"]), random_brand(rng)
                    sent["brand"].append((request_id, brand))
                want = expect(model.upsert_brand, request_id, brand, now)
                got = await outcome(cat.stub.UpsertBrand(svc.UpsertBrandRequest(request_id=request_id, brand=brand), metadata=cat.admin))
                check_writes_answer(step, got, want)
                if not isinstance(want, Refused):
                    assert (got.brand, got.created) == want, f"step {step}: UpsertBrand {request_id!r}"
            elif roll < 0.40:
                if sent["item"] and rng.random() < 0.25:
                    request_id, item = rng.choice(sent["item"])
                else:
                    request_id, item = random_request_id(rng, used["item"]), random_item(rng, sorted(model.brands))
                    sent["item"].append((request_id, item))
                want = expect(model.upsert_item, request_id, item, now)
                got = await outcome(cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id=request_id, item=item), metadata=cat.admin))
                check_writes_answer(step, got, want)
                if not isinstance(want, Refused):
                    assert (got.item, got.created) == want, f"step {step}: UpsertMenuItem {request_id!r}"
            elif roll < 0.52:
                rows = [random_store_row(rng) for _ in range(rng.randint(1, 6))]
                cut = rng.randint(0, len(rows))
                messages = [svc.ImportStoresRequest(stores=part) for part in (rows[:cut], rows[cut:]) if part]
                accepted, rejections = model.import_stores(rows)
                got = await cat.stub.ImportStores(iter(messages), metadata=cat.admin)
                assert (got.accepted, got.rejected) == (accepted, len(rejections)), f"step {step}: import {rows}"
                assert [(r.row_index, r.reason) for r in got.rejections] == rejections, f"step {step}"
            elif roll < 0.85:
                if sent["availability"] and rng.random() < 0.3:
                    caller, request_id, store_id, item_id, available = rng.choice(sent["availability"])
                    if rng.random() < 0.3:
                        caller = random_caller(rng, model)  # the same id from someone else
                else:
                    caller, request_id = random_caller(rng, model), random_request_id(rng, used["availability"])
                    store_id = rng.choice(STORE_IDS + ["", "ghost"] if rng.random() < 0.05 else STORE_IDS)
                    menu = sorted(model.menus.get(model.stores[store_id].brand_id, {})) if store_id in model.stores else []
                    item_id = rng.choice(menu if menu and rng.random() < 0.7 else ITEM_IDS + [""] * (rng.random() < 0.05))
                    available = rng.random() < 0.4
                    sent["availability"].append((caller, request_id, store_id, item_id, available))
                want = expect(model.set_availability, caller, request_id, store_id, item_id, available, now)
                request = svc.SetItemAvailabilityRequest(request_id=request_id, store_id=store_id, item_id=item_id, available=available)
                got = await outcome(cat.stub.SetItemAvailability(request, metadata=caller.metadata(cat)))
                check_writes_answer(f"{step} {caller} {request}", got, want)
                if not isinstance(want, Refused):
                    assert got.available == want, f"step {step}"
            elif roll < 0.95:
                clock.advance(rng.choice([0.1, 60, 3_600, 5 * 3_600, 86_400, 3 * 86_400]))
                await cat.server.catalog.forget_old_requests()
                model.forget(clock.now())
            else:
                await catalog.stop()
                cat = await catalog.start()
                model.forget(clock.now())  # a start forgets what is a week old
                await check_reads(step, cat, model, rng, everything=True)
                continue
            await check_reads(step, cat, model, rng)
        await catalog.stop()
        cat = await catalog.start()
        await check_reads("after the last restart", cat, model, rng, everything=True)
    finally:
        await catalog.stop()


@pytest.fixture
def small_menus(monkeypatch):
    monkeypatch.setattr(catalog_store, "MAX_MENU_ITEMS", MENU_ITEMS_LIMIT)
    monkeypatch.setattr(catalog_store, "MAX_MENU_BYTES", MENU_BYTES_LIMIT)


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_random_admin_and_merchant_writes_read_back_as_the_model_says(seed, tmp_path, small_menus):
    await play(seed, tmp_path)
