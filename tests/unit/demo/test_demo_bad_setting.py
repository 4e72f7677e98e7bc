"""`make demo` with a bad MIANDAN_* setting in its environment says which, in one line and exit
2, before it looks for a suite or starts one: not a ValueError traceback."""
from __future__ import annotations

import pytest

import scripts.demo as demo_module


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MIANDAN_GATEWAY_PORT", "abc"), ("MIANDAN_LOG_LEVEL", "loud"), ("MIANDAN_GATEWAY_ADDR", "nowhere")],
)
def test_a_bad_setting_is_one_line_naming_it(variable, value, monkeypatch, capsys):
    monkeypatch.setenv(variable, value)
    started: list[str] = []
    monkeypatch.setattr(demo_module, "start_own_suite", lambda *a, **k: started.append("suite"))
    try:
        code = demo_module.main([])
    except ValueError as exc:
        pytest.fail(f"ValueError escaped (a traceback): {exc}")
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], out.err
    assert not started
