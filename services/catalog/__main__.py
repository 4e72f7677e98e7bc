"""`python -m services.catalog`: the merchant-catalog server."""
from services.common.config import Settings
from services.common.server import run, serve_built

from .wiring import build

if __name__ == "__main__":
    run(serve_built(build, Settings.from_env("catalog")))
