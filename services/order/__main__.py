"""`python -m services.order`: settings from the environment, then serve until SIGTERM/SIGINT."""
from __future__ import annotations

from services.common.config import Settings
from services.common.server import run, serve_built

from .wiring import build


def main() -> None:
    run(serve_built(build, Settings.from_env("order")))


if __name__ == "__main__":
    main()
