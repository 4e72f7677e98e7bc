"""The group-commit writer must outlive whatever one write or one caller does: a write fn that
raises anything, a close() whose caller gives up, a writer task that ends all the same. A dead
writer would leave every later write waiting forever (and a handler waiting on one holds its
admission slot forever, since a started write's future refuses cancel())."""
import asyncio
import sqlite3
import time

import pytest

from services.common.db import Database

MIGRATIONS = ["CREATE TABLE items (name TEXT PRIMARY KEY);"]


async def open_db(tmp_path, **kw):
    return await Database.open(tmp_path / "t.db", MIGRATIONS, synchronous="NORMAL", **kw)


def insert(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return name


def insert_then_next_of_nothing(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return next(iter(()))  # a store's `next(cursor)` on no row: StopIteration


def names(tmp_path):
    with sqlite3.connect(tmp_path / "t.db") as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM items"))


@pytest.mark.parametrize("on_loop", [False, True], ids=["threaded", "on_loop"])
async def test_a_write_raising_stop_iteration_fails_alone_and_the_writer_keeps_writing(tmp_path, on_loop):
    db = await open_db(tmp_path, writes_on_loop=on_loop)
    try:
        futures = [db.submit(insert, "a"), db.submit(insert_then_next_of_nothing, "s"), db.submit(insert, "b")]
        done, pending = await asyncio.wait(futures, timeout=5)
        assert not pending, "writes of the batch were never answered"
        assert futures[0].result() == "a" and futures[2].result() == "b"
        # Like a coroutine's StopIteration, it reaches the caller as a RuntimeError (a future
        # cannot carry StopIteration), its own changes rolled back.
        with pytest.raises(RuntimeError) as info:
            futures[1].result()
        assert isinstance(info.value.__cause__, StopIteration)
        assert await asyncio.wait_for(db.write(insert, "c"), 5) == "c"
    finally:
        await asyncio.wait_for(db.close(), 5)
    assert names(tmp_path) == ["a", "b", "c"]


def slow_insert(conn, name):
    time.sleep(0.3)
    return insert(conn, name)


async def test_a_close_whose_caller_gives_up_still_drains_and_answers_every_accepted_write(tmp_path):
    db = await open_db(tmp_path, max_batch=1)
    first, second = db.submit(slow_insert, "a"), db.submit(insert, "b")
    await asyncio.sleep(0.05)  # the first batch is running in the writer thread
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(db.close(), 0.05)
    # The writer was not cancelled with the close: the running batch is acknowledged as what it
    # did (committed), not as a failure, and the queued write still runs.
    assert await asyncio.wait_for(first, 5) == "a"
    assert await asyncio.wait_for(second, 5) == "b"
    await asyncio.wait_for(db.close(), 5)  # waits for the first close to finish, then returns
    assert names(tmp_path) == ["a", "b"]


async def test_a_second_close_waits_for_the_first_to_finish(tmp_path):
    db = await open_db(tmp_path)
    write = db.submit(slow_insert, "a")
    first = asyncio.ensure_future(db.close())
    await asyncio.sleep(0)
    await asyncio.wait_for(db.close(), 5)
    assert write.done() and write.result() == "a"
    assert db._writer_task.done()
    await first


async def test_a_writer_that_died_fails_queued_and_later_writes_at_once_instead_of_hanging(tmp_path):
    db = await open_db(tmp_path, writes_on_loop=True, max_batch=1)

    async def broken(writes):  # any bug after a batch: the write loop ends with it
        raise KeyError("bug in the write loop")

    db._after_batch_on_loop = broken
    try:
        first, queued = db.submit(insert, "a"), db.submit(insert, "b")  # two batches
        assert await asyncio.wait_for(first, 5) == "a"
        with pytest.raises(RuntimeError, match="writer"):
            await asyncio.wait_for(queued, 5)
        with pytest.raises(RuntimeError, match="writer"):
            db.submit(insert, "c")
    finally:
        await asyncio.wait_for(db.close(), 5)


def begin_and_leave_open(conn):
    conn.execute("INSERT INTO items (name) VALUES ('half')")


@pytest.mark.parametrize("on_loop", [False, True], ids=["threaded", "on_loop"])
async def test_a_transaction_an_earlier_batch_left_open_is_rolled_back_not_blocking_every_write(tmp_path, on_loop):
    # What a ROLLBACK that itself failed (a disk error) leaves: the writer's connection still
    # inside a transaction. Every later BEGIN IMMEDIATE failed, so every write, for good.
    db = await open_db(tmp_path, writes_on_loop=on_loop)
    try:
        conn = db._writer._conn  # the writing connection in both modes
        await db._writer._execute(lambda c: (c.execute("BEGIN"), begin_and_leave_open(c)), conn)
        assert await asyncio.wait_for(db.write(insert, "after"), 5) == "after"
    finally:
        await asyncio.wait_for(db.close(), 5)
    assert names(tmp_path) == ["after"]
