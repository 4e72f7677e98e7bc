"""`make drill`: kill -9 under load, then audit.

Runs the five services the way `make run` does (services.suite.process_specs: same modules, same
environment, one process each), seeds the demo data, and keeps the story's scenario running
through the gateway while it SIGKILLs one service process at random (each service, gateway
included, at least twice; once with --smoke) and restarts it. Clients retry UNAVAILABLE and
DEADLINE_EXCEEDED with the same request_id, as a real app would. Afterwards: every order a
client saw succeed must exist in the order service, and the cross-service audit must find
nothing.

    python -m bench.drill [--seconds N] [--kills-each K] [--procs P] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
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


async def _kill_and_restart(children: list, plan: list[str], interval: float, log: list[str]) -> None:
    from services.suite import wait_serving

    by_name = {c.name: c for c in children}
    for name in plan:
        await asyncio.sleep(interval)
        child = by_name[name]
        pid = child.process.pid
        t = time.monotonic()
        child.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.process.wait)
        child.start()
        child.restarts += 1
        await wait_serving(child, timeout=60)
        log.append(f"killed {name} (pid {pid}), back SERVING as pid {child.process.pid} in {time.monotonic() - t:.2f} s")
        print(log[-1], flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--kills-each", type=int, default=2, help="SIGKILLs per service (default 2)")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=None, help="random seed of the kill order")
    p.add_argument("--smoke", action="store_true", help="each service killed once, ~15 s of load")
    args = p.parse_args(argv)
    if args.smoke:
        args.seconds, args.kills_each, args.concurrency = 15.0, 1, 4
    rng = random.Random(args.seed)

    from services.suite import SERVICES, process_specs, seed_demo_data, wait_serving

    print(f"machine: {machine()}")
    problems: list[str] = []
    kill_log: list[str] = []
    with temp_data_dir("miandan-drill-") as data:
        env = bench_env(Path(data))
        children = process_specs(env)
        env = children[0].env  # process_specs filled in the upstream addresses
        try:
            for child in children:
                child.start()

            async def up() -> None:
                for child in children:
                    await wait_serving(child, timeout=60)
                await seed_demo_data(env)

            asyncio.run(up())
            fixture = asyncio.run(discover_fixture(env))

            plan = [name for name in SERVICES for _ in range(args.kills_each)]
            rng.shuffle(plan)
            # Kills spread over the first ~80% of the load so the last restart is followed by load.
            interval = args.seconds * 0.8 / (len(plan) + 1)
            specs = specs_for(
                "scenario", f"127.0.0.1:{env['MIANDAN_GATEWAY_PORT']}", env, args.procs, args.concurrency, args.seconds,
                fixture=fixture, retry=True, retry_for_s=30.0, deadline_s=3.0, lead_s=4.0,
            )
            holder: dict[str, Result] = {}
            load = threading.Thread(target=lambda: holder.setdefault("r", run_workers(specs)), daemon=True)
            load.start()
            time.sleep(max(0.0, specs[0].start_at - time.time()))
            asyncio.run(_kill_and_restart(children, plan, interval, kill_log))
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
    print(f"kills: {dict(Counter(line.split()[1] for line in kill_log))}")
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
    if Counter(line.split()[1] for line in kill_log) != expected:
        problems.append("not every service was killed as planned")
    print("drill PASSED: every acknowledged order exists and the audit is clean" if not problems else "drill FAILED: " + " | ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
