"""An app learns the refusals every gateway call may get from gateway_service.proto's header
("Errors common to every RPC"): each one the gateway raises itself is named there."""

from pathlib import Path

from gateway.clients import UPSTREAM_SATURATED
from gateway.user_rates import USER_RATE_LIMITED

PROTO = Path(__file__).resolve().parents[3] / "protos" / "miandan" / "gateway" / "v1" / "gateway_service.proto"


def test_every_refusal_the_gateway_raises_itself_is_in_the_protos_common_errors():
    header = PROTO.read_text(encoding="utf-8").split("\npackage ", 1)[0]
    own = ("OVERLOADED", "UPSTREAM_UNAVAILABLE", UPSTREAM_SATURATED, USER_RATE_LIMITED)
    assert [reason for reason in own if reason not in header] == []
