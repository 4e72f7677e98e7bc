"""The gateway's own check of a drawn day (gateway/draw_verification.py) holds a draw to the
published algorithm as the independent verifier (services/lottery/verify.py) does: what the
algorithm fixes and the draw does not follow is never shown verified."""
from __future__ import annotations

import hashlib

from gateway.draw_verification import check_draw, entrants_hash, winners_of

ENTRANTS = sorted(f"u{i:02d}" for i in range(30))


def a_draw(seed: bytes) -> dict:
    return dict(
        seed_hex=seed.hex(), commitment=hashlib.sha256(seed).hexdigest(), beacon_value="", entrants=ENTRANTS,
        published_entrants_hash=entrants_hash(ENTRANTS), entrant_count=len(ENTRANTS), winner_count=15,
        winners=winners_of(seed, "", ENTRANTS, 15), commit_ms=1_000, cutoff_ms=2_000, drawn_ms=2_500, beacon_source="",
    )


def test_a_seed_that_is_not_32_bytes_is_not_verified_even_when_it_matches_its_commitment():
    assert check_draw(**a_draw(b"\x07" * 32)).verified
    # The empty seed's commitment (SHA-256 of nothing) is public knowledge: anyone could rank
    # every user id before entries closed. The algorithm draws 32 secret bytes.
    for seed in (b"", b"\x07" * 16, b"\x07" * 33):
        assert not check_draw(**a_draw(seed)).verified, len(seed)


def test_a_drawn_day_without_its_published_entrants_hash_is_not_verified():
    draw = a_draw(b"\x07" * 32)
    assert not check_draw(**dict(draw, published_entrants_hash="")).verified


def test_a_commitment_made_after_the_cutoff_or_a_draw_before_it_is_not_verified():
    draw = a_draw(b"\x07" * 32)
    for times in ((2_000, 2_000, 2_500), (3_000, 2_000, 3_500), (1_000, 2_000, 1_999), (0, 2_000, 2_500)):
        commit, cutoff, drawn = times
        assert not check_draw(**dict(draw, commit_ms=commit, cutoff_ms=cutoff, drawn_ms=drawn)).verified, times


def test_a_day_bound_to_a_beacon_is_verified_only_when_drawn_with_a_beacon_value():
    seed = b"\x07" * 32
    draw = a_draw(seed)
    assert not check_draw(**dict(draw, beacon_source="drand:quicknet")).verified
    with_value = dict(draw, beacon_source="drand:quicknet", beacon_value="ab12", winners=winners_of(seed, "ab12", ENTRANTS, 15))
    assert check_draw(**with_value).verified
    assert not check_draw(**dict(with_value, beacon_source="")).verified
