"""Clients of the card and catalog services, behind small Protocols the handlers depend on.

One channel per upstream, opened once and reused (channels multiplex calls). Every call carries
the internal credential and a timeout taken from the caller's remaining deadline. Upstream
failures come out as DomainErrors: the caller's own mistakes (someone else's card, an unknown
item) keep their code and reason; an upstream that is down, shedding or slow becomes UNAVAILABLE
UPSTREAM_UNAVAILABLE / UPSTREAM_OVERLOADED / DEADLINE_EXCEEDED UPSTREAM_DEADLINE, and one that
refuses our own credential (a rotation half done) UNAVAILABLE UPSTREAM_UNAVAILABLE too.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Protocol, Sequence

import grpc

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from services.common.auth import credential_refused, internal_metadata, open_channel, refuses_our_credential
from services.common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    UpstreamBusy,
    error_details,
)
from services.common.logging import BurstLog

from .model import Line, PricedOption, Problem, Quote, Selection

__all__ = [
    "Reservation",
    "CardClient",
    "CatalogClient",
    "GrpcCardClient",
    "GrpcCatalogClient",
    "translate",
    "HELD",
    "CONFIRMED",
    "RELEASED",
    "REFUNDED",
]

HELD, CONFIRMED, RELEASED, REFUNDED = "HELD", "CONFIRMED", "RELEASED", "REFUNDED"
# Reservations per ListReservations page the recovery pass asks for.
LIST_PAGE = 500
# The wait advised after an upstream's core refused a call for load: admission's own 1 s for
# CRITICAL and DEFAULT calls (the gateway advises the same for such refusals).
CORE_REFUSAL_RETRY_MS = 1_000
_STATE_NAMES = {
    card_pb2.RESERVATION_STATE_HELD: HELD,
    card_pb2.RESERVATION_STATE_CONFIRMED: CONFIRMED,
    card_pb2.RESERVATION_STATE_RELEASED: RELEASED,
    card_pb2.RESERVATION_STATE_REFUNDED: REFUNDED,
}


@dataclass(frozen=True)
class Reservation:
    card_id: str
    covered_fen: int
    state: str
    campaign_id: str = ""
    # Face value of the card held (0 when the card service did not say): lets the saga tell
    # whether a card of this campaign will cover an order in full before asking to redeem.
    face_value_fen: int = 0
    # The reservation key (order id, with ".<attempt>" after the first) and when the card
    # service made it: what the recovery pass reads from ListReservations.
    key: str = ""
    create_ms: int = 0
    # ReleaseReservation's answer: the card's validity ended while it was held, so the release
    # put it back EXPIRED, not spendable (as RefundCard's returned=False says of a redeemed one).
    card_expired: bool = False


class CardClient(Protocol):
    async def reserve(
        self, *, campaign_id: str, user_id: str, key: str, amount_fen: int, card_id: str, ttl_seconds: int, timeout: float,
        redeem: bool = False,
    ) -> Reservation:
        """redeem=True asks the card service to reserve and redeem in one transaction when the
        card covers amount_fen in full (state CONFIRMED); a card service that does not know the
        flag, or a card that covers only part, answers a plain HELD reservation. Raises FailedPrecondition NO_CARD_AVAILABLE / CARD_NOT_AVAILABLE, PermissionDenied
        CARD_NOT_OWNED, NotFound, Unavailable, DeadlineExceeded."""
        ...

    async def confirm(self, key: str, *, timeout: float) -> Reservation: ...

    async def release(self, key: str, *, timeout: float) -> Reservation | None:
        """Ends the key's hold as it stands, also one made after an earlier release of the key
        (the card service leaves such a hold alone for a replayed request id). None when the
        card service holds nothing for the key (never reserved)."""
        ...

    async def refund(self, key: str, *, timeout: float) -> bool:
        """True when the card is spendable again."""
        ...

    async def list_reservations(self, created_after_ms: int, page_token: str, *, timeout: float) -> tuple[list[Reservation], str]:
        """One page of every reservation created at or after created_after_ms (page_token ""
        for the first page), oldest first, and the next page's token ("" after the last)."""
        ...


class CatalogClient(Protocol):
    async def quote(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> Quote: ...

    async def store_brand(self, store_id: str, *, timeout: float) -> str:
        """The brand the store belongs to now. Raises NotFound STORE_NOT_FOUND, Unavailable."""
        ...


# --- error translation ------------------------------------------------------------------------

_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def translate(exc: grpc.aio.AioRpcError, upstream: str) -> DomainError:
    code = exc.code()
    info = error_details(exc)
    reason = info.get("reason") or code.name
    message = info.get("message") or exc.details() or reason
    if code is grpc.StatusCode.UNAVAILABLE:
        retry = info.get("retry_after_ms") or info.get("pushback_ms") or 200
        # A peer shedding (OVERLOADED) is named apart from a peer down, here and in this
        # service's refusal metrics: "the card service is shedding" is another page to an operator.
        return (UpstreamBusy if reason == "OVERLOADED" else Unavailable)(
            "UPSTREAM_OVERLOADED" if reason == "OVERLOADED" else "UPSTREAM_UNAVAILABLE",
            f"{upstream} 服务暂不可用，请稍后重试 / the {upstream} service is unavailable ({reason}), retry later",
            retry_after_ms=retry,
            metadata={"upstream": upstream, "upstream_reason": reason},
        )
    if code is grpc.StatusCode.CANCELLED and not info.get("reason"):
        # No miandan status attached: the upstream's gRPC core turned the call away before its
        # busy event loop took it in (MIANDAN_MAX_PENDING_CALLS), within milliseconds and with
        # no work done. A refusal for load, as the gateway restates it, not a timeout: named
        # "did not answer in time" it reached buyers without a retry delay.
        return UpstreamBusy(
            "UPSTREAM_UNAVAILABLE",
            f"{upstream} 服务繁忙，请稍后重试 / the {upstream} service is busy, retry later",
            retry_after_ms=CORE_REFUSAL_RETRY_MS,
            metadata={"upstream": upstream, "upstream_reason": code.name},
        )
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return DeadlineExceeded(
            "UPSTREAM_DEADLINE",
            f"{upstream} 服务响应超时 / the {upstream} service did not answer in time",
            metadata={"upstream": upstream},
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(reason, message, info.get("retry_after_ms"))
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(violations=info.get("violations") or (), reason=reason, message=message)
    if refuses_our_credential(exc):
        # Not the caller's doing and gone once the rotation reaches every process (see
        # credential_refused): UNAVAILABLE for the caller, one line per burst for the operator.
        _credential_log(upstream).log(
            "upstream refused our credential", extra={"upstream": upstream, "upstream_code": code.name, "upstream_reason": reason}
        )
        return credential_refused({"upstream": upstream})
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(reason, message)  # type: ignore[call-arg]
    # An upstream bug: not the caller's fault.
    return Internal("UPSTREAM_ERROR", f"{upstream}: {code.name} {reason}")


_log = logging.getLogger("miandan.order")
_credential_logs: dict[str, BurstLog] = {}


def _credential_log(upstream: str) -> BurstLog:
    log = _credential_logs.get(upstream)
    if log is None:
        log = _credential_logs[upstream] = BurstLog(_log)
    return log


# --- gRPC implementations ---------------------------------------------------------------------


def _reservation(r: card_pb2.Reservation, face_value_fen: int = 0) -> Reservation:
    return Reservation(
        r.card_id, r.covered_fen, _STATE_NAMES.get(r.state, "UNSPECIFIED"), r.campaign_id, face_value_fen,
        r.order_id, r.create_time.ToMilliseconds() if r.HasField("create_time") else 0,
    )


def reserve_request(
    *, campaign_id: str, user_id: str, key: str, amount_fen: int, card_id: str, ttl_seconds: int, redeem: bool
) -> card_service_pb2.ReserveCardRequest:
    """The ReserveCard the order service sends, batched or not. No request_id: a reservation is
    idempotent per order_id (the key) already, and the key is ours alone (order id + attempt),
    so the card service's (method, request_id) record would only cost it two index writes per
    order; and a retry of the same key after a price change gets its reservation replayed
    instead of REQUEST_ID_REUSED."""
    return card_service_pb2.ReserveCardRequest(
        campaign_id=campaign_id,
        user_id=user_id,
        order_id=key,
        amount_fen=amount_fen,
        card_id=card_id,
        ttl_seconds=ttl_seconds,
        redeem=redeem,
    )


class GrpcCardClient:
    def __init__(self, settings: Any, target: str | None = None) -> None:
        self.channel = open_channel(settings, target or settings.card_addr)
        self._stub = card_service_pb2_grpc.CardServiceStub(self.channel)
        self._md = internal_metadata(settings)
        self.calls: Counter[str] = Counter()

    async def close(self) -> None:
        await self.channel.close()

    async def reserve(
        self, *, campaign_id: str, user_id: str, key: str, amount_fen: int, card_id: str, ttl_seconds: int, timeout: float,
        redeem: bool = False,
    ) -> Reservation:
        self.calls["ReserveCard"] += 1
        req = reserve_request(
            campaign_id=campaign_id, user_id=user_id, key=key, amount_fen=amount_fen, card_id=card_id,
            ttl_seconds=ttl_seconds, redeem=redeem,
        )
        try:
            resp = await self._stub.ReserveCard(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "card") from None
        return _reservation(resp.reservation, resp.card.face_value_fen)

    async def confirm(self, key: str, *, timeout: float) -> Reservation:
        self.calls["ConfirmReservation"] += 1
        req = card_service_pb2.ConfirmReservationRequest(request_id=f"{key}:confirm", order_id=key)
        try:
            resp = await self._stub.ConfirmReservation(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "card") from None
        return _reservation(resp.reservation)

    async def release(self, key: str, *, timeout: float) -> Reservation | None:
        """Ends the hold the key has now, whichever hold of the key that is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        released = await self._release(key, f"{key}:release", timeout)
        if released is not None and released.state == HELD:
            # Only a replay answers HELD: our release of an earlier hold of this key was
            # answered, and the key was held again since (a retry of the placement after its
            # undo, _hold_card_again), a hold the card service then leaves alone. Every release
            # of ours means the hold as it stands, so it is asked again under an id of that
            # hold; left held, the card stayed out of its owner's hands for the whole TTL.
            released = await self._release(key, f"{key}:release@{released.create_ms}", max(deadline - loop.time(), 0.001))
        return released

    async def _release(self, key: str, request_id: str, timeout: float) -> Reservation | None:
        self.calls["ReleaseReservation"] += 1
        req = card_service_pb2.ReleaseReservationRequest(request_id=request_id, order_id=key)
        try:
            resp = await self._stub.ReleaseReservation(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise translate(exc, "card") from None
        return replace(_reservation(resp.reservation), card_expired=resp.card.state == card_pb2.CARD_STATE_EXPIRED)

    async def refund(self, key: str, *, timeout: float) -> bool:
        self.calls["RefundCard"] += 1
        req = card_service_pb2.RefundCardRequest(request_id=f"{key}:refund", order_id=key)
        try:
            resp = await self._stub.RefundCard(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "card") from None
        return resp.returned

    async def list_reservations(self, created_after_ms: int, page_token: str, *, timeout: float) -> tuple[list[Reservation], str]:
        self.calls["ListReservations"] += 1
        req = card_service_pb2.ListReservationsRequest(page_size=LIST_PAGE, page_token=page_token)
        if not page_token:
            req.created_after.FromMilliseconds(created_after_ms)
        try:
            resp = await self._stub.ListReservations(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "card") from None
        return [_reservation(r) for r in resp.reservations], resp.next_page_token


class GrpcCatalogClient:
    def __init__(self, settings: Any, target: str | None = None) -> None:
        self.channel = open_channel(settings, target or settings.catalog_addr)
        self._stub = catalog_service_pb2_grpc.CatalogServiceStub(self.channel)
        self._md = internal_metadata(settings)
        self.calls: Counter[str] = Counter()

    async def close(self) -> None:
        await self.channel.close()

    async def quote(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> Quote:
        return quote_of(await self.quote_response(store_id, selections, timeout=timeout), store_id)

    async def quote_response(self, store_id: str, selections: Sequence[Selection], *, timeout: float) -> Any:
        """The catalog's QuoteResponse itself (the quote cache also reads its version stamp)."""
        self.calls["Quote"] += 1
        req = catalog_service_pb2.QuoteRequest(
            store_id=store_id,
            lines=[
                catalog_pb2.LineSelection(
                    item_id=s.item_id,
                    quantity=s.quantity,
                    options=[catalog_pb2.OptionChoice(group_id=g, option_id=o) for g, o in s.options],
                )
                for s in selections
            ],
        )
        try:
            return await self._stub.Quote(req, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "catalog") from None


    async def store_brand(self, store_id: str, *, timeout: float) -> str:
        self.calls["GetStore"] += 1
        try:
            resp = await self._stub.GetStore(catalog_service_pb2.GetStoreRequest(store_id=store_id), metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, "catalog") from None
        return resp.store.brand_id


def quote_of(resp: Any, store_id: str) -> Quote:
    """A catalog QuoteResponse as the order model's Quote."""
    q = resp.quote
    return Quote(
        store_id=q.store_id or store_id,
        store_name=q.store_name,
        brand_id=q.brand_id,
        lines=tuple(
            Line(
                ql.item_id,
                ql.item_name,
                ql.quantity,
                tuple(PricedOption(o.group_id, o.option_id, o.name, o.price_delta_fen) for o in ql.options),
                ql.unit_price_fen,
                ql.line_total_fen,
            )
            for ql in q.lines
        ),
        line_indexes=tuple(ql.line_index for ql in q.lines),
        total_fen=q.total_fen,
        problems=tuple(Problem(p.line_index, p.item_id, p.reason, p.message) for p in resp.problems),
    )

