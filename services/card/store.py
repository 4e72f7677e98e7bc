"""The card service's store: a Protocol of async use-case operations and its SQLite implementation.

synchronous=FULL: this database holds money (issued budget, cards, redemptions). With FULL the
WAL is fsynced at every commit, so an acknowledged grant or redemption survives not only kill -9
but also power loss / OS crash; NORMAL could silently lose the last acknowledged commits, i.e.
hand out a card (or accept a payment against one) that the ledger no longer knows about. The
cost is one fsync per *batch*: Database group-commits concurrent writes, so under load the fsync
is shared by every call in the batch.

Every mutating RPC is exactly one `db.write(fn)`; each fn below runs inside the writer's
transaction (its own savepoint), so the rules it checks and the rows it changes are one atomic
step. Invariants are also enforced by the schema where SQL can express them: conditional UPDATEs
for budget (`issued_fen + v <= budget_fen`, plus a CHECK) and cap (`cards_granted + n <= cap`),
state-guarded card moves (`WHERE state = <from>`), a unique partial index allowing one HELD
reservation per card, triggers that write the ledger row of every grant and state change (so the
ledger and the cards cannot disagree, whatever the code path) and triggers that make it
append-only.

Hot path cost: ReserveCard is 4 statements (look up the order, look for a lapsed hold of the
user, pick-and-hold the card in one UPDATE ... RETURNING, insert the reservation),
ConfirmReservation 3 (look up, move, mark), ReserveCard(redeem) 4 as well (the card moves
AVAILABLE -> REDEEMED in one UPDATE whose trigger writes the RESERVE and CONFIRM ledger rows,
migration 2; the reservation is inserted CONFIRMED) in one transaction instead of two calls.

A campaign's budget is the one rule that changes after creation (SetCampaignBudget): the grants'
conditional UPDATE reads it from the campaign row in their own transaction, and a change is
checked against issued_fen and written in one transaction too, so a cut and a grant are ordered by
the writer and issued_fen never passes the budget at any commit (the CHECK holds it as well).

A fn that must persist side effects while failing (a wrong invite code counts an attempt; a
confirm of a lapsed hold releases the card) *returns* the DomainError instead of raising it (a
raise rolls its savepoint back); the store raises it after COMMIT.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections import Counter
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import AlreadyExists, DomainError

from . import invite_code as codes
from .model import (
    CAMPAIGN_BUDGET_EXHAUSTED,
    CARD_CAP_REACHED,
    CONFIRM,
    EXPIRE,
    GRANT_CAUSE,
    REFUND,
    RELEASE,
    RESERVATION_TIMEOUT,
    RESERVE,
    BUDGET_CHANGES_SHOWN,
    AttemptPolicy,
    BudgetChange,
    Campaign,
    Card,
    CardSource,
    CardState,
    SIGNUP_CARD_COUNTED,
    InviteeActivity,
    Reservation,
    ReservationState,
    Rules,
    already_accepted,
    attempts_blocked,
    attempts_exceeded,
    budget_change,
    budget_exhausted,
    campaign_not_active,
    campaign_not_found,
    cap_reached,
    card_not_available,
    card_not_found,
    card_not_owned,
    covered_fen,
    grant_size,
    invite_code_not_found,
    invitee_not_new,
    is_new_invitee,
    joining_grant,
    made_after_replayed_request,
    no_card_available,
    not_held_error,
    order_id_conflict,
    redeem_not_covered,
    replayed_reserve_error,
    request_id_reused,
    reservation_not_found,
    self_invite,
    stop_issuing_change,
    with_budget,
)

SYNCHRONOUS = "FULL"

MIGRATIONS = [
    """
    CREATE TABLE campaigns (
      campaign_id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      start_ms INTEGER NOT NULL,
      end_ms INTEGER NOT NULL,
      face_value_fen INTEGER NOT NULL,
      per_user_card_cap INTEGER NOT NULL,
      signup_grant INTEGER NOT NULL,
      inviter_grant INTEGER NOT NULL,
      invitee_grant INTEGER NOT NULL,
      card_validity_days INTEGER NOT NULL,
      budget_fen INTEGER NOT NULL,
      lottery_invite_threshold INTEGER NOT NULL,
      reservation_ttl_seconds INTEGER NOT NULL,
      time_zone TEXT NOT NULL,
      create_ms INTEGER NOT NULL,
      secret BLOB NOT NULL,
      request_id TEXT NOT NULL DEFAULT '',
      issued_fen INTEGER NOT NULL DEFAULT 0,
      cards_issued INTEGER NOT NULL DEFAULT 0,
      CHECK (issued_fen >= 0 AND issued_fen <= budget_fen)
    );
    -- One row per user who ever took part in a campaign: the cap counter and the invite code.
    CREATE TABLE members (
      campaign_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      cards_granted INTEGER NOT NULL DEFAULT 0,
      signup_ms INTEGER,
      invites_made INTEGER NOT NULL DEFAULT 0,
      invite_code TEXT,
      PRIMARY KEY (campaign_id, user_id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX members_code ON members(campaign_id, invite_code);
    CREATE TABLE cards (
      card_id TEXT PRIMARY KEY,
      campaign_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      state INTEGER NOT NULL,
      source INTEGER NOT NULL,
      face_value_fen INTEGER NOT NULL,
      grant_ms INTEGER NOT NULL,
      expire_ms INTEGER NOT NULL,
      order_id TEXT NOT NULL DEFAULT '',
      reserved_until_ms INTEGER,
      -- Cause and time of the card's last move: the triggers below copy them into the ledger.
      cause TEXT NOT NULL,
      changed_ms INTEGER NOT NULL
    );
    -- card_id last: "the user's available card that expires first" is the index's first entry.
    CREATE INDEX cards_owner ON cards(campaign_id, user_id, state, expire_ms, card_id);
    CREATE INDEX cards_campaign ON cards(campaign_id, card_id);
    CREATE INDEX cards_expiring ON cards(expire_ms) WHERE state = 1;
    CREATE INDEX cards_held ON cards(reserved_until_ms) WHERE state = 2;
    CREATE TABLE ledger (
      seq INTEGER PRIMARY KEY,
      card_id TEXT NOT NULL,
      from_state INTEGER NOT NULL,
      to_state INTEGER NOT NULL,
      order_id TEXT NOT NULL DEFAULT '',
      time_ms INTEGER NOT NULL,
      cause TEXT NOT NULL
    );
    CREATE INDEX ledger_card ON ledger(card_id, seq);
    -- The database itself writes a ledger row for every grant and every state change, so no
    -- code path can move a card without its history (and it costs no extra statement).
    CREATE TRIGGER cards_ledger_grant AFTER INSERT ON cards BEGIN
      INSERT INTO ledger (card_id, from_state, to_state, order_id, time_ms, cause)
      VALUES (NEW.card_id, 0, NEW.state, NEW.order_id, NEW.changed_ms, NEW.cause);
    END;
    CREATE TRIGGER cards_ledger_move AFTER UPDATE OF state ON cards WHEN OLD.state <> NEW.state BEGIN
      INSERT INTO ledger (card_id, from_state, to_state, order_id, time_ms, cause)
      VALUES (NEW.card_id, OLD.state, NEW.state,
              CASE WHEN NEW.order_id <> '' THEN NEW.order_id ELSE OLD.order_id END, NEW.changed_ms, NEW.cause);
    END;
    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
    CREATE TABLE reservations (
      order_id TEXT PRIMARY KEY,
      card_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      campaign_id TEXT NOT NULL,
      state INTEGER NOT NULL,
      amount_fen INTEGER NOT NULL,
      covered_fen INTEGER NOT NULL,
      expire_ms INTEGER NOT NULL,
      end_cause TEXT NOT NULL DEFAULT '',
      refund_returned INTEGER NOT NULL DEFAULT 0,
      create_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Only stable columns: a confirm then touches no entry of this index.
    CREATE INDEX reservations_user ON reservations(campaign_id, user_id);
    -- A card is held by at most one order at a time, whatever the code above does.
    CREATE UNIQUE INDEX reservations_one_hold ON reservations(card_id) WHERE state = 1;
    CREATE TABLE invites (
      campaign_id TEXT NOT NULL,
      invitee_user_id TEXT NOT NULL,
      inviter_user_id TEXT NOT NULL,
      code TEXT NOT NULL,
      accept_ms INTEGER NOT NULL,
      inviter_rewarded INTEGER NOT NULL,
      invitee_rewarded INTEGER NOT NULL,
      inviter_reason TEXT NOT NULL DEFAULT '',
      invitee_reason TEXT NOT NULL DEFAULT '',
      PRIMARY KEY (campaign_id, invitee_user_id)
    ) WITHOUT ROWID;
    CREATE INDEX invites_inviter ON invites(campaign_id, inviter_user_id, accept_ms, invitee_user_id);
    CREATE TABLE invite_attempts (
      campaign_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      window_start_ms INTEGER NOT NULL,
      failures INTEGER NOT NULL,
      PRIMARY KEY (campaign_id, user_id)
    ) WITHOUT ROWID;
    -- (method, request_id) -> what it was used for, so a reused id with different content is
    -- refused. Per method: a caller may well reuse one request_id for Reserve and Confirm.
    CREATE TABLE requests (
      method TEXT NOT NULL,
      request_id TEXT NOT NULL,
      fingerprint TEXT NOT NULL,
      create_ms INTEGER NOT NULL,
      PRIMARY KEY (method, request_id)
    ) WITHOUT ROWID;
    CREATE INDEX requests_age ON requests(create_ms);
    """,
    # 2: ReserveCard(redeem) of a free card moves it AVAILABLE -> REDEEMED in ONE update instead
    # of two (-> RESERVED -> REDEEMED): half the card-row, cards_owner and cards_held index work
    # on the order hot path. The ledger keeps telling the same history: for that direct move the
    # trigger writes the two rows the two moves wrote (RESERVE 1->2, then CONFIRM 2->3, same
    # order and time), so a card's ledger still chains state to state. No other code path moves
    # a card from AVAILABLE straight to REDEEMED: a redeem is always a reservation confirmed.
    """
    DROP TRIGGER cards_ledger_move;
    CREATE TRIGGER cards_ledger_move AFTER UPDATE OF state ON cards
    WHEN OLD.state <> NEW.state AND NOT (OLD.state = 1 AND NEW.state = 3) BEGIN
      INSERT INTO ledger (card_id, from_state, to_state, order_id, time_ms, cause)
      VALUES (NEW.card_id, OLD.state, NEW.state,
              CASE WHEN NEW.order_id <> '' THEN NEW.order_id ELSE OLD.order_id END, NEW.changed_ms, NEW.cause);
    END;
    CREATE TRIGGER cards_ledger_redeem AFTER UPDATE OF state ON cards WHEN OLD.state = 1 AND NEW.state = 3 BEGIN
      INSERT INTO ledger (card_id, from_state, to_state, order_id, time_ms, cause)
      VALUES (NEW.card_id, 1, 2, NEW.order_id, NEW.changed_ms, 'RESERVE'),
             (NEW.card_id, 2, 3, NEW.order_id, NEW.changed_ms, NEW.cause);
    END;
    """,
    # 3: ListReservations, the order service's recovery pass (reservations created since a
    # watermark). reservations is WITHOUT ROWID keyed by order_id, so each entry carries
    # order_id: the index alone serves ORDER BY create_ms, order_id and the keyset seek. One
    # more index entry per reservation insert; a confirm does not touch it (create_ms is stable).
    """
    CREATE INDEX reservations_created ON reservations(create_ms);
    """,
    # 4: GetBudget without reading every card. The face value per campaign and stored state is
    # kept by triggers in the same transaction as every card insert and state move (cards are
    # never deleted), so it cannot drift from the cards; a nationwide campaign has tens of
    # millions of cards, and summing them took 1.2 s per 2 million. Every campaign gets a row per
    # card state up front, so a move is one UPDATE of two rows: about 15 µs more per reservation
    # (bench.card_store). The audit still sums the cards itself and compares.
    """
    CREATE TABLE card_totals (
      campaign_id TEXT NOT NULL,
      state INTEGER NOT NULL,
      face_value_fen INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (campaign_id, state)
    ) WITHOUT ROWID;
    CREATE TABLE card_states (state INTEGER PRIMARY KEY);
    INSERT INTO card_states VALUES (1), (2), (3), (4);
    -- One pass over the cards, then a zero row for every state a campaign has no card in.
    INSERT INTO card_totals (campaign_id, state, face_value_fen)
      SELECT campaign_id, state, SUM(face_value_fen) FROM cards GROUP BY campaign_id, state;
    INSERT OR IGNORE INTO card_totals (campaign_id, state, face_value_fen)
      SELECT c.campaign_id, s.state, 0 FROM campaigns c, card_states s;
    CREATE TRIGGER campaigns_totals AFTER INSERT ON campaigns BEGIN
      INSERT INTO card_totals (campaign_id, state) SELECT NEW.campaign_id, state FROM card_states;
    END;
    CREATE TRIGGER cards_totals_grant AFTER INSERT ON cards BEGIN
      UPDATE card_totals SET face_value_fen = face_value_fen + NEW.face_value_fen
      WHERE campaign_id = NEW.campaign_id AND state = NEW.state;
    END;
    CREATE TRIGGER cards_totals_move AFTER UPDATE OF state ON cards WHEN OLD.state <> NEW.state BEGIN
      UPDATE card_totals
      SET face_value_fen = face_value_fen + CASE state WHEN NEW.state THEN NEW.face_value_fen ELSE -OLD.face_value_fen END
      WHERE campaign_id = NEW.campaign_id AND state IN (OLD.state, NEW.state);
    END;
    """,
]

# Indexes made when the store opens (IF NOT EXISTS), not by a migration: the previous release
# refuses a store whose schema version it does not know (services/common/db.py), while an extra
# index changes nothing it reads or writes, so a rollback still starts on the newer store.
INDEXES = [
    # The sweep forgets invite_attempts rows whose window is over (a user's next wrong code
    # starts a new window whether or not its row is there). Each was kept for good: one row per
    # user who ever typed a wrong code, read by nobody once its ten minutes were up.
    "CREATE INDEX IF NOT EXISTS invite_attempts_window ON invite_attempts(window_start_ms)",
    # Every change of a campaign's budget (SetCampaignBudget), kept for the operator's history.
    # Made here for the same reason: a release without the RPC that opens the store again (a
    # rollback) reads and writes everything it knows as before, the budget it finds in force
    # included; the history waits for the upgrade back. Append-only, as the ledger is.
    """
    CREATE TABLE IF NOT EXISTS budget_changes (
      seq INTEGER PRIMARY KEY,
      campaign_id TEXT NOT NULL,
      change_ms INTEGER NOT NULL,
      old_budget_fen INTEGER NOT NULL,
      new_budget_fen INTEGER NOT NULL,
      issued_fen INTEGER NOT NULL,
      request_id TEXT NOT NULL,
      CHECK (issued_fen <= new_budget_fen)
    )
    """,
    "CREATE INDEX IF NOT EXISTS budget_changes_campaign ON budget_changes(campaign_id, seq)",
    "CREATE TRIGGER IF NOT EXISTS budget_changes_no_update BEFORE UPDATE ON budget_changes"
    " BEGIN SELECT RAISE(ABORT, 'budget_changes is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS budget_changes_no_delete BEFORE DELETE ON budget_changes"
    " BEGIN SELECT RAISE(ABORT, 'budget_changes is append-only'); END",
]


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invite:
    campaign_id: str
    inviter_user_id: str
    invitee_user_id: str
    accept_ms: int
    inviter_rewarded: bool
    invitee_rewarded: bool
    inviter_reason: str = ""
    invitee_reason: str = ""


@dataclass(frozen=True)
class AcceptResult:
    invite: Invite
    invitee_cards: list[Card]
    newly_accepted: bool


@dataclass(frozen=True)
class JoinResult:
    """AcceptInvite with claim_signup: the invite and the sign-up claim committed with it."""

    accepted: AcceptResult
    signup_cards: list[Card]
    newly_granted: bool


@dataclass(frozen=True)
class Hold:
    reservation: Reservation
    card: Card


@dataclass(frozen=True)
class RefundResult:
    reservation: Reservation
    card: Card
    returned: bool
    not_returned_reason: str


@dataclass(frozen=True)
class WalletData:
    cards: list[Card]
    cards_granted: int
    invites_made: int
    invite_code: str | None
    invited_by: str
    # The campaign's budget and issued face value as of the same read: whether the wallet may
    # still promise cards (model.cards_obtainable, model.offers_cards). The budget is read here,
    # not taken from a cached campaign: it changes while the campaign runs.
    issued_fen: int
    budget_fen: int


@dataclass(frozen=True)
class BudgetData:
    budget_fen: int
    issued_fen: int
    cards_issued: int
    by_state: dict[CardState, int]
    # The latest budget changes, newest first (at most BUDGET_CHANGES_SHOWN), and how many in all.
    changes: tuple[BudgetChange, ...] = ()
    change_count: int = 0


@dataclass(frozen=True)
class BudgetSet:
    """SetCampaignBudget's answer: the campaign and its accounting as of the change."""

    campaign: Campaign
    budget: BudgetData


@dataclass(frozen=True)
class Member:
    """A user who joined a campaign, with the counters kept beside the rows they count."""

    user_id: str
    cards_granted: int
    invites_made: int


@dataclass(frozen=True)
class LedgerRow:
    sequence: int
    card_id: str
    from_state: int
    to_state: int
    order_id: str
    time_ms: int
    cause: str


class ReserveCall(NamedTuple):
    """The arguments of one CardStore.reserve, in its order: an entry of reserve_many."""

    campaign: Campaign
    user_id: str
    order_id: str
    amount_fen: int
    card_id: str
    ttl_s: int
    request_id: str
    now_ms: int
    redeem: bool = False


@dataclass
class SweepCounts:
    released: int = 0
    expired: int = 0
    forgotten: int = 0  # request ids older than REQUEST_MEMORY_MS
    attempts_forgotten: int = 0  # invite_attempts rows whose window is over


class CardStore(Protocol):
    """What the handlers need; SqliteCardStore is the implementation (PostgreSQL could be another)."""

    async def create_campaign(self, campaign: Campaign, request_id: str) -> Campaign: ...
    async def set_budget(
        self, campaign_id: str, budget_fen: int, request_id: str, now_ms: int, stop_issuing: bool = False
    ) -> BudgetSet: ...
    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...
    async def list_campaigns(self, after_id: str, limit: int) -> list[Campaign]: ...
    async def list_reservations(
        self, created_after_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[Reservation]: ...
    async def claim_signup(self, campaign: Campaign, user_id: str, request_id: str, now_ms: int) -> tuple[list[Card], bool]: ...
    async def invite_code(self, campaign: Campaign, user_id: str) -> str: ...
    async def accept_invite(
        self, campaign: Campaign, invitee: str, candidates: Sequence[str], request_id: str, now_ms: int
    ) -> AcceptResult: ...
    async def join_by_invite(
        self, campaign: Campaign, invitee: str, candidates: Sequence[str], request_id: str, signup_request_id: str,
        now_ms: int,
    ) -> JoinResult: ...
    async def user_cards(self, campaign_id: str, user_id: str) -> list[Card]: ...
    async def wallet(self, campaign: Campaign, user_id: str) -> WalletData: ...
    async def budget_and_issued(self, campaign_id: str) -> tuple[int, int]: ...
    async def reserve(
        self, campaign: Campaign, user_id: str, order_id: str, amount_fen: int, card_id: str, ttl_s: int,
        request_id: str, now_ms: int, redeem: bool = False,
    ) -> Hold: ...
    async def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Hold | BaseException]:
        """reserve(*call) for each call, all queued at once; each call's Hold or the exception
        it alone raised, in order (a failing call changes nothing, the others are unaffected)."""
        ...
    async def confirm(self, order_id: str, request_id: str, now_ms: int) -> Hold: ...
    async def release(self, order_id: str, request_id: str, now_ms: int) -> Hold: ...
    async def refund(self, order_id: str, request_id: str, now_ms: int) -> RefundResult: ...
    async def invite_stats(
        self, campaign_id: str, inviter: str, before_ms: int | None, after: tuple[int, str] | None, limit: int
    ) -> tuple[int, list[Invite]]: ...
    async def budget(self, campaign: Campaign, now_ms: int) -> BudgetData: ...
    async def campaign_cards(self, campaign_id: str, state: int, after_id: str, limit: int, now_ms: int) -> list[Card]: ...
    async def card_history(self, card_id: str) -> tuple[Card, list[LedgerRow]] | None: ...
    async def campaign_members(self, campaign_id: str, after_user: str, limit: int) -> list[Member]: ...
    async def campaign_invites(self, campaign_id: str, after_invitee: str, limit: int) -> list[Invite]: ...
    async def sweep(self, now_ms: int, limit: int = 500) -> SweepCounts: ...
    async def close(self) -> None: ...


class SqliteCardStore:
    def __init__(
        self,
        db: Database,
        *,
        attempts: AttemptPolicy = AttemptPolicy(),
        new_user_window_ms: int = 10 * 60 * 1000,
    ) -> None:
        self.db = db
        self.attempts = attempts
        self.new_user_window_ms = new_user_window_ms
        # Campaigns change after creation only in their budget (and counters, not cached): a
        # budget set drops the campaign from the cache, so the next read loads the committed one.
        self._campaigns: dict[str, Campaign] = {}
        # Bumped by every drop: a load begun before it (read_now may wait on a busy database,
        # a create_campaign's write on the writer) must not put back the campaign it read then.
        self._campaigns_epoch = 0
        # Point reads (primary-key / owner-index lookups of one user's few cards) use
        # db.read_now: inline on the loop thread they cost ~15 µs of CPU instead of ~100-180 µs
        # for the hop to a reader thread. Scans and aggregates (budget, campaign_cards,
        # invite_stats, list_campaigns) stay on db.read so they never stall the loop.

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock | None = None, **kwargs: Any) -> "SqliteCardStore":
        db = await Database.open(path, MIGRATIONS, synchronous=SYNCHRONOUS, clock=clock, readers=2)
        try:
            await db.write(_make_indexes)
        except BaseException:
            await db.close()
            raise
        return cls(db, **kwargs)

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, fn: Any, *args: Any) -> Any:
        result = await self.db.write(fn, *args)
        if isinstance(result, DomainError):
            raise result
        return result

    # --- campaigns ---------------------------------------------------------------------------

    async def create_campaign(self, campaign: Campaign, request_id: str) -> Campaign:
        epoch = self._campaigns_epoch
        stored = await self._write(_create_campaign, campaign, request_id)
        self._cache_campaign(stored, epoch)
        return stored

    async def set_budget(
        self, campaign_id: str, budget_fen: int, request_id: str, now_ms: int, stop_issuing: bool = False
    ) -> BudgetSet:
        try:
            return await self._write(_set_budget, campaign_id, budget_fen, stop_issuing, request_id, now_ms)
        finally:
            # Also when the call failed: it may have been committed all the same (an answer
            # lost to a deadline), and a reload costs one point read.
            self._campaigns.pop(campaign_id, None)
            self._campaigns_epoch += 1

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        cached = self._campaigns.get(campaign_id)
        if cached is not None:
            return cached
        epoch = self._campaigns_epoch
        found = await self.db.read_now(_load_campaign, campaign_id)
        if found is not None:
            self._cache_campaign(found, epoch)
        return found

    def _cache_campaign(self, campaign: Campaign, epoch: int) -> None:
        """Cache a campaign read when the epoch was `epoch`, unless a budget set came since."""
        if epoch == self._campaigns_epoch:
            self._campaigns[campaign.campaign_id] = campaign

    async def list_campaigns(self, after_id: str, limit: int) -> list[Campaign]:
        return await self.db.read(_list_campaigns, after_id, limit)

    # --- cards and invites -------------------------------------------------------------------

    async def claim_signup(self, campaign: Campaign, user_id: str, request_id: str, now_ms: int) -> tuple[list[Card], bool]:
        return await self._write(_claim_signup, campaign, user_id, request_id, now_ms)

    async def invite_code(self, campaign: Campaign, user_id: str) -> str:
        code = await self.db.read_now(_stored_code, campaign.campaign_id, user_id)
        if code is None:
            code = await self._write(_ensure_code_fn, campaign, user_id)
        return code

    async def accept_invite(
        self, campaign: Campaign, invitee: str, candidates: Sequence[str], request_id: str, now_ms: int
    ) -> AcceptResult:
        return await self._write(
            _accept_invite, campaign, invitee, list(candidates), request_id, now_ms, self.attempts, self.new_user_window_ms
        )

    async def join_by_invite(
        self, campaign: Campaign, invitee: str, candidates: Sequence[str], request_id: str, signup_request_id: str,
        now_ms: int,
    ) -> JoinResult:
        return await self._write(
            _join_by_invite, campaign, invitee, list(candidates), request_id, signup_request_id, now_ms,
            self.attempts, self.new_user_window_ms,
        )

    async def user_cards(self, campaign_id: str, user_id: str) -> list[Card]:
        return await self.db.read_now(_user_cards, campaign_id, user_id)

    async def wallet(self, campaign: Campaign, user_id: str) -> WalletData:
        data: WalletData = await self.db.read_now(_wallet, campaign.campaign_id, user_id)
        if data.invite_code is None:
            code = await self._write(_ensure_code_fn, campaign, user_id)
            data = replace(data, invite_code=code)
        return data

    async def budget_and_issued(self, campaign_id: str) -> tuple[int, int]:
        """The campaign's budget in force and its issued face value, from one read."""
        return await self.db.read_now(_budget_and_issued, campaign_id)

    # --- reservations ------------------------------------------------------------------------

    async def reserve(
        self, campaign: Campaign, user_id: str, order_id: str, amount_fen: int, card_id: str, ttl_s: int,
        request_id: str, now_ms: int, redeem: bool = False,
    ) -> Hold:
        return await self._write(
            _reserve, campaign, user_id, order_id, amount_fen, card_id, ttl_s, request_id, now_ms, redeem
        )

    async def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Hold | BaseException]:
        # One queued write per call, each run in its own savepoint exactly as reserve() runs it,
        # so they share a group commit and fail alone; awaited as plain futures: no Task and no
        # coroutine chain per call on the loop thread (what a ReserveCards batch costs).
        submit = self.db.submit
        try:
            futures = [submit(_reserve, *call) for call in calls]
        except RuntimeError as exc:
            # The database is closed: submit() raises before queueing anything, and nothing can
            # close it between these synchronous submits, so no call was queued.
            return [exc] * len(calls)
        # A DomainError that _reserve raised or returned (see _write) is that call's outcome
        # either way; gather(return_exceptions=True) keeps each failure to its own call.
        return await asyncio.gather(*futures, return_exceptions=True)

    async def confirm(self, order_id: str, request_id: str, now_ms: int) -> Hold:
        return await self._write(_confirm, order_id, request_id, now_ms)

    async def release(self, order_id: str, request_id: str, now_ms: int) -> Hold:
        return await self._write(_release, order_id, request_id, now_ms)

    async def refund(self, order_id: str, request_id: str, now_ms: int) -> RefundResult:
        return await self._write(_refund, order_id, request_id, now_ms)

    async def list_reservations(
        self, created_after_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[Reservation]:
        """Reservations with create_ms >= created_after_ms, by (create_ms, order_id); `after` is
        the (create_ms, order_id) of the previous page's last row. A page scan: db.read."""
        return await self.db.read(_list_reservations, created_after_ms, after, limit)

    # --- reports -----------------------------------------------------------------------------

    async def invite_stats(
        self, campaign_id: str, inviter: str, before_ms: int | None, after: tuple[int, str] | None, limit: int
    ) -> tuple[int, list[Invite]]:
        return await self.db.read(_invite_stats, campaign_id, inviter, before_ms, after, limit)

    async def budget(self, campaign: Campaign, now_ms: int) -> BudgetData:
        return await self.db.read(_budget, campaign.campaign_id, now_ms)

    async def campaign_cards(self, campaign_id: str, state: int, after_id: str, limit: int, now_ms: int) -> list[Card]:
        return await self.db.read(_campaign_cards, campaign_id, state, after_id, limit, now_ms)

    async def card_history(self, card_id: str) -> tuple[Card, list[LedgerRow]] | None:
        return await self.db.read_now(_card_history, card_id)

    async def campaign_members(self, campaign_id: str, after_user: str, limit: int) -> list[Member]:
        return await self.db.read(_campaign_members, campaign_id, after_user, limit)

    async def campaign_invites(self, campaign_id: str, after_invitee: str, limit: int) -> list[Invite]:
        return await self.db.read(_campaign_invites, campaign_id, after_invitee, limit)

    async def sweep(self, now_ms: int, limit: int = 500) -> SweepCounts:
        return await self.db.write(_sweep, now_ms, limit, self.attempts.window_ms)


# === functions below run inside the writer / reader threads =================================

_CAMPAIGN_COLS = (
    "campaign_id, name, start_ms, end_ms, face_value_fen, per_user_card_cap, signup_grant, inviter_grant,"
    " invitee_grant, card_validity_days, budget_fen, lottery_invite_threshold, reservation_ttl_seconds,"
    " time_zone, create_ms, secret"
)
_CARD_COLS = "card_id, campaign_id, user_id, state, source, face_value_fen, grant_ms, expire_ms, order_id, reserved_until_ms"
_RES_COLS = (
    "order_id, card_id, user_id, campaign_id, state, amount_fen, covered_fen, expire_ms, end_cause, refund_returned,"
    " create_ms"
)
_INVITE_COLS = (
    "campaign_id, inviter_user_id, invitee_user_id, accept_ms, inviter_rewarded, invitee_rewarded,"
    " inviter_reason, invitee_reason"
)


def _campaign_from(row: Sequence[Any]) -> Campaign:
    rules = Rules(
        card_face_value_fen=row[4], per_user_card_cap=row[5], signup_grant=row[6], inviter_grant=row[7],
        invitee_grant=row[8], card_validity_days=row[9], budget_fen=row[10], lottery_invite_threshold=row[11],
        reservation_ttl_seconds=row[12], time_zone=row[13],
    )
    return Campaign(row[0], row[1], row[2], row[3], rules, row[14], bytes(row[15]))


def _card_from(row: Sequence[Any]) -> Card:
    return Card(row[0], row[1], row[2], CardState(row[3]), CardSource(row[4]), row[5], row[6], row[7], row[8], row[9])


def _reservation_from(row: Sequence[Any]) -> Reservation:
    return Reservation(
        row[0], row[1], row[2], row[3], ReservationState(row[4]), row[5], row[6], row[7], row[8], bool(row[9]), row[10]
    )


def _invite_from(row: Sequence[Any]) -> Invite:
    return Invite(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], row[7])


def _load_campaign(conn: sqlite3.Connection, campaign_id: str) -> Campaign | None:
    row = conn.execute(f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
    return _campaign_from(row) if row else None


def _list_campaigns(conn: sqlite3.Connection, after_id: str, limit: int) -> list[Campaign]:
    rows = conn.execute(
        f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE campaign_id > ? ORDER BY campaign_id LIMIT ?", (after_id, limit)
    ).fetchall()
    return [_campaign_from(r) for r in rows]


REQUEST_MEMORY_MS = 7 * 86_400_000  # request ids are remembered a week, far beyond any retry


def _check_request(
    conn: sqlite3.Connection, request_id: str, fingerprint: str, now_ms: int,
    same: Callable[[str], bool] | None = None,
) -> bool:
    """A request_id names one request of one method: replaying it is fine, reusing it for
    different content is refused. `fingerprint` is "Method|content"; `same(stored)` may accept
    a stored content other than this one as the same request (an older format of it). Returns
    whether this is a replay (the id was already recorded for this request), so the caller can
    keep a late duplicate from acting on what later requests made."""
    if not request_id:
        return False
    method, _, content = fingerprint.partition("|")
    cur = conn.execute(
        "INSERT OR IGNORE INTO requests (method, request_id, fingerprint, create_ms) VALUES (?, ?, ?, ?)",
        (method, request_id, content, now_ms),
    )
    if cur.rowcount == 0:
        row = conn.execute(
            "SELECT fingerprint FROM requests WHERE method = ? AND request_id = ?", (method, request_id)
        ).fetchone()
        if row[0] != content and (same is None or not same(row[0])):
            raise request_id_reused()
        return True
    return False


def _forget_request(conn: sqlite3.Connection, method: str, request_id: str) -> None:
    """Undo the record _check_request just made (a call that must not count as answered)."""
    if request_id:
        conn.execute("DELETE FROM requests WHERE method = ? AND request_id = ?", (method, request_id))


# Fingerprints that gained fields (ReserveCard's ttl, AcceptInvite's claim_signup) are written
# as a JSON array led by this format version, so no value can make two requests print alike.
# Records written before hold the old "a|b|c" text, which starts with a campaign_id (never "["):
# those are compared with the old formula, so a retry across the upgrade is still a replay
# (the old record cannot tell the new fields). Records are swept after REQUEST_MEMORY_MS, so a
# release more than a week after this one no longer meets any and may drop the old formulas.
_FINGERPRINT_V2 = 2


def _fingerprint_v2(*fields: Any) -> str:
    return json.dumps([_FINGERPRINT_V2, *fields], ensure_ascii=False, separators=(",", ":"))


def _fingerprint_v1(*fields: Any) -> str:
    """The content as records written before _FINGERPRINT_V2 hold it."""
    return "|".join(str(f) for f in fields)


def _check_reserve_request(
    conn: sqlite3.Connection, c: Campaign, user_id: str, order_id: str, amount_fen: int, card_id: str, ttl_s: int,
    request_id: str, now_ms: int, redeem: bool,
) -> bool:
    """_check_request for ReserveCard (redeem is no content: see _reserve). A redeem holds
    nothing, so its ttl is no content either: it is recorded as null, and a null on either side
    matches any ttl, so a hold and then its redeem under one key need not repeat the ttl.
    `ttl_s` is the ttl as resolved: 0 and the campaign's default are the same request."""
    if not request_id:
        return False
    fields = (c.campaign_id, user_id, order_id, amount_fen, card_id)
    ttl = None if redeem else ttl_s

    def same(stored: str) -> bool:
        if not stored.startswith("["):
            return stored == _fingerprint_v1(*fields)
        recorded = json.loads(stored)
        return recorded[:-1] == [_FINGERPRINT_V2, *fields] and (recorded[-1] is None or ttl is None)

    return _check_request(conn, request_id, "ReserveCard|" + _fingerprint_v2(*fields, ttl), now_ms, same)


def _check_accept_request(
    conn: sqlite3.Connection, c: Campaign, invitee: str, candidates: list[str], request_id: str, now_ms: int,
    signup_request_id: str | None,
) -> bool:
    """_check_request for AcceptInvite (whether it is a replay); `signup_request_id` None without
    claim_signup. The claim is content: with it the call also claims the sign-up card and
    answers the claim."""
    if not request_id:
        return False
    legacy = _fingerprint_v1(c.campaign_id, invitee, ",".join(candidates))
    content = _fingerprint_v2(c.campaign_id, invitee, candidates, signup_request_id is not None, signup_request_id or "")
    return _check_request(conn, request_id, "AcceptInvite|" + content, now_ms, lambda stored: stored == legacy)


def _campaign_content(c: Campaign) -> str:
    """The fingerprint of a CreateCampaign: every field of the request that defines the campaign
    (id, name, window and the rules as resolved, so a zero field and its default are the same
    request), not the server's create time or secret. JSON, so no name can make two different
    requests print alike; it starts with "[", which tells it from the bare campaign_id the
    records written before it hold (see _check_campaign_request)."""
    # Every Rules field, in declaration order: what Campaign.same_definition compares.
    return json.dumps(
        [c.campaign_id, c.name, c.start_ms, c.end_ms, *astuple(c.rules)], ensure_ascii=False, separators=(",", ":")
    )


def _check_campaign_request(conn: sqlite3.Connection, c: Campaign, existing: Campaign | None, request_id: str) -> None:
    """_check_request for CreateCampaign: the same request_id with other content is refused
    (REQUEST_ID_REUSED), whether or not the campaign exists. Records written before the
    content was fingerprinted hold only the campaign_id, and records are swept after a week
    while the campaign row keeps its request_id: both are judged on the stored campaign's
    definition instead (campaigns never change after creation)."""
    content = _campaign_content(c)
    row = conn.execute(
        "SELECT fingerprint FROM requests WHERE method = 'CreateCampaign' AND request_id = ?", (request_id,)
    ).fetchone()
    if row is not None:
        stored = row[0]
        if stored == content:
            return
        legacy_same = (
            not stored.startswith("[") and stored == c.campaign_id
            and existing is not None and existing.same_definition(c)
        )
        if not legacy_same:
            raise request_id_reused()
        return
    if existing is not None and not existing.same_definition(c):
        stored_request = conn.execute(
            "SELECT request_id FROM campaigns WHERE campaign_id = ?", (c.campaign_id,)
        ).fetchone()[0]
        if stored_request == request_id:
            raise request_id_reused()
    # Undone with the rest of the call when it fails (CAMPAIGN_EXISTS): only answers are kept.
    conn.execute(
        "INSERT INTO requests (method, request_id, fingerprint, create_ms) VALUES ('CreateCampaign', ?, ?, ?)",
        (request_id, content, c.create_ms),
    )


def _as_created(conn: sqlite3.Connection, campaign: Campaign) -> Campaign:
    """The campaign as CreateCampaign defined it: its first budget change's old budget, if any,
    in place of the budget in force. A retry of the creation (or a seed script repeating it)
    still names the first budget, and is the same request however the budget moved since."""
    row = conn.execute(
        "SELECT old_budget_fen FROM budget_changes WHERE campaign_id = ? ORDER BY seq LIMIT 1", (campaign.campaign_id,)
    ).fetchone()
    return with_budget(campaign, row[0]) if row else campaign


def _create_campaign(conn: sqlite3.Connection, c: Campaign, request_id: str) -> Campaign:
    existing = _load_campaign(conn, c.campaign_id)
    created = _as_created(conn, existing) if existing is not None else None
    if request_id:
        _check_campaign_request(conn, c, created, request_id)
    if existing is not None and created is not None:
        if created.same_definition(c):
            return existing  # as it is now: with the budget in force
        raise AlreadyExists("CAMPAIGN_EXISTS", f"活动已存在 / campaign {c.campaign_id!r} already exists")
    r = c.rules
    conn.execute(
        f"INSERT INTO campaigns ({_CAMPAIGN_COLS}, request_id) VALUES ({', '.join('?' * 17)})",
        (
            c.campaign_id, c.name, c.start_ms, c.end_ms, r.card_face_value_fen, r.per_user_card_cap, r.signup_grant,
            r.inviter_grant, r.invitee_grant, r.card_validity_days, r.budget_fen, r.lottery_invite_threshold,
            r.reservation_ttl_seconds, r.time_zone, c.create_ms, c.secret, request_id,
        ),
    )
    return c


def _budget_fingerprint(campaign_id: str, budget_fen: int, stop_issuing: bool) -> str:
    # A figure keeps the content it was recorded with before stop_issuing existed; a stop names
    # no figure (the store takes it), so it is recorded as a word no figure can equal.
    return _fingerprint_v2(campaign_id, "stop_issuing" if stop_issuing else budget_fen)


def _set_budget(
    conn: sqlite3.Connection, campaign_id: str, budget_fen: int, stop_issuing: bool, request_id: str, now_ms: int
) -> BudgetSet:
    """SetCampaignBudget in the writer's transaction, ordered with every grant: the figures the
    model decides on cannot move before the write (stop_issuing takes issued_fen as read here,
    so no grant can commit between the figure and the cut). A replay changes nothing (a late
    duplicate must not undo a later change) and answers the campaign as it is now; a refusal
    rolls its request record back with it (judged anew on retry)."""
    fingerprint = _budget_fingerprint(campaign_id, budget_fen, stop_issuing)
    replay = _check_request(conn, request_id, "SetCampaignBudget|" + fingerprint, now_ms)
    row = conn.execute("SELECT budget_fen, issued_fen FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
    if row is None:
        raise campaign_not_found(campaign_id)
    change = None if replay else _budget_decided(row[0], row[1], budget_fen, stop_issuing, request_id, now_ms)
    if change is not None:
        # Guarded as the grants are: the row itself refuses a budget under what it issued.
        moved = conn.execute(
            "UPDATE campaigns SET budget_fen = ? WHERE campaign_id = ? AND issued_fen <= ?",
            (change.new_budget_fen, campaign_id, change.new_budget_fen),
        ).rowcount
        if moved != 1:
            raise RuntimeError("budget check disagrees with the campaign row")
        conn.execute(
            "INSERT INTO budget_changes (campaign_id, change_ms, old_budget_fen, new_budget_fen, issued_fen, request_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (campaign_id, change.change_ms, change.old_budget_fen, change.new_budget_fen, change.issued_fen, request_id),
        )
    campaign = _load_campaign(conn, campaign_id)
    assert campaign is not None
    return BudgetSet(campaign, _budget(conn, campaign_id, now_ms))


def _budget_decided(
    old_budget_fen: int, issued_fen: int, budget_fen: int, stop_issuing: bool, request_id: str, now_ms: int
) -> BudgetChange | None:
    if stop_issuing:
        return stop_issuing_change(old_budget_fen=old_budget_fen, issued_fen=issued_fen, request_id=request_id, now_ms=now_ms)
    return budget_change(
        old_budget_fen=old_budget_fen, issued_fen=issued_fen, new_budget_fen=budget_fen, request_id=request_id, now_ms=now_ms
    )


def _budget_changes(conn: sqlite3.Connection, campaign_id: str) -> tuple[tuple[BudgetChange, ...], int]:
    """The latest changes, newest first, and how many there are: two seeks of budget_changes_campaign."""
    rows = conn.execute(
        "SELECT change_ms, old_budget_fen, new_budget_fen, issued_fen, request_id FROM budget_changes"
        " WHERE campaign_id = ? ORDER BY seq DESC LIMIT ?",
        (campaign_id, BUDGET_CHANGES_SHOWN),
    ).fetchall()
    count = len(rows)
    if count == BUDGET_CHANGES_SHOWN:
        count = conn.execute("SELECT COUNT(*) FROM budget_changes WHERE campaign_id = ?", (campaign_id,)).fetchone()[0]
    return tuple(BudgetChange(*r) for r in rows), count


# --- card moves and grants -------------------------------------------------------------------


def _move(
    conn: sqlite3.Connection, card_id: str, from_state: CardState, to_state: CardState, now_ms: int, cause: str,
    *, hold_order: str = "", hold_until: int | None = None,
) -> Card:
    """One state transition of one card, guarded by its current state; the ledger row is
    written by the cards_ledger_move trigger. Returns the card as moved."""
    row = conn.execute(
        f"UPDATE cards SET state = ?, order_id = ?, reserved_until_ms = ?, cause = ?, changed_ms = ?"
        f" WHERE card_id = ? AND state = ? RETURNING {_CARD_COLS}",
        (int(to_state), hold_order, hold_until, cause, now_ms, card_id, int(from_state)),
    ).fetchall()  # fetchall: an UPDATE ... RETURNING must run to completion before COMMIT
    if not row:
        # Only reachable through a bug: roll the whole call back rather than write a lie.
        raise RuntimeError(f"card {card_id} is not {from_state.name}")
    return _card_from(row[0])


def _insert_member(conn: sqlite3.Connection, c: Campaign, user_id: str, cards: int, signup_ms: int | None) -> str:
    """Create the member row together with its invite code (one statement in the usual case)."""
    for n in range(64):
        code = codes.code_for(c.secret, user_id, n)
        try:
            conn.execute(
                "INSERT INTO members (campaign_id, user_id, cards_granted, signup_ms, invite_code) VALUES (?, ?, ?, ?, ?)",
                (c.campaign_id, user_id, cards, signup_ms, code),
            )
        except sqlite3.IntegrityError:
            # Another user's code (the member itself cannot exist: callers checked). Only the
            # statement was undone; try the next candidate.
            continue
        return code
    raise RuntimeError("no free invite code after 64 tries")


def _ensure_code_fn(conn: sqlite3.Connection, c: Campaign, user_id: str) -> str:
    row = conn.execute(
        "SELECT invite_code FROM members WHERE campaign_id = ? AND user_id = ?", (c.campaign_id, user_id)
    ).fetchone()
    if row is None:
        return _insert_member(conn, c, user_id, 0, None)
    return row[0]


def _stored_code(conn: sqlite3.Connection, campaign_id: str, user_id: str) -> str | None:
    row = conn.execute(
        "SELECT invite_code FROM members WHERE campaign_id = ? AND user_id = ?", (campaign_id, user_id)
    ).fetchone()
    return row[0] if row else None


def _grant(
    conn: sqlite3.Connection, c: Campaign, user_id: str, source: CardSource, wanted: int, now_ms: int,
    granted: int | None, *, signup_ms: int | None = None, invites_delta: int = 0,
) -> tuple[list[Card], str]:
    """Grant up to `wanted` cards within the cap and the budget: (cards, "") or ([], reason).
    `granted` is the member's cards_granted as read in this transaction, None when it has no
    row yet (then the row is created, with its invite code). The member row also takes
    signup_ms / invites_delta in the same statement."""
    rules = c.rules
    n = grant_size(wanted, granted or 0, rules.per_user_card_cap)
    reason = "" if n else CARD_CAP_REACHED
    if n:
        value = n * rules.card_face_value_fen
        cur = conn.execute(
            "UPDATE campaigns SET issued_fen = issued_fen + ?, cards_issued = cards_issued + ?"
            " WHERE campaign_id = ? AND issued_fen + ? <= budget_fen",
            (value, n, c.campaign_id, value),
        )
        if cur.rowcount == 0:
            n, reason = 0, CAMPAIGN_BUDGET_EXHAUSTED
    if granted is None:
        _insert_member(conn, c, user_id, n, signup_ms)
    elif n or invites_delta or signup_ms is not None:
        cur = conn.execute(
            "UPDATE members SET cards_granted = cards_granted + ?, invites_made = invites_made + ?,"
            " signup_ms = COALESCE(?, signup_ms)"
            " WHERE campaign_id = ? AND user_id = ? AND cards_granted + ? <= ?",
            (n, invites_delta, signup_ms, c.campaign_id, user_id, n, rules.per_user_card_cap),
        )
        if cur.rowcount != 1:
            raise RuntimeError("cap check disagrees with the member row")
    if not n:
        return [], reason
    expire_ms = c.card_expiry_ms(now_ms)
    cause = GRANT_CAUSE[source]
    cards = [
        Card("cd" + secrets.token_hex(8), c.campaign_id, user_id, CardState.AVAILABLE, source,
             rules.card_face_value_fen, now_ms, expire_ms)
        for _ in range(n)
    ]
    conn.executemany(
        f"INSERT INTO cards ({_CARD_COLS}, cause, changed_ms) VALUES (?, ?, ?, 1, ?, ?, ?, ?, '', NULL, ?, ?)",
        [(k.card_id, k.campaign_id, user_id, int(source), k.face_value_fen, now_ms, expire_ms, cause, now_ms) for k in cards],
    )
    return cards, ""


def _claim_signup(conn: sqlite3.Connection, c: Campaign, user_id: str, request_id: str, now_ms: int) -> tuple[list[Card], bool]:
    _check_request(conn, request_id, f"ClaimSignupCard|{c.campaign_id}|{user_id}", now_ms)
    row = conn.execute(
        "SELECT cards_granted, signup_ms FROM members WHERE campaign_id = ? AND user_id = ?", (c.campaign_id, user_id)
    ).fetchone()
    if row is not None and row[1] is not None:
        rows = conn.execute(
            f"SELECT {_CARD_COLS} FROM cards WHERE campaign_id = ? AND user_id = ? AND source = ? ORDER BY grant_ms, card_id",
            (c.campaign_id, user_id, int(CardSource.SIGNUP)),
        ).fetchall()
        return [_card_from(r) for r in rows], False
    # A user who joined with a pass-phrase got the joining grant as invitee cards: in place of
    # the sign-up grant, not on top of it (6 joiners of a chain collect 6 + 5 cards, not 6 + 10).
    if row is not None and conn.execute(
        "SELECT 1 FROM invites WHERE campaign_id = ? AND invitee_user_id = ?", (c.campaign_id, user_id)
    ).fetchone() is not None:
        return _joining_cards(conn, c.campaign_id, user_id), False
    if not c.is_active(now_ms):
        raise campaign_not_active()
    cards, reason = _grant(
        conn, c, user_id, CardSource.SIGNUP, c.rules.signup_grant, now_ms, row[0] if row else None, signup_ms=now_ms
    )
    if reason == CAMPAIGN_BUDGET_EXHAUSTED:
        raise budget_exhausted()
    if reason == CARD_CAP_REACHED:
        raise cap_reached(c.rules.per_user_card_cap)
    return cards, True


def _joining_cards(conn: sqlite3.Connection, campaign_id: str, user_id: str) -> list[Card]:
    """The cards a user got for joining: its sign-up card(s) and invitee card(s)."""
    rows = conn.execute(
        f"SELECT {_CARD_COLS} FROM cards WHERE campaign_id = ? AND user_id = ? AND source IN (?, ?)"
        " ORDER BY grant_ms, card_id",
        (campaign_id, user_id, int(CardSource.SIGNUP), int(CardSource.INVITEE)),
    ).fetchall()
    return [_card_from(r) for r in rows]


def _accept_invite(
    conn: sqlite3.Connection, c: Campaign, invitee: str, candidates: list[str], request_id: str, now_ms: int,
    policy: AttemptPolicy, window_ms: int, signup_request_id: str | None = None,
) -> AcceptResult | DomainError:
    """`signup_request_id`: the claim's key when the call is an AcceptInvite with claim_signup
    (_join_by_invite), None for a lone AcceptInvite."""
    cid = c.campaign_id
    replay = _check_accept_request(conn, c, invitee, candidates, request_id, now_ms, signup_request_id)
    attempt = conn.execute(
        "SELECT window_start_ms, failures FROM invite_attempts WHERE campaign_id = ? AND user_id = ?", (cid, invitee)
    ).fetchone()
    marks = ", ".join("?" * len(candidates))
    if attempt is not None:
        wait_ms = attempts_blocked(attempt[1], attempt[0], now_ms, policy)
        if wait_ms:
            if not replay:
                # A blocked call judges no code and counts none. Kept as answered, its retry
                # once the block lifts passed as a replay, which counts nothing: guesses queued
                # while blocked were all judged later, free of the limit.
                _forget_request(conn, "AcceptInvite", request_id)
            # The limit slows down guesses; the code of the invite this user already accepted
            # is no guess: a retry of the join that succeeded gets that join back, whatever
            # wrong codes came since. Answered here, before any other candidate is looked at,
            # so the answer is the same whatever else the text holds: it tells the user only
            # what it already knows, and no guess rides along unlimited.
            row = conn.execute(
                f"SELECT {_INVITE_COLS} FROM invites WHERE campaign_id = ? AND invitee_user_id = ? AND code IN ({marks})",
                (cid, invitee, *candidates),
            ).fetchone()
            if row is None:
                return attempts_exceeded(wait_ms)
            return AcceptResult(_invite_from(row), _joining_cards(conn, cid, invitee), False)
    # INDEXED BY: without statistics SQLite reads two or more candidates (a pasted chat log, up
    # to MAX_CANDIDATES) through the primary key instead, i.e. every member of the campaign, in
    # the writer (91 ms at a million members, every ReserveCard queued behind it).
    owners = {
        code: (user, granted)
        for code, user, granted in conn.execute(
            "SELECT invite_code, user_id, cards_granted FROM members INDEXED BY members_code"
            f" WHERE campaign_id = ? AND invite_code IN ({marks})",
            (cid, *candidates),
        ).fetchall()
    }
    code = _chosen_code(candidates, owners, invitee)
    # A well-formed code in the text that is no one's is a wrong code even beside codes that
    # are someone's: one's own code (or the accepted one) pasted next to guesses would
    # otherwise tell a real guess (INVITEE_NOT_NEW, ALREADY_ACCEPTED, an invite) from a wrong
    # one (SELF_INVITE, the replay) without limit. Codes that are all someone's cost nothing
    # (a chat log with one's own pass-phrase above the friend's).
    wrong_codes = len(candidates) - len(owners)
    wrong = wrong_codes > 0
    # A replay (same request_id, same codes) guesses nothing new: its wrong codes were counted by
    # the first attempt, and counting each retry of an app or of the gateway's reconnects would
    # lock a user out after ten retries of one typo. Its answer is still the refusal.
    if wrong and not replay:
        _count_wrong_codes(conn, cid, invitee, attempt, now_ms, policy, wrong_codes)
    if code is None:
        # Committed on purpose: the failure must count even though the call fails.
        return invite_code_not_found()
    inviter, inviter_granted = owners[code]
    row = conn.execute(
        f"SELECT {_INVITE_COLS} FROM invites WHERE campaign_id = ? AND invitee_user_id = ?", (cid, invitee)
    ).fetchone()
    if row is not None:
        existing = _invite_from(row)
        if existing.inviter_user_id != inviter:
            return _refuse(already_accepted(), keep_count=wrong)
        return AcceptResult(existing, _joining_cards(conn, cid, invitee), False)
    if inviter == invitee:
        return _refuse(self_invite(), keep_count=wrong)
    if not c.is_active(now_ms):
        return _refuse(campaign_not_active(), keep_count=wrong)
    member = conn.execute(
        "SELECT cards_granted, signup_ms, invites_made FROM members WHERE campaign_id = ? AND user_id = ?", (cid, invitee)
    ).fetchone()
    has_reservations = conn.execute(
        "SELECT 1 FROM reservations WHERE campaign_id = ? AND user_id = ? LIMIT 1", (cid, invitee)
    ).fetchone() is not None
    signup_cards = 0
    if member is None:
        activity = InviteeActivity(has_reservations=has_reservations)
    else:
        granted, signup_ms, invites_made = member
        # Without an accepted invite, a member's only cards are its sign-up grant and what it
        # earned as an inviter (which needs invites_made > 0).
        signup_cards = min(c.rules.signup_grant, c.rules.per_user_card_cap) if signup_ms is not None else 0
        activity = InviteeActivity(signup_ms, max(0, granted - signup_cards), has_reservations, invites_made > 0)
    if not is_new_invitee(activity, now_ms, window_ms):
        return _refuse(invitee_not_new(), keep_count=wrong)
    # The invitee's joining grant replaces its sign-up grant: top it up to the joining grant,
    # counting the sign-up cards of this same join (none when the invite comes first).
    wanted = joining_grant(c.rules) - signup_cards
    if wanted > 0:
        invitee_cards, invitee_reason = _grant(
            conn, c, invitee, CardSource.INVITEE, wanted, now_ms, member[0] if member else None
        )
    else:
        invitee_cards, invitee_reason = [], SIGNUP_CARD_COUNTED
    inviter_cards, inviter_reason = _grant(
        conn, c, inviter, CardSource.INVITER, c.rules.inviter_grant, now_ms, inviter_granted, invites_delta=1
    )
    invite = Invite(cid, inviter, invitee, now_ms, bool(inviter_cards), bool(invitee_cards), inviter_reason, invitee_reason)
    conn.execute(
        f"INSERT INTO invites ({_INVITE_COLS}, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (cid, inviter, invitee, now_ms, int(invite.inviter_rewarded), int(invite.invitee_rewarded),
         inviter_reason, invitee_reason, code),
    )
    return AcceptResult(invite, _joining_cards(conn, cid, invitee) if signup_cards else invitee_cards, True)


def _count_wrong_codes(
    conn: sqlite3.Connection, cid: str, invitee: str, attempt: Any, now_ms: int, policy: AttemptPolicy, n: int
) -> None:
    """n more wrong invite codes for the user, in its current window or a new one. Each code
    counts: a text carries up to MAX_CANDIDATES of them, and one count per call let five
    guesses through for every wrong code the limit allows."""
    if attempt is None or now_ms >= attempt[0] + policy.window_ms:
        conn.execute(
            "INSERT OR REPLACE INTO invite_attempts (campaign_id, user_id, window_start_ms, failures) VALUES (?, ?, ?, ?)",
            (cid, invitee, now_ms, n),
        )
    else:
        conn.execute(
            "UPDATE invite_attempts SET failures = failures + ? WHERE campaign_id = ? AND user_id = ?", (n, cid, invitee)
        )


def _refuse(error: DomainError, *, keep_count: bool) -> DomainError:
    """An AcceptInvite refusal: returned (committed with the wrong code it counted, see the
    module docstring) when the call counted one, else raised (nothing of the call is kept)."""
    if not keep_count:
        raise error
    return error


def _chosen_code(candidates: list[str], owners: dict[str, tuple[str, int]], invitee: str) -> str | None:
    """The first candidate that is some user's code, another user's before the invitee's own:
    a pasted chat log may hold the invitee's own pass-phrase above the friend's it means to
    accept, and refusing that as SELF_INVITE would lose a good invite. The own code is chosen
    only when it is the only one found (SELF_INVITE then)."""
    found = [cand for cand in candidates if cand in owners]
    return next((cand for cand in found if owners[cand][0] != invitee), found[0] if found else None)


def _join_by_invite(
    conn: sqlite3.Connection, c: Campaign, invitee: str, candidates: list[str], request_id: str,
    signup_request_id: str, now_ms: int, policy: AttemptPolicy, window_ms: int,
) -> JoinResult | DomainError:
    """ClaimSignupCard then AcceptInvite, in that order, in one transaction: each step is the
    very function its own RPC runs, so cards, ledger, counters and both idempotency records end
    exactly as after the two calls (the join rule included: the sign-up card counts as the
    joining card and the invite tops it up to max(signup_grant, invitee_grant)).

    All or nothing of the claim. A failing claim fails the call (the writer undoes it). A
    failing invite, raised or returned, undoes the claim too, and the invite runs again alone:
    the call then leaves exactly what a lone failed AcceptInvite leaves (a wrong code counts one
    attempt, committed), so the caller's own ClaimSignupCard afterwards grants the sign-up card
    and answers newly_granted as it does today."""
    conn.execute("SAVEPOINT join_claim")
    signup_cards, newly = _claim_signup(conn, c, invitee, signup_request_id, now_ms)
    try:
        accepted: AcceptResult | DomainError = _accept_invite(
            conn, c, invitee, candidates, request_id, now_ms, policy, window_ms, signup_request_id
        )
    except DomainError as exc:
        accepted = exc
    if isinstance(accepted, AcceptResult):
        conn.execute("RELEASE join_claim")
        return JoinResult(accepted, signup_cards, newly)
    conn.execute("ROLLBACK TO join_claim")
    conn.execute("RELEASE join_claim")
    alone = _accept_invite(conn, c, invitee, candidates, request_id, now_ms, policy, window_ms, signup_request_id)
    if isinstance(alone, AcceptResult):
        # No invite check depends on the claim today, so this is not reached; should one ever,
        # the invite came first and the claim follows it as a ClaimSignupCard would.
        signup_cards, newly = _claim_signup(conn, c, invitee, signup_request_id, now_ms)
        return JoinResult(alone, signup_cards, newly)
    return alone


# --- reads of cards --------------------------------------------------------------------------


def _user_cards(conn: sqlite3.Connection, campaign_id: str, user_id: str) -> list[Card]:
    rows = conn.execute(
        f"SELECT {_CARD_COLS} FROM cards WHERE campaign_id = ? AND user_id = ? ORDER BY expire_ms, card_id",
        (campaign_id, user_id),
    ).fetchall()
    return [_card_from(r) for r in rows]


def _wallet(conn: sqlite3.Connection, campaign_id: str, user_id: str) -> WalletData:
    member = conn.execute(
        "SELECT cards_granted, invites_made, invite_code FROM members WHERE campaign_id = ? AND user_id = ?",
        (campaign_id, user_id),
    ).fetchone()
    invited_by = conn.execute(
        "SELECT inviter_user_id FROM invites WHERE campaign_id = ? AND invitee_user_id = ?", (campaign_id, user_id)
    ).fetchone()
    cards = _user_cards(conn, campaign_id, user_id)
    budget, issued = _budget_and_issued(conn, campaign_id)
    if member is None:
        return WalletData(cards, 0, 0, None, invited_by[0] if invited_by else "", issued, budget)
    return WalletData(cards, member[0], member[1], member[2], invited_by[0] if invited_by else "", issued, budget)


def _budget_and_issued(conn: sqlite3.Connection, campaign_id: str) -> tuple[int, int]:
    # The running total _grant keeps on the campaign row: a primary-key read, where summing
    # card_totals would read a row per state and counting cards would scan the campaign.
    row = conn.execute("SELECT budget_fen, issued_fen FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
    return (row[0], row[1]) if row else (0, 0)


# --- reservations ----------------------------------------------------------------------------


def _card(conn: sqlite3.Connection, card_id: str) -> Card | None:
    row = conn.execute(f"SELECT {_CARD_COLS} FROM cards WHERE card_id = ?", (card_id,)).fetchone()
    return _card_from(row) if row else None


def _reservation(conn: sqlite3.Connection, order_id: str) -> Reservation | None:
    row = conn.execute(f"SELECT {_RES_COLS} FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
    return _reservation_from(row) if row else None


def _end_hold(conn: sqlite3.Connection, card_id: str, order_id: str, now_ms: int, cause: str) -> Card:
    """RESERVED -> AVAILABLE (-> EXPIRED when the card's validity has passed meanwhile)."""
    card = _move(conn, card_id, CardState.RESERVED, CardState.AVAILABLE, now_ms, cause)
    conn.execute(
        "UPDATE reservations SET state = ?, end_cause = ? WHERE order_id = ? AND state = ?",
        (int(ReservationState.RELEASED), cause, order_id, int(ReservationState.HELD)),
    )
    if card.expire_ms <= now_ms:
        card = _move(conn, card_id, CardState.AVAILABLE, CardState.EXPIRED, now_ms, EXPIRE)
    return card


def _settle_user(conn: sqlite3.Connection, campaign_id: str, user_id: str, now_ms: int) -> int:
    """Apply, for one user, what time did since the last write: lapsed holds end, passed
    validity expires (set-based; the triggers write the ledger). Returns holds released."""
    conn.execute(
        "UPDATE reservations SET state = ?, end_cause = ? WHERE campaign_id = ? AND user_id = ? AND state = ? AND expire_ms <= ?",
        (int(ReservationState.RELEASED), RESERVATION_TIMEOUT, campaign_id, user_id, int(ReservationState.HELD), now_ms),
    )
    released = conn.execute(
        "UPDATE cards SET state = 1, order_id = '', reserved_until_ms = NULL, cause = ?, changed_ms = ?"
        " WHERE campaign_id = ? AND user_id = ? AND state = 2 AND reserved_until_ms <= ?",
        (RESERVATION_TIMEOUT, now_ms, campaign_id, user_id, now_ms),
    ).rowcount
    conn.execute(
        "UPDATE cards SET state = 4, cause = ?, changed_ms = ? WHERE campaign_id = ? AND user_id = ? AND state = 1 AND expire_ms <= ?",
        (EXPIRE, now_ms, campaign_id, user_id, now_ms),
    )
    return released


def _has_lapsed_hold(conn: sqlite3.Connection, campaign_id: str, user_id: str, now_ms: int) -> bool:
    # INDEXED BY: the user's few held cards, never cards_held's range over every lapsed hold.
    return conn.execute(
        "SELECT 1 FROM cards INDEXED BY cards_owner WHERE campaign_id = ? AND user_id = ? AND state = 2"
        " AND reserved_until_ms <= ? LIMIT 1",
        (campaign_id, user_id, now_ms),
    ).fetchone() is not None


def _pick_and_hold(
    conn: sqlite3.Connection, campaign_id: str, user_id: str, order_id: str, until: int, now_ms: int,
    redeem: bool = False,
) -> Card | None:
    """Hold the user's available card that expires first: choice and move in one statement.
    With `redeem` the card goes straight on to REDEEMED (the ledger still gets RESERVE then
    CONFIRM, see migration 2)."""
    row = conn.execute(
        _PICK_AND_TAKE,
        (int(_TAKEN[redeem]), order_id, None if redeem else until, CONFIRM if redeem else RESERVE, now_ms,
         campaign_id, user_id, now_ms),
    ).fetchall()
    return _card_from(row[0]) if row else None


_PICK_AND_TAKE = (
    "UPDATE cards SET state = ?, order_id = ?, reserved_until_ms = ?, cause = ?, changed_ms = ?"
    " WHERE state = 1 AND card_id = (SELECT card_id FROM cards WHERE campaign_id = ? AND user_id = ? AND state = 1"
    f" AND expire_ms > ? ORDER BY expire_ms, card_id LIMIT 1) RETURNING {_CARD_COLS}"
)


# Where a reservation takes an available card: a plain one holds it, a redeem takes it for good.
_TAKEN = {False: CardState.RESERVED, True: CardState.REDEEMED}


def _reserve(
    conn: sqlite3.Connection, c: Campaign, user_id: str, order_id: str, amount_fen: int, card_id: str, ttl_s: int,
    request_id: str, now_ms: int, redeem: bool = False,
) -> Hold | DomainError:
    # `redeem` is not part of the fingerprint: the same request_id may first hold the card and
    # later redeem it (a Reserve(redeem) after a plain Reserve of the same order confirms it).
    replay = _check_reserve_request(conn, c, user_id, order_id, amount_fen, card_id, ttl_s, request_id, now_ms, redeem)
    existing = _reservation(conn, order_id)
    if existing is not None:
        if existing.user_id != user_id or existing.campaign_id != c.campaign_id:
            raise order_id_conflict()
        ended = replayed_reserve_error(existing, now_ms) if replay else None
        if ended is not None:
            if existing.is_lapsed(now_ms):
                # Committed with the answer: the card is free again, as any write leaves it.
                _end_hold(conn, existing.card_id, order_id, now_ms, RESERVATION_TIMEOUT)
                return ended
            raise ended
        if existing.is_lapsed(now_ms):
            _end_hold(conn, existing.card_id, order_id, now_ms, RESERVATION_TIMEOUT)
        elif redeem and existing.state == ReservationState.HELD:
            return _redeem_held(conn, existing, now_ms)
        elif existing.state != ReservationState.RELEASED:
            # The same order asking again (a retry): the same reservation.
            return Hold(existing, _card(conn, existing.card_id))  # type: ignore[arg-type]
    until = now_ms + ttl_s * 1000
    if card_id:
        card = _card(conn, card_id)
        if card is None or card.campaign_id != c.campaign_id:
            raise card_not_found()
        if card.user_id != user_id:
            raise card_not_owned()
        if card.state == CardState.RESERVED and card.reserved_until_ms is not None and card.reserved_until_ms <= now_ms:
            card = _end_hold(conn, card.card_id, card.order_id, now_ms, RESERVATION_TIMEOUT)
        if card.state != CardState.AVAILABLE or card.expire_ms <= now_ms:
            raise card_not_available()
        if redeem and covered_fen(amount_fen, card.face_value_fen) < amount_fen:
            raise redeem_not_covered()
        held = _move(conn, card.card_id, CardState.AVAILABLE, _TAKEN[redeem], now_ms, CONFIRM if redeem else RESERVE,
                     hold_order=order_id, hold_until=None if redeem else until)
    else:
        # A card whose hold lapsed since the last write is free again and may expire before
        # every stored AVAILABLE one: picked among those alone, the later card was spent and the
        # sooner one expired unused. One index seek finds none in the usual case.
        if _has_lapsed_hold(conn, c.campaign_id, user_id, now_ms):
            _settle_user(conn, c.campaign_id, user_id, now_ms)
        held = _pick_and_hold(conn, c.campaign_id, user_id, order_id, until, now_ms, redeem)
        if held is None:
            raise no_card_available()
    covered = covered_fen(amount_fen, held.face_value_fen)
    state = ReservationState.HELD
    if redeem:
        if covered < amount_fen:
            raise redeem_not_covered()  # rolls the move back with the rest of this call
        # One move AVAILABLE -> REDEEMED, two ledger rows (RESERVE then CONFIRM, written by the
        # trigger of migration 2), as if Confirm had followed: the ledger tells the same history
        # whichever way the order path took.
        state = ReservationState.CONFIRMED
    reservation = Reservation(
        order_id, held.card_id, user_id, c.campaign_id, state, amount_fen, covered, until, create_ms=now_ms
    )
    # An upsert on order_id only (a released order takes a new hold): a second HELD row for the
    # same card still violates reservations_one_hold and fails the call.
    conn.execute(
        f"INSERT INTO reservations ({_RES_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', 0, ?)"
        " ON CONFLICT (order_id) DO UPDATE SET card_id = excluded.card_id, state = excluded.state,"
        " amount_fen = excluded.amount_fen, covered_fen = excluded.covered_fen, expire_ms = excluded.expire_ms,"
        " end_cause = '', refund_returned = 0, create_ms = excluded.create_ms",
        (order_id, held.card_id, user_id, c.campaign_id, int(state), amount_fen, covered, until, now_ms),
    )
    return Hold(reservation, held)


def _redeem_held(conn: sqlite3.Connection, r: Reservation, now_ms: int) -> Hold:
    """Reserve(redeem) of an order whose plain hold is live: confirm that hold."""
    if r.covered_fen < r.amount_fen:
        raise redeem_not_covered()
    card = _move(conn, r.card_id, CardState.RESERVED, CardState.REDEEMED, now_ms, CONFIRM, hold_order=r.order_id)
    conn.execute(
        "UPDATE reservations SET state = ? WHERE order_id = ? AND state = ?",
        (int(ReservationState.CONFIRMED), r.order_id, int(ReservationState.HELD)),
    )
    return Hold(replace(r, state=ReservationState.CONFIRMED), card)


def _held(conn: sqlite3.Connection, order_id: str) -> Reservation:
    r = _reservation(conn, order_id)
    if r is None:
        raise reservation_not_found()
    return r


def _confirm(conn: sqlite3.Connection, order_id: str, request_id: str, now_ms: int) -> Hold | DomainError:
    # A replay that finds a later hold of the order does confirm it, unlike Release and Refund:
    # the order service, whose payment landed while the card service was out of reach until the
    # hold lapsed, holds the card again under the same key and confirms it under the same
    # request_id (services/order handlers._hold_card_again). Confirming only spends the card on
    # the order it is held for, never returns one.
    _check_request(conn, request_id, f"ConfirmReservation|{order_id}", now_ms)
    r = _held(conn, order_id)
    if r.is_lapsed(now_ms):
        _end_hold(conn, r.card_id, order_id, now_ms, RESERVATION_TIMEOUT)
        # Committed: the card is free again even though this confirm fails.
        return not_held_error(r.at(now_ms))
    if r.state == ReservationState.CONFIRMED:
        return Hold(r, _card(conn, r.card_id))  # type: ignore[arg-type]
    if r.state != ReservationState.HELD:
        raise not_held_error(r)
    card = _move(conn, r.card_id, CardState.RESERVED, CardState.REDEEMED, now_ms, CONFIRM, hold_order=order_id)
    conn.execute(
        "UPDATE reservations SET state = ? WHERE order_id = ? AND state = ?",
        (int(ReservationState.CONFIRMED), order_id, int(ReservationState.HELD)),
    )
    return Hold(replace(r, state=ReservationState.CONFIRMED), card)


def _release(conn: sqlite3.Connection, order_id: str, request_id: str, now_ms: int) -> Hold:
    replay = _check_request(conn, request_id, f"ReleaseReservation|{order_id}", now_ms)
    r = _held(conn, order_id)
    if replay and made_after_replayed_request(r.state):
        # A late duplicate of a release answered before: the hold it finds is the order's later
        # attempt, which it must not end. Answered as it stands.
        return Hold(r, _card(conn, r.card_id))  # type: ignore[arg-type]
    if r.state == ReservationState.HELD:
        cause = RESERVATION_TIMEOUT if r.is_lapsed(now_ms) else RELEASE
        card = _end_hold(conn, r.card_id, order_id, now_ms, cause)
        return Hold(replace(r, state=ReservationState.RELEASED, end_cause=cause), card)
    return Hold(r, _card(conn, r.card_id))  # type: ignore[arg-type]


def _refund(conn: sqlite3.Connection, order_id: str, request_id: str, now_ms: int) -> RefundResult:
    replay = _check_request(conn, request_id, f"RefundCard|{order_id}", now_ms)
    r = _held(conn, order_id)
    if replay and made_after_replayed_request(r.state, refund=True):
        # A late duplicate of a refund answered before: the hold or redemption it finds is the
        # order's later attempt, which it must not end or give back. Answered as it stands.
        card = _card(conn, r.card_id)  # type: ignore[assignment]
    elif r.state == ReservationState.HELD:
        # Cancelled before payment: the hold simply ends.
        cause = RESERVATION_TIMEOUT if r.is_lapsed(now_ms) else RELEASE
        card = _end_hold(conn, r.card_id, order_id, now_ms, cause)
        r = replace(r, state=ReservationState.RELEASED, end_cause=cause)
    elif r.state == ReservationState.CONFIRMED:
        returned = _card(conn, r.card_id).expire_ms > now_ms  # type: ignore[union-attr]
        to_state = CardState.AVAILABLE if returned else CardState.EXPIRED
        card = _move(conn, r.card_id, CardState.REDEEMED, to_state, now_ms, REFUND)
        conn.execute(
            "UPDATE reservations SET state = ?, end_cause = ?, refund_returned = ? WHERE order_id = ? AND state = ?",
            (int(ReservationState.REFUNDED), REFUND, int(returned), order_id, int(ReservationState.CONFIRMED)),
        )
        r = replace(r, state=ReservationState.REFUNDED, end_cause=REFUND, refund_returned=returned)
    else:
        card = _card(conn, r.card_id)  # type: ignore[assignment]
    if r.state == ReservationState.REFUNDED:
        return RefundResult(r, card, r.refund_returned, "" if r.refund_returned else "CARD_EXPIRED")
    now_card = card.at(now_ms)
    spendable = now_card.state == CardState.AVAILABLE
    reason = "" if spendable else ("CARD_EXPIRED" if now_card.state == CardState.EXPIRED else "CARD_IN_USE")
    return RefundResult(r, card, spendable, reason)


# --- reports ---------------------------------------------------------------------------------


def _list_reservations(
    conn: sqlite3.Connection, created_after_ms: int, after: tuple[int, str] | None, limit: int
) -> list[Reservation]:
    # A seek into reservations_created at the lower create_ms bound and a walk in index order
    # (no sort); past the previous page only the rows tied on its last create_ms are skipped.
    where = "create_ms >= ?"
    params: tuple[Any, ...] = (created_after_ms,)
    if after is not None:
        where = "create_ms >= ? AND (create_ms > ? OR (create_ms = ? AND order_id > ?))"
        params = (max(created_after_ms, after[0]), after[0], after[0], after[1])
    rows = conn.execute(
        f"SELECT {_RES_COLS} FROM reservations WHERE {where} ORDER BY create_ms, order_id LIMIT ?", (*params, limit)
    ).fetchall()
    return [_reservation_from(r) for r in rows]


def _invite_stats(
    conn: sqlite3.Connection, campaign_id: str, inviter: str, before_ms: int | None, after: tuple[int, str] | None, limit: int
) -> tuple[int, list[Invite]]:
    bound = before_ms if before_ms is not None else 2**62
    count = conn.execute(
        "SELECT COUNT(*) FROM invites WHERE campaign_id = ? AND inviter_user_id = ? AND accept_ms < ?",
        (campaign_id, inviter, bound),
    ).fetchone()[0]
    after_ms, after_user = after if after is not None else (-1, "")
    rows = conn.execute(
        f"SELECT {_INVITE_COLS} FROM invites WHERE campaign_id = ? AND inviter_user_id = ? AND accept_ms < ?"
        " AND (accept_ms > ? OR (accept_ms = ? AND invitee_user_id > ?))"
        " ORDER BY accept_ms, invitee_user_id LIMIT ?",
        (campaign_id, inviter, bound, after_ms, after_ms, after_user, limit),
    ).fetchall()
    return count, [_invite_from(r) for r in rows]


# The state a card is really in at :now (see model.effective_state), as SQL.
_EFFECTIVE_STATE = (
    "CASE WHEN state = 2 AND reserved_until_ms > :now THEN 2"
    " WHEN state IN (1, 2) AND expire_ms <= :now THEN 4"
    " WHEN state = 2 THEN 1 ELSE state END"
)


def _budget(conn: sqlite3.Connection, campaign_id: str, now_ms: int) -> BudgetData:
    budget_fen, issued, count = conn.execute(
        "SELECT budget_fen, issued_fen, cards_issued FROM campaigns WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    by_state: Counter[int] = Counter(dict(conn.execute(
        "SELECT state, face_value_fen FROM card_totals WHERE campaign_id = ?", (campaign_id,)
    ).fetchall()))
    # A stored state lags the clock for held cards and for cards past their validity until the
    # sweep moves them: those few are read again and counted under the state they are really in.
    # INDEXED BY the partial indexes: without statistics SQLite would pick cards_campaign and walk
    # the whole campaign (2.2 s at 2 million cards) to find them.
    for stored, effective, fen in conn.execute(
        f"SELECT state, {_EFFECTIVE_STATE}, SUM(face_value_fen) FROM ("
        "  SELECT state, reserved_until_ms, expire_ms, face_value_fen FROM cards INDEXED BY cards_held"
        "  WHERE state = 2 AND campaign_id = :cid"
        "  UNION ALL"
        "  SELECT state, reserved_until_ms, expire_ms, face_value_fen FROM cards INDEXED BY cards_expiring"
        "  WHERE state = 1 AND expire_ms <= :now AND campaign_id = :cid"
        ") GROUP BY 1, 2",
        {"now": now_ms, "cid": campaign_id},
    ).fetchall():
        by_state[stored] -= fen
        by_state[effective] += fen
    changes, change_count = _budget_changes(conn, campaign_id)
    return BudgetData(
        budget_fen, issued, count, {CardState(s): v for s, v in by_state.items() if v}, changes, change_count
    )


def _campaign_cards(conn: sqlite3.Connection, campaign_id: str, state: int, after_id: str, limit: int, now_ms: int) -> list[Card]:
    params = {"now": now_ms, "cid": campaign_id, "after": after_id, "limit": limit, "state": state}
    where = f" AND ({_EFFECTIVE_STATE}) = :state" if state else ""
    rows = conn.execute(
        f"SELECT {_CARD_COLS} FROM cards WHERE campaign_id = :cid AND card_id > :after{where} ORDER BY card_id LIMIT :limit",
        params,
    ).fetchall()
    return [_card_from(r) for r in rows]


# Who took part in a campaign: claimed its sign-up grant, accepted an invite, or was granted cards
# or counted invites (an inviter whose code someone accepted, even one that never claimed: the
# audit checks the counters of every card holder). A members row alone is not that: it is made
# the first time a user's invite code is, and GetWallet and GetInviteCode make the code (it lives
# on the row, so the same user always gets the same one) for users who only looked.
_TOOK_PART = (
    "(m.signup_ms IS NOT NULL OR m.cards_granted > 0 OR m.invites_made > 0"
    " OR EXISTS (SELECT 1 FROM invites i WHERE i.campaign_id = m.campaign_id AND i.invitee_user_id = m.user_id))"
)


def _campaign_members(conn: sqlite3.Connection, campaign_id: str, after_user: str, limit: int) -> list[Member]:
    # The members primary key (campaign_id, user_id) is the order: each page is one range seek,
    # passing over the rows of users who only looked.
    rows = conn.execute(
        "SELECT m.user_id, m.cards_granted, m.invites_made FROM members m"
        f" WHERE m.campaign_id = ? AND m.user_id > ? AND {_TOOK_PART} ORDER BY m.user_id LIMIT ?",
        (campaign_id, after_user, limit),
    ).fetchall()
    return [Member(*r) for r in rows]


def _campaign_invites(conn: sqlite3.Connection, campaign_id: str, after_invitee: str, limit: int) -> list[Invite]:
    # Keyed (campaign_id, invitee_user_id) like the table: one range seek per page.
    rows = conn.execute(
        f"SELECT {_INVITE_COLS} FROM invites WHERE campaign_id = ? AND invitee_user_id > ? ORDER BY invitee_user_id LIMIT ?",
        (campaign_id, after_invitee, limit),
    ).fetchall()
    return [_invite_from(r) for r in rows]


def _card_history(conn: sqlite3.Connection, card_id: str) -> tuple[Card, list[LedgerRow]] | None:
    card = _card(conn, card_id)
    if card is None:
        return None
    rows = conn.execute(
        "SELECT seq, card_id, from_state, to_state, order_id, time_ms, cause FROM ledger WHERE card_id = ? ORDER BY seq",
        (card_id,),
    ).fetchall()
    return card, [LedgerRow(*r) for r in rows]


def _make_indexes(conn: sqlite3.Connection) -> None:
    for script in INDEXES:
        conn.execute(script)


def _sweep(conn: sqlite3.Connection, now_ms: int, limit: int, attempts_window_ms: int | None = None) -> SweepCounts:
    """Release lapsed holds, expire cards past validity, forget old request ids and (with
    `attempts_window_ms`) invite attempts whose window is over, service-wide, at most `limit` each."""
    counts = SweepCounts()
    for card_id, order_id in conn.execute(
        "SELECT card_id, order_id FROM cards WHERE state = 2 AND reserved_until_ms <= ? LIMIT ?", (now_ms, limit)
    ).fetchall():
        _end_hold(conn, card_id, order_id, now_ms, RESERVATION_TIMEOUT)
        counts.released += 1
    counts.expired = conn.execute(
        "UPDATE cards SET state = 4, cause = ?, changed_ms = ?"
        " WHERE card_id IN (SELECT card_id FROM cards WHERE state = 1 AND expire_ms <= ? LIMIT ?)",
        (EXPIRE, now_ms, now_ms, limit),
    ).rowcount
    counts.forgotten = conn.execute(
        "DELETE FROM requests WHERE (method, request_id) IN"
        " (SELECT method, request_id FROM requests WHERE create_ms < ? LIMIT ?)",
        (now_ms - REQUEST_MEMORY_MS, limit),
    ).rowcount
    if attempts_window_ms is not None:
        # A row whose window is over counts for nothing (model.attempts_blocked): deleted, it is
        # the same as one never written.
        counts.attempts_forgotten = conn.execute(
            "DELETE FROM invite_attempts WHERE (campaign_id, user_id) IN"
            " (SELECT campaign_id, user_id FROM invite_attempts WHERE window_start_ms <= ? LIMIT ?)",
            (now_ms - attempts_window_ms, limit),
        ).rowcount
    return counts
