"""The line `make run` prints per server gives the /metrics address it really listens on:
loopback (services.common.metrics), whatever MIANDAN_HOST the gRPC servers listen on. It printed
the service's host: http://0.0.0.0:51050/metrics, or a LAN address where nothing answers."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.suite import Child, listening_line

SECRETS = {
    "MIANDAN_INTERNAL_TOKEN": "i" * 40, "MIANDAN_ADMIN_TOKEN": "a" * 40, "MIANDAN_MERCHANT_TOKEN": "m" * 40,
    "MIANDAN_MERCHANT_SIGNING_KEY": "k" * 40, "MIANDAN_JWT_SECRET": "j" * 40,
}


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7", "127.0.0.1"])
def test_the_metrics_address_is_loopback(tmp_path, host):
    child = Child("card", {"MIANDAN_HOST": host, "MIANDAN_CARD_PORT": "46051", **SECRETS}, tmp_path / "card.log")
    child.process = SimpleNamespace(pid=4242)
    line = listening_line(child)
    assert f"listening on {host}:46051" in line
    assert "metrics http://127.0.0.1:47051/metrics" in line and "(pid 4242)" in line


def test_no_metrics_no_address(tmp_path):
    child = Child("card", {"MIANDAN_CARD_PORT": "46051", "MIANDAN_CARD_METRICS_PORT": "off"}, tmp_path / "card.log")
    child.process = SimpleNamespace(pid=1)
    assert "metrics" not in listening_line(child)
