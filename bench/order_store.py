"""`python -m bench.order_store`: CPU of the order store's placement write, without gRPC.

Since fc52d50 a new request writes its row once, after the card call, as the finished order
(services/order/store.py `insert_placed`: one INSERT of the PAID row). The main figures are the
microseconds that one write costs, on a temporary file database of the store's own schema,
pre-filled with `--rows` PAID orders so the indexes have a realistic depth:

  sql    `_insert_placed` as the writer runs it: `--batch` writes per BEGIN IMMEDIATE .. COMMIT,
         each in its own SAVEPOINT (services/common/db.py `_run_batch`), the WAL checkpointed
         PASSIVE every CHECKPOINT_EVERY writes outside the timed part (the store runs it on a
         thread of its own while its write loop waits). CPU time of this one thread. The store-level figure to optimise.
  store  `await store.insert_placed(...)` over the real Database (group commit, writes on the
         loop, the listener) with `--concurrency` placements in flight: process CPU per
         placement, every thread included. What the order service pays per order for its store.

A secondary pair, `sql-2w` / `store-2w`, measures the failure/retry path, which keeps the old
two writes: `begin_placement` (INSERT of the PLACING row) and, after the card call,
`update(..., expect=placed)` (the conditional UPDATE to PAID). In `sql-2w` the two writes of a
batch commit in two transactions, as they do with the card call between them.

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
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "protos"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from services.common import db as common_db  # noqa: E402
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


def placed(n: int, run: str, now_ms: int) -> Order:
    """The finished order a new request writes with `insert_placed`: the draft after `finish`."""
    o = draft(n, run, now_ms)
    return paid(now_ms, f"card-{o.request_id}")(o)


def _connect(path: Path) -> sqlite3.Connection:
    # The writer connection as services/common/db.py sets it up for the order store
    # (writes_on_loop: no autocheckpoint, the store checkpoints PASSIVE itself; the schema exists).
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={order_store.SYNCHRONOUS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


Write = tuple[Callable[..., Any], tuple[Any, ...], None]


def _run_batches(conn: sqlite3.Connection, batches: list[list[Write]]) -> float:
    """Run each batch as the writer does; CPU seconds of the batches alone (checkpoints apart)."""
    cpu = 0.0
    since_checkpoint = 0
    for batch in batches:
        t0 = time.process_time()
        outcomes = common_db._run_batch(conn, batch)
        cpu += time.process_time() - t0
        failed = [v for ok, v in outcomes if not ok]
        assert not failed and all(v is not False for _, v in outcomes), failed[:1] or "a row existed already"
        since_checkpoint += len(batch)
        if since_checkpoint >= common_db.CHECKPOINT_EVERY:
            since_checkpoint = 0
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return cpu


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def sql_insert_round(path: Path, orders: list[Order], batch: int) -> float:
    conn = _connect(path)
    try:
        cpu = _run_batches(conn, [[(order_store._insert_placed, (o, None), None) for o in c] for c in _chunks(orders, batch)])
        return cpu / len(orders) * 1e6
    finally:
        conn.close()


def sql_pair_round(path: Path, drafts: list[Order], batch: int, now_ms: int) -> float:
    conn = _connect(path)
    try:
        batches: list[list[Write]] = []
        for chunk in _chunks(drafts, batch):
            # PLACING rows commit first; their UPDATEs come in a later batch (after the card call).
            batches.append([(_begin, (o,), None) for o in chunk])
            batches.append([(order_store._update, (o.order_id, paid(now_ms, f"card-{o.request_id}"), "", o), None) for o in chunk])
        return _run_batches(conn, batches) / len(drafts) * 1e6
    finally:
        conn.close()


def _begin(conn: sqlite3.Connection, o: Order) -> bool:
    _, fresh = order_store._begin_placement(conn, o)
    return fresh


async def _in_flight(concurrency: int, items: list[Any], one: Callable[[Any], Any]) -> None:
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await one(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def store_insert_round(path: Path, orders: list[Order], concurrency: int) -> float:
    store = await SqliteOrderStore.open(path, listener=lambda order, before: None)
    try:

        async def one(o: Order) -> None:
            done = await store.insert_placed(o)
            assert done is not None and done.status == model.PAID

        t0 = time.process_time()
        await _in_flight(concurrency, orders, one)
        return (time.process_time() - t0) / len(orders) * 1e6
    finally:
        await store.close()


async def store_pair_round(path: Path, drafts: list[Order], concurrency: int, now_ms: int) -> float:
    store = await SqliteOrderStore.open(path, listener=lambda order, before: None)
    try:

        async def one(o: Order) -> None:
            row, fresh = await store.begin_placement(o)
            assert fresh
            done = await store.update(o.order_id, paid(now_ms, f"card-{o.request_id}"), expect=row)
            assert done.status == model.PAID

        t0 = time.process_time()
        await _in_flight(concurrency, drafts, one)
        return (time.process_time() - t0) / len(drafts) * 1e6
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
    figures: dict[str, list[float]] = {"sql": [], "store": [], "sql-2w": [], "store-2w": []}
    with tempfile.TemporaryDirectory(prefix="miandan-bench-order-store-") as tmp:
        path = Path(tmp) / "order.db"
        asyncio.run(_migrate(path))
        conn = _connect(path)
        try:
            fill = [placed(i, "fill", now_ms) for i in range(args.rows)]
            _run_batches(conn, [[(order_store._insert_placed, (o, None), None) for o in c] for c in _chunks(fill, 256)])
        finally:
            conn.close()
        for r in range(args.repeats):
            n = args.orders
            figures["sql"].append(sql_insert_round(path, [placed(i, f"sql{r}", now_ms) for i in range(n)], args.batch))
            figures["store"].append(
                asyncio.run(store_insert_round(path, [placed(i, f"store{r}", now_ms) for i in range(n)], args.concurrency))
            )
            figures["sql-2w"].append(sql_pair_round(path, [draft(i, f"sql2w{r}", now_ms) for i in range(n)], args.batch, now_ms))
            figures["store-2w"].append(
                asyncio.run(store_pair_round(path, [draft(i, f"store2w{r}", now_ms) for i in range(n)], args.concurrency, now_ms))
            )
    print(
        f"bench-order-store: {args.orders} placements x {args.repeats} rounds on {args.rows} rows "
        f"(sql: {args.batch} per transaction; store: {args.concurrency} in flight)"
    )
    labels = {
        "sql": "insert_placed: the one write of a new request",
        "store": "await insert_placed, async API, all threads",
        "sql-2w": "failure/retry path: begin_placement + update",
        "store-2w": "failure/retry path: async API, all threads",
    }
    for name, values in figures.items():
        print(f"{name:<9} {statistics.median(values):8.1f} us CPU per placement ({labels[name]})  rounds: "
              + " ".join(f"{v:.1f}" for v in values))
    return 0


async def _migrate(path: Path) -> None:
    store = await SqliteOrderStore.open(path)
    await store.close()


if __name__ == "__main__":
    sys.exit(main())
