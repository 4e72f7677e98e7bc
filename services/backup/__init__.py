"""`python -m miandan backup DEST`: a copy of every service's store, taken while the suite runs.

Why: WAL and synchronous commits make an acknowledged write survive kill -9, not a lost disk or
an operator's mistaken DELETE. Each store is copied with SQLite's online backup API inside one read
transaction, which gives a snapshot of that one database as it was when its copy began while its
service keeps writing, then checked with integrity_check.

Each store is consistent on its own; the stores are copied one after another, so a set restored
together holds the gaps of a crash between two services. Which gaps depends on the order of the
copies, and only one order leaves gaps the services' own recovery settles: the order service
(and the lottery, whose entries rest on invites) before the card service. A card store copied
later may then hold cards held or redeemed for orders the copied order store never wrote, which
the restored order service's first recovery pass finds and undoes (its card watermark), or
redeemed for orders it holds still awaiting payment, which it cancels (the card given back) when
their payment window runs out; a card
store copied first would miss the redemptions of orders placed after it, and those PAID orders'
cards would be spendable a second time, which nothing repairs. `python -m miandan audit` shows
what is left. To restore: stop the suite, put the files back in MIANDAN_DATA, delete any -wal and -shm
file left beside them (there are none after a clean stop; after a kill -9, SQLite would replay the
old log's pages onto the restored store), start it.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["BackupError", "StoreCopy", "back_up", "back_up_store"]

# Pages copied per step; between steps the service may write (the copy then redoes what changed).
_PAGES_PER_STEP = 1024

# What SQLite keeps beside a WAL-mode store while a connection has it open.
_WAL_SIDE_FILES = ("-wal", "-shm")


class BackupError(Exception):
    """A store could not be copied (not an SQLite database, unreadable, ...): names the store."""


@dataclass(frozen=True)
class StoreCopy:
    name: str
    path: Path
    bytes: int
    seconds: float
    integrity: str  # "ok", or what integrity_check found


def _uri(path: Path, mode: str) -> str:
    # as_uri() percent-escapes what a URI gives a meaning to ("?", "#", "%"), so SQLite opens
    # exactly this file and sees the mode parameter (an f"file:{path}" URI is cut at ? or #).
    return f"{path.as_uri()}?mode={mode}"


def back_up_store(source: Path, target: Path, *, progress: Callable[[int, int], None] | None = None) -> StoreCopy:
    """Copy one store. `progress(remaining_pages, total_pages)` is called after every step."""
    started = time.monotonic()
    source = source.resolve(strict=True)
    side_files = [source.with_name(source.name + suffix) for suffix in _WAL_SIDE_FILES]
    present = {p for p in side_files if p.exists()}
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Read-only (mode=ro never creates a missing file): a backup must never create or change
        # a service's store.
        src = sqlite3.connect(_uri(source, "ro"), uri=True, isolation_level=None)
        try:
            # One read transaction from the first step to the last: every step reads the same
            # snapshot. Without it each step reads the newest state, and a write by the service
            # between two steps makes SQLite start the copy over: a store many steps long under
            # steady writes was copied over and over. (The service keeps writing meanwhile: a
            # WAL reader blocks no writer, it only keeps the log from being checkpointed past it.)
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
            dst = sqlite3.connect(target)
            try:
                # Always a callback: Python runs signal handlers only between bytecodes, so
                # without one a Ctrl-C or SIGTERM would wait for the whole store's copy.
                def step(_status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(remaining, total)

                src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
                integrity = dst.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
            if not present:
                _remove_own_side_files(source, side_files)
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)  # a partial copy must not pass for a store
        raise BackupError(f"cannot copy {source}: {exc}") from exc
    except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed otherwise: no partial copy left
        target.unlink(missing_ok=True)
        raise
    return StoreCopy(source.stem, target, target.stat().st_size, time.monotonic() - started, integrity)


def _remove_own_side_files(source: Path, side_files: list[Path]) -> None:
    """Called when neither -wal nor -shm was there before the copy. A read-only connection to a
    WAL-mode store that nothing else has open has to create both, and cannot remove them when it
    closes (that takes a checkpoint, which needs write access). A connection that closes as the
    store's only connection does remove them, after checkpointing the log (the empty one this
    backup created): SQLite decides that under an exclusive lock, so a service that opened the
    store in the meantime keeps its files. mode=rw never creates the store; query_only refuses writes."""
    if not any(p.exists() for p in side_files):
        return
    try:
        conn = sqlite3.connect(_uri(source, "rw"), uri=True)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # best effort: the copy is good, and SQLite itself handles leftover -wal/-shm files


# Copied first to last (see the module docstring): the stores whose records point at cards before
# the card store; a store not named here goes between them.
_COPY_RANK = {"order": 0, "lottery": 1, "catalog": 2, "card": 9}
_OTHER_RANK = 5


def copy_order(stores: list[Path]) -> list[Path]:
    return sorted(stores, key=lambda p: (_COPY_RANK.get(p.stem, _OTHER_RANK), p.name))


def back_up(data_dir: Path, dest: Path) -> list[StoreCopy]:
    """Every `*.db` of data_dir copied into dest (which must not exist yet), the card store last.
    A backup that fails or is interrupted before its last copy leaves no dest behind: a directory
    holding some of the stores would pass for a backup, and a restore from it would lose the rest.
    The copies are made in a hidden `.<dest>.partial-*` directory beside dest, renamed to dest only
    once every store is copied and on disk: a backup killed outright (kill -9, the OOM killer, a
    power cut), which can clean nothing up, leaves that hidden directory, never a dest."""
    stores = copy_order([p for p in data_dir.glob("*.db") if p.is_file()])
    if not stores:
        raise FileNotFoundError(f"no stores (*.db) in {data_dir}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"[Errno {errno.EEXIST}] {os.strerror(errno.EEXIST)}: {str(dest)!r}")
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        copies = [back_up_store(p, partial / p.name) for p in stores]
        for c in copies:
            _fsync(c.path)
        _fsync(partial)
        # rename(2) would replace an empty directory made at dest meanwhile; refuse that too.
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(f"[Errno {errno.EEXIST}] {os.strerror(errno.EEXIST)}: {str(dest)!r}")
        os.rename(partial, dest)
        _fsync(dest.parent)  # the rename itself survives a power cut
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # made above, so only this backup's files
        raise
    return [dataclasses.replace(c, path=dest / c.path.name) for c in copies]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
