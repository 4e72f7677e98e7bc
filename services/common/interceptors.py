"""The single server interceptor every miandan service runs (CallPipeline).

Per call, in order: (health and reflection bypass everything, so probes stay answerable under
overload) -> auth (and a merchant grant's pace) -> deadline already passed? -> admission ->
handler -> map its exception to a rich status -> metrics + one log line.

Why one interceptor doing everything: each grpc.aio interceptor adds a coroutine hop and a
handler lookup per call; the suite is benchmarked on a 3-hop path, so the pipeline is a single
wrapper whose per-method work (role, criticality, metric children, wrapped handler) is computed
once and cached by method name. Rejections (auth, overload) abort with pre-built statuses.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Callable, Mapping

import grpc

from .admission import CRITICAL, CRITICALITIES, CRITICALITY_KEY, DEFAULT, AdmissionController, Overloaded
from .auth import (
    CREDENTIAL_INVALID, CREDENTIAL_REASONS, MERCHANT_ROLES, PUBLIC, AccessPolicy, Role, credential_refused, refuses_our_credential,
)
from .errors import (
    PUSHBACK_KEY,
    STATUS_DETAILS_KEY,
    DeadlineExceeded,
    DomainError,
    Internal,
    InvalidArgument,
    Unavailable,
    UpstreamBusy,
    error_details,
    to_rpc_status,
)
from .logging import BurstLog
from .metrics import MethodMetrics, RpcMetrics

__all__ = ["CallPipeline", "REQUEST_ID_KEY", "BYPASS_PREFIXES", "MALFORMED_REQUEST"]

REQUEST_ID_KEY = "x-request-id"
# ErrorInfo reason of a request whose bytes do not parse as the method's request message.
MALFORMED_REQUEST = "MALFORMED_REQUEST"
# Infrastructure services: never authenticated, never shed, not counted.
BYPASS_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

_AbortError = grpc.aio.AbortError
_log = logging.getLogger("miandan.auth")
_AioRpcError = grpc.aio.AioRpcError
_perf = time.perf_counter
_INTERNAL = to_rpc_status(Internal("INTERNAL", "服务内部错误 / internal error"))
_DEADLINE = to_rpc_status(DeadlineExceeded("DEADLINE_EXCEEDED", "处理超时 / deadline exceeded"))
_CREDENTIAL_REFUSED = to_rpc_status(credential_refused())
# Answers that say "busy, or not reachable now: retry": counted by reason (miandan_rpc_refusals_total).
_BUSY_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
_FORWARDED_KEYS = (STATUS_DETAILS_KEY, PUSHBACK_KEY)
# The level of a call made with a merchant's credential alone: DEFAULT at most.
_MERCHANT_CRITICALITY = {CRITICAL: DEFAULT}


# An upstream that refused the call for load (its admission said OVERLOADED, or its gRPC core
# turned the call away and retries did not help: UpstreamBusy) is the clearest congestion signal
# a relaying service gets. The call ends as a miss for admission (like a deadline), so the
# relay's limit shrinks and it refuses the excess itself, at once, instead of admitting calls it
# can only pass on as refusals after a round trip and retries (bench.overload at 3-5x:
# rejection p99 77-104 ms -> 58-59 ms, goodput unchanged). Not an upstream that is down (its
# calls fail at once and hold nothing), nor the gateway's bulkhead (UPSTREAM_SATURATED: one stuck
# upstream must not shrink the gateway for the others).
_BUSY_REASONS = frozenset({"OVERLOADED", "UPSTREAM_OVERLOADED"})


class _Plan:
    """Everything about a method that does not change between calls."""

    __slots__ = ("method", "role", "merchant", "criticality", "metrics", "learn")

    def __init__(self, method: str, role: Role, criticality: str, metrics: MethodMetrics | None, learn: bool) -> None:
        self.method = method
        self.role = role
        self.merchant = role in MERCHANT_ROLES  # paced per merchant (AccessPolicy.pace)
        self.criticality = criticality
        self.metrics = metrics
        # Only unary calls teach the admission controller: a stream's duration is not latency.
        self.learn = learn


class _OpenStream:
    """One response stream in progress: its task, and whether it waits for its next item (only
    then may a stop cancel it: sending is gRPC's own code, which would end it CANCELLED)."""

    __slots__ = ("task", "waiting", "ended_by_stop")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.waiting = False
        self.ended_by_stop = False


SHUTTING_DOWN = "SHUTTING_DOWN"
# How soon a client whose stream a stop ended should come back: a restarted service serves again
# within a second (make drill: 0.3-0.9 s after a kill).
STOP_RETRY_AFTER_MS = 1_000


def _stream_ended_by_stop() -> Unavailable:
    return Unavailable(
        SHUTTING_DOWN, "服务正在重启，请稍后重新连接 / the service is restarting: open the stream again", STOP_RETRY_AFTER_MS
    )


class _Status(grpc.Status):
    __slots__ = ("code", "details", "trailing_metadata")

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class CallPipeline(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        service_name: str,
        settings: Any,
        policy: AccessPolicy,
        admission: AdmissionController,
        criticality: Mapping[str, str] | None,
        metrics: RpcMetrics | None,
        logger: logging.Logger,
    ) -> None:
        self.service_name = service_name
        self.policy = policy
        self.admission = admission
        self.criticality = dict(criticality or {})
        for method, level in self.criticality.items():
            if level not in CRITICALITIES:
                raise ValueError(f"criticality of {method} must be one of {CRITICALITIES}, got {level!r}")
        self.metrics = metrics
        self.logger = logger
        # log_calls=True: per-call lines at INFO; otherwise at DEBUG (visible only when debugging).
        self.call_log_level = logging.INFO if getattr(settings, "log_calls", True) else logging.DEBUG
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        # Open response streams (WatchOrder, WatchMenuChanges...), ended by end_streams() when the
        # server stops: they never finish on their own, so each would hold the stop for the whole
        # grace period (the old process keeping its port while it refuses every new call).
        self._streams: set[_OpenStream] = set()
        self._draining = False
        self._status_cache: dict[DomainError, grpc.Status] = {}
        self._overload = {level: _overload_statuses(admission, level) for level in CRITICALITIES}
        self._refused = 0
        self._credential_refusals = BurstLog(logger)
        if metrics is not None:
            self._in_flight = metrics.in_flight.labels(service_name)
            limit_gauge = metrics.admission_limit.labels(service_name)
            limit_gauge.set(admission.limit)
            admission.on_limit_change = limit_gauge.set
        else:
            self._in_flight = None

    def end_streams(self) -> int:
        """End every open response stream with UNAVAILABLE SHUTTING_DOWN (and refuse new ones):
        the first step of a stop, before the drain of unary calls. A stream waiting for its next
        item ends now; one sending an item ends once it is sent. Returns how many were open."""
        self._draining = True
        for stream in self._streams:
            stream.ended_by_stop = True
            if stream.waiting and stream.task is not None:
                stream.task.cancel()
        return len(self._streams)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is not None:
            # Handlers are registered before start and never change, so the lookup is cached.
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # grpc answers UNIMPLEMENTED
        wrapped = handler if method.startswith(BYPASS_PREFIXES) else self._wrap(method, handler)
        self._handlers[method] = wrapped
        return wrapped

    # --- building wrappers (once per method) ----------------------------------------------

    def _plan(self, method: str, learn: bool) -> _Plan:
        short = method.rsplit("/", 1)[-1]
        crit = self.criticality.get(method) or self.criticality.get(short) or "DEFAULT"
        mm = self.metrics.method(self.service_name, short) if self.metrics is not None else None
        return _Plan(method, self.policy.role(method), crit, mm, learn)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deser, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_response(self._plan(method, True), handler.unary_unary), _parsing(deser, streamed=False), ser
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary_response(self._plan(method, False), handler.stream_unary), _parsing(deser, streamed=True), ser
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream_response(self._plan(method, False), handler.unary_stream), _parsing(deser, streamed=False), ser
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream_response(self._plan(method, False), handler.stream_stream), _parsing(deser, streamed=True), ser
        )

    def _unary_response(self, plan: _Plan, behavior: Callable[..., Any]) -> Callable[..., Any]:
        enter, finish, fail = self._enter, self._finish, self._fail
        is_coroutine = inspect.iscoroutinefunction(behavior)

        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await enter(plan, context)
            start = _perf()
            code, ok, status = "OK", True, None
            try:
                if type(request) is Malformed:
                    raise request.error
                if is_coroutine:
                    return await behavior(request, context)
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            except asyncio.CancelledError:
                code, ok = "CANCELLED", False
                raise
            except _AbortError:
                code = _context_code(context)
                raise
            except BaseException as exc:  # noqa: BLE001 - classified in _fail; BaseExceptions re-raised there
                code, ok, status = fail(plan, exc, request, context)
            finally:
                finish(plan, start, code, ok, request, context)
            await context.abort_with_status(status)

        return unary_response

    def _stream_response(self, plan: _Plan, behavior: Callable[..., Any]) -> Callable[..., Any]:
        enter, finish, fail, streams = self._enter, self._finish, self._fail, self._streams

        if inspect.isasyncgenfunction(behavior) or inspect.isgeneratorfunction(behavior):
            is_async = inspect.isasyncgenfunction(behavior)

            async def stream_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await enter(plan, context)
                start = _perf()
                code, ok, status = "OK", True, None
                stream = _OpenStream(asyncio.current_task())
                streams.add(stream)
                try:
                    if type(request) is Malformed:
                        raise request.error
                    if is_async:
                        items = behavior(request, context).__aiter__()
                        while True:
                            if self._draining:
                                raise _stream_ended_by_stop()
                            stream.waiting = True
                            try:
                                item = await items.__anext__()
                            except StopAsyncIteration:
                                break
                            finally:
                                stream.waiting = False
                            yield item
                    else:
                        for item in behavior(request, context):
                            yield item
                except asyncio.CancelledError as exc:
                    if not stream.ended_by_stop:
                        code, ok = "CANCELLED", False
                        raise
                    # end_streams() cancelled the wait for the next item: the stream ends
                    # UNAVAILABLE with retry advice, as a call refused for the stop would.
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    code, ok, status = fail(plan, _stream_ended_by_stop(), request, context)
                    del exc
                except GeneratorExit:
                    code, ok = "CANCELLED", False
                    raise
                except _AbortError:
                    code = _context_code(context)
                    raise
                except BaseException as exc:  # noqa: BLE001
                    code, ok, status = fail(plan, exc, request, context)
                finally:
                    streams.discard(stream)
                    finish(plan, start, code, ok, request, context)
                if status is not None:
                    await context.abort_with_status(status)

            return stream_response

        # Coroutine-style streaming handler (writes with context.write / reads with context.read).
        return self._unary_response(plan, behavior)

    # --- per call --------------------------------------------------------------------------

    async def _enter(self, plan: _Plan, context: grpc.aio.ServicerContext) -> None:
        """Auth, deadline and admission; aborts (raises) on rejection, else holds a slot for
        unary-response calls (released in _finish)."""
        metadata = context.invocation_metadata()
        crit = plan.criticality
        if plan.role is not PUBLIC:
            try:
                err = self.policy.check(plan.role, metadata, context)
                if err is None and plan.merchant:
                    # Before admission: a merchant calling beyond its pace takes no slot, nor a
                    # place in the wait queue, from the calls admission is there for.
                    err = self.policy.pace(plan.role, metadata)
            except Exception:  # noqa: BLE001 - a credential we failed to read is not a credential
                # Outside the handler's error mapping: an exception here would reach the caller
                # as UNKNOWN with its text. Fail closed, say why in the log.
                _log.exception("credential check failed", extra={"method": plan.method})
                err = CREDENTIAL_INVALID
            if err is not None:
                self._reject(plan, err.code, context)
                if err.code in _BUSY_CODES and self.metrics is not None:
                    self.metrics.refused(self.service_name, err.code, err.reason)
                await context.abort_with_status(self._constant_status(err))
            if plan.role in MERCHANT_ROLES and not self.policy.is_internal(metadata, context):
                # A merchant's credential alone passes merchant RPCs: it may not choose its
                # call's criticality, nor run at a level the method has for the platform's
                # callers (CancelOrder is CRITICAL for the gateway cancelling for a buyer): an
                # outside party's flood must be shed before orders and payments.
                crit = _MERCHANT_CRITICALITY.get(crit, crit)
            else:
                crit = _override(metadata, crit, None, context)
        else:
            crit = _override(metadata, crit, self.policy, context)
        left = context.time_remaining()
        if left is not None and left <= 0:
            # Nobody is waiting for the answer any more: don't start work.
            self._reject(plan, "DEADLINE_EXCEEDED", context)
            await context.abort_with_status(_DEADLINE)
        admission = self.admission
        if not admission.try_enter(crit) and not await admission.wait_enter(crit):
            if plan.metrics is not None:
                plan.metrics.shed(crit)
                self.metrics.refused(self.service_name, "UNAVAILABLE", "OVERLOADED")
            self._reject(plan, "UNAVAILABLE", context)
            statuses = self._overload[crit]
            self._refused += 1
            await context.abort_with_status(statuses[self._refused % len(statuses)])
        if not plan.learn:
            # Streams are gated (refused when overloaded) but don't hold a slot for their lifetime.
            admission.release(None)
        if self._in_flight is not None:
            self._in_flight.inc()

    def _finish(self, plan: _Plan, start: float, code: str, ok: bool, request: Any, context: Any) -> None:
        latency = _perf() - start
        if plan.learn:
            self.admission.release(latency, ok)
        if self._in_flight is not None:
            self._in_flight.dec()
        mm = plan.metrics
        if mm is not None:
            mm.latency.observe(latency)
            mm.count(code)
        if self.logger.isEnabledFor(self.call_log_level):
            self.logger.log(
                self.call_log_level,
                "rpc",
                extra={
                    "method": plan.method,
                    "code": code,
                    "latency_ms": round(latency * 1000, 3),
                    "request_id": _request_id(request, context),
                },
            )

    def _fail(self, plan: _Plan, exc: BaseException, request: Any, context: Any) -> tuple[str, bool, grpc.Status]:
        """(code, ok-for-admission, status) for an exception escaping the handler."""
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt / SystemExit are not ours to swallow
        try:
            return self._classify(plan, exc, request, context)
        except Exception as failure:  # noqa: BLE001
            # Turning the error into a status failed (a DomainError whose message or violation
            # is not text, an upstream's status details that are not a google.rpc.Status).
            # Raised from here, it reached the caller as gRPC's own UNKNOWN "Unexpected <class
            # ...>: <text>", internals included, and the metrics counted the call as OK.
            self.logger.error(
                "could not map a handler's exception to a status",
                exc_info=failure,
                extra={"method": plan.method, "request_id": _request_id(request, context), "handler_error": repr(exc)[:500]},
            )
            return "INTERNAL", True, _INTERNAL

    def _classify(self, plan: _Plan, exc: Exception, request: Any, context: Any) -> tuple[str, bool, grpc.Status]:
        if isinstance(exc, DomainError):
            if exc.code in _BUSY_CODES and self.metrics is not None:
                self.metrics.refused(self.service_name, exc.code, exc.reason)
            return exc.code, exc.code != "DEADLINE_EXCEEDED" and not isinstance(exc, UpstreamBusy), self._status_of(exc)
        if isinstance(exc, asyncio.TimeoutError):
            return "DEADLINE_EXCEEDED", False, _DEADLINE
        if isinstance(exc, _AioRpcError):
            return self._forward(plan, exc)
        # Anything else is a bug: say so loudly, tell the caller nothing internal.
        self.logger.error(
            "unexpected exception in handler",
            exc_info=exc,
            extra={"method": plan.method, "request_id": _request_id(request, context)},
        )
        return "INTERNAL", True, _INTERNAL

    def _forward(self, plan: _Plan, exc: grpc.aio.AioRpcError) -> tuple[str, bool, grpc.Status]:
        """An upstream call failed and the handler let it through: pass the upstream's status
        (with its ErrorInfo/RetryInfo and pushback) on, so e.g. OVERLOADED reaches the client."""
        code = exc.code()
        if refuses_our_credential(exc):
            # Our credential was refused by a peer (credential_refused says why this is not
            # INTERNAL). Every call fails alike until the deployment is fixed: one line per
            # burst for the operator, a count per call in the refusals metric. Any other
            # UNAUTHENTICATED / PERMISSION_DENIED is the peer's answer about the caller's request
            # (CARD_NOT_OWNED: a user naming another user's card) and passes on like any other.
            reason = error_details(exc)["reason"] or code.name
            self._credential_refusals.log(
                "upstream refused our credential",
                extra={"method": plan.method, "upstream_code": code.name, "upstream_reason": reason, "upstream": str(exc.details())},
            )
            if self.metrics is not None:
                self.metrics.refused(self.service_name, "UNAVAILABLE", "UPSTREAM_" + reason)
            return "UNAVAILABLE", True, _CREDENTIAL_REFUSED
        ok = code is not grpc.StatusCode.DEADLINE_EXCEEDED
        if code.name in _BUSY_CODES:
            reason = error_details(exc)["reason"] or code.name
            ok = ok and reason not in _BUSY_REASONS
            if self.metrics is not None:
                # Passed on from a peer: named as such, so a peer's OVERLOADED is not this service's.
                self.metrics.refused(self.service_name, code.name, reason if reason.startswith("UPSTREAM_") else "UPSTREAM_" + reason)
        trailing = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if k in _FORWARDED_KEYS)
        return code.name, ok, _Status(code, exc.details() or "", trailing)

    def _status_of(self, err: DomainError) -> grpc.Status:
        return to_rpc_status(err)

    def _constant_status(self, err: DomainError) -> grpc.Status:
        # The credential rejections are module constants: encode each once. Keyed by the object
        # itself (kept alive by the dict), never by id(), which a fresh error could reuse. A
        # merchant grant's refusal is made per call (it says what is wrong with that grant):
        # memoised, every refused call of a terminal with an expired grant would stay here.
        if err.reason not in CREDENTIAL_REASONS:
            return to_rpc_status(err)
        status = self._status_cache.get(err)
        if status is None:
            status = self._status_cache[err] = to_rpc_status(err)
        return status

    def _reject(self, plan: _Plan, code: str, context: Any) -> None:
        if plan.metrics is not None:
            plan.metrics.count(code)
        # Rejections are logged at DEBUG only: under a flood, a line per rejection would cost
        # more than the rejection itself. The shed/calls counters carry the totals.
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("rpc rejected", extra={"method": plan.method, "code": code})


class Malformed:
    """What a unary request whose bytes are not its message type deserializes to.

    Why not raise in the deserializer: grpc.aio parses a unary request before any handler runs
    and answers a parse error itself, as UNKNOWN ("Unexpected DecodeError..."), which a client
    cannot tell from a server bug. Handed to the pipeline instead, it is refused after auth and
    admission like any other bad input: INVALID_ARGUMENT, reason MALFORMED_REQUEST."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


def _malformed(deserializer: Callable[[bytes], Any], exc: Exception) -> InvalidArgument:
    # FromString is a bound classmethod of the request type: name the type the caller missed.
    kind = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(kind, "full_name", "the request message")
    return InvalidArgument(
        None,
        reason=MALFORMED_REQUEST,
        message=f"请求无法解析 / the request is not a valid {name}: {str(exc)[:200]}",
    )


def _parsing(deserializer: Callable[[bytes], Any] | None, *, streamed: bool) -> Callable[[bytes], Any] | None:
    """The request deserializer with bytes that do not parse made the caller's error. A unary
    request gets Malformed (see there); a streamed one raises it, since grpc.aio parses each
    streamed message as the handler reads it, so the error reaches the pipeline through the
    handler."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any failure to parse the caller's bytes is theirs
            if streamed:
                raise _malformed(deserializer, exc) from None
            return Malformed(_malformed(deserializer, exc))

    return parse


# Refusals in a row are told delays spread over 75-125 % of the level's (RetryInfo and pushback;
# the message keeps the level's whole seconds): a crowd refused in the same instant and told the
# same delay would all come back in the same instant. Encoded once, handed out in turn.
OVERLOAD_DELAY_STEPS = 9


def _overload_statuses(admission: AdmissionController, level: str) -> tuple[grpc.Status, ...]:
    base = admission.retry_after_ms(level)
    statuses = []
    for step in range(OVERLOAD_DELAY_STEPS):
        err = Overloaded(base)
        err.retry_after_ms = max(1, round(base * (0.75 + 0.5 * step / (OVERLOAD_DELAY_STEPS - 1))))
        statuses.append(to_rpc_status(err))
    return tuple(statuses)


def _override(metadata: Any, crit: str, policy: AccessPolicy | None, context: Any) -> str:
    """Apply x-miandan-criticality when present and the caller is internal (policy None = the
    caller was already authenticated as internal)."""
    for key, value in metadata or ():
        if key == CRITICALITY_KEY:
            if value in CRITICALITIES and (policy is None or policy.is_internal(metadata, context)):
                return value
            return crit
    return crit


def _request_id(request: Any, context: Any) -> str | None:
    rid = getattr(request, "request_id", None)
    if rid:
        return str(rid)
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY:
            return value
    return None


def _context_code(context: Any) -> str:
    try:
        code = context.code()
    except Exception:
        return "UNKNOWN"
    return getattr(code, "name", None) or "UNKNOWN"
