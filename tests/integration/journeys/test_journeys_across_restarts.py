"""The seeded journeys of test_journeys_against_a_model, with restarts at random points: the
gateway stopped gracefully (open WatchOrder streams end UNAVAILABLE SHUTTING_DOWN) and started
again on a new port or its own, or one upstream service stopped and started again on its data,
while calls are in flight. Clients retry as an app does: the same request, after the advised
RetryInfo delay, to the gateway's new address. Every answer a client finally gets agrees with the
model; a confirm whose preview the restart lost answers the order its first attempt placed, or
PREVIEW_NOT_FOUND when it placed none; the audit finds nothing afterwards.
More seeds: MIANDAN_RESTART_SEEDS=1-20 (steps: MIANDAN_RESTART_STEPS)."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

import grpc
import pytest

import services.audit
from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.audit import run_audit
from services.common.errors import error_details
from tests.integration.journeys.journey_model import CANCELLED, ITEM_PRICE, Refused
from tests.integration.journeys.journeys import NUMBERS, Call, Journey, refusal_of
from tests.integration.journeys.journey_suite import CAMPAIGN, HANGZHOU, SHANGHAI
from tests.integration.journeys.restart_suite import UPSTREAMS, restartable_suite

pytestmark = pytest.mark.timeout(180)

# What an app retries: the call may not have reached the server, or its answer was lost.
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
MAX_ATTEMPTS = 40
# Real time between attempts while a restarted peer is found again (channels reconnect in real
# time); the advised delay itself passes on the FakeClock.
RECONNECT_PAUSE_S = 0.05


def _seeds() -> list[int]:
    spec = os.environ.get("MIANDAN_RESTART_SEEDS", "")
    if not spec:
        return [21, 23]
    first, _, last = spec.partition("-")
    return list(range(int(first), int(last or first) + 1))


STEPS = int(os.environ.get("MIANDAN_RESTART_STEPS", "200"))


class RestartJourney(Journey):
    def __init__(self, env: Any, seed: int, users: int) -> None:
        super().__init__(env, seed, users)
        self.lost_previews: set[str] = set()  # shown before a gateway restart
        self.maybe_placed: set[str] = set()  # request_ids an attempt of which lost its answer
        self.retries = 0
        self.lottery_restart_step = -1

    def check_wallet(self, call: Call, view: Any) -> None:
        if 0 <= self.step - self.lottery_restart_step <= 3 and not (view.lottery.entered_today or view.lottery.entries_open):
            # The lottery restarting (or just back, its channel reconnecting): the wallet is shown without today's standing (compose.
            # _draw_today), as "not entered, entries closed" (no field says it is unknown).
            u = self.model.user(call.user)
            view = type(view).FromString(view.SerializeToString())
            view.lottery.entered_today = self.today() in u.entered_days
            view.lottery.entries_open = self.entries_open()
        super().check_wallet(call, view)

    async def rpc(self, method: str, request: Any, user: str) -> Any:
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await getattr(self.env.gateway, method)(request, metadata=self.env.auth(user), timeout=20)
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRIED or attempt == MAX_ATTEMPTS - 1:
                    return refusal_of(err)
                self.retries += 1
                if getattr(request, "request_id", ""):
                    self.maybe_placed.add(request.request_id)
                await self.env.up.wait()
                self.env.clock.advance((error_details(err).get("retry_after_ms") or 0) / 1000)
                await asyncio.sleep(RECONNECT_PAUSE_S)
        raise AssertionError("unreachable")

    async def _preview(self, call: Call) -> None:
        (quantity,) = call.args
        got = await self.rpc("OrderByText", gw.OrderByTextRequest(text=f"{NUMBERS[quantity]}杯拿铁", location=HANGZHOU), call.user)
        if isinstance(got, Refused) or not got.preview.card_unknown:
            return await self.replay_answer_to(super()._preview, call, got)
        # The card service restarting: the preview is shown without its card part (compose.
        # _best_card), and a confirm asks for the card again.
        p = got.preview
        self.same(call, "preview.total_fen", p.total_fen, quantity * ITEM_PRICE)
        self.same(call, "preview without its card", (p.card_id, p.card_covered_fen, p.payable_fen), ("", 0, p.total_fen))
        self.previews.setdefault(call.user, []).append((p.preview_id, quantity, False))
        self.preview_expiry[p.preview_id] = p.expire_time.ToMilliseconds()

    async def replay_answer_to(self, judge: Any, call: Call, answer: Any) -> None:
        saved = self.rpc

        async def canned(method: str, request: Any, user: str) -> Any:
            return answer

        self.rpc = canned  # type: ignore[method-assign]
        try:
            await judge(call)
        finally:
            self.rpc = saved  # type: ignore[method-assign]

    async def _confirm_preview(self, call: Call) -> None:
        rid, preview_id, quantity, had_card = call.args
        placed = self.model.user(call.user).placements.get(rid)
        if preview_id not in self.lost_previews or placed is not None:
            # Placed before: the retry is answered with that order, preview or not.
            return await super()._confirm_preview(call)
        req = gw.OrderByTextRequest(request_id=rid, preview_id=preview_id, confirm=True)
        got = await self.rpc("OrderByText", req, call.user)
        if isinstance(got, Refused) or rid not in self.maybe_placed:
            return self.expect_refusal(call, got, Refused("NOT_FOUND", "PREVIEW_NOT_FOUND"))
        # The first attempt placed the order and lost its answer to the restart.
        self.placed(call, got, got.order, rid, quantity, "PREVIEW_CARD" if had_card else "BEST", "")

    async def watch_then_restart_gateway(self, grace: float, same_port: bool) -> None:
        """A watcher of one live order sees its stream end UNAVAILABLE SHUTTING_DOWN, not hang."""
        watched = [(u.user_id, o.order_id) for u in self.model.users.values() for o in u.orders.values() if o.status != CANCELLED]
        stream = None
        if watched:
            user, order_id = self.rng.choice(watched)
            stream = self.env.gateway.WatchOrder(gw.WatchOrderRequest(order_id=order_id), metadata=self.env.auth(user), timeout=30)
            await stream.read()  # the order as it is: the stream is open
        self.lost_previews |= set(self.preview_expiry)
        await self.env.restart("gateway", grace, same_port)
        if stream is not None:
            call = Call("watch", user, (order_id,))
            try:
                while True:
                    msg = await stream.read()
                    if msg is grpc.aio.EOF:
                        self.fail(call, "the stream ended OK on a gateway stop")
            except grpc.aio.AioRpcError as err:
                self.same(call, "stream end", (err.code().name, error_details(err).get("reason")), ("UNAVAILABLE", "SHUTTING_DOWN"))

    async def restart_somewhere(self) -> None:
        """Stops something after a few turns of the loop, so that it lands amid the step's calls."""
        for _ in range(self.rng.randint(0, 30)):
            await asyncio.sleep(0)
        name = self.rng.choice(["gateway", "gateway", *UPSTREAMS])
        grace = self.rng.choice([0.0, 0.2])
        self.log.append(f"{self.step}: restart {name} (grace {grace})")
        if name == "gateway":
            self.lost_previews |= set(self.preview_expiry)
            await self.env.restart("gateway", grace, self.rng.random() < 0.5)
        else:
            if name == "lottery":
                self.lottery_restart_step = self.step
            await self.env.restart(name, grace)

    async def one_step_amid_a_restart(self) -> None:
        await asyncio.gather(self.one_step(), self.restart_somewhere())


@pytest.mark.parametrize("seed", _seeds())
async def test_journeys_across_gateway_and_service_restarts_agree_with_the_model_and_audit_clean(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(services.audit, "DEFAULT_CONFIRM_AFTER_S", 0.1)
    today = dt.datetime.now(SHANGHAI).date()
    async with restartable_suite(tmp_path, dt.datetime.combine(today, dt.time(10, 0), tzinfo=SHANGHAI)) as env:
        journey = RestartJourney(env, seed, users=16)
        for step in range(STEPS):
            if step == STEPS // 2:
                await journey.night(env.servers["lottery"])
            r = journey.rng.random()
            if r < 0.06:
                await journey.one_step_amid_a_restart()
            elif r < 0.08:
                await journey.watch_then_restart_gateway(0.2, journey.rng.random() < 0.5)
            else:
                await journey.one_step()
        for user in journey.users:
            await journey.run(Call("wallet", user))
            await journey.run(Call("orders", user))
        assert env.restarts, "no restart happened: the test proves nothing"
        assert await run_audit(env.settings, CAMPAIGN, confirm_after=0.1) == []
