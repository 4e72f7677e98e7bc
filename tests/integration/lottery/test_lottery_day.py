"""The whole day of a draw over real gRPC, a real SQLite store and a FakeClock."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from datetime import datetime, time, timedelta, timezone

import grpc
import pytest
from google.protobuf import json_format

from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2 as pb
from services.common.clock import to_ms
from services.common.errors import error_details
from services.lottery import model, verify

CAMPAIGN = "spring-2026"
DAY = "2026-01-28"
CUTOFF_DELTA = timedelta(hours=10)  # 10:00 -> 20:00 Shanghai


async def rpc_error(call) -> dict:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return error_details(err.value)


async def qualify(card, *users, count=3, clock=None):
    for u in users:
        await card.invite(u, count)


async def enter(lot, user, day=DAY, rid=""):
    return await lot.stub.EnterDraw(pb.EnterDrawRequest(request_id=rid, campaign_id=CAMPAIGN, user_id=user, day=day), metadata=lot.md)


async def get_draw(lot, day=DAY):
    return (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=day), metadata=lot.md)).draw


async def run_draw(lot, day=DAY, beacon=""):
    return (await lot.stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=day, beacon_value=beacon), metadata=lot.admin)).draw


async def dump(lot, day=DAY, page_size=2) -> dict:
    """Page through VerifyDraw the way `verify --dump` does."""
    entrants, token, first = [], "", None
    while True:
        resp = await lot.stub.VerifyDraw(
            pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=day, page_size=page_size, page_token=token), metadata=lot.md
        )
        first = first or resp
        entrants.extend(resp.entrants)
        token = resp.next_page_token
        if not token:
            break
    out = json_format.MessageToDict(first, preserving_proto_field_name=True)
    out["entrants"] = entrants
    return out


async def test_a_whole_day_commit_enter_close_reveal_verify(lottery, card_server, clock, tmp_path, capsys):
    committed = (await lottery.stub.CommitDraw(
        pb.CommitDrawRequest(request_id="c1", campaign_id=CAMPAIGN, day=DAY, winner_count=2), metadata=lottery.admin
    )).draw
    assert len(committed.commitment) == 64 and committed.status == lottery_pb2.DRAW_STATUS_OPEN
    assert committed.seed == "" and committed.winner_count == 2

    users = ["alice", "bob", "carol", "dave", "erin"]
    await qualify(card_server, *users, clock=clock)
    for u in users:
        resp = await enter(lottery, u)
        assert resp.newly_entered and resp.entry.user_id == u and resp.draw.commitment == committed.commitment

    draw = await get_draw(lottery)
    assert draw.entrant_count == 5 and draw.status == lottery_pb2.DRAW_STATUS_OPEN
    assert draw.seed == "" and list(draw.winners) == []  # the seed stays secret before the draw

    clock.advance(CUTOFF_DELTA.total_seconds())
    err = await rpc_error(enter(lottery, "frank"))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "ENTRIES_CLOSED")
    assert (await get_draw(lottery)).status == lottery_pb2.DRAW_STATUS_CLOSED

    clock.advance(5)
    drawn = await run_draw(lottery)
    assert drawn.status == lottery_pb2.DRAW_STATUS_DRAWN and len(drawn.winners) == 2
    assert hashlib.sha256(bytes.fromhex(drawn.seed)).hexdigest() == committed.commitment
    assert list(drawn.winners) == model.select_winners(bytes.fromhex(drawn.seed), "", sorted(users), 2)

    clock.advance(3600)
    again = await run_draw(lottery)
    assert again == drawn  # a rerun returns the stored result, draw_time included

    result = await dump(lottery, page_size=2)
    assert result["entrants"] == sorted(users) and not result.get("beacon_configured", False)
    assert "no public beacon" in result["note"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result), encoding="utf-8")
    assert verify.main(["--file", str(path)]) == 0
    assert "VERIFIED" in capsys.readouterr().out

    mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id=drawn.winners[0]), metadata=lottery.md)
    assert [(e.day, e.drawn, e.won) for e in mine.entries] == [(DAY, True, True)]
    loser = next(u for u in users if u not in drawn.winners)
    mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id=loser), metadata=lottery.md)
    assert [(e.drawn, e.won) for e in mine.entries] == [(True, False)]
    draws = await lottery.stub.ListDraws(pb.ListDrawsRequest(campaign_id=CAMPAIGN), metadata=lottery.md)
    assert [d.day for d in draws.draws] == [DAY] and draws.draws[0].seed == drawn.seed


async def test_the_live_verifier_fetches_all_pages_and_agrees(lottery, card_server, clock, tmp_path, capsys):
    users = [f"u{i:02d}" for i in range(25)]
    await qualify(card_server, *users, clock=clock)
    for u in users:
        await enter(lottery, u)
    clock.advance(CUTOFF_DELTA.total_seconds())
    await run_draw(lottery)
    out = tmp_path / "dump.json"
    code = await asyncio.to_thread(
        verify.main, ["--target", f"127.0.0.1:{lottery.port}", "--campaign", CAMPAIGN, "--day", DAY, "--dump", str(out)]
    )
    assert code == 0, capsys.readouterr().out
    dumped = json.loads(out.read_text(encoding="utf-8"))
    assert dumped["entrants"] == users and len(dumped["winners"]) == 15
    dumped["winners"][0] = next(u for u in users if u not in dumped["winners"])
    out.write_text(json.dumps(dumped), encoding="utf-8")
    assert verify.main(["--file", str(out)]) == 1


async def test_a_user_below_the_threshold_is_told_count_and_threshold(lottery, card_server, clock):
    await qualify(card_server, "ann", count=2, clock=clock)
    err = await rpc_error(enter(lottery, "ann"))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "NOT_QUALIFIED")
    assert "2" in err["message"] and "3" in err["message"]
    assert err["metadata"] == {"invited_count": "2", "threshold": "3"}
    # The third invite arrives: now she qualifies.
    await card_server.invite("ann", 1)
    assert (await enter(lottery, "ann")).newly_entered


async def test_entering_twice_returns_the_same_entry(lottery, card_server, clock):
    await qualify(card_server, "bob", clock=clock)
    first = await enter(lottery, "bob", rid="r1")
    clock.advance(60)
    second = await enter(lottery, "bob", rid="r2")
    assert first.newly_entered and not second.newly_entered
    assert second.entry == first.entry and second.draw.entrant_count == 1
    # After the cut-off a retry still gets its entry back rather than ENTRIES_CLOSED.
    clock.advance(CUTOFF_DELTA.total_seconds())
    third = await enter(lottery, "bob")
    assert not third.newly_entered and third.entry == first.entry


async def test_three_hundred_concurrent_entries_of_one_user_make_one_entry(lottery, card_server, clock):
    await qualify(card_server, "racer", clock=clock)

    async def enter_retrying_when_shed(i):
        # Admission may shed part of the burst on a loaded machine (UNAVAILABLE + pushback); a
        # shed call never reached the store, so retrying it keeps the race honest.
        for _ in range(100):
            try:
                return await enter(lottery, "racer", rid=f"r{i}")
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.02)
        raise AssertionError("shed 100 times in a row")

    results = await asyncio.gather(*(enter_retrying_when_shed(i) for i in range(300)))
    assert sum(r.newly_entered for r in results) == 1
    if card_server.stats_calls is not None:
        assert card_server.stats_calls > 1  # many calls really raced to the store
    assert len({r.entry.entry_time.ToMilliseconds() for r in results}) == 1
    assert (await get_draw(lottery)).entrant_count == 1
    clock.advance(CUTOFF_DELTA.total_seconds())
    drawn = await run_draw(lottery)
    assert list(drawn.winners) == ["racer"]


async def test_the_draw_cannot_run_before_the_cutoff_and_cannot_be_verified_before_it_runs(lottery, card_server, clock):
    await qualify(card_server, "u1", clock=clock)
    await enter(lottery, "u1")
    err = await rpc_error(run_draw(lottery))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "DRAW_NOT_CLOSED")
    err = await rpc_error(lottery.stub.VerifyDraw(pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.md))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "DRAW_NOT_DRAWN")
    clock.advance(CUTOFF_DELTA.total_seconds() - 1)
    err = await rpc_error(run_draw(lottery))
    assert err["reason"] == "DRAW_NOT_CLOSED"
    clock.advance(1)
    assert (await run_draw(lottery)).winners == ["u1"]


async def test_a_restart_between_commit_and_reveal_keeps_the_seed(lottery, card_server, clock):
    committed = (await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)).draw
    await qualify(card_server, "a", "b", clock=clock)
    await enter(lottery, "a")
    await lottery.restart()
    # CommitDraw again after the restart must not mint a new seed.
    again = (await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)).draw
    assert again.commitment == committed.commitment and again.commit_time == committed.commit_time
    await enter(lottery, "b")
    clock.advance(CUTOFF_DELTA.total_seconds())
    await lottery.restart()
    drawn = await run_draw(lottery)
    assert hashlib.sha256(bytes.fromhex(drawn.seed)).hexdigest() == committed.commitment
    assert drawn.entrant_count == 2
    await lottery.restart()
    assert (await run_draw(lottery)) == drawn


async def test_the_scheduler_commits_at_the_start_of_the_day_and_draws_after_the_cutoff(lottery, card_server, clock):
    scheduler = lottery.server.scheduler
    await scheduler.tick()
    draw = await get_draw(lottery)
    assert draw.commitment and draw.status == lottery_pb2.DRAW_STATUS_OPEN
    commitment = draw.commitment
    await qualify(card_server, "x", "y", clock=clock)
    await enter(lottery, "x")
    await enter(lottery, "y")
    assert (await scheduler.tick())["drawn"] == []
    clock.advance(CUTOFF_DELTA.total_seconds())
    done = await scheduler.tick()
    assert done["drawn"] == [f"{CAMPAIGN}/{DAY}"]
    drawn = await get_draw(lottery)
    assert drawn.status == lottery_pb2.DRAW_STATUS_DRAWN and drawn.commitment == commitment
    assert sorted(drawn.winners) == ["x", "y"]
    # The next morning's tick commits the next day.
    clock.advance(hours=6)  # 02:00 on the 29th in Shanghai
    done = await scheduler.tick()
    assert done["committed"] == [f"{CAMPAIGN}/2026-01-29"]
    assert (await lottery.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN), metadata=lottery.md)).draw.day == "2026-01-29"


async def test_a_committed_beacon_round_makes_the_draw_wait_for_its_value(lottery, card_server, clock):
    committed = (await lottery.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet"), metadata=lottery.admin
    )).draw
    assert committed.beacon_source == "drand:quicknet" and committed.beacon_round.isdigit()
    await qualify(card_server, *[f"p{i}" for i in range(20)], clock=clock)
    for i in range(20):
        await enter(lottery, f"p{i}")
    clock.advance(CUTOFF_DELTA.total_seconds() + 10)
    done = await lottery.server.scheduler.tick()
    assert done["waiting_for_beacon"] == [f"{CAMPAIGN}/{DAY}"] and done["drawn"] == []
    err = await rpc_error(run_draw(lottery))
    assert (err["code"], err["reason"]) == ("INVALID_ARGUMENT", "BEACON_VALUE_REQUIRED")
    beacon = "9f" * 32
    drawn = await run_draw(lottery, beacon=beacon)
    seed = bytes.fromhex(drawn.seed)
    assert list(drawn.winners) == model.select_winners(seed, beacon, [f"p{i}" for i in range(20)], 15)
    assert list(drawn.winners) != model.select_winners(seed, "", [f"p{i}" for i in range(20)], 15)
    assert (await run_draw(lottery, beacon="other")).winners == drawn.winners  # stored, never redrawn
    result = await dump(lottery, page_size=7)
    assert result["beacon_configured"] is True and result["beacon_value"] == beacon
    assert all(ok for ok, _ in verify.check(result)), verify.check(result)
    assert "beacon" in result["note"] and "no public beacon" not in result["note"]


def published_at(source: str, round_text: str) -> datetime:
    genesis, period = model.DRAND_CHAINS[source]
    return datetime.fromtimestamp(genesis + (int(round_text) - 1) * period, timezone.utc)


async def test_a_beacon_bound_after_a_restart_that_moved_the_cutoff_follows_the_days_own_cutoff(lottery, card_server, clock):
    committed = (await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)).draw
    closes = committed.cutoff_time.ToDatetime(tzinfo=timezone.utc)  # 20:00 Shanghai, fixed at the commit
    lottery.draw_settings = dataclasses.replace(lottery.draw_settings, cutoff=time(18, 0))
    await lottery.restart()
    # A round of 18:00 would be public two hours before entries close: anyone holding the seed
    # could then rank every id and enter winning ones.
    too_early = model.beacon_round_for("drand:quicknet", to_ms(closes - timedelta(hours=2)))
    err = await rpc_error(lottery.stub.CommitDraw(pb.CommitDrawRequest(
        campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet", beacon_round=too_early
    ), metadata=lottery.admin))
    assert (err["code"], err["reason"]) == ("INVALID_ARGUMENT", "BEACON_ROUND_TOO_EARLY")
    bound = (await lottery.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet"), metadata=lottery.admin
    )).draw
    assert bound.cutoff_time == committed.cutoff_time
    assert closes <= published_at("drand:quicknet", bound.beacon_round) < closes + timedelta(seconds=3)
    again = (await lottery.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet"), metadata=lottery.admin
    )).draw
    assert again.beacon_round == bound.beacon_round  # a retry, not a second binding


async def test_a_beacon_value_without_a_committed_round_is_refused(lottery, card_server, clock):
    await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)
    clock.advance(CUTOFF_DELTA.total_seconds())
    err = await rpc_error(run_draw(lottery, beacon="chosen-after-the-fact"))
    assert (err["code"], err["reason"]) == ("INVALID_ARGUMENT", "BEACON_NOT_COMMITTED")


async def test_commit_after_the_cutoff_and_run_of_an_uncommitted_day_are_refused(lottery, card_server, clock):
    err = await rpc_error(run_draw(lottery, day="2026-02-03"))
    assert (err["code"], err["reason"]) == ("NOT_FOUND", "DRAW_NOT_FOUND")
    clock.advance(CUTOFF_DELTA.total_seconds() + 1)
    day = "2026-01-27"  # yesterday: its cut-off has passed
    err = await rpc_error(lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=day), metadata=lottery.admin))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "ENTRIES_CLOSED")


async def test_commit_may_set_the_prize_before_the_cutoff_but_never_the_seed(lottery, card_server, clock):
    first = (await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)).draw
    assert (first.prize_name, first.prize_value_fen, first.winner_count) == ("AI生活卡", 1_000_000, 15)
    second = (await lottery.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, prize_name="大奖", winner_count=3), metadata=lottery.admin
    )).draw
    assert (second.prize_name, second.winner_count, second.commitment) == ("大奖", 3, first.commitment)
    clock.advance(CUTOFF_DELTA.total_seconds())
    err = await rpc_error(lottery.stub.CommitDraw(
        pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, winner_count=30), metadata=lottery.admin
    ))
    assert err["reason"] == "ENTRIES_CLOSED"


async def test_future_days_unknown_campaigns_and_days_outside_the_window(lottery, card_server, clock):
    await qualify(card_server, "u", clock=clock)
    err = await rpc_error(enter(lottery, "u", day="2026-01-29"))
    assert (err["code"], err["reason"]) == ("FAILED_PRECONDITION", "ENTRIES_NOT_OPEN")
    err = await rpc_error(enter(lottery, "u", day="2025-06-01"))
    assert (err["code"], err["reason"]) == ("NOT_FOUND", "DRAW_NOT_FOUND")
    err = await rpc_error(lottery.stub.EnterDraw(pb.EnterDrawRequest(campaign_id="nope", user_id="u"), metadata=lottery.md))
    assert (err["code"], err["reason"]) == ("NOT_FOUND", "CAMPAIGN_NOT_FOUND")
    # An uncommitted day inside the window has a schedule but no commitment yet.
    later = await get_draw(lottery, "2026-03-01")
    # It has not begun: UPCOMING, not OPEN (an entry would be ENTRIES_NOT_OPEN).
    assert later.commitment == "" and later.status == lottery_pb2.DRAW_STATUS_UPCOMING and later.cutoff_time.seconds > 0
    err = await rpc_error(lottery.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day="2030-01-01"), metadata=lottery.md))
    assert err["reason"] == "DRAW_NOT_FOUND"
    # Today's draw by an empty day.
    resp = await lottery.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u"), metadata=lottery.md)
    assert resp.entry.day == DAY


@pytest.mark.parametrize(
    "method,request_,field",
    [
        ("EnterDraw", pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u", day="2026-13-01"), "day"),
        ("EnterDraw", pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u", day="28/01/2026"), "day"),
        ("EnterDraw", pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=""), "user_id"),
        ("EnterDraw", pb.EnterDrawRequest(campaign_id="", user_id="u"), "campaign_id"),
        ("EnterDraw", pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="a\nb"), "user_id"),
        ("GetDraw", pb.GetDrawRequest(campaign_id=CAMPAIGN, day="yesterday"), "day"),
        ("GetDraw", pb.GetDrawRequest(campaign_id="", day=DAY), "campaign_id"),
        ("VerifyDraw", pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=DAY, page_size=-1), "page_size"),
        ("VerifyDraw", pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=DAY, page_size=10_001), "page_size"),
        ("VerifyDraw", pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=DAY, page_token="%%%"), "page_token"),
        ("VerifyDraw", pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=""), "day"),
        ("ListMyEntries", pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="u", page_size=-1), "page_size"),
        ("ListMyEntries", pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id=""), "user_id"),
        ("ListMyEntries", pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="u", page_token="Zm9v"), "page_token"),
        ("ListDraws", pb.ListDrawsRequest(campaign_id=CAMPAIGN, page_size=101), "page_size"),
        ("ListDraws", pb.ListDrawsRequest(campaign_id=""), "campaign_id"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, winner_count=-1), "winner_count"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, winner_count=10_001), "winner_count"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, prize_value_fen=-5), "prize_value_fen"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_round="7"), "beacon_round"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:\u2028x"), "beacon_source"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:\u3000x"), "beacon_source"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet", beacon_round="1"), "beacon_round"),
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day="2026-02-31"), "day"),
        # A calendar date whose 20:00 in Asia/Shanghai falls in year 0: datetime overflowed (INTERNAL).
        ("CommitDraw", pb.CommitDrawRequest(campaign_id=CAMPAIGN, day="0001-01-01"), "day"),
        ("GetDraw", pb.GetDrawRequest(campaign_id=CAMPAIGN, day="0001-01-01"), "day"),
        ("EnterDraw", pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u", day="0001-01-01"), "day"),
        ("GetDraw", pb.GetDrawRequest(campaign_id=CAMPAIGN, day="9999-12-31"), "day"),
        ("RunDraw", pb.RunDrawRequest(campaign_id=CAMPAIGN, day=""), "day"),
        ("RunDraw", pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_value="x" * 2000), "beacon_value"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(lottery, method, request_, field):
    err = await rpc_error(getattr(lottery.stub, method)(request_, metadata=lottery.admin))
    assert err["code"] == "INVALID_ARGUMENT", err
    assert err["reason"] and err["reason"] != "INTERNAL"
    assert field in [f for f, _ in err["violations"]], err


@pytest.mark.parametrize("round_text", ["²", "9" * 25, "١٢٣٤٥٦٧٨٩"])
async def test_a_drand_round_that_is_not_ascii_digits_within_int64_is_invalid_beacon_round(lottery, round_text):
    # "²" passed str.isdigit() and then failed int(): an INTERNAL; the others were committed.
    request = pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, beacon_source="drand:quicknet", beacon_round=round_text)
    err = await rpc_error(lottery.stub.CommitDraw(request, metadata=lottery.admin))
    assert (err["code"], err["reason"]) == ("INVALID_ARGUMENT", "INVALID_BEACON_ROUND"), err
    assert [f for f, _ in err["violations"]] == ["beacon_round"], err


async def test_admin_rpcs_need_the_admin_credential_and_the_rest_the_internal_one(lottery):
    err = await rpc_error(lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.md))
    assert (err["code"], err["reason"]) == ("PERMISSION_DENIED", "ADMIN_REQUIRED")
    err = await rpc_error(lottery.stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.md))
    assert err["code"] == "PERMISSION_DENIED"
    err = await rpc_error(lottery.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY)))
    assert err["code"] == "UNAUTHENTICATED"


async def test_the_card_service_down_is_unavailable_upstream(tmp_path, clock, draw_settings, card_server):
    import grpc as _grpc

    from services.common.config import Settings
    from services.lottery.wiring import build
    from services.common.auth import internal_metadata
    from miandan.lottery.v1 import lottery_service_pb2_grpc

    import socket

    # A port that was bound and released: nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = Settings(service="lottery", port=0, data_dir=tmp_path, card_addr=f"127.0.0.1:{dead_port}", log_calls=False)
    server = await build(settings, clock=clock, draw_settings=draw_settings)
    port = await server.start()
    try:
        async with _grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = lottery_service_pb2_grpc.LotteryServiceStub(ch)
            err = await rpc_error(stub.EnterDraw(
                pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u", day=DAY), metadata=internal_metadata(settings), timeout=10
            ))
            assert (err["code"], err["reason"]) == ("UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
            assert err["retry_after_ms"] is not None
    finally:
        await server.stop(0.5)


async def test_draw_listings_page_newest_first_and_never_leak_a_seed(lottery, card_server, clock):
    for day in ("2026-01-28", "2026-01-29", "2026-01-30"):
        await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=day), metadata=lottery.admin)
    page1 = await lottery.stub.ListDraws(pb.ListDrawsRequest(campaign_id=CAMPAIGN, page_size=2), metadata=lottery.md)
    assert [d.day for d in page1.draws] == ["2026-01-30", "2026-01-29"] and page1.next_page_token
    page2 = await lottery.stub.ListDraws(
        pb.ListDrawsRequest(campaign_id=CAMPAIGN, page_size=2, page_token=page1.next_page_token), metadata=lottery.md
    )
    assert [d.day for d in page2.draws] == ["2026-01-28"] and not page2.next_page_token
    assert all(d.seed == "" and d.commitment for d in [*page1.draws, *page2.draws])

    await qualify(card_server, "walker", clock=clock)
    for _ in range(3):
        await enter(lottery, "walker", day="")
        clock.advance(hours=24)
    page1 = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="walker", page_size=2), metadata=lottery.md)
    assert [e.day for e in page1.entries] == ["2026-01-30", "2026-01-29"]
    page2 = await lottery.stub.ListMyEntries(
        pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="walker", page_size=2, page_token=page1.next_page_token), metadata=lottery.md
    )
    assert [e.day for e in page2.entries] == ["2026-01-28"] and not page2.next_page_token
