import subprocess
import sys

import grpc
import pytest

from services.common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    DeadlineExceeded,
    error_details,
    to_rpc_status,
)


class _FakeRpcError:
    """What a client sees: code, details and trailing metadata of a failed call."""

    def __init__(self, status):
        self._status = status

    def code(self):
        return self._status.code

    def details(self):
        return self._status.details

    def trailing_metadata(self):
        return self._status.trailing_metadata


def roundtrip(err):
    return error_details(_FakeRpcError(to_rpc_status(err)))


def test_failed_precondition_round_trips_code_reason_message_and_domain():
    d = roundtrip(FailedPrecondition("CARD_CAP_REACHED", "已达上限 / cap reached", metadata={"cap": "21"}))
    assert d["code"] == "FAILED_PRECONDITION"
    assert d["reason"] == "CARD_CAP_REACHED"
    assert d["domain"] == "miandan"
    assert d["metadata"] == {"cap": "21"}
    assert d["message"] == "已达上限 / cap reached"
    assert d["violations"] == [] and d["retry_after_ms"] is None


def test_invalid_argument_carries_every_field_violation():
    err = InvalidArgument("quantity", "must be positive", violations=[("store_id", "required")])
    d = roundtrip(err)
    assert d["code"] == "INVALID_ARGUMENT" and d["reason"] == "INVALID_ARGUMENT"
    assert d["violations"] == [("quantity", "must be positive"), ("store_id", "required")]


def test_retry_after_becomes_retry_info_and_pushback_metadata():
    status = to_rpc_status(Unavailable("OVERLOADED", "busy", retry_after_ms=1500))
    assert status.code is grpc.StatusCode.UNAVAILABLE
    assert ("grpc-retry-pushback-ms", "1500") in status.trailing_metadata
    d = error_details(_FakeRpcError(status))
    assert d["retry_after_ms"] == 1500 and d["pushback_ms"] == 1500


@pytest.mark.parametrize(
    "err, code",
    [
        (NotFound("ORDER_NOT_FOUND", "x"), "NOT_FOUND"),
        (AlreadyExists("DUP", "x"), "ALREADY_EXISTS"),
        (PermissionDenied("ADMIN_REQUIRED", "x"), "PERMISSION_DENIED"),
        (Unauthenticated("CREDENTIAL_MISSING", "x"), "UNAUTHENTICATED"),
        (ResourceExhausted("BUDGET_EXHAUSTED", "x"), "RESOURCE_EXHAUSTED"),
        (DeadlineExceeded("DEADLINE_PASSED", "x"), "DEADLINE_EXCEEDED"),
    ],
)
def test_each_constructor_maps_to_its_status_code(err, code):
    assert isinstance(err, DomainError)
    assert err.code == code
    assert to_rpc_status(err).code is grpc.StatusCode[code]
    assert roundtrip(err)["reason"] == err.reason


def test_error_details_of_a_plain_error_has_no_reason():
    class Plain:
        def code(self):
            return grpc.StatusCode.INTERNAL

        def details(self):
            return "boom"

        def trailing_metadata(self):
            return None

    d = error_details(Plain())
    assert d["code"] == "INTERNAL" and d["reason"] is None


def test_errors_module_does_not_import_grpc():
    code = "import sys; import services.common.errors; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": "protos:."})
    assert out.stdout.strip() == "False"


def _trailer_bytes(status):
    """What the status costs on the wire: grpc-message (percent-encoded, so 3 bytes per UTF-8
    byte outside ASCII) plus every trailing entry (binary values base64-encoded)."""
    message = sum(1 if b < 0x80 else 3 for b in status.details.encode())
    return message + sum(len(k) + (len(v) * 4 // 3 + 4 if isinstance(v, bytes) else len(v)) for k, v in status.trailing_metadata)


def test_an_error_echoing_huge_input_stays_far_below_grpcs_metadata_limit():
    # As UpsertMenuItem refused 50 options with 5,000-character names: before the bounds the
    # client got RESOURCE_EXHAUSTED ("received metadata size exceeds hard limit") instead.
    err = InvalidArgument(
        violations=[(f"options[{i}].name" + "n" * 300, "名" * 5000) for i in range(200)],
        metadata={"echo": "x" * 10_000},
    )
    status = to_rpc_status(err)
    assert _trailer_bytes(status) < 8 * 1024
    d = roundtrip(err)
    assert d["reason"] == "INVALID_ARGUMENT"
    # The first violations still name their field and say what is wrong, cut short and marked.
    field, description = d["violations"][0]
    assert field.startswith("options[0].name") and field.endswith("…")
    assert description.startswith("名名名") and description.endswith("…")
    assert "more not shown" in d["violations"][-1][1]
    assert len(d["violations"]) < 200
    assert d["metadata"]["echo"].endswith("…") and len(d["metadata"]["echo"]) <= 256
    assert d["message"].endswith("…") and len(d["message"].encode()) <= 512
    assert status.details == d["message"]


def test_bounds_cut_on_character_boundaries_and_leave_small_errors_untouched():
    from services.common.errors import clip

    assert clip("免单" * 100, 10) == "免单…"  # 3 bytes each: two fit beside the 3-byte mark
    assert clip("short", 10) == "short"
    small = InvalidArgument("quantity", "must be 1..99", violations=[("store_id", "required")])
    d = roundtrip(small)
    assert d["violations"] == [("quantity", "must be 1..99"), ("store_id", "required")]
    assert d["message"] == "quantity: must be 1..99; store_id: required"


def test_error_details_of_status_details_that_do_not_parse_keeps_what_it_can():
    from google.protobuf import any_pb2
    from google.rpc import status_pb2

    class Garbled:
        def __init__(self, blob):
            self.blob = blob

        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "busy"

        def trailing_metadata(self):
            return (("grpc-status-details-bin", self.blob), ("grpc-retry-pushback-ms", "250"))

    # Not a google.rpc.Status at all (a proxy, another stack): code, message and pushback stay.
    out = error_details(Garbled(b"\xff\xfe not a proto"))
    assert (out["code"], out["message"], out["reason"], out["pushback_ms"]) == ("UNAVAILABLE", "busy", None, 250)
    # A Status whose ErrorInfo detail is not one.
    bad = any_pb2.Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=b"\xff\xfe")
    blob = status_pb2.Status(code=14, message="busy", details=[bad]).SerializeToString()
    out = error_details(Garbled(blob))
    assert (out["code"], out["reason"], out["pushback_ms"]) == ("UNAVAILABLE", None, 250)
