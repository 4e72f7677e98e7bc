"""Fixtures for end-to-end tests: the whole suite as `make run` starts it, audited after every
test that used it."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.suite_process import start_suite


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    running = start_suite(tmp_path_factory.mktemp("suite-data"))
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def audited_after(request):
    """Whatever a test did through the public API, the cross-service invariants (budget, caps,
    one redeemed card per paid order, draws) must still hold afterwards."""
    yield
    if "suite" not in request.fixturenames:
        return
    from services.audit import run_audit

    running = request.getfixturevalue("suite")
    addrs = {name: running.addr(name) for name in ("card", "order", "lottery")}
    findings = asyncio.run(run_audit(addrs))
    assert not findings, "audit findings after the test:\n" + "\n".join(map(str, findings))
