"""`make catalog-300k` (python -m services.catalog.generate) with no catalog running, a bad
MIANDAN_* setting or a bad --stores says what is wrong in one line, never a traceback."""
from __future__ import annotations

import socket

import pytest

from services.catalog.generate import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the probe is closed


def _one_line(code, capsys) -> tuple[int, str]:
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    return code, lines[0]


def _run(argv: list[str]):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse, and the code before the fix let exceptions out
        return exc.code
    except Exception as exc:  # noqa: BLE001 - what the operator would see as a traceback
        pytest.fail(f"{type(exc).__name__} escaped: {exc}")


def test_no_catalog_listening_is_one_line_naming_the_address(monkeypatch, capsys):
    for var in ("MIANDAN_CATALOG_ADDR", "MIANDAN_CATALOG_PORT"):
        monkeypatch.delenv(var, raising=False)
    port = _closed_port()
    code, line = _one_line(_run(["--stores", "3", "--target", f"127.0.0.1:{port}"]), capsys)
    assert code == 1
    assert f"127.0.0.1:{port}" in line and "UNAVAILABLE" in line


def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("MIANDAN_CATALOG_PORT", "abc")
    monkeypatch.delenv("MIANDAN_CATALOG_ADDR", raising=False)
    code, line = _one_line(_run(["--stores", "3"]), capsys)
    assert code == 2 and "MIANDAN_CATALOG_PORT='abc'" in line


@pytest.mark.parametrize("stores", ["-3", "0"])
def test_a_store_count_below_one_is_refused(stores, capsys):
    # Refused before anything is sent (a negative count used to generate nothing and go on).
    assert _run(["--stores", stores, "--target", f"127.0.0.1:{_closed_port()}"]) == 2
    assert "--stores" in capsys.readouterr().err
