"""SQLite (WAL) access with one group-committing writer and snapshot readers.

Why this shape:
* SQLite allows one writer at a time; many connections writing only contend on the file lock.
  So each database has ONE writer connection and concurrent `write()` calls are batched into one
  transaction (group commit): one fsync and one thread hop per batch instead of per call.
* Each write fn runs inside its own SAVEPOINT, so a failing call (e.g. a unique-constraint
  violation that means "already exists") rolls back only its own changes.
* Callers' futures resolve only after COMMIT returns: a write is acknowledged once durable at
  the chosen `synchronous` level.
* A write's future can be cancelled until its batch starts (fn then never runs), not after: from
  then on the write may commit whatever the caller does, and the future's done-callbacks are how
  a store tells listeners of committed changes (the order store's streams). A cancelled future
  would tell them nothing of a row that is in the table. A task cancelled while awaiting it
  (gRPC cancels a handler whose client went away) gets its CancelledError when the batch ends.
* Every accepted write is answered: close() runs the queue dry even if its own caller stops
  waiting, and should the write loop ever end otherwise (a bug), queued and later writes fail at
  once with RuntimeError instead of waiting forever.
* Reads go to separate connections; in WAL mode they see a consistent snapshot and never block
  the writer.
* `writes_on_loop=True` (opt-in, for NORMAL/OFF stores whose writes are all small) runs each
  batch on the event-loop thread instead of the writer thread. Why: a batch on the writer
  thread costs a thread hop each way, and the sqlite3 module releases and retakes the GIL around
  every statement, so a writer thread running while the loop serves calls turns each statement
  into a GIL hand-off between two threads (futex wake-ups, context switches); the order process
  spent 16% of its CPU in its writer thread. Measured under bench-order on a quiet machine, with
  orjson docs as well: the order service's CPU per order 964-1,127 µs against 1,229-1,237.
  The loop is blocked while a batch runs (~1 ms for 10 orders), so this is only for stores
  without fsync at commit and without bulk writes: the catalog's imports and the card service's
  FULL commits stay threaded (the card with its statements on the loop and its COMMIT on the
  writer thread measured no better). At NORMAL the WAL checkpoint does fsync: it runs PASSIVE
  every CHECKPOINT_EVERY writes on a thread of its own while the write loop waits for it. A
  batch that finds the write lock taken (an operator's sqlite3 shell, say) waits for it on the
  writer thread, never on the loop.
* `read_now()` runs a point read inline on the event-loop thread, on its own read-only
  connection: a primary-key / indexed lookup costs ~15 µs of CPU there, while the hop to a reader
  thread and back costs 55-180 µs (measured: 55 on uvloop, 95 on asyncio when idle, ~180 under
  load). Only for reads that touch a handful of rows: while it runs, the whole process waits.
  Scans, aggregates and pages of unbounded size stay on `read()`.

Threading: we use aiosqlite for its connection thread, but hand it ONE synchronous callable per
batch through `aiosqlite.Connection._execute(fn, *args)` (a private method; aiosqlite is pinned
to 0.22.1 in pyproject.toml for this reason). Its public API would cost a thread hop per
statement, which is what group commit exists to avoid. The sqlite3.Connection itself is
reached as `_conn` only from inside that thread.

`synchronous` trade-off (each store states its choice):
* "FULL"   — the WAL is fsynced at every commit: an acknowledged write survives power loss / OS crash.
* "NORMAL" — in WAL mode fsync happens only at checkpoints: an acknowledged write survives
             kill -9 of the process (the WAL is in the OS page cache) but the last commits may
             be lost on power loss. Much cheaper per commit.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import aiosqlite

from .clock import Clock, SystemClock
from .errors import Unavailable

__all__ = ["Database", "MAX_BATCH", "STORE_UNAVAILABLE", "store_unavailable"]

T = TypeVar("T")
MAX_BATCH = 128
# Writes between WAL checkpoints when writes run on the loop: SQLite's own autocheckpoint
# (1,000 pages) would run them on the loop thread, fsync included. Counted in writes, not
# batches, since a batch under load holds dozens: an order placement adds ~1.6 pages to the WAL,
# so 500 keep it near SQLite's default (measured over 60k placements: 3-4 MB at most, as with
# the autocheckpoint of the threaded writer; 41 MB when counting 100 batches of ~64).
CHECKPOINT_EVERY = 500
_SYNC_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
# ErrorInfo reason when the store's disk refuses: full, failing, read-only, gone.
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
STORE_RETRY_AFTER_MS = 2_000
# SQLite's texts for SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY and SQLITE_CANTOPEN.
_ENVIRONMENT_FAILURES = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database file")
# A failing disk fails every batch: say so loudly, but not hundreds of times a second.
STORE_ALARM_EVERY_S = 10.0
_log = logging.getLogger("miandan.store")


def store_unavailable(exc: BaseException) -> Exception | None:
    """The caller-facing error for a failure of the machine under the store, not of the
    request or of our code: UNAVAILABLE (retry later) with reason STORE_UNAVAILABLE, instead of
    an INTERNAL that reads as a bug. None for anything else."""
    if isinstance(exc, sqlite3.OperationalError) and any(t in str(exc).lower() for t in _ENVIRONMENT_FAILURES):
        return Unavailable(
            STORE_UNAVAILABLE, "存储暂不可写，请稍后重试 / the store cannot write right now, try again later",
            STORE_RETRY_AFTER_MS,
        )
    return None


class _Write(asyncio.Future):  # type: ignore[type-arg]
    """A queued write's future: cancel() is refused once its batch has started (module docstring).

    A refused cancel() is what a Task awaiting the future handles already: Task.cancel() then
    marks the task to be cancelled at its next step, which comes when this future resolves. So
    the caller still ends in CancelledError, after the batch, with no second future, callback or
    task per write (asyncio.shield would add all three to every write of the hot path)."""

    __slots__ = ("_batched",)

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._batched = False

    def cancel(self, msg: Any | None = None) -> bool:
        if self._batched:
            return False
        return super().cancel(msg=msg)


class Database:
    """Use `await Database.open(...)`; see module docstring for the design."""

    def __init__(self) -> None:  # use open()
        self.path: Path
        self.clock: Clock
        self._writer: aiosqlite.Connection
        self._readers: list[aiosqlite.Connection] = []
        self._reader_cycle: Any = None
        self._inline: sqlite3.Connection | None = None
        self._writes_on_loop = False
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self._since_checkpoint = 0
        self._pending: deque[tuple[Callable[..., Any], tuple[Any, ...], _Write]] = deque()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        # Why the write loop ended before close() asked it to (a bug): submit() then refuses at
        # once instead of queueing a write nobody will ever run.
        self._writer_died: BaseException | None = None
        self.max_batch = MAX_BATCH
        self.batches = 0  # observability/tests: how many transactions were committed
        self.store_failures = 0  # writes refused because the disk under the store refused
        self._last_alarm = -STORE_ALARM_EVERY_S

    @classmethod
    async def open(
        cls,
        path: str | Path,
        migrations: Sequence[str],
        *,
        synchronous: str = "FULL",
        clock: Clock | None = None,
        readers: int = 1,
        max_batch: int = MAX_BATCH,
        writes_on_loop: bool = False,
    ) -> "Database":
        sync = synchronous.upper()
        if sync not in _SYNC_LEVELS:
            raise ValueError(f"synchronous must be one of {_SYNC_LEVELS}, got {synchronous!r}")
        if writes_on_loop and sync not in ("OFF", "NORMAL"):
            raise ValueError("writes_on_loop needs synchronous NORMAL or OFF: a FULL commit waits for fsync, stalling every call")
        self = cls()
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self.max_batch = max_batch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: sqlite3 must not open transactions behind our back; we issue
        # BEGIN/SAVEPOINT/COMMIT ourselves.
        self._writer = await aiosqlite.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            await self._writer._execute(_setup_writer, self._writer._conn, sync, list(migrations))
            if writes_on_loop:
                # Never wait for the lock on the loop (see _run_batch_on_loop); checkpoints are ours.
                await self._writer._execute(_set_pragmas, self._writer._conn, ("busy_timeout=0", "wal_autocheckpoint=0"))
                self._checkpointer = await aiosqlite.connect(str(self.path), isolation_level=None, check_same_thread=False)
                self._writes_on_loop = True
            for _ in range(max(1, readers)):
                reader = await aiosqlite.connect(str(self.path), isolation_level=None, check_same_thread=False)
                self._readers.append(reader)
                await reader._execute(_setup_reader, reader._conn)
            # Opened here, on the loop thread, which is the only thread that ever uses it
            # (check_same_thread stays on to enforce exactly that).
            self._inline = sqlite3.connect(str(self.path), isolation_level=None)
            _setup_reader(self._inline)
            # Never wait for a lock on the loop thread: WAL readers only meet SQLITE_BUSY in
            # rare moments (WAL reset / recovery); read_now() then falls back to read().
            self._inline.execute("PRAGMA busy_timeout=0")
        except BaseException:
            await self._close_connections()
            raise
        self._reader_cycle = itertools.cycle(self._readers)
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop(), name=f"db-writer:{self.path.name}")
        self._writer_task.add_done_callback(self._writer_ended)
        return self

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in the writer thread inside a transaction (group-committed with
        other concurrent writes); returns fn's result after COMMIT, or raises fn's exception
        (only fn's own changes are rolled back). fn must be synchronous and must not
        commit/rollback itself."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """write() without the await: queue `fn(conn, *args)` and return the future of its
        outcome (same semantics as write()). For callers that queue many writes at once: a
        plain future per write, no coroutine or Task (asyncio.gather over futures creates no
        tasks). Cancelling the future before its batch runs means fn is not run; once the batch
        has started, cancel() returns False and the future resolves with the write's outcome (a
        task awaiting it is cancelled when the batch ends). Must be called on the loop thread;
        raises RuntimeError at once if the database is closed."""
        if self._closed:
            raise RuntimeError("database is closed")
        if self._writer_died is not None:
            raise RuntimeError(f"database writer stopped: {self._writer_died!r}")
        fut = _Write(loop=asyncio.get_running_loop())
        self._pending.append((fn, args, fut))
        if len(self._pending) == 1:
            self._wakeup.set()
        return fut

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` on a read-only connection within one snapshot (read transaction)."""
        if self._closed:
            raise RuntimeError("database is closed")
        reader = next(self._reader_cycle)
        return await reader._execute(_run_read, reader._conn, fn, args)

    async def read_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Like read(), but runs `fn(conn, *args)` right here on the event-loop thread: POINT READS
        ONLY (primary-key / indexed lookups of a few rows). fn blocks the whole process while it
        runs, so anything that scans, aggregates or pages goes to read(). Same guarantees as
        read(): one snapshot of committed data (never a write batch in progress), and a fn that
        tries to write fails (query_only). fn must not await (it is synchronous anyway)."""
        conn = self._inline
        if conn is None or self._closed:
            raise RuntimeError("database is closed")
        try:
            conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return await self.read(fn, *args)
            raise
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        finally:
            conn.execute("ROLLBACK")
        # BUSY while reading (the snapshot could not be taken): the threaded reader waits for it.
        return await self.read(fn, *args)

    async def close(self) -> None:
        """Refuse new writes, run every write already accepted, then close the connections.
        A later call waits for the first one to finish."""
        if self._closing is None:
            self._closed = True
            self._wakeup.set()
            self._closing = asyncio.ensure_future(self._drain_and_close())
        # Shielded: a caller that stops waiting (wait_for around a stop) must not cancel the
        # writer. Cancelled mid-batch, it told that batch's callers "failed" for writes that the
        # writer thread went on to commit, left the queued writes unanswered forever and the
        # connection threads open.
        await asyncio.shield(self._closing)

    async def _drain_and_close(self) -> None:
        try:
            if self._writer_task is not None:
                # The loop drains already-queued writes before exiting, so nothing accepted is dropped.
                await asyncio.wait({self._writer_task})
        finally:
            await self._close_connections()

    async def _close_connections(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        for conn in [*self._readers, self._checkpointer, getattr(self, "_writer", None)]:
            if conn is not None:
                try:
                    await conn.close()
                except Exception:
                    pass
        self._readers.clear()

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """Done-callback of the write loop. It returns only once close() asked and the queue is
        empty; ending any other way (a bug, the event loop cancelling it at shutdown) would leave
        every queued and later write waiting forever, and a started write's future refuses
        cancel(), so its caller's deadline could not end the wait either. Fail them instead."""
        if self._closed and not self._pending and not task.cancelled() and task.exception() is None:
            return
        failure = asyncio.CancelledError() if task.cancelled() else task.exception()
        self._writer_died = failure
        if failure is not None and not task.cancelled():
            _log.error("store writer stopped: every write now fails", exc_info=failure, extra={"db": str(self.path)})
        while self._pending:
            fut = self._pending.popleft()[2]
            if not fut.done():
                fut.set_exception(RuntimeError(f"database writer stopped: {failure!r}"))

    async def _write_loop(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = []
            while pending and len(batch) < self.max_batch:
                item = pending.popleft()
                # A caller that already gave up (cancelled, e.g. its deadline passed) is not run.
                if not item[2].done():
                    item[2]._batched = True
                    batch.append(item)
            if not batch:
                continue
            try:
                if self._writes_on_loop:
                    outcomes = await self._run_batch_on_loop(batch)
                else:
                    outcomes = await self._writer._execute(_run_batch, self._writer._conn, batch)
            except BaseException as exc:  # BEGIN/COMMIT failed: nothing in the batch is durable
                failure = self._unavailable(exc) or (exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                for _, _, fut in batch:
                    _settle(fut, False, failure)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            for (_, _, fut), (ok, value) in zip(batch, outcomes):
                _settle(fut, ok, value if ok else (self._unavailable(value) or value))
            if self._writes_on_loop:
                await self._after_batch_on_loop(len(batch))

    def _unavailable(self, exc: BaseException) -> Exception | None:
        """store_unavailable(exc), sounding the alarm when it is one."""
        failure = store_unavailable(exc)
        if failure is not None:
            self._alarm(exc)
        return failure

    def _alarm(self, exc: BaseException) -> None:
        self.store_failures += 1
        now = time.monotonic()
        if now - self._last_alarm >= STORE_ALARM_EVERY_S:
            self._last_alarm = now
            _log.error(
                "store cannot write: callers get UNAVAILABLE/STORE_UNAVAILABLE until it can",
                extra={"db": str(self.path), "error": str(exc), "failures": self.store_failures},
            )

    async def _run_batch_on_loop(self, batch: list[tuple[Callable[..., Any], tuple[Any, ...], Any]]) -> list[tuple[bool, Any]]:
        conn = self._writer._conn
        try:
            outcomes = _run_batch(conn, batch)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or conn.in_transaction:
                raise
            # BEGIN IMMEDIATE found the write lock taken (nothing ran): wait for it off the loop.
            outcomes = await self._writer._execute(_run_batch_waiting, conn, batch)
        return outcomes

    async def _after_batch_on_loop(self, writes: int) -> None:
        # After the batch's callers have their answers: a checkpoint delays the next batch only.
        self._since_checkpoint += writes
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            # The write loop waits for it (the loop itself does not): with nothing appended
            # meanwhile the checkpoint copies every frame, and the next batch starts the WAL
            # over from its beginning. One running beside the writer never catches up under
            # steady load: the WAL grew to 340 MB over 60k placements. SQLite's autocheckpoint
            # waits the same way, inside COMMIT.
            self._checkpoint = asyncio.ensure_future(self._checkpoint_wal())
            try:
                await asyncio.shield(self._checkpoint)
            finally:
                self._checkpoint = None

    async def _checkpoint_wal(self) -> None:
        try:
            if self._checkpointer is not None:
                await self._checkpointer._execute(_checkpoint_passive, self._checkpointer._conn)
        except sqlite3.Error:
            pass  # busy (a reader's snapshot) or closing: the next one copies these frames too


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Resolve a write's future with its outcome. A future refuses StopIteration (TypeError: a
    write fn that called next() on an empty cursor); raised out of the write loop, that killed
    the writer, leaving the rest of the batch and every later write unanswered. It reaches the
    caller as a RuntimeError instead, as StopIteration escaping a coroutine does."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    elif isinstance(value, StopIteration):
        failure = RuntimeError(f"write raised StopIteration: {value!r}")
        failure.__cause__ = value
        fut.set_exception(failure)
    else:
        fut.set_exception(value)


# --- functions below run in the connection threads -------------------------------------------


def _setup_writer(conn: sqlite3.Connection, synchronous: str, migrations: list[str]) -> None:
    conn.row_factory = sqlite3.Row
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"could not enable WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn, migrations)


def _migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    """Migration i (1-based) is applied iff PRAGMA user_version < i; each in its own transaction
    together with the user_version bump, so a crash never leaves a half-applied version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(migrations):
        raise RuntimeError(
            f"database schema version {current} is newer than this code knows ({len(migrations)}); refusing to run"
        )
    for version, script in enumerate(migrations, start=1):
        if version <= current:
            continue
        try:
            # executescript runs the whole script; BEGIN..COMMIT inside it keeps it atomic.
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\n;PRAGMA user_version={version};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _setup_reader(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    # A read() fn that tries to write fails loudly instead of racing the single writer.
    conn.execute("PRAGMA query_only=ON")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _set_pragmas(conn: sqlite3.Connection, pragmas: Sequence[str]) -> None:
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma}")


def _run_batch_waiting(conn: sqlite3.Connection, batch: list[tuple[Callable[..., Any], tuple[Any, ...], Any]]) -> list[tuple[bool, Any]]:
    conn.execute("PRAGMA busy_timeout=5000")
    try:
        return _run_batch(conn, batch)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _checkpoint_passive(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what it can without waiting for readers or blocking the writer.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _run_read(conn: sqlite3.Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("ROLLBACK")


def _run_batch(conn: sqlite3.Connection, batch: list[tuple[Callable[..., Any], tuple[Any, ...], Any]]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    if conn.in_transaction:
        # A transaction an earlier batch could not roll back (its ROLLBACK failed too, a disk
        # error): without this, every later BEGIN failed ("within a transaction") for good.
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn, args, _ in batch:
            conn.execute("SAVEPOINT w")
            try:
                result = fn(conn, *args)
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (SQLITE_FULL, SQLITE_IOERR): every
                    # write of the batch is undone, so the batch fails with this error, not
                    # with "no such savepoint" from the line below.
                    raise
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE w")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes
