"""`python -m miandan backup DEST`: a copy of every service's store, taken while the suite runs.

Why: WAL and synchronous commits make an acknowledged write survive kill -9, not a lost disk or
an operator's mistaken DELETE. Each store is copied with SQLite's online backup API, which gives
a consistent snapshot of that one database while its service keeps writing (pages written during
the copy make SQLite restart the copy of what changed), then checked with integrity_check.

Each store is consistent on its own; the stores are copied one after another, so a set restored
together may show the cross-service gaps of a crash (an order placed after the card store was
copied): the services' own recovery settles those, and `python -m miandan audit` shows what is
left. To restore: stop the suite, put the files back in MIANDAN_DATA, start it.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoreCopy", "back_up", "back_up_store"]

# Pages copied per step; between steps the service may write (the copy then redoes what changed).
_PAGES_PER_STEP = 1024


@dataclass(frozen=True)
class StoreCopy:
    name: str
    path: Path
    bytes: int
    seconds: float
    integrity: str  # "ok", or what integrity_check found


def back_up_store(source: Path, target: Path) -> StoreCopy:
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Read-only, through the URI: a backup must never create or change a service's store.
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst, pages=_PAGES_PER_STEP)
        integrity = dst.execute("PRAGMA integrity_check").fetchone()[0]
    src.close()
    dst.close()
    return StoreCopy(source.stem, target, target.stat().st_size, time.monotonic() - started, integrity)


def back_up(data_dir: Path, dest: Path) -> list[StoreCopy]:
    """Every `*.db` of data_dir copied into dest (which must not exist yet)."""
    stores = sorted(p for p in data_dir.glob("*.db") if p.is_file())
    if not stores:
        raise FileNotFoundError(f"no stores (*.db) in {data_dir}")
    dest.mkdir(parents=True, exist_ok=False)
    return [back_up_store(p, dest / p.name) for p in stores]
