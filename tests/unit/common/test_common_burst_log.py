"""BurstLog: one line for a burst of like events, and one more a while later while it goes on,
saying how many events the silence stood for."""
import logging

from services.common.logging import BurstLog
from tests.log_lines import Lines


def test_a_burst_is_one_line_and_the_next_line_after_the_quiet_time_counts_the_untold_ones():
    now = [100.0]
    logger = logging.getLogger("miandan.test.burst")
    lines = Lines()
    logger.addHandler(lines)
    try:
        burst = BurstLog(logger, quiet_s=60, time_source=lambda: now[0])
        told = [burst.log("upstream refused our credential", {"upstream": "card"}) for _ in range(5)]
        now[0] += 61
        told.append(burst.log("upstream refused our credential", {"upstream": "card"}))
    finally:
        logger.removeHandler(lines)
    assert told == [True, False, False, False, False, True]
    assert [(r.levelno, r.untold, r.upstream) for r in lines.records] == [(logging.ERROR, 0, "card"), (logging.ERROR, 4, "card")]
