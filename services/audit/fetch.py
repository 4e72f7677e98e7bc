"""Reads every service through its public API with the admin + internal credential and turns the
answers into the plain facts of services.audit.model.

Only list and read RPCs are called; nothing is written. Paging follows next_page_token until it
is empty. Calls that are shed (UNAVAILABLE, e.g. OVERLOADED after a benchmark) are retried with
a short backoff, because an operator audit must not fail just because the suite is still busy.
"""
from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import grpc

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from services.common.auth import internal_metadata, open_channel
from services.common.config import Settings

from .model import (
    AuditFacts,
    BudgetFacts,
    CampaignFacts,
    CardFacts,
    DrawFacts,
    InviteFacts,
    InviterFacts,
    MemberFacts,
    OrderFacts,
)
from .pool import map_bounded

__all__ = ["ServiceUnreadable", "Targets", "fetch_facts"]

T = TypeVar("T")
# Reads of a campaign's rules and budget back to back when the first two disagreed (fetch_facts).
_BUDGET_RECHECKS = 3
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class Targets:
    """Where the services are and the credentials to present."""

    settings: Settings
    card: str
    order: str
    lottery: str

    @classmethod
    def resolve(cls, settings_or_addrs: Settings | Mapping[str, str] | None) -> "Targets":
        """A Settings (its *_addr fields), or a mapping {"card": "host:port", ...} whose missing
        entries and credentials come from the environment (MIANDAN_* as every service reads them)."""
        if isinstance(settings_or_addrs, Settings):
            s = settings_or_addrs
            return cls(s, s.card_addr, s.order_addr, s.lottery_addr)
        s = Settings.from_env("gateway")
        addrs = dict(settings_or_addrs or {})
        return cls(s, addrs.get("card", s.card_addr), addrs.get("order", s.order_addr), addrs.get("lottery", s.lottery_addr))


def _ms(ts: Any) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def _suffix(enum_descriptor: Any, value: int, prefix: str) -> str:
    # Interned: removeprefix makes a new string per call, and every card and order carries one.
    name = enum_descriptor.values_by_number[value].name.removeprefix(prefix) if value in enum_descriptor.values_by_number else str(value)
    return sys.intern(name)


_CARD_STATE = card_pb2.CardState.DESCRIPTOR
_CARD_SOURCE = card_pb2.CardSource.DESCRIPTOR
_ORDER_STATUS = order_pb2.OrderStatus.DESCRIPTOR
_DRAW_STATUS = lottery_pb2.DrawStatus.DESCRIPTOR


class Shared:
    """One copy of each id and amount the listings repeat, for one fetch.

    Every listing names users (a card's owner, an order's buyer, a member, both sides of an
    invite), an order names its card and a card its order: read from protobuf, each mention is a
    new string, so a user with two cards and an order was held five times. Amounts repeat too
    (face values, common prices). Kept only while fetching: the facts keep the shared objects."""

    _MAX_AMOUNTS = 1 << 16  # distinct amounts remembered; beyond, each is kept as read

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._amounts: dict[int, int] = {}

    def id(self, value: str) -> str:
        return self._ids.setdefault(value, value) if value else ""

    def amount(self, value: int) -> int:
        if len(self._amounts) < self._MAX_AMOUNTS:
            return self._amounts.setdefault(value, value)
        return self._amounts.get(value, value)


class _Unshared(Shared):
    """Each value as read: for a record converted on its own."""

    def id(self, value: str) -> str:
        return value

    def amount(self, value: int) -> int:
        return value


_UNSHARED = _Unshared()


def card_facts(card: Any, shared: Shared = _UNSHARED) -> CardFacts:
    return CardFacts(
        card_id=shared.id(card.card_id),
        campaign_id=sys.intern(card.campaign_id),  # one string per campaign, not per card
        user_id=shared.id(card.user_id),
        state=_suffix(_CARD_STATE, card.state, "CARD_STATE_"),
        source=_suffix(_CARD_SOURCE, card.source, "CARD_SOURCE_"),
        face_value_fen=shared.amount(card.face_value_fen),
        order_id=shared.id(card.order_id),
        reserved_until_ms=_ms(card.reserved_until_time) if card.HasField("reserved_until_time") else 0,
    )


def order_facts(order: Any, shared: Shared = _UNSHARED) -> OrderFacts:
    return OrderFacts(
        order_id=shared.id(order.order_id),
        user_id=shared.id(order.user_id),
        status=_suffix(_ORDER_STATUS, order.status, "ORDER_STATUS_"),
        card_id=shared.id(order.card_id),
        campaign_id=sys.intern(order.campaign_id),  # one string per campaign, not per order
        card_discount_fen=shared.amount(order.card_discount_fen),
        subtotal_fen=shared.amount(order.subtotal_fen),
        payable_fen=shared.amount(order.payable_fen),
        payment_note=sys.intern(order.payment.note),  # "" or one of a few notes
    )


def campaign_facts(c: Any) -> CampaignFacts:
    r = c.rules
    return CampaignFacts(
        campaign_id=c.campaign_id,
        budget_fen=r.budget_fen,
        per_user_card_cap=r.per_user_card_cap,
        signup_grant=r.signup_grant,
        inviter_grant=r.inviter_grant,
        invitee_grant=r.invitee_grant,
        reservation_ttl_seconds=r.reservation_ttl_seconds,
        lottery_invite_threshold=r.lottery_invite_threshold,
    )


class ServiceUnreadable(Exception):
    """A read the audit needs failed for good (after the retries of a shed or unreachable
    service): names the service and the address asked, so the operator knows where to look."""

    def __init__(self, service: str, address: str, method: str, err: grpc.aio.AioRpcError) -> None:
        self.service, self.address, self.method, self.code = service, address, method, err.code()
        super().__init__(f"the {service} service at {address} ({method}): {err.code().name}: {err.details()}")


# gRPC service name -> (label, Targets field) for ServiceUnreadable.
_SERVICES = {
    "miandan.card.v1.CardService": "card",
    "miandan.order.v1.OrderService": "order",
    "miandan.lottery.v1.LotteryService": "lottery",
}


class _Reader:
    def __init__(self, targets: Targets, *, concurrency: int, timeout: float, retry_for: float) -> None:
        self.targets = targets
        self.metadata = internal_metadata(targets.settings, admin=True)
        self.concurrency = concurrency
        self.gate = asyncio.Semaphore(concurrency)
        self.timeout = timeout
        self.retry_for = retry_for

    async def call(self, fn: Callable[..., Awaitable[T]], request: Any) -> T:
        give_up = time.monotonic() + self.retry_for
        delay = 0.05
        async with self.gate:
            while True:
                try:
                    return await fn(request, metadata=self.metadata, timeout=self.timeout)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in _RETRYABLE or time.monotonic() + delay > give_up:
                        raise self._unreadable(fn, err) from err
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _unreadable(self, fn: Any, err: grpc.aio.AioRpcError) -> ServiceUnreadable:
        path = getattr(fn, "_method", b"")
        path = path.decode() if isinstance(path, bytes) else str(path)
        full, _, method = path.strip("/").rpartition("/")
        service = _SERVICES.get(full, full or "a")
        return ServiceUnreadable(service, getattr(self.targets, service, "?"), method or "?", err)


class PageLoop(RuntimeError):
    """A listing answered a page token it had already given: the audit stops instead of looping."""


class _Tokens:
    """The page tokens one listing gave. Every paging loop of the audit goes through one: a
    server bug that answers a token again must not turn the audit into an endless loop that
    keeps appending the same page (the operator would see it hang, its memory growing)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.seen: set[str] = set()

    def next(self, token: str) -> str:
        if token in self.seen:
            raise PageLoop(f"{getattr(self.fn, '_method', self.fn)!r} returned page token {token!r} twice")
        if token:
            self.seen.add(token)
        return token


async def _each(
    reader: _Reader, fn: Callable[..., Awaitable[Any]], make: Callable[[str], Any], items: str, keep: Callable[[Any], None]
) -> None:
    """Hands every listed item to `keep`, a page at a time: only one page of protobuf messages
    is alive at once (a listing held whole until its last page cost more than the facts made
    of it: a million cards peaked at about a gigabyte)."""
    token = ""
    tokens = _Tokens(fn)
    while True:
        reply = await reader.call(fn, make(token))
        for item in getattr(reply, items):
            keep(item)
        token = tokens.next(reply.next_page_token)
        del reply
        if not token:
            return


async def _pages(reader: _Reader, fn: Callable[..., Awaitable[Any]], make: Callable[[str], Any], items: str) -> list[Any]:
    out: list[Any] = []
    await _each(reader, fn, make, items, out.append)
    return out


async def fetch_facts(
    targets: Targets,
    campaign_id: str | None = None,
    *,
    concurrency: int = 16,
    timeout: float = 10.0,
    retry_for: float = 30.0,
) -> AuditFacts:
    reader = _Reader(targets, concurrency=concurrency, timeout=timeout, retry_for=retry_for)
    settings = targets.settings
    async with open_channel(settings, targets.card) as card_ch, open_channel(settings, targets.order) as order_ch, open_channel(
        settings, targets.lottery
    ) as lottery_ch:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        orders = order_service_pb2_grpc.OrderServiceStub(order_ch)
        lottery = lottery_service_pb2_grpc.LotteryServiceStub(lottery_ch)
        facts = AuditFacts(now_ms=int(time.time() * 1000))
        shared = Shared()

        if campaign_id:
            reply = await reader.call(cards.GetCampaign, card_service_pb2.GetCampaignRequest(campaign_id=campaign_id))
            campaigns = [reply.campaign]
        else:
            campaigns = await _pages(
                reader, cards.ListCampaigns, lambda t: card_service_pb2.ListCampaignsRequest(page_size=100, page_token=t), "campaigns"
            )
        facts.campaigns = [campaign_facts(c) for c in campaigns]
        ids = [c.campaign_id for c in facts.campaigns]
        rules = {c.campaign_id: c for c in facts.campaigns}

        async def budget_of(cid: str) -> BudgetFacts:
            budget = (await reader.call(cards.GetBudget, card_service_pb2.GetBudgetRequest(campaign_id=cid))).budget
            return BudgetFacts(
                campaign_id=cid,
                budget_fen=budget.budget_fen,
                issued_fen=budget.issued_fen,
                reserved_fen=budget.reserved_fen,
                redeemed_fen=budget.redeemed_fen,
                remaining_fen=budget.remaining_fen,
                cards_issued=budget.cards_issued,
                expired_fen=budget.expired_fen,
            )

        async def recheck_rules(cid: str) -> None:
            """The budget moved between the rules and GetBudget (SetCampaignBudget), or the rules
            are a stale copy: the rules and GetBudget read again back to back tell which
            (model.check_budget). A few tries: an operator may change it again in between."""
            for _ in range(_BUDGET_RECHECKS):
                reply = await reader.call(cards.GetCampaign, card_service_pb2.GetCampaignRequest(campaign_id=cid))
                again, beside = campaign_facts(reply.campaign), await budget_of(cid)
                facts.campaigns_after[cid], facts.budgets_beside[cid] = again, beside
                if again.budget_fen == beside.budget_fen:
                    return

        async def one_campaign(cid: str) -> None:
            facts.budgets[cid] = await budget_of(cid)
            await _each(
                reader,
                cards.ListCampaignCards,
                lambda t: card_service_pb2.ListCampaignCardsRequest(campaign_id=cid, page_size=1000, page_token=t),
                "cards",
                lambda c: facts.cards.append(card_facts(c, shared)),
            )
            # Asked again once the cards are listed: under live traffic cards are issued while the
            # listing pages on, so the listed cards are held to the range of the two answers
            # (model.check_budget), not to the first answer alone.
            facts.budgets_after[cid] = await budget_of(cid)
            if facts.budgets[cid].budget_fen != rules[cid].budget_fen:
                await recheck_rules(cid)
            draws = await _pages(
                reader, lottery.ListDraws, lambda t: lottery_service_pb2.ListDrawsRequest(campaign_id=cid, page_size=100, page_token=t), "draws"
            )
            for d in draws:
                facts.draws.append(await _draw(reader, lottery, d))

        await asyncio.gather(*(one_campaign(cid) for cid in ids))
        await _flag_winners(reader, lottery, facts)

        wanted = set(ids)
        own_cards: set[str] | None = None

        def in_scope(o: Any) -> bool:
            # Orders of other campaigns are out of scope when one campaign is audited; an order
            # that names one of our cards is always in (whatever its campaign_id says). The set
            # of our card ids is made only when such an order shows up (a million ids cost tens
            # of megabytes, and auditing every campaign never needs it).
            nonlocal own_cards
            if o.campaign_id in wanted or (not o.campaign_id and not o.card_id):
                return True
            if own_cards is None:
                own_cards = {c.card_id for c in facts.cards}
            return o.card_id in own_cards

        def keep_order(o: Any) -> None:
            if in_scope(o):
                facts.orders.append(order_facts(o, shared))

        await _each(
            reader, orders.ListAllOrders, lambda t: order_service_pb2.ListAllOrdersRequest(page_size=1000, page_token=t), "orders", keep_order
        )
        own_cards = None

        for cid in ids:
            await _people(reader, cards, cid, facts, shared)
        return facts


async def _people(reader: _Reader, cards: Any, cid: str, facts: AuditFacts, shared: Shared = _UNSHARED) -> None:
    """Members and invites of one campaign from its campaign-wide listings: a page per 1,000
    members or invites, not two calls per user (20,000 users took 16.8 s that way, 0.8 s now;
    a million would take a quarter of an hour). Every user the audit met elsewhere (a card, an order, a draw) is in too, with
    zero counters and no invites when the card service does not know it (itself a finding when
    the user holds cards). The drawn days' entrants are also asked per user (GetInviteStats, what
    the lottery asked at entry), so the count that let them enter is checked against its list."""
    counters: dict[str, MemberFacts] = {}

    def keep_member(m: Any) -> None:
        user = shared.id(m.user_id)
        counters[user] = MemberFacts(user_id=user, cards_granted=m.cards_granted, invites_made=m.invites_made)

    await _each(
        reader, cards.ListCampaignMembers,
        lambda t: card_service_pb2.ListCampaignMembersRequest(campaign_id=cid, page_size=1000, page_token=t), "members", keep_member,
    )
    made: dict[str, list[InviteFacts]] = {}
    await _each(
        reader, cards.ListCampaignInvites,
        lambda t: card_service_pb2.ListCampaignInvitesRequest(campaign_id=cid, page_size=1000, page_token=t), "invites",
        lambda i: made.setdefault(shared.id(i.inviter_user_id), []).append(_invite_facts(i, shared)),
    )
    users = set(counters)
    users.update(c.user_id for c in facts.cards if c.campaign_id == cid)
    users.update(o.user_id for o in facts.orders if o.campaign_id == cid)
    users.update(made)
    entrants = {u for d in facts.draws if d.campaign_id == cid for u in d.entrants}
    users |= entrants
    # As many workers as the reader lets calls through: more would only wait at its gate.
    stats = await map_bounded(lambda u: _invite_stats(reader, cards, cid, u), sorted(entrants), workers=reader.concurrency)
    asked = {s.user_id: s for s in stats}
    ordered = sorted(users)
    del users
    # Users with no invites stay in: an INVITER card without an invite is a finding too.
    facts.inviters[cid] = [asked.get(u) or _inviter(u, made.pop(u, ())) for u in ordered]
    del made
    facts.members[cid] = [counters.get(u) or MemberFacts(user_id=u, cards_granted=0, invites_made=0) for u in ordered]


def _inviter(user_id: str, invites: Any) -> InviterFacts:
    listed = tuple(invites)  # () for most users: one shared empty tuple
    return InviterFacts(user_id=user_id, invited_count=len(listed), invites=listed)


def _invite_facts(i: Any, shared: Shared = _UNSHARED) -> InviteFacts:
    return InviteFacts(
        inviter_user_id=shared.id(i.inviter_user_id),
        invitee_user_id=shared.id(i.invitee_user_id),
        inviter_rewarded=i.inviter_rewarded,
        invitee_rewarded=i.invitee_rewarded,
        accept_time_ms=_ms(i.accept_time),
    )


async def _invite_stats(reader: _Reader, cards: Any, campaign_id: str, user_id: str) -> InviterFacts:
    invites: list[Any] = []
    token = ""
    tokens = _Tokens(cards.GetInviteStats)
    count = 0
    while True:
        reply = await reader.call(
            cards.GetInviteStats,
            card_service_pb2.GetInviteStatsRequest(campaign_id=campaign_id, user_id=user_id, page_size=100, page_token=token),
        )
        count = reply.invited_count
        invites.extend(reply.invites)
        token = tokens.next(reply.next_page_token)
        if not token:
            break
    return InviterFacts(
        user_id=user_id,
        invited_count=count,
        invites=tuple(_invite_facts(i) for i in invites),
    )


async def _flag_winners(reader: _Reader, lottery: Any, facts: AuditFacts) -> None:
    """Each drawn day's entrants told they won, as their entries say (what ListMyEntries tells
    each user): one ListDrawEntries(won_only) listing per day, not one call per entrant."""

    async def flagged(d: DrawFacts) -> DrawFacts:
        if d.status != "DRAWN":
            return d
        entries = await _pages(
            reader, lottery.ListDrawEntries,
            lambda t: lottery_service_pb2.ListDrawEntriesRequest(
                campaign_id=d.campaign_id, day=d.day, won_only=True, page_size=1000, page_token=t
            ),
            "entries",
        )
        return dataclasses.replace(d, flagged_winners=tuple(sorted(e.user_id for e in entries if e.won)))

    facts.draws = await map_bounded(flagged, facts.draws, workers=reader.concurrency)


async def _draw(reader: _Reader, lottery: Any, draw: Any) -> DrawFacts:
    status = _suffix(_DRAW_STATUS, draw.status, "DRAW_STATUS_")
    base = dict(
        campaign_id=draw.campaign_id,
        day=draw.day,
        status=status,
        winner_count=draw.winner_count,
        winners=tuple(draw.winners),
        commitment=draw.commitment,
        seed=draw.seed,
        beacon_value=draw.beacon_value,
        entrant_count=draw.entrant_count,
        cutoff_ms=_ms(draw.cutoff_time) if draw.HasField("cutoff_time") else 0,
    )
    if status != "DRAWN":
        return DrawFacts(**base)
    entrants: list[str] = []
    token = ""
    tokens = _Tokens(lottery.VerifyDraw)
    first = None
    while True:
        reply = await reader.call(
            lottery.VerifyDraw,
            lottery_service_pb2.VerifyDrawRequest(campaign_id=draw.campaign_id, day=draw.day, page_size=10_000, page_token=token),
        )
        first = first or reply
        entrants.extend(reply.entrants)
        token = tokens.next(reply.next_page_token)
        if not token:
            break
    base.update(
        seed=first.seed,
        commitment=first.commitment or draw.commitment,
        beacon_value=first.beacon_value,
        entrants=tuple(entrants),
        entrants_hash=first.entrants_hash,
        entrant_count=first.entrant_count,
        verify_winners=tuple(first.winners),
        algorithm=first.algorithm,
        algorithm_version=first.algorithm_version,
    )
    return DrawFacts(**base)
