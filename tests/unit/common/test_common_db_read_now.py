"""Database.read_now: the inline point read on the event-loop thread."""
import asyncio
import sqlite3
import threading

import pytest

from services.common.db import Database

MIGRATIONS = ["CREATE TABLE items (name TEXT PRIMARY KEY, n INTEGER NOT NULL);"]


async def open_db(tmp_path, **kw):
    return await Database.open(tmp_path / "r.db", MIGRATIONS, synchronous="NORMAL", **kw)


def _insert(conn, name, n):
    conn.execute("INSERT INTO items (name, n) VALUES (?, ?)", (name, n))


def _get(conn, name):
    row = conn.execute("SELECT n FROM items WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


async def test_read_now_sees_committed_writes(tmp_path):
    db = await open_db(tmp_path)
    assert await db.read_now(_get, "a") is None
    await db.write(_insert, "a", 1)
    assert await db.read_now(_get, "a") == 1
    await db.write(lambda c: c.execute("UPDATE items SET n = 2 WHERE name = 'a'"))
    assert await db.read_now(_get, "a") == 2
    await db.close()


async def test_read_now_never_sees_a_write_batch_in_progress(tmp_path):
    db = await open_db(tmp_path)
    inserted, release = threading.Event(), threading.Event()

    def slow_insert(conn):
        _insert(conn, "b", 7)
        inserted.set()
        # Hold the batch open (uncommitted) until the test has looked.
        assert release.wait(5)

    pending = asyncio.ensure_future(db.write(slow_insert))
    assert await asyncio.to_thread(inserted.wait, 5)
    try:
        assert await db.read_now(_get, "b") is None
        assert await db.read_now(lambda c: c.execute("SELECT count(*) FROM items").fetchone()[0]) == 0
    finally:
        release.set()
    await pending
    assert await db.read_now(_get, "b") == 7
    await db.close()


async def test_read_now_runs_on_the_loop_thread_and_does_not_yield(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "c", 3)
    loop_thread = threading.get_ident()
    seen = []
    result = db.read_now(lambda c: seen.append(threading.get_ident()) or _get(c, "c"))
    # A coroutine that finishes on its first step never gave the loop away.
    with pytest.raises(StopIteration) as done:
        result.send(None)
    assert done.value.value == 3
    assert seen == [loop_thread]
    await db.close()


async def test_read_now_refuses_writes(tmp_path):
    db = await open_db(tmp_path)
    with pytest.raises(sqlite3.OperationalError):
        await db.read_now(_insert, "d", 1)
    assert await db.read_now(_get, "d") is None
    assert await db.read(_get, "d") is None
    await db.close()


async def test_read_now_is_one_snapshot_and_recovers_after_a_failing_fn(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "e", 1)

    def boom(conn):
        conn.execute("SELECT 1").fetchone()
        raise ValueError("fn failed")

    with pytest.raises(ValueError):
        await db.read_now(boom)
    # The failed fn's read transaction was ended: later reads see new commits.
    await db.write(_insert, "f", 2)
    assert await db.read_now(lambda c: [r[0] for r in c.execute("SELECT name FROM items ORDER BY name")]) == ["e", "f"]
    await db.close()


async def test_read_now_falls_back_to_a_reader_thread_when_busy(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "g", 5)
    calls = []

    def busy_once(conn):
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return _get(conn, "g")

    assert await db.read_now(busy_once) == 5
    assert len(calls) == 2 and calls[0] == threading.get_ident() and calls[1] != threading.get_ident()
    await db.close()


async def test_read_now_after_close_raises(tmp_path):
    db = await open_db(tmp_path)
    await db.close()
    with pytest.raises(RuntimeError):
        await db.read_now(_get, "a")
