"""Domain errors and their mapping to rich gRPC statuses (google.rpc.Status details).

This module must stay importable without grpc: model.py files raise these errors and are kept
free of transport imports. grpc / grpc_status / google.rpc are imported lazily in the functions
that need them.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = [
    "ERROR_DOMAIN",
    "PUSHBACK_KEY",
    "STATUS_DETAILS_KEY",
    "DomainError",
    "UpstreamBusy",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Internal",
    "to_rpc_status",
    "error_details",
]

ERROR_DOMAIN = "miandan"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Honoured by gRPC clients with retries enabled: they wait this long before retrying (gRFC A6).
PUSHBACK_KEY = "grpc-retry-pushback-ms"


class DomainError(Exception):
    """A failure the caller can understand and act on (never a bug).

    code: a grpc.StatusCode name ("FAILED_PRECONDITION"); reason: stable machine reason
    ("CARD_CAP_REACHED") that clients switch on; message: for humans (Chinese and English).
    """

    code: str = "UNKNOWN"

    def __init__(
        self,
        code: str | None,
        reason: str,
        message: str = "",
        *,
        violations: Iterable[tuple[str, str]] = (),
        retry_after_ms: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.reason = reason
        self.message = message or reason
        self.violations: list[tuple[str, str]] = list(violations)
        self.retry_after_ms = None if retry_after_ms is None else max(0, int(retry_after_ms))
        self.metadata: dict[str, str] = dict(metadata or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}/{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r}, message={self.message!r})"


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"

    def __init__(
        self,
        field: str | None = None,
        description: str = "",
        reason: str = "INVALID_ARGUMENT",
        *,
        violations: Iterable[tuple[str, str]] = (),
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        all_violations = ([(field, description)] if field is not None else []) + list(violations)
        if message is None:
            message = "; ".join(f"{f}: {d}" for f, d in all_violations) or "invalid argument"
        super().__init__(None, reason, message, violations=all_violations, metadata=metadata)


class _Simple(DomainError):
    def __init__(self, reason: str, message: str = "", *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(None, reason, message, metadata=metadata)


class NotFound(_Simple):
    code = "NOT_FOUND"


class AlreadyExists(_Simple):
    code = "ALREADY_EXISTS"


class FailedPrecondition(_Simple):
    code = "FAILED_PRECONDITION"


class PermissionDenied(_Simple):
    code = "PERMISSION_DENIED"


class Unauthenticated(_Simple):
    code = "UNAUTHENTICATED"


class DeadlineExceeded(_Simple):
    code = "DEADLINE_EXCEEDED"


class Internal(_Simple):
    code = "INTERNAL"


class _Retryable(DomainError):
    def __init__(
        self,
        reason: str,
        message: str = "",
        retry_after_ms: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(None, reason, message, retry_after_ms=retry_after_ms, metadata=metadata)


class ResourceExhausted(_Retryable):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(_Retryable):
    code = "UNAVAILABLE"


class UpstreamBusy(Unavailable):
    """An upstream turned the call away for load (it said OVERLOADED, or its gRPC core refused a
    call its busy event loop had not taken in). On the wire the same as Unavailable; to the
    relaying service's admission a congestion signal, unlike an upstream that is down."""


# --- mapping to the wire -------------------------------------------------------------------

_status_cls: Any = None


def _status_class() -> Any:
    # Built lazily so that importing this module never imports grpc.
    global _status_cls
    if _status_cls is None:
        import collections

        import grpc

        class _RichStatus(collections.namedtuple("_RichStatus", ("code", "details", "trailing_metadata")), grpc.Status):
            pass

        _status_cls = _RichStatus
    return _status_cls


def to_rpc_status(err: DomainError) -> Any:
    """A grpc.Status for context.abort_with_status(): code, human details and packed
    google.rpc.Status details (status_proto). Adds grpc-retry-pushback-ms when retry_after_ms
    is set."""
    import grpc

    proto = status_proto(err)
    trailing: tuple[tuple[str, Any], ...] = ((STATUS_DETAILS_KEY, proto.SerializeToString()),)
    if err.retry_after_ms is not None:
        trailing += ((PUSHBACK_KEY, str(err.retry_after_ms)),)
    return _status_class()(grpc.StatusCode[err.code], proto.message, trailing)


# Bounds on what an error echoes back. The status travels in trailing metadata, which a gRPC
# client refuses beyond 16 KiB (8 KiB by default in some stacks), answering RESOURCE_EXHAUSTED
# "received metadata size exceeds hard limit" instead of the error: seen when a 50-item
# UpsertMenuItem full of 5,000-character names was refused with one violation per item. The
# message is sent twice (grpc-message, percent-encoded: up to 9 bytes per Chinese character,
# and inside the base64 status), so these keep the whole trailer under about 6 KiB.
MAX_MESSAGE_BYTES = 512
MAX_VIOLATION_BYTES = 2048  # all violations together
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_METADATA_VALUE_BYTES = 256


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8 (on a character boundary), marked with "…"."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def _bounded_violations(violations: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept: list[tuple[str, str]] = []
    used = 0
    for i, (f, d) in enumerate(violations):
        pair = (clip(f, MAX_FIELD_BYTES), clip(d, MAX_DESCRIPTION_BYTES))
        size = len(pair[0].encode()) + len(pair[1].encode())
        if used + size > MAX_VIOLATION_BYTES:
            kept.append(("", f"另有 {len(violations) - i} 项未列出 / {len(violations) - i} more not shown"))
            break
        kept.append(pair)
        used += size
    return kept


def status_proto(err: DomainError) -> Any:
    """The google.rpc.Status of an error: code, message, ErrorInfo always, BadRequest with
    violations, RetryInfo when retrying later helps. Also what a batch RPC answers per entry."""
    import grpc
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    code = grpc.StatusCode[err.code]
    details = []
    metadata = {k: clip(v, MAX_METADATA_VALUE_BYTES) for k, v in err.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if err.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in _bounded_violations(err.violations)
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    if err.retry_after_ms is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(err.retry_after_ms)
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    return status_pb2.Status(code=code.value[0], message=clip(err.message, MAX_MESSAGE_BYTES), details=details)


def error_details(rpc_error: Any) -> dict[str, Any]:
    """Decode a failed call for clients and tests.

    Accepts grpc.aio.AioRpcError or a sync grpc.RpcError (a grpc.Call). Returns
    {"code": "FAILED_PRECONDITION", "message", "reason", "domain", "metadata",
     "violations": [(field, desc)], "retry_after_ms", "pushback_ms"}; missing parts are None/empty.
    """
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2

    code = rpc_error.code() if hasattr(rpc_error, "code") else None
    out: dict[str, Any] = {
        "code": getattr(code, "name", code),
        "message": rpc_error.details() if hasattr(rpc_error, "details") else None,
        "reason": None,
        "domain": None,
        "metadata": {},
        "violations": [],
        "retry_after_ms": None,
        "pushback_ms": None,
    }
    trailing = rpc_error.trailing_metadata() if hasattr(rpc_error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY:
            try:
                status = status_pb2.Status.FromString(value)
            except (DecodeError, TypeError):
                # Not a google.rpc.Status (a peer that is no miandan service, a proxy): the code
                # and message still tell the caller what happened. Raised, it had turned a
                # relay's pass-on of an upstream's answer into UNKNOWN.
                continue
            out["message"] = status.message or out["message"]
            try:
                for detail in status.details:
                    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        info = error_details_pb2.ErrorInfo()
                        detail.Unpack(info)
                        out["reason"], out["domain"], out["metadata"] = info.reason, info.domain, dict(info.metadata)
                    elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                        bad = error_details_pb2.BadRequest()
                        detail.Unpack(bad)
                        out["violations"] = [(v.field, v.description) for v in bad.field_violations]
                    elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        retry = error_details_pb2.RetryInfo()
                        detail.Unpack(retry)
                        out["retry_after_ms"] = retry.retry_delay.ToMilliseconds()
            except DecodeError:
                pass  # a detail that is not what its type says: keep what was read
        elif key == PUSHBACK_KEY:
            try:
                out["pushback_ms"] = int(value)
            except ValueError:
                pass
    return out
