import asyncio
import sqlite3

import pytest

from services.common.db import Database

MIGRATIONS = [
    "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO counter (id, n) VALUES (1, 0);",
    "CREATE TABLE items (name TEXT PRIMARY KEY);",
]


async def open_db(tmp_path, migrations=MIGRATIONS, **kw):
    return await Database.open(tmp_path / "t.db", migrations, synchronous="NORMAL", **kw)


def _version(conn):
    return conn.execute("PRAGMA user_version").fetchone()[0]


async def test_migrations_apply_once_and_reopening_is_idempotent(tmp_path):
    db = await open_db(tmp_path)
    assert await db.read(_version) == 2
    await db.close()
    db = await open_db(tmp_path)  # would fail on "table exists" if re-applied
    assert await db.read(_version) == 2
    await db.close()


async def test_a_new_migration_is_applied_on_reopen(tmp_path):
    db = await open_db(tmp_path, MIGRATIONS[:1])
    assert await db.read(_version) == 1
    await db.close()
    db = await open_db(tmp_path)
    assert await db.read(_version) == 2
    assert await db.read(lambda c: c.execute("SELECT count(*) FROM items").fetchone()[0]) == 0
    await db.close()


async def test_a_failing_migration_leaves_the_previous_version_intact(tmp_path):
    with pytest.raises(sqlite3.OperationalError):
        await open_db(tmp_path, [MIGRATIONS[0], "CREATE TABLE x (a); THIS IS NOT SQL;"])
    db = await open_db(tmp_path, MIGRATIONS[:1])
    assert await db.read(_version) == 1
    assert await db.read(lambda c: c.execute("SELECT count(*) FROM sqlite_master WHERE name='x'").fetchone()[0]) == 0
    await db.close()


async def test_pragmas_are_set(tmp_path):
    db = await open_db(tmp_path)
    mode = await db.write(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    fk = await db.write(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0])
    sync = await db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert (mode, fk, sync) == ("wal", 1, 1)  # NORMAL == 1
    await db.close()


def _increment_below(conn, cap):
    cur = conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1 AND n < ?", (cap,))
    return cur.rowcount


async def test_concurrent_writes_are_group_committed_and_exact(tmp_path):
    db = await open_db(tmp_path)
    results = await asyncio.gather(*(db.write(_increment_below, 150) for _ in range(200)))
    assert sum(results) == 150 and results.count(0) == 50
    assert await db.read(lambda c: c.execute("SELECT n FROM counter").fetchone()["n"]) == 150
    assert db.batches < 200 / 4  # batched, not one transaction per call
    await db.close()


def _insert(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
    return name


async def test_a_failing_write_rolls_back_only_itself(tmp_path):
    db = await open_db(tmp_path)
    await db.write(_insert, "dup")
    outcomes = await asyncio.gather(
        db.write(_insert, "a"), db.write(_insert, "dup"), db.write(_insert, "b"), return_exceptions=True
    )
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    # "dup"'s counter increment was undone with its savepoint; the others' were kept.
    assert await db.read(lambda c: c.execute("SELECT n FROM counter").fetchone()[0]) == 3
    await db.close()


async def test_acknowledged_data_survives_close_and_reopen(tmp_path):
    db = await open_db(tmp_path)
    await asyncio.gather(*(db.write(_insert, f"item{i}") for i in range(20)))
    await db.close()
    db = await open_db(tmp_path)
    rows = await db.read(lambda c: c.execute("SELECT name FROM items ORDER BY name").fetchall())
    assert len(rows) == 20 and isinstance(rows[0], sqlite3.Row) and rows[0]["name"] == "item0"
    await db.close()


async def test_reads_are_read_only(tmp_path):
    db = await open_db(tmp_path)
    with pytest.raises(sqlite3.OperationalError):
        await db.read(lambda c: c.execute("DELETE FROM counter"))
    await db.close()


async def test_close_finishes_queued_writes(tmp_path):
    db = await open_db(tmp_path)
    pending = [asyncio.ensure_future(db.write(_insert, f"q{i}")) for i in range(10)]
    await asyncio.sleep(0)
    await db.close()
    assert [p.result() for p in pending] == [f"q{i}" for i in range(10)]


async def _limit_pages(db, pages):
    # max_page_count caps the file as a full disk would: SQLite answers SQLITE_FULL.
    await db._writer._execute(lambda c: c.execute(f"PRAGMA max_page_count={pages}"), db._writer._conn)


def _add_big(conn, name):
    conn.execute("INSERT INTO items (name) VALUES (?)", (name + "x" * 3000,))


@pytest.mark.parametrize("on_loop", [False, True])
async def test_a_full_disk_is_store_unavailable_to_every_caller_and_nothing_acknowledged_is_lost(tmp_path, on_loop, caplog):
    from services.common.db import STORE_UNAVAILABLE
    from services.common.errors import Unavailable

    db = await open_db(tmp_path, writes_on_loop=on_loop)
    used = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await _limit_pages(db, used + 3)
    names = [f"n{i:03d}" for i in range(40)]
    outcomes = await asyncio.gather(*(db.write(_add_big, n) for n in names), return_exceptions=True)
    acked = {n for n, o in zip(names, outcomes) if not isinstance(o, BaseException)}
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert failed, "the cap should have been hit"
    # SQLite rolls the whole transaction back on SQLITE_FULL: the callers hear why (retry
    # later), not "no such savepoint: w" (an INTERNAL), and never an acknowledgement of a
    # write that was undone.
    assert all(isinstance(e, Unavailable) and e.reason == STORE_UNAVAILABLE for e in failed), {repr(e) for e in failed}
    assert all(e.retry_after_ms for e in failed)
    assert db.store_failures >= 1
    # The operator hears of it once, not once per refused write.
    alarms = [r for r in caplog.records if r.name == "miandan.store" and r.levelname == "ERROR"]
    assert len(alarms) == 1 and "disk is full" in alarms[0].error
    stored = set(await db.read(lambda c: [r[0][:4] for r in c.execute("SELECT name FROM items")]))
    assert stored == acked
    # Space again: the same writes go through, and the store is whole.
    await _limit_pages(db, 1_000_000)
    await asyncio.gather(*(db.write(_add_big, n) for n in names if n not in acked))
    assert await db.read(lambda c: c.execute("SELECT count(*) FROM items").fetchone()[0]) == len(names)
    assert await db.read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
    await db.close()


def test_only_failures_of_the_machine_under_the_store_are_store_unavailable():
    from services.common.db import store_unavailable

    assert store_unavailable(sqlite3.OperationalError("database or disk is full")) is not None
    assert store_unavailable(sqlite3.OperationalError("disk I/O error")) is not None
    assert store_unavailable(sqlite3.OperationalError("attempt to write a readonly database")) is not None
    assert store_unavailable(sqlite3.IntegrityError("UNIQUE constraint failed: items.name")) is None
    assert store_unavailable(sqlite3.OperationalError("no such table: itemz")) is None  # our bug: stays INTERNAL
    assert store_unavailable(ValueError("database or disk is full")) is None
