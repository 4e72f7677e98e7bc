"""The order service played against an independent reference model (reference_model.py): long
seeded random sequences of placements (with and without cards, from the cart), payments (right,
wrong and late references), cancellations by buyer and merchant, merchant steps, sweeps, clock
jumps past payment windows and card validity, upstream failures and lost answers, retries under
the same request_id, concurrent groups and restarts, compared after every step with what the
protos and DESIGN.md promise, and the card and money ledgers balanced at the end.

A few seeds run here; many more run locally with the same driver (see reference_model.Run)."""
from __future__ import annotations

import logging

import pytest

from tests.unit.order.reference_model import Run


@pytest.fixture(autouse=True)
def quiet_logs(caplog):
    # Deferred compensations log a warning each; thousands of them only slow the run.
    logging.getLogger("miandan.order").setLevel(logging.ERROR)
    yield
    logging.getLogger("miandan.order").setLevel(logging.NOTSET)


@pytest.mark.parametrize("seed", [3, 17, 41])
async def test_healthy_upstreams_agree_with_the_reference_model_step_by_step(tmp_path, seed):
    await Run(tmp_path / "order.db", seed).play(steps=200, fault_rate=0.0)


@pytest.mark.parametrize("seed", [7, 26, 49, 113])
async def test_failing_upstreams_leave_the_orders_and_ledgers_the_model_allows(tmp_path, seed):
    await Run(tmp_path / "order.db", seed).play(steps=200, fault_rate=0.3)
