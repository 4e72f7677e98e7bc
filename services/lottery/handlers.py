"""Use cases of the lottery: one method per RPC, plus the day scheduler's tick."""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from services.common.clock import Clock, to_ms
from services.common.decimal_text import ascii_int
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.logging import BurstLog

from . import model
from .beacon import DRAND, DrandBeacon
from .card_client import CardDirectory
from .model import Campaign, DrawRecord, DrawSettings, EntryRecord
from .store import LotteryStore

__all__ = ["Lottery", "VerifyPage", "DrawScheduler"]

log = logging.getLogger("miandan.lottery")

VERIFY_PAGE_DEFAULT, VERIFY_PAGE_MAX = 1000, 10_000
LIST_PAGE_DEFAULT, LIST_PAGE_MAX = 30, 100
ENTRIES_PAGE_DEFAULT, ENTRIES_PAGE_MAX = 500, 1000
# A page token names its listing: VerifyDraw and ListDrawEntries both page by a user id,
# ListMyEntries and ListDraws by a day, and another listing's token is refused, not followed.
# The separator is a control character, which neither ids nor days may hold.
_VERIFY_TOKEN, _ENTRIES_TOKEN, _MY_ENTRIES_TOKEN, _DRAWS_TOKEN = "verify", "entries", "mine", "draws"
_TAG_END = "\x1f"
MAX_PRIZE_NAME_CHARS = 100
MAX_BEACON_SOURCE_CHARS = 64
MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class VerifyPage:
    draw: DrawRecord
    entrants: list[str]
    next_page_token: str
    note: str


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def _bad_token() -> InvalidArgument:
    return InvalidArgument("page_token", "not a token returned by this service", reason="INVALID_PAGE_TOKEN")


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        value = ""
    if not value:
        raise _bad_token()
    return value


def _tagged_token(tag: str, position: str) -> str:
    return _encode_token(tag + _TAG_END + position)


def _position(token: str, tag: str, *, untagged_too: bool = False) -> str:
    """Where a listing's page token continues ("" for the first page). untagged_too: the
    listing's tokens carried no name before, and one handed out then still pages on."""
    value = _decode_token(token)
    if not value:
        return ""
    named, end, position = value.partition(_TAG_END)
    if end:
        if named != tag or not position:
            raise _bad_token()
        return position
    if untagged_too:
        return value
    raise _bad_token()


def _day_position(token: str, tag: str) -> str:
    value = _position(token, tag, untagged_too=True)
    if value:
        try:
            model.parse_day(value, "page_token")
        except InvalidArgument:
            raise _bad_token() from None
    return value


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument("request_id", f"at most {MAX_REQUEST_ID_CHARS} characters", reason="INVALID_REQUEST_ID")
    model.check_no_control_character(request_id, "request_id")


def _require_day(text: str) -> date:
    if not text:
        raise InvalidArgument("day", "required (YYYY-MM-DD)", reason="MISSING_FIELD")
    return model.parse_day(text)


class Lottery:
    def __init__(
        self,
        store: LotteryStore,
        cards: CardDirectory,
        clock: Clock,
        settings: DrawSettings | None = None,
        beacon: DrandBeacon | None = None,
    ) -> None:
        """beacon: fetches and verifies drand rounds (beacon.py); None = beacon values come only
        from an admin's RunDraw."""
        self.store = store
        self.cards = cards
        self.clock = clock
        self.settings = settings or DrawSettings()
        self.beacon = beacon

    async def _beacon_value_to_draw_with(self, draw: DrawRecord, given: str) -> str:
        """The value a RunDraw may use for a day bound to a beacon. The operator can read the
        seed, so a value of its choosing would pick the winners: a drand round is never taken
        before it is published, and where the service can fetch it only the verified value is
        used, whatever was given (a relay that is down or lies is a reason to retry, not to
        trust the caller). Only with fetching off (MIANDAN_DRAND_RELAYS=off) or for a source it
        cannot fetch is the given value used as is; it is published with the draw, for anyone
        to check against the source."""
        chain = DRAND.get(draw.beacon_source)
        round_number = ascii_int(draw.beacon_round, minimum=1)
        if chain is not None and round_number is not None and self.clock.now().timestamp() < chain.round_time(round_number):
            raise FailedPrecondition(
                "BEACON_NOT_PUBLISHED",
                f"{draw.beacon_source} 第 {draw.beacon_round} 轮尚未发布 / {draw.beacon_source} round "
                f"{draw.beacon_round} is not published yet; nobody can know its value",
            )
        if self.beacon is None or not self.beacon.knows(draw.beacon_source):
            return given
        fetched = await self.fetched_beacon_value(draw)
        if fetched is None:
            raise Unavailable(
                "BEACON_UNVERIFIED",
                f"暂时无法取得并验证 {draw.beacon_source} 第 {draw.beacon_round} 轮 / round {draw.beacon_round} of "
                f"{draw.beacon_source} could not be fetched and verified right now; retry later",
                30_000,
            )
        if given and given != fetched:
            raise FailedPrecondition(
                "BEACON_VALUE_MISMATCH",
                f"{draw.beacon_source} 第 {draw.beacon_round} 轮的值不是所给的值 / the signed value of "
                f"{draw.beacon_source} round {draw.beacon_round} is {fetched}, not the one given",
                metadata={"beacon_value": fetched},
            )
        return fetched

    async def fetched_beacon_value(self, draw: DrawRecord) -> str | None:
        """The verified value of the day's committed round, when it is out and can be fetched."""
        if self.beacon is None or not draw.beacon_committed or not self.beacon.knows(draw.beacon_source):
            return None
        return await self.beacon.value(draw.beacon_source, draw.beacon_round, self.clock.now().timestamp())

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def fresh_draw(self, campaign: Campaign, day: date, now_ms: int, **overrides: object) -> DrawRecord:
        beacon = self.settings.beacon_source or ""
        kwargs: dict[str, object] = {"beacon_source": beacon}
        kwargs.update(overrides)
        return model.new_draw(campaign, day, self.settings.cutoff, now_ms, **kwargs)  # type: ignore[arg-type]

    # --- EnterDraw ------------------------------------------------------------------------

    async def enter_draw(
        self, request_id: str, campaign_id: str, user_id: str, day_text: str, *, timeout: float
    ) -> tuple[EntryRecord, DrawRecord, bool]:
        _check_request_id(request_id)
        model.check_id(campaign_id, "campaign_id")
        model.check_id(user_id, "user_id")
        if day_text:
            model.parse_day(day_text)
        if request_id:
            # A replay is answered before anything is judged again (the campaign, the day, the
            # cut-off), with the entry the key made; the key reused for another entry is refused.
            seen = await self.store.entry_for_request(user_id, request_id)
            if seen is not None:
                model.check_entry_replay(seen[0], campaign_id, day_text)
                return seen[0], seen[1], False
        campaign = await self.cards.get_campaign(campaign_id, timeout=timeout)
        now = self.clock.now()
        now_ms = to_ms(now)
        day = model.resolve_day(day_text, campaign, now)
        model.require_in_window(day, campaign)
        entry, draw = await self.store.entry_and_draw(campaign_id, day.isoformat(), user_id)
        if entry is not None and draw is not None:
            return entry, draw, False
        if now_ms < model.day_start_ms(day, campaign.zone):
            raise FailedPrecondition(
                "ENTRIES_NOT_OPEN", f"{day.isoformat()} 的抽奖尚未开始报名 / entries for {day.isoformat()} open at the start of that day"
            )
        cutoff_at = draw.cutoff_ms if draw is not None else model.campaign_cutoff_ms(day, campaign, self.settings.cutoff)
        if now_ms >= cutoff_at:
            raise FailedPrecondition(
                "ENTRIES_CLOSED", f"{day.isoformat()} 的抽奖报名已截止 / entries for the {day.isoformat()} draw are closed"
            )
        count = await self.cards.invited_count(campaign_id, user_id, cutoff_at, timeout=timeout)
        if count < campaign.invite_threshold:
            raise FailedPrecondition(
                "NOT_QUALIFIED",
                f"已邀请 {count} 位新用户,需要 {campaign.invite_threshold} 位才能参与抽奖 / "
                f"invited {count} new users; {campaign.invite_threshold} are needed to enter the draw",
                metadata={"invited_count": str(count), "threshold": str(campaign.invite_threshold)},
            )
        # Re-read the clock: the card call took time, and the store's cut-off check must judge
        # the moment of the write, not the moment the request arrived.
        now_ms = self.now_ms()
        return await self.store.enter(self.fresh_draw(campaign, day, now_ms), user_id, now_ms, request_id, day_text)

    # --- GetDraw ------------------------------------------------------------------------

    async def get_draw(self, campaign_id: str, day_text: str, *, timeout: float) -> DrawRecord:
        model.check_id(campaign_id, "campaign_id")
        if day_text:
            draw = await self.store.get_draw(campaign_id, model.parse_day(day_text).isoformat())
            if draw is not None:
                return draw
        campaign = await self.cards.get_campaign(campaign_id, timeout=timeout)
        now = self.clock.now()
        day = model.resolve_day(day_text, campaign, now)
        if not day_text:
            draw = await self.store.get_draw(campaign_id, day.isoformat())
            if draw is not None:
                return draw
        model.require_in_window(day, campaign)
        # A campaign day nobody committed yet: its schedule is known, its commitment is not.
        return replace(self.fresh_draw(campaign, day, 0, seed=b""), commitment="", commit_ms=0, beacon_source="", beacon_round="")

    # --- CommitDraw ---------------------------------------------------------------------

    async def commit_draw(
        self,
        request_id: str,
        campaign_id: str,
        day_text: str,
        *,
        prize_name: str = "",
        prize_value_fen: int = 0,
        winner_count: int = 0,
        beacon_source: str = "",
        beacon_round: str = "",
        timeout: float,
    ) -> DrawRecord:
        _check_request_id(request_id)
        model.check_id(campaign_id, "campaign_id")
        violations = []
        if len(prize_name) > MAX_PRIZE_NAME_CHARS:
            violations.append(("prize_name", f"at most {MAX_PRIZE_NAME_CHARS} characters"))
        if prize_value_fen < 0:
            violations.append(("prize_value_fen", "must be >= 0 (0 means the default 1,000,000)"))
        if winner_count < 0 or winner_count > model.MAX_WINNER_COUNT:
            violations.append(("winner_count", f"must be 0..{model.MAX_WINNER_COUNT} (0 means the default 15)"))
        if beacon_source and not model.is_beacon_source(beacon_source):
            violations.append(("beacon_source", f"1..{MAX_BEACON_SOURCE_CHARS} printable ASCII characters without spaces"))
        if beacon_round and not beacon_source:
            violations.append(("beacon_round", "given without beacon_source"))
        if len(beacon_round) > MAX_BEACON_SOURCE_CHARS:
            violations.append(("beacon_round", f"at most {MAX_BEACON_SOURCE_CHARS} characters"))
        if violations:
            raise InvalidArgument(violations=violations)
        if day_text:
            model.parse_day(day_text)
        # The request as sent (model.request_key): a replay is answered before anything is
        # judged again (the campaign, the window, the cut-off), with the day it committed.
        request = model.request_key(
            model.COMMIT_DRAW, request_id, self.now_ms(), campaign_id, day_text, prize_name, prize_value_fen,
            winner_count, beacon_source, beacon_round,
        )
        if request is not None:
            seen = await self.store.replayed(request)
            if seen is not None:
                return seen
        campaign = await self.cards.get_campaign(campaign_id, timeout=timeout)
        now = self.clock.now()
        now_ms = to_ms(now)
        day = model.resolve_day(day_text, campaign, now)
        model.require_in_window(day, campaign)
        source = beacon_source or self.settings.beacon_source or ""
        # A given round is checked against the cut-off of the day it binds (the store knows
        # whether that is a new day's or one fixed at an earlier commit).
        wanted = model.new_draw(
            campaign, day, self.settings.cutoff, now_ms,
            prize_name=prize_name, prize_value_fen=prize_value_fen, winner_count=winner_count,
            beacon_source=source, beacon_round=beacon_round,
        )
        explicit = {
            name for name, value in (
                ("prize_name", prize_name), ("prize_value_fen", prize_value_fen), ("winner_count", winner_count),
                ("beacon_source", beacon_source), ("beacon_round", beacon_round),
            ) if value
        }
        return await self.store.commit_draw(wanted, explicit, now_ms, request)

    # --- RunDraw ------------------------------------------------------------------------

    async def run_draw(self, request_id: str, campaign_id: str, day_text: str, beacon_value: str) -> DrawRecord:
        _check_request_id(request_id)
        model.check_id(campaign_id, "campaign_id")
        day = _require_day(day_text)
        model.check_beacon_value(beacon_value)
        request = model.request_key(model.RUN_DRAW, request_id, self.now_ms(), campaign_id, day.isoformat(), beacon_value)
        if request is not None:
            seen = await self.store.replayed(request)
            if seen is not None:
                return seen
        # Twice at most: a beacon bound after the look-up (a CommitDraw or the day's first
        # EnterDraw, judged before the cut-off and written since) is refused by the store's
        # draw, and judged again here; a beacon, once bound, never changes.
        for attempt in range(2):
            # One reading of the clock judges and stamps the draw, unless the beacon fetch
            # took time: read apart, a look-up a moment before the cut-off skipped the beacon
            # check and a draw stamped a moment after it passed its own.
            now_ms = self.now_ms()
            pending = await self.store.get_draw(campaign_id, day.isoformat())
            value = beacon_value
            if pending is not None and not pending.drawn and pending.beacon_committed and now_ms >= pending.cutoff_ms:
                value = await self._beacon_value_to_draw_with(pending, beacon_value)
                now_ms = self.now_ms()
            try:
                draw = await self.store.run_draw(
                    campaign_id, day.isoformat(), now_ms, value, request, judged_beacon=model.beacon_of(pending)
                )
            except FailedPrecondition as exc:
                if exc.reason != model.BEACON_BOUND_MEANWHILE or attempt:
                    raise
                continue
            if draw is None:
                raise _no_draw(campaign_id, day)
            return draw
        raise AssertionError("unreachable: the second attempt returns or raises")

    # --- VerifyDraw ---------------------------------------------------------------------

    async def verify_draw(self, campaign_id: str, day_text: str, page_size: int, page_token: str) -> VerifyPage:
        model.check_id(campaign_id, "campaign_id")
        day = _require_day(day_text)
        limit = model.check_page_size(page_size, VERIFY_PAGE_DEFAULT, VERIFY_PAGE_MAX)
        after = _position(page_token, _VERIFY_TOKEN, untagged_too=True)
        draw = await self.store.get_draw(campaign_id, day.isoformat())
        if draw is None:
            raise _no_draw(campaign_id, day)
        if not draw.drawn:
            raise FailedPrecondition(
                "DRAW_NOT_DRAWN", f"{day.isoformat()} 尚未开奖,种子仍保密 / the {day.isoformat()} draw has not run yet; the seed is still secret"
            )
        ids = await self.store.entrants_page(campaign_id, day.isoformat(), after, limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        return VerifyPage(draw, ids, _tagged_token(_VERIFY_TOKEN, ids[-1]) if more else "", model.verify_note(draw))

    # --- ListMyEntries / ListDraws ------------------------------------------------------

    async def list_my_entries(self, campaign_id: str, user_id: str, page_size: int, page_token: str) -> tuple[list[EntryRecord], str]:
        model.check_id(campaign_id, "campaign_id")
        model.check_id(user_id, "user_id")
        limit = model.check_page_size(page_size, LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
        before = _day_position(page_token, _MY_ENTRIES_TOKEN)
        rows = await self.store.user_entries(campaign_id, user_id, before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, _tagged_token(_MY_ENTRIES_TOKEN, rows[-1].day) if more else ""

    async def list_day_entries(
        self, campaign_id: str, day_text: str, won_only: bool, page_size: int, page_token: str
    ) -> tuple[list[EntryRecord], str]:
        model.check_id(campaign_id, "campaign_id")
        day = _require_day(day_text)
        limit = model.check_page_size(page_size, ENTRIES_PAGE_DEFAULT, ENTRIES_PAGE_MAX)
        after = _position(page_token, _ENTRIES_TOKEN)
        draw = await self.store.get_draw(campaign_id, day.isoformat())
        if draw is None:
            raise _no_draw(campaign_id, day)
        rows = await self.store.day_entries(draw, after, won_only, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, _tagged_token(_ENTRIES_TOKEN, rows[-1].user_id) if more else ""

    async def list_draws(self, campaign_id: str, page_size: int, page_token: str) -> tuple[list[DrawRecord], str]:
        model.check_id(campaign_id, "campaign_id")
        limit = model.check_page_size(page_size, LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
        before = _day_position(page_token, _DRAWS_TOKEN)
        rows = await self.store.draws_page(campaign_id, before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, _tagged_token(_DRAWS_TOKEN, rows[-1].day) if more else ""


def _no_draw(campaign_id: str, day: date) -> NotFound:
    return NotFound(
        "DRAW_NOT_FOUND",
        f"{campaign_id} 在 {day.isoformat()} 没有已承诺的抽奖 / no draw was committed for {campaign_id} on {day.isoformat()}",
    )


class DrawScheduler:
    """Commits each campaign's draw at the start of its day and runs it after the cut-off.

    Time comes from the injected clock; `tick()` does one pass and is what tests call after
    moving a FakeClock. The background loop only repeats tick() every few seconds, so a
    restart or a missed tick is caught up by the next one (both steps are idempotent). A day bound
    to a drand round is drawn once the lottery's beacon fetcher has that round's verified value
    (beacon.py); without one, or for other sources, it waits for an admin RunDraw with the value.
    """

    # A day that cannot be drawn (its seed's key abandoned, a bug) fails every tick, every few
    # seconds, for as long as the lottery runs: one line per day this often, with the count of
    # the failures in between, instead of 17,000 a day each.
    QUIET_S = 600.0

    def __init__(self, lottery: Lottery, *, timeout: float = 5.0) -> None:
        self.lottery = lottery
        self.timeout = timeout
        self._failing: dict[str, BurstLog] = {}  # by campaign or campaign/day, while it fails
        self._task: asyncio.Task[None] | None = None
        # Set once the loop's first pass has ended (drawn or failed): a test that moves a
        # FakeClock past a cut-off waits for it, or that pass could draw the day under the test.
        self.first_pass_done = asyncio.Event()

    async def tick(self) -> dict[str, list[str]]:
        lottery = self.lottery
        done: dict[str, list[str]] = {"committed": [], "drawn": [], "waiting_for_beacon": []}
        campaign_ids = sorted(set(lottery.settings.campaigns) | set(await lottery.store.campaign_ids()))
        # Each campaign and each due day stands alone: a bug or a bad row in one must not keep
        # the others from being committed and drawn, nor the request ids from being forgotten.
        failing: set[str] = set()
        for campaign_id in campaign_ids:
            try:
                await self._commit_today(campaign_id, done)
            except Exception:
                self._failed(failing, campaign_id, logging.ERROR, "scheduler: day not committed", {"campaign_id": campaign_id}, True)
        now_ms = lottery.now_ms()
        for draw in await lottery.store.due_draws(now_ms):
            key = f"{draw.campaign_id}/{draw.day}"
            try:
                await self._draw_due(draw, done)
            except DomainError as exc:
                self._failed(failing, key, logging.WARNING, "scheduler: draw not run", {"draw": key, "reason": exc.reason})
            except Exception:
                self._failed(failing, key, logging.ERROR, "scheduler: draw failed",
                             {"campaign_id": draw.campaign_id, "day": draw.day}, True)
        # What failed before and not this time is over: its next failure is news again.
        for key in [k for k in self._failing if k not in failing]:
            del self._failing[key]
        # CommitDraw / RunDraw request ids older than a week, a bounded number per tick.
        await lottery.store.forget_requests(now_ms - model.REQUEST_MEMORY_MS, 500)
        return done

    async def _commit_today(self, campaign_id: str, done: dict[str, list[str]]) -> None:
        lottery = self.lottery
        try:
            campaign = await lottery.cards.get_campaign(campaign_id, timeout=self.timeout)
        except DomainError as exc:
            log.debug("scheduler: campaign unavailable", extra={"campaign_id": campaign_id, "reason": exc.reason})
            return
        # Read after the card call: a slow answer just before the cut-off must not let a day
        # be committed after its cut-off stamped with a time before it.
        now = lottery.clock.now()
        now_ms = to_ms(now)
        day = model.today(now, campaign.zone)
        if model.in_window(day, campaign) and now_ms < model.campaign_cutoff_ms(day, campaign, lottery.settings.cutoff):
            draw = await lottery.store.ensure_draw(lottery.fresh_draw(campaign, day, now_ms))
            if draw.commit_ms == now_ms:
                done["committed"].append(f"{campaign_id}/{draw.day}")

    async def _draw_due(self, draw: DrawRecord, done: dict[str, list[str]]) -> None:
        lottery = self.lottery
        key = f"{draw.campaign_id}/{draw.day}"
        beacon_value = ""
        if draw.beacon_committed:
            beacon_value = await lottery.fetched_beacon_value(draw) or ""
            if not beacon_value:
                done["waiting_for_beacon"].append(key)
                return
        # The beacon fetch may have taken seconds: the draw is stamped when it runs. A beacon
        # bound since due_draws read the day is refused by the store and judged next tick.
        await lottery.store.run_draw(
            draw.campaign_id, draw.day, lottery.now_ms(), beacon_value, judged_beacon=model.beacon_of(draw)
        )
        done["drawn"].append(key)

    def _seconds(self) -> float:
        return self.lottery.clock.now().timestamp()  # the injected clock: tests move it

    def _failed(self, failing: set[str], key: str, level: int, msg: str, extra: dict[str, Any], exc_info: bool = False) -> None:
        failing.add(key)
        burst = self._failing.get(key)
        if burst is None or burst.level != level:
            burst = self._failing[key] = BurstLog(log, level, self.QUIET_S, time_source=self._seconds)
        burst.log(msg, extra, exc_info)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="lottery-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad tick must not end the schedule; the next one retries
                log.exception("scheduler tick failed")
            self.first_pass_done.set()
            await asyncio.sleep(self.lottery.settings.tick_seconds)
