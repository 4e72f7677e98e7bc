"""grpc.aio servicer of miandan.lottery.v1.LotteryService: proto <-> model only."""
from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from services.common.deadline import remaining

from . import model
from .handlers import Lottery
from .model import DrawRecord, EntryRecord

__all__ = ["LotteryServicer", "draw_to_proto", "entry_to_proto"]

_STATUS = {
    model.Status.UPCOMING: lottery_pb2.DRAW_STATUS_UPCOMING,
    model.Status.OPEN: lottery_pb2.DRAW_STATUS_OPEN,
    model.Status.CLOSED: lottery_pb2.DRAW_STATUS_CLOSED,
    model.Status.NOT_HELD: lottery_pb2.DRAW_STATUS_NOT_HELD,
    model.Status.DRAWN: lottery_pb2.DRAW_STATUS_DRAWN,
}


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def draw_to_proto(d: DrawRecord, now_ms: int) -> lottery_pb2.Draw:
    msg = lottery_pb2.Draw(
        campaign_id=d.campaign_id,
        day=d.day,
        prize_name=d.prize_name,
        prize_value_fen=d.prize_value_fen,
        winner_count=d.winner_count,
        status=_STATUS[model.status_of(d, now_ms)],
        commitment=d.commitment,
        entrant_count=d.entrant_count,
        beacon_source=d.beacon_source,
        beacon_round=d.beacon_round,
    )
    msg.cutoff_time.CopyFrom(_ts(d.cutoff_ms))
    if d.commit_ms:
        msg.commit_time.CopyFrom(_ts(d.commit_ms))
    if d.drawn_ms is not None:
        # The seed leaves the service only here, and only once the winners are fixed.
        msg.seed = d.seed.hex()
        msg.winners.extend(d.winners)
        msg.draw_time.CopyFrom(_ts(d.drawn_ms))
        msg.beacon_value = d.beacon_value
        msg.entrants_hash = d.entrants_hash
    return msg


def entry_to_proto(e: EntryRecord) -> lottery_pb2.Entry:
    msg = lottery_pb2.Entry(campaign_id=e.campaign_id, day=e.day, user_id=e.user_id, drawn=e.drawn, won=e.won)
    msg.entry_time.CopyFrom(_ts(e.entry_ms))
    return msg


class LotteryServicer(lottery_service_pb2_grpc.LotteryServiceServicer):
    def __init__(self, lottery: Lottery) -> None:
        self.lottery = lottery

    async def EnterDraw(self, request: Any, context: Any) -> lottery_service_pb2.EnterDrawResponse:
        entry, draw, newly = await self.lottery.enter_draw(
            request.request_id, request.campaign_id, request.user_id, request.day, timeout=remaining(context)
        )
        return lottery_service_pb2.EnterDrawResponse(
            entry=entry_to_proto(entry), draw=draw_to_proto(draw, self.lottery.now_ms()), newly_entered=newly
        )

    async def GetDraw(self, request: Any, context: Any) -> lottery_service_pb2.GetDrawResponse:
        draw = await self.lottery.get_draw(request.campaign_id, request.day, timeout=remaining(context))
        return lottery_service_pb2.GetDrawResponse(draw=draw_to_proto(draw, self.lottery.now_ms()))

    async def CommitDraw(self, request: Any, context: Any) -> lottery_service_pb2.CommitDrawResponse:
        draw = await self.lottery.commit_draw(
            request.request_id,
            request.campaign_id,
            request.day,
            prize_name=request.prize_name,
            prize_value_fen=request.prize_value_fen,
            winner_count=request.winner_count,
            beacon_source=request.beacon_source,
            beacon_round=request.beacon_round,
            timeout=remaining(context),
        )
        return lottery_service_pb2.CommitDrawResponse(draw=draw_to_proto(draw, self.lottery.now_ms()))

    async def RunDraw(self, request: Any, context: Any) -> lottery_service_pb2.RunDrawResponse:
        draw = await self.lottery.run_draw(request.request_id, request.campaign_id, request.day, request.beacon_value)
        return lottery_service_pb2.RunDrawResponse(draw=draw_to_proto(draw, self.lottery.now_ms()))

    async def VerifyDraw(self, request: Any, context: Any) -> lottery_service_pb2.VerifyDrawResponse:
        page = await self.lottery.verify_draw(request.campaign_id, request.day, request.page_size, request.page_token)
        d = page.draw
        return lottery_service_pb2.VerifyDrawResponse(
            draw=draw_to_proto(d, self.lottery.now_ms()),
            seed=d.seed.hex(),
            commitment=d.commitment,
            entrants=page.entrants,
            entrants_hash=d.entrants_hash,
            entrant_count=d.entrant_count,
            algorithm=model.ALGORITHM,
            algorithm_version=model.ALGORITHM_VERSION,
            beacon_value=d.beacon_value,
            beacon_configured=d.beacon_committed,
            winners=d.winners,
            next_page_token=page.next_page_token,
            note=page.note,
        )

    async def ListMyEntries(self, request: Any, context: Any) -> lottery_service_pb2.ListMyEntriesResponse:
        entries, token = await self.lottery.list_my_entries(
            request.campaign_id, request.user_id, request.page_size, request.page_token
        )
        return lottery_service_pb2.ListMyEntriesResponse(entries=[entry_to_proto(e) for e in entries], next_page_token=token)

    async def ListDrawEntries(self, request: Any, context: Any) -> lottery_service_pb2.ListDrawEntriesResponse:
        entries, token = await self.lottery.list_day_entries(
            request.campaign_id, request.day, request.won_only, request.page_size, request.page_token
        )
        return lottery_service_pb2.ListDrawEntriesResponse(entries=[entry_to_proto(e) for e in entries], next_page_token=token)

    async def ListDraws(self, request: Any, context: Any) -> lottery_service_pb2.ListDrawsResponse:
        draws, token = await self.lottery.list_draws(request.campaign_id, request.page_size, request.page_token)
        now_ms = self.lottery.now_ms()
        return lottery_service_pb2.ListDrawsResponse(draws=[draw_to_proto(d, now_ms) for d in draws], next_page_token=token)
