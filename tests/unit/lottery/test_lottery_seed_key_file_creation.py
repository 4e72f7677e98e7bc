"""The seed key file made on first start (services/lottery/seed_seal.py): a start that fails or
dies while writing it leaves no key file or a whole one, and an empty file is taken for a first
start cut short only while the store holds no committed day."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from services.common.clock import to_ms
from services.lottery import model, seed_seal
from services.lottery.model import Campaign
from services.lottery.seed_seal import KEY_FILE_NAME, SeedSeal
from services.lottery.store import SqliteLotteryStore

ROOT = Path(__file__).resolve().parents[3]
DAY = "2026-01-28"
MORNING_MS = to_ms(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))


def first_start_in_a_process(key_file: Path, cut_short: str) -> subprocess.CompletedProcess:
    """A first start in its own process, cut short: `disk_full` lets no byte be written to any
    file (RLIMIT_FSIZE 0), `killed` ends the process when the key is about to be written."""
    code = (
        "import os, resource, signal, sys; sys.path[:0] = ['protos', '.']\n"
        "from pathlib import Path\n"
        "from services.lottery import seed_seal\n"
        f"if {cut_short!r} == 'disk_full':\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "else:\n"
        "    seed_seal.secrets.token_hex = lambda n: os._exit(9)\n"
        "try:\n"
        f"    seed_seal.SeedSeal.from_key_file(Path({str(key_file)!r}))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("cut_short, exit_code", [("disk_full", 3), ("killed", 9)])
def test_a_first_start_cut_short_leaves_no_key_file_and_the_next_start_makes_a_whole_one(tmp_path, cut_short, exit_code):
    key_file = tmp_path / KEY_FILE_NAME
    failed = first_start_in_a_process(key_file, cut_short)
    assert failed.returncode == exit_code, failed.stderr
    if cut_short == "disk_full":
        assert "cannot be read or created" in failed.stdout and str(key_file) in failed.stdout
    assert not key_file.exists()

    seal = SeedSeal.from_key_file(key_file)
    assert bytes.fromhex(key_file.read_text().strip()) and SeedSeal.from_key_file(key_file).key_id == seal.key_id


async def test_an_empty_key_file_beside_a_store_without_days_is_replaced_by_a_whole_key(tmp_path):
    (tmp_path / KEY_FILE_NAME).write_text("")  # what an earlier version left when its first start died
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    try:
        key = bytes.fromhex((tmp_path / KEY_FILE_NAME).read_text().strip())
        assert store.seal.key_id == SeedSeal(key).key_id
    finally:
        await store.close()


async def _store_with_a_committed_day(tmp_path: Path, *, drawn: bool) -> None:
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    try:
        draw = model.new_draw(Campaign("c1"), model.parse_day(DAY), model.DEFAULT_CUTOFF, MORNING_MS)
        await store.ensure_draw(draw)
        if drawn:
            await store.run_draw("c1", DAY, draw.cutoff_ms, "")
    finally:
        await store.close()


async def test_an_empty_key_file_beside_days_sealed_with_its_key_stops_the_start_naming_the_key(tmp_path):
    await _store_with_a_committed_day(tmp_path, drawn=False)
    key_file = tmp_path / KEY_FILE_NAME
    lost = SeedSeal.from_key_file(key_file).key_id.hex()
    key_file.write_text("")  # the key is gone from its file: a fresh one would orphan the day
    with pytest.raises(ValueError) as err:
        await SqliteLotteryStore.open(tmp_path / "lottery.db")
    message = str(err.value)
    assert "is empty" in message and str(key_file) in message and lost in message
    assert "MIANDAN_LOTTERY_SEED_KEY_FILE" in message and "MIANDAN_LOTTERY_ABANDONED_SEED_KEYS" in message
    assert key_file.read_text() == ""


async def test_an_empty_key_file_beside_drawn_days_stops_the_start_too(tmp_path):
    # No day needs the old key any more, but a file that lost a key it once held is not a first
    # start cut short: the operator looks, and removes it to have a fresh key made.
    await _store_with_a_committed_day(tmp_path, drawn=True)
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_text("")
    with pytest.raises(ValueError, match="is empty.*remove the empty file") as err:
        await SqliteLotteryStore.open(tmp_path / "lottery.db")
    assert str(key_file) in str(err.value) and key_file.read_text() == ""
    key_file.unlink()
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    await store.close()
    assert len(key_file.read_text().strip()) == 64


def test_a_key_another_starter_put_in_place_first_is_the_one_used_and_never_overwritten(tmp_path, monkeypatch):
    key_file = tmp_path / KEY_FILE_NAME
    theirs = "cd" * 32 + "\n"
    write_ours = seed_seal._fresh_key_beside

    def another_starter_first(path: Path) -> Path:
        ours = write_ours(path)
        key_file.write_text(theirs)  # between our check and our link
        return ours

    monkeypatch.setattr(seed_seal, "_fresh_key_beside", another_starter_first)
    seal = SeedSeal.from_key_file(key_file)
    assert key_file.read_text() == theirs and seal.key_id == SeedSeal(bytes.fromhex("cd" * 32)).key_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE_NAME]  # no temporary file stays behind
