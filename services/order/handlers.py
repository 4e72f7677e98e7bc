"""Order use cases: carts, the placement saga, payment, lifecycle, live status, recovery.

The placement saga (payable 0, the hot path): Quote -> ReserveCard(redeem) -> write the PAID
order (ReserveCard + ConfirmReservation when the card may cover only part, or when the card
service answers a plain hold). A new request's row is written once, as the finished order,
after the card call; its order id (and reservation key) derive from (user, request_id), so a
retry lands on the same reservation. A crash between the card call and that write leaves a
card held or redeemed for an order with no row: the recovery pass on start lists the card
service's reservations since the stored card watermark and undoes those (see "placements whose
row was never written" below). Every failure first writes the PLACING row and compensates
through it as before, and so does a retry of an aborted attempt: a PLACING row is what the
recovery pass (on start and every few seconds) compensates (ReleaseReservation) or finishes
when the card turns out to be redeemed already. Later side effects (confirm a card after
payment, return a card, refund money) are written into the row as outstanding actions together
with the state change that needs them, done inline, cleared, and re-driven by the sweep when an
upstream was down. A retry of a request still being placed waits for that placement and lends it
its own deadline meanwhile: a call cut short by an impatient first caller's deadline is made again
with the same key (`Budget.joined_by`, `_outliving`).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Sequence, TypeVar

from services.common.decimal_text import ascii_int
from services.common.clock import Clock, SystemClock, now_ms
from services.common.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from services.common.merchant_grant import MerchantScope, store_not_yours

from . import model
from .model import Order, Payment, Quote, Selection
from .payment import PaymentDeclined, PaymentProvider, PaymentTimeout
from .store import CartGone, CartTaken, OrderStore, request_id_reused
from .store_brands import StoreBrands
from .upstream import CONFIRMED, HELD, REFUNDED, RELEASED, CardClient, CatalogClient, Reservation

__all__ = ["OrderConfig", "OrderEvents", "OrderService", "PlaceOrderInput", "CartView", "Budget"]

log = logging.getLogger("miandan.order")
# The card service's longest hold (its ReserveCard ttl_seconds limit).
MAX_HOLD_SECONDS = 86_400
# A to-pay order's card is held this much longer than its payment window: the hold starts
# (on the card service's clock) before the window does, and a payment on the window's last
# second must still find it.
HOLD_MARGIN_SECONDS = 60
# The longest payment window a card hold covers (MIANDAN_PAYMENT_TTL_SECONDS is refused above).
MAX_PAYMENT_TTL_SECONDS = MAX_HOLD_SECONDS - HOLD_MARGIN_SECONDS
# How far before the oldest placement in flight the card watermark stays: the card service
# stamps a reservation with its own clock, which may run behind ours (another host).
WATERMARK_MARGIN_MS = 30_000
# Attempts a new request takes on its own when its reservation key turns out to be one the
# recovery pass undid after a crash (each attempt is a new key).
MAX_UNWRITTEN_ATTEMPTS = 3
# Batches of old request ids the sweep forgets per pass at most (500 each by default).
FORGET_BATCHES_PER_PASS = 20
# Times an idempotent upstream call cut short by an earlier caller's deadline is made again for
# a retry that joined with a later one (`_outliving`); each repeat needs the deadline to have
# moved again since the last, so this bounds only a stream of ever later joiners.
MAX_OUTLIVED_REPEATS = 3
T = TypeVar("T")


class Budget:
    """Seconds an upstream call may still take: the caller's deadline, fixed as an absolute
    loop time when the call arrived, so a saga step that outlives its caller stops too. A retry
    of the same request that joins the work while it runs lends it its own deadline for as long
    as it waits (`joined_by`): the work then stops at the latest deadline of those it answers."""

    __slots__ = ("_deadline", "_default", "_joined")

    def __init__(self, seconds: float | None, default: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        self._default = default
        self._deadline = None if seconds is None else loop.time() + seconds
        self._joined: list[Budget] = []

    @property
    def deadline(self) -> float | None:
        """The loop time the work may run until; None: no caller set one (each call gets the default)."""
        latest = self._deadline
        for other in self._joined:
            if latest is None or other._deadline is None:
                return None
            latest = max(latest, other._deadline)
        return latest

    def extended_beyond(self, deadline: float | None) -> bool:
        """Whether a caller still waiting lets the work run past `deadline` (one seen earlier)."""
        if deadline is None:
            return False
        now = self.deadline
        return now is None or now > deadline

    @contextlib.contextmanager
    def joined_by(self, other: "Budget") -> Iterator[None]:
        """While `other`'s caller waits for the work this budget bounds, the work may also use
        `other`'s time; once it stops waiting (answered, gave up, went away) it lends none."""
        self._joined.append(other)
        try:
            yield
        finally:
            self._joined.remove(other)

    def __call__(self) -> float:
        deadline = self.deadline
        if deadline is None:
            return max([self._default, *(other._default for other in self._joined)])
        # 20 ms kept back so our own answer (with its reason) reaches the caller before it gives up.
        left = deadline - asyncio.get_running_loop().time() - 0.02
        if left <= 0:
            raise DeadlineExceeded("DEADLINE_PASSED", "调用方已超时 / the caller's deadline has passed")
        return left


async def _outliving(budget: Budget, call: Callable[[float], Awaitable[T]]) -> T:
    """`call(timeout)` within the budget, made again when it ran out of a deadline that a retry
    of the same request, joining meanwhile and still waiting, has moved later: the time that ran
    out was an earlier caller's, not the one now waiting. Only for idempotent calls (a repeat of
    one that did land is answered as a replay). Any other error, a deadline nobody waiting
    outlives, or a budget with no time left is raised as before."""
    for repeats_left in range(MAX_OUTLIVED_REPEATS, -1, -1):
        deadline = budget.deadline
        try:
            return await call(budget())
        except DeadlineExceeded:
            if not repeats_left or not budget.extended_beyond(deadline):
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _budget(seconds: float = 5.0) -> Budget:
    return Budget(None, seconds)


@dataclass(frozen=True)
class OrderConfig:
    payment_ttl_seconds: int = 900
    # A PLACING row untouched this long with no task working on it is an orphan of a crash or
    # of an upstream outage: the sweep compensates it.
    placing_grace_seconds: int = 30
    sweep_interval_seconds: float = 5.0
    default_campaign_id: str = "spring-2026"
    # Bounded wait of a WatchOrder stream between checks of the store, and of a merchant
    # grant's WatchStoreOrders stream between checks of the grant.
    watch_poll_seconds: float = 10.0
    # Time the sweep gives each upstream call (it has no caller deadline).
    sweep_call_timeout: float = 3.0


@dataclass(frozen=True)
class PlaceOrderInput:
    request_id: str
    user_id: str
    store_id: str
    lines: tuple[Selection, ...]
    from_cart: bool = False
    card_use: str = model.CARD_BEST
    card_id: str = ""
    campaign_id: str = ""


@dataclass(frozen=True)
class CartView:
    user_id: str
    store_id: str
    selections: tuple[Selection, ...]
    quote: Quote | None

    @property
    def orderable(self) -> bool:
        return bool(self.selections) and self.quote is not None and not self.quote.problems


class OrderEvents:
    """In-process pub/sub of committed order changes, one bounded queue per watcher. A watcher
    that falls behind loses intermediate messages, never the newest state: every message
    carries the whole order with its full history."""

    def __init__(self, depth: int = 32, stores: "StoreFeed | None" = None) -> None:
        self._watchers: dict[str, set[asyncio.Queue[Order]]] = {}
        self._depth = depth
        self.stores = stores if stores is not None else StoreFeed()

    def publish(self, order: Order, before: Order | None = None) -> None:
        for q in self._watchers.get(order.order_id, ()):
            if q.full():
                q.get_nowait()
            q.put_nowait(order)
        self.stores.publish(order, before)

    def subscribe(self, order_id: str) -> asyncio.Queue[Order]:
        q: asyncio.Queue[Order] = asyncio.Queue(self._depth)
        self._watchers.setdefault(order_id, set()).add(q)
        return q

    def unsubscribe(self, order_id: str, q: asyncio.Queue[Order]) -> None:
        subs = self._watchers.get(order_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._watchers[order_id]

    def watchers(self, order_id: str) -> int:
        return len(self._watchers.get(order_id, ()))


WATCH_LAGGING = "WATCH_LAGGING"


class StoreWatcher:
    """One open WatchStoreOrders stream: its queue, and whether it fell behind."""

    __slots__ = ("queue", "lagged", "merchant")

    def __init__(self, depth: int, merchant: MerchantScope | None) -> None:
        self.queue: asyncio.Queue[Order] = asyncio.Queue(depth)
        self.lagged = False
        self.merchant = merchant


# Streams one merchant grant may hold on one store: the kitchen display, the counter, a
# manager's phone and a few reconnects in between. A grant is a merchant's own credential, held
# outside the platform: without a bound, one merchant's buggy or hostile client would take every
# one of the process's slots and shut every other merchant out.
STREAMS_PER_MERCHANT_STORE = 16
# And all of one merchant's stores together: a share of the process, so a chain watching each of
# its stores still leaves room for the others.
MERCHANT_SHARE = 0.25
TOO_MANY_WATCHES = "TOO_MANY_WATCHES"


class StoreFeed:
    """Committed order changes by store, for merchants' open streams. Unlike an order's
    watcher, a store's may not skip a message (the next one may be another order): a watcher
    whose queue is full is marked lagging and its stream ends, and the merchant lists again.
    At most `max_watchers` streams per process: each holds a queue for as long as it is open.
    A merchant grant holds at most STREAMS_PER_MERCHANT_STORE of them on one store and
    MERCHANT_SHARE of them in all; the platform's credential (merchant None) only the total."""

    def __init__(self, depth: int = 256, max_watchers: int = 10_000) -> None:
        self._by_store: dict[str, set[StoreWatcher]] = {}
        self._depth = depth
        self.max_watchers = max_watchers
        self.per_merchant = max(STREAMS_PER_MERCHANT_STORE, int(max_watchers * MERCHANT_SHARE))
        self.open = 0
        self._of_merchant: dict[str, int] = {}
        self._of_merchant_store: dict[tuple[str, str], int] = {}

    def publish(self, order: Order, before: Order | None = None) -> None:
        watchers = self._by_store.get(order.store_id)
        if not watchers or not order.visible or not model.reached_paid(order):
            # An order waiting for its payment is nothing the merchant can act on, nor is its
            # lapse: the stream carries each new paid order and what follows it.
            return
        if before is not None and not model.merchant_news(before, order):
            # Bookkeeping only (a paid order's card confirmed): the same order again would be a
            # second ticket printed in the kitchen.
            return
        for w in watchers:
            if w.lagged:
                # Nothing more once a change was dropped: its stream ends when the queue is
                # empty, and a reader as slow as the orders would never find it empty if each
                # one it took made room for the next (the gap unsaid while the rush lasts).
                continue
            if w.merchant is not None and not w.merchant.covers(order.brand_id, order.store_id):
                continue
            if w.queue.full():
                w.lagged = True
            else:
                w.queue.put_nowait(order)

    def subscribe(self, store_id: str, merchant: MerchantScope | None) -> StoreWatcher:
        if merchant is not None:
            key = (merchant.merchant_id, store_id)
            if self._of_merchant_store.get(key, 0) >= STREAMS_PER_MERCHANT_STORE:
                raise ResourceExhausted(
                    TOO_MANY_WATCHES,
                    f"这家门店最多同时关注 {STREAMS_PER_MERCHANT_STORE} 个连接 / at most {STREAMS_PER_MERCHANT_STORE} open "
                    f"streams of one merchant on store {store_id!r}: close one first",
                )
            if self._of_merchant.get(merchant.merchant_id, 0) >= self.per_merchant:
                raise ResourceExhausted(
                    TOO_MANY_WATCHES,
                    f"最多同时关注 {self.per_merchant} 个门店连接 / at most {self.per_merchant} open store streams "
                    "per merchant: close some first",
                )
        if self.open >= self.max_watchers:
            raise Unavailable("OVERLOADED", "关注门店订单的连接过多，请稍后再试 / too many store order streams open, retry later", 5_000)
        w = StoreWatcher(self._depth, merchant)
        self._by_store.setdefault(store_id, set()).add(w)
        self.open += 1
        if merchant is not None:
            _count(self._of_merchant, merchant.merchant_id, 1)
            _count(self._of_merchant_store, (merchant.merchant_id, store_id), 1)
        return w

    def unsubscribe(self, store_id: str, w: StoreWatcher) -> None:
        subs = self._by_store.get(store_id)
        if subs is not None and w in subs:
            subs.discard(w)
            self.open -= 1
            if not subs:
                del self._by_store[store_id]
            if w.merchant is not None:
                _count(self._of_merchant, w.merchant.merchant_id, -1)
                _count(self._of_merchant_store, (w.merchant.merchant_id, store_id), -1)


def _count(counts: dict[Any, int], key: Any, by: int) -> None:
    left = counts.get(key, 0) + by
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class _Flight:
    """One placement (or recovery) in progress. `answer` resolves as soon as the caller's
    outcome is known; the task may go on compensating after that, and the flight stays
    registered until it ends, so no retry races the compensation."""

    __slots__ = ("request_hash", "start_ms", "budget", "answer", "task")

    def __init__(self, request_hash: str | None, start_ms: int, budget: Budget | None = None) -> None:
        # None: the recovery of a reservation whose request is unknown; any retry waits for it.
        self.request_hash = request_hash
        self.start_ms = start_ms
        # A placement's: the first caller's deadline, which a joining retry extends while it
        # waits. None for the recovery's (it has its own call timeout and answers nobody).
        self.budget = budget
        self.answer: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
        # Retrieved even when nobody waits (a sweep's flight), so asyncio never warns.
        self.answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.task: asyncio.Future[Any] | None = None

    def ran_out_of_time(self) -> bool:
        """Answered DeadlineExceeded already, and still undoing what it did."""
        return self.answer.done() and not self.answer.cancelled() and isinstance(self.answer.exception(), DeadlineExceeded)

    def settle(self, order: Order | None = None, exc: BaseException | None = None) -> None:
        if self.answer.done():
            return
        if exc is None:
            self.answer.set_result(order)  # type: ignore[arg-type]
        elif isinstance(exc, Exception):
            self.answer.set_exception(exc)
        else:
            self.answer.set_exception(Unavailable("PLACEMENT_INTERRUPTED", "下单中断，请重试 / placement interrupted, retry", 100))


class _KeyLocks:
    """One asyncio.Lock per key while anyone holds or waits for it (then forgotten)."""

    def __init__(self) -> None:
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Any, budget: "Budget | None" = None) -> AsyncIterator[None]:
        """budget: waits for the lock only within the caller's deadline (DEADLINE_PASSED)."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            await (lock.acquire() if budget is None else _acquire_within(lock, budget))
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def _acquire_within(lock: asyncio.Lock, budget: "Budget") -> None:
    """Acquire `lock` before the caller's deadline, or the later one of a retry that joined
    meanwhile; DEADLINE_PASSED once none is left. No deadline: as long as it takes."""
    while True:
        deadline = budget.deadline
        if deadline is None:
            await lock.acquire()
            return
        try:
            async with asyncio.timeout(budget()):
                await lock.acquire()
            return
        except TimeoutError:
            if not budget.extended_beyond(deadline):
                raise DeadlineExceeded("DEADLINE_PASSED", "调用方已超时 / the caller's deadline has passed") from None


@dataclass
class SweepReport:
    recovered: int = 0
    expired: int = 0
    driven: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


# A page token names its listing (conventions: INVALID_PAGE_TOKEN): ListOrders and
# ListStoreOrders both page by (create_ms, order_id), and a buyer's token read as a position in
# a store's queue (or the reverse) started it mid-way instead of being refused. Tokens handed out
# before they were named carry no tag and still page on (a client paging across an upgrade).
USER_ORDERS_TOKEN, STORE_ORDERS_TOKEN, ALL_ORDERS_TOKEN = "U", "S", "A"


def _encode_token(*parts: Any) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode()


def _bad_token() -> InvalidArgument:
    return InvalidArgument("page_token", "无效的分页标记 / invalid page token", "INVALID_PAGE_TOKEN")


def _decode_token(token: str, tag: str, n: int) -> list[str]:
    """The n parts of a listing's page token, tagged `tag` or untagged (from before tags)."""
    try:
        # validate=True: the lenient decoder drops characters outside the alphabet, so "!!!"
        # read as an empty token, i.e. the first page again, instead of a bad token.
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise _bad_token() from None
    parts = raw.split("|")
    if len(parts) == n + 1 and parts[0] == tag:
        parts = parts[1:]
    elif len(parts) != n:
        raise _bad_token()
    if not all(parts):
        raise _bad_token()
    return parts


def _newest_first_after(page_token: str, tag: str) -> tuple[int, str] | None:
    """The (create_ms, order_id) a newest-first page continues after."""
    if not page_token:
        return None
    ms, oid = _decode_token(page_token, tag, 2)
    create_ms = ascii_int(ms, minimum=0)
    if create_ms is None:
        raise _bad_token()
    return create_ms, oid


def _newest_first_page(orders: list[Order], limit: int, tag: str) -> tuple[list[Order], str]:
    """A page from `limit + 1` rows: the extra row only says that another page follows."""
    if len(orders) <= limit:
        return orders, ""
    orders = orders[:limit]
    return orders, _encode_token(tag, orders[-1].create_ms, orders[-1].order_id)


class OrderService:
    def __init__(
        self,
        store: OrderStore,
        card: CardClient,
        catalog: CatalogClient,
        payments: PaymentProvider,
        *,
        clock: Clock | None = None,
        config: OrderConfig | None = None,
        events: OrderEvents | None = None,
    ) -> None:
        self.store = store
        self.card = card
        self.catalog = catalog
        self.payments = payments
        self.clock = clock or SystemClock()
        self.store_brands = StoreBrands(catalog, clock=self.clock)
        self.config = config or OrderConfig()
        self.events = events or OrderEvents()
        self._flights: dict[str, _Flight] = {}
        # campaign -> face value of its cards, learnt from ReserveCard answers: decides whether
        # an order can ask the card service to reserve and redeem in one call.
        self._face_values: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # The card watermark is stored (once per process we know it is), and its value as this
        # process last wrote or read it (ms).
        self._watermark_set = False
        self._watermark_ms: int | None = None
        # Card reservations from this time on (ms) await the recovery pass's check for ones
        # no order row knows about; None when none do.
        self._scan_since: int | None = None
        # ConfirmPayment calls in progress, one at a time per (user, request_id): see there.
        self._payments = _KeyLocks()
        # Per order: a cancellation's state change and the taking again of a lapsed card
        # (_hold_card_again) never interleave, so a card is never re-taken for an order that is
        # being cancelled (it would stay REDEEMED while the order says it was returned).
        self._card_turns = _KeyLocks()
        # Per user: from_cart placements, one at a time (`_place`).
        self._cart_turns = _KeyLocks()
        # Where the next sweep pass reads on from (an order id; "" from the start).
        self._sweep_after = ""

    def _now(self) -> int:
        return now_ms(self.clock)

    # --- carts ----------------------------------------------------------------------------

    async def add_cart_item(
        self, user_id: str, store_id: str, selection: Selection, request_id: str, budget: Budget | None = None
    ) -> CartView:
        budget = budget or _budget()
        model.check_request_id(request_id)
        model.check_id("user_id", user_id)
        model.check_id("store_id", store_id)
        model.check_selection(selection, "line")
        # A request_id names one line: a retry is answered with the cart as it is now (without
        # the line once it was cleared or ordered: it is not put back), without another quote;
        # the same id with another line (or store) is refused before anything else is judged.
        # The store checks again in the write (a concurrent add).
        key = model.cart_request_key(request_id, user_id, self._now(), store_id, selection)
        if await self.store.cart_request_seen(key, store_id, selection):
            return await self.get_cart(user_id, budget)
        cart_store, lines = await self.store.cart(user_id)
        if lines and cart_store != store_id:
            raise FailedPrecondition(
                "CART_STORE_MISMATCH",
                "购物车里是另一家店的商品，请先清空 / the cart holds another store's items: clear it first",
            )
        model.check_cart_room(len(lines))
        candidate = [*lines, selection]
        quote = await self.catalog.quote(store_id, candidate, timeout=budget())
        new_index = len(lines)
        own = [p for p in quote.problems if p.line_index == new_index and p.reason in model.ARGUMENT_PROBLEMS]
        if own:
            raise InvalidArgument("line", f"{own[0].reason}: {own[0].message}", own[0].reason)
        await self.store.add_cart_line(key, store_id, selection)
        after_store, after = await self.store.cart(user_id)
        if after != candidate:  # a retry of an earlier add, or a concurrent change: price what is there
            quote = await self.catalog.quote(after_store, after, timeout=budget()) if after else None
        return CartView(user_id, after_store, tuple(after), quote)

    async def get_cart(self, user_id: str, budget: Budget | None = None) -> CartView:
        budget = budget or _budget()
        model.check_id("user_id", user_id)
        store_id, lines = await self.store.cart(user_id)
        if not lines:
            return CartView(user_id, "", (), None)
        quote = await self.catalog.quote(store_id, lines, timeout=budget())
        return CartView(user_id, store_id, tuple(lines), quote)

    async def clear_cart(self, user_id: str, request_id: str = "", budget: Budget | None = None) -> CartView:
        """request_id (optional) is remembered per user: a retry of a clear that was done answers
        the cart as it is now and removes nothing, so a line added after the first attempt
        survives a late retry of it."""
        model.check_id("user_id", user_id)
        model.check_id("request_id", request_id, required=False, limit=model.MAX_REQUEST_ID)
        if await self.store.clear_cart(user_id, request_id, self._now()):
            return CartView(user_id, "", (), None)
        return await self.get_cart(user_id, budget)

    # --- placement ------------------------------------------------------------------------

    async def place_order(self, r: PlaceOrderInput, budget: Budget | None = None) -> Order:
        budget = budget or _budget()
        model.check_request_id(r.request_id)
        model.check_id("user_id", r.user_id)
        model.check_id("store_id", r.store_id, required=not r.from_cart)
        model.check_id("campaign_id", r.campaign_id, required=False)
        model.check_card_choice(r.card_use, r.card_id)
        if r.from_cart:
            if r.lines:
                raise InvalidArgument("lines", "from_cart 时不能再给 lines / lines must be empty with from_cart")
        else:
            model.check_selections(r.lines)
        campaign = r.campaign_id or self.config.default_campaign_id
        order_id = model.order_id_for(r.user_id, r.request_id)
        fingerprint = model.request_hash(
            r.user_id, r.store_id, r.lines, r.from_cart, r.card_use, r.card_id, campaign
        )
        flight = self._flights.get(order_id)
        if flight is None:
            # The saga runs in its own task: a caller that gives up (deadline, disconnect) does
            # not cut it in the middle, and concurrent duplicates wait for the same outcome.
            flight = self._fly(order_id, fingerprint, self._place(order_id, fingerprint, campaign, r, budget), budget)
            order = await asyncio.shield(flight.answer)
        elif flight.request_hash is not None and flight.request_hash != fingerprint:
            raise _request_id_reused()
        else:
            order = await self._join(flight, budget)
        if order is None or not order.visible:
            # The recovery pass owned this request and compensated it: a retry starts afresh.
            raise Unavailable("PLACEMENT_INTERRUPTED", "下单中断，请重试 / placement interrupted, retry", 100)
        return order

    @staticmethod
    async def _join(flight: _Flight, budget: Budget) -> Order:
        """A duplicate of a request in flight waits for its outcome, lending the placement its
        own deadline meanwhile: a patient retry of an impatient first attempt gets its order
        instead of the first caller's DEADLINE_EXCEEDED (`_outliving`)."""
        if flight.ran_out_of_time():
            # It already answered an earlier caller's deadline and is being undone: nothing of
            # it can be extended now, and that deadline is not this caller's.
            raise Unavailable("PLACEMENT_INTERRUPTED", "下单中断，请重试 / placement interrupted, retry", 100)
        if flight.budget is None:
            return await asyncio.shield(flight.answer)
        with flight.budget.joined_by(budget):
            return await asyncio.shield(flight.answer)

    def _fly(self, order_id: str, request_hash: str | None, work: Any, budget: Budget | None = None) -> _Flight:
        flight = self._flights[order_id] = _Flight(request_hash, self._now(), budget)

        async def run() -> None:
            try:
                flight.settle(await work)
            except BaseException as exc:
                flight.settle(exc=exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                if self._flights.get(order_id) is flight:
                    del self._flights[order_id]

        flight.task = asyncio.ensure_future(run())
        return flight

    async def drain(self) -> None:
        """Wait for every placement and compensation in progress (tests, graceful stop)."""
        while self._flights:
            tasks = [f.task for f in list(self._flights.values()) if f.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    def _settle_early(self, order_id: str, exc: BaseException) -> None:
        flight = self._flights.get(order_id)
        if flight is not None:
            flight.settle(exc=exc)

    async def _place(self, order_id: str, fingerprint: str, campaign: str, r: PlaceOrderInput, budget: Budget) -> Order:
        if not r.from_cart:
            return await self._place_now(order_id, fingerprint, campaign, r, budget)
        # A user's placements of the cart take turns, from the read of the cart to the write of
        # the order or the end of its compensation: the second of a double tap then finds the
        # cart empty (CART_EMPTY) before it reserves anything, as a tap coming after the first
        # would. Each running on its own, the two reserved cards independently: with one card
        # free, the tap that took it could lose the cart to the one without (CARD_USE_BEST goes
        # on at full price, and its write came first); the card went back and the user paid
        # although it was free, which no one-after-the-other order of the taps gives. The store's
        # check that the lines are still there (CartTaken) cannot see this: each write is right
        # on its own; the loss is in which tap holds the card. Letting the one holding a card
        # win instead would need the first writer to know of a slower tap that has not written
        # yet. A lock in this process is enough: it is the store's only writer (as for
        # ConfirmPayment's turns). Retries of one request do not wait here (they join its
        # flight); a placement of listed lines (not from the cart) does not either.
        async with self._cart_turns.hold(r.user_id, budget):
            return await self._place_now(order_id, fingerprint, campaign, r, budget)

    async def _place_now(self, order_id: str, fingerprint: str, campaign: str, r: PlaceOrderInput, budget: Budget) -> Order:
        # A retry after success (even once the cart is empty) or after a crash finds its row
        # here, and a new request learns it may write its row only once. The store's in-memory
        # filter of order ids spares a new request the read (order_ids.py: ~1 us against 30-60).
        existing = await self.store.get(order_id) if self.store.may_exist(order_id) else None
        if existing is not None and existing.refused and existing.request_hash == fingerprint:
            # The call before this one was refused (its cart was ordered meanwhile): resuming its
            # saga would finish it into an order of a cart it no longer owns. Undone first, this
            # retry is a new attempt, as after any abort.
            await self._recover_placing(existing, budget)
            existing = await self.store.get(order_id)
        if existing is not None and existing.status != model.ABORTED:
            if existing.request_hash != fingerprint:
                raise _request_id_reused()
            return existing if existing.visible else await self._run_saga(existing, budget)
        store_id, selections = r.store_id, list(r.lines)
        cart: CartTaken | None = None
        if r.from_cart:
            cart_store, selections, cart = await self.store.cart_to_order(r.user_id)
            if not selections:
                raise FailedPrecondition("CART_EMPTY", "购物车是空的 / the cart is empty")
            if store_id and store_id != cart_store:
                raise FailedPrecondition("CART_STORE_MISMATCH", "购物车不是这家店的 / the cart is for another store")
            store_id = cart_store
        quote = await _outliving(budget, lambda timeout: self.catalog.quote(store_id, selections, timeout=timeout))
        if quote.problems:
            model.raise_for_problems(quote.problems, "cart.lines" if r.from_cart else "lines", of_cart=r.from_cart)
        model.check_prices(quote, "cart.lines" if r.from_cart else "lines")
        now = self._now()
        draft = Order(
            order_id=order_id,
            request_id=r.request_id,
            request_hash=fingerprint,
            user_id=r.user_id,
            store_id=store_id,
            store_name=quote.store_name,
            brand_id=quote.brand_id,
            campaign_id=campaign,
            lines=quote.lines,
            subtotal_fen=quote.total_fen,
            card_use=r.card_use,
            requested_card_id=r.card_id,
            status=model.PLACING,
            create_ms=now,
            update_ms=now,
            from_cart=r.from_cart,
            # Kept in the row from its first write, so whoever finishes it takes these lines.
            cart_keys=cart.lines if cart is not None else (),
        )
        if existing is None:
            # A new request: its row is written once, after the card call (module docstring).
            await self._ensure_card_watermark()
            return await self._run_saga(draft, budget, written=False)
        order, fresh = await self.store.begin_placement(draft)
        if not fresh and order.status != model.PLACING:
            return order
        # fresh (a new attempt after an aborted one), or a PLACING row left by a crash or an
        # upstream outage: (re)run the saga on the row.
        return await self._run_saga(order, budget)

    async def _ensure_card_watermark(self) -> None:
        """A card watermark is stored before the first placement without a row, so the next
        start's recovery pass looks for what a crash may leave behind."""
        at = self._now() - WATERMARK_MARGIN_MS
        if not self._watermark_set:
            # Only if unset: a watermark left by the previous run is where this start's
            # recovery pass must look from.
            self._watermark_ms = await self.store.start_card_watermark(at)
            self._watermark_set = True
        if self._watermark_ms is not None and at < self._watermark_ms:
            # The wall clock stepped back (NTP): the card service, on the same clock, stamps
            # this placement's reservation before the watermark, where a recovery pass after a
            # crash would never look. Lowered before the card call; lowering only widens the
            # next scan. (A pass moves it up again only to the oldest placement in flight.)
            self._watermark_ms = await self.store.lower_card_watermark(at)

    async def _run_saga(self, order: Order, budget: Budget, written: bool = True) -> Order:
        """written=False: the order has no row yet (a new request). Its one write is the
        finished order; every failure first writes the PLACING row (`_placing_row`), then
        compensates exactly as for a placement that has one.

        A from_cart order's write takes the cart lines it was made from (`Order.cart_keys`), and
        is refused (CartGone) when they left the cart meanwhile; a PLACING row of the previous
        release (no lines kept) empties the cart, as it did."""
        key = order.reservation_key
        reservation: Reservation | None = None
        if order.card_use != model.CARD_NONE and order.subtotal_fen > 0:
            # Reserve and redeem in one card call when the card will cover the order in full
            # (payable 0): Quote + ReserveCard is the whole upstream cost of the hot path.
            face = self._face_values.get(order.campaign_id)
            redeem = face is None or order.subtotal_fen <= face
            try:
                try:
                    reservation = await self._reserve(order, key, budget, redeem)
                except FailedPrecondition as exc:
                    if not (redeem and exc.reason == "REDEEM_NOT_COVERED"):
                        raise
                    # Above the card's face value (refused before anything was held): a plain
                    # hold, confirmed after payment. Its answer teaches us the face value.
                    reservation = await self._reserve(order, key, budget, False)
            except (Unavailable, DeadlineExceeded, Internal) as exc:
                # Whether the card got held is unknown: answer the caller now, then try to undo
                # it (the flight stays registered meanwhile); if the card service is still
                # unreachable the sweep will. An INTERNAL answer (a card service bug, a batch
                # answered with the wrong number of results) says no more than a timeout does:
                # taken as a refusal, a hold it had made stayed to its TTL, and a redeemed card
                # stayed under the aborted order for good.
                self._settle_early(order.order_id, exc)
                await self._compensate_quietly(await self._placing_row(order, written))
                raise
            except DomainError as exc:
                if exc.reason == "NO_CARD_AVAILABLE" and order.card_use == model.CARD_BEST:
                    reservation = None  # pay full price, as the request asked
                else:
                    await self._abort(await self._placing_row(order, written), exc)
                    raise
        if reservation is not None and reservation.state not in (HELD, CONFIRMED):
            if not written and order.attempt < MAX_UNWRITTEN_ATTEMPTS:
                # The replay of an attempt the recovery pass undid after a crash (its row was
                # never written): take the next attempt's key, as a retry after an abort does.
                return await self._run_saga(model.revised(order, attempt=order.attempt + 1), budget, written=False)
            # An idempotent replay of a reservation that was released meanwhile.
            err = FailedPrecondition("RESERVATION_LAPSED", "卡的预留已失效，请重试 / the card hold lapsed, retry")
            await self._abort(await self._placing_row(order, written), err)
            raise err
        if reservation is not None and reservation.face_value_fen:
            self._face_values[order.campaign_id] = reservation.face_value_fen
        covered = reservation.covered_fen if reservation else 0
        discount, payable = model.split(order.subtotal_fen, covered)
        if payable > 0 and reservation is not None and reservation.state == CONFIRMED:
            # Redeemed although it covers only part (a card of another face value than the last
            # one seen): a REDEEMED card must belong to a PAID order, so give it back and let
            # the retry (a new attempt, now knowing the face value) hold it for payment.
            err = Unavailable("CARD_REDEEMED_PARTLY", "卡只能抵扣部分金额，请重试 / the card covers part of the order, retry", 50)
            self._settle_early(order.order_id, err)
            await self._compensate_quietly(await self._placing_row(order, written))
            raise err
        now = self._now()
        if payable == 0:
            if reservation is not None and reservation.state != CONFIRMED:
                try:
                    await self._confirm_card(key, budget)
                except DomainError:
                    finished = await self._compensate_quietly(await self._placing_row(order, written))
                    if finished is not None:
                        return finished
                    raise
            payment = Payment(status=model.PAY_NOT_REQUIRED)
            status = model.PAID
        else:
            try:
                intent = await self.payments.create_intent(order.order_id, payable)
            except Exception:
                if not written and reservation is not None:
                    await self._compensate_quietly(await self._placing_row(order, False))
                raise
            payment = Payment(
                payment_id=intent.payment_id,
                provider=self.payments.name,
                amount_fen=payable,
                status=model.PAY_PENDING,
                reference=intent.reference,
                expire_ms=now + self.config.payment_ttl_seconds * 1000,
            )
            status = model.PENDING_PAYMENT
        card_id = reservation.card_id if reservation else ""
        attempt = order.attempt

        def finish(cur: Order) -> Order:
            if cur.status != model.PLACING or cur.attempt != attempt:
                return cur
            return model.with_status(
                cur,
                status,
                now,
                model.ACTOR_USER,
                card_id=card_id,
                card_discount_fen=discount,
                payable_fen=payable,
                payment=payment,
            )

        cart = _cart_taken(order)
        clear_cart_of = order.user_id if order.from_cart and cart is None else ""
        if not written:
            return await self._write_placed(finish(order), cart, reservation is not None)
        try:
            done = await self.store.update(order.order_id, finish, clear_cart_of=clear_cart_of, cart=cart, expect=order)
        except CartGone as gone:
            # Not a failure to recover from (the recovery would finish an order whose card is
            # redeemed): the cart went to another call, so this attempt ends holding nothing.
            await self._cart_gone(order, gone)
            raise
        except Exception:
            await self._compensate_quietly(order)
            raise
        if not done.visible:
            raise Unavailable("PLACEMENT_ABORTED", "下单被中止，请重试 / the placement was aborted, retry", 100)
        return done

    async def _placing_row(self, order: Order, written: bool) -> Order:
        """The PLACING row of a placement about to compensate: a placement without a row
        writes it now, so the compensation (and the sweep, if it is deferred) has it."""
        if written:
            return order
        try:
            row, _ = await self.store.begin_placement(order)
        except Exception:
            # The store refuses writes: the next recovery pass lists this reservation instead.
            self._rescan_from(order.create_ms)
            raise
        return row

    async def _write_placed(self, placed: Order, cart: CartTaken | None, holds_card: bool) -> Order:
        """The one write of a new request: the finished order. On failure (CartGone included)
        the card call is undone by its key (there is no row to compensate through)."""
        try:
            done = await self.store.insert_placed(placed, cart=cart)
        except Exception:
            if holds_card:
                await self._undo_unwritten_quietly(placed.reservation_key, placed.create_ms)
            raise
        if done is None:
            # A row appeared although this flight owned the id: nothing in this process writes
            # one concurrently, so another process shares the store.
            existing = await self.store.get(placed.order_id)
            if existing is not None and existing.reservation_key == placed.reservation_key:
                # Its row holds the reservation we were answered with (a replay): not ours to undo.
                if existing.visible and existing.request_hash == placed.request_hash:
                    return existing
            elif holds_card:
                await self._undo_unwritten_quietly(placed.reservation_key, placed.create_ms)
            raise Unavailable("PLACEMENT_INTERRUPTED", "下单中断，请重试 / placement interrupted, retry", 100)
        return done

    async def _reserve(self, order: Order, key: str, budget: Budget, redeem: bool) -> Reservation:
        # Repeated with the same key when a joining retry outlives the deadline it ran out of:
        # the card service answers a reservation that did land as a replay.
        return await _outliving(
            budget,
            lambda timeout: self.card.reserve(
                campaign_id=order.campaign_id,
                user_id=order.user_id,
                key=key,
                amount_fen=order.subtotal_fen,
                card_id=order.requested_card_id,
                # Held long enough for the payment window; a payable-0 order confirms at once.
                ttl_seconds=min(self.config.payment_ttl_seconds + HOLD_MARGIN_SECONDS, MAX_HOLD_SECONDS),
                timeout=timeout,
                redeem=redeem,
            ),
        )

    async def _confirm_card(self, key: str, budget: Budget) -> None:
        """ConfirmReservation, retried while the card service sheds it (OVERLOADED means it was
        refused before any work): giving up would throw away the hold we already have."""
        for attempt in range(3):
            try:
                await _outliving(budget, lambda timeout: self.card.confirm(key, timeout=timeout))
                return
            except Unavailable as exc:
                if attempt == 2 or exc.metadata.get("upstream_reason") != "OVERLOADED":
                    raise
                wait = min((exc.retry_after_ms or 50) / 1000, 0.2)
                if budget() <= wait:
                    raise
                await asyncio.sleep(wait)

    async def _cart_gone(self, order: Order, gone: CartGone) -> None:
        """A placement with a PLACING row whose cart lines were taken meanwhile: give back the
        card it holds (released, or refunded once redeemed), then abort the attempt. A card
        call that fails leaves the row PLACING, marked refused (`Order.refused`), for the
        sweep's recovery or the caller's retry to undo: unmarked, either would find the card
        redeemed and finish the order the caller was told failed. With a budget of its own, as
        every compensation: the caller's may be spent."""
        budget = _budget(self.config.sweep_call_timeout)
        if order.card_use != model.CARD_NONE and order.subtotal_fen > 0:
            try:
                reservation = await self.card.release(order.reservation_key, timeout=budget())
                if reservation is not None and reservation.state == CONFIRMED:
                    await self.card.refund(order.reservation_key, timeout=budget())
            except DomainError as exc:
                log.warning(
                    "card of a placement whose cart was taken left to the sweep",
                    extra={"order_id": order.order_id, "reason": exc.reason},
                )
                now, attempt = self._now(), order.attempt

                def refuse(cur: Order) -> Order:
                    if cur.status != model.PLACING or cur.attempt != attempt:
                        return cur
                    return replace(cur, update_ms=now, version=cur.version + 1, error=(gone.code, gone.reason, gone.message))

                await self.store.update(order.order_id, refuse)
                return
        await self._abort(order, gone)

    async def _abort(self, order: Order, err: DomainError) -> Order:
        now, attempt = self._now(), order.attempt

        def abort(cur: Order) -> Order:
            if cur.status != model.PLACING or cur.attempt != attempt:
                return cur
            return replace(
                cur, status=model.ABORTED, update_ms=now, version=cur.version + 1, error=(err.code, err.reason, err.message)
            )

        return await self.store.update(order.order_id, abort)

    async def _compensate_quietly(self, order: Order) -> Order | None:
        """Undo a placement whose card call failed or whose outcome is unknown. Returns the
        finished order when the card turned out to be redeemed already (so the order stands),
        None when compensated or when the card service is still unreachable (the sweep retries)."""
        try:
            return await self._recover_placing(order, _budget(self.config.sweep_call_timeout))
        except DomainError as exc:
            log.warning("compensation deferred to the sweep", extra={"order_id": order.order_id, "reason": exc.reason})
            return None

    async def _recover_placing(self, order: Order, budget: Budget) -> Order | None:
        # A refused attempt (its caller was told why) keeps its own error; any other was cut off.
        refused = DomainError(*order.error) if order.refused else None
        if order.card_use == model.CARD_NONE or order.subtotal_fen == 0:
            await self._abort(order, refused or Unavailable("PLACEMENT_INTERRUPTED", "下单中断 / placement interrupted"))
            return None
        reservation = await self.card.release(order.reservation_key, timeout=budget())
        if reservation is not None and reservation.state == CONFIRMED:
            discount, payable = model.split(order.subtotal_fen, reservation.covered_fen)
            if payable == 0 and refused is None:
                # The card was redeemed before the crash: the order stands, finish it.
                now, attempt = self._now(), order.attempt

                def finish(cur: Order) -> Order:
                    if cur.status != model.PLACING or cur.attempt != attempt:
                        return cur
                    return model.with_status(
                        cur,
                        model.PAID,
                        now,
                        model.ACTOR_SYSTEM,
                        "RECOVERED",
                        card_id=reservation.card_id,
                        card_discount_fen=discount,
                        payable_fen=0,
                        payment=Payment(status=model.PAY_NOT_REQUIRED),
                    )

                cart = _cart_taken(order)
                try:
                    return await self.store.update(
                        order.order_id, finish, clear_cart_of=order.user_id if order.from_cart and cart is None else "",
                        cart=cart,
                    )
                except CartGone as gone:
                    # Its cart lines left the cart meanwhile (the user, told this placement failed
                    # or not told at all, ordered them again, or cleared the cart): finished, it
                    # would order them a second time. Given back and aborted, as the placement
                    # itself would have been refused.
                    await self._cart_gone(order, gone)
                    return None
            await self.card.refund(order.reservation_key, timeout=budget())
        await self._abort(order, refused or Unavailable("PLACEMENT_INTERRUPTED", "下单中断，请重试 / placement interrupted, retry"))
        return None

    # --- payment --------------------------------------------------------------------------

    async def confirm_payment(
        self, order_id: str, user_id: str, reference: str, request_id: str = "", budget: Budget | None = None
    ) -> Order:
        """request_id (optional, as ever): the idempotency key, scoped by the user. A replay is
        answered with the order as it is now (PAID, or later: a retry of a payment that went
        through never fails because the order moved on); the same key for another order or
        reference is REQUEST_ID_REUSED."""
        budget = budget or _budget()
        model.check_id("order_id", order_id)
        model.check_id("user_id", user_id)
        model.check_id("payment_reference", reference, limit=256)
        model.check_id("request_id", request_id, required=False, limit=model.MAX_REQUEST_ID)
        key = model.request_key(model.CONFIRM_PAYMENT, request_id, user_id, self._now(), order_id, reference)
        if key is None:
            return await self._confirm_payment(order_id, user_id, reference, budget, None)
        # The money is captured before the write that remembers the key: two calls under one key
        # at once would both capture, and the one refused as a reuse only after its money was
        # taken. So they take turns (this process is the store's only writer); a concurrent
        # replay waits for the first call and then finds its record.
        async with self._payments.hold((user_id, request_id)):
            return await self._confirm_payment(order_id, user_id, reference, budget, key)

    async def _confirm_payment(
        self, order_id: str, user_id: str, reference: str, budget: Budget, key: model.RequestKey | None
    ) -> Order:
        order = model.check_owner(await self.store.get(order_id), user_id)
        if key is not None:
            seen = await self.store.request_fingerprint(key, order)
            if seen is not None:
                if seen != key.fingerprint:
                    raise _request_id_reused()
                return order  # a replay: the order as it is now
        if order.status == model.PENDING_PAYMENT and self._now() >= order.payment.expire_ms:
            order = await self._expire(order, budget)
        if order.status == model.PENDING_PAYMENT:
            order = await self._capture(order, reference)
            now = self._now()

            def mark_paid(cur: Order) -> Order:
                if cur.status != model.PENDING_PAYMENT:
                    return cur  # lapsed meanwhile: handled as a late payment below
                return model.with_status(
                    cur,
                    model.PAID,
                    now,
                    model.ACTOR_USER,
                    payment=model.captured(cur.payment),
                    card_action=model.CARD_CONFIRM if cur.card_id else "",
                )

            if key is None:
                order = await self.store.update(order_id, mark_paid, expect=order)
            else:
                # The key is remembered with the payment; when the order lapsed meanwhile, with
                # the late payment's record instead (a crash in between leaves the call to be
                # replayed in full: the capture is idempotent per reference).
                order, replayed = await self.store.apply_request(
                    order_id, key, _owned_by(user_id), mark_paid, answered=_paid
                )
                if replayed:
                    return order
            if _paid(order):
                return await self._drive_quietly(order, budget)
            return await self._late_payment(order, reference, budget, captured=True, key=key)
        if order.payment.reference == reference and order.payment.status in (model.PAY_CAPTURED, model.PAY_REFUNDED):
            if key is not None:  # a retry of a payment already recorded, under a key of its own
                order, _ = await self.store.apply_request(order_id, key, _owned_by(user_id), _as_is)
            return order
        if order.status == model.CANCELLED and order.payment.status == model.PAY_VOIDED:
            return await self._late_payment(order, reference, budget, captured=False, key=key)
        if order.payment.status == model.PAY_NOT_REQUIRED:
            raise FailedPrecondition("PAYMENT_NOT_REQUIRED", "此订单无需付款 / nothing to pay on this order")
        raise FailedPrecondition("ORDER_NOT_PAYABLE", f"订单状态 {order.status} 不能付款 / a {order.status} order cannot be paid")

    async def _capture(self, order: Order, reference: str) -> Order:
        """Take the money; returns the order as this call left it. Until the capture is
        answered and recorded the money may have left the payer's account: noted on the order
        first (model.capture_unanswered), so that if the call never ends (the provider times
        out, or the process is killed between the capture and the write that records it) and
        the buyer never retries, the order's cancellation or lapse settles it (captured again
        and refunded) instead of voiding a payment that went through. Only the reference
        issued for the order can take its money."""
        noted = False
        if reference == order.payment.reference and order.payment.note != model.NOTE_CAPTURE_UNANSWERED:
            now = self._now()
            order = await self.store.update(order.order_id, lambda cur: model.capture_unanswered(cur, now), expect=order)
            noted = order.payment.note == model.NOTE_CAPTURE_UNANSWERED
        try:
            await self.payments.capture(reference, order.order_id, order.payment.amount_fen)
        except PaymentDeclined as exc:
            if noted:  # nothing was taken: nothing to settle
                now = self._now()
                await self.store.update(order.order_id, lambda cur: model.capture_declined(cur, now), expect=order)
            raise FailedPrecondition(exc.reason, "支付被拒绝 / the payment was declined") from None
        except PaymentTimeout:
            raise DeadlineExceeded("PAYMENT_PROVIDER_TIMEOUT", "支付渠道超时，请稍后重试 / the payment provider timed out, retry") from None
        return order

    async def _late_payment(
        self, order: Order, reference: str, budget: Budget, *, captured: bool, key: model.RequestKey | None = None
    ) -> Order:
        """Money that arrived for an order that already lapsed: take it (it left the payer's
        account) and give it back at once, recorded on the order. The card stays returned."""
        if not captured:
            order = await self._capture(order, reference)

        def record(cur: Order) -> Order:
            if cur.payment.status not in (model.PAY_VOIDED, model.PAY_PENDING):
                return cur
            return replace(
                cur,
                payment=replace(cur.payment, status=model.PAY_CAPTURED, note=model.NOTE_LATE_PAYMENT),
                payment_action=model.PAYMENT_REFUND,
                version=cur.version + 1,
                update_ms=self._now(),
            )

        if key is None:
            order = await self.store.update(order.order_id, record)
        else:
            order, replayed = await self.store.apply_request(order.order_id, key, _owned_by(key.user_id), record)
            if replayed:
                return order
        return await self._drive_quietly(order, budget)

    # --- lifecycle ------------------------------------------------------------------------

    async def get_order(self, order_id: str, user_id: str) -> Order:
        model.check_id("order_id", order_id)
        model.check_id("user_id", user_id)
        return model.check_owner(await self.store.get(order_id), user_id)

    async def list_orders(self, user_id: str, page_size: int, page_token: str) -> tuple[list[Order], str]:
        model.check_id("user_id", user_id)
        limit = model.page_size(page_size)
        orders = await self.store.list_for_user(user_id, limit + 1, _newest_first_after(page_token, USER_ORDERS_TOKEN))
        return _newest_first_page(orders, limit, USER_ORDERS_TOKEN)

    async def list_store_orders(
        self, store_id: str, status: str, page_size: int, page_token: str, *, merchant: MerchantScope | None = None
    ) -> tuple[list[Order], str]:
        """status: one of model.LIVE_STATUSES, or "" for all of them. merchant: the caller's
        grant, None when it may see every store."""
        model.check_id("store_id", store_id)
        if status and status not in model.LIVE_STATUSES:
            raise InvalidArgument("status", "不是订单可处的状态 / not a status an order can be listed in")
        limit = model.page_size(page_size)
        before = _newest_first_after(page_token, STORE_ORDERS_TOKEN)
        if not await self._store_open_to(store_id, merchant):
            return [], ""  # a store without orders: nothing to list, nothing to leak
        # A grant that covers the store by brand lists its brands' orders only: a store an import
        # moved to another brand keeps the former brand's orders, which are not the new one's.
        brands = None if merchant is None or store_id in merchant.stores else merchant.brands
        statuses = (status,) if status else model.LIVE_STATUSES
        orders, stop = await self.store.store_page(store_id, statuses, limit + 1, before, brands)
        if stop is not None:
            # A window of the store read without filling the page (a status few orders are in):
            # a short page, maybe empty, and the token of where the reading stopped.
            return orders, _encode_token(STORE_ORDERS_TOKEN, *stop)
        return _newest_first_page(orders, limit, STORE_ORDERS_TOKEN)

    async def _store_open_to(self, store_id: str, merchant: MerchantScope | None) -> bool:
        """Raises STORE_NOT_YOURS unless the grant covers the store; False when it does and the
        store has no orders yet (nothing to read). A brand grant covers a store that belongs
        to one of its brands now (the catalog's word), and one where any of the store's
        latest orders names one of its brands (an import may move a store to another brand:
        the former brand keeps its orders there, the new one gets the store)."""
        if merchant is None or store_id in merchant.stores:
            return True
        if not merchant.brands:
            # A grant of named stores covers those only: refused without a read, so the answer
            # does not tell whether the store has orders (an empty list if not, STORE_NOT_YOURS
            # if so, before).
            raise store_not_yours(store_id)
        covered = await self.store.store_has_brand(store_id, merchant.brands)
        if covered:
            return True
        # Asked of the catalog whether or not the store has orders, so a refusal does not tell
        # a rival which stores have taken orders, nor lets it hold streams on those without.
        if await self.store_brands.of(store_id) not in merchant.brands:
            raise store_not_yours(store_id)
        return covered is not None

    async def list_all_orders(self, page_size: int, page_token: str) -> tuple[list[Order], str]:
        limit = model.page_size(page_size, model.DEFAULT_ADMIN_PAGE, model.MAX_ADMIN_PAGE)
        after = _decode_token(page_token, ALL_ORDERS_TOKEN, 1)[0] if page_token else ""
        orders = await self.store.list_all(limit + 1, after)
        token = ""
        if len(orders) > limit:
            orders = orders[:limit]
            token = _encode_token(ALL_ORDERS_TOKEN, orders[-1].order_id)
        return orders, token

    async def cancel_order(
        self, order_id: str, user_id: str, reason: str, request_id: str = "", budget: Budget | None = None,
        *, merchant: MerchantScope | None = None,
    ) -> Order:
        """user_id empty = the merchant cancels (the servicer checked the merchant credential;
        merchant is its grant, None when it may act on every store).

        request_id (optional, as ever): the idempotency key, scoped by the user, or for a
        merchant by the order's store (and a grant's merchant: model.RequestKey). A replay is
        answered with the order as it is now; the same key for another order or reason is
        REQUEST_ID_REUSED."""
        budget = budget or _budget()
        model.check_id("order_id", order_id)
        # Empty: the merchant's cancellation. A buyer's id is judged as every other call judges it.
        model.check_id("user_id", user_id, required=False)
        model.check_id("request_id", request_id, required=False, limit=model.MAX_REQUEST_ID)
        model.check_text("reason", reason)
        self._refuse_unknown(order_id)
        actor = model.ACTOR_USER if user_id else model.ACTOR_MERCHANT
        now = self._now()

        def may_cancel(cur: Order) -> None:
            if user_id:
                model.check_owner(cur, user_id)
            elif not cur.visible:
                raise NotFound("ORDER_NOT_FOUND", "订单不存在 / order not found")
            else:
                model.check_merchant(cur, merchant)

        def cancel(cur: Order) -> Order:
            may_cancel(cur)
            if cur.status == model.CANCELLED:
                return cur
            model.check_cancel(cur, actor)
            default = "USER_CANCELLED" if actor == model.ACTOR_USER else "MERCHANT_CANCELLED"
            return model.cancel(cur, now, actor, reason or default)

        key = model.request_key(
            model.CANCEL_ORDER, request_id, user_id, now, order_id, reason, merchant_id=_merchant_id(user_id, merchant)
        )
        async with self._card_turns.hold(order_id):
            if key is None:
                order = await self.store.update(order_id, cancel)
            else:
                order, _ = await self.store.apply_request(order_id, key, may_cancel, cancel)
        return await self._drive_quietly(order, budget)

    def _refuse_unknown(self, order_id: str) -> None:
        """NOT_FOUND at once for an id the store's filter of order ids says has no row, before
        anything waits for the store's single writer: a merchant's script trying made-up ids
        (their answer was NOT_FOUND from inside a write batch, each taking a place in the batch
        the orders are written in) now costs ~2 µs on the loop. Safe because the filter never
        says "no row" for a row that exists: every id in the table is added when the store
        opens and every insert's as it is submitted, and until the table's ids are read (in the
        background after a start) it says "may exist" for every id (store.py, order_ids.py)."""
        if not self.store.may_exist(order_id):
            raise NotFound("ORDER_NOT_FOUND", "订单不存在 / order not found")

    async def update_status(
        self, order_id: str, target: str, note: str, request_id: str = "", *, merchant: MerchantScope | None = None
    ) -> Order:
        """request_id (optional, as ever): the idempotency key, scoped by the order's store and
        a grant's merchant (a merchant call: merchants pick their own ids, and one store's or one
        merchant's "u1" must never meet another's: model.RequestKey). A replay is answered with
        the order as it is now, whatever step it has reached since (never ILLEGAL_TRANSITION for
        a call that succeeded); the same key for another order, status or note is
        REQUEST_ID_REUSED."""
        model.check_id("order_id", order_id)
        model.check_id("request_id", request_id, required=False, limit=model.MAX_REQUEST_ID)
        model.check_text("note", note)
        if target not in model.FORWARD.values():
            raise InvalidArgument("status", "只能是 ACCEPTED/PREPARING/READY/COMPLETED / must be ACCEPTED, PREPARING, READY or COMPLETED")
        self._refuse_unknown(order_id)
        now = self._now()

        def may_advance(cur: Order) -> None:
            if not cur.visible:
                raise NotFound("ORDER_NOT_FOUND", "订单不存在 / order not found")
            model.check_merchant(cur, merchant)

        def advance(cur: Order) -> Order:
            may_advance(cur)
            if cur.status == target:
                return cur  # a retried transition
            model.check_advance(cur, target)
            return model.with_status(cur, target, now, model.ACTOR_MERCHANT, note)

        key = model.request_key(
            model.UPDATE_ORDER_STATUS, request_id, "", now, order_id, target, note, merchant_id=_merchant_id("", merchant)
        )
        if key is None:
            return await self.store.update(order_id, advance)
        order, _ = await self.store.apply_request(order_id, key, may_advance, advance)
        return order

    async def watch_store(
        self, store_id: str, *, merchant: MerchantScope | None = None, still_granted: Callable[[], None] | None = None,
        opened: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Order]:
        """Every visible change of the store's orders from now on (merchant: the caller's grant,
        None for every store). Ends with UNAVAILABLE WATCH_LAGGING if the caller fell behind.
        still_granted: raises once the caller's credential no longer holds; called before each
        change is sent and after every watch_poll_seconds without one. opened: awaited once the
        stream follows the store (the caller may be told so: its cue to list what came before)."""
        model.check_id("store_id", store_id)
        # Subscribe before the check reads, so an order placed meanwhile is not missed.
        feed = self.events.stores
        watcher = feed.subscribe(store_id, merchant)
        try:
            # A store without orders yet may be the grant's brand's: the feed then delivers only
            # orders the grant covers, so nothing of another merchant leaks.
            await self._store_open_to(store_id, merchant)
            if opened is not None:
                # Merchants open the stream, then list the store. Told nothing until the store's
                # next change, a client could not know when the stream began to follow the
                # store: an order paid after its list was read and before that was on neither.
                await opened()
            while True:
                if watcher.lagged and watcher.queue.empty():  # what was queued is delivered first
                    raise Unavailable(WATCH_LAGGING, "订单变化太快没跟上，请重新关注，连接应答后再列出订单 / fell behind the store's orders: watch again, then list them once the stream has answered", 100)
                if still_granted is None:
                    yield await watcher.queue.get()
                    continue
                try:
                    async with asyncio.timeout(self.config.watch_poll_seconds):
                        order = await watcher.queue.get()
                except TimeoutError:
                    # A quiet store: a revoked or expired grant's stream would otherwise stay
                    # open, holding its slots, for as long as no order came.
                    still_granted()
                    continue
                still_granted()
                yield order
        finally:
            feed.unsubscribe(store_id, watcher)

    async def watch(self, order_id: str, user_id: str) -> AsyncIterator[Order]:
        model.check_id("order_id", order_id)
        model.check_id("user_id", user_id)
        # Subscribe before reading, so no change can slip between the read and the wait.
        queue = self.events.subscribe(order_id)
        try:
            order = model.check_owner(await self.store.get(order_id), user_id)
            yield order
            sent = order.version
            # Not at the cancellation itself: its card return and refund follow in a later
            # change, and a stream ended before them would leave the buyer told neither happened.
            while not order.settled:
                try:
                    latest = await asyncio.wait_for(queue.get(), self.config.watch_poll_seconds)
                except asyncio.TimeoutError:
                    latest = await self.store.get(order_id) or order
                if latest.version > sent:
                    order, sent = latest, latest.version
                    yield order
        finally:
            self.events.unsubscribe(order_id, queue)

    # --- compensations and the sweep -----------------------------------------------------

    async def _expire(self, order: Order, budget: Budget) -> Order:
        now = self._now()

        def lapse(cur: Order) -> Order:
            if cur.status != model.PENDING_PAYMENT or cur.payment.expire_ms > now:
                return cur
            return model.cancel(cur, now, model.ACTOR_SYSTEM, model.NOTE_PAYMENT_TTL)

        order = await self.store.update(order.order_id, lapse)
        return await self._drive_quietly(order, budget)

    async def _drive_quietly(self, order: Order, budget: Budget) -> Order:
        try:
            return await self._drive(order, budget)
        except (DomainError, PaymentTimeout) as exc:
            # The state change is recorded with its outstanding action; the sweep finishes it. A
            # refund the provider did not answer is no failure of the caller's call either.
            reason = exc.reason if isinstance(exc, DomainError) else "PAYMENT_PROVIDER_TIMEOUT"
            log.warning("compensation deferred to the sweep", extra={"order_id": order.order_id, "reason": reason})
            return order

    async def _drive(self, order: Order, budget: Budget) -> Order:
        """Carry out the outstanding actions written into the row, then clear them."""
        card_action, payment_action = order.card_action, order.payment_action
        if not card_action and not payment_action:
            return order
        key = order.reservation_key
        returned = order.card_returned
        if card_action == model.CARD_CONFIRM:
            try:
                await self.card.confirm(key, timeout=budget())
            except FailedPrecondition as exc:
                # The hold lapsed before its confirmation arrived. The payment may well have
                # landed inside its window (the card service was unreachable until the hold ran
                # out): then the card went back to its owner unspent, and taking it again keeps
                # the order the buyer saw PAID. Only without the card does the order not stand.
                if not await self._hold_card_again(order, key, budget):
                    return await self._lapsed_card(order, exc.reason, budget)
        elif card_action == model.CARD_RETURN:
            reservation = await self.card.release(key, timeout=budget())
            if reservation is None:
                returned = False
            elif reservation.state == RELEASED:
                returned = not reservation.card_expired
            elif reservation.state in (CONFIRMED, REFUNDED):
                returned = await self.card.refund(key, timeout=budget())
        money_taken = payment_action == model.PAYMENT_REFUND
        if payment_action == model.PAYMENT_SETTLE:
            money_taken = await self._capture_unanswered_again(order)
        if money_taken:
            await self.payments.refund(order.payment.payment_id, order.payment.amount_fen)
        now = self._now()

        def clear(cur: Order) -> Order:
            changes: dict[str, Any] = {}
            if card_action and cur.card_action == card_action:
                changes["card_action"] = ""
                if card_action == model.CARD_RETURN:
                    changes["card_returned"] = returned
            if payment_action and cur.payment_action == payment_action:
                changes["payment_action"] = ""
                if payment_action == model.PAYMENT_SETTLE:
                    changes["payment"] = model.unanswered_capture_settled(cur.payment, money_taken)
                else:
                    changes["payment"] = replace(
                        cur.payment, status=model.PAY_REFUNDED, refunded_fen=cur.payment.amount_fen
                    )
            if not changes:
                return cur
            return replace(cur, update_ms=now, version=cur.version + 1, **changes)

        return await self.store.update(order.order_id, clear, expect=order)

    async def _capture_unanswered_again(self, order: Order) -> bool:
        """Whether the money of a cancelled order's unanswered capture was taken: the capture is
        made again with the issued reference (idempotent, so one that landed answers as itself;
        the buyer paid with it). Declined: nothing was taken. A timeout again is raised: the
        sweep asks on its next pass."""
        try:
            await self.payments.capture(order.payment.reference, order.order_id, order.payment.amount_fen)
        except PaymentDeclined:
            return False
        return True

    async def _hold_card_again(self, order: Order, key: str, budget: Budget) -> bool:
        """Reserve and confirm the order's own card again under its key, for the same amount.
        False when that card is gone (spent by another order, expired) or would cover another
        amount: the order is then cancelled and refunded as before."""
        if not order.card_id:
            return False
        async with self._card_turns.hold(order.order_id):
            # The row as it is now, not as this drive was handed it (a sweep's list is read
            # before a cancel may land): only an order still waiting to confirm its card.
            cur = await self.store.get(order.order_id)
            if cur is None or cur.status == model.CANCELLED or cur.card_action != model.CARD_CONFIRM:
                return False
            try:
                held = await self.card.reserve(
                    campaign_id=cur.campaign_id, user_id=cur.user_id, key=key, amount_fen=cur.subtotal_fen,
                    card_id=cur.card_id, ttl_seconds=60, timeout=budget(),
                )
                if held.card_id != cur.card_id or held.covered_fen != cur.card_discount_fen:
                    await self.card.release(key, timeout=budget())
                    return False
                if held.state != CONFIRMED:
                    await self.card.confirm(key, timeout=budget())
            except (FailedPrecondition, NotFound, PermissionDenied):
                return False
        log.info("card held again for a paid order", extra={"order_id": order.order_id, "card_id": order.card_id})
        return True

    async def _lapsed_card(self, order: Order, reason: str, budget: Budget) -> Order:
        now = self._now()

        def lapse(cur: Order) -> Order:
            if cur.card_action != model.CARD_CONFIRM:
                return cur
            return model.card_hold_lapsed(cur, now, reason)

        order = await self.store.update(order.order_id, lapse)
        if order.payment.note == model.NOTE_CARD_LAPSED and not order.card_action and order.status != model.CANCELLED:
            log.error(
                "card of a ready or completed order lapsed and was spent elsewhere: the order stands, its card part is unpaid",
                extra={"order_id": order.order_id, "card_id": order.card_id, "card_discount_fen": order.card_discount_fen},
            )
        return await self._drive(order, budget)

    async def sweep(self, *, startup: bool = False, limit: int = 500) -> SweepReport:
        """One recovery pass. At startup every PLACING row is an orphan (no task of this process
        can own it yet); later only rows untouched for placing_grace_seconds."""
        report = SweepReport()
        now = self._now()
        placing_before = now + 1 if startup else now - self.config.placing_grace_seconds * 1000
        due = await self.store.due(now, placing_before, limit, self._sweep_after)
        # The next pass goes on after this one's last row, and from the start once it reached
        # the end: rows that keep failing (a compensation a lasting upstream error refuses) were
        # read first by every pass, and 500 of them stopped every other order's expiry and
        # recovery for good.
        self._sweep_after = due[-1].order_id if len(due) == limit else ""
        for order in due:
            if order.order_id in self._flights:
                continue  # a live task owns it
            # Claimed like a placement, so a concurrent retry waits for the outcome.
            flight = self._fly(order.order_id, order.request_hash, self._sweep_one(order, now, report))
            try:
                await asyncio.shield(flight.answer)
            except DomainError as exc:
                report.failed += 1
                report.errors.append(f"{order.order_id}: {exc.reason}")
                if isinstance(exc, (Unavailable, DeadlineExceeded)):
                    # An upstream is down or hanging: the rest of the pass would only wait on it.
                    break
            except PaymentTimeout:
                # The provider is slow (a refund or settle): the next pass asks again. Logged
                # with a traceback as a failure of ours, it was an ERROR line per pass.
                report.failed += 1
                report.errors.append(f"{order.order_id}: PAYMENT_PROVIDER_TIMEOUT")
                log.warning("sweep: payment provider timed out", extra={"order_id": order.order_id})
                break
            except Exception as exc:  # one broken row must not stop the pass
                report.failed += 1
                report.errors.append(f"{order.order_id}: {exc!r}")
                log.exception("sweep failed", extra={"order_id": order.order_id})
        try:
            # Request ids older than a week (model.REQUEST_MEMORY_MS), in batches of `limit` (each
            # its own short transaction) up to FORGET_BATCHES_PER_PASS: one batch per 5 s pass
            # forgot 100 a second, fewer than a busy week of payments, cancels and cart lines
            # records, so the table could grow for good. Refused placements go the same way:
            # they keep their row only to answer their request_id, as long as request ids are
            # remembered, not for the rest of the campaign.
            for forget in (self.store.forget_requests, self.store.forget_aborted):
                for _ in range(FORGET_BATCHES_PER_PASS):
                    if await forget(now - model.REQUEST_MEMORY_MS, limit) < limit:
                        break
        except Exception as exc:  # they wait for the next pass
            log.warning("old request ids not forgotten", extra={"error": repr(exc)})
        await self._card_watermark_pass(startup, report)
        return report

    # --- placements whose row was never written ---------------------------------------------
    #
    # A new request writes its row only after the card call, so a crash in between leaves a
    # card held or redeemed for an order that does not exist. The card watermark (stored)
    # bounds where such reservations can be: every reservation created before it belongs to an
    # order row or was undone. Each pass moves it up to the oldest placement in flight (minus
    # a margin for the card service's clock); the first pass after a start lists the card
    # service's reservations from the stored watermark and undoes those of this service that
    # no row knows about. A failure to undo one later (card or store down) schedules the same.

    def _rescan_from(self, at_ms: int) -> None:
        since = at_ms - WATERMARK_MARGIN_MS
        self._scan_since = since if self._scan_since is None else min(self._scan_since, since)

    async def _card_watermark_pass(self, startup: bool, report: SweepReport) -> None:
        if startup:
            stored = await self.store.card_watermark()
            if stored is not None:
                self._rescan_from(stored + WATERMARK_MARGIN_MS)
        if self._scan_since is not None:
            try:
                await self._recover_unwritten(self._scan_since, report)
            except Exception as exc:  # the watermark stays put until a pass gets through
                report.failed += 1
                report.errors.append(f"card reservations: {getattr(exc, 'reason', repr(exc))}")
                return
            self._scan_since = None
        now = self._now()
        oldest = min((f.start_ms for f in self._flights.values()), default=now)
        self._watermark_ms = await self.store.advance_card_watermark(min(oldest, now) - WATERMARK_MARGIN_MS)
        self._watermark_set = True

    async def _recover_unwritten(self, since_ms: int, report: SweepReport) -> None:
        token = ""
        while True:
            page, token = await self.card.list_reservations(since_ms, token, timeout=self.config.sweep_call_timeout)
            for reservation in page:
                if await self._is_unwritten(reservation):
                    order_id = model.parse_reservation_key(reservation.key)[0]  # type: ignore[index]
                    # Claimed like a placement: a retry of the same request waits for the undo,
                    # then starts a new attempt.
                    flight = self._fly(order_id, None, self._undo_unwritten(reservation.key))
                    await asyncio.shield(flight.answer)
                    report.recovered += 1
            if not token:
                return

    async def _is_unwritten(self, reservation: Reservation) -> bool:
        if reservation.state not in (HELD, CONFIRMED):
            return False
        parsed = model.parse_reservation_key(reservation.key)
        if parsed is None:
            return False  # not one of ours
        order_id, attempt = parsed
        if order_id in self._flights:
            return False  # a live placement owns it
        row = await self.store.get(order_id)
        if row is not None and row.attempt >= attempt:
            return False  # the row knows this attempt (or a later one, after undoing it)
        # Asked again after the read: a placement that started meanwhile owns it now.
        return order_id not in self._flights

    async def _undo_unwritten(self, key: str) -> None:
        timeout = self.config.sweep_call_timeout
        reservation = await self.card.release(key, timeout=timeout)
        if reservation is not None and reservation.state == CONFIRMED:
            await self.card.refund(key, timeout=timeout)
        log.warning("card reservation without an order undone", extra={"reservation_key": key})
        return None

    async def _undo_unwritten_quietly(self, key: str, create_ms: int) -> None:
        try:
            await self._undo_unwritten(key)
        except Exception as exc:
            log.warning("undo deferred to the recovery pass", extra={"reservation_key": key, "error": repr(exc)})
            self._rescan_from(create_ms)

    async def _sweep_one(self, order: Order, now: int, report: SweepReport) -> Order:
        budget = _budget(self.config.sweep_call_timeout)
        if order.status == model.PLACING:
            done = await self._recover_placing(order, budget)
            report.recovered += 1
            return done or order
        if order.status == model.PENDING_PAYMENT and order.payment.expire_ms <= now:
            order = await self._expire(order, budget)
            report.expired += 1
        if order.card_action or order.payment_action:
            order = await self._drive(order, budget)
            report.driven += 1
        return order

    async def start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def stop_sweeper(self) -> None:
        await self.drain()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except (asyncio.CancelledError, Exception):
                pass
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        startup = True
        while True:
            try:
                report = await self.sweep(startup=startup)
                startup = False
                if report.failed:
                    log.warning("sweep left work for later", extra={"failed": report.failed, "errors": report.errors[:5]})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep pass failed")
            await asyncio.sleep(self.config.sweep_interval_seconds)


def _cart_taken(order: Order) -> CartTaken | None:
    """The cart lines a from_cart order's write takes; None for other orders and for from_cart
    rows of the previous release, which kept none (their write empties the user's cart)."""
    return CartTaken(order.user_id, order.cart_keys) if order.cart_keys else None


def _merchant_id(user_id: str, merchant: MerchantScope | None) -> str:
    """The merchant whose request ids a call's request_id is one of ("" for a buyer's call, and
    for the platform's merchant credential): see model.RequestKey."""
    return "" if user_id or merchant is None else merchant.merchant_id


def _request_id_reused() -> DomainError:
    return request_id_reused()


def _owned_by(user_id: str) -> Any:
    """The guard of a buyer's call on an order (apply_request)."""
    return lambda cur: model.check_owner(cur, user_id)


def _as_is(cur: Order) -> Order:
    return cur


def _paid(order: Order) -> bool:
    """ConfirmPayment's own success: the order PAID by this money."""
    return order.status == model.PAID and order.payment.status == model.PAY_CAPTURED


def selections_of(lines: Sequence[Any]) -> tuple[Selection, ...]:
    """Proto LineSelections -> model selections (kept here so servicer and bench share it)."""
    return tuple(
        Selection(l.item_id, l.quantity, tuple((o.group_id, o.option_id) for o in l.options)) for l in lines
    )

