"""`python -m gateway`: the public gRPC front (port 50050 by default)."""
from __future__ import annotations

from services.common.config import Settings
from services.common.server import run, serve_built

from .wiring import build


def main() -> None:
    run(serve_built(build, Settings.from_env("gateway")))


if __name__ == "__main__":
    main()
