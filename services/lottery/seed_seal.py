"""Seeds sealed at rest: a committed day's seed is stored encrypted until its draw runs.

Why: whoever reads a day's seed before entries close can compute every user id's rank and enter
only accounts that win (ids are cheap to grind), so the commit-reveal is only as secret as the
store. The store file travels: `make backup` copies, operators' sqlite3 shells, disk snapshots.
With the seed sealed, a copy of lottery.db alone reveals nothing before the draw; the key lives in
its own file, which backups do not copy (they take `*.db` only).

Format of a sealed seed (62 bytes): b"S1" + key id (4 bytes, the first bytes of SHA-256 of the
key, so a wrong key is named rather than guessed) + nonce (12) + AES-256-GCM(seed) with its tag
(32 + 16). The associated data is "<campaign_id>/<day>": a sealed seed copied onto another day's
row does not open. A stored value of exactly 32 bytes is a plain seed: rows written before
sealing existed, and every drawn day (its seed is public once the winners are fixed).

The key: MIANDAN_LOTTERY_SEED_KEY_FILE, else `lottery-seed.key` beside the store; 64 hex
characters. A missing file is created (mode 0600) with a fresh random key on first start, whole or
not at all (written beside it, then linked into place); an empty one, left by a first start that
an earlier version did not finish, is replaced while the store holds no committed day. Lose it
and the days committed under it cannot be drawn: keep it with the operator's other secrets, and
with any backup that is meant to be restored (README, "Backups").
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.errors import FailedPrecondition

__all__ = ["SeedSeal", "SEED_UNREADABLE", "PLAIN_SEED_BYTES", "key_path_from_env", "is_sealed", "key_id_of"]

PLAIN_SEED_BYTES = 32
KEY_BYTES = 32
_MAGIC = b"S1"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
SEALED_BYTES = len(_MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES + PLAIN_SEED_BYTES + 16
SEED_UNREADABLE = "SEED_UNREADABLE"
KEY_FILE_NAME = "lottery-seed.key"


def key_path_from_env(store_path: Path, env: Mapping[str, str] | None = None) -> Path:
    e = os.environ if env is None else env
    configured = (e.get("MIANDAN_LOTTERY_SEED_KEY_FILE") or "").strip()
    return Path(configured) if configured else store_path.parent / KEY_FILE_NAME


def abandoned_key_ids(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """MIANDAN_LOTTERY_ABANDONED_SEED_KEYS: ids of lost keys the operator gives up on (comma
    separated); days sealed with them can never be drawn, and no longer stop a start."""
    e = os.environ if env is None else env
    return frozenset(k.strip().lower() for k in (e.get("MIANDAN_LOTTERY_ABANDONED_SEED_KEYS") or "").split(",") if k.strip())


def is_sealed(stored: bytes) -> bool:
    return len(stored) != PLAIN_SEED_BYTES


class SeedSeal:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a seed key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).digest()[:_KEY_ID_BYTES]

    @classmethod
    def from_key_file(cls, path: Path, *, sealed_with: Sequence[str] = (), days_committed: bool = False) -> "SeedSeal":
        """Reads the key, creating the file with a fresh key when there is none, unless
        `sealed_with` (the key ids of seeds the store still has to open, lost keys the operator
        abandoned left out) is not empty: the key must then be one of those, or the next days
        would be sealed under a second key while the operator restores the first, and no one
        process could draw them all. An empty file counts as none only while the store holds no
        committed day (`days_committed` false): that is what a first start cut short leaves behind.
        ValueError names the file (and MIANDAN_LOTTERY_SEED_KEY_FILE) when it is missing then or
        holds another key, when its content is not a key, or when it can be neither read nor created."""
        lost_for_good = "if it is lost for good, list its id in MIANDAN_LOTTERY_ABANDONED_SEED_KEYS: those days can then never be drawn"
        try:
            if sealed_with and not path.exists():
                raise ValueError(
                    f"seed key file {path} is missing, and the store holds seeds sealed with key "
                    f"{', '.join(sealed_with)}: put that key file back ({lost_for_good}) (MIANDAN_LOTTERY_SEED_KEY_FILE)"
                )
            if not path.exists():
                _create_key_file(path)
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if not text and not days_committed:
                _replace_empty_key_file(path)
                text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError as exc:  # a directory, a missing parent directory, no permission, a full disk
            raise ValueError(
                f"seed key file {path} cannot be read or created: {exc.strerror or exc} (MIANDAN_LOTTERY_SEED_KEY_FILE)"
            ) from None
        if not text:
            # Not a first start cut short: a key sealed the store's days, and then the file lost it.
            if sealed_with:
                what_now = (
                    f"put back the key file of key {', '.join(sealed_with)}, which the days waiting to be drawn "
                    f"were sealed with ({lost_for_good}, and remove the empty file)"
                )
            else:
                what_now = "no day waiting to be drawn needs it: remove the empty file and the next start makes a fresh key"
            raise ValueError(
                f"seed key file {path} is empty, and the store already holds committed days: {what_now} "
                "(MIANDAN_LOTTERY_SEED_KEY_FILE)"
            )
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            # Damaged (a copy cut short, an edit): with days waiting, say which key to put back.
            needed = f": put back the key file of key {', '.join(sealed_with)} ({lost_for_good})" if sealed_with else ""
            raise ValueError(
                f"seed key file {path} must hold {2 * KEY_BYTES} hex characters{needed} (MIANDAN_LOTTERY_SEED_KEY_FILE)"
            )
        seal = cls(key)
        if sealed_with and seal.key_id.hex() not in sealed_with:
            # The wrong file (or a key written over the right one): the next days would be sealed
            # with a key that opens none of the days already waiting, a split no one process heals.
            raise ValueError(
                f"the key in {path} (id {seal.key_id.hex()}) opens none of the days waiting to be drawn, sealed "
                f"with key {', '.join(sealed_with)}: point MIANDAN_LOTTERY_SEED_KEY_FILE at that key ({lost_for_good})"
            )
        return seal

    def seal(self, seed: bytes, campaign_id: str, day: str) -> bytes:
        if len(seed) != PLAIN_SEED_BYTES:
            raise ValueError(f"a seed is {PLAIN_SEED_BYTES} bytes, got {len(seed)}")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, seed, _bound_to(campaign_id, day))

    def open(self, stored: bytes, campaign_id: str, day: str) -> bytes:
        """The plain seed of a stored value (sealed or plain). FailedPrecondition
        SEED_UNREADABLE when this key cannot open it: the day cannot be drawn until the key it
        was sealed with is back."""
        if not is_sealed(stored):
            return stored
        if len(stored) != SEALED_BYTES or not stored.startswith(_MAGIC):
            raise _unreadable(campaign_id, day, "the stored seed is neither a seed nor a sealed seed")
        key_id = stored[len(_MAGIC):len(_MAGIC) + _KEY_ID_BYTES]
        if key_id != self.key_id:
            raise _unreadable(
                campaign_id, day, f"it was sealed with key {key_id.hex()}, this service holds key {self.key_id.hex()}"
            )
        nonce_at = len(_MAGIC) + _KEY_ID_BYTES
        nonce = stored[nonce_at:nonce_at + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, stored[nonce_at + _NONCE_BYTES:], _bound_to(campaign_id, day))
        except InvalidTag:
            raise _unreadable(campaign_id, day, "the sealed seed does not open for this day (altered or moved)") from None


def key_id_of(stored: bytes) -> str | None:
    """The hex id of the key a stored seed is sealed with; None for a plain seed."""
    if len(stored) != SEALED_BYTES or not stored.startswith(_MAGIC):
        return None
    return stored[len(_MAGIC):len(_MAGIC) + _KEY_ID_BYTES].hex()


def _fresh_key_beside(path: Path) -> Path:
    """A new key written and flushed to a private temporary file in the key file's directory."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _create_key_file(path: Path) -> None:
    """Puts a fresh key at `path`, whole or not at all: a full disk or a crash leaves no key
    file, never an empty or partial one that would stop every later start. The link never
    replaces a file: a key another starter put there first is the one both use."""
    fresh = _fresh_key_beside(path)
    try:
        os.link(fresh, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(fresh)
    _sync_directory(path.parent)  # the key's directory entry survives a power loss too


def _replace_empty_key_file(path: Path) -> None:
    """Replaces the empty file an interrupted first start left (earlier versions wrote the key
    into the file they had just created). Starters take the old file's lock and replace it only
    while `path` is still that file and still empty, so a key another one put there is kept."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.stat(path).st_ino != os.fstat(fd).st_ino or os.read(fd, 4096).strip():
            return
        fresh = _fresh_key_beside(path)
        try:
            os.replace(fresh, path)
        except BaseException:
            os.unlink(fresh)
            raise
        _sync_directory(path.parent)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bound_to(campaign_id: str, day: str) -> bytes:
    return f"{campaign_id}/{day}".encode("utf-8")


def _unreadable(campaign_id: str, day: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        SEED_UNREADABLE,
        f"{campaign_id} {day} 的种子无法解封,暂不能开奖 / the seed of {campaign_id} {day} cannot be unsealed: {why}",
        metadata={"campaign_id": campaign_id, "day": day},
    )
