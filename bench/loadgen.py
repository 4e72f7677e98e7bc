"""Shared pieces of the flash-crowd benchmarks: the suite under test, an empty gRPC server (the
ceiling of this machine and language), load-generator worker processes (closed loop, open loop,
scenario with retries), latency recording and table printing.

Workers are separate processes (multiprocessing, spawn) each running one grpc.aio client with
many concurrent tasks, so the client's own event loop is not the bottleneck. All workers start
measuring at the same wall-clock instant and stop at a fixed end: every run is bounded in time.
"""
from __future__ import annotations

import asyncio
import functools
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("card", "catalog", "order", "lottery", "gateway")
PROTO_SERVICE = {
    "card": "miandan.card.v1.CardService",
    "catalog": "miandan.catalog.v1.CatalogService",
    "order": "miandan.order.v1.OrderService",
    "lottery": "miandan.lottery.v1.LotteryService",
    "gateway": "miandan.gateway.v1.GatewayService",
}
EMPTY_METHOD = "/miandan.bench.Empty/Call"
# Places the demo catalog may be in; the first one with stores is used.
SEARCH_POINTS = ((30.2741, 120.1551), (31.2304, 121.4737), (39.9042, 116.4074), (22.5431, 114.0579), (23.1291, 113.2644))
# CANCELLED: the client here never cancels a call, so it is gRPC's core refusing a call the
# server's event loop had not taken in yet (MIANDAN_MAX_PENDING_CALLS): nothing ran, retry it.
RETRY_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
# Label of a call the client's adaptive throttle refused before sending it.
THROTTLED = "CLIENT_THROTTLED"
# The demo brands open latest in the evening (KFC to midnight, Mixue to 23:00).
PREFERRED_BRANDS = ("kfc", "mixue")


def _ensure_path() -> None:
    for p in (str(ROOT / "protos"), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)


_ensure_path()

from services.common.local_ports import free_port  # noqa: E402 - after the path; the bench modules import it from here


LATEST_CUTOFF = "23:59"


def bench_env(data_dir: Path, *, free_ports: bool = True, **overrides: str) -> dict[str, str]:
    """The environment of a benchmark suite: fresh data, loopback, no per-call log lines (they
    would measure the disk, not the service), free ports unless the defaults are wanted, and
    the gateway's gRPC core refusing calls beyond 32 that wait for its busy event loop (an
    operator knob, off by default; see Settings.max_pending_calls), no per-user pace unless MIANDAN_USER_RATE says. The event-loop lag guard
    (MIANDAN_MAX_LOOP_LAG_MS) stays off, as by default: with held calls bounded it only cost
    (its 10 ms probe in every process: make bench 235 -> 294 orders/s without it, interleaved
    pairs; bench.overload peaked at 490 orders/s with it and 750 without)."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}",
        MIANDAN_DATA=str(data_dir),
        MIANDAN_HOST="127.0.0.1",
        MIANDAN_LOG_CALLS="0",
        MIANDAN_GATEWAY_MAX_PENDING_CALLS=os.environ.get("MIANDAN_GATEWAY_MAX_PENDING_CALLS", "32"),
        # The open-loop generator plays a crowd with a few hundred accounts at thousands of calls
        # a second: the gateway's per-user pace (gateway/user_rates.py) would measure itself, not
        # the suite. `make bench` keeps it (its users are distinct, as a crowd's are).
        MIANDAN_USER_RATE=os.environ.get("MIANDAN_USER_RATE", "0"),
        # Entries for a day close at 20:00 Shanghai by default: a run in the evening would measure
        # only ENTRIES_CLOSED (no qualification check, no write) and give another figure than
        # the same run at noon. The latest cut-off keeps the lottery's work in every run.
        MIANDAN_LOTTERY_CUTOFF=os.environ.get("MIANDAN_LOTTERY_CUTOFF", LATEST_CUTOFF),
        PYTHONUNBUFFERED="1",
    )
    for name in SERVICES:
        env.pop(f"MIANDAN_{name.upper()}_ADDR", None)
        if free_ports:
            env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
            env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = str(free_port())
    env.update(overrides)
    return env


def addr_of(env: dict[str, str], name: str) -> str:
    from services.common.config import Settings

    s = Settings.from_env(name, env)
    return f"{s.host}:{s.port}"


# --- the suite under test ----------------------------------------------------------------------


class SuiteProcess:
    """`python -m services.suite` exactly as `make run` starts it, on a fresh data directory."""

    def __init__(self, env: dict[str, str], cpus: frozenset[int] | None = None) -> None:
        self.env = env
        self.cpus = cpus  # pin the suite (every service inherits it) to these CPUs
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.suite"], cwd=ROOT, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=None if self.cpus is None else functools.partial(os.sched_setaffinity, 0, self.cpus),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("suite did not start:\n" + "\n".join(self.lines[-30:]) + self._log_tails())
        asyncio.run(wait_all_serving(self.env))

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("miandan suite ready"):
                self._ready.set()
        self._ready.set()

    @property
    def restarts(self) -> list[str]:
        """Lines where the supervisor saw a child die (a benchmark wants none)."""
        return [line for line in self.lines if "restarting" in line or "did not stop" in line]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log_tails(self) -> str:
        out = ""
        for log in sorted((Path(self.env["MIANDAN_DATA"]) / "logs").glob("*.log")):
            out += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-2000:]
        return out

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def wait_serving(addr: str, service: str, timeout: float = 30.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} at {addr} not SERVING within {timeout:.0f} s")
            await asyncio.sleep(0.1)


async def wait_all_serving(env: dict[str, str], timeout: float = 30.0) -> None:
    await asyncio.gather(*(wait_serving(addr_of(env, n), PROTO_SERVICE[n], timeout) for n in SERVICES))


async def health_status(env: dict[str, str]) -> dict[str, str]:
    """SERVING / NOT_SERVING / the error code, per service (a dead process shows UNAVAILABLE)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async def one(name: str) -> tuple[str, str]:
        async with grpc.aio.insecure_channel(addr_of(env, name)) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=PROTO_SERVICE[name]), timeout=2.0
                )
                return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as err:
                return name, err.code().name

    return dict(await asyncio.gather(*(one(n) for n in SERVICES)))


# --- the empty server: this machine's ceiling --------------------------------------------------


def _empty_server_main(port: int, upstream: str | None = None) -> None:
    import grpc

    async def main() -> None:
        forward = grpc.aio.insecure_channel(upstream).unary_unary(EMPTY_METHOD) if upstream else None

        async def call(request: bytes, context: Any) -> bytes:
            if forward is not None:
                await forward(request, timeout=context.time_remaining())
            return b""

        handler = grpc.method_handlers_generic_handler(
            "miandan.bench.Empty", {"Call": grpc.unary_unary_rpc_method_handler(call)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # The services' loop (uvloop): the ceiling is what a miandan process could do with nothing
    # in its handler, not what the standard loop does (~10 % more CPU per call here).
    from services.common.server import run

    run(main())


class EmptyServer:
    """One process with one empty unary method: what a single Python gRPC server does when the
    handler does nothing. Same process model as every miandan service. With `upstream` (another
    EmptyServer's address) the method is a relay that calls upstream's and answers empty: a hop
    of the suite (the gateway in front of a service) with nothing in either handler."""

    def __init__(self, upstream: str | None = None) -> None:
        self.port = free_port()
        self.process = mp.get_context("spawn").Process(
            target=_empty_server_main, args=(self.port, upstream), daemon=True
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "EmptyServer":
        self.process.start()
        asyncio.run(self._wait())
        return self

    async def _wait(self, timeout: float = 20.0) -> None:
        import grpc

        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.addr) as ch:
            call = ch.unary_unary(EMPTY_METHOD)
            while True:
                try:
                    await call(b"", timeout=1.0)
                    return
                except grpc.aio.AioRpcError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("empty server did not answer")
                    await asyncio.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# --- what the workers do -----------------------------------------------------------------------


@dataclass
class Fixture:
    """The demo store and item the scenario orders, found once via SearchStores + GetMenu."""

    store_id: str
    item_id: str
    item_name: str
    brand_name: str
    latitude: float
    longitude: float
    price_fen: int

    @property
    def text(self) -> str:
        return f"{self.brand_name}的{self.item_name}一份"


@dataclass
class WorkerSpec:
    kind: str  # "empty" | "scenario" | "place" | "open"
    target: str
    env: dict[str, str]
    index: int
    concurrency: int
    start_at: float  # time.time() when measuring starts
    seconds: float
    fixture: Fixture | None = None
    rate: float = 0.0  # open loop: arrivals per second for this worker
    deadline_s: float = 2.0
    retry: bool = False  # drill: retry UNAVAILABLE / DEADLINE_EXCEEDED with the same request_id
    retry_for_s: float = 30.0
    users_per_task: int = 0  # "place"/"open": pre-joined users each task cycles through
    tag: str = ""
    # Act as an app with client-side adaptive throttling (services.common.throttle): refuse
    # locally, without sending, the share of calls the gateway has been refusing for load.
    client_throttle: bool = False
    # The app's throttle multiplier k (see _Client): it sends up to k times what the gateway accepts.
    throttle_k: float = 1.5
    # Pin the worker process to these CPUs (bench.overload --pin-client).
    cpus: frozenset[int] | None = None
    # Run the worker under the real-time round-robin policy (bench.overload; see realtime_permitted).
    realtime: bool = False


@dataclass
class Result:
    # (rpc, code) -> latencies in ms
    calls: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    orders: int = 0
    placed: list[tuple[str, str]] = field(default_factory=list)  # (user, order_id) seen succeed
    # Wall-clock time of each success in `placed` (same order): the drill reads the stretches a
    # kill left without any order.
    placed_at: list[float] = field(default_factory=list)
    hung: int = 0
    sent: int = 0
    retries: int = 0
    lag_ms_max: float = 0.0  # open loop: how late the client itself sent (its own saturation)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    samples: dict[str, str] = field(default_factory=dict)  # label -> one error message seen
    # CPU seconds the load-generator processes spent while measuring (summed): shows whether the
    # client, which shares the cores with the suite, is the bottleneck.
    client_cpu_s: float = 0.0
    mix: dict[str, int] = field(default_factory=dict)  # scenario: journeys, orders per user, ...

    def add(self, rpc: str, code: str, ms: float) -> None:
        self.calls[(rpc, code)].append(ms)

    def merge(self, other: "Result") -> None:
        for key, values in other.calls.items():
            self.calls[key].extend(values)
        self.orders += other.orders
        self.placed.extend(other.placed)
        self.placed_at.extend(other.placed_at)
        self.hung += other.hung
        self.sent += other.sent
        self.retries += other.retries
        self.lag_ms_max = max(self.lag_ms_max, other.lag_ms_max)
        self.errors.extend(other.errors)
        self.seconds = max(self.seconds, other.seconds)
        for k, v in other.samples.items():
            self.samples.setdefault(k, v)
        self.client_cpu_s += other.client_cpu_s
        for k, v in other.mix.items():
            self.mix[k] = self.mix.get(k, 0) + v

    def to_wire(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["calls"] = dict(self.calls)
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Result":
        r = cls()
        for k, v in d.items():
            if k == "calls":
                for key, values in v.items():
                    r.calls[key].extend(values)
            else:
                setattr(r, k, v)
        return r

    def codes(self, rpc: str | None = None, *, reasons: bool = True) -> Counter[str]:
        """Status-code counts; labels are CODE or CODE/REASON (reasons=False folds reasons)."""
        c: Counter[str] = Counter()
        for (r, code), values in self.calls.items():
            if rpc is None or r == rpc:
                c[code if reasons else code.split("/")[0]] += len(values)
        return c

    def latencies(self, rpc: str, codes: Iterable[str]) -> list[float]:
        """Latencies of the calls of `rpc` whose code (without reason) is one of `codes`."""
        wanted = set(codes)
        return [ms for (r, code), v in self.calls.items() if r == rpc and code.split("/")[0] in wanted for ms in v]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _Client:
    """One channel to the gateway (or the empty server), recording every call."""

    def __init__(self, spec: WorkerSpec, result: Result) -> None:
        import grpc
        from miandan.gateway.v1 import gateway_service_pb2_grpc

        from services.common.config import Settings

        self.grpc = grpc
        self.spec = spec
        self.result = result
        self.settings = Settings.from_env("gateway", spec.env)
        # One connection per worker process, like one app server talking to one front.
        self.channel = grpc.aio.insecure_channel(spec.target, options=[("grpc.enable_retries", 0)])
        self.stub = gateway_service_pb2_grpc.GatewayServiceStub(self.channel)
        self.empty = self.channel.unary_unary(EMPTY_METHOD)
        self.measuring = False
        self.throttle = self._new_throttle()

    def _new_throttle(self) -> Any:
        if not self.spec.client_throttle:
            return None
        from services.common.throttle import AdaptiveThrottle

        # k = 1.5 by default: the book's 2 lets the app send twice what the gateway accepts,
        # so under a flood the gateway spends its CPU refusing as many calls as it serves.
        # Measured in pairs on this 2-core box (bench.overload, 3x/4x/5x): k = 2 gave
        # 283-343 orders/s with the gateway refusing ~360-390/s and p99 of successes
        # 430-1,048 ms; k = 1.5 gave 346-378 orders/s, ~220-250 refusals/s and p99 250-440
        # ms. 1.1 is too tight: our admission refuses a few percent below capacity (latency
        # noise on two shared cores), which locks the app below what the suite can serve
        # (62-64% of peak at 2-5x). A 5 s window reacts within a step of bench.overload
        # (each step starts fresh workers).
        return AdaptiveThrottle(self.spec.throttle_k, window_s=5.0, buckets=25)

    def forget_setup(self) -> None:
        """A fresh throttle when measuring starts: the setup's burst of joins (hundreds at once,
        some refused) is not the load being measured, and a throttle that remembered it refused
        a quarter of the arrivals of a 1x step nobody was shedding (6 workers)."""
        self.throttle = self._new_throttle()

    def token_md(self, user: str) -> tuple[tuple[str, str], ...]:
        from gateway.token import mint

        return (("authorization", f"Bearer {mint(self.settings, user, ttl=3600)}"),)

    async def call(self, rpc: str, request: Any, md: Any, *, timeout: float | None = None, admitted: bool = False) -> tuple[Any, Any]:
        """(response, None) or (None, error). With spec.retry, UNAVAILABLE / DEADLINE_EXCEEDED
        are retried with the same request (same request_id), as a real app would."""
        fn = getattr(self.stub, rpc)
        timeout = timeout or self.spec.deadline_s
        give_up = time.monotonic() + self.spec.retry_for_s
        delay = 0.05
        throttle = self.throttle
        while True:
            t = time.perf_counter()
            if admitted:
                admitted = False  # the caller asked the throttle already (open loop)
            elif throttle is not None and not throttle.admit():
                # Refused here, nothing sent: what an app does while the front is shedding.
                if self.measuring:
                    self.result.add(rpc, THROTTLED, (time.perf_counter() - t) * 1000)
                if not self.spec.retry or time.monotonic() + delay > give_up:
                    return None, None
                self.result.retries += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            try:
                reply = await fn(request, metadata=md, timeout=timeout)
                if throttle is not None:
                    throttle.record("OK")
                if self.measuring:
                    self.result.add(rpc, "OK", (time.perf_counter() - t) * 1000)
                return reply, None
            except self.grpc.aio.AioRpcError as err:
                code = err.code().name
                if throttle is not None:
                    throttle.record(code)
                if self.measuring:
                    label = _label(code, err)
                    self.result.add(rpc, label, (time.perf_counter() - t) * 1000)
                    if f"{rpc} {label}" not in self.result.samples:
                        self.result.samples[f"{rpc} {label}"] = str(err.details())[:200]
                if not self.spec.retry or code not in RETRY_CODES or time.monotonic() + delay > give_up:
                    return None, err
                pushback = _pushback_ms(err)
                self.result.retries += 1
                await asyncio.sleep(max(delay, (pushback or 0) / 1000) * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)


def _label(code: str, err: Any) -> str:
    """CODE/REASON, e.g. UNAVAILABLE/OVERLOADED: the reason says whether a rejection was polite."""
    from services.common.errors import error_details

    try:
        reason = error_details(err).get("reason")
    except Exception:
        reason = None
    return f"{code}/{reason}" if reason else code


def _pushback_ms(err: Any) -> int | None:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-retry-pushback-ms":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _order_request(fixture: Fixture, request_id: str) -> Any:
    from miandan.catalog.v1 import catalog_pb2
    from miandan.gateway.v1 import gateway_service_pb2 as g
    from miandan.order.v1 import order_pb2

    return g.PlaceOrderRequest(
        request_id=request_id,
        store_id=fixture.store_id,
        lines=[catalog_pb2.LineSelection(item_id=fixture.item_id, quantity=1)],
        card_use=order_pb2.CARD_USE_BEST,
    )


# The lunch peak of the story, per user journey (bench.capacity prints the mix it produced):
# one Join (half of them with an earlier user's pass-phrase, which also earns its owner a card), a wallet
# check by 30 %, then 1-3 orders (45 % one, 35 % two, 20 % three; mean 1.75), 30 % by sentence
# and 70 % structured, each with CARD_USE_BEST: the card pays while the user has one, later
# orders are paid (ConfirmPayment with the sandbox reference, as the app does); 5 % of orders
# are cancelled, 10 % of users try the lottery (most are not qualified yet), and an inviter
# enters it when its pass-phrase brings its third new user. Orders are the largest share of the calls
# (bench.capacity prints the mix; see its docstring).
ORDERS_PER_USER = ((1, 0.45), (2, 0.35), (3, 0.20))
P_WALLET, P_TEXT, P_CANCEL, P_LOTTERY, P_PHRASE = 0.30, 0.30, 0.05, 0.10, 0.5
# The demo campaign's lottery_invite_threshold.
LOTTERY_INVITES = 3


class _Scenario:
    """The story at the lunch peak: a user joins once, then orders (see ORDERS_PER_USER)."""

    def __init__(self, client: _Client, spec: WorkerSpec) -> None:
        from miandan.common.v1 import common_pb2
        from miandan.gateway.v1 import gateway_service_pb2 as g

        self.g = g
        self.c = client
        self.spec = spec
        self.fixture = spec.fixture
        self.phrases: list[str] = []
        # pass-phrase -> [its owner, the owner's credentials, new users it brought]
        self.inviters: dict[str, list[Any]] = {}
        self.location = common_pb2.GeoPoint(latitude=spec.fixture.latitude, longitude=spec.fixture.longitude) if spec.fixture else None
        self.n = 0
        self.mix: Counter[str] = Counter()

    def _orders_for(self, rng: random.Random) -> int:
        x = rng.random()
        for n, p in ORDERS_PER_USER:
            if x < p:
                return n
            x -= p
        return ORDERS_PER_USER[-1][0]

    async def journey(self, task: int, rng: random.Random) -> None:
        g, c, result, mix = self.g, self.c, self.c.result, self.mix
        self.n += 1
        user = f"{self.spec.tag}-{self.spec.index}-{task}-{self.n}"
        md = c.token_md(user)
        phrase = rng.choice(self.phrases) if self.phrases and rng.random() < P_PHRASE else ""
        mix["journeys"] += 1
        joined, err = await c.call("Join", g.JoinRequest(request_id=f"join-{user}", pass_phrase_text=phrase), md)
        if joined is None:
            return
        own = joined.wallet.wallet.pass_phrase_text
        if own:
            self.phrases.append(own)
            self.inviters[own] = [user, md, 0]
            if len(self.phrases) > 300:
                for gone in self.phrases[:100]:
                    self.inviters.pop(gone, None)
                del self.phrases[:100]
        if joined.invite_accepted and phrase in self.inviters:
            inviter = self.inviters[phrase]
            inviter[2] += 1
            if inviter[2] == LOTTERY_INVITES:
                # The inviter's third new user: its app says "you may enter today's draw".
                mix["inviters entering the lottery"] += 1
                await c.call("EnterLottery", g.EnterLotteryRequest(request_id=f"lottery-{inviter[0]}"), inviter[1])
        if rng.random() < P_WALLET:
            await c.call("GetWallet", g.GetWalletRequest(), md)
        orders = self._orders_for(rng)
        mix[f"users ordering {orders}x"] += 1
        for i in range(orders):
            request_id = f"order-{user}-{i}"
            if rng.random() < P_TEXT:
                reply, err = await c.call(
                    "OrderByText",
                    g.OrderByTextRequest(request_id=request_id, text=self.fixture.text, location=self.location, confirm=True),
                    md,
                )
                order = reply.order if reply is not None and reply.HasField("order") else None
            else:
                reply, err = await c.call("PlaceOrder", _order_request(self.fixture, request_id), md)
                order = reply.order if reply is not None else None
            if order is None or not order.order_id:
                continue
            if c.measuring:
                result.orders += 1
            result.placed.append((user, order.order_id))
            result.placed_at.append(time.time())
            if order.payable_fen > 0 and order.payment.payment_reference:
                mix["orders paid (no card left)"] += 1
                await c.call(
                    "ConfirmPayment",
                    g.ConfirmPaymentRequest(request_id=f"pay-{request_id}", order_id=order.order_id, payment_reference=order.payment.payment_reference),
                    md,
                )
            if rng.random() < P_CANCEL:
                await c.call("CancelOrder", g.CancelOrderRequest(request_id=f"cancel-{request_id}", order_id=order.order_id, reason="bench"), md)
        if rng.random() < P_LOTTERY:
            await c.call("EnterLottery", g.EnterLotteryRequest(request_id=f"lottery-{user}"), md)


async def _join_users(client: _Client, spec: WorkerSpec, count: int) -> list[tuple[str, Any]]:
    """Users for the order-only loads, joined before measuring (each gets its sign-up card)."""
    from miandan.gateway.v1 import gateway_service_pb2 as g

    users = [f"{spec.tag}-{spec.index}-p{i}" for i in range(count)]
    mds = [client.token_md(u) for u in users]
    gate = asyncio.Semaphore(16)

    async def join(u: str, md: Any) -> None:
        async with gate:
            await client.call("Join", g.JoinRequest(request_id=f"join-{u}"), md, timeout=10)

    await asyncio.gather(*(join(u, md) for u, md in zip(users, mds)))
    return list(zip(users, mds))


async def _worker(spec: WorkerSpec) -> Result:
    result = Result()
    client = _Client(spec, result)
    rng = random.Random(spec.index * 7919 + int(spec.start_at))
    users: list[tuple[str, Any]] = []
    if spec.kind in ("place", "open") and spec.users_per_task:
        users = await _join_users(client, spec, max(1, spec.users_per_task * max(1, spec.concurrency)))
    scenario = _Scenario(client, spec) if spec.kind == "scenario" else None
    counter = iter(range(10**12))

    async def one_order(user: str, md: Any, admitted: bool = False) -> None:
        n = next(counter)
        reply, _ = await client.call("PlaceOrder", _order_request(spec.fixture, f"o-{spec.tag}-{spec.index}-{n}"), md, admitted=admitted)
        if reply is not None and reply.order.order_id:
            if client.measuring:
                result.orders += 1
            result.placed.append((user, reply.order.order_id))
            result.placed_at.append(time.time())

    async def empty_call() -> None:
        t = time.perf_counter()
        try:
            await client.empty(b"", timeout=spec.deadline_s)
            code = "OK"
        except client.grpc.aio.AioRpcError as err:
            code = err.code().name
        if client.measuring:
            result.add("EmptyCall", code, (time.perf_counter() - t) * 1000)

    end = spec.start_at + spec.seconds
    # Warm the connection before the clock starts.
    if spec.kind == "empty":
        await empty_call()
    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    client.forget_setup()
    client.measuring = True
    started = time.perf_counter()
    cpu0 = time.process_time()

    if spec.kind == "open":
        await _open_loop(spec, client, result, users, one_order, end)
    else:

        async def loop(task: int) -> None:
            i = task
            while time.time() < end:
                if spec.kind == "empty":
                    await empty_call()
                elif spec.kind == "scenario":
                    await scenario.journey(task, rng)  # type: ignore[union-attr]
                else:
                    user, md = users[i % len(users)]
                    i += spec.concurrency
                    await one_order(user, md)

        tasks = [asyncio.ensure_future(loop(t)) for t in range(spec.concurrency)]
        # Closed-loop tasks finish their current call after `end`; bounded by the call deadlines
        # (times the retry budget in a drill).
        done, pending = await asyncio.wait(tasks, timeout=spec.seconds + spec.deadline_s * 3 + (spec.retry_for_s if spec.retry else 0) + 5)
        for t in pending:
            t.cancel()
            result.hung += 1
        for t in done:
            if t.exception() is not None:
                result.errors.append(repr(t.exception()))
    client.measuring = False
    result.client_cpu_s = time.process_time() - cpu0
    result.seconds = time.perf_counter() - started
    if scenario is not None:
        result.mix = dict(scenario.mix)
    await client.channel.close()
    return result


# Arrivals due within this much of now are sent at once rather than each after its own sleep:
# at 5x capacity a sleep per arrival (2,000+ timers a second per process) was CPU the load
# generator took from the suite it measures, on the same two cores.
ARRIVAL_TICK_S = 0.001


async def _open_loop(spec: WorkerSpec, client: _Client, result: Result, users: list[tuple[str, Any]], one_order: Any, end: float) -> None:
    """Arrivals on a fixed schedule, never waiting for answers: the load a crowd offers."""
    interval = 1.0 / spec.rate
    outstanding: set[asyncio.Task] = set()
    t0 = time.perf_counter()
    wall0 = time.time()
    i = 0
    while True:
        due = t0 + i * interval
        if wall0 + i * interval >= end:
            break
        now = time.perf_counter()
        if due > now + ARRIVAL_TICK_S:
            await asyncio.sleep(due - now)
        else:
            result.lag_ms_max = max(result.lag_ms_max, (now - due) * 1000)
        user, md = users[i % len(users)]
        result.sent += 1
        i += 1
        throttle = client.throttle
        if throttle is not None and not throttle.admit():
            # Refused before a request or a task is even built: an app's throttled tap costs
            # next to nothing, and the generator must not starve the suite it measures.
            if client.measuring:
                result.add("PlaceOrder", THROTTLED, 0.0)
            continue
        task = asyncio.ensure_future(one_order(user, md, throttle is not None))
        outstanding.add(task)
        task.add_done_callback(outstanding.discard)
    if outstanding:
        # Every call has a deadline; anything still open well past it is a hung call.
        _, pending = await asyncio.wait(set(outstanding), timeout=spec.deadline_s + 2.0)
        result.hung += len(pending)
        for t in pending:
            t.cancel()


REALTIME_PRIORITY = 1  # the lowest real-time priority: above every normal process, below the kernel's


def realtime_permitted() -> bool:
    """Whether this process may put load-generator workers under SCHED_RR (root or
    CAP_SYS_NICE on Linux). Tried on this thread and undone at once."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def _worker_entry(spec: WorkerSpec, queue: Any) -> None:
    _ensure_path()
    if spec.cpus is not None:
        os.sched_setaffinity(0, spec.cpus)
    if spec.realtime:
        # Before gRPC starts its threads, which inherit the policy. The kernel's real-time
        # throttling (sched_rt_runtime_us) still leaves the suite 5 % of every second.
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
    try:
        from services.common.server import run

        # The services' loop: a leaner app leaves more of the two shared cores to the suite.
        result = run(_worker(spec))
        queue.put(result.to_wire())
    except BaseException as exc:  # report, never hang the parent
        r = Result()
        r.errors.append(f"worker {spec.index} failed: {exc!r}")
        queue.put(r.to_wire())


def run_workers(specs: Sequence[WorkerSpec], *, setup_s: float = 30.0, on_start: Any = None) -> Result:
    """Run the specs in parallel processes; returns the merged result. Bounded: workers that do
    not report in time are killed and counted as errors. on_start() is called when measuring
    starts (the workers' shared start_at)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_entry, args=(spec, queue), daemon=True) for spec in specs]
    for p in procs:
        p.start()
    longest = max(s.start_at - time.time() + s.seconds + s.deadline_s * 3 + (s.retry_for_s if s.retry else 0) for s in specs)
    deadline = time.monotonic() + max(0.0, longest) + setup_s + 15
    merged = Result()
    got = 0
    if on_start is not None:
        time.sleep(max(0.0, min(s.start_at for s in specs) - time.time()))
        on_start()
    while got < len(procs) and time.monotonic() < deadline:
        try:
            merged.merge(Result.from_wire(queue.get(timeout=0.5)))
            got += 1
        except Exception:
            if not any(p.is_alive() for p in procs) and queue.empty():
                break
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.kill()
            p.join(2)
    if got < len(procs):
        merged.errors.append(f"{len(procs) - got} worker(s) did not report")
    return merged


def specs_for(
    kind: str, target: str, env: dict[str, str], procs: int, concurrency: int, seconds: float, *, lead_s: float = 3.0, **kw: Any
) -> list[WorkerSpec]:
    start_at = time.time() + lead_s
    tag = kw.pop("tag", None) or uuid.uuid4().hex[:6]
    return [WorkerSpec(kind, target, env, i, concurrency, start_at, seconds, tag=tag, **kw) for i in range(procs)]


# --- finding the demo store --------------------------------------------------------------------


async def discover_fixture(env: dict[str, str]) -> Fixture:
    """A store of the demo catalog that is open and an available item on its menu, found the
    way an app finds them: SearchStores near a city, then GetMenu, through the gateway."""
    import grpc
    from miandan.catalog.v1 import catalog_service_pb2 as cs
    from miandan.common.v1 import common_pb2
    from miandan.gateway.v1 import gateway_service_pb2 as g, gateway_service_pb2_grpc

    from gateway.token import mint
    from services.common.config import Settings

    md = (("authorization", f"Bearer {mint(Settings.from_env('gateway', env), 'bench-setup')}"),)
    async with grpc.aio.insecure_channel(addr_of(env, "gateway")) as ch:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(ch)
        for lat, lng in SEARCH_POINTS:
            search = cs.SearchStoresRequest(location=common_pb2.GeoPoint(latitude=lat, longitude=lng), radius_meters=50_000, open_now=True, page_size=50)
            reply = await stub.SearchStores(g.SearchStoresRequest(search=search), metadata=md, timeout=10)
            # Brands open late first: a benchmark run in the evening must not see its store close.
            hits = sorted(reply.stores, key=lambda h: (PREFERRED_BRANDS.index(h.brand.brand_id) if h.brand.brand_id in PREFERRED_BRANDS else 99, h.distance_meters))
            for hit in hits:
                menu = (await stub.GetMenu(g.GetMenuRequest(store_id=hit.store.store_id), metadata=md, timeout=10)).menu
                # The cheapest available item: a card covers it fully (the story's free order).
                entries = sorted((e for e in menu.entries if e.available), key=lambda e: e.item.price_fen)
                if entries:
                    entry = entries[0]
                    return Fixture(
                        store_id=hit.store.store_id,
                        item_id=entry.item.item_id,
                        item_name=entry.item.name,
                        brand_name=hit.brand.name,
                        latitude=hit.store.location.latitude,
                        longitude=hit.store.location.longitude,
                        price_fen=entry.item.price_fen,
                    )
    raise RuntimeError("no open demo store with an available item was found near " + ", ".join(map(str, SEARCH_POINTS)))


# --- printing ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) if i else str(h).ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def unusual_samples(result: "Result") -> str:
    """One message per unexpected status (not OK, not a polite OVERLOADED), to see who said it."""
    rows = [f"  {k}: {v}" for k, v in sorted(result.samples.items()) if not k.endswith(("UNAVAILABLE/OVERLOADED",)) and " FAILED_PRECONDITION/" not in k]
    return ("unusual answers, one message each:\n" + "\n".join(rows)) if rows else ""


def codes_text(codes: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(codes.items(), key=lambda kv: (kv[0] != "OK", kv[0])))


def rpc_rows(result: Result, seconds: float) -> list[list[Any]]:
    rows = []
    for rpc in sorted({r for r, _ in result.calls}):
        ok = result.calls.get((rpc, "OK"), [])
        total = sum(len(v) for (r, _), v in result.calls.items() if r == rpc)
        rows.append([rpc, total / seconds, len(ok) / seconds, percentile(ok, 0.5), percentile(ok, 0.95), percentile(ok, 0.99), codes_text(result.codes(rpc))])
    return rows


RPC_HEADERS = ("rpc", "calls/s", "ok/s", "p50 ms", "p95 ms", "p99 ms", "status codes")


def machine() -> str:
    import platform

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    return f"{platform.node()} {os.cpu_count()} CPU {cpu}; Python {platform.python_version()}; load avg {' '.join(f'{x:.1f}' for x in load)}"


def temp_data_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)


# --- where the CPU goes ------------------------------------------------------------------------


def service_pids(env: dict[str, str]) -> dict[str, int]:
    """PIDs of the running services of the suite that uses `env` (found by their command line
    and their MIANDAN_DATA), for CPU accounting and profiling."""
    data = env.get("MIANDAN_DATA", "")
    modules = {("gateway" if n == "gateway" else f"services.{n}"): n for n in SERVICES}
    out: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-m" not in argv:
                continue
            module = argv[argv.index(b"-m") + 1].decode()
            if module not in modules:
                continue
            environ = (proc / "environ").read_bytes()
            if f"MIANDAN_DATA={data}".encode() + b"\0" in environ + b"\0":
                out[modules[module]] = int(proc.name)
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class CpuMeter:
    """CPU seconds each service process spent between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        self.before = {n: cpu_seconds(p) for n, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.used = {n: cpu_seconds(p) - self.before[n] for n, p in self.pids.items()}
        return self.used

    def measure_for(self, seconds: float) -> None:
        """start() now and stop() after `seconds` on a timer: a step's window, not the drain of
        its last calls that follows it."""
        self.start()
        self._timer = threading.Timer(seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def wait(self) -> dict[str, float]:
        """The window measure_for() opened, once closed (nothing measured: {})."""
        if self._timer is not None:
            self._timer.join()
        return self.used


def start_profilers(pids: dict[str, int], seconds: float, out_dir: Path) -> list[tuple[str, subprocess.Popen, Path]]:
    """py-spy record (raw collapsed stacks) on every service for `seconds`; [] without py-spy."""
    import shutil

    exe = shutil.which("py-spy") or (str(Path(sys.executable).with_name("py-spy")) if Path(sys.executable).with_name("py-spy").exists() else None)
    if exe is None:
        print("py-spy not found: `.venv/bin/pip install py-spy` to profile", file=sys.stderr)
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for name, pid in pids.items():
        path = out_dir / f"{name}.collapsed"
        proc = subprocess.Popen(
            [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "50", "-f", "raw", "-o", str(path), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        running.append((name, proc, path))
    return running


def profile_summary(running: list[tuple[str, subprocess.Popen, Path]], top: int = 8) -> str:
    """Per service: the functions with the most samples on top of the stack (self time), and
    the miandan functions with the most inclusive samples."""
    lines = []
    for name, proc, path in running:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not path.exists():
            lines.append(f"{name}: no profile")
            continue
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = idle = 0
        for row in path.read_text(errors="replace").splitlines():
            stack, _, count = row.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";")]
            if _idle(frames[-1]):
                idle += n  # a thread parked in select / a queue: not CPU
                continue
            total += n
            own[frames[-1]] += n
            for f in {f for f in frames if _project(f)}:
                inclusive[f] += n
        if not total:
            lines.append(f"{name}: no busy samples")
            continue
        lines.append(f"{name}: {total} busy samples ({idle} idle); self: " + ", ".join(f"{f} {c / total:.0%}" for f, c in own.most_common(top)))
        lines.append(f"{' ' * len(name)}  inclusive, project code: " + ", ".join(f"{f} {c / total:.0%}" for f, c in inclusive.most_common(top)))
    return "\n".join(lines)


_IDLE = ("select (selectors.py)", "Thread.run (threading.py)", "_connection_worker_thread (core.py)", "wait (threading.py)", "get (queue.py)")
_PROJECT_FILES = ("handlers.py", "store.py", "servicer.py", "compose.py", "model.py", "db.py", "interceptors.py", "admission.py",
                  "upstream.py", "clients.py", "auth.py", "resolver.py", "preview.py", "errors.py", "metrics.py", "card_client.py")


def _idle(frame: str) -> bool:
    return any(frame.endswith(marker) or frame.split(".")[-1] == marker for marker in _IDLE)


def _project(frame: str) -> bool:
    return frame.endswith(tuple(f"({f})" for f in _PROJECT_FILES))


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    fn, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{fn} ({file})" if file else fn


def audit_suite(env: dict[str, str]) -> list[Any]:
    """The cross-service audit of a benchmark's suite (after the load): findings, [] when clean."""
    from services.audit import run_audit

    return asyncio.run(run_audit({n: addr_of(env, n) for n in ("card", "order", "lottery")}))
