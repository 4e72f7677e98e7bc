"""Ctrl-C during `make audit` (python -m miandan audit, which keeps asking a suite that does not
answer for --wait seconds) ends it with one line and exit 130, not a KeyboardInterrupt traceback."""
from __future__ import annotations

import pytest

import services.audit.fetch as fetch
from miandan.__main__ import main as miandan_main


def test_ctrl_c_while_the_audit_waits_is_one_line_and_exit_130(monkeypatch, capsys):
    async def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what asyncio.run raises in the main thread on SIGINT

    monkeypatch.setattr(fetch, "fetch_facts", interrupted)
    try:
        code = miandan_main(["audit", "--wait", "30"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of `python -m miandan audit` as a traceback")
    out = capsys.readouterr()
    assert code == 130
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], out.err
