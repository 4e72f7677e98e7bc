"""A relay that answers, but never finishes answering (a byte now and then, each within the
socket's timeout), holds the fetch of one relay for a bounded time, not for days: the
scheduler's tick waits on that fetch, and every campaign's commits and draws wait on the tick."""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone

import pytest

from services.common.clock import FakeClock
from services.lottery import beacon as beacon_module
from services.lottery.beacon import DrandBeacon

from .conftest import CAMPAIGN
from .test_lottery_beacon_fetch import DAY, RANDOMNESS, ROUND, SIGNATURE, Relay, a_day_bound_to_the_round

# A hang guard only: the fetch is bounded far below it.
HANG_GUARD_S = 20.0


@pytest.fixture
def clock():
    # The morning of the day the beacon tests bind (test_lottery_beacon_fetch.py).
    return FakeClock(datetime(2023, 9, 15, 2, 0, tzinfo=timezone.utc))


@pytest.fixture(autouse=True)
def short_fetch_deadline(monkeypatch):
    monkeypatch.setattr(beacon_module, "FETCH_DEADLINE_S", 0.5)


class TricklingRelay:
    """Answers every request with a status line trickled a byte every 50 ms, forever."""

    def __init__(self) -> None:
        self.dropped = asyncio.Event()  # the client gave up on the connection
        self.server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            while True:
                writer.write(b"H")
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof():
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.dropped.set()
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        finally:
            self.server.close()


async def test_a_relay_that_never_finishes_answering_is_given_up_for_the_next(tmp_path, fake_card_server, clock):
    good = Relay({"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE})
    lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, good)
    trickling = TricklingRelay()
    try:
        clock.advance(hours=9, seconds=10)  # past the cut-off and the round's time
        async with trickling.serving() as slow:
            lot.server.lottery.beacon = DrandBeacon([slow, good.url])
            done = await asyncio.wait_for(lot.server.scheduler.tick(), HANG_GUARD_S)
            assert done["drawn"] == [f"{CAMPAIGN}/{DAY}"]
            # Given up for good: no thread left reading from it for days.
            await asyncio.wait_for(trickling.dropped.wait(), HANG_GUARD_S)
    finally:
        await lot.stop()
        good.close()


async def test_a_fetch_given_up_is_a_relay_failure_not_an_error_of_the_call():
    trickling = TricklingRelay()
    async with trickling.serving() as slow:
        with pytest.raises(OSError):
            await asyncio.wait_for(beacon_module.http_get(f"{slow}/public/1"), HANG_GUARD_S)
        await asyncio.wait_for(trickling.dropped.wait(), HANG_GUARD_S)
