"""kill -9 in the middle of a burst of grants, restart: nothing acknowledged is lost and the
budget, the caps and the ledger agree with the cards."""
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from miandan.card.v1 import card_pb2, card_service_pb2 as pb, card_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.config import Settings
from services.common.local_ports import free_port

ROOT = Path(__file__).resolve().parents[3]
C = "crash"
CAP = 3


def start_card(data_dir, port):
    env = dict(
        os.environ, PYTHONPATH=f"{ROOT / 'protos'}:{ROOT}", MIANDAN_DATA=str(data_dir), MIANDAN_CARD_PORT=str(port),
        MIANDAN_CARD_METRICS_PORT="0", MIANDAN_MAX_CONCURRENCY="1000", MIANDAN_MAX_WAIT_MS="5000",
        MIANDAN_LOG_CALLS="0", MIANDAN_LOG_LEVEL="WARNING",
    )
    return subprocess.Popen([sys.executable, "-m", "services.card"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_serving(channel, proc, timeout=20):
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "card server exited"
        try:
            r = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("card server did not start")


@pytest.mark.slow
async def test_a_server_killed_mid_burst_restarts_with_budget_caps_and_ledger_in_agreement(tmp_path):
    settings = Settings.from_env("card", {})
    md, admin = internal_metadata(settings), internal_metadata(settings, admin=True)
    port = free_port()
    proc = start_card(tmp_path, port)
    acked_cards: set[str] = set()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)
            stub = card_service_pb2_grpc.CardServiceStub(channel)
            now = datetime.now(timezone.utc)
            start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
            start.FromDatetime(now - timedelta(days=1))
            end.FromDatetime(now + timedelta(days=1))
            await stub.CreateCampaign(pb.CreateCampaignRequest(
                campaign_id=C, name="crash test", start_time=start, end_time=end,
                rules=card_pb2.CampaignRules(budget_fen=300 * 2500, per_user_card_cap=CAP),
            ), metadata=admin, timeout=10)
            inviters = [f"inv{n}" for n in range(5)]
            texts = []
            for u in inviters:
                await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id=C, user_id=u), metadata=md, timeout=10)
                texts.append((await stub.GetInviteCode(pb.GetInviteCodeRequest(campaign_id=C, user_id=u), metadata=md,
                                                       timeout=10)).invite_code.pass_phrase_text)

            async def join(n):
                user = f"new{n}"
                r = await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id=C, user_id=user), metadata=md, timeout=10)
                acked_cards.update(c.card_id for c in r.cards)
                a = await stub.AcceptInvite(pb.AcceptInviteRequest(
                    campaign_id=C, invitee_user_id=user, text=texts[n % len(texts)]), metadata=md, timeout=10)
                acked_cards.update(c.card_id for c in a.invitee_cards)

            burst = [asyncio.ensure_future(join(n)) for n in range(400)]
            # Kill once some grants are acknowledged and others are surely still in flight.
            deadline = time.monotonic() + 15
            while len(acked_cards) < 40 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            results = await asyncio.gather(*burst, return_exceptions=True)
        assert 40 <= len(acked_cards), "the burst never got going"
        assert any(isinstance(r, grpc.aio.AioRpcError) for r in results), "the kill came after the burst"

        proc = start_card(tmp_path, port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, proc)
            stub = card_service_pb2_grpc.CardServiceStub(channel)
            budget = (await stub.GetBudget(pb.GetBudgetRequest(campaign_id=C), metadata=md, timeout=10)).budget
            listed, token = [], ""
            while True:
                page = await stub.ListCampaignCards(pb.ListCampaignCardsRequest(campaign_id=C, page_size=1000, page_token=token),
                                                    metadata=admin, timeout=10)
                listed += page.cards
                token = page.next_page_token
                if not token:
                    break
            # The service keeps working after the restart.
            await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id=C, user_id="after"), metadata=md, timeout=10)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    ids = {c.card_id for c in listed}
    assert acked_cards <= ids, "an acknowledged grant was lost"
    assert budget.issued_fen == 2500 * len(listed) <= budget.budget_fen
    assert budget.cards_issued == len(listed)

    db = sqlite3.connect(tmp_path / "card.db")
    try:
        issued, count, limit = db.execute("SELECT issued_fen, cards_issued, budget_fen FROM campaigns").fetchone()
        face_total, n_cards = db.execute("SELECT SUM(face_value_fen), COUNT(*) FROM cards").fetchone()
        assert (issued, count) == (face_total, n_cards) and issued <= limit
        # The cap: the member counter equals the cards it owns and never passes the cap.
        for user, granted, owned in db.execute(
            "SELECT m.user_id, m.cards_granted, (SELECT COUNT(*) FROM cards c WHERE c.campaign_id = m.campaign_id"
            " AND c.user_id = m.user_id) FROM members m"
        ):
            assert granted == owned <= CAP, user
        # The ledger explains every card: one grant row, and its last row is the card's state.
        for card_id, state, grants, last in db.execute(
            "SELECT c.card_id, c.state,"
            " (SELECT COUNT(*) FROM ledger l WHERE l.card_id = c.card_id AND l.from_state = 0),"
            " (SELECT to_state FROM ledger l WHERE l.card_id = c.card_id ORDER BY seq DESC LIMIT 1) FROM cards c"
        ):
            assert grants == 1 and last == state, card_id
        assert db.execute("SELECT COUNT(*) FROM ledger WHERE card_id NOT IN (SELECT card_id FROM cards)").fetchone()[0] == 0
        # Every invite rewarded as recorded.
        rewarded = db.execute("SELECT SUM(inviter_rewarded) + SUM(invitee_rewarded) FROM invites").fetchone()[0] or 0
        invite_cards = db.execute("SELECT COUNT(*) FROM cards WHERE source IN (2, 3)").fetchone()[0]
        assert rewarded == invite_cards
    finally:
        db.close()
