"""The README's quick start as a newcomer types it, against a suite started as `make run` starts
it: every command of the "In another terminal" block runs as written (only the ports are the
test suite's), and what their comments promise holds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.suite_process import ROOT, SERVICES

DEFAULT_PORTS = {"gateway": 50050, "card": 50051, "catalog": 50052, "order": 50053, "lottery": 50054}


def quick_start_commands() -> list[str]:
    """The block's commands, continuation lines joined; `make ...` lines (a second suite, the
    demo) are left to their own tests."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("In another terminal:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith(("#", "make "))]


def as_run_here(command: str, suite) -> str:
    """The command on this suite's ports, with the binaries of the environment running the tests
    (`.venv/bin` in a checkout, as the README assumes)."""
    for name in SERVICES:
        command = command.replace(f"localhost:{DEFAULT_PORTS[name]}", suite.addr(name))
    return command.replace(".venv/bin/", f"{Path(sys.executable).parent}/")


def run_script(commands: list[str], suite) -> subprocess.CompletedProcess:
    script = "set -eu -o pipefail\n" + "\n".join(as_run_here(c, suite) for c in commands) + "\n"
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=suite.env, capture_output=True, text=True, timeout=120)


def put_back_on_sale(commands: list[str], suite) -> None:
    """The README marks a seeded item sold out; the shared suite's other tests see the menu."""
    grant = next(c for c in commands if c.startswith("GRANT="))
    sold_out = next(c for c in commands if "SetItemAvailability" in c)
    on_sale = sold_out.replace('"available":false', '"available":true').replace('"so-1"', '"so-back"')
    assert run_script([grant, on_sale], suite).returncode == 0


def test_every_quick_start_command_runs_as_written(suite):
    commands = quick_start_commands()
    assert len(commands) >= 8, commands  # list, describe, health, token, Join, grant, sold out, queue
    try:
        done = run_script(commands, suite)
    finally:
        put_back_on_sale(commands, suite)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert '"status": "SERVING"' in done.stdout and '"newly_joined": true' in done.stdout
    assert '"item_id": "heytea-very-grape"' in done.stdout
    # The grant's id goes to stderr, as the comment under the grant says.
    assert re.search(r"a line `grant:[0-9a-f]+` in MIANDAN_MERCHANT_REVOKED_FILE", done.stderr)


def test_the_quick_start_grant_is_refused_at_a_luckin_store_as_its_comment_says(suite):
    commands = quick_start_commands()
    grant = next(c for c in commands if c.startswith("GRANT="))
    sold_out = next(c for c in commands if "SetItemAvailability" in c)
    assert "with a Luckin store_id: STORE_NOT_YOURS" in sold_out
    at_luckin = sold_out.replace("demo-heytea-sh-00", "demo-luckin-sh-00").replace('"so-1"', '"so-luckin"')
    done = run_script([grant, at_luckin], suite)
    assert done.returncode != 0 and "PermissionDenied" in done.stderr and "STORE_NOT_YOURS" in done.stderr, done.stderr
