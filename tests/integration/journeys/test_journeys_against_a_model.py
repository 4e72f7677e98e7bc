"""Seeded random journeys of many users through the real gateway and the four services
(in-process, real SQLite, one FakeClock): joins with and without pass-phrases (chained, one's
own, wrong), wallets, orders placed directly and from a sentence, payments, cancels, order lists,
lottery entries, retries under the same request_id and calls made at once. Every answer agrees
with the model of the published rules (journey_model), and the audit finds nothing afterwards.
More seeds: MIANDAN_JOURNEY_SEEDS=1-40 (steps: MIANDAN_JOURNEY_STEPS)."""
from __future__ import annotations

import datetime as dt
import os

import pytest

import services.audit
from services.audit import run_audit
from tests.integration.journeys.journey_suite import CAMPAIGN, SHANGHAI, journey_suite
from tests.integration.journeys.journeys import Call, Journey

pytestmark = pytest.mark.timeout(120)


def _seeds() -> list[int]:
    spec = os.environ.get("MIANDAN_JOURNEY_SEEDS", "")
    if not spec:
        return [11, 12, 13]
    first, _, last = spec.partition("-")
    return list(range(int(first), int(last or first) + 1))


STEPS = int(os.environ.get("MIANDAN_JOURNEY_STEPS", "300"))


@pytest.mark.parametrize("seed", _seeds())
async def test_seeded_journeys_through_the_gateway_agree_with_the_model_and_audit_clean(tmp_path, monkeypatch, seed):
    # The worlds hold still when the audit runs: a tenth of a second is as good a second look.
    monkeypatch.setattr(services.audit, "DEFAULT_CONFIRM_AFTER_S", 0.1)
    # Today at 10:00 in Shanghai: the audit judges card holds by the real clock, and the
    # lottery's day is open until 20:00 (the journeys stay within a few hours).
    today = dt.datetime.now(SHANGHAI).date()
    async with journey_suite(tmp_path, dt.datetime.combine(today, dt.time(10, 0), tzinfo=SHANGHAI)) as env:
        journey = Journey(env, seed, users=24)
        for step in range(STEPS):
            if step == STEPS // 2:
                await journey.night(env.servers[3])
            await journey.one_step()
        for user in journey.users:  # a last look at everyone
            await journey.run(Call("wallet", user))
            await journey.run(Call("orders", user))
        assert await run_audit(env.settings, CAMPAIGN, confirm_after=0.1) == []
