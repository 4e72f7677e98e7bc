"""`python -m services.lottery.verify --gateway` pages VerifyDraw through a gateway that paces
each user (RESOURCE_EXHAUSTED / USER_RATE_LIMITED with RetryInfo): it waits out the delay and
asks for the same page again, within a bounded total wait; other errors fail it in one line."""
from __future__ import annotations

import hashlib
import json
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import json_format

from miandan.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2
from services.common.errors import FailedPrecondition, ResourceExhausted, to_rpc_status
from services.lottery import model, verify

ENTRANTS = [f"user-{i:03d}" for i in range(21)]
PAGE = 3


def drawn_day() -> lottery_service_pb2.VerifyDrawResponse:
    """The lottery's whole answer for a drawn day (every entrant), made with its own model."""
    seed = hashlib.sha256(b"a seed for the test").digest()
    winners = model.select_winners(seed, "", ENTRANTS, 5)
    draw = {
        "campaign_id": "spring-2026", "day": "2026-01-28", "winner_count": 5, "commitment": model.commitment_of(seed),
        "commit_time": "2026-01-27T16:00:00Z", "cutoff_time": "2026-01-28T12:00:00Z", "draw_time": "2026-01-28T12:00:05Z",
        "winners": winners, "entrants_hash": model.entrants_hash(ENTRANTS),
    }
    return json_format.ParseDict({
        "draw": draw, "seed": seed.hex(), "commitment": model.commitment_of(seed), "entrants": ENTRANTS,
        "entrants_hash": model.entrants_hash(ENTRANTS), "entrant_count": len(ENTRANTS),
        "algorithm": "miandan-draw-hmac-sha256", "algorithm_version": 1, "winners": winners,
    }, lottery_service_pb2.VerifyDrawResponse(), ignore_unknown_fields=True)


class PacedGateway(gateway_service_pb2_grpc.GatewayServiceServicer):
    """VerifyDraw in pages of PAGE entrants behind the gateway's pace per user (GCRA: `rate`
    calls a second, bursts of `burst`), on a time that only the client's sleeps move on unless
    `real_time`."""

    def __init__(self, rate: float = 5, burst: int = 2, real_time: bool = False) -> None:
        self.real_time, self._now = real_time, 0.0
        self.day = drawn_day()
        self.interval, self.tolerance = 1 / rate, (burst - 1) / rate
        self.full_at = 0.0
        self.asked: list[str] = []
        self.refused = 0
        self.refusal = None  # a status every call answers instead, when set

    @property
    def now(self) -> float:
        return time.monotonic() if self.real_time else self._now

    def sleep(self, seconds: float) -> None:
        self._now += seconds

    def VerifyDraw(self, request, context):
        self.asked.append(request.page_token)
        if self.refusal is not None:
            context.abort_with_status(self.refusal)
        full_at = max(self.full_at, self.now)
        wait = full_at - self.tolerance - self.now
        if wait > 1e-9:
            self.refused += 1
            context.abort_with_status(to_rpc_status(ResourceExhausted(
                "USER_RATE_LIMITED", "操作太频繁，请稍后再试 / too many requests from this account, slow down", round(wait * 1000),
            )))
        self.full_at = full_at + self.interval
        at = int(request.page_token or 0)
        page = lottery_service_pb2.VerifyDrawResponse()
        page.CopyFrom(self.day)
        del page.entrants[:]
        page.entrants.extend(ENTRANTS[at:at + PAGE])
        page.next_page_token = str(at + PAGE) if at + PAGE < len(ENTRANTS) else ""
        return gateway_service_pb2.VerifyDrawResponse(verification=page)


@pytest.fixture
def gateway(request):
    fake = PacedGateway(**getattr(request, "param", {}))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def test_pages_refused_for_the_users_pace_are_asked_again_after_the_wait(gateway):
    fake, addr = gateway
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.sleep(seconds)

    result = verify.fetch(addr, "", "2026-01-28", "token", via_gateway=True, sleep=sleep)

    assert result["entrants"] == ENTRANTS  # every page once, none skipped
    assert fake.refused == 5 and waits == [0.2] * 5  # the burst of 2, then one page per 0.2 s
    pages = [str(at) if at else "" for at in range(0, len(ENTRANTS), PAGE)]
    assert [t for i, t in enumerate(fake.asked) if i == 0 or t != fake.asked[i - 1]] == pages
    assert len(fake.asked) == len(pages) + fake.refused


@pytest.mark.parametrize("gateway", [{"rate": 10, "burst": 1, "real_time": True}], indirect=True)
def test_the_check_through_a_paced_gateway_verifies_the_whole_day(gateway, monkeypatch, tmp_path, capsys):
    fake, addr = gateway
    monkeypatch.setenv("MIANDAN_USER_TOKEN", "token")
    dump = tmp_path / "day.json"

    status = verify.main(["--gateway", addr, "--day", "2026-01-28", "--dump", str(dump)])

    assert status == 0, capsys.readouterr()
    assert fake.refused > 0 and json.loads(dump.read_text())["entrants"] == ENTRANTS


def test_the_waits_are_bounded_in_all(gateway):
    fake, addr = gateway
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)  # time stands still: the pace never lets the next page through

    with pytest.raises(verify.FetchError) as err:
        verify.fetch(addr, "", "2026-01-28", "token", via_gateway=True, sleep=sleep, max_wait=1.0)
    assert sum(waits) <= 1.0 and len(waits) == 5
    message = str(err.value)
    assert "RESOURCE_EXHAUSTED USER_RATE_LIMITED" in message and "--max-wait" in message and "\n" not in message


def test_another_error_fails_the_check_at_once_in_one_line(gateway, monkeypatch, capsys):
    fake, addr = gateway
    fake.refusal = to_rpc_status(FailedPrecondition("DRAW_NOT_DRAWN", "2026-01-28 尚未开奖\nthe draw has not run yet"))
    monkeypatch.setenv("MIANDAN_USER_TOKEN", "token")

    assert verify.main(["--gateway", addr, "--day", "2026-01-28"]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fake.asked == [""]
    assert err.startswith("cannot check: VerifyDraw failed: FAILED_PRECONDITION DRAW_NOT_DRAWN:")
    assert "the draw has not run yet" in err
