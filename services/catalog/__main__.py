"""`python -m services.catalog`: the merchant-catalog server."""
from services.common.server import main

from .wiring import build

if __name__ == "__main__":
    main("catalog", build)
