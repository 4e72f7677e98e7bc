"""A committed day's seed is sealed at rest until its draw (services/lottery/seed_seal.py): the
store file and its backups do not hold it, the wrong key stops only the draw, with a reason, and
seeds stored in plain text by earlier versions are sealed when the store opens."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
from datetime import timedelta

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.backup import back_up
from services.common.clock import FakeClock, to_ms
from services.common.errors import error_details
from services.lottery import model
from services.lottery.seed_seal import KEY_FILE_NAME, SEALED_BYTES, SeedSeal
from services.lottery.store import SqliteLotteryStore

from .conftest import CAMPAIGN, DAY, MORNING

CUTOFF = timedelta(hours=10)  # 10:00 -> 20:00 Shanghai


async def commit(lot):
    return (await lot.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.admin)).draw


async def enter(lot, user):
    return await lot.stub.EnterDraw(pb.EnterDrawRequest(request_id=f"e-{user}", campaign_id=CAMPAIGN, user_id=user, day=DAY), metadata=lot.md)


async def run_draw(lot):
    return (await lot.stub.RunDraw(pb.RunDrawRequest(request_id="run", campaign_id=CAMPAIGN, day=DAY), metadata=lot.admin)).draw


def store_bytes(data_dir) -> bytes:
    """Everything of the store on disk: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("lottery.db*")))


async def test_neither_the_store_nor_its_backup_holds_the_seed_before_the_draw(lottery, card_server, clock, tmp_path):
    committed = await commit(lottery)
    for user in ("a", "b"):
        await card_server.invite(user, 3)
        await enter(lottery, user)
    data = tmp_path / "lottery"
    on_disk = store_bytes(data)
    backup = tmp_path / "backup"
    back_up(data, backup)
    assert sorted(p.name for p in backup.iterdir()) == ["lottery.db"]  # the key file stays behind
    assert (data / KEY_FILE_NAME).exists()
    clock.advance(CUTOFF.total_seconds())
    drawn = await run_draw(lottery)
    seed = bytes.fromhex(drawn.seed)
    assert hashlib.sha256(seed).hexdigest() == committed.commitment
    assert seed not in on_disk and seed[:16] not in on_disk
    assert seed not in (backup / "lottery.db").read_bytes()
    assert sorted(drawn.winners) == ["a", "b"]
    # Once drawn, the seed is stored plain: verifying never needs the key.
    with sqlite3.connect(data / "lottery.db") as db:
        (stored,) = db.execute("SELECT seed FROM draws WHERE campaign_id = ? AND day = ?", (CAMPAIGN, DAY)).fetchone()
    assert stored == seed


async def test_a_wrong_key_stops_only_the_draw_with_a_reason_until_the_key_is_back(lottery, card_server, clock, tmp_path, monkeypatch):
    committed = await commit(lottery)
    await card_server.invite("a", 3)
    await enter(lottery, "a")
    key_file = tmp_path / "lottery" / KEY_FILE_NAME
    kept = tmp_path / "kept.key"
    await lottery.stop()
    shutil.move(key_file, kept)
    # Lost: the service does not start with a fresh key (it would seal the next days under a
    # second one while the operator restores the first), and says which key it needs.
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_SEED_KEY_FILE") as refused:
        await lottery.start()
    assert SeedSeal.from_key_file(kept).key_id.hex() in str(refused.value)
    assert not key_file.exists()
    # Another key there (the wrong file, or a new key): it would seal the next days with a key
    # that opens none of the waiting ones, so no start either.
    key_file.write_text("ab" * 32)
    with pytest.raises(ValueError, match="opens none of the days"):
        await lottery.start()
    # The operator gives the old key up for lost: the service starts and takes entries.
    old_id = SeedSeal.from_key_file(kept).key_id.hex()
    monkeypatch.setenv("MIANDAN_LOTTERY_ABANDONED_SEED_KEYS", old_id)
    await lottery.start()
    await card_server.invite("b", 3)
    await enter(lottery, "b")
    clock.advance(CUTOFF.total_seconds())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run_draw(lottery)
    details = error_details(err.value)
    assert (details["code"], details["reason"]) == ("FAILED_PRECONDITION", "SEED_UNREADABLE")
    pending = (await lottery.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.md)).draw
    assert pending.entrant_count == 2 and not pending.seed and not pending.winners
    await lottery.stop()
    shutil.move(kept, key_file)  # found after all
    monkeypatch.delenv("MIANDAN_LOTTERY_ABANDONED_SEED_KEYS")
    await lottery.start()
    drawn = await run_draw(lottery)
    assert hashlib.sha256(bytes.fromhex(drawn.seed)).hexdigest() == committed.commitment
    assert sorted(drawn.winners) == ["a", "b"]


async def test_pending_seeds_stored_plain_by_earlier_versions_are_sealed_on_open(tmp_path):
    clock = FakeClock(MORNING)
    path = tmp_path / "lottery.db"
    seal = SeedSeal(b"k" * 32)
    store = await SqliteLotteryStore.open(path, clock=clock, seal=seal)
    now = to_ms(clock.now())
    plain = bytes(range(32))
    draw = model.DrawRecord(
        campaign_id=CAMPAIGN, day=DAY, prize_name="p", prize_value_fen=1, winner_count=1, time_zone="Asia/Shanghai",
        seed=plain, commitment=model.commitment_of(plain), commit_ms=now, cutoff_ms=now + 1_000,
    )
    await store.ensure_draw(draw)
    await store.close()
    # What an earlier version wrote: the plain seed in the row.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE draws SET seed = ?", (plain,))

    store = await SqliteLotteryStore.open(path, clock=clock, seal=seal)
    try:
        with sqlite3.connect(path) as db:
            (stored,) = db.execute("SELECT seed FROM draws").fetchone()
        assert len(stored) == SEALED_BYTES and plain not in stored
        assert (await store.get_draw(CAMPAIGN, DAY)).seed == b""  # a pending day's seed is not read out
        assert await store.unreadable_pending() == []
        drawn = await store.run_draw(CAMPAIGN, DAY, now + 1_000, "")
        assert drawn.seed == plain and drawn.drawn
    finally:
        await store.close()
    other = await SqliteLotteryStore.open(tmp_path / "other.db", clock=clock, seal=SeedSeal(b"j" * 32))
    try:
        await other.ensure_draw(draw)
    finally:
        await other.close()
    reopened = await SqliteLotteryStore.open(tmp_path / "other.db", clock=clock, seal=seal)
    try:
        assert await reopened.unreadable_pending() == [(CAMPAIGN, DAY)]
    finally:
        await reopened.close()
