"""CreateCampaign's request_id is an idempotency key (card_service.proto header): the same key
with the same content answers the campaign as created; the same key with different content is
ALREADY_EXISTS REQUEST_ID_REUSED, never the old campaign returned as if the change was made.
Real gRPC server from wiring.build over SQLite (conftest.py), and the store on its own for
records written before the content was fingerprinted."""
import asyncio
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.card.model import Rules, new_campaign
from services.card.store import SqliteCardStore
from services.common.errors import DomainError, error_details

from tests.integration.card.conftest import START, ts

C = "req-camp"


def create(card, request_id, campaign_id=C, *, name="春节免单", days=30, **rules):
    rules.setdefault("budget_fen", 500_000)
    rules.setdefault("per_user_card_cap", 3)
    return card.CreateCampaign(
        request_id=request_id, campaign_id=campaign_id, name=name,
        start_time=ts(START), end_time=ts(START + timedelta(days=days)),
        rules=card_pb2.CampaignRules(**rules),
    )


async def fails(call, code, reason):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    d = error_details(err.value)
    assert (err.value.code(), d["reason"]) == (code, reason), d
    return d


async def test_same_request_id_with_another_budget_and_cap_is_refused_not_answered_with_the_old_campaign(card):
    first = (await create(card, "R")).campaign
    assert (first.rules.budget_fen, first.rules.per_user_card_cap) == (500_000, 3)
    await fails(create(card, "R", budget_fen=900_000, per_user_card_cap=30), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # Each field that defines the campaign counts as content.
    for changed in (
        create(card, "R", name="另一个名字"),
        create(card, "R", days=31),
        create(card, "R", card_face_value_fen=3_000),
        create(card, "R", time_zone="UTC"),
    ):
        await fails(changed, grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # Nothing changed, and an identical retry still answers the campaign as created.
    assert (await card.GetCampaign(campaign_id=C)).campaign == first
    assert (await create(card, "R")).campaign == first


async def test_identical_retry_returns_the_original_campaign_even_with_defaults_spelled_out(card):
    first = (await create(card, "R")).campaign
    assert (await create(card, "R")).campaign == first
    # A zero rule takes its default: spelling the default out is the same request.
    assert (await create(card, "R", card_face_value_fen=Rules().card_face_value_fen)).campaign == first
    # Surrounding blanks of the name are not content either (the name is stored stripped).
    assert (await create(card, "R", name="  春节免单 ")).campaign == first


async def test_same_request_id_for_another_campaign_id_is_refused_and_creates_nothing(card):
    await create(card, "R")
    await fails(create(card, "R", campaign_id="other"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.GetCampaign(campaign_id="other")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Even when that other campaign exists with exactly that definition (made under its own key).
    await create(card, "R-other", campaign_id="other")
    await fails(create(card, "R", campaign_id="other"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


async def test_fresh_request_ids_keep_the_campaign_id_rules(card):
    first = (await create(card, "R")).campaign
    # Another key, same definition: the campaign (idempotent on campaign_id)...
    assert (await create(card, "R2")).campaign == first
    # ...and that key now names this request: other content under it is a reused key.
    await fails(create(card, "R2", budget_fen=900_000), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # A fresh key with a different definition of an existing id stays CAMPAIGN_EXISTS, and
    # the refused call leaves no record: its key is still free for a new campaign.
    await fails(create(card, "R3", budget_fen=900_000), grpc.StatusCode.ALREADY_EXISTS, "CAMPAIGN_EXISTS")
    other = (await create(card, "R3", campaign_id="other", budget_fen=900_000)).campaign
    assert other.rules.budget_fen == 900_000
    # Without a request_id only the campaign_id rule applies, as before.
    assert (await create(card, "")).campaign == first
    await fails(create(card, "", budget_fen=900_000), grpc.StatusCode.ALREADY_EXISTS, "CAMPAIGN_EXISTS")


async def test_twenty_concurrent_creates_with_one_request_id_and_mixed_contents(card):
    variants = [
        {},
        {"budget_fen": 900_000, "per_user_card_cap": 30},
        {"name": "另一个名字"},
        {"campaign_id": "other"},
    ]
    calls = [create(card, "R", **variants[i % len(variants)]) for i in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            d = error_details(r)
            assert r.code() == grpc.StatusCode.ALREADY_EXISTS, (r.code(), d)
            reasons[d["reason"]] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r.campaign)
    assert set(reasons) <= {"REQUEST_ID_REUSED"}, reasons
    # Exactly one campaign, and every success is that campaign as created.
    listed = (await card.ListCampaigns()).campaigns
    assert len(listed) == 1, listed
    winner = listed[0]
    assert answers and all(a == winner for a in answers)
    # The winner's content got every call of the same content; every other content was refused.
    same = [v for v in (variants[i % len(variants)] for i in range(20)) if _matches(winner, v)]
    assert len(answers) == len(same) == 5 and sum(reasons.values()) == 15


def _matches(campaign, variant):
    return (
        campaign.campaign_id == variant.get("campaign_id", C)
        and campaign.name == variant.get("name", "春节免单")
        and campaign.rules.budget_fen == variant.get("budget_fen", 500_000)
        and campaign.rules.per_user_card_cap == variant.get("per_user_card_cap", 3)
    )


# --- records written before the fingerprint, and records swept --------------------------------


def _campaign(campaign_id=C, budget=500_000, cap=3, name="春节免单"):
    start = int(START.timestamp() * 1000)
    now = int(datetime(2026, 1, 28, 12, 30, tzinfo=timezone.utc).timestamp() * 1000)
    return new_campaign(
        campaign_id, name, start, start + 30 * 86_400_000, Rules(budget_fen=budget, per_user_card_cap=cap), now, b"s" * 32
    )


async def _reason(coro):
    with pytest.raises(DomainError) as err:
        await coro
    return err.value.reason


@pytest.mark.parametrize("record", ["legacy", "swept"])
async def test_a_store_from_before_the_fingerprint_still_refuses_other_content(tmp_path, record):
    """Before the fix the CreateCampaign record held only the campaign_id ("legacy"); any
    record is swept after a week while the campaign row keeps its request_id ("swept"). Both
    are judged on the stored campaign's definition."""
    path = tmp_path / "card.db"
    store = await SqliteCardStore.open(path)
    try:
        first = await store.create_campaign(_campaign(), "R")
    finally:
        await store.close()
    raw = sqlite3.connect(path)
    with raw:
        if record == "legacy":
            raw.execute("UPDATE requests SET fingerprint = ? WHERE method = 'CreateCampaign' AND request_id = 'R'", (C,))
        else:
            raw.execute("DELETE FROM requests WHERE method = 'CreateCampaign'")
    raw.close()

    store = await SqliteCardStore.open(path)  # opens as it is: no migration needed
    try:
        again = await store.create_campaign(_campaign(), "R")
        assert (again.campaign_id, again.rules, again.create_ms, again.secret) == (C, first.rules, first.create_ms, first.secret)
        assert await _reason(store.create_campaign(_campaign(budget=900_000, cap=30), "R")) == "REQUEST_ID_REUSED"
        assert await _reason(store.create_campaign(_campaign(name="另一个名字"), "R")) == "REQUEST_ID_REUSED"
        if record == "legacy":
            # The legacy record names campaign C: R for another campaign is a reused key too.
            assert await _reason(store.create_campaign(_campaign("other"), "R")) == "REQUEST_ID_REUSED"
        assert await _reason(store.create_campaign(_campaign(budget=900_000), "R9")) == "CAMPAIGN_EXISTS"
        assert (await store.get_campaign(C)).rules == first.rules
    finally:
        await store.close()
