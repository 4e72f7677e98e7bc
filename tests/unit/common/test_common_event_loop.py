"""services.common.server.run: every `python -m services.<svc>` runs on uvloop unless told not to."""
import asyncio

import uvloop  # noqa: F401 - a dependency: its absence must fail this file, not skip it

from services.common.server import run


async def _loop_module():
    return type(asyncio.get_running_loop()).__module__


def test_services_run_on_uvloop_by_default(monkeypatch):
    monkeypatch.delenv("MIANDAN_EVENT_LOOP", raising=False)
    assert run(_loop_module()).startswith("uvloop")


def test_the_standard_loop_can_be_forced(monkeypatch):
    monkeypatch.setenv("MIANDAN_EVENT_LOOP", "asyncio")
    assert run(_loop_module()).startswith("asyncio")
