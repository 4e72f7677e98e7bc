"""The preview store's ownership, expiry and bound; the draw checker against the published
algorithm and against the lottery service's own implementation."""
from __future__ import annotations

import hashlib
import random
from datetime import timedelta

from services.common.clock import FakeClock

from gateway.draw_verification import check_draw, entrants_hash, winners_of
from gateway.preview import PreviewRecord, PreviewStore


def record(store: PreviewStore, user: str = "alice") -> PreviewRecord:
    r = PreviewRecord(store.new_id(), user, "两杯生椰拿铁", b"", "s1", b"", store.expiry())
    store.put(r)
    return r


def test_a_preview_is_found_only_by_its_owner_until_it_expires():
    clock = FakeClock()
    store = PreviewStore(ttl_seconds=60, clock=clock)
    r = record(store)
    assert store.get(r.preview_id, "alice") == r
    assert store.get(r.preview_id, "mallory") is None
    assert store.get("pv_guess", "alice") is None
    clock.advance(60)
    assert store.get(r.preview_id, "alice") is None


def test_preview_ids_are_unguessable_and_distinct():
    store = PreviewStore(clock=FakeClock())
    ids = {store.new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) > 20 for i in ids)


def test_the_store_is_bounded_and_drops_the_oldest_first():
    store = PreviewStore(ttl_seconds=60, max_size=3, clock=FakeClock())
    records = [record(store) for _ in range(5)]
    assert len(store) == 3
    assert store.get(records[0].preview_id, "alice") is None
    assert store.get(records[4].preview_id, "alice") == records[4]


def test_expired_previews_are_swept_when_new_ones_arrive():
    clock = FakeClock()
    store = PreviewStore(ttl_seconds=60, clock=clock)
    for _ in range(10):
        record(store)
    clock.advance(timedelta(seconds=61).total_seconds())
    record(store)
    assert len(store) == 1


def test_the_checker_agrees_with_the_lottery_services_implementation():
    from services.lottery import model

    rng = random.Random(7)
    for n in (0, 1, 14, 15, 16, 200):
        ids = [f"用户-{rng.randrange(10**9)}-{'é' * rng.randrange(3)}" for _ in range(n)]
        seed = bytes(rng.randrange(256) for _ in range(32))
        for beacon in ("", "a1b2c3"):
            assert winners_of(seed, beacon, ids, 15) == model.select_winners(seed, beacon, ids, 15)
        assert entrants_hash(ids) == model.entrants_hash(model.sort_entrants(ids))


def test_a_consistent_draw_checks_out_and_each_kind_of_tampering_is_caught():
    seed = b"\x01" * 32
    entrants = sorted(f"u{i}" for i in range(30))
    winners = winners_of(seed, "", entrants, 15)
    good = dict(
        seed_hex=seed.hex(), commitment=hashlib.sha256(seed).hexdigest(), beacon_value="", entrants=entrants,
        published_entrants_hash=entrants_hash(entrants), entrant_count=30, winner_count=15, winners=winners,
        commit_ms=1_000, cutoff_ms=2_000, drawn_ms=2_000, beacon_source="",
    )
    assert check_draw(**good).verified
    bad = {
        "seed": dict(good, seed_hex=(b"\x02" * 32).hex()),
        "entrants": dict(good, entrants=entrants[:-1] + ["intruder"]),
        "count": dict(good, entrant_count=31),
        "winners": dict(good, winners=list(reversed(winners))),
        "beacon": dict(good, beacon_value="chosen-after-the-fact"),
        "algorithm": dict(good, algorithm_version=2),
    }
    for name, kwargs in bad.items():
        assert not check_draw(**kwargs).verified, name
