"""The lottery's own store: draws (with their secret seeds) and entries.

synchronous=FULL: the seed of a committed day lives only here. If a power loss dropped the
commit that stored it after the commitment was published, the day could never be revealed and
would be void; an fsync per commit is cheap at the lottery's write rate (a few entries per user
per day, one commit and one run per day).

Invariants enforced inside write transactions:
* one entry per (campaign, day, user): PRIMARY KEY + INSERT OR IGNORE;
* no entry after the cut-off or after the draw: checked against the stored draw row in the same
  transaction that inserts the entry;
* a seed is never replaced: draws are created with INSERT OR IGNORE; the seed column is written
  again only by the draw itself, which swaps the sealed form for the plain one after checking it
  against the commitment (seed_seal.py: a day's seed is stored sealed until its draw);
* a draw is revealed once: UPDATE ... WHERE drawn_ms IS NULL, results are stored and re-read;
* a day is drawn only with a beacon value judged for the beacon it is bound to when the draw
  is written (model.check_beacon_judged), not the one a look-up before that write saw;
* a CommitDraw or RunDraw request_id names one request: it is looked up, and remembered, in the
  transaction that applies the call, so of concurrent calls under one key exactly one applies.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import FailedPrecondition

from . import model
from .model import DrawRecord, EntryRecord, RequestKey
from .seed_seal import PLAIN_SEED_BYTES, SEED_UNREADABLE, SeedSeal, abandoned_key_ids, is_sealed, key_id_of, key_path_from_env

__all__ = ["LotteryStore", "SqliteLotteryStore", "MIGRATIONS", "SYNCHRONOUS"]

SYNCHRONOUS = "FULL"

MIGRATIONS = [
    """
    CREATE TABLE draws (
        campaign_id     TEXT    NOT NULL,
        day             TEXT    NOT NULL,          -- YYYY-MM-DD in the campaign's time zone
        prize_name      TEXT    NOT NULL,
        prize_value_fen INTEGER NOT NULL,
        winner_count    INTEGER NOT NULL,
        time_zone       TEXT    NOT NULL,
        seed            BLOB    NOT NULL,          -- sealed (seed_seal.py) until drawn_ms is set
        commitment      TEXT    NOT NULL,
        commit_ms       INTEGER NOT NULL,
        cutoff_ms       INTEGER NOT NULL,          -- fixed at commit: a config change never moves it
        beacon_source   TEXT    NOT NULL DEFAULT '',
        beacon_round    TEXT    NOT NULL DEFAULT '',
        beacon_value    TEXT    NOT NULL DEFAULT '',
        entrant_count   INTEGER NOT NULL DEFAULT 0,
        drawn_ms        INTEGER,
        winners         TEXT    NOT NULL DEFAULT '[]',
        entrants_hash   TEXT    NOT NULL DEFAULT '',
        PRIMARY KEY (campaign_id, day)
    );
    CREATE INDEX draws_pending ON draws (drawn_ms, cutoff_ms);
    CREATE TABLE entries (
        campaign_id TEXT    NOT NULL,
        day         TEXT    NOT NULL,
        user_id     TEXT    NOT NULL,
        entry_ms    INTEGER NOT NULL,
        won         INTEGER NOT NULL DEFAULT 0,
        request_id  TEXT    NOT NULL DEFAULT '',
        PRIMARY KEY (campaign_id, day, user_id),
        FOREIGN KEY (campaign_id, day) REFERENCES draws (campaign_id, day)
    );
    CREATE INDEX entries_by_user ON entries (campaign_id, user_id, day);
    """,
    # 2: the request ids of CommitDraw and RunDraw (model.RequestKey), each with the fingerprint
    # of its request and the day it answered with, written in the transaction that applies the
    # call; rows older than model.REQUEST_MEMORY_MS are forgotten by the scheduler's tick, as the
    # card service's sweep forgets its own. A new table only: an existing store opens as it was.
    """
    CREATE TABLE requests (
        method      TEXT    NOT NULL,
        request_id  TEXT    NOT NULL,
        fingerprint TEXT    NOT NULL,
        campaign_id TEXT    NOT NULL,
        day         TEXT    NOT NULL,
        create_ms   INTEGER NOT NULL,
        PRIMARY KEY (method, request_id)
    ) WITHOUT ROWID;
    CREATE INDEX requests_age ON requests (create_ms);
    """,
    # 3: EnterDraw's request_id is a key of the user's (model.check_entry_replay): looked up by
    # (user, key) before an entry is made, so a key used for one day's entry is not taken again
    # for another day's. Entries always stored their key; this only makes the look-up a seek.
    """
    CREATE INDEX entries_request ON entries (user_id, request_id) WHERE request_id <> '';
    """,
]

_DRAW_COLUMNS = (
    "campaign_id, day, prize_name, prize_value_fen, winner_count, time_zone, seed, commitment, commit_ms, "
    "cutoff_ms, beacon_source, beacon_round, beacon_value, entrant_count, drawn_ms, winners, entrants_hash"
)


class LotteryStore(Protocol):
    async def get_draw(self, campaign_id: str, day: str) -> DrawRecord | None: ...
    async def ensure_draw(self, draw: DrawRecord) -> DrawRecord: ...
    async def commit_draw(self, wanted: DrawRecord, explicit: set[str], now_ms: int, request: RequestKey | None = None) -> DrawRecord: ...
    async def enter(
        self, draw_if_new: DrawRecord, user_id: str, now_ms: int, request_id: str, asked_day: str | None = None
    ) -> tuple[EntryRecord, DrawRecord, bool]:
        """asked_day: the day as the request named it ("" for today); None: draw_if_new's day."""
        ...
    async def entry_for_request(self, user_id: str, request_id: str) -> tuple[EntryRecord, DrawRecord] | None:
        """The entry an EnterDraw request_id of this user made, with its day, if any."""
        ...
    async def entry_and_draw(self, campaign_id: str, day: str, user_id: str) -> tuple[EntryRecord | None, DrawRecord | None]: ...
    async def run_draw(
        self, campaign_id: str, day: str, now_ms: int, beacon_value: str, request: RequestKey | None = None,
        judged_beacon: tuple[str, str] = ("", ""),
    ) -> DrawRecord | None:
        """judged_beacon: the (source, round) `beacon_value` was judged for, the day's as the
        caller looked it up ("", "" for none): a day bound to another since is refused
        (model.check_beacon_judged), never drawn with a value nobody checked against its round."""
        ...
    async def replayed(self, request: RequestKey) -> DrawRecord | None:
        """The day a request_id answered, as it is now, when it was used for this very request;
        None when it is new. Raises AlreadyExists REQUEST_ID_REUSED when it was used for another.
        commit_draw and run_draw make the same check in their write (a concurrent call)."""
        ...
    async def forget_requests(self, before_ms: int, limit: int) -> int: ...
    async def entrants_page(self, campaign_id: str, day: str, after: str, limit: int) -> list[str]: ...
    async def user_entries(self, campaign_id: str, user_id: str, before_day: str, limit: int) -> list[EntryRecord]: ...
    async def day_entries(self, draw: DrawRecord, after: str, won_only: bool, limit: int) -> list[EntryRecord]: ...
    async def draws_page(self, campaign_id: str, before_day: str, limit: int) -> list[DrawRecord]: ...
    async def due_draws(self, now_ms: int) -> list[DrawRecord]: ...
    async def campaign_ids(self) -> list[str]: ...
    async def close(self) -> None: ...


class SqliteLotteryStore:
    def __init__(self, db: Database, seal: SeedSeal) -> None:
        self.db = db
        self.seal = seal

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock | None = None, seal: SeedSeal | None = None) -> "SqliteLotteryStore":
        """seal: the key that seals seeds; default the key file of MIANDAN_LOTTERY_SEED_KEY_FILE,
        else lottery-seed.key beside the store (created on first start). Seeds of pending days
        stored in plain text by earlier versions are sealed here."""
        path = Path(path)
        db = await Database.open(path, MIGRATIONS, synchronous=SYNCHRONOUS, clock=clock)
        try:
            if seal is None:
                waiting = [k for k in await db.read(_pending_key_ids) if k not in abandoned_key_ids()]
                seal = SeedSeal.from_key_file(
                    key_path_from_env(path), sealed_with=waiting, days_committed=await db.read(_any_day_committed)
                )
            store = cls(db, seal)
            await store.db.write(_seal_plain_pending, seal)
        except BaseException:
            await db.close()
            raise
        return store

    async def unreadable_pending(self) -> list[tuple[str, str]]:
        """(campaign, day) of undrawn days whose seed this store's key cannot open: days that
        cannot be drawn until the key they were sealed with is back."""
        return await self.db.read(_unreadable_pending, self.seal)

    async def close(self) -> None:
        await self.db.close()

    async def get_draw(self, campaign_id: str, day: str) -> DrawRecord | None:
        return await self.db.read(_select_draw, campaign_id, day)

    async def ensure_draw(self, draw: DrawRecord) -> DrawRecord:
        return await self.db.write(_ensure_draw, self.seal, draw)

    async def commit_draw(self, wanted: DrawRecord, explicit: set[str], now_ms: int, request: RequestKey | None = None) -> DrawRecord:
        return await self.db.write(_commit_draw, self.seal, wanted, frozenset(explicit), now_ms, request)

    async def enter(
        self, draw_if_new: DrawRecord, user_id: str, now_ms: int, request_id: str, asked_day: str | None = None
    ) -> tuple[EntryRecord, DrawRecord, bool]:
        asked = draw_if_new.day if asked_day is None else asked_day
        return await self.db.write(_enter, self.seal, draw_if_new, user_id, now_ms, request_id, asked)

    async def entry_for_request(self, user_id: str, request_id: str) -> tuple[EntryRecord, DrawRecord] | None:
        return await self.db.read(_entry_for_request, user_id, request_id)

    async def entry_and_draw(self, campaign_id: str, day: str, user_id: str) -> tuple[EntryRecord | None, DrawRecord | None]:
        return await self.db.read(_select_entry_and_draw, campaign_id, day, user_id)

    async def run_draw(
        self, campaign_id: str, day: str, now_ms: int, beacon_value: str, request: RequestKey | None = None,
        judged_beacon: tuple[str, str] = ("", ""),
    ) -> DrawRecord | None:
        return await self.db.write(_run_draw, self.seal, campaign_id, day, now_ms, beacon_value, request, judged_beacon)

    async def replayed(self, request: RequestKey) -> DrawRecord | None:
        return await self.db.read(_replayed, request)

    async def forget_requests(self, before_ms: int, limit: int) -> int:
        return await self.db.write(_forget_requests, before_ms, limit)

    async def entrants_page(self, campaign_id: str, day: str, after: str, limit: int) -> list[str]:
        return await self.db.read(_entrants_page, campaign_id, day, after, limit)

    async def user_entries(self, campaign_id: str, user_id: str, before_day: str, limit: int) -> list[EntryRecord]:
        return await self.db.read(_user_entries, campaign_id, user_id, before_day, limit)

    async def day_entries(self, draw: DrawRecord, after: str, won_only: bool, limit: int) -> list[EntryRecord]:
        # drawn comes with each row from the same statement as won: `draw` may have been read
        # before a RunDraw committed, and its drawn beside the rows' won would tell a winner
        # "won" in a day "not drawn yet".
        rows = await self.db.read(_day_entries, draw.campaign_id, draw.day, after, won_only, limit)
        return [EntryRecord(draw.campaign_id, draw.day, user, ms, bool(drawn), bool(won)) for user, ms, won, drawn in rows]

    async def draws_page(self, campaign_id: str, before_day: str, limit: int) -> list[DrawRecord]:
        return await self.db.read(_draws_page, campaign_id, before_day, limit)

    async def due_draws(self, now_ms: int) -> list[DrawRecord]:
        return await self.db.read(_due_draws, now_ms)

    async def campaign_ids(self) -> list[str]:
        return await self.db.read(_campaign_ids)


# --- functions below run in the connection threads -------------------------------------------


def _draw(row: sqlite3.Row) -> DrawRecord:
    """A day as read: its seed is b"" until drawn. The sealed form never leaves the store, and
    the plain one is unsealed only by the draw (_run_draw)."""
    stored = bytes(row["seed"])
    return DrawRecord(
        campaign_id=row["campaign_id"],
        day=row["day"],
        prize_name=row["prize_name"],
        prize_value_fen=row["prize_value_fen"],
        winner_count=row["winner_count"],
        time_zone=row["time_zone"],
        seed=b"" if is_sealed(stored) or row["drawn_ms"] is None else stored,
        commitment=row["commitment"],
        commit_ms=row["commit_ms"],
        cutoff_ms=row["cutoff_ms"],
        beacon_source=row["beacon_source"],
        beacon_round=row["beacon_round"],
        beacon_value=row["beacon_value"],
        entrant_count=row["entrant_count"],
        drawn_ms=row["drawn_ms"],
        winners=tuple(json.loads(row["winners"])),
        entrants_hash=row["entrants_hash"],
    )


def _select_draw(conn: sqlite3.Connection, campaign_id: str, day: str) -> DrawRecord | None:
    row = conn.execute(f"SELECT {_DRAW_COLUMNS} FROM draws WHERE campaign_id = ? AND day = ?", (campaign_id, day)).fetchone()
    return _draw(row) if row is not None else None


def _insert_draw_if_absent(conn: sqlite3.Connection, seal: SeedSeal, d: DrawRecord) -> bool:
    cur = conn.execute(
        f"INSERT OR IGNORE INTO draws ({_DRAW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            d.campaign_id, d.day, d.prize_name, d.prize_value_fen, d.winner_count, d.time_zone,
            seal.seal(d.seed, d.campaign_id, d.day),
            d.commitment, d.commit_ms, d.cutoff_ms, d.beacon_source, d.beacon_round, "", 0, None, "[]", "",
        ),
    )
    return cur.rowcount == 1


def _ensure_draw(conn: sqlite3.Connection, seal: SeedSeal, draw: DrawRecord) -> DrawRecord:
    _insert_draw_if_absent(conn, seal, draw)
    stored = _select_draw(conn, draw.campaign_id, draw.day)
    assert stored is not None
    return stored


def _replayed(conn: sqlite3.Connection, request: RequestKey | None) -> DrawRecord | None:
    """The day `request` answered, as it is now, when its request_id was used for this very
    request; None when it is new (or absent). Another request's id: REQUEST_ID_REUSED."""
    if request is None:
        return None
    row = conn.execute(
        "SELECT fingerprint, campaign_id, day FROM requests WHERE method = ? AND request_id = ?",
        (request.method, request.request_id),
    ).fetchone()
    if row is None:
        return None
    if row[0] != request.fingerprint:
        raise model.request_id_reused()
    draw = _select_draw(conn, row[1], row[2])
    assert draw is not None  # a remembered call answered with a stored day; days are never deleted
    return draw


def _remember(conn: sqlite3.Connection, request: RequestKey | None, answer: DrawRecord) -> None:
    if request is not None:
        conn.execute(
            "INSERT INTO requests (method, request_id, fingerprint, campaign_id, day, create_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (request.method, request.request_id, request.fingerprint, answer.campaign_id, answer.day, request.at_ms),
        )


def _forget_requests(conn: sqlite3.Connection, before_ms: int, limit: int) -> int:
    # As the card service's sweep forgets its request ids: oldest first by the age index, a
    # bounded number per pass.
    return conn.execute(
        "DELETE FROM requests WHERE (method, request_id) IN"
        " (SELECT method, request_id FROM requests WHERE create_ms < ? LIMIT ?)",
        (before_ms, limit),
    ).rowcount


def _commit_draw(
    conn: sqlite3.Connection, seal: SeedSeal, wanted: DrawRecord, explicit: frozenset[str], now_ms: int,
    request: RequestKey | None = None,
) -> DrawRecord:
    seen = _replayed(conn, request)
    if seen is not None:
        return seen
    answer = _apply_commit(conn, seal, wanted, explicit, now_ms)
    _remember(conn, request, answer)
    return answer


def _apply_commit(conn: sqlite3.Connection, seal: SeedSeal, wanted: DrawRecord, explicit: frozenset[str], now_ms: int) -> DrawRecord:
    existing = _select_draw(conn, wanted.campaign_id, wanted.day)
    if existing is None:
        if now_ms >= wanted.cutoff_ms:
            raise FailedPrecondition(
                "ENTRIES_CLOSED",
                f"{wanted.day} 的报名已截止,截止后发布的承诺没有意义 / entries for {wanted.day} are closed: "
                "a commitment published after the cut-off proves nothing",
            )
        if "beacon_round" in explicit:
            model.check_beacon_round(wanted.beacon_source, wanted.beacon_round, wanted.cutoff_ms)
        _insert_draw_if_absent(conn, seal, wanted)
        return replace(wanted, seed=b"")
    amended = model.amend_commit(existing, wanted, set(explicit), now_ms)
    if amended is existing:
        return existing
    # The seed and commitment are deliberately absent from this UPDATE.
    conn.execute(
        "UPDATE draws SET prize_name = ?, prize_value_fen = ?, winner_count = ?, beacon_source = ?, beacon_round = ? "
        "WHERE campaign_id = ? AND day = ? AND drawn_ms IS NULL AND cutoff_ms > ?",
        (
            amended.prize_name, amended.prize_value_fen, amended.winner_count, amended.beacon_source,
            amended.beacon_round, amended.campaign_id, amended.day, now_ms,
        ),
    )
    stored = _select_draw(conn, wanted.campaign_id, wanted.day)
    assert stored is not None
    return stored


def _closed(day: str) -> FailedPrecondition:
    return FailedPrecondition("ENTRIES_CLOSED", f"{day} 的抽奖报名已截止 / entries for the {day} draw are closed")


def _enter(
    conn: sqlite3.Connection, seal: SeedSeal, draw_if_new: DrawRecord, user_id: str, now_ms: int, request_id: str,
    asked_day: str,
) -> tuple[EntryRecord, DrawRecord, bool]:
    # The key is looked up again in the write: another call under it may have entered since
    # the handler's look-up (another campaign, or a slow card call across midnight).
    seen = _entry_for_request(conn, user_id, request_id) if request_id else None
    if seen is not None and (seen[0].campaign_id, seen[0].day) != (draw_if_new.campaign_id, draw_if_new.day):
        model.check_entry_replay(seen[0], draw_if_new.campaign_id, asked_day)
        return seen[0], seen[1], False
    _insert_draw_if_absent(conn, seal, draw_if_new)
    draw = _select_draw(conn, draw_if_new.campaign_id, draw_if_new.day)
    assert draw is not None
    existing = conn.execute(
        "SELECT entry_ms FROM entries WHERE campaign_id = ? AND day = ? AND user_id = ?",
        (draw.campaign_id, draw.day, user_id),
    ).fetchone()
    if existing is not None:
        # Checked before the cut-off test: a retry after the cut-off still gets its entry back.
        return EntryRecord(draw.campaign_id, draw.day, user_id, existing["entry_ms"], draw.drawn, user_id in draw.winners), draw, False
    if draw.drawn or now_ms >= draw.cutoff_ms:
        raise _closed(draw.day)
    conn.execute(
        "INSERT INTO entries (campaign_id, day, user_id, entry_ms, request_id) VALUES (?, ?, ?, ?, ?)",
        (draw.campaign_id, draw.day, user_id, now_ms, request_id),
    )
    conn.execute(
        "UPDATE draws SET entrant_count = entrant_count + 1 WHERE campaign_id = ? AND day = ?",
        (draw.campaign_id, draw.day),
    )
    return EntryRecord(draw.campaign_id, draw.day, user_id, now_ms), replace(draw, entrant_count=draw.entrant_count + 1), True


def _entry_for_request(conn: sqlite3.Connection, user_id: str, request_id: str) -> tuple[EntryRecord, DrawRecord] | None:
    # "request_id <> ''" lets SQLite use the partial index entries_request; the earliest day
    # answers for a key that entries made before the key was checked share.
    row = conn.execute(
        "SELECT campaign_id, day FROM entries WHERE user_id = ? AND request_id = ? AND request_id <> '' ORDER BY day LIMIT 1",
        (user_id, request_id),
    ).fetchone()
    if row is None:
        return None
    entry, draw = _select_entry_and_draw(conn, row["campaign_id"], row["day"], user_id)
    assert entry is not None and draw is not None  # entries and draws are never deleted
    return entry, draw


def _select_entry_and_draw(conn: sqlite3.Connection, campaign_id: str, day: str, user_id: str) -> tuple[EntryRecord | None, DrawRecord | None]:
    draw = _select_draw(conn, campaign_id, day)
    if draw is None:
        return None, None
    row = conn.execute(
        "SELECT entry_ms, won FROM entries WHERE campaign_id = ? AND day = ? AND user_id = ?", (campaign_id, day, user_id)
    ).fetchone()
    if row is None:
        return None, draw
    return EntryRecord(campaign_id, day, user_id, row["entry_ms"], draw.drawn, bool(row["won"])), draw


def _run_draw(
    conn: sqlite3.Connection, seal: SeedSeal, campaign_id: str, day: str, now_ms: int, beacon_value: str,
    request: RequestKey | None = None, judged_beacon: tuple[str, str] = ("", ""),
) -> DrawRecord | None:
    seen = _replayed(conn, request)
    if seen is not None:
        return seen
    answer = _apply_run(conn, seal, campaign_id, day, now_ms, beacon_value, judged_beacon)
    if answer is not None:  # no day: DRAW_NOT_FOUND, nothing to remember
        _remember(conn, request, answer)
    return answer


def _apply_run(
    conn: sqlite3.Connection, seal: SeedSeal, campaign_id: str, day: str, now_ms: int, beacon_value: str,
    judged_beacon: tuple[str, str],
) -> DrawRecord | None:
    draw = _select_draw(conn, campaign_id, day)
    if draw is None or draw.drawn:
        return draw
    # In the transaction that draws: the beacon the value was judged for is the day's own.
    model.check_beacon_judged(draw, judged_beacon)
    model.check_runnable(draw, now_ms, beacon_value)
    seed = _unsealed_seed(conn, seal, draw)
    entrants = [r[0] for r in conn.execute(
        "SELECT user_id FROM entries WHERE campaign_id = ? AND day = ? ORDER BY user_id", (campaign_id, day)
    )]
    result = model.reveal(replace(draw, seed=seed), entrants, beacon_value, now_ms)
    # The seed is public from here on: stored plain, so verifying a day never needs the key.
    cur = conn.execute(
        "UPDATE draws SET beacon_value = ?, drawn_ms = ?, winners = ?, entrants_hash = ?, entrant_count = ?, seed = ? "
        "WHERE campaign_id = ? AND day = ? AND drawn_ms IS NULL",
        (
            result.beacon_value, result.drawn_ms, json.dumps(list(result.winners), ensure_ascii=False),
            result.entrants_hash, result.entrant_count, seed, campaign_id, day,
        ),
    )
    if cur.rowcount != 1:  # cannot happen under the single writer; never overwrite a result
        return _select_draw(conn, campaign_id, day)
    conn.executemany(
        "UPDATE entries SET won = 1 WHERE campaign_id = ? AND day = ? AND user_id = ?",
        [(campaign_id, day, w) for w in result.winners],
    )
    return result


def _unsealed_seed(conn: sqlite3.Connection, seal: SeedSeal, draw: DrawRecord) -> bytes:
    (stored,) = conn.execute(
        "SELECT seed FROM draws WHERE campaign_id = ? AND day = ?", (draw.campaign_id, draw.day)
    ).fetchone()
    seed = seal.open(bytes(stored), draw.campaign_id, draw.day)
    if model.commitment_of(seed) != draw.commitment:
        raise FailedPrecondition(
            SEED_UNREADABLE,
            f"{draw.campaign_id} {draw.day} 的种子与承诺不符,不能开奖 / the stored seed of {draw.campaign_id} {draw.day} "
            "does not match its published commitment; the day cannot be drawn",
            metadata={"campaign_id": draw.campaign_id, "day": draw.day},
        )
    return seed


def _seal_plain_pending(conn: sqlite3.Connection, seal: SeedSeal) -> int:
    rows = conn.execute(
        "SELECT campaign_id, day, seed FROM draws WHERE drawn_ms IS NULL AND length(seed) = ?", (PLAIN_SEED_BYTES,)
    ).fetchall()
    if rows:
        # Zero the plain bytes the UPDATE frees instead of leaving them in the file's free space.
        conn.execute("PRAGMA secure_delete = ON")
    for campaign_id, day, seed in rows:
        conn.execute(
            "UPDATE draws SET seed = ? WHERE campaign_id = ? AND day = ? AND drawn_ms IS NULL",
            (seal.seal(bytes(seed), campaign_id, day), campaign_id, day),
        )
    return len(rows)


def _any_day_committed(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM draws LIMIT 1").fetchone() is not None


def _pending_key_ids(conn: sqlite3.Connection) -> list[str]:
    ids = {key_id_of(bytes(r[0])) for r in conn.execute("SELECT seed FROM draws WHERE drawn_ms IS NULL")}
    return sorted(i for i in ids if i is not None)


def _unreadable_pending(conn: sqlite3.Connection, seal: SeedSeal) -> list[tuple[str, str]]:
    bad = []
    for campaign_id, day, stored in conn.execute("SELECT campaign_id, day, seed FROM draws WHERE drawn_ms IS NULL"):
        try:
            seal.open(bytes(stored), campaign_id, day)
        except FailedPrecondition:
            bad.append((campaign_id, day))
    return bad


def _entrants_page(conn: sqlite3.Connection, campaign_id: str, day: str, after: str, limit: int) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT user_id FROM entries WHERE campaign_id = ? AND day = ? AND user_id > ? ORDER BY user_id LIMIT ?",
        (campaign_id, day, after, limit),
    )]


def _user_entries(conn: sqlite3.Connection, campaign_id: str, user_id: str, before_day: str, limit: int) -> list[EntryRecord]:
    rows = conn.execute(
        "SELECT e.day, e.entry_ms, e.won, d.drawn_ms FROM entries e JOIN draws d "
        "ON d.campaign_id = e.campaign_id AND d.day = e.day "
        "WHERE e.campaign_id = ? AND e.user_id = ? AND (? = '' OR e.day < ?) ORDER BY e.day DESC LIMIT ?",
        (campaign_id, user_id, before_day, before_day, limit),
    )
    return [EntryRecord(campaign_id, r["day"], user_id, r["entry_ms"], r["drawn_ms"] is not None, bool(r["won"])) for r in rows]


def _day_entries(
    conn: sqlite3.Connection, campaign_id: str, day: str, after: str, won_only: bool, limit: int
) -> list[tuple[str, int, int, int]]:
    # The primary key's range for the day: won_only reads the day's entries once per page and
    # keeps the few winners (a day's winners are a handful of its entrants). The day's drawn
    # state is read by the same statement (one snapshot), as _user_entries reads it.
    won = " AND e.won = 1" if won_only else ""
    return [tuple(r) for r in conn.execute(
        "SELECT e.user_id, e.entry_ms, e.won, d.drawn_ms IS NOT NULL FROM entries e JOIN draws d"
        " ON d.campaign_id = e.campaign_id AND d.day = e.day"
        f" WHERE e.campaign_id = ? AND e.day = ? AND e.user_id > ?{won} ORDER BY e.user_id LIMIT ?",
        (campaign_id, day, after, limit),
    )]


def _draws_page(conn: sqlite3.Connection, campaign_id: str, before_day: str, limit: int) -> list[DrawRecord]:
    rows = conn.execute(
        f"SELECT {_DRAW_COLUMNS} FROM draws WHERE campaign_id = ? AND (? = '' OR day < ?) ORDER BY day DESC LIMIT ?",
        (campaign_id, before_day, before_day, limit),
    )
    return [_draw(r) for r in rows]


def _due_draws(conn: sqlite3.Connection, now_ms: int) -> list[DrawRecord]:
    rows = conn.execute(
        f"SELECT {_DRAW_COLUMNS} FROM draws WHERE drawn_ms IS NULL AND cutoff_ms <= ? ORDER BY cutoff_ms", (now_ms,)
    )
    return [_draw(r) for r in rows]


def _campaign_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT campaign_id FROM draws ORDER BY campaign_id")]
