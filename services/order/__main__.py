"""`python -m services.order`: settings from the environment, then serve until SIGTERM/SIGINT."""
from __future__ import annotations

from services.common.server import main as serve_main

from .card_batch import batching_enabled
from .wiring import build, config_from_env


def _options() -> dict[str, object]:
    # The order service's own variables, refused with a one-line error before anything opens.
    batching_enabled()  # MIANDAN_CARD_BATCH
    return {"config": config_from_env()}


def main() -> None:
    serve_main("order", build, options=_options)


if __name__ == "__main__":
    main()
