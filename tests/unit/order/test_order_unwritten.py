"""A new request writes its order row once, after the card call; the recovery pass finds the
card reservations a crash left without a row through the card watermark."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.order import model
from services.order.handlers import WATERMARK_MARGIN_MS, OrderService
from services.order.upstream import CONFIRMED, HELD, REFUNDED
from tests.unit.order.test_order_saga import fails, place


def now(world) -> int:
    return int(world.clock.now().timestamp() * 1000)


@pytest.fixture
def writes(world, monkeypatch):
    """Counts the order store's writes by method."""
    counted: Counter = Counter()
    for name in ("begin_placement", "update", "insert_placed"):
        inner = getattr(world.store, name)

        def spy(*args, _inner=inner, _name=name, **kw):
            counted[_name] += 1
            return _inner(*args, **kw)

        monkeypatch.setattr(world.store, name, spy)
    return counted


def crash_after_the_card_call(world):
    """The next ReserveCard is committed by the card service, then the process dies."""
    inner = world.card.reserve

    async def redeem_then_die(**kw):
        world.card.reserve = inner
        await inner(**kw)
        raise asyncio.CancelledError()

    world.card.reserve = redeem_then_die


def restarted(world) -> OrderService:
    return OrderService(world.store, world.card, world.catalog, world.payments, clock=world.clock, config=world.service.config)


async def test_a_new_request_writes_its_row_once_as_the_finished_order(world, writes):
    world.card.grant("c1", "u1")
    paid = await world.service.place_order(place("r1"))
    assert paid.status == model.PAID and paid.card_id == "c1"
    assert writes == Counter(insert_placed=1)
    # Without a card, and with something left to pay: one write each as well.
    world.card.grant("c2", "u2", face_fen=1000)
    pending = await world.service.place_order(place("r2", user="u2"))
    assert pending.status == model.PENDING_PAYMENT and pending.payable_fen == 500 and pending.card_id == "c2"
    plain = await world.service.place_order(place("r3", user="u3", card_use=model.CARD_NONE))
    assert plain.status == model.PENDING_PAYMENT and plain.card_id == ""
    assert writes == Counter(insert_placed=3)
    for order in (paid, pending, plain):
        assert await world.store.get(order.order_id) == order


async def test_a_failed_placement_still_leaves_its_aborted_row(world, writes):
    await fails(world.service.place_order(place(card_use=model.CARD_REQUIRED)), "FAILED_PRECONDITION", "NO_CARD_AVAILABLE")
    row = await world.store.get(model.order_id_for("u1", "r1"))
    assert row.status == model.ABORTED and writes == Counter(begin_placement=1, update=1)
    # The same request_id with other content is still refused as reused.
    await fails(world.service.place_order(place(lines=(("latte", 2),))), "ALREADY_EXISTS", "REQUEST_ID_REUSED")


async def test_the_first_placement_stores_the_watermark_and_each_pass_moves_it_up_to_the_oldest_in_flight(world):
    assert await world.store.card_watermark() is None
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u2")
    first = now(world)
    await world.service.place_order(place("r1"))
    assert await world.store.card_watermark() == first - WATERMARK_MARGIN_MS
    # A placement stuck in its card call keeps the watermark before it.
    world.clock.advance(100)
    started = now(world)
    gate = asyncio.Event()
    inner = world.card.reserve

    async def slow_reserve(**kw):
        await gate.wait()
        return await inner(**kw)

    world.card.reserve = slow_reserve
    stuck = asyncio.ensure_future(world.service.place_order(place("r2", user="u2")))
    await asyncio.sleep(0.01)
    world.clock.advance(100)
    await world.service.sweep()
    assert await world.store.card_watermark() == started - WATERMARK_MARGIN_MS
    gate.set()
    assert (await stuck).status == model.PAID
    await world.service.sweep()
    assert await world.store.card_watermark() == now(world) - WATERMARK_MARGIN_MS
    # It never moves back.
    assert await world.store.advance_card_watermark(0) == now(world) - WATERMARK_MARGIN_MS
    assert await world.store.start_card_watermark(0) == now(world) - WATERMARK_MARGIN_MS


async def test_recovery_undoes_only_our_reservations_that_no_row_knows_about(world):
    for card, user in (("c1", "u1"), ("c2", "u2"), ("c3", "u3"), ("c4", "u4")):
        world.card.grant(card, user)
    placed = await world.service.place_order(place("r1"))
    # Another caller's reservation on the same card service: not ours to touch.
    await world.card.reserve(campaign_id="x", user_id="u2", key="o-foreign", amount_fen=1500, card_id="", ttl_seconds=60, timeout=1, redeem=True)
    # Ours, left by a crash: a redeemed card and a held one, neither with a row.
    crash_after_the_card_call(world)
    await fails(world.service.place_order(place("r3", user="u3")), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    crash_after_the_card_call(world)
    world.catalog.prices["latte"] = 3000  # above the face value: a plain hold
    await fails(world.service.place_order(place("r4", user="u4")), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    world.catalog.prices["latte"] = 1500
    key3, key4 = model.order_id_for("u3", "r3"), model.order_id_for("u4", "r4")
    assert (world.card.reservations[key3].state, world.card.reservations[key4].state) == (CONFIRMED, HELD)
    # The new process takes an order before its first pass: the watermark the last run left
    # stays where that pass must look from.
    world.clock.advance(100)
    service = restarted(world)
    world.card.grant("c5", "u5")
    assert (await service.place_order(place("r5", user="u5"))).status == model.PAID
    report = await service.sweep(startup=True)
    assert report.recovered == 2 and report.failed == 0
    assert world.card.reservations[key3].state == REFUNDED and world.card.cards["c3"].state == "AVAILABLE"
    assert world.card.cards["c4"].state == "AVAILABLE"
    assert world.card.reservations["o-foreign"].state == CONFIRMED
    assert world.card.reservations[placed.order_id].state == CONFIRMED and world.card.cards["c1"].state == "REDEEMED"
    assert await service.get_order(placed.order_id, "u1") == placed
    # Every pass after that one only moves the watermark.
    calls = world.card.calls["ListReservations"]
    assert (await service.sweep()).recovered == 0 and world.card.calls["ListReservations"] == calls


async def test_recovery_leaves_alone_a_placement_still_in_its_card_call(world):
    world.card.grant("c1", "u1")
    await world.service.place_order(place("r0", card_use=model.CARD_NONE))  # stores the watermark
    gate = asyncio.Event()
    inner = world.card.reserve

    async def reserve_then_wait(**kw):
        r = await inner(**kw)
        await gate.wait()
        return r

    world.card.reserve = reserve_then_wait
    live = asyncio.ensure_future(world.service.place_order(place("r1")))
    await asyncio.sleep(0.01)
    report = await world.service.sweep(startup=True)
    assert report.recovered == 0 and world.card.calls["RefundCard"] == 0
    gate.set()
    order = await live
    assert order.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"


async def test_a_retry_during_the_undo_waits_for_it_then_places_a_new_attempt(world):
    world.card.grant("c1", "u1")
    crash_after_the_card_call(world)
    await fails(world.service.place_order(place("r1")), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    service = restarted(world)
    gate = asyncio.Event()
    release = world.card.release

    async def slow_release(key, *, timeout):
        await gate.wait()
        return await release(key, timeout=timeout)

    world.card.release = slow_release
    sweep = asyncio.ensure_future(service.sweep(startup=True))
    await asyncio.sleep(0.01)
    retry = asyncio.ensure_future(service.place_order(place("r1")))
    await asyncio.sleep(0.01)
    assert not retry.done()  # it waits for the undo instead of racing it
    gate.set()
    assert (await sweep).recovered == 1
    await fails(retry, "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    order = await service.place_order(place("r1"))
    assert order.status == model.PAID and order.attempt == 1 and order.card_id == "c1"
    oid = model.order_id_for("u1", "r1")
    assert world.card.reservations[oid].state == REFUNDED and world.card.reservations[f"{oid}.1"].state == CONFIRMED
    assert world.card.cards["c1"].state == "REDEEMED"


async def test_when_the_order_write_fails_the_card_is_given_back(world, monkeypatch):
    world.card.grant("c1", "u1")

    async def disk_error(*args, **kw):
        raise OSError("disk I/O error")

    monkeypatch.setattr(world.store, "insert_placed", disk_error)
    with pytest.raises(OSError):
        await world.service.place_order(place("r1"))
    assert world.card.cards["c1"].state == "AVAILABLE" and world.card.calls["RefundCard"] == 1
    assert await world.store.get(model.order_id_for("u1", "r1")) is None


async def test_an_undo_that_fails_is_done_by_the_next_pass_and_holds_the_watermark_meanwhile(world, monkeypatch):
    world.card.grant("c1", "u1")
    await world.service.place_order(place("r0", card_use=model.CARD_NONE))  # stores the watermark
    mark = await world.store.card_watermark()
    inner = world.store.insert_placed

    async def disk_error_and_card_gone(*args, **kw):
        world.card.down = True
        raise OSError("disk I/O error")

    monkeypatch.setattr(world.store, "insert_placed", disk_error_and_card_gone)
    with pytest.raises(OSError):
        await world.service.place_order(place("r1"))
    monkeypatch.setattr(world.store, "insert_placed", inner)
    assert world.card.cards["c1"].state == "REDEEMED"
    world.clock.advance(600)
    report = await world.service.sweep()
    assert report.failed == 1 and await world.store.card_watermark() == mark
    world.card.down = False
    report = await world.service.sweep()
    assert report.recovered == 1 and report.failed == 0
    assert world.card.cards["c1"].state == "AVAILABLE"
    assert await world.store.card_watermark() == now(world) - WATERMARK_MARGIN_MS
    # The retry is a new attempt and places the order.
    order = await world.service.place_order(place("r1"))
    assert order.status == model.PAID and order.attempt == 1


def test_only_our_reservation_keys_are_parsed():
    oid = model.order_id_for("u1", "r1")
    assert model.parse_reservation_key(oid) == (oid, 0)
    assert model.parse_reservation_key(f"{oid}.2") == (oid, 2)
    for other in ("o-foreign", f"{oid}.0", f"{oid}.x", f"{oid}.", oid.upper(), oid + "0", ""):
        assert model.parse_reservation_key(other) is None, other


async def test_a_row_that_appears_meanwhile_keeps_its_card_when_it_holds_the_same_reservation(world, monkeypatch):
    # Another process sharing the store wrote the same attempt's row first: the card we were
    # answered with is that row's, so it is not given back, and the caller gets that order.
    world.card.grant("c1", "u1")
    inner = world.store.insert_placed

    async def written_first(order, **kw):
        await inner(order, **kw)
        return None

    monkeypatch.setattr(world.store, "insert_placed", written_first)
    order = await world.service.place_order(place("r1"))
    assert order.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"
    assert world.card.calls["RefundCard"] == world.card.calls["ReleaseReservation"] == 0


async def test_a_row_of_another_attempt_that_appears_meanwhile_gets_our_card_back(world, monkeypatch):
    world.card.grant("c1", "u1")

    async def other_attempt_first(order, **kw):
        await world.store.begin_placement(model.revised(order, attempt=order.attempt + 1, status=model.ABORTED))
        return None

    monkeypatch.setattr(world.store, "insert_placed", other_attempt_first)
    await fails(world.service.place_order(place("r1")), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    assert world.card.cards["c1"].state == "AVAILABLE" and world.card.calls["RefundCard"] == 1


async def test_a_card_held_after_the_wall_clock_stepped_back_is_still_found_after_a_crash(world):
    # The card service stamps reservations with the wall clock, the same one that set the
    # watermark: stepped back a minute (NTP), every reservation of that minute is stamped before
    # the stored watermark. A crash then left the card held or redeemed for an order that does
    # not exist, and the recovery pass, listing from the watermark, never saw it.
    world.card.grant("c3", "u3")
    await world.service.place_order(place("r0", card_use=model.CARD_NONE))  # stores the watermark
    await world.service.sweep()
    mark = await world.store.card_watermark()
    world.clock.advance(-60)
    crash_after_the_card_call(world)
    await fails(world.service.place_order(place("r3", user="u3")), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    key3 = model.order_id_for("u3", "r3")
    assert world.card.reservations[key3].state == CONFIRMED
    assert world.card.reservations[key3].create_ms < mark
    world.clock.advance(1)
    service = restarted(world)
    report = await service.sweep(startup=True)
    assert report.recovered == 1 and report.failed == 0
    assert world.card.reservations[key3].state == REFUNDED and world.card.cards["c3"].state == "AVAILABLE"
