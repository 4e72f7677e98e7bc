"""MIANDAN_HOST may be a bare IPv6 address (::1): it is bracketed wherever it goes before a port.
It was pasted as it was, and gRPC reads "::1:50051" as the address ::1:50051 on its default port
443: the server refused to start with only "Failed to bind", and the suite's upstream addresses
pointed nowhere. A host that is neither a name nor an address is refused in one line, and so is
a bare IPv6 upstream address, which cannot be bracketed for the operator."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.common.config import SERVICES, Settings
from services.suite import Child, listening_line, suite_env


@pytest.mark.parametrize(
    ("host", "listens_on"),
    [("::1", "[::1]"), ("[::1]", "[::1]"), ("::", "[::]"), ("fe80::1%eth0", "[fe80::1%eth0]"), ("2001:db8::7", "[2001:db8::7]")],
)
def test_an_ipv6_host_is_bracketed_in_the_address_with_or_without_brackets(host, listens_on):
    s = Settings.from_env("order", {"MIANDAN_HOST": host, "MIANDAN_ALLOW_DEV_SECRETS": "1"})
    assert s.host == listens_on
    assert s.address == f"{listens_on}:50053"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "order.internal"])
def test_names_and_ipv4_addresses_are_kept_as_they_are(host):
    assert Settings.from_env("order", {"MIANDAN_HOST": host, "MIANDAN_ALLOW_DEV_SECRETS": "1"}).host == host


@pytest.mark.parametrize("host", ["localhost:50053", "[::1]:50053", "[127.0.0.1]", "::1]", "[::1", "::g"])
def test_a_host_with_a_port_or_stray_brackets_is_refused_in_one_line(host):
    with pytest.raises(ValueError) as caught:
        Settings.from_env("order", {"MIANDAN_HOST": host})
    message = str(caught.value)
    assert f"MIANDAN_HOST={host!r}" in message and "MIANDAN_ORDER_PORT" in message
    assert "\n" not in message


def test_a_published_secret_is_still_refused_on_an_ipv6_wildcard_naming_the_host_as_given():
    with pytest.raises(ValueError, match=r"MIANDAN_HOST=:: listens beyond this machine"):
        Settings.from_env("card", {"MIANDAN_HOST": "::"})


@pytest.mark.parametrize("addr", ["::1:50051", "::1", "2001:db8::7:50051", "fe80::1"])
def test_a_bare_ipv6_upstream_address_is_refused_saying_it_needs_brackets(addr):
    with pytest.raises(ValueError) as caught:
        Settings.from_env("order", {"MIANDAN_CARD_ADDR": addr})
    message = str(caught.value)
    assert f"MIANDAN_CARD_ADDR={addr!r}" in message and "brackets" in message and "[::1]:50051" in message


@pytest.mark.parametrize("addr", ["[::1]:50051", "ipv6:[::1]:50051", "dns:///card.internal:50051", "card.internal:50051"])
def test_bracketed_and_named_upstream_addresses_are_kept(addr):
    assert Settings.from_env("order", {"MIANDAN_CARD_ADDR": addr}).card_addr == addr


def test_make_run_on_a_bare_ipv6_host_points_every_upstream_at_it_in_brackets(tmp_path):
    env = suite_env({"MIANDAN_HOST": "::1", "MIANDAN_DATA": str(tmp_path)})
    for name in SERVICES:
        port = Settings.from_env(name, {}).port
        assert env[f"MIANDAN_{name.upper()}_ADDR"] == f"[::1]:{port}"
    # Each service reads its upstreams back from that environment.
    assert Settings.from_env("gateway", env).order_addr == "[::1]:50053"


def test_make_run_prints_the_bracketed_address(tmp_path):
    child = Child("card", {"MIANDAN_HOST": "::1", "MIANDAN_CARD_PORT": "46051"}, tmp_path / "card.log")
    child.process = SimpleNamespace(pid=7)
    assert child.address == "[::1]:46051"
    assert "listening on [::1]:46051" in listening_line(child)
