"""miandan_rpc_refusals_total: busy answers by machine reason, with a bounded number of series."""
from prometheus_client import CollectorRegistry

from services.common.metrics import MAX_REFUSAL_REASONS, RpcMetrics


def value(registry, **labels):
    return registry.get_sample_value("miandan_rpc_refusals_total", labels)


def test_refusals_are_counted_by_service_code_and_reason():
    registry = CollectorRegistry()
    m = RpcMetrics(registry)
    m.refused("gateway", "UNAVAILABLE", "OVERLOADED")
    m.refused("gateway", "UNAVAILABLE", "OVERLOADED")
    m.refused("gateway", "RESOURCE_EXHAUSTED", "USER_RATE_LIMITED")
    assert value(registry, service="gateway", code="UNAVAILABLE", reason="OVERLOADED") == 2
    assert value(registry, service="gateway", code="RESOURCE_EXHAUSTED", reason="USER_RATE_LIMITED") == 1


def test_reasons_beyond_the_bound_are_counted_as_other():
    registry = CollectorRegistry()
    m = RpcMetrics(registry)
    for n in range(MAX_REFUSAL_REASONS + 10):
        m.refused("order", "UNAVAILABLE", f"R{n}")
    assert value(registry, service="order", code="UNAVAILABLE", reason="OTHER") == 10
    assert len(m._refusals) == MAX_REFUSAL_REASONS + 1
