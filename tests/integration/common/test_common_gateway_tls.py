"""The gateway when MIANDAN_TLS_CERT/KEY/CA turn on mutual TLS for the whole suite: its public
port serves one-way TLS (end users have no client certificate), while its upstream channels still
present the process certificate to internal services that insist on one."""
from __future__ import annotations

import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from miandan.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.config import Settings
from services.common.errors import error_details

from gateway.token import mint
from gateway.wiring import SERVICE_NAME, build as build_gateway

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def suite(pki, tmp_path):
    from services.catalog.wiring import build as build_catalog

    tls = dict(port=0, metrics_port=None, grace_seconds=1.0, tls_cert=pki.service.cert, tls_key=pki.service.key, tls_ca=pki.ca)
    catalog = await build_catalog(
        dataclasses.replace(Settings.from_env("catalog", {"MIANDAN_LOG_CALLS": "0"}), data_dir=tmp_path, **tls)
    )
    catalog_addr = f"127.0.0.1:{await catalog.start()}"
    settings = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_LOG_CALLS": "0"}),
        catalog_addr=catalog_addr,
        # Not used here; a closed port makes a stray call fail fast.
        card_addr="127.0.0.1:1", order_addr="127.0.0.1:1", lottery_addr="127.0.0.1:1",
        **tls,
    )
    gateway = await build_gateway(settings, campaign_id="spring-2026")
    gateway_addr = f"127.0.0.1:{await gateway.start()}"
    # What an end user's app has: the CA root to check the server, no certificate of its own.
    end_user = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    yield settings, gateway, gateway_addr, catalog_addr, end_user
    await gateway.stop(0)
    await catalog.stop(0)


async def test_an_end_user_without_a_client_certificate_reaches_the_gateway_over_tls(suite):
    settings, gateway, gateway_addr, _, end_user = suite
    assert not gateway.require_client_cert
    async with grpc.aio.secure_channel(gateway_addr, end_user) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        # The TLS handshake succeeded; what is missing is the end user's token, said as such.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetWallet(gw.GetWalletRequest(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_details(info.value)["reason"] == "TOKEN_MISSING"


async def test_the_gateway_presents_its_certificate_to_an_internal_service_that_requires_one(suite):
    settings, _, gateway_addr, catalog_addr, end_user = suite
    md = (("authorization", f"Bearer {mint(settings, 'alice')}"),)
    search = catalog_service_pb2.SearchStoresRequest(
        location=common_pb2.GeoPoint(latitude=30.62, longitude=120.57), radius_meters=3000, page_size=5
    )
    async with grpc.aio.secure_channel(gateway_addr, end_user) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        reply = await stub.SearchStores(gw.SearchStoresRequest(search=search), metadata=md, timeout=10)
        assert list(reply.stores) == []  # an empty catalog, reached through mutual TLS
    # The same end user going around the gateway to the catalog is stopped by the handshake,
    # even holding the internal token.
    async with grpc.aio.secure_channel(catalog_addr, end_user) as channel:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await catalog.SearchStores(search, metadata=internal_metadata(settings), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
