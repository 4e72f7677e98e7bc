import dataclasses
import hashlib
import hmac
from collections import Counter
from datetime import date, datetime, time, timezone

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.lottery import model
from services.lottery.model import Campaign


def seed_of(i: int) -> bytes:
    return hashlib.sha256(f"seed-{i}".encode()).digest()


USERS = [f"u{i:03d}" for i in range(10)]


# --- selection ------------------------------------------------------------------------------


def test_selection_is_deterministic_for_the_same_seed_beacon_and_entrants():
    a = model.select_winners(seed_of(1), "beacon", USERS, 3)
    b = model.select_winners(seed_of(1), "beacon", list(reversed(USERS)), 3)
    assert a == b and len(a) == 3


def test_selection_changes_with_the_seed_and_with_the_beacon():
    base = model.select_winners(seed_of(1), "", USERS, 3)
    assert any(model.select_winners(seed_of(i), "", USERS, 3) != base for i in range(2, 6))
    assert any(model.select_winners(seed_of(1), f"b{i}", USERS, 3) != base for i in range(5))


def test_selection_matches_the_published_recipe():
    seed, beacon = seed_of(7), "abc"
    key = seed + beacon.encode()
    scores = {u: int.from_bytes(hmac.new(key, u.encode(), hashlib.sha256).digest(), "big") for u in USERS}
    expected = sorted(USERS, key=lambda u: scores[u])[:4]
    assert model.select_winners(seed, beacon, USERS, 4) == expected


def test_fewer_entrants_than_winners_means_everyone_wins():
    winners = model.select_winners(seed_of(3), "", USERS[:4], 15)
    assert sorted(winners) == USERS[:4]
    assert model.select_winners(seed_of(3), "", [], 15) == []


def test_winners_never_repeat_even_with_duplicate_input():
    for i in range(200):
        winners = model.select_winners(seed_of(i), "", USERS + USERS[:5], 7)
        assert len(winners) == len(set(winners)) == 7


def test_every_entrant_is_reachable_as_a_winner():
    users = [f"user-{i}" for i in range(20)]
    won = {model.select_winners(seed_of(i), "", users, 1)[0] for i in range(1000)}
    assert won == set(users)


def test_winner_frequencies_are_uniform_by_chi_square():
    # 10 entrants, 1 winner, 5,000 deterministic seeds: expected 500 wins each. The 99.9 %
    # critical value of chi-square with 9 degrees of freedom is 27.88; a biased ranking (e.g.
    # by id instead of score) gives thousands.
    trials = 5000
    counts = Counter(model.select_winners(seed_of(i), "", USERS, 1)[0] for i in range(trials))
    expected = trials / len(USERS)
    chi2 = sum((counts[u] - expected) ** 2 / expected for u in USERS)
    assert chi2 < 27.88, (chi2, counts)


def test_top_three_membership_is_uniform_by_chi_square():
    trials = 3000
    counts = Counter(w for i in range(trials) for w in model.select_winners(seed_of(i), "x", USERS, 3))
    expected = trials * 3 / len(USERS)
    chi2 = sum((counts[u] - expected) ** 2 / expected for u in USERS)
    assert chi2 < 27.88, (chi2, counts)


def test_commitment_and_entrants_hash_follow_the_spec():
    seed = bytes(range(32))
    assert model.commitment_of(seed) == hashlib.sha256(seed).hexdigest()
    ids = model.sort_entrants(["b", "a", "张三", "Z"])
    assert ids == ["Z", "a", "b", "张三"]
    assert model.entrants_hash(ids) == hashlib.sha256("Z\na\nb\n张三".encode()).hexdigest()
    assert model.entrants_hash([]) == hashlib.sha256(b"").hexdigest()


def test_new_seed_is_32_random_bytes():
    a, b = model.new_seed(), model.new_seed()
    assert len(a) == 32 and a != b


# --- days and cut-offs ---------------------------------------------------------------------


SH = Campaign("c1", "Asia/Shanghai", 3, 0, 2**62)


@pytest.mark.parametrize("name", ["美" * 300, "x" * 5000, "Mars/Olympus", "../../etc/passwd", ""])
def test_a_zone_the_system_cannot_read_falls_back_to_shanghai(name):
    # A 300-character name made ZoneInfo raise OSError (file name too long), which escaped.
    assert model.zone_of(name).key == "Asia/Shanghai"


def test_cutoff_is_20_00_in_the_campaign_time_zone():
    cut = model.cutoff_ms(date(2026, 1, 28), SH.zone, time(20, 0))
    assert cut == int(datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)


def test_today_is_the_calendar_day_in_the_campaign_time_zone():
    # 17:00 UTC on the 28th is 01:00 on the 29th in Shanghai.
    assert model.today(datetime(2026, 1, 28, 17, 0, tzinfo=timezone.utc), SH.zone) == date(2026, 1, 29)


def test_days_outside_the_campaign_window_have_no_draw():
    start = int(datetime(2026, 1, 27, 16, 0, tzinfo=timezone.utc).timestamp() * 1000)  # 28th 00:00 Shanghai
    end = int(datetime(2026, 1, 30, 16, 0, tzinfo=timezone.utc).timestamp() * 1000)  # 31st 00:00
    c = Campaign("c1", "Asia/Shanghai", 3, start, end)
    assert model.in_window(date(2026, 1, 28), c) and model.in_window(date(2026, 1, 30), c)
    assert not model.in_window(date(2026, 1, 27), c) and not model.in_window(date(2026, 1, 31), c)
    with pytest.raises(NotFound) as err:
        model.require_in_window(date(2026, 1, 31), c)
    assert err.value.reason == "DRAW_NOT_FOUND"


@pytest.mark.parametrize("text", [
    "2026-1-28", "20260128", "2026-02-30", "", "tomorrow", "2026-01-28T00:00",
    "0001-01-01", "1970-01-01", "9999-12-31",  # calendar dates whose cut-off datetime cannot hold
    "２０２６-０１-２８", "2026-01-28\n",  # full-width digits; a trailing newline `$` let through
])
def test_bad_days_are_invalid_argument_with_a_reason(text):
    with pytest.raises(InvalidArgument) as err:
        model.parse_day(text)
    assert err.value.reason == "INVALID_DAY" and err.value.violations[0][0] == "day"


@pytest.mark.parametrize("text,expected", [("20:00", time(20, 0)), ("9:05", time(9, 5)), ("23:59", time(23, 59))])
def test_cutoff_setting_parses_hh_mm(text, expected):
    assert model.parse_cutoff(text) == expected


@pytest.mark.parametrize("text", ["24:00", "20", "8pm", "20:60", "00:00", "0:00"])
def test_bad_cutoff_setting_names_the_variable(text):
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_CUTOFF"):
        model.parse_cutoff(text)


@pytest.mark.parametrize("value", ["", "a" * 129, "bad\nid", "tab\tid"])
def test_ids_must_be_short_printable_and_present(value):
    with pytest.raises(InvalidArgument):
        model.check_id(value, "user_id")


@pytest.mark.parametrize("value", ["nel\x85id", "\x80", "csi\x9bid"])
def test_an_id_with_a_c1_control_character_is_refused_as_the_order_service_refuses_it(value):
    # Unicode's control characters (category Cc) are C0, DEL and C1 alike (docs/conventions.md):
    # U+0085 is a line break to many readers of a published entrant list.
    with pytest.raises(InvalidArgument) as err:
        model.check_id(value, "user_id")
    assert err.value.reason == "INVALID_ID"


def test_page_size_bounds():
    assert model.check_page_size(0, 30, 100) == 30
    assert model.check_page_size(100, 30, 100) == 100
    for bad in (-1, 101):
        with pytest.raises(InvalidArgument) as err:
            model.check_page_size(bad, 30, 100)
        assert err.value.reason == "INVALID_PAGE_SIZE"


# --- beacons and state transitions ----------------------------------------------------------


def test_drand_round_is_the_first_published_at_or_after_the_cutoff():
    genesis, period = model.DRAND_CHAINS["drand:quicknet"]
    cutoff_ms = (genesis + 3000 * period + 1) * 1000
    r = int(model.beacon_round_for("drand:quicknet", cutoff_ms))
    assert genesis + (r - 1) * period >= cutoff_ms / 1000 > genesis + (r - 2) * period
    with pytest.raises(InvalidArgument) as err:
        model.check_beacon_round("drand:quicknet", str(r - 1), cutoff_ms)
    assert err.value.reason == "BEACON_ROUND_TOO_EARLY"
    model.check_beacon_round("drand:quicknet", str(r), cutoff_ms)


@pytest.mark.parametrize("round_text", [
    "²",  # str.isdigit() accepts it, int() raised ValueError: an INTERNAL
    "①",
    "9" * 25,  # more digits than any 64-bit round
    "١٢٣٤٥٦٧٨٩",  # Arabic-Indic digits: int() reads them
    "１２３４５６７８９",  # full-width digits: likewise
    "", "-5", "+5", " 5", "5 ", "5.0",
])
def test_a_drand_round_must_be_ascii_digits_within_int64(round_text):
    cutoff_ms = 1_769_601_600_000
    with pytest.raises(InvalidArgument) as err:
        model.check_beacon_round("drand:quicknet", round_text, cutoff_ms)
    assert err.value.reason == "INVALID_BEACON_ROUND"
    assert [f for f, _ in err.value.violations] == ["beacon_round"]
    model.check_beacon_round("drand:quicknet", str(2**63 - 1), cutoff_ms)  # far in the future, but a round


def test_unknown_beacon_sources_name_the_cutoff_instant():
    assert model.beacon_round_for("auditor", 1_769_601_600_000) == "2026-01-28T12:00:00Z"


def draw(**kw):
    base = model.new_draw(SH, date(2026, 1, 28), time(20, 0), 1_000, seed=bytes(32))
    from dataclasses import replace

    return replace(base, **kw)


def test_run_is_refused_before_the_cutoff():
    d = draw()
    with pytest.raises(FailedPrecondition) as err:
        model.check_runnable(d, d.cutoff_ms - 1, "")
    assert err.value.reason == "DRAW_NOT_CLOSED"
    model.check_runnable(d, d.cutoff_ms, "")


def test_a_committed_beacon_requires_its_value_and_no_beacon_refuses_one():
    with pytest.raises(InvalidArgument) as err:
        model.check_runnable(draw(beacon_source="drand:quicknet", beacon_round="5"), 2**60, "")
    assert err.value.reason == "BEACON_VALUE_REQUIRED"
    with pytest.raises(InvalidArgument) as err:
        model.check_runnable(draw(), 2**60, "late-value")
    assert err.value.reason == "BEACON_NOT_COMMITTED"


def test_amending_a_commit_never_touches_the_seed_and_closes_at_the_cutoff():
    d = draw()
    wanted = model.new_draw(SH, date(2026, 1, 28), time(20, 0), 2_000, winner_count=5)
    amended = model.amend_commit(d, wanted, {"winner_count"}, 2_000)
    assert amended.winner_count == 5 and amended.seed == d.seed and amended.commitment == d.commitment
    assert model.amend_commit(d, wanted, set(), d.cutoff_ms + 1) is d  # a bare retry after the cut-off
    with pytest.raises(FailedPrecondition) as err:
        model.amend_commit(d, wanted, {"winner_count"}, d.cutoff_ms)
    assert err.value.reason == "ENTRIES_CLOSED"
    bound = draw(beacon_source="drand:quicknet", beacon_round="9")
    other = model.new_draw(SH, date(2026, 1, 28), time(20, 0), 2_000, beacon_source="auditor", beacon_round="x")
    with pytest.raises(FailedPrecondition) as err:
        model.amend_commit(bound, other, {"beacon_source"}, 2_000)
    assert err.value.reason == "BEACON_ALREADY_BOUND"


def test_a_beacon_bound_to_a_committed_day_follows_that_days_cutoff_not_todays_setting():
    d = draw()  # committed with entries closing at 20:00
    # The same request after a restart with MIANDAN_LOTTERY_CUTOFF=18:00.
    wanted = model.new_draw(SH, date(2026, 1, 28), time(18, 0), 2_000, beacon_source="drand:quicknet")
    amended = model.amend_commit(d, wanted, {"beacon_source"}, 2_000)
    assert amended.beacon_round == model.beacon_round_for("drand:quicknet", d.cutoff_ms) != wanted.beacon_round
    assert model.amend_commit(amended, wanted, {"beacon_source"}, 3_000) is amended  # its retry
    with pytest.raises(InvalidArgument) as err:
        model.amend_commit(d, wanted, {"beacon_source", "beacon_round"}, 2_000)
    assert err.value.reason == "BEACON_ROUND_TOO_EARLY"


def test_reveal_records_winners_hash_and_beacon():
    d = draw(winner_count=2)
    out = model.reveal(d, USERS, "bv", d.cutoff_ms + 5)
    assert out.drawn and out.winners == tuple(model.select_winners(d.seed, "bv", USERS, 2))
    assert out.entrants_hash == model.entrants_hash(USERS) and out.entrant_count == 10
    assert model.status_of(out, 0) == model.Status.DRAWN
    assert model.status_of(d, d.cutoff_ms - 1) == model.Status.OPEN
    assert model.status_of(d, d.cutoff_ms) == model.Status.CLOSED


def test_a_day_asked_about_before_it_begins_is_upcoming_not_open():
    d = draw()  # 2026-01-28, Asia/Shanghai: the day begins at 2026-01-27 16:00 UTC
    start = int(datetime(2026, 1, 27, 16, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert model.status_of(d, start - 1) == model.Status.UPCOMING
    assert model.status_of(d, start) == model.Status.OPEN
    assert model.status_of(d, 0) == model.Status.UPCOMING


def test_a_day_past_its_cut_off_that_nobody_committed_is_not_held_not_closed():
    """CLOSED promises winners; a day without a commitment can no longer be committed or drawn."""
    uncommitted = dataclasses.replace(draw(), commitment="")
    assert model.status_of(uncommitted, uncommitted.cutoff_ms - 1) == model.Status.OPEN
    assert model.status_of(uncommitted, uncommitted.cutoff_ms) == model.Status.NOT_HELD
    assert model.status_of(draw(), draw().cutoff_ms) == model.Status.CLOSED


@pytest.mark.parametrize("source, ok", [
    ("drand:quicknet", True), ("auditor-2026.v1", True), ("drand:quicknеt", False),  # a Cyrillic е
    ("drand:quick net", False), ("ｄrand:quicknet", False), ("", False), ("x" * 65, False),
])
def test_a_beacon_source_is_plain_ascii_so_a_look_alike_cannot_pass_for_a_public_one(source, ok):
    assert model.is_beacon_source(source) is ok
