"""In-memory fakes of the four upstream stubs for the gateway's compose tests. Each fake method
has the generated stub's call shape (request, timeout=, metadata=) and records what it got."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2
from miandan.order.v1 import order_pb2, order_service_pb2
from services.common.clock import FakeClock
from services.common.errors import DomainError, to_rpc_status

from gateway.clients import CallOptions
from gateway.compose import Gateway
from gateway.preview import PreviewStore


def rpc_error(err: DomainError) -> grpc.aio.AioRpcError:
    status = to_rpc_status(err)
    return grpc.aio.AioRpcError(status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict]] = []
        self.fail: dict[str, BaseException] = {}
        self.delay: dict[str, float] = {}

    async def _record(self, name: str, request: Any, kw: dict) -> None:
        self.calls.append((name, request, kw))
        if name in self.delay:
            await asyncio.sleep(self.delay[name])
        if name in self.fail:
            raise self.fail[name]

    def requests(self, name: str) -> list[Any]:
        return [r for n, r, _ in self.calls if n == name]


class FakeCard(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, list[card_pb2.Card]] = {}
        self.invites: dict[str, int] = {}  # invites made per user (default 1: not qualified)
        self.time_zone = "Asia/Shanghai"
        # False plays a card service older than include_wallet: its writes never return a wallet.
        self.writes_return_wallet = True
        # False plays a card service older than AcceptInvite.claim_signup (so is one older than
        # include_wallet): AcceptInvite ignores the field and answers no signup_claim.
        self.claims_signup_in_invite = True

    def _wallet_of(self, request) -> card_service_pb2.GetWalletResponse | None:
        if not (request.include_wallet and self.writes_return_wallet):
            return None
        user = request.user_id if hasattr(request, "user_id") else request.invitee_user_id
        return self._wallet(user, include_available_cards=True)

    def _sign_up(self, user_id: str) -> bool:
        new = user_id not in self.cards
        if new:
            self.cards[user_id] = [
                card_pb2.Card(card_id=f"c-{user_id}-1", user_id=user_id, face_value_fen=2500,
                              state=card_pb2.CARD_STATE_AVAILABLE, source=card_pb2.CARD_SOURCE_SIGNUP)
            ]
        return new

    async def ClaimSignupCard(self, request, **kw):
        await self._record("ClaimSignupCard", request, kw)
        new = self._sign_up(request.user_id)
        return card_service_pb2.ClaimSignupCardResponse(
            cards=self.cards[request.user_id], newly_granted=new, wallet=self._wallet_of(request)
        )

    async def AcceptInvite(self, request, **kw):
        await self._record("AcceptInvite", request, kw)  # a failure claims nothing, as the real one
        claim = None
        if request.claim_signup and self.claims_signup_in_invite and self.writes_return_wallet:
            new = self._sign_up(request.invitee_user_id)
            claim = card_service_pb2.SignupClaim(cards=self.cards[request.invitee_user_id], newly_granted=new)
        return card_service_pb2.AcceptInviteResponse(
            newly_accepted=True, wallet=self._wallet_of(request), signup_claim=claim
        )

    async def GetWallet(self, request, **kw):
        await self._record("GetWallet", request, kw)
        return self._wallet(request.user_id, request.include_available_cards)

    def _wallet(self, user_id: str, include_available_cards: bool) -> card_service_pb2.GetWalletResponse:
        cards = self.cards.get(user_id, [])
        invites = self.invites.get(user_id, 1)
        return card_service_pb2.GetWalletResponse(
            wallet=card_pb2.Wallet(user_id=user_id, cards_granted=len(cards), lottery_progress=invites,
                                   lottery_threshold=3, lottery_qualified=invites >= 3,
                                   invite_code="K7QM3XPA", pass_phrase_text="¥K7QM3XPA¥"),
            available_cards=[c for c in cards if c.state == card_pb2.CARD_STATE_AVAILABLE][:100]
            if include_available_cards else (),
        )

    async def GetCampaign(self, request, **kw):
        await self._record("GetCampaign", request, kw)
        return card_service_pb2.GetCampaignResponse(
            campaign=card_pb2.Campaign(campaign_id=request.campaign_id, rules=card_pb2.CampaignRules(time_zone=self.time_zone))
        )

    async def ListCards(self, request, **kw):
        await self._record("ListCards", request, kw)
        cards = [c for c in self.cards.get(request.user_id, []) if c.state == request.state or not request.state]
        return card_service_pb2.ListCardsResponse(cards=cards[: request.page_size or 50])


class FakeCatalog(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.total_fen = 3200

    async def MatchIntent(self, request, **kw):
        await self._record("MatchIntent", request, kw)
        if "火星" in request.text:
            return catalog_service_pb2.MatchIntentResponse(
                status=catalog_pb2.INTENT_STATUS_NEEDS_CLARIFICATION, clarification="想点什么？/ what would you like?"
            )
        lines = [catalog_pb2.LineSelection(item_id="luckin-coconut-latte", quantity=2)]
        # A bare "拿铁" is one latte of several, as the real resolver reads it.
        confidence = 0.51 if request.text == "拿铁" else 0.97
        return catalog_service_pb2.MatchIntentResponse(
            status=catalog_pb2.INTENT_STATUS_MATCHED,
            proposal=catalog_pb2.OrderProposal(
                store=catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id="luckin-hz-1", name="瑞幸")),
                lines=lines,
                quote=catalog_pb2.Quote(
                    store_id="luckin-hz-1",
                    total_fen=self.total_fen,
                    lines=[catalog_pb2.QuotedLine(item_id="luckin-coconut-latte", item_name="生椰拿铁", quantity=2)],
                ),
                confidence=confidence,
            ),
            confidence=confidence,
        )

    async def SearchStores(self, request, **kw):
        await self._record("SearchStores", request, kw)
        return catalog_service_pb2.SearchStoresResponse(
            stores=[catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id="s1"))], next_page_token="p2"
        )

    async def GetMenu(self, request, **kw):
        await self._record("GetMenu", request, kw)
        return catalog_service_pb2.GetMenuResponse(store=catalog_pb2.Store(store_id=request.store_id), open_now=True)


class FakeWatch:
    """A server-stream call object: async-iterable, cancellable."""

    def __init__(self, updates: list[Any], hang: bool) -> None:
        self.updates, self.hang, self.cancelled = updates, hang, False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def __aiter__(self):
        for u in self.updates:
            yield u
        if self.hang:
            await asyncio.Event().wait()


class FakeOrder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.watches: list[FakeWatch] = []
        self.watch_hangs = False

    async def PlaceOrder(self, request, **kw):
        await self._record("PlaceOrder", request, kw)
        return order_service_pb2.PlaceOrderResponse(
            order=order_pb2.Order(order_id="o-1", request_id=request.request_id, user_id=request.user_id,
                                  store_id=request.store_id, status=order_pb2.ORDER_STATUS_PAID)
        )

    async def GetOrder(self, request, **kw):
        await self._record("GetOrder", request, kw)
        return order_service_pb2.GetOrderResponse(order=order_pb2.Order(order_id=request.order_id, user_id=request.user_id))

    async def ListOrders(self, request, **kw):
        await self._record("ListOrders", request, kw)
        return order_service_pb2.ListOrdersResponse(orders=[order_pb2.Order(order_id="o-1")], next_page_token="t")

    async def CancelOrder(self, request, **kw):
        await self._record("CancelOrder", request, kw)
        return order_service_pb2.CancelOrderResponse(
            order=order_pb2.Order(order_id=request.order_id, status=order_pb2.ORDER_STATUS_CANCELLED, card_returned=True)
        )

    async def ConfirmPayment(self, request, **kw):
        await self._record("ConfirmPayment", request, kw)
        return order_service_pb2.ConfirmPaymentResponse(order=order_pb2.Order(order_id=request.order_id))

    def WatchOrder(self, request, **kw):
        self.calls.append(("WatchOrder", request, kw))
        updates = [order_service_pb2.WatchOrderResponse(order=order_pb2.Order(order_id=request.order_id, status=s))
                   for s in (order_pb2.ORDER_STATUS_PAID, order_pb2.ORDER_STATUS_ACCEPTED)]
        watch = FakeWatch(updates, self.watch_hangs)
        self.watches.append(watch)
        return watch


def drawn(entrants: list[str], winner_count: int = 2, seed: bytes = b"s" * 32) -> tuple[lottery_pb2.Draw, dict]:
    ordered = sorted(entrants, key=lambda u: u.encode())
    scores = sorted((int.from_bytes(hmac.new(seed, u.encode(), hashlib.sha256).digest(), "big"), u) for u in ordered)
    winners = [u for _, u in scores[:winner_count]]
    draw = lottery_pb2.Draw(
        campaign_id="spring-2026", day="2026-01-28", winner_count=winner_count, status=lottery_pb2.DRAW_STATUS_DRAWN,
        commitment=hashlib.sha256(seed).hexdigest(), entrant_count=len(entrants), winners=winners, seed=seed.hex(),
    )
    # Committed at 08:00 UTC the day before, entries closed at 12:00 UTC (20:00 Shanghai), drawn a second later.
    draw.commit_time.FromMilliseconds(1_769_500_800_000)
    draw.cutoff_time.FromMilliseconds(1_769_601_600_000)
    draw.draw_time.FromMilliseconds(1_769_601_601_000)
    verify = dict(
        seed=seed.hex(), commitment=draw.commitment, entrants=ordered,
        entrants_hash=hashlib.sha256("\n".join(ordered).encode()).hexdigest(), entrant_count=len(entrants),
        algorithm="miandan-draw-hmac-sha256", algorithm_version=1, winners=winners,
    )
    return draw, verify


class FakeLottery(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.draw = lottery_pb2.Draw(campaign_id="spring-2026", day="2026-01-28", status=lottery_pb2.DRAW_STATUS_OPEN)
        self.verify: dict = {}
        self.entries: list[lottery_pb2.Entry] = []
        self.page_size = 10_000

    async def GetDraw(self, request, **kw):
        await self._record("GetDraw", request, kw)
        return lottery_service_pb2.GetDrawResponse(draw=self.draw)

    async def ListMyEntries(self, request, **kw):
        await self._record("ListMyEntries", request, kw)
        return lottery_service_pb2.ListMyEntriesResponse(entries=[e for e in self.entries if e.user_id == request.user_id])

    async def EnterDraw(self, request, **kw):
        await self._record("EnterDraw", request, kw)
        entry = lottery_pb2.Entry(campaign_id=request.campaign_id, day=self.draw.day, user_id=request.user_id)
        self.entries.append(entry)
        return lottery_service_pb2.EnterDrawResponse(entry=entry, draw=self.draw, newly_entered=True)

    async def VerifyDraw(self, request, **kw):
        await self._record("VerifyDraw", request, kw)
        start = int(request.page_token or 0)
        entrants = self.verify["entrants"]
        page = entrants[start : start + self.page_size]
        nxt = str(start + self.page_size) if start + self.page_size < len(entrants) else ""
        fields = {k: v for k, v in self.verify.items() if k != "entrants"}
        return lottery_service_pb2.VerifyDrawResponse(draw=self.draw, entrants=page, next_page_token=nxt, **fields)


class Fakes:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.card, self.catalog, self.order, self.lottery = FakeCard(), FakeCatalog(), FakeOrder(), FakeLottery()
        self.previews = PreviewStore(ttl_seconds=600, clock=self.clock)
        self.gateway = Gateway(
            card=self.card, catalog=self.catalog, order=self.order, lottery=self.lottery,
            campaign_id="spring-2026", previews=self.previews, clock=self.clock,
        )

    def options(self, seconds: float = 5.0) -> CallOptions:
        import time

        return CallOptions(time.monotonic() + seconds, (("x-miandan-internal-token", "t"), ("x-miandan-criticality", "DEFAULT")))


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def make_rpc_error():
    return rpc_error


@pytest.fixture
def make_drawn():
    return drawn
