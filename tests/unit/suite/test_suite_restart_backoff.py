"""`make run` restarts a dead service at once, but one that keeps dying right after its start
waits longer each time instead of being restarted five times a second forever."""

from services.suite import RESTART_MAX_DELAY_S, STEADY_S, Suite, restart_delay


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeChild:
    name = "order"

    def __init__(self, now: float) -> None:
        self.restarts = self.quick_exits = 0
        self.restart_at = None
        self.starts: list[float] = []
        self.now = now
        self.start()

    def start(self) -> None:
        self.process = FakeProcess()
        self.started_at = self.now
        self.restart_at = None
        self.starts.append(self.now)


def test_the_delay_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [restart_delay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert restart_delay(50) == RESTART_MAX_DELAY_S


def _run(child: FakeChild, suite: Suite, until: float, exit_after: float, step: float = 0.1) -> None:
    """Advance time in steps; the child exits `exit_after` seconds after each start."""
    while child.now < until:
        if child.process.returncode is None and child.now - child.started_at >= exit_after:
            child.process.returncode = 1
        suite.tend(child.now)
        child.now = round(child.now + step, 6)


def test_a_child_that_dies_at_start_is_restarted_less_and_less_often(capsys) -> None:
    child = FakeChild(now=0.0)
    suite = Suite([child])
    _run(child, suite, until=20.0, exit_after=0.2)
    gaps = [round(b - a, 1) for a, b in zip(child.starts, child.starts[1:])]
    # Each gap: 0.2 s of life, the supervisor noticing, then the delay (0, 0.5, 1, 2, 4, 8 s).
    assert len(child.starts) <= 8, gaps
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:])), gaps
    assert "restarting in 8 s (6 quick exits in a row)" in capsys.readouterr().out


def test_a_child_that_ran_steadily_is_restarted_at_once_again() -> None:
    child = FakeChild(now=0.0)
    suite = Suite([child])
    _run(child, suite, until=10.0, exit_after=0.2)
    assert child.quick_exits >= 3
    # Now it stays up long enough, then dies: back to an immediate restart.
    child.process = FakeProcess()
    child.restart_at = None
    child.started_at = child.now
    child.now += STEADY_S + 1
    child.process.returncode = 1
    suite.tend(child.now)
    assert child.quick_exits == 1 and child.starts[-1] == child.now


def test_nothing_is_restarted_once_the_suite_is_stopping() -> None:
    child = FakeChild(now=0.0)
    suite = Suite([child])
    suite.stopping.set()
    child.process.returncode = 1
    suite.tend(5.0)
    assert child.starts == [0.0]
