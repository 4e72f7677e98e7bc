"""Mutual TLS as the internal credential: a kit server (build_server, port 0) configured with
MIANDAN_TLS_CERT/KEY/CA, and real card and catalog servers behind it; certificates are generated
per test (conftest.py). With a CA configured the handshake itself keeps out every caller without
a certificate from that CA; a verified certificate then counts as the internal credential, so
internal RPCs need no token, while admin RPCs still need the admin token."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from services.common.auth import ADMIN, ADMIN_TOKEN_KEY, AccessPolicy, internal_metadata, open_channel
from services.common.config import Settings
from services.common.errors import error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

pytestmark = pytest.mark.timeout(60)

SERVICE = "test.Echo"


def tls_settings(pki, service: str = "card", **changes) -> Settings:
    base = Settings.from_env(service, {"MIANDAN_LOG_CALLS": "0"})
    fields = dict(port=0, metrics_port=None, grace_seconds=1.0, tls_cert=pki.service.cert, tls_key=pki.service.key, tls_ca=pki.ca)
    return dataclasses.replace(base, **{**fields, **changes})


def register_echo(server: grpc.aio.Server) -> None:
    async def echo(request, context):
        return request

    async def peer(request, context):
        # What the handshake proved about the caller, for the assertions below.
        return b",".join(v for v in context.auth_context().get("x509_common_name", []))

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in (("Echo", echo), ("Admin", echo), ("Peer", peer))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def start_echo(settings: Settings, **kw):
    server = build_server(
        settings,
        service_names=[SERVICE],
        register=register_echo,
        policy=AccessPolicy(settings, {f"/{SERVICE}/Admin": ADMIN}),
        metrics=RpcMetrics(CollectorRegistry()),
        **kw,
    )
    port = await server.start()
    return server, f"127.0.0.1:{port}"


def tls_channel(address: str, pki, client=None, root=None) -> grpc.aio.Channel:
    """A TLS channel trusting `root` (default: the suite CA), presenting `client`'s cert if any."""
    key, chain = client.read() if client is not None else (None, None)
    creds = grpc.ssl_channel_credentials(
        root_certificates=(root or pki.ca).read_bytes(), private_key=key, certificate_chain=chain
    )
    return grpc.aio.secure_channel(address, creds)


def echo(channel: grpc.aio.Channel, name: str = "Echo"):
    return channel.unary_unary(f"/{SERVICE}/{name}")


async def code_of(awaitable) -> grpc.StatusCode:
    try:
        await awaitable
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def mtls_server(pki):
    server, address = await start_echo(tls_settings(pki))
    assert server.require_client_cert
    yield server, address
    await server.stop(0)


async def test_a_client_with_a_certificate_from_the_suite_ca_needs_no_internal_token(mtls_server, pki):
    _, address = mtls_server
    async with tls_channel(address, pki, client=pki.client) as channel:
        assert await echo(channel)(b"hi", timeout=5) == b"hi"
        assert await echo(channel, "Peer")(b"", timeout=5) == b"lottery"


async def test_a_client_without_a_certificate_fails_the_handshake(mtls_server, pki):
    _, address = mtls_server
    async with tls_channel(address, pki) as channel:
        # Even with the right token: the transport refuses before any RPC is read.
        assert await code_of(echo(channel)(b"", metadata=internal_metadata(tls_settings(pki)), timeout=5)) is grpc.StatusCode.UNAVAILABLE


async def test_a_client_certificate_from_another_ca_fails_the_handshake(mtls_server, pki):
    _, address = mtls_server
    async with tls_channel(address, pki, client=pki.foreign_client) as channel:
        assert await code_of(echo(channel)(b"", timeout=5)) is grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_fails(mtls_server, pki):
    _, address = mtls_server
    async with grpc.aio.insecure_channel(address) as channel:
        assert await code_of(echo(channel)(b"", metadata=internal_metadata(tls_settings(pki)), timeout=5)) is grpc.StatusCode.UNAVAILABLE


async def test_an_admin_method_still_needs_the_admin_token_over_mtls(mtls_server, pki):
    server, address = mtls_server
    async with tls_channel(address, pki, client=pki.client) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await echo(channel, "Admin")(b"", timeout=5)
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert error_details(info.value)["reason"] == "ADMIN_REQUIRED"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await echo(channel, "Admin")(b"", metadata=((ADMIN_TOKEN_KEY, "wrong"),), timeout=5)
        assert error_details(info.value)["reason"] == "CREDENTIAL_INVALID"
        # The certificate stands in for the internal token; the admin token is still needed.
        admin_only = ((ADMIN_TOKEN_KEY, server.settings.admin_token),)
        assert await echo(channel, "Admin")(b"ok", metadata=admin_only, timeout=5) == b"ok"


async def test_health_answers_over_tls(mtls_server, pki):
    _, address = mtls_server
    async with tls_channel(address, pki, client=pki.client) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in (SERVICE, ""):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_one_way_tls_lets_clients_without_certificates_in_but_does_not_trust_their_certificates(pki):
    server, address = await start_echo(tls_settings(pki), require_client_cert=False)
    try:
        assert not server.require_client_cert and not server.policy.trust_client_certificates
        async with tls_channel(address, pki) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await echo(channel)(b"", timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert error_details(info.value)["reason"] == "CREDENTIAL_MISSING"
            assert await echo(channel)(b"t", metadata=internal_metadata(server.settings), timeout=5) == b"t"
        # A certificate the server did not ask for (and so did not verify) proves nothing.
        async with tls_channel(address, pki, client=pki.client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await echo(channel)(b"", timeout=5)
            assert error_details(info.value)["reason"] == "CREDENTIAL_MISSING"
    finally:
        await server.stop(0)


def test_insisting_on_client_certificates_without_a_ca_is_a_configuration_error(pki):
    with pytest.raises(ValueError, match="MIANDAN_TLS_CA"):
        build_server(
            tls_settings(pki, tls_ca=None), service_names=[SERVICE], register=register_echo,
            policy=AccessPolicy(Settings(service="card")), require_client_cert=True,
        )


async def test_a_real_card_service_serves_an_internal_caller_with_a_certificate_and_refuses_one_without(pki, tmp_path):
    from services.card.wiring import build as build_card

    card = await build_card(tls_settings(pki, data_dir=tmp_path))
    port = await card.start()
    address = f"127.0.0.1:{port}"
    # The lottery service as it runs with MIANDAN_TLS_*: its own certificate, the suite CA.
    lottery = tls_settings(pki, "lottery", tls_cert=pki.client.cert, tls_key=pki.client.key)
    create = card_service_pb2.CreateCampaignRequest(
        request_id="c1", campaign_id="mtls", name="mTLS", rules=card_pb2.CampaignRules(budget_fen=10_000)
    )
    create.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=timezone.utc))
    create.end_time.FromDatetime(datetime(2028, 1, 1, tzinfo=timezone.utc))
    try:
        channel = open_channel(lottery, address)
        try:
            cards = card_service_pb2_grpc.CardServiceStub(channel)
            await cards.CreateCampaign(create, metadata=internal_metadata(lottery, admin=True), timeout=10)
            got = await cards.GetCampaign(
                card_service_pb2.GetCampaignRequest(campaign_id="mtls"), metadata=internal_metadata(lottery), timeout=10
            )
            assert got.campaign.campaign_id == "mtls"
        finally:
            await channel.close()
        # The same caller without TLS settings (plaintext), and with TLS but no certificate.
        no_tls = dataclasses.replace(lottery, tls_cert=None, tls_key=None, tls_ca=None)
        for channel in (open_channel(no_tls, address), tls_channel(address, pki)):
            try:
                cards = card_service_pb2_grpc.CardServiceStub(channel)
                call = cards.GetCampaign(
                    card_service_pb2.GetCampaignRequest(campaign_id="mtls"), metadata=internal_metadata(lottery), timeout=5
                )
                assert await code_of(call) is grpc.StatusCode.UNAVAILABLE
            finally:
                await channel.close()
    finally:
        await card.stop(0)
