"""The card client of the order service that coalesces concurrent reservations.

Why: under load most of the CPU of a PlaceOrder is the Python gRPC machinery of each RPC, on
both sides. Reservations that are waiting at the same moment go out as ONE ReserveCards RPC,
which the card service runs as one group-commit transaction: one call's cost shared by many
orders.

Natural batching, no timers: while fewer than `max_in_flight` card RPCs of ours are in flight,
whatever is queued goes out at once (a lone call at low load is sent on the next loop turn, as
a plain ReserveCard: no added latency, no batch overhead). Once that many are in flight, new
reservations queue, and the queue goes out (up to `max_entries` per RPC) as soon as one returns.
The batch size therefore follows the load by itself.

What each caller sees is exactly what GrpcCardClient.reserve gives it:
* its own deadline: it gives up at its own timeout with the same DeadlineExceeded
  UPSTREAM_DEADLINE (the saga then compensates the unknown outcome as it does today); the batch
  RPC's timeout is the largest remaining among its entries;
* its own outcome: an entry's error comes back as a google.rpc.Status and is turned into the
  very DomainError (code, reason, message, retry) `upstream.translate` makes of a failed
  ReserveCard, because it is fed to `translate` as the AioRpcError the unary call would have
  raised;
* a failure of the whole RPC (card down, overloaded, deadline) fails every entry of that batch
  as the unary call would have failed;
* but an entry it gave up on may still be in flight to the card service, where it can land
  after the caller's compensation: a ReleaseReservation or RefundCard processed before a late
  redeem would leave a REDEEMED card under an aborted order (the kill drill found exactly that).
  So release() and refund() of a key whose reservation is in flight first wait for every RPC
  carrying it to be answered (each is bounded by its own timeout; there are two when the saga
  repeated a reservation cut short by an earlier caller's deadline): the undo is then ordered
  after the do, as it is on the unary path, where the caller's deadline cancels the card's
  unstarted write;
* a card service without ReserveCards (UNIMPLEMENTED: an older build during a rolling deploy)
  gets plain ReserveCard calls, and is probed again after `unimplemented_retry_s`.

`calls` is the wrapped client's Counter, so `server.upstream_calls` stays truthful: ReserveCard
counts unary calls, ReserveCards batch RPCs and ReserveCards.entries the reservations they carried.
MIANDAN_CARD_BATCH=0 turns batching off (card_client() then returns the plain GrpcCardClient).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import grpc

from miandan.card.v1 import card_service_pb2, card_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.errors import STATUS_DETAILS_KEY, DomainError, Internal

from .upstream import GrpcCardClient, Reservation, _reservation, reserve_request, translate

__all__ = ["BatchingCardClient", "card_client", "batching_enabled", "ENV_VAR", "MAX_IN_FLIGHT", "MAX_ENTRIES"]

log = logging.getLogger("miandan.order")

ENV_VAR = "MIANDAN_CARD_BATCH"
# One RPC in flight: the next batch fills while it is answered. A second one in flight made
# smaller batches and more lone ReserveCard calls without lowering latency on a CPU-bound card
# service (bench.order, two pairs of runs: 12.8-13.5 entries per batch instead of 9.8-10.4,
# 53-61 unary calls per 8 s instead of 141-169, card CPU 469-484 instead of 499-569 us per
# order, p99 134-137 ms instead of 136-155 ms).
MAX_IN_FLIGHT = 1
# The card store group-commits up to 128 writes per transaction (services.common.db.MAX_BATCH);
# the card service accepts up to 256 entries per RPC.
MAX_ENTRIES = 128
UNIMPLEMENTED_RETRY_S = 60.0
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_TRUE, _FALSE = ("1", "true", "yes", "on", ""), ("0", "false", "no", "off")


def batching_enabled(env: Mapping[str, str] | None = None) -> bool:
    e = os.environ if env is None else env
    raw = (e.get(ENV_VAR) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{ENV_VAR}={raw!r}: expected 1/0 (true/false, yes/no, on/off)")


def card_client(settings: Any, env: Mapping[str, str] | None = None) -> "GrpcCardClient | BatchingCardClient":
    """The order service's card client: batching unless MIANDAN_CARD_BATCH=0."""
    unary = GrpcCardClient(settings)
    if not batching_enabled(env):
        return unary
    return BatchingCardClient(unary, metadata=internal_metadata(settings))


@dataclass(eq=False)
class _Waiter:
    """One reserve() call waiting for its outcome."""

    args: dict[str, Any]  # GrpcCardClient.reserve's keyword arguments but timeout
    deadline: float  # loop.time()
    future: asyncio.Future[Reservation]


def _deadline_error() -> DomainError:
    # What the unary call raises when its timeout fires, made by the same translate().
    return translate(grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, None, None, "Deadline Exceeded"), "card")


def _rpc_error(status: Any) -> grpc.aio.AioRpcError:
    """The AioRpcError a unary ReserveCard failing with this google.rpc.Status would have raised."""
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    trailing = grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, status.message)


def entry_request(args: Mapping[str, Any]) -> card_service_pb2.ReserveCardRequest:
    """The ReserveCardRequest GrpcCardClient.reserve sends for these arguments (same idempotency
    key, so a batched entry and a unary retry of it are one reservation to the card service)."""
    return reserve_request(**args)


class BatchingCardClient:
    """A CardClient (services.order.upstream) over a GrpcCardClient: reserve() is coalesced,
    everything else is the wrapped client's."""

    def __init__(
        self,
        unary: GrpcCardClient,
        *,
        metadata: Sequence[tuple[str, str]],
        stub: Any = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_entries: int = MAX_ENTRIES,
        unimplemented_retry_s: float = UNIMPLEMENTED_RETRY_S,
    ) -> None:
        if max_in_flight < 1 or not 1 <= max_entries <= 256:
            raise ValueError("max_in_flight must be >= 1 and max_entries 1..256")
        self.unary = unary
        self.calls = unary.calls
        self._stub = stub if stub is not None else card_service_pb2_grpc.CardServiceStub(unary.channel)
        self._md = tuple(metadata)
        self.max_in_flight = max_in_flight
        self.max_entries = max_entries
        self.unimplemented_retry_s = unimplemented_retry_s
        self._queue: deque[_Waiter] = deque()
        self._in_flight = 0
        # A sender task is scheduled but has not taken its batch yet: calls arriving meanwhile
        # ride with it instead of starting RPCs of their own.
        self._scheduled = False
        self._senders: set[asyncio.Task[None]] = set()
        self._unimplemented_until = 0.0  # loop.time() before which ReserveCards is not tried
        self._batch_ids = itertools.count(1)
        self._closed = False
        # Reservation key -> one future per RPC carrying it, done when that RPC has been
        # answered (see release()). More than one when the saga repeats a reservation whose
        # caller's deadline ran out while its first RPC was still in flight.
        self._sent: dict[str, list[asyncio.Future[None]]] = {}

    # --- the CardClient protocol ------------------------------------------------------------

    async def reserve(
        self, *, campaign_id: str, user_id: str, key: str, amount_fen: int, card_id: str, ttl_seconds: int, timeout: float,
        redeem: bool = False,
    ) -> Reservation:
        args = dict(
            campaign_id=campaign_id, user_id=user_id, key=key, amount_fen=amount_fen, card_id=card_id,
            ttl_seconds=ttl_seconds, redeem=redeem,
        )
        if self._closed:
            return await self.unary.reserve(**args, timeout=timeout)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(args, loop.time() + timeout, loop.create_future())
        self._queue.append(waiter)
        self._pump()
        timer = loop.call_at(waiter.deadline, _expire, waiter.future)
        try:
            return await waiter.future
        finally:
            timer.cancel()

    async def confirm(self, key: str, *, timeout: float) -> Reservation:
        return await self.unary.confirm(key, timeout=timeout)

    async def release(self, key: str, *, timeout: float) -> Reservation | None:
        await self._answered(key)
        return await self.unary.release(key, timeout=timeout)

    async def refund(self, key: str, *, timeout: float) -> bool:
        await self._answered(key)
        return await self.unary.refund(key, timeout=timeout)

    async def list_reservations(self, created_after_ms: int, page_token: str, *, timeout: float) -> tuple[list[Reservation], str]:
        return await self.unary.list_reservations(created_after_ms, page_token, timeout=timeout)

    async def _answered(self, key: str) -> None:
        """Wait until no reservation of `key` is in flight any more (module docstring)."""
        for sent in list(self._sent.get(key, ())):
            await asyncio.shield(sent)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._senders):
            task.cancel()
        if self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)
        while self._queue:
            _fail(self._queue.popleft(), _closed_error())
        await self.unary.close()

    # --- batching -----------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._queue and not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(), name="card-reserve-batch")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _send(self) -> None:
        # The batch is taken when the task first runs, not when it was scheduled: every call
        # made in the same loop turn goes with it.
        self._scheduled = False
        batch: list[_Waiter] = []
        try:
            batch = self._take()
            self._pump()  # more than one RPC's worth queued, and room for another RPC
            if batch:
                await self._deliver(batch)
        except BaseException as exc:
            # Nothing may be left waiting forever: cancelled by close(), or a bug of ours.
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("card reservation batch failed")
            for w in batch:
                _fail(w, _closed_error() if isinstance(exc, asyncio.CancelledError) else _bug_error())
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            if not self._closed:
                self._pump()

    def _take(self) -> list[_Waiter]:
        now = asyncio.get_running_loop().time()
        batch: list[_Waiter] = []
        while self._queue and len(batch) < self.max_entries:
            w = self._queue.popleft()
            if w.future.done():  # its caller gave up (deadline) or went away (cancelled)
                continue
            if w.deadline <= now:
                _fail(w, _deadline_error())
                continue
            batch.append(w)
        return batch

    async def _deliver(self, batch: list[_Waiter]) -> None:
        answered = asyncio.get_running_loop().create_future()
        keys = [w.args["key"] for w in batch]
        for key in keys:
            self._sent.setdefault(key, []).append(answered)
        try:
            await self._send_batch(batch)
        finally:
            for key in keys:
                sent = self._sent[key]
                sent.remove(answered)
                if not sent:
                    del self._sent[key]
            answered.set_result(None)

    async def _send_batch(self, batch: list[_Waiter]) -> None:
        loop = asyncio.get_running_loop()
        if len(batch) == 1 or loop.time() < self._unimplemented_until:
            await self._each_alone(batch)
            return
        timeout = max(w.deadline for w in batch) - loop.time()
        self.calls["ReserveCards"] += 1
        self.calls["ReserveCards.entries"] += len(batch)
        request = card_service_pb2.ReserveCardsRequest(
            request_id=f"order-batch-{os.getpid()}-{next(self._batch_ids)}",
            reservations=[entry_request(w.args) for w in batch],
        )
        try:
            response = await self._stub.ReserveCards(request, metadata=self._md, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                log.warning("card service has no ReserveCards: reserving one call at a time")
                self._unimplemented_until = loop.time() + self.unimplemented_retry_s
                await self._each_alone(batch)
                return
            for w in batch:
                _fail(w, translate(exc, "card"))  # a fresh error each: they are raised separately
            return
        if len(response.results) != len(batch):
            for w in batch:
                _fail(w, Internal("UPSTREAM_ERROR", f"card: ReserveCards answered {len(response.results)} of {len(batch)}"))
            return
        for w, result in zip(batch, response.results):
            if w.future.done():
                continue
            outcome = result.WhichOneof("outcome")
            if outcome == "reservation":
                r = result.reservation
                w.future.set_result(_reservation(r.reservation, r.card.face_value_fen))
            elif outcome == "error":
                w.future.set_exception(translate(_rpc_error(result.error), "card"))
            else:
                w.future.set_exception(Internal("UPSTREAM_ERROR", "card: ReserveCards entry without outcome"))

    async def _each_alone(self, batch: list[_Waiter]) -> None:
        await asyncio.gather(*(self._alone(w) for w in batch))

    async def _alone(self, w: _Waiter) -> None:
        """The plain ReserveCard of one waiter, bounded by its own deadline."""
        left = w.deadline - asyncio.get_running_loop().time()
        if w.future.done():
            return
        if left <= 0:
            _fail(w, _deadline_error())
            return
        try:
            reservation = await self.unary.reserve(**w.args, timeout=left)
        except DomainError as exc:
            _fail(w, exc)
        else:
            if not w.future.done():
                w.future.set_result(reservation)


def _expire(future: asyncio.Future[Reservation]) -> None:
    if not future.done():
        future.set_exception(_deadline_error())


def _fail(w: _Waiter, err: BaseException) -> None:
    if not w.future.done():
        w.future.set_exception(err)


def _closed_error() -> DomainError:
    return translate(grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "card client closed"), "card")


def _bug_error() -> DomainError:
    return Internal("UPSTREAM_ERROR", "card: reservation batch failed")
