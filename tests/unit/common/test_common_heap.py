"""settle_heap: a serving process freezes its start-up heap and collects the young generation
less often."""
from __future__ import annotations

import gc

from services.common.server import SERVING_GC_GEN0, settle_heap


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        survivor = [object() for _ in range(10)]  # lives "since start-up"
        settle_heap()
        assert gc.get_freeze_count() > len(survivor)
        assert gc.get_threshold() == (SERVING_GC_GEN0, before[1], before[2])
        # Frozen objects are out of the collector's sight but still alive and usable.
        assert len(survivor) == 10
        # Cyclic garbage made after settling is still collected.
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
