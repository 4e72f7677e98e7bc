"""How the order service restates an upstream's refusal of its own credential (upstream.translate):
UNAVAILABLE / UPSTREAM_UNAVAILABLE for the caller, one ERROR line per burst for the operator;
an upstream's PERMISSION_DENIED about the caller's request stays the caller's to hear."""
import logging

import grpc
import pytest

from services.common.auth import ADMIN_REQUIRED, CREDENTIAL_INVALID, CREDENTIAL_MISSING
from services.common.errors import PermissionDenied, Unavailable, to_rpc_status
from services.order import upstream
from tests.log_lines import Lines


def answered(err):
    status = to_rpc_status(err)
    return grpc.aio.AioRpcError(status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details)


@pytest.fixture
def lines(monkeypatch):
    monkeypatch.setattr(upstream, "_credential_logs", {}, raising=False)
    handler = Lines()
    logger = logging.getLogger("miandan.order")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.mark.parametrize("refusal", [CREDENTIAL_INVALID, CREDENTIAL_MISSING, ADMIN_REQUIRED])
def test_an_upstream_refusing_our_credential_is_upstream_unavailable_with_a_retry_delay(lines, refusal):
    err = upstream.translate(answered(refusal), "card")
    assert isinstance(err, Unavailable) and err.reason == "UPSTREAM_UNAVAILABLE" and err.retry_after_ms == 1000
    assert err.metadata == {"upstream": "card"} and "credential" not in err.message.lower()


def test_a_refusal_without_a_reason_from_a_peer_that_is_not_ours_counts_as_refusing_our_credential(lines):
    bare = grpc.aio.AioRpcError(grpc.StatusCode.UNAUTHENTICATED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")
    assert upstream.translate(bare, "catalog").code == "UNAVAILABLE"


def test_a_burst_of_refusals_is_one_error_line_per_upstream(lines):
    for _ in range(4):
        upstream.translate(answered(CREDENTIAL_INVALID), "card")
    upstream.translate(answered(CREDENTIAL_INVALID), "catalog")
    alarms = [r for r in lines if r.levelno == logging.ERROR]
    assert [(r.upstream, r.upstream_reason) for r in alarms] == [("card", "CREDENTIAL_INVALID"), ("catalog", "CREDENTIAL_INVALID")]


def test_an_upstreams_permission_denied_about_the_request_keeps_its_reason(lines):
    err = upstream.translate(answered(PermissionDenied("CARD_NOT_OWNED", "not yours")), "card")
    assert isinstance(err, PermissionDenied) and err.reason == "CARD_NOT_OWNED"
    assert not lines
