"""A client that vanishes without closing its connection (a phone out of signal, a NAT that
dropped the mapping) must not hold a server stream forever: the server's keepalive ping goes
unanswered, the connection closes and the stream's handler is cancelled. The vanishing is a TCP
proxy that stops moving bytes both ways while keeping both sockets open: no FIN, no RST."""
import asyncio
import contextlib
import time

import grpc
import pytest

from services.common.auth import internal_metadata

from .kit_server import kit_settings, start_generic

SERVICE = "test.Watch"


class BlackHoleProxy:
    """Forwards 127.0.0.1:port to the server until black_hole(); then reads nothing and writes
    nothing more, and closes nothing until close()."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.pumps: list[asyncio.Task] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, client_r, client_w) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [client_w, server_w]
        self.pumps += [asyncio.ensure_future(self._pump(client_r, server_w)), asyncio.ensure_future(self._pump(server_r, client_w))]

    @staticmethod
    async def _pump(reader, writer) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    def black_hole(self) -> None:
        for pump in self.pumps:
            pump.cancel()

    async def close(self) -> None:
        self.black_hole()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


async def test_a_vanished_clients_idle_stream_is_cancelled_by_keepalive(monkeypatch):
    monkeypatch.setenv("MIANDAN_KEEPALIVE_SECONDS", "1")
    monkeypatch.setenv("MIANDAN_KEEPALIVE_TIMEOUT_SECONDS", "1")
    watching = 0
    cancelled = asyncio.Event()

    async def watch(request, context):
        nonlocal watching
        watching += 1
        try:
            yield b"subscribed"
            await asyncio.Event().wait()  # a quiet store: no change ever comes
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            watching -= 1

    server, port = await start_generic(SERVICE, {"Watch": grpc.unary_stream_rpc_method_handler(watch)})
    proxy = BlackHoleProxy(port)
    # No client keepalive: the client is the one that vanished, only the server can notice.
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{await proxy.start()}")
    try:
        stream = channel.unary_stream(f"/{SERVICE}/Watch")(b"", metadata=internal_metadata(kit_settings()))
        assert await asyncio.wait_for(stream.read(), 5) == b"subscribed"
        assert watching == 1
        proxy.black_hole()
        began = time.monotonic()
        # Keepalive 1 s + timeout 1 s: gone in ~2 s; 10 s bounds the test either way.
        await asyncio.wait_for(cancelled.wait(), 10)
        assert watching == 0
        assert time.monotonic() - began < 10
        stream.cancel()
    finally:
        await proxy.close()
        await channel.close(grace=None)
        await server.stop(0)
