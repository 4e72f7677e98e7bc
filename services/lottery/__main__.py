"""`python -m services.lottery`: the lottery server (port 50054 unless MIANDAN_LOTTERY_PORT)."""
from services.common.server import main

from .wiring import build, draw_settings_from_env

if __name__ == "__main__":
    # MIANDAN_LOTTERY_* read (and refused with a one-line error) before the store is opened.
    main("lottery", build, options=lambda: {"draw_settings": draw_settings_from_env()})
