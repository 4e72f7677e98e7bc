"""`make bench-order`: PlaceOrder with a card (payable 0) beside an empty gRPC call, in one run.

Starts `python -m services.card`, `services.catalog` and `services.order` on free ports with a
fresh temporary data directory, seeds its own campaign (20 cards per sign-up), a one-store
catalog and buyers, then runs closed loops of `--clients` concurrent clients (over `--procs`
load-generator processes) for `--seconds` each, `--rounds` times in turn (empty, orders,
empty, orders, ...: this machine's speed drifts by tens of percent within minutes, so the
empty call is measured next to every order phase; each round's own figure is printed too):

  empty       grpc.health.v1 Check on the order server: the floor of one call on this machine
  PlaceOrder  one latte (15 yuan) with CARD_USE_REQUIRED: Quote + ReserveCard(redeem), PAID
              (the card pays in full, so it is reserved and redeemed in one card call; the
              order service coalesces concurrent reservations into ReserveCards RPCs)

Prints calls/s, p50/p99, the ratio empty calls/s : orders/s, CPU seconds per order over the
three servers against CPU seconds per empty call, and the internal RPCs one order costs (from
the card and catalog servers' own /metrics counters; a ReserveCards batch is one RPC, and its
entries per batch are printed too). `--profile` samples all three servers with py-spy during
the first order phase and prints where the time goes (raw stacks are kept in
bench-out/profile-order/*.collapsed).

    python -m bench.order [--seconds 5] [--rounds 3] [--clients 64] [--procs 2] [--profile] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "protos"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.loadgen import CpuMeter, free_port, profile_summary, start_profilers  # noqa: E402

CAMPAIGN = "bench-order"
STORE, ITEM = "bench-store", "bench-latte"
CARDS_PER_USER = 20
TARGET_COST = 4.0
# Reservations carried by the card server's ReserveCards RPCs (the order service batches them).
BATCH_ENTRIES = "miandan_card_reserve_cards_entries_total"


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# --- load generator ------------------------------------------------------------------------------


def _worker(phase: str, order_addr: str, card_addr: str, proc: int, tasks: int, start: "_Start", seconds: float, out: Any) -> None:
    try:
        out.put(asyncio.run(_drive(phase, order_addr, card_addr, proc, tasks, start, seconds)))
    except BaseException as exc:  # report instead of hanging the parent
        out.put(("error", repr(exc)))


async def _drive(phase: str, order_addr: str, card_addr: str, proc: int, tasks: int, start: "_Start", seconds: float) -> tuple:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from miandan.card.v1 import card_service_pb2 as card_svc, card_service_pb2_grpc
    from miandan.catalog.v1 import catalog_pb2
    from miandan.order.v1 import order_pb2, order_service_pb2 as svc, order_service_pb2_grpc
    from services.common.auth import internal_metadata
    from services.common.config import Settings
    from services.common.errors import error_details

    md = internal_metadata(Settings.from_env("order", {}))
    channels = [grpc.aio.insecure_channel(order_addr) for _ in range(4)]
    stubs = [order_service_pb2_grpc.OrderServiceStub(ch) for ch in channels]
    health = [health_pb2_grpc.HealthStub(ch) for ch in channels]
    card_channel = grpc.aio.insecure_channel(card_addr)
    card = card_service_pb2_grpc.CardServiceStub(card_channel)
    run = f"{os.getpid()}-{int(time.time())}"
    latencies: list[float] = []
    errors: Counter = Counter()
    lines = [catalog_pb2.LineSelection(item_id=ITEM, quantity=1)]

    def buyers_of(t: int) -> Any:
        tag = f"{run}-p{proc}-t{t}"
        buyer_n = 0

        async def new_buyer() -> str:
            nonlocal buyer_n
            buyer_n += 1
            user = f"{tag}-b{buyer_n}"
            for attempt in range(50):
                try:
                    await card.ClaimSignupCard(card_svc.ClaimSignupCardRequest(campaign_id=CAMPAIGN, user_id=user), metadata=md)
                    return user
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == 49:
                        raise
                    # Shed while the card server is busy with orders: set-up, so wait and retry.
                    await asyncio.sleep((error_details(err)["pushback_ms"] or 100) / 1000)
            return user

        return new_buyer

    async def prepare(t: int) -> tuple[list[str], Any]:
        # Buyers are signed up before the clock starts (enough for ~12 orders/s per client):
        # a sign-up grants CARDS_PER_USER cards, set-up work that is not the order path.
        new_buyer = buyers_of(t)
        spare = [await new_buyer() for _ in range(math.ceil(seconds * 12 / CARDS_PER_USER) + 1)] if phase == "PlaceOrder" else []
        return spare, new_buyer

    async def task(t: int, spare: list[str], new_buyer: Any, start_at: float) -> None:
        stub, hstub = stubs[t % len(stubs)], health[t % len(health)]
        tag = f"{run}-p{proc}-t{t}"
        end_at = start_at + seconds

        buyer = spare.pop() if spare else ""
        while time.time() < start_at:
            await asyncio.sleep(0.005)
        n = 0
        while time.time() < end_at:
            n += 1
            t0 = time.perf_counter()
            try:
                if phase == "empty":
                    await hstub.Check(health_pb2.HealthCheckRequest())
                else:
                    resp = await stub.PlaceOrder(
                        svc.PlaceOrderRequest(
                            request_id=f"{tag}-o{n}",
                            user_id=buyer,
                            store_id=STORE,
                            lines=lines,
                            card_use=order_pb2.CARD_USE_REQUIRED,
                            campaign_id=CAMPAIGN,
                        ),
                        metadata=md,
                        timeout=10,
                    )
                    if resp.order.status != order_pb2.ORDER_STATUS_PAID:
                        errors["NOT_PAID"] += 1
                        continue
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                if d["reason"] == "NO_CARD_AVAILABLE":
                    buyer = spare.pop() if spare else await new_buyer()  # out of cards: not a measured call
                    continue
                errors[f"{d['code']}/{d['reason']}"] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    prepared = await asyncio.gather(*(prepare(t) for t in range(tasks)))
    # Every process has its buyers: only now is the start time set (see run_phase), so no
    # sign-up of a slow process runs inside the measured seconds.
    start.ready.put(proc)
    while not start.go.is_set():
        await asyncio.sleep(0.005)
    start_at = start.at.value
    await asyncio.gather(*(task(t, spare, new_buyer, start_at) for t, (spare, new_buyer) in enumerate(prepared)))
    for ch in (*channels, card_channel):
        await ch.close()
    return ("ok", latencies, dict(errors))


@dataclass
class Round:
    """One empty-call phase and the order phase right after it."""

    empty: Outcome
    empty_cpu: float
    placed: Outcome = field(default_factory=Outcome)
    order_cpu: dict[str, float] = field(default_factory=dict)

    def cost(self) -> float:
        per_empty = self.empty_cpu / max(1, len(self.empty.latencies_ms))
        per_order = sum(self.order_cpu.values()) / max(1, len(self.placed.latencies_ms))
        return per_order / max(per_empty, 1e-12)


@dataclass
class _Start:
    """The start line the load processes share: each puts its index on `ready` once its buyers
    are signed up; the parent then sets `at` (time.time() seconds) and `go`."""

    ready: Any
    go: Any
    at: Any


def run_phase(
    phase: str, order_addr: str, card_addr: str, clients: int, procs: int, seconds: float, meter: CpuMeter,
    on_start: Callable[[], None] | None = None,
) -> Outcome:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = _Start(ready=ctx.Queue(), go=ctx.Event(), at=ctx.Value("d", 0.0))
    per_proc = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_worker, args=(phase, order_addr, card_addr, i, per_proc[i], start, seconds, out), daemon=True)
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    # The clock starts when every process has signed its buyers up (bounded: a process that
    # never gets there fails the phase below instead of hanging it).
    for _ in workers:
        try:
            start.ready.get(timeout=180)
        except Exception:
            break
    start.at.value = start_at = time.time() + 0.3
    start.go.set()
    while time.time() < start_at:
        time.sleep(0.005)
    meter.start()
    if on_start is not None:
        on_start()
    time.sleep(seconds)
    meter.stop()
    outcome = Outcome()
    try:
        for _ in workers:
            item = out.get(timeout=seconds + 60)
            if item[0] == "error":
                raise RuntimeError(f"{phase} load generator failed: {item[1]}")
            outcome.latencies_ms.extend(item[1])
            outcome.errors.update(item[2])
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
    return outcome


# --- the servers under test ----------------------------------------------------------------------


class ServiceProcess:
    def __init__(self, name: str, data_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        self.env = dict(
            os.environ,
            **env,
            PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}",
            MIANDAN_DATA=str(data_dir),
            MIANDAN_LOG_CALLS="0",
            MIANDAN_LOG_LEVEL="WARNING",
        )
        self.env[f"MIANDAN_{name.upper()}_PORT"] = str(self.port)
        self.env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = str(self.metrics_port)
        self.process: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    async def wait_serving(self, timeout: float = 60.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n" + (self.process.stderr.read() if self.process.stderr else ""))
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not become SERVING")
                await asyncio.sleep(0.1)

    def rpc_calls(self) -> Counter:
        """miandan_rpc_calls_total of this process by method (all codes)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        out: Counter = Counter()
        for m in re.finditer(r'^miandan_rpc_calls_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
            method = re.search(r'method="([^"]*)"', m.group(1))
            if method:
                out[method.group(1)] += float(m.group(2))
        return out

    def counter(self, name: str) -> float:
        """An unlabelled counter of this process's /metrics (0 when it is not exported)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


async def seed(card_addr: str, catalog_addr: str) -> None:
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from miandan.card.v1 import card_pb2, card_service_pb2 as card_svc, card_service_pb2_grpc
    from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat_svc, catalog_service_pb2_grpc
    from miandan.common.v1 import common_pb2
    from services.common.auth import internal_metadata
    from services.common.config import Settings

    admin = internal_metadata(Settings.from_env("order", {}), admin=True)
    start, end = Timestamp(), Timestamp()
    start.FromSeconds(int(time.time()) - 86400)
    end.FromSeconds(int(time.time()) + 30 * 86400)
    async with grpc.aio.insecure_channel(card_addr) as ch:
        await card_service_pb2_grpc.CardServiceStub(ch).CreateCampaign(
            card_svc.CreateCampaignRequest(
                request_id="bench-order-campaign", campaign_id=CAMPAIGN, name="bench order", start_time=start, end_time=end,
                rules=card_pb2.CampaignRules(budget_fen=10**12, signup_grant=CARDS_PER_USER, per_user_card_cap=CARDS_PER_USER + 1),
            ),
            metadata=admin,
        )
    async with grpc.aio.insecure_channel(catalog_addr) as ch:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(ch)
        await stub.UpsertBrand(
            cat_svc.UpsertBrandRequest(request_id="bench-brand", brand=catalog_pb2.Brand(brand_id="bench", name="压测茶饮")),
            metadata=admin,
        )
        await stub.UpsertMenuItem(
            cat_svc.UpsertMenuItemRequest(
                request_id="bench-item",
                item=catalog_pb2.MenuItem(item_id=ITEM, brand_id="bench", name="压测拿铁", price_fen=1500),
            ),
            metadata=admin,
        )

        async def stores():
            yield cat_svc.ImportStoresRequest(
                stores=[
                    catalog_pb2.Store(
                        store_id=STORE, brand_id="bench", name="压测茶饮(一店)", city="杭州",
                        location=common_pb2.GeoPoint(latitude=30.27, longitude=120.15),
                    )
                ]
            )

        await stub.ImportStores(stores(), metadata=admin)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.order", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="empty-call and order phases, taken in turn (default 3)")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    p.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument("--profile", action="store_true", help="py-spy the three servers during the order phase")
    p.add_argument("--smoke", action="store_true", help="tiny run for CI: 1 s, 8 clients, 1 process")
    args = p.parse_args(argv)
    if args.smoke:
        args.seconds, args.clients, args.procs, args.rounds = 1.0, 8, 1, 1

    rounds: list[Round] = []
    profilers: list = []
    upstream: Counter = Counter()
    entries = 0.0
    with tempfile.TemporaryDirectory(prefix="miandan-bench-order-") as tmp:
        data = Path(tmp)
        card = ServiceProcess("card", data, {})
        catalog = ServiceProcess("catalog", data, {})
        card.start()
        catalog.start()
        order = None
        try:
            asyncio.run(card.wait_serving())
            asyncio.run(catalog.wait_serving())
            order = ServiceProcess(
                "order", data, {"MIANDAN_CARD_ADDR": card.addr, "MIANDAN_CATALOG_ADDR": catalog.addr, "MIANDAN_CAMPAIGN_ID": CAMPAIGN}
            )
            order.start()
            asyncio.run(order.wait_serving())
            asyncio.run(seed(card.addr, catalog.addr))
            pids = {s.name: s.process.pid for s in (order, card, catalog) if s.process is not None}
            for r in range(args.rounds):
                meter = CpuMeter({"order": pids["order"]})
                got = run_phase("empty", order.addr, card.addr, args.clients, args.procs, args.seconds, meter)
                rounds.append(Round(empty=got, empty_cpu=meter.used["order"]))

                meter = CpuMeter(pids)
                before: dict = {}

                def count_from_start(first: bool = r == 0) -> None:
                    # Counted and profiled from the clock's start: the buyers' sign-ups before it
                    # are set-up, not orders.
                    before.update({s.name: s.rpc_calls() for s in (card, catalog)}, entries=card.counter(BATCH_ENTRIES))
                    if args.profile and first:
                        profilers.extend(start_profilers(pids, args.seconds, ROOT / "bench-out" / "profile-order"))

                rounds[-1].placed = run_phase(
                    "PlaceOrder", order.addr, card.addr, args.clients, args.procs, args.seconds, meter,
                    on_start=count_from_start,
                )
                after = {s.name: s.rpc_calls() for s in (card, catalog)}
                for name in ("card", "catalog"):
                    upstream.update({f"{name}.{m}": n for m, n in (after[name] - before[name]).items()})
                entries += card.counter(BATCH_ENTRIES) - before["entries"]
                rounds[-1].order_cpu = dict(meter.used)
            profile = profile_summary(profilers) if profilers else ""
        finally:
            for s in (order, catalog, card):
                if s is not None:
                    s.stop()

    measured = args.seconds * len(rounds)
    empty, placed = Outcome(), Outcome()
    for rd in rounds:
        for total, part in ((empty, rd.empty), (placed, rd.placed)):
            total.latencies_ms.extend(part.latencies_ms)
            total.errors.update(part.errors)
    empty_rate = len(empty.latencies_ms) / measured
    order_rate = len(placed.latencies_ms) / measured
    # Charged to the orders that succeeded: the work spent on shed or failed attempts is part of
    # what a successful order costs under this load.
    placed_n = max(1, len(placed.latencies_ms))
    signups = upstream.pop("card.ClaimSignupCard", 0)  # buyers' sign-ups are set-up, not the order path
    per_order = {k: v / placed_n for k, v in sorted(upstream.items()) if v}
    used: Counter = Counter()
    for rd in rounds:
        used.update(rd.order_cpu)
    cpu_per_empty = sum(rd.empty_cpu for rd in rounds) / max(1, len(empty.latencies_ms))
    cpu_per_order = sum(used.values()) / placed_n

    print(
        f"bench-order: {args.clients} clients over {args.procs} processes, {args.rounds} round(s) of "
        f"{args.seconds:g} s empty calls then {args.seconds:g} s orders"
    )
    print(f"{'call':<12} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for name, o, rate in (("empty", empty, empty_rate), ("PlaceOrder", placed, order_rate)):
        errs = ", ".join(f"{k}={v}" for k, v in o.errors.most_common(4)) or "-"
        print(f"{name:<12} {rate:>9.1f} {percentile(o.latencies_ms, 0.5):>8.2f} {percentile(o.latencies_ms, 0.99):>8.2f}  {errs}")
    print(f"throughput ratio: one order = {empty_rate / max(order_rate, 1e-9):.2f} empty calls (wall clock, same clients)")
    if len(rounds) > 1:
        # Each round's own ratio: this machine's speed drifts by tens of percent within minutes,
        # which is why the empty call is measured again next to every order phase.
        print("CPU per order in empty calls, round by round: " + ", ".join(f"{rd.cost():.2f}" for rd in rounds))
    print(
        f"CPU: empty call {cpu_per_empty * 1e6:.0f} us (order server); order {cpu_per_order * 1e6:.0f} us over "
        f"order+card+catalog ({', '.join(f'{k} {v / placed_n * 1e6:.0f}' for k, v in used.items())}) "
        f"= {cpu_per_order / max(cpu_per_empty, 1e-12):.2f} empty calls (target <= {TARGET_COST:g})"
    )
    print(
        f"internal RPCs per successful order: {sum(per_order.values()):.2f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in per_order.items())
        + ")"
    )
    if signups:
        print(f"sign-ups inside the measured seconds (buyers out of cards; their CPU counts above): {signups:.0f}")
    batches = upstream.get("card.ReserveCards", 0)
    print(
        f"card reservations: {upstream.get('card.ReserveCard', 0):.0f} ReserveCard + {batches:.0f} ReserveCards "
        f"carrying {entries:.0f} ({entries / max(batches, 1):.1f} entries per batch)"
    )
    if profile:
        print(profile)
    return 0 if order_rate > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
