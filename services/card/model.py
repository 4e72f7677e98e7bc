"""Rules of the card service as plain data and functions (no grpc, no sqlite).

The store calls these functions inside its transactions, so every decision (what a grant is
worth, whether an invitee is new, what state a card is really in at a given instant) has one
definition, tested with a FakeClock in tests/unit/card.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    AlreadyExists,
)
from services.common.time_zone import is_iana_zone

DAY_MS = 86_400_000

# --- enums (values equal the proto enums, so the servicer maps them by value) ----------------


class CardState(enum.IntEnum):
    AVAILABLE = 1
    RESERVED = 2
    REDEEMED = 3
    EXPIRED = 4


class CardSource(enum.IntEnum):
    SIGNUP = 1
    INVITER = 2
    INVITEE = 3


class ReservationState(enum.IntEnum):
    HELD = 1
    CONFIRMED = 2
    RELEASED = 3
    REFUNDED = 4


# Ledger causes (LedgerEntry.cause in the proto).
GRANT_CAUSE = {CardSource.SIGNUP: "GRANT_SIGNUP", CardSource.INVITER: "GRANT_INVITER", CardSource.INVITEE: "GRANT_INVITEE"}
RESERVE, CONFIRM, RELEASE, RESERVATION_TIMEOUT, REFUND, EXPIRE = (
    "RESERVE", "CONFIRM", "RELEASE", "RESERVATION_TIMEOUT", "REFUND", "EXPIRE",
)

# --- stable reasons --------------------------------------------------------------------------

CAMPAIGN_NOT_FOUND = "CAMPAIGN_NOT_FOUND"
CAMPAIGN_NOT_ACTIVE = "CAMPAIGN_NOT_ACTIVE"
CAMPAIGN_EXISTS = "CAMPAIGN_EXISTS"
CAMPAIGN_BUDGET_EXHAUSTED = "CAMPAIGN_BUDGET_EXHAUSTED"
CARD_CAP_REACHED = "CARD_CAP_REACHED"
INVITE_CODE_NOT_FOUND = "INVITE_CODE_NOT_FOUND"
INVITE_ATTEMPTS_EXCEEDED = "INVITE_ATTEMPTS_EXCEEDED"
SELF_INVITE = "SELF_INVITE"
INVITEE_NOT_NEW = "INVITEE_NOT_NEW"
INVITE_ALREADY_ACCEPTED = "INVITE_ALREADY_ACCEPTED"
NO_CARD_AVAILABLE = "NO_CARD_AVAILABLE"
CARD_NOT_FOUND = "CARD_NOT_FOUND"
CARD_NOT_OWNED = "CARD_NOT_OWNED"
CARD_NOT_AVAILABLE = "CARD_NOT_AVAILABLE"
CARD_EXPIRED = "CARD_EXPIRED"
RESERVATION_NOT_FOUND = "RESERVATION_NOT_FOUND"
RESERVATION_EXPIRED = "RESERVATION_EXPIRED"
RESERVATION_RELEASED = "RESERVATION_RELEASED"
RESERVATION_REFUNDED = "RESERVATION_REFUNDED"
ORDER_ID_CONFLICT = "ORDER_ID_CONFLICT"
REDEEM_NOT_COVERED = "REDEEM_NOT_COVERED"
# Not an error: AcceptInvite's invitee_not_rewarded_reason when the invitee's sign-up card of the
# same join already is its joining card (the invite adds no invitee card).
SIGNUP_CARD_COUNTED = "SIGNUP_CARD_COUNTED"
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
BUDGET_BELOW_ISSUED = "BUDGET_BELOW_ISSUED"


def budget_below_issued(issued_fen: int, asked_fen: int) -> FailedPrecondition:
    # The figure in the metadata too: an operator's script stopping a busy campaign retries with
    # it (grants committed between its read and its cut moved it on), without parsing text.
    return FailedPrecondition(
        BUDGET_BELOW_ISSUED,
        f"预算不能低于已发放的 {issued_fen} 分 / the budget cannot go below the {issued_fen} fen already issued"
        f" (asked {asked_fen} fen; set it to {issued_fen} to stop issuing)",
        metadata={"issued_fen": str(issued_fen)},
    )


def campaign_not_found(campaign_id: str) -> NotFound:
    return NotFound(CAMPAIGN_NOT_FOUND, f"活动不存在 / campaign {campaign_id!r} not found")


def campaign_not_active() -> FailedPrecondition:
    return FailedPrecondition(CAMPAIGN_NOT_ACTIVE, "活动未开始或已结束 / the campaign is not running now")


def budget_exhausted() -> ResourceExhausted:
    return ResourceExhausted(CAMPAIGN_BUDGET_EXHAUSTED, "活动预算已发完 / the campaign budget is exhausted")


def cap_reached(cap: int) -> FailedPrecondition:
    return FailedPrecondition(CARD_CAP_REACHED, f"已达每人{cap}张上限 / at the per-user cap of {cap} cards")


def invite_code_not_found() -> NotFound:
    # Deliberately the same text for every wrong code: no hint about which codes exist.
    return NotFound(INVITE_CODE_NOT_FOUND, "口令无效 / invite code not found")


def attempts_exceeded(retry_after_ms: int) -> ResourceExhausted:
    return ResourceExhausted(
        INVITE_ATTEMPTS_EXCEEDED, "尝试次数过多，请稍后再试 / too many wrong invite codes, retry later", retry_after_ms
    )


def request_id_reused() -> AlreadyExists:
    return AlreadyExists(REQUEST_ID_REUSED, "request_id 已用于另一个请求 / request_id was used for a different request")


# --- campaigns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    card_face_value_fen: int = 2_500
    per_user_card_cap: int = 21
    signup_grant: int = 1
    inviter_grant: int = 1
    invitee_grant: int = 1
    card_validity_days: int = 0
    budget_fen: int = 0
    lottery_invite_threshold: int = 3
    reservation_ttl_seconds: int = 900
    time_zone: str = "Asia/Shanghai"


DEFAULT_RULES = Rules()
MAX_CAP = 1_000
MAX_GRANT = 100
MAX_FACE_VALUE_FEN = 100_000_000  # one million yuan: far above any real card, below overflow
MAX_BUDGET_FEN = 10**17
MAX_VALIDITY_DAYS = 3_650
MAX_TTL_SECONDS = 86_400
MAX_THRESHOLD = 10_000
# ReserveCards: a batch shares one admission slot and lands in at most two group commits of the
# store (Database.MAX_BATCH is 128): past that, one caller's batch would starve the others.
MAX_BATCH_RESERVATIONS = 256


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    start_ms: int
    end_ms: int
    rules: Rules
    create_ms: int
    secret: bytes = field(default=b"", repr=False)

    def is_active(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms < self.end_ms

    def card_expiry_ms(self, grant_ms: int) -> int:
        days = self.rules.card_validity_days
        return grant_ms + days * DAY_MS if days else self.end_ms

    def same_definition(self, other: "Campaign") -> bool:
        return (self.campaign_id, self.name, self.start_ms, self.end_ms, self.rules) == (
            other.campaign_id, other.name, other.start_ms, other.end_ms, other.rules,
        )


def with_budget(campaign: Campaign, budget_fen: int) -> Campaign:
    """The campaign with another budget in force (the only rule that changes after creation)."""
    if campaign.rules.budget_fen == budget_fen:
        return campaign
    return replace(campaign, rules=replace(campaign.rules, budget_fen=budget_fen))


# --- budget changes --------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetChange:
    """One SetCampaignBudget that changed the budget, as kept for the operator's history. The
    service has a single admin token, so the request_id stands for who asked."""

    change_ms: int
    old_budget_fen: int
    new_budget_fen: int
    issued_fen: int  # face value issued when the change was committed
    request_id: str


# Changes a budget answer (GetBudget, SetCampaignBudget) shows, newest first: a campaign's budget
# is changed a handful of times, and dashboards and audits read GetBudget.
BUDGET_CHANGES_SHOWN = 20


def check_budget_fen(budget_fen: int, stop_issuing: bool = False) -> int:
    """A budget set on a running campaign: any positive fen up to MAX_BUDGET_FEN. Not held to one
    card's face value as at creation: cutting to what was issued is how an operator stops
    issuing, and a raise by any amount is a raise. With stop_issuing the figure is the store's
    to take (what is issued at the commit), so none may be given: a figure beside the flag would
    leave the operator unsure which one was applied."""
    if stop_issuing:
        if budget_fen != 0:
            raise InvalidArgument(
                "budget_fen", "stop_issuing 时须为 0 / must be 0 with stop_issuing (the budget becomes what was issued)"
            )
        return budget_fen
    if not 1 <= budget_fen <= MAX_BUDGET_FEN:
        raise InvalidArgument("budget_fen", f"须为 1..{MAX_BUDGET_FEN} 分 / must be 1..{MAX_BUDGET_FEN} fen")
    return budget_fen


def budget_change(
    *, old_budget_fen: int, issued_fen: int, new_budget_fen: int, request_id: str, now_ms: int
) -> BudgetChange | None:
    """Decide a budget set against the campaign's figures as read in the write transaction
    (the grants' transaction order, so issued_fen cannot move under it). Never below what was
    issued: cards granted stay granted, and the budget bounds what was ever issued. Equal to it,
    every further grant is refused as a spent budget's. None: the budget in force, nothing to
    change or keep."""
    if new_budget_fen < issued_fen:
        raise budget_below_issued(issued_fen, new_budget_fen)
    if new_budget_fen == old_budget_fen:
        return None
    return BudgetChange(now_ms, old_budget_fen, new_budget_fen, issued_fen, request_id)


def stop_issuing_change(*, old_budget_fen: int, issued_fen: int, request_id: str, now_ms: int) -> BudgetChange | None:
    """SetCampaignBudget's stop_issuing, decided on the figures of the write transaction: the
    budget becomes what is issued at that commit, so grants racing the call can never make it
    refused (a figure the operator read is overtaken by them). 0 on a campaign that issued
    nothing: no budget at all, which every grant and reader takes as spent. None: already
    stopped."""
    return budget_change(
        old_budget_fen=old_budget_fen, issued_fen=issued_fen, new_budget_fen=issued_fen, request_id=request_id,
        now_ms=now_ms,
    )


_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Ids minted by other services: printable ASCII without spaces, so they can't smuggle control or
# look-alike characters into logs and audits.
_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def check_campaign_id(value: str, field_name: str = "campaign_id") -> str:
    if not value:
        raise InvalidArgument(field_name, "必填 / required")
    if not _CAMPAIGN_ID.fullmatch(value):
        raise InvalidArgument(field_name, "letters, digits, '-' and '_', 1..64 characters")
    return value


def check_id(value: str, field_name: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise InvalidArgument(field_name, "必填 / required")
        return value
    if not _ID.fullmatch(value):
        raise InvalidArgument(field_name, "1..128 printable ASCII characters: letters, digits and ._:@/+=-")
    return value


def resolve_rules(given: Rules) -> Rules:
    """Fill zero fields with defaults and validate every field; raises InvalidArgument naming
    every bad field at once."""
    bad: list[tuple[str, str]] = []

    def pick(name: str, lo: int, hi: int) -> int:
        value = getattr(given, name)
        if value == 0:
            return getattr(DEFAULT_RULES, name)
        if not lo <= value <= hi:
            bad.append((f"rules.{name}", f"must be between {lo} and {hi}"))
        return value

    face = pick("card_face_value_fen", 1, MAX_FACE_VALUE_FEN)
    cap = pick("per_user_card_cap", 1, MAX_CAP)
    signup = pick("signup_grant", 1, MAX_GRANT)
    inviter = pick("inviter_grant", 1, MAX_GRANT)
    invitee = pick("invitee_grant", 1, MAX_GRANT)
    validity = given.card_validity_days
    if not 0 <= validity <= MAX_VALIDITY_DAYS:
        bad.append(("rules.card_validity_days", f"must be between 0 and {MAX_VALIDITY_DAYS}"))
    budget = given.budget_fen
    if budget <= 0:
        bad.append(("rules.budget_fen", "必填且为正 / required, > 0"))
    elif budget > MAX_BUDGET_FEN:
        bad.append(("rules.budget_fen", f"must be at most {MAX_BUDGET_FEN}"))
    elif not bad and budget < face:
        bad.append(("rules.budget_fen", "must cover at least one card"))
    threshold = pick("lottery_invite_threshold", 1, MAX_THRESHOLD)
    ttl = pick("reservation_ttl_seconds", 1, MAX_TTL_SECONDS)
    tz = given.time_zone or DEFAULT_RULES.time_zone
    if not is_iana_zone(tz):
        bad.append(("rules.time_zone", "not an IANA time zone"))
    if not bad and cap < max(signup + invitee, inviter):
        bad.append(("rules.per_user_card_cap", "must be >= signup_grant + invitee_grant and >= inviter_grant"))
    if bad:
        raise InvalidArgument(violations=bad)
    return Rules(face, cap, signup, inviter, invitee, validity, budget, threshold, ttl, tz)


def new_campaign(
    campaign_id: str, name: str, start_ms: int | None, end_ms: int | None, rules: Rules, now_ms: int, secret: bytes
) -> Campaign:
    bad: list[tuple[str, str]] = []
    if not campaign_id:
        bad.append(("campaign_id", "必填 / required"))
    elif not _CAMPAIGN_ID.fullmatch(campaign_id):
        bad.append(("campaign_id", "letters, digits, '-' and '_', 1..64 characters"))
    name = name.strip()
    if not 1 <= len(name) <= 100:
        bad.append(("name", "1..100 characters"))
    if start_ms is None:
        bad.append(("start_time", "必填 / required"))
    if end_ms is None:
        bad.append(("end_time", "必填 / required"))
    elif start_ms is not None and end_ms <= start_ms:
        bad.append(("end_time", "must be after start_time"))
    try:
        resolved = resolve_rules(rules)
    except InvalidArgument as exc:
        bad.extend(exc.violations)
        resolved = rules
    if bad:
        raise InvalidArgument(violations=bad)
    assert start_ms is not None and end_ms is not None
    return Campaign(campaign_id, name, start_ms, end_ms, resolved, now_ms, secret)


# --- cards -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    card_id: str
    campaign_id: str
    user_id: str
    state: CardState
    source: CardSource
    face_value_fen: int
    grant_ms: int
    expire_ms: int
    order_id: str = ""
    reserved_until_ms: int | None = None

    def at(self, now_ms: int) -> "Card":
        """The card as it really is at now_ms. Lapsed holds and passed validity are applied
        lazily (by the next write or the sweep), so every read looks through them here."""
        state = effective_state(self.state, self.expire_ms, self.reserved_until_ms, now_ms)
        if state == self.state:
            return self
        return replace(self, state=state, order_id="", reserved_until_ms=None)


def effective_state(state: CardState, expire_ms: int, reserved_until_ms: int | None, now_ms: int) -> CardState:
    if state == CardState.RESERVED:
        if reserved_until_ms is not None and reserved_until_ms > now_ms:
            # A live hold outlives the card's validity: the order was placed while it was valid.
            return CardState.RESERVED
        return CardState.EXPIRED if expire_ms <= now_ms else CardState.AVAILABLE
    if state == CardState.AVAILABLE and expire_ms <= now_ms:
        return CardState.EXPIRED
    return CardState(state)


def joining_grant(rules: Rules) -> int:
    """Cards a new user gets for joining the campaign. Joining with a pass-phrase gives the
    invitee grant *in place of* the sign-up grant, so whichever of ClaimSignupCard and
    AcceptInvite comes first (or both in one AcceptInvite with claim_signup, which is the claim
    then the invite), the joiner ends with max(signup_grant, invitee_grant) cards:
    "inviting a friend gives both sides a card", and a family of six chained through one
    pass-phrase collects 6 + 5 = 11 cards."""
    return max(rules.signup_grant, rules.invitee_grant)


def grant_size(wanted: int, granted_so_far: int, cap: int) -> int:
    """Cards a grant actually gives: as many as wanted, but never past the per-user cap."""
    return max(0, min(wanted, cap - granted_so_far))


def offers_cards(campaign: Campaign, issued_fen: int, now_ms: int) -> bool:
    """Whether a friend joining with a pass-phrase now would be granted a card, the per-user cap
    aside: the campaign is running and what is left of its budget pays for the sign-up grant. A
    Join claims that grant first, and a grant is given whole or not at all (the audit counts on
    it), so with a grant of several cards one card's worth left gives the friend nothing; the
    invite's joining grant is no smaller. issued_fen never goes down (a refunded or expired card
    stays issued), so once this is False for the budget it stays so."""
    rules = campaign.rules
    first_grant_fen = rules.signup_grant * rules.card_face_value_fen
    return campaign.is_active(now_ms) and rules.budget_fen - issued_fen >= first_grant_fen


def cards_obtainable(campaign: Campaign, cards_granted: int, issued_fen: int, now_ms: int) -> int:
    """Cards the user could still be granted now: what the cap leaves, no more than the rest of
    the budget pays for, and none while the campaign is not running. A wallet must not promise
    cards that every grant would refuse (CAMPAIGN_BUDGET_EXHAUSTED, CAMPAIGN_NOT_ACTIVE)."""
    if not campaign.is_active(now_ms):
        return 0
    rules = campaign.rules
    affordable = (rules.budget_fen - issued_fen) // rules.card_face_value_fen
    return max(0, min(rules.per_user_card_cap - cards_granted, affordable))


def covered_fen(amount_fen: int, face_value_fen: int) -> int:
    return min(amount_fen, face_value_fen)


# --- invitees --------------------------------------------------------------------------------

DEFAULT_NEW_USER_WINDOW_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class InviteeActivity:
    """What the store knows about an invitee before the invite (read from its member row)."""

    signup_ms: int | None = None  # when its sign-up card(s) were granted, if ever
    other_cards: int = 0  # cards granted for anything but the sign-up
    has_reservations: bool = False
    has_invited: bool = False


def is_new_invitee(activity: InviteeActivity, now_ms: int, window_ms: int = DEFAULT_NEW_USER_WINDOW_MS) -> bool:
    """New = nothing in the campaign but its own sign-up card from this same join (granted
    within window_ms): the gateway's Join claims the sign-up card and then accepts the invite."""
    if activity.has_reservations or activity.has_invited or activity.other_cards:
        return False
    return activity.signup_ms is None or activity.signup_ms >= now_ms - window_ms


def invitee_not_new() -> FailedPrecondition:
    return FailedPrecondition(INVITEE_NOT_NEW, "仅限新用户接受邀请 / only new users can accept an invite")


def self_invite() -> FailedPrecondition:
    return FailedPrecondition(SELF_INVITE, "不能使用自己的邀请码 / you cannot use your own invite code")


def already_accepted() -> FailedPrecondition:
    return FailedPrecondition(INVITE_ALREADY_ACCEPTED, "已接受过邀请 / you already accepted an invite")


# --- attempts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptPolicy:
    """Wrong invite codes allowed per user per window (fixed window)."""

    max_failures: int = 10
    window_ms: int = 10 * 60 * 1000


def attempts_blocked(failures: int, window_start_ms: int, now_ms: int, policy: AttemptPolicy) -> int:
    """0 when the user may try a code now, else milliseconds until it may."""
    window_end = window_start_ms + policy.window_ms
    if failures >= policy.max_failures and now_ms < window_end:
        return window_end - now_ms
    return 0


# --- reservations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    order_id: str
    card_id: str
    user_id: str
    campaign_id: str
    state: ReservationState
    amount_fen: int
    covered_fen: int
    expire_ms: int
    end_cause: str = ""  # RELEASE / RESERVATION_TIMEOUT / REFUND
    refund_returned: bool = False
    # When the reservation was made (a released order that reserves again gets a new one).
    create_ms: int = 0

    def is_lapsed(self, now_ms: int) -> bool:
        return self.state == ReservationState.HELD and self.expire_ms <= now_ms

    def at(self, now_ms: int) -> "Reservation":
        if self.is_lapsed(now_ms):
            return replace(self, state=ReservationState.RELEASED, end_cause=RESERVATION_TIMEOUT)
        return self


def made_after_replayed_request(state: ReservationState, *, refund: bool = False) -> bool:
    """Whether a replayed Release or Refund (its request_id already answered, same content)
    finds a reservation that a later ReserveCard of the order made. Once such a call was
    answered the order's reservation was not HELD (both end a hold), nor CONFIRMED after a
    Refund; only a new ReserveCard makes it HELD (then CONFIRMED) again. A late duplicate must
    leave that one alone: a refund replayed onto the order's later redemption would give back a
    card the order paid with (spent twice), a release replayed onto a later hold would take the
    card from under an order being paid."""
    if state == ReservationState.HELD:
        return True
    return refund and state == ReservationState.CONFIRMED


def replayed_reserve_error(r: Reservation, now_ms: int) -> DomainError | None:
    """What a replayed ReserveCard answers when the hold it made has ended since (released, or
    lapsed): that error, not a new hold. A new hold for the order takes a new request_id; a late
    duplicate of the first one would otherwise lock the user's card for another TTL, for an
    order that nobody will confirm or release. None: the reservation is still live (or final)."""
    now = r.at(now_ms)
    return not_held_error(now) if now.state == ReservationState.RELEASED else None


def check_amount(amount_fen: int) -> int:
    if amount_fen <= 0:
        raise InvalidArgument("amount_fen", "must be > 0")
    if amount_fen > MAX_BUDGET_FEN:
        raise InvalidArgument("amount_fen", "too large")
    return amount_fen


def check_ttl(ttl_seconds: int) -> int:
    if ttl_seconds < 0 or ttl_seconds > MAX_TTL_SECONDS:
        raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_TTL_SECONDS}")
    return ttl_seconds


def check_batch_size(n: int) -> int:
    if n < 1 or n > MAX_BATCH_RESERVATIONS:
        raise InvalidArgument("reservations", f"must hold 1..{MAX_BATCH_RESERVATIONS} entries, got {n}")
    return n


def not_held_error(r: Reservation) -> DomainError:
    """Why a reservation that is no longer HELD cannot be confirmed."""
    if r.state == ReservationState.RELEASED:
        if r.end_cause == RESERVATION_TIMEOUT:
            return FailedPrecondition(RESERVATION_EXPIRED, "预留已超时 / the reservation expired before payment")
        return FailedPrecondition(RESERVATION_RELEASED, "预留已释放 / the reservation was released")
    return FailedPrecondition(RESERVATION_REFUNDED, "该订单的卡已退回 / the card of this order was refunded")


def card_not_found() -> NotFound:
    return NotFound(CARD_NOT_FOUND, "卡不存在 / card not found")


def card_not_owned() -> PermissionDenied:
    return PermissionDenied(CARD_NOT_OWNED, "不是你的卡 / the card belongs to another user")


def card_not_available() -> FailedPrecondition:
    return FailedPrecondition(CARD_NOT_AVAILABLE, "该卡当前不可用 / the card is not available")


def no_card_available() -> FailedPrecondition:
    return FailedPrecondition(NO_CARD_AVAILABLE, "没有可用的免单卡 / no available card")


def reservation_not_found() -> NotFound:
    return NotFound(RESERVATION_NOT_FOUND, "该订单没有预留的卡 / no card reservation for this order")


def redeem_not_covered() -> FailedPrecondition:
    # Redeeming before payment is only safe when there is nothing left to pay: a payment that
    # then failed would leave a spent card on an unpaid order.
    return FailedPrecondition(
        REDEEM_NOT_COVERED,
        "免单卡不足以支付全部金额，请支付后再确认 / redeem needs an order the card pays in full; reserve, pay, then confirm",
    )


def order_id_conflict() -> AlreadyExists:
    return AlreadyExists(ORDER_ID_CONFLICT, "订单号已被另一用户使用 / order_id belongs to another user")


# --- paging ----------------------------------------------------------------------------------


def page_size(value: int, default: int, maximum: int, field_name: str = "page_size") -> int:
    if value < 0 or value > maximum:
        raise InvalidArgument(field_name, f"must be between 0 and {maximum}")
    return value or default


def face_yuan_text(fen: int) -> str:
    yuan, rest = divmod(fen, 100)
    return str(yuan) if rest == 0 else f"{yuan}.{rest:02d}".rstrip("0")

