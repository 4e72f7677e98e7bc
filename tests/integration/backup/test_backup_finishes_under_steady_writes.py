"""A backup of a store that is written to without pause finishes in one pass, and copies one
moment of it.

SQLite's online backup copies a store a few pages per step; when another connection writes
between two steps, it starts the copy over. A store many steps long under steady writes (the
card store of a busy day: gigabytes, thousands of writes a second) was then copied over and
over, and the backup finished only if, by luck, no write fell into a whole pass. The copy now
reads one snapshot of the store from its first step to its last."""
from __future__ import annotations

import sqlite3

import services.backup as backup


def test_a_store_written_between_every_two_steps_is_copied_in_one_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "_PAGES_PER_STEP", 8)  # a small store in many steps, as a big one
    source = tmp_path / "card.db"
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y BLOB)")
        conn.executemany("INSERT INTO t (y) VALUES (randomblob(1000))", [()] * 400)  # ~100 pages: ~13 steps
    service = sqlite3.connect(source, isolation_level=None)  # the service, writing on
    steps = 0

    def write_between_steps(remaining: int, total: int) -> None:
        nonlocal steps
        steps += 1
        if steps < 500:  # beyond that the copy would never end: stop writing, let it finish
            service.execute("INSERT INTO t (y) VALUES (randomblob(100))")

    try:
        copy = backup.back_up_store(source, tmp_path / "copy.db", progress=write_between_steps)
    finally:
        service.close()
    assert steps <= 20, f"the copy started over {steps} steps in"
    assert copy.integrity == "ok"
    with sqlite3.connect(copy.path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 400  # the moment the copy began
