"""A stop ends the open response streams first. A watch stream (WatchOrder, WatchStoreOrders,
the catalog's WatchMenuChanges the order service always holds) never finishes by itself: left to
the drain it held every stop for the whole grace period, while the stopping process refused new
calls and kept its port, and then ended without retry advice."""
import asyncio
import dataclasses

import grpc
import pytest

from services.common.admission import AdmissionController
from services.common.auth import AccessPolicy, internal_metadata
from services.common.errors import error_details
from services.common.server import build_server

from .kit_server import kit_settings

SERVICE = "test.Watch"
LONG_GRACE_S = 60.0


async def _serve(handlers):
    settings = dataclasses.replace(kit_settings(), grace_seconds=LONG_GRACE_S)
    server = build_server(
        settings,
        service_names=[SERVICE],
        register=lambda s: s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),)),
        policy=AccessPolicy(settings, {}),
        admission=AdmissionController(8, min_limit=8, max_limit=8, max_wait_ms=0),
    )
    return server, await server.start()


async def _ended_by(stream):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await stream.read()  # raises once the stream ends with a status
    return caught.value


async def test_a_quiet_stream_is_ended_unavailable_with_retry_advice_and_the_stop_does_not_wait_the_grace():
    unsubscribed = asyncio.Event()

    async def watch(request, context):
        try:
            yield b"subscribed"
            await asyncio.Event().wait()  # a quiet order: no change ever comes
        finally:
            unsubscribed.set()

    server, port = await _serve({"Watch": grpc.unary_stream_rpc_method_handler(watch)})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.unary_stream(f"/{SERVICE}/Watch")(b"", metadata=internal_metadata(kit_settings()))
        assert await asyncio.wait_for(stream.read(), 5) == b"subscribed"
        stopping = asyncio.ensure_future(server.stop())
        err = await asyncio.wait_for(_ended_by(stream), 10)
        details = error_details(err)
        assert (details["code"], details["reason"]) == ("UNAVAILABLE", "SHUTTING_DOWN")
        assert details["retry_after_ms"] and details["retry_after_ms"] > 0
        assert unsubscribed.is_set()  # the handler's own clean-up ran
        # The grace is a minute: before, the stop waited all of it for this stream.
        await asyncio.wait_for(stopping, 10)


async def test_a_busy_stream_is_ended_the_same_way_once_its_item_is_sent():
    async def firehose(request, context):
        n = 0
        while True:
            n += 1
            yield n.to_bytes(8, "big")
            await asyncio.sleep(0)

    server, port = await _serve({"Watch": grpc.unary_stream_rpc_method_handler(firehose)})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.unary_stream(f"/{SERVICE}/Watch")(b"", metadata=internal_metadata(kit_settings()))
        await asyncio.wait_for(stream.read(), 5)
        stopping = asyncio.ensure_future(server.stop())
        err = await asyncio.wait_for(_ended_by(stream), 10)
        assert (error_details(err)["code"], error_details(err)["reason"]) == ("UNAVAILABLE", "SHUTTING_DOWN")
        await asyncio.wait_for(stopping, 10)


async def test_a_unary_call_in_flight_still_finishes_during_the_drain():
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request, context):
        started.set()
        await release.wait()
        return b"done"

    async def watch(request, context):
        yield b"subscribed"
        await asyncio.Event().wait()

    server, port = await _serve({
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Watch": grpc.unary_stream_rpc_method_handler(watch),
    })
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        md = internal_metadata(kit_settings())
        stream = channel.unary_stream(f"/{SERVICE}/Watch")(b"", metadata=md)
        await asyncio.wait_for(stream.read(), 5)
        call = channel.unary_unary(f"/{SERVICE}/Slow")(b"", metadata=md)
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.wait_for(_ended_by(stream), 10)
        release.set()
        assert await asyncio.wait_for(call, 10) == b"done"
        await asyncio.wait_for(stopping, 10)


async def test_a_stop_without_grace_still_tells_a_stream_why_it_ended():
    async def watch(request, context):
        yield b"subscribed"
        await asyncio.Event().wait()

    server, port = await _serve({"Watch": grpc.unary_stream_rpc_method_handler(watch)})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.unary_stream(f"/{SERVICE}/Watch")(b"", metadata=internal_metadata(kit_settings()))
        assert await asyncio.wait_for(stream.read(), 5) == b"subscribed"
        stopping = asyncio.ensure_future(server.stop(0))
        err = await asyncio.wait_for(_ended_by(stream), 10)
        assert (error_details(err)["code"], error_details(err)["reason"]) == ("UNAVAILABLE", "SHUTTING_DOWN")
        await asyncio.wait_for(stopping, 10)
