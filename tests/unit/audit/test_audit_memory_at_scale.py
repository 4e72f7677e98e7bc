"""What the whole audit holds for a campaign, fetch and checks together: at national scale (120
million cards) every byte per card is 120 MB, so the operator's machine decides whether the audit
can run at all. The fetcher reads real protobuf pages here (in-process stubs of the admin
listings, 1,000 records a page as the services answer) and the checks run over what it kept.

Python's own allocations are measured (tracemalloc), not the protobuf arenas behind them: a
listing kept whole until its last page shows here through its message objects, and cost about
as much again in arenas."""
from __future__ import annotations

import contextlib
import gc
import hashlib
import tracemalloc
import types

import pytest
from google.protobuf import timestamp_pb2

import services.audit.fetch as fetch
from miandan.card.v1 import card_pb2, card_service_pb2 as cs
from miandan.lottery.v1 import lottery_service_pb2 as ls
from miandan.order.v1 import order_pb2, order_service_pb2 as os_
from services.audit.model import audit
from services.common.config import Settings

CID = "spring-2026"
USERS = 6_000
INVITES = 4_000  # every invitee's joining card is its invitee card, every inviter gets one more
CARDS = USERS + INVITES
ORDERS = 10_000
WITH_CARD = 6_000
PAGE = 1_000


def _user(i: int) -> str:
    return "u" + hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest()


def _paged(items: list, build) -> list[bytes]:
    return [
        build(items[i:i + PAGE], str(i + PAGE) if i + PAGE < len(items) else "").SerializeToString()
        for i in range(0, max(1, len(items)), PAGE)
    ]


class Campaign:
    """A campaign whose records all agree: 6,000 users, 10,000 cards, 10,000 orders of which
    6,000 spent a card, 4,000 invites. Its listings as serialized pages, in each listing's order."""

    def __init__(self) -> None:
        users = [_user(i) for i in range(USERS)]
        invites = [(users[(7 * k + 1) % USERS], users[k]) for k in range(INVITES)]  # (inviter, invitee)
        cards = [[f"cd{i:016x}", u, card_pb2.CARD_SOURCE_INVITEE if i < INVITES else card_pb2.CARD_SOURCE_SIGNUP, ""]
                 for i, u in enumerate(users)]
        cards += [[f"cd{USERS + k:016x}", inviter, card_pb2.CARD_SOURCE_INVITER, ""] for k, (inviter, _) in enumerate(invites)]
        orders = []
        for j in range(ORDERS):
            oid = "ord_" + hashlib.sha256(str(j).encode()).hexdigest()[:24]
            if j < WITH_CARD:
                c = cards[(j * 7919) % CARDS]
                c[3] = oid
                orders.append(order_pb2.Order(order_id=oid, user_id=c[1], status=order_pb2.ORDER_STATUS_COMPLETED, card_id=c[0],
                                              campaign_id=CID, card_discount_fen=2_500, subtotal_fen=3_000 + j % 50, payable_fen=500 + j % 50))
            else:
                orders.append(order_pb2.Order(order_id=oid, user_id=users[j % USERS], status=order_pb2.ORDER_STATUS_COMPLETED,
                                              campaign_id=CID, subtotal_fen=3_000, payable_fen=3_000))
        cards.sort()
        orders.sort(key=lambda o: o.order_id)
        held = {u: 0 for u in users}
        made = {u: 0 for u in users}
        for c in cards:
            held[c[1]] += 1
        for inviter, _ in invites:
            made[inviter] += 1
        self.cards = _paged(cards, lambda page, t: cs.ListCampaignCardsResponse(next_page_token=t, cards=[
            card_pb2.Card(card_id=c[0], campaign_id=CID, user_id=c[1], source=c[2], face_value_fen=2_500, order_id=c[3],
                          state=card_pb2.CARD_STATE_REDEEMED if c[3] else card_pb2.CARD_STATE_AVAILABLE) for c in page]))
        self.orders = _paged(orders, lambda page, t: os_.ListAllOrdersResponse(orders=page, next_page_token=t))
        self.members = _paged(sorted(users), lambda page, t: cs.ListCampaignMembersResponse(next_page_token=t, members=[
            cs.CampaignMember(user_id=u, cards_granted=held[u], invites_made=made[u]) for u in page]))
        self.invites = _paged(sorted(invites, key=lambda i: i[1]), lambda page, t: cs.ListCampaignInvitesResponse(next_page_token=t, invites=[
            card_pb2.Invite(inviter_user_id=a, invitee_user_id=b, inviter_rewarded=True, invitee_rewarded=True,
                            accept_time=timestamp_pb2.Timestamp(seconds=1_770_000_000 + n)) for n, (a, b) in enumerate(page)]))
        issued, redeemed = CARDS * 2_500, WITH_CARD * 2_500
        self.budget = cs.GetBudgetResponse(budget=card_pb2.Budget(
            campaign_id=CID, budget_fen=10**12, issued_fen=issued, redeemed_fen=redeemed, remaining_fen=10**12 - issued, cards_issued=CARDS))


def _listing(pages: list[bytes], reply):
    async def rpc(request, metadata=None, timeout=None):
        return reply.FromString(pages[int(request.page_token or 0) // PAGE])

    return rpc


@pytest.fixture
def campaign(monkeypatch) -> Campaign:
    """The fetcher's channels and stubs replaced by ones answering the campaign's pages."""
    world = Campaign()

    class CardStub:
        def __init__(self, channel) -> None:
            self.ListCampaignCards = _listing(world.cards, cs.ListCampaignCardsResponse)
            self.ListCampaignMembers = _listing(world.members, cs.ListCampaignMembersResponse)
            self.ListCampaignInvites = _listing(world.invites, cs.ListCampaignInvitesResponse)

        async def ListCampaigns(self, request, metadata=None, timeout=None):
            rules = card_pb2.CampaignRules(budget_fen=10**12, per_user_card_cap=21, signup_grant=1, inviter_grant=1, invitee_grant=1,
                                           lottery_invite_threshold=3)
            return cs.ListCampaignsResponse(campaigns=[card_pb2.Campaign(campaign_id=CID, rules=rules)])

        async def GetBudget(self, request, metadata=None, timeout=None):
            return world.budget

    class OrderStub:
        def __init__(self, channel) -> None:
            self.ListAllOrders = _listing(world.orders, os_.ListAllOrdersResponse)

    class LotteryStub:
        def __init__(self, channel) -> None:
            pass

        async def ListDraws(self, request, metadata=None, timeout=None):
            return ls.ListDrawsResponse()

    @contextlib.asynccontextmanager
    async def no_channel(settings, address):
        yield None

    monkeypatch.setattr(fetch, "open_channel", no_channel)
    monkeypatch.setattr(fetch, "card_service_pb2_grpc", types.SimpleNamespace(CardServiceStub=CardStub))
    monkeypatch.setattr(fetch, "order_service_pb2_grpc", types.SimpleNamespace(OrderServiceStub=OrderStub))
    monkeypatch.setattr(fetch, "lottery_service_pb2_grpc", types.SimpleNamespace(LotteryServiceStub=LotteryStub))
    return world


async def _measured_audit():
    """(findings, facts, bytes held once fetched, peak bytes while fetching and checking)."""
    targets = fetch.Targets(Settings.from_env("gateway"), "card", "order", "lottery")
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        facts = await fetch.fetch_facts(targets)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        findings = audit(facts, reservation_grace_ms=30_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return findings, facts, held - base, peak - base


async def test_a_campaign_that_holds_is_audited_in_under_450_bytes_per_card_and_order(campaign):
    # Per card or order, with its share of the members and invites. Each listing held whole as
    # protobuf until its last page, every mention of a user, card or order id its own string, and
    # a list per card in the checks: 496 bytes held and 704 at the peak (the arenas on top). Now
    # about 270 and 360.
    findings, facts, held, peak = await _measured_audit()
    assert findings == []
    assert (len(facts.cards), len(facts.orders)) == (CARDS, ORDERS)
    records = CARDS + ORDERS
    assert held / records < 350, held / records
    assert peak / records < 450, peak / records
