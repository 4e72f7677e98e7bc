"""ListReservations over a real card server: what the order service's recovery pass reads to find
the cards it reserved for orders it never wrote (every reservation created since a watermark,
oldest first by (create_time, order_id), in pages)."""
import base64
import dataclasses

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.card import store as s
from services.card.model import DAY_MS, Rules, new_campaign
from services.card.wiring import build
from services.common.clock import now_ms
from services.common.db import Database
from services.common.errors import error_details
from tests.integration.card.conftest import CardClient, ts
from tests.integration.card.test_card_bad_input import rejected

C = "spring"
HELD, CONFIRMED = card_pb2.RESERVATION_STATE_HELD, card_pb2.RESERVATION_STATE_CONFIRMED
RELEASED, REFUNDED = card_pb2.RESERVATION_STATE_RELEASED, card_pb2.RESERVATION_STATE_REFUNDED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def users(card):
    """Three users with three cards each."""
    await card.campaign(C, signup_grant=3)
    for user in ("alice", "bob", "carol"):
        await card.ClaimSignupCard(campaign_id=C, user_id=user)
    return card


async def reserve(card, user, order, **fields):
    return (await card.ReserveCard(campaign_id=C, user_id=user, order_id=order, amount_fen=1500, **fields)).reservation


async def listed(card, page_size=2, **fields):
    """Every page of ListReservations, followed to the end: (reservations, pages)."""
    page = await card.ListReservations(page_size=page_size, **fields)
    found, pages = list(page.reservations), 1
    while page.next_page_token:
        page = await card.ListReservations(page_size=page_size, page_token=page.next_page_token)
        found += page.reservations
        pages += 1
    return found, pages


def keys(reservations):
    return [(r.create_time.ToMilliseconds(), r.order_id) for r in reservations]


async def test_reservations_of_every_user_and_state_are_listed_with_their_create_time(users, clock):
    card = users
    made = {}
    for user, order in (("alice", "o-held"), ("bob", "o-confirmed"), ("carol", "o-released"), ("alice", "o-refunded"),
                        ("bob", "o-redeemed")):
        made[order] = await reserve(card, user, order, redeem=order in ("o-refunded", "o-redeemed"))
        assert made[order].create_time.ToMilliseconds() == now_ms(clock)
        clock.advance(seconds=1)
    # The later transitions answer with the reservation's creation time, not their own.
    settled = [
        (await card.ConfirmReservation(order_id="o-confirmed")).reservation,
        (await card.ReleaseReservation(order_id="o-released")).reservation,
        (await card.RefundCard(order_id="o-refunded")).reservation,
    ]
    assert [r.create_time for r in settled] == [made[r.order_id].create_time for r in settled]

    found = (await card.ListReservations()).reservations
    expected = {
        "o-held": HELD, "o-confirmed": CONFIRMED, "o-released": RELEASED, "o-refunded": REFUNDED,
        "o-redeemed": CONFIRMED,
    }
    assert [r.order_id for r in found] == list(expected)
    for r in found:
        # As ReserveCard answered it, in the state it went on to.
        want = card_pb2.Reservation()
        want.CopyFrom(made[r.order_id])
        want.state = expected[r.order_id]
        assert r == want
    assert {r.user_id for r in found} == {"alice", "bob", "carol"}


async def test_a_hold_past_its_ttl_is_listed_as_released(users, clock):
    await reserve(users, "alice", "o1", ttl_seconds=60)
    assert [r.state for r in (await users.ListReservations()).reservations] == [HELD]
    clock.advance(seconds=61)
    assert [r.state for r in (await users.ListReservations()).reservations] == [RELEASED]


async def test_reservations_come_by_create_time_then_order_id(users, clock):
    await reserve(users, "carol", "o-z")
    clock.advance(seconds=1)
    # One batch: the same create time for all three, whatever order they were asked in.
    batch = await users.ReserveCards(reservations=[
        pb.ReserveCardRequest(campaign_id=C, user_id=user, order_id=order, amount_fen=900)
        for user, order in (("alice", "o-c"), ("bob", "o-a"), ("carol", "o-b"))
    ])
    assert {r.reservation.reservation.create_time.ToMilliseconds() for r in batch.results} == {now_ms(clock)}
    clock.advance(seconds=1)
    await reserve(users, "alice", "o-0")
    found = (await users.ListReservations()).reservations
    assert [r.order_id for r in found] == ["o-z", "o-a", "o-b", "o-c", "o-0"]
    assert keys(found) == sorted(keys(found))


async def test_pages_of_two_return_each_reservation_once_even_across_equal_create_times(users, clock):
    # Create times t0 t0 t0 t1 t1: the page boundaries fall inside the runs of equal times.
    for i, user in enumerate(("alice", "bob", "carol", "alice", "bob")):
        if i == 3:
            clock.advance(seconds=1)
        await reserve(users, user, f"o{4 - i}")
    found, pages = await listed(users, page_size=2)
    assert pages == 3
    assert [r.order_id for r in found] == ["o2", "o3", "o4", "o0", "o1"]
    # A last page filled exactly to the size still says it is the last.
    await reserve(users, "carol", "o5")
    found, pages = await listed(users, page_size=2)
    assert (len(found), pages) == (6, 3)
    # page_size 0 means 500: everything in one page.
    everything = await users.ListReservations()
    assert len(everything.reservations) == 6 and everything.next_page_token == ""


async def test_created_after_keeps_the_reservations_made_at_or_after_it(users, clock):
    times = []
    for order, user in (("o1", "alice"), ("o2", "bob"), ("o3", "carol")):
        times.append(clock.now())
        await reserve(users, user, order)
        clock.advance(seconds=10)
    assert [r.order_id for r in (await listed(users, created_after=ts(times[1])))[0]] == ["o2", "o3"]
    assert [r.order_id for r in (await listed(users, created_after=ts(times[0])))[0]] == ["o1", "o2", "o3"]
    assert (await users.ListReservations(created_after=ts(clock.now()))).reservations == []
    # With a token, created_after is ignored: the token alone says where the next page starts.
    first = await users.ListReservations(created_after=ts(times[1]), page_size=1)
    assert [r.order_id for r in first.reservations] == ["o2"]
    rest = await users.ListReservations(created_after=ts(clock.now()), page_token=first.next_page_token)
    assert [r.order_id for r in rest.reservations] == ["o3"] and rest.next_page_token == ""


def _token(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


@pytest.mark.parametrize("fields, field, reason", [
    (dict(page_size=-1), "page_size", "INVALID_ARGUMENT"),
    (dict(page_size=1001), "page_size", "INVALID_ARGUMENT"),
    (dict(page_token="garbage"), "page_token", "INVALID_PAGE_TOKEN"),
    (dict(page_token="!!not-a-token!!"), "page_token", "INVALID_PAGE_TOKEN"),
    # The shape of this RPC's tokens (tag, create ms, order id) with another tag, or no number.
    (dict(page_token=_token("X", "1769603400000", "o1")), "page_token", "INVALID_PAGE_TOKEN"),
    (dict(page_token=_token("R", "soon", "o1")), "page_token", "INVALID_PAGE_TOKEN"),
    # Numbers str.isdigit() accepts but int() refuses, and one SQLite cannot bind: these were
    # INTERNAL (ValueError, OverflowError) until tokens took ASCII digits within 64 bits only.
    (dict(page_token=_token("R", "²", "o1")), "page_token", "INVALID_PAGE_TOKEN"),
    (dict(page_token=_token("R", "9" * 25, "o1")), "page_token", "INVALID_PAGE_TOKEN"),
    (dict(page_token=_token("R", "١٧٦٩", "o1")), "page_token", "INVALID_PAGE_TOKEN"),
    # A Timestamp beyond the type's range: its milliseconds overflowed SQLite's integer (INTERNAL).
    (dict(created_after=Timestamp(seconds=2**63 - 1)), "created_after", "INVALID_TIMESTAMP"),
    (dict(created_after=Timestamp(seconds=0, nanos=-1)), "created_after", "INVALID_TIMESTAMP"),
])
async def test_a_bad_page_size_token_or_time_is_invalid_argument_naming_it(users, fields, field, reason):
    d = await rejected(users.ListReservations(**fields), INVALID, field, reason=reason)
    assert d["code"] == "INVALID_ARGUMENT"


async def test_a_token_of_another_list_rpc_is_refused(users):
    for user in ("alice", "bob"):
        await reserve(users, user, f"o-{user}")
    cards_token = (await users.ListCards(campaign_id=C, user_id="alice", page_size=1)).next_page_token
    assert cards_token
    await rejected(users.ListReservations(page_token=cards_token), INVALID, "page_token")
    assert len((await users.ListReservations(page_size=1000)).reservations) == 2


async def test_without_the_internal_credential_it_is_unauthenticated(users):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.stub.ListReservations(pb.ListReservationsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, error_details(err.value)


async def test_a_schema_2_database_gets_the_index_and_lists_its_reservations(card_server, clock, tmp_path):
    """The upgrade a running deployment goes through: migration 3 on a database that already
    holds reservations, under a server that then lists them."""
    _, _, settings = card_server
    settings = dataclasses.replace(settings, data_dir=tmp_path / "v2")
    settings.data_dir.mkdir()
    old = await Database.open(settings.db_path, s.MIGRATIONS[:2], clock=clock)
    now = now_ms(clock)
    c = new_campaign(C, "春节", now - 1000, now + DAY_MS, Rules(budget_fen=10**6), now, b"k" * 32)
    await old.write(s._create_campaign, c, "")
    await old.write(s._claim_signup, c, "alice", "", now_ms(clock))
    await old.write(s._reserve, c, "alice", "o1", 900, "", 60, "", now_ms(clock))
    assert "reservations_created" not in await old.read(_index_names)
    await old.close()

    server = await build(settings, clock=clock, sweep_interval_s=3600)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        db = server.card_store.db
        assert "reservations_created" in await db.read(_index_names)
        assert await db.read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == len(s.MIGRATIONS)
        found = (await CardClient(channel, settings).ListReservations()).reservations
        assert keys(found) == [(now_ms(clock), "o1")]
    finally:
        await channel.close()
        await server.stop(1.0)


def _index_names(conn):
    return {row[1] for row in conn.execute("PRAGMA index_list(reservations)")}
