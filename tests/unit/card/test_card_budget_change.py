"""How a campaign's budget may be changed while it runs (SetCampaignBudget), decided in the model."""
import pytest

from services.card import model as m
from services.common.errors import FailedPrecondition, InvalidArgument

FACE = 2_500


def campaign(budget_fen: int, **rules) -> m.Campaign:
    return m.new_campaign("c", "n", 0, 10_000, m.Rules(budget_fen=budget_fen, **rules), 0, b"")


@pytest.mark.parametrize("budget_fen", [0, -1, -(2**63), m.MAX_BUDGET_FEN + 1, 2**63 - 1])
def test_a_budget_outside_one_fen_to_the_maximum_names_the_field(budget_fen):
    with pytest.raises(InvalidArgument) as err:
        m.check_budget_fen(budget_fen)
    assert [f for f, _ in err.value.violations] == ["budget_fen"]


@pytest.mark.parametrize("budget_fen", [1, 7, FACE + 1, m.MAX_BUDGET_FEN])
def test_any_positive_fen_up_to_the_maximum_is_a_budget(budget_fen):
    assert m.check_budget_fen(budget_fen) == budget_fen


def test_a_budget_below_what_was_issued_is_refused_with_the_issued_figure():
    with pytest.raises(FailedPrecondition) as err:
        m.budget_change(old_budget_fen=100_000, issued_fen=12_500, new_budget_fen=12_499, request_id="r", now_ms=5)
    assert err.value.reason == m.BUDGET_BELOW_ISSUED
    assert "12500" in err.value.message and "12499" in err.value.message


def test_a_budget_cut_to_exactly_what_was_issued_is_a_change():
    change = m.budget_change(old_budget_fen=100_000, issued_fen=12_500, new_budget_fen=12_500, request_id="r", now_ms=5)
    assert change == m.BudgetChange(5, 100_000, 12_500, 12_500, "r")


def test_a_raise_is_a_change_kept_with_the_issued_figure_at_that_moment():
    change = m.budget_change(old_budget_fen=10_000, issued_fen=10_000, new_budget_fen=50_000, request_id="", now_ms=9)
    assert change == m.BudgetChange(9, 10_000, 50_000, 10_000, "")


def test_setting_the_budget_in_force_changes_nothing():
    assert m.budget_change(old_budget_fen=10_000, issued_fen=2_500, new_budget_fen=10_000, request_id="r", now_ms=1) is None


def test_a_campaign_cut_to_what_it_issued_offers_no_card_to_anyone():
    issued = 4 * FACE
    cut = m.with_budget(campaign(100 * FACE), issued)
    assert cut.rules.budget_fen == issued
    assert not m.offers_cards(cut, issued, 1)
    assert m.cards_obtainable(cut, 0, issued, 1) == 0


def test_a_raised_campaign_offers_cards_again():
    spent = campaign(4 * FACE)
    assert not m.offers_cards(spent, 4 * FACE, 1)
    raised = m.with_budget(spent, 6 * FACE)
    assert m.offers_cards(raised, 4 * FACE, 1) and m.cards_obtainable(raised, 0, 4 * FACE, 1) == 2


def test_a_campaign_is_compared_with_the_budget_it_was_created_with():
    created = campaign(100 * FACE)
    raised = m.with_budget(created, 300 * FACE)
    assert not raised.same_definition(created)
    assert m.with_budget(raised, 100 * FACE).same_definition(created)


# --- stop_issuing: the budget becomes what was issued when the change commits ---------------


def test_stop_issuing_takes_no_figure():
    assert m.check_budget_fen(0, stop_issuing=True) == 0


@pytest.mark.parametrize("budget_fen", [1, FACE, -1, m.MAX_BUDGET_FEN])
def test_stop_issuing_with_a_figure_names_the_budget_field(budget_fen):
    with pytest.raises(InvalidArgument) as err:
        m.check_budget_fen(budget_fen, stop_issuing=True)
    assert [f for f, _ in err.value.violations] == ["budget_fen"]


def test_stop_issuing_sets_the_budget_to_what_was_issued_at_the_change():
    change = m.stop_issuing_change(old_budget_fen=100_000, issued_fen=12_500, request_id="stop", now_ms=7)
    assert change == m.BudgetChange(7, 100_000, 12_500, 12_500, "stop")


def test_stop_issuing_a_campaign_that_issued_nothing_sets_a_budget_of_zero():
    change = m.stop_issuing_change(old_budget_fen=100_000, issued_fen=0, request_id="", now_ms=7)
    assert change is not None and change.new_budget_fen == 0
    stopped = m.with_budget(campaign(100 * FACE), 0)
    assert not m.offers_cards(stopped, 0, 1) and m.cards_obtainable(stopped, 0, 0, 1) == 0


def test_stopping_a_campaign_already_stopped_changes_nothing():
    assert m.stop_issuing_change(old_budget_fen=12_500, issued_fen=12_500, request_id="again", now_ms=9) is None
