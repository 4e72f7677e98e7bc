"""How much work a read of the order store takes, counted in SQLite virtual-machine steps rather
than timed: a test of "costs the same after months of orders" that a busy machine cannot flake."""
from __future__ import annotations

import sqlite3


def steps(path, fn, *args):
    """fn(connection, *args)'s result, and the steps (in thousands) it took."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    with sqlite3.connect(path) as db:
        db.set_progress_handler(tick, 1000)
        result = fn(db, *args)
    return result, count
