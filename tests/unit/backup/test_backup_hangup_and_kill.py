"""A backup cut short by the terminal going away (SIGHUP: the ssh session of the operator who
typed `make backup` dropped) or by kill -9 (the OOM killer, a host being drained) leaves nothing
at DEST: a directory holding the order and lottery stores but no card store would pass for a
backup, and a restore from it would lose every wallet. Only a complete backup ever has DEST's name."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import importlib.util

# The sibling test's store maker and its mid-copy signal script (pytest imports in importlib mode).
_spec = importlib.util.spec_from_file_location("_backup_interrupted", Path(__file__).with_name("test_backup_interrupted.py"))
_sibling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sibling)
SIGTERM_SCRIPT, _store = _sibling.SIGTERM_SCRIPT, _sibling._store


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name in ("order", "lottery", "catalog", "card"):
        _store(d / f"{name}.db")
    _store(d / "big.db", rows=400)  # copied between lottery and card, one page per step
    return d


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill-9"])
def test_a_backup_cut_short_mid_copy_leaves_nothing_named_dest(tmp_path, data, sig):
    dest = tmp_path / "backups" / "20260101-120000"
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "protos"), str(root)]))
    script = SIGTERM_SCRIPT.replace("signal.SIGTERM)", f"signal.{sig.name})")
    assert f"signal.{sig.name})" in script
    done = subprocess.run(
        [sys.executable, "-c", script, "backup", str(dest), "--data", str(data)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode in (130, -sig), (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert not dest.exists(), sorted(p.name for p in dest.iterdir())
    if sig == signal.SIGHUP:  # heard like Ctrl-C: cleaned up and said so
        assert done.returncode == 130 and "interrupted" in done.stderr
        assert list(dest.parent.iterdir()) == []
