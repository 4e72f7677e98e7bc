"""An upstream that refuses the relay's own internal credential (MIANDAN_INTERNAL_TOKEN rotated on
one process and not yet on the other) is a deployment fault the caller cannot fix and that passes
once the rotation is done: the caller hears UNAVAILABLE / UPSTREAM_UNAVAILABLE with a retry delay,
never INTERNAL and nothing of whose credential was refused; the operator reads one ERROR line per
burst, not one per call. Two real servers wired as services are, the upstream expecting another
token than the relay sends."""
import dataclasses
import logging

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.admission import AdmissionController
from services.common.auth import ADMIN, AccessPolicy, internal_metadata
from services.common.errors import error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

from tests.integration.common.kit_server import kit_settings
from tests.log_lines import Lines

UPSTREAM, RELAY = "test.Upstream", "test.Relay"


async def _serve(settings, name, handlers, roles=None):
    metrics = RpcMetrics(CollectorRegistry())
    server = build_server(
        settings,
        service_names=[name],
        register=lambda s: s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),)),
        policy=AccessPolicy(settings, roles or {}),
        admission=AdmissionController(8, min_limit=8, max_limit=8, max_wait_ms=0),
        metrics=metrics,
    )
    return server, await server.start(), metrics


@pytest.fixture
async def relay():
    async def echo(request, context):
        return request

    unary = grpc.unary_unary_rpc_method_handler
    relay_settings = kit_settings()
    rotated = dataclasses.replace(relay_settings, internal_token="the-next-internal-token")
    upstream, up_port, _ = await _serve(
        rotated, UPSTREAM, {"Echo": unary(echo), "AdminEcho": unary(echo)}, roles={f"/{UPSTREAM}/AdminEcho": ADMIN}
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up_port}")

    def forwarding(method, sent):
        async def handler(request, context):
            return await channel.unary_unary(f"/{UPSTREAM}/{method}")(request, metadata=sent, timeout=5)
        return unary(handler)

    relay_server, relay_port, metrics = await _serve(
        relay_settings, RELAY, {
            # Its own (old) internal token, as a process not yet rotated sends: UNAUTHENTICATED.
            "Echo": forwarding("Echo", internal_metadata(relay_settings)),
            # The new internal token without the admin one: PERMISSION_DENIED / ADMIN_REQUIRED.
            "NotAdmin": forwarding("AdminEcho", internal_metadata(rotated)),
        }
    )
    lines = Lines()
    log = logging.getLogger(f"miandan.{relay_settings.service}")
    log.addHandler(lines)
    caller = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
    creds = internal_metadata(relay_settings)

    def call(name):
        return caller.unary_unary(f"/{RELAY}/{name}")(b"x", metadata=creds, timeout=5)

    call.lines, call.metrics = lines, metrics
    yield call
    log.removeHandler(lines)
    await caller.close()
    await channel.close()
    await relay_server.stop(0)
    await upstream.stop(0)


@pytest.mark.parametrize("name", ["Echo", "NotAdmin"])
async def test_an_upstream_refusing_our_internal_token_reaches_the_caller_as_unavailable_with_a_retry_delay(relay, name):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await relay(name)
    details = error_details(info.value)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details["reason"] == "UPSTREAM_UNAVAILABLE"
    assert details["retry_after_ms"] == 1000 and details["pushback_ms"] == 1000
    # Whose credential was refused is for the operator's log, not for end users.
    assert "credential" not in details["message"].lower() and not details["metadata"]


async def test_a_burst_of_refused_credentials_is_one_error_line_for_the_operator_and_counted_per_call(relay):
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError):
            await relay("Echo")
    alarms = [r for r in relay.lines.records if r.levelno == logging.ERROR and r.getMessage() == "upstream refused our credential"]
    assert len(alarms) == 1
    assert alarms[0].upstream_reason == "CREDENTIAL_INVALID"
    refused = relay.metrics.refusals.labels("card", "UNAVAILABLE", "UPSTREAM_CREDENTIAL_INVALID")._value.get()
    assert refused == 5
