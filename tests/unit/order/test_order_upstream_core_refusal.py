"""What the order service answers when an upstream's gRPC core turns a call away: a card or
catalog service run with MIANDAN_MAX_PENDING_CALLS refuses the calls its busy event loop has not
taken in, within milliseconds and without doing any work, and the client sees CANCELLED with
no status details (nothing of miandan's answered). That is a refusal for load, as the gateway
restates it (UpstreamBusy UPSTREAM_UNAVAILABLE), not a timeout: it used to reach buyers as
DEADLINE_EXCEEDED UPSTREAM_DEADLINE, "did not answer in time", without a retry delay."""
import grpc
import pytest

from services.common.errors import DeadlineExceeded, UpstreamBusy, to_rpc_status
from services.order import upstream


def turned_away_by_the_core() -> grpc.aio.AioRpcError:
    # Exactly what grpcio raises for a call refused by a server's max_pending_requests.
    return grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "CANCELLED")


@pytest.mark.parametrize("peer", ["card", "catalog"])
def test_a_call_an_upstreams_core_turned_away_is_a_busy_upstream_with_a_retry_delay(peer):
    err = upstream.translate(turned_away_by_the_core(), peer)
    assert isinstance(err, UpstreamBusy)
    assert (err.code, err.reason) == ("UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    assert err.retry_after_ms and err.retry_after_ms > 0
    assert err.metadata == {"upstream": peer, "upstream_reason": "CANCELLED"}


def test_a_cancelled_answer_carrying_a_peers_status_stays_a_deadline():
    # A status a miandan server sent itself (details attached) is not the core's refusal.
    status = to_rpc_status(DeadlineExceeded("DEADLINE_PASSED", "调用方已超时 / the caller's deadline has passed"))
    answered = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), "cancelled"
    )
    err = upstream.translate(answered, "card")
    assert isinstance(err, DeadlineExceeded) and err.reason == "UPSTREAM_DEADLINE"
