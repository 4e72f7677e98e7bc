"""`python -m gateway`: the public gRPC front (port 50050 by default)."""
from __future__ import annotations

from services.common.server import main as serve_main

from .wiring import build, options_from_env


def main() -> None:
    # No store: the gateway keeps nothing in MIANDAN_DATA.
    serve_main("gateway", build, options=options_from_env, uses_store=False)


if __name__ == "__main__":
    main()
