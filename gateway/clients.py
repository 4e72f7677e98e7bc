"""The gateway's upstreams: one channel per service, opened once and reused for every call.

Retries live in each channel's gRPC service config (gRFC A6), not in handler code: only on
UNAVAILABLE (the peer did not do the work or shed it before touching a store), only for methods
that are safe to repeat (reads, and mutations that carry a request_id the callee is idempotent
on), and with retry throttling so that a struggling upstream is not hit by a retry storm: once
more than half the token bucket is spent, clients stop retrying until successes refill it.
An upstream's grpc-retry-pushback-ms is honoured by the same machinery.

Deadlines: every call gets `timeout=` from CallOptions, i.e. what is left of the end user's
deadline, so no upstream works for an answer nobody waits for.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from miandan.card.v1 import card_service_pb2_grpc
from miandan.catalog.v1 import catalog_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from miandan.order.v1 import order_service_pb2_grpc
from services.common.admission import CRITICALITY_KEY, DEFAULT
from services.common.auth import internal_metadata, open_channel
from services.common.deadline import DEADLINE_PASSED
from services.common.errors import DeadlineExceeded

__all__ = ["IDEMPOTENT_METHODS", "service_config", "CallOptions", "Upstreams"]

# Methods the gateway may retry on UNAVAILABLE, per upstream service.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "miandan.card.v1.CardService": (
        "GetCampaign", "GetWallet", "ListCards", "GetInviteCode", "GetInviteStats",  # reads
        "ClaimSignupCard", "AcceptInvite",  # idempotent per user / invitee and request_id
    ),
    "miandan.catalog.v1.CatalogService": ("SearchStores", "GetMenu", "MatchIntent", "Quote", "ListBrands"),
    "miandan.order.v1.OrderService": (
        "GetOrder", "ListOrders", "WatchOrder",  # reads (a stream is retried only before its first message)
        "PlaceOrder", "ConfirmPayment", "CancelOrder",  # idempotent on request_id
    ),
    "miandan.lottery.v1.LotteryService": ("GetDraw", "VerifyDraw", "ListMyEntries", "EnterDraw"),
}


def service_config(service: str) -> dict[str, Any]:
    return {
        "methodConfig": [
            {
                "name": [{"service": service, "method": m} for m in IDEMPOTENT_METHODS[service]],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.02s",
                    "maxBackoff": "0.2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        # Each failure costs 1 token, each success gives back 0.1; retries stop below 5 tokens.
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    }


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
            "card": open_channel(settings, settings.card_addr, service_config("miandan.card.v1.CardService")),
            "catalog": open_channel(settings, settings.catalog_addr, service_config("miandan.catalog.v1.CatalogService")),
            "order": open_channel(settings, settings.order_addr, service_config("miandan.order.v1.OrderService")),
            "lottery": open_channel(settings, settings.lottery_addr, service_config("miandan.lottery.v1.LotteryService")),
        }
        self.card = card_service_pb2_grpc.CardServiceStub(self._channels["card"])
        self.catalog = catalog_service_pb2_grpc.CatalogServiceStub(self._channels["catalog"])
        self.order = order_service_pb2_grpc.OrderServiceStub(self._channels["order"])
        self.lottery = lottery_service_pb2_grpc.LotteryServiceStub(self._channels["lottery"])
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
