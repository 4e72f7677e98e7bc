"""`make run` with ports that cannot work as set is refused up front, naming the variables the
operator set: two servers (or a server and a /metrics endpoint) on one port, and port 0, which
names no address the other services could call."""
from __future__ import annotations

import pytest

from services.suite import suite_env

PORTS = {f"MIANDAN_{name}_PORT": str(46_050 + i) for i, name in enumerate(("GATEWAY", "CARD", "CATALOG", "ORDER", "LOTTERY"))}


def _refused(tmp_path, **env: str) -> str:
    with pytest.raises(ValueError) as caught:
        suite_env({"MIANDAN_DATA": str(tmp_path), **PORTS, **env})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_two_services_on_one_port_are_named_both(tmp_path):
    message = _refused(tmp_path, MIANDAN_CATALOG_PORT="46051")
    assert "MIANDAN_CATALOG_PORT=46051" in message and "MIANDAN_CARD_PORT" in message


def test_a_service_on_another_ones_metrics_port_is_named(tmp_path):
    message = _refused(tmp_path, MIANDAN_GATEWAY_PORT="47051")  # the card's /metrics: its port + 1000
    assert "MIANDAN_GATEWAY_PORT=47051" in message and "MIANDAN_CARD_METRICS_PORT" in message
    message = _refused(tmp_path, MIANDAN_ORDER_METRICS_PORT="46052")
    assert "MIANDAN_CATALOG_PORT" in message and "MIANDAN_ORDER_METRICS_PORT" in message


def test_port_zero_names_the_port_not_an_address_nobody_set(tmp_path):
    message = _refused(tmp_path, MIANDAN_GATEWAY_PORT="0")
    assert "MIANDAN_GATEWAY_PORT=0" in message and "MIANDAN_GATEWAY_ADDR" not in message


def test_distinct_ports_and_metrics_off_still_pass(tmp_path):
    env = suite_env({"MIANDAN_DATA": str(tmp_path), **PORTS, "MIANDAN_CARD_METRICS_PORT": "off", "MIANDAN_GATEWAY_METRICS_PORT": "off"})
    assert env["MIANDAN_CARD_ADDR"] == "127.0.0.1:46051"
