"""SetCampaignBudget: an operator adds budget to a running campaign (追加预算) or cuts it to stop
issuing at once, over real gRPC (wiring.build, SQLite on tmp_path, FakeClock; conftest.py)."""
import asyncio
import sqlite3
from datetime import timedelta

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.common.clock import to_ms
from services.common.errors import error_details

from tests.integration.card.conftest import START, ts

C = "budget-lever"
FACE = 2_500


def set_budget(card, budget_fen, *, request_id="", campaign_id=C, metadata=None, stop_issuing=False):
    return card.stub.SetCampaignBudget(
        pb.SetCampaignBudgetRequest(
            request_id=request_id, campaign_id=campaign_id, budget_fen=budget_fen, stop_issuing=stop_issuing
        ),
        metadata=card.admin_md if metadata is None else metadata, timeout=20,
    )


def stop_issuing(card, *, request_id="", campaign_id=C):
    return set_budget(card, 0, request_id=request_id, campaign_id=campaign_id, stop_issuing=True)


async def fails(call, code, reason):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    d = error_details(err.value)
    assert (err.value.code(), d["reason"]) == (code, reason), d
    return d


async def claim(card, user):
    return await card.ClaimSignupCard(campaign_id=C, user_id=user)


async def campaign_of(card, cards, **rules):
    return await card.campaign(C, budget_fen=cards * FACE, **rules)


async def test_a_spent_campaign_raised_by_the_operator_grants_again(card):
    await campaign_of(card, 2)
    await claim(card, "u1")
    await claim(card, "u2")
    await fails(claim(card, "u3"), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")

    answer = await set_budget(card, 5 * FACE, request_id="raise-1")

    assert answer.campaign.rules.budget_fen == 5 * FACE
    assert (answer.budget.budget_fen, answer.budget.issued_fen, answer.budget.remaining_fen) == (5 * FACE, 2 * FACE, 3 * FACE)
    assert (await claim(card, "u3")).newly_granted
    # Every read of the campaign says the new budget: the cached GetCampaign, the listing, GetBudget.
    assert (await card.GetCampaign(campaign_id=C)).campaign.rules.budget_fen == 5 * FACE
    listed = (await card.ListCampaigns()).campaigns
    assert [c.rules.budget_fen for c in listed if c.campaign_id == C] == [5 * FACE]
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert (budget.budget_fen, budget.issued_fen, budget.remaining_fen) == (5 * FACE, 3 * FACE, 2 * FACE)


async def test_a_budget_cut_to_what_was_issued_stops_every_grant_as_a_spent_budget_does(card):
    await campaign_of(card, 100, card_validity_days=0)
    for user in ("inviter", "u1", "u2"):
        await claim(card, user)
    text = (await card.GetInviteCode(campaign_id=C, user_id="inviter")).invite_code.pass_phrase_text
    assert "领25元免单卡" in text

    await set_budget(card, 3 * FACE, request_id="stop")

    await fails(claim(card, "late"), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")
    accepted = await card.AcceptInvite(campaign_id=C, invitee_user_id="friend", text=text)
    assert accepted.inviter_not_rewarded_reason == "CAMPAIGN_BUDGET_EXHAUSTED"
    assert accepted.invitee_not_rewarded_reason == "CAMPAIGN_BUDGET_EXHAUSTED"
    assert not accepted.invitee_cards
    # Nobody is promised a card the budget no longer pays for.
    wallet = (await card.GetWallet(campaign_id=C, user_id="u1")).wallet
    assert wallet.cards_obtainable == 0 and "领25元免单卡" not in wallet.pass_phrase_text
    assert "领25元免单卡" not in (await card.GetInviteCode(campaign_id=C, user_id="u2")).invite_code.pass_phrase_text
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert (budget.budget_fen, budget.issued_fen, budget.remaining_fen) == (3 * FACE, 3 * FACE, 0)


async def test_a_budget_below_what_was_issued_is_refused_naming_the_issued_figure_and_changes_nothing(card):
    await campaign_of(card, 10)
    await claim(card, "u1")
    await claim(card, "u2")

    d = await fails(set_budget(card, 2 * FACE - 1, request_id="too-low"), grpc.StatusCode.FAILED_PRECONDITION, "BUDGET_BELOW_ISSUED")

    assert str(2 * FACE) in d["message"]
    after = await card.GetBudget(campaign_id=C)
    assert after.budget.budget_fen == 10 * FACE and not after.budget_changes and after.budget_change_count == 0
    # The refusal was not kept: the same key is judged anew (and may now pass).
    await fails(set_budget(card, 2 * FACE - 1, request_id="too-low"), grpc.StatusCode.FAILED_PRECONDITION, "BUDGET_BELOW_ISSUED")
    assert (await set_budget(card, 2 * FACE, request_id="too-low")).budget.budget_fen == 2 * FACE


@pytest.mark.parametrize("budget_fen", [0, -1, -(2**63), 10**17 + 1, 2**63 - 1])
async def test_a_budget_outside_one_fen_to_ten_to_the_seventeenth_is_invalid_argument_on_the_field(card, budget_fen):
    await campaign_of(card, 10)
    d = await fails(set_budget(card, budget_fen), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in d["violations"]] == ["budget_fen"]


async def test_bad_ids_and_an_unknown_campaign_are_refused_as_elsewhere(card):
    await campaign_of(card, 10)
    d = await fails(set_budget(card, FACE, campaign_id="no spaces"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in d["violations"]] == ["campaign_id"]
    d = await fails(set_budget(card, FACE, campaign_id=""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in d["violations"]] == ["campaign_id"]
    d = await fails(set_budget(card, FACE, request_id="bad\x01id"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in d["violations"]] == ["request_id"]
    await fails(set_budget(card, FACE, campaign_id="nobody"), grpc.StatusCode.NOT_FOUND, "CAMPAIGN_NOT_FOUND")


async def test_only_the_admin_credential_sets_a_budget(card):
    await campaign_of(card, 10)
    await fails(set_budget(card, 20 * FACE, metadata=card.md), grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")
    assert (await card.GetBudget(campaign_id=C)).budget.budget_fen == 10 * FACE


async def test_a_late_duplicate_of_a_change_is_a_replay_that_never_undoes_a_later_change(card):
    await campaign_of(card, 10)
    first = await set_budget(card, 20 * FACE, request_id="A")
    await set_budget(card, 30 * FACE, request_id="B")

    again = await set_budget(card, 20 * FACE, request_id="A")

    assert again.campaign.rules.budget_fen == 30 * FACE and again.budget.budget_fen == 30 * FACE
    assert again.budget_change_count == 2 == len(again.budget_changes)
    assert first.budget_changes[0] in again.budget_changes
    assert (await card.GetCampaign(campaign_id=C)).campaign.rules.budget_fen == 30 * FACE


async def test_a_request_id_reused_for_another_budget_or_campaign_is_refused(card):
    await campaign_of(card, 10)
    await card.campaign("other", budget_fen=10 * FACE)
    await set_budget(card, 20 * FACE, request_id="A")
    await fails(set_budget(card, 21 * FACE, request_id="A"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    await fails(set_budget(card, 20 * FACE, request_id="A", campaign_id="other"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert (await card.GetBudget(campaign_id="other")).budget.budget_fen == 10 * FACE
    assert (await card.GetBudget(campaign_id=C)).budget.budget_fen == 20 * FACE


async def test_every_change_is_kept_with_its_time_old_and_new_budget_issued_figure_and_request_id(card, clock):
    await campaign_of(card, 10)
    await claim(card, "u1")
    t1 = to_ms(clock.now())
    await set_budget(card, 40 * FACE, request_id="raise")
    clock.advance(60)
    await claim(card, "u2")
    await set_budget(card, 40 * FACE, request_id="same")  # the budget in force: no change
    t2 = to_ms(clock.now())
    answer = await set_budget(card, 2 * FACE)  # stop issuing, no request_id

    seen = [
        (c.change_time.ToMilliseconds(), c.old_budget_fen, c.new_budget_fen, c.issued_fen, c.request_id)
        for c in answer.budget_changes
    ]
    assert seen == [(t2, 40 * FACE, 2 * FACE, 2 * FACE, ""), (t1, 10 * FACE, 40 * FACE, FACE, "raise")]
    assert answer.budget_change_count == 2
    read = await card.GetBudget(campaign_id=C)
    assert list(read.budget_changes) == list(answer.budget_changes) and read.budget_change_count == 2


async def test_getbudget_shows_the_latest_twenty_changes_and_counts_them_all(card):
    await campaign_of(card, 10)
    for n in range(25):
        await set_budget(card, (11 + n) * FACE, request_id=f"r{n}")
    read = await card.GetBudget(campaign_id=C)
    assert read.budget_change_count == 25
    assert [c.request_id for c in read.budget_changes] == [f"r{n}" for n in range(24, 4, -1)]


async def test_a_create_campaign_retried_after_a_budget_change_replays_with_the_budget_in_force(card):
    def create(request_id):
        return card.CreateCampaign(
            request_id=request_id, campaign_id=C, name="春节免单", start_time=ts(START),
            end_time=ts(START + timedelta(days=30)), rules=card_pb2.CampaignRules(budget_fen=10 * FACE),
        )

    await create("seed")
    await set_budget(card, 50 * FACE, request_id="raise")

    assert (await create("seed")).campaign.rules.budget_fen == 50 * FACE
    # A seed script with its own key and the definition the campaign was created with, too.
    assert (await create("seed-again")).campaign.rules.budget_fen == 50 * FACE


async def test_the_campaign_gauges_show_the_new_budget_as_soon_as_it_is_answered(card_server):
    server, card, _ = card_server
    await campaign_of(card, 10)
    await server.campaign_gauges.refresh()
    assert server.campaign_gauges.snapshot[C].budget_fen == 10 * FACE

    await set_budget(card, 70 * FACE)

    assert server.campaign_gauges.snapshot[C].budget_fen == 70 * FACE


async def test_a_change_survives_in_the_store_and_stays_in_its_history(card_server):
    server, card, settings = card_server
    await campaign_of(card, 10)
    await set_budget(card, 12 * FACE, request_id="kept")
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("SELECT budget_fen FROM campaigns WHERE campaign_id = ?", (C,)).fetchone() == (12 * FACE,)
        # The history is append-only, as the ledger is.
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("DELETE FROM budget_changes")
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("UPDATE budget_changes SET new_budget_fen = 1")


async def test_grants_racing_cuts_to_issued_and_raises_never_pass_the_budget_nor_lose_an_acknowledged_card(card_server):
    server, card, settings = card_server
    await card.campaign(C, budget_fen=20 * FACE, per_user_card_cap=1_000)
    inviters = [f"inv{n}" for n in range(4)]
    for u in inviters:
        await claim(card, u)
    texts = [(await card.GetInviteCode(campaign_id=C, user_id=u)).invite_code.pass_phrase_text for u in inviters]
    acked: set[str] = set()
    readings: list[tuple[int, int]] = []
    stopped = asyncio.Event()
    late: list[object] = []  # what joins that began after the cut was answered got

    async def join(n: int) -> None:
        after_cut = stopped.is_set()
        user = f"j{n}"
        try:
            if n % 3:
                cards = (await claim(card, user)).cards
            else:
                a = await card.AcceptInvite(campaign_id=C, invitee_user_id=user, text=texts[n % len(texts)])
                cards = a.invitee_cards
                if after_cut:
                    late.append(("invite", a.inviter_not_rewarded_reason, a.invitee_not_rewarded_reason))
            acked.update(c.card_id for c in cards)
            if after_cut and cards:
                late.append(("granted", user))
        except grpc.aio.AioRpcError as err:
            if after_cut:
                late.append((err.code(), error_details(err)["reason"]))

    async def crowd() -> list[asyncio.Future]:
        # Waves of 32 joins (a lunch-peak crowd comes in waves) until the cut and a little after:
        # every lever lands among grants in flight, or in the short lull between two waves.
        joins: list[asyncio.Future] = []
        after = 0
        while len(joins) < 2_000 and after < 32:
            after += 32 if stopped.is_set() else 0
            wave = [asyncio.ensure_future(join(len(joins) + i)) for i in range(32)]
            joins += wave
            await asyncio.gather(*wave)
            await asyncio.sleep(0.003)
        return joins

    async def watch() -> None:
        while not stopped.is_set():
            b = (await card.GetBudget(campaign_id=C)).budget
            readings.append((b.issued_fen, b.budget_fen))
            await asyncio.sleep(0.001)

    async def budget_now():
        return (await card.GetBudget(campaign_id=C)).budget

    async def operator() -> None:
        for n in range(2):  # the crowd spends the budget, the operator adds to it (read, then set)
            while (b := await budget_now()).remaining_fen >= FACE:
                await asyncio.sleep(0.001)
            await set_budget(card, b.budget_fen + 300 * FACE, request_id=f"raise-{n}")
        while (await budget_now()).issued_fen < 60 * FACE:
            await asyncio.sleep(0.001)
        issued = (await budget_now()).issued_fen
        while True:  # then stop issuing: cut to exactly what was issued, again while grants race it
            try:
                await set_budget(card, issued)
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                assert d["reason"] == "BUDGET_BELOW_ISSUED" and int(d["metadata"]["issued_fen"]) > issued
                issued = int(d["metadata"]["issued_fen"])  # as of the refusal: try that
                continue
            stopped.set()
            return

    watcher = asyncio.ensure_future(watch())
    crowd_task = asyncio.ensure_future(crowd())
    try:
        await operator()
    finally:
        stopped.set()  # the crowd and the watcher end either way
        joins = await crowd_task
        await asyncio.gather(*joins, watcher)

    final = await budget_now()
    assert final.issued_fen == final.budget_fen < 620 * FACE, "the budget ran out before the cut"
    assert readings and all(issued <= budget for issued, budget in readings)
    spent = (grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")
    nothing = ("invite", "CAMPAIGN_BUDGET_EXHAUSTED", "CAMPAIGN_BUDGET_EXHAUSTED")
    assert late and all(o in (spent, nothing) for o in late), late
    with sqlite3.connect(settings.db_path) as conn:
        card_ids = {r[0] for r in conn.execute("SELECT card_id FROM cards WHERE campaign_id = ?", (C,))}
        total = conn.execute("SELECT SUM(face_value_fen) FROM cards WHERE campaign_id = ?", (C,)).fetchone()[0]
        history = conn.execute(
            "SELECT old_budget_fen, new_budget_fen, issued_fen FROM budget_changes WHERE campaign_id = ? ORDER BY seq", (C,)
        ).fetchall()
    assert acked <= card_ids, "an acknowledged grant was lost"
    assert total == final.issued_fen
    assert len(history) == 3 and all(issued <= new for _, new, issued in history)
    assert [old for old, _, _ in history[1:]] == [new for _, new, _ in history[:-1]]
    assert history[0][0] == 20 * FACE and history[-1][1] == final.budget_fen


# --- stop_issuing: the budget becomes what is issued when the change commits ------------------


async def test_stop_issuing_sets_the_budget_to_what_was_issued_and_keeps_it_in_the_history(card, clock):
    await campaign_of(card, 100)
    for user in ("u1", "u2", "u3"):
        await claim(card, user)

    answer = await stop_issuing(card, request_id="stop")

    assert answer.campaign.rules.budget_fen == 3 * FACE
    assert (answer.budget.budget_fen, answer.budget.issued_fen, answer.budget.remaining_fen) == (3 * FACE, 3 * FACE, 0)
    change = answer.budget_changes[0]
    assert (change.change_time.ToMilliseconds(), change.old_budget_fen, change.new_budget_fen, change.issued_fen,
            change.request_id) == (to_ms(clock.now()), 100 * FACE, 3 * FACE, 3 * FACE, "stop")
    await fails(claim(card, "late"), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")
    assert (await card.GetCampaign(campaign_id=C)).campaign.rules.budget_fen == 3 * FACE


async def test_stop_issuing_a_campaign_that_issued_nothing_leaves_a_budget_of_zero_every_reader_takes(card_server):
    server, card, _ = card_server
    await campaign_of(card, 100)
    await card.GetInviteCode(campaign_id=C, user_id="early")  # a member with a code, no card

    answer = await stop_issuing(card, request_id="stop-empty")

    assert answer.campaign.rules.budget_fen == 0 == answer.budget.budget_fen == answer.budget.remaining_fen
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert (budget.budget_fen, budget.issued_fen, budget.remaining_fen) == (0, 0, 0)
    wallet = (await card.GetWallet(campaign_id=C, user_id="early")).wallet
    assert wallet.cards_obtainable == 0 and "领25元免单卡" not in wallet.pass_phrase_text
    assert "领25元免单卡" not in (await card.GetInviteCode(campaign_id=C, user_id="early")).invite_code.pass_phrase_text
    assert server.campaign_gauges.snapshot[C].budget_fen == 0
    await server.campaign_gauges.refresh()
    assert server.campaign_gauges.snapshot[C].budget_fen == 0
    await fails(claim(card, "u1"), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")
    # The campaign's creation, retried, still replays (it names the budget it was created with).
    created = await card.campaign(C, budget_fen=100 * FACE)
    assert created.rules.budget_fen == 0
    # A raise reopens issuing.
    await set_budget(card, 2 * FACE, request_id="reopen")
    assert (await claim(card, "u1")).newly_granted


@pytest.mark.parametrize("budget_fen", [1, FACE, -1, 10**17])
async def test_stop_issuing_with_a_budget_figure_is_invalid_argument_on_the_field(card, budget_fen):
    await campaign_of(card, 10)
    d = await fails(set_budget(card, budget_fen, stop_issuing=True), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [f for f, _ in d["violations"]] == ["budget_fen"]
    assert (await card.GetBudget(campaign_id=C)).budget.budget_fen == 10 * FACE


async def test_a_replayed_stop_answers_the_campaign_as_it_is_now_and_its_key_names_only_that_stop(card):
    await campaign_of(card, 10)
    await claim(card, "u1")
    await stop_issuing(card, request_id="stop")
    await set_budget(card, 5 * FACE, request_id="reopen")
    await claim(card, "u2")

    again = await stop_issuing(card, request_id="stop")

    assert again.campaign.rules.budget_fen == 5 * FACE and again.budget.issued_fen == 2 * FACE
    assert again.budget_change_count == 2
    await fails(set_budget(card, 5 * FACE, request_id="stop"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    await fails(stop_issuing(card, request_id="reopen"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    await card.campaign("other", budget_fen=10 * FACE)
    await fails(stop_issuing(card, request_id="stop", campaign_id="other"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # Stopping a stopped campaign changes nothing and records nothing.
    await stop_issuing(card, request_id="stop-2")
    assert (await stop_issuing(card, request_id="stop-3")).budget_change_count == 3


async def test_one_stop_issuing_call_stops_a_campaign_with_thirty_two_grants_in_flight(card_server):
    server, card, settings = card_server
    await card.campaign(C, budget_fen=100_000 * FACE, per_user_card_cap=1_000)
    users = iter(range(10**6))
    granted: list[str] = []
    after_stop: list[object] = []
    stopped = asyncio.Event()
    stop_answered = asyncio.Event()

    async def joiner() -> None:
        # Grants back to back: 32 of these keep 32 grants in flight for as long as the test runs.
        while not (stop_answered.is_set() and len(after_stop) >= 64):
            began_after_stop = stop_answered.is_set()
            try:
                cards = (await claim(card, f"j{next(users)}")).cards
                granted.extend(c.card_id for c in cards)
                outcome: object = "granted"
            except grpc.aio.AioRpcError as err:
                outcome = (err.code(), error_details(err)["reason"])
            if began_after_stop:
                after_stop.append(outcome)

    crowd = [asyncio.ensure_future(joiner()) for _ in range(32)]
    try:
        while len(granted) < 64:  # the crowd is at full speed
            await asyncio.sleep(0.001)
        answer = await stop_issuing(card, request_id="stop-now")
        stop_answered.set()
        await asyncio.wait_for(asyncio.gather(*crowd), timeout=30)
    finally:
        for task in crowd:
            task.cancel()

    budget = (await card.GetBudget(campaign_id=C)).budget
    assert answer.campaign.rules.budget_fen == answer.budget.issued_fen == budget.budget_fen == budget.issued_fen
    assert budget.issued_fen == len(granted) * FACE < 100_000 * FACE
    assert set(after_stop) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")}
    with sqlite3.connect(settings.db_path) as conn:
        total = conn.execute("SELECT SUM(face_value_fen) FROM cards WHERE campaign_id = ?", (C,)).fetchone()[0]
    assert total == budget.issued_fen
