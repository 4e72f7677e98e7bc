"""What the lottery asks the card service: a campaign's rules and a user's invite count.

`CardDirectory` is the seam: handlers depend on the Protocol, unit tests pass a fake, the
server passes `GrpcCardDirectory` (one channel to the card service, internal credential,
deadlines propagated by the caller's timeout).
"""
from __future__ import annotations

import time
from typing import Any, Protocol

import grpc

from miandan.card.v1 import card_service_pb2, card_service_pb2_grpc
from services.common.auth import internal_metadata, open_channel
from services.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable, UpstreamBusy, error_details

from .model import DEFAULT_THRESHOLD, DEFAULT_TIME_ZONE, Campaign

__all__ = ["CardDirectory", "GrpcCardDirectory", "campaign_not_found", "upstream_unavailable"]

# Campaign rules (time zone, threshold, window) change rarely if ever; a short cache keeps
# EnterDraw to one card call (GetInviteStats) instead of two.
CAMPAIGN_TTL_S = 30.0


class CardDirectory(Protocol):
    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign: ...

    async def invited_count(self, campaign_id: str, user_id: str, before_ms: int, *, timeout: float) -> int: ...

    async def close(self) -> None: ...


def campaign_not_found(campaign_id: str) -> NotFound:
    return NotFound("CAMPAIGN_NOT_FOUND", f"活动不存在 / campaign {campaign_id!r} not found")


def upstream_unavailable(detail: str = "", *, shedding: bool = False) -> Unavailable:
    """shedding: the card service refused on purpose (OVERLOADED), named apart from it being down."""
    return (UpstreamBusy if shedding else Unavailable)(
        "UPSTREAM_OVERLOADED" if shedding else "UPSTREAM_UNAVAILABLE",
        "卡券服务暂不可用,请稍后再试 / the card service is unavailable, please retry" + (f" ({detail})" if detail else ""),
        retry_after_ms=1000,
    )


class GrpcCardDirectory:
    def __init__(self, settings: Any, target: str | None = None) -> None:
        self._channel = open_channel(settings, target or settings.card_addr)
        self._stub = card_service_pb2_grpc.CardServiceStub(self._channel)
        self._metadata = internal_metadata(settings)
        self._campaigns: dict[str, tuple[float, Campaign]] = {}

    async def close(self) -> None:
        await self._channel.close()

    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        cached = self._campaigns.get(campaign_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CAMPAIGN_TTL_S:
            return cached[1]
        try:
            resp = await self._stub.GetCampaign(
                card_service_pb2.GetCampaignRequest(campaign_id=campaign_id), metadata=self._metadata, timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, campaign_id) from None
        c = resp.campaign
        campaign = Campaign(
            campaign_id=c.campaign_id or campaign_id,
            time_zone=c.rules.time_zone or DEFAULT_TIME_ZONE,
            invite_threshold=c.rules.lottery_invite_threshold or DEFAULT_THRESHOLD,
            start_ms=c.start_time.ToMilliseconds() if c.HasField("start_time") else 0,
            end_ms=c.end_time.ToMilliseconds() if c.HasField("end_time") else 2**62,
        )
        self._campaigns[campaign_id] = (now, campaign)
        return campaign

    async def invited_count(self, campaign_id: str, user_id: str, before_ms: int, *, timeout: float) -> int:
        req = card_service_pb2.GetInviteStatsRequest(campaign_id=campaign_id, user_id=user_id, page_size=1)
        req.before_time.FromMilliseconds(before_ms)
        try:
            resp = await self._stub.GetInviteStats(req, metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, campaign_id) from None
        return resp.invited_count


def _translate(exc: grpc.aio.AioRpcError, campaign_id: str) -> Exception:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return campaign_not_found(campaign_id)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("UPSTREAM_DEADLINE_EXCEEDED", "卡券服务超时 / the card service did not answer in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        info = error_details(exc)
        return InvalidArgument(
            violations=info["violations"], reason=info["reason"] or "INVALID_ARGUMENT", message=exc.details() or "invalid argument"
        )
    # UNAVAILABLE (down or shedding), RESOURCE_EXHAUSTED, INTERNAL, auth misconfiguration...:
    # for the lottery's caller all mean "the card service cannot answer now".
    shedding = code == grpc.StatusCode.UNAVAILABLE and error_details(exc)["reason"] == "OVERLOADED"
    return upstream_unavailable(code.name, shedding=shedding)
