"""The gateway's flows against in-memory upstream fakes."""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.lottery.v1 import lottery_pb2
from miandan.order.v1 import order_pb2, order_service_pb2
from services.common.errors import (
    DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, Unavailable,
)

HANGZHOU = common_pb2.GeoPoint(latitude=30.27, longitude=120.16)


async def test_join_claims_the_signup_card_and_returns_the_wallet(fakes):
    reply = await fakes.gateway.join("alice", "r1", "", fakes.options())
    assert reply.newly_joined and not reply.invite_accepted and reply.invite_problem == ""
    assert [c.card_id for c in reply.wallet.cards] == ["c-alice-1"]
    assert reply.wallet.wallet.invite_code == "K7QM3XPA"
    assert fakes.card.requests("AcceptInvite") == []
    assert fakes.card.requests("ClaimSignupCard")[0].user_id == "alice"


async def test_join_with_a_pass_phrase_accepts_the_invite_for_the_token_user(fakes):
    reply = await fakes.gateway.join("bob", "r1", "¥K7QM3XPA¥ 复制这段口令", fakes.options())
    assert reply.invite_accepted
    accept = fakes.card.requests("AcceptInvite")[0]
    assert accept.invitee_user_id == "bob" and "K7QM3XPA" in accept.text and accept.campaign_id == "spring-2026"


async def test_an_invite_problem_does_not_fail_the_join(fakes, make_rpc_error):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(FailedPrecondition("INVITEE_NOT_NEW", "not new"))
    reply = await fakes.gateway.join("bob", "r1", "¥K7QM3XPA¥", fakes.options())
    assert reply.newly_joined and not reply.invite_accepted
    assert reply.invite_problem == "INVITEE_NOT_NEW"
    assert len(reply.wallet.cards) == 1


async def test_join_request_ids_are_scoped_to_the_user(fakes):
    await fakes.gateway.join("alice", "same", "", fakes.options())
    await fakes.gateway.join("bob", "same", "", fakes.options())
    a, b = fakes.card.requests("ClaimSignupCard")
    assert a.request_id != b.request_id and len(a.request_id) <= 64


async def test_the_wallet_runs_its_upstream_calls_concurrently(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.gateway._draws._values.clear()
    fakes.card.delay["GetWallet"] = 0.2
    fakes.lottery.delay["GetDraw"] = 0.2
    start = time.perf_counter()
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert time.perf_counter() - start < 0.35  # two 200 ms calls side by side, not 400 ms
    assert view.lottery.day == "2026-01-28" and view.lottery.threshold == 3 and view.lottery.invites == 1


async def test_the_wallet_says_whether_the_user_entered_today(fakes):
    fakes.card.invites["alice"] = 3
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    assert not (await fakes.gateway.wallet_view("alice", fakes.options())).lottery.entered_today
    fakes.lottery.entries.append(lottery_pb2.Entry(user_id="alice", day="2026-01-28"))
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert view.lottery.entered_today and view.lottery.qualified


async def test_the_wallet_says_whether_todays_entries_are_open_by_the_cutoff_not_a_cached_status(fakes):
    fakes.card.invites["alice"] = 3
    fakes.lottery.draw.cutoff_time.FromDatetime(fakes.clock.now() + timedelta(minutes=5))
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    assert (await fakes.gateway.wallet_view("alice", fakes.options())).lottery.entries_open
    fakes.clock.advance(minutes=5)  # the draw read a moment ago still says OPEN (cached)
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert not view.lottery.entries_open and view.lottery.qualified and view.lottery.invites == 3
    fakes.lottery.draw.status = lottery_pb2.DRAW_STATUS_NOT_HELD
    fakes.clock.advance(minutes=5)  # past the cache
    assert not (await fakes.gateway.wallet_view("alice", fakes.options())).lottery.entries_open


def upstream_calls(fakes):
    return [name for f in (fakes.card, fakes.lottery) for name, _, _ in f.calls]


async def test_a_wallet_is_one_card_call_once_campaign_and_draw_are_cached(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.card.calls.clear(), fakes.lottery.calls.clear()
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert upstream_calls(fakes) == ["GetWallet"]  # not qualified: no entries to read
    assert [c.card_id for c in view.cards] == ["c-alice-1"]
    assert fakes.card.requests("GetWallet")[0].include_available_cards


async def test_a_qualified_user_s_wallet_also_reads_its_entries(fakes):
    fakes.card.invites["alice"] = 3
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.card.calls.clear(), fakes.lottery.calls.clear()
    await fakes.gateway.wallet_view("alice", fakes.options())
    assert upstream_calls(fakes) == ["GetWallet", "ListMyEntries"]


async def test_join_without_a_pass_phrase_is_one_card_call_plus_the_cached_reads(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    assert sorted(upstream_calls(fakes)) == ["ClaimSignupCard", "GetCampaign", "GetDraw"]
    fakes.card.calls.clear(), fakes.lottery.calls.clear()
    await fakes.gateway.join("bob", "r1", "", fakes.options())
    assert upstream_calls(fakes) == ["ClaimSignupCard"]  # the claim brings the wallet back


async def test_the_campaign_is_cached_30_s_and_the_draw_a_few_seconds(fakes):
    for _ in range(10):
        await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(fakes.card.requests("GetCampaign")) == 1 and len(fakes.lottery.requests("GetDraw")) == 1
    fakes.clock.advance(seconds=4)
    await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(fakes.card.requests("GetCampaign")) == 1 and len(fakes.lottery.requests("GetDraw")) == 2
    fakes.clock.advance(seconds=30)
    await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(fakes.card.requests("GetCampaign")) == 2 and len(fakes.lottery.requests("GetDraw")) == 3


async def test_wallets_that_miss_the_cache_together_share_one_fetch(fakes):
    import asyncio

    fakes.lottery.delay["GetDraw"] = 0.05
    views = await asyncio.gather(*(fakes.gateway.wallet_view(f"u{n}", fakes.options()) for n in range(20)))
    assert len(views) == 20 and {v.lottery.day for v in views} == {"2026-01-28"}
    assert len(fakes.lottery.requests("GetDraw")) == 1 and len(fakes.card.requests("GetCampaign")) == 1


async def test_a_failed_draw_read_is_not_cached(fakes, make_rpc_error):
    fakes.lottery.fail["GetDraw"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))
    await fakes.gateway.wallet_view("alice", fakes.options())
    del fakes.lottery.fail["GetDraw"]
    await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(fakes.lottery.requests("GetDraw")) == 2


async def test_today_is_the_day_in_the_campaign_s_time_zone(fakes):
    from datetime import datetime, timezone

    fakes.card.time_zone = "America/Los_Angeles"
    fakes.clock.set(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))  # 27 Jan in Los Angeles, 28 Jan in Shanghai
    await fakes.gateway.wallet_view("alice", fakes.options())
    assert fakes.lottery.requests("GetDraw")[0].day == "2026-01-27"


async def test_the_wallet_is_still_shown_when_the_lottery_is_down(fakes, make_rpc_error):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.lottery.fail["GetDraw"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(view.cards) == 1 and not view.lottery.entered_today
    assert view.lottery.day == "2026-01-28"  # computed from the clock in Asia/Shanghai


async def test_a_wallet_the_lottery_could_not_answer_says_its_standing_is_unknown(fakes, make_rpc_error):
    # Said so, rather than "not entered, entries closed" at noon to a user who entered.
    fakes.card.invites["alice"] = 3
    fakes.lottery.fail["GetDraw"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert view.lottery.standing_unknown and not view.lottery.entries_open


async def test_a_wallet_whose_lottery_answered_says_its_standing_is_known(fakes):
    fakes.card.invites["alice"] = 3  # qualified: its entry is read too
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert not view.lottery.standing_unknown


async def test_the_wallet_is_still_shown_when_the_lottery_s_core_refuses_its_calls(fakes):
    # CANCELLED without details: a busy lottery's gRPC core turning calls away (max_pending_calls).
    refused = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "")
    fakes.lottery.fail["GetDraw"] = refused
    joined = await fakes.gateway.join("alice", "r1", "", fakes.options())
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert len(joined.wallet.cards) == len(view.cards) == 1 and not view.lottery.entered_today


async def test_a_card_failure_fails_the_wallet_and_cancels_the_other_calls(fakes, make_rpc_error):
    fakes.card.fail["GetWallet"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))
    fakes.lottery.delay["GetDraw"] = 5
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fakes.gateway.wallet_view("alice", fakes.options())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.perf_counter() - start < 1


async def test_order_by_text_previews_what_the_card_covers(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(text="两杯生椰拿铁，一杯少冰", location=HANGZHOU), fakes.options()
    )
    p = reply.preview
    assert (p.total_fen, p.card_covered_fen, p.payable_fen) == (3200, 2500, 700)
    assert p.card_id == "c-alice-1" and p.preview_id.startswith("pv_") and not reply.HasField("order")
    assert p.proposal.store.store.store_id == "luckin-hz-1"
    assert fakes.order.requests("PlaceOrder") == []
    match = fakes.catalog.requests("MatchIntent")[0]
    assert match.location.latitude == pytest.approx(30.27)


async def test_order_by_text_without_a_location_sends_none_for_the_catalog_to_refuse(fakes):
    await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="一杯拿铁"), fakes.options())
    assert not fakes.catalog.requests("MatchIntent")[0].HasField("location")


async def test_without_a_card_the_whole_total_is_payable(fakes):
    reply = await fakes.gateway.order_by_text("nocard", gw.OrderByTextRequest(text="一杯拿铁"), fakes.options())
    assert (reply.preview.card_covered_fen, reply.preview.payable_fen, reply.preview.card_id) == (0, 3200, "")


async def test_a_card_covers_at_most_the_total(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.catalog.total_fen = 900
    p = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="一杯柠檬水"), fakes.options())).preview
    assert (p.card_covered_fen, p.payable_fen) == (900, 0)


async def test_order_by_text_with_confirm_places_the_order_with_the_best_card(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True), fakes.options()
    )
    assert reply.order.order_id == "o-1" and reply.preview.total_fen == 3200
    place = fakes.order.requests("PlaceOrder")[0]
    assert (place.user_id, place.store_id, place.request_id) == ("alice", "luckin-hz-1", "o1")
    assert place.card_use == order_pb2.CARD_USE_BEST and place.campaign_id == "spring-2026"
    assert [(line.item_id, line.quantity) for line in place.lines] == [("luckin-coconut-latte", 2)]


async def test_a_guess_is_not_bought_straight_from_text_but_shown_back_for_a_confirm_by_id(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    with pytest.raises(FailedPrecondition) as info:
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(request_id="o1", text="拿铁", confirm=True), fakes.options())
    assert info.value.reason == "INTENT_UNCERTAIN" and "2×生椰拿铁" in info.value.message
    assert info.value.metadata["confidence"] == "0.51"
    assert fakes.order.requests("PlaceOrder") == []
    # The same request again is refused the same way (nothing was kept as its replay).
    with pytest.raises(FailedPrecondition):
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(request_id="o1", text="拿铁", confirm=True), fakes.options())
    # "Yes, that one": the preview the refusal named is confirmed by its id.
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", preview_id=info.value.metadata["preview_id"], confirm=True), fakes.options()
    )
    assert reply.order.order_id == "o-1" and len(fakes.order.requests("PlaceOrder")) == 1
    assert len(fakes.catalog.requests("MatchIntent")) == 2


async def test_a_guess_may_still_be_previewed(fakes):
    reply = await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="拿铁"), fakes.options())
    assert reply.preview.proposal.confidence == pytest.approx(0.51) and reply.preview.preview_id


async def test_a_preview_is_confirmed_later_by_its_id_without_reparsing(fakes):
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
    )
    assert reply.order.order_id == "o-1" and reply.preview.preview_id == preview.preview_id
    assert len(fakes.catalog.requests("MatchIntent")) == 1
    assert fakes.order.requests("PlaceOrder")[0].store_id == "luckin-hz-1"


async def test_someone_elses_preview_is_not_found(fakes):
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    with pytest.raises(NotFound) as info:
        await fakes.gateway.order_by_text(
            "mallory", gw.OrderByTextRequest(request_id="x", preview_id=preview.preview_id, confirm=True), fakes.options()
        )
    assert info.value.reason == "PREVIEW_NOT_FOUND"
    assert fakes.order.requests("PlaceOrder") == []


async def test_an_expired_preview_is_not_found(fakes):
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    fakes.clock.advance(601)
    with pytest.raises(NotFound):
        await fakes.gateway.order_by_text(
            "alice", gw.OrderByTextRequest(request_id="x", preview_id=preview.preview_id, confirm=True), fakes.options()
        )


async def test_an_unclear_sentence_gets_a_clarification_and_cannot_be_confirmed(fakes):
    reply = await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="火星上的饮料"), fakes.options())
    assert reply.preview.clarification and reply.preview.preview_id == "" and not reply.preview.HasField("proposal")
    with pytest.raises(FailedPrecondition) as info:
        await fakes.gateway.order_by_text(
            "alice", gw.OrderByTextRequest(request_id="x", text="火星上的饮料", confirm=True), fakes.options()
        )
    assert info.value.reason == "INTENT_NEEDS_CLARIFICATION"


@pytest.mark.parametrize(
    "request_, field",
    [
        (gw.OrderByTextRequest(text="  "), "text"),
        (gw.OrderByTextRequest(text="拿铁" * 300), "text"),
        (gw.OrderByTextRequest(text="拿铁", confirm=True), "request_id"),
    ],
)
async def test_bad_order_by_text_input_names_the_field(fakes, request_, field):
    with pytest.raises(InvalidArgument) as info:
        await fakes.gateway.order_by_text("alice", request_, fakes.options())
    assert info.value.violations[0][0] == field


async def test_order_calls_carry_the_token_user_not_a_request_field(fakes):
    o = fakes.options()
    await fakes.gateway.place_order("alice", gw.PlaceOrderRequest(request_id="r", store_id="s"), o)
    await fakes.gateway.get_order("alice", "o-9", o)
    await fakes.gateway.list_orders("alice", gw.ListOrdersRequest(page_size=5), o)
    await fakes.gateway.cancel_order("alice", gw.CancelOrderRequest(request_id="c", order_id="o-9"), o)
    await fakes.gateway.confirm_payment("alice", gw.ConfirmPaymentRequest(request_id="p", order_id="o-9"), o)
    for name, request, kw in fakes.order.calls:
        assert request.user_id == "alice", name
        assert kw["metadata"] == o.metadata and 0 < kw["timeout"] <= 5
    assert fakes.order.requests("PlaceOrder")[0].card_use == order_pb2.CARD_USE_BEST


async def test_upstream_calls_get_the_callers_remaining_deadline(fakes):
    await fakes.gateway.get_order("alice", "o-1", fakes.options(0.3))
    _, _, kw = fakes.order.calls[0]
    assert 0.2 < kw["timeout"] <= 0.3


async def test_no_upstream_call_starts_after_the_deadline(fakes):
    with pytest.raises(DeadlineExceeded):
        await fakes.gateway.get_order("alice", "o-1", fakes.options(-0.01))
    assert fakes.order.calls == []


async def test_watch_order_passes_updates_through_and_cancels_upstream_when_the_client_leaves(fakes):
    fakes.order.watch_hangs = True
    stream = fakes.gateway.watch_order("alice", "o-1", fakes.options())
    first = await stream.__anext__()
    assert first.order.status == order_pb2.ORDER_STATUS_PAID
    await stream.__anext__()
    await stream.aclose()  # what grpc does when the client cancels
    assert fakes.order.watches[0].cancelled
    assert fakes.order.requests("WatchOrder")[0].user_id == "alice"


async def test_watch_order_ends_when_the_upstream_stream_ends(fakes):
    updates = [u async for u in fakes.gateway.watch_order("alice", "o-1", fakes.options())]
    assert [u.order.status for u in updates] == [order_pb2.ORDER_STATUS_PAID, order_pb2.ORDER_STATUS_ACCEPTED]


async def test_search_and_menu_pass_through(fakes):
    search = gw.SearchStoresRequest(search=catalog_service_pb2.SearchStoresRequest(location=HANGZHOU, page_size=3))
    reply = await fakes.gateway.search_stores(search, fakes.options())
    assert reply.stores[0].store.store_id == "s1" and reply.next_page_token == "p2"
    assert fakes.catalog.requests("SearchStores")[0].page_size == 3
    menu = await fakes.gateway.get_menu("s1", fakes.options())
    assert menu.menu.store.store_id == "s1" and menu.menu.open_now


async def test_enter_lottery_enters_the_token_user(fakes):
    reply = await fakes.gateway.enter_lottery("alice", "r1", fakes.options())
    assert reply.entry.user_id == "alice" and reply.draw.day == "2026-01-28"
    assert fakes.lottery.requests("EnterDraw")[0].request_id.startswith("gw-lottery-")


async def test_draw_results_before_the_draw_are_not_verified(fakes):
    reply = await fakes.gateway.draw_results("alice", "", fakes.options())
    assert not reply.results.verified and "not drawn" in reply.results.verification_note
    assert fakes.lottery.requests("VerifyDraw") == []


async def test_a_drawn_day_is_recomputed_and_verified(fakes, make_drawn):
    entrants = [f"user-{i}" for i in range(25)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=15)
    fakes.lottery.page_size = 10  # three pages of entrants
    winner = fakes.lottery.draw.winners[0]
    reply = await fakes.gateway.draw_results(winner, "2026-01-28", fakes.options())
    assert reply.results.verified and reply.results.caller_won, reply.results.verification_note
    assert len(fakes.lottery.requests("VerifyDraw")) == 3
    loser = next(u for u in entrants if u not in fakes.lottery.draw.winners)
    again = await fakes.gateway.draw_results(loser, "2026-01-28", fakes.options())
    assert again.results.verified and not again.results.caller_won
    assert len(fakes.lottery.requests("VerifyDraw")) == 3  # a verified day is not fetched again


async def test_results_asked_by_a_crowd_at_once_are_verified_once(fakes, make_drawn):
    entrants = [f"user-{i}" for i in range(25)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=15)
    fakes.lottery.page_size = 10
    fakes.lottery.delay["VerifyDraw"] = 0.01  # every caller arrives while the first check runs
    replies = await asyncio.gather(*(fakes.gateway.draw_results(u, "2026-01-28", fakes.options()) for u in entrants))
    assert all(r.results.verified for r in replies)
    assert len(fakes.lottery.requests("VerifyDraw")) == 3  # one check's three pages, not 25 checks'


async def test_a_failed_check_is_answered_to_all_who_waited_and_made_again_later(fakes, make_drawn):
    fakes.lottery.draw, fakes.lottery.verify = make_drawn([f"user-{i}" for i in range(20)], winner_count=3)
    fakes.lottery.draw.winners[0] = "user-rigged"
    fakes.lottery.delay["VerifyDraw"] = 0.01
    replies = await asyncio.gather(*(fakes.gateway.draw_results("alice", "2026-01-28", fakes.options()) for _ in range(5)))
    assert all(not r.results.verified and "differ" in r.results.verification_note for r in replies)
    assert len(fakes.lottery.requests("VerifyDraw")) == 1  # one page, fetched once for the five
    await fakes.gateway.draw_results("alice", "2026-01-28", fakes.options())
    assert len(fakes.lottery.requests("VerifyDraw")) == 2  # not kept: checked again


async def test_a_draw_whose_winners_do_not_recompute_is_not_verified(fakes, make_drawn):
    fakes.lottery.draw, fakes.lottery.verify = make_drawn([f"user-{i}" for i in range(20)], winner_count=3)
    fakes.lottery.draw.winners[0] = "user-rigged"
    reply = await fakes.gateway.draw_results("alice", "2026-01-28", fakes.options())
    assert not reply.results.verified and "differ" in reply.results.verification_note


async def test_a_draw_whose_seed_does_not_match_its_commitment_is_not_verified(fakes, make_drawn):
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(["a", "b", "c"], winner_count=1)
    fakes.lottery.draw.commitment = "00" * 32
    fakes.lottery.verify["commitment"] = "00" * 32
    reply = await fakes.gateway.draw_results("alice", "2026-01-28", fakes.options())
    assert not reply.results.verified and "commitment" in reply.results.verification_note


async def test_a_malformed_day_is_invalid(fakes):
    with pytest.raises(InvalidArgument) as info:
        await fakes.gateway.draw_results("alice", "28/01/2026", fakes.options())
    assert info.value.violations[0][0] == "day" and info.value.reason == "INVALID_DAY"  # as the lottery says it


async def test_an_invalid_pass_phrase_is_reported_in_the_gateways_field_name(fakes, make_rpc_error):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(InvalidArgument("text", "no invite code", reason="INVITE_CODE_MISSING"))
    with pytest.raises(InvalidArgument) as info:
        await fakes.gateway.join("bob", "r1", "no code here", fakes.options())
    assert info.value.violations[0][0] == "pass_phrase_text" and info.value.reason == "INVITE_CODE_MISSING"


async def test_confirming_straight_from_text_asks_no_card_and_shows_what_the_order_used(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    placed_order = order_pb2.Order(
        order_id="o-1", user_id="alice", store_id="luckin-hz-1", status=order_pb2.ORDER_STATUS_PAID,
        card_id="c-alice-1", subtotal_fen=3200, card_discount_fen=2500, payable_fen=700,
    )

    async def place(request, **kw):
        await fakes.order._record("PlaceOrder", request, kw)
        return order_service_pb2.PlaceOrderResponse(order=placed_order)

    fakes.order.PlaceOrder = place
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁，一杯少冰", confirm=True), fakes.options()
    )
    assert fakes.card.requests("ListCards") == []
    p = reply.preview
    assert (p.total_fen, p.card_covered_fen, p.payable_fen, p.card_id) == (3200, 2500, 700, "c-alice-1")
    # The preview shown is kept as shown: confirming it again by id re-uses its lines, not a parse.
    again = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o2", preview_id=p.preview_id, confirm=True), fakes.options()
    )
    assert again.preview == p
    assert len(fakes.catalog.requests("MatchIntent")) == 1
    assert [(ln.item_id, ln.quantity) for ln in fakes.order.requests("PlaceOrder")[1].lines] == [("luckin-coconut-latte", 2)]


async def test_a_preview_without_confirm_still_looks_up_the_best_card(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())
    assert len(fakes.card.requests("ListCards")) == 1


async def test_confirming_a_preview_that_showed_a_card_requires_a_card(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    assert preview.card_id
    await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
    )
    assert fakes.order.requests("PlaceOrder")[0].card_use == order_pb2.CARD_USE_REQUIRED


async def test_confirming_a_preview_without_a_card_uses_the_best_card_there_is_by_then(fakes):
    preview = (await fakes.gateway.order_by_text("nocard", gw.OrderByTextRequest(text="一杯拿铁"), fakes.options())).preview
    assert not preview.card_id
    await fakes.gateway.order_by_text(
        "nocard", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
    )
    assert fakes.order.requests("PlaceOrder")[0].card_use == order_pb2.CARD_USE_BEST


async def test_a_previewed_card_spent_meanwhile_refuses_the_confirm_with_its_own_reason(fakes, make_rpc_error):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    fakes.order.fail["PlaceOrder"] = make_rpc_error(FailedPrecondition("NO_CARD_AVAILABLE", "no card"))
    with pytest.raises(FailedPrecondition) as info:
        await fakes.gateway.order_by_text(
            "alice", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
        )
    assert info.value.reason == "PREVIEW_CARD_GONE"


async def test_the_preview_answered_with_a_confirmed_order_shows_what_the_order_used(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview

    async def place(request, **kw):
        await fakes.order._record("PlaceOrder", request, kw)
        return order_service_pb2.PlaceOrderResponse(order=order_pb2.Order(
            order_id="o-9", user_id="alice", card_id="c-alice-2", subtotal_fen=3200, card_discount_fen=2500, payable_fen=700,
        ))

    fakes.order.PlaceOrder = place
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
    )
    assert (reply.preview.card_id, reply.preview.card_covered_fen, reply.preview.payable_fen) == ("c-alice-2", 2500, 700)


async def test_a_retried_confirm_from_text_places_what_the_first_attempt_matched(fakes):
    # The first answer was lost; meanwhile the store sold out and a new match would pick another
    # store, which the order service refuses under the same request_id (REQUEST_ID_REUSED).
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    request = gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True)
    await fakes.gateway.order_by_text("alice", request, fakes.options())

    async def other_store(req, **kw):
        await fakes.catalog._record("MatchIntent", req, kw)
        return catalog_service_pb2.MatchIntentResponse(
            status=catalog_pb2.INTENT_STATUS_MATCHED,
            proposal=catalog_pb2.OrderProposal(
                store=catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id="luckin-hz-2")),
                lines=[catalog_pb2.LineSelection(item_id="luckin-coconut-latte", quantity=2)],
                quote=catalog_pb2.Quote(store_id="luckin-hz-2", total_fen=3200),
                confidence=0.97,
            ),
        )

    fakes.catalog.MatchIntent = other_store
    await fakes.gateway.order_by_text("alice", request, fakes.options())
    first, retry = fakes.order.requests("PlaceOrder")
    assert (retry.store_id, list(retry.lines), retry.request_id) == (first.store_id, list(first.lines), first.request_id)
    assert len(fakes.catalog.requests("MatchIntent")) == 1  # the retry did not match anew
    # Another sentence under the same request_id is matched anew (and refused upstream).
    await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁，少冰", confirm=True), fakes.options()
    )
    assert fakes.order.requests("PlaceOrder")[2].store_id == "luckin-hz-2"
    # Someone else's same request_id and sentence is theirs.
    await fakes.gateway.order_by_text("bob", request, fakes.options())
    assert fakes.order.requests("PlaceOrder")[3].store_id == "luckin-hz-2"


async def test_a_confirm_from_text_dropped_by_a_stopping_order_service_is_retried_with_what_it_matched(fakes):
    # A bare CANCELLED: the order service stopped with the placement in progress, so the order may
    # exist. The gateway tells the user to retry (UPSTREAM_UNAVAILABLE); a retry that matched anew
    # could pick another store and be refused as REQUEST_ID_REUSED.
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    request = gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True)
    fakes.order.fail["PlaceOrder"] = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "")
    with pytest.raises(grpc.aio.AioRpcError):
        await fakes.gateway.order_by_text("alice", request, fakes.options())
    del fakes.order.fail["PlaceOrder"]
    await fakes.gateway.order_by_text("alice", request, fakes.options())
    first, retry = fakes.order.requests("PlaceOrder")
    assert (retry.store_id, list(retry.lines), retry.request_id) == (first.store_id, list(first.lines), first.request_id)
    assert len(fakes.catalog.requests("MatchIntent")) == 1  # the retry did not match anew


async def test_the_preview_beside_a_confirmed_order_shows_the_orders_price_after_a_price_change(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.catalog.total_fen = 800
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="一杯蛋挞"), fakes.options())).preview
    assert (preview.total_fen, preview.payable_fen) == (800, 0)

    async def repriced(request, **kw):  # the price went up to 3,000 before the confirm
        await fakes.order._record("PlaceOrder", request, kw)
        return order_service_pb2.PlaceOrderResponse(order=order_pb2.Order(
            order_id="o-2", user_id="alice", card_id="c-alice-1", subtotal_fen=3000, card_discount_fen=2500, payable_fen=500,
            status=order_pb2.ORDER_STATUS_PENDING_PAYMENT,
        ))

    fakes.order.PlaceOrder = repriced
    reply = await fakes.gateway.order_by_text(
        "alice", gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True), fakes.options()
    )
    p = reply.preview
    assert (p.total_fen, p.card_covered_fen, p.payable_fen) == (3000, 2500, 500)  # was 800 / 2500 / -1700


async def test_a_confirm_from_text_refused_for_good_matches_anew_on_the_next_try(fakes, make_rpc_error):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    request = gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True)
    fakes.order.fail["PlaceOrder"] = make_rpc_error(FailedPrecondition("ITEM_SOLD_OUT", "sold out"))
    with pytest.raises(grpc.aio.AioRpcError):
        await fakes.gateway.order_by_text("alice", request, fakes.options())
    del fakes.order.fail["PlaceOrder"]
    await fakes.gateway.order_by_text("alice", request, fakes.options())
    assert len(fakes.catalog.requests("MatchIntent")) == 2  # not the lines that could not be ordered
    # From another place, the same sentence and request_id is matched for that place.
    elsewhere = gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True, location=HANGZHOU)
    await fakes.gateway.order_by_text("alice", elsewhere, fakes.options())
    assert len(fakes.catalog.requests("MatchIntent")) == 3
