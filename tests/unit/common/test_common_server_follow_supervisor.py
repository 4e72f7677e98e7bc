"""A service asks to be stopped with its supervisor only when a supervisor says it started it."""
from services.common.server import follow_supervisor


def test_without_a_supervisor_nothing_is_asked():
    assert follow_supervisor({}) is False
    assert follow_supervisor({"MIANDAN_SUPERVISOR_PID": ""}) is False
    assert follow_supervisor({"MIANDAN_SUPERVISOR_PID": "not-a-pid"}) is False
