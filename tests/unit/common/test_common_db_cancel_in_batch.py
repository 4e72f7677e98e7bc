"""A write whose caller is cancelled while its batch runs in the writer thread still commits, so
its future must say so: done-callbacks (how the order store tells its streams of committed
changes) saw the future cancelled and missed a row that was in the table. The future refuses
cancel() once its batch has started; the caller still gets CancelledError, when the batch ends."""
import asyncio
import threading

import pytest

from services.common.db import Database

MIGRATIONS = ["CREATE TABLE items (name TEXT PRIMARY KEY);"]


class Gate:
    """Holds a write fn inside the writer thread until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def insert(self, conn, name):
        self.entered.set()
        if not self.release.wait(5):
            raise AssertionError("the test never released the write")
        conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
        return name

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 5), "the write never started"


async def batch_ended(db, batches):
    for _ in range(500):
        if db.batches > batches:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never ended")


def _names(conn):
    return [r[0] for r in conn.execute("SELECT name FROM items ORDER BY name")]


@pytest.fixture
async def db(tmp_path):
    d = await Database.open(tmp_path / "s.db", MIGRATIONS, synchronous="NORMAL")
    yield d
    await d.close()


async def test_a_caller_cancelled_while_its_batch_runs_gets_cancelled_after_the_commit_and_its_future_tells_of_it(db):
    gate = Gate()
    fut = db.submit(gate.insert, "a")
    told: list[tuple[bool, object]] = []
    fut.add_done_callback(lambda f: told.append((f.cancelled(), None if f.cancelled() else f.result())))

    async def caller():
        return await fut

    task = asyncio.ensure_future(caller())
    await gate.wait_entered()
    batches = db.batches
    task.cancel()
    await asyncio.sleep(0.05)
    waited_for_the_batch = not task.done()
    gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await batch_ended(db, batches)
    assert await db.read(_names) == ["a"]  # committed
    assert told == [(False, "a")]  # and the future says so
    assert waited_for_the_batch  # the caller resumed only once its write was answered


async def test_a_started_write_refuses_cancel_and_a_queued_one_does_not(db):
    gate = Gate()
    running = db.submit(gate.insert, "running")
    await gate.wait_entered()
    queued = db.submit(gate.insert, "queued")  # waits for the next batch
    assert running.cancel() is False
    assert queued.cancel() is True
    gate.release.set()
    assert await running == "running"
    assert queued.cancelled()
    assert await db.read(_names) == ["running"]


async def test_a_deadline_passing_while_the_batch_runs_times_out_after_the_commit(db):
    gate = Gate()
    told: list[str] = []

    async def caller():
        fut = db.submit(gate.insert, "late")
        fut.add_done_callback(lambda f: told.append(f.result()))
        return await fut

    threading.Timer(0.1, gate.release.set).start()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(caller(), 0.02)
    assert told == ["late"]  # wait_for waited for the cancelled caller, which waited for the batch
    assert await db.read(_names) == ["late"]
