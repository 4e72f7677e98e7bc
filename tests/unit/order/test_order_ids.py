"""The Bloom filter of order ids: never a false negative, about the false-positive rate it was
sized for, any string accepted, and still no false negative past its capacity."""
from __future__ import annotations

import random

import pytest

from services.order import model
from services.order.order_ids import KnownOrderIds


def order_ids(n: int, seed: int) -> list[str]:
    """Ids shaped as model.order_id_for makes them (24 random hex digits), fast to make."""
    rng = random.Random(seed)
    return [f"ord_{rng.getrandbits(96):024x}" for _ in range(n)]


def false_positive_rate(known: KnownOrderIds, never_added: list[str]) -> float:
    return sum(known.may_contain(i) for i in never_added) / len(never_added)


def test_every_added_id_is_found_among_100k():
    ids = order_ids(100_000, seed=1)
    known = KnownOrderIds(100_000)
    for i in ids:
        known.add(i)
    assert all(known.may_contain(i) for i in ids)
    assert known.load() == pytest.approx(1.0, abs=0.01)


def test_ids_never_added_are_rarely_found_at_the_sized_count():
    known = KnownOrderIds(100_000, fp_rate=0.01)
    for i in order_ids(100_000, seed=2):
        known.add(i)
    rate = false_positive_rate(known, order_ids(100_000, seed=3))
    assert 0.005 < rate < 0.015, rate


def test_real_order_ids_use_their_own_digits_well():
    # Ids from order_id_for itself (sha256 of user and request), not only random ones.
    known = KnownOrderIds(20_000)
    added = [model.order_id_for(f"u{n}", "r1") for n in range(20_000)]
    for i in added:
        known.add(i)
    assert all(known.may_contain(i) for i in added)
    assert false_positive_rate(known, [model.order_id_for(f"u{n}", "r2") for n in range(20_000)]) < 0.02


def test_an_empty_filter_contains_nothing():
    known = KnownOrderIds(1000)
    assert not any(known.may_contain(i) for i in order_ids(1000, seed=4))
    assert known.load() == 0


@pytest.mark.parametrize(
    "odd",
    ["ord_1", "", "hello", "ord_" + "z" * 24, "ORD_" + "a" * 24, "ord_" + "A" * 24, "ord_" + "-1" * 12, "\ud800", "订单"],
)
def test_strings_not_shaped_as_order_ids_are_remembered_too(odd):
    known = KnownOrderIds(1000)
    known.add(odd)
    assert known.may_contain(odd)
    assert known.count == 1


def test_other_strings_get_about_the_sized_false_positive_rate():
    known = KnownOrderIds(20_000)
    for n in range(20_000):
        known.add(f"order-{n}")
    assert all(known.may_contain(f"order-{n}") for n in range(20_000))
    assert false_positive_rate(known, [f"other-{n}" for n in range(20_000)]) < 0.02


def test_past_its_capacity_it_finds_every_id_and_says_it_is_over():
    known = KnownOrderIds(1000)
    ids = order_ids(20_000, seed=5)
    for i in ids:
        known.add(i)
    assert all(known.may_contain(i) for i in ids)
    assert known.load() > 10
    # The price of overfilling: far more false positives than sized for.
    assert false_positive_rate(known, order_ids(2000, seed=6)) > 0.5


def test_every_add_counts_so_an_overload_is_never_hidden():
    known = KnownOrderIds(10)
    ids = order_ids(30, seed=7)
    for i in ids:
        known.add(i)
    known.add(ids[0])  # a repeat counts too: at worst the owner grows a little early
    assert known.count == 31 and known.load() == 3.1


def test_it_is_sized_by_the_textbook_formula():
    known = KnownOrderIds(1_000_000, fp_rate=0.01)
    assert known.hash_count == 7
    assert 9_500_000 < known.bit_count < 9_700_000  # 9.59 bits per id: 1.2 MB


@pytest.mark.parametrize("capacity, fp_rate", [(0, 0.01), (10, 0.0), (10, 1.0)])
def test_a_filter_that_cannot_work_is_refused(capacity, fp_rate):
    with pytest.raises(ValueError):
        KnownOrderIds(capacity, fp_rate)
