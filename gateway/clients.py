"""The gateway's upstreams: one channel per service, opened once and reused for every call.

Retries: only on UNAVAILABLE without a pushback (a dropped connection, a peer not yet listening:
the call did no work; likewise CANCELLED from the upstream's core, which turned the call away
before its handler ran) or with a short one (at most the longest backoff: an upstream saying "retry"
after a placement it interrupted or undid, waited out before asking again), only for methods that are safe to repeat (reads, and mutations that carry
a request_id the callee is idempotent on), after a short backoff (20 ms doubling to 200 ms, at
most 3 attempts, within the caller's deadline), and with a retry budget per upstream so that a
struggling upstream is not hit by a retry storm: once more than half the tokens are spent, the
gateway stops retrying until successes refill it (gRFC A6's retry throttling). A refusal that
carries a longer pushback (OVERLOADED: the upstream is shedding) is passed on at once: asking again
20 ms later would only add to the load it is shedding.

Why here and not in the channel's service config (gRFC A6), where they used to be: gRPC's own
retries obey the upstream's grpc-retry-pushback-ms, and every miandan refusal carries its retry
delay there (1 s for OVERLOADED). An upstream shedding load then held the user's call through two
one-second waits, holding a gateway slot too, and a caller with a shorter deadline got a bare
DEADLINE_EXCEEDED instead of "busy, retry in 1 s". The upstream's delay is the end user's to
wait, not the gateway's: its refusal is passed on at once, with its delay.

Deadlines: every call gets `timeout=` from CallOptions, i.e. what is left of the end user's
deadline, so no upstream works for an answer nobody waits for.

Bulkheads: every unary call to an upstream holds a place in that upstream's Bulkhead for as long
as it (and its retries) runs. Why: the gateway has one admission limit for all its calls, and an
end-user call holds its slot while it waits on an upstream. With the order service frozen
(`kill -STOP`, 5-20 s) the calls waiting on it filled every slot, and Join, GetWallet and
EnterLottery, which never touch it, were refused OVERLOADED for the whole freeze and a second
after. Now MIANDAN_UPSTREAM_SHARE_PERCENT (default 50) of the gateway's current admission limit
(counted at most at its start value, MIANDAN_MAX_CONCURRENCY: Bulkhead.bound says why) are each
upstream's own places. Beyond them, places are lent (as many as admission lets in) to calls that
are safe to end early and ask again (IDEMPOTENT_METHODS), for as long as the upstream keeps
answering: once a tenth of its calls in flight (at least one; its oldest, when few) have waited
MIANDAN_UPSTREAM_STALL_MS (default 500 ms, the p99 objective of a call), nothing more is lent and
the lent calls are ended. A call refused or ended gets UNAVAILABLE, reason UPSTREAM_SATURATED,
retry in ~1 s (spread over 75-125 %), so the end-user call ends and gives its gateway slot back
instead of queueing behind the stuck ones.

Why lend: a count alone cannot tell a lunch peak from a stall. 40 concurrent orders at a limit
the CPU queueing has brought down to 32 are a peak the gateway must serve
(tests/integration/common/test_common_floor.py); a fixed share small enough to leave Join slots
at that limit (80 % of it for DEFAULT calls, admission.py) would refuse most of them. A frozen
upstream answers nothing and one that is too slow to meet the objective is no better, so the age
of its calls says which is which (of a tenth of them: one slow call is the tail the objective
allows, not a stall). Why 50 %: DEFAULT calls may fill 80 % of the limit, so half for a stalled
upstream leaves 30 % to every other DEFAULT call (19 slots at the start value 64, 10 at the floor
32); 60 % would leave 6 at the floor.

Why a reason of its own, not UPSTREAM_OVERLOADED: that one says an upstream answered OVERLOADED
(it is shedding, and miandan_rpc_refusals_total counts it so); UPSTREAM_SATURATED says the gateway
itself stopped sending because its calls to that upstream are not coming back: an operator must
look at a frozen or slow upstream, not at its admission limit. The refusal is built as the
upstream's own UNAVAILABLE answer would be (an AioRpcError with status details and pushback), so
every path that handles an upstream's refusal (the pipeline passing it on, compose's fallbacks)
handles this one the same way. Streams (WatchOrder) are not counted: they are long by design and
bounded by gateway/watches.py.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from miandan.card.v1 import card_service_pb2_grpc
from miandan.catalog.v1 import catalog_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from miandan.order.v1 import order_service_pb2_grpc
from services.common.admission import CRITICALITY_KEY, DEFAULT
from services.common.auth import internal_metadata, open_channel
from services.common.deadline import DEADLINE_PASSED
from services.common.errors import PUSHBACK_KEY, STATUS_DETAILS_KEY, DeadlineExceeded, Unavailable, to_rpc_status

__all__ = [
    "IDEMPOTENT_METHODS",
    "UPSTREAM_SATURATED",
    "Bulkhead",
    "Bulkheaded",
    "RetryBudget",
    "Retrying",
    "CallOptions",
    "Upstreams",
    "is_transport_failure",
]

# Methods the gateway may retry on UNAVAILABLE, per upstream service.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "miandan.card.v1.CardService": (
        "GetCampaign", "GetWallet", "ListCards", "GetInviteCode", "GetInviteStats",  # reads
        "ClaimSignupCard", "AcceptInvite",  # idempotent per user / invitee and request_id
    ),
    "miandan.catalog.v1.CatalogService": ("SearchStores", "GetMenu", "MatchIntent", "Quote", "ListBrands"),
    "miandan.order.v1.OrderService": (
        # WatchOrder is not here: a refused stream reaches the app at once, which reopens it.
        "GetOrder", "ListOrders",  # reads
        "PlaceOrder", "ConfirmPayment", "CancelOrder",  # idempotent on request_id
    ),
    "miandan.lottery.v1.LotteryService": ("GetDraw", "VerifyDraw", "ListMyEntries", "EnterDraw"),
}


RETRY_ATTEMPTS = 3
RETRY_FIRST_BACKOFF_S = 0.02
RETRY_MAX_BACKOFF_S = 0.2


class RetryBudget:
    """gRFC A6 retry throttling for one upstream: each UNAVAILABLE costs a token, each success
    gives back `ratio`; retries only while more than half of `max_tokens` is left."""

    def __init__(self, max_tokens: float = 10.0, ratio: float = 0.1) -> None:
        self.max_tokens, self.ratio = max_tokens, ratio
        self.tokens = max_tokens

    def failed(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    def succeeded(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.ratio)

    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2


class Retrying:
    """A unary upstream method retried on UNAVAILABLE (see the module docstring), never waiting
    out the upstream's pushback."""

    __slots__ = ("_method", "_budget", "_jitter")

    def __init__(self, method: Callable[..., Any], budget: RetryBudget, jitter: Callable[[], float] = random.random) -> None:
        self._method, self._budget, self._jitter = method, budget, jitter

    async def __call__(self, request: Any, *, timeout: float | None = None, metadata: Any = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = RETRY_FIRST_BACKOFF_S
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                reply = await self._method(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                # A core's CANCELLED did no work either, like a dropped connection: a capacity
                # run at 48 users in flight passed such PlaceOrders to users as
                # UPSTREAM_UNAVAILABLE where a retry 20 ms later was placed.
                if err.code() != grpc.StatusCode.UNAVAILABLE and not is_transport_failure(err):
                    raise
                self._budget.failed()
                pushback_s = _pushback_s(err)
                if pushback_s > RETRY_MAX_BACKOFF_S:
                    # The upstream refused on purpose (OVERLOADED, with its delay): asking again in
                    # 20 ms would only add to its load. The user gets its answer, and waits it.
                    raise
                # A short pushback is a "retry now" from an upstream that did no harm (an order
                # placement interrupted or aborted, a card that covered part: 50-200 ms): the
                # next attempt succeeds, after the delay it asked for, not sooner.
                pause = max(backoff * self._jitter(), pushback_s)
                if attempt == RETRY_ATTEMPTS or not self._budget.allows_retry():
                    raise
                if deadline is not None and deadline - time.monotonic() <= pause:
                    raise
                await asyncio.sleep(pause)
                backoff = min(2 * backoff, RETRY_MAX_BACKOFF_S)
                if deadline is not None:
                    timeout = deadline - time.monotonic()
                continue
            self._budget.succeeded()
            return reply
        raise AssertionError("unreachable: the last attempt returns or raises")


def is_transport_failure(err: grpc.aio.AioRpcError) -> bool:
    """A failure produced by gRPC rather than answered by a miandan service (whose answers always
    carry google.rpc details, e.g. OVERLOADED): UNAVAILABLE from the channel (connection refused,
    upstream restarting), or CANCELLED from the upstream's core, which refuses a call its busy
    event loop has not taken in (Settings.max_pending_calls) or that a stopping server drops. A
    call the gateway gives up on itself ends in CancelledError, never in this error."""
    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return False
    return not any(key == STATUS_DETAILS_KEY for key, _ in (err.trailing_metadata() or ()))


def _pushback_s(err: grpc.aio.AioRpcError) -> float:
    """The delay a refusal asks for, in seconds: 0 for a dropped connection or a peer not yet
    listening, which carry none; infinite for one that cannot be read (never asked sooner)."""
    for key, value in err.trailing_metadata() or ():
        if key == PUSHBACK_KEY:
            try:
                return max(0, int(value)) / 1000
            except ValueError:
                return math.inf
    return 0.0


UPSTREAM_SATURATED = "UPSTREAM_SATURATED"
# A saturated upstream is asked again after about as long as an overloaded gateway asks for.
SATURATED_RETRY_AFTER_MS = 1000
# Refusals in a row are told delays spread over 75-125 % (as the pipeline's OVERLOADED ones): a
# crowd refused in the same instant must not come back in the same instant.
SATURATED_DELAY_STEPS = 9
# An upstream has stalled once 1 / STALLED_PART of its calls in flight have waited the stall time
# (Bulkhead.stalled).
STALLED_PART = 10


def _saturated_error(retry_after_ms: int) -> grpc.aio.AioRpcError:
    status = to_rpc_status(
        Unavailable(
            UPSTREAM_SATURATED,
            "服务繁忙，请 1 秒后再试 / service busy, please retry in 1 s",
            retry_after_ms,
        )
    )
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details
    )


class _Place:
    """One call's place in a Bulkhead: when it started, and for a place lent beyond the share,
    the future that ends the call early when the upstream stalls."""

    __slots__ = ("start", "evict")

    def __init__(self, start: float, evict: "asyncio.Future[None] | None") -> None:
        self.start, self.evict = start, evict


class Bulkhead:
    """The gateway's calls in flight to one upstream (see the module docstring): `share` of
    `capacity()` (the gateway's admission limit, read per call since it adapts) are the
    upstream's own; beyond them, places are lent to calls that may be ended early, while the
    upstream keeps answering: once a tenth of its calls have waited `stall_s` (`stalled`),
    nothing more is lent and the lent calls are ended with UPSTREAM_SATURATED."""

    __slots__ = (
        "upstream", "share", "stall_s", "most", "peak", "refused", "evicted", "_capacity", "_time", "_places", "_lent",
        "_watch",
    )

    def __init__(
        self,
        upstream: str,
        capacity: Callable[[], float],
        share: float,
        stall_s: float = 0.5,
        most: float = math.inf,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        """most: the capacity the share is taken of never counts above this (the admission
        limit's start value; see bound())."""
        if not 0 < share <= 1 or not stall_s > 0:
            raise ValueError("share must be in (0, 1] and stall_s > 0")
        self.upstream, self.share, self.stall_s, self.most = upstream, share, stall_s, most
        self._capacity, self._time = capacity, time_source
        # Insertion order is start order: the first is the oldest call in flight.
        self._places: dict[_Place, None] = {}
        self._lent: dict[_Place, None] = {}
        self._watch: asyncio.TimerHandle | None = None
        self.peak = 0  # the most in flight at once
        self.refused = 0  # refused before being sent
        self.evicted = 0  # lent calls ended because the upstream stalled

    @property
    def in_flight(self) -> int:
        return len(self._places)

    @property
    def lent(self) -> int:
        return len(self._lent)

    def bound(self) -> int:
        """The upstream's own places. Of the limit, but never of more than `most`: the admission
        limit grows while stuck calls hold half of it and fast calls the rest (it reads the stuck
        ones as use), and with it the places of a frozen upstream, each one more call stuck until
        its deadline (an e2e freeze of 2.5 s took the order share from 32 to 45)."""
        return max(1, int(min(self._capacity(), self.most) * self.share))

    def stalled(self) -> bool:
        """True while a tenth of the calls in flight (at least one) have waited stall_s or more.
        Why not the oldest alone: the p99 objective lets one call in a hundred take longer, so at
        a lunch peak of 40 calls one of them nearly always has; its age ended every lent call and
        refused the next (1 % of calls just past the objective refused ~7 % of a peak). A frozen
        upstream ages every call it holds, and one too slow for the objective most of them: a
        tenth is ten times the tail the objective allows."""
        needed = max(1, len(self._places) // STALLED_PART)
        cutoff = self._time() - self.stall_s
        old = 0
        for place in self._places:  # start order: the old ones come first
            if place.start > cutoff:
                return False
            old += 1
            if old >= needed:
                return True
        return False

    def enter(self, may_borrow: bool = True) -> _Place:
        """A place for one call, or the refusal raised (AioRpcError UNAVAILABLE / UPSTREAM_SATURATED).
        may_borrow=False: a call that must not be ended early (not idempotent) gets own places only."""
        n = len(self._places)
        now = self._time()
        if n < self.bound():
            place = _Place(now, None)
        elif may_borrow and not self.stalled():
            # No bound of its own: the admission limit bounds every call the gateway holds, and
            # checking it here again refused calls it had just admitted when it shrank between.
            place = _Place(now, asyncio.get_running_loop().create_future())
            self._lent[place] = None
            if self._watch is None:
                self._watch = asyncio.get_running_loop().call_later(self.stall_s / 4, self._check)
        else:
            self.refused += 1
            raise self.refusal()
        self._places[place] = None
        if n + 1 > self.peak:
            self.peak = n + 1
        return place

    def leave(self, place: _Place) -> None:
        del self._places[place]
        if place.evict is not None:
            self._lent.pop(place, None)

    def refusal(self) -> grpc.aio.AioRpcError:
        step = (self.refused + self.evicted) % SATURATED_DELAY_STEPS
        return _saturated_error(round(SATURATED_RETRY_AFTER_MS * (0.75 + 0.5 * step / (SATURATED_DELAY_STEPS - 1))))

    def _check(self) -> None:
        """While places are lent: end them once the upstream stalls."""
        self._watch = None
        if not self._lent:
            return
        if self.stalled():
            for place in self._lent:
                if place.evict is not None and not place.evict.done():
                    place.evict.set_result(None)
                    self.evicted += 1
            self._lent.clear()
            return
        self._watch = asyncio.get_running_loop().call_later(self.stall_s / 4, self._check)


class Bulkheaded:
    """A unary upstream method whose calls hold a place in the upstream's Bulkhead while they
    run (retries included: a call waiting out a backoff still holds its gateway slot).
    may_borrow: the method is safe to end early and ask again (IDEMPOTENT_METHODS)."""

    __slots__ = ("_method", "_bulkhead", "_may_borrow")

    def __init__(self, method: Callable[..., Any], bulkhead: Bulkhead, may_borrow: bool = True) -> None:
        self._method, self._bulkhead, self._may_borrow = method, bulkhead, may_borrow

    async def __call__(self, request: Any, *, timeout: float | None = None, metadata: Any = None) -> Any:
        bulkhead = self._bulkhead
        place = bulkhead.enter(self._may_borrow)
        try:
            if place.evict is None:
                return await self._method(request, timeout=timeout, metadata=metadata)
            return await _unless_evicted(self._method(request, timeout=timeout, metadata=metadata), place.evict, bulkhead)
        finally:
            bulkhead.leave(place)


async def _unless_evicted(call: Any, evict: "asyncio.Future[None]", bulkhead: Bulkhead) -> Any:
    task = asyncio.ensure_future(call)
    try:
        await asyncio.wait((task, evict), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return task.result()
    # The upstream stalled: this call gives its gateway slot back. It is idempotent (on its
    # request_id), so the user's retry gets what the upstream made of it, if anything.
    task.cancel()
    raise bulkhead.refusal()


class _RetryingStub:
    """A stub whose idempotent unary methods are Retrying, every unary method behind the
    upstream's Bulkhead; streams are the stub's own."""

    def __init__(self, stub: Any, methods: tuple[str, ...], bulkhead: Bulkhead) -> None:
        self._stub = stub
        self.bulkhead = bulkhead
        budget = RetryBudget()
        for name in methods:
            setattr(self, name, Bulkheaded(Retrying(getattr(stub, name), budget), bulkhead))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        if isinstance(method, grpc.aio.UnaryUnaryMultiCallable):
            method = Bulkheaded(method, self.bulkhead, may_borrow=False)
            setattr(self, name, method)  # wrapped once
        return method


@dataclass(frozen=True)
class CallOptions:
    """How the calls made on behalf of one end-user call are sent: before `deadline`
    (time.monotonic() seconds, None for no deadline), with the internal credential and the
    end-user call's criticality."""

    deadline: float | None
    metadata: tuple[tuple[str, str], ...]

    def timeout(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(DEADLINE_PASSED, "调用方已超时 / the caller's deadline has passed")
        return left

    def kw(self) -> dict[str, Any]:
        return {"timeout": self.timeout(), "metadata": self.metadata}


class Upstreams:
    """Stubs of the four internal services over long-lived channels, each behind its Bulkhead.
    capacity: the gateway's current admission limit (None = MIANDAN_MAX_CONCURRENCY, fixed)."""

    def __init__(self, settings: Any, capacity: Callable[[], float] | None = None) -> None:
        self.settings = settings
        if capacity is None:
            fixed = float(settings.max_concurrency)
            capacity = lambda: fixed  # noqa: E731
        share = getattr(settings, "upstream_share_percent", 50) / 100
        stall_s = getattr(settings, "upstream_stall_ms", 500.0) / 1000
        most = float(settings.max_concurrency)
        self.bulkheads = {
            name: Bulkhead(name, capacity, share, stall_s, most) for name in ("card", "catalog", "order", "lottery")
        }
        self._channels = {
            # No retryPolicy in the channel: gRPC's retries would wait out the pushback (above).
            name: open_channel(settings, addr)
            for name, addr in (
                ("card", settings.card_addr), ("catalog", settings.catalog_addr),
                ("order", settings.order_addr), ("lottery", settings.lottery_addr),
            )
        }
        self.card = _RetryingStub(
            card_service_pb2_grpc.CardServiceStub(self._channels["card"]), IDEMPOTENT_METHODS["miandan.card.v1.CardService"],
            self.bulkheads["card"],
        )
        self.catalog = _RetryingStub(
            catalog_service_pb2_grpc.CatalogServiceStub(self._channels["catalog"]),
            IDEMPOTENT_METHODS["miandan.catalog.v1.CatalogService"],
            self.bulkheads["catalog"],
        )
        self.order = _RetryingStub(
            order_service_pb2_grpc.OrderServiceStub(self._channels["order"]), IDEMPOTENT_METHODS["miandan.order.v1.OrderService"],
            self.bulkheads["order"],
        )
        self.lottery = _RetryingStub(
            lottery_service_pb2_grpc.LotteryServiceStub(self._channels["lottery"]),
            IDEMPOTENT_METHODS["miandan.lottery.v1.LotteryService"],
            self.bulkheads["lottery"],
        )
        base = internal_metadata(settings)
        # Built once per criticality: metadata tuples are reused by every call.
        self._metadata = {
            level: base + ((CRITICALITY_KEY, level),) for level in ("CRITICAL", "DEFAULT", "SHEDDABLE")
        }

    def metadata(self, criticality: str = DEFAULT) -> tuple[tuple[str, str], ...]:
        return self._metadata.get(criticality, self._metadata[DEFAULT])

    def options(self, deadline: float | None, criticality: str = DEFAULT) -> CallOptions:
        return CallOptions(deadline, self.metadata(criticality))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
