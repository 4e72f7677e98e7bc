"""Ctrl-C during the demo's story ends it: while a step waits on a gRPC call, and when a step
lost the cancellation (CI saw a Ctrl-C right after the suite came up ignored for the whole
story)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest

import scripts.demo as demo_module


def story_of(family, later_step) -> SimpleNamespace:
    """A Demo with the story's steps: `family` first, `later_step` for every later one."""
    steps = {name: later_step for name in ("order_by_text", "merchant", "cancel", "lottery_entry", "browse", "lottery_draw")}
    demo = SimpleNamespace(own_suite=False, family=family, problems=[], **steps)
    demo.problem = demo.problems.append
    return demo


@pytest.fixture
async def silent_server():
    """A server whose one method never answers in time: the call is in flight when Ctrl-C comes."""
    started = asyncio.Event()

    async def hang(request: bytes, context) -> bytes:
        started.set()
        await asyncio.sleep(30)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"Hang": grpc.unary_unary_rpc_method_handler(hang)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel.unary_unary("/t.T/Hang"), started
    finally:
        await channel.close()
        await server.stop(0)


async def test_ctrl_c_while_a_step_waits_on_a_grpc_call_ends_the_story(silent_server, monkeypatch):
    hang, started = silent_server
    monkeypatch.setattr(demo_module, "_interrupted", False)
    ran: list[str] = []

    async def family() -> None:
        ran.append("family")
        await hang(b"", timeout=20)

    async def later_step() -> None:
        ran.append(later_step.__name__)

    demo = story_of(family, later_step)
    story = asyncio.ensure_future(demo_module.play(demo, draw_part=True))
    await asyncio.wait_for(started.wait(), 10)
    demo_module.interrupt_story(story, asyncio.get_running_loop())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(story, 10)
    assert ran == ["family"] and demo.problems == []


async def test_a_cancellation_swallowed_inside_a_step_still_ends_the_story(monkeypatch):
    """On Python 3.11 one cancellation can be lost (asyncio.wait_for whose call completes as it is
    cancelled answers the result): the story must end at its next step all the same."""
    monkeypatch.setattr(demo_module, "_interrupted", False)
    ran: list[str] = []
    inside = asyncio.Event()

    async def family() -> None:
        ran.append("family")
        inside.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # lost

    async def later_step() -> None:
        ran.append("later")
        await asyncio.sleep(30)

    demo = story_of(family, later_step)
    story = asyncio.ensure_future(demo_module.play(demo, draw_part=True))
    await asyncio.wait_for(inside.wait(), 10)
    demo_module.interrupt_story(story, asyncio.get_running_loop())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(story, 10)
    assert ran == ["family"]
