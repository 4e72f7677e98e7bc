"""The audit's pure checks, each proven to catch its violation on hand-made facts."""
from __future__ import annotations

import hashlib
import hmac

from services.audit.model import (
    AuditFacts,
    BudgetFacts,
    CampaignFacts,
    CardFacts,
    DrawFacts,
    InviteFacts,
    InviterFacts,
    OrderFacts,
    audit,
    check_budget,
    check_draws,
    check_entrants_qualified,
    check_invites,
    check_redemptions,
    check_reservations,
    check_user_cap,
    recompute_winners,
)

CID = "spring-2026"
CAMPAIGN = CampaignFacts(campaign_id=CID, budget_fen=10_000, per_user_card_cap=3, lottery_invite_threshold=1)


def card(card_id: str, user: str = "alice", state: str = "AVAILABLE", source: str = "SIGNUP", order_id: str = "", **kw) -> CardFacts:
    return CardFacts(card_id=card_id, campaign_id=CID, user_id=user, state=state, source=source, face_value_fen=2_500, order_id=order_id, **kw)


def order(order_id: str, user: str = "alice", status: str = "PAID", card_id: str = "", discount: int = 0) -> OrderFacts:
    return OrderFacts(
        order_id=order_id, user_id=user, status=status, card_id=card_id, campaign_id=CID, card_discount_fen=discount,
        subtotal_fen=3_000, payable_fen=3_000 - discount,
    )


def budget(issued: int, cards: int, reserved: int = 0, redeemed: int = 0, total: int = 10_000) -> BudgetFacts:
    return BudgetFacts(CID, total, issued, reserved, redeemed, total - issued, cards)


def checks(findings) -> list[str]:
    return sorted(f.check for f in findings)


# --- budget -----------------------------------------------------------------------------------


def test_a_consistent_budget_has_no_findings():
    cards = [card("c1", state="REDEEMED", order_id="o1"), card("c2", user="bob")]
    assert check_budget(CAMPAIGN, budget(5_000, 2, redeemed=2_500), cards) == []


def test_cards_worth_more_than_the_budget_are_found():
    cards = [card(f"c{i}", user=f"u{i}") for i in range(5)]  # 12,500 fen against 10,000
    found = check_budget(CAMPAIGN, budget(12_500, 5, total=10_000), cards)
    assert "BUDGET_EXCEEDED" in checks(found)
    assert all(f.ids["campaign_id"] == CID for f in found)


def test_issued_value_that_differs_from_the_sum_of_cards_is_found():
    found = check_budget(CAMPAIGN, budget(7_500, 3), [card("c1"), card("c2", user="bob")])
    assert checks(found) == ["ISSUED_COUNT_MISMATCH", "ISSUED_MISMATCH"]


def test_redeemed_and_reserved_totals_must_match_the_cards():
    cards = [card("c1", state="REDEEMED", order_id="o1"), card("c2", state="RESERVED", order_id="o2", reserved_until_ms=1)]
    assert checks(check_budget(CAMPAIGN, budget(5_000, 2, reserved=0, redeemed=5_000), cards)) == [
        "REDEEMED_VALUE_MISMATCH",
        "RESERVED_VALUE_MISMATCH",
    ]


def test_a_missing_budget_is_a_finding():
    assert checks(check_budget(CAMPAIGN, None, [])) == ["BUDGET_MISSING"]


# --- cap --------------------------------------------------------------------------------------


def test_a_user_above_the_cap_is_found_with_its_id():
    cards = [card(f"c{i}", source="INVITER") for i in range(4)] + [card("b1", user="bob")]
    found = check_user_cap(CAMPAIGN, cards)
    assert [(f.check, f.ids["user_id"]) for f in found] == [("USER_CAP_EXCEEDED", "alice")]


def test_a_user_at_the_cap_is_fine():
    assert check_user_cap(CAMPAIGN, [card("c1"), card("c2", source="INVITER"), card("c3", source="INVITER")]) == []


def test_two_signup_cards_for_one_user_are_found():
    assert checks(check_user_cap(CAMPAIGN, [card("c1"), card("c2")])) == ["SIGNUP_GRANTED_TWICE"]


# --- redemptions ------------------------------------------------------------------------------


def test_matching_cards_and_orders_have_no_findings():
    cards = [card("c1", state="REDEEMED", order_id="o1"), card("c2", user="bob", state="AVAILABLE")]
    orders = [order("o1", card_id="c1", discount=2_500), order("o2", user="bob", status="CANCELLED", card_id="c2", discount=2_500), order("o3")]
    assert check_redemptions(cards, orders) == []


def test_a_redeemed_card_without_any_order_is_found():
    found = check_redemptions([card("c1", state="REDEEMED", order_id="ghost")], [])
    assert [(f.check, f.ids["card_id"], f.ids["order_id"]) for f in found] == [("REDEEMED_CARD_WITHOUT_ORDER", "c1", "ghost")]


def test_a_redeemed_card_of_a_cancelled_order_is_found():
    found = check_redemptions([card("c1", state="REDEEMED", order_id="o1")], [order("o1", status="CANCELLED", card_id="c1")])
    assert checks(found) == ["REDEEMED_CARD_ORDER_NOT_PAID"]


def test_a_redeemed_card_of_an_unpaid_order_is_found():
    found = check_redemptions([card("c1", state="REDEEMED", order_id="o1")], [order("o1", status="PENDING_PAYMENT", card_id="c1")])
    assert checks(found) == ["REDEEMED_CARD_ORDER_NOT_PAID"]


def test_one_card_spent_on_two_paid_orders_is_a_double_spend():
    found = check_redemptions(
        [card("c1", state="REDEEMED", order_id="o1")], [order("o1", card_id="c1"), order("o2", status="COMPLETED", card_id="c1")]
    )
    assert checks(found) == ["CARD_DOUBLE_SPENT"]
    assert "o1" in found[0].message and "o2" in found[0].message


def test_a_paid_order_whose_card_is_not_redeemed_is_found():
    found = check_redemptions([card("c1", state="AVAILABLE")], [order("o1", card_id="c1")])
    assert [(f.check, f.ids["order_id"]) for f in found] == [("ORDER_CARD_NOT_REDEEMED", "o1")]


def test_a_paid_order_naming_an_unknown_card_is_found():
    assert checks(check_redemptions([], [order("o1", card_id="nope")])) == ["ORDER_CARD_MISSING"]


def test_card_and_order_pointing_at_different_partners_are_found():
    found = check_redemptions([card("c1", state="REDEEMED", order_id="o9")], [order("o1", card_id="c1"), order("o9")])
    assert checks(found) == ["CARD_ORDER_LINK_MISMATCH", "CARD_ORDER_LINK_MISMATCH"]


def test_a_card_held_under_a_retry_attempt_key_belongs_to_that_order():
    cards = [card("c1", state="REDEEMED", order_id="o1.2")]
    assert check_redemptions(cards, [order("o1", card_id="c1")]) == []
    assert checks(check_redemptions([card("c1", state="REDEEMED", order_id="o1.x")], [order("o1", card_id="c1")])) == [
        "CARD_ORDER_LINK_MISMATCH",
        "CARD_ORDER_LINK_MISMATCH",
    ]


def test_spending_another_users_card_is_found():
    found = check_redemptions([card("c1", user="bob", state="REDEEMED", order_id="o1")], [order("o1", user="alice", card_id="c1")])
    assert checks(found) == ["CARD_OWNER_MISMATCH"]


def test_a_discount_without_a_card_or_above_face_value_is_found():
    found = check_redemptions(
        [card("c1", state="REDEEMED", order_id="o2")], [order("o1", discount=100), order("o2", card_id="c1", discount=9_999)]
    )
    assert checks(found) == ["DISCOUNT_ABOVE_FACE_VALUE", "DISCOUNT_WITHOUT_CARD"]


def test_two_cards_with_one_id_are_found():
    assert "CARD_ID_DUPLICATED" in checks(check_redemptions([card("c1"), card("c1", user="bob")], []))


# --- reservations -----------------------------------------------------------------------------


def test_a_hold_past_its_ttl_is_found_and_a_live_one_is_not():
    cards = [
        card("late", state="RESERVED", order_id="o1", reserved_until_ms=1_000),
        card("live", state="RESERVED", order_id="o2", reserved_until_ms=100_000),
    ]
    found = check_reservations(cards, now_ms=50_000)
    assert [(f.check, f.ids["card_id"]) for f in found] == [("RESERVATION_PAST_TTL", "late")]


def test_the_grace_period_covers_the_sweeper_delay():
    cards = [card("c1", state="RESERVED", order_id="o1", reserved_until_ms=40_000)]
    assert check_reservations(cards, now_ms=50_000, grace_ms=30_000) == []
    assert checks(check_reservations(cards, now_ms=80_001, grace_ms=30_000)) == ["RESERVATION_PAST_TTL"]


def test_a_hold_without_ttl_is_found():
    assert checks(check_reservations([card("c1", state="RESERVED", order_id="o1")], now_ms=1)) == ["RESERVATION_WITHOUT_TTL"]


# --- invites ----------------------------------------------------------------------------------


def invite(inviter: str, invitee: str, rewarded: bool = True, invitee_rewarded: bool = True) -> InviteFacts:
    return InviteFacts(inviter, invitee, inviter_rewarded=rewarded, invitee_rewarded=invitee_rewarded)


def test_consistent_invites_have_no_findings():
    # bob accepted before claiming: his invitee card is his joining card; carol claimed her
    # sign-up card first, which then counted as her joining card (no invitee card on top).
    inviters = [InviterFacts("alice", 2, (invite("alice", "bob"), invite("alice", "carol", rewarded=False, invitee_rewarded=False)))]
    cards = [
        card("a1"), card("a2", source="INVITER"),
        card("b2", user="bob", source="INVITEE"),
        card("c1", user="carol"),
    ]
    assert check_invites(CAMPAIGN, inviters, cards) == []


def test_an_invitee_with_both_a_sign_up_and_an_invitee_card_is_found():
    inviters = [InviterFacts("alice", 1, (invite("alice", "bob"),))]
    cards = [card("a2", source="INVITER"), card("b1", user="bob"), card("b2", user="bob", source="INVITEE")]
    assert checks(check_invites(CAMPAIGN, inviters, cards)) == ["INVITEE_CARDS_MISMATCH"]


def test_an_invitee_counted_by_two_inviters_is_found():
    inviters = [InviterFacts("alice", 1, (invite("alice", "bob"),)), InviterFacts("dave", 1, (invite("dave", "bob"),))]
    cards = [card("a", source="INVITER"), card("d", user="dave", source="INVITER"), card("b", user="bob", source="INVITEE")]
    found = check_invites(CAMPAIGN, inviters, cards)
    assert [(f.check, f.ids["invitee_user_id"]) for f in found] == [("INVITEE_COUNTED_TWICE", "bob")]


def test_a_count_that_differs_from_the_listed_invites_is_found():
    inviters = [InviterFacts("alice", 3, (invite("alice", "bob"),))]
    cards = [card("a", source="INVITER"), card("b", user="bob", source="INVITEE")]
    assert checks(check_invites(CAMPAIGN, inviters, cards)) == ["INVITE_COUNT_MISMATCH"]


def test_inviter_cards_must_match_rewarded_invites():
    inviters = [InviterFacts("alice", 1, (invite("alice", "bob"),))]
    cards = [card("a1", source="INVITER"), card("a2", source="INVITER"), card("b", user="bob", source="INVITEE")]
    assert checks(check_invites(CAMPAIGN, inviters, cards)) == ["INVITER_CARDS_MISMATCH"]


def test_inviter_cards_of_a_user_who_invited_nobody_are_found():
    found = check_invites(CAMPAIGN, [InviterFacts("zed", 0, ())], [card("z1", user="zed", source="INVITER")])
    assert [(f.check, f.ids["user_id"]) for f in found] == [("INVITER_CARDS_MISMATCH", "zed")]


def test_an_invitee_card_without_an_invite_is_found():
    assert checks(check_invites(CAMPAIGN, [], [card("x", user="eve", source="INVITEE")])) == ["INVITEE_CARD_WITHOUT_INVITE"]


def test_a_rewarded_invitee_without_its_card_is_found():
    inviters = [InviterFacts("alice", 1, (invite("alice", "bob"),))]
    assert checks(check_invites(CAMPAIGN, inviters, [card("a", source="INVITER")])) == ["INVITEE_CARDS_MISMATCH"]


def test_self_invite_is_found():
    inviters = [InviterFacts("alice", 1, (InviteFacts("alice", "alice", False, False),))]
    assert checks(check_invites(CAMPAIGN, inviters, [])) == ["SELF_INVITE"]


# --- draws ------------------------------------------------------------------------------------

SEED = "11" * 32


def drawn(entrants: list[str], winner_count: int = 2, **overrides) -> DrawFacts:
    entrants = sorted(entrants, key=str.encode)
    fields = dict(
        campaign_id=CID,
        day="2026-02-01",
        status="DRAWN",
        winner_count=winner_count,
        winners=tuple(recompute_winners(SEED, "", entrants, winner_count)),
        commitment=hashlib.sha256(bytes.fromhex(SEED)).hexdigest(),
        seed=SEED,
        entrants=tuple(entrants),
        entrants_hash=hashlib.sha256("\n".join(entrants).encode()).hexdigest(),
        entrant_count=len(entrants),
    )
    fields.update(overrides)
    return DrawFacts(**fields)


def test_recompute_follows_the_published_algorithm():
    key = bytes.fromhex(SEED) + b"beacon"
    users = ["u1", "u2", "u3", "张三"]
    by_hand = sorted(users, key=lambda u: int.from_bytes(hmac.new(key, u.encode(), hashlib.sha256).digest(), "big"))
    assert recompute_winners(SEED, "beacon", users, 2) == by_hand[:2]
    assert recompute_winners(SEED, "", ["a"], 15) == ["a"]


def test_a_draw_that_recomputes_has_no_findings():
    assert check_draws([drawn(["u1", "u2", "u3", "u4"])]) == []


def test_winners_that_do_not_follow_from_the_seed_are_found():
    d = drawn(["u1", "u2", "u3", "u4"])
    others = tuple(u for u in d.entrants if u not in d.winners)
    assert checks(check_draws([drawn(["u1", "u2", "u3", "u4"], winners=others)])) == ["DRAW_DOES_NOT_VERIFY"]


def test_more_winners_than_allowed_are_found():
    found = check_draws([drawn(["u1", "u2", "u3"], winner_count=1, winners=("u1", "u2"))])
    assert "TOO_MANY_WINNERS" in checks(found)


def test_a_seed_that_does_not_match_the_commitment_is_found():
    assert checks(check_draws([drawn(["u1", "u2"], commitment="00" * 32)])) == ["DRAW_COMMITMENT_MISMATCH"]


def test_a_tampered_entrant_list_is_found():
    d = drawn(["u1", "u2", "u3"])
    found = check_draws([drawn(["u1", "u2", "u3"], entrants_hash=hashlib.sha256(b"other").hexdigest(), winners=d.winners)])
    assert checks(found) == ["DRAW_ENTRANTS_HASH_MISMATCH"]


def test_a_winner_who_never_entered_is_found():
    found = check_draws([drawn(["u1", "u2"], winners=("mallory", "u1"))])
    assert "WINNER_NOT_ENTRANT" in checks(found)


def test_an_open_draw_with_winners_or_a_revealed_seed_is_found():
    open_draw = DrawFacts(CID, "2026-02-02", "OPEN", 15, ("u1",), seed=SEED)
    assert checks(check_draws([open_draw])) == ["SEED_REVEALED_EARLY", "WINNERS_BEFORE_DRAW"]


def test_verify_draw_disagreeing_with_the_published_winners_is_found():
    d = drawn(["u1", "u2", "u3"])
    assert checks(check_draws([drawn(["u1", "u2", "u3"], verify_winners=tuple(reversed(d.winners)))])) == ["DRAW_WINNERS_DISAGREE"]


def test_an_entrant_without_enough_invites_before_the_cutoff_is_found():
    campaign = CampaignFacts(campaign_id=CID, budget_fen=10_000, per_user_card_cap=21, lottery_invite_threshold=2)
    early = lambda invitee: InviteFacts("alice", invitee, True, True, accept_time_ms=100)  # noqa: E731
    inviters = [
        InviterFacts("alice", 2, (early("x"), early("y"))),
        InviterFacts("bob", 2, (InviteFacts("bob", "z", True, True, 100), InviteFacts("bob", "w", True, True, 5_000))),
    ]
    draw = drawn(["alice", "bob"], cutoff_ms=1_000)
    found = check_entrants_qualified(campaign, [draw], inviters)
    assert [(f.check, f.ids["user_id"]) for f in found] == [("ENTRANT_NOT_QUALIFIED", "bob")]


# --- all together -----------------------------------------------------------------------------


def test_the_full_audit_of_a_consistent_world_is_clean_and_of_a_broken_one_is_not():
    cards = [card("a1", state="REDEEMED", order_id="o1"), card("a2", source="INVITER"), card("b2", user="bob", source="INVITEE")]
    facts = AuditFacts(
        campaigns=[CAMPAIGN],
        budgets={CID: budget(7_500, 3, redeemed=2_500)},
        cards=cards,
        orders=[order("o1", card_id="a1", discount=2_500)],
        inviters={CID: [InviterFacts("alice", 1, (invite("alice", "bob"),))]},
        draws=[drawn(["alice"])],
        now_ms=1,
    )
    assert audit(facts) == []
    facts.orders.append(order("o2", card_id="a1"))
    assert checks(audit(facts)) == ["CARD_DOUBLE_SPENT"]


def test_a_second_card_redeemed_for_a_paid_order_is_an_order_that_spent_two_cards():
    cards = [card("c1", state="REDEEMED", order_id="o1"), card("c2", state="REDEEMED", order_id="o1")]
    found = check_redemptions(cards, [order("o1", card_id="c1", discount=2_500)])
    assert [(f.check, f.ids["order_id"], f.ids["card_id"]) for f in found] == [("ORDER_SPENT_TWO_CARDS", "o1", "c2")]
    assert "c1" in found[0].message


def test_a_card_redeemed_for_a_paid_order_that_names_another_card_is_a_link_mismatch_not_an_unpaid_order():
    found = check_redemptions([card("c2", state="REDEEMED", order_id="o1")], [order("o1", card_id="c1"), order("o2")])
    assert checks(found) == ["CARD_ORDER_LINK_MISMATCH", "ORDER_CARD_MISSING"]
    found = check_redemptions([card("c2", state="REDEEMED", order_id="o2")], [order("o2")])  # an order that used no card
    assert checks(found) == ["CARD_ORDER_LINK_MISMATCH"]


def test_entries_that_tell_a_loser_it_won_or_a_winner_it_lost_are_found():
    d = drawn(["u1", "u2", "u3", "u4"])
    loser = next(u for u in d.entrants if u not in d.winners)
    assert check_draws([drawn(["u1", "u2", "u3", "u4"], flagged_winners=d.winners)]) == []
    told_won = check_draws([drawn(["u1", "u2", "u3", "u4"], flagged_winners=d.winners + (loser,))])
    assert checks(told_won) == ["WINNER_FLAG_MISMATCH"] and loser in told_won[0].message
    told_lost = check_draws([drawn(["u1", "u2", "u3", "u4"], flagged_winners=d.winners[1:])])
    assert checks(told_lost) == ["WINNER_FLAG_MISMATCH"] and d.winners[0] in told_lost[0].message


def test_an_extra_winner_appended_to_a_draw_is_named_from_the_place_the_lists_differ():
    d = drawn(["u1", "u2", "u3"], winner_count=2)
    found = check_draws([drawn(["u1", "u2", "u3"], winner_count=2, winners=d.winners + ("mallory",), flagged_winners=d.winners)])
    assert checks(found) == ["DRAW_DOES_NOT_VERIFY", "TOO_MANY_WINNERS", "WINNER_NOT_ENTRANT"]  # no entry told anyone wrong
    [verify] = [f for f in found if f.check == "DRAW_DOES_NOT_VERIFY"]
    assert "from place 3" in verify.message and "mallory" in verify.message
