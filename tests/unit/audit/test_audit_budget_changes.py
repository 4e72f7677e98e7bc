"""The audit and SetCampaignBudget: the campaign's rules, GetBudget before the cards are listed
and GetBudget after are read one after another, and an operator may raise the budget or cut it
to what was issued between any two of those reads. Such a change is no finding; cards above
every budget the audit read, or a GetBudget answer issuing above its own budget, still are."""
from __future__ import annotations

from dataclasses import replace

import pytest

from services.audit.model import AuditFacts, BudgetFacts, CampaignFacts, CardFacts, audit, check_budget

CID = "spring"
FACE = 2_500


def campaign(budget_cards: int) -> CampaignFacts:
    return CampaignFacts(campaign_id=CID, budget_fen=budget_cards * FACE, per_user_card_cap=21)


def cards(n: int) -> list[CardFacts]:
    return [
        CardFacts(card_id=f"c{i}", campaign_id=CID, user_id=f"u{i}", state="AVAILABLE", source="SIGNUP", face_value_fen=FACE)
        for i in range(n)
    ]


def budget(budget_cards: int, issued_cards: int) -> BudgetFacts:
    total, issued = budget_cards * FACE, issued_cards * FACE
    return BudgetFacts(CID, total, issued, 0, 0, total - issued, issued_cards)


def checks(found) -> set[str]:
    return {f.check for f in found}


def test_a_raise_between_the_campaign_read_and_getbudget_with_cards_issued_past_the_old_budget_is_no_finding():
    # Rules read at 4 cards; raised to 10 and 6 cards issued before GetBudget was asked.
    assert check_budget(campaign(4), budget(10, 6), cards(6), budget(10, 6), campaign_after=campaign(10)) == []


def test_a_raise_between_the_two_getbudget_answers_is_no_finding():
    # The listing saw 6 cards: 2 issued after the raise that came between the two answers.
    assert check_budget(campaign(4), budget(4, 4), cards(6), budget(10, 7)) == []


def test_a_cut_to_what_was_issued_between_the_campaign_read_and_getbudget_is_no_finding():
    assert check_budget(campaign(40), budget(5, 5), cards(5), budget(5, 5), campaign_after=campaign(5)) == []


def test_a_stop_of_a_campaign_that_issued_nothing_is_no_finding():
    assert check_budget(campaign(0), budget(0, 0), [], budget(0, 0)) == []


def test_a_raise_after_the_second_getbudget_answer_is_no_finding():
    # The rules read before agree with the first answer; the second read of the rules is newer.
    assert check_budget(campaign(4), budget(4, 3), cards(3), budget(4, 3), campaign_after=campaign(9)) == []


def test_cards_above_every_budget_the_audit_read_are_still_found():
    found = check_budget(campaign(4), budget(5, 5), cards(6), budget(5, 5), campaign_after=campaign(5))
    assert "BUDGET_EXCEEDED" in checks(found)


def test_an_answer_issuing_above_its_own_budget_is_found_whatever_the_other_readings_say():
    above = BudgetFacts(CID, 4 * FACE, 5 * FACE, 0, 0, -FACE, 5)
    found = check_budget(campaign(10), budget(10, 5), cards(5), above, campaign_after=campaign(10))
    assert "BUDGET_EXCEEDED" in checks(found)


def test_rules_that_disagree_with_getbudget_before_and_after_are_a_mismatch():
    # GetCampaign stuck on a budget GetBudget no longer reports (a stale copy): read twice, wrong twice.
    found = check_budget(campaign(4), budget(10, 3), cards(3), budget(10, 3), campaign_after=campaign(4))
    assert checks(found) == {"BUDGET_MISMATCH"}


def test_without_a_second_read_of_the_rules_a_disagreement_with_the_first_answer_is_a_mismatch():
    assert checks(check_budget(campaign(4), budget(10, 3), cards(3), budget(10, 3))) == {"BUDGET_MISMATCH"}


@pytest.mark.parametrize("after", [None, "changed"])
def test_audit_passes_the_second_read_of_the_rules_to_the_budget_check(after):
    facts = AuditFacts(
        campaigns=[campaign(4)], budgets={CID: budget(10, 6)}, budgets_after={CID: budget(10, 6)}, cards=cards(6),
    )
    if after:
        facts.campaigns_after = {CID: replace(campaign(4), budget_fen=10 * FACE)}
        assert audit(facts) == []
    else:
        assert checks(audit(facts)) == {"BUDGET_MISMATCH"}


def test_changes_in_both_gaps_are_no_finding_when_the_rules_agree_with_the_getbudget_read_right_after_them():
    # Rules at 4, raised to 7 before the first answer, cut to 6 (issued) after the second; the
    # rules read again (6) and GetBudget right after them (6) agree.
    found = check_budget(
        campaign(4), budget(7, 5), cards(6), budget(7, 6), campaign_after=campaign(6), beside=budget(6, 6)
    )
    assert found == []


def test_a_stale_copy_of_the_rules_stays_a_mismatch_however_often_they_are_read_again():
    found = check_budget(campaign(4), budget(10, 3), cards(3), budget(10, 3), campaign_after=campaign(4), beside=budget(10, 3))
    assert checks(found) == {"BUDGET_MISMATCH"}


def test_the_getbudget_read_beside_the_rules_is_held_to_its_own_budget_too():
    above = BudgetFacts(CID, 4 * FACE, 5 * FACE, 0, 0, -FACE, 5)
    found = check_budget(campaign(10), budget(10, 5), cards(5), budget(10, 5), campaign_after=campaign(4), beside=above)
    assert checks(found) == {"BUDGET_EXCEEDED"}
