"""Seeds sealed at rest (services/lottery/seed_seal.py): the format, the key file, the refusals."""
from __future__ import annotations

import os
import stat

import pytest

from services.common.errors import FailedPrecondition
from services.lottery.seed_seal import (
    KEY_FILE_NAME,
    SEALED_BYTES,
    SEED_UNREADABLE,
    SeedSeal,
    is_sealed,
    abandoned_key_ids,
    key_id_of,
    key_path_from_env,
)

SEED = bytes(range(32))


def seal_of(byte: int) -> SeedSeal:
    return SeedSeal(bytes([byte]) * 32)


def test_a_sealed_seed_opens_to_the_seed_and_does_not_contain_it():
    seal = seal_of(1)
    sealed = seal.seal(SEED, "spring-2026", "2026-01-28")
    assert len(sealed) == SEALED_BYTES and is_sealed(sealed)
    assert SEED not in sealed and SEED[:8] not in sealed
    assert seal.open(sealed, "spring-2026", "2026-01-28") == SEED


def test_two_seals_of_one_seed_differ():
    seal = seal_of(1)
    assert seal.seal(SEED, "c", "2026-01-28") != seal.seal(SEED, "c", "2026-01-28")


def test_a_plain_seed_from_before_sealing_reads_as_itself():
    assert not is_sealed(SEED)
    assert seal_of(1).open(SEED, "c", "2026-01-28") == SEED


@pytest.mark.parametrize("campaign, day", [("spring-2026", "2026-01-29"), ("other", "2026-01-28")])
def test_a_sealed_seed_moved_to_another_day_does_not_open(campaign, day):
    seal = seal_of(1)
    sealed = seal.seal(SEED, "spring-2026", "2026-01-28")
    with pytest.raises(FailedPrecondition) as err:
        seal.open(sealed, campaign, day)
    assert err.value.reason == SEED_UNREADABLE
    assert dict(err.value.metadata) == {"campaign_id": campaign, "day": day}


def test_another_key_is_named_in_the_refusal():
    sealed = seal_of(1).seal(SEED, "c", "2026-01-28")
    other = seal_of(2)
    with pytest.raises(FailedPrecondition) as err:
        other.open(sealed, "c", "2026-01-28")
    assert err.value.reason == SEED_UNREADABLE
    assert seal_of(1).key_id.hex() in str(err.value) and other.key_id.hex() in str(err.value)


def test_an_altered_sealed_seed_does_not_open():
    seal = seal_of(1)
    sealed = bytearray(seal.seal(SEED, "c", "2026-01-28"))
    sealed[-1] ^= 1
    with pytest.raises(FailedPrecondition) as err:
        seal.open(bytes(sealed), "c", "2026-01-28")
    assert err.value.reason == SEED_UNREADABLE


@pytest.mark.parametrize("stored", [b"", b"x" * 31, b"S1" + b"\0" * 10, b"XX" + b"\0" * (SEALED_BYTES - 2)])
def test_stored_bytes_that_are_neither_are_refused(stored):
    with pytest.raises(FailedPrecondition) as err:
        seal_of(1).open(stored, "c", "2026-01-28")
    assert err.value.reason == SEED_UNREADABLE


def test_only_seeds_of_32_bytes_are_sealed():
    with pytest.raises(ValueError):
        seal_of(1).seal(b"short", "c", "d")
    with pytest.raises(ValueError):
        SeedSeal(b"k" * 16)


def test_the_key_file_is_created_once_private_and_then_reused(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    first = SeedSeal.from_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    again = SeedSeal.from_key_file(path)
    assert again.key_id == first.key_id
    assert again.open(first.seal(SEED, "c", "d"), "c", "d") == SEED


@pytest.mark.parametrize("content", ["not hex", "ab" * 16, "ab" * 33])  # empty: test_lottery_seed_key_file_creation
def test_a_key_file_that_holds_no_key_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_SEED_KEY_FILE") as err:
        SeedSeal.from_key_file(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", ["ab" * 31, "ab" * 32 + "c", "not a key"])
def test_a_damaged_key_file_beside_days_waiting_names_the_key_they_need(tmp_path, content):
    # A key file cut short by a copy, or edited: the operator has to know which key to put back.
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(ValueError, match="64 hex characters") as err:
        SeedSeal.from_key_file(path, sealed_with=["0a1b2c3d"], days_committed=True)
    assert "0a1b2c3d" in str(err.value) and "MIANDAN_LOTTERY_ABANDONED_SEED_KEYS" in str(err.value)


def test_the_key_file_defaults_beside_the_store_and_can_be_moved(tmp_path):
    store = tmp_path / "data" / "lottery.db"
    assert key_path_from_env(store, {}) == tmp_path / "data" / KEY_FILE_NAME
    assert str(key_path_from_env(store, {"MIANDAN_LOTTERY_SEED_KEY_FILE": "/run/secrets/seed.key"})) == "/run/secrets/seed.key"


def test_no_fresh_key_is_made_while_the_store_holds_seeds_sealed_with_another(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_SEED_KEY_FILE") as err:
        SeedSeal.from_key_file(path, sealed_with=["0a1b2c3d"])
    assert "0a1b2c3d" in str(err.value) and not path.exists()
    path.write_text("cd" * 32)  # another key: it would open none of the waiting days
    with pytest.raises(ValueError, match="opens none of the days") as err:
        SeedSeal.from_key_file(path, sealed_with=["0a1b2c3d"])
    assert "MIANDAN_LOTTERY_ABANDONED_SEED_KEYS" in str(err.value)
    right = SeedSeal(bytes.fromhex("cd" * 32)).key_id.hex()
    assert SeedSeal.from_key_file(path, sealed_with=["0a1b2c3d", right]).key_id.hex() == right
    assert abandoned_key_ids({"MIANDAN_LOTTERY_ABANDONED_SEED_KEYS": " 0A1B2C3D, ff00ff00 "}) == {"0a1b2c3d", "ff00ff00"}


def test_the_key_id_of_a_stored_seed():
    seal = seal_of(3)
    assert key_id_of(seal.seal(SEED, "c", "d")) == seal.key_id.hex()
    assert key_id_of(SEED) is None and key_id_of(b"S1" + b"\0" * 10) is None
