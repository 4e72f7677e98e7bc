"""Prometheus metrics for every RPC. Label children are resolved once per method and cached:
`.labels()` takes a lock and hashes its arguments, which is too slow for the per-call path."""
from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["RpcMetrics", "MethodMetrics", "default_metrics", "start_metrics_server"]

# Sub-millisecond buckets matter: an in-process hop is ~100 µs.
# Distinct (service, code, reason) series of miandan_rpc_refusals_total at most.
MAX_REFUSAL_REASONS = 256
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MethodMetrics:
    """Pre-resolved children for one (service, method)."""

    __slots__ = ("_calls", "_service", "_method", "_by_code", "latency", "_shed", "_shed_by_crit")

    def __init__(self, rpc: "RpcMetrics", service: str, method: str) -> None:
        self._calls = rpc.calls
        self._service = service
        self._method = method
        self._by_code: dict[Any, Any] = {}
        self.latency = rpc.latency.labels(service, method)
        self._shed = rpc.shed
        self._shed_by_crit: dict[str, Any] = {}

    def count(self, code_name: str) -> None:
        child = self._by_code.get(code_name)
        if child is None:
            child = self._by_code[code_name] = self._calls.labels(self._service, self._method, code_name)
        child.inc()

    def shed(self, criticality: str) -> None:
        child = self._shed_by_crit.get(criticality)
        if child is None:
            child = self._shed_by_crit[criticality] = self._shed.labels(self._service, self._method, criticality)
        child.inc()


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.calls = Counter(
            "miandan_rpc_calls_total", "RPCs handled, by final status code", ["service", "method", "code"], registry=registry
        )
        self.latency = Histogram(
            "miandan_rpc_latency_seconds", "Handler latency of admitted RPCs", ["service", "method"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge("miandan_rpc_in_flight", "RPCs currently being handled", ["service"], registry=registry)
        self.admission_limit = Gauge(
            "miandan_admission_limit", "Current adaptive concurrency limit", ["service"], registry=registry
        )
        self.shed = Counter(
            "miandan_rpc_shed_total", "RPCs rejected by admission control", ["service", "method", "criticality"],
            registry=registry,
        )
        self.refusals = Counter(
            "miandan_rpc_refusals_total",
            "Calls answered busy or unavailable (UNAVAILABLE, RESOURCE_EXHAUSTED), by machine reason: "
            "this service's admission (OVERLOADED), a user's or a merchant's pace (USER_RATE_LIMITED, "
            "MERCHANT_RATE_LIMITED), an upstream's "
            "refusal passed on (UPSTREAM_UNAVAILABLE, or its own reason)",
            ["service", "code", "reason"],
            registry=registry,
        )
        self._refusals: dict[tuple[str, str, str], Any] = {}
        self._methods: dict[tuple[str, str], MethodMetrics] = {}

    def refused(self, service: str, code: str, reason: str) -> None:
        key = (service, code, reason)
        child = self._refusals.get(key)
        if child is None:
            if len(self._refusals) >= MAX_REFUSAL_REASONS:
                # Reasons are code constants, so this is a bound that never bites; still, a label
                # is a time series, and a peer's text must not be able to mint them.
                key = (service, code, "OTHER")
                child = self._refusals.get(key)
            if child is None:
                child = self._refusals[key] = self.refusals.labels(*key)
        child.inc()

    def method(self, service: str, method: str) -> MethodMetrics:
        key = (service, method)
        m = self._methods.get(key)
        if m is None:
            m = self._methods[key] = MethodMetrics(self, service, method)
        return m


_default: RpcMetrics | None = None


def default_metrics() -> RpcMetrics:
    """The process-wide instance on the default registry (collectors may be registered once)."""
    global _default
    if _default is None:
        _default = RpcMetrics()
    return _default


def start_metrics_server(port: int, host: str = "127.0.0.1") -> Any:
    """Serve /metrics over HTTP on a daemon thread; loopback by default (metrics are not public)."""
    return start_http_server(port, addr=host)
