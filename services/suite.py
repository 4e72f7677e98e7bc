"""`make run`: the whole miandan suite on one machine, one OS process per service.

Starts card, catalog, order, lottery and the gateway as `python -m ...` children (each owns its
store under MIANDAN_DATA, exactly as separate deployments would), each once the services it calls
report SERVING over grpc.health.v1, seeds the demo campaign and catalog on first start, prints one
line per server, and stops them all gracefully on Ctrl-C / SIGTERM / SIGHUP (the terminal gone).
A child that dies is restarted (at once, or after a growing delay if it keeps dying right after
its start), so a kill -9 drill against `make run` behaves like a supervised deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import DEFAULT_CAMPAIGN_ID, DEFAULT_PORTS, Settings, prepare_data_dir, refuse_published_secrets
from services.common.server import SUPERVISOR_PID_VAR

SERVICES = ("card", "catalog", "order", "lottery", "gateway")
# Who calls whom. A service starts only once everything it calls answers SERVING: a gRPC channel
# whose first connect is refused goes into reconnect backoff, and calls made in that window fail
# with UNAVAILABLE, so a suite started all at once could report ready and then refuse its first
# orders.
UPSTREAMS = {
    "card": (),
    "catalog": (),
    "order": ("card", "catalog"),
    "lottery": ("card",),
    "gateway": ("card", "catalog", "order", "lottery"),
}
MODULES = {name: ("gateway" if name == "gateway" else f"services.{name}") for name in SERVICES}
PROTO_SERVICE = {
    "card": "miandan.card.v1.CardService",
    "catalog": "miandan.catalog.v1.CatalogService",
    "order": "miandan.order.v1.OrderService",
    "lottery": "miandan.lottery.v1.LotteryService",
    "gateway": "miandan.gateway.v1.GatewayService",
}
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def say(text: str, *, err: bool = False) -> None:
    """One line to the operator. Output that went away (`make run | tee log` with tee gone, a
    closed terminal) must not stop the supervisor: it would leave the children running,
    orphaned, and restart none. From then on the suite writes to /dev/null; the services'
    logs under MIANDAN_DATA/logs keep the details."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):  # EPIPE, EIO; ValueError: the stream was closed
        devnull = open(os.devnull, "w")
        if err:
            sys.stderr = devnull
        else:
            sys.stdout = devnull


def suite_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every child gets: one data dir, and upstream addresses that follow the
    ports actually configured, so overriding a port never leaves a caller pointing elsewhere."""
    env = dict(os.environ if base is None else base)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root / "protos"), str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Blank is unset, as for the services and `make backup` (Path("") is the current directory).
    env["MIANDAN_DATA"] = str(Path((env.get("MIANDAN_DATA") or "").strip() or "data").resolve())
    # Blank is unset and spaces around the id are not part of it, as the services read it:
    # seeding "" or "autumn-2026 " would fail the start.
    env["MIANDAN_CAMPAIGN_ID"] = (env.get("MIANDAN_CAMPAIGN_ID") or "").strip() or DEFAULT_CAMPAIGN_ID
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Every secret the five processes trust, named at once rather than one service per attempt.
    refuse_published_secrets(env, None, env.get("MIANDAN_HOST", "127.0.0.1").strip())
    taken: dict[int, str] = {}  # port -> the variable that gives it
    for name in SERVICES:
        s = Settings.from_env(name, env)
        upper = name.upper()
        if not s.port:
            # Settings would name MIANDAN_<SERVICE>_ADDR='host:0', a variable the operator never set.
            raise ValueError(
                f"MIANDAN_{upper}_PORT=0 (any free port) does not work with make run: the other services "
                f"must know where {name} listens; give it a port (default {DEFAULT_PORTS[name]})"
            )
        metrics_var = f"MIANDAN_{upper}_METRICS_PORT"
        if not (env.get(metrics_var) or "").strip():
            metrics_var += f" (MIANDAN_{upper}_PORT + 1000 unless set)"
        for var, port in ((f"MIANDAN_{upper}_PORT", s.port), (metrics_var, s.metrics_port)):
            if not port:
                continue
            if port in taken:
                # Started anyway, the second server would exit saying its port is in use, naming
                # a port of its own and not the clash.
                raise ValueError(f"{var}={port} is also {taken[port]}: every server and /metrics endpoint needs its own port")
            taken[port] = var
        env.setdefault(f"MIANDAN_{upper}_ADDR", f"{s.host}:{s.port}")
    return env


@dataclass
class Child:
    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    settings: Settings = field(init=False)
    started_at: float = 0.0  # time.monotonic() of the last start
    quick_exits: int = 0  # exits in a row, each within STEADY_S of its start
    restart_at: float | None = None  # when the supervisor starts it again after an exit
    log_offset: int = 0  # where this start's output begins in log_path

    def __post_init__(self) -> None:
        self.settings = Settings.from_env(self.name, self.env)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", MODULES[self.name]]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.log_offset = log.seek(0, os.SEEK_END)
        # Own process group: Ctrl-C in the terminal reaches only the suite, which then stops
        # the children in order with SIGTERM instead of every process racing at once.
        # The supervisor's pid: the child asks to be stopped should this process die without
        # stopping it (server.follow_supervisor).
        env = {**self.env, SUPERVISOR_PID_VAR: str(os.getpid())}
        self.process = subprocess.Popen(
            self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.close()

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def said_listening(self) -> bool:
        """Whether this start of the child printed its "listening on" line: only then is a
        SERVING answer on its address its own, not another process's that holds the port."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                return b" listening on " in f.read()
        except OSError:
            return False


def exit_reason(child: Child) -> str:
    """Why a child exited, when it said: a service that cannot start ends its output with one
    line `<service>: <reason>` (services.common.server.main). "" otherwise (killed, crashed)."""
    line = last_line(getattr(child, "log_path", None))
    return line if line.startswith(f"{child.name}: ") else ""


def last_line(path: Path | None, limit: int = 300) -> str:
    """The last non-blank line of a log, shortened; "" if none."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    text = lines[-1].strip() if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def port_problems(children: list[Child]) -> list[str]:
    """The ports (service and metrics) the children would listen on that are taken already,
    one line each naming the variable: another suite (or anything else) on them would answer
    the health checks in their place, and a child that cannot bind exits at once."""
    problems = []
    for child in children:
        s = child.settings
        upper = child.name.upper()
        for var, port in ((f"MIANDAN_{upper}_PORT", s.port), (f"MIANDAN_{upper}_METRICS_PORT", s.metrics_port)):
            if not port:
                continue
            host = "127.0.0.1" if var.endswith("METRICS_PORT") else s.host  # /metrics listens on loopback
            why = _cannot_bind(host, port)
            if why:
                problems.append(f"{child.name}: cannot listen on {host}:{port} ({var}={port}): {why}")
    return problems


def _cannot_bind(host: str, port: int) -> str | None:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"MIANDAN_HOST={host!r} does not resolve ({getattr(exc, 'strerror', None) or exc})"
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def process_specs(env: dict[str, str] | None = None) -> list[Child]:
    """The children of a suite, not started: used by `make run` and by the kill -9 drill."""
    env = suite_env(env)
    logs = Path(env["MIANDAN_DATA"]) / "logs"
    return [Child(name, env, logs / f"{name}.log") for name in SERVICES]


# A child that ran this long before it exited is restarted at once; one that keeps dying sooner
# (a port taken, a broken store, a bad setting) waits longer each time, as systemd's and
# Kubernetes' restart back-off do, instead of being restarted five times a second forever.
STEADY_S = 30.0
RESTART_FIRST_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 30.0


def restart_delay(quick_exits: int) -> float:
    """Seconds before restarting a child after its n-th quick exit in a row: 0, 0.5, 1, 2, ... 30."""
    if quick_exits <= 1:
        return 0.0
    return min(RESTART_MAX_DELAY_S, RESTART_FIRST_DELAY_S * 2 ** (quick_exits - 2))


async def wait_serving(child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    # The child is not listening yet when this starts: without a short reconnect backoff the
    # first refused connect would cost a whole second per start.
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    async with grpc.aio.insecure_channel(child.address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if child.process is not None and child.process.poll() is not None:
                why = exit_reason(child)
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode}" + (f": {why}" if why else "") + f"; see {child.log_path}"
                )
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=PROTO_SERVICE[child.name]), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING and child.said_listening():
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not become SERVING within {timeout:.0f}s; see {child.log_path}")
            await asyncio.sleep(0.1)


async def start_in_order(children: list[Child], timeout: float = 30.0) -> None:
    """Start the children in waves: each wave is every child whose upstreams (among these
    children) are SERVING, started together and awaited together."""
    present = {c.name for c in children}
    serving: set[str] = set()
    pending = list(children)
    while pending:
        wave = [c for c in pending if all(u in serving or u not in present for u in UPSTREAMS[c.name])]
        for child in wave:
            child.start()
        waits = [asyncio.ensure_future(wait_serving(child, timeout)) for child in wave]
        try:
            await asyncio.gather(*waits)
        finally:
            for w in waits:
                w.cancel()
        serving.update(c.name for c in wave)
        pending = [c for c in pending if c not in wave]


async def seed_demo_data(env: dict[str, str]) -> None:
    """First-start data: the story's campaign and the demo catalog. Both go through the admin
    API, so they obey the same validation as any operator's call, and both are idempotent."""
    from services.common.auth import internal_metadata, open_channel
    from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
    from miandan.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc

    settings = Settings.from_env("gateway", env)
    admin = internal_metadata(settings, admin=True)
    campaign_id = env["MIANDAN_CAMPAIGN_ID"]

    async with open_channel(settings, env["MIANDAN_CARD_ADDR"]) as channel:
        cards = card_service_pb2_grpc.CardServiceStub(channel)
        try:
            await cards.GetCampaign(card_service_pb2.GetCampaignRequest(campaign_id=campaign_id), metadata=admin, timeout=5)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            request = card_service_pb2.CreateCampaignRequest(
                request_id=f"suite-seed-{campaign_id}",
                campaign_id=campaign_id,
                name="春节30亿免单 Spring Festival free orders",
                rules=card_pb2.CampaignRules(budget_fen=3_000_000_000 * 100),
            )
            request.start_time.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=SHANGHAI).astimezone(dt.timezone.utc))
            request.end_time.FromDatetime(dt.datetime(2028, 1, 1, tzinfo=SHANGHAI).astimezone(dt.timezone.utc))
            await cards.CreateCampaign(request, metadata=admin, timeout=10)

    async with open_channel(settings, env["MIANDAN_CATALOG_ADDR"]) as channel:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        brands = await catalog.ListBrands(catalog_service_pb2.ListBrandsRequest(page_size=1), metadata=admin, timeout=5)
        if not brands.brands:
            from services.catalog.demo import load_demo

            await load_demo(catalog, admin)


class Suite:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        await start_in_order(self.children)

    async def unless_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` (the start, the seeding) unless a stop is asked first: Ctrl-C, SIGTERM or
        SIGHUP while a wave waits for a service to be SERVING (up to its 30 s timeout, a wave
        after another) must stop the suite now, not after the start, the seeding and a "ready"
        line. False when the stop came first (`work` is then cancelled); its errors propagate."""
        task = asyncio.ensure_future(work)
        stop_asked = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_asked.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()  # a failed start raises here
        return True

    async def supervise(self) -> None:
        while not self.stopping.is_set():
            self.tend(time.monotonic())
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=0.2)
            except asyncio.TimeoutError:
                pass

    def tend(self, now: float) -> None:
        """One supervisor pass: notice children that exited and start those whose time came."""
        for child in self.children:
            if self.stopping.is_set() or child.process is None or child.process.poll() is None:
                continue
            if child.restart_at is None:
                child.quick_exits = child.quick_exits + 1 if now - child.started_at < STEADY_S else 1
                delay = restart_delay(child.quick_exits)
                child.restart_at = now + delay
                when = "restarting" if not delay else f"restarting in {delay:g} s ({child.quick_exits} quick exits in a row)"
                why = exit_reason(child)
                why = f" ({why})" if why else ""
                say(f"{child.name:8} exited with code {child.process.returncode}{why}; {when}")
            if now >= child.restart_at:
                child.restarts += 1
                child.start()

    async def stop(self) -> int:
        self.stopping.set()
        # Callers first, in waves (start_in_order reversed): a service gets SIGTERM only once
        # every service that calls it has exited. A draining server refuses new calls, so an
        # upstream signalled together with its callers would fail the calls they still have in
        # flight (a PlaceOrder the gateway is finishing needs order, order needs card) and the
        # drain would end in errors instead of answers.
        worst = 0
        left = list(self.children)
        while left:
            wave = [c for c in left if not any(c.name in UPSTREAMS.get(o.name, ()) for o in left if o is not c)]
            if not wave:  # a cycle cannot happen with UPSTREAMS; never wait forever if it did
                wave = list(left)
            for child in wave:
                if child.process is not None and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(self._wait_stopped(child) for child in wave))
            for code in codes:
                worst = worst or code
            left = [c for c in left if c not in wave]
        return worst

    async def _wait_stopped(self, child: Child) -> int:
        if child.process is None:
            return 0
        try:
            return await asyncio.to_thread(child.process.wait, child.settings.grace_seconds + 5)
        except subprocess.TimeoutExpired:
            child.process.kill()
            code = await asyncio.to_thread(child.process.wait)
            say(f"{child.name:8} did not stop in time; killed")
            return code


def listening_line(child: Child) -> str:
    """The line `make run` prints per server. /metrics listens on loopback whatever MIANDAN_HOST
    says (services.common.metrics): its address is 127.0.0.1, not the service's host."""
    metrics = f", metrics http://127.0.0.1:{child.settings.metrics_port}/metrics" if child.settings.metrics_port else ""
    return f"{child.name:8} {MODULES[child.name]:17} listening on {child.address}{metrics} (pid {child.process.pid})"


async def main_async(args: argparse.Namespace) -> int:
    try:
        env = suite_env()
        children = process_specs(env)
        # The children's logs live under MIANDAN_DATA: made here, so a directory that cannot be
        # is named as each service would name it, not an OSError of the first log file.
        prepare_data_dir(children[0].settings)
    except ValueError as exc:  # a bad MIANDAN_* setting: one line naming it, like the services
        say(f"miandan suite: {exc}", err=True)
        return 2
    taken = port_problems(children)
    if taken:
        # Started anyway, the children would exit at once, and another suite on these ports
        # would answer their health checks: this suite would say "ready" while serving nothing.
        for line in taken:
            say(f"miandan suite failed to start: {line}", err=True)
        return 1
    suite = Suite(children)
    loop = asyncio.get_running_loop()
    # SIGHUP too: the children run in their own sessions, so a terminal that goes away (window
    # closed, ssh dropped) hangs up only the suite, which by default would die and leave all
    # five servers running, holding the ports and stores.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, suite.stopping.set)
    async def start_and_seed() -> None:
        await suite.start()
        if not args.no_seed:
            await seed_demo_data(env)

    try:
        if not await suite.unless_stopped(start_and_seed()):
            await suite.stop()
            say("miandan suite stopped before it was ready")
            return 0
    except Exception as exc:  # a failed start must not leave orphans behind
        if isinstance(exc, grpc.aio.AioRpcError):  # seeding: one line, not the error's multi-line repr
            exc = f"seeding the demo campaign and catalog: {exc.code().name}: {' '.join((exc.details() or '').split())}"
        say(f"miandan suite failed to start: {exc}", err=True)
        await suite.stop()
        return 1
    for child in suite.children:
        say(listening_line(child))
    say(f"miandan suite ready: data in {env['MIANDAN_DATA']}, logs in {env['MIANDAN_DATA']}/logs; Ctrl-C stops")
    try:
        await suite.supervise()
    except Exception as exc:  # noqa: BLE001 - the children must not outlive a broken supervisor
        say(f"miandan suite: the supervisor failed ({type(exc).__name__}: {exc}); stopping every service", err=True)
        await suite.stop()
        return 1
    code = await suite.stop()
    say("miandan suite stopped")
    return 0 if code in (0, -signal.SIGTERM) else code


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.suite", description=__doc__)
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo campaign and catalog")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
