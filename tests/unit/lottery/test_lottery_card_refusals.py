"""How the lottery restates the card service's refusals: a card service shedding load is named
apart from one that is down, in the answer and so in the lottery's refusal metrics."""
from __future__ import annotations

import grpc

from services.common.admission import Overloaded
from services.common.errors import DomainError, Unavailable, UpstreamBusy, to_rpc_status
from services.lottery.card_client import _translate


def rpc_error(err: DomainError) -> grpc.aio.AioRpcError:
    status = to_rpc_status(err)
    return grpc.aio.AioRpcError(status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details)


def test_a_shedding_card_service_is_upstream_overloaded():
    err = _translate(rpc_error(Overloaded(1000)), "c1")
    assert isinstance(err, Unavailable) and err.reason == "UPSTREAM_OVERLOADED" and err.retry_after_ms == 1000
    assert isinstance(err, UpstreamBusy)  # a congestion signal for the lottery's own admission


def test_a_card_service_that_is_down_is_upstream_unavailable():
    dropped = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "Socket closed")
    assert _translate(dropped, "c1").reason == "UPSTREAM_UNAVAILABLE"
    assert not isinstance(_translate(dropped, "c1"), UpstreamBusy)
    internal = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "boom")
    assert _translate(internal, "c1").reason == "UPSTREAM_UNAVAILABLE"
