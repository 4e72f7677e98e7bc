"""Catalog rules as plain data and functions: brands, menus, stores, opening hours, quotes.

Imports neither grpc nor sqlite. Everything the order path needs (Quote) is answered from these
in-memory structures: a menu per brand and a sold-out set per store, so pricing a line is one
dict lookup and never touches the database.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from services.common.errors import MAX_MESSAGE_BYTES, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, clip
from services.common.time_zone import is_iana_zone

DEFAULT_TIME_ZONE = "Asia/Shanghai"
MIN_QUANTITY, MAX_QUANTITY = 1, 99
MAX_QUOTE_LINES = 50
MAX_TEXT_CHARS = 500
MAX_ID_CHARS = 128
_SPACE = re.compile(r"\s")
# C0 and C1 control characters (NUL, line breaks, tabs, ESC, DEL...): a name or address is one
# line of text shown in apps and printed on kitchen tickets, and a NUL ends it early in C code.
# Also the Unicode line and paragraph separators (line breaks in most renderers) and the bidi
# embeddings, overrides and isolates, which make a name display as another ("店家" shown
# reversed, a brand spoofed). Every other character is text (ideographic spaces, emoji,
# zero-width joiners).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_NAME_CHARS = 200
MAX_PRICE_FEN = 10_000_000  # 100,000 yuan per unit: anything above is a typo, not a menu price
# What one brand or menu item may hold. Every text and list of a record is bounded, not only its
# names: ListBrands, and GetMenu at each of a brand's stores, send the records whole, and one
# megabytes long (a logo_url, a category, ten thousand options) made every such answer larger
# than a client reads (4 MiB by default), RESOURCE_EXHAUSTED for every buyer. An item at every
# limit, in Chinese (3 bytes a character), is about 1.3 MB; the demo's largest has 3 groups,
# 5 options in a group and 12 aliases to an option.
MAX_URL_CHARS = 2_048
MAX_ALIASES = 100  # of a brand or an item
MAX_OPTION_ALIASES = 20
MAX_OPTION_GROUPS = 20
MAX_OPTIONS = 100  # of an item, all its groups together
# Items one brand's menu may hold. GetMenu sends a store's whole menu in one answer (it has no
# pages) and a client reads at most 4 MiB by default: the richest demo item (3 option groups with
# their aliases) is 1.3 KB on the wire, so 2,000 such items are ~2.6 MB and still read, where a
# menu nothing bounds (an import script re-run with fresh item ids) would end as an answer no
# buyer of the brand can read, at every one of its stores; every menu is also re-indexed for
# MatchIntent after each change. The largest chains list a few hundred items. A full menu is
# FAILED_PRECONDITION, not RESOURCE_EXHAUSTED: retrying does not help (the order service's
# CART_FULL alike), and RESOURCE_EXHAUSTED is the suite's answer to load, retried after a delay.
MAX_MENU_ITEMS = 2_000
MENU_FULL = "MENU_FULL"
# What a brand's menu items may weigh together in a GetMenu answer (menu_entry_bytes). The count
# above does not bound it: an item at every limit is ~1.3 MB, and four of them made GetMenu at
# every store of the brand larger than a buyer's app reads (4 MiB through the gateway):
# RESOURCE_EXHAUSTED for every buyer there. The 128 KiB left cover the rest of the answer (a
# store and a brand at their limits are under 70 KB) and the gateway's envelope. 2,000 items as
# rich as the demo's richest still fit (~2.6 MB). Refused as MENU_FULL is: FAILED_PRECONDITION.
MAX_MENU_BYTES = 4 * 1024 * 1024 - 128 * 1024
MENU_TOO_LARGE = "MENU_TOO_LARGE"
ITEM_NOT_FOUND = "ITEM_NOT_FOUND"

# Quote problem reasons (QuoteProblem.reason).
UNKNOWN_ITEM = "UNKNOWN_ITEM"
ITEM_SOLD_OUT = "ITEM_SOLD_OUT"
OPTION_NOT_OFFERED = "OPTION_NOT_OFFERED"
QUANTITY_OUT_OF_RANGE = "QUANTITY_OUT_OF_RANGE"
STORE_CLOSED = "STORE_CLOSED"

# ImportStores rejection reasons.
MISSING_STORE_ID = "MISSING_STORE_ID"
INVALID_STORE_ID = "INVALID_STORE_ID"
MISSING_NAME = "MISSING_NAME"
UNKNOWN_BRAND = "UNKNOWN_BRAND"
LOCATION_OUT_OF_RANGE = "LOCATION_OUT_OF_RANGE"
BAD_OPENING_HOURS = "BAD_OPENING_HOURS"
BAD_TIME_ZONE = "BAD_TIME_ZONE"
FIELD_TOO_LONG = "FIELD_TOO_LONG"
CONTROL_CHARACTERS = "CONTROL_CHARACTERS"

# Rows one ImportStores message may carry (catalog_service.proto). The rows of a message are read
# and validated on the event loop that serves Quote: a 16 MiB message of 300,000 rows, taken in
# one go, paused every other call for over a second. A larger message is refused whole
# (INVALID_ARGUMENT TOO_MANY_STORES naming `stores`) rather than cut up, so no row of it is half
# taken; the importers send 5,000 (services/catalog/generate.py).
MAX_STORES_PER_MESSAGE = 5_000
TOO_MANY_STORES = "TOO_MANY_STORES"

# A request_id used again for a different request (the card and order services' reason).
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"


# --- resources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Brand:
    brand_id: str
    name: str
    aliases: tuple[str, ...] = ()
    category: str = ""
    logo_url: str = ""


@dataclass(frozen=True, slots=True)
class Option:
    option_id: str
    name: str
    price_delta_fen: int = 0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OptionGroup:
    group_id: str
    name: str
    options: tuple[Option, ...]
    default_option_id: str = ""

    def option(self, option_id: str) -> Option | None:
        for opt in self.options:
            if opt.option_id == option_id:
                return opt
        return None

    @property
    def default(self) -> Option:
        return self.option(self.default_option_id) or self.options[0]


@dataclass(frozen=True, slots=True)
class MenuItem:
    item_id: str
    brand_id: str
    name: str
    price_fen: int
    aliases: tuple[str, ...] = ()
    category: str = ""
    option_groups: tuple[OptionGroup, ...] = ()

    def group(self, group_id: str) -> OptionGroup | None:
        for g in self.option_groups:
            if g.group_id == group_id:
                return g
        return None


@dataclass(frozen=True, slots=True)
class OpeningPeriod:
    weekday: int  # ISO 1..7
    open_minute: int  # 0..1439
    close_minute: int  # open+1..2880; > 1440 runs past midnight into the next day


Hours = tuple[OpeningPeriod, ...]


@dataclass(slots=True)
class StoreRecord:
    """What the server keeps in memory per store (300,000 of them): enough to search, filter by
    open-now and quote. Address and city stay in SQLite and are read only to render results."""

    store_id: str
    brand_id: str
    name: str
    lat: float
    lng: float
    hours: Hours  # interned: stores with the same timetable share one tuple
    closed: bool
    time_zone: str


@dataclass(frozen=True, slots=True)
class StoreDetails:
    """The rarely-needed columns, read from the store when rendering a Store."""

    address: str = ""
    city: str = ""


@dataclass(frozen=True, slots=True)
class StoreRow:
    """One validated import row, everything needed to persist it."""

    store_id: str
    brand_id: str
    name: str
    address: str
    city: str
    lat: float
    lng: float
    hours: Hours
    closed: bool
    time_zone: str

    def record(self) -> StoreRecord:
        # hours are already interned by validate_store_row
        return StoreRecord(self.store_id, self.brand_id, self.name, self.lat, self.lng, self.hours, self.closed, self.time_zone)


# --- opening hours ---------------------------------------------------------------------------

_HOURS_INTERN: dict[Hours, Hours] = {}
# Distinct timetables interned (and validated, and encoded) at most: a table is never emptied
# (encode_hours keys on the identity of its tuples), and the catalog runs for the whole campaign
# while imports bring new hours for the same stores; beyond this a timetable is simply not shared.
MAX_REMEMBERED_TIMETABLES = 100_000


def intern_hours(hours: Hours) -> Hours:
    """One shared tuple per distinct timetable: chains repeat a handful of timetables across
    hundreds of thousands of stores, so this is most of the memory saved on hours."""
    shared = _HOURS_INTERN.get(hours)
    if shared is not None:
        return shared
    if len(_HOURS_INTERN) < MAX_REMEMBERED_TIMETABLES:
        _HOURS_INTERN[hours] = hours
    return hours


def validate_hours(periods: Iterable[tuple[int, int, int]]) -> tuple[Hours | None, str]:
    """(hours, "") or (None, why)."""
    out = []
    for wd, open_m, close_m in periods:
        if not 1 <= wd <= 7:
            return None, f"weekday {wd} is not 1..7"
        if not 0 <= open_m <= 1439:
            return None, f"open_minute {open_m} is not 0..1439"
        if not open_m < close_m <= 2880:
            return None, f"close_minute {close_m} must be in open_minute+1..2880"
        out.append(OpeningPeriod(wd, open_m, close_m))
    out.sort(key=lambda p: (p.weekday, p.open_minute))
    return tuple(out), ""


# Opening periods one store's week may hold: eight a day (breakfast, lunch, dinner, late night
# and split shifts fit several times over). Every SearchStores hit, GetMenu and GetStore sends
# them all and every open-now check reads them all: nothing bounded them, and ten stores of an
# import row with 60,000 periods each made every search near them a 6 MB answer, more than a
# client reads (RESOURCE_EXHAUSTED for every buyer there); the memo below kept such rows whole.
MAX_OPENING_PERIODS = 7 * 8

_VALIDATED: dict[tuple[tuple[int, int, int], ...], tuple[Hours | None, str]] = {}


def validate_hours_cached(periods: Sequence[tuple[int, int, int]]) -> tuple[Hours | None, str]:
    """validate_hours memoised on the raw periods: an import of 300,000 stores repeats a handful
    of timetables, so each is validated and interned once (bounded: a hostile import with
    millions of distinct timetables stops filling the memo)."""
    if len(periods) > MAX_OPENING_PERIODS:
        # Refused before the memo: a key of 60,000 periods is not kept, nor validated.
        return None, f"at most {MAX_OPENING_PERIODS} periods a week, got {len(periods):,}"
    if type(periods) is not tuple:
        periods = tuple(periods)
    hit = _VALIDATED.get(periods)
    if hit is None:
        hours, why = validate_hours(periods)
        hit = (intern_hours(hours) if hours is not None else None, why)
        if len(_VALIDATED) < MAX_REMEMBERED_TIMETABLES:
            _VALIDATED[periods] = hit
    return hit


_ENCODED: dict[int, str] = {}


def encode_hours(hours: Hours) -> str:
    """Compact text form stored in SQLite: "1:420-1320;2:420-1320"."""
    # Interned timetables live forever in _HOURS_INTERN, so their id() is a stable memo key.
    text = _ENCODED.get(id(hours))
    if text is not None:
        return text
    if _HOURS_INTERN.get(hours) is hours:
        text = _ENCODED[id(hours)] = ";".join(f"{p.weekday}:{p.open_minute}-{p.close_minute}" for p in hours)
        return text
    return ";".join(f"{p.weekday}:{p.open_minute}-{p.close_minute}" for p in hours)


@lru_cache(maxsize=4096)
def decode_hours(text: str) -> Hours:
    if not text:
        return ()
    out = []
    for part in text.split(";"):
        wd, span = part.split(":")
        o, c = span.split("-")
        out.append(OpeningPeriod(int(wd), int(o), int(c)))
    return intern_hours(tuple(out))


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TIME_ZONE)


def valid_time_zone(name: str) -> bool:
    return not name or is_iana_zone(name)


def local_weekday_minute(now: datetime, time_zone: str) -> tuple[int, int]:
    local = now.astimezone(zone(time_zone))
    return local.isoweekday(), local.hour * 60 + local.minute


def open_at(hours: Hours, weekday: int, minute: int) -> bool:
    """Whether a timetable is open at a local weekday/minute. Empty timetable = always open.
    A period closing after 1440 also covers the early minutes of the next weekday."""
    if not hours:
        return True
    yesterday = 7 if weekday == 1 else weekday - 1
    for p in hours:
        if p.weekday == weekday and p.open_minute <= minute < p.close_minute:
            return True
        if p.weekday == yesterday and p.close_minute > 1440 and minute < p.close_minute - 1440:
            return True
    return False


WEEK_MINUTES = 7 * 1440


def next_open_change(store: StoreRecord, now: datetime) -> datetime | None:
    """The first instant after `now` at which whether `store` is open may flip (a Quote's
    STORE_CLOSED problem depends on it), in UTC; None when the clock alone cannot change it.
    Boundaries that do not really flip (back-to-back periods) are returned too: early is safe."""
    if store.closed or not store.hours:
        return None
    local = now.astimezone(zone(store.time_zone))
    here = (local.isoweekday() - 1) * 1440 + local.hour * 60 + local.minute
    ahead = WEEK_MINUTES
    for p in store.hours:
        start = (p.weekday - 1) * 1440
        for boundary in (start + p.open_minute, start + p.close_minute):
            ahead = min(ahead, (boundary - here) % WEEK_MINUTES or WEEK_MINUTES)
    # Counted in real minutes from the current one: while the offset stays the same, wall
    # minutes pass one for one with them. Wall-clock arithmetic read a wall time of the hour an
    # autumn shift repeats as its first passing (an hour early, before the quote itself when it
    # was made the second time round), and a time in the hour a spring shift skips with the
    # old offset (half an hour after the store really opened).
    minute = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    at = minute + timedelta(minutes=ahead)
    if at.astimezone(local.tzinfo).utcoffset() != local.utcoffset():
        # A daylight-saving shift lies in between and wall minutes no longer map 1:1 to real
        # ones: promise only the current minute, which ends one real minute on (the next wall
        # minute after 02:59 on an autumn night is 02:00, not 03:00).
        at = minute + timedelta(minutes=1)
    return at


class OpenClock:
    """Open-now checks for many stores at one instant: local time is computed once per zone."""

    __slots__ = ("now", "_local", "_memo")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._local: dict[str, tuple[int, int]] = {}
        self._memo: dict[tuple[int, str], bool] = {}

    def is_open(self, store: StoreRecord) -> bool:
        if store.closed:
            return False
        return self.hours_open(store.hours, store.time_zone)

    def hours_open(self, hours: Hours, time_zone: str) -> bool:
        """Whether a store that is not closed for good, with these hours, is open now."""
        key = (id(hours), time_zone)
        hit = self._memo.get(key)
        if hit is None:
            local = self._local.get(time_zone)
            if local is None:
                local = self._local[time_zone] = local_weekday_minute(self.now, time_zone)
            hit = self._memo[key] = open_at(hours, *local)
        return hit


# --- geometry --------------------------------------------------------------------------------

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def valid_location(lat: float, lng: float) -> bool:
    # NaN fails every comparison, so it is rejected too.
    return -90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0


# --- validation of writes --------------------------------------------------------------------


def _id_ok(value: str) -> bool:
    """An id other services can carry: 1..128 printable characters, no space of any kind (a
    store id with a newline or NUL was accepted, then refused by the order service's id
    checks, or unmatchable in a merchant grant)."""
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and _SPACE.search(value) is None


def _controls(*texts: str) -> bool:
    return any(_CONTROL.search(t) is not None for t in texts)


def validate_brand(brand: Brand) -> None:
    problems = []
    if _controls(brand.name, brand.category, brand.logo_url, *brand.aliases):
        problems.append(("brand", "名称不能含控制字符 / names must not contain control characters (line breaks, NUL, tabs)"))
    if not _id_ok(brand.brand_id):
        problems.append(("brand.brand_id", "required, 1..128 characters without surrounding spaces"))
    if not brand.name.strip() or len(brand.name) > MAX_NAME_CHARS:
        problems.append(("brand.name", "required, 1..200 characters"))
    if len(brand.aliases) > MAX_ALIASES or any(not a.strip() or len(a) > MAX_NAME_CHARS for a in brand.aliases):
        problems.append(("brand.aliases", "at most 100 non-empty aliases of up to 200 characters"))
    if len(brand.category) > MAX_NAME_CHARS:
        problems.append(("brand.category", "at most 200 characters"))
    if len(brand.logo_url) > MAX_URL_CHARS:
        problems.append(("brand.logo_url", f"at most {MAX_URL_CHARS} characters"))
    if problems:
        raise InvalidArgument(violations=problems)


def validate_item(item: MenuItem) -> None:
    problems = []
    texts = [item.name, item.category, *item.aliases]
    for g in item.option_groups:
        texts += [g.name, *(o.name for o in g.options), *(a for o in g.options for a in o.aliases)]
    if _controls(*texts):
        problems.append(("item", "名称不能含控制字符 / names must not contain control characters (line breaks, NUL, tabs)"))
    if not _id_ok(item.item_id):
        problems.append(("item.item_id", "required, 1..128 characters without surrounding spaces"))
    if not _id_ok(item.brand_id):
        problems.append(("item.brand_id", "required"))
    if not item.name.strip() or len(item.name) > MAX_NAME_CHARS:
        problems.append(("item.name", "required, 1..200 characters"))
    if not 0 < item.price_fen <= MAX_PRICE_FEN:
        problems.append(("item.price_fen", f"required, 1..{MAX_PRICE_FEN} fen"))
    if len(item.aliases) > MAX_ALIASES or any(not a.strip() or len(a) > MAX_NAME_CHARS for a in item.aliases):
        problems.append(("item.aliases", "at most 100 non-empty aliases of up to 200 characters"))
    if len(item.category) > MAX_NAME_CHARS:
        problems.append(("item.category", "at most 200 characters"))
    if len(item.option_groups) > MAX_OPTION_GROUPS or sum(len(g.options) for g in item.option_groups) > MAX_OPTIONS:
        # Refused before the groups are looked at: a violation for each would be thousands.
        problems.append(("item.option_groups", f"at most {MAX_OPTION_GROUPS} option groups and {MAX_OPTIONS} options in all"))
        raise InvalidArgument(violations=problems)
    seen_groups = set()
    for gi, g in enumerate(item.option_groups):
        where = f"item.option_groups[{gi}]"
        if not _id_ok(g.group_id) or g.group_id in seen_groups:
            problems.append((f"{where}.group_id", "required and unique within the item"))
        seen_groups.add(g.group_id)
        if len(g.name) > MAX_NAME_CHARS:
            problems.append((f"{where}.name", "at most 200 characters"))
        if not g.options:
            problems.append((f"{where}.options", "a group needs at least one option"))
        if any(
            len(o.name) > MAX_NAME_CHARS or len(o.aliases) > MAX_OPTION_ALIASES or any(len(a) > MAX_NAME_CHARS for a in o.aliases)
            for o in g.options
        ):
            problems.append((f"{where}.options", f"names and aliases up to 200 characters, at most {MAX_OPTION_ALIASES} aliases an option"))
        ids = [o.option_id for o in g.options]
        if len(set(ids)) != len(ids) or not all(_id_ok(i) for i in ids):
            problems.append((f"{where}.options", "option_id required and unique within the group"))
        if g.default_option_id and g.default_option_id not in ids:
            problems.append((f"{where}.default_option_id", f"{g.default_option_id!r} is not one of the options"))
        for o in g.options:
            if not -MAX_PRICE_FEN <= o.price_delta_fen <= MAX_PRICE_FEN:
                problems.append((f"{where}.options", f"price_delta_fen of {o.option_id!r} out of range"))
    # A line takes one option of every group, so what bounds its price is the cheapest choice of
    # each group added up: two groups of -80 on a 100-fen item quoted -60 together, while a set
    # meal of 10 yuan whose main course adds at least 15 may well take 12 off for "no drink"
    # (an option judged alone against the base price refused that menu).
    cheapest = item.price_fen + sum(min((o.price_delta_fen for o in g.options), default=0) for g in item.option_groups)
    if not problems and cheapest < 0:
        problems.append(("item.option_groups", f"options chosen together would make the price negative ({cheapest} fen)"))
    if problems:
        raise InvalidArgument(violations=problems)


# --- idempotency keys ------------------------------------------------------------------------
#
# A write's request_id is remembered with a fingerprint of what it asked for, as the order
# service does (model.request_hash): the same request_id with the same fingerprint is a retry
# and gets the first answer; with another fingerprint it is a reused key and is refused.


MAX_REQUEST_ID_CHARS = 128  # as the order service's


def check_request_id(request_id: str) -> None:
    """Optional; at most MAX_REQUEST_ID_CHARS. A request id is kept for good with its answer
    (nothing sweeps the requests table), so one of any length grew the database by that much
    a call: a megabyte a tap from a merchant's terminal sending its payload as the id."""
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(
            "request_id", f"最长 {MAX_REQUEST_ID_CHARS} 个字符 / at most {MAX_REQUEST_ID_CHARS} characters", "FIELD_TOO_LONG"
        )


def _fingerprint(parts: list[object]) -> str:
    # Compact JSON (the order service's canonical text), hashed: a short key whatever the size
    # of the request (menu items carry option groups), never ambiguous between fields.
    canon = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def brand_fingerprint(b: Brand) -> str:
    return _fingerprint(["UpsertBrand", b.brand_id, b.name, list(b.aliases), b.category, b.logo_url])


def item_fingerprint(it: MenuItem) -> str:
    groups = [
        [g.group_id, g.name, g.default_option_id, [[o.option_id, o.name, o.price_delta_fen, list(o.aliases)] for o in g.options]]
        for g in it.option_groups
    ]
    return _fingerprint(["UpsertMenuItem", it.brand_id, it.item_id, it.name, it.price_fen, list(it.aliases), it.category, groups])


def availability_fingerprint(store_id: str, item_id: str, available: bool) -> str:
    return _fingerprint(["SetItemAvailability", store_id, item_id, bool(available)])


def menu_full(brand_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        MENU_FULL,
        f"品牌 {brand_id} 的菜单已满（最多 {MAX_MENU_ITEMS:,} 个商品），只能修改已有商品 / the menu of brand {brand_id!r} "
        f"is full (at most {MAX_MENU_ITEMS:,} items): existing items can still be updated",
        metadata={"brand_id": brand_id, "max_items": str(MAX_MENU_ITEMS)},
    )


def menu_too_large(brand_id: str, menu_bytes: int) -> FailedPrecondition:
    return FailedPrecondition(
        MENU_TOO_LARGE,
        f"品牌 {brand_id} 的菜单过大（最多 {MAX_MENU_BYTES:,} 字节），请精简选项或别名 / the menu of brand {brand_id!r} "
        f"would weigh {menu_bytes:,} bytes, more than a GetMenu answer may carry ({MAX_MENU_BYTES:,}): trim options or "
        "aliases; changes that do not grow an item are still taken",
        metadata={"brand_id": brand_id, "max_bytes": str(MAX_MENU_BYTES), "menu_bytes": str(menu_bytes)},
    )


def _varint_bytes(n: int) -> int:
    if n < 0:
        return 10  # a negative int64 is sign-extended to 64 bits
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _text_bytes(text: str) -> int:
    size = len(text.encode("utf-8", "surrogatepass"))
    return 1 + _varint_bytes(size) + size if size else 0  # proto3 leaves an empty string out


def _message_bytes(size: int) -> int:
    return 1 + _varint_bytes(size) + size


def menu_entry_bytes(item: MenuItem) -> int:
    """The bytes `item` adds to a GetMenu answer: one entry of `entries`, as the servicer renders
    it (the default option resolved, `available` set). Every field number here is below 16, so
    each tag is one byte."""
    groups = 0
    for g in item.option_groups:
        options = 0
        for o in g.options:
            options += _message_bytes(
                _text_bytes(o.option_id) + _text_bytes(o.name) + (1 + _varint_bytes(o.price_delta_fen) if o.price_delta_fen else 0)
                + sum(_text_bytes(a) or 2 for a in o.aliases)
            )
        groups += _message_bytes(_text_bytes(g.group_id) + _text_bytes(g.name) + options + _text_bytes(g.default.option_id))
    fields = (
        _text_bytes(item.item_id) + _text_bytes(item.brand_id) + _text_bytes(item.name) + _text_bytes(item.category)
        + sum(_text_bytes(a) or 2 for a in item.aliases) + (1 + _varint_bytes(item.price_fen) if item.price_fen else 0) + groups
    )
    return _message_bytes(_message_bytes(fields) + 2)


def item_not_on_menu(store_id: str, item_id: str) -> NotFound:
    return NotFound(ITEM_NOT_FOUND, f"该门店菜单上没有 / no item {item_id!r} on the menu of {store_id!r}")


def request_id_reused() -> AlreadyExists:
    return AlreadyExists(REQUEST_ID_REUSED, "request_id 已用于另一个请求 / request_id was used for a different request")


# How long a write's request_id is remembered (Catalog.forget_old_requests): a week, as the
# card, order and lottery services remember theirs, far beyond any retry. Kept for good, the
# merchants' SetItemAvailability ids alone (a few per store a day, 300,000 stores) would grow
# the table by about a million rows a day for the whole campaign. A retry after that re-applies
# its write, which replaces whole rows with the request's content.
REQUEST_MEMORY_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Rejection:
    row_index: int
    store_id: str
    reason: str
    message: str


# A rejected row's store_id as the import report carries it, at most (UTF-8 bytes).
MAX_REPORTED_ID_BYTES = 4 * MAX_ID_CHARS


def validate_store_row(
    row_index: int,
    store_id: str,
    brand_id: str,
    name: str,
    address: str,
    city: str,
    lat: float,
    lng: float,
    periods: Sequence[tuple[int, int, int]],
    closed: bool,
    time_zone: str,
    known_brands: Mapping[str, object],
) -> StoreRow | Rejection:
    def reject(reason: str, message: str) -> Rejection:
        # What the report echoes of the row is bounded: a row whose fields are megabytes long
        # (a CSV whose quoting broke) was sent back whole, and a few of them made the report
        # larger than a client reads (4 MiB by default): RESOURCE_EXHAUSTED instead of the
        # report, though the import's good rows were stored. A valid id (128 characters, 4
        # bytes each at most) stays whole; a longer one keeps enough of itself to be found.
        return Rejection(row_index, clip(store_id, MAX_REPORTED_ID_BYTES), reason, clip(message, MAX_MESSAGE_BYTES))

    if not store_id.strip():
        return reject(MISSING_STORE_ID, "缺少门店编号 / store_id is required")
    if len(store_id) > MAX_ID_CHARS or len(name) > MAX_NAME_CHARS or len(address) > 500 or len(city) > 100:
        return reject(FIELD_TOO_LONG, "字段过长 / a field is too long (store_id 128, name 200, address 500, city 100)")
    if not _id_ok(store_id):
        return reject(INVALID_STORE_ID, "门店编号不能含空白或控制字符 / store_id must be printable without spaces")
    if not name.strip():
        return reject(MISSING_NAME, "缺少门店名称 / name is required")
    if _controls(name, address, city):
        return reject(CONTROL_CHARACTERS, "名称、地址或城市含控制字符 / name, address or city contains control characters (line breaks, NUL, tabs)")
    if brand_id not in known_brands:
        return reject(UNKNOWN_BRAND, f"未知品牌 / unknown brand {brand_id!r}")
    if not valid_location(lat, lng) or (lat == 0.0 and lng == 0.0):
        return reject(LOCATION_OUT_OF_RANGE, f"坐标无效 / location ({lat}, {lng}) is out of range or missing")
    hours, why = validate_hours_cached(periods)
    if hours is None:
        return reject(BAD_OPENING_HOURS, f"营业时间无效 / bad opening hours: {why}")
    if not valid_time_zone(time_zone):
        return reject(BAD_TIME_ZONE, f"不是 IANA 时区 / not an IANA time zone (host-dependent names are refused): {time_zone!r}")
    # Interned: 300,000 rows repeat a handful of brand ids and zones; one string each.
    return StoreRow(
        store_id, sys.intern(brand_id), name, address, city, lat, lng, hours, closed, sys.intern(time_zone or DEFAULT_TIME_ZONE)
    )


# --- quotes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WantedLine:
    item_id: str
    quantity: int
    options: Mapping[str, str] = field(default_factory=dict)  # group_id -> option_id


@dataclass(frozen=True, slots=True)
class PricedOption:
    group_id: str
    option_id: str
    name: str
    price_delta_fen: int


@dataclass(frozen=True, slots=True)
class QuotedLine:
    line_index: int
    item_id: str
    item_name: str
    quantity: int
    options: tuple[PricedOption, ...]
    unit_price_fen: int
    line_total_fen: int


@dataclass(frozen=True, slots=True)
class QuoteProblem:
    line_index: int
    item_id: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class QuoteResult:
    store_id: str
    brand_id: str
    store_name: str
    lines: tuple[QuotedLine, ...]
    problems: tuple[QuoteProblem, ...]
    total_fen: int
    quote_time: datetime

    @property
    def orderable(self) -> bool:
        return not self.problems


def quote(
    store: StoreRecord,
    menu: Mapping[str, MenuItem],
    sold_out: frozenset[str] | set[str],
    lines: Sequence[WantedLine],
    now: datetime,
    *,
    is_open: bool,
) -> QuoteResult:
    """Authoritative price of `lines` at `store`: every line is checked independently so the
    caller learns all problems at once, not one per round trip."""
    priced: list[QuotedLine] = []
    problems: list[QuoteProblem] = []
    if not is_open:
        problems.append(QuoteProblem(-1, "", STORE_CLOSED, "门店当前未营业 / the store is closed now"))
    total = 0
    for index, line in enumerate(lines):
        item = menu.get(line.item_id)
        if item is None:
            problems.append(QuoteProblem(index, line.item_id, UNKNOWN_ITEM, f"菜单上没有该商品 / no item {line.item_id!r} on this menu"))
            continue
        line_problems = len(problems)
        if not MIN_QUANTITY <= line.quantity <= MAX_QUANTITY:
            problems.append(QuoteProblem(index, item.item_id, QUANTITY_OUT_OF_RANGE, f"数量须为 1..99 / quantity {line.quantity} is not 1..99"))
        if item.item_id in sold_out:
            problems.append(QuoteProblem(index, item.item_id, ITEM_SOLD_OUT, f"{item.name} 已售罄 / {item.name} is sold out"))
        chosen: list[PricedOption] = []
        for group_id, option_id in line.options.items():
            group = item.group(group_id)
            if group is None or group.option(option_id) is None:
                problems.append(QuoteProblem(
                    index, item.item_id, OPTION_NOT_OFFERED,
                    f"{item.name} 不提供该选项 / {item.name} does not offer {group_id}={option_id}",
                ))
        if len(problems) > line_problems:
            continue
        unit = item.price_fen
        for group in item.option_groups:
            opt = group.option(line.options[group.group_id]) if group.group_id in line.options else group.default
            assert opt is not None
            chosen.append(PricedOption(group.group_id, opt.option_id, opt.name, opt.price_delta_fen))
            unit += opt.price_delta_fen
        line_total = unit * line.quantity
        total += line_total
        priced.append(QuotedLine(index, item.item_id, item.name, line.quantity, tuple(chosen), unit, line_total))
    return QuoteResult(store.store_id, store.brand_id, store.name, tuple(priced), tuple(problems), total, now)


def card_cover(total_fen: int, face_value_fen: int) -> tuple[int, int]:
    """(covered by one card, left to pay): a card pays min(total, face value), no threshold."""
    covered = min(total_fen, face_value_fen)
    return covered, total_fen - covered
