"""A reference model of what the order service promises (DESIGN.md, order.proto and
order_service.proto comments), and a seeded driver that plays long random sequences against the
real OrderService (handlers over the real SQLite store) and compares.

Independent of the service's code: the model knows the lifecycle, the payment window, one card
per order paying min(total, face value), refunds never above what was captured and made once,
cards given back once unless expired, and replays answering the order as it is now. The fakes
of the card service and the payment provider keep ledgers (every hold, redemption, return,
capture and refund), which are compared with the orders after every step and balanced at the end.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from services.common.clock import FakeClock, now_ms
from services.common.errors import DeadlineExceeded, DomainError, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from services.order import model
from services.order.handlers import OrderConfig, OrderEvents, OrderService, PlaceOrderInput
from services.order.model import Selection
from services.order.payment import PaymentDeclined, PaymentIntent, PaymentTimeout, Capture
from services.order.store import SqliteOrderStore
from services.order.upstream import CONFIRMED, HELD, REFUNDED, RELEASED, Reservation

from tests.unit.order.conftest import FakeCatalog

TTL_S = 900
PAID_ON = (model.PAID, model.ACCEPTED, model.PREPARING, model.READY, model.COMPLETED)
# Status -> statuses it may become next, and who may make each cancellation.
NEXT = {
    model.PENDING_PAYMENT: {model.PAID, model.CANCELLED},
    model.PAID: {model.ACCEPTED, model.CANCELLED},
    model.ACCEPTED: {model.PREPARING, model.CANCELLED},
    model.PREPARING: {model.READY, model.CANCELLED},
    model.READY: {model.COMPLETED},
    model.COMPLETED: set(),
    model.CANCELLED: set(),
}
CANCELLERS = {
    model.ACTOR_USER: {model.PENDING_PAYMENT, model.PAID, model.ACCEPTED},
    model.ACTOR_MERCHANT: {model.PENDING_PAYMENT, model.PAID, model.ACCEPTED, model.PREPARING},
    model.ACTOR_SYSTEM: {model.PENDING_PAYMENT, model.PAID, model.ACCEPTED, model.PREPARING},
}


class Faults:
    """Random upstream failures: before the work (down) or after it (the answer is lost)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rate = 0.0
        self.injected = 0

    def pick(self, *kinds: str) -> str:
        if self.rate and self.rng.random() < self.rate:
            self.injected += 1
            return self.rng.choice(kinds)
        return ""


@dataclass
class LedgerCard:
    card_id: str
    user_id: str
    face_fen: int
    expire_ms: int
    state: str = "AVAILABLE"
    key: str = ""
    until_ms: int = 0


@dataclass
class LedgerCardService:
    """The card service as the order service's CardClient sees it (through GrpcCardClient's
    request ids): holds lapse at their TTL, cards expire, a released key may be held again."""

    clock: FakeClock
    faults: Faults
    cards: dict[str, LedgerCard] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    until: dict[str, int] = field(default_factory=dict)
    # (event, card_id, key, card state after): every move of a card.
    ledger: list[tuple[str, str, str, str]] = field(default_factory=list)
    # key -> state the card was put in when the key's latest hold or redemption ended.
    ended_to: dict[str, str] = field(default_factory=dict)

    def now(self) -> int:
        return now_ms(self.clock)

    def _settle(self) -> None:
        now = self.now()
        for key, r in list(self.reservations.items()):
            if r.state == HELD and self.until[key] <= now:
                self._end(key, "LAPSE", RELEASED)
        for c in self.cards.values():
            if c.state == "AVAILABLE" and c.expire_ms <= now:
                c.state = "EXPIRED"

    def _end(self, key: str, event: str, state: str) -> None:
        r = self.reservations[key]
        card = self.cards[r.card_id]
        assert card.key == key, (event, key, card)
        card.state = "EXPIRED" if card.expire_ms <= self.now() else "AVAILABLE"
        card.key = ""
        self.reservations[key] = replace(r, state=state, card_expired=card.state == "EXPIRED")
        self.ended_to[key] = card.state
        self.ledger.append((event, card.card_id, key, card.state))

    def _gate(self) -> str:
        fault = self.faults.pick("down", "lost")
        if fault == "down":
            raise Unavailable("UPSTREAM_UNAVAILABLE", "card down", 100)
        self._settle()
        return fault

    @staticmethod
    def _answer(fault: str) -> None:
        if fault == "lost":
            raise DeadlineExceeded("UPSTREAM_DEADLINE", "card slow")

    async def reserve(self, *, campaign_id, user_id, key, amount_fen, card_id, ttl_seconds, timeout, redeem=False):
        fault = self._gate()
        await asyncio.sleep(0)
        existing = self.reservations.get(key)
        if existing is not None and existing.state != RELEASED:
            if redeem and existing.state == HELD:
                if existing.covered_fen < amount_fen:
                    raise FailedPrecondition("REDEEM_NOT_COVERED", "above the face value")
                self.cards[existing.card_id].state = "REDEEMED"
                existing = self.reservations[key] = replace(existing, state=CONFIRMED)
                self.ledger.append(("REDEEM", existing.card_id, key, "REDEEMED"))
            self._answer(fault)
            return existing
        now = self.now()
        if card_id:
            card = self.cards.get(card_id)
            if card is None:
                raise NotFound("CARD_NOT_FOUND", "no such card")
            if card.user_id != user_id:
                raise PermissionDenied("CARD_NOT_OWNED", "not yours")
            if card.state != "AVAILABLE":
                raise FailedPrecondition("CARD_NOT_AVAILABLE", "not available")
        else:
            free = [c for c in self.cards.values() if c.user_id == user_id and c.state == "AVAILABLE"]
            if not free:
                raise FailedPrecondition("NO_CARD_AVAILABLE", "none")
            card = min(free, key=lambda c: (c.expire_ms, c.card_id))
        covered = min(amount_fen, card.face_fen)
        if redeem and covered < amount_fen:
            raise FailedPrecondition("REDEEM_NOT_COVERED", "above the face value")
        card.state, card.key = ("REDEEMED" if redeem else "RESERVED"), key
        self.until[key] = now + ttl_seconds * 1000
        r = self.reservations[key] = Reservation(
            card.card_id, covered, CONFIRMED if redeem else HELD, campaign_id, card.face_fen, key, now
        )
        self.ledger.append(("REDEEM" if redeem else "HOLD", card.card_id, key, card.state))
        self._answer(fault)
        return r

    async def confirm(self, key, *, timeout):
        fault = self._gate()
        r = self.reservations.get(key)
        if r is None:
            raise NotFound("RESERVATION_NOT_FOUND", "none")
        if r.state == HELD:
            self.cards[r.card_id].state = "REDEEMED"
            r = self.reservations[key] = replace(r, state=CONFIRMED)
            self.ledger.append(("REDEEM", r.card_id, key, "REDEEMED"))
        elif r.state != CONFIRMED:
            raise FailedPrecondition("RESERVATION_EXPIRED" if r.state == RELEASED else "RESERVATION_REFUNDED", "not held")
        self._answer(fault)
        return r

    async def release(self, key, *, timeout):
        fault = self._gate()
        r = self.reservations.get(key)
        if r is None:
            self._answer(fault)
            return None
        if r.state == HELD:
            self._end(key, "RELEASE", RELEASED)
        r = self.reservations[key]
        card = self.cards[r.card_id]
        self._answer(fault)
        return replace(r, card_expired=card.state == "EXPIRED")

    async def refund(self, key, *, timeout):
        fault = self._gate()
        r = self.reservations.get(key)
        if r is None:
            raise NotFound("RESERVATION_NOT_FOUND", "none")
        if r.state == HELD:
            self._end(key, "RELEASE", RELEASED)
        elif r.state == CONFIRMED:
            self._end(key, "REFUND", REFUNDED)
        r = self.reservations[key]
        self._answer(fault)
        if r.state == REFUNDED:
            return self.ended_to[key] == "AVAILABLE"
        return self.cards[r.card_id].state == "AVAILABLE"

    async def list_reservations(self, created_after_ms, page_token, *, timeout, page_size=3):
        if self.faults.pick("down"):
            raise Unavailable("UPSTREAM_UNAVAILABLE", "card down", 100)
        rows = sorted((r for r in self.reservations.values() if r.create_ms >= created_after_ms), key=lambda r: (r.create_ms, r.key))
        start = int(page_token or 0)
        return rows[start : start + page_size], (str(start + page_size) if start + page_size < len(rows) else "")


class LedgerPayments:
    """A provider whose capture is idempotent per reference and refund per payment id, keeping
    what it took and gave back. Faults: declined, or a timeout before or after the money moved."""

    name = "sandbox"

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.captured: dict[str, int] = {}  # payment_id -> fen
        self.refunded: dict[str, int] = {}
        self.refund_calls: dict[str, int] = {}
        self.problems: list[str] = []
        self.declined: set[str] = set()

    async def create_intent(self, order_id: str, amount_fen: int) -> PaymentIntent:
        return PaymentIntent(f"pay_{order_id}", f"ref_{order_id}_{amount_fen}")

    async def capture(self, reference: str, order_id: str, amount_fen: int) -> Capture:
        fault = self.faults.pick("decline", "timeout_before", "timeout_after")
        if fault == "timeout_before":
            raise PaymentTimeout(reference)
        if (fault == "decline" and f"pay_{order_id}" not in self.captured) or reference in self.declined:
            # A capture that went through answers as itself (idempotent per reference); a
            # declined reference stays declined (as the sandbox's declined_references).
            self.declined.add(reference)
            raise PaymentDeclined("PAYMENT_DECLINED")
        if reference != f"ref_{order_id}_{amount_fen}":
            raise PaymentDeclined("PAYMENT_REFERENCE_INVALID")
        pid = f"pay_{order_id}"
        self.captured[pid] = amount_fen
        if fault == "timeout_after":
            raise PaymentTimeout(reference)
        return Capture(pid, amount_fen)

    async def refund(self, payment_id: str, amount_fen: int) -> None:
        fault = self.faults.pick("timeout_before", "timeout_after")
        if fault == "timeout_before":
            raise PaymentTimeout(payment_id)
        if payment_id not in self.captured:
            self.problems.append(f"refund of {payment_id} ({amount_fen} fen) never captured")
        elif amount_fen > self.captured[payment_id]:
            self.problems.append(f"refund of {payment_id}: {amount_fen} fen above the {self.captured[payment_id]} captured")
        self.refunded[payment_id] = amount_fen
        self.refund_calls[payment_id] = self.refund_calls.get(payment_id, 0) + 1
        if fault == "timeout_after":
            raise PaymentTimeout(payment_id)


class Disagreement(AssertionError):
    pass


@dataclass
class Placement:
    """What the model knows of one (user, request_id)."""

    user: str
    request_id: str
    content: tuple
    order_id: str = ""


USERS = ("u1", "u2", "u3")
ITEMS = ("latte", "tea", "cake", "ghost")  # prices 1500, 800, 3000; ghost is unknown


class Run:
    """One seeded run: the real service, the fakes, and the reference model."""

    def __init__(self, path: Any, seed: int) -> None:
        self.path = path
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = FakeClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc))
        self.faults = Faults(self.rng)
        self.card = LedgerCardService(self.clock, self.faults)
        self.catalog = FakeCatalog()
        self.payments = LedgerPayments(self.faults)
        self.placements: dict[tuple[str, str], Placement] = {}
        self.known: dict[str, model.Order] = {}  # order_id -> last seen
        # (scope, method, request_id) -> (content, order_id): keys of calls that succeeded.
        self.keys: dict[tuple[str, str, str], tuple[tuple, str]] = {}
        self.carts: dict[str, list[Selection]] = {u: [] for u in USERS}
        self.cart_store: dict[str, str] = {u: "" for u in USERS}
        self.log: list[str] = []
        self.steps = 0
        # Answers are predicted one call at a time, with healthy upstreams only.
        self.predicting = True
        self.next_card = 0
        self.next_request = 0
        self.store: SqliteOrderStore | None = None
        self.service: OrderService | None = None

    # --- set-up -------------------------------------------------------------------------

    async def open(self) -> None:
        events = OrderEvents()
        self.store = await SqliteOrderStore.open(self.path, clock=self.clock, listener=events.publish)
        self.service = OrderService(
            self.store, self.card, self.catalog, self.payments, clock=self.clock, events=events,
            config=OrderConfig(payment_ttl_seconds=TTL_S, placing_grace_seconds=30, watch_poll_seconds=0.5,
                               sweep_call_timeout=1.0),
        )

    async def close(self) -> None:
        if self.service is not None:
            await self.service.drain()
        if self.store is not None:
            await self.store.close()

    def now(self) -> int:
        return now_ms(self.clock)

    def grant(self, user: str) -> None:
        self.next_card += 1
        face = self.rng.choice((2500, 2500, 1000))
        expire = self.now() + self.rng.choice((600, 3600, 86_400 * 30)) * 1000
        cid = f"c{self.next_card}"
        self.card.cards[cid] = LedgerCard(cid, user, face, expire)

    def fail(self, msg: str) -> None:
        tail = "\n".join(self.log[-25:])
        raise Disagreement(f"seed {self.seed} step {self.steps}: {msg}\nlast steps:\n{tail}")

    # --- the oracle's checks ------------------------------------------------------------

    def check_order(self, o: model.Order) -> None:
        """Rules every answered order must satisfy on its own."""
        if not o.visible:
            self.fail(f"an invisible order answered: {o.order_id} {o.status}")
        if o.card_id:
            card = self.card.cards.get(o.card_id)
            if card is None or card.user_id != o.user_id:
                self.fail(f"{o.order_id} uses card {o.card_id} of another user")
            if o.card_discount_fen != min(o.subtotal_fen, card.face_fen):
                self.fail(f"{o.order_id}: discount {o.card_discount_fen} != min({o.subtotal_fen}, {card.face_fen})")
        elif o.card_discount_fen:
            self.fail(f"{o.order_id}: a discount without a card")
        if o.payable_fen != o.subtotal_fen - o.card_discount_fen:
            self.fail(f"{o.order_id}: payable {o.payable_fen} != subtotal - discount")
        if o.subtotal_fen != sum(l.line_total_fen for l in o.lines):
            self.fail(f"{o.order_id}: subtotal is not the sum of its lines")
        statuses = [h.status for h in o.history]
        if not statuses or statuses[-1] != o.status:
            self.fail(f"{o.order_id}: history {statuses} does not end at {o.status}")
        if statuses[0] not in (model.PAID, model.PENDING_PAYMENT):
            self.fail(f"{o.order_id}: history starts at {statuses[0]}")
        if (statuses[0] == model.PAID) != (o.payable_fen == 0):
            self.fail(f"{o.order_id}: payable {o.payable_fen} but first status {statuses[0]}")
        for before, after in zip(o.history, o.history[1:]):
            if after.status not in NEXT[before.status]:
                self.fail(f"{o.order_id}: illegal {before.status} -> {after.status}")
            if after.status == model.CANCELLED and before.status not in CANCELLERS[after.actor]:
                self.fail(f"{o.order_id}: {after.actor} cancelled a {before.status} order")
            if after.status == model.PAID and before.status == model.PENDING_PAYMENT and o.payment.status == model.PAY_NOT_REQUIRED:
                self.fail(f"{o.order_id}: paid by money with nothing to pay")
        p = o.payment
        if o.payable_fen == 0:
            if p.status != model.PAY_NOT_REQUIRED:
                self.fail(f"{o.order_id}: nothing to pay but payment {p.status}")
        elif p.amount_fen != o.payable_fen:
            self.fail(f"{o.order_id}: payment amount {p.amount_fen} != payable {o.payable_fen}")
        if p.refunded_fen > (p.amount_fen if p.status == model.PAY_REFUNDED else 0):
            self.fail(f"{o.order_id}: refunded {p.refunded_fen} with payment {p.status}")
        if o.status in PAID_ON and o.payable_fen and p.status != model.PAY_CAPTURED:
            self.fail(f"{o.order_id}: {o.status} with payment {p.status}")
        if o.status == model.PENDING_PAYMENT and p.status != model.PAY_PENDING:
            self.fail(f"{o.order_id}: waiting for payment with payment {p.status}")
        if o.status == model.CANCELLED and p.status in (model.PAY_PENDING,):
            self.fail(f"{o.order_id}: cancelled with a payment still pending")
        prev = self.known.get(o.order_id)
        if prev is not None and o.version >= prev.version:
            self.check_successor(prev, o)

    def check_successor(self, prev: model.Order, o: model.Order) -> None:
        if prev.status != o.status and o.status not in _reachable(prev.status):
            self.fail(f"{o.order_id}: went back from {prev.status} to {o.status}")
        same = ("order_id", "user_id", "store_id", "subtotal_fen", "create_ms")
        for name in same:
            if getattr(prev, name) != getattr(o, name):
                self.fail(f"{o.order_id}: {name} changed")
        if prev.card_id != o.card_id and prev.card_id:
            self.fail(f"{o.order_id}: card changed from {prev.card_id} to {o.card_id}")

    def seen(self, o: model.Order) -> model.Order:
        self.check_order(o)
        prev = self.known.get(o.order_id)
        if prev is None or o.version >= prev.version:
            self.known[o.order_id] = o
        return o

    async def row(self, order_id: str) -> model.Order | None:
        assert self.store is not None
        return await self.store.get(order_id)

    async def check_ledgers(self, *, quiet: bool) -> None:
        """The fakes' ledgers against every order. quiet: no work is left outstanding (after a
        healthy sweep), so the card and the money must match each order exactly."""
        assert self.store is not None
        orders = {o.order_id: o for o in await self.store.list_all(100_000, "")}
        visible = {oid: o for oid, o in orders.items() if o.visible}
        for o in visible.values():
            self.seen(o)
        for pid, fen in self.payments.refunded.items():
            if fen != self.payments.captured.get(pid):
                self.fail(f"{pid}: refunded {fen} of {self.payments.captured.get(pid)} captured")
        if self.payments.problems:
            self.fail("; ".join(self.payments.problems))
        for pid, fen in self.payments.captured.items():
            oid = pid.removeprefix("pay_")
            o = visible.get(oid)
            if o is None:
                self.fail(f"money of {oid} captured for no order")
            if fen != o.payable_fen:
                self.fail(f"{oid}: captured {fen} != payable {o.payable_fen}")
        # Cards: never held or spent for an order that does not stand.
        for card in self.card.cards.values():
            if card.state not in ("RESERVED", "REDEEMED"):
                continue
            parsed = model.parse_reservation_key(card.key)
            o = visible.get(parsed[0]) if parsed else None
            if o is None:
                if quiet:
                    row = orders.get(parsed[0]) if parsed else None
                    self.fail(f"card {card.card_id} {card.state} under {card.key} of no order ({row and row.status})")
                continue
            if o.card_id != card.card_id:
                self.fail(f"card {card.card_id} {card.state} for {o.order_id}, which uses {o.card_id!r}")
            if quiet and card.state == "REDEEMED" and o.status not in PAID_ON:
                self.fail(f"card {card.card_id} spent on a {o.status} order {o.order_id}")
            if quiet and card.state == "RESERVED" and o.status != model.PENDING_PAYMENT:
                self.fail(f"card {card.card_id} held for a {o.status} order {o.order_id}")
        if not quiet:
            return
        for o in visible.values():
            if o.card_action or o.payment_action:
                self.fail(f"{o.order_id}: work left after a healthy sweep: {o.card_action} {o.payment_action}")
            pid = f"pay_{o.order_id}"
            taken, given = self.payments.captured.get(pid, 0), self.payments.refunded.get(pid, 0)
            if o.status in PAID_ON and taken - given != o.payable_fen:
                self.fail(f"{o.order_id}: {o.status} but {taken} captured, {given} refunded of {o.payable_fen}")
            if o.status == model.CANCELLED and taken != given:
                self.fail(f"{o.order_id}: cancelled keeping {taken - given} fen")
            if o.status == model.CANCELLED and taken and (o.payment.status, o.payment.refunded_fen) != (model.PAY_REFUNDED, taken):
                self.fail(f"{o.order_id}: cancelled, {taken} refunded, but says {o.payment.status} {o.payment.refunded_fen}")
            if o.status == model.CANCELLED and not taken and o.payment.status == model.PAY_REFUNDED:
                self.fail(f"{o.order_id}: says REFUNDED but nothing was taken")
            if o.card_id:
                self.check_card_of(o)

    def check_card_of(self, o: model.Order) -> None:
        card = self.card.cards[o.card_id]
        mine = model.parse_reservation_key(card.key)
        if o.status in PAID_ON:
            if o.payment.note == model.NOTE_CARD_LAPSED:
                return
            if card.state != "REDEEMED" or not mine or mine[0] != o.order_id:
                self.fail(f"{o.order_id}: {o.status} but its card {card.card_id} is {card.state} under {card.key!r}")
        elif o.status == model.PENDING_PAYMENT:
            live = self.now() < self.card.until.get(o.reservation_key, 0)
            if live and (card.state != "RESERVED" or not mine or mine[0] != o.order_id):
                self.fail(f"{o.order_id}: waiting for payment but its card is {card.state} under {card.key!r}")
        elif o.status == model.CANCELLED:
            if mine and mine[0] == o.order_id:
                self.fail(f"{o.order_id}: cancelled but its card is still {card.state}")
            ended = self.card.ended_to.get(o.reservation_key)
            if ended is None:
                self.fail(f"{o.order_id}: cancelled but its card hold never ended")
            if o.card_returned != (ended == "AVAILABLE") and not (ended == "AVAILABLE" and card.state == "EXPIRED"):
                self.fail(f"{o.order_id}: card_returned={o.card_returned} but the card went back {ended}")

    # --- steps ----------------------------------------------------------------------------

    def new_request(self) -> str:
        self.next_request += 1
        return f"r{self.next_request}"

    def random_lines(self) -> tuple[Selection, ...]:
        n = self.rng.choice((1, 1, 2))
        items = [i for i in ITEMS if i != "ghost"] if self.rng.random() < 0.95 else list(ITEMS)
        return tuple(Selection(self.rng.choice(items), self.rng.randint(1, 2)) for _ in range(n))

    def placement_input(self) -> PlaceOrderInput:
        """A new or repeated PlaceOrder request."""
        if self.placements and self.rng.random() < 0.3:
            p = self.rng.choice(list(self.placements.values()))
            if self.rng.random() < 0.85:
                return _input(p.user, p.request_id, p.content)
            user, rid = p.user, p.request_id  # the same key with other content
        else:
            user, rid = self.rng.choice(USERS), self.new_request()
        card_use = self.rng.choice((model.CARD_BEST, model.CARD_BEST, model.CARD_NONE, model.CARD_REQUIRED, model.CARD_SPECIFIC))
        card_id = ""
        if card_use == model.CARD_SPECIFIC:
            if not self.card.cards:
                card_use = model.CARD_BEST
            else:
                card_id = self.rng.choice(list(self.card.cards))
        from_cart = self.rng.random() < 0.2
        lines = () if from_cart else self.random_lines()
        return _input(user, rid, ("s1", lines, from_cart, card_use, card_id))

    async def place(self, r: PlaceOrderInput, predict: bool) -> None:
        assert self.service is not None
        content = (r.store_id, r.lines, r.from_cart, r.card_use, r.card_id)
        key = (r.user_id, r.request_id)
        oid = model.order_id_for(r.user_id, r.request_id)
        before = await self.row(oid)
        before_card = {c.card_id: (c.state, c.key) for c in self.card.cards.values()}
        expect = self.predict_place(r, before) if predict else None
        try:
            o = await self.service.place_order(r)
        except DomainError as exc:
            self.log.append(f"  -> {exc.code} {exc.reason}")
            if expect is not None and expect[0] == "order":
                self.fail(f"PlaceOrder {r.request_id}: expected an order, got {exc.code} {exc.reason}")
            if expect is not None and expect[0] == "error" and exc.reason != expect[1]:
                self.fail(f"PlaceOrder {r.request_id}: expected {expect[1]}, got {exc.reason}")
            if before is not None and before.visible and exc.reason != "REQUEST_ID_REUSED":
                self.fail(f"PlaceOrder retry of an existing order {oid} ({before.status}) failed: {exc.reason}")
            return
        self.log.append(f"  -> {o.order_id} {o.status} card={o.card_id} payable={o.payable_fen}")
        self.seen(o)
        self.placements.setdefault(key, Placement(r.user_id, r.request_id, content)).order_id = o.order_id
        if o.order_id != oid or o.user_id != r.user_id:
            self.fail("PlaceOrder answered another order")
        if before is not None and before.visible:
            now = await self.row(oid)
            if before.request_hash != now.request_hash or (predict and o.version != now.version):
                self.fail(f"a replay of {oid} did not answer the order as it is now")
            if self.placements[key].content != content:
                self.fail(f"a replay with other content was answered the order {oid}")
            return
        self.placements[key] = Placement(r.user_id, r.request_id, content, o.order_id)
        if r.from_cart and o.visible:
            self.carts[r.user_id] = []
        if expect is None:
            return
        if expect[0] != "order":
            self.fail(f"PlaceOrder {r.request_id}: expected {expect}, got order {o.status}")
        _, card_id, subtotal = expect
        if o.subtotal_fen != subtotal:
            self.fail(f"{oid}: subtotal {o.subtotal_fen}, model {subtotal}")
        if card_id != o.card_id:
            self.fail(f"{oid}: card {o.card_id!r}, model {card_id!r} (cards before {before_card})")
        if o.status == model.PENDING_PAYMENT and o.payment.expire_ms != o.create_ms + TTL_S * 1000:
            self.fail(f"{oid}: payment window {o.payment.expire_ms - o.create_ms} ms")

    def predict_place(self, r: PlaceOrderInput, before: model.Order | None) -> tuple | None:
        """("order", card_id, subtotal) or ("error", reason); None when it cannot tell."""
        p = self.placements.get((r.user_id, r.request_id))
        content = (r.store_id, r.lines, r.from_cart, r.card_use, r.card_id)
        if before is not None and before.visible:
            if p is not None and p.content != content:
                return ("error", "REQUEST_ID_REUSED")
            return None
        if before is not None and before.status == model.PLACING:
            return None
        lines = r.lines
        if r.from_cart:
            if not self.carts[r.user_id]:
                return ("error", "CART_EMPTY")
            lines = tuple(self.carts[r.user_id])
        if any(s.item_id == "ghost" for s in lines):
            return ("error", "UNKNOWN_ITEM") if not r.from_cart else ("error", model.CART_LINE_OUTDATED)
        subtotal = sum(self.catalog.prices[s.item_id] * s.quantity for s in lines)
        self.card._settle()
        free = sorted(
            (c for c in self.card.cards.values() if c.user_id == r.user_id and c.state == "AVAILABLE"),
            key=lambda c: (c.expire_ms, c.card_id),
        )
        if r.card_use == model.CARD_NONE:
            return ("order", "", subtotal)
        if r.card_use == model.CARD_SPECIFIC:
            card = self.card.cards[r.card_id]
            if card.user_id != r.user_id:
                return ("error", "CARD_NOT_OWNED")
            if card.state != "AVAILABLE":
                return ("error", "CARD_NOT_AVAILABLE")
            return ("order", card.card_id, subtotal)
        if not free:
            return ("error", "NO_CARD_AVAILABLE") if r.card_use == model.CARD_REQUIRED else ("order", "", subtotal)
        return ("order", free[0].card_id, subtotal)

    def some_order(self) -> model.Order | None:
        if not self.known:
            return None
        return self.known[self.rng.choice(sorted(self.known))]

    def keyed(self, scope: str, method: str, content: tuple) -> str:
        """A request_id: none, a fresh one, or one used before (a replay or a reuse)."""
        roll = self.rng.random()
        if roll < 0.3:
            return ""
        used = [k for k in self.keys if k[0] == scope and k[1] == method]
        if used and roll < 0.55:
            return self.rng.choice(used)[2]
        return self.new_request()

    async def keyed_call(self, scope: str, method: str, rid: str, content: tuple, oid: str, call: Any, predict: Any) -> None:
        """Run a call on an existing order, checking request-id replays against the model."""
        prior = self.keys.get((scope, method, rid)) if rid else None
        before = await self.row(oid)
        if prior is not None:
            expect: tuple | None = ("replay",) if prior[0] == content else ("error", "REQUEST_ID_REUSED")
        else:
            expect = predict(before) if predict and self.predicting else None
        try:
            o = await call()
        except DomainError as exc:
            self.log.append(f"  -> {exc.code} {exc.reason}")
            if expect is not None and expect[0] in ("replay", "order"):
                self.fail(f"{method} {rid!r} on {oid}: expected {expect}, got {exc.code} {exc.reason}")
            if expect is not None and expect[0] == "error" and expect[1] != exc.reason:
                self.fail(f"{method} {rid!r} on {oid}: expected {expect[1]}, got {exc.reason}")
            return
        self.log.append(f"  -> {o.status} pay={o.payment.status} note={o.payment.note} card_returned={o.card_returned}")
        self.seen(o)
        if rid and prior is None:
            self.keys[(scope, method, rid)] = (content, oid)
        if expect is None:
            return
        if expect[0] == "error":
            self.fail(f"{method} {rid!r} on {oid}: expected {expect[1]}, got {o.status}")
        if expect[0] == "replay":
            if before is not None and o.version < before.version:
                self.fail(f"{method} replay {rid!r} answered an older order than the one stored")
            return
        if o.status != expect[1]:
            self.fail(f"{method} on {oid}: model says {expect[1]}, service {o.status}")

    async def confirm_payment(self) -> None:
        o = self.some_order()
        if o is None:
            return
        assert self.service is not None
        wrong = self.rng.random() < 0.2
        ref = (o.payment.reference or "ref_x") + ("x" if wrong else "")
        user = o.user_id if self.rng.random() < 0.95 else "u9"
        rid = self.keyed(f"user:{user}", "pay", (o.order_id, ref))
        self.log.append(f"{self.steps}: ConfirmPayment {o.order_id} {user} wrong={wrong} rid={rid}")
        now = self.now()

        def predict(cur: model.Order | None) -> tuple | None:
            if cur is None or not cur.visible or cur.user_id != user:
                return ("error", "ORDER_NOT_FOUND")
            p = cur.payment
            if p.status == model.PAY_NOT_REQUIRED:
                return ("error", "PAYMENT_NOT_REQUIRED")
            if cur.status == model.PENDING_PAYMENT:
                if wrong:
                    return ("error", "PAYMENT_REFERENCE_INVALID")
                if ref in self.payments.declined:
                    return ("error", "PAYMENT_DECLINED")
                return ("order", model.CANCELLED if now >= p.expire_ms else model.PAID)
            if p.reference == ref and p.status in (model.PAY_CAPTURED, model.PAY_REFUNDED):
                return ("order", cur.status)
            if cur.status == model.CANCELLED and p.status == model.PAY_VOIDED:
                if wrong:
                    return ("error", "PAYMENT_REFERENCE_INVALID")
                return ("error", "PAYMENT_DECLINED") if ref in self.payments.declined else ("order", model.CANCELLED)
            return ("error", "ORDER_NOT_PAYABLE")

        await self.keyed_call(
            f"user:{user}", "pay", rid, (o.order_id, ref), o.order_id,
            lambda: self.service.confirm_payment(o.order_id, user, ref, request_id=rid), predict,
        )

    async def cancel(self) -> None:
        o = self.some_order()
        if o is None:
            return
        assert self.service is not None
        merchant = self.rng.random() < 0.35
        user = "" if merchant else o.user_id
        reason = self.rng.choice(("", "changed my mind"))
        scope = f"store:{o.store_id}" if merchant else f"user:{user}"
        rid = self.keyed(scope, "cancel", (o.order_id, reason))
        actor = model.ACTOR_MERCHANT if merchant else model.ACTOR_USER
        self.log.append(f"{self.steps}: CancelOrder {o.order_id} by {actor} rid={rid}")

        def predict(cur: model.Order | None) -> tuple | None:
            if cur is None or not cur.visible:
                return ("error", "ORDER_NOT_FOUND")
            if cur.status == model.CANCELLED:
                return ("order", model.CANCELLED)
            if cur.status not in CANCELLERS[actor]:
                return ("error", "ORDER_NOT_CANCELLABLE")
            return ("order", model.CANCELLED)

        await self.keyed_call(
            scope, "cancel", rid, (o.order_id, reason), o.order_id,
            lambda: self.service.cancel_order(o.order_id, user, reason, request_id=rid), predict,
        )

    async def advance_status(self) -> None:
        o = self.some_order()
        if o is None:
            return
        assert self.service is not None
        target = self.rng.choice(list(model.FORWARD.values()))
        if o.status in model.FORWARD and self.rng.random() < 0.7:
            target = model.FORWARD[o.status]
        scope = f"store:{o.store_id}"
        rid = self.keyed(scope, "advance", (o.order_id, target))
        self.log.append(f"{self.steps}: UpdateOrderStatus {o.order_id} -> {target} rid={rid}")

        def predict(cur: model.Order | None) -> tuple | None:
            if cur is None or not cur.visible:
                return ("error", "ORDER_NOT_FOUND")
            if cur.status == target:
                return ("order", target)
            if model.FORWARD.get(cur.status) != target:
                return ("error", "ILLEGAL_TRANSITION")
            return ("order", target)

        await self.keyed_call(
            scope, "advance", rid, (o.order_id, target), o.order_id,
            lambda: self.service.update_status(o.order_id, target, "", request_id=rid), predict,
        )

    async def add_to_cart(self) -> None:
        assert self.service is not None
        user = self.rng.choice(USERS)
        sel = self.random_lines()[0]
        if sel.item_id == "ghost":
            sel = Selection("tea", 1)
        rid = self.new_request()
        self.log.append(f"{self.steps}: AddCartItem {user} {sel.item_id}x{sel.quantity}")
        try:
            await self.service.add_cart_item(user, "s1", sel, rid)
        except DomainError as exc:
            self.log.append(f"  -> {exc.code} {exc.reason}")
            if not self.faults.rate and exc.reason != "CART_FULL":
                self.fail(f"AddCartItem failed: {exc.reason}")
            # Whether the line went in is unknown: read the cart back.
        _, lines = await self.store.cart(user)
        self.carts[user] = list(lines)

    async def clear_cart(self) -> None:
        assert self.service is not None
        user = self.rng.choice(USERS)
        self.log.append(f"{self.steps}: ClearCart {user}")
        await self.service.clear_cart(user)
        self.carts[user] = []

    async def step(self, predict: bool) -> None:
        self.steps += 1
        roll = self.rng.random()
        if roll < 0.30:
            r = self.placement_input()
            self.log.append(f"{self.steps}: PlaceOrder {r.user_id}/{r.request_id} {r.card_use} {r.card_id} cart={r.from_cart} {[(s.item_id, s.quantity) for s in r.lines]}")
            await self.place(r, predict)
        elif roll < 0.45:
            await self.confirm_payment()
        elif roll < 0.55:
            await self.cancel()
        elif roll < 0.70:
            await self.advance_status()
        elif roll < 0.76:
            await self.add_to_cart()
        elif roll < 0.78:
            await self.clear_cart()
        elif roll < 0.84:
            user = self.rng.choice(USERS)
            self.log.append(f"{self.steps}: grant a card to {user}")
            self.grant(user)
        elif roll < 0.92:
            seconds = self.rng.choice((5, 60, 300, 901, 961, 3600))
            self.log.append(f"{self.steps}: clock +{seconds}s")
            self.clock.advance(seconds)
        else:
            self.log.append(f"{self.steps}: sweep")
            await self.service.sweep()

    async def concurrent_group(self) -> None:
        """A few calls at once (duplicates of one placement among them): answers are judged by
        the rules each must satisfy, not by a predicted order of events."""
        self.steps += 1
        self.log.append(f"{self.steps}: concurrent group")
        inputs = [self.placement_input() for _ in range(self.rng.randint(1, 3))]
        if inputs and self.rng.random() < 0.5:
            inputs.append(inputs[0])
        calls = [self.place(r, False) for r in inputs]
        calls += [self.rng.choice((self.confirm_payment, self.cancel, self.advance_status))() for _ in range(self.rng.randint(0, 3))]
        self.predicting = False
        try:
            results = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            self.predicting = True
        for res in results:
            if isinstance(res, Disagreement):
                raise res
            if isinstance(res, BaseException):
                self.fail(f"a concurrent call raised {res!r}")

    async def restart(self) -> None:
        self.steps += 1
        self.log.append(f"{self.steps}: restart")
        await self.close()
        await self.open()
        assert self.service is not None
        await self.service.sweep(startup=True)

    async def settle(self) -> None:
        """Heal the upstreams and let the sweep finish all outstanding work."""
        rate, self.faults.rate = self.faults.rate, 0.0
        assert self.service is not None
        await self.service.drain()
        self.clock.advance(31)  # past the PLACING grace
        for _ in range(4):
            report = await self.service.sweep()
            if report.failed:
                self.fail(f"a healthy sweep failed: {report.errors}")
        await self.check_ledgers(quiet=True)
        self.faults.rate = rate

    async def play(self, steps: int, fault_rate: float) -> None:
        await self.open()
        try:
            for user in USERS:
                self.grant(user)
            for i in range(steps):
                self.faults.rate = fault_rate if self.rng.random() < 0.5 else 0.0
                predict = not self.faults.rate
                self.predicting = predict
                roll = self.rng.random()
                if roll < 0.06:
                    await self.concurrent_group()
                elif roll < 0.08:
                    await self.restart()
                else:
                    await self.step(predict)
                self.faults.rate = 0.0
                self.predicting = True
                await self.check_ledgers(quiet=False)
                if i % 25 == 24:
                    await self.settle()
            # The end: every window and hold runs out, and the books must balance.
            self.clock.advance(2 * 86_400)
            await self.settle()
            await self.check_balanced()
        finally:
            await self.close()

    async def check_balanced(self) -> None:
        assert self.store is not None
        orders = [o for o in await self.store.list_all(100_000, "") if o.visible]
        live_paid = [o for o in orders if o.status in PAID_ON]
        money_kept = sum(self.payments.captured.values()) - sum(self.payments.refunded.values())
        if money_kept != sum(o.payable_fen for o in live_paid):
            self.fail(f"money kept {money_kept} != payable of the orders that stand")
        spent = {c.card_id for c in self.card.cards.values() if c.state == "REDEEMED"}
        used = {o.card_id for o in live_paid if o.card_id and o.payment.note != model.NOTE_CARD_LAPSED}
        if spent != used:
            self.fail(f"cards spent {sorted(spent)} != cards of the orders that stand {sorted(used)}")
        if any(c.state == "RESERVED" for c in self.card.cards.values()):
            self.fail("a card is still held after every window ran out")
        if any(o.status == model.PENDING_PAYMENT for o in orders):
            self.fail("an order still waits for payment after its window")


def _reachable(status: str) -> set[str]:
    seen, todo = set(), [status]
    while todo:
        for nxt in NEXT[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _input(user: str, rid: str, content: tuple) -> PlaceOrderInput:
    store, lines, from_cart, card_use, card_id = content
    return PlaceOrderInput(rid, user, store, lines, from_cart, card_use, card_id)
