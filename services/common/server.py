"""Server wiring shared by every service: interceptor, health, reflection, TLS, graceful stop.

Start order (BentoML / grpc examples): on_start -> create server with the CallPipeline ->
register servicers -> health + reflection -> bind -> start -> mark SERVING.
Stop order: mark NOT_SERVING (enter_graceful_shutdown, so load balancers and probes stop
sending new work) -> end open response streams (UNAVAILABLE SHUTTING_DOWN: they never finish by
themselves) -> server.stop(grace) drains in-flight calls -> the server's Resources close,
last opened first. They close AFTER the drain on purpose: the store / upstream channels are what
in-flight calls still use.

The kit owns the clean-up from the moment a resource opens: a wiring's build (`@builds_server`)
registers each thing it opens with the `Resources` it is handed, and a build that fails, a start
that fails (the port taken, a bad certificate, on_start raising) or a stop closes them all. An
open store's connection threads would otherwise keep the process alive after its event loop is
gone. `main` is the entry point of every `python -m` service: one line and exit status 2 for a
bad setting, 1 for any other failure to start.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import os
import signal
import socket
import sys
from typing import Any, Awaitable, Callable, Coroutine, Mapping, NoReturn, Sequence, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .admission import AdmissionController, admission_from_settings
from .auth import MAX_MESSAGE_BYTES, AccessPolicy
from .config import Settings, check_start_files, env_number, event_loop_from_env, prepare_data_dir
from .interceptors import CallPipeline
from .logging import configure_logging, get_logger
from .metrics import RpcMetrics, default_metrics, start_metrics_server
from .resources import Resources

__all__ = [
    "Server", "build_server", "builds_server", "Resources", "serve", "run", "main", "StartError", "server_options",
    "settle_heap", "raise_open_file_limit", "HEALTH_SERVICE_NAME", "keepalive_from_env",
]

T = TypeVar("T")
# Allocations between young-generation collections once a process serves (Python's default is
# 700). Measured under bench-order: the order service spent ~60 us of GC per order at 700 and
# ~13 us at 20,000 with the start-up heap frozen; 10,000 keeps each pause near 5 ms.
SERVING_GC_GEN0 = 10_000
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Exit statuses of `main` when a service cannot start: a bad setting (as argparse and sysexits'
# EX_USAGE-style tools do) and anything else (a port taken, a host that does not resolve).
EXIT_BAD_SETTING = 2
EXIT_START_FAILED = 1
# Server keepalive (MIANDAN_KEEPALIVE_SECONDS / _TIMEOUT_SECONDS): a client that vanished without
# closing its connection (lost signal, a NAT that forgot the mapping) never sends the FIN or RST
# that would end its calls, so an idle watch stream would hold its slot until the next change
# failed to write, forever on a quiet store. A ping after this long idle, unanswered within the
# timeout, closes the connection and cancels its calls.
KEEPALIVE_SECONDS = 60.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0


class StartError(RuntimeError):
    """A service could not start for a reason its message explains in one line."""


def keepalive_from_env(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(idle seconds before the server pings a connection, seconds it waits for the answer)
    from MIANDAN_KEEPALIVE_SECONDS and MIANDAN_KEEPALIVE_TIMEOUT_SECONDS (env None = os.environ).
    Raises ValueError naming a bad value."""
    # At most a day each: gRPC takes milliseconds in a C int.
    return (
        env_number(env, "MIANDAN_KEEPALIVE_SECONDS", KEEPALIVE_SECONDS, minimum=1, maximum=86_400),
        env_number(env, "MIANDAN_KEEPALIVE_TIMEOUT_SECONDS", KEEPALIVE_TIMEOUT_SECONDS, minimum=1, maximum=86_400),
    )


def server_options(
    max_pending_calls: int = 0,
    max_request_bytes: int = MAX_MESSAGE_BYTES,
    *,
    keepalive_s: float = KEEPALIVE_SECONDS,
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_SECONDS,
) -> list[tuple[str, Any]]:
    """max_pending_calls > 0: gRPC refuses new calls once that many wait for the event loop
    (at random up to twice as many, always beyond; see Settings.max_pending_calls).
    max_request_bytes: larger requests are refused by gRPC itself (RESOURCE_EXHAUSTED), before
    they are read into memory; answers may still be up to MAX_MESSAGE_BYTES.
    keepalive_s / keepalive_timeout_s: see KEEPALIVE_SECONDS."""
    pending = (
        [
            ("grpc.server.max_pending_requests", max_pending_calls),
            ("grpc.server.max_pending_requests_hard_limit", 2 * max_pending_calls),
        ]
        if max_pending_calls > 0
        else []
    )
    return pending + [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", max_request_bytes),
        # Accept the clients' 30 s keepalive pings (open_channel) instead of answering GOAWAY.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
        # gRPC 1.85 drops the connection when a ping goes unanswered for ping_timeout_ms
        # (default 60 s), whatever keepalive_timeout_ms says (seen with GRPC_TRACE=http2_ping).
        ("grpc.http2.ping_timeout_ms", int(keepalive_timeout_s * 1000)),
        # Older gRPC cores stop a server's pings after two (the default) without data between
        # them: just the idle watch stream they are for. 1.85 no longer limits the server's.
        ("grpc.http2.max_pings_without_data", 0),
        # Two processes silently sharing a port would split traffic between old and new code.
        ("grpc.so_reuseport", 0),
    ]


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        service_names: Sequence[str],
        register: Callable[[grpc.aio.Server], None],
        policy: AccessPolicy,
        criticality: dict[str, str] | None = None,
        on_start: Callable[[], Awaitable[Any]] | None = None,
        on_stop: Callable[[], Awaitable[Any]] | None = None,
        admission: AdmissionController | None = None,
        metrics: RpcMetrics | None = None,
        require_client_cert: bool | None = None,
        max_request_bytes: int = MAX_MESSAGE_BYTES,
        resources: Resources | None = None,
    ) -> None:
        self.settings = settings
        self.max_request_bytes = max_request_bytes
        # Read here, not at start: a bad value fails the build, before on_start opens anything.
        self.keepalive = keepalive_from_env()
        # None = as configured: mutual TLS (client certificate required and verified against
        # MIANDAN_TLS_CA) whenever a CA is set. False = one-way TLS, for a port end users reach
        # without certificates (the gateway); the server then does not even ask for a client
        # certificate, and the policy must not count one as the internal credential.
        if require_client_cert is None:
            require_client_cert = settings.tls_enabled and settings.tls_ca is not None
        elif require_client_cert and not (settings.tls_enabled and settings.tls_ca is not None):
            raise ValueError("require_client_cert needs MIANDAN_TLS_CERT, MIANDAN_TLS_KEY and MIANDAN_TLS_CA")
        self.require_client_cert = bool(require_client_cert)
        if not self.require_client_cert:
            policy.trust_client_certificates = False
        self.service_names = tuple(service_names)
        self._register = register
        self.policy = policy
        self.criticality = dict(criticality or {})
        self._on_start = on_start
        self.admission = admission or admission_from_settings(settings)
        self.metrics = metrics if metrics is not None else default_metrics()
        self.logger = get_logger(settings.service)
        # What build() opened, closed after the drain (or when a start fails). on_stop joins them
        # as the last thing opened, so it runs before what it may still use.
        self.resources = resources if resources is not None else Resources(self.logger)
        if on_stop is not None:
            self.resources.on_close(on_stop, name="on_stop")
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._unstarted: grpc.aio.Server | None = None  # made by start(), not yet serving
        self._pipeline: CallPipeline | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def grpc_server(self) -> grpc.aio.Server | None:
        return self._server

    async def start(self) -> int:
        """Start serving; returns the bound port (settings.port 0 = an ephemeral port).

        When any step fails (on_start included), what was acquired is released before the error
        goes on: the gRPC server is stopped and the resources close (the store build() opened).
        """
        try:
            return await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> int:
        s = self.settings
        # Asked of the OS first, on a plain socket: a taken port or a host that is not ours then
        # fails before on_start runs, with a line naming the variable (gRPC would log its own
        # multi-line complaint and say only "Failed to bind").
        problem = bind_problem(s.service, s.host, s.port)
        if problem is not None:
            raise StartError(problem)
        if self._on_start is not None:
            await self._on_start()
        pipeline = CallPipeline(
            s.service, s, self.policy, self.admission, self.criticality, self.metrics, self.logger
        )
        options = server_options(
            getattr(s, "max_pending_calls", 0), self.max_request_bytes,
            keepalive_s=self.keepalive[0], keepalive_timeout_s=self.keepalive[1],
        )
        server = grpc.aio.server(interceptors=[pipeline], options=options)
        self._pipeline = pipeline
        self._unstarted = server
        self._register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*self.service_names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{s.host}:{s.port}"
        try:
            if s.tls_enabled:
                mutual = self.require_client_cert
                creds = grpc.ssl_server_credentials(
                    [(s.tls_key.read_bytes(), s.tls_cert.read_bytes())],  # type: ignore[union-attr]
                    # Mutual TLS: the verified client cert is the internal credential (auth.py).
                    root_certificates=s.tls_ca.read_bytes() if mutual else None,  # type: ignore[union-attr]
                    require_client_auth=mutual,
                )
                port = server.add_secure_port(address, creds)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:  # grpc.aio: "Failed to bind to address ..."
            port = 0
        if port == 0:
            raise StartError(bind_failure(s.service, s.host, s.port))
        await server.start()
        self.admission.watch_loop_lag(getattr(s, "max_loop_lag_ms", 0.0) / 1000)
        self._server, self.port, self._unstarted = server, port, None
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def close(self) -> None:
        """Release what build() and a start that did not finish acquired, without a grace period:
        stop the gRPC server if one was made, stop watching loop lag, close the resources (once).
        For a start that failed; a serving server stops with stop(). Errors here are logged, not
        raised, so they cannot hide the failure that led here."""
        unstarted, self._unstarted = self._unstarted, None
        for server in (x for x in (unstarted, self._server) if x is not None):
            try:
                await server.stop(0)
            except Exception:  # noqa: BLE001 - never started, or already stopped
                self.logger.debug("gRPC server stop after a failed start", exc_info=True)
        self.admission.stop_watching_loop_lag()
        # Each failed close is logged as it happens; the failure that led here matters more.
        with contextlib.suppress(Exception):
            await self.resources.close()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop; safe to call more than once (later calls wait for the first)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.settings.grace_seconds if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        if self._pipeline is not None:
            # Streams never finish by themselves: left open they held every stop for the whole
            # grace (a catalog's stop took 5 s for the order service's WatchMenuChanges).
            self._pipeline.end_streams()
        if self._server is not None:
            await self._server.stop(grace)
        self.admission.stop_watching_loop_lag()
        await self.resources.close()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
        if self._stopping is not None:
            await asyncio.shield(self._stopping)


def build_server(
    settings: Settings,
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    policy: AccessPolicy,
    criticality: dict[str, str] | None = None,
    on_start: Callable[[], Awaitable[Any]] | None = None,
    on_stop: Callable[[], Awaitable[Any]] | None = None,
    admission: AdmissionController | None = None,
    metrics: RpcMetrics | None = None,
    require_client_cert: bool | None = None,
    max_request_bytes: int = MAX_MESSAGE_BYTES,
    resources: Resources | None = None,
) -> Server:
    """require_client_cert: None = mutual TLS whenever MIANDAN_TLS_CA is set; False = one-way
    TLS for end users (the gateway's public port); True = insist (ValueError without a CA).
    resources: what build() opened (builds_server), closed once the server stops or fails to start."""
    return Server(
        settings,
        service_names=service_names,
        register=register,
        policy=policy,
        criticality=criticality,
        on_start=on_start,
        on_stop=on_stop,
        admission=admission,
        metrics=metrics,
        require_client_cert=require_client_cert,
        max_request_bytes=max_request_bytes,
        resources=resources,
    )


def builds_server(build: Callable[..., Awaitable[Server]]) -> Callable[..., Awaitable[Server]]:
    """Decorates a wiring's `async def build(settings, *, resources, **options) -> Server`: the
    kit hands it a fresh `Resources`, with which it registers each thing the moment it opens it,
    and passes them on to build_server. Should build fail, they are closed before the error goes
    on; once it returns, the server owns them (closed when it stops, or when its start fails).
    Callers (tests, `main`) call `build(settings, **options)` without `resources`."""

    @functools.wraps(build)
    async def build_owning_resources(settings: Settings, **options: Any) -> Server:
        resources = Resources(get_logger(settings.service))
        try:
            server = await build(settings, resources=resources, **options)
            if server.resources is not resources:
                raise TypeError(f"{build.__qualname__} must pass its resources to build_server")
        except BaseException:
            # Each failed close is logged as it happens; the failure that led here matters more.
            with contextlib.suppress(Exception):
                await resources.close()
            raise
        return server

    return build_owning_resources


async def serve(settings: Settings, **kwargs: Any) -> None:
    """Run a service until SIGTERM/SIGINT, then stop gracefully (the process then exits 0)."""
    await serve_server(settings, build_server(settings, **kwargs))


async def serve_built(
    build: Callable[[Settings], Awaitable[Server]], settings: Settings, *, uses_store: bool = True
) -> None:
    """`__main__` of every service: the same `wiring.build` the tests use, served until a signal.

    A failure before the server serves (a file MIANDAN_TLS_* names, MIANDAN_DATA, build(), the
    bind) ends the process with one line on stderr (fail_to_start): status 2 for a bad setting,
    1 otherwise. What build() opened is closed by then (builds_server, then Server.close).
    uses_store: the service keeps stores in MIANDAN_DATA (all but the gateway).
    """
    configure_logging(settings)  # before build, so store migrations are logged too
    try:
        check_start_files(settings)
        if uses_store:
            prepare_data_dir(settings)
        server = await build(settings)
        port = await start_serving(settings, server)
    except Exception as exc:  # noqa: BLE001 - whatever it was, this process will not serve
        fail_to_start(settings.service, exc)
    await serve_until_stopped(settings, server, port)


def bind_failure(service: str, host: str, port: int) -> str:
    """Why gRPC could not listen on host:port, in one line naming the setting to change (gRPC
    itself only says "Failed to bind")."""
    return bind_problem(service, host, port) or f"cannot listen on {host}:{port} (MIANDAN_{service.upper()}_PORT, MIANDAN_HOST)"


def bind_problem(service: str, host: str, port: int) -> str | None:
    """Why listening on host:port would fail, in one line naming the setting to change, or None
    when a plain socket can bind it (port 0: only the host is checked)."""
    port_var = f"MIANDAN_{service.upper()}_PORT"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"MIANDAN_HOST={host!r} is not an address of this machine ({getattr(exc, 'strerror', None) or exc})"
    problems = []
    # Like gRPC, which listens on every address the host resolves to and fails only when none
    # would bind (localhost: 127.0.0.1 and ::1, where IPv6 may be off).
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as exc:
            problems.append(exc)
        else:
            return None
    for exc in problems:  # the most telling first
        if exc.errno == errno.EADDRINUSE:
            return f"cannot listen on {host}:{port}: the port is already in use ({port_var}={port})"
    for exc in problems:
        if exc.errno == errno.EACCES:
            return f"cannot listen on {host}:{port}: permission denied ({port_var}={port})"
    for exc in problems:
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"MIANDAN_HOST={host!r} is not an address of this machine"
    if problems:
        exc = problems[0]
        return f"cannot listen on {host}:{port}: {exc.strerror or exc} ({port_var}, MIANDAN_HOST)"
    return None


def raise_open_file_limit() -> tuple[int, int] | None:
    """Lift this process's soft limit on open files to its hard limit; (old, new) when it did.

    Why: every client connection is a file descriptor, and many systems start processes with a
    soft limit of 1,024 while allowing far more: a gateway facing a crowd would refuse
    connections (EMFILE) with most of its capacity unused. Go's runtime does the same at start."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. macOS caps it below the hard limit: keep what we have
        return None
    return soft, target


def settle_heap() -> None:
    """Once a process has started serving: what start-up built (modules, descriptors, stores,
    channels) lives as long as the process, so move it out of the collector's sight
    (gc.freeze), and collect the young generation less often. Per call, a server allocates
    thousands of short-lived containers (protobuf wrappers, futures, tasks); at the default
    threshold the collector keeps re-scanning them and the frozen-to-be heap."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(SERVING_GC_GEN0, gen1, gen2)


async def serve_server(settings: Settings, server: Server) -> None:
    """Start `server` and serve until SIGTERM/SIGINT, then stop gracefully."""
    port = await start_serving(settings, server)
    await serve_until_stopped(settings, server, port)


async def start_serving(settings: Settings, server: Server) -> int:
    """Metrics endpoint, then the server; on failure what build() opened is closed too
    (server.close closes its resources) before the error goes on. Returns the bound port."""
    logger = configure_logging(settings)
    try:
        lifted = raise_open_file_limit()
        if lifted is not None:
            logger.info("open file limit raised", extra={"from": lifted[0], "to": lifted[1]})
        if settings.metrics_port:
            try:
                start_metrics_server(settings.metrics_port)
            except OSError as exc:
                var = f"MIANDAN_{settings.service.upper()}_METRICS_PORT"
                raise StartError(
                    f"cannot serve /metrics on port {settings.metrics_port}: {exc.strerror or exc} ({var}; 'off' turns it off)"
                ) from None
        return await server.start()
    except BaseException:
        await server.close()  # the store build() opened (a failed server.start already did)
        raise


async def serve_until_stopped(settings: Settings, server: Server, port: int) -> None:
    logger = get_logger(settings.service)
    settle_heap()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop_requested.set)
        except (NotImplementedError, RuntimeError):  # not the main thread / not POSIX
            pass
    # The loop's module says whether uvloop (see run()) is really in use in this process.
    logger.info("started", extra={"port": port, "metrics_port": settings.metrics_port, "loop": type(loop).__module__})
    print(f"miandan {settings.service} listening on {settings.host}:{port}", flush=True)
    waiter = asyncio.ensure_future(server.wait())
    stopper = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper.done():
        logger.info("stopping", extra={"grace_seconds": settings.grace_seconds})
        await server.stop()
    else:
        stopper.cancel()
    await waiter
    logger.info("stopped")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Entry point for `python -m services.<svc>`: uvloop (a dependency: ~80 µs less CPU per
    call, measured) and plain asyncio.run only where uvloop is unavailable (Windows).
    MIANDAN_EVENT_LOOP=asyncio forces the standard loop: for A/B benchmarks, and an escape hatch
    should a grpc.aio/uvloop incompatibility ever show up in production."""
    if event_loop_from_env() == "asyncio":
        return asyncio.run(main)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main)
    return uvloop.run(main)


def main(
    service: str,
    build: Callable[..., Awaitable[Server]],
    *,
    options: Callable[[], Mapping[str, Any]] | None = None,
    uses_store: bool = True,
) -> NoReturn:
    """`python -m services.<svc>` / `python -m gateway`: settings from the environment, then
    `build(settings, **options())` served until SIGTERM/SIGINT; exits 0 after a graceful stop.

    options: reads the service's own variables (ValueError naming the variable), before
    anything starts, like Settings.from_env. uses_store: see serve_built.

    A service that cannot start says why in one line on stderr, `<service>: <reason>`, and exits
    at once: status 2 for a bad setting (a ValueError, which names the variable), 1 for
    anything else (a port taken, a host that does not resolve). No traceback: the line says
    what to change (MIANDAN_LOG_LEVEL=DEBUG logs the traceback too)."""
    follow_supervisor()
    try:
        settings = Settings.from_env(service)
        kwargs = dict(options()) if options is not None else {}
    except ValueError as exc:
        _exit(service, " ".join(str(exc).split()), EXIT_BAD_SETTING)

    async def build_it(s: Settings) -> Server:
        return await build(s, **kwargs)

    try:
        run(serve_built(build_it, settings, uses_store=uses_store))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        _exit(service, "interrupted", 130)
    sys.exit(0)


SUPERVISOR_PID_VAR = "MIANDAN_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_supervisor(env: Mapping[str, str] | None = None) -> bool:
    """When `make run`'s supervisor (services/suite.py) started this process, as it says in
    MIANDAN_SUPERVISOR_PID: ask Linux for a SIGTERM when the supervisor dies, however it dies.

    Why: the supervisor starts each service in a session of its own (so Ctrl-C reaches only the
    supervisor, which then stops them in order), and stops them itself on SIGINT, SIGTERM and
    SIGHUP. A kill -9, an OOM kill or a crash of the supervisor gave it no such chance: the five
    servers ran on, orphans holding the ports and the stores, and the next `make run` could only
    name the ports they held. SIGTERM is the graceful stop (drain, close the stores).

    True when the request was made. Elsewhere than Linux, or without the variable (systemd,
    Kubernetes, a shell), nothing changes."""
    wanted = (os.environ if env is None else env).get(SUPERVISOR_PID_VAR, "")
    if not wanted.isdigit() or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # no prctl in this libc: carry on as before
        return False
    if os.getppid() != int(wanted):
        # The supervisor died before the request was made: nobody will send the signal.
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def fail_to_start(service: str, exc: BaseException) -> NoReturn:
    """End a process whose service could not start: one line, status 2 for a bad setting
    (ValueError), 1 otherwise. Called with what build() and start() opened already closed."""
    logging.getLogger(f"miandan.{service}").debug("start failed", exc_info=exc)
    _exit(service, describe(exc), EXIT_BAD_SETTING if isinstance(exc, ValueError) else EXIT_START_FAILED)


def describe(exc: BaseException) -> str:
    """One line for a failure to start: the message where it says enough, else with its type."""
    if isinstance(exc, (StartError, ValueError)):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}" if exc.filename is not None else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not isinstance(exc, ValueError):
        text = f"failed to start: {text}"
    return " ".join(text.split())  # one line, whatever the message held


def _exit(service: str, message: str, code: int) -> NoReturn:
    """Print `<service>: <message>` and end the process now.

    os._exit rather than sys.exit: a start that failed halfway may leave non-daemon threads
    behind (aiosqlite runs each connection on one; a library may start others), and at a
    normal exit the interpreter waits for every one of them. Start's own clean-up closes what
    it knows about, but a single thread it missed would keep a service that will never serve
    alive forever, listening on nothing, and a supervisor (services/suite.py, systemd,
    Kubernetes) would never see it exit and restart it. Nothing is left to flush but the
    standard streams and the log handlers, flushed here."""
    try:
        print(f"{service}: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        logging.shutdown()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("services.common.server is a library; run a service, e.g. python -m services.card")
