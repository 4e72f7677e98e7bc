"""kill -9 right after SetCampaignBudget answered, restart: the new budget holds (for the grants,
GetCampaign and GetBudget), its history is there, and a retry of the call is a replay."""
import signal
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import timestamp_pb2

from miandan.card.v1 import card_pb2, card_service_pb2 as pb, card_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.config import Settings
from services.common.errors import error_details
from services.common.local_ports import free_port
from tests.integration.card.test_card_crash import start_card, wait_serving

C = "kill-budget"
FACE = 2_500


def stop(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.mark.slow
async def test_a_budget_cut_answered_just_before_a_kill_holds_after_the_restart(tmp_path):
    settings = Settings.from_env("card", {})
    md, admin = internal_metadata(settings), internal_metadata(settings, admin=True)
    port = free_port()
    cut = pb.SetCampaignBudgetRequest(request_id="stop-now", campaign_id=C, budget_fen=2 * FACE)
    proc = start_card(tmp_path, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)
            stub = card_service_pb2_grpc.CardServiceStub(channel)
            start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
            start.FromDatetime(datetime.now(timezone.utc) - timedelta(days=1))
            end.FromDatetime(datetime.now(timezone.utc) + timedelta(days=1))
            await stub.CreateCampaign(pb.CreateCampaignRequest(
                campaign_id=C, name="kill test", start_time=start, end_time=end,
                rules=card_pb2.CampaignRules(budget_fen=100 * FACE),
            ), metadata=admin, timeout=10)
            for user in ("u1", "u2"):
                await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id=C, user_id=user), metadata=md, timeout=10)
            await stub.SetCampaignBudget(cut, metadata=admin, timeout=10)
            proc.send_signal(signal.SIGKILL)  # at once after the answer: no clean close of the store
            proc.wait(10)

        proc = start_card(tmp_path, port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)
            stub = card_service_pb2_grpc.CardServiceStub(channel)
            campaign = (await stub.GetCampaign(pb.GetCampaignRequest(campaign_id=C), metadata=md, timeout=10)).campaign
            read = await stub.GetBudget(pb.GetBudgetRequest(campaign_id=C), metadata=md, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id=C, user_id="u3"), metadata=md, timeout=10)
            replay = await stub.SetCampaignBudget(cut, metadata=admin, timeout=10)
    finally:
        stop(proc)

    assert campaign.rules.budget_fen == 2 * FACE
    assert (read.budget.budget_fen, read.budget.issued_fen, read.budget_change_count) == (2 * FACE, 2 * FACE, 1)
    assert [(c.old_budget_fen, c.new_budget_fen, c.request_id) for c in read.budget_changes] == [(100 * FACE, 2 * FACE, "stop-now")]
    assert error_details(refused.value)["reason"] == "CAMPAIGN_BUDGET_EXHAUSTED"
    assert replay.budget_change_count == 1 and replay.campaign.rules.budget_fen == 2 * FACE
