"""The order store: a Protocol the handlers use, and its SQLite implementation.

synchronous=NORMAL (WAL): an acknowledged order survives kill -9 of the process, which is the
failure the saga is designed around; on power loss the last few commits could be lost, and the
recovery pass then meets cards held for orders it does not know about, which the card
service's reservation TTL returns. FULL would cost an fsync per group commit on the hot path.
Without an fsync at commit, and with every write touching one order or one cart, the writes run
on the event-loop thread (`writes_on_loop`, services/common/db.py): no thread hop per batch and
no GIL hand-off per statement (bench-order: the order service's CPU per order 1,229-1,237 ->
964-1,127 µs, with orjson docs, in interleaved runs).

Every state change is one `db.write` that loads the row, applies a pure model function and
writes it back inside the same transaction, so a transition is checked against the state it
replaces (no read-then-write races between handlers, the sweep and concurrent calls).

Cost of a placement: one write. A new request writes its row once, after the card call, as
the finished order (`insert_placed`: one INSERT, PAID or PENDING_PAYMENT); a crash between the
card call and that write is found by the recovery pass through the card service's list of
reservations since the `card_watermark` (handlers.py). The two-write path stays for a retry
of an aborted attempt and for every failure: PLACING (`begin_placement`, one INSERT; a retry
falls back to reading the row), then one conditional UPDATE of the row the saga already holds
(`expect`: written only if the stored `version` column still holds that version, else the
usual load-and-mutate). `bench.order_store` measures both.

The version lives in the doc ("v") and, since migration 2, in its own column too: the
conditional UPDATE compares the column instead of parsing the doc with json_extract (measured
~4 µs per update on a placement's doc, more as the history grows). Every write sets both.

`may_exist(order_id)`: False means "this id certainly has no row", answered from a Bloom filter
of order ids in memory (order_ids.py) instead of a point read. PlaceOrder starts with that read
to spot a retry; almost every request is new, and under write load the read costs 30-60 µs on
the loop (a WAL change drops the reader's page cache); may_exist costs 1.3-2 µs. Every insert
adds its id when it is submitted, before the write is awaited. The ids already in the table are
read in the background once open() has returned (one scan of the order_id index in a reader
thread: 0.7-1.3 s per 200k rows, ~4-6 s at a million, nearly all of it Python hashing), so a
restart serves at once instead of after that scan; until the scan is done may_exist says True
for every id (each request pays the read, as before the filter). Ids inserted during the scan
go to a filter of their own: the scan's snapshot holds every row committed before it began,
that filter every row submitted since open(), so together they miss none.
Invariant: only this process writes the orders table, and every insert into it goes through
`begin_placement` / `insert_placed` (both through `_insert`), so a False is never wrong. A store
opened on a file that another process also writes must not trust it. A False also answers
UpdateOrderStatus and CancelOrder NOT_FOUND without queueing their write (handlers.py,
`_refuse_unknown`): a wrong False would no longer cost PlaceOrder a read it skipped, but tell a
merchant or a buyer that an order they hold does not exist.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Callable, Collection, Protocol, Sequence

import orjson

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import AlreadyExists, FailedPrecondition, NotFound

from . import model
from .model import Line, Order, Payment, Selection, StatusChange
from .order_ids import KnownOrderIds

log = logging.getLogger("miandan.order")

__all__ = ["CartGone", "CartTaken", "OrderStore", "SqliteOrderStore", "MIGRATIONS", "SYNCHRONOUS", "Mutation"]

SYNCHRONOUS = "NORMAL"

MIGRATIONS = [
    """
    CREATE TABLE orders (
        order_id   TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL,
        request_id TEXT NOT NULL,
        status     TEXT NOT NULL,
        create_ms  INTEGER NOT NULL,
        update_ms  INTEGER NOT NULL,
        expire_ms  INTEGER NOT NULL DEFAULT 0,   -- payment deadline while PENDING_PAYMENT
        pending    INTEGER NOT NULL DEFAULT 0,   -- 1 while a compensation is outstanding
        doc        TEXT NOT NULL,
        UNIQUE (user_id, request_id)
    );
    CREATE INDEX orders_by_user ON orders (user_id, create_ms DESC, order_id DESC);
    CREATE INDEX orders_by_status ON orders (status, expire_ms);
    CREATE INDEX orders_pending ON orders (pending) WHERE pending = 1;
    CREATE TABLE cart_lines (
        user_id    TEXT NOT NULL,
        position   INTEGER NOT NULL,
        store_id   TEXT NOT NULL,
        request_id TEXT NOT NULL,
        selection  TEXT NOT NULL,
        PRIMARY KEY (user_id, position)
    );
    CREATE UNIQUE INDEX cart_requests ON cart_lines (user_id, request_id);
    """,
    # 2: the row version as a column, so a conditional UPDATE compares an integer instead of
    # extracting it from the JSON doc. Backfilled from the doc in the same transaction (one
    # rewrite of every row, once). A doc without "v" gets 0, which no caller's copy carries:
    # such a row takes the load-and-mutate path, and one bad row cannot keep the store shut.
    """
    ALTER TABLE orders ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    UPDATE orders SET version = COALESCE(json_extract(doc, '$.v'), 0);
    """,
    # 3: the sweep's two scans get partial indexes holding only the rows they look for, in
    # place of orders_by_status (status, expire_ms), which held every order: each status change
    # moved the row's entry (a delete and an insert), so a placement paid three index writes
    # there. Now PLACING adds one entry and PAID removes it; PAID orders, the bulk of the
    # table, are in neither index (measured: -8 to -10 µs per placement's two writes).
    """
    DROP INDEX orders_by_status;
    CREATE INDEX orders_placing ON orders (update_ms) WHERE status = 'PLACING';
    CREATE INDEX orders_awaiting_payment ON orders (expire_ms) WHERE status = 'PENDING_PAYMENT';
    """,
    # 4: named positions the service keeps across restarts. "card_watermark": every card
    # reservation made before it belongs to an order row or was undone; the recovery pass on
    # start lists the card service's reservations from there (a placement with no row yet
    # writes its row only after the card call: handlers.py).
    """
    CREATE TABLE marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    """,
    # 5: a store's orders (ListStoreOrders, the merchant's queue). The store as a column, set
    # once at insert and never updated, so the index costs one entry per order and nothing on
    # status changes. Backfilled from the doc in the same transaction.
    """
    ALTER TABLE orders ADD COLUMN store_id TEXT NOT NULL DEFAULT '';
    UPDATE orders SET store_id = COALESCE(json_extract(doc, '$.s'), '');
    CREATE INDEX orders_by_store ON orders (store_id, create_ms DESC, order_id DESC);
    """,
    # 6: the request ids of the calls that change an existing order (UpdateOrderStatus,
    # CancelOrder, ConfirmPayment: model.RequestKey), so a retry is told from a reuse. Written in
    # the transaction that applies the call (`apply_request`); `order_id` and `status` name the
    # answer (the order, and the status the call left it in); rows older than
    # model.REQUEST_MEMORY_MS are swept (`forget_requests`) as the card service sweeps its own.
    # A new table only: an existing store opens as it was, with no request remembered.
    # AddCartItem's keys are kept here too (`add_cart_line`), with order_id and status empty:
    # its answer is the cart as it is now.
    """
    CREATE TABLE requests (
        method      TEXT NOT NULL,
        scope       TEXT NOT NULL,    -- user:<user_id> (buyer) or store:<store_id> (merchant)
        request_id  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        order_id    TEXT NOT NULL,
        status      TEXT NOT NULL,
        create_ms   INTEGER NOT NULL,
        PRIMARY KEY (method, scope, request_id)
    ) WITHOUT ROWID;
    CREATE INDEX requests_age ON requests (create_ms);
    """,
]

# Indexes made when the store opens (IF NOT EXISTS), not by a migration: the previous release
# refuses a store whose schema version it does not know (services/common/db.py), while an extra
# index changes nothing it reads or writes, so a rollback still starts on the newer store.
INDEXES = [
    # A store's queue (ListStoreOrders of PAID, ACCEPTED, PREPARING or READY: what the merchant
    # still has to act on). orders_by_store holds every order the store ever had, and a listing
    # by one of those statuses read it newest first until it filled a page: with a queue shorter
    # than a page, that is the store's whole history, on every poll of the kitchen's terminal
    # (30 ms at 60,000 orders, 1,000 a day for two months). This index holds only orders in the
    # queue: an order enters it when paid and leaves when completed or cancelled, and each status
    # change in between rewrites its entry in this small index (status is in its WHERE). Its
    # WHERE is ORs, not IN: SQLite evaluates it on every status change, and builds an IN list's
    # lookup table each time (an order's insert and three status changes cost 18 µs more with
    # IN, 2 µs with ORs). The first open after the upgrade builds it in one pass over the table
    # (~0.4 s per million orders read from the page cache).
    """
    CREATE INDEX IF NOT EXISTS orders_store_queue ON orders (store_id, create_ms DESC, order_id DESC)
    WHERE status = 'PAID' OR status = 'ACCEPTED' OR status = 'PREPARING' OR status = 'READY'
    """,
    # A user's orders as ListOrders shows them: without the placements in flight (PLACING) and
    # the refused ones (ABORTED). Every refused placement keeps its row (its request_id stays
    # answered), and a script refusing itself at the gateway's 5 a second made 200,000 of them
    # in 11 hours; ListOrders read past all of them through orders_by_user, ~100 ms of a reader
    # thread per call, and the same script could ask that five times a second.
    """
    CREATE INDEX IF NOT EXISTS orders_user_listed ON orders (user_id, create_ms DESC, order_id DESC)
    WHERE status <> 'PLACING' AND status <> 'ABORTED'
    """,
    # Refused placements by age, so those older than the request-id memory are forgotten
    # (`forget_aborted`): a retry that late is a new request, as for every other request id.
    """
    CREATE INDEX IF NOT EXISTS orders_aborted ON orders (update_ms) WHERE status = 'ABORTED'
    """,
]

# The WHERE of orders_store_queue, word for word: the planner uses a partial index only for a
# query whose WHERE holds the index's own terms.
_IN_STORE_QUEUE = "(status = 'PAID' OR status = 'ACCEPTED' OR status = 'PREPARING' OR status = 'READY')"
# The WHERE of orders_user_listed, word for word.
_LISTED = "status <> 'PLACING' AND status <> 'ABORTED'"
_STORE_QUEUE = (model.PAID, model.ACCEPTED, model.PREPARING, model.READY)

# At most this many of a store's orders are read for one merchant call (a page of
# ListStoreOrders, the check that a brand grant covers the store). Merchants call from outside
# the platform: a read that followed a store's whole history (a status few of its orders are
# in, a rival brand's grant finding none of its orders there) took 30-95 ms at 60,000 orders,
# held one of the two reader threads all that time, and its latency told a rival the store's
# volume. A window of the store index reads in about a millisecond.
STORE_READ_WINDOW = 1_000

CARD_WATERMARK = "card_watermark"

Mutation = Callable[[Order], Order]


@dataclass(frozen=True)
class CartTaken:
    """The cart lines an order is made from (PlaceOrder from_cart), each by its position and the
    request_id that added it. The write of the order removes exactly these lines, and only while
    every one of them is still in the cart (`_take_cart`): emptying the whole cart threw away a
    line added while the order was being placed (the user had been told it was in the cart), and
    two placements of one cart at once (a double tap) both became orders."""

    user_id: str
    lines: tuple[tuple[int, str], ...]


class CartGone(FailedPrecondition):
    """The cart lines a placement was made from left the cart before its order was written:
    another placement ordered them, or ClearCart. Told as the call coming after that one would
    be: CART_EMPTY, or CART_CHANGED when the cart holds only lines added since."""

    def __init__(self, now_empty: bool) -> None:
        if now_empty:
            super().__init__("CART_EMPTY", "购物车是空的 / the cart is empty")
        else:
            super().__init__(
                "CART_CHANGED",
                "下单期间购物车已被下单或清空，现在的商品是之后加入的，请确认后再下单 / the cart was ordered or "
                "cleared while this order was being placed; what it holds was added since: check it and order again",
            )


class OrderStore(Protocol):
    async def get(self, order_id: str) -> Order | None: ...

    def may_exist(self, order_id: str) -> bool:
        """False: no row with this id exists (get() would return None), answered without a
        read. True: there may be one (read it). Synchronous: for the hot path."""
        ...

    async def begin_placement(self, order: Order) -> tuple[Order, bool]:
        """Insert the PLACING row, or return the existing one for this request_id: (order,
        fresh) where fresh means this caller must run the saga (a new row or a new attempt
        after an aborted one). Raises AlreadyExists REQUEST_ID_REUSED on other content."""
        ...

    async def insert_placed(self, order: Order, *, cart: CartTaken | None = None) -> Order | None:
        """Write a placement's first and only row (a finished order: PAID or PENDING_PAYMENT)
        and take the cart lines it was made from (`cart`), in one transaction. None when a row
        with its id or request_id exists already (nothing written); raises CartGone, with
        nothing written, when those lines left the cart meanwhile."""
        ...

    async def card_watermark(self) -> int | None:
        """The card watermark (ms), None while none was ever set."""
        ...

    async def start_card_watermark(self, at_ms: int) -> int:
        """Set the watermark to at_ms if none is stored; returns the stored value."""
        ...

    async def advance_card_watermark(self, at_ms: int) -> int:
        """Set the watermark to at_ms unless it is already later (it never moves back); returns
        the stored value."""
        ...

    async def lower_card_watermark(self, at_ms: int) -> int:
        """Set the watermark to at_ms unless it is already earlier; returns the stored value.
        (The wall clock stepped back: reservations are now stamped before it.)"""
        ...

    async def update(
        self, order_id: str, mutate: Mutation, *, clear_cart_of: str = "", cart: CartTaken | None = None,
        expect: Order | None = None,
    ) -> Order:
        """Apply mutate to the current row inside one transaction; returns the stored result.
        expect: the row as the caller last saw it; when the stored row is still that version,
        mutate is applied to it without reading the row back (same outcome, less work).
        When mutate changes the row: cart = take those cart lines with it (CartGone, nothing
        written, when they left the cart meanwhile); clear_cart_of = empty that user's cart."""
        ...

    async def apply_request(
        self, order_id: str, key: model.RequestKey, guard: Callable[[Order], Any], mutate: Mutation,
        *, answered: Callable[[Order], bool] | None = None,
    ) -> tuple[Order, bool]:
        """One call under its request_id, in one transaction: load the row, guard(row) (may the
        caller act on it: raises NOT_FOUND and the like), then look the key up in its scope. A
        replay (same fingerprint) returns (row as it is now, True) without calling mutate; a
        reuse raises AlreadyExists REQUEST_ID_REUSED; a new key applies mutate, stores the
        result and remembers the key with it: (result, False). answered(result) False: the call
        is not finished by this write (it goes on to another one, which remembers the key), so
        the key is not remembered here; None: always remembered."""
        ...

    async def request_fingerprint(self, key: model.RequestKey, order: Order) -> str | None:
        """The fingerprint remembered for key's request_id in its scope (order: the order the
        call acts on, which names a merchant call's scope), None when it is not remembered."""
        ...

    async def forget_requests(self, before_ms: int, limit: int) -> int:
        """Forget at most `limit` request ids remembered before before_ms; returns how many."""
        ...

    async def forget_aborted(self, before_ms: int, limit: int) -> int:
        """Delete at most `limit` refused placements (ABORTED) last written before before_ms."""
        ...

    async def list_for_user(self, user_id: str, limit: int, before: tuple[int, str] | None) -> list[Order]: ...

    async def list_all(self, limit: int, after: str) -> list[Order]: ...

    async def list_for_store(
        self, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
        brands: Collection[str] | None = None,
    ) -> list[Order]:
        """The store's orders in those statuses, newest first, keyset-paged like list_for_user;
        with `brands`, only those naming one of them."""
        ...

    async def store_page(
        self, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
        brands: Collection[str] | None = None, window: int | None = STORE_READ_WINDOW,
    ) -> tuple[list[Order], tuple[int, str] | None]:
        """list_for_store reading at most `window` of the store's orders after `before` (of its
        queue, for statuses of the queue): the orders found, and where the reading stopped when
        it stopped short of the end without `limit` orders (the next page goes on after it)."""
        ...

    async def store_has_brand(self, store_id: str, brands: Collection[str]) -> bool | None:
        """Whether the store's newest order names one of `brands`, or one of its latest
        STORE_READ_WINDOW orders or of its latest STORE_READ_WINDOW orders to act on (an import
        may move a store to another brand: the former brand keeps its queue there); None when the
        store has no orders."""
        ...

    async def due(self, now_ms: int, placing_before_ms: int, limit: int, after: str = "") -> list[Order]:
        """Orders the sweep must act on: stale PLACING rows, lapsed PENDING_PAYMENT ones and
        rows with an outstanding compensation; by order id, those after `after` only."""
        ...

    async def cart(self, user_id: str) -> tuple[str, list[Selection]]: ...

    async def cart_to_order(self, user_id: str) -> tuple[str, list[Selection], CartTaken]:
        """The cart as `cart` reads it, and which lines those are: what a placement from the
        cart takes when its order is written (insert_placed / update with cart=)."""
        ...

    async def cart_line(self, user_id: str, request_id: str) -> tuple[str, Selection] | None:
        """(store_id, selection) of the line this request_id added to the user's cart, None when
        no line of the cart came from it."""
        ...

    async def cart_request_seen(self, key: model.RequestKey, store_id: str, selection: Selection) -> bool:
        """True when key's request already added its line (a replay: the line may have left the
        cart since), False for a new request; raises AlreadyExists REQUEST_ID_REUSED when that
        request_id added a different line. A point read, for the early check."""
        ...

    async def add_cart_line(self, key: model.RequestKey, store_id: str, selection: Selection) -> bool:
        """Append the line to key.user_id's cart and remember key (forgotten with the other
        request ids: forget_requests), in one transaction: True. False, with nothing added, for
        a replay of a request that added its line (even if cleared or ordered since); raises
        AlreadyExists REQUEST_ID_REUSED when that request_id added a different line."""
        ...

    async def clear_cart(self, user_id: str, request_id: str = "", now_ms: int = 0) -> bool: ...


# --- (de)serialisation ----------------------------------------------------------------------

def to_doc(o: Order) -> str:
    doc: dict[str, Any] = {
        "rid": o.request_id,
        "rh": o.request_hash,
        "u": o.user_id,
        "s": o.store_id,
        "sn": o.store_name,
        "b": o.brand_id,
        "cp": o.campaign_id,
        "l": [ln.to_json() for ln in o.lines],
        "st": o.subtotal_fen,
        "cu": o.card_use,
        "rc": o.requested_card_id,
        "status": o.status,
        "c": o.create_ms,
        "m": o.update_ms,
        "h": [[h.status, h.time_ms, h.actor, h.note] for h in o.history],
        "card": o.card_id,
        "disc": o.card_discount_fen,
        "pay": o.payable_fen,
        "p": o.payment.to_json(),
        "cr": o.cancel_reason,
        "ret": o.card_returned,
        "a": o.attempt,
        "v": o.version,
        "ca": o.card_action,
        "pa": o.payment_action,
        "fc": o.from_cart,
        "e": list(o.error),
    }
    if o.cart_keys:
        # Only on from_cart orders: every other doc stays the text it was.
        doc["ck"] = [list(k) for k in o.cart_keys]
    return model.compact_json(doc)


def from_doc(order_id: str, doc: str) -> Order:
    try:
        d = orjson.loads(doc)
    except orjson.JSONDecodeError:
        # Text the stdlib reads and orjson refuses (NaN, ints beyond 64 bits): to_doc writes
        # none, but any row json.loads could open must still open.
        d = json.loads(doc)
    # Filled like model.revised, not through Order's generated __init__ (one object.__setattr__
    # per field: ~10 of the ~17 µs left after orjson). Every field is set here, so the result is
    # the same; tests/unit/order/test_order_doc_json.py checks the round trip covers them all.
    o = object.__new__(Order)
    o.__dict__.update(
        order_id=order_id,
        request_id=d["rid"],
        request_hash=d["rh"],
        user_id=d["u"],
        store_id=d["s"],
        store_name=d["sn"],
        brand_id=d["b"],
        campaign_id=d["cp"],
        lines=tuple(Line.from_json(x) for x in d["l"]),
        subtotal_fen=d["st"],
        card_use=d["cu"],
        requested_card_id=d["rc"],
        status=d["status"],
        create_ms=d["c"],
        update_ms=d["m"],
        history=tuple(StatusChange(*h) for h in d["h"]),
        card_id=d["card"],
        card_discount_fen=d["disc"],
        payable_fen=d["pay"],
        payment=Payment.from_json(d["p"]),
        cancel_reason=d["cr"],
        card_returned=d["ret"],
        attempt=d["a"],
        version=d["v"],
        card_action=d["ca"],
        payment_action=d["pa"],
        from_cart=d["fc"],
        error=tuple(d["e"]),
        # Absent from rows written before lines were kept, and from orders not made from a cart.
        cart_keys=tuple((k[0], k[1]) for k in d["ck"]) if "ck" in d else (),
    )
    return o


def _row_values(o: Order) -> tuple[Any, ...]:
    expire = o.payment.expire_ms if o.status == model.PENDING_PAYMENT else 0
    pending = 1 if (o.card_action or o.payment_action) else 0
    return (o.status, o.update_ms, expire, pending, to_doc(o), o.version)


# --- functions run in the writer / reader thread ----------------------------------------------


def _make_indexes(conn: sqlite3.Connection) -> None:
    for script in INDEXES:
        conn.execute(script)


def _load(conn: sqlite3.Connection, order_id: str) -> Order | None:
    row = conn.execute("SELECT doc FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else from_doc(order_id, row[0])


# The filter's room at open: four times the rows already there, so growth before the next
# restart stays within it, and at least a million (1.2 MB at 1 %).
MIN_KNOWN_CAPACITY = 1_000_000
# Room for the ids inserted while the table's are read (seconds of placements; 120 KB at 1 %).
SINCE_OPEN_CAPACITY = 100_000


def _known_order_ids(conn: sqlite3.Connection) -> KnownOrderIds:
    """Every order id in the table, in a filter sized for growth. Both queries read only the
    primary key's index (covering), not the rows and their docs."""
    rows = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    known = KnownOrderIds(max(MIN_KNOWN_CAPACITY, 4 * rows))
    add = known.add
    for (order_id,) in conn.execute("SELECT order_id FROM orders"):
        add(order_id)
    return known


def _store(conn: sqlite3.Connection, o: Order) -> None:
    conn.execute(
        "UPDATE orders SET status = ?, update_ms = ?, expire_ms = ?, pending = ?, doc = ?, version = ? WHERE order_id = ?",
        (*_row_values(o), o.order_id),
    )


def _insert(conn: sqlite3.Connection, o: Order) -> bool:
    status, update_ms, expire, pending, doc, version = _row_values(o)
    return conn.execute(
        "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, expire_ms, pending, doc, version, store_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (o.order_id, o.user_id, o.request_id, status, o.create_ms, update_ms, expire, pending, doc, version, o.store_id),
    ).rowcount == 1


def _insert_placed(conn: sqlite3.Connection, o: Order, cart: CartTaken | None) -> bool:
    if not _insert(conn, o):
        return False
    if cart is not None:
        _take_cart(conn, cart)  # raises when the lines are gone: the insert is undone with it
    return True


def _card_watermark(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM marks WHERE name = ?", (CARD_WATERMARK,)).fetchone()
    return None if row is None else int(row[0])


def _start_card_watermark(conn: sqlite3.Connection, at_ms: int) -> int:
    conn.execute("INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (CARD_WATERMARK, at_ms))
    return _card_watermark(conn)  # type: ignore[return-value]


def _advance_card_watermark(conn: sqlite3.Connection, at_ms: int) -> int:
    conn.execute(
        "INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
        (CARD_WATERMARK, at_ms),
    )
    return _card_watermark(conn)  # type: ignore[return-value]


def _lower_card_watermark(conn: sqlite3.Connection, at_ms: int) -> int:
    conn.execute(
        "INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = MIN(value, excluded.value)",
        (CARD_WATERMARK, at_ms),
    )
    return _card_watermark(conn)  # type: ignore[return-value]


def _begin_placement(conn: sqlite3.Connection, o: Order) -> tuple[Order, bool]:
    # Insert first (the common case: a new request); only a retry reads the existing row.
    if _insert(conn, o):
        return o, True
    existing = _load(conn, o.order_id)
    if existing is None:
        # (user_id, request_id) is unique and order_id derives from it: only the order_id can
        # have collided, so the row exists; anything else is a corrupt store.
        raise AlreadyExists("REQUEST_ID_REUSED", "订单号冲突 / order id conflict")
    if existing.request_hash != o.request_hash:
        raise request_id_reused()
    if existing.status == model.ABORTED:
        # The earlier attempt failed and was compensated: the retry is a new attempt with fresh
        # prices, under a new reservation key.
        restarted = replace(
            o,
            attempt=existing.attempt + 1,
            version=existing.version + 1,
            create_ms=existing.create_ms,
        )
        _store(conn, restarted)
        return restarted, True
    return existing, False


def _update(
    conn: sqlite3.Connection, order_id: str, mutate: Mutation, clear_cart_of: str, expect: Order | None = None,
    cart: CartTaken | None = None,
) -> tuple[Order, bool, Order]:
    """(the order as it is now, whether this call wrote a change, the order before it)."""
    if expect is not None:
        # The caller holds the row as it last wrote or read it: apply mutate to that copy and
        # write it only if the stored row is still that version (every change bumps version),
        # which skips loading and decoding the row on the hot path. Any other state falls
        # through to the load-and-mutate path below.
        try:
            changed = mutate(expect)
        except Exception:
            changed = expect  # judged on the stored row below instead
        if changed is not expect:
            cur = conn.execute(
                "UPDATE orders SET status = ?, update_ms = ?, expire_ms = ?, pending = ?, doc = ?, version = ?"
                " WHERE order_id = ? AND status = ? AND version = ?",
                (*_row_values(changed), order_id, expect.status, expect.version),
            )
            if cur.rowcount == 1:
                _empty_cart(conn, clear_cart_of, cart)
                return changed, True, expect
    current = _load(conn, order_id)
    if current is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在 / order not found")
    changed = mutate(current)
    if changed is not current:
        _store(conn, changed)
        _empty_cart(conn, clear_cart_of, cart)
    return changed, changed is not current, current


def _empty_cart(conn: sqlite3.Connection, clear_cart_of: str, cart: CartTaken | None) -> None:
    if cart is not None:
        _take_cart(conn, cart)  # raises when the lines are gone: the row's change is undone with it
    elif clear_cart_of:
        conn.execute("DELETE FROM cart_lines WHERE user_id = ?", (clear_cart_of,))


def _remembered(conn: sqlite3.Connection, key: model.RequestKey, scope: str) -> str | None:
    row = conn.execute(
        "SELECT fingerprint FROM requests WHERE method = ? AND scope = ? AND request_id = ?",
        (key.method, scope, key.request_id),
    ).fetchone()
    return None if row is None else row[0]


def _apply_request(
    conn: sqlite3.Connection, order_id: str, key: model.RequestKey, guard: Callable[[Order], Any], mutate: Mutation,
    answered: Callable[[Order], bool] | None,
) -> tuple[Order, bool, bool, Order]:
    """(the order as it is now, whether the call is a replay, whether it wrote a change, the
    order before it)."""
    # The load-and-mutate path of _update, with the key checked and written in the same
    # transaction: the single writer makes check, change and record one step, so of concurrent
    # calls under one key exactly one applies and the others meet its record.
    current = _load(conn, order_id)
    if current is None:
        raise NotFound("ORDER_NOT_FOUND", "订单不存在 / order not found")
    guard(current)  # before the key: a caller learns nothing of orders it may not act on
    scope = key.scope(current)
    seen = _remembered(conn, key, scope)
    if seen is not None:
        if seen != key.fingerprint:
            raise request_id_reused()
        return current, True, False, current
    changed = mutate(current)
    written = changed is not current
    if written:
        _store(conn, changed)
    if answered is not None and not answered(changed):
        return changed, False, written, current
    conn.execute(
        "INSERT INTO requests (method, scope, request_id, fingerprint, order_id, status, create_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key.method, scope, key.request_id, key.fingerprint, order_id, changed.status, key.at_ms),
    )
    return changed, False, written, current


def _request_fingerprint(conn: sqlite3.Connection, key: model.RequestKey, scope: str) -> str | None:
    return _remembered(conn, key, scope)


def _forget_requests(conn: sqlite3.Connection, before_ms: int, limit: int) -> int:
    # As the card service's sweep forgets its request ids: oldest first by the age index, a
    # bounded number per pass.
    return conn.execute(
        "DELETE FROM requests WHERE (method, scope, request_id) IN"
        " (SELECT method, scope, request_id FROM requests WHERE create_ms < ? LIMIT ?)",
        (before_ms, limit),
    ).rowcount


def _list_for_user(conn: sqlite3.Connection, user_id: str, limit: int, before: tuple[int, str] | None) -> list[Order]:
    live = model.LIVE_STATUSES
    marks = ",".join("?" * len(live))
    # orders_user_listed's own WHERE terms, word for word, so the planner may use it (INDEXED BY
    # says it must: it is made when the store opens).
    listed = f"FROM orders INDEXED BY orders_user_listed WHERE user_id = ? AND {_LISTED} AND status IN ({marks})"
    if before is None:
        rows = conn.execute(
            f"SELECT order_id, doc {listed} ORDER BY create_ms DESC, order_id DESC LIMIT ?",
            (user_id, *live, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT order_id, doc {listed} AND (create_ms < ? OR (create_ms = ? AND order_id < ?))"
            " ORDER BY create_ms DESC, order_id DESC LIMIT ?",
            (user_id, *live, before[0], before[0], before[1], limit),
        ).fetchall()
    return [from_doc(r[0], r[1]) for r in rows]


def _forget_aborted(conn: sqlite3.Connection, before_ms: int, limit: int) -> int:
    return conn.execute(
        "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders INDEXED BY orders_aborted"
        " WHERE status = 'ABORTED' AND update_ms < ? LIMIT ?)",
        (before_ms, limit),
    ).rowcount


def _list_for_store(
    conn: sqlite3.Connection, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
    brands: Collection[str] | None = None,
) -> list[Order]:
    return _store_page(conn, store_id, statuses, limit, before, brands, None)[0]


def _store_page(
    conn: sqlite3.Connection, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
    brands: Collection[str] | None, window: int | None,
) -> tuple[list[Order], tuple[int, str] | None]:
    marks = ",".join("?" * len(statuses))
    queue = f" AND {_IN_STORE_QUEUE}" if all(s in _STORE_QUEUE for s in statuses) else ""
    # `create_ms <= ?` beside the exact condition: a range the index seeks to, where the OR
    # alone was checked entry by entry from the store's newest order down to the page.
    page = "" if before is None else " AND create_ms <= ? AND (create_ms < ? OR (create_ms = ? AND order_id < ?))"
    page_args = () if before is None else (before[0], before[0], before[0], before[1])
    stop: tuple[int, str] | None = None
    floor, floor_args = "", ()
    if window is not None:
        # Where the window ends, from the index alone; None when the rest of the store fits in it.
        edge = conn.execute(
            f"SELECT create_ms, order_id FROM orders WHERE store_id = ?{queue}{page}"
            " ORDER BY create_ms DESC, order_id DESC LIMIT 2 OFFSET ?",
            (store_id, *page_args, window - 1),
        ).fetchall()
        if len(edge) == 2:
            stop = (edge[0][0], edge[0][1])
            floor = " AND create_ms >= ? AND (create_ms > ? OR (create_ms = ? AND order_id >= ?))"
            floor_args = (stop[0], stop[0], stop[0], stop[1])
    # The brand lives in the document only; the store's index still bounds the rows read.
    of_brands = "" if brands is None else f" AND json_extract(doc, '$.b') IN ({','.join('?' * len(brands))})"
    rows = conn.execute(
        f"SELECT order_id, doc FROM orders WHERE store_id = ? AND status IN ({marks}){queue}{page}{floor}{of_brands}"
        " ORDER BY create_ms DESC, order_id DESC LIMIT ?",
        (store_id, *statuses, *page_args, *floor_args, *(brands or ()), limit),
    ).fetchall()
    orders = [from_doc(r[0], r[1]) for r in rows]
    return orders, (stop if len(orders) < limit else None)


def _store_has_brand(conn: sqlite3.Connection, store_id: str, brands: Collection[str]) -> bool | None:
    # The newest order first: it names the store's brand unless the store changed brands, so
    # the grant of the store's brand is answered from one row.
    row = conn.execute(
        "SELECT doc FROM orders WHERE store_id = ? ORDER BY create_ms DESC, order_id DESC LIMIT 1", (store_id,)
    ).fetchone()
    if row is None:
        return None
    if json.loads(row[0]).get("b", "") in brands:
        return True
    if not brands:
        return False
    # Then a window of its latest orders and of its queue, never its whole history: the answer
    # for a rival's store took as long as the rival had orders (STORE_READ_WINDOW).
    marks = ",".join("?" * len(brands))
    for queue in ("", f" AND {_IN_STORE_QUEUE}"):
        found = conn.execute(
            f"SELECT 1 FROM (SELECT doc FROM orders WHERE store_id = ?{queue} ORDER BY create_ms DESC, order_id DESC LIMIT ?)"
            f" WHERE json_extract(doc, '$.b') IN ({marks}) LIMIT 1",
            (store_id, STORE_READ_WINDOW, *brands),
        ).fetchone()
        if found is not None:
            return True
    return False


def _list_all(conn: sqlite3.Connection, limit: int, after: str) -> list[Order]:
    live = model.LIVE_STATUSES
    marks = ",".join("?" * len(live))
    rows = conn.execute(
        f"SELECT order_id, doc FROM orders WHERE order_id > ? AND status IN ({marks}) ORDER BY order_id LIMIT ?",
        (after, *live, limit),
    ).fetchall()
    return [from_doc(r[0], r[1]) for r in rows]


# The statuses are literals, not parameters: the planner picks a partial index only when the
# query's WHERE implies the index's (orders_placing, orders_awaiting_payment: migration 3).
# `+order_id`: the sweep's cursor filters the rows each partial index finds; as a plain term the
# planner walked the primary key from the cursor instead, reading every order after it.
_DUE = (
    f"SELECT order_id, doc FROM orders WHERE status = '{model.PLACING}' AND update_ms < ? AND +order_id > ?"
    f" UNION SELECT order_id, doc FROM orders WHERE status = '{model.PENDING_PAYMENT}' AND expire_ms <= ? AND +order_id > ?"
    " UNION SELECT order_id, doc FROM orders WHERE pending = 1 AND +order_id > ?"
    " ORDER BY order_id LIMIT ?"
)


def _due(conn: sqlite3.Connection, now_ms: int, placing_before_ms: int, limit: int, after: str = "") -> list[Order]:
    rows = conn.execute(_DUE, (placing_before_ms, after, now_ms, after, after, limit)).fetchall()
    return [from_doc(r[0], r[1]) for r in rows]


def _cart(conn: sqlite3.Connection, user_id: str) -> tuple[str, list[Selection]]:
    rows = conn.execute(
        "SELECT store_id, selection FROM cart_lines WHERE user_id = ? ORDER BY position", (user_id,)
    ).fetchall()
    if not rows:
        return "", []
    return rows[0][0], [Selection.from_json(json.loads(r[1])) for r in rows]


def _cart_to_order(conn: sqlite3.Connection, user_id: str) -> tuple[str, list[Selection], CartTaken]:
    rows = conn.execute(
        "SELECT position, request_id, store_id, selection FROM cart_lines WHERE user_id = ? ORDER BY position", (user_id,)
    ).fetchall()
    taken = CartTaken(user_id, tuple((r[0], r[1]) for r in rows))
    if not rows:
        return "", [], taken
    return rows[0][2], [Selection.from_json(json.loads(r[3])) for r in rows], taken


def _take_cart(conn: sqlite3.Connection, cart: CartTaken) -> None:
    """Remove the lines an order was made from, in the transaction that writes the order. Raises
    CartGone when any of them is gone already (the caller's write is undone with it)."""
    removed = 0
    for position, request_id in cart.lines:
        removed += conn.execute(
            "DELETE FROM cart_lines WHERE user_id = ? AND position = ? AND request_id = ?",
            (cart.user_id, position, request_id),
        ).rowcount
    if removed != len(cart.lines):
        left = conn.execute("SELECT 1 FROM cart_lines WHERE user_id = ? LIMIT 1", (cart.user_id,)).fetchone()
        raise CartGone(now_empty=left is None)


def _cart_line(conn: sqlite3.Connection, user_id: str, request_id: str) -> tuple[str, Selection] | None:
    """The line a request_id added to the user's cart (store, selection), None if it has none."""
    row = conn.execute(
        "SELECT store_id, selection FROM cart_lines WHERE user_id = ? AND request_id = ?", (user_id, request_id)
    ).fetchone()
    return None if row is None else (row[0], Selection.from_json(json.loads(row[1])))


def _cart_request_seen(conn: sqlite3.Connection, key: model.RequestKey, store_id: str, sel: Selection) -> bool:
    seen = _remembered(conn, key, key.user_scope)
    if seen is None:
        return _added_by_line(conn, key, store_id, sel)
    if seen != key.fingerprint:
        raise cart_request_reused()
    return True


def _added_by_line(conn: sqlite3.Connection, key: model.RequestKey, store_id: str, sel: Selection) -> bool:
    """A line in the cart is its request's record too: for lines added before keys were
    remembered, and for lines that stay in the cart longer than their key is remembered."""
    added = _cart_line(conn, key.user_id, key.request_id)
    if added is None:
        return False
    if added != (store_id, sel):
        raise cart_request_reused()
    return True


def _add_cart_line(conn: sqlite3.Connection, key: model.RequestKey, store_id: str, sel: Selection) -> bool:
    # Remembered first, as the card store does (INSERT OR IGNORE): a new request, the usual
    # case, reads no record. Every refusal below raises, which undoes the record with the rest.
    scope = key.user_scope
    if conn.execute(
        "INSERT OR IGNORE INTO requests (method, scope, request_id, fingerprint, order_id, status, create_ms)"
        " VALUES (?, ?, ?, ?, '', '', ?)",
        (key.method, scope, key.request_id, key.fingerprint, key.at_ms),
    ).rowcount == 0:
        if _remembered(conn, key, scope) != key.fingerprint:
            raise cart_request_reused()
        return False
    if _added_by_line(conn, key, store_id, sel):
        return False
    user_id = key.user_id
    row = conn.execute(
        "SELECT store_id, COUNT(*), COALESCE(MAX(position), -1) FROM cart_lines WHERE user_id = ?", (user_id,)
    ).fetchone()
    cart_store, count, last = row[0], row[1], row[2]
    if count and cart_store != store_id:
        raise FailedPrecondition(
            "CART_STORE_MISMATCH",
            "购物车里是另一家店的商品，请先清空 / the cart holds another store's items: clear it first",
        )
    if count >= model.MAX_CART_LINES:
        raise model.cart_full()
    conn.execute(
        "INSERT INTO cart_lines (user_id, position, store_id, request_id, selection) VALUES (?, ?, ?, ?, ?)",
        (user_id, last + 1, store_id, key.request_id, json.dumps(sel.to_json(), separators=(",", ":"))),
    )
    return True


def request_id_reused() -> AlreadyExists:
    """A request_id already used for a different request on an order (PlaceOrder and the calls
    under a model.RequestKey)."""
    return AlreadyExists(
        "REQUEST_ID_REUSED",
        "这个 request_id 已用于另一个订单请求 / this request_id was already used for a different order request",
    )


def cart_request_reused() -> AlreadyExists:
    return AlreadyExists(
        "REQUEST_ID_REUSED",
        "这个 request_id 已用于另一行购物车商品 / this request_id was already used to add a different cart line",
    )


CLEAR_CART = "ClearCart"


def _clear_cart(conn: sqlite3.Connection, user_id: str, request_id: str, now_ms: int) -> bool:
    """Empty the cart; False (nothing done) when this user's request_id already emptied it: every
    line in the cart now was added after that clear, and a late retry must not throw it away."""
    if request_id:
        scope = f"user:{user_id}"
        seen = conn.execute(
            "SELECT 1 FROM requests WHERE method = ? AND scope = ? AND request_id = ?", (CLEAR_CART, scope, request_id)
        ).fetchone()
        if seen is not None:
            return False
        # Forgotten with the other request ids (the order sweep); nothing else to tell apart.
        conn.execute(
            "INSERT INTO requests (method, scope, request_id, fingerprint, order_id, status, create_ms) VALUES (?, ?, ?, '', '', '', ?)",
            (CLEAR_CART, scope, request_id, now_ms),
        )
    conn.execute("DELETE FROM cart_lines WHERE user_id = ?", (user_id,))
    return True


class SqliteOrderStore:
    """OrderStore over services.common.db. `listener(order, before)` is called after every
    committed change (feeds WatchOrder and WatchStoreOrders); `before` is the order as it was,
    None for a new row."""

    def __init__(self, db: Database, listener: Callable[[Order, Order | None], None] | None = None) -> None:
        self.db = db
        self.listener = listener
        # The order ids this store may hold (module docstring): None until the table's ids are
        # read, and meanwhile may_exist says True for every id. A list of filters: see
        # _remember for why it grows instead of being rebuilt.
        self._known: list[KnownOrderIds] | None = None
        # Ids submitted while the table's ids are being read (module docstring).
        self._since_open: KnownOrderIds | None = None
        self._reading_ids: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, path: Any, *, clock: Clock | None = None, listener: Callable[[Order, Order | None], None] | None = None
    ) -> "SqliteOrderStore":
        # Writes on the loop thread: see the module docstring.
        db = await Database.open(path, MIGRATIONS, synchronous=SYNCHRONOUS, clock=clock, readers=2, writes_on_loop=True)
        try:
            await db.write(_make_indexes)
        except BaseException:
            await db.close()
            raise
        store = cls(db, listener)
        # Before the store is handed out: every insert from here on lands in this filter.
        store._since_open = KnownOrderIds(SINCE_OPEN_CAPACITY)
        store._reading_ids = asyncio.get_running_loop().create_task(store._read_known_ids())
        return store

    async def _read_known_ids(self) -> None:
        try:
            in_table = await self.db.read(_known_order_ids)
        except Exception:
            # Not fatal: may_exist keeps saying True, and every request reads its row.
            log.exception("could not read the order ids; every PlaceOrder reads its row until a restart")
            return
        assert self._since_open is not None
        # The table's filter last: it has the room (4x the rows) for the inserts to come.
        self._known = [self._since_open, in_table]
        self._since_open = None

    async def ids_read(self) -> None:
        """Wait until may_exist answers from the filter (tests, benchmarks)."""
        if self._reading_ids is not None:
            await asyncio.shield(self._reading_ids)

    async def close(self) -> None:
        if self._reading_ids is not None and not self._reading_ids.done():
            self._reading_ids.cancel()
            await asyncio.gather(self._reading_ids, return_exceptions=True)
        await self.db.close()

    def may_exist(self, order_id: str) -> bool:
        known = self._known
        if known is None:
            return True
        for ids in known:
            if ids.may_contain(order_id):
                return True
        return False

    def _remember(self, order_id: str) -> None:
        """Called as an insert is submitted, before its write is awaited: from then on a reader
        may find the row, so may_exist must already say True (an insert that then fails or
        finds a row leaves only a false positive)."""
        known = self._known
        if known is None:
            if self._since_open is not None:
                self._since_open.add(order_id)
            return
        newest = known[-1]
        newest.add(order_id)
        if newest.load() >= 1.0:
            # Full: start a filter twice its size beside it rather than rebuild. A rebuild
            # would scan every row again (seconds of GIL-holding work at millions of rows,
            # taken from the loop) and must not lose ids whose inserts are in flight during
            # the scan; a new layer needs neither, never forgets an id, and keeps the rate
            # near the sum of the layers' (a few %, after 1+2+4 times the first size). Just
            # answering True more often would let the rate climb towards 100 %: the read
            # this exists to skip would come back for every request. The next open()
            # folds the layers into one.
            known.append(KnownOrderIds(2 * newest.capacity, newest.fp_rate))

    def _changed(self, order: Order, before: Order | None = None) -> None:
        if self.listener is not None:
            self.listener(order, before)

    def _write_heard(self, fn: Callable[..., Any], *args: Any, news: Callable[[Any], Any]) -> "asyncio.Future[Any]":
        """db.write whose committed change reaches the listener whatever becomes of the caller.
        `news(result)`: (order, before) to tell of, or None. Told from the write's own answer,
        not after the caller resumes: gRPC cancels a handler's task when its client goes away,
        and a cancel landing between COMMIT and that resumption left a change in the table that
        no stream ever carried (WatchStoreOrders has no other source). The caller still resumes
        after the listener has run, as it did."""
        fut = self.db.submit(fn, *args)

        def tell(done: "asyncio.Future[Any]") -> None:
            if done.cancelled() or done.exception() is not None:
                return
            heard = news(done.result())
            if heard is not None:
                self._changed(*heard)

        fut.add_done_callback(tell)
        return fut

    async def get(self, order_id: str) -> Order | None:
        # A primary-key point read: inline on the loop thread (db.read_now, as the card store
        # reads wallets), ~15 us instead of ~100-180 us for the hop to a reader thread.
        # ConfirmPayment, CancelOrder and GetOrder each start with one.
        return await self.db.read_now(_load, order_id)

    async def begin_placement(self, order: Order) -> tuple[Order, bool]:
        self._remember(order.order_id)
        return await self.db.write(_begin_placement, order)

    async def insert_placed(self, order: Order, *, cart: CartTaken | None = None) -> Order | None:
        self._remember(order.order_id)
        inserted = await self._write_heard(_insert_placed, order, cart, news=lambda ok: (order, None) if ok else None)
        return order if inserted else None

    async def card_watermark(self) -> int | None:
        return await self.db.read_now(_card_watermark)

    async def start_card_watermark(self, at_ms: int) -> int:
        return await self.db.write(_start_card_watermark, at_ms)

    async def advance_card_watermark(self, at_ms: int) -> int:
        return await self.db.write(_advance_card_watermark, at_ms)

    async def lower_card_watermark(self, at_ms: int) -> int:
        return await self.db.write(_lower_card_watermark, at_ms)

    async def update(
        self, order_id: str, mutate: Mutation, *, clear_cart_of: str = "", cart: CartTaken | None = None,
        expect: Order | None = None,
    ) -> Order:
        # A call that changed nothing (a retried step, a second cancel) is no news.
        result, _, _ = await self._write_heard(
            _update, order_id, mutate, clear_cart_of, expect, cart, news=lambda r: (r[0], r[2]) if r[1] else None
        )
        return result

    async def apply_request(
        self, order_id: str, key: model.RequestKey, guard: Callable[[Order], Any], mutate: Mutation,
        *, answered: Callable[[Order], bool] | None = None,
    ) -> tuple[Order, bool]:
        # As update(): only a change is published (a replay or a no-op call is none).
        result, replayed, _, _ = await self._write_heard(
            _apply_request, order_id, key, guard, mutate, answered, news=lambda r: (r[0], r[3]) if r[2] else None
        )
        return result, replayed

    async def request_fingerprint(self, key: model.RequestKey, order: Order) -> str | None:
        # A point read of the requests primary key.
        return await self.db.read_now(_request_fingerprint, key, key.scope(order))

    async def forget_requests(self, before_ms: int, limit: int) -> int:
        return await self.db.write(_forget_requests, before_ms, limit)

    async def forget_aborted(self, before_ms: int, limit: int) -> int:
        return await self.db.write(_forget_aborted, before_ms, limit)

    async def list_for_user(self, user_id: str, limit: int, before: tuple[int, str] | None) -> list[Order]:
        return await self.db.read(_list_for_user, user_id, limit, before)

    async def list_all(self, limit: int, after: str) -> list[Order]:
        return await self.db.read(_list_all, limit, after)

    async def list_for_store(
        self, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
        brands: Collection[str] | None = None,
    ) -> list[Order]:
        return await self.db.read(_list_for_store, store_id, statuses, limit, before, brands)

    async def store_page(
        self, store_id: str, statuses: Sequence[str], limit: int, before: tuple[int, str] | None,
        brands: Collection[str] | None = None, window: int | None = STORE_READ_WINDOW,
    ) -> tuple[list[Order], tuple[int, str] | None]:
        return await self.db.read(_store_page, store_id, statuses, limit, before, brands, window)

    async def store_has_brand(self, store_id: str, brands: Collection[str]) -> bool | None:
        return await self.db.read(_store_has_brand, store_id, brands)

    async def due(self, now_ms: int, placing_before_ms: int, limit: int, after: str = "") -> list[Order]:
        return await self.db.read(_due, now_ms, placing_before_ms, limit, after)

    async def cart(self, user_id: str) -> tuple[str, list[Selection]]:
        # One user's few cart lines by primary-key prefix: a point read too.
        return await self.db.read_now(_cart, user_id)

    async def cart_to_order(self, user_id: str) -> tuple[str, list[Selection], CartTaken]:
        # The same point read as cart(), with the lines' keys.
        return await self.db.read_now(_cart_to_order, user_id)

    async def cart_line(self, user_id: str, request_id: str) -> tuple[str, Selection] | None:
        # A point read of the cart_requests index.
        return await self.db.read_now(_cart_line, user_id, request_id)

    async def cart_request_seen(self, key: model.RequestKey, store_id: str, selection: Selection) -> bool:
        # Point reads of the requests primary key and, without a record, the cart_requests index.
        return await self.db.read_now(_cart_request_seen, key, store_id, selection)

    async def add_cart_line(self, key: model.RequestKey, store_id: str, selection: Selection) -> bool:
        return await self.db.write(_add_cart_line, key, store_id, selection)

    async def clear_cart(self, user_id: str, request_id: str = "", now_ms: int = 0) -> bool:
        return await self.db.write(_clear_cart, user_id, request_id, now_ms)
