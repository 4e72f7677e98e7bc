"""Database(writes_on_loop=True): batches run on the event-loop thread, with the same
guarantees as the writer thread (group commit, per-write rollback, durable before the answer);
a taken write lock is waited for off the loop; WAL checkpoints run on a thread of their own."""
import asyncio
import sqlite3
import threading

import pytest

from services.common import db as db_module
from services.common.db import Database

MIGRATIONS = ["CREATE TABLE items (name TEXT PRIMARY KEY);"]


async def open_db(tmp_path, **kw):
    return await Database.open(tmp_path / "s.db", MIGRATIONS, synchronous="NORMAL", writes_on_loop=True, **kw)


def _insert(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return threading.get_ident()


async def checkpoint_done(db):
    # The checkpoint runs on its own thread; a slow machine may take a while to finish it.
    for _ in range(500):
        if db._checkpoint is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("checkpoint still running after 5 s")


def _names(conn):
    return [r[0] for r in conn.execute("SELECT name FROM items ORDER BY name")]


async def test_a_full_store_cannot_write_on_the_loop(tmp_path):
    with pytest.raises(ValueError, match="NORMAL or OFF"):
        await Database.open(tmp_path / "f.db", MIGRATIONS, synchronous="FULL", writes_on_loop=True)


async def test_writes_run_on_the_loop_thread_and_commit(tmp_path):
    db = await open_db(tmp_path)
    assert await db.write(_insert, "a") == threading.get_ident()
    await db.close()
    # A fresh connection (another process, say) sees the committed row.
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM items")] == ["a"]


async def test_concurrent_writes_share_batches_and_fail_alone(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "taken")
    before = db.batches
    names = [f"n{i:03d}" for i in range(200)] + ["taken"]
    outcomes = await asyncio.gather(*(db.write(_insert, n) for n in names), return_exceptions=True)
    assert isinstance(outcomes[-1], sqlite3.IntegrityError)
    assert all(isinstance(o, int) for o in outcomes[:-1])
    assert db.batches - before < len(names) / 10  # grouped, not one commit per write
    assert await db.read(_names) == sorted(names)
    await db.close()


async def test_a_taken_write_lock_is_waited_for_off_the_loop(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "first")
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # an operator's shell holding the write lock
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    write = asyncio.create_task(db.write(_insert, "second"))
    await asyncio.sleep(0.3)
    assert not write.done()
    assert ticks >= 10  # the loop kept running while the write waited
    other.execute("COMMIT")
    assert await asyncio.wait_for(write, 5) != threading.get_ident()  # finished on the writer thread
    tick_task.cancel()
    assert await db.read(_names) == ["first", "second"]
    # Back on the loop, without waiting, once the lock is free again.
    assert await db.write(_insert, "third") == threading.get_ident()
    other.close()
    await db.close()


async def test_checkpoints_run_off_the_loop_every_so_many_batches(tmp_path, monkeypatch):
    threads: list[int] = []
    real = db_module._checkpoint_passive

    def counting(conn):
        threads.append(threading.get_ident())
        real(conn)

    monkeypatch.setattr(db_module, "_checkpoint_passive", counting)
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 5)
    db = await open_db(tmp_path)
    for i in range(23):
        await db.write(_insert, f"n{i}")
        if i % 5 == 4:
            await checkpoint_done(db)  # finished before the next is due
    assert len(threads) == 4  # after batches 5, 10, 15 and 20
    assert threading.get_ident() not in threads
    await db.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 23


async def test_the_wal_stays_bounded_under_many_batches(tmp_path, monkeypatch):
    # Without a checkpoint (autocheckpoint is off on the loop writer) the WAL would grow with
    # every batch; so would it with one running beside the writer, which never catches up with
    # a writer that keeps appending. Batches of 50 here, as under load.
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 100)
    db = await open_db(tmp_path)
    for r in range(40):
        await asyncio.gather(*(db.write(_insert, f"{r:03d}-{i:03d}-" + "x" * 2000) for i in range(50)))
    wal = tmp_path / "s.db-wal"
    assert wal.stat().st_size < 400 * 4096  # 2,000 rows of 2 KB: ~1,000 pages without checkpoints
    assert await db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]) == 2000
    await db.close()


async def test_a_write_is_answered_before_the_checkpoint_its_batch_triggers(tmp_path, monkeypatch):
    release = threading.Event()
    real = db_module._checkpoint_passive

    def slow(conn):
        release.wait(5)
        real(conn)

    monkeypatch.setattr(db_module, "_checkpoint_passive", slow)
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 1)
    db = await open_db(tmp_path)
    try:
        await asyncio.wait_for(db.write(_insert, "a"), 2)  # its checkpoint is still running
        later = asyncio.ensure_future(db.write(_insert, "b"))
        await asyncio.sleep(0.2)
        assert not later.done()  # the next batch waits for the checkpoint
        release.set()
        await asyncio.wait_for(later, 5)
    finally:
        release.set()
        await db.close()
