"""The cross-service invariants of miandan as pure checks over facts fetched from the services.

Each service enforces its own invariants inside its store transactions; what none of them can
see alone is whether their records agree with each other (a card REDEEMED for an order the order
service cancelled, an invite counted twice, a draw whose winners do not follow from its seed).
These checks take plain facts (no grpc, no sqlite) so each can be proven with hand-made data, and
return Findings instead of raising: an operator wants every problem in one run, not the first.

The facts of one pass are read listing after listing, not at one instant: under live traffic a
card can legitimately be REDEEMED a moment before its order is written PAID. check_budget holds
the cards to the range of two GetBudget answers taken around their listing (and to the largest
budget read, as an operator may change it meanwhile), and the audit reports a finding only when
a second pass finds it again (services.audit.audit_confirmed).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, Mapping, Sequence, TypeVar

__all__ = [
    "Finding",
    "CampaignFacts",
    "BudgetFacts",
    "CardFacts",
    "OrderFacts",
    "InviteFacts",
    "InviterFacts",
    "MemberFacts",
    "DrawFacts",
    "AuditFacts",
    "LIVE_PAID_STATUSES",
    "check_budget",
    "check_user_cap",
    "check_redemptions",
    "check_order_amounts",
    "check_reservations",
    "check_invites",
    "check_member_counters",
    "check_draws",
    "check_entrants_qualified",
    "recompute_winners",
    "audit",
]

# Card and order states as the proto enum names minus their prefix, so facts read naturally and
# tests need no generated code.
AVAILABLE, RESERVED, REDEEMED, EXPIRED = "AVAILABLE", "RESERVED", "REDEEMED", "EXPIRED"
SIGNUP, INVITER, INVITEE = "SIGNUP", "INVITER", "INVITEE"
LIVE_PAID_STATUSES = frozenset({"PAID", "ACCEPTED", "PREPARING", "READY", "COMPLETED"})
CANCELLED = "CANCELLED"
# Payment.note of a READY or COMPLETED order the order service kept standing after its card's
# hold lapsed and the card went to another order (or expired): it holds no REDEEMED card, and an
# operator settles its card part by hand.
CARD_HOLD_LAPSED = "CARD_HOLD_LAPSED"
DRAWN = "DRAWN"
DRAW_ALGORITHM = "miandan-draw-hmac-sha256"


@dataclass(frozen=True)
class Finding:
    """One violated invariant. `check` is a stable machine code; `ids` names the records."""

    check: str
    message: str
    ids: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.ids.items())
        return f"{self.check}: {self.message}" + (f" [{where}]" if where else "")


@dataclass(frozen=True)
class CampaignFacts:
    campaign_id: str
    budget_fen: int
    per_user_card_cap: int
    signup_grant: int = 1
    inviter_grant: int = 1
    invitee_grant: int = 1
    reservation_ttl_seconds: int = 900
    lottery_invite_threshold: int = 3


@dataclass(frozen=True)
class BudgetFacts:
    """What the card service reports (GetBudget)."""

    campaign_id: str
    budget_fen: int
    issued_fen: int
    reserved_fen: int
    redeemed_fen: int
    remaining_fen: int
    cards_issued: int
    expired_fen: int = 0


# slots: tens of millions of these are held at once at national scale (no __dict__ each).
@dataclass(frozen=True, slots=True)
class CardFacts:
    card_id: str
    campaign_id: str
    user_id: str
    state: str
    source: str
    face_value_fen: int
    order_id: str = ""
    reserved_until_ms: int = 0


# slots: tens of millions of these are held at once at national scale (no __dict__ each).
@dataclass(frozen=True, slots=True)
class OrderFacts:
    order_id: str
    user_id: str
    status: str
    card_id: str = ""
    campaign_id: str = ""
    card_discount_fen: int = 0
    subtotal_fen: int = 0
    payable_fen: int = 0
    payment_note: str = ""


@dataclass(frozen=True, slots=True)
class InviteFacts:
    inviter_user_id: str
    invitee_user_id: str
    inviter_rewarded: bool
    invitee_rewarded: bool
    accept_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class InviterFacts:
    """The invites one user made: from the campaign-wide listing (ListCampaignInvites, the count
    being what it lists), or for a drawn day's entrant from GetInviteStats, the count it reports
    and the invites it lists."""

    user_id: str
    invited_count: int
    invites: tuple[InviteFacts, ...]


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """One member's counters (ListCampaignMembers, what its wallet shows), kept by the card
    service beside the rows they count.
    cards_granted is what the per-user cap is enforced on; invites_made is the lottery progress
    the user's wallet shows."""

    user_id: str
    cards_granted: int
    invites_made: int


@dataclass(frozen=True)
class DrawFacts:
    campaign_id: str
    day: str
    status: str
    winner_count: int
    winners: tuple[str, ...]
    commitment: str = ""
    seed: str = ""
    beacon_value: str = ""
    entrants: tuple[str, ...] = ()
    entrants_hash: str = ""
    entrant_count: int = 0
    algorithm: str = DRAW_ALGORITHM
    algorithm_version: int = 1
    # Winners as VerifyDraw reports them, when they were read from there too; must equal winners.
    verify_winners: tuple[str, ...] | None = None
    cutoff_ms: int = 0
    # Entrants whose own entry says won (ListMyEntries, what each user is told), when read.
    flagged_winners: tuple[str, ...] | None = None


@dataclass
class AuditFacts:
    """Everything one audit run looked at, for one or more campaigns."""

    campaigns: list[CampaignFacts] = field(default_factory=list)
    budgets: dict[str, BudgetFacts] = field(default_factory=dict)
    # GetBudget asked again once the campaign's cards were listed (missing: the same as budgets).
    budgets_after: dict[str, BudgetFacts] = field(default_factory=dict)
    # The campaign's rules read again after that, and GetBudget right after them, when the first
    # rules and GetBudget disagreed on the budget (missing: not read again): see check_budget.
    campaigns_after: dict[str, CampaignFacts] = field(default_factory=dict)
    budgets_beside: dict[str, BudgetFacts] = field(default_factory=dict)
    cards: list[CardFacts] = field(default_factory=list)
    orders: list[OrderFacts] = field(default_factory=list)
    inviters: dict[str, list[InviterFacts]] = field(default_factory=dict)  # by campaign
    members: dict[str, list[MemberFacts]] = field(default_factory=dict)  # by campaign
    draws: list[DrawFacts] = field(default_factory=list)
    now_ms: int = 0


_V = TypeVar("_V")


class _Grouped(Generic[_V]):
    """key -> the values added under it, in the order added. One dict entry per key, and a list
    only for the keys that repeat: the checks group millions of cards and orders by id, nearly
    every id once, and a list per card cost ~90 bytes more than the entry itself."""

    __slots__ = ("_first", "_all")

    def __init__(self) -> None:
        self._first: dict[str, _V] = {}
        self._all: dict[str, list[_V]] = {}  # only the keys added more than once

    def add(self, key: str, value: _V) -> None:
        if key in self._first:
            self._all.setdefault(key, [self._first[key]]).append(value)
        else:
            self._first[key] = value

    def get(self, key: str) -> Sequence[_V]:
        more = self._all.get(key)
        if more is not None:
            return more
        first = self._first.get(key, _ABSENT)
        return () if first is _ABSENT else (first,)  # type: ignore[return-value]

    def repeated(self) -> list[str]:
        """The keys added more than once, in the order each was first added."""
        return [key for key in self._first if key in self._all] if self._all else []


_ABSENT: Any = object()


class UserCards:
    """Each user's cards of one campaign, counted once for the checks that count them
    (check_user_cap, check_invites, check_member_counters): all of them, and those granted on
    sign-up, as inviter and as invitee. The four counts of a user are one int of four 32-bit
    fields in one dict entry; four Counters over millions of users cost about twice as much."""

    __slots__ = ("_packed",)
    _SHIFT = {SIGNUP: 32, INVITER: 64, INVITEE: 96}
    _FIELD = (1 << 32) - 1

    def __init__(self, campaign_id: str, cards: Iterable[CardFacts]) -> None:
        packed: dict[str, int] = {}
        shift = self._SHIFT
        for c in cards:
            if c.campaign_id == campaign_id:
                at = shift.get(c.source)
                packed[c.user_id] = packed.get(c.user_id, 0) + 1 + (0 if at is None else 1 << at)
        self._packed = packed

    def users(self) -> Iterable[str]:
        """Every user holding at least one card."""
        return self._packed.keys()

    def all(self, user: str) -> int:
        return self._packed.get(user, 0) & self._FIELD

    def of(self, user: str, source: str) -> int:
        return (self._packed.get(user, 0) >> self._SHIFT[source]) & self._FIELD


# --- budget ------------------------------------------------------------------------------------


def check_budget(
    campaign: CampaignFacts,
    budget: BudgetFacts | None,
    cards: Sequence[CardFacts],
    after: BudgetFacts | None = None,
    *,
    campaign_after: CampaignFacts | None = None,
    beside: BudgetFacts | None = None,
) -> list[Finding]:
    """Issued face value never above the budget, and equal to the sum of the cards that exist.

    `budget` is GetBudget asked before the cards were listed, `after` asked again once they
    were (None: nothing changed in between, a quiescent suite). Under live traffic cards are
    issued while the listing pages on, so the listed cards are held to the range of the two
    answers: issued_fen and cards_issued only grow (cards are never deleted), every card issued
    before the first answer is listed, and none listed was issued after the second. The RESERVED
    and REDEEMED totals move both ways, so they are compared only when the two answers agree.

    The budget itself moves too (SetCampaignBudget: raised, or cut to what was issued, never
    below it), between any two reads: `campaign` is the rules read just before the first answer;
    when they disagree, the fetch reads the rules again (`campaign_after`) and GetBudget right
    after them (`beside`; None: compare with `after`). So the cards are held to the largest
    budget read (a budget never went below the cards issued under it), each answer's issued_fen
    to the budget in that same answer (one read of one row), and the rules must agree with the
    answer read right after them in one of the two pairs. A change between any two reads then
    reads as none; rules that disagree both times (a stale copy of the campaign) are a finding."""
    ids = {"campaign_id": campaign.campaign_id}
    out: list[Finding] = []
    own = [c for c in cards if c.campaign_id == campaign.campaign_id]
    issued = sum(c.face_value_fen for c in own)
    campaign_after = campaign_after or campaign
    replies = [r for r in (budget, after, beside) if r is not None]
    largest = max(campaign.budget_fen, campaign_after.budget_fen, *(r.budget_fen for r in replies))
    if issued > largest:
        out.append(Finding("BUDGET_EXCEEDED", f"cards worth {issued} fen exist, budget is {largest} fen", ids))
    if budget is None:
        out.append(Finding("BUDGET_MISSING", "the card service reported no budget for the campaign", ids))
        return out
    after = after or budget
    beside = beside or after
    if budget.budget_fen != campaign.budget_fen and beside.budget_fen != campaign_after.budget_fen:
        out.append(
            Finding(
                "BUDGET_MISMATCH",
                f"GetBudget says budget {_reported(budget.budget_fen, beside.budget_fen, 'the rules were read again')} fen, "
                f"the campaign rules say {_reported(campaign.budget_fen, campaign_after.budget_fen, 'the cards were listed')}",
                ids,
            )
        )
    if beside not in (budget, after) and beside.issued_fen > beside.budget_fen:
        out.append(Finding("BUDGET_EXCEEDED", f"issued_fen {beside.issued_fen} is above budget_fen {beside.budget_fen}", ids))
    for reply in (budget, after) if after != budget else (budget,):
        if reply.issued_fen > reply.budget_fen:
            out.append(
                Finding("BUDGET_EXCEEDED", f"issued_fen {reply.issued_fen} is above budget_fen {reply.budget_fen}", ids)
            )
        if reply.remaining_fen != reply.budget_fen - reply.issued_fen:
            out.append(
                Finding(
                    "REMAINING_MISMATCH",
                    f"remaining_fen {reply.remaining_fen} != budget {reply.budget_fen} - issued {reply.issued_fen}",
                    ids,
                )
            )

    if not budget.issued_fen <= issued <= after.issued_fen:
        out.append(
            Finding(
                "ISSUED_MISMATCH",
                f"issued_fen {_reported(budget.issued_fen, after.issued_fen)} but the {len(own)} cards sum to {issued} fen",
                ids,
            )
        )
    if not budget.cards_issued <= len(own) <= after.cards_issued:
        out.append(
            Finding(
                "ISSUED_COUNT_MISMATCH",
                f"cards_issued {_reported(budget.cards_issued, after.cards_issued)} but {len(own)} cards exist",
                ids,
            )
        )
    if after == budget:
        for state, value in ((RESERVED, budget.reserved_fen), (REDEEMED, budget.redeemed_fen)):
            actual = sum(c.face_value_fen for c in own if c.state == state)
            if value != actual:
                out.append(
                    Finding(
                        f"{state}_VALUE_MISMATCH",
                        f"GetBudget says {value} fen {state}, the {state} cards sum to {actual} fen",
                        ids,
                    )
                )
    return out


def _reported(before: int, later: int, between: str = "the cards were listed") -> str:
    return str(before) if before == later else f"{before} before {between} and {later} after"


def check_user_cap(campaign: CampaignFacts, cards: Sequence[CardFacts], *, tally: UserCards | None = None) -> list[Finding]:
    """No user was ever granted more cards than the per-user cap, nor more than one sign-up grant.
    `tally`: the cards already counted (UserCards of this campaign and these cards)."""
    tally = tally or UserCards(campaign.campaign_id, cards)
    users = sorted(tally.users())
    out = [
        Finding(
            "USER_CAP_EXCEEDED",
            f"user holds {tally.all(user)} cards, the cap is {campaign.per_user_card_cap}",
            {"campaign_id": campaign.campaign_id, "user_id": user},
        )
        for user in users
        if tally.all(user) > campaign.per_user_card_cap
    ]
    out += [
        Finding(
            "SIGNUP_GRANTED_TWICE",
            f"user got {tally.of(user, SIGNUP)} sign-up cards, the grant is {campaign.signup_grant}",
            {"campaign_id": campaign.campaign_id, "user_id": user},
        )
        for user in users
        if tally.of(user, SIGNUP) > max(campaign.signup_grant, 0)  # (a user without a sign-up card never got two)
    ]
    return out


# --- cards <-> orders --------------------------------------------------------------------------


def check_redemptions(cards: Sequence[CardFacts], orders: Sequence[OrderFacts]) -> list[Finding]:
    """card.order_id <-> order.card_id: every REDEEMED card is spent on exactly one live paid order
    (PAID or later, not CANCELLED), and every such order that used a card holds exactly that one
    REDEEMED card, owned by the order's user. An order kept standing with payment note
    CARD_HOLD_LAPSED holds none: it is reported as such, its card part to be settled by hand."""
    out: list[Finding] = []
    cards_by_id: _Grouped[CardFacts] = _Grouped()
    for c in cards:
        cards_by_id.add(c.card_id, c)
    for card_id in cards_by_id.repeated():
        out.append(Finding("CARD_ID_DUPLICATED", f"{len(cards_by_id.get(card_id))} cards share one id", {"card_id": card_id}))
    orders_by_id = {o.order_id: o for o in orders}

    def order_of(key: str) -> str:
        # The order service reserves under "<order_id>.<attempt>" when a placement is retried
        # after an aborted attempt (services/order/model.py reservation_key): same order.
        if key in orders_by_id:
            return key
        base, dot, attempt = key.rpartition(".")
        return base if dot and attempt.isdigit() and base in orders_by_id else key

    def lapsed_elsewhere(o: OrderFacts) -> bool:
        # Kept standing without its card, as its payment note says: it does not spend the card
        # (the order the card is REDEEMED for does), it is reported once as an order to settle.
        return o.payment_note == CARD_HOLD_LAPSED and not any(
            c.state == REDEEMED and order_of(c.order_id) == o.order_id for c in cards_by_id.get(o.card_id)
        )

    live_by_card: _Grouped[OrderFacts] = _Grouped()
    for o in orders:
        if o.card_id and o.status in LIVE_PAID_STATUSES and not lapsed_elsewhere(o):
            live_by_card.add(o.card_id, o)

    for c in cards:
        if c.state != REDEEMED:
            continue
        ids = {"card_id": c.card_id, "user_id": c.user_id, "order_id": c.order_id}
        card_order = order_of(c.order_id)
        spent_on = live_by_card.get(c.card_id)
        if not spent_on:
            owner = orders_by_id.get(card_order)
            if owner is None:
                out.append(Finding("REDEEMED_CARD_WITHOUT_ORDER", "card is REDEEMED for an order that does not exist", ids))
            elif owner.status in LIVE_PAID_STATUSES:
                # A paid order that names another card (or none): were that card spent on it
                # too, the order used two cards.
                own = cards_by_id.get(owner.card_id)
                if own and own[0].state == REDEEMED and order_of(own[0].order_id) == owner.order_id:
                    out.append(
                        Finding(
                            "ORDER_SPENT_TWO_CARDS",
                            f"{owner.status} order spent card {owner.card_id} and this card is REDEEMED for it too",
                            ids,
                        )
                    )
                else:
                    out.append(
                        Finding(
                            "CARD_ORDER_LINK_MISMATCH",
                            f"card is REDEEMED for {owner.status} order {owner.order_id}, which names card {owner.card_id or '(none)'}",
                            ids,
                        )
                    )
            else:
                out.append(
                    Finding(
                        "REDEEMED_CARD_ORDER_NOT_PAID",
                        f"card is REDEEMED but its order is {owner.status}"
                        + ("" if owner.card_id == c.card_id else f" and names card {owner.card_id or '(none)'}"),
                        ids,
                    )
                )
        elif len(spent_on) > 1:
            out.append(
                Finding(
                    "CARD_DOUBLE_SPENT",
                    f"card is spent on {len(spent_on)} live orders: {', '.join(sorted(o.order_id for o in spent_on))}",
                    ids,
                )
            )
        elif spent_on[0].order_id != card_order:
            out.append(
                Finding(
                    "CARD_ORDER_LINK_MISMATCH",
                    f"card says order {c.order_id or '(none)'}, order {spent_on[0].order_id} says this card",
                    ids,
                )
            )

    for o in orders:
        ids = {"order_id": o.order_id, "user_id": o.user_id, "card_id": o.card_id}
        if o.card_discount_fen > 0 and not o.card_id:
            out.append(Finding("DISCOUNT_WITHOUT_CARD", f"order has a card discount of {o.card_discount_fen} fen but no card", ids))
        if not o.card_id or o.status not in LIVE_PAID_STATUSES:
            continue
        found = cards_by_id.get(o.card_id)
        if not found:
            out.append(Finding("ORDER_CARD_MISSING", f"{o.status} order names a card the card service does not have", ids))
            continue
        card = found[0]
        if lapsed_elsewhere(o):
            elsewhere = f" for order {card.order_id}" if card.state == REDEEMED and card.order_id else ""
            out.append(
                Finding(
                    "ORDER_CARD_NOT_REDEEMED",
                    f"{o.status} order stands with payment note {CARD_HOLD_LAPSED}: its card hold lapsed and the card is "
                    f"{card.state}{elsewhere}; settle its card part of {o.card_discount_fen} fen by hand",
                    ids,
                )
            )
        elif card.state != REDEEMED:
            out.append(Finding("ORDER_CARD_NOT_REDEEMED", f"{o.status} order's card is {card.state}", ids))
        elif order_of(card.order_id) != o.order_id and len(live_by_card.get(o.card_id)) <= 1:
            # (the double-spend case was reported once per card above)
            out.append(
                Finding("CARD_ORDER_LINK_MISMATCH", f"order names the card, the card names order {card.order_id or '(none)'}", ids)
            )
        if card.user_id != o.user_id:
            out.append(Finding("CARD_OWNER_MISMATCH", f"order of {o.user_id} spent a card of {card.user_id}", ids))
        if o.card_discount_fen > card.face_value_fen:
            out.append(
                Finding(
                    "DISCOUNT_ABOVE_FACE_VALUE",
                    f"card discount {o.card_discount_fen} fen is above the card's face value {card.face_value_fen}",
                    ids,
                )
            )
    return out


def check_order_amounts(orders: Sequence[OrderFacts]) -> list[Finding]:
    """The card pays at most the order's subtotal and money never a negative amount: a discount
    above the subtotal gives the buyer more than the order costs, out of the campaign's budget
    (order.proto: card_discount_fen = min(subtotal, face value), payable = subtotal - discount).

    And a paid order (PAID or later, not CANCELLED) asked money for exactly what the card left:
    payable_fen == subtotal_fen - card_discount_fen, order.proto's definition (an order has no
    delivery fee, packaging charge or other adjustment; the amounts are set once, at placement,
    and nothing changes them after, a lapsed card hold included). A payable below it means the
    campaign or the merchant paid the difference unseen; above it, the buyer was overcharged.
    Orders not paid are left out: one still being placed (UNSPECIFIED over the API) has no split
    yet, and a cancelled one asks for no money."""
    out: list[Finding] = []
    for o in orders:
        ids = {"order_id": o.order_id, "user_id": o.user_id, "card_id": o.card_id}
        if o.status in LIVE_PAID_STATUSES and o.payable_fen != o.subtotal_fen - o.card_discount_fen:
            out.append(
                Finding(
                    "PAYABLE_MISMATCH",
                    f"{o.status} order's payable {o.payable_fen} fen is not its subtotal {o.subtotal_fen} fen "
                    f"less its card discount {o.card_discount_fen} fen",
                    ids,
                )
            )
        if o.card_discount_fen > 0 and o.card_discount_fen > o.subtotal_fen:
            out.append(
                Finding(
                    "DISCOUNT_ABOVE_SUBTOTAL",
                    f"{o.status} order's card discount {o.card_discount_fen} fen is above its subtotal {o.subtotal_fen} fen",
                    ids,
                )
            )
        elif o.payable_fen < 0:  # (a discount above the subtotal was reported just above)
            out.append(Finding("PAYABLE_NEGATIVE", f"{o.status} order's payable is {o.payable_fen} fen", ids))
    return out


def check_reservations(cards: Sequence[CardFacts], now_ms: int, grace_ms: int = 0) -> list[Finding]:
    """No card is still RESERVED after its hold lapsed (plus `grace_ms`, the sweeper's period)."""
    out: list[Finding] = []
    for c in cards:
        if c.state != RESERVED:
            continue
        ids = {"card_id": c.card_id, "user_id": c.user_id, "order_id": c.order_id}
        if not c.reserved_until_ms:
            out.append(Finding("RESERVATION_WITHOUT_TTL", "card is RESERVED with no reserved_until_time", ids))
        elif c.reserved_until_ms + grace_ms < now_ms:
            late = (now_ms - c.reserved_until_ms) / 1000
            out.append(Finding("RESERVATION_PAST_TTL", f"card is still RESERVED {late:.1f} s after its hold lapsed", ids))
    return out


# --- invites -----------------------------------------------------------------------------------


def check_invites(
    campaign: CampaignFacts, inviters: Sequence[InviterFacts], cards: Sequence[CardFacts], *, tally: UserCards | None = None
) -> list[Finding]:
    """Every invite counted once: each inviter's count equals the invites it lists, no invitee
    was invited twice, nobody invited itself, and invite cards match the rewards recorded.
    `tally`: the cards already counted (UserCards of this campaign and these cards)."""
    cid = campaign.campaign_id
    out: list[Finding] = []
    invitee_of: _Grouped[str] = _Grouped()
    rewarded_as_invitee: set[str] = set()
    for stats in inviters:
        listed = len(stats.invites)
        if stats.invited_count != listed:
            out.append(
                Finding(
                    "INVITE_COUNT_MISMATCH",
                    f"GetInviteStats counts {stats.invited_count} invites but lists {listed}",
                    {"campaign_id": cid, "user_id": stats.user_id},
                )
            )
        for inv in stats.invites:
            if inv.inviter_user_id != stats.user_id:
                out.append(
                    Finding(
                        "INVITE_LISTED_UNDER_WRONG_INVITER",
                        f"invite of {inv.inviter_user_id} listed under {stats.user_id}",
                        {"campaign_id": cid, "user_id": stats.user_id, "invitee_user_id": inv.invitee_user_id},
                    )
                )
            if inv.invitee_user_id == inv.inviter_user_id:
                out.append(Finding("SELF_INVITE", "user accepted its own invite", {"campaign_id": cid, "user_id": stats.user_id}))
            invitee_of.add(inv.invitee_user_id, inv.inviter_user_id)
            if inv.invitee_rewarded:
                rewarded_as_invitee.add(inv.invitee_user_id)

    for invitee in sorted(invitee_of.repeated()):
        by = invitee_of.get(invitee)
        if len(by) > 1:
            out.append(
                Finding(
                    "INVITEE_COUNTED_TWICE",
                    f"invitee appears in {len(by)} invites, by {', '.join(sorted(by))}",
                    {"campaign_id": cid, "invitee_user_id": invitee},
                )
            )

    tally = tally or UserCards(cid, cards)
    for stats in inviters:
        rewarded = sum(1 for inv in stats.invites if inv.inviter_rewarded)
        have = tally.of(stats.user_id, INVITER)
        if not _inviter_cards_fit(campaign, rewarded, have, tally.all(stats.user_id)):
            expected = rewarded * campaign.inviter_grant
            out.append(
                Finding(
                    "INVITER_CARDS_MISMATCH",
                    f"{rewarded} rewarded invites should give {expected} inviter cards"
                    + (f" (fewer only if the last grant reached the cap of {campaign.per_user_card_cap})" if have < expected else "")
                    + f", user has {have} (of {tally.all(stats.user_id)} cards in all)",
                    {"campaign_id": cid, "user_id": stats.user_id},
                )
            )
    for user in sorted(u for u in tally.users() if tally.of(u, INVITEE)):
        n = tally.of(user, INVITEE)
        if not invitee_of.get(user):
            out.append(
                Finding("INVITEE_CARD_WITHOUT_INVITE", f"user has {n} invitee cards but accepted no invite", {"campaign_id": cid, "user_id": user})
            )
        elif user in rewarded_as_invitee and n != _invitee_top_up(campaign, tally.of(user, SIGNUP)):
            # Joining with a pass-phrase gives the invitee card in place of the sign-up card: the
            # joiner ends with max(signup_grant, invitee_grant) joining cards in all.
            out.append(
                Finding(
                    "INVITEE_CARDS_MISMATCH",
                    f"invitee has {n} invitee cards and {tally.of(user, SIGNUP)} sign-up cards; joining cards "
                    f"should total {max(campaign.signup_grant, campaign.invitee_grant)}",
                    {"campaign_id": cid, "user_id": user},
                )
            )
        elif user not in rewarded_as_invitee:
            out.append(
                Finding("INVITEE_CARDS_MISMATCH", f"invite records no invitee reward but user has {n} invitee cards", {"campaign_id": cid, "user_id": user})
            )
    for user in sorted(rewarded_as_invitee):
        if tally.of(user, INVITEE) == 0:
            out.append(Finding("INVITEE_CARDS_MISMATCH", "invite records an invitee reward but user has no invitee card", {"campaign_id": cid, "user_id": user}))
    return out


def check_member_counters(
    campaign: CampaignFacts,
    members: Sequence[MemberFacts],
    inviters: Sequence[InviterFacts],
    cards: Sequence[CardFacts],
    *,
    tally: UserCards | None = None,
) -> list[Finding]:
    """Each user's kept counters equal what they count: cards_granted the user's cards (every
    card ever granted stays listed, whatever its state), invites_made the invites it made.

    The cap is enforced on cards_granted, so a counter that fell behind lets the user collect
    cards past the cap before any card count shows it; invites_made is what the wallet shows as
    lottery progress, so one invite counted twice shows a user qualified who is not."""
    cid = campaign.campaign_id
    tally = tally or UserCards(cid, cards)
    invites = {s.user_id: len(s.invites) for s in inviters}
    out: list[Finding] = []
    for m in members:
        ids = {"campaign_id": cid, "user_id": m.user_id}
        if m.cards_granted != tally.all(m.user_id):
            out.append(
                Finding("CARDS_GRANTED_MISMATCH", f"wallet counts {m.cards_granted} cards granted, the user has {tally.all(m.user_id)}", ids)
            )
        if m.user_id in invites and m.invites_made != invites[m.user_id]:
            out.append(
                Finding("INVITE_COUNTER_MISMATCH", f"wallet counts {m.invites_made} invites made, {invites[m.user_id]} invites are recorded", ids)
            )
    return out


def _inviter_cards_fit(campaign: "CampaignFacts", rewarded: int, inviter_cards: int, user_cards: int) -> bool:
    """Whether `inviter_cards` INVITER cards are what `rewarded` rewarded invites gave a user who
    was granted `user_cards` cards of the campaign in all (ListCampaignCards lists every card
    ever granted, whatever its state: the user's count against the cap).

    The card service grants inviter_grant per invite but never past the per-user cap
    (grant_size), and the budget check is all or nothing; an invite is rewarded when it gave at
    least one card. So each rewarded invite gave inviter_grant cards, except that one grant may
    stop short at the cap: that grant leaves the user at the cap, every later grant gives
    nothing (and is not rewarded), and cards are never taken back. Hence exactly rewarded *
    inviter_grant, or more than (rewarded - 1) * inviter_grant and fewer than that with the
    user's cards at the cap."""
    full = rewarded * campaign.inviter_grant
    if inviter_cards == full:
        return True
    return rewarded > 0 and full - campaign.inviter_grant < inviter_cards < full and user_cards == campaign.per_user_card_cap


def _invitee_top_up(campaign: "CampaignFacts", signup: int) -> int:
    return max(0, max(campaign.signup_grant, campaign.invitee_grant) - signup)


# --- draws -------------------------------------------------------------------------------------


def _score(key: bytes, user_id: str) -> int:
    return int.from_bytes(hmac.new(key, user_id.encode(), hashlib.sha256).digest(), "big")


def recompute_winners(seed_hex: str, beacon_value: str, entrants: Iterable[str], winner_count: int) -> list[str]:
    """Winners per "miandan-draw-hmac-sha256" v1 (lottery.proto): the winner_count entrants with
    the smallest HMAC-SHA256(seed || beacon, user id), ties broken by user id, in score order."""
    key = bytes.fromhex(seed_hex) + beacon_value.encode()
    ranked = sorted(entrants, key=lambda u: (_score(key, u), u.encode()))
    return ranked[: max(0, winner_count)]


def check_draws(draws: Sequence[DrawFacts]) -> list[Finding]:
    """At most winner_count distinct winners per draw, and each DRAWN draw recomputes from its
    revealed seed: the commitment, the entrant list and hash, and the winners themselves."""
    out: list[Finding] = []
    for d in draws:
        ids = {"campaign_id": d.campaign_id, "day": d.day}
        if len(d.winners) > d.winner_count:
            out.append(Finding("TOO_MANY_WINNERS", f"{len(d.winners)} winners, at most {d.winner_count} allowed", ids))
        if len(set(d.winners)) != len(d.winners):
            out.append(Finding("WINNER_REPEATED", "a user is listed as winner more than once", ids))
        if d.status != DRAWN:
            if d.winners:
                out.append(Finding("WINNERS_BEFORE_DRAW", f"draw is {d.status} but lists winners", ids))
            if d.seed:
                out.append(Finding("SEED_REVEALED_EARLY", f"draw is {d.status} but its seed is revealed", ids))
            continue
        if d.algorithm != DRAW_ALGORITHM or d.algorithm_version != 1:
            out.append(Finding("DRAW_ALGORITHM_UNKNOWN", f"cannot verify algorithm {d.algorithm} v{d.algorithm_version}", ids))
            continue
        try:
            seed = bytes.fromhex(d.seed)
        except ValueError:
            out.append(Finding("DRAW_SEED_INVALID", "revealed seed is not hex", ids))
            continue
        if not seed:
            out.append(Finding("DRAW_SEED_MISSING", "draw is DRAWN but no seed is revealed", ids))
            continue
        if hashlib.sha256(seed).hexdigest() != d.commitment.lower():
            out.append(Finding("DRAW_COMMITMENT_MISMATCH", "SHA-256 of the revealed seed is not the published commitment", ids))
        entrants = list(d.entrants)
        if entrants != sorted(set(entrants), key=lambda u: u.encode()):
            out.append(Finding("DRAW_ENTRANTS_NOT_SORTED", "entrants are not unique and sorted by UTF-8 bytes", ids))
        if len(entrants) != d.entrant_count:
            out.append(Finding("DRAW_ENTRANT_COUNT_MISMATCH", f"{len(entrants)} entrants listed, entrant_count {d.entrant_count}", ids))
        if d.entrants_hash and hashlib.sha256("\n".join(entrants).encode()).hexdigest() != d.entrants_hash.lower():
            out.append(Finding("DRAW_ENTRANTS_HASH_MISMATCH", "hash of the listed entrants is not entrants_hash", ids))
        if d.verify_winners is not None and tuple(d.verify_winners) != tuple(d.winners):
            out.append(Finding("DRAW_WINNERS_DISAGREE", "VerifyDraw and the published draw list different winners", ids))
        if d.flagged_winners is not None and set(d.flagged_winners) != set(d.winners) & set(entrants):
            told_won = sorted(set(d.flagged_winners) - set(d.winners))
            told_lost = sorted((set(d.winners) & set(entrants)) - set(d.flagged_winners))  # a stray winner: WINNER_NOT_ENTRANT
            out.append(
                Finding(
                    "WINNER_FLAG_MISMATCH",
                    "entries disagree with the draw's winners:"
                    + (f" told they won but not winners: {', '.join(told_won[:10])}" if told_won else "")
                    + (f" winners told they lost: {', '.join(told_lost[:10])}" if told_lost else ""),
                    ids,
                )
            )
        stray = sorted(set(d.winners) - set(entrants))
        if stray:
            out.append(Finding("WINNER_NOT_ENTRANT", f"winners who did not enter: {', '.join(stray[:10])}", ids))
        expected = recompute_winners(d.seed, d.beacon_value, sorted(set(entrants), key=lambda u: u.encode()), d.winner_count)
        published = list(d.winners)
        if published != expected:
            # From the first place they differ: the lists may agree on their first places.
            at = next((i for i, (a, b) in enumerate(zip(expected, published)) if a != b), min(len(expected), len(published)))
            out.append(
                Finding(
                    "DRAW_DOES_NOT_VERIFY",
                    f"{len(expected)} recomputed winners differ from the {len(published)} published from place {at + 1}: "
                    f"recomputed {expected[at:at + 5]}, published {published[at:at + 5]}",
                    ids,
                )
            )
    return out


def check_entrants_qualified(campaign: CampaignFacts, draws: Sequence[DrawFacts], inviters: Sequence[InviterFacts]) -> list[Finding]:
    """Every entrant of a drawn day had invited enough new users before that day's cut-off (the
    lottery asks the card service at entry; this re-asks afterwards)."""
    invites = {s.user_id: s.invites for s in inviters}
    out: list[Finding] = []
    for d in draws:
        if d.campaign_id != campaign.campaign_id or d.status != DRAWN:
            continue
        for user in d.entrants:
            made = sum(1 for i in invites.get(user, ()) if not d.cutoff_ms or i.accept_time_ms < d.cutoff_ms)
            if made < campaign.lottery_invite_threshold:
                out.append(
                    Finding(
                        "ENTRANT_NOT_QUALIFIED",
                        f"entrant had {made} invites before the cut-off, {campaign.lottery_invite_threshold} are needed",
                        {"campaign_id": d.campaign_id, "day": d.day, "user_id": user},
                    )
                )
    return out


# --- all of it ---------------------------------------------------------------------------------


def audit(facts: AuditFacts, *, reservation_grace_ms: int = 0) -> list[Finding]:
    """Every check over everything fetched, campaign by campaign."""
    out: list[Finding] = []
    for campaign in facts.campaigns:
        cid = campaign.campaign_id
        cards = [c for c in facts.cards if c.campaign_id == cid]
        out += check_budget(
            campaign, facts.budgets.get(cid), cards, facts.budgets_after.get(cid),
            campaign_after=facts.campaigns_after.get(cid), beside=facts.budgets_beside.get(cid),
        )
        tally = UserCards(cid, cards)
        out += check_user_cap(campaign, cards, tally=tally)
        out += check_invites(campaign, facts.inviters.get(cid, []), cards, tally=tally)
        out += check_member_counters(campaign, facts.members.get(cid, []), facts.inviters.get(cid, []), cards, tally=tally)
        del tally
        out += check_entrants_qualified(campaign, facts.draws, facts.inviters.get(cid, []))
    out += check_redemptions(facts.cards, facts.orders)
    out += check_order_amounts(facts.orders)
    out += check_reservations(facts.cards, facts.now_ms, reservation_grace_ms)
    out += check_draws(facts.draws)
    return out
