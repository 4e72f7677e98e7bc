"""`python -m bench.card_store`: CPU per reservation of the card store, without gRPC.

The order path's card cost is mostly the ReserveCards batches the order service sends (entries
with redeem=true, ~10 per RPC, every entry a different buyer). This opens the real
SqliteCardStore (synchronous=FULL, WAL) on a temporary file, creates a campaign and buyers with
--cards cards each, then times `CardHandlers.reserve_batch` — exactly what the ReserveCards
servicer awaits — batch after batch, the way the order bench drives it: --clients buyers at
a time, each batch --batch entries of different buyers, a buyer used until its cards are gone.

Prints, per repetition, process CPU (all threads: the loop thread and the SQLite writer) and
wall time per reservation. `--by-statement` runs one more repetition with the writer's
connection wrapped to charge the writer thread's CPU to each SQL statement (triggers count in
the statement that fires them; COMMIT carries the WAL writes and the fsync's system time), and
`--plans` prints EXPLAIN QUERY PLAN of every statement the path ran.

    python -m bench.card_store [--reservations 3000] [--repeat 3] [--batch 10] [--clients 64]
                               [--cards 20] [--by-statement] [--plans] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "protos"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from services.card.handlers import CardHandlers, ReserveEntry  # noqa: E402
from services.card.model import Rules  # noqa: E402
from services.card.store import SqliteCardStore  # noqa: E402
from services.common import db as db_module  # noqa: E402
from services.common.clock import SystemClock  # noqa: E402

CAMPAIGN = "bench-store"
DAY_MS = 86_400_000
AMOUNT_FEN = 1_500  # a latte: below the face value, so the card pays in full (redeem)


class StatementCosts:
    """Writer-thread CPU per SQL statement (thread_time: the work of this thread only)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.params: dict[str, Any] = {}

    def charge(self, sql: str, seconds: float, params: Any) -> None:
        self.cpu[sql] += seconds
        self.calls[sql] += 1
        self.params.setdefault(sql, params)


class _TimedCursor:
    def __init__(self, cursor: sqlite3.Cursor, sql: str, costs: StatementCosts) -> None:
        self._cursor, self._sql, self._costs = cursor, sql, costs

    def _timed(self, name: str) -> Any:
        t0 = time.thread_time()
        out = getattr(self._cursor, name)()
        self._costs.cpu[self._sql] += time.thread_time() - t0
        return out

    def fetchone(self) -> Any:
        return self._timed("fetchone")

    def fetchall(self) -> Any:
        return self._timed("fetchall")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _TimedConnection:
    def __init__(self, conn: sqlite3.Connection, costs: StatementCosts) -> None:
        self._conn, self._costs = conn, costs

    def execute(self, sql: str, params: Any = ()) -> Any:
        t0 = time.thread_time()
        cursor = self._conn.execute(sql, params)
        self._costs.charge(sql, time.thread_time() - t0, params)
        return _TimedCursor(cursor, sql, self._costs)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class Buyers:
    """--clients buyers at a time; a buyer places orders until its cards are gone."""

    def __init__(self, clients: int, cards: int, prefix: str) -> None:
        self.cards, self.prefix = cards, prefix
        self.next_user = 0
        self.current = [self._new() for _ in range(clients)]
        self.orders: list[int] = [0] * clients
        self.turn = 0

    def _new(self) -> str:
        self.next_user += 1
        return f"{self.prefix}-u{self.next_user}"

    def all_users(self, reservations: int, clients: int) -> list[str]:
        needed = reservations // self.cards + clients + 1
        return [f"{self.prefix}-u{i}" for i in range(1, needed + 1)]

    def take(self) -> tuple[str, int]:
        """The next client's (buyer, order number)."""
        c = self.turn % len(self.current)
        self.turn += 1
        if self.orders[c] == self.cards:
            self.current[c], self.orders[c] = self._new(), 0
        self.orders[c] += 1
        return self.current[c], self.orders[c]


async def _campaign(h: CardHandlers, now: int, cards: int) -> None:
    rules = Rules(signup_grant=cards, per_user_card_cap=cards + 1, budget_fen=10**15, card_face_value_fen=2_500)
    await h.create_campaign("bench-store-campaign", CAMPAIGN, "bench store", now - DAY_MS, now + 30 * DAY_MS, rules)


async def _sign_up(h: CardHandlers, users: list[str]) -> None:
    for i in range(0, len(users), 100):
        await asyncio.gather(*(h.claim_signup("", CAMPAIGN, u) for u in users[i:i + 100]))


async def prepare(
    h: CardHandlers, prefix: str, reservations: int, batch: int, clients: int, cards: int
) -> list[tuple[str, list[ReserveEntry]]]:
    """Sign the buyers up (not timed) and lay out the batches of `reservations` redeems."""
    buyers = Buyers(clients, cards, prefix)
    await _sign_up(h, buyers.all_users(reservations, clients))
    batches = []
    for b in range(reservations // batch):
        entries = []
        for _ in range(batch):
            user, n = buyers.take()
            order = f"{user}-o{n}"
            # No request_id, as the order service sends them (upstream.reserve_request).
            entries.append(ReserveEntry("", CAMPAIGN, user, order, AMOUNT_FEN, "", 0, True))
        batches.append((f"{prefix}-batch-{b}", entries))
    return batches


async def drive(h: CardHandlers, batches: list[tuple[str, list[ReserveEntry]]]) -> tuple[float, float, float, int]:
    """(process CPU s, loop-thread CPU s, wall s, reservations) of the batches, one ReserveCards
    after the other. Process CPU less the loop thread's is the SQLite writer thread's."""
    cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    done = 0
    for request_id, entries in batches:
        outcomes = await h.reserve_batch(request_id, entries)
        for o in outcomes:
            if isinstance(o, BaseException):
                raise RuntimeError(f"a reservation failed: {o!r}")
        done += len(outcomes)
    return time.process_time() - cpu0, time.thread_time() - loop0, time.perf_counter() - wall0, done


def _print_statements(costs: StatementCosts, reservations: int) -> None:
    total = sum(costs.cpu.values())
    print(f"writer thread, by statement (µs per reservation; {total / reservations * 1e6:.0f} µs in statements):")
    for sql, cpu in sorted(costs.cpu.items(), key=lambda kv: -kv[1]):
        text = " ".join(sql.split())
        print(f"  {cpu / reservations * 1e6:7.1f}  x{costs.calls[sql] / reservations:4.2f}  {text[:110]}")


def _print_plans(path: Path, costs: StatementCosts) -> None:
    conn = sqlite3.connect(str(path))
    print("EXPLAIN QUERY PLAN of every statement run:")
    for sql, params in costs.params.items():
        if sql.split()[0].upper() in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"):
            continue
        print("  " + " ".join(sql.split())[:150])
        try:
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall():
                print(f"      {row[3]}")
        except sqlite3.Error as exc:
            print(f"      ({exc})")
    conn.close()


async def main_async(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="miandan-card-store-"))
    clock = SystemClock()
    store = await SqliteCardStore.open(workdir / "card.db", clock=clock)
    try:
        h = CardHandlers(store, clock)
        now = int(time.time() * 1000)
        await _campaign(h, now, args.cards)
        print(
            f"bench-card-store: SQLite {sqlite3.sqlite_version}, {args.reservations} redeems per run in batches of"
            f" {args.batch}, {args.clients} buyers at a time, {args.cards} cards each"
        )
        await drive(h, await prepare(h, "warm", min(args.reservations, 500), args.batch, args.clients, args.cards))
        figures = []
        for r in range(args.repeat):
            batches = await prepare(h, f"r{r}", args.reservations, args.batch, args.clients, args.cards)
            cpu, loop, wall, n = await drive(h, batches)
            figures.append(cpu / n * 1e6)
            print(
                f"run {r + 1}: CPU {cpu / n * 1e6:6.0f} µs per reservation (loop thread {loop / n * 1e6:4.0f},"
                f" writer {(cpu - loop) / n * 1e6:4.0f})   wall {wall / n * 1e6:6.0f} µs   ({n} reservations)"
            )
        figures.sort()
        print(f"CPU per reservation: median {figures[len(figures) // 2]:.0f} µs, best {figures[0]:.0f} µs")
        if args.by_statement or args.plans:
            costs = StatementCosts()
            original = db_module._run_batch

            def timed_batch(conn: sqlite3.Connection, batch: Any) -> Any:
                return original(_TimedConnection(conn, costs), batch)  # type: ignore[arg-type]

            batches = await prepare(h, "stmt", args.reservations, args.batch, args.clients, args.cards)
            db_module._run_batch = timed_batch  # type: ignore[assignment]
            try:
                n = (await drive(h, batches))[-1]
            finally:
                db_module._run_batch = original  # type: ignore[assignment]
            if args.by_statement:
                _print_statements(costs, n)
            if args.plans:
                _print_plans(workdir / "card.db", costs)
    finally:
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reservations", type=int, default=3000, help="redeems per timed run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (the machine is noisy)")
    ap.add_argument("--batch", type=int, default=10, help="entries per ReserveCards batch")
    ap.add_argument("--clients", type=int, default=64, help="buyers ordering at the same time")
    ap.add_argument("--cards", type=int, default=20, help="cards per buyer (its sign-up grant)")
    ap.add_argument("--by-statement", action="store_true", help="writer CPU split by SQL statement")
    ap.add_argument("--plans", action="store_true", help="EXPLAIN QUERY PLAN of every statement")
    ap.add_argument("--smoke", action="store_true", help="a few batches, every option: does it run")
    args = ap.parse_args()
    if args.smoke:
        args.reservations, args.repeat, args.by_statement, args.plans = 100, 1, True, True
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
