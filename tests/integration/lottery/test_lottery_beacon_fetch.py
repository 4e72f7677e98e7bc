"""A day bound to a drand round is drawn by the scheduler itself once the round is out: the
value is fetched over HTTP from a relay (here a local one serving a real published round) and
used only when its signature verifies."""
from __future__ import annotations

import json
import threading
from datetime import datetime, time, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.common.clock import FakeClock
from services.common.errors import error_details
from services.lottery import model
from services.lottery.beacon import DRAND, DrandBeacon
from services.lottery.model import DrawSettings

from .conftest import CAMPAIGN, Lottery

# quicknet round 657413 was published at 2023-09-15 11:00:03 UTC (19:00:03 in Shanghai).
ROUND = 657413
SIGNATURE = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b"
RANDOMNESS = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587"
DAY = "2023-09-15"
CUTOFF = time(19, 0)  # Shanghai: 11:00:00 UTC, three seconds before the round
QUICKNET = DRAND["drand:quicknet"]


@pytest.fixture
def clock():
    return FakeClock(datetime(2023, 9, 15, 2, 0, tzinfo=timezone.utc))


class Relay:
    """A drand HTTP relay on loopback that serves one round, honestly or not."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer
        self.paths: list[str] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                relay.paths.append(self.path)
                if self.path == f"/{QUICKNET.chain_hash}/public/{ROUND}":
                    body = json.dumps(relay.answer).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def a_day_bound_to_the_round(tmp_path, fake_card_server, clock, relay: Relay) -> Lottery:
    campaign = fake_card_server.fake.campaigns[CAMPAIGN]
    campaign.start_time.FromDatetime(datetime(2023, 1, 1, tzinfo=timezone.utc))
    lot = Lottery(
        tmp_path / "lottery", fake_card_server.port, clock,
        DrawSettings(cutoff=CUTOFF, campaigns=(CAMPAIGN,), tick_seconds=3600),
        beacon=DrandBeacon([relay.url]),
    )
    await lot.start()
    committed = (await lot.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet", beacon_round=str(ROUND)),
        metadata=lot.admin,
    )).draw
    assert committed.beacon_round == str(ROUND)
    for i in range(20):
        await fake_card_server.invite(f"p{i}", 3)
        await lot.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=f"p{i}", day=DAY), metadata=lot.md)
    return lot


async def test_the_scheduler_draws_with_the_verified_round_once_it_is_out(tmp_path, fake_card_server, clock):
    relay = Relay({"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE})
    lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, relay)
    try:
        clock.advance(hours=9, seconds=1)  # past the cut-off, before the round's time
        done = await lot.server.scheduler.tick()
        assert done["waiting_for_beacon"] == [f"{CAMPAIGN}/{DAY}"] and relay.paths == []
        clock.advance(seconds=3)
        done = await lot.server.scheduler.tick()
        assert done["drawn"] == [f"{CAMPAIGN}/{DAY}"]
        assert relay.paths == [f"/{QUICKNET.chain_hash}/public/{ROUND}"]
        drawn = (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.md)).draw
        assert drawn.beacon_value == RANDOMNESS
        entrants = sorted(f"p{i}" for i in range(20))
        assert list(drawn.winners) == model.select_winners(bytes.fromhex(drawn.seed), RANDOMNESS, entrants, 15)
    finally:
        await lot.stop()
        relay.close()


async def test_a_relay_answer_that_does_not_verify_is_never_drawn_with(tmp_path, fake_card_server, clock):
    # A relay (or whoever sits between) offering another value for the committed round.
    relay = Relay({"round": ROUND, "randomness": "00" * 32, "signature": SIGNATURE[:-2] + "00"})
    lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, relay)
    try:
        clock.advance(hours=9, seconds=10)
        for _ in range(2):
            done = await lot.server.scheduler.tick()
            assert done["waiting_for_beacon"] == [f"{CAMPAIGN}/{DAY}"] and done["drawn"] == []
        assert len(relay.paths) == 2
        pending = (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.md)).draw
        assert not pending.winners and not pending.seed
        # The honest value then draws it.
        relay.answer = {"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE}
        assert (await lot.server.scheduler.tick())["drawn"] == [f"{CAMPAIGN}/{DAY}"]
    finally:
        await lot.stop()
        relay.close()


async def test_an_admin_run_draw_may_not_pick_another_value_and_may_leave_it_to_the_fetch(tmp_path, fake_card_server, clock):
    relay = Relay({"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE})
    lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, relay)
    run = pb.RunDrawRequest(request_id="run", campaign_id=CAMPAIGN, day=DAY)
    try:
        clock.advance(hours=9, seconds=1)
        # Before the round is out nobody can know its value: an admin's is refused, not used.
        for given in ("", "ab" * 32):
            run.beacon_value = given
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lot.stub.RunDraw(run, metadata=lot.admin)
            assert error_details(err.value)["reason"] == "BEACON_NOT_PUBLISHED"
        clock.advance(seconds=3)
        run.beacon_value = "ab" * 32  # an operator's choice: with the seed known, it would pick the winners
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await lot.stub.RunDraw(run, metadata=lot.admin)
        details = error_details(err.value)
        assert (details["code"], details["reason"]) == ("FAILED_PRECONDITION", "BEACON_VALUE_MISMATCH")
        assert details["metadata"] == {"beacon_value": RANDOMNESS}
        run.beacon_value = ""
        drawn = (await lot.stub.RunDraw(run, metadata=lot.admin)).draw
        assert drawn.beacon_value == RANDOMNESS and len(drawn.winners) == 15
    finally:
        await lot.stop()
        relay.close()


async def test_while_no_relay_gives_a_verified_value_an_admin_value_is_not_used(tmp_path, fake_card_server, clock):
    # A relay that is down or lies (or one blocked on purpose) must not open the way for a value
    # of the operator's choosing: the call is to be retried, and the day stays undrawn.
    relay = Relay({"round": ROUND, "randomness": "00" * 32, "signature": SIGNATURE[:-2] + "00"})
    lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, relay)
    try:
        clock.advance(hours=9, seconds=10)
        run = pb.RunDrawRequest(request_id="run", campaign_id=CAMPAIGN, day=DAY, beacon_value="cd" * 32)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await lot.stub.RunDraw(run, metadata=lot.admin)
        details = error_details(err.value)
        assert (details["code"], details["reason"]) == ("UNAVAILABLE", "BEACON_UNVERIFIED") and details["retry_after_ms"]
        pending = (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.md)).draw
        assert not pending.winners and not pending.seed
        relay.answer = {"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE}
        run.request_id = "run-2"
        run.beacon_value = ""
        assert (await lot.stub.RunDraw(run, metadata=lot.admin)).draw.beacon_value == RANDOMNESS
    finally:
        await lot.stop()
        relay.close()
