"""The gateway's cross-service flows. The rules live in the services; this module only decides
which upstream calls one end-user call makes, runs the independent ones concurrently, and shapes
the answer. The user id is always the token's subject, passed in by the servicer.

Upstream failures are not translated here: an AioRpcError escapes and the kit's CallPipeline
forwards its status with ErrorInfo/RetryInfo (so an upstream OVERLOADED reaches the client as
OVERLOADED). Exceptions to that rule are written down where they happen (Join's invite problem,
the lottery part of the wallet).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Hashable, NoReturn, Sequence, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc

from miandan.card.v1 import card_pb2, card_service_pb2
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_pb2, gateway_service_pb2
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2
from miandan.order.v1 import order_pb2, order_service_pb2
from services.common.auth import refuses_our_credential
from services.common.clock import Clock, SystemClock, to_ms
from services.common.deadline import DEADLINE_PASSED
from services.common.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, error_details

from .clients import CallOptions
from .draw_verification import DrawCheck, check_draw
from .preview import PreviewRecord, PreviewStore

__all__ = ["Gateway", "gather_all", "scoped_request_id"]

log = logging.getLogger("miandan.gateway")

_Code = grpc.StatusCode
# AcceptInvite failures that are about the pass-phrase, not about the join: the user still joins
# and is told why the invite did not count.
_INVITE_PROBLEM_CODES = (
    _Code.FAILED_PRECONDITION,
    _Code.NOT_FOUND,
    _Code.ALREADY_EXISTS,
    _Code.RESOURCE_EXHAUSTED,
    _Code.PERMISSION_DENIED,
)
# Upstream failures after which a write may have been done all the same: its answer was lost.
# CANCELLED is a stopping upstream dropping a call in progress (clients.is_transport_failure).
_ANSWER_MAYBE_LOST_CODES = (_Code.UNAVAILABLE, _Code.DEADLINE_EXCEEDED, _Code.CANCELLED)
# Lottery failures after which the wallet is still worth showing (degraded lottery standing);
# CANCELLED is the lottery's gRPC core turning the call away (clients.is_transport_failure).
_LOTTERY_DEGRADE_CODES = (_Code.UNAVAILABLE, _Code.DEADLINE_EXCEEDED, _Code.NOT_FOUND, _Code.CANCELLED)


def _lottery_degrades(err: grpc.aio.AioRpcError) -> bool:
    """Whether a wallet is still shown without its lottery part after this lottery failure: the
    lottery down or slow, or refusing our own credential (a token rotation half done), which the
    user can do nothing about and which would otherwise fail the whole wallet."""
    return err.code() in _LOTTERY_DEGRADE_CODES or refuses_our_credential(err)
# Card failures after which a preview is still worth showing, without its card part: the lookup
# only tells the user what a confirm would cost, and the confirm picks (or refuses) the card
# itself. CANCELLED is the card service's gRPC core turning the call away; DEADLINE_EXCEEDED is
# the lookup's own short deadline (PREVIEW_CARD_WAIT_S) passing on a card service that answers
# nothing in time.
_CARD_PREVIEW_DEGRADE_CODES = (_Code.UNAVAILABLE, _Code.CANCELLED, _Code.DEADLINE_EXCEEDED)


def _card_preview_degrades(err: grpc.aio.AioRpcError) -> bool:
    """Whether a preview is still shown without its card part after this card failure: the card
    service down, frozen or refusing our own credential (a token rotation half done, as for the
    wallet's lottery part): it could not be asked, which the user can do nothing about."""
    return err.code() in _CARD_PREVIEW_DEGRADE_CODES or refuses_our_credential(err)


MAX_TEXT_CHARS = 500
# Below this confidence the catalog's reading is a guess among several (拿铁: one latte of four,
# 0.51); a phrase that names a category and gets its usual item (来杯咖啡 -> 标准美式) scores 0.70.
# Confirming straight from text places the order with no screen in between, so a guess is
# shown back for a confirm by preview_id instead of being bought.
MIN_CONFIRM_CONFIDENCE = 0.6
# What a wallet shows but no user changes: the campaign (its time zone decides what "today" is)
# and today's draw summary. Reading them once per wallet was ~1 of every 5 upstream calls of a
# Join or GetWallet; kept here they cost one call per TTL per gateway process instead.
CAMPAIGN_TTL_S = 30.0
# Short: a draw's status and entrant count move during the day, and the wallet only uses its day.
DRAW_TTL_S = 3.0
# How long the lottery half of a wallet (today's draw, the user's entry) may wait: at most this,
# and at most this share of the time the caller has left. Why not the caller's whole deadline: a
# frozen or stalled lottery (kill -STOP, a disk stall) answers nothing, and its calls then ran the
# end user's deadline out: every Join and GetWallet took the whole deadline, and a qualified
# user's (whose entry is read after the draw) failed DEADLINE_EXCEEDED instead of being shown
# without lottery standing. An answering lottery takes milliseconds.
LOTTERY_STANDING_WAIT_S = 1.0
LOTTERY_STANDING_SHARE = 0.5
# Likewise for a preview's card lookup, which runs beside the catalog's reading of the sentence:
# a frozen or stalled card service held every preview for the caller's whole deadline and failed
# it DEADLINE_EXCEEDED, where a card service that is down shows the preview without its card part.
PREVIEW_CARD_WAIT_S = 1.0
PREVIEW_CARD_SHARE = 0.5
# The most a read shared by every caller who asks at once (the campaign) may take; each caller
# waits for it at most until its own deadline, and it is given up once none waits any more.
SHARED_READ_S = 5.0
# Likewise for a drawn day's check (paging every entrant, then recomputing the draw): at 20:00 a
# crowd waits on one check, and whoever keeps waiting keeps it going.
SHARED_CHECK_S = 120.0
# Drawn days checked at once per gateway process. Why: each check holds every entrant of its day
# (up to millions) and recomputes the draw on a worker thread; checks of one day are shared, but
# one account asking for twenty past days at once (its burst) ran twenty together. The rest wait
# their turn, each caller within its own deadline.
CONCURRENT_DRAW_CHECKS = 2
# How much of the time a GetDrawResults caller has left it waits for the day's check. Why not all
# of it: the draw (its winners, whether the caller won) is in hand after one GetDraw, and the
# check of a popular day takes seconds (a million entrants paged, then the draw recomputed) at
# 20:00, when the lottery is at its busiest; waited for to the end, "did I win?" was answered
# DEADLINE_EXCEEDED. The results are shown unverified instead, and the check goes on.
DRAW_CHECK_SHARE = 0.5
CHECK_RUNNING_NOTE = "正在验证，请稍后再查 / being verified; ask again shortly to see the check"
CHECK_UNAVAILABLE_NOTE = "暂时无法验证，请稍后再查 / could not be verified right now; ask again shortly"
VERIFY_PAGE_SIZE = 10_000
VERIFY_MAX_PAGES = 200  # 2,000,000 entrants: more than any day will have
VERIFIED_TTL_S = 7 * 86_400.0  # a drawn day's verification does not change
# How far back a confirm from text looks for the order its request_id placed: a retry comes
# within minutes, when that order is among the user's newest.
RECENT_ORDERS = 50


def _refuses_the_invite(err: grpc.aio.AioRpcError) -> bool:
    """AcceptInvite failed on the pass-phrase or the invite itself (the user still joins), not
    on overload, a deadline or an outage (which the caller must see and retry)."""
    return err.code() == _Code.INVALID_ARGUMENT or err.code() in _INVITE_PROBLEM_CODES


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """asyncio.gather that cancels the siblings when one fails: a wallet whose card half failed
    must not leave its lottery half running against a deadline nobody waits for."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _deadline_passed() -> DeadlineExceeded:
    return DeadlineExceeded(DEADLINE_PASSED, "调用方已超时 / the caller's deadline has passed")


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TimedCache(Generic[K, V]):
    """Values kept for `ttl_s` seconds of the injected clock, fetched once however many calls
    miss at the same instant: the first caller's fetch is shared (with its deadline); a failed
    fetch is not kept and every waiter sees its error; the fetch is cancelled only when every
    waiter has gone (so a wallet whose card half failed leaves no lottery call running)."""

    def __init__(self, ttl_s: float, clock: Clock, max_entries: int = 16) -> None:
        self.ttl_s, self.clock, self.max_entries = ttl_s, clock, max_entries
        self._values: OrderedDict[K, tuple[V, float]] = OrderedDict()  # key -> (value, fetched at)
        self._inflight: dict[K, list[Any]] = {}  # key -> [fetch future, waiters]

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]], until: float | None = None) -> V:
        """until: when this caller stops waiting (time.monotonic(); None: as long as the fetch
        runs), then DeadlineExceeded. The fetch must not run under the deadline of whoever came
        first (Gateway._shared_read says why): every waiter bounds its own wait instead."""
        hit = self._values.get(key)
        if hit is not None and hit[1] <= self.clock.now().timestamp() < hit[1] + self.ttl_s:
            # Also stale when fetched "after now": the wall clock stepped back, and a TTL counted
            # from the fetch would keep the value for as long as the step on top of it.
            return hit[0]
        shared = self._inflight.get(key)
        if shared is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            shared = self._inflight[key] = [task, 0]
            # Also when the task is cancelled before its first step (its own finally never runs):
            # a cancelled fetch left here would answer every later caller with CancelledError.
            task.add_done_callback(lambda done: self._forget(key, done))
            task.add_done_callback(_observed)
        shared[1] += 1
        try:
            if until is None:
                # shield: one waiter cancelled (its client left) does not cancel the others' fetch.
                return await asyncio.shield(shared[0])
            # asyncio.wait neither cancels the fetch when this waiter gives up nor mistakes a
            # TimeoutError of the fetch's own for this waiter's deadline.
            done, _ = await asyncio.wait((shared[0],), timeout=max(0.0, until - time.monotonic()))
            if not done:
                raise _deadline_passed()
            return shared[0].result()
        finally:
            shared[1] -= 1
            if shared[1] == 0 and not shared[0].done():
                shared[0].cancel()
                # Forgotten now, not when the fetch has seen its cancellation: a caller arriving
                # in between would join it and be answered CancelledError, cancelled by nobody.
                self._forget(key, shared[0])

    async def _fetch(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await fetch()
            self.put(key, value)
            return value
        finally:
            # Only itself: a fetch cancelled by its last waiter may end after a new one began.
            self._forget(key, asyncio.current_task())  # type: ignore[arg-type]

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key` from now on, for ttl_s."""
        self._values[key] = (value, self.clock.now().timestamp())  # fetched at
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)

    def _forget(self, key: K, task: "asyncio.Future[V]") -> None:
        shared = self._inflight.get(key)
        if shared is not None and shared[0] is task:
            del self._inflight[key]


def _observed(done: "asyncio.Future[Any]") -> None:
    # A fetch that failed just as its last waiter gave up has no one to read its error: asyncio
    # would log "Task exception was never retrieved" at ERROR for an upstream that was merely down.
    if not done.cancelled():
        done.exception()


class _NotVerified(Exception):
    """A draw check that failed: answered to everyone who waited for it, never kept."""

    def __init__(self, check: DrawCheck) -> None:
        super().__init__(check.note)
        self.check = check


def _text_confirm_key(user: str, request_id: str, text: str, location: common_pb2.GeoPoint) -> str:
    """Where a confirm-from-text keeps what it matched: per user, request_id, sentence and place
    (another sentence, or the same one from elsewhere, under the same request_id matches anew,
    and the order service refuses it)."""
    where = f"{location.latitude!r},{location.longitude!r}"
    digest = hashlib.sha256(f"{user}\x00{request_id}\x00{text}\x00{where}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"rq_{digest[:32]}"


def _needs_clarification(preview: gateway_pb2.OrderPreview) -> FailedPrecondition:
    return FailedPrecondition(
        "INTENT_NEEDS_CLARIFICATION",
        preview.clarification or "没有听懂，请说得更具体 / please say more precisely what to order",
    )


def _refused_for_good(refusal: Exception) -> bool:
    """A refusal that no retry of the same call changes (the gateway's own, or an upstream
    FAILED_PRECONDITION / ALREADY_EXISTS / NOT_FOUND), unlike an overload or a deadline."""
    if isinstance(refusal, grpc.aio.AioRpcError):
        return refusal.code() in (_Code.FAILED_PRECONDITION, _Code.ALREADY_EXISTS, _Code.NOT_FOUND)
    return isinstance(refusal, FailedPrecondition)


def _preview_of_order(text: str, order: order_pb2.Order) -> gateway_pb2.OrderPreview:
    """The preview beside an order placed earlier: what the order holds, not today's reading."""
    return gateway_pb2.OrderPreview(
        text=text,
        proposal=catalog_pb2.OrderProposal(
            store=catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id=order.store_id, name=order.store_name, brand_id=order.brand_id)),
            lines=[
                catalog_pb2.LineSelection(
                    item_id=line.item_id, quantity=line.quantity,
                    options=[catalog_pb2.OptionChoice(group_id=opt.group_id, option_id=opt.option_id) for opt in line.options],
                )
                for line in order.lines
            ],
        ),
        total_fen=order.subtotal_fen,
        card_id=order.card_id,
        card_covered_fen=order.card_discount_fen,
        payable_fen=order.payable_fen,
    )


def _optional_part(o: CallOptions, wait_s: float, share: float) -> CallOptions:
    """The options of calls for a part of an answer that may be left out: o with its deadline
    brought forward to at most wait_s, and at most `share` of what the caller has left, so that
    the answer can still be given without that part."""
    now = time.monotonic()
    left = wait_s if o.deadline is None else (o.deadline - now) * share
    if left <= 0:
        return o  # the caller's deadline has passed: o.kw() says so
    return CallOptions(now + min(left, wait_s), o.metadata)


def _lottery_standing(o: CallOptions) -> CallOptions:
    """The options of a wallet's lottery calls (LOTTERY_STANDING_WAIT_S)."""
    return _optional_part(o, LOTTERY_STANDING_WAIT_S, LOTTERY_STANDING_SHARE)


def _shared_read(o: CallOptions, seconds: float) -> CallOptions:
    """The options of a read made once for everyone who asks at the same moment (TimedCache):
    its own deadline, not the first caller's. Why: the first caller may have milliseconds left
    (a phone on a bad network, a call that queued for admission), and under its deadline the read
    failed for every caller who joined it: their wallets lost their lottery standing or failed
    DEADLINE_EXCEEDED, and a crowd waiting on a drawn day's check failed with it, each with
    seconds of their own left. Each caller bounds its own wait (TimedCache.get's until) and the
    read is cancelled once nobody waits, so no upstream works for an answer nobody waits for."""
    return CallOptions(time.monotonic() + seconds, o.metadata)


def _check_wait(o: CallOptions) -> float | None:
    """Until when (time.monotonic()) a GetDrawResults caller waits for the day's check: a share
    of what it has left (DRAW_CHECK_SHARE), so that the results can still be answered without
    it; None, as long as the check runs, for a caller without a deadline."""
    if o.deadline is None:
        return None
    now = time.monotonic()
    return now + max(0.0, o.deadline - now) * DRAW_CHECK_SHARE


def scoped_request_id(kind: str, user_id: str, request_id: str) -> str:
    """An upstream idempotency key owned by this user: two users who pick the same client
    request_id never collide upstream, and the key stays short whatever the user id."""
    digest = hashlib.sha256(f"{kind}\0{user_id}\0{request_id}".encode()).hexdigest()[:40]
    return f"gw-{kind}-{digest}"


class Gateway:
    def __init__(
        self,
        *,
        card: Any,
        catalog: Any,
        order: Any,
        lottery: Any,
        campaign_id: str,
        previews: PreviewStore | None = None,
        clock: Clock | None = None,
        time_zone: str = "Asia/Shanghai",
    ) -> None:
        self.card, self.catalog, self.order, self.lottery = card, catalog, order, lottery
        self.campaign_id = campaign_id
        self.clock = clock or SystemClock()
        self.previews = previews or PreviewStore(clock=self.clock)
        # Until the campaign is read (or when the card service cannot say): the default zone.
        self.zone = ZoneInfo(time_zone)
        self._unknown_zones: set[str] = set()  # campaign zones this host cannot load (warned once)
        self._campaign: TimedCache[str, card_pb2.Campaign] = TimedCache(CAMPAIGN_TTL_S, self.clock)
        self._draws: TimedCache[str, lottery_pb2.Draw] = TimedCache(DRAW_TTL_S, self.clock)
        # A drawn day never changes, so its verification is done once per process (once per
        # commitment and winners published: _check); and once however many ask while it runs:
        # at 20:00 the whole country asks for the results at the same moment, and each check
        # holds every entrant (up to millions) in memory.
        self._verified: TimedCache[tuple[Any, ...], DrawCheck] = TimedCache(VERIFIED_TTL_S, self.clock, max_entries=64)
        self._checking = asyncio.Semaphore(CONCURRENT_DRAW_CHECKS)
        self._placed_checks: dict[tuple[Any, ...], "asyncio.Future[DrawCheck]"] = {}  # by key: _verify

    # --- Join / wallet ----------------------------------------------------------------------

    async def join(self, user: str, request_id: str, pass_phrase_text: str, o: CallOptions) -> gateway_service_pb2.JoinResponse:
        if len(pass_phrase_text.encode()) > 4096:  # bytes, as the card service counts them
            raise InvalidArgument("pass_phrase_text", "at most 4 KB / 口令文本过长")
        # The lottery half of the wallet does not depend on the join: read alongside the card
        # calls, as wallet_view reads it alongside GetWallet.
        (newly, accepted, problem, wallet_reply), draw = await gather_all(
            self._join_cards(user, request_id, pass_phrase_text, o), self._draw_today(o)
        )
        return gateway_service_pb2.JoinResponse(
            wallet=await self._wallet_view_of(user, wallet_reply, draw, o),
            newly_joined=newly, invite_accepted=accepted, invite_problem=problem,
        )

    # Until when (clock timestamp) Joins take the two-call path: set when the card service
    # answered AcceptInvite(claim_signup) without a signup_claim, i.e. it predates the field.
    # Retried after JOIN_PROBE_S, since the card service may have been upgraded meanwhile.
    _two_call_join_until: float = 0.0
    JOIN_PROBE_S = 300.0

    async def _join_cards(
        self, user: str, request_id: str, pass_phrase_text: str, o: CallOptions
    ) -> tuple[bool, bool, str, card_service_pb2.GetWalletResponse]:
        """The card half of a Join: the sign-up claim, the invite when there is a pass-phrase,
        and the wallet after them. Without a pass-phrase: ClaimSignupCard. With one: a single
        AcceptInvite(claim_signup) that claims and accepts in one card transaction; only when
        the invite fails does the claim come on its own (the failed call kept nothing of it),
        so the outcome is the one of today's ClaimSignupCard + AcceptInvite. The last write
        that succeeds brings the wallet back (include_wallet); GetWallet is asked only when
        it did not (a card service older than include_wallet).
        Returns (newly joined, invite accepted, invite problem reason, wallet)."""
        # Joining is idempotent per user upstream, so a missing request_id is harmless.
        rid = request_id or uuid.uuid4().hex
        join_rid = scoped_request_id("join", user, rid)
        if not pass_phrase_text.strip():
            signup = await self._claim_signup(user, join_rid, True, o)
            return signup.newly_granted, False, "", await self._wallet_of_write(signup, user, o)
        invite_rid = scoped_request_id("invite", user, rid)
        if self.clock.now().timestamp() < self._two_call_join_until:
            return await self._join_cards_in_two_calls(user, join_rid, invite_rid, pass_phrase_text, o)
        try:
            reply = await self._accept_invite(user, invite_rid, pass_phrase_text, o, claim_rid=join_rid)
        except grpc.aio.AioRpcError as err:
            if not _refuses_the_invite(err):
                raise  # overload, deadline, outage: the caller must see it and retry
            # Nothing of the claim was kept. Claim now, as the first of the two calls would have
            # (a failing claim fails the Join as it did), then judge the invite's error as before.
            signup = await self._claim_signup(user, join_rid, err.code() != _Code.INVALID_ARGUMENT, o)
            problem = self._invite_problem(err)
            return signup.newly_granted, False, problem, await self._wallet_of_write(signup, user, o)
        if reply.HasField("signup_claim"):
            # Also true on an idempotent replay: the pass-phrase stands accepted for this user.
            return reply.signup_claim.newly_granted, True, "", await self._wallet_of_write(reply, user, o)
        # A card service older than claim_signup accepted the invite alone (it came first).
        log.warning("card service ignores AcceptInvite.claim_signup; Joins take two card calls")
        self._two_call_join_until = self.clock.now().timestamp() + self.JOIN_PROBE_S
        signup = await self._claim_signup(user, join_rid, True, o)
        # After an invite, the claim grants nothing; this Join joined the user when its invite is
        # new and found no sign-up card of an earlier Join among the joining cards.
        newly = signup.newly_granted or (
            reply.newly_accepted and not any(c.source == card_pb2.CARD_SOURCE_SIGNUP for c in reply.invitee_cards)
        )
        return newly, True, "", await self._wallet_of_write(signup, user, o)

    async def _join_cards_in_two_calls(
        self, user: str, join_rid: str, invite_rid: str, pass_phrase_text: str, o: CallOptions
    ) -> tuple[bool, bool, str, card_service_pb2.GetWalletResponse]:
        """A Join with a pass-phrase on a card service older than claim_signup: ClaimSignupCard,
        then AcceptInvite, which brings the wallet back when it succeeds."""
        signup = await self._claim_signup(user, join_rid, False, o)
        try:
            accepted = await self._accept_invite(user, invite_rid, pass_phrase_text, o)
        except grpc.aio.AioRpcError as err:
            if not _refuses_the_invite(err):
                raise
            # A failed AcceptInvite carries no wallet (the claim was asked without).
            return signup.newly_granted, False, self._invite_problem(err), await self._get_wallet(user, o)
        return signup.newly_granted, True, "", await self._wallet_of_write(accepted, user, o)

    async def _accept_invite(
        self, user: str, invite_rid: str, pass_phrase_text: str, o: CallOptions, *, claim_rid: str = ""
    ) -> card_service_pb2.AcceptInviteResponse:
        """AcceptInvite with the wallet back; with claim_rid, the sign-up claim in the same call."""
        return await self.card.AcceptInvite(
            card_service_pb2.AcceptInviteRequest(
                request_id=invite_rid,
                campaign_id=self.campaign_id,
                invitee_user_id=user,
                text=pass_phrase_text,
                include_wallet=True,
                claim_signup=bool(claim_rid),
                signup_request_id=claim_rid,
            ),
            **o.kw(),
        )

    async def _claim_signup(
        self, user: str, join_rid: str, include_wallet: bool, o: CallOptions
    ) -> card_service_pb2.ClaimSignupCardResponse:
        try:
            return await self.card.ClaimSignupCard(
                card_service_pb2.ClaimSignupCardRequest(
                    request_id=join_rid, campaign_id=self.campaign_id, user_id=user, include_wallet=include_wallet
                ),
                **o.kw(),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != _Code.FAILED_PRECONDITION or error_details(err).get("reason") != "CARD_CAP_REACHED":
                raise
            # A user whose shared pass-phrase filled its wallet (21 cards) before it ever joined:
            # the sign-up card cannot come, but joining must not fail for good. Joined, no card.
            return card_service_pb2.ClaimSignupCardResponse()

    async def _wallet_of_write(self, reply: Any, user: str, o: CallOptions) -> card_service_pb2.GetWalletResponse:
        """The wallet a write returned (include_wallet), or GetWallet's from an older card service."""
        return reply.wallet if reply.HasField("wallet") else await self._get_wallet(user, o)

    @staticmethod
    def _invite_problem(err: grpc.aio.AioRpcError) -> str:
        """The reason Join reports for an AcceptInvite that failed on the pass-phrase (the user
        still joins). Bad input fails the Join instead, named in the gateway's own terms: the
        sign-up card is already granted, and a retry with a good pass-phrase still counts."""
        if err.code() == _Code.INVALID_ARGUMENT:
            d = error_details(err)
            why = d["violations"][0][1] if d["violations"] else d["message"]
            raise InvalidArgument(
                "pass_phrase_text",
                why or "no pass-phrase found / 未找到口令",
                reason=d["reason"] or "INVALID_ARGUMENT",
            ) from None
        return error_details(err)["reason"] or err.code().name

    async def wallet_view(self, user: str, o: CallOptions) -> gateway_pb2.WalletView:
        """One card call (the wallet with its spendable cards), the cached campaign and draw,
        and the user's entries only when the wallet says the user may have entered at all."""
        wallet_reply, draw = await gather_all(self._get_wallet(user, o), self._draw_today(o))
        return await self._wallet_view_of(user, wallet_reply, draw, o)

    async def _get_wallet(self, user: str, o: CallOptions) -> card_service_pb2.GetWalletResponse:
        return await self.card.GetWallet(
            card_service_pb2.GetWalletRequest(campaign_id=self.campaign_id, user_id=user, include_available_cards=True),
            **o.kw(),
        )

    async def _wallet_view_of(
        self, user: str, wallet_reply: card_service_pb2.GetWalletResponse, draw: lottery_pb2.Draw | None, o: CallOptions
    ) -> gateway_pb2.WalletView:
        """The wallet view around the card service's wallet (from GetWallet or from a write that
        returned it) and today's draw (None when the lottery could not say)."""
        wallet = wallet_reply.wallet
        day = draw.day if draw is not None else await self._today(o)
        # EnterDraw admits only qualified users and invites are never taken back: a user who is
        # not qualified now has no entry today, so its entries need not be read. Nor when the
        # lottery just failed to say what today's draw is: asking it again would wait as long.
        entered: bool | None = False
        if draw is not None and wallet.lottery_qualified:
            entered = await self._entered(user, day, o)
        lottery = gateway_pb2.LotteryStatus(
            day=day,
            invites=wallet.lottery_progress or wallet.invites_made,
            threshold=wallet.lottery_threshold,
            qualified=wallet.lottery_qualified,
            entered_today=bool(entered),
            entries_open=self._entries_open(draw),
            # A user told "not entered, entries closed" at 10:00 because the lottery restarted.
            standing_unknown=draw is None or entered is None,
        )
        return gateway_pb2.WalletView(wallet=wallet, cards=wallet_reply.available_cards, lottery=lottery)

    def _entries_open(self, draw: lottery_pb2.Draw | None) -> bool:
        """Whether today's draw takes entries now, by this gateway's clock: the draw is cached
        a few seconds, and its status alone would still say OPEN just after the cut-off. So an
        app can tell "enter now" from "your invites count toward tomorrow" after 20:00."""
        if draw is None or draw.status != lottery_pb2.DRAW_STATUS_OPEN or not draw.HasField("cutoff_time"):
            return False
        return to_ms(self.clock.now()) < draw.cutoff_time.ToMilliseconds()

    async def _draw_today(self, o: CallOptions) -> lottery_pb2.Draw | None:
        """Today's draw (cached a few seconds). The lottery is the least important part of a
        wallet: when it is down or slow the wallet is still shown, without today's entry."""
        day = await self._today(o)
        try:
            return await self._draws.get(
                day,
                lambda: self._get_draw(day, _shared_read(o, LOTTERY_STANDING_WAIT_S)),
                until=_lottery_standing(o).deadline,
            )
        except grpc.aio.AioRpcError as err:
            if not _lottery_degrades(err):
                raise
            log.warning("wallet shown without lottery standing", extra={"code": err.code().name})
            return None
        except DeadlineExceeded:
            # This caller's share of its deadline ran out (the read goes on for the others).
            log.warning("wallet shown without lottery standing", extra={"code": "DEADLINE_EXCEEDED"})
            return None

    async def _get_draw(self, day: str, o: CallOptions) -> lottery_pb2.Draw:
        reply = await self.lottery.GetDraw(
            lottery_service_pb2.GetDrawRequest(campaign_id=self.campaign_id, day=day), **o.kw()
        )
        return reply.draw

    async def _entered(self, user: str, day: str, o: CallOptions) -> bool | None:
        """Whether the user entered today's draw; None when the lottery could not say."""
        try:
            reply = await self.lottery.ListMyEntries(
                lottery_service_pb2.ListMyEntriesRequest(campaign_id=self.campaign_id, user_id=user, page_size=3),
                **_lottery_standing(o).kw(),
            )
        except grpc.aio.AioRpcError as err:
            if not _lottery_degrades(err):
                raise
            log.warning("wallet shown without today's entry", extra={"code": err.code().name})
            return None
        return any(e.day == day for e in reply.entries)

    async def _today(self, o: CallOptions) -> str:
        """Today in the campaign's time zone (the campaign is cached; the configured zone stands
        in while the card service cannot be asked)."""
        try:
            campaign = await self._campaign.get(
                self.campaign_id, lambda: self._get_campaign(_shared_read(o, SHARED_READ_S)), until=o.deadline
            )
            name = campaign.rules.time_zone
            if name and name != self.zone.key and name not in self._unknown_zones:
                try:
                    self.zone = ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
                    # The card service checked the name against its own zone database; this
                    # host's may be older (a zone named since), or the campaign older than that
                    # check. Every Join and GetWallet failed INTERNAL on it; the day's label
                    # keeps the current zone instead, as the lottery keeps its default.
                    self._unknown_zones.add(name)
                    log.warning("campaign time zone unknown on this host, using %s", self.zone.key, extra={"zone": name[:64]})
        except (grpc.aio.AioRpcError, DeadlineExceeded) as err:
            # Only the day's label depends on it: the wallet itself still stands or falls with
            # the card service's own answer.
            code = err.code().name if isinstance(err, grpc.aio.AioRpcError) else err.code
            log.warning("campaign time zone unknown, using the default", extra={"code": code})
        return self.today()

    async def _get_campaign(self, o: CallOptions) -> card_pb2.Campaign:
        reply = await self.card.GetCampaign(card_service_pb2.GetCampaignRequest(campaign_id=self.campaign_id), **o.kw())
        return reply.campaign

    def today(self) -> str:
        return self.clock.now().astimezone(self.zone).date().isoformat()

    # --- OrderByText ------------------------------------------------------------------------

    async def order_by_text(self, user: str, req: gateway_service_pb2.OrderByTextRequest, o: CallOptions) -> gateway_service_pb2.OrderByTextResponse:
        if req.confirm and not req.request_id:
            raise InvalidArgument("request_id", "required with confirm / 确认下单需要 request_id")
        replay_key = ""
        if req.preview_id:
            record = self.previews.get(req.preview_id, user)
            if record is None:
                gone = NotFound("PREVIEW_NOT_FOUND", "预览不存在或已过期，请重新输入 / preview not found or expired")
                if req.confirm:
                    # Previews live in this process only: the retry of a confirm whose answer was
                    # lost to a restart (an upgrade) or the preview TTL is answered with the order
                    # its first attempt placed, when it placed one.
                    return await self._answer_if_placed(user, req.request_id, req.text, gone, o)
                raise gone
            preview = gateway_pb2.OrderPreview.FromString(record.preview)
            store_id = record.store_id
            lines = catalog_service_pb2.QuoteRequest.FromString(record.lines).lines
        else:
            text = req.text.strip()
            if not text:
                raise InvalidArgument("text", "say what to order, e.g. 两杯生椰拿铁 / 请输入想点的内容")
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidArgument("text", f"at most {MAX_TEXT_CHARS} characters / 最多 {MAX_TEXT_CHARS} 字")
            # Confirming straight from text places the order at once, and the order itself says
            # which card it used and what it covered: asking the card service for the best card
            # first would be a card RPC spent on a guess.
            replay_key = _text_confirm_key(user, req.request_id, text, req.location) if req.confirm else ""
            replay = self.previews.get(replay_key, user) if replay_key else None
            if replay is not None:
                # A retry of this very confirm (its answer lost): the lines the first attempt
                # matched, not a new match. A new one may pick another store once an item sold
                # out, and the order service would then refuse the retry as REQUEST_ID_REUSED
                # although the first attempt's order exists.
                preview = gateway_pb2.OrderPreview.FromString(replay.preview)
                store_id = replay.store_id
                lines = catalog_service_pb2.QuoteRequest.FromString(replay.lines).lines
            else:
                try:
                    preview, store_id, lines = await self._preview(user, text, req, o, with_card=not req.confirm)
                    if req.confirm and not store_id:
                        raise _needs_clarification(preview)
                    if req.confirm and preview.proposal.confidence < MIN_CONFIRM_CONFIDENCE:
                        self._refuse_guess(preview, user, store_id, lines)
                except (FailedPrecondition, grpc.aio.AioRpcError) as refusal:
                    if replay_key and _refused_for_good(refusal):
                        return await self._answer_if_placed(user, req.request_id, text, refusal, o)
                    raise
                if req.confirm and store_id:
                    # Kept before placing: the first attempt's order may exist even if its answer
                    # never arrives.
                    self._keep(preview, user, store_id, lines, key=replay_key)
        if not req.confirm:
            return gateway_service_pb2.OrderByTextResponse(preview=preview)
        if not store_id:
            raise _needs_clarification(preview)
        # A preview that showed a card was confirmed as a free (or cheaper) order: if no card is
        # left by now (spent by another order meanwhile), refuse rather than place it at full price.
        promised_card = bool(req.preview_id and preview.card_id)
        try:
            placed = await self.order.PlaceOrder(
                order_service_pb2.PlaceOrderRequest(
                    request_id=req.request_id,
                    user_id=user,
                    store_id=store_id,
                    lines=lines,
                    card_use=order_pb2.CARD_USE_REQUIRED if promised_card else order_pb2.CARD_USE_BEST,
                    campaign_id=self.campaign_id,
                ),
                **o.kw(),
            )
        except grpc.aio.AioRpcError as err:
            if replay_key and err.code() not in _ANSWER_MAYBE_LOST_CODES:
                # A definite no (sold out, closed): nothing was placed, so the next try of this
                # request_id may match anew rather than replay lines that cannot be ordered.
                self.previews.discard(replay_key)
            if replay_key and _refused_for_good(err):
                return await self._answer_if_placed(user, req.request_id, text, err, o)
            if promised_card and error_details(err).get("reason") == "NO_CARD_AVAILABLE":
                raise FailedPrecondition(
                    "PREVIEW_CARD_GONE",
                    "预览里的免单卡已被使用，请重新预览查看新价格 / the card this preview counted on has been used "
                    "since; preview again to see the new price",
                ) from None
            raise
        # What is shown beside the order is what the order used and charges, not what the preview
        # guessed: the order re-quoted the prices (a price changed since the preview once gave a
        # payable of -1,700 fen here).
        order = placed.order
        preview.card_unknown = False  # the order says what the card does now
        preview.card_id = order.card_id
        preview.card_covered_fen = order.card_discount_fen
        if order.subtotal_fen:
            preview.total_fen = order.subtotal_fen
            preview.payable_fen = order.payable_fen
        else:
            preview.payable_fen = max(0, preview.total_fen - order.card_discount_fen)
        if not req.preview_id:
            self._keep(preview, user, store_id, lines)
        return gateway_service_pb2.OrderByTextResponse(preview=preview, order=placed.order)

    async def _preview(
        self, user: str, text: str, req: gateway_service_pb2.OrderByTextRequest, o: CallOptions, *, with_card: bool
    ) -> tuple[gateway_pb2.OrderPreview, str, Sequence[catalog_pb2.LineSelection]]:
        """The parsed, priced preview. with_card: look up the best card alongside the parse (what
        it covers is computed here from its own face value, so the catalog needs no card input)
        and keep the preview for a later confirm by id; without it the caller fills the card
        fields from the order it places and keeps the preview itself (_keep)."""
        # Passed on only when the user sent one: a location built from an unset one is (0, 0), a
        # real place in the Gulf of Guinea, and the catalog then answered "no store near you"
        # instead of asking for the location.
        where = req.location if req.HasField("location") else None
        match_call = self.catalog.MatchIntent(
            catalog_service_pb2.MatchIntentRequest(text=text, location=where, max_alternatives=2), **o.kw()
        )
        card, card_known = None, True
        if with_card:
            match, (card_known, card) = await gather_all(match_call, self._best_card(user, o))
        else:
            match = await match_call
        preview = gateway_pb2.OrderPreview(text=text, alternatives=match.alternatives, clarification=match.clarification)
        if match.status != catalog_pb2.INTENT_STATUS_MATCHED or not match.HasField("proposal"):
            if not preview.clarification:
                preview.clarification = "没有找到可以下单的商品，请换个说法 / nothing to order was found, please rephrase"
            return preview, "", ()
        proposal = match.proposal
        total = proposal.quote.total_fen
        covered = min(total, card.face_value_fen) if card is not None else 0
        preview.proposal.CopyFrom(proposal)
        preview.total_fen = total
        preview.card_covered_fen = covered
        preview.payable_fen = total - covered
        preview.card_id = card.card_id if card is not None else ""
        preview.card_unknown = not card_known
        preview.preview_id = self.previews.new_id()
        preview.expire_time.FromDatetime(self.previews.expiry())
        store_id = proposal.store.store.store_id or proposal.quote.store_id
        if with_card:
            self._keep(preview, user, store_id, proposal.lines)
        return preview, store_id, proposal.lines

    async def _best_card(self, user: str, o: CallOptions) -> tuple[bool, card_pb2.Card | None]:
        """(known, the card a preview shows): (False, None) when the card service cannot be
        reached or does not answer in time (PREVIEW_CARD_WAIT_S). A preview spends nothing, so it
        is shown without its card part rather than refused; a confirm asks for the card again
        (through the order service) and refuses then."""
        try:
            reply = await self.card.ListCards(
                card_service_pb2.ListCardsRequest(
                    campaign_id=self.campaign_id, user_id=user, state=card_pb2.CARD_STATE_AVAILABLE, page_size=1
                ),
                **_optional_part(o, PREVIEW_CARD_WAIT_S, PREVIEW_CARD_SHARE).kw(),
            )
        except grpc.aio.AioRpcError as err:
            if not _card_preview_degrades(err):
                raise
            log.warning("preview shown without its card part", extra={"code": err.code().name})
            return False, None
        return True, (reply.cards[0] if reply.cards else None)

    async def _answer_if_placed(
        self, user: str, request_id: str, text: str, refusal: Exception, o: CallOptions
    ) -> gateway_service_pb2.OrderByTextResponse:
        """The answer to a confirm from text that is refused now although its request_id may have
        placed an order: what the first attempt matched is kept in this process only (lost to a
        restart, an upgrade, another replica, the preview TTL), and the sentence may read otherwise
        today (a newer resolver, a store closed or an item sold out since). The order is the
        record that lasts: a retry is answered with it, and only a request that placed nothing is
        refused. Asked on refusals only, so a confirm that places costs no extra call."""
        try:
            reply = await self.order.ListOrders(
                order_service_pb2.ListOrdersRequest(user_id=user, page_size=RECENT_ORDERS), **o.kw()
            )
        except grpc.aio.AioRpcError:
            # The look is a courtesy to a retry: when the order service cannot answer it (busy,
            # down), the refusal itself is the answer, not "busy, retry" for a call that will be
            # refused again.
            raise refusal from None
        order = next((order for order in reply.orders if order.request_id == request_id), None)
        if order is None:
            raise refusal
        return gateway_service_pb2.OrderByTextResponse(preview=_preview_of_order(text, order), order=order)

    def _refuse_guess(
        self, preview: gateway_pb2.OrderPreview, user: str, store_id: str, lines: Sequence[catalog_pb2.LineSelection]
    ) -> NoReturn:
        """A confirm from text whose reading is only a guess: nothing is placed; the preview is
        kept so that the app can ask "did you mean…?" and confirm it by its preview_id."""
        self._keep(preview, user, store_id, lines)
        proposal = preview.proposal
        guess = "、".join(f"{line.quantity}×{line.item_name}" for line in proposal.quote.lines) or proposal.explanation or "这个读法 / this reading"
        raise FailedPrecondition(
            "INTENT_UNCERTAIN",
            f"不确定您要的是不是「{guess}」，请确认预览 {preview.preview_id} 后再下单 / not sure you meant "
            f"{guess}; confirm preview {preview.preview_id} (or say more precisely what to order)",
            metadata={"preview_id": preview.preview_id, "confidence": f"{proposal.confidence:.2f}"},
        )

    def _keep(
        self, preview: gateway_pb2.OrderPreview, user: str, store_id: str, lines: Sequence[catalog_pb2.LineSelection],
        *, key: str = "",
    ) -> None:
        """Keep a preview, as shown to its user, for a later confirm by preview_id (or under
        `key`, for a retried confirm from text)."""
        self.previews.put(
            PreviewRecord(
                preview_id=key or preview.preview_id,
                user_id=user,
                text=preview.text,
                preview=preview.SerializeToString(),
                store_id=store_id,
                lines=catalog_service_pb2.QuoteRequest(lines=lines).SerializeToString(),
                expire_time=preview.expire_time.ToDatetime(tzinfo=timezone.utc),
            )
        )

    # --- orders -----------------------------------------------------------------------------

    async def place_order(self, user: str, req: gateway_service_pb2.PlaceOrderRequest, o: CallOptions) -> gateway_service_pb2.PlaceOrderResponse:
        reply = await self.order.PlaceOrder(
            order_service_pb2.PlaceOrderRequest(
                request_id=req.request_id,
                user_id=user,
                store_id=req.store_id,
                lines=req.lines,
                card_use=req.card_use or order_pb2.CARD_USE_BEST,
                card_id=req.card_id,
                campaign_id=self.campaign_id,
            ),
            **o.kw(),
        )
        return gateway_service_pb2.PlaceOrderResponse(order=reply.order)

    async def confirm_payment(self, user: str, req: gateway_service_pb2.ConfirmPaymentRequest, o: CallOptions) -> gateway_service_pb2.ConfirmPaymentResponse:
        reply = await self.order.ConfirmPayment(
            order_service_pb2.ConfirmPaymentRequest(
                request_id=req.request_id, order_id=req.order_id, user_id=user, payment_reference=req.payment_reference
            ),
            **o.kw(),
        )
        return gateway_service_pb2.ConfirmPaymentResponse(order=reply.order)

    async def get_order(self, user: str, order_id: str, o: CallOptions) -> gateway_service_pb2.GetOrderResponse:
        reply = await self.order.GetOrder(order_service_pb2.GetOrderRequest(order_id=order_id, user_id=user), **o.kw())
        return gateway_service_pb2.GetOrderResponse(order=reply.order)

    async def list_orders(self, user: str, req: gateway_service_pb2.ListOrdersRequest, o: CallOptions) -> gateway_service_pb2.ListOrdersResponse:
        reply = await self.order.ListOrders(
            order_service_pb2.ListOrdersRequest(user_id=user, page_size=req.page_size, page_token=req.page_token), **o.kw()
        )
        return gateway_service_pb2.ListOrdersResponse(orders=reply.orders, next_page_token=reply.next_page_token)

    async def cancel_order(self, user: str, req: gateway_service_pb2.CancelOrderRequest, o: CallOptions) -> gateway_service_pb2.CancelOrderResponse:
        reply = await self.order.CancelOrder(
            order_service_pb2.CancelOrderRequest(
                request_id=req.request_id, order_id=req.order_id, user_id=user, reason=req.reason
            ),
            **o.kw(),
        )
        return gateway_service_pb2.CancelOrderResponse(order=reply.order)

    async def watch_order(self, user: str, order_id: str, o: CallOptions) -> AsyncIterator[gateway_service_pb2.WatchOrderResponse]:
        call = self.order.WatchOrder(order_service_pb2.WatchOrderRequest(order_id=order_id, user_id=user), **o.kw())
        try:
            async for update in call:
                yield gateway_service_pb2.WatchOrderResponse(order=update.order)
        finally:
            # The client went away (or the stream ended): stop the upstream stream too, so the
            # order service does not keep a watcher for nobody.
            call.cancel()

    # --- catalog ----------------------------------------------------------------------------

    async def search_stores(self, req: gateway_service_pb2.SearchStoresRequest, o: CallOptions) -> gateway_service_pb2.SearchStoresResponse:
        reply = await self.catalog.SearchStores(req.search, **o.kw())
        return gateway_service_pb2.SearchStoresResponse(stores=reply.stores, next_page_token=reply.next_page_token)

    async def get_menu(self, store_id: str, o: CallOptions) -> gateway_service_pb2.GetMenuResponse:
        reply = await self.catalog.GetMenu(catalog_service_pb2.GetMenuRequest(store_id=store_id), **o.kw())
        return gateway_service_pb2.GetMenuResponse(menu=reply)

    # --- lottery ----------------------------------------------------------------------------

    async def enter_lottery(self, user: str, request_id: str, o: CallOptions) -> gateway_service_pb2.EnterLotteryResponse:
        rid = request_id or uuid.uuid4().hex  # idempotent per user and day upstream anyway
        reply = await self.lottery.EnterDraw(
            lottery_service_pb2.EnterDrawRequest(
                request_id=scoped_request_id("lottery", user, rid), campaign_id=self.campaign_id, user_id=user
            ),
            **o.kw(),
        )
        return gateway_service_pb2.EnterLotteryResponse(entry=reply.entry, draw=reply.draw)

    async def draw_results(self, user: str, day: str, o: CallOptions) -> gateway_service_pb2.GetDrawResultsResponse:
        if day:
            try:
                datetime.strptime(day, "%Y-%m-%d")
            except ValueError:
                raise InvalidArgument("day", "YYYY-MM-DD, e.g. 2026-02-01", reason="INVALID_DAY") from None
        draw = (await self.lottery.GetDraw(lottery_service_pb2.GetDrawRequest(campaign_id=self.campaign_id, day=day), **o.kw())).draw
        results = gateway_pb2.DrawResults(draw=draw, caller_won=user in draw.winners)
        if draw.status == lottery_pb2.DRAW_STATUS_DRAWN:
            check = await self._check(draw, o)
            results.verified, results.verification_note = check.verified, check.note
        elif draw.status == lottery_pb2.DRAW_STATUS_NOT_HELD or (draw.status == lottery_pb2.DRAW_STATUS_CLOSED and not draw.commitment):
            # Past its cut-off without a commitment (the lottery was not running that day): the
            # lottery refuses to commit or enter it any more, so it will never be drawn. (A
            # lottery of the previous release says CLOSED for it.)
            results.verification_note = "该日没有抽奖 / no draw was held this day: it has no entrants and will have no winners"
        else:
            results.verification_note = "尚未开奖，开奖后可验证 / not drawn yet; verifiable once drawn"
        return gateway_service_pb2.GetDrawResultsResponse(results=results)

    async def verify_draw(self, req: gateway_service_pb2.VerifyDrawRequest, o: CallOptions) -> gateway_service_pb2.VerifyDrawResponse:
        """The lottery's VerifyDraw for the campaign, for anyone holding a user token: what
        lets a user recompute the draw rather than trust the gateway's `verified`."""
        if not req.day:
            raise InvalidArgument("day", "required: the drawn day, YYYY-MM-DD / 请给出开奖日期", reason="MISSING_FIELD")
        page = await self.lottery.VerifyDraw(
            lottery_service_pb2.VerifyDrawRequest(
                campaign_id=self.campaign_id, day=req.day, page_size=req.page_size, page_token=req.page_token
            ),
            **o.kw(),
        )
        return gateway_service_pb2.VerifyDrawResponse(verification=page)

    async def _check(self, draw: lottery_pb2.Draw, o: CallOptions) -> DrawCheck:
        # Kept per what was checked, not per day: the check vouches that these winners follow
        # from this commitment's seed. Kept per day, winners the lottery published for a verified
        # day afterwards (a tampered store, a bad restore) were shown verified for a week.
        key = (
            draw.campaign_id or self.campaign_id, draw.day, draw.commitment, tuple(draw.winners), draw.winner_count,
            draw.entrant_count,
        )
        try:
            return await self._verified.get(
                key, lambda: self._verify(key, draw, _shared_read(o, SHARED_CHECK_S)), until=_check_wait(o)
            )
        except _NotVerified as failed:
            # Only a success is kept; a failure is re-checked next time (it may be our bug).
            return failed.check
        except DeadlineExceeded:
            # This caller's share of its time ran out (DRAW_CHECK_SHARE): the check goes on.
            log.warning("draw results shown before their check", extra={"code": "DEADLINE_EXCEEDED"})
            return DrawCheck(False, CHECK_RUNNING_NOTE)
        except grpc.aio.AioRpcError as err:
            # The lottery refused or dropped a page (busy at 20:00, restarting): the draw itself
            # was read, and a failed check is not kept, so the next caller checks again.
            log.warning("draw results shown without their check", extra={"code": err.code().name})
            return DrawCheck(False, CHECK_UNAVAILABLE_NOTE)

    async def _verify(self, key: tuple[Any, ...], draw: lottery_pb2.Draw, o: CallOptions) -> DrawCheck:
        """The check, in one of CONCURRENT_DRAW_CHECKS places (see there). A check waits for its
        place only while someone waits for it; once placed, it runs to its end (bounded by its
        own deadline, SHARED_CHECK_S) even when every caller gave up meanwhile, and what it finds
        is kept. Why: callers wait a share of their deadlines (DRAW_CHECK_SHARE), and a check
        cancelled with them was started again by the next caller from the first page, so a day
        whose paging outlasts a caller's share was paged whole for every caller and never shown
        verified. The place is held until the check ends: a thread checking on for nobody still
        holds its entrants and its share of the GIL. A caller arriving meanwhile joins it."""
        checking = self._placed_checks.get(key)
        if checking is None:
            await self._checking.acquire()
            checking = self._placed_checks[key] = asyncio.ensure_future(self._verify_now(draw, o))
            checking.add_done_callback(lambda done: self._check_ended(key, done))
        try:
            return await asyncio.shield(checking)
        except asyncio.CancelledError:
            checking.add_done_callback(lambda done: self._keep_verified(key, done))
            raise

    async def _verify_now(self, draw: lottery_pb2.Draw, o: CallOptions) -> DrawCheck:
        entrants: list[str] = []
        token = ""
        first: lottery_service_pb2.VerifyDrawResponse | None = None
        for _ in range(VERIFY_MAX_PAGES):
            page = await self.lottery.VerifyDraw(
                lottery_service_pb2.VerifyDrawRequest(
                    campaign_id=draw.campaign_id or self.campaign_id, day=draw.day, page_size=VERIFY_PAGE_SIZE, page_token=token
                ),
                **o.kw(),
            )
            first = first or page
            entrants.extend(page.entrants)
            token = page.next_page_token
            if not token:
                break
        else:
            raise _NotVerified(DrawCheck(False, "too many entrants to verify here; use VerifyDraw directly"))
        assert first is not None
        # In a worker thread: the check hashes and ranks every entrant, ~0.5 s of CPU per 100,000
        # (a popular day has a million), and on the event loop it stopped every call of this
        # gateway (orders, health checks) at 20:00, when everyone asks for the results.
        check = await asyncio.to_thread(
            check_draw,
            seed_hex=first.seed,
            commitment=draw.commitment or first.commitment,
            beacon_value=first.beacon_value,
            entrants=entrants,
            published_entrants_hash=first.entrants_hash,
            entrant_count=int(first.entrant_count),
            winner_count=draw.winner_count,
            winners=list(draw.winners),
            commit_ms=draw.commit_time.ToMilliseconds() if draw.HasField("commit_time") else 0,
            cutoff_ms=draw.cutoff_time.ToMilliseconds() if draw.HasField("cutoff_time") else 0,
            drawn_ms=draw.draw_time.ToMilliseconds() if draw.HasField("draw_time") else 0,
            beacon_source=draw.beacon_source,
            algorithm=first.algorithm,
            algorithm_version=first.algorithm_version,
        )
        if not check.verified:
            raise _NotVerified(check)
        return check

    def _check_ended(self, key: tuple[Any, ...], done: "asyncio.Future[DrawCheck]") -> None:
        self._checking.release()
        if self._placed_checks.get(key) is done:
            del self._placed_checks[key]

    def _keep_verified(self, key: tuple[Any, ...], done: "asyncio.Future[DrawCheck]") -> None:
        if not done.cancelled() and done.exception() is None and done.result().verified:
            self._verified.put(key, done.result())
