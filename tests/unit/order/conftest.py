"""Fakes of the card and catalog services behind the order service's own Protocols."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import pytest

from services.common.clock import FakeClock
from services.common.errors import DeadlineExceeded, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from services.order.handlers import OrderConfig, OrderEvents, OrderService
from services.order.model import Line, Problem, Quote
from services.order.payment import SandboxPaymentProvider
from services.order.store import SqliteOrderStore
from services.order.upstream import CONFIRMED, HELD, REFUNDED, RELEASED, Reservation


@dataclass
class FakeCard:
    card_id: str
    user_id: str
    face_fen: int = 2500
    state: str = "AVAILABLE"
    key: str = ""


@dataclass
class FakeCardService:
    """Card rules the order saga relies on: one reservation per key (idempotent replay), only
    the owner reserves, release/confirm/refund idempotent."""

    cards: dict[str, FakeCard] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    down: bool = False
    # Do the work, then answer as if the deadline passed (the caller cannot tell it happened).
    slow: bool = False
    # Refuse this many ConfirmReservation calls as an overloaded card server would.
    shed_confirms: int = 0
    # A card server from before ReserveCardRequest.redeem: the flag is ignored, a hold is HELD.
    ignores_redeem: bool = False
    # A card server that redeems even a card covering only part of the amount (the real one
    # refuses with REDEEM_NOT_COVERED).
    redeems_partly: bool = False
    # Stamps each reservation's create_ms (the order service's recovery lists them by time).
    clock: FakeClock | None = None

    def grant(self, card_id: str, user_id: str, face_fen: int = 2500) -> None:
        self.cards[card_id] = FakeCard(card_id, user_id, face_fen)

    def _gate(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise Unavailable("UPSTREAM_UNAVAILABLE", "card down", 100)

    def _answer(self) -> None:
        if self.slow:
            raise DeadlineExceeded("UPSTREAM_DEADLINE", "card slow")

    async def reserve(self, *, campaign_id, user_id, key, amount_fen, card_id, ttl_seconds, timeout, redeem=False):
        self._gate("ReserveCard")
        self.calls["ReserveCard.redeem"] += bool(redeem)
        await asyncio.sleep(0)
        existing = self.reservations.get(key)
        if existing is not None:
            if redeem and not self.ignores_redeem and existing.state == HELD and existing.covered_fen == amount_fen:
                self.cards[existing.card_id].state = "REDEEMED"
                existing = self._set(key, CONFIRMED)
            self._answer()
            return existing
        if card_id:
            card = self.cards.get(card_id)
            if card is None:
                raise NotFound("CARD_NOT_FOUND", "no such card")
            if card.user_id != user_id:
                raise PermissionDenied("CARD_NOT_OWNED", "not yours")
            if card.state != "AVAILABLE":
                raise FailedPrecondition("CARD_NOT_AVAILABLE", "not available")
        else:
            card = next((c for c in self.cards.values() if c.user_id == user_id and c.state == "AVAILABLE"), None)
            if card is None:
                raise FailedPrecondition("NO_CARD_AVAILABLE", "none")
        covered = min(amount_fen, card.face_fen)
        if redeem and covered < amount_fen and not (self.ignores_redeem or self.redeems_partly):
            # The card service refuses a redeem it would not pay in full; nothing is held.
            raise FailedPrecondition("REDEEM_NOT_COVERED", "above the face value")
        # Reserve and redeem in one step only when the card pays the whole amount.
        redeemed = redeem and not self.ignores_redeem and (covered == amount_fen or self.redeems_partly)
        card.state, card.key = ("REDEEMED" if redeemed else "RESERVED"), key
        created = int(self.clock.now().timestamp() * 1000) if self.clock else 0
        r = self.reservations[key] = Reservation(
            card.card_id, covered, CONFIRMED if redeemed else HELD, campaign_id, card.face_fen, key, created
        )
        self._answer()
        return r

    def _set(self, key: str, state: str) -> Reservation:
        r = self.reservations[key] = replace(self.reservations[key], state=state)
        return r

    async def list_reservations(self, created_after_ms, page_token, *, timeout, page_size=2):
        """Pages of page_size (small, so the recovery's paging is exercised), oldest first."""
        self._gate("ListReservations")
        rows = sorted((r for r in self.reservations.values() if r.create_ms >= created_after_ms), key=lambda r: (r.create_ms, r.key))
        start = int(page_token or 0)
        page = rows[start : start + page_size]
        return page, (str(start + page_size) if start + page_size < len(rows) else "")

    async def confirm(self, key, *, timeout):
        self._gate("ConfirmReservation")
        if self.shed_confirms > 0:
            self.shed_confirms -= 1
            raise Unavailable("UPSTREAM_OVERLOADED", "shed", 10, metadata={"upstream_reason": "OVERLOADED"})
        r = self.reservations.get(key)
        if r is None:
            raise NotFound("RESERVATION_NOT_FOUND", "none")
        if r.state == CONFIRMED:
            return r
        if r.state != HELD:
            raise FailedPrecondition("RESERVATION_EXPIRED", "lapsed")
        self.cards[r.card_id].state = "REDEEMED"
        return self._set(key, CONFIRMED)

    async def release(self, key, *, timeout):
        self._gate("ReleaseReservation")
        r = self.reservations.get(key)
        if r is None:
            return None
        if r.state == HELD:
            self.cards[r.card_id].state = "AVAILABLE"
            self.cards[r.card_id].key = ""
            r = self._set(key, RELEASED)
        return r

    async def refund(self, key, *, timeout):
        self._gate("RefundCard")
        r = self.reservations.get(key)
        if r is None or r.state not in (CONFIRMED, REFUNDED):
            raise FailedPrecondition("RESERVATION_NOT_CONFIRMED", "nothing to refund")
        if r.state == CONFIRMED:
            self.cards[r.card_id].state = "AVAILABLE"
            self.cards[r.card_id].key = ""
            self._set(key, REFUNDED)
        return True

    def lapse(self, key: str) -> None:
        """The card service's reservation TTL passed."""
        r = self.reservations[key]
        self.cards[r.card_id].state = "AVAILABLE"
        self._set(key, RELEASED)


@dataclass
class FakeCatalog:
    prices: dict[str, int] = field(default_factory=lambda: {"latte": 1500, "tea": 800, "cake": 3000})
    stores: set[str] = field(default_factory=lambda: {"s1", "s2"})
    sold_out: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    calls: Counter = field(default_factory=Counter)
    down: bool = False
    brands: dict[str, str] = field(default_factory=dict)  # store -> brand, "brand" when absent

    async def store_brand(self, store_id, *, timeout):
        self.calls["GetStore"] += 1
        if self.down:
            raise Unavailable("UPSTREAM_UNAVAILABLE", "catalog down", 100)
        if store_id not in self.stores:
            raise NotFound("STORE_NOT_FOUND", "no such store")
        return self.brands.get(store_id, "brand")

    async def quote(self, store_id, selections, *, timeout):
        self.calls["Quote"] += 1
        if self.down:
            raise Unavailable("UPSTREAM_UNAVAILABLE", "catalog down", 100)
        if store_id not in self.stores:
            raise NotFound("STORE_NOT_FOUND", "no such store")
        lines, idx, problems = [], [], []
        if store_id in self.closed:
            problems.append(Problem(-1, "", "STORE_CLOSED", "closed"))
        for i, s in enumerate(selections):
            if s.item_id not in self.prices:
                problems.append(Problem(i, s.item_id, "UNKNOWN_ITEM", "unknown"))
            elif s.item_id in self.sold_out:
                problems.append(Problem(i, s.item_id, "ITEM_SOLD_OUT", "sold out"))
            else:
                price = self.prices[s.item_id]
                lines.append(Line(s.item_id, s.item_id.title(), s.quantity, (), price, price * s.quantity))
                idx.append(i)
        return Quote(store_id, f"Store {store_id}", "brand", tuple(lines), tuple(idx), sum(l.line_total_fen for l in lines), tuple(problems))


@dataclass
class World:
    service: OrderService
    store: SqliteOrderStore
    card: FakeCardService
    catalog: FakeCatalog
    payments: SandboxPaymentProvider
    clock: FakeClock


@pytest.fixture
async def world(tmp_path):
    clock = FakeClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc))
    events = OrderEvents()
    store = await SqliteOrderStore.open(tmp_path / "order.db", clock=clock, listener=events.publish)
    card, catalog = FakeCardService(clock=clock), FakeCatalog()
    payments = SandboxPaymentProvider("secret")
    service = OrderService(
        store,
        card,
        catalog,
        payments,
        clock=clock,
        config=OrderConfig(payment_ttl_seconds=900, placing_grace_seconds=30, watch_poll_seconds=0.5),
        events=events,
    )
    yield World(service, store, card, catalog, payments, clock)
    await store.close()

