"""Seeded random user journeys through the real gateway, each answer compared with the model
(journey_model.Campaign). A disagreement fails at once with the seed, the step and the call."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from typing import Any

import grpc

from miandan.catalog.v1 import catalog_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.lottery.v1 import lottery_pb2
from miandan.order.v1 import order_pb2
from services.card.invite_code import ALPHABET, CODE_BODY, check_letter
from services.common.clock import to_ms
from services.common.errors import error_details

from tests.integration.journeys.journey_model import CANCELLED, CAP, FACE_FEN, ITEM_PRICE, Campaign, JoinAnswer, Order, Refused
from tests.integration.journeys.journey_suite import HANGZHOU, ITEM_ID, SHANGHAI, STORE_ID

NUMBERS = {1: "一", 2: "两", 3: "三"}
CARD_USES = {
    "BEST": order_pb2.CARD_USE_BEST, "NONE": order_pb2.CARD_USE_NONE,
    "REQUIRED": order_pb2.CARD_USE_REQUIRED, "SPECIFIC": order_pb2.CARD_USE_SPECIFIC,
}


class Disagreement(AssertionError):
    pass


@dataclasses.dataclass(frozen=True)
class Call:
    kind: str
    user: str
    args: tuple = ()


def refusal_of(err: grpc.aio.AioRpcError) -> Refused:
    return Refused(err.code().name, error_details(err).get("reason") or err.code().name)


class Journey:
    def __init__(self, env: Any, seed: int, users: int) -> None:
        self.env, self.rng, self.seed = env, random.Random(seed), seed
        self.model = Campaign()
        self.users = [f"s{seed}u{i}" for i in range(users)]
        self.done: list[Call] = []  # calls with a request_id, for retries
        self.previews: dict[str, list[tuple[str, int, bool]]] = {}
        self.references: dict[str, str] = {}
        self.preview_expiry: dict[str, int] = {}
        self.adopted: set[str] = set()  # orders whose ids the model holds
        self.big_jumps = True  # minutes at a time; off once a night has passed (unpaid orders must not lapse)
        self.step = 0
        self.log: list[str] = []
        self._rids = 0

    # --- helpers ----------------------------------------------------------------------------

    def rid(self, kind: str) -> str:
        self._rids += 1
        return f"{kind}-{self._rids}"

    def now_ms(self) -> int:
        return to_ms(self.env.clock.now())

    def entries_open(self) -> bool:
        """Before the day's cut-off, 20:00 in the campaign's zone (MIANDAN_LOTTERY_CUTOFF)."""
        return self.env.clock.now().astimezone(SHANGHAI).hour < 20

    def today(self) -> str:
        return self.env.clock.now().astimezone(SHANGHAI).date().isoformat()

    def fail(self, call: Call, what: str) -> None:
        raise Disagreement(f"seed {self.seed} step {self.step} {call}: {what}\nlast steps:\n" + "\n".join(self.log[-15:]))

    def same(self, call: Call, name: str, got: Any, want: Any) -> None:
        if got != want:
            self.fail(call, f"{name}: got {got!r}, model says {want!r}")

    async def rpc(self, method: str, request: Any, user: str) -> Any:
        try:
            return await getattr(self.env.gateway, method)(request, metadata=self.env.auth(user), timeout=20)
        except grpc.aio.AioRpcError as err:
            return refusal_of(err)

    def expect_refusal(self, call: Call, got: Any, want: Refused) -> None:
        if not isinstance(got, Refused):
            self.fail(call, f"answered {type(got).__name__}, model says {want}")
        self.same(call, "refusal", got, want)

    def check_wallet(self, call: Call, view: Any) -> None:
        u = self.model.user(call.user)
        w = view.wallet
        self.same(call, "wallet.cards_granted", w.cards_granted, u.granted)
        self.same(call, "wallet.spendable_fen", w.spendable_fen, u.available * FACE_FEN)
        self.same(call, "spendable cards listed", len(view.cards), u.available)
        self.same(call, "wallet.invites_made", w.invites_made, u.invites_made)
        self.same(call, "wallet.lottery_qualified", w.lottery_qualified, u.qualified)
        self.same(call, "wallet.invited_by_user_id", w.invited_by_user_id, u.inviter)
        self.same(call, "wallet.cards_obtainable", w.cards_obtainable, CAP - u.granted)
        self.same(call, "lottery.invites", view.lottery.invites, u.invites_made)
        self.same(call, "lottery.qualified", view.lottery.qualified, u.qualified)
        self.same(call, "lottery.entered_today", view.lottery.entered_today, self.today() in u.entered_days)
        self.same(call, "lottery.day", view.lottery.day, self.today())
        self.same(call, "lottery.entries_open", view.lottery.entries_open, self.entries_open())
        listed = {c.card_id for c in view.cards}
        held = {o.card_id for o in u.orders.values() if o.card_id and o.status != CANCELLED}
        if listed & held:
            self.fail(call, f"cards on live orders listed as spendable: {listed & held}")
        returned = {o.card_id for o in u.orders.values() if o.card_id and o.status == CANCELLED} - held
        if not returned <= listed:
            self.fail(call, f"cards of cancelled orders not back in the wallet: {returned - listed}")
        u.known_cards = listed
        if w.invite_code:
            u.code, u.phrase = w.invite_code, w.pass_phrase_text

    def check_order(self, call: Call, got: Any, want: Order) -> None:
        self.same(call, "order.order_id", got.order_id, want.order_id)
        self.same(call, "order.subtotal_fen", got.subtotal_fen, want.subtotal_fen)
        self.same(call, "order.card_discount_fen", got.card_discount_fen, want.discount_fen)
        self.same(call, "order.payable_fen", got.payable_fen, want.payable_fen)
        self.same(call, "order.status", order_pb2.OrderStatus.Name(got.status), want.status)
        self.same(call, "order.payment.status", order_pb2.PaymentStatus.Name(got.payment.status), want.payment_status)
        self.same(call, "order.payment.refunded_fen", got.payment.refunded_fen, want.refunded_fen)
        self.same(call, "order.user_id", got.user_id, call.user)
        self.same(call, "order uses a card", bool(got.card_id), bool(want.discount_fen))
        if want.card_id:
            self.same(call, "order.card_id", got.card_id, want.card_id)
        if want.status == CANCELLED and want.card_id:
            self.same(call, "order.card_returned", got.card_returned, True)

    def adopt_order(self, call: Call, got: Any, want: Order) -> None:
        """What only the service knows (ids), taken into the model once the answer agrees."""
        if got.card_id and got.order_id not in self.adopted:
            for other in self.model.users.values():
                for o in other.orders.values():
                    if o.card_id == got.card_id and o.status != CANCELLED and o.order_id != got.order_id:
                        self.fail(call, f"card {got.card_id} already pays for live order {o.order_id}")
            want.card_id = got.card_id
            self.model.user(call.user).known_cards.discard(got.card_id)
        self.adopted.add(got.order_id)
        if got.payment.payment_reference:
            self.references[got.order_id] = got.payment.payment_reference

    # --- the calls --------------------------------------------------------------------------

    async def run(self, call: Call) -> None:
        self.log.append(f"{self.step}: {call}")
        await getattr(self, f"_{call.kind}")(call)

    async def _join(self, call: Call) -> None:
        rid, text = call.args
        got = await self.rpc("Join", gw.JoinRequest(request_id=rid, pass_phrase_text=text), call.user)
        want = self.model.join(call.user, text, rid, self.now_ms())
        if isinstance(want, Refused):
            return self.expect_refusal(call, got, want)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}, model says {want}")
        self.same(call, "join", JoinAnswer(got.newly_joined, got.invite_accepted, got.invite_problem), want)
        self.check_wallet(call, got.wallet)

    async def _wallet(self, call: Call) -> None:
        got = await self.rpc("GetWallet", gw.GetWalletRequest(), call.user)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}")
        self.check_wallet(call, got.wallet)

    async def _place(self, call: Call) -> None:
        rid, quantity, card_use, card_id = call.args
        req = gw.PlaceOrderRequest(
            request_id=rid, store_id=STORE_ID, card_use=CARD_USES[card_use], card_id=card_id,
            lines=[catalog_pb2.LineSelection(item_id=ITEM_ID, quantity=quantity)],
        )
        got = await self.rpc("PlaceOrder", req, call.user)
        self.placed(call, got, got.order if not isinstance(got, Refused) else None, rid, quantity, card_use, card_id)

    def placed(self, call: Call, got: Any, order: Any, rid: str, quantity: int, card_use: str, card_id: str) -> Order | None:
        oid = order.order_id if order is not None else ""
        model_use = "REQUIRED" if card_use == "PREVIEW_CARD" else card_use
        want = self.model.place(call.user, rid, quantity, model_use, card_id, oid, self.now_ms())
        if isinstance(want, Refused):
            if card_use == "PREVIEW_CARD":
                want = Refused("FAILED_PRECONDITION", "PREVIEW_CARD_GONE")
            self.expect_refusal(call, got, want)
            return None
        if order is None:
            self.fail(call, f"refused {got}, model says order {want}")
        self.check_order(call, order, want)
        if card_use == "SPECIFIC":
            self.same(call, "order.card_id (the card asked for)", order.card_id, card_id)
        self.adopt_order(call, order, want)
        return want

    async def _preview(self, call: Call) -> None:
        (quantity,) = call.args
        req = gw.OrderByTextRequest(text=f"{NUMBERS[quantity]}杯拿铁", location=HANGZHOU)
        got = await self.rpc("OrderByText", req, call.user)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}")
        p = got.preview
        u = self.model.user(call.user)
        total = quantity * ITEM_PRICE
        covered = min(total, FACE_FEN) if u.available else 0
        self.same(call, "preview.total_fen", p.total_fen, total)
        self.same(call, "preview.card_covered_fen", p.card_covered_fen, covered)
        self.same(call, "preview.payable_fen", p.payable_fen, total - covered)
        self.same(call, "preview shows a card", bool(p.card_id), bool(u.available))
        self.previews.setdefault(call.user, []).append((p.preview_id, quantity, bool(p.card_id)))
        self.preview_expiry[p.preview_id] = p.expire_time.ToMilliseconds()

    async def _confirm_preview(self, call: Call) -> None:
        rid, preview_id, quantity, had_card = call.args
        req = gw.OrderByTextRequest(request_id=rid, preview_id=preview_id, confirm=True)
        got = await self.rpc("OrderByText", req, call.user)
        placed_before = self.model.user(call.user).placements.get(rid, (None, None))[1]
        if self.now_ms() >= self.preview_expiry[preview_id] and (placed_before is None or isinstance(placed_before, Refused)):
            # Previews live 10 minutes; a retry whose first attempt placed an order still gets it.
            return self.expect_refusal(call, got, Refused("NOT_FOUND", "PREVIEW_NOT_FOUND"))
        order = got.order if not isinstance(got, Refused) else None
        # A preview that showed a card is confirmed only with a card (PREVIEW_CARD_GONE).
        want = self.placed(call, got, order, rid, quantity, "PREVIEW_CARD" if had_card else "BEST", "")
        if want is not None:
            self.same(call, "preview.payable_fen beside the order", got.preview.payable_fen, want.payable_fen)

    async def _confirm_text(self, call: Call) -> None:
        rid, quantity = call.args
        req = gw.OrderByTextRequest(request_id=rid, text=f"{NUMBERS[quantity]}杯拿铁", location=HANGZHOU, confirm=True)
        got = await self.rpc("OrderByText", req, call.user)
        order = got.order if not isinstance(got, Refused) else None
        want = self.placed(call, got, order, rid, quantity, "BEST", "")
        if want is not None:
            self.same(call, "preview.payable_fen beside the order", got.preview.payable_fen, want.payable_fen)

    async def _pay(self, call: Call) -> None:
        rid, order_id = call.args
        req = gw.ConfirmPaymentRequest(request_id=rid, order_id=order_id, payment_reference=self.references.get(order_id, "none"))
        got = await self.rpc("ConfirmPayment", req, call.user)
        want = self.model.pay(call.user, rid, order_id)
        if isinstance(want, Refused):
            return self.expect_refusal(call, got, want)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}, model says {want}")
        self.check_order(call, got.order, want)

    async def _cancel(self, call: Call) -> None:
        rid, order_id = call.args
        got = await self.rpc("CancelOrder", gw.CancelOrderRequest(request_id=rid, order_id=order_id), call.user)
        want = self.model.cancel(call.user, rid, order_id)
        if isinstance(want, Refused):
            return self.expect_refusal(call, got, want)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}, model says {want}")
        if want.card_id:
            self.model.user(call.user).known_cards.add(want.card_id)
        self.check_order(call, got.order, want)

    async def _orders(self, call: Call) -> None:
        # Small pages too: orders placed at the same instant (a race) must each be listed once.
        size = self.rng.choice([1, 2, 3, 100])
        listed: list[Any] = []
        token = ""
        for _ in range(200):
            got = await self.rpc("ListOrders", gw.ListOrdersRequest(page_size=size, page_token=token), call.user)
            if isinstance(got, Refused):
                self.fail(call, f"refused {got} (page size {size}, after {len(listed)} orders)")
            listed.extend(got.orders)
            token = got.next_page_token
            if not token:
                break
        want = {o.order_id: o for o in self.model.newest_first(call.user)}
        self.same(call, f"listed orders (pages of {size})", sorted(o.order_id for o in listed), sorted(want))
        times = [o.create_time.ToMilliseconds() for o in listed]
        if times != sorted(times, reverse=True):
            self.fail(call, f"orders not newest first: {times}")
        for o in listed:
            self.check_order(call, o, want[o.order_id])

    async def _enter(self, call: Call) -> None:
        (rid,) = call.args
        got = await self.rpc("EnterLottery", gw.EnterLotteryRequest(request_id=rid), call.user)
        want = self.model.enter(call.user, rid, self.today(), self.entries_open())
        if isinstance(want, Refused):
            return self.expect_refusal(call, got, want)
        if isinstance(got, Refused):
            self.fail(call, f"refused {got}, model says an entry for {want}")
        self.same(call, "entry.day", got.entry.day, want)
        self.same(call, "entry.user_id", got.entry.user_id, call.user)

    # --- choosing the next step -------------------------------------------------------------

    def wrong_phrase(self) -> str:
        body = "".join(self.rng.choice(ALPHABET) for _ in range(CODE_BODY))
        return f"¥{body}{check_letter(body)}¥ 复制这段口令"

    def join_text(self, user: str) -> str:
        u = self.model.user(user)
        sharers = [x for x in self.model.users.values() if x.phrase and x.user_id != user]
        pick = self.rng.random()
        if pick < 0.3 or not sharers:
            return ""
        if pick < 0.75:
            return self.rng.choice(sharers).phrase
        if pick < 0.82 and u.phrase:
            return u.phrase
        if pick < 0.88 and u.phrase:
            return f"我: {u.phrase}\n朋友: {self.rng.choice(sharers).phrase}"
        if pick < 0.96:
            return self.wrong_phrase()
        return "快来一起免单呀"  # no pass-phrase at all

    def named(self, call: Call) -> set[str]:
        """Users other than the caller whose state the call may change: the owners of the codes a
        join's text holds. Their change (an invite counted, a card if under the cap) is the same
        whichever of several joins naming them comes first, and no answer shows it."""
        if call.kind != "join":
            return set()
        return {u.user_id for u in self.model.users.values() if u.code and u.code in call.args[1]} - {call.user}

    def next_call(self) -> Call:
        user = self.rng.choice(self.users)
        u = self.model.user(user)
        live = [o for o in u.orders.values() if o.status != CANCELLED]
        r = self.rng.random()
        if r < 0.28:
            return Call("join", user, (self.rid("j"), self.join_text(user)))
        if r < 0.36:
            return Call("wallet", user)
        if r < 0.50:
            card_use = self.rng.choice(["BEST", "BEST", "NONE", "REQUIRED", "SPECIFIC"])
            card_id = ""
            if card_use == "SPECIFIC":
                if not u.known_cards:
                    card_use = "BEST"
                else:
                    card_id = self.rng.choice(sorted(u.known_cards))
            return Call("place", user, (self.rid("o"), self.rng.randint(1, 3), card_use, card_id))
        if r < 0.56:
            return Call("preview", user, (self.rng.randint(1, 3),))
        if r < 0.61 and self.previews.get(user):
            preview_id, quantity, had_card = self.rng.choice(self.previews[user])
            return Call("confirm_preview", user, (self.rid("p"), preview_id, quantity, had_card))
        if r < 0.66:
            return Call("confirm_text", user, (self.rid("t"), self.rng.randint(1, 3)))
        if r < 0.74 and u.orders:
            order = self.rng.choice(live or list(u.orders.values()))
            return Call("pay", user, (self.rid("pay"), order.order_id))
        if r < 0.82 and u.orders:
            order = self.rng.choice(list(u.orders.values()))
            return Call("cancel", user, (self.rid("c"), order.order_id))
        if r < 0.87:
            return Call("orders", user)
        if r < 0.93:
            return Call("enter", user, (self.rid("l"),))
        if self.done:
            return self.rng.choice(self.done)  # a retry with the same request_id
        return Call("wallet", user)

    async def one_step(self) -> None:
        r = self.rng.random()
        if r < 0.12:
            await self.concurrent_group()
        elif r < 0.17 and self.done:
            call = self.rng.choice(self.done)
            await self.duplicates(call, self.rng.randint(2, 4))
        elif r < 0.21:
            await self.card_race()
        elif r < 0.24:
            await self.order_race()
        elif r < 0.26:
            await self.invite_crowd()
        else:
            call = self.next_call()
            await self.run(call)
            if call.args:
                self.done.append(call)
        big = self.big_jumps and self.rng.random() < 0.03
        self.env.clock.advance(400 if big else self.rng.choice([0.5, 1, 2, 3, 5, 30]))
        self.step += 1

    async def concurrent_group(self) -> None:
        """Several users' calls at once: the model applies them in the order they answer."""
        group: list[Call] = []
        callers: set[str] = set()
        named: set[str] = set()
        for _ in range(self.rng.randint(3, 8)):
            call = self.next_call()
            if call.user in callers | named or self.named(call) & callers:
                continue
            callers.add(call.user)
            named |= self.named(call)
            group.append(call)
        self.log.append(f"{self.step}: concurrent {group}")
        answers = await asyncio.gather(*(self.answer_of(c) for c in group))
        for call, answer in zip(group, answers):
            await self.replay_answer(call, answer)
            if call.args:
                self.done.append(call)

    async def duplicates(self, call: Call, n: int) -> None:
        """The same call n times at once (an app's retries racing): every answer is the one the
        model gives, once."""
        self.log.append(f"{self.step}: {n} at once {call}")
        answers = await asyncio.gather(*(self.answer_of(call) for _ in range(n)))
        for answer in answers:
            await self.replay_answer(call, answer)

    async def card_race(self) -> None:
        """One user places several one-latte orders at once: exactly min(orders, cards) get a
        card, each a different one."""
        user = self.rng.choice(self.users)
        calls = [Call("place", user, (self.rid("o"), 1, "BEST", "")) for _ in range(self.rng.randint(2, 4))]
        self.log.append(f"{self.step}: race {calls}")
        answers = await asyncio.gather(*(self.answer_of(c) for c in calls))
        with_card = sorted(range(len(calls)), key=lambda i: isinstance(answers[i], Refused) or not answers[i].order.card_id)
        for i in with_card:
            await self.replay_answer(calls[i], answers[i])
            self.done.append(calls[i])

    async def order_race(self) -> None:
        """An unpaid order paid twice (two request_ids) and cancelled at the same moment: whatever
        the order, it ends cancelled with its money given back once and its card returned."""
        user = self.rng.choice(self.users)
        u = self.model.user(user)
        pending = [o for o in u.orders.values() if o.status == "ORDER_STATUS_PENDING_PAYMENT"]
        if not pending:
            return
        order = self.rng.choice(pending)
        pays = [Call("pay", user, (self.rid("pay"), order.order_id)) for _ in range(2)]
        cancel = Call("cancel", user, (self.rid("c"), order.order_id))
        self.log.append(f"{self.step}: order race {pays + [cancel]}")
        answers = await asyncio.gather(*(self.answer_of(c) for c in [*pays, cancel]))
        # Each answer is the order as its call left it, with what is still to do (a refund) maybe
        # not done yet; what must hold is the end: cancelled, refunded once, the card back.
        for call, answer in zip([*pays, cancel], answers):
            if isinstance(answer, Refused):
                self.fail(call, f"refused {answer} in a race of two payments and a cancel")
            if answer.order.status not in (order_pb2.ORDER_STATUS_PAID, order_pb2.ORDER_STATUS_CANCELLED):
                self.fail(call, f"answered {order_pb2.OrderStatus.Name(answer.order.status)}")
            self.done.append(call)
        for call in pays:
            self.model.pay(user, call.args[0], order.order_id)
        self.model.cancel(user, cancel.args[0], order.order_id)
        if order.card_id:
            u.known_cards.add(order.card_id)
        for call in [Call("orders", user), Call("wallet", user)]:
            await self.run(call)

    async def invite_crowd(self) -> None:
        """Newcomers joining through one user's pass-phrase at the same moment: each gets its
        card, the inviter one per invite up to the cap and every invite counted."""
        sharers = [u for u in self.model.users.values() if u.phrase]
        if not sharers:
            return
        host = self.rng.choice(sharers)
        n = self.rng.randint(3, 8)
        base = len(self.users)
        newcomers = [f"s{self.seed}n{base + i}" for i in range(n)]
        self.users.extend(newcomers)
        calls = [Call("join", user, (self.rid("j"), host.phrase)) for user in newcomers]
        self.log.append(f"{self.step}: crowd through {host.user_id}: {calls}")
        answers = await asyncio.gather(*(self.answer_of(c) for c in calls))
        for call, answer in zip(calls, answers):
            await self.replay_answer(call, answer)
            self.done.append(call)
        await self.run(Call("wallet", host.user_id))

    async def night(self, lottery_server: Any) -> None:
        """The day's cut-off, its draw and the next morning: entries close at 20:00 (an entrant
        keeps its entry), the draw picks min(15, entrants) winners that the gateway verifies,
        and the next day every qualified user may enter again."""
        clock = self.env.clock
        day = self.today()
        at = lambda h, m, s, days=0: dt.datetime.combine(  # noqa: E731
            clock.now().astimezone(SHANGHAI).date() + dt.timedelta(days=days), dt.time(h, m, s), tzinfo=SHANGHAI
        )
        clock.set(at(19, 59, 0))
        for user in self.users:
            if self.model.user(user).qualified and self.rng.random() < 0.7:
                await self.run(Call("enter", user, (self.rid("l"),)))
        clock.set(at(20, 0, 30))
        for user in self.users:
            await self.run(Call("wallet", user))
            await self.run(Call("enter", user, (self.rid("l"),)))
        await lottery_server.scheduler.tick()
        entrants = {u.user_id for u in self.model.users.values() if day in u.entered_days}
        for user in self.users[:10]:
            call = Call("results", user, (day,))
            got = await self.rpc("GetDrawResults", gw.GetDrawResultsRequest(day=day), user)
            if isinstance(got, Refused):
                self.fail(call, f"refused {got}")
            r = got.results
            if not entrants:
                # Nobody entered: a day the scheduler never committed (it ticks hourly here, and
                # its first tick came before the campaign existed) is not held at all.
                self.same(call, "winners of a day without entrants", list(r.draw.winners), [])
                continue
            self.same(call, "draw.status", lottery_pb2.DrawStatus.Name(r.draw.status), "DRAW_STATUS_DRAWN")
            self.same(call, "draw.entrant_count", r.draw.entrant_count, len(entrants))
            self.same(call, "winners", len(r.draw.winners), min(15, len(entrants)))
            if not set(r.draw.winners) <= entrants:
                self.fail(call, f"winners who did not enter: {set(r.draw.winners) - entrants}")
            self.same(call, "verified", (r.verified, r.verification_note), (True, r.verification_note))
            self.same(call, "caller_won", r.caller_won, user in r.draw.winners)
        clock.set(at(7, 0, 0, days=1))
        self.big_jumps = False
        for user in self.users:
            await self.run(Call("wallet", user))

    # Concurrent calls are sent first and judged afterwards, one by one, by the same code that
    # judges a lone call: answer_of records the raw answer, replay_answer judges it.
    async def answer_of(self, call: Call) -> Any:
        saved = self.rpc
        answers: list[Any] = []

        async def record(method: str, request: Any, user: str) -> Any:
            answers.append(await saved(method, request, user))
            return answers[-1]

        self.rpc = record  # type: ignore[method-assign]
        try:
            return await _sent_only(call, self, record)
        finally:
            self.rpc = saved  # type: ignore[method-assign]

    async def replay_answer(self, call: Call, answer: Any) -> None:
        saved = self.rpc

        async def canned(method: str, request: Any, user: str) -> Any:
            return answer

        self.rpc = canned  # type: ignore[method-assign]
        try:
            await self.run(call)
        finally:
            self.rpc = saved  # type: ignore[method-assign]


async def _sent_only(call: Call, journey: Journey, record: Any) -> Any:
    """The raw gateway answer to `call`, without judging it."""
    method, request = _request_of(call, journey)
    return await record(method, request, call.user)


def _request_of(call: Call, j: Journey) -> tuple[str, Any]:
    a = call.args
    if call.kind == "join":
        return "Join", gw.JoinRequest(request_id=a[0], pass_phrase_text=a[1])
    if call.kind == "wallet":
        return "GetWallet", gw.GetWalletRequest()
    if call.kind == "place":
        return "PlaceOrder", gw.PlaceOrderRequest(
            request_id=a[0], store_id=STORE_ID, card_use=CARD_USES[a[2]], card_id=a[3],
            lines=[catalog_pb2.LineSelection(item_id=ITEM_ID, quantity=a[1])],
        )
    if call.kind == "preview":
        return "OrderByText", gw.OrderByTextRequest(text=f"{NUMBERS[a[0]]}杯拿铁", location=HANGZHOU)
    if call.kind == "confirm_preview":
        return "OrderByText", gw.OrderByTextRequest(request_id=a[0], preview_id=a[1], confirm=True)
    if call.kind == "confirm_text":
        return "OrderByText", gw.OrderByTextRequest(request_id=a[0], text=f"{NUMBERS[a[1]]}杯拿铁", location=HANGZHOU, confirm=True)
    if call.kind == "pay":
        return "ConfirmPayment", gw.ConfirmPaymentRequest(request_id=a[0], order_id=a[1], payment_reference=j.references.get(a[1], "none"))
    if call.kind == "cancel":
        return "CancelOrder", gw.CancelOrderRequest(request_id=a[0], order_id=a[1])
    if call.kind == "orders":
        return "ListOrders", gw.ListOrdersRequest(page_size=100)
    if call.kind == "enter":
        return "EnterLottery", gw.EnterLotteryRequest(request_id=a[0])
    raise ValueError(call.kind)
