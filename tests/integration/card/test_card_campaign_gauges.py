"""Each campaign's money on the card service's Prometheus endpoint: budget, issued, and face
value by card state, as GetBudget reports them."""
from prometheus_client import REGISTRY, generate_latest

C, D = "spring", "summer"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_gauges_follow_the_campaigns_money(card_server, clock):
    server, card, _ = card_server
    await server.campaign_gauges.refresh()
    assert sample("miandan_campaign_budget_fen", campaign=C) is None  # no campaign yet

    await card.campaign(C, budget_fen=10 * 2500)
    await card.campaign(D, budget_fen=5 * 2500, card_validity_days=1)
    for user in ("a", "b", "c"):
        await card.ClaimSignupCard(campaign_id=C, user_id=user)
    await card.ClaimSignupCard(campaign_id=D, user_id="a")
    await card.ReserveCard(campaign_id=C, user_id="a", order_id="o1", amount_fen=1000)
    await card.ReserveCard(campaign_id=C, user_id="b", order_id="o2", amount_fen=1000, redeem=True)
    clock.advance(days=2)  # D's card is past its validity; the sweep has not run
    await server.campaign_gauges.refresh()

    assert sample("miandan_campaign_budget_fen", campaign=C) == 10 * 2500
    assert sample("miandan_campaign_issued_fen", campaign=C) == 3 * 2500
    assert sample("miandan_campaign_cards_issued", campaign=C) == 3
    by_state = {s: sample("miandan_campaign_card_value_fen", campaign=C, state=s) for s in ("available", "reserved", "redeemed", "expired")}
    # o1's hold (15 min TTL) lapsed in the two days: its card counts as available again.
    assert by_state == {"available": 2 * 2500, "reserved": 0, "redeemed": 2500, "expired": 0}
    assert sample("miandan_campaign_card_value_fen", campaign=D, state="expired") == 2500
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert (budget.issued_fen, budget.redeemed_fen) == (3 * 2500, 2500)
    assert b'miandan_campaign_budget_fen{campaign="summer"} 12500.0' in generate_latest(REGISTRY)


async def test_a_stopped_server_leaves_no_gauges_behind(card_server):
    server, card, _ = card_server
    await card.campaign(C)
    await server.campaign_gauges.refresh()
    assert sample("miandan_campaign_budget_fen", campaign=C) is not None
    await server.stop(0)
    assert sample("miandan_campaign_budget_fen", campaign=C) is None
