"""Opening hours against a minute-by-minute oracle: seeded random weekly timetables (overnight
periods, 24 h, days off, back-to-back periods) in zones that shift their clocks, at instants
around their shifts and anywhere in the year. Whether a store is open is whether its local
wall-clock minute is covered by a period; a Quote's valid_until must come after the quote and
no later than the first real minute at which that answer flips."""
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from services.catalog.model import WEEK_MINUTES, OpenClock, StoreRecord, next_open_change, validate_hours

# Shifts forward and back, by an hour or half an hour, north and south, on odd offsets, and
# Dublin's "negative" summer time.
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Shanghai", "Australia/Sydney", "Australia/Lord_Howe", "America/St_Johns",
         "Asia/Kathmandu", "Pacific/Chatham", "America/Santiago", "Africa/Casablanca", "Europe/Dublin", "America/Havana"]


def random_timetable(rng):
    if rng.random() < 0.1:
        return validate_hours([(d, 0, 1440) for d in range(1, 8)])[0]
    periods = []
    for day in range(1, 8):
        if rng.random() < 0.15:
            continue  # a day off
        start = rng.randrange(1440)
        for _ in range(rng.choice([1, 1, 2, 3])):
            if start >= 1440:
                break
            close = min(2880, start + rng.choice([1, 30, 60, 240, 600, 1440, rng.randrange(1, 1500)]))
            periods.append((day, start, close))
            start = close + rng.choice([0, 0, 1, 30, 120])  # 0: back to back
    hours, why = validate_hours(periods or [(3, 60, 120)])
    assert hours is not None, why
    return hours


def week_covered(hours):
    """Minute of the week (Monday 00:00 = 0) -> covered by a period; past Sunday wraps to Monday."""
    covered = bytearray(WEEK_MINUTES)
    for p in hours:
        for minute in range(p.open_minute, p.close_minute):
            covered[((p.weekday - 1) * 1440 + minute) % WEEK_MINUTES] = 1
    return covered


def open_by_wall_clock(covered, instant, tz):
    local = instant.astimezone(tz)
    return bool(covered[(local.isoweekday() - 1) * 1440 + local.hour * 60 + local.minute])


def shifts_of(tz, year=2026):
    """The real minutes at which tz's offset changes in `year`."""
    out, t = [], datetime(year, 1, 1, tzinfo=timezone.utc)
    offset = t.astimezone(tz).utcoffset()
    while t.year == year:
        t += timedelta(minutes=15)  # every offset of this century changes on a quarter hour
        if t.astimezone(tz).utcoffset() != offset:
            offset = t.astimezone(tz).utcoffset()
            out.append(t)
    return out


def first_flip(covered, now, tz, was_open):
    minute = now.replace(second=0, microsecond=0)
    for step in range(1, 8 * 1440 + 2):
        instant = minute + timedelta(minutes=step)
        if open_by_wall_clock(covered, instant, tz) != was_open:
            return instant
    return None


def test_open_now_and_valid_until_agree_with_a_minute_by_minute_oracle_around_clock_shifts():
    rng = random.Random(2026_10_25)
    shifts = {name: shifts_of(ZoneInfo(name)) for name in ZONES}
    for case in range(300):
        name = rng.choice(ZONES)
        tz = ZoneInfo(name)
        hours = random_timetable(rng)
        covered = week_covered(hours)
        store = StoreRecord("s", "b", "s", 30.0, 120.0, hours, False, name)
        if shifts[name] and rng.random() < 0.7:
            spread = rng.choice([3 * 3600, 180])
            now = rng.choice(shifts[name]) + timedelta(seconds=rng.randrange(-spread, spread), microseconds=rng.randrange(10**6))
        else:
            now = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6))
        label = (case, name, now, now.astimezone(tz), [(p.weekday, p.open_minute, p.close_minute) for p in hours])
        is_open = OpenClock(now).is_open(store)
        assert is_open == open_by_wall_clock(covered, now, tz), label
        flip = first_flip(covered, now, tz, is_open)
        valid_until = next_open_change(store, now)
        assert valid_until is not None and valid_until > now, (label, valid_until)
        assert flip is None or valid_until <= flip, (label, valid_until, flip)
