"""An operator learns the knobs from docs/conventions.md: every MIANDAN_* variable the code reads
is named there (or in the README)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"MIANDAN_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{*<])")  # not a prefix such as MIANDAN_LOTTERY_*


def _names_in(paths) -> set[str]:
    return {m for p in paths for m in NAME.findall(p.read_text(encoding="utf-8"))}


def test_every_variable_the_services_read_is_documented():
    code = _names_in(p for d in ("services", "gateway", "scripts") for p in (ROOT / d).rglob("*.py"))
    documented = _names_in([ROOT / "docs" / "conventions.md", ROOT / "README.md"])
    assert "MIANDAN_HOST" in code and "MIANDAN_ALLOW_DEV_SECRETS" in code  # the scan sees the settings
    assert sorted(code - documented) == []
