"""`python -m services.catalog`: the merchant-catalog server."""
import os

# pypinyin's phrase dictionary costs ~40 MB of RSS per process; the resolver compares pinyin of
# the sentence with pinyin of menu names computed the same way, so per-character readings are
# enough (dev and held-out accuracy are identical without it). Must be set before pypinyin loads.
os.environ.setdefault("PYPINYIN_NO_PHRASES", "true")
os.environ.setdefault("PYPINYIN_NO_DICT_COPY", "true")

from services.common.server import main  # noqa: E402

from .wiring import build  # noqa: E402

if __name__ == "__main__":
    main("catalog", build)
