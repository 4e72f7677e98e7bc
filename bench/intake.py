"""`make bench-intake`: how fast a grpc.aio server takes calls in, one hot method against several.

Why this exists: grpc.aio's server keeps ONE outstanding request to gRPC's core per registered
method (`_server_main_loop` in grpcio's aio/server.pyx.pxi). A call of that method reaches Python
only once the previous one has, and each hand-over takes several turns of the event loop (the
core's completion, the poller thread, the request task, asyncio.wait, the main loop). While the
loop is busy with other calls, calls of one hot method therefore wait in the core, where neither
admission control nor a metric sees them, however cheap their handler is. Under a flood of
PlaceOrder this is the floor of how fast the gateway can refuse in Python (bench.overload's
"admission" refusals), and why gRPC's own bound on held calls (Settings.max_pending_calls) is
what answers the excess within milliseconds.

The figure: one server process with a working method (CPU, an awaited sleep standing in for an
upstream call, CPU again) kept busy by one client process, and a second client process keeping
calls in flight to handlers that answer at once, either all to ONE method or spread over FOUR.
Same handlers, same server, same load; only the number of methods differs.

    python -m bench.intake [--seconds S] [--work-in-flight N] [--quick-in-flight N] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

from bench.loadgen import free_port, machine, percentile, table

SERVICE = "miandan.bench.Intake"
QUICK_METHODS = ("Quick0", "Quick1", "Quick2", "Quick3")
WORK_CPU_US = 300  # before and after the awaited "upstream call"
WORK_WAIT_S = 0.005
HEADERS = ("quick calls to", "quick calls/s", "quick p50 ms", "quick p99 ms", "work calls/s", "work p50 ms", "failed calls")


def _burn(us: int) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def _server_main(port: int) -> None:
    import grpc

    async def work(request: bytes, context: Any) -> bytes:
        _burn(WORK_CPU_US)
        await asyncio.sleep(WORK_WAIT_S)
        _burn(WORK_CPU_US)
        return b""

    async def quick(request: bytes, context: Any) -> bytes:
        return b""

    async def main() -> None:
        handlers = {"Work": grpc.unary_unary_rpc_method_handler(work)}
        handlers.update({m: grpc.unary_unary_rpc_method_handler(quick) for m in QUICK_METHODS})
        server = grpc.aio.server()
        # Registered methods, as the generated add_*Servicer_to_server registers every service's.
        server.add_registered_method_handlers(SERVICE, handlers)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        import uvloop  # the services' loop (services.common.server.run)

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(main())


def _client_main(role: str, port: int, methods: tuple[str, ...], in_flight: int, start_at: float, seconds: float, queue: Any) -> None:
    import grpc

    async def main() -> tuple[int, list[float], int]:
        latencies: list[float] = []
        failed = 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls = [channel.unary_unary(f"/{SERVICE}/{m}") for m in methods]
            # Connected (the server may still be starting) before the clock starts.
            await calls[0](b"", timeout=20, wait_for_ready=True)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = start_at + seconds

            async def loop(i: int) -> None:
                nonlocal failed
                call = calls[i % len(calls)]
                while time.time() < end:
                    t = time.perf_counter()
                    try:
                        await call(b"", timeout=5)
                        latencies.append((time.perf_counter() - t) * 1000)
                    except grpc.aio.AioRpcError:
                        failed += 1

            await asyncio.gather(*(loop(i) for i in range(in_flight)))
        return len(latencies), latencies, failed

    try:
        queue.put((role, *asyncio.run(main())))
    except BaseException as exc:  # report, never hang the parent
        queue.put((role, 0, [], -1))
        print(f"intake client failed: {exc!r}", file=sys.stderr)


def measure(quick_methods: tuple[str, ...], *, seconds: float, work_in_flight: int, quick_in_flight: int) -> list[Any]:
    """One layout on a fresh server: [label, quick/s, p50, p99, work/s, work p50, failed]."""
    ctx = mp.get_context("spawn")
    port = free_port()
    server = ctx.Process(target=_server_main, args=(port,), daemon=True)
    server.start()
    try:
        queue = ctx.Queue()
        start_at = time.time() + 3.0  # spawning and connecting both clients
        clients = [
            ctx.Process(target=_client_main, args=("work", port, ("Work",), work_in_flight, start_at, seconds, queue), daemon=True),
            ctx.Process(target=_client_main, args=("quick", port, quick_methods, quick_in_flight, start_at, seconds, queue), daemon=True),
        ]
        for c in clients:
            c.start()
        results = {}
        for _ in clients:
            role, served, latencies, failed = queue.get(timeout=seconds + 60)
            results[role] = (served, latencies, failed)
        for c in clients:
            c.join(10)
    finally:
        server.terminate()
        server.join(5)
    work, quick = results["work"], results["quick"]
    label = f"{len(quick_methods)} method" + ("s" if len(quick_methods) > 1 else "")
    # A client that crashed reports -1: counted as a failure, never as a clean zero.
    failed = sum(1 if r[2] < 0 else r[2] for r in results.values())
    return [
        label, quick[0] / seconds, percentile(quick[1], 0.5), percentile(quick[1], 0.99),
        work[0] / seconds, percentile(work[1], 0.5), failed,
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per layout (default 6)")
    p.add_argument("--work-in-flight", type=int, default=32, help="working calls kept in flight (default 32)")
    p.add_argument("--quick-in-flight", type=int, default=16, help="at-once calls kept in flight (default 16)")
    p.add_argument("--smoke", action="store_true", help="a few seconds in total, for CI")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.work_in_flight < 1 or args.quick_in_flight < 1:
        p.error("--seconds must be > 0 and the in-flight counts >= 1")
    if args.smoke:
        args.seconds = 1.5
    print(f"machine: {machine()}")
    print(
        f"one server; {args.work_in_flight} working calls in flight ({WORK_CPU_US} us CPU, {WORK_WAIT_S * 1000:.0f} ms wait, "
        f"{WORK_CPU_US} us CPU) and {args.quick_in_flight} calls in flight to handlers that answer at once"
    )
    rows = []
    # one, four, one, four: the machine's drift falls on both layouts alike.
    for layout in (QUICK_METHODS[:1], QUICK_METHODS, QUICK_METHODS[:1], QUICK_METHODS)[: 2 if args.smoke else 4]:
        rows.append(measure(layout, seconds=args.seconds, work_in_flight=args.work_in_flight, quick_in_flight=args.quick_in_flight))
        print(f"  {rows[-1][0]}: {rows[-1][1]:,.0f} quick calls/s, p50 {rows[-1][2]:.1f} ms", flush=True)
    print()
    print(table(HEADERS, rows))
    one = [r for r in rows if r[0] == "1 method"]
    four = [r for r in rows if r[0] != "1 method"]
    best_one, best_four = max(r[1] for r in one), max(r[1] for r in four)
    print(
        f"the same at-once handler, spread over {len(QUICK_METHODS)} methods instead of one: "
        f"{best_four / best_one:.1f}x the calls taken in per second "
        f"(p50 {min(r[2] for r in four):.1f} ms against {min(r[2] for r in one):.1f} ms)"
    )
    if any(r[6] for r in rows):
        print(f"FAILED: {sum(r[6] for r in rows)} call(s) failed or a client did not report")
        return 1
    if not all(r[1] > 0 and r[4] > 0 for r in rows):
        print("FAILED: a layout served no calls")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
