"""Catalog Quote answers kept in the order service, invalidated by the catalog's change feed.

The catalog stays the only source of prices: a kept answer is the catalog's own QuoteResponse,
served again only while nothing the catalog announced could have changed it. The rules:

- Answers are served from memory only while the WatchMenuChanges stream is connected and has
  delivered its first (hello) message. A disconnect, a stream error, an idle stream (no
  heartbeat for IDLE_SECONDS) or a new catalog epoch drops everything, and until the next hello
  every quote is a plain RPC (bypass).
- An answer is stamped by the catalog with (epoch, menu_version): it reflects every change up to
  menu_version. It is kept only when its epoch is the stream's and menu_version is at least the
  last version the stream announced for its store (or for all stores, or at the hello): an
  answer computed before a change must not be kept after that change's announcement arrived.
  An announcement arriving after an answer was kept makes that answer stale on its next lookup
  (it is deleted there and never served), so no per-store index of entries is needed.
- An answer expires at the catalog's valid_until_time (the store's next opening or closing
  boundary) and after MAX_AGE_SECONDS whatever happens, measured on the injected Clock; the
  number of answers is bounded (least recently used goes first), and so is what they hold: an
  answer weighs its selections, options, priced lines and problems (`_weight`), the answers
  kept weigh at most MAX_WEIGHT together, and one heavier than MAX_ENTRY_WEIGHT is not kept.
  Counting answers alone bounded little: 50 lines of 20 made-up options each, which any buyer
  may send, came back with thousands of problems, 1.4 MB an answer with 128-character ids
  (tracemalloc), 28 GB for 20,000 of them.
- Answers with problems (sold out, unknown item, store closed) are kept too: they are the
  catalog's answer at that version and the same announcements invalidate them, and a flash
  crowd retrying a sold-out item is exactly the load worth absorbing. Errors (store not found,
  invalid argument, upstream down) are never kept.

`calls` is the wrapped gRPC client's counter: it counts real Quote RPCs only, so
`server.upstream_calls` keeps meaning "RPCs sent". MIANDAN_QUOTE_CACHE=0 turns the whole thing off.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Protocol, Sequence

import grpc

from miandan.catalog.v1 import catalog_service_pb2
from services.common.clock import Clock, SystemClock, to_ms

from .model import Quote, Selection
from .upstream import GrpcCatalogClient, quote_of

__all__ = [
    "QUOTE_CACHE_ENV",
    "QuoteStamp",
    "MenuChange",
    "QuoteSource",
    "GrpcQuoteSource",
    "QuoteCache",
    "open_catalog_client",
]

QUOTE_CACHE_ENV = "MIANDAN_QUOTE_CACHE"
MAX_ENTRIES = 20_000
# Units (`_weight`) the kept answers may hold together, and one answer at most. An order of a
# few lines with a few options weighs about 10; a unit is at most a few hundred bytes.
MAX_WEIGHT = 200_000
MAX_ENTRY_WEIGHT = 500
MAX_AGE_SECONDS = 60.0
# The catalog sends a heartbeat every 5 s: three missed means the connection is dead.
IDLE_SECONDS = 15.0
# Stores with a pending announcement remembered individually; beyond this the whole cache is
# dropped instead (bounded memory whatever the catalog announces).
MAX_TRACKED_STORES = 100_000
BACKOFF_MIN_SECONDS, BACKOFF_MAX_SECONDS = 0.05, 2.0

_log = logging.getLogger("miandan.order.quote_cache")


def _lookup_counters() -> dict[str, Any]:
    try:
        from prometheus_client import Counter as PromCounter

        counter = PromCounter(
            "miandan_quote_cache_lookups_total",
            "Catalog quotes asked of the order service's quote cache, by outcome (hit, miss, bypass)",
            ["result"],
        )
    except ValueError:  # already registered (module loaded twice under another name)
        return {}
    return {r: counter.labels(r) for r in ("hit", "miss", "bypass")}


_COUNTERS = _lookup_counters()


@dataclass(frozen=True, slots=True)
class QuoteStamp:
    """What the catalog said about its answer: which process, at which change version, and
    until when (ms since the Unix epoch, UTC) the clock alone cannot change it (None: ever)."""

    epoch: str
    menu_version: int
    valid_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MenuChange:
    """One WatchMenuChanges message."""

    epoch: str
    version: int
    store_ids: tuple[str, ...] = ()
    all_stores: bool = False
    hello: bool = False


class ChangeStream(Protocol):
    """An open WatchMenuChanges stream: iterate it; cancel() ends it from outside (a pending
    read then raises asyncio.CancelledError, as a locally cancelled gRPC call does)."""

    def __aiter__(self) -> AsyncIterator[MenuChange]: ...

    def cancel(self) -> Any: ...


class QuoteSource(Protocol):
    """The catalog as the cache needs it (GrpcQuoteSource in production, fakes in tests)."""

    calls: Counter[str]

    async def quote_stamped(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> tuple[Quote, QuoteStamp]: ...

    def watch_changes(self) -> ChangeStream: ...

    async def store_brand(self, store_id: str, *, timeout: float) -> str: ...

    async def close(self) -> None: ...


class GrpcQuoteSource(GrpcCatalogClient):
    """GrpcCatalogClient that also returns the stamp and follows the change feed."""

    async def quote(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> Quote:
        return (await self.quote_stamped(store_id, selections, timeout=timeout))[0]

    async def quote_stamped(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> tuple[Quote, QuoteStamp]:
        resp = await self.quote_response(store_id, selections, timeout=timeout)
        quote = quote_of(resp, store_id)
        until = resp.valid_until_time.ToMilliseconds() if resp.HasField("valid_until_time") else None
        return quote, QuoteStamp(resp.epoch, resp.menu_version, until)

    def watch_changes(self) -> "_GrpcChangeStream":
        self.calls["WatchMenuChanges"] += 1
        return _GrpcChangeStream(
            self._stub.WatchMenuChanges(catalog_service_pb2.WatchMenuChangesRequest(subscriber="order"), metadata=self._md)
        )


class _GrpcChangeStream:
    # Ended with call.cancel(), never by cancelling the task blocked in a read: that wakes the
    # read reliably, whereas a cancelled task waiting on grpc's read future may never resume.

    def __init__(self, call: Any) -> None:
        self._call = call

    async def __aiter__(self) -> AsyncIterator[MenuChange]:
        async for m in self._call:
            yield MenuChange(m.epoch, m.version, tuple(m.store_ids), m.all_stores, m.hello)

    def cancel(self) -> Any:
        return self._call.cancel()


@dataclass(slots=True)
class _Entry:
    quote: Quote
    menu_version: int
    asked_ms: int
    expires_ms: int
    weight: int


_Key = tuple[str, tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...]]


def _weight(key: _Key, quote: Quote) -> int:
    """What an answer holds, in units of a selection, option, priced line or problem."""
    return (
        1
        + sum(1 + len(options) for _, _, options in key[1])
        + sum(1 + len(line.options) for line in quote.lines)
        + len(quote.problems)
    )


def _key(store_id: str, selections: Sequence[Selection]) -> _Key:
    # Option order does not change the catalog's answer (it prices groups in menu order);
    # line order does (problems and priced lines carry line indexes), so it stays.
    return store_id, tuple(
        (s.item_id, s.quantity, tuple(sorted(s.options)) if len(s.options) > 1 else tuple(s.options)) for s in selections
    )


class QuoteCache:
    """A CatalogClient (quote(store_id, selections, timeout=...)) that keeps the catalog's answers."""

    def __init__(
        self,
        source: QuoteSource,
        *,
        clock: Clock | None = None,
        max_entries: int = MAX_ENTRIES,
        max_weight: int = MAX_WEIGHT,
        max_entry_weight: int = MAX_ENTRY_WEIGHT,
        max_age_seconds: float = MAX_AGE_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
        max_tracked_stores: int = MAX_TRACKED_STORES,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.source = source
        self.clock = clock or SystemClock()
        self.max_entries = max_entries
        self.max_weight = max_weight
        self.max_entry_weight = max_entry_weight
        self.max_age_ms = int(max_age_seconds * 1000)
        self.idle_seconds = idle_seconds
        self.max_tracked_stores = max_tracked_stores
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self.weight = 0  # of the answers kept
        # Last version announced per store since the hello, and for all stores.
        self._store_floor: dict[str, int] = {}
        self._all_floor = 0
        # Bumped by every reset: an answer requested under an older connection is not kept.
        self._generation = 0
        self.live = False
        self.epoch = ""
        self.version = 0  # last version the feed announced (tests wait on it)
        self.hits = self.misses = self.bypasses = 0
        self.refused = 0  # answers not kept (stale stamp, reset meanwhile, already expired)
        self.resets = 0
        self._task: asyncio.Task[None] | None = None
        self._stream: ChangeStream | None = None
        self._closing = False
        self.idle_resets = 0  # streams ended for silence
        self._live_event = asyncio.Event()

    # --- CatalogClient ---------------------------------------------------------------------

    @property
    def calls(self) -> Counter[str]:
        return self.source.calls

    def __len__(self) -> int:
        return len(self._entries)

    async def quote(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> Quote:
        if not self.live:
            self.bypasses += 1
            if _COUNTERS:
                _COUNTERS["bypass"].inc()
            return (await self.source.quote_stamped(store_id, selections, timeout=timeout))[0]
        key = _key(store_id, selections)
        now = to_ms(self.clock.now())
        entry = self._entries.get(key)
        if entry is not None:
            # Asked "after now": the wall clock stepped back, and the answer's age is unknown.
            if entry.asked_ms <= now < entry.expires_ms and entry.menu_version >= self._floor(store_id):
                self._entries.move_to_end(key)
                self.hits += 1
                if _COUNTERS:
                    _COUNTERS["hit"].inc()
                return entry.quote
            self._drop(key)
        self.misses += 1
        if _COUNTERS:
            _COUNTERS["miss"].inc()
        generation = self._generation
        quote, stamp = await self.source.quote_stamped(store_id, selections, timeout=timeout)
        self._keep(key, store_id, quote, stamp, generation, now)
        return quote

    async def store_brand(self, store_id: str, *, timeout: float) -> str:
        return await self.source.store_brand(store_id, timeout=timeout)

    def _floor(self, store_id: str) -> int:
        floor = self._store_floor.get(store_id, 0)
        return floor if floor > self._all_floor else self._all_floor

    def _keep(self, key: _Key, store_id: str, quote: Quote, stamp: QuoteStamp, generation: int, asked_ms: int) -> None:
        # `asked_ms` (before the RPC) starts the max age: the answer is at least that old.
        expires = asked_ms + self.max_age_ms
        if stamp.valid_until_ms is not None and stamp.valid_until_ms < expires:
            expires = stamp.valid_until_ms
        if (
            not self.live
            or generation != self._generation
            or stamp.epoch != self.epoch
            or stamp.menu_version < self._floor(store_id)
            or expires <= to_ms(self.clock.now())
        ):
            self.refused += 1
            return
        weight = _weight(key, quote)
        if weight > self.max_entry_weight:
            self.refused += 1
            return
        self._drop(key)  # a concurrent miss kept it meanwhile
        self._entries[key] = _Entry(quote, stamp.menu_version, asked_ms, expires, weight)
        self.weight += weight
        while len(self._entries) > self.max_entries or self.weight > self.max_weight:
            self.weight -= self._entries.popitem(last=False)[1].weight

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.weight -= entry.weight

    def _drop_all(self) -> None:
        self._entries.clear()
        self.weight = 0

    # --- the change feed -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="quote-cache-feed")

    async def wait_live(self, timeout: float) -> bool:
        """True once the feed is connected (for tests and warm-up; bounded)."""
        try:
            await asyncio.wait_for(self._live_event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.live

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if self._stream is not None:
            self._stream.cancel()
        if task is not None:
            task.cancel()
            # Bounded: shutting down must not hang on a stream that does not answer.
            await asyncio.wait({task}, timeout=2.0)
        self._reset()
        await self.source.close()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_MIN_SECONDS
        while not self._closing:
            stream = self._stream = self.source.watch_changes()
            silent = [False]

            def on_idle(stream: ChangeStream = stream, silent: list[bool] = silent) -> None:
                silent[0] = True
                stream.cancel()

            watchdog = loop.call_later(self.idle_seconds, on_idle)
            try:
                async for change in stream:
                    watchdog.cancel()
                    watchdog = loop.call_later(self.idle_seconds, on_idle)
                    self.apply(change)
                    backoff = BACKOFF_MIN_SECONDS
                _log.info("catalog change feed ended; quotes bypass the cache until it is back")
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    self._reset()
                    raise
                # Our own call.cancel(): the idle watchdog fired.
                self.idle_resets += silent[0]
                _log.warning("catalog change feed silent for %.0f s; reconnecting", self.idle_seconds)
            except Exception as exc:  # noqa: BLE001 - any failure means: drop everything, reconnect
                _log.info("catalog change feed failed (%s); quotes bypass the cache until it is back", _describe(exc))
            finally:
                watchdog.cancel()
                stream.cancel()
                self._stream = None
            self._reset()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def apply(self, change: MenuChange) -> None:
        """One feed message (public for tests driving the cache without a stream)."""
        if change.hello:
            self._reset()
            self.epoch, self.version = change.epoch, change.version
            # Changes before the hello were never announced to us: nothing older may be kept.
            self._all_floor = change.version
            self.live = True
            self._live_event.set()
            return
        if not self.live or change.epoch != self.epoch or change.version < self.version:
            raise RuntimeError(f"unexpected change-feed message {change!r} (live={self.live}, epoch={self.epoch!r}, version={self.version})")
        self.version = change.version
        if change.all_stores:
            self._drop_all()
            self._store_floor.clear()
            self._all_floor = change.version
            return
        floors = self._store_floor
        for store_id in change.store_ids:
            floors[store_id] = change.version
        if len(floors) > self.max_tracked_stores:
            self._drop_all()
            floors.clear()
            self._all_floor = change.version

    def _reset(self) -> None:
        if self.live:
            self.resets += 1
        self.live = False
        self._live_event.clear()
        self._generation += 1
        self._drop_all()
        self._store_floor.clear()
        self._all_floor = 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    return type(exc).__name__


def cache_enabled(env: Mapping[str, str] | None = None) -> bool:
    """MIANDAN_QUOTE_CACHE as a boolean; anything else stops the start, as MIANDAN_CARD_BATCH does:
    a typo such as `of` or `disabled` used to leave the cache on without a word."""
    raw = ((os.environ if env is None else env).get(QUOTE_CACHE_ENV) or "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{QUOTE_CACHE_ENV}={raw!r}: expected 1/0 (true/false, yes/no, on/off)")


def open_catalog_client(settings: Any, *, clock: Clock | None = None, env: Mapping[str, str] | None = None) -> Any:
    """The order service's catalog client: a QuoteCache following the catalog's change feed
    (call from a running event loop), or the plain gRPC client when MIANDAN_QUOTE_CACHE=0."""
    if not cache_enabled(env):
        return GrpcCatalogClient(settings)
    cache = QuoteCache(GrpcQuoteSource(settings), clock=clock)
    cache.start()
    return cache
