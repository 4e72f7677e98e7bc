"""What a user should see through the GatewayService, as plain Python: the published rules of
DESIGN.md and PRODUCT.md (one 25-yuan card on sign-up, an invite gives both sides a card, 21 at
most, one card per order paying min(total, 2,500 fen), a cancel gives the card back, 3 invited
new users enter the day's draw once) and the gateway protos' answers. No grpc, no store: the
journeys compare each real answer with what this model says."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.card.invite_code import extract_codes

FACE_FEN = 2_500
CAP = 21
THRESHOLD = 3
# The card service's defaults (docs/conventions.md: MIANDAN_CARD_NEW_USER_WINDOW_SECONDS; the
# wrong-code limit of AttemptPolicy): an invitee is new within 10 minutes of its sign-up card,
# and ten wrong codes in ten minutes block further codes for the rest of the window.
NEW_USER_WINDOW_MS = 600_000
MAX_WRONG_CODES = 10
WRONG_CODE_WINDOW_MS = 600_000

PENDING, PAID, CANCELLED = "ORDER_STATUS_PENDING_PAYMENT", "ORDER_STATUS_PAID", "ORDER_STATUS_CANCELLED"
NOT_REQUIRED, PAY_PENDING, CAPTURED, REFUNDED, VOIDED = (
    "PAYMENT_STATUS_NOT_REQUIRED", "PAYMENT_STATUS_PENDING", "PAYMENT_STATUS_CAPTURED", "PAYMENT_STATUS_REFUNDED",
    "PAYMENT_STATUS_VOIDED",
)


class Refused(Exception):
    """The call must fail: gRPC status name and ErrorInfo reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}/{reason}")
        self.code, self.reason = code, reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refused) and (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))


@dataclass
class Order:
    order_id: str
    request_id: str
    quantity: int
    subtotal_fen: int
    discount_fen: int
    status: str
    payment_status: str
    created_ms: int
    card_id: str = ""
    refunded_fen: int = 0

    @property
    def payable_fen(self) -> int:
        return self.subtotal_fen - self.discount_fen


@dataclass
class User:
    user_id: str
    signup_ms: int | None = None
    inviter: str = ""
    invites_made: int = 0
    granted: int = 0
    available: int = 0  # spendable cards
    known_cards: set[str] = field(default_factory=set)  # available card ids last seen
    reserved_ever: bool = False
    code: str = ""
    phrase: str = ""
    wrong: tuple[int, int] | None = None  # (window start ms, wrong codes in it)
    entered_days: set[str] = field(default_factory=set)
    orders: dict[str, Order] = field(default_factory=dict)
    # request_id -> (what was asked, the answer): replays must get the first answer.
    joins: dict[str, tuple[str, object]] = field(default_factory=dict)
    placements: dict[str, tuple[tuple, object]] = field(default_factory=dict)
    cancels: dict[str, str] = field(default_factory=dict)
    payments: dict[str, str] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> bool:
        return self.invites_made >= THRESHOLD


@dataclass
class JoinAnswer:
    newly_joined: bool
    invite_accepted: bool
    invite_problem: str


class Campaign:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def user(self, user_id: str) -> User:
        return self.users.setdefault(user_id, User(user_id))

    def owner_of(self, code: str) -> User | None:
        return next((u for u in self.users.values() if u.code == code), None)

    def invitees_of(self, user_id: str) -> list[str]:
        return [u.user_id for u in self.users.values() if u.inviter == user_id]

    # --- cards ------------------------------------------------------------------------------

    def _grant(self, u: User, n: int) -> int:
        given = max(0, min(n, CAP - u.granted))
        u.granted += given
        u.available += given
        return given

    def _claim(self, u: User, now_ms: int) -> bool | Refused:
        """The sign-up claim: newly granted, or the refusal (CARD_CAP_REACHED) the card service
        answers a user whose wallet its pass-phrase filled before it joined."""
        if u.signup_ms is not None or u.inviter:
            return False
        if u.granted >= CAP:
            return Refused("FAILED_PRECONDITION", "CARD_CAP_REACHED")
        self._grant(u, 1)
        u.signup_ms = now_ms
        return True

    def join(self, user_id: str, text: str, request_id: str, now_ms: int) -> JoinAnswer | Refused:
        u = self.user(user_id)
        if request_id in u.joins:
            asked, first = u.joins[request_id]
            if asked == text:
                replayed = self._replayed_join(u, text, first, now_ms)
                if replayed is not None:
                    return replayed
        answer = self._join(u, text, now_ms)
        u.joins[request_id] = (text, answer)
        return answer

    def _replayed_join(self, u: User, text: str, first: object, now_ms: int) -> JoinAnswer | Refused | None:
        """A retry under the same request_id: the first answer, except that newly_joined is true
        only on the call that granted the card (card proto: newly_granted), an invite refusal is
        judged again unless it counted a wrong code (the card service keeps no other), and a
        retry made while blocked is told so unless the text holds the invite already accepted.
        None: judge it as a new call."""
        if isinstance(first, Refused):
            return first
        assert isinstance(first, JoinAnswer)
        if first.invite_problem not in ("", "INVITE_CODE_NOT_FOUND"):
            # Kept only when it counted a wrong code: any other refusal is judged again (one's
            # own pass-phrase, refused SELF_INVITE, is INVITE_ALREADY_ACCEPTED once invited).
            return None
        if text.strip() and self._blocked(u, now_ms):
            inviter_code = self.users[u.inviter].code if u.inviter else ""
            accepted = bool(inviter_code) and inviter_code in extract_codes(text)
            return JoinAnswer(False, accepted, "" if accepted else "INVITE_ATTEMPTS_EXCEEDED")
        return JoinAnswer(False, first.invite_accepted, first.invite_problem)

    @staticmethod
    def _blocked(u: User, now_ms: int) -> bool:
        return u.wrong is not None and u.wrong[1] >= MAX_WRONG_CODES and now_ms < u.wrong[0] + WRONG_CODE_WINDOW_MS

    def _join(self, u: User, text: str, now_ms: int) -> JoinAnswer | Refused:
        if not text.strip():
            claimed = self._claim(u, now_ms)
            return JoinAnswer(claimed is True, False, "")
        try:
            candidates = extract_codes(text)
        except Exception:
            # Text without any pass-phrase: refused, the sign-up card granted all the same.
            self._claim(u, now_ms)
            return Refused("INVALID_ARGUMENT", "INVALID_ARGUMENT")
        # In one card transaction: the claim, then the invite; a failing invite undoes the
        # claim and the claim comes on its own.
        before = (u.signup_ms, u.granted, u.available)
        claimed = self._claim(u, now_ms)
        if isinstance(claimed, Refused):
            problem = claimed.reason
        else:
            problem = self._accept(u, candidates, now_ms)
            if problem is None:
                return JoinAnswer(claimed, True, "")
            u.signup_ms, u.granted, u.available = before
            claimed = self._claim(u, now_ms)
        return JoinAnswer(claimed is True, False, problem)

    def _accept(self, u: User, candidates: list[str], now_ms: int) -> str | None:
        """The invite part of a join: None when accepted, else the problem's reason."""
        owners = {c: self.owner_of(c) for c in candidates}
        owned = [c for c in candidates if owners[c] is not None]
        if self._blocked(u, now_ms):
            inviter_codes = {self.users[u.inviter].code} if u.inviter else set()
            return None if inviter_codes & set(candidates) else "INVITE_ATTEMPTS_EXCEEDED"
        wrong = len(candidates) - len(owned)
        if wrong:
            if u.wrong is None or now_ms >= u.wrong[0] + WRONG_CODE_WINDOW_MS:
                u.wrong = (now_ms, wrong)
            else:
                u.wrong = (u.wrong[0], u.wrong[1] + wrong)
        if not owned:
            return "INVITE_CODE_NOT_FOUND"
        chosen = next((c for c in owned if owners[c].user_id != u.user_id), owned[0])
        inviter = owners[chosen]
        assert inviter is not None
        if u.inviter:
            return None if u.inviter == inviter.user_id else "INVITE_ALREADY_ACCEPTED"
        if inviter.user_id == u.user_id:
            return "SELF_INVITE"
        signup_cards = 1 if u.signup_ms is not None else 0
        newcomer = (
            not u.reserved_ever and u.invites_made == 0 and u.granted - signup_cards == 0
            and (u.signup_ms is None or u.signup_ms >= now_ms - NEW_USER_WINDOW_MS)
        )
        if not newcomer:
            return "INVITEE_NOT_NEW"
        # The invitee's card replaces its sign-up card (joining grant = max(signup, invitee)).
        self._grant(u, 1 - signup_cards)
        u.inviter = inviter.user_id
        self._grant(inviter, 1)
        inviter.invites_made += 1
        return None

    # --- orders -----------------------------------------------------------------------------

    def place(
        self, user_id: str, request_id: str, quantity: int, card_use: str, card_id: str, order_id: str, now_ms: int,
    ) -> Order | Refused:
        """card_use: BEST, NONE, REQUIRED or SPECIFIC. order_id: the id the service gave (the
        model does not mint ids). A replay answers the same order as it is now."""
        u = self.user(user_id)
        asked = (quantity, card_use, card_id)
        if request_id in u.placements:
            first_asked, answer = u.placements[request_id]
            if first_asked != asked:
                return Refused("ALREADY_EXISTS", "REQUEST_ID_REUSED")
            return u.orders[answer]  # type: ignore[index]
        subtotal = quantity * ITEM_PRICE
        uses_card = card_use in ("BEST", "REQUIRED", "SPECIFIC") and u.available > 0
        if card_use == "REQUIRED" and not uses_card:
            # Kept nowhere: a retry once a card has come places the order.
            return Refused("FAILED_PRECONDITION", "NO_CARD_AVAILABLE")
        if card_use == "SPECIFIC" and not uses_card:
            return Refused("FAILED_PRECONDITION", "CARD_NOT_AVAILABLE")
        discount = min(subtotal, FACE_FEN) if uses_card else 0
        payable = subtotal - discount
        order = Order(
            order_id, request_id, quantity, subtotal, discount, PAID if payable == 0 else PENDING,
            NOT_REQUIRED if payable == 0 else PAY_PENDING, now_ms,
        )
        if uses_card:
            u.available -= 1
            u.reserved_ever = True
        u.orders[order_id] = order
        u.placements[request_id] = (asked, order_id)
        return order

    def pay(self, user_id: str, request_id: str, order_id: str) -> Order | Refused:
        u = self.user(user_id)
        if request_id in u.payments:
            if u.payments[request_id] != order_id:
                return Refused("ALREADY_EXISTS", "REQUEST_ID_REUSED")
            return u.orders[order_id]
        order = u.orders.get(order_id)
        if order is None:
            return Refused("NOT_FOUND", "ORDER_NOT_FOUND")
        if order.payment_status == NOT_REQUIRED:
            return Refused("FAILED_PRECONDITION", "PAYMENT_NOT_REQUIRED")
        if order.status == PENDING:
            order.status, order.payment_status = PAID, CAPTURED
        elif order.status == CANCELLED and order.payment_status == VOIDED:
            # Money that arrives for a cancelled order is taken and given back at once.
            order.payment_status, order.refunded_fen = REFUNDED, order.payable_fen
        u.payments[request_id] = order_id
        return order

    def cancel(self, user_id: str, request_id: str, order_id: str) -> Order | Refused:
        u = self.user(user_id)
        if request_id in u.cancels:
            if u.cancels[request_id] != order_id:
                return Refused("ALREADY_EXISTS", "REQUEST_ID_REUSED")
            return u.orders[order_id]
        order = u.orders.get(order_id)
        if order is None:
            return Refused("NOT_FOUND", "ORDER_NOT_FOUND")
        if order.status != CANCELLED:
            order.status = CANCELLED
            if order.payment_status == PAY_PENDING:
                order.payment_status = VOIDED
            elif order.payment_status == CAPTURED:
                order.payment_status, order.refunded_fen = REFUNDED, order.payable_fen
            if order.discount_fen:
                u.available += 1  # the card comes back
        u.cancels[request_id] = order_id
        return order

    def newest_first(self, user_id: str) -> list[Order]:
        return sorted(self.user(user_id).orders.values(), key=lambda o: -o.created_ms)

    # --- lottery ----------------------------------------------------------------------------

    def enter(self, user_id: str, request_id: str, day: str, entries_open: bool = True) -> str | Refused:
        """The day of the entry, or the refusal. A refused call keeps nothing of its key; one
        entry per user and day, whatever the key."""
        u = self.user(user_id)
        if request_id in u.entries:
            return u.entries[request_id]
        if day in u.entered_days:
            # The entry another key made: this key made none, so its retry on a later day enters
            # that day.
            return day
        if not entries_open:
            return Refused("FAILED_PRECONDITION", "ENTRIES_CLOSED")
        if not u.qualified:
            return Refused("FAILED_PRECONDITION", "NOT_QUALIFIED")
        u.entered_days.add(day)
        u.entries[request_id] = day
        return day


ITEM_PRICE = 1_500
