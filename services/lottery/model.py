"""Rules of the daily draw: days and cut-offs, the commit-reveal algorithm, input validation.

The selection algorithm ("miandan-draw-hmac-sha256" v1) is specified in
protos/miandan/lottery/v1/lottery.proto; this module is the service's implementation of it.
services/lottery/verify.py holds an independent one on purpose (a checker that imported this
file would only prove the code agrees with itself).

Imports neither grpc nor sqlite.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.decimal_text import ascii_int
from services.common.keyed_hash import hmac_sha256_under
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

ALGORITHM = "miandan-draw-hmac-sha256"
ALGORITHM_VERSION = 1
SEED_BYTES = 32

DEFAULT_PRIZE_NAME = "AI生活卡"
DEFAULT_PRIZE_VALUE_FEN = 1_000_000
DEFAULT_WINNER_COUNT = 15
MAX_WINNER_COUNT = 10_000
DEFAULT_TIME_ZONE = "Asia/Shanghai"
DEFAULT_THRESHOLD = 3
DEFAULT_CUTOFF = time(20, 0)

MAX_ID_CHARS = 128
MAX_BEACON_CHARS = 1024

NO_BEACON_NOTE = "no public beacon: the operator's seed alone decides; trust rests on the commitment"
BEACON_NOTE = (
    "winners depend on the secret seed (committed before entries closed), the public beacon value of "
    "the committed round and the entrant list; check the beacon value against its source yourself"
)

# First round published at or after a given time: round r appears at genesis + (r - 1) * period.
# Published chain parameters of the League of Entropy drand networks.
DRAND_CHAINS: dict[str, tuple[int, int]] = {
    "drand:quicknet": (1692803367, 3),
    "drand:default": (1595431050, 30),
}

_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")  # ASCII digits, no trailing newline


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """What the lottery needs to know about a card campaign."""

    campaign_id: str
    time_zone: str = DEFAULT_TIME_ZONE
    invite_threshold: int = DEFAULT_THRESHOLD
    start_ms: int = 0
    end_ms: int = 2**62

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.time_zone)


@dataclass(frozen=True)
class DrawRecord:
    campaign_id: str
    day: str
    prize_name: str
    prize_value_fen: int
    winner_count: int
    time_zone: str
    seed: bytes
    commitment: str
    commit_ms: int
    cutoff_ms: int
    beacon_source: str = ""
    beacon_round: str = ""
    beacon_value: str = ""
    entrant_count: int = 0
    drawn_ms: int | None = None
    winners: tuple[str, ...] = ()
    entrants_hash: str = ""

    @property
    def drawn(self) -> bool:
        return self.drawn_ms is not None

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.time_zone)

    @property
    def beacon_committed(self) -> bool:
        return bool(self.beacon_source)


@dataclass(frozen=True)
class EntryRecord:
    campaign_id: str
    day: str
    user_id: str
    entry_ms: int
    drawn: bool = False
    won: bool = False


class Status:
    UPCOMING = "UPCOMING"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    DRAWN = "DRAWN"
    NOT_HELD = "NOT_HELD"


def status_of(draw: DrawRecord, now_ms: int) -> str:
    if draw.drawn:
        return Status.DRAWN
    if now_ms >= draw.cutoff_ms:
        # Only a day nobody committed has no commitment (every stored draw has one), and past
        # its cut-off it cannot be committed any more: CLOSED would promise winners.
        return Status.CLOSED if draw.commitment else Status.NOT_HELD
    # A day asked about before it begins: "open" would invite an entry EnterDraw refuses.
    if now_ms < day_start_ms(date.fromisoformat(draw.day), draw.zone):
        return Status.UPCOMING
    return Status.OPEN


@dataclass(frozen=True)
class DrawSettings:
    """Per-process lottery settings (env MIANDAN_LOTTERY_*)."""

    cutoff: time = DEFAULT_CUTOFF
    # None: draws use no public beacon unless CommitDraw binds one.
    beacon_source: str | None = None
    campaigns: tuple[str, ...] = ("spring-2026",)
    tick_seconds: float = 5.0


# --- the algorithm -------------------------------------------------------------------------


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def commitment_of(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()


def sort_entrants(user_ids: list[str] | tuple[str, ...]) -> list[str]:
    # Byte order of UTF-8 equals code point order, and SQLite's BINARY collation is memcmp on
    # UTF-8: all three agree, so the store may hand over ids already sorted.
    return sorted(user_ids, key=lambda u: u.encode("utf-8"))


def entrants_hash(sorted_ids: list[str] | tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(sorted_ids).encode("utf-8")).hexdigest()


def select_winners(seed: bytes, beacon_value: str, entrants: list[str] | tuple[str, ...], winner_count: int) -> list[str]:
    """The winner_count entrants with the smallest HMAC-SHA256(seed || beacon, user id), in
    score order; everyone when there are fewer entrants. Duplicate ids count once."""
    if winner_count < 0:
        raise ValueError("winner_count must be >= 0")
    mac = hmac_sha256_under(seed + beacon_value.encode("utf-8"))
    # Digests of one length order as the big-endian numbers the algorithm ranks by; the smallest
    # winner_count without sorting everyone (a million entrants a popular day, in the draw's
    # write transaction).
    scored = ((mac(u.encode("utf-8")), u.encode("utf-8"), u) for u in set(entrants))
    return [u for _, _, u in heapq.nsmallest(winner_count, scored)]


# --- days and cut-offs ----------------------------------------------------------------------


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file path
        # A campaign with an unknown zone is a card-service data problem; Shanghai is the
        # documented default and keeps the draw usable.
        return ZoneInfo(DEFAULT_TIME_ZONE)


# Days a draw can be for. Why bounded: a day's cut-off is local time turned into UTC
# milliseconds, and 0001-01-01 20:00 in Asia/Shanghai is in year 0, which datetime cannot hold
# (OverflowError: an INTERNAL for GetDraw, EnterDraw and CommitDraw until these bounds).
FIRST_DAY, LAST_DAY = date(1970, 1, 2), date(9998, 12, 31)


def parse_day(text: str, field_name: str = "day") -> date:
    if not _DAY_RE.match(text):
        raise InvalidArgument(field_name, f"must be YYYY-MM-DD, got {text[:40]!r}", reason="INVALID_DAY")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field_name, f"{text!r} is not a calendar date", reason="INVALID_DAY") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidArgument(field_name, f"{text} is outside {FIRST_DAY} .. {LAST_DAY}", reason="INVALID_DAY")
    return day


def today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def day_start_ms(day: date, zone: ZoneInfo) -> int:
    return _ms(datetime.combine(day, time(0, 0), tzinfo=zone))


def day_end_ms(day: date, zone: ZoneInfo) -> int:
    return day_start_ms(day + timedelta(days=1), zone)


def cutoff_ms(day: date, zone: ZoneInfo, cutoff: time) -> int:
    return _ms(datetime.combine(day, cutoff, tzinfo=zone))


def campaign_cutoff_ms(day: date, campaign: Campaign, cutoff: time) -> int:
    """When entries for `day` close: at the cut-off, or when the campaign ends if that is
    earlier (a campaign ending at noon takes no entries in the afternoon, and its last day is
    drawn when it ends)."""
    return min(cutoff_ms(day, campaign.zone, cutoff), campaign.end_ms)


def _ms(dt: datetime) -> int:
    return int(dt.astimezone(timezone.utc).timestamp() * 1000)


def in_window(day: date, campaign: Campaign) -> bool:
    """A day belongs to the campaign when it overlaps [start, end)."""
    zone = campaign.zone
    return day_start_ms(day, zone) < campaign.end_ms and day_end_ms(day, zone) > campaign.start_ms


def resolve_day(text: str, campaign: Campaign, now: datetime) -> date:
    return today(now, campaign.zone) if not text else parse_day(text)


def require_in_window(day: date, campaign: Campaign) -> None:
    if not in_window(day, campaign):
        raise NotFound(
            "DRAW_NOT_FOUND",
            f"活动 {campaign.campaign_id} 在 {day.isoformat()} 没有抽奖 / campaign {campaign.campaign_id} "
            f"has no draw on {day.isoformat()} (outside the campaign window)",
        )


# HH:MM or HH:MM:SS in ASCII digits (`\d` would also take full-width and Arabic-Indic ones).
# Seconds let the demo and the end-to-end tests close a day moments ahead instead of waiting for
# the next whole minute; everything after the setting works on the cut-off instant in ms.
_CUTOFF_RE = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")


def parse_cutoff(text: str) -> time:
    """MIANDAN_LOTTERY_CUTOFF, campaign-local: HH:MM or HH:MM:SS, 00:00:01..23:59:59."""
    m = _CUTOFF_RE.fullmatch(text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise ValueError(f"MIANDAN_LOTTERY_CUTOFF={text!r} is not HH:MM or HH:MM:SS (00:00:01..23:59:59)")
    cutoff = time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if cutoff == time(0, 0):
        # A cut-off belongs to its own day: 00:00 closes each day at the instant it opens, so no
        # day would ever be committed or entered, and nothing would say why.
        raise ValueError(
            f"MIANDAN_LOTTERY_CUTOFF={text!r} closes each day's entries when that day begins, so nobody could "
            "ever enter; the latest cut-off is 23:59:59"
        )
    return cutoff


# --- beacons --------------------------------------------------------------------------------


def beacon_round_for(source: str, cutoff_at_ms: int) -> str:
    """The round of `source` whose value nobody (operator included) can know before the cut-off:
    the first one published at or after it. Unknown sources name the cut-off instant instead
    ("the first value published at or after ...")."""
    chain = DRAND_CHAINS.get(source)
    if chain is None:
        return datetime.fromtimestamp(cutoff_at_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    genesis, period = chain
    return str(max(1, math.ceil((cutoff_at_ms / 1000 - genesis) / period) + 1))


def check_beacon_round(source: str, round_text: str, cutoff_at_ms: int) -> None:
    chain = DRAND_CHAINS.get(source)
    if chain is None:
        return
    round_number = ascii_int(round_text, minimum=0)
    if round_number is None:
        raise InvalidArgument("beacon_round", f"a {source} round is a positive integer", reason="INVALID_BEACON_ROUND")
    earliest = int(beacon_round_for(source, cutoff_at_ms))
    if round_number < earliest:
        raise InvalidArgument(
            "beacon_round",
            f"round {round_text} of {source} is published before entries close; use {earliest} or later",
            reason="BEACON_ROUND_TOO_EARLY",
        )


# --- request ids of the admin writes -------------------------------------------------------

COMMIT_DRAW, RUN_DRAW = "CommitDraw", "RunDraw"
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
# How long a request_id is remembered (the scheduler's tick forgets older ones): a week, as the
# card and order services keep theirs, far beyond any retry.
REQUEST_MEMORY_MS = 7 * 86_400_000


@dataclass(frozen=True)
class RequestKey:
    """A CommitDraw's or RunDraw's request_id as its idempotency key. Both are admin calls, and
    the admin is one caller: one namespace per method (a request_id may serve one CommitDraw
    and one RunDraw). The same key with the same fingerprint is a replay, answered with the day
    it named as that day is now (never re-applied: a replayed commit does not undo a later
    amendment); with another fingerprint, REQUEST_ID_REUSED."""

    method: str
    request_id: str
    fingerprint: str
    at_ms: int


def request_key(method: str, request_id: str, at_ms: int, *content: object) -> RequestKey | None:
    """None without a request_id (optional on both calls: they are remembered only with one).
    `content`: every field of the request as sent (an empty day stays empty: a replay of "today"
    after midnight is still answered with the day it committed)."""
    if not request_id:
        return None
    canon = json.dumps([method, *content], ensure_ascii=False, separators=(",", ":"))
    return RequestKey(method, request_id, hashlib.sha256(canon.encode()).hexdigest()[:32], at_ms)


def request_id_reused() -> AlreadyExists:
    return AlreadyExists(REQUEST_ID_REUSED, "request_id 已用于另一个请求 / request_id was used for a different request")


def check_entry_replay(seen: EntryRecord, campaign_id: str, asked_day: str) -> None:
    """An EnterDraw whose request_id (a key of the user's) already made `seen`: a replay, to
    be answered with that entry as it is now, unless the key is reused for another entry, i.e.
    another campaign or another day named explicitly (REQUEST_ID_REUSED). asked_day "" (today)
    is the request as sent: a retry of "today" after midnight is still the entry it made then,
    as CommitDraw answers a replay of "today" with the day it committed."""
    if seen.campaign_id != campaign_id or (asked_day and asked_day != seen.day):
        raise request_id_reused()


# --- validation -----------------------------------------------------------------------------


def is_beacon_source(text: str) -> bool:
    """1..64 printable ASCII characters without spaces. ASCII because the name is what a verifier
    reads to know which public beacon to check: "drand:quicknеt" with a Cyrillic е would look
    like drand's while naming a source no one publishes, so its value (the operator's own,
    taken as given for a source the service cannot fetch) would pick the winners unseen."""
    return 0 < len(text) <= 64 and all(c.isascii() and c.isprintable() and not c.isspace() for c in text)


# Unicode's control characters (category Cc: C0, DEL and C1), the suite's rule for ids
# (docs/conventions.md), as the order service applies it. "\n" joins the entrant list in the
# published hash, and C1's U+0085 is a line break to many of the tools that read that list.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_id(value: str, field_name: str) -> str:
    if not value:
        raise InvalidArgument(field_name, "must not be empty", reason="MISSING_FIELD")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(field_name, f"at most {MAX_ID_CHARS} characters", reason="INVALID_ID")
    check_no_control_character(value, field_name)
    return value


def check_no_control_character(value: str, field_name: str) -> None:
    if _CONTROL_CHARACTER.search(value):
        raise InvalidArgument(field_name, "must not contain control characters", reason="INVALID_ID")


def check_page_size(value: int, default: int, maximum: int, field_name: str = "page_size") -> int:
    if value < 0 or value > maximum:
        raise InvalidArgument(field_name, f"must be 0..{maximum} (0 means {default}), got {value}", reason="INVALID_PAGE_SIZE")
    return value or default


def check_beacon_value(value: str) -> str:
    if len(value) > MAX_BEACON_CHARS:
        raise InvalidArgument("beacon_value", f"at most {MAX_BEACON_CHARS} characters", reason="INVALID_BEACON_VALUE")
    return value


# --- state transitions ----------------------------------------------------------------------


def new_draw(
    campaign: Campaign,
    day: date,
    cutoff: time,
    now_ms: int,
    *,
    prize_name: str = "",
    prize_value_fen: int = 0,
    winner_count: int = 0,
    beacon_source: str = "",
    beacon_round: str = "",
    seed: bytes | None = None,
) -> DrawRecord:
    seed = seed if seed is not None else new_seed()
    cut = campaign_cutoff_ms(day, campaign, cutoff)
    if beacon_source and not beacon_round:
        beacon_round = beacon_round_for(beacon_source, cut)
    return DrawRecord(
        campaign_id=campaign.campaign_id,
        day=day.isoformat(),
        prize_name=prize_name or DEFAULT_PRIZE_NAME,
        prize_value_fen=prize_value_fen or DEFAULT_PRIZE_VALUE_FEN,
        winner_count=winner_count or DEFAULT_WINNER_COUNT,
        time_zone=campaign.time_zone or DEFAULT_TIME_ZONE,
        seed=seed,
        commitment=commitment_of(seed),
        commit_ms=now_ms,
        cutoff_ms=cut,
        beacon_source=beacon_source,
        beacon_round=beacon_round,
    )


def amend_commit(existing: DrawRecord, wanted: DrawRecord, explicit: set[str], now_ms: int) -> DrawRecord:
    """CommitDraw on a day that already has a commitment: the seed is never replaced. Before the
    cut-off the prize, winner count and (once) the beacon may still be set; afterwards only a
    request asking for what is already there succeeds (a retry). `explicit` names the fields the
    request set ("beacon_round" included)."""
    changes: dict[str, object] = {}
    for name in ("prize_name", "prize_value_fen", "winner_count"):
        if name in explicit and getattr(wanted, name) != getattr(existing, name):
            changes[name] = getattr(wanted, name)
    if "beacon_source" in explicit:
        # The round follows the day's own cut-off, fixed at its commit: `wanted` was made with
        # today's setting, which a restart with another MIANDAN_LOTTERY_CUTOFF may have moved
        # earlier, to a round published while entries are still open.
        source = wanted.beacon_source
        round_text = wanted.beacon_round if "beacon_round" in explicit else beacon_round_for(source, existing.cutoff_ms)
        if (source, round_text) != (existing.beacon_source, existing.beacon_round):
            if existing.beacon_source:
                raise FailedPrecondition(
                    "BEACON_ALREADY_BOUND",
                    f"该日已绑定信标 {existing.beacon_source}#{existing.beacon_round} / this day is already bound "
                    f"to beacon {existing.beacon_source} round {existing.beacon_round}; it can never change",
                )
            check_beacon_round(source, round_text, existing.cutoff_ms)
            changes["beacon_source"] = source
            changes["beacon_round"] = round_text
    if not changes:
        return existing
    if existing.drawn or now_ms >= existing.cutoff_ms:
        raise FailedPrecondition(
            "ENTRIES_CLOSED",
            "报名已截止,抽奖参数不可再改 / entries are closed: the draw's parameters can no longer change",
        )
    return replace(existing, **changes)  # type: ignore[arg-type]


def check_runnable(draw: DrawRecord, now_ms: int, beacon_value: str) -> None:
    """Preconditions of revealing the seed (the caller has checked it is not drawn yet)."""
    if now_ms < draw.cutoff_ms:
        raise FailedPrecondition(
            "DRAW_NOT_CLOSED",
            f"{draw.day} 的报名尚未截止 / entries for {draw.day} are still open; the draw runs after the cut-off",
        )
    if draw.beacon_committed and not beacon_value:
        raise InvalidArgument(
            "beacon_value",
            f"the value of {draw.beacon_source} round {draw.beacon_round} is required",
            reason="BEACON_VALUE_REQUIRED",
        )
    if not draw.beacon_committed and beacon_value:
        # A value chosen after the fact would hand the operator a free re-roll.
        raise InvalidArgument(
            "beacon_value",
            "no beacon was committed for this day; a value not fixed in advance cannot be used",
            reason="BEACON_NOT_COMMITTED",
        )


BEACON_BOUND_MEANWHILE = "BEACON_BOUND_MEANWHILE"


def beacon_of(draw: DrawRecord | None) -> tuple[str, str]:
    """(source, round) a day is bound to, ("", "") for none or for a day not committed."""
    return (draw.beacon_source, draw.beacon_round) if draw is not None else ("", "")


def check_beacon_judged(draw: DrawRecord, judged: tuple[str, str]) -> None:
    """A draw's beacon value is judged (fetched and verified, or held to the published round's
    time) for the beacon the day was bound to when it was looked up. A CommitDraw or the
    EnterDraw that creates the day, both judged before the cut-off, may be written after that
    look-up and bind a beacon: a value then taken as given was never checked against that round,
    and one of the operator's choosing would pick the winners while the day claims a public
    beacon. Refused, to be judged again."""
    if beacon_of(draw) != judged:
        raise FailedPrecondition(
            BEACON_BOUND_MEANWHILE,
            f"{draw.day} 刚绑定了信标 {draw.beacon_source},请重试 / {draw.day} was bound to beacon "
            f"{draw.beacon_source} round {draw.beacon_round} while this draw was prepared; retry",
        )


def reveal(draw: DrawRecord, sorted_entrants: list[str], beacon_value: str, now_ms: int) -> DrawRecord:
    return replace(
        draw,
        beacon_value=beacon_value,
        drawn_ms=now_ms,
        winners=tuple(select_winners(draw.seed, beacon_value, sorted_entrants, draw.winner_count)),
        entrants_hash=entrants_hash(sorted_entrants),
        entrant_count=len(sorted_entrants),
    )


def verify_note(draw: DrawRecord) -> str:
    return BEACON_NOTE if draw.beacon_committed else NO_BEACON_NOTE
