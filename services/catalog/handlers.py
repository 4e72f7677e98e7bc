"""Catalog use cases over the model, the in-memory state and the store.

The whole catalog lives in memory (brands, menus, 300,000 store records in a grid index,
sold-out sets) and SQLite is its durable copy: every write goes to SQLite first and is applied
to memory only after COMMIT, so memory never shows data that could be lost. Reads, Quote and
MatchIntent are then pure CPU over dicts, which keeps them off the database entirely except for
the address/city columns needed to render a result page (one read per call).
"""
from __future__ import annotations

import asyncio
import base64
import gc
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

from services.common.clock import Clock, SystemClock, now_ms
from services.common.decimal_text import ascii_int
from services.common.errors import InvalidArgument, NotFound
from services.common.merchant_grant import MerchantScope, store_not_yours

from .changes import MenuChanges
from .geo import BrandIndex, GeoIndex
from .model import (
    MAX_QUANTITY,
    REQUEST_MEMORY_MS,
    MAX_STORES_PER_MESSAGE,
    TOO_MANY_STORES,
    MAX_QUOTE_LINES,
    QUANTITY_OUT_OF_RANGE,
    MAX_TEXT_CHARS,
    Brand,
    MenuItem,
    OpenClock,
    QuoteResult,
    Rejection,
    StoreDetails,
    StoreRecord,
    StoreRow,
    WantedLine,
    card_cover,
    check_request_id,
    item_not_on_menu,
    next_open_change,
    quote,
    valid_location,
    validate_brand,
    validate_item,
)
from .store import CatalogStore

T = TypeVar("T")
P = TypeVar("P")

TOO_MANY_CLARIFICATION = (
    f"每样一次最多点 {MAX_QUANTITY} 份，请说一个小一点的数量。/ "
    f"At most {MAX_QUANTITY} of one item per order: please say a smaller number."
)
TOO_MANY_LINES_CLARIFICATION = (
    f"一单最多 {MAX_QUOTE_LINES} 种不同的商品，请分几单来点。/ "
    f"An order takes at most {MAX_QUOTE_LINES} different lines: please split it into several orders."
)
DEFAULT_CARD_FACE_FEN = 2_500
DEFAULT_SEARCH_RADIUS_M = 3_000.0
MAX_SEARCH_RADIUS_M = 50_000.0
MAX_SEARCH_OFFSET = 1_000
NEAR_RADIUS_M = 5_000.0  # MatchIntent looks this far first...
WIDE_RADIUS_M = 20_000.0  # ...and widens to this when no store of the brand is near
MAX_ALTERNATIVES = 5
MAX_REJECTIONS_REPORTED = 1_000
CLARIFY_BRANDS = 8
REBUILD_QUIET_S = 0.05
# Batches of old request ids one pass forgets at most: a backlog (the first pass after an
# upgrade meets every id ever kept) waits for the next pass rather than for a long delete.
FORGET_BATCHES_PER_PASS = 20

_log = logging.getLogger("miandan.catalog.intent")
_sweep_log = logging.getLogger("miandan.catalog")


@dataclass(frozen=True)
class _EmptyReading:
    candidates: tuple[Any, ...] = ()
    clarification: str = ""
    mentioned_unknown_brand: str = ""


_NO_READING = _EmptyReading()

STORE_NOT_FOUND = "STORE_NOT_FOUND"
BRAND_NOT_FOUND = "BRAND_NOT_FOUND"


# --- resolver seam -----------------------------------------------------------------------


class Resolver(Protocol):
    def resolve(self, text: str, card_face_value_fen: int = DEFAULT_CARD_FACE_FEN) -> Any:
        """A Reading: .candidates (each .brand_id, .lines of (.item_id, .quantity, .options),
        .confidence, .explanation), .clarification, .mentioned_unknown_brand."""
        ...


ResolverFactory = Callable[[Sequence[Brand], Mapping[str, Sequence[MenuItem]]], Resolver]


def default_resolver_factory(brands: Sequence[Brand], menus: Mapping[str, Sequence[MenuItem]]) -> Resolver:
    """The offline resolver of services.catalog.intent, built from the catalog as it is now."""
    from services.catalog.intent import BrandSpec, GroupSpec, ItemSpec, OptionSpec, build_resolver

    brand_specs = [BrandSpec(b.brand_id, b.name, tuple(b.aliases), b.category) for b in brands]
    item_specs = [
        ItemSpec(
            item_id=it.item_id,
            brand_id=it.brand_id,
            name=it.name,
            aliases=tuple(it.aliases),
            category=it.category,
            price_fen=it.price_fen,
            groups=tuple(
                GroupSpec(
                    group_id=g.group_id,
                    name=g.name,
                    default_option_id=g.default.option_id,
                    options=tuple(OptionSpec(g.group_id, o.option_id, o.name, tuple(o.aliases)) for o in g.options),
                )
                for g in it.option_groups
            ),
        )
        for b in brands
        for it in menus.get(b.brand_id, ())
    ]
    return build_resolver(brand_specs, item_specs)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreHit:
    store: StoreRecord
    brand: Brand
    distance_m: float
    open_now: bool
    details: StoreDetails


@dataclass(frozen=True)
class Proposal:
    brand: Brand
    hit: StoreHit
    lines: tuple[WantedLine, ...]
    quote: QuoteResult
    card_covered_fen: int
    payable_with_card_fen: int
    confidence: float
    explanation: str


@dataclass(frozen=True)
class IntentOutcome:
    proposals: tuple[Proposal, ...]  # first is the proposal, the rest alternatives
    clarification: str
    available_brands: tuple[str, ...]

    @property
    def matched(self) -> bool:
        return bool(self.proposals)


@dataclass
class ImportResult:
    accepted: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class StampedQuote:
    """A Quote answer with what a caller needs to keep it: the change-feed epoch and version it
    was computed at, and when the clock alone may change it (None: never)."""

    result: QuoteResult
    epoch: str
    menu_version: int
    valid_until: datetime | None


@dataclass(frozen=True)
class MenuView:
    store: StoreRecord
    details: StoreDetails
    brand: Brand
    entries: tuple[tuple[MenuItem, bool], ...]
    open_now: bool


# --- page tokens ---------------------------------------------------------------------------


def _encode_token(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _decode_token(kind: str, token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    prefix, _, value = raw.partition(":")
    if prefix != kind or not _:
        raise InvalidArgument("page_token", "无效的分页令牌 / not a page token of this request", reason="INVALID_PAGE_TOKEN")
    return value


def _page_size(page_size: int, default: int, maximum: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", f"不能为负数 / must be 0..{maximum} (0 means {default})")
    return default if page_size == 0 else min(page_size, maximum)


def _search_position(token: str) -> tuple[int, tuple[float, str] | None]:
    """(stores shown before this page, (distance_m, store_id) of the last one shown). The next
    page starts after that store rather than after a count of stores: stores that close, open or
    move between two pages (hours end, imports) shifted a count, and the page after skipped a
    store never shown or repeated one. The count only caps how deep a list goes."""
    shown_text, _, rest = _decode_token("stores", token).partition(":")
    shown = ascii_int(shown_text, minimum=0, maximum=MAX_SEARCH_OFFSET)
    if shown is None:
        raise InvalidArgument("page_token", "无效的分页令牌 / bad page token", reason="INVALID_PAGE_TOKEN")
    if not rest:
        return shown, None
    distance_text, _, store_id = rest.partition(":")
    try:
        distance = float(distance_text)
    except ValueError:
        distance = math.nan
    if not store_id or not math.isfinite(distance) or distance < 0:
        raise InvalidArgument("page_token", "无效的分页令牌 / bad page token", reason="INVALID_PAGE_TOKEN")
    return shown, (distance, store_id)


def _check_location(lat: float, lng: float, present: bool, field_name: str = "location") -> None:
    if not present:
        raise InvalidArgument(field_name, "需要位置 / location is required")
    if not valid_location(lat, lng):
        raise InvalidArgument(
            field_name, f"坐标超出范围 / latitude must be -90..90 and longitude -180..180, got ({lat}, {lng})",
            reason="LOCATION_OUT_OF_RANGE",
        )


# --- the catalog ---------------------------------------------------------------------------


class Catalog:
    def __init__(self, store: CatalogStore, *, clock: Clock | None = None, resolver_factory: ResolverFactory | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.resolver_factory = resolver_factory or default_resolver_factory
        self.brands: dict[str, Brand] = {}
        self.menus: dict[str, dict[str, MenuItem]] = {}
        self.stores: dict[str, StoreRecord] = {}
        self.index = GeoIndex()
        # One index per brand as well: MatchIntent and brand searches then never scan the
        # other brands' stores in a dense city centre. It is split by timetable too, so at
        # night MatchIntent passes over the closed stores whole (geo.BrandIndex).
        self.brand_indexes: dict[str, BrandIndex] = {}
        self.sold_out: dict[str, set[str]] = {}
        # Bumped by every brand or menu change; the resolver is rebuilt when it moves.
        self.version = 0
        self._resolver: tuple[int, Resolver] | None = None
        self._build_lock = asyncio.Lock()
        # Held by an import batch from its write to the end of its indexing (see _apply_rows).
        self._rows_lock = asyncio.Lock()
        self._rebuild_task: asyncio.Task[None] | None = None
        # Every committed change that can alter a Quote is published here (WatchMenuChanges),
        # after it is applied to memory.
        self.changes = MenuChanges()

    async def start(self) -> None:
        snap = await self.store.load()
        for b in snap.brands:
            self.brands[b.brand_id] = b
            self.menus.setdefault(b.brand_id, {})
        for it in snap.items:
            self.menus.setdefault(it.brand_id, {})[it.item_id] = it
        for s in snap.stores:
            self.stores[s.store_id] = s
            self.index.put(s)
            self._brand_index(s.brand_id).put(s)
        for store_id, item_id in snap.sold_out:
            self.sold_out.setdefault(store_id, set()).add(item_id)
        self.version += 1
        self.finish_import()

    # --- writes ----------------------------------------------------------------------------

    async def upsert_brand(self, request_id: str, brand: Brand) -> tuple[Brand, bool]:
        check_request_id(request_id)
        validate_brand(brand)
        # A retry (same request_id, same brand) gets the first answer: the brand as that call
        # stored it, which is this one, not whatever a later upsert made of it. A request_id
        # used for another brand or content is refused REQUEST_ID_REUSED by the store.
        def apply(outcome: tuple[bool, bool]) -> None:
            if not outcome[1]:  # not a replay
                self.brands[brand.brand_id] = brand
                self.menus.setdefault(brand.brand_id, {})
                self._catalog_changed()
                self.changes.publish(all_stores=True)

        created, _ = await _write_then_apply(self.store.upsert_brand(request_id, brand, now_ms(self.clock)), apply)
        return brand, created

    async def upsert_item(self, request_id: str, item: MenuItem) -> tuple[MenuItem, bool]:
        check_request_id(request_id)
        validate_item(item)
        if item.brand_id not in self.brands:
            raise NotFound(BRAND_NOT_FOUND, f"品牌不存在 / no brand {item.brand_id!r}")
        # As upsert_brand: a retry gets the first answer, a reused request_id is refused.
        def apply(outcome: tuple[bool, bool]) -> None:
            if not outcome[1]:
                self.menus[item.brand_id][item.item_id] = item
                self._catalog_changed()
                # A menu is shared by every store of the brand: tens of thousands of ids.
                self.changes.publish(all_stores=True)

        created, _ = await _write_then_apply(self.store.upsert_item(request_id, item, now_ms(self.clock)), apply)
        return item, created

    def begin_import(self) -> "StoreImport":
        return StoreImport(self)

    async def _apply_rows(self, rows: list[StoreRow]) -> None:
        # Shielded as _write_then_apply: an import stream cut off mid-batch must not leave rows
        # in the store that the in-memory indexes (what searches and quotes read) never got.
        await asyncio.shield(self._store_and_index_rows(rows))

    async def _store_and_index_rows(self, rows: list[StoreRow]) -> None:
        # One batch at a time, from its COMMIT to its last indexed row: the indexing yields to
        # other calls, and a second import (an operator fixing a store while the big one runs)
        # committed in between and was then overwritten in memory by the older batch's rows, so
        # searches and quotes showed the store as the database no longer had it until a restart.
        async with self._rows_lock:
            await self._store_and_index_rows_alone(rows)

    async def _store_and_index_rows_alone(self, rows: list[StoreRow]) -> None:
        dropped = await self.store.upsert_stores(rows, now_ms(self.clock))
        # Before the first yield below: a SetItemAvailability committed after this import is
        # applied after this line, so only the marks the import dropped are forgotten. The
        # stores are published with the rest of the rows once indexed.
        self._forget_sold_out(dropped)
        stores, index = self.stores, self.index
        for n, row in enumerate(rows):
            if n and n % 1000 == 0:
                await asyncio.sleep(0)  # let Quote calls through during a big import
            record = row.record()
            previous = stores.get(row.store_id)
            stores[row.store_id] = record
            index.put(record, previous)
            if previous is not None and previous.brand_id != record.brand_id:
                self._brand_index(previous.brand_id).remove(previous)
                previous = None
            self._brand_index(record.brand_id).put(record, previous)
        self.changes.publish((row.store_id for row in rows), all_stores=len(rows) > 100)

    def _forget_sold_out(self, marks: Iterable[tuple[str, str]]) -> None:
        for store_id, item_id in marks:
            sold = self.sold_out.get(store_id)
            if sold is not None:
                sold.discard(item_id)
                if not sold:
                    del self.sold_out[store_id]

    def _brand_index(self, brand_id: str) -> BrandIndex:
        index = self.brand_indexes.get(brand_id)
        if index is None:
            index = self.brand_indexes[brand_id] = BrandIndex()
        return index

    def finish_import(self) -> None:
        # Hundreds of thousands of long-lived records would otherwise be re-scanned by every
        # full garbage collection (tens of ms, straight into Quote's tail latency).
        gc.collect()
        gc.freeze()

    async def set_availability(
        self, request_id: str, store_id: str, item_id: str, available: bool, *, merchant: MerchantScope | None = None
    ) -> bool:
        """merchant: the caller's grant, None when it may act on every store. Returns the
        availability the call set; a retry (same request_id at the same store, same item and
        availability) changes nothing and gets that first answer again. A request_id used at
        this store for another request is refused REQUEST_ID_REUSED; other stores' request ids
        are another namespace, and so are other merchants' (merchants pick their own, e.g.
        "so-1")."""
        if not store_id:
            raise InvalidArgument("store_id", "必填 / required")
        if not item_id:
            raise InvalidArgument("item_id", "必填 / required")
        check_request_id(request_id)
        store = self._store(store_id)
        if merchant is not None and not merchant.covers(store.brand_id, store_id):
            raise store_not_yours(store_id)
        if item_id not in self.menus.get(store.brand_id, {}):
            raise item_not_on_menu(store_id, item_id)
        def apply(replayed: bool) -> None:
            if replayed:
                return
            if available:
                sold = self.sold_out.get(store_id)
                if sold is not None:
                    sold.discard(item_id)
                    if not sold:
                        del self.sold_out[store_id]
            else:
                self.sold_out.setdefault(store_id, set()).add(item_id)
            self.changes.publish((store_id,))

        by: dict[str, Any] = {} if merchant is None else {"merchant_id": merchant.merchant_id}
        if merchant is not None and store_id not in merchant.stores:
            # Covered by its brand alone: judged again as the write commits (an import may move
            # the store to another brand before memory shows it).
            by["brands"] = merchant.brands
        await _write_then_apply(self.store.set_availability(request_id, store_id, item_id, available, now_ms(self.clock), **by), apply)
        return available

    # --- reads -----------------------------------------------------------------------------

    def list_brands(self, category: str, page_size: int, page_token: str) -> tuple[list[Brand], str]:
        size = _page_size(page_size, 50, 100)
        after = _decode_token("brands", page_token) if page_token else ""
        ids = sorted(b for b, brand in self.brands.items() if (not category or brand.category == category) and b > after)
        page = ids[:size]
        token = _encode_token("brands", page[-1]) if len(ids) > size else ""
        return [self.brands[b] for b in page], token

    async def search_stores(
        self,
        lat: float,
        lng: float,
        *,
        location_present: bool = True,
        radius_m: float = 0.0,
        brand_id: str = "",
        category: str = "",
        open_now: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[StoreHit], str]:
        _check_location(lat, lng, location_present)
        if radius_m != radius_m or radius_m < 0 or radius_m > MAX_SEARCH_RADIUS_M:
            raise InvalidArgument("radius_meters", f"须为 0..{MAX_SEARCH_RADIUS_M:.0f} 米 / must be 0..50,000 (0 means 3,000)")
        radius = radius_m or DEFAULT_SEARCH_RADIUS_M
        shown, after = _search_position(page_token) if page_token else (0, None)
        # The list ends MAX_SEARCH_OFFSET deep: the page that reaches it is cut there.
        size = min(_page_size(page_size, 10, 100), MAX_SEARCH_OFFSET - shown)
        # A token of the release before names no store: it counts the stores to skip.
        skip = shown if after is None else 0
        if brand_id and brand_id not in self.brands:
            raise NotFound(BRAND_NOT_FOUND, f"品牌不存在 / no brand {brand_id!r}")
        clock = OpenClock(self.clock.now())
        if brand_id and open_now:
            # At night a brand's closed timetables are passed over whole (BrandIndex.nearest_open).
            keep = self._store_filter("", category, None)
            found = self._brand_index(brand_id).nearest_open(lat, lng, radius, clock, keep, limit=skip + size + 1, after=after)
        else:
            keep = self._store_filter("", category, clock if open_now else None)
            index = self._brand_index(brand_id) if brand_id else self.index
            found = index.nearest(lat, lng, radius, keep, limit=skip + size + 1, after=after)
        page = found[skip : skip + size]
        more = len(found) > skip + size and shown + size < MAX_SEARCH_OFFSET
        details = await self.store.store_details([s.store_id for _, s in page])
        hits = [StoreHit(s, self.brands[s.brand_id], d, clock.is_open(s), details.get(s.store_id, StoreDetails())) for d, s in page]
        if not more:
            return hits, ""
        last_distance, last = page[-1]
        return hits, _encode_token("stores", f"{shown + size}:{last_distance!r}:{last.store_id}")

    def _store_filter(self, brand_id: str, category: str, clock: OpenClock | None) -> Callable[[StoreRecord], bool] | None:
        brand_ok: set[str] | None = None
        if brand_id:
            brand_ok = {brand_id}
        if category:
            in_cat = {b for b, brand in self.brands.items() if brand.category == category}
            brand_ok = in_cat if brand_ok is None else brand_ok & in_cat
        if brand_ok is None and clock is None:
            return None
        if clock is None:
            assert brand_ok is not None
            return lambda s: s.brand_id in brand_ok
        if brand_ok is None:
            return clock.is_open
        return lambda s: s.brand_id in brand_ok and clock.is_open(s)

    async def get_menu(self, store_id: str) -> MenuView:
        if not store_id:
            raise InvalidArgument("store_id", "必填 / required")
        store = self._store(store_id)
        sold = self.sold_out.get(store_id, ())
        entries = tuple((it, it.item_id not in sold) for it in self.menus.get(store.brand_id, {}).values())
        details = await self.store.store_details([store_id])
        is_open = OpenClock(self.clock.now()).is_open(store)
        return MenuView(store, details.get(store_id, StoreDetails()), self.brands[store.brand_id], entries, is_open)

    async def get_store(self, store_id: str) -> tuple[StoreRecord, StoreDetails]:
        if not store_id:
            raise InvalidArgument("store_id", "必填 / required")
        store = self._store(store_id)
        details = await self.store.store_details([store_id])
        return store, details.get(store_id, StoreDetails())

    def quote(self, store_id: str, lines: Sequence[WantedLine]) -> QuoteResult:
        if not store_id:
            raise InvalidArgument("store_id", "必填 / required")
        if not 1 <= len(lines) <= MAX_QUOTE_LINES:
            raise InvalidArgument("lines", f"须为 1..{MAX_QUOTE_LINES} 行 / need 1..50 lines, got {len(lines)}")
        store = self._store(store_id)
        now = self.clock.now()
        return quote(
            store, self.menus.get(store.brand_id, {}), self.sold_out.get(store_id, frozenset()), lines, now,
            is_open=OpenClock(now).is_open(store),
        )

    def quote_stamped(self, store_id: str, lines: Sequence[WantedLine]) -> StampedQuote:
        """quote() with its change-feed stamp. Synchronous on purpose: no change can be applied
        between pricing and reading the version, so the stamp is exact."""
        result = self.quote(store_id, lines)
        store = self.stores[store_id]
        changes = self.changes
        return StampedQuote(result, changes.epoch, changes.version, next_open_change(store, result.quote_time))

    def _store(self, store_id: str) -> StoreRecord:
        store = self.stores.get(store_id)
        if store is None:
            raise NotFound(STORE_NOT_FOUND, f"门店不存在 / no store {store_id!r}")
        return store

    # --- natural language ------------------------------------------------------------------

    def resolver(self) -> Resolver:
        """The resolver for the current catalog version, built here if stale (blocking)."""
        cached = self._resolver
        if cached is None or cached[0] != self.version:
            version, brands, menus = self._resolver_inputs()
            cached = self._resolver = (version, self.resolver_factory(brands, menus))
        return cached[1]

    async def current_resolver(self) -> Resolver:
        """Like resolver(), but a stale one is rebuilt in a worker thread (concurrent callers
        share one build) so the event loop keeps serving Quote while menus are re-indexed."""
        cached = self._resolver
        if cached is not None and cached[0] == self.version:
            return cached[1]
        async with self._build_lock:
            cached = self._resolver
            if cached is None or cached[0] != self.version:
                version, brands, menus = self._resolver_inputs()
                built = await asyncio.to_thread(self.resolver_factory, brands, menus)
                cached = (version, built)
                if self._resolver is None or self._resolver[0] < version:
                    self._resolver = cached
        return cached[1]

    def _resolver_inputs(self) -> tuple[int, list[Brand], dict[str, list[MenuItem]]]:
        brands = sorted(self.brands.values(), key=lambda b: b.brand_id)
        return self.version, brands, {b: list(items.values()) for b, items in self.menus.items()}

    def _catalog_changed(self) -> None:
        """Brands or menus changed: rebuild the resolver soon, in the background, once the burst
        of writes (e.g. a menu import of dozens of items) is over."""
        self.version += 1
        if self._rebuild_task is None or self._rebuild_task.done():
            self._rebuild_task = asyncio.get_running_loop().create_task(self._rebuild_when_quiet())

    async def _rebuild_when_quiet(self) -> None:
        while True:
            seen = self.version
            await asyncio.sleep(REBUILD_QUIET_S)
            if self.version == seen:
                break
        try:
            await self.current_resolver()
        except Exception:  # a broken resolver shows up on the next MatchIntent instead
            pass

    async def forget_old_requests(self, batch: int = 500) -> int:
        """One pass: forget request ids older than REQUEST_MEMORY_MS on the injected clock,
        `batch` per transaction, at most FORGET_BATCHES_PER_PASS batches. Returns how many."""
        forgotten = 0
        for _ in range(FORGET_BATCHES_PER_PASS):
            count = await self.store.forget_requests(now_ms(self.clock) - REQUEST_MEMORY_MS, batch)
            forgotten += count
            if count < batch:
                break
        return forgotten

    async def forget_requests_forever(self, interval_s: float, batch: int = 500) -> None:
        while True:
            try:
                await self.forget_old_requests(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the disk refused: they wait for the next pass
                _sweep_log.exception("old request ids not forgotten")
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        self.changes.close()
        if self._rebuild_task is not None:
            self._rebuild_task.cancel()
            try:
                await self._rebuild_task
            except BaseException:
                pass

    async def match_intent(
        self,
        text: str,
        lat: float,
        lng: float,
        *,
        location_present: bool = True,
        card_face_value_fen: int = 0,
        max_alternatives: int = 0,
    ) -> IntentOutcome:
        if not text.strip():
            raise InvalidArgument("text", "请输入想点的内容 / text is required (1..500 characters)", reason="EMPTY_TEXT")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidArgument("text", f"最多 {MAX_TEXT_CHARS} 字 / text is longer than 500 characters ({len(text)})", reason="TEXT_TOO_LONG")
        _check_location(lat, lng, location_present)
        if card_face_value_fen < 0:
            raise InvalidArgument("card_face_value_fen", "不能为负数 / must be >= 0 (0 means 2,500)")
        if max_alternatives < 0:
            raise InvalidArgument("max_alternatives", "须为 0..5 / must be 0..5")
        face = card_face_value_fen or DEFAULT_CARD_FACE_FEN
        wanted = 1 + min(max_alternatives, MAX_ALTERNATIVES)

        try:
            reading = (await self.current_resolver()).resolve(text, card_face_value_fen=face)
        except Exception:
            # A resolver bug on some odd sentence must not turn into INTERNAL for the user: ask
            # them to rephrase (the traceback goes to the log for the resolver's owner).
            _log.exception("intent resolver failed", extra={"text_chars": len(text)})
            reading = _NO_READING
        clock = OpenClock(self.clock.now())
        chosen: list[tuple[Any, float, StoreRecord, tuple[WantedLine, ...], QuoteResult]] = []
        seen: set[tuple[str, tuple[Any, ...]]] = set()
        unavailable_brands: list[str] = []
        too_many = False  # a reading that failed only on a count above MAX_QUANTITY (100杯)
        too_many_lines = False  # a reading of more different lines than an order takes
        for cand in reading.candidates:
            if len(chosen) >= wanted:
                break
            lines = tuple(WantedLine(l.item_id, int(l.quantity), dict(l.options)) for l in cand.lines)
            menu = self.menus.get(cand.brand_id)
            if not lines or cand.brand_id not in self.brands or menu is None or any(l.item_id not in menu for l in lines):
                continue
            if len(lines) > MAX_QUOTE_LINES:
                # 500 characters name 60 different drinks ("中杯热柠檬水、大杯热柠檬水、..."): a
                # proposal of them was one Quote itself refuses and PlaceOrder refuses (1..50
                # lines), so the user was shown an order that could not be placed.
                too_many_lines = True
                continue
            found = self._nearest_orderable(cand.brand_id, {l.item_id for l in lines}, lat, lng, clock)
            if found is None:
                unavailable_brands.append(self.brands[cand.brand_id].name)
                continue
            distance, store = found
            key = (store.store_id, tuple((l.item_id, l.quantity, tuple(sorted(l.options.items()))) for l in lines))
            if key in seen:
                continue
            result = quote(store, menu, self.sold_out.get(store.store_id, frozenset()), lines, clock.now, is_open=True)
            if not result.orderable:
                too_many = too_many or all(p.reason == QUANTITY_OUT_OF_RANGE for p in result.problems)
                continue
            seen.add(key)
            chosen.append((cand, distance, store, lines, result))

        if chosen:
            details = await self.store.store_details([c[2].store_id for c in chosen])
            proposals = []
            for cand, distance, store, lines, result in chosen:
                covered, payable = card_cover(result.total_fen, face)
                brand = self.brands[store.brand_id]
                hit = StoreHit(store, brand, distance, True, details.get(store.store_id, StoreDetails()))
                explanation = f"{cand.explanation}；{store.name}，距离约 {_distance_text(distance)}"
                confidence = max(0.0, min(1.0, float(cand.confidence)))
                proposals.append(Proposal(brand, hit, lines, result, covered, payable, confidence, explanation))
            return IntentOutcome(tuple(proposals), "", ())

        nearby = self._brands_nearby(lat, lng, clock)
        if too_many:
            return IntentOutcome((), TOO_MANY_CLARIFICATION, tuple(nearby))
        if too_many_lines:
            return IntentOutcome((), TOO_MANY_LINES_CLARIFICATION, tuple(nearby))
        return IntentOutcome((), self._clarification(reading, nearby, unavailable_brands), tuple(nearby))

    def _nearest_orderable(self, brand_id: str, items: set[str], lat: float, lng: float, clock: OpenClock) -> tuple[float, StoreRecord] | None:
        sold_out = self.sold_out

        def in_stock(s: StoreRecord) -> bool:
            sold = sold_out.get(s.store_id)
            return not sold or not (sold & items)

        index = self._brand_index(brand_id)
        for radius in (NEAR_RADIUS_M, WIDE_RADIUS_M):
            found = index.nearest_open(lat, lng, radius, clock, in_stock)
            if found:
                return found[0]
        return None

    def _brands_nearby(self, lat: float, lng: float, clock: OpenClock) -> list[str]:
        """Names of brands with an open store near the user, nearest brand first."""
        for radius in (NEAR_RADIUS_M, WIDE_RADIUS_M):
            nearest: list[tuple[float, str]] = []
            for brand_id, index in self.brand_indexes.items():
                found = index.nearest_open(lat, lng, radius, clock)
                if found and brand_id in self.brands:
                    nearest.append((found[0][0], self.brands[brand_id].name))
            if nearest:
                return [name for _, name in sorted(nearest)[:CLARIFY_BRANDS]]
        return []

    @staticmethod
    def _clarification(reading: Any, nearby: list[str], unavailable: list[str]) -> str:
        options = "、".join(nearby)
        offer = f"附近可以点：{options}。/ Nearby you can order from: {', '.join(nearby)}." if nearby else "附近暂时没有营业中的门店。/ No store is open near you right now."
        unknown = getattr(reading, "mentioned_unknown_brand", "") or ""
        if unknown:
            return f"暂不支持「{unknown}」。/ We do not carry {unknown}. {offer}"
        if unavailable:
            name = unavailable[0]
            return f"附近没有营业中且有货的{name}门店。/ No open {name} store near you has everything in stock. {offer}"
        asked = getattr(reading, "clarification", "") or ""
        if asked:
            return f"{asked} {offer}"
        return f"没太明白您想点什么，可以说说品牌或饮品名吗？/ Sorry, what would you like to order? {offer}"


def _distance_text(metres: float) -> str:
    return f"{metres:.0f} 米" if metres < 1000 else f"{metres / 1000:.1f} 公里"


class StoreImport:
    """One ImportStores stream: rows are validated by the caller (model.validate_store_row);
    valid ones are buffered and written FLUSH_ROWS per transaction whatever the client's message
    size, and indexed in memory after COMMIT."""

    FLUSH_ROWS = 5_000
    # Rows validated between two yields to the event loop: a full message (5,000 rows with a
    # week of opening hours each) takes ~60 ms to validate, a pause every Quote would wait out;
    # a chunk is ~12 ms, the same slice the indexing after COMMIT takes (_store_and_index_rows).
    VALIDATE_CHUNK = 1_000

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.result = ImportResult()
        self.rows_seen = 0
        self._buffer: list[StoreRow] = []

    @property
    def known_brands(self) -> Mapping[str, Brand]:
        return self.catalog.brands

    async def add_message(self, rows: Sequence[P], validate: Callable[[int, P], StoreRow | Rejection]) -> None:
        """One message of the stream: `validate(row_index, row)` (the servicer's translation
        into model.validate_store_row) runs over its rows VALIDATE_CHUNK at a time, letting other
        calls through in between.

        A message of more than MAX_STORES_PER_MESSAGE rows ends the stream: it is refused whole
        (INVALID_ARGUMENT TOO_MANY_STORES on `stores`, none of its rows looked at), and the
        messages before it are imported first, as if the stream had ended there (their rows
        committed and indexed), so the caller knows where it stands: every row before
        `row_index` (ErrorInfo metadata, with the `accepted` and `rejected` counts so far) was
        taken as a complete import takes it, nothing from there on. Re-running the import is
        safe (rows are upserted by store_id)."""
        if len(rows) > MAX_STORES_PER_MESSAGE:
            result = await self.finish()
            raise InvalidArgument(
                "stores",
                f"每条消息最多 {MAX_STORES_PER_MESSAGE:,} 家门店 / at most {MAX_STORES_PER_MESSAGE:,} stores per message, "
                f"got {len(rows):,}; the {self.rows_seen:,} rows before it were imported ({result.accepted:,} accepted, "
                f"{result.rejected:,} rejected), this message and the rest of the stream were not",
                reason=TOO_MANY_STORES,
                metadata={
                    "max_stores": str(MAX_STORES_PER_MESSAGE),
                    "stores": str(len(rows)),
                    "row_index": str(self.rows_seen),
                    "accepted": str(result.accepted),
                    "rejected": str(result.rejected),
                },
            )
        chunk = self.VALIDATE_CHUNK
        for start in range(0, len(rows), chunk):
            if start:
                await asyncio.sleep(0)  # let Quote calls through while a big message is validated
            base = self.rows_seen
            await self.add([validate(base + i, row) for i, row in enumerate(rows[start : start + chunk])])

    async def add(self, outcomes: Iterable[StoreRow | Rejection]) -> None:
        buffer = self._buffer
        for outcome in outcomes:
            self.rows_seen += 1
            if isinstance(outcome, Rejection):
                self.result.rejected += 1
                if len(self.result.rejections) < MAX_REJECTIONS_REPORTED:
                    self.result.rejections.append(outcome)
            else:
                buffer.append(outcome)
        if len(buffer) >= self.FLUSH_ROWS:
            await self._flush()

    async def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows:
            await self.catalog._apply_rows(rows)
            self.result.accepted += len(rows)

    async def finish(self) -> ImportResult:
        await self._flush()
        if self.result.accepted:
            self.catalog.finish_import()
        return self.result


async def _write_then_apply(write: Awaitable[T], apply: Callable[[T], None]) -> T:
    """The store write and the in-memory change it implies, as one unit a cancelled call cannot
    split. Why: the write is committed by the store's writer whether or not its caller is still
    waiting (a client that gives up, a deadline), and searches, menus and quotes read memory: a
    cancel between the two would leave a sold-out item on sale, or a brand stored but unknown,
    until a restart reloads the store. Shielded, the caller may go; the unit still finishes."""

    async def unit() -> T:
        outcome = await write
        apply(outcome)
        return outcome

    return await asyncio.shield(unit())


__all__ = [
    "Catalog",
    "StoreImport",
    "ImportResult",
    "IntentOutcome",
    "Proposal",
    "StoreHit",
    "MenuView",
    "StampedQuote",
    "Resolver",
    "ResolverFactory",
    "default_resolver_factory",
]
