"""grpc.aio servicer of miandan.card.v1.CardService: proto <-> model, nothing else."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from google.protobuf import timestamp_pb2
from google.rpc import status_pb2
from prometheus_client import Counter

from miandan.card.v1 import card_pb2, card_service_pb2 as pb, card_service_pb2_grpc

from . import invite_code as codes
from services.common.errors import DeadlineExceeded, DomainError, Internal, InvalidArgument, status_proto

from .handlers import CardHandlers, ReserveEntry
from .model import BudgetChange, Campaign, Card, CardState, Reservation, Rules
from .store import BudgetData, Hold, Invite

log = logging.getLogger("miandan.card")
# Entries per batch is this over miandan_rpc_calls_total{method="ReserveCards"}: how much of the
# per-RPC cost batching saves (bench/order.py prints it). Process-wide, like the RPC metrics.
RESERVE_CARDS_ENTRIES = Counter(
    "miandan_card_reserve_cards_entries_total", "Reservations carried by ReserveCards RPCs (all outcomes)"
)

_STATES = tuple(CardState)
# GetWallet's include_available_cards: as many as one ListCards page can hold.
AVAILABLE_CARDS_LIMIT = 100


def _ts(ms: int | None) -> timestamp_pb2.Timestamp | None:
    if ms is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromMilliseconds(ms)
    return t


# google.protobuf.Timestamp's own valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _ms(ts: timestamp_pb2.Timestamp, present: bool, field: str) -> int | None:
    """Milliseconds of a request's Timestamp; one outside the type's range (whose milliseconds
    SQLite could not even store) is the caller's mistake, not ours."""
    if not present:
        return None
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(
            field, "须在 0001-01-01 至 9999-12-31 之间 / must be a valid Timestamp (years 1-9999, nanos 0..999,999,999)",
            reason="INVALID_TIMESTAMP",
        )
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def campaign_pb(c: Campaign) -> card_pb2.Campaign:
    r = c.rules
    return card_pb2.Campaign(
        campaign_id=c.campaign_id, name=c.name, start_time=_ts(c.start_ms), end_time=_ts(c.end_ms),
        create_time=_ts(c.create_ms),
        rules=card_pb2.CampaignRules(
            card_face_value_fen=r.card_face_value_fen, per_user_card_cap=r.per_user_card_cap,
            signup_grant=r.signup_grant, inviter_grant=r.inviter_grant, invitee_grant=r.invitee_grant,
            card_validity_days=r.card_validity_days, budget_fen=r.budget_fen,
            lottery_invite_threshold=r.lottery_invite_threshold, reservation_ttl_seconds=r.reservation_ttl_seconds,
            time_zone=r.time_zone,
        ),
    )


def card_pb(c: Card) -> card_pb2.Card:
    msg = card_pb2.Card(
        card_id=c.card_id, campaign_id=c.campaign_id, user_id=c.user_id, state=int(c.state), source=int(c.source),
        face_value_fen=c.face_value_fen, grant_time=_ts(c.grant_ms), expire_time=_ts(c.expire_ms), order_id=c.order_id,
    )
    if c.state == CardState.RESERVED and c.reserved_until_ms is not None:
        msg.reserved_until_time.FromMilliseconds(c.reserved_until_ms)
    return msg


def reservation_pb(r: Reservation) -> card_pb2.Reservation:
    return card_pb2.Reservation(
        order_id=r.order_id, card_id=r.card_id, user_id=r.user_id, state=int(r.state), amount_fen=r.amount_fen,
        covered_fen=r.covered_fen, expire_time=_ts(r.expire_ms), campaign_id=r.campaign_id,
        create_time=_ts(r.create_ms),
    )


def invite_pb(i: Invite) -> card_pb2.Invite:
    return card_pb2.Invite(
        campaign_id=i.campaign_id, inviter_user_id=i.inviter_user_id, invitee_user_id=i.invitee_user_id,
        accept_time=_ts(i.accept_ms), inviter_rewarded=i.inviter_rewarded, invitee_rewarded=i.invitee_rewarded,
    )


def budget_pb(campaign_id: str, b: BudgetData) -> card_pb2.Budget:
    return card_pb2.Budget(
        campaign_id=campaign_id, budget_fen=b.budget_fen, issued_fen=b.issued_fen,
        reserved_fen=b.by_state.get(CardState.RESERVED, 0), redeemed_fen=b.by_state.get(CardState.REDEEMED, 0),
        remaining_fen=b.budget_fen - b.issued_fen, cards_issued=b.cards_issued,
        expired_fen=b.by_state.get(CardState.EXPIRED, 0),
    )


def budget_change_pb(change: BudgetChange) -> card_pb2.BudgetChange:
    return card_pb2.BudgetChange(
        change_time=_ts(change.change_ms), old_budget_fen=change.old_budget_fen, new_budget_fen=change.new_budget_fen,
        issued_fen=change.issued_fen, request_id=change.request_id,
    )


def error_status(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status a unary call would have failed with: built by the kit's own
    status_proto, so a batched entry's error carries the very code, message and details
    (ErrorInfo, BadRequest, RetryInfo) the interceptor would have sent for ReserveCard."""
    if isinstance(exc, DomainError):
        err = exc
    elif isinstance(exc, (asyncio.TimeoutError, asyncio.CancelledError)):
        err = DeadlineExceeded("DEADLINE_EXCEEDED", "处理超时 / deadline exceeded")
    else:
        # A bug, confined to its entry: logged as the interceptor logs one, nothing internal told.
        log.error("unexpected exception in a ReserveCards entry", exc_info=exc)
        err = Internal("INTERNAL", "服务内部错误 / internal error")
    return status_proto(err)


def reserve_card_response(hold: Hold) -> pb.ReserveCardResponse:
    return pb.ReserveCardResponse(reservation=reservation_pb(hold.reservation), card=card_pb(hold.card))


class CardServicer(card_service_pb2_grpc.CardServiceServicer):
    def __init__(self, handlers: CardHandlers) -> None:
        self.h = handlers

    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context: Any) -> pb.CreateCampaignResponse:
        r = request.rules
        rules = Rules(
            r.card_face_value_fen, r.per_user_card_cap, r.signup_grant, r.inviter_grant, r.invitee_grant,
            r.card_validity_days, r.budget_fen, r.lottery_invite_threshold, r.reservation_ttl_seconds, r.time_zone,
        )
        c = await self.h.create_campaign(
            request.request_id, request.campaign_id, request.name,
            _ms(request.start_time, request.HasField("start_time"), "start_time"),
            _ms(request.end_time, request.HasField("end_time"), "end_time"),
            rules,
        )
        return pb.CreateCampaignResponse(campaign=campaign_pb(c))

    async def SetCampaignBudget(self, request: pb.SetCampaignBudgetRequest, context: Any) -> pb.SetCampaignBudgetResponse:
        done = await self.h.set_budget(request.request_id, request.campaign_id, request.budget_fen, request.stop_issuing)
        b = done.budget
        return pb.SetCampaignBudgetResponse(
            campaign=campaign_pb(done.campaign), budget=budget_pb(done.campaign.campaign_id, b),
            budget_changes=[budget_change_pb(c) for c in b.changes], budget_change_count=b.change_count,
        )

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Any) -> pb.GetCampaignResponse:
        return pb.GetCampaignResponse(campaign=campaign_pb(await self.h.campaign(request.campaign_id)))

    async def ListCampaigns(self, request: pb.ListCampaignsRequest, context: Any) -> pb.ListCampaignsResponse:
        found, token = await self.h.list_campaigns(request.page_size, request.page_token)
        return pb.ListCampaignsResponse(campaigns=[campaign_pb(c) for c in found], next_page_token=token)

    async def ClaimSignupCard(self, request: pb.ClaimSignupCardRequest, context: Any) -> pb.ClaimSignupCardResponse:
        cards, newly = await self.h.claim_signup(request.request_id, request.campaign_id, request.user_id)
        return pb.ClaimSignupCardResponse(
            cards=[card_pb(c) for c in cards], newly_granted=newly,
            wallet=await self._wallet(request.campaign_id, request.user_id, True) if request.include_wallet else None,
        )

    async def GetInviteCode(self, request: pb.GetInviteCodeRequest, context: Any) -> pb.GetInviteCodeResponse:
        c, code, offers_card = await self.h.invite_code(request.campaign_id, request.user_id)
        return pb.GetInviteCodeResponse(
            invite_code=card_pb2.InviteCode(
                campaign_id=c.campaign_id, user_id=request.user_id, code=code,
                pass_phrase_text=codes.pass_phrase(code, c.rules.card_face_value_fen, offers_card=offers_card),
            )
        )

    async def AcceptInvite(self, request: pb.AcceptInviteRequest, context: Any) -> pb.AcceptInviteResponse:
        signup_claim = None
        if request.claim_signup:
            joined = await self.h.join_by_invite(
                request.request_id, request.signup_request_id, request.campaign_id, request.invitee_user_id,
                request.text,
            )
            result = joined.accepted
            signup_claim = pb.SignupClaim(
                cards=[card_pb(c) for c in joined.signup_cards], newly_granted=joined.newly_granted
            )
        else:
            result = await self.h.accept_invite(
                request.request_id, request.campaign_id, request.invitee_user_id, request.text
            )
        i = result.invite
        return pb.AcceptInviteResponse(
            invite=invite_pb(i), invitee_cards=[card_pb(c) for c in result.invitee_cards],
            inviter_not_rewarded_reason=i.inviter_reason, invitee_not_rewarded_reason=i.invitee_reason,
            newly_accepted=result.newly_accepted,
            wallet=await self._wallet(request.campaign_id, request.invitee_user_id, True)
            if request.include_wallet else None,
            signup_claim=signup_claim,
        )

    async def ListCards(self, request: pb.ListCardsRequest, context: Any) -> pb.ListCardsResponse:
        cards, token = await self.h.list_cards(
            request.campaign_id, request.user_id, request.state, request.page_size, request.page_token
        )
        return pb.ListCardsResponse(cards=[card_pb(c) for c in cards], next_page_token=token)

    async def GetWallet(self, request: pb.GetWalletRequest, context: Any) -> pb.GetWalletResponse:
        return await self._wallet(request.campaign_id, request.user_id, request.include_available_cards)

    async def _wallet(self, campaign_id: str, user_id: str, include_available_cards: bool) -> pb.GetWalletResponse:
        """GetWallet's answer. Also what a write asked for include_wallet returns: called after
        the write's handler returned, i.e. after its commit, so the read sees the new cards."""
        w = await self.h.wallet(campaign_id, user_id)
        rules = w.campaign.rules
        totals = []
        for state in _STATES:
            in_state = [c for c in w.cards if c.state == state]
            totals.append(card_pb2.StateTotal(
                state=int(state), count=len(in_state), value_fen=sum(c.face_value_fen for c in in_state)
            ))
        spendable = sum(c.face_value_fen for c in w.cards if c.state == CardState.AVAILABLE)
        return pb.GetWalletResponse(
            wallet=card_pb2.Wallet(
                campaign_id=w.campaign.campaign_id, user_id=w.user_id, totals=totals, cards_granted=w.cards_granted,
                spendable_fen=spendable, invite_code=w.invite_code,
                pass_phrase_text=codes.pass_phrase(
                    w.invite_code, rules.card_face_value_fen, offers_card=w.offers_card
                ) if w.invite_code else "",
                invites_made=w.invites_made,
                cards_obtainable=w.cards_obtainable, card_cap=rules.per_user_card_cap,
                lottery_progress=w.invites_made, lottery_threshold=rules.lottery_invite_threshold,
                lottery_qualified=w.invites_made >= rules.lottery_invite_threshold, invited_by_user_id=w.invited_by,
            ),
            available_cards=[
                card_pb(c) for c in w.cards if c.state == CardState.AVAILABLE
            ][:AVAILABLE_CARDS_LIMIT] if include_available_cards else (),
        )

    async def ReserveCard(self, request: pb.ReserveCardRequest, context: Any) -> pb.ReserveCardResponse:
        hold = await self.h.reserve(
            request.request_id, request.campaign_id, request.user_id, request.order_id, request.amount_fen,
            request.card_id, request.ttl_seconds, request.redeem,
        )
        return reserve_card_response(hold)

    async def ReserveCards(self, request: pb.ReserveCardsRequest, context: Any) -> pb.ReserveCardsResponse:
        outcomes = await self.h.reserve_batch(
            request.request_id,
            [
                ReserveEntry(
                    r.request_id, r.campaign_id, r.user_id, r.order_id, r.amount_fen, r.card_id, r.ttl_seconds, r.redeem
                )
                for r in request.reservations
            ],
        )
        RESERVE_CARDS_ENTRIES.inc(len(outcomes))
        return pb.ReserveCardsResponse(
            results=[
                pb.ReserveCardResult(reservation=reserve_card_response(o))
                if isinstance(o, Hold)
                else pb.ReserveCardResult(error=error_status(o))
                for o in outcomes
            ]
        )

    async def ConfirmReservation(self, request: pb.ConfirmReservationRequest, context: Any) -> pb.ConfirmReservationResponse:
        hold = await self.h.confirm(request.request_id, request.order_id)
        return pb.ConfirmReservationResponse(reservation=reservation_pb(hold.reservation), card=card_pb(hold.card))

    async def ReleaseReservation(self, request: pb.ReleaseReservationRequest, context: Any) -> pb.ReleaseReservationResponse:
        hold = await self.h.release(request.request_id, request.order_id)
        return pb.ReleaseReservationResponse(reservation=reservation_pb(hold.reservation), card=card_pb(hold.card))

    async def RefundCard(self, request: pb.RefundCardRequest, context: Any) -> pb.RefundCardResponse:
        r = await self.h.refund(request.request_id, request.order_id)
        return pb.RefundCardResponse(
            reservation=reservation_pb(r.reservation), card=card_pb(r.card), returned=r.returned,
            not_returned_reason=r.not_returned_reason,
        )

    async def ListReservations(self, request: pb.ListReservationsRequest, context: Any) -> pb.ListReservationsResponse:
        found, token = await self.h.list_reservations(
            _ms(request.created_after, request.HasField("created_after"), "created_after"), request.page_size, request.page_token
        )
        return pb.ListReservationsResponse(reservations=[reservation_pb(r) for r in found], next_page_token=token)

    async def GetInviteStats(self, request: pb.GetInviteStatsRequest, context: Any) -> pb.GetInviteStatsResponse:
        before = _ms(request.before_time, request.HasField("before_time"), "before_time")
        c, count, invites, token = await self.h.invite_stats(
            request.campaign_id, request.user_id, request.page_size, request.page_token, before
        )
        threshold = c.rules.lottery_invite_threshold
        return pb.GetInviteStatsResponse(
            invited_count=count, invites=[invite_pb(i) for i in invites], next_page_token=token,
            lottery_threshold=threshold, lottery_qualified=count >= threshold,
        )

    async def GetBudget(self, request: pb.GetBudgetRequest, context: Any) -> pb.GetBudgetResponse:
        c, b = await self.h.budget(request.campaign_id)
        return pb.GetBudgetResponse(
            budget=budget_pb(c.campaign_id, b),
            budget_changes=[budget_change_pb(change) for change in b.changes], budget_change_count=b.change_count,
        )

    async def ListCampaignCards(self, request: pb.ListCampaignCardsRequest, context: Any) -> pb.ListCampaignCardsResponse:
        cards, token = await self.h.campaign_cards(request.campaign_id, request.state, request.page_size, request.page_token)
        return pb.ListCampaignCardsResponse(cards=[card_pb(c) for c in cards], next_page_token=token)

    async def ListCampaignMembers(self, request: pb.ListCampaignMembersRequest, context: Any) -> pb.ListCampaignMembersResponse:
        members, token = await self.h.campaign_members(request.campaign_id, request.page_size, request.page_token)
        return pb.ListCampaignMembersResponse(
            members=[
                pb.CampaignMember(user_id=m.user_id, cards_granted=m.cards_granted, invites_made=m.invites_made)
                for m in members
            ],
            next_page_token=token,
        )

    async def ListCampaignInvites(self, request: pb.ListCampaignInvitesRequest, context: Any) -> pb.ListCampaignInvitesResponse:
        invites, token = await self.h.campaign_invites(request.campaign_id, request.page_size, request.page_token)
        return pb.ListCampaignInvitesResponse(invites=[invite_pb(i) for i in invites], next_page_token=token)

    async def GetCardHistory(self, request: pb.GetCardHistoryRequest, context: Any) -> pb.GetCardHistoryResponse:
        card, rows = await self.h.card_history(request.card_id)
        return pb.GetCardHistoryResponse(
            card=card_pb(card),
            entries=[
                card_pb2.LedgerEntry(
                    sequence=r.sequence, card_id=r.card_id, from_state=r.from_state, to_state=r.to_state,
                    order_id=r.order_id, time=_ts(r.time_ms), cause=r.cause,
                )
                for r in rows
            ],
        )
