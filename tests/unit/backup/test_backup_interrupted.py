"""A backup that fails or is interrupted (Ctrl-C, SIGTERM) partway leaves no DEST behind: a
directory holding the order and lottery stores but no card store would pass for a backup, and a
restore from it would lose every wallet. Ctrl-C is one line and exit 130, not a traceback, and
it is heard between copy steps, not only once a whole store is copied."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import services.backup as backup
from miandan.__main__ import main as miandan_main
from services.backup import back_up, back_up_store


def _store(path: Path, rows: int = 5) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"k{i}", os.urandom(2_000)) for i in range(rows)])
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name in ("order", "lottery", "catalog", "card"):
        _store(d / f"{name}.db")
    return d


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, store: str, exc: BaseException) -> None:
    real = backup.back_up_store

    def copy(source: Path, target: Path, **kw):
        if source.stem == store:
            raise exc
        return real(source, target, **kw)

    monkeypatch.setattr(backup, "back_up_store", copy)


def test_ctrl_c_between_two_stores_leaves_no_dest_and_says_so_in_one_line(tmp_path, data, monkeypatch, capsys):
    _interrupt_at(monkeypatch, "catalog", KeyboardInterrupt())
    dest = tmp_path / "backup"
    try:
        code = miandan_main(["backup", str(dest), "--data", str(data)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of the command as a KeyboardInterrupt (a traceback)")
    assert code == 130
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], out.err
    assert not dest.exists()  # not order.db and lottery.db without catalog and card


def test_a_store_that_cannot_be_copied_leaves_no_partial_dest(tmp_path, data):
    (data / "notes.db").write_bytes(b"not an SQLite database\n" * 200)  # copied between lottery and card
    dest = tmp_path / "backup"
    with pytest.raises(backup.BackupError):
        back_up(data, dest)
    assert not dest.exists()


def test_ctrl_c_inside_one_store_copy_leaves_no_half_written_file(tmp_path, data, monkeypatch):
    monkeypatch.setattr(backup, "_PAGES_PER_STEP", 1)
    _store(data / "big.db", rows=400)
    target = tmp_path / "out" / "big.db"
    steps: list[int] = []

    def progress(remaining: int, total: int) -> None:
        steps.append(remaining)
        if len(steps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        back_up_store(data / "big.db", target, progress=progress)
    assert not target.exists()


SIGTERM_SCRIPT = """
import os, signal, sqlite3, sys
import services.backup as backup
from miandan.__main__ import main

backup._PAGES_PER_STEP = 1
real_connect, real_backup, sent = sqlite3.connect, sqlite3.Connection.backup, []


class Src:
    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def backup(self, dst, *, pages, progress=None):
        def step(status, remaining, total):
            if not sent and total - remaining >= 3:
                sent.append(remaining)
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid>` would, mid-copy
            if progress is not None:
                progress(status, remaining, total)
        return real_backup(self._conn, dst, pages=pages, progress=step)


def connect(database, *args, **kw):
    conn = real_connect(database, *args, **kw)
    return Src(conn) if str(database).startswith("file:") and "big.db" in str(database) else conn


backup.sqlite3.connect = connect
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_a_copy_is_heard_between_steps_and_leaves_no_dest(tmp_path, data):
    """SIGTERM arrives while SQLite copies a store page by page: the copy stops at its next step
    (Python runs signal handlers only between bytecodes) and nothing is left."""
    _store(data / "big.db", rows=400)
    dest = tmp_path / "backup"
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "protos"), str(root)]))
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_SCRIPT, "backup", str(dest), "--data", str(data)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not dest.exists()


def test_a_backup_that_breaks_unexpectedly_is_exit_2_not_the_integrity_exit_1(data, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug of the backup itself")

    monkeypatch.setattr("services.backup.cli.back_up", broken)
    assert miandan_main(["backup", str(tmp_path / "dest"), "--data", str(data)]) == 2
    assert "could not run" in capsys.readouterr().err
