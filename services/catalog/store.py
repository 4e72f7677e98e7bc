"""The catalog's own SQLite database: brands, menu items, stores, sold-out marks, request ids
(remembered a week: model.REQUEST_MEMORY_MS).

synchronous=NORMAL, deliberately: every write here is re-importable catalog data (ImportStores
is an upsert, menus and brands are replaced whole, sold-out marks are re-set by merchants). WAL
with NORMAL still survives kill -9 of the process (the WAL sits in the OS page cache); only an
OS crash or power loss could drop the last commits, and re-running the import restores them.
No money or user state lives here, while a 300,000-store import benefits from not fsyncing
each of its ~60 transactions.

The server serves reads from memory (see handlers.CatalogState); SQLite is the durable copy,
loaded once at start, plus the rarely-read address/city columns.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from services.common.clock import Clock
from services.common.db import Database
from services.common.merchant_grant import store_not_yours

from .model import (
    MAX_MENU_BYTES,
    MAX_MENU_ITEMS,
    Brand,
    MenuItem,
    Option,
    OptionGroup,
    StoreDetails,
    StoreRecord,
    StoreRow,
    availability_fingerprint,
    brand_fingerprint,
    decode_hours,
    encode_hours,
    item_fingerprint,
    item_not_on_menu,
    menu_entry_bytes,
    menu_full,
    menu_too_large,
    request_id_reused,
)

SYNCHRONOUS = "NORMAL"
_log = logging.getLogger("miandan.catalog.store")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE brands (
        brand_id   TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        aliases    TEXT NOT NULL DEFAULT '[]',
        category   TEXT NOT NULL DEFAULT '',
        logo_url   TEXT NOT NULL DEFAULT '',
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE menu_items (
        brand_id      TEXT NOT NULL REFERENCES brands(brand_id),
        item_id       TEXT NOT NULL,
        name          TEXT NOT NULL,
        aliases       TEXT NOT NULL DEFAULT '[]',
        category      TEXT NOT NULL DEFAULT '',
        price_fen     INTEGER NOT NULL CHECK (price_fen > 0),
        option_groups TEXT NOT NULL DEFAULT '[]',
        updated_ms    INTEGER NOT NULL,
        PRIMARY KEY (brand_id, item_id)
    );
    CREATE TABLE stores (
        store_id   TEXT PRIMARY KEY,
        brand_id   TEXT NOT NULL REFERENCES brands(brand_id),
        name       TEXT NOT NULL,
        address    TEXT NOT NULL DEFAULT '',
        city       TEXT NOT NULL DEFAULT '',
        latitude   REAL NOT NULL CHECK (latitude BETWEEN -90 AND 90),
        longitude  REAL NOT NULL CHECK (longitude BETWEEN -180 AND 180),
        hours      TEXT NOT NULL DEFAULT '',
        closed     INTEGER NOT NULL DEFAULT 0,
        time_zone  TEXT NOT NULL DEFAULT 'Asia/Shanghai',
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE sold_out (
        store_id   TEXT NOT NULL REFERENCES stores(store_id),
        item_id    TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (store_id, item_id)
    ) WITHOUT ROWID;
    -- Idempotency of retried admin writes: the first outcome is returned to every retry.
    CREATE TABLE requests (
        kind       TEXT NOT NULL,
        request_id TEXT NOT NULL,
        created    INTEGER NOT NULL,
        at_ms      INTEGER NOT NULL,
        PRIMARY KEY (kind, request_id)
    ) WITHOUT ROWID;
    """,
    # 2: request ids were remembered per kind only, without what they were used for: a
    # request_id one merchant had used at its store made another merchant's SetItemAvailability
    # with the same id (at another store) a silent no-op, and an UpsertBrand/UpsertMenuItem that
    # reused an id for another brand or item answered "created" without writing. Now each id is
    # remembered with its scope (SetItemAvailability: the store; the admin upserts: none, one
    # namespace per kind) and a fingerprint of the request, so a retry is told from a reuse
    # (refused REQUEST_ID_REUSED). `created` keeps the first answer (for SetItemAvailability
    # the availability it set). The old rows recorded no content, so no retry of them could be
    # told from a reuse: they are dropped, and such a retry re-applies its write (every write
    # here replaces whole rows with the request's content, so re-applying it is harmless).
    """
    DROP TABLE requests;
    CREATE TABLE requests (
        kind        TEXT NOT NULL,
        scope       TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created     INTEGER NOT NULL,
        at_ms       INTEGER NOT NULL,
        PRIMARY KEY (kind, scope, request_id)
    ) WITHOUT ROWID;
    """,
]

# Indexes made when the store opens (IF NOT EXISTS), not by a migration: the previous release
# refuses a store whose schema version it does not know (services/common/db.py), while an extra
# index changes nothing it reads or writes, so a rollback still starts on the newer store.
INDEXES = [
    # Request ids are forgotten after model.REQUEST_MEMORY_MS (forget_requests, oldest first):
    # the age index serves that sweep a bounded batch at a time instead of a scan of the table.
    "CREATE INDEX IF NOT EXISTS requests_age ON requests (at_ms)",
]


@dataclass(frozen=True)
class Snapshot:
    brands: list[Brand]
    items: list[MenuItem]
    stores: list[StoreRecord]
    sold_out: list[tuple[str, str]]


class CatalogStore(Protocol):
    async def load(self) -> Snapshot: ...
    async def upsert_brand(self, request_id: str, brand: Brand, now_ms: int) -> tuple[bool, bool]: ...
    async def upsert_item(self, request_id: str, item: MenuItem, now_ms: int) -> tuple[bool, bool]: ...
    async def upsert_stores(self, rows: Sequence[StoreRow], now_ms: int) -> list[tuple[str, str]]: ...
    async def set_availability(
        self, request_id: str, store_id: str, item_id: str, available: bool, now_ms: int, *, merchant_id: str = "",
        brands: frozenset[str] | None = None,
    ) -> bool: ...
    async def store_details(self, store_ids: Sequence[str]) -> dict[str, StoreDetails]: ...
    async def forget_requests(self, before_ms: int, limit: int) -> int:
        """Forget at most `limit` request ids remembered before before_ms; returns how many."""
        ...
    async def close(self) -> None: ...


# --- (de)serialisation of nested menu data ---------------------------------------------------


def groups_to_json(groups: Iterable[OptionGroup]) -> str:
    return json.dumps(
        [
            {
                "group_id": g.group_id,
                "name": g.name,
                "default_option_id": g.default_option_id,
                "options": [
                    {"option_id": o.option_id, "name": o.name, "price_delta_fen": o.price_delta_fen, "aliases": list(o.aliases)}
                    for o in g.options
                ],
            }
            for g in groups
        ],
        ensure_ascii=False,
    )


def groups_from_json(text: str) -> tuple[OptionGroup, ...]:
    return tuple(
        OptionGroup(
            g["group_id"],
            g["name"],
            tuple(Option(o["option_id"], o["name"], int(o["price_delta_fen"]), tuple(o.get("aliases", ()))) for o in g["options"]),
            g.get("default_option_id", ""),
        )
        for g in json.loads(text)
    )


# --- SQLite implementation -------------------------------------------------------------------


class SqliteCatalogStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Point reads of a page of stores by primary key take tens of microseconds, less than
        # the thread hop of db.read(); on a busy machine that hop was most of SearchStores'
        # tail latency. So they run inline on a read-only connection of their own (WAL readers
        # never wait for the writer).
        self._point = sqlite3.connect(str(db.path), isolation_level=None, check_same_thread=False)
        self._point.execute("PRAGMA query_only=ON")
        self._point.execute("PRAGMA busy_timeout=100")

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock | None = None) -> "SqliteCatalogStore":
        store = cls(await Database.open(path, MIGRATIONS, synchronous=SYNCHRONOUS, clock=clock, readers=1))
        try:
            await store.db.write(_make_indexes)
            dropped = await store.db.write(_drop_stray_sold_out)
        except BaseException:
            await store.close()
            raise
        if dropped:
            _log.warning("dropped sold-out marks of items not on their store's menu", extra={"marks": dropped})
        return store

    async def close(self) -> None:
        self._point.close()
        await self.db.close()

    async def load(self) -> Snapshot:
        return await self.db.read(_load)

    async def upsert_brand(self, request_id: str, brand: Brand, now_ms: int) -> tuple[bool, bool]:
        """(created, replayed): replayed means request_id was already used for this same brand
        (created is then the first call's answer) and nothing was written. Raises AlreadyExists
        REQUEST_ID_REUSED when request_id was used for a different brand or content."""
        return await self.db.write(_upsert_brand, request_id, brand, now_ms)

    async def upsert_item(self, request_id: str, item: MenuItem, now_ms: int) -> tuple[bool, bool]:
        """As upsert_brand, for one menu item (its request ids are a namespace of their own).
        Raises FailedPrecondition MENU_FULL when the item is new and its brand already has
        MAX_MENU_ITEMS."""
        return await self.db.write(_upsert_item, request_id, item, now_ms)

    async def upsert_stores(self, rows: Sequence[StoreRow], now_ms: int) -> list[tuple[str, str]]:
        """Upserts the rows; returns the sold-out marks (store_id, item_id) it dropped: all those
        of every store the rows move to another brand."""
        return await self.db.write(_upsert_stores, rows, now_ms)

    async def set_availability(
        self, request_id: str, store_id: str, item_id: str, available: bool, now_ms: int, *, merchant_id: str = "",
        brands: frozenset[str] | None = None,
    ) -> bool:
        """True when this call changed nothing because request_id was already applied at this
        store to the same request. Raises AlreadyExists REQUEST_ID_REUSED when it was used at
        this store for a different request (another store's ids are another namespace, and so
        are another merchant's: merchant_id, the caller's grant's merchant, "" for the platform).
        brands: a grant that covers the store by its brand only; the store must still be of one
        of them when the write commits, else PermissionDenied STORE_NOT_YOURS."""
        return await self.db.write(_set_availability, request_id, store_id, item_id, available, now_ms, merchant_id, brands)

    async def store_details(self, store_ids: Sequence[str]) -> dict[str, StoreDetails]:
        if not store_ids:
            return {}
        return _store_details(self._point, list(store_ids))

    async def forget_requests(self, before_ms: int, limit: int) -> int:
        return await self.db.write(_forget_requests, before_ms, limit)


def _load(conn: sqlite3.Connection) -> Snapshot:
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: 300,000 rows load noticeably faster than sqlite3.Row
    brands = [
        Brand(b, n, tuple(json.loads(a)), c, u)
        for b, n, a, c, u in cur.execute("SELECT brand_id, name, aliases, category, logo_url FROM brands ORDER BY brand_id")
    ]
    items = [
        MenuItem(i, b, n, p, tuple(json.loads(a)), c, groups_from_json(g))
        for b, i, n, a, c, p, g in cur.execute(
            "SELECT brand_id, item_id, name, aliases, category, price_fen, option_groups FROM menu_items ORDER BY rowid"
        )
    ]
    brand_ids: dict[str, str] = {b.brand_id: b.brand_id for b in brands}
    zones: dict[str, str] = {}
    stores = [
        StoreRecord(s, brand_ids.get(b, b), n, lat, lng, decode_hours(h), bool(cl), zones.setdefault(tz, tz))
        for s, b, n, lat, lng, h, cl, tz in cur.execute(
            "SELECT store_id, brand_id, name, latitude, longitude, hours, closed, time_zone FROM stores"
        )
    ]
    sold = list(cur.execute("SELECT store_id, item_id FROM sold_out"))
    return Snapshot(brands, items, stores, sold)


def _replayed(conn: sqlite3.Connection, kind: str, scope: str, request_id: str, fingerprint: str) -> int | None:
    """The first answer (`created`) when request_id was already used for this very request,
    None when it is new. A request_id already used for a different request is refused
    REQUEST_ID_REUSED. Runs in the write transaction of the change, with _remember() after it:
    the single writer makes check, change and record one atomic step."""
    if not request_id:
        return None
    row = conn.execute(
        "SELECT fingerprint, created FROM requests WHERE kind = ? AND scope = ? AND request_id = ?", (kind, scope, request_id)
    ).fetchone()
    if row is None:
        return None
    if row[0] != fingerprint:
        raise request_id_reused()
    return int(row[1])


def _remember(
    conn: sqlite3.Connection, kind: str, scope: str, request_id: str, fingerprint: str, created: bool, now_ms: int
) -> None:
    if request_id:
        conn.execute(
            "INSERT INTO requests (kind, scope, request_id, fingerprint, created, at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, scope, request_id, fingerprint, int(created), now_ms),
        )


def _upsert_brand(conn: sqlite3.Connection, request_id: str, b: Brand, now_ms: int) -> tuple[bool, bool]:
    fingerprint = brand_fingerprint(b)
    seen = _replayed(conn, "brand", "", request_id, fingerprint)
    if seen is not None:
        return bool(seen), True
    cur = conn.execute(
        "INSERT INTO brands (brand_id, name, aliases, category, logo_url, updated_ms) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (brand_id) DO NOTHING",
        (b.brand_id, b.name, json.dumps(list(b.aliases), ensure_ascii=False), b.category, b.logo_url, now_ms),
    )
    created = cur.rowcount == 1
    if not created:
        conn.execute(
            "UPDATE brands SET name = ?, aliases = ?, category = ?, logo_url = ?, updated_ms = ? WHERE brand_id = ?",
            (b.name, json.dumps(list(b.aliases), ensure_ascii=False), b.category, b.logo_url, now_ms, b.brand_id),
        )
    _remember(conn, "brand", "", request_id, fingerprint, created, now_ms)
    return created, False


def _upsert_item(conn: sqlite3.Connection, request_id: str, it: MenuItem, now_ms: int) -> tuple[bool, bool]:
    fingerprint = item_fingerprint(it)
    seen = _replayed(conn, "item", "", request_id, fingerprint)
    if seen is not None:
        return bool(seen), True
    exists = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM menu_items WHERE brand_id = ? AND item_id = ?", (it.brand_id, it.item_id)
    ).fetchone()
    if exists is None:
        # Counted in the write transaction: the single writer runs concurrent upserts one after
        # the other, so the last places cannot be taken twice (memory lags the commits).
        (count,) = conn.execute("SELECT COUNT(*) FROM menu_items WHERE brand_id = ?", (it.brand_id,)).fetchone()
        if count >= MAX_MENU_ITEMS:
            raise menu_full(it.brand_id)
    _check_menu_bytes(conn, it, None if exists is None else _item_of_row(exists))
    values = (it.name, json.dumps(list(it.aliases), ensure_ascii=False), it.category, it.price_fen, groups_to_json(it.option_groups), now_ms)
    created = exists is None
    if created:
        conn.execute(
            "INSERT INTO menu_items (brand_id, item_id, name, aliases, category, price_fen, option_groups, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (it.brand_id, it.item_id, *values),
        )
    else:
        conn.execute(
            "UPDATE menu_items SET name = ?, aliases = ?, category = ?, price_fen = ?, option_groups = ?, updated_ms = ? "
            "WHERE brand_id = ? AND item_id = ?",
            (*values, it.brand_id, it.item_id),
        )
    _remember(conn, "item", "", request_id, fingerprint, created, now_ms)
    return created, False


_ITEM_COLUMNS = "item_id, brand_id, name, aliases, category, price_fen, option_groups"
# An upper bound of menu.menu_entry_bytes from the stored text, no JSON parsed: JSON spells out
# every key and quote where the wire has a byte or two, and the option groups count twice since
# a group's default option id is sent again even when the stored one is empty.
_ROUGH_ITEM_BYTES = (
    "64 + length(CAST(item_id AS BLOB)) + length(CAST(brand_id AS BLOB)) + length(CAST(name AS BLOB)) "
    "+ length(CAST(aliases AS BLOB)) + length(CAST(category AS BLOB)) + 2 * length(CAST(option_groups AS BLOB))"
)


def _item_of_row(row: Any) -> MenuItem:
    item_id, brand_id, name, aliases, category, price_fen, groups = row
    return MenuItem(item_id, brand_id, name, price_fen, tuple(json.loads(aliases)), category, groups_from_json(groups))


def _check_menu_bytes(conn: sqlite3.Connection, it: MenuItem, previous: MenuItem | None) -> None:
    """Refuses MENU_TOO_LARGE a change that grows the brand's menu past MAX_MENU_BYTES. A change
    that does not grow its item is always taken, so a menu over the budget can still be trimmed.
    In the write transaction, as the count of items: concurrent upserts cannot both take the
    last bytes. The other items are summed from their stored text first (cheap) and parsed only
    when that rough sum does not settle it (a brand near its budget)."""
    size = menu_entry_bytes(it)
    if previous is not None and size <= menu_entry_bytes(previous):
        return
    (rough,) = conn.execute(
        f"SELECT COALESCE(SUM({_ROUGH_ITEM_BYTES}), 0) FROM menu_items WHERE brand_id = ? AND item_id <> ?", (it.brand_id, it.item_id)
    ).fetchone()
    if rough + size <= MAX_MENU_BYTES:
        return
    others = sum(
        menu_entry_bytes(_item_of_row(row))
        for row in conn.execute(f"SELECT {_ITEM_COLUMNS} FROM menu_items WHERE brand_id = ? AND item_id <> ?", (it.brand_id, it.item_id))
    )
    if others + size > MAX_MENU_BYTES:
        raise menu_too_large(it.brand_id, others + size)


def _upsert_stores(conn: sqlite3.Connection, rows: Sequence[StoreRow], now_ms: int) -> list[tuple[str, str]]:
    dropped = _drop_marks_of_rebranded(conn, rows)
    conn.executemany(
        "INSERT INTO stores (store_id, brand_id, name, address, city, latitude, longitude, hours, closed, time_zone, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (store_id) DO UPDATE SET brand_id = excluded.brand_id, name = excluded.name, "
        "address = excluded.address, city = excluded.city, latitude = excluded.latitude, "
        "longitude = excluded.longitude, hours = excluded.hours, closed = excluded.closed, "
        "time_zone = excluded.time_zone, updated_ms = excluded.updated_ms",
        [
            (r.store_id, r.brand_id, r.name, r.address, r.city, r.lat, r.lng, encode_hours(r.hours), int(r.closed), r.time_zone, now_ms)
            for r in rows
        ],
    )
    return dropped


def _drop_marks_of_rebranded(conn: sqlite3.Connection, rows: Sequence[StoreRow]) -> list[tuple[str, str]]:
    """Drops the sold-out marks of the stores `rows` move to another brand, before they move.
    A mark names an item of the store's brand: kept across a move it marked an item of the old
    brand that the store no longer sells, or the new brand's item of the same id sold out though
    no merchant said so. Costs a primary-key probe a row (~4 ms a 5,000-row batch, in the writer
    thread); only stores that have marks are read further."""
    new_brand = {r.store_id: r.brand_id for r in rows}
    ids = list(new_brand)
    moved: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        moved += [
            store_id
            for store_id, brand_id in conn.execute(
                f"SELECT s.store_id, s.brand_id FROM stores s WHERE s.store_id IN ({marks}) "
                "AND EXISTS (SELECT 1 FROM sold_out o WHERE o.store_id = s.store_id)",
                chunk,
            )
            if brand_id != new_brand[store_id]
        ]
    dropped: list[tuple[str, str]] = []
    for store_id in moved:
        dropped += [(store_id, item_id) for (item_id,) in conn.execute("SELECT item_id FROM sold_out WHERE store_id = ?", (store_id,))]
        conn.execute("DELETE FROM sold_out WHERE store_id = ?", (store_id,))
    return dropped


def _drop_stray_sold_out(conn: sqlite3.Connection) -> int:
    """Drops marks naming no item of their store's brand (left by imports that moved a store to
    another brand before they dropped its marks): items are never deleted, so no such mark can
    ever be read, and one would mark the new brand's item sold out the day it gets that id."""
    cur = conn.execute(
        "DELETE FROM sold_out WHERE NOT EXISTS (SELECT 1 FROM stores s JOIN menu_items m "
        "ON m.brand_id = s.brand_id AND m.item_id = sold_out.item_id WHERE s.store_id = sold_out.store_id)"
    )
    return cur.rowcount


def _set_availability(
    conn: sqlite3.Connection, request_id: str, store_id: str, item_id: str, available: bool, now_ms: int, merchant_id: str = "",
    brands: frozenset[str] | None = None,
) -> bool:
    if brands is not None:
        # The caller judged the grant against memory, which shows an import's rows only once
        # they are committed and indexed: a store moving to another brand meanwhile is no longer
        # the grant's, and its new brand's item of the same id ("latte") was marked by the old one.
        row = conn.execute("SELECT brand_id FROM stores WHERE store_id = ?", (store_id,)).fetchone()
        if row is None or row[0] not in brands:
            raise store_not_yours(store_id)
    # Scoped by store: merchants choose their own request ids ("so-1"), and one merchant's id
    # must never reach another merchant's store. And by a grant's merchant: a chain's
    # headquarters and the store's franchisee both mark its items, neither knowing the other's
    # ids, and the franchisee's "so-1" was taken for a retry of headquarters' "so-1" (a mark
    # since undone) and silently dropped. Within that, the id names one request.
    scope = store_id if not merchant_id else "merchant:" + json.dumps([merchant_id, store_id], ensure_ascii=False)
    fingerprint = availability_fingerprint(store_id, item_id, available)
    if _replayed(conn, "availability", scope, request_id, fingerprint) is not None:
        return True
    if available:
        conn.execute("DELETE FROM sold_out WHERE store_id = ? AND item_id = ?", (store_id, item_id))
    else:
        # Checked again here, not only against memory: an import that moves the store to another
        # brand may commit between the caller's check and this write.
        on_menu = conn.execute(
            "SELECT 1 FROM stores s JOIN menu_items m ON m.brand_id = s.brand_id AND m.item_id = ? WHERE s.store_id = ?",
            (item_id, store_id),
        ).fetchone()
        if on_menu is None:
            raise item_not_on_menu(store_id, item_id)
        conn.execute(
            "INSERT INTO sold_out (store_id, item_id, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (store_id, item_id) DO UPDATE SET updated_ms = excluded.updated_ms",
            (store_id, item_id, now_ms),
        )
    _remember(conn, "availability", scope, request_id, fingerprint, available, now_ms)
    return False


def _make_indexes(conn: sqlite3.Connection) -> None:
    for script in INDEXES:
        conn.execute(script)


def _forget_requests(conn: sqlite3.Connection, before_ms: int, limit: int) -> int:
    # As the card and order services forget theirs: oldest first by the age index, a bounded
    # number per transaction, so an import or a merchant's write waits for one short batch.
    return conn.execute(
        "DELETE FROM requests WHERE (kind, scope, request_id) IN"
        " (SELECT kind, scope, request_id FROM requests WHERE at_ms < ? LIMIT ?)",
        (before_ms, limit),
    ).rowcount


def _store_details(conn: sqlite3.Connection, ids: list[str]) -> dict[str, StoreDetails]:
    out: dict[str, StoreDetails] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for sid, address, city in conn.execute(f"SELECT store_id, address, city FROM stores WHERE store_id IN ({marks})", chunk):
            out[sid] = StoreDetails(address, city)
    return out
