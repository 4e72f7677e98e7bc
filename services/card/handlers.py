"""Use cases of the card service: validate input, resolve the campaign, one store call each."""
from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Iterable, Sequence, TypeVar

from services.common.clock import Clock, now_ms
from services.common.decimal_text import ascii_int
from services.common.errors import InvalidArgument

from . import invite_code as codes
from .model import (
    Campaign,
    Card,
    CardState,
    Reservation,
    Rules,
    campaign_not_found,
    card_not_found,
    check_amount,
    check_batch_size,
    check_budget_fen,
    check_campaign_id,
    check_id,
    check_ttl,
    cards_obtainable,
    new_campaign,
    offers_cards,
    page_size,
    redeem_not_covered,
    with_budget,
)
from .store import (
    AcceptResult,
    BudgetData,
    BudgetSet,
    CardStore,
    Hold,
    Invite,
    JoinResult,
    LedgerRow,
    Member,
    RefundResult,
    ReserveCall,
)

log = logging.getLogger("miandan.card")
T = TypeVar("T")


@dataclass(frozen=True)
class ReserveEntry:
    """One entry of a batched reservation: exactly the arguments of CardHandlers.reserve."""

    request_id: str
    campaign_id: str
    user_id: str
    order_id: str
    amount_fen: int
    card_id: str
    ttl_seconds: int
    redeem: bool = False


@dataclass(frozen=True)
class WalletView:
    campaign: Campaign
    user_id: str
    cards: list[Card]  # as they are now
    cards_granted: int
    invites_made: int
    invite_code: str
    invited_by: str
    # What the campaign can still give now (model.cards_obtainable / model.offers_cards): a
    # wallet shows, and its pass-phrase promises, only cards that a grant would not refuse.
    cards_obtainable: int
    offers_card: bool


# First part of a ListReservations page token.
_RESERVATIONS_TOKEN = "R"
# Tokens of the audit listings name their listing: a members token passed to the invites
# listing (both are keyed by a user id) is refused instead of starting mid-way.
_MEMBERS_TOKEN, _INVITES_TOKEN = "M", "I"
_CAMPAIGNS_TOKEN, _USER_CARDS_TOKEN, _INVITE_STATS_TOKEN, _CAMPAIGN_CARDS_TOKEN = "C", "K", "V", "A"


def _encode_token(*parts: object) -> str:
    return base64.urlsafe_b64encode("\x1f".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _bad_token() -> InvalidArgument:
    return InvalidArgument("page_token", "not a token returned by this service", reason="INVALID_PAGE_TOKEN")


def _decode_token(token: str, arity: int) -> list[str]:
    try:
        # validate=True: the lenient decoder drops characters outside the alphabet, so "!!"
        # read as an empty token, i.e. the first page again, instead of a bad token.
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise _bad_token() from None
    parts = raw.split("\x1f")
    if len(parts) != arity or parts == [""]:
        raise _bad_token()
    return parts


def _tagged_parts(token: str, tag: str, arity: int, *, untagged_too: bool = False) -> list[str] | None:
    """The position a listing's page token continues after (None: the first page). The tag
    names the listing, since several share a shape ((ms, id) of ListCards and GetInviteStats; one
    id of ListCampaigns and ListCampaignCards): another listing's token is refused, not read as
    a position in this one. untagged_too: the listing's tokens carried no tag before, and one
    handed out then still pages on (a client paging across an upgrade)."""
    if not token:
        return None
    if untagged_too:
        for shape in (arity + 1, arity):
            try:
                parts = _decode_token(token, shape)
            except InvalidArgument:
                continue
            if shape == arity:
                return parts
            if parts[0] == tag:
                return parts[1:]
        raise _bad_token()
    parts = _decode_token(token, arity + 1)
    if parts[0] != tag:
        raise _bad_token()
    return parts[1:]


def _tagged_after(token: str, tag: str) -> str:
    """The key a listing's page token continues after ("" for the first page)."""
    parts = _tagged_parts(token, tag, 1)
    if parts is None:
        return ""
    if not parts[0]:
        raise _bad_token()
    return parts[0]


def _token_ms(text: str, negative: bool = True) -> int:
    ms = ascii_int(text, negative=negative)
    if ms is None:
        raise _bad_token()
    return ms


class CardHandlers:
    def __init__(
        self, store: CardStore, clock: Clock, *, on_budget_set: Callable[[str, BudgetData], None] | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        # Told each budget this process set, with the campaign's figures as of the change: what
        # keeps its own copy of a budget (the campaign gauges) shows the new one from the answer on.
        self.on_budget_set = on_budget_set

    def now(self) -> int:
        return now_ms(self.clock)

    async def campaign(self, campaign_id: str) -> Campaign:
        check_campaign_id(campaign_id)
        found = await self.store.get_campaign(campaign_id)
        if found is None:
            raise campaign_not_found(campaign_id)
        return found

    # --- campaigns ---------------------------------------------------------------------------

    async def create_campaign(
        self, request_id: str, campaign_id: str, name: str, start_ms: int | None, end_ms: int | None, rules: Rules
    ) -> Campaign:
        check_id(request_id, "request_id", required=False)
        campaign = new_campaign(campaign_id, name, start_ms, end_ms, rules, self.now(), secrets.token_bytes(32))
        return await self.store.create_campaign(campaign, request_id)

    async def set_budget(self, request_id: str, campaign_id: str, budget_fen: int, stop_issuing: bool = False) -> BudgetSet:
        check_id(request_id, "request_id", required=False)
        check_budget_fen(budget_fen, stop_issuing)
        c = await self.campaign(campaign_id)
        result = await self.store.set_budget(c.campaign_id, budget_fen, request_id, self.now(), stop_issuing)
        if self.on_budget_set is not None:
            self.on_budget_set(c.campaign_id, result.budget)
        return result

    async def list_campaigns(self, size: int, token: str) -> tuple[list[Campaign], str]:
        limit = page_size(size, 50, 100)
        after = (_tagged_parts(token, _CAMPAIGNS_TOKEN, 1, untagged_too=True) or [""])[0]
        found = await self.store.list_campaigns(after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return found, _encode_token(_CAMPAIGNS_TOKEN, found[-1].campaign_id) if more else ""

    # --- cards -------------------------------------------------------------------------------

    async def claim_signup(self, request_id: str, campaign_id: str, user_id: str) -> tuple[list[Card], bool]:
        check_id(request_id, "request_id", required=False)
        check_id(user_id, "user_id")
        c = await self.campaign(campaign_id)
        now = self.now()
        cards, newly = await self.store.claim_signup(c, user_id, request_id, now)
        return [card.at(now) for card in cards], newly

    async def invite_code(self, campaign_id: str, user_id: str) -> tuple[Campaign, str, bool]:
        """The campaign, the user's code, and whether its pass-phrase may promise a card."""
        check_id(user_id, "user_id")
        c = await self.campaign(campaign_id)
        code = await self.store.invite_code(c, user_id)
        now = self.now()
        # Outside the window nothing is offered whatever the budget: no need to read it. Inside,
        # the budget is read with what was issued (it may have been set since c was cached).
        offers = False
        if c.is_active(now):
            budget, issued = await self.store.budget_and_issued(c.campaign_id)
            offers = offers_cards(with_budget(c, budget), issued, now)
        return c, code, offers

    async def accept_invite(self, request_id: str, campaign_id: str, invitee: str, text: str) -> AcceptResult:
        check_id(request_id, "request_id", required=False)
        check_id(invitee, "invitee_user_id")
        candidates = codes.extract_codes(text)
        c = await self.campaign(campaign_id)
        now = self.now()
        result = await self.store.accept_invite(c, invitee, candidates, request_id, now)
        return AcceptResult(result.invite, [card.at(now) for card in result.invitee_cards], result.newly_accepted)

    async def join_by_invite(
        self, request_id: str, signup_request_id: str, campaign_id: str, invitee: str, text: str
    ) -> JoinResult:
        """AcceptInvite with claim_signup: the invitee's sign-up claim and the invite in one
        store transaction (see store._join_by_invite). Input is checked as the two calls check
        it, so a bad field fails the same way."""
        check_id(request_id, "request_id", required=False)
        check_id(signup_request_id, "signup_request_id", required=False)
        check_id(invitee, "invitee_user_id")
        candidates = codes.extract_codes(text)
        c = await self.campaign(campaign_id)
        now = self.now()
        joined = await self.store.join_by_invite(c, invitee, candidates, request_id, signup_request_id, now)
        accepted = joined.accepted
        return JoinResult(
            AcceptResult(accepted.invite, [card.at(now) for card in accepted.invitee_cards], accepted.newly_accepted),
            [card.at(now) for card in joined.signup_cards],
            joined.newly_granted,
        )

    async def list_cards(self, campaign_id: str, user_id: str, state: int, size: int, token: str) -> tuple[list[Card], str]:
        check_id(user_id, "user_id")
        limit = page_size(size, 50, 100)
        state = _check_state(state)
        after: tuple[int, str] | None = None
        position = _tagged_parts(token, _USER_CARDS_TOKEN, 2, untagged_too=True)
        if position is not None:
            ms, card_id = position
            after = (_token_ms(ms), card_id)
        c = await self.campaign(campaign_id)
        now = self.now()
        cards = [card.at(now) for card in await self.store.user_cards(c.campaign_id, user_id)]
        if state:
            cards = [card for card in cards if card.state == state]
        if after is not None:
            cards = [card for card in cards if (card.expire_ms, card.card_id) > after]
        page = cards[:limit]
        more = len(cards) > limit
        return page, _encode_token(_USER_CARDS_TOKEN, page[-1].expire_ms, page[-1].card_id) if more else ""

    async def wallet(self, campaign_id: str, user_id: str) -> WalletView:
        check_id(user_id, "user_id")
        c = await self.campaign(campaign_id)
        now = self.now()
        data = await self.store.wallet(c, user_id)
        c = with_budget(c, data.budget_fen)  # as read with the wallet: a cached one may be older
        return WalletView(
            c, user_id, [card.at(now) for card in data.cards], data.cards_granted, data.invites_made,
            data.invite_code or "", data.invited_by,
            cards_obtainable(c, data.cards_granted, data.issued_fen, now), offers_cards(c, data.issued_fen, now),
        )

    # --- reservations ------------------------------------------------------------------------

    async def reserve(
        self, request_id: str, campaign_id: str, user_id: str, order_id: str, amount_fen: int, card_id: str,
        ttl_seconds: int, redeem: bool = False,
    ) -> Hold:
        e = ReserveEntry(request_id, campaign_id, user_id, order_id, amount_fen, card_id, ttl_seconds, redeem)
        _check_reserve_input(e)
        c = await self.campaign(campaign_id)
        now = self.now()
        return _hold_at(await self.store.reserve(*_reserve_call(e, c, now)), now)

    async def reserve_batch(self, request_id: str, entries: Sequence[ReserveEntry]) -> list[Hold | BaseException]:
        """Each entry as `reserve` would answer it, in order: its Hold, or the exception raised
        for it alone. The checks are reserve's own (the same sync functions, in the same order);
        each distinct campaign is looked up once and all store writes are queued at once with
        store.reserve_many, so they share one group-commit transaction (each in its own
        savepoint: a failing entry rolls back only itself) and the loop thread pays no Task or
        coroutine chain per entry."""
        check_id(request_id, "request_id", required=False)
        check_batch_size(len(entries))
        outcomes: list[Hold | BaseException] = [_NOT_YET] * len(entries)
        checked: list[int] = []
        for i, e in enumerate(entries):
            try:
                _check_reserve_input(e)
            except Exception as exc:  # what reserve() would raise for this entry alone
                outcomes[i] = exc
            else:
                checked.append(i)
        campaigns = await self._campaigns(dict.fromkeys(entries[i].campaign_id for i in checked))
        now = self.now()
        calls: list[ReserveCall] = []
        slots: list[int] = []
        for i in checked:
            e = entries[i]
            c = campaigns[e.campaign_id]
            if isinstance(c, Exception):  # the lookup error belongs to every entry of that campaign
                outcomes[i] = c
                continue
            try:
                calls.append(_reserve_call(e, c, now))
            except Exception as exc:
                outcomes[i] = exc
            else:
                slots.append(i)
        if calls:
            for i, outcome in zip(slots, await self.store.reserve_many(calls)):
                outcomes[i] = _hold_at(outcome, now) if isinstance(outcome, Hold) else outcome
        return outcomes

    async def _campaigns(self, campaign_ids: Iterable[str]) -> dict[str, Campaign | Exception]:
        """Each campaign once, or the exception its lookup raised (as campaign() raises it)."""
        found: dict[str, Campaign | Exception] = {}
        for campaign_id in campaign_ids:
            try:
                found[campaign_id] = await self.campaign(campaign_id)
            except Exception as exc:
                found[campaign_id] = exc
        return found

    async def confirm(self, request_id: str, order_id: str) -> Hold:
        check_id(request_id, "request_id", required=False)
        check_id(order_id, "order_id")
        now = self.now()
        return _hold_at(await self.store.confirm(order_id, request_id, now), now)

    async def release(self, request_id: str, order_id: str) -> Hold:
        check_id(request_id, "request_id", required=False)
        check_id(order_id, "order_id")
        now = self.now()
        return _hold_at(await self.store.release(order_id, request_id, now), now)

    async def refund(self, request_id: str, order_id: str) -> RefundResult:
        check_id(request_id, "request_id", required=False)
        check_id(order_id, "order_id")
        now = self.now()
        r = await self.store.refund(order_id, request_id, now)
        return replace(r, reservation=r.reservation.at(now), card=r.card.at(now))

    async def list_reservations(
        self, created_after_ms: int | None, size: int, token: str
    ) -> tuple[list[Reservation], str]:
        """Every reservation created at or after created_after_ms (None: all), oldest first.
        A token carries the whole position, so created_after is ignored with one (the proto's
        contract): the last page's (create_ms, order_id) is where the next one starts."""
        limit = page_size(size, 500, 1000)
        after: tuple[int, str] | None = None
        position = _tagged_parts(token, _RESERVATIONS_TOKEN, 2)
        if position is not None:
            ms, order_id = position
            after = (_token_ms(ms), order_id)
        low = created_after_ms if created_after_ms is not None and after is None else -(2**62)
        found = await self.store.list_reservations(low, after, limit + 1)
        more = len(found) > limit
        page = found[:limit]
        now = self.now()
        next_token = _encode_token(_RESERVATIONS_TOKEN, page[-1].create_ms, page[-1].order_id) if more else ""
        return [r.at(now) for r in page], next_token

    # --- reports -----------------------------------------------------------------------------

    async def invite_stats(
        self, campaign_id: str, user_id: str, size: int, token: str, before_ms: int | None
    ) -> tuple[Campaign, int, list[Invite], str]:
        check_id(user_id, "user_id")
        limit = page_size(size, 50, 100)
        after: tuple[int, str] | None = None
        position = _tagged_parts(token, _INVITE_STATS_TOKEN, 2, untagged_too=True)
        if position is not None:
            ms, invitee = position
            after = (_token_ms(ms, negative=False), invitee)
        c = await self.campaign(campaign_id)
        count, invites = await self.store.invite_stats(c.campaign_id, user_id, before_ms, after, limit + 1)
        more = len(invites) > limit
        invites = invites[:limit]
        next_token = _encode_token(_INVITE_STATS_TOKEN, invites[-1].accept_ms, invites[-1].invitee_user_id) if more else ""
        return c, count, invites, next_token

    async def budget(self, campaign_id: str) -> tuple[Campaign, BudgetData]:
        c = await self.campaign(campaign_id)
        return c, await self.store.budget(c, self.now())

    async def campaign_cards(self, campaign_id: str, state: int, size: int, token: str) -> tuple[list[Card], str]:
        limit = page_size(size, 500, 1000)
        state = _check_state(state)
        after = (_tagged_parts(token, _CAMPAIGN_CARDS_TOKEN, 1, untagged_too=True) or [""])[0]
        c = await self.campaign(campaign_id)
        now = self.now()
        cards = await self.store.campaign_cards(c.campaign_id, state, after, limit + 1, now)
        more = len(cards) > limit
        cards = cards[:limit]
        return [card.at(now) for card in cards], _encode_token(_CAMPAIGN_CARDS_TOKEN, cards[-1].card_id) if more else ""

    async def campaign_members(self, campaign_id: str, size: int, token: str) -> tuple[list[Member], str]:
        return await self._campaign_listing(campaign_id, size, token, _MEMBERS_TOKEN, self.store.campaign_members, lambda m: m.user_id)

    async def campaign_invites(self, campaign_id: str, size: int, token: str) -> tuple[list[Invite], str]:
        return await self._campaign_listing(
            campaign_id, size, token, _INVITES_TOKEN, self.store.campaign_invites, lambda i: i.invitee_user_id
        )

    async def _campaign_listing(
        self, campaign_id: str, size: int, token: str, tag: str,
        fetch: Callable[[str, str, int], Awaitable[list[T]]], key: Callable[[T], str],
    ) -> tuple[list[T], str]:
        """One page of a campaign-wide listing keyed by a user id (keyset: rows added behind the
        cursor while an audit pages are neither repeated nor skipped)."""
        limit = page_size(size, 500, 1000)
        after = _tagged_after(token, tag)
        c = await self.campaign(campaign_id)
        rows = await fetch(c.campaign_id, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, _encode_token(tag, key(rows[-1])) if more else ""

    async def card_history(self, card_id: str) -> tuple[Card, list[LedgerRow]]:
        check_id(card_id, "card_id")
        found = await self.store.card_history(card_id)
        if found is None:
            raise card_not_found()
        card, rows = found
        return card.at(self.now()), rows

    # --- background --------------------------------------------------------------------------

    async def sweep_forever(self, interval_s: float, batch: int = 500) -> None:
        """Release lapsed holds and expire cards even for users nobody reads (the reads and
        writes already look through them; this makes the stored state and ledger catch up)."""
        while True:
            try:
                # Full batches are drained at once (request ids too: a busy week of joins records
                # more than one batch a pass), up to SWEEP_BATCHES_PER_PASS: a backlog waits for the
                # next pass rather than queueing reservations behind back-to-back deletes.
                for _ in range(SWEEP_BATCHES_PER_PASS):
                    counts = await self.store.sweep(self.now(), batch)
                    if max(counts.released, counts.expired, counts.forgotten, counts.attempts_forgotten) < batch:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed sweep must not kill the service; the next one retries
                log.exception("card sweep failed")
            await asyncio.sleep(interval_s)


# Batches one sweep pass takes at most (500 rows each by default).
SWEEP_BATCHES_PER_PASS = 20


def _hold_at(hold: Hold, now: int) -> Hold:
    """A store answer with its card and reservation as they are at `now`, as every read shows
    them (Card.at, Reservation.at): a replay, or the card of an order released or refunded
    earlier, is read back as stored, which lags the clock for a card past its validity or under
    a lapsed hold, and for a hold whose TTL passed (a late Release or Refund duplicate answered
    it HELD, its card AVAILABLE in the same answer)."""
    card, reservation = hold.card.at(now), hold.reservation.at(now)
    if card is hold.card and reservation is hold.reservation:
        return hold
    return Hold(reservation, card)


# Placeholder in reserve_batch's outcome list until the entry's outcome is known.
_NOT_YET: BaseException = RuntimeError("reserve_batch: entry not answered")


def _check_reserve_input(e: ReserveEntry) -> None:
    """The checks of a reservation that need no campaign, in the order reserve() reports them."""
    check_id(e.request_id, "request_id", required=False)
    check_id(e.user_id, "user_id")
    check_id(e.order_id, "order_id")
    check_id(e.card_id, "card_id", required=False)
    check_amount(e.amount_fen)
    check_ttl(e.ttl_seconds)


def _reserve_call(e: ReserveEntry, c: Campaign, now: int) -> ReserveCall:
    """The rest of reserve()'s rules, once the campaign is known: the store call to make."""
    if e.redeem and e.amount_fen > c.rules.card_face_value_fen:
        # Every card of a campaign has its face value: refused before the store is touched.
        raise redeem_not_covered()
    ttl = e.ttl_seconds or c.rules.reservation_ttl_seconds
    return ReserveCall(c, e.user_id, e.order_id, e.amount_fen, e.card_id, ttl, e.request_id, now, e.redeem)


def _check_state(state: int) -> int:
    if state and state not in tuple(CardState):
        raise InvalidArgument("state", "unknown card state")
    return state
