"""`make drill`: kill -9 under load, then audit.

Runs the five services the way `make run` does (services.suite.process_specs: same modules, same
environment, one process each), seeds the demo data, and keeps the story's scenario running
through the gateway while it SIGKILLs one service process at random (each service, gateway
included, at least twice; once with --smoke) and restarts it. Clients retry UNAVAILABLE and
DEADLINE_EXCEEDED with the same request_id, as a real app would. Afterwards: every order a
client saw succeed must exist in the order service, and the cross-service audit must find
nothing. Per kill it prints how long orders stopped and how soon after the restart they came
back (`outages`), which is what the crowd feels of a crash.

    python -m bench.drill [--seconds N] [--kills-each K] [--procs P] [--down-seconds S] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import (
    RPC_HEADERS,
    Result,
    bench_env,
    codes_text,
    discover_fixture,
    health_status,
    machine,
    rpc_rows,
    run_workers,
    specs_for,
    table,
    temp_data_dir,
    unusual_samples,
)


async def _all_order_ids(env: dict[str, str]) -> dict[str, str]:
    """order_id -> user_id of every order the order service has (admin ListAllOrders)."""
    from miandan.order.v1 import order_service_pb2, order_service_pb2_grpc
    from services.common.auth import internal_metadata, open_channel
    from services.common.config import Settings

    settings = Settings.from_env("gateway", env)
    md = internal_metadata(settings, admin=True)
    out: dict[str, str] = {}
    async with open_channel(settings, settings.order_addr) as ch:
        stub = order_service_pb2_grpc.OrderServiceStub(ch)
        token = ""
        while True:
            reply = await stub.ListAllOrders(order_service_pb2.ListAllOrdersRequest(page_size=1000, page_token=token), metadata=md, timeout=30)
            out.update((o.order_id, o.user_id) for o in reply.orders)
            token = reply.next_page_token
            if not token:
                return out


@dataclass
class Kill:
    """One SIGKILL and its restart, in wall-clock seconds (the load runs in other processes)."""

    name: str
    killed_at: float
    serving_at: float


@dataclass
class Outage:
    """What one kill cost the crowd, read from the times orders were seen to succeed."""

    kill: Kill
    stall_s: float  # longest stretch without a successful order, from the kill to the next kill
    resumed_s: float | None  # from back SERVING to the first success after it (None: none came)


RESTART_S = 1.0


def kill_interval(load_s: float, kills: int, down_s: float) -> float:
    """Seconds between one restart and the next kill, so that every kill, its time down and its
    restart (about a second) fit in the first 80% of the load and load follows the last one."""
    return (load_s * 0.8 - kills * (down_s + RESTART_S)) / (kills + 1)


def outages(kills: list[Kill], placed_at: list[float], load_end: float) -> list[Outage]:
    """Per kill, the longest stretch in which no order succeeded anywhere, counted from the kill
    to the next kill (or the end of the load), and how long after the restarted process was
    SERVING the first order succeeded: the time the rest of the suite took to find it again."""
    times = sorted(placed_at)
    kills = sorted(kills, key=lambda k: k.killed_at)
    out: list[Outage] = []
    for i, kill in enumerate(kills):
        end = kills[i + 1].killed_at if i + 1 < len(kills) else load_end
        lo, hi = bisect.bisect_left(times, kill.killed_at), bisect.bisect_right(times, end)
        edges = [kill.killed_at, *times[lo:hi], end]
        stall = max(b - a for a, b in zip(edges, edges[1:]))
        j = bisect.bisect_left(times, kill.serving_at)
        resumed = times[j] - kill.serving_at if j < len(times) else None
        out.append(Outage(kill, stall, resumed))
    return out


def outage_rows(found: list[Outage]) -> list[list[str]]:
    return [
        [
            o.kill.name,
            f"{o.kill.serving_at - o.kill.killed_at:.2f}",
            f"{o.stall_s:.2f}",
            "none" if o.resumed_s is None else f"{o.resumed_s:.2f}",
        ]
        for o in found
    ]


OUTAGE_HEADERS = ["killed", "back SERVING after s", "longest stretch without an order s", "first order after SERVING s"]


async def _kill_and_restart(children: list, plan: list[str], interval: float, log: list[Kill], down_s: float = 0.0) -> None:
    from services.suite import wait_serving

    by_name = {c.name: c for c in children}
    for name in plan:
        await asyncio.sleep(interval)
        child = by_name[name]
        pid = child.process.pid
        killed_at = time.time()
        child.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.process.wait)
        await asyncio.sleep(down_s)
        child.start()
        child.restarts += 1
        await wait_serving(child, timeout=60)
        log.append(Kill(name, killed_at, time.time()))
        print(f"killed {name} (pid {pid}), back SERVING as pid {child.process.pid} in {log[-1].serving_at - killed_at:.2f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--kills-each", type=int, default=2, help="SIGKILLs per service (default 2)")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=None, help="random seed of the kill order")
    p.add_argument("--down-seconds", type=float, default=0.0, help="how long a killed service stays down before its restart (default 0)")
    p.add_argument("--smoke", action="store_true", help="each service killed once, ~15 s of load")
    args = p.parse_args(argv)
    from services.suite import SERVICES, process_specs, seed_demo_data, start_in_order

    if args.smoke:
        args.seconds, args.kills_each, args.concurrency = 15.0, 1, 4
    if args.down_seconds < 0:
        p.error("--down-seconds must be 0 or more")
    kills = len(SERVICES) * args.kills_each
    if kill_interval(args.seconds, kills, args.down_seconds) < 1.0:
        p.error(f"{kills} kills of {args.down_seconds:g} s down each do not fit in {args.seconds:g} s of load; give more --seconds")
    rng = random.Random(args.seed)

    print(f"machine: {machine()}")
    problems: list[str] = []
    kill_log: list[Kill] = []
    with temp_data_dir("miandan-drill-") as data:
        env = bench_env(Path(data))
        children = process_specs(env)
        env = children[0].env  # process_specs filled in the upstream addresses
        try:
            async def up() -> None:
                await start_in_order(children, timeout=60)
                await seed_demo_data(env)

            asyncio.run(up())
            fixture = asyncio.run(discover_fixture(env))

            plan = [name for name in SERVICES for _ in range(args.kills_each)]
            rng.shuffle(plan)
            # Kills spread over the first ~80% of the load so the last restart is followed by load.
            interval = kill_interval(args.seconds, len(plan), args.down_seconds)
            specs = specs_for(
                "scenario", f"127.0.0.1:{env['MIANDAN_GATEWAY_PORT']}", env, args.procs, args.concurrency, args.seconds,
                fixture=fixture, retry=True, retry_for_s=30.0, deadline_s=3.0, lead_s=4.0,
            )
            holder: dict[str, Result] = {}
            load = threading.Thread(target=lambda: holder.setdefault("r", run_workers(specs)), daemon=True)
            load.start()
            time.sleep(max(0.0, specs[0].start_at - time.time()))
            asyncio.run(_kill_and_restart(children, plan, interval, kill_log, args.down_seconds))
            load_end = specs[0].start_at + args.seconds
            load.join(args.seconds + 120)
            if load.is_alive():
                problems.append("the load did not finish in time")
            result = holder.get("r", Result())

            health = asyncio.run(health_status(env))
            down = {k: v for k, v in health.items() if v != "SERVING"}
            if down:
                problems.append(f"not SERVING after the drill: {down}")

            from services.audit import run_audit
            from services.common.config import Settings

            findings = asyncio.run(run_audit(Settings.from_env("gateway", env)))
            orders = asyncio.run(_all_order_ids(env))
        finally:
            for child in reversed(children):
                if child.process is not None and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            for child in reversed(children):
                if child.process is not None:
                    try:
                        child.process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        child.process.kill()
                        child.process.wait()

    seen = {oid for _, oid in result.placed}
    missing = sorted(oid for oid in seen if oid not in orders)
    wrong_owner = sorted(oid for user, oid in result.placed if oid in orders and orders[oid] != user)
    print()
    print(table(RPC_HEADERS, rpc_rows(result, args.seconds)))
    print()
    print(table(OUTAGE_HEADERS, outage_rows(outages(kill_log, result.placed_at, load_end))))
    print()
    print(f"kills: {dict(Counter(k.name for k in kill_log))}")
    print(f"client retries (same request_id): {result.retries}; all status codes: {codes_text(result.codes())}")
    if unusual_samples(result):
        print(unusual_samples(result))
    print(f"orders seen succeed by clients: {len(seen)}; in the order service: {len(orders)}; missing: {len(missing)}")
    for oid in missing[:20]:
        problems.append(f"order {oid} was answered OK but does not exist")
    for oid in wrong_owner[:20]:
        problems.append(f"order {oid} belongs to another user than the one it was placed for")
    print(f"audit: {len(findings)} finding(s)")
    for f in findings[:50]:
        print(f"FINDING {f}")
    if findings:
        problems.append(f"{len(findings)} audit finding(s)")
    if result.errors:
        problems.append("load-generator errors: " + "; ".join(result.errors[:3]))
    if result.hung:
        problems.append(f"{result.hung} hung calls")
    bad = {k: v for k, v in result.codes(reasons=False).items() if k in ("INTERNAL", "UNKNOWN")}
    if bad:
        problems.append(f"INTERNAL/UNKNOWN answers: {bad}")
    expected = {name: args.kills_each for name in SERVICES}
    if Counter(k.name for k in kill_log) != expected:
        problems.append("not every service was killed as planned")
    print("drill PASSED: every acknowledged order exists and the audit is clean" if not problems else "drill FAILED: " + " | ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
