"""`python -m bench.order_store`: CPU of the order store's two placement writes, without gRPC.

A payable-0 placement writes twice (services/order/store.py): `begin_placement` (INSERT of the
PLACING row) and `update(..., expect=placed)` (the conditional UPDATE to PAID). This prints the
microseconds one such pair costs, on a temporary file database of the store's own schema,
pre-filled with `--rows` PAID orders so the indexes have a realistic depth:

  sql    the two write functions as the writer thread runs them: `--batch` placements per
         BEGIN IMMEDIATE .. COMMIT, each write in its own SAVEPOINT (services/common/db.py).
         CPU time of this one thread. The store-level figure to optimise.
  store  the public async API over the real Database (group commit, writer thread, the
         listener) with `--concurrency` placements in flight: process CPU per placement,
         both threads included. What the order service pays per order for its store.

Each figure is the median of `--repeats` rounds. The machine is shared: compare medians of runs
made back to back, not single numbers.

    python -m bench.order_store [--orders 4000] [--rows 20000] [--batch 32] [--concurrency 64]
                                [--repeats 5] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "protos"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from services.order import model  # noqa: E402
from services.order import store as order_store  # noqa: E402
from services.order.model import Line, Order, Payment  # noqa: E402
from services.order.store import SqliteOrderStore  # noqa: E402

CAMPAIGN, STORE = "bench-order", "bench-store"


def draft(n: int, run: str, now_ms: int) -> Order:
    """The PLACING row bench.order's PlaceOrder writes: one latte, a card that pays it all."""
    user, request_id = f"{run}-u{n // 20}", f"{run}-o{n}"
    return Order(
        order_id=model.order_id_for(user, request_id),
        request_id=request_id,
        request_hash=f"{n:032x}",
        user_id=user,
        store_id=STORE,
        store_name="压测茶饮(一店)",
        brand_id="bench",
        campaign_id=CAMPAIGN,
        lines=(Line("bench-latte", "压测拿铁", 1, (), 1500, 1500),),
        subtotal_fen=1500,
        card_use=model.CARD_REQUIRED,
        requested_card_id="",
        status=model.PLACING,
        create_ms=now_ms,
        update_ms=now_ms,
    )


def paid(now_ms: int, card_id: str):
    """The saga's `finish` mutation of a payable-0 order (services/order/handlers.py)."""

    def finish(cur: Order) -> Order:
        if cur.status != model.PLACING:
            return cur
        return model.with_status(
            cur, model.PAID, now_ms, model.ACTOR_USER, card_id=card_id, card_discount_fen=1500, payable_fen=0,
            payment=Payment(status=model.PAY_NOT_REQUIRED),
        )

    return finish


def _connect(path: Path) -> sqlite3.Connection:
    # The writer connection as services/common/db.py sets it up (the schema exists already).
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={order_store.SYNCHRONOUS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _place_sync(conn: sqlite3.Connection, orders: list[Order], batch: int, now_ms: int) -> None:
    for start in range(0, len(orders), batch):
        conn.execute("BEGIN IMMEDIATE")
        placed = []
        for o in orders[start : start + batch]:
            conn.execute("SAVEPOINT w")
            placed.append(order_store._begin_placement(conn, o)[0])
            conn.execute("RELEASE w")
        for o in placed:
            conn.execute("SAVEPOINT w")
            order_store._update(conn, o.order_id, paid(now_ms, f"card-{o.request_id}"), "", o)
            conn.execute("RELEASE w")
        conn.execute("COMMIT")


def sql_round(path: Path, orders: list[Order], batch: int, now_ms: int) -> float:
    conn = _connect(path)
    try:
        t0 = time.process_time()
        _place_sync(conn, orders, batch, now_ms)
        return (time.process_time() - t0) / len(orders) * 1e6
    finally:
        conn.close()


async def store_round(path: Path, orders: list[Order], concurrency: int, now_ms: int) -> float:
    store = await SqliteOrderStore.open(path, listener=lambda o: None)
    try:
        queue = iter(orders)

        async def worker() -> None:
            for o in queue:
                placed, fresh = await store.begin_placement(o)
                assert fresh
                done = await store.update(o.order_id, paid(now_ms, f"card-{o.request_id}"), expect=placed)
                assert done.status == model.PAID

        t0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.process_time() - t0) / len(orders) * 1e6
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.order_store", description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=4000, help="placements per round (default 4000)")
    p.add_argument("--rows", type=int, default=20000, help="PAID orders written before measuring (default 20000)")
    p.add_argument("--batch", type=int, default=32, help="placements per transaction in the sql figure (default 32)")
    p.add_argument("--concurrency", type=int, default=64, help="placements in flight in the store figure (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="rounds per figure; the median is printed (default 5)")
    p.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = p.parse_args(argv)
    if args.smoke:
        args.orders, args.rows, args.repeats = 200, 200, 1
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="miandan-bench-order-store-") as tmp:
        path = Path(tmp) / "order.db"
        asyncio.run(_migrate(path))
        conn = _connect(path)
        try:
            _place_sync(conn, [draft(i, "fill", now_ms) for i in range(args.rows)], 256, now_ms)
        finally:
            conn.close()
        sql, store = [], []
        for r in range(args.repeats):
            sql.append(sql_round(path, [draft(i, f"sql{r}", now_ms) for i in range(args.orders)], args.batch, now_ms))
            orders = [draft(i, f"store{r}", now_ms) for i in range(args.orders)]
            store.append(asyncio.run(store_round(path, orders, args.concurrency, now_ms)))
    print(
        f"bench-order-store: {args.orders} placements x {args.repeats} rounds on {args.rows} rows "
        f"(sql: {args.batch} per transaction; store: {args.concurrency} in flight)"
    )
    print(f"sql    {statistics.median(sql):8.1f} us CPU per placement (begin_placement + update)  rounds: "
          + " ".join(f"{v:.1f}" for v in sql))
    print(f"store  {statistics.median(store):8.1f} us CPU per placement (async API, both threads)  rounds: "
          + " ".join(f"{v:.1f}" for v in store))
    return 0


async def _migrate(path: Path) -> None:
    store = await SqliteOrderStore.open(path)
    await store.close()


if __name__ == "__main__":
    sys.exit(main())
