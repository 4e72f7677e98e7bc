"""Rules of the card model, with a FakeClock where time matters."""
import pytest

from services.card import model as m
from services.common.clock import FakeClock, now_ms
from services.common.errors import InvalidArgument

DAY = m.DAY_MS


def test_zero_rules_take_the_story_defaults():
    rules = m.resolve_rules(m.Rules(budget_fen=3_000_000_000 * 100))
    assert (rules.card_face_value_fen, rules.per_user_card_cap, rules.signup_grant) == (2500, 21, 1)
    assert (rules.inviter_grant, rules.invitee_grant, rules.lottery_invite_threshold) == (1, 1, 3)
    assert rules.reservation_ttl_seconds == 900 and rules.time_zone == "Asia/Shanghai"


@pytest.mark.parametrize(
    "rules, field",
    [
        (m.Rules(budget_fen=0), "rules.budget_fen"),
        (m.Rules(budget_fen=-5), "rules.budget_fen"),
        (m.Rules(budget_fen=100, card_face_value_fen=-1), "rules.card_face_value_fen"),
        (m.Rules(budget_fen=10_000, per_user_card_cap=-3), "rules.per_user_card_cap"),
        (m.Rules(budget_fen=10_000, per_user_card_cap=1), "rules.per_user_card_cap"),  # < signup + invitee
        (m.Rules(budget_fen=10_000, card_validity_days=-1), "rules.card_validity_days"),
        (m.Rules(budget_fen=10_000, time_zone="Mars/Olympus"), "rules.time_zone"),
        # ZoneInfo raises OSError ("File name too long") for these, which was not caught: INTERNAL.
        (m.Rules(budget_fen=10_000, time_zone="美" * 300), "rules.time_zone"),
        (m.Rules(budget_fen=10_000, time_zone="x" * 5000), "rules.time_zone"),
        # The host would decide the campaign's day: two services on two hosts could disagree.
        (m.Rules(budget_fen=10_000, time_zone="localtime"), "rules.time_zone"),
        (m.Rules(budget_fen=1_000), "rules.budget_fen"),  # not even one card
    ],
)
def test_bad_rules_name_the_field(rules, field):
    with pytest.raises(InvalidArgument) as err:
        m.resolve_rules(rules)
    assert field in [f for f, _ in err.value.violations]


def test_a_campaign_must_end_after_it_starts_and_all_bad_fields_are_reported_together():
    with pytest.raises(InvalidArgument) as err:
        m.new_campaign("", "", 10, 5, m.Rules(), 0, b"")
    fields = {f for f, _ in err.value.violations}
    assert {"campaign_id", "name", "end_time", "rules.budget_fen"} <= fields


def test_a_campaign_is_active_from_start_inclusive_to_end_exclusive():
    c = m.new_campaign("c", "n", 1000, 2000, m.Rules(budget_fen=10_000), 0, b"")
    assert not c.is_active(999) and c.is_active(1000) and c.is_active(1999) and not c.is_active(2000)


def test_cards_expire_at_campaign_end_or_n_days_after_grant():
    c = m.new_campaign("c", "n", 0, 100 * DAY, m.Rules(budget_fen=10_000), 0, b"")
    assert c.card_expiry_ms(5 * DAY) == 100 * DAY
    c7 = m.new_campaign("c", "n", 0, 100 * DAY, m.Rules(budget_fen=10_000, card_validity_days=7), 0, b"")
    assert c7.card_expiry_ms(5 * DAY) == 12 * DAY


def test_a_grant_never_passes_the_cap():
    assert m.grant_size(1, 0, 21) == 1
    assert m.grant_size(1, 21, 21) == 0
    assert m.grant_size(3, 20, 21) == 1
    assert m.grant_size(1, 25, 21) == 0


def test_a_wallet_offers_what_the_cap_leaves_the_budget_pays_for_and_nothing_outside_the_window():
    c = m.new_campaign("c", "n", 1000, 2000, m.Rules(budget_fen=10 * 2_500), 0, b"")
    assert m.cards_obtainable(c, 1, 0, 1500) == 10 and m.offers_cards(c, 0, 1500)
    assert m.cards_obtainable(c, 1, 8 * 2_500 + 1, 1500) == 1 and m.offers_cards(c, 8 * 2_500 + 1, 1500)
    assert m.cards_obtainable(c, 1, 9 * 2_500 + 1, 1500) == 0 and not m.offers_cards(c, 9 * 2_500 + 1, 1500)
    assert m.cards_obtainable(c, 21, 0, 1500) == 0 and m.offers_cards(c, 0, 1500)  # the cap is the user's
    for outside in (999, 2000):
        assert m.cards_obtainable(c, 1, 0, outside) == 0 and not m.offers_cards(c, 0, outside)


def test_a_pass_phrase_promises_a_card_only_while_the_budget_pays_a_whole_sign_up_grant():
    c = m.new_campaign("c", "n", 1000, 2000, m.Rules(budget_fen=10 * 2_500, signup_grant=2), 0, b"")
    assert m.offers_cards(c, 8 * 2_500, 1500)
    assert not m.offers_cards(c, 9 * 2_500, 1500)  # one card's worth left: a grant of two gives none


def test_a_card_covers_at_most_its_face_value():
    assert m.covered_fen(1800, 2500) == 1800
    assert m.covered_fen(4000, 2500) == 2500


def test_a_lapsed_hold_reads_as_available_and_a_passed_validity_as_expired():
    clock = FakeClock()
    now = now_ms(clock)
    card = m.Card("c1", "camp", "u", m.CardState.RESERVED, m.CardSource.SIGNUP, 2500, now, now + DAY, "o1", now + 60_000)
    assert card.at(now).state == m.CardState.RESERVED
    clock.advance(61)
    later = card.at(now_ms(clock))
    assert later.state == m.CardState.AVAILABLE and later.order_id == "" and later.reserved_until_ms is None
    clock.advance(days=2)
    assert card.at(now_ms(clock)).state == m.CardState.EXPIRED


def test_a_live_hold_survives_the_end_of_the_cards_validity_so_a_placed_order_can_be_paid():
    assert m.effective_state(m.CardState.RESERVED, 100, 200, 150) == m.CardState.RESERVED
    assert m.effective_state(m.CardState.RESERVED, 100, 200, 250) == m.CardState.EXPIRED


def test_redeemed_cards_do_not_expire_in_place():
    assert m.effective_state(m.CardState.REDEEMED, 100, None, 500) == m.CardState.REDEEMED


def test_an_invitee_with_only_its_fresh_signup_card_is_new():
    now = 10 * 60_000 * 10
    assert m.is_new_invitee(m.InviteeActivity(), now)
    assert m.is_new_invitee(m.InviteeActivity(signup_ms=now - 1000), now)


def test_an_invitee_with_an_old_signup_other_cards_orders_or_invites_is_not_new():
    now = 100 * 60_000
    assert not m.is_new_invitee(m.InviteeActivity(signup_ms=now - 11 * 60_000), now)
    assert not m.is_new_invitee(m.InviteeActivity(other_cards=1), now)
    assert not m.is_new_invitee(m.InviteeActivity(signup_ms=now, has_reservations=True), now)
    assert not m.is_new_invitee(m.InviteeActivity(has_invited=True), now)
    assert m.is_new_invitee(m.InviteeActivity(signup_ms=now - 11 * 60_000), now, window_ms=20 * 60_000)


def test_wrong_attempts_block_until_the_window_ends():
    policy = m.AttemptPolicy(max_failures=3, window_ms=60_000)
    assert m.attempts_blocked(2, 0, 10_000, policy) == 0
    assert m.attempts_blocked(3, 0, 10_000, policy) == 50_000
    assert m.attempts_blocked(3, 0, 60_000, policy) == 0


def test_a_lapsed_reservation_reads_as_released_by_timeout():
    r = m.Reservation("o", "c", "u", "camp", m.ReservationState.HELD, 100, 100, 1000)
    assert r.at(999).state == m.ReservationState.HELD
    lapsed = r.at(1000)
    assert lapsed.state == m.ReservationState.RELEASED
    assert m.not_held_error(lapsed).reason == m.RESERVATION_EXPIRED


@pytest.mark.parametrize("value, ok", [("u-1", True), ("a" * 128, True), ("", False), ("a" * 129, False),
                                        ("has space", False), ("😀", False), ("用户", False), ("x\n", False)])
def test_ids_are_short_printable_ascii(value, ok):
    if ok:
        assert m.check_id(value, "user_id") == value
    else:
        with pytest.raises(InvalidArgument):
            m.check_id(value, "user_id")


def test_amounts_and_ttls_are_range_checked():
    with pytest.raises(InvalidArgument):
        m.check_amount(0)
    with pytest.raises(InvalidArgument):
        m.check_amount(-100)
    with pytest.raises(InvalidArgument):
        m.check_ttl(-1)
    assert m.check_ttl(0) == 0
