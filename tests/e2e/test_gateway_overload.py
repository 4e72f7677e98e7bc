"""A flash crowd far above capacity, seen from outside: a second gateway process (`python -m
gateway`, as `make run` starts it) in front of the running suite's services, with its concurrency
limit lowered through MIANDAN_MAX_CONCURRENCY. Every answer is OK or a polite OVERLOADED with a
retry delay, nothing hangs past its deadline, health stays SERVING, and a CRITICAL order still
goes through while browsing is being shed."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.errors import error_details
from tests.e2e.suite_process import ROOT, free_port

pytestmark = pytest.mark.timeout(90)

POINT = common_pb2.GeoPoint(latitude=30.6200, longitude=120.5700)
STORE = "e2e-gw-overload-24h"
BURST = 300
DEADLINE_S = 3.0


@pytest.fixture(scope="module")
def small_gateway(suite):
    port, metrics = free_port(), free_port()
    env = dict(suite.env)
    env.update(
        MIANDAN_GATEWAY_PORT=str(port),
        MIANDAN_GATEWAY_METRICS_PORT=str(metrics),
        MIANDAN_MAX_CONCURRENCY="4",
        MIANDAN_LOG_CALLS="0",
    )
    for name in ("card", "catalog", "order", "lottery"):
        env[f"MIANDAN_{name.upper()}_ADDR"] = suite.addr(name)
    process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        yield f"127.0.0.1:{port}", metrics
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def open_store(suite):
    admin = internal_metadata(suite.settings, admin=True)
    with grpc.insecure_channel(suite.addr("catalog")) as channel:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        store = catalog_pb2.Store(store_id=STORE, brand_id="mixue", name="蜜雪冰城(压测全天店)", address="e2e", city="嘉兴", location=POINT)
        catalog.ImportStores(iter([catalog_service_pb2.ImportStoresRequest(stores=[store])]), metadata=admin, timeout=10)
        menu = catalog.GetMenu(catalog_service_pb2.GetMenuRequest(store_id=STORE), metadata=admin, timeout=10)
    return next(e.item for e in menu.entries if e.available)


async def test_a_burst_far_above_capacity_gets_only_ok_or_overloaded_and_critical_calls_pass(suite, small_gateway, open_store):
    address, metrics_port = small_gateway
    buyer = f"buyer-{uuid.uuid4().hex[:8]}"
    browser_md = (("authorization", f"Bearer {suite.token('browser-' + uuid.uuid4().hex[:8])}"),)
    buyer_md = (("authorization", f"Bearer {suite.token(buyer)}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        await stub.Join(gw.JoinRequest(request_id="j"), metadata=buyer_md, timeout=10)
        search = gw.SearchStoresRequest(search=catalog_service_pb2.SearchStoresRequest(location=POINT, radius_meters=3000, page_size=20))

        async def browse() -> tuple[str, str | None, int | None, str, float]:
            start = time.perf_counter()
            try:
                await stub.SearchStores(search, metadata=browser_md, timeout=DEADLINE_S)
                return "OK", None, None, "", time.perf_counter() - start
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                return err.code().name, d["reason"], d["pushback_ms"], d["message"] or "", time.perf_counter() - start

        async def buy(i: int) -> str:
            await asyncio.sleep(0.02 * i)  # in the middle of the burst
            order = await stub.PlaceOrder(
                gw.PlaceOrderRequest(request_id=f"burst-{i}", store_id=STORE,
                                     lines=[catalog_pb2.LineSelection(item_id=open_store.item_id, quantity=1)]),
                metadata=buyer_md, timeout=DEADLINE_S,
            )
            return order.order.order_id

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(browse() for _ in range(BURST)), buy(1), buy(2))
        wall = time.perf_counter() - start
        browsing, orders = outcomes[:BURST], outcomes[BURST:]

        codes = Counter((code, reason) for code, reason, *_ in browsing)
        print("burst outcomes", dict(codes), "wall", round(wall, 3), "orders", orders)
        assert set(codes) <= {("OK", None), ("UNAVAILABLE", "OVERLOADED")}, codes
        assert codes[("UNAVAILABLE", "OVERLOADED")] > 0, codes
        assert codes[("OK", None)] > 0, codes
        shed = [b for b in browsing if b[0] == "UNAVAILABLE"]
        assert all(pushback and pushback > 0 for _, _, pushback, _, _ in shed)
        assert all("当前参与人数较多" in message and "秒后再试" in message for *_, message, _ in shed)
        # Nothing waited past its deadline (how fast shedding is, is a benchmark figure:
        # make bench-overload).
        assert max(latency for *_, latency in browsing) < DEADLINE_S
        assert all(orders) and len(set(orders)) == 2
        assert wall < DEADLINE_S + 1

        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="miandan.gateway.v1.GatewayService"), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    # The shedding is visible in the gateway's Prometheus metrics.
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    shed_lines = [line for line in body.splitlines() if line.startswith("miandan_rpc_shed_total{")
                  and 'method="SearchStores"' in line and 'criticality="SHEDDABLE"' in line]
    assert shed_lines and float(shed_lines[0].rsplit(" ", 1)[1]) >= len(shed), body[:2000]
    # And by reason, beside whatever else was answered busy.
    refusals = [line for line in body.splitlines() if line.startswith('miandan_rpc_refusals_total{')
                and 'reason="OVERLOADED"' in line and 'service="gateway"' in line]
    assert refusals and float(refusals[0].rsplit(" ", 1)[1]) >= len(shed), body[:2000]
    assert any(line.startswith('miandan_admission_limit{service="gateway"}') for line in body.splitlines())
