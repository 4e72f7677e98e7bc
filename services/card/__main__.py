"""`python -m services.card`: the card service on MIANDAN_CARD_PORT (default 50051)."""
from services.common.config import Settings
from services.common.server import run, serve_built

from .wiring import build

if __name__ == "__main__":
    run(serve_built(build, Settings.from_env("card")))
