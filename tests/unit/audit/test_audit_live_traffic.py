"""The audit reads the services one listing after another while users keep joining and ordering:
what was in flight between two reads must not read as a violation, and what is really wrong
must still be found."""
from __future__ import annotations

import pytest

import services.audit.fetch as fetch
from services.audit.cli import main as audit_main
from services.audit.model import AuditFacts, BudgetFacts, CampaignFacts, CardFacts, OrderFacts, check_budget

CID = "spring"
CAMPAIGN = CampaignFacts(campaign_id=CID, budget_fen=100_000, per_user_card_cap=21)


def card(card_id: str, user: str, state: str = "AVAILABLE", order_id: str = "") -> CardFacts:
    return CardFacts(card_id=card_id, campaign_id=CID, user_id=user, state=state, source="SIGNUP", face_value_fen=2_500, order_id=order_id)


def budget(issued_cards: int, redeemed: int = 0) -> BudgetFacts:
    return BudgetFacts(CID, 100_000, issued_cards * 2_500, 0, redeemed, 100_000 - issued_cards * 2_500, issued_cards)


def test_cards_issued_while_the_listing_paged_on_are_no_finding():
    listed = [card(f"c{i}", f"u{i}") for i in range(5)]
    # 4 cards when the budget was asked, 6 when asked again after the listing, which saw 5.
    assert check_budget(CAMPAIGN, budget(4), listed, budget(6)) == []


@pytest.mark.parametrize("issued_before, issued_after", [(6, 7), (2, 4)])
def test_a_listing_outside_the_two_budget_answers_is_still_found(issued_before, issued_after):
    listed = [card(f"c{i}", f"u{i}") for i in range(5)]
    found = {f.check for f in check_budget(CAMPAIGN, budget(issued_before), listed, budget(issued_after))}
    assert {"ISSUED_MISMATCH", "ISSUED_COUNT_MISMATCH"} <= found


def test_without_a_second_answer_the_listing_must_equal_the_first():
    listed = [card(f"c{i}", f"u{i}") for i in range(5)]
    assert {f.check for f in check_budget(CAMPAIGN, budget(4), listed)} == {"ISSUED_MISMATCH", "ISSUED_COUNT_MISMATCH"}


def _world(card_state: str) -> AuditFacts:
    return AuditFacts(
        campaigns=[CAMPAIGN],
        budgets={CID: BudgetFacts(CID, 100_000, 2_500, 0, 2_500 if card_state == "REDEEMED" else 0, 97_500, 1)},
        cards=[card("c1", "alice", card_state, "o1" if card_state == "REDEEMED" else "")],
        orders=[OrderFacts(order_id="o1", user_id="alice", status="PAID", card_id="c1", campaign_id=CID,
                           card_discount_fen=2_500, subtotal_fen=3_000, payable_fen=500)],
        now_ms=1,
    )


@pytest.fixture
def passes(monkeypatch):
    """fetch_facts answers the worlds of `passes.worlds` one pass after the other."""

    class Passes:
        worlds: list[AuditFacts] = []
        calls = 0

    async def fake_fetch_facts(targets, campaign_id=None, **kw):
        Passes.calls += 1
        return Passes.worlds[min(Passes.calls, len(Passes.worlds)) - 1]

    monkeypatch.setattr(fetch, "fetch_facts", fake_fetch_facts)
    return Passes


def test_an_order_read_paid_before_its_card_was_written_redeemed_is_no_finding(passes, capsys):
    # First pass: the card was listed AVAILABLE, then the order was listed PAID (the order service
    # redeemed the card in between). The second look finds them agreeing.
    passes.worlds = [_world("AVAILABLE"), _world("REDEEMED")]
    code = audit_main(["--card", "127.0.0.1:1", "--confirm-after", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FINDING" not in out and "1 finding(s) of the first pass were not found again" in out
    assert passes.calls == 2


def test_a_paid_order_whose_card_stays_unspent_is_found_on_the_second_look_too(passes, capsys):
    passes.worlds = [_world("AVAILABLE"), _world("AVAILABLE")]
    code = audit_main(["--card", "127.0.0.1:1", "--confirm-after", "0"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FINDING ORDER_CARD_NOT_REDEEMED" in out and "order_id=o1" in out


def test_a_suite_that_holds_is_read_once(passes, capsys):
    passes.worlds = [_world("REDEEMED")]
    assert audit_main(["--card", "127.0.0.1:1"]) == 0
    assert passes.calls == 1
