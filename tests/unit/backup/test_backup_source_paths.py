"""`python -m miandan backup` copies the right stores whatever characters the data directory's
path holds (SQLite URIs give "?", "#" and "%" a meaning), and never creates or changes anything
on the source side; a data directory it cannot copy is one line and exit 2, not a traceback."""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from miandan.__main__ import main as miandan_main
from services.backup import back_up, back_up_store
from services.backup.cli import main as backup_main

ODD_NAMES = ["data?mode=rw", "data#frag", "data%41", "d?a#t%41a", "数据 ?#%2F"]


def _store(path: Path, rows: int, *, wal: bool) -> None:
    conn = sqlite3.connect(path)
    try:
        if wal:  # as the services keep their stores
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE cards (card_id TEXT PRIMARY KEY, face_value_fen INTEGER)")
        conn.executemany("INSERT INTO cards VALUES (?, ?)", [(f"c{i}", 2_500) for i in range(rows)])
        conn.commit()
    finally:
        conn.close()


def _rows(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT card_id, face_value_fen FROM cards ORDER BY card_id").fetchall()
    finally:
        conn.close()


def _state(directory: Path) -> dict[str, tuple[int, int, str] | str]:
    """Every entry of directory: a file with its size, mtime and content hash."""
    out: dict[str, tuple[int, int, str] | str] = {}
    for p in sorted(directory.iterdir()):
        if p.is_file():
            st = p.stat()
            out[p.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            out[p.name] = "dir"
    return out


def _data_dir(tmp_path: Path, name: str) -> Path:
    data = tmp_path / "suite" / name
    data.mkdir(parents=True)
    _store(data / "card.db", 7, wal=True)
    _store(data / "order.db", 3, wal=False)
    return data


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_data_dir_with_uri_characters_is_copied_whole_and_left_untouched(tmp_path, name, capsys):
    data = _data_dir(tmp_path, name)
    parent_before, data_before = _state(data.parent), _state(data)
    dest = tmp_path / "backup"

    assert backup_main([str(dest), "--data", str(data)]) == 0
    out = capsys.readouterr()
    assert "backup complete" in out.out and "Traceback" not in out.err

    assert _rows(dest / "card.db") == _rows(data / "card.db") and len(_rows(dest / "card.db")) == 7
    assert _rows(dest / "order.db") == _rows(data / "order.db") and len(_rows(dest / "order.db")) == 3
    # Nothing new beside the data directory (a cut URI used to create a stray empty file there),
    # and nothing new or changed in it (no -wal/-shm left behind, no store rewritten).
    assert _state(data.parent) == parent_before
    assert _state(data) == data_before


def test_a_store_open_in_a_service_is_copied_with_its_log_and_its_files_stay(tmp_path):
    data = _data_dir(tmp_path, "live?#%41")
    service = sqlite3.connect(data / "card.db")  # holds the store open, its commits in the -wal
    try:
        service.execute("INSERT INTO cards VALUES ('late', 100)")
        service.commit()
        before = sorted(os.listdir(data))
        assert "card.db-wal" in before and "card.db-shm" in before
        copies = back_up(data, tmp_path / "backup")
        assert [c.integrity for c in copies] == ["ok", "ok"]
        assert ("late", 100) in _rows(tmp_path / "backup" / "card.db")
        assert sorted(os.listdir(data)) == before
        service.execute("INSERT INTO cards VALUES ('later', 100)")  # the service never noticed
        service.commit()
    finally:
        service.close()
    assert len(_rows(data / "card.db")) == 9


def test_a_store_that_vanished_is_not_created(tmp_path):
    data = tmp_path / "gone?#%41"
    data.mkdir()
    with pytest.raises(FileNotFoundError):
        back_up_store(data / "card.db", tmp_path / "backup" / "card.db")
    assert os.listdir(data) == [] and os.listdir(tmp_path) == ["gone?#%41"]


def _one_line_exit_2(code: int, capsys) -> str:
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    return lines[0]


def test_a_db_file_that_is_not_sqlite_is_one_line_and_exit_2(tmp_path, capsys):
    data = _data_dir(tmp_path, "data")
    (data / "notes.db").write_bytes(b"not an SQLite database\n" * 200)
    before = _state(data)
    dest = tmp_path / "backup"

    line = _one_line_exit_2(backup_main([str(dest), "--data", str(data)]), capsys)
    assert "notes.db" in line and "not a database" in line
    assert not (dest / "notes.db").exists()  # no empty copy that could pass for a store
    assert _state(data) == before


def test_the_miandan_entry_point_reports_it_the_same_way(tmp_path, capsys, monkeypatch):
    data = _data_dir(tmp_path, "data")
    (data / "zz.db").write_bytes(b"\x00" * 4096 + b"garbage")
    monkeypatch.setenv("MIANDAN_DATA", str(data))
    line = _one_line_exit_2(miandan_main(["backup", str(tmp_path / "backup")]), capsys)
    assert line.startswith("backup failed:") and "zz.db" in line


def test_a_store_error_names_the_store(tmp_path):
    from services.backup import BackupError

    bad = tmp_path / "x?y.db"
    bad.write_bytes(b"hello" * 1000)
    with pytest.raises(BackupError, match=r"x\?y\.db"):
        back_up_store(bad, tmp_path / "out" / "x?y.db")
