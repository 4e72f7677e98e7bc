"""A free loopback port for a server a harness is about to start (tests, benchmarks, the demo's
own suite): the port goes into the child's environment and the child binds it.

Why not bind(0) and hand that number on: the kernel picks such a port from its ephemeral range,
the same range it takes from for every outgoing connection, so between closing the probe and
the child binding, any process's connect() may take it. Seen: a suite start failing with
"Failed to bind to address 127.0.0.1:59261" while tests opened connections beside it. Ports
below the ephemeral range are never given to outgoing connections; one is picked at random
there, checked free, and never handed out twice by this process.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

LOWEST = 10_000
_handed_out: set[int] = set()
_rng = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; other systems start higher still (49152)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    high = _ephemeral_start()
    if high - LOWEST >= 1_000:
        for _ in range(200):
            port = _rng.randrange(LOWEST, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    # A range too narrow to pick from: the kernel's choice, with the race described above.
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
