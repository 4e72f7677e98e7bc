"""Database.submit: write() without the await, a plain future per queued write."""
import asyncio
import sqlite3

import pytest

from services.common.db import Database

MIGRATIONS = ["CREATE TABLE items (name TEXT PRIMARY KEY);"]


async def open_db(tmp_path):
    return await Database.open(tmp_path / "s.db", MIGRATIONS, synchronous="NORMAL")


def _insert(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return name


def _names(conn):
    return [r[0] for r in conn.execute("SELECT name FROM items ORDER BY name")]


async def test_submit_returns_a_future_of_the_result_after_commit(tmp_path):
    db = await open_db(tmp_path)
    fut = db.submit(_insert, "a")
    assert isinstance(fut, asyncio.Future) and not isinstance(fut, asyncio.Task)
    assert await fut == "a"
    assert await db.read(_names) == ["a"]
    await db.close()


async def test_one_failing_fn_fails_only_its_own_future_in_a_shared_batch(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "taken")
    batches = db.batches
    futures = [db.submit(_insert, "a"), db.submit(_insert, "taken"), db.submit(_insert, "b")]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert db.batches == batches + 1  # queued in one loop turn: one transaction
    assert await db.read(_names) == ["a", "b", "taken"]
    await db.close()


async def test_a_cancelled_future_is_not_run(tmp_path):
    db = await open_db(tmp_path)
    dropped, kept = db.submit(_insert, "dropped"), db.submit(_insert, "kept")
    dropped.cancel()
    assert await kept == "kept"
    assert await db.read(_names) == ["kept"]
    await db.close()


async def test_submit_on_a_closed_database_raises_at_once(tmp_path):
    db = await open_db(tmp_path)
    await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        db.submit(_insert, "a")  # raised by the call itself, not by awaiting a future
    with pytest.raises(RuntimeError, match="closed"):
        await db.write(_insert, "a")
