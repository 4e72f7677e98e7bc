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
from services.common.errors import PUSHBACK_KEY, STATUS_DETAILS_KEY, DeadlineExceeded

__all__ = ["IDEMPOTENT_METHODS", "RetryBudget", "Retrying", "CallOptions", "Upstreams", "is_transport_failure"]

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


class _RetryingStub:
    """A stub whose idempotent unary methods are Retrying; everything else is the stub's own."""

    def __init__(self, stub: Any, methods: tuple[str, ...]) -> None:
        self._stub = stub
        budget = RetryBudget()
        for name in methods:
            setattr(self, name, Retrying(getattr(stub, name), budget))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)


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
    """Stubs of the four internal services over long-lived channels."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._channels = {
            # No retryPolicy in the channel: gRPC's retries would wait out the pushback (above).
            name: open_channel(settings, addr)
            for name, addr in (
                ("card", settings.card_addr), ("catalog", settings.catalog_addr),
                ("order", settings.order_addr), ("lottery", settings.lottery_addr),
            )
        }
        self.card = _RetryingStub(
            card_service_pb2_grpc.CardServiceStub(self._channels["card"]), IDEMPOTENT_METHODS["miandan.card.v1.CardService"]
        )
        self.catalog = _RetryingStub(
            catalog_service_pb2_grpc.CatalogServiceStub(self._channels["catalog"]),
            IDEMPOTENT_METHODS["miandan.catalog.v1.CatalogService"],
        )
        self.order = _RetryingStub(
            order_service_pb2_grpc.OrderServiceStub(self._channels["order"]), IDEMPOTENT_METHODS["miandan.order.v1.OrderService"]
        )
        self.lottery = _RetryingStub(
            lottery_service_pb2_grpc.LotteryServiceStub(self._channels["lottery"]),
            IDEMPOTENT_METHODS["miandan.lottery.v1.LotteryService"],
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
