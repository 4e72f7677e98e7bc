"""Server wiring shared by every service: interceptor, health, reflection, TLS, graceful stop.

Start order (BentoML / grpc examples): on_start -> create server with the CallPipeline ->
register servicers -> health + reflection -> bind -> start -> mark SERVING.
Stop order: mark NOT_SERVING (enter_graceful_shutdown, so load balancers and probes stop
sending new work) -> server.stop(grace) drains in-flight calls -> on_stop. on_stop runs AFTER the
drain on purpose: it typically closes the store / upstream channels that in-flight calls still use.
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .admission import AdmissionController, admission_from_settings
from .auth import MAX_MESSAGE_BYTES, AccessPolicy
from .config import Settings
from .interceptors import CallPipeline
from .logging import configure_logging, get_logger
from .metrics import RpcMetrics, default_metrics, start_metrics_server

__all__ = [
    "Server", "build_server", "serve", "run", "server_options", "settle_heap", "raise_open_file_limit", "HEALTH_SERVICE_NAME",
]

T = TypeVar("T")
# Allocations between young-generation collections once a process serves (Python's default is
# 700). Measured under bench-order: the order service spent ~60 us of GC per order at 700 and
# ~13 us at 20,000 with the start-up heap frozen; 10,000 keeps each pause near 5 ms.
SERVING_GC_GEN0 = 10_000
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def server_options(max_pending_calls: int = 0, max_request_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """max_pending_calls > 0: gRPC refuses new calls once that many wait for the event loop
    (at random up to twice as many, always beyond; see Settings.max_pending_calls).
    max_request_bytes: larger requests are refused by gRPC itself (RESOURCE_EXHAUSTED), before
    they are read into memory; answers may still be up to MAX_MESSAGE_BYTES."""
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
    ) -> None:
        self.settings = settings
        self.max_request_bytes = max_request_bytes
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
        self._on_start, self._on_stop = on_start, on_stop
        self.admission = admission or admission_from_settings(settings)
        self.metrics = metrics if metrics is not None else default_metrics()
        self.logger = get_logger(settings.service)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def grpc_server(self) -> grpc.aio.Server | None:
        return self._server

    async def start(self) -> int:
        """Start serving; returns the bound port (settings.port 0 = an ephemeral port)."""
        s = self.settings
        if self._on_start is not None:
            await self._on_start()
        pipeline = CallPipeline(
            s.service, s, self.policy, self.admission, self.criticality, self.metrics, self.logger
        )
        options = server_options(getattr(s, "max_pending_calls", 0), self.max_request_bytes)
        server = grpc.aio.server(interceptors=[pipeline], options=options)
        self._register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*self.service_names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{s.host}:{s.port}"
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
        if port == 0:
            raise RuntimeError(f"could not bind {address}")
        await server.start()
        self.admission.watch_loop_lag(getattr(s, "max_loop_lag_ms", 0.0) / 1000)
        self._server, self.port = server, port
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop; safe to call more than once (later calls wait for the first)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.settings.grace_seconds if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        self.admission.stop_watching_loop_lag()
        if self._on_stop is not None:
            await self._on_stop()

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
) -> Server:
    """require_client_cert: None = mutual TLS whenever MIANDAN_TLS_CA is set; False = one-way
    TLS for end users (the gateway's public port); True = insist (ValueError without a CA)."""
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
    )


async def serve(settings: Settings, **kwargs: Any) -> None:
    """Run a service until SIGTERM/SIGINT, then stop gracefully (the process then exits 0)."""
    await serve_server(settings, build_server(settings, **kwargs))


async def serve_built(build: Callable[[Settings], Awaitable[Server]], settings: Settings) -> None:
    """`__main__` of every service: the same `wiring.build` the tests use, served until a signal."""
    configure_logging(settings)  # before build, so store migrations are logged too
    await serve_server(settings, await build(settings))


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
    logger = configure_logging(settings)
    lifted = raise_open_file_limit()
    if lifted is not None:
        logger.info("open file limit raised", extra={"from": lifted[0], "to": lifted[1]})
    if settings.metrics_port:
        start_metrics_server(settings.metrics_port)
    port = await server.start()
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
    if os.environ.get("MIANDAN_EVENT_LOOP", "").strip().lower() == "asyncio":
        return asyncio.run(main)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("services.common.server is a library; run a service, e.g. python -m services.card")
