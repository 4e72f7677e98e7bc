"""An independent check of a drawn day, written from the algorithm published in
miandan/lottery/v1/lottery.proto ("miandan-draw-hmac-sha256" v1), not from the lottery's code:
if the two ever disagree, one of them is wrong and the user is told. (Both take HMAC-SHA256 from
services.common.keyed_hash, a primitive checked against hmac.new; the ranking is each's own.)"""
from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Sequence

from services.common.keyed_hash import hmac_sha256_under

__all__ = ["ALGORITHM", "ALGORITHM_VERSION", "DrawCheck", "winners_of", "entrants_hash", "check_draw"]

ALGORITHM = "miandan-draw-hmac-sha256"
ALGORITHM_VERSION = 1
SEED_BYTES = 32  # step 1: a 32-byte seed from a CSPRNG


@dataclass(frozen=True)
class DrawCheck:
    verified: bool
    note: str


def _sorted_entrants(entrants: Sequence[str]) -> list[str]:
    return sorted(entrants, key=lambda u: u.encode("utf-8"))


def entrants_hash(entrants: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(_sorted_entrants(entrants)).encode("utf-8")).hexdigest()


def winners_of(seed: bytes, beacon_value: str, entrants: Sequence[str], winner_count: int) -> list[str]:
    mac = hmac_sha256_under(seed + beacon_value.encode("utf-8"))
    # Digests of one length order as the big-endian numbers the algorithm ranks by.
    scored = ((mac(u.encode("utf-8")), u.encode("utf-8"), u) for u in set(entrants))
    # The winner_count smallest, in order (what sorted()[:n] gives): no sort of every entrant's
    # score, one C call that holds the GIL, and so the event loop, for its whole length.
    return [u for _, _, u in heapq.nsmallest(max(0, winner_count), scored)]


def check_draw(
    *,
    seed_hex: str,
    commitment: str,
    beacon_value: str,
    entrants: Sequence[str],
    published_entrants_hash: str,
    entrant_count: int,
    winner_count: int,
    winners: Sequence[str],
    commit_ms: int,
    cutoff_ms: int,
    drawn_ms: int,
    beacon_source: str,
    algorithm: str = ALGORITHM,
    algorithm_version: int = ALGORITHM_VERSION,
) -> DrawCheck:
    """commit_ms, cutoff_ms, drawn_ms: the draw's commit, cut-off and draw times (ms since the
    epoch, 0 when absent); beacon_source: the beacon bound at commit, "" for none."""
    if algorithm != ALGORITHM or algorithm_version != ALGORITHM_VERSION:
        return DrawCheck(False, f"unknown algorithm {algorithm} v{algorithm_version}; cannot recompute")
    # A commitment counts only if published before entries closed and the draw came after:
    # committed (or drawn) with the entrant list in view, the seed could have been chosen for it.
    if not 0 < commit_ms < cutoff_ms <= drawn_ms:
        return DrawCheck(False, "the commitment was not published before the cut-off, or the draw came before it")
    # A day bound to a beacon is drawn with that beacon's value: drawn without one, the operator's
    # seed alone decided while the day claims a public beacon.
    if beacon_source and not beacon_value:
        return DrawCheck(False, f"the day is bound to beacon {beacon_source} but was drawn without its value")
    if beacon_value and not beacon_source:
        return DrawCheck(False, "a beacon value was used though no beacon was bound at commit")
    try:
        seed = bytes.fromhex(seed_hex)
    except ValueError:
        return DrawCheck(False, "revealed seed is not hex")
    # A seed of another length matching its commitment is not the algorithm's: the empty one's
    # commitment is public knowledge, and with it anyone ranked every user before the cut-off.
    if len(seed) != SEED_BYTES:
        return DrawCheck(False, f"revealed seed is {len(seed)} bytes, not {SEED_BYTES}")
    if hashlib.sha256(seed).hexdigest() != commitment.lower():
        return DrawCheck(False, "revealed seed does not match the published commitment")
    if len(entrants) != entrant_count or len(set(entrants)) != len(entrants):
        return DrawCheck(False, f"entrant list has {len(entrants)} ids, {entrant_count} announced")
    # Every drawn day publishes the hash (step 2): without it the list paged here is tied to
    # nothing the lottery committed to in its draw.
    if entrants_hash(entrants) != published_entrants_hash.lower():
        return DrawCheck(False, "entrant list does not match its published hash")
    expected = winners_of(seed, beacon_value, entrants, winner_count)
    if list(winners) != expected:
        return DrawCheck(False, "recomputed winners differ from the announced winners")
    beacon = "with public beacon" if beacon_value else "without a public beacon (the operator's seed alone decided)"
    return DrawCheck(
        True,
        f"已独立验证 / verified: seed matches commitment, {entrant_count} entrants, "
        f"{len(expected)} winners recomputed, {beacon}",
    )
