"""Every kit server pings idle connections and drops those whose ping goes unanswered (see
tests/integration/common/test_common_keepalive.py for a vanished client's stream)."""
import pytest

from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.server import build_server, keepalive_from_env, server_options


def test_servers_ping_idle_connections_after_a_minute_and_drop_them_after_twenty_seconds():
    options = dict(server_options())
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.http2.ping_timeout_ms"] == 20_000
    # Pings go on over an idle stream, and clients' own 30 s pings are still welcome.
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 30_000


def test_the_environment_sets_the_keepalive():
    assert keepalive_from_env({}) == (60, 20)
    env = {"MIANDAN_KEEPALIVE_SECONDS": "15", "MIANDAN_KEEPALIVE_TIMEOUT_SECONDS": "5"}
    assert keepalive_from_env(env) == (15, 5)
    options = dict(server_options(keepalive_s=15, keepalive_timeout_s=5))
    assert (options["grpc.keepalive_time_ms"], options["grpc.keepalive_timeout_ms"]) == (15_000, 5_000)


@pytest.mark.parametrize("var, value", [
    ("MIANDAN_KEEPALIVE_SECONDS", "0"), ("MIANDAN_KEEPALIVE_SECONDS", "soon"),
    ("MIANDAN_KEEPALIVE_TIMEOUT_SECONDS", "inf"), ("MIANDAN_KEEPALIVE_TIMEOUT_SECONDS", "100000"),
])
def test_a_bad_keepalive_fails_the_build_naming_the_variable(monkeypatch, var, value):
    with pytest.raises(ValueError, match=var):
        keepalive_from_env({var: value})
    monkeypatch.setenv(var, value)
    settings = Settings.from_env("card", {})
    with pytest.raises(ValueError, match=var):
        build_server(settings, service_names=["t"], register=lambda s: None, policy=AccessPolicy(settings, {}))


def test_a_server_takes_its_keepalive_from_the_environment(monkeypatch):
    monkeypatch.setenv("MIANDAN_KEEPALIVE_SECONDS", "90")
    settings = Settings.from_env("card", {})
    server = build_server(settings, service_names=["t"], register=lambda s: None, policy=AccessPolicy(settings, {}))
    assert server.keepalive == (90, 20)
