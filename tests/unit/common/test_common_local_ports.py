import socket

from services.common import local_ports
from services.common.local_ports import free_port


def test_ports_come_from_below_the_ephemeral_range_and_never_twice():
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert all(local_ports.LOWEST <= p < local_ports._ephemeral_start() for p in ports)


def test_a_port_someone_listens_on_is_skipped(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, busy, 23_456])
        monkeypatch.setattr(local_ports, "_ephemeral_start", lambda: 65_536)
        monkeypatch.setattr(local_ports._rng, "randrange", lambda low, high: next(picks))
        monkeypatch.setattr(local_ports, "_handed_out", set())
        assert free_port() == 23_456


def test_a_narrow_range_falls_back_to_the_kernels_choice(monkeypatch):
    monkeypatch.setattr(local_ports, "_ephemeral_start", lambda: local_ports.LOWEST + 10)
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it is free
