"""A service that cannot start exits at once, non-zero, with one line saying why.

Each test starts the real `python -m ...` process. Before the fix a service whose start failed
after its store was open (the port taken, a bad setting read late) logged a traceback and then
never exited: the store's connection thread kept the dead process alive, so `make run` could
not restart it. Bad settings read early gave 12-40 line tracebacks instead of naming the
variable."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.local_ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"card": "services.card", "catalog": "services.catalog", "order": "services.order",
           "lottery": "services.lottery", "gateway": "gateway"}
EXIT_WITHIN_S = 15.0  # generous for a shared 2-core box; a healthy failure takes about a second


def _env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIANDAN_")}
    env.update(PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_DATA=str(data_dir), MIANDAN_LOG_CALLS="0")
    for name in MODULES:
        env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
    env.update(overrides)
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = EXIT_WITHIN_S) -> tuple[int, str, float]:
    """(exit status, stderr, seconds); a process still running after `timeout` is stopped and
    the test fails (it is the bug: a service that will never serve, still alive)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process, env)
        _, err = process.communicate(timeout=10)
        pytest.fail(f"{argv} was still running {timeout:.0f} s after it failed to start; stderr:\n{err[-3000:]}")
    finally:
        if process.poll() is None:
            _stop(process, env)
    return process.returncode, err, time.monotonic() - started


def _stop(process: subprocess.Popen, env: dict[str, str]) -> None:
    """SIGTERM first (a suite then stops its children, which run in sessions of their own),
    SIGKILL after a while; then any process still running on this test's data directory."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    marker = f"MIANDAN_DATA={env['MIANDAN_DATA']}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)


def _service(name: str, env: dict[str, str]) -> tuple[int, str]:
    code, err, _ = _run([sys.executable, "-m", MODULES[name]], env)
    return code, err


def _the_one_line(service: str, err: str) -> str:
    """The process's own words: every stderr line but the JSON log lines, which must be one."""
    assert "Traceback" not in err, err
    assert "Event loop is closed" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{service}: "), lines
    return lines[0]


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("service", ["catalog", "card", "lottery"])
def test_a_service_whose_port_is_taken_exits_at_once_saying_so(tmp_path, taken_port, service):
    env = _env(tmp_path, **{f"MIANDAN_{service.upper()}_PORT": str(taken_port)})
    code, err = _service(service, env)
    assert code == 1, err
    line = _the_one_line(service, err)
    assert "already in use" in line and f"MIANDAN_{service.upper()}_PORT={taken_port}" in line


def test_a_service_whose_metrics_port_is_taken_exits_at_once_saying_so(tmp_path, taken_port):
    code, err = _service("order", _env(tmp_path, MIANDAN_ORDER_METRICS_PORT=str(taken_port)))
    assert code == 1, err
    assert "MIANDAN_ORDER_METRICS_PORT" in _the_one_line("order", err)


def test_a_host_that_does_not_resolve_ends_the_service(tmp_path):
    code, err = _service("card", _env(tmp_path, MIANDAN_HOST="no-such-host.invalid", MIANDAN_ALLOW_DEV_SECRETS="1"))
    assert code == 1, err
    assert "MIANDAN_HOST='no-such-host.invalid'" in _the_one_line("card", err)


def test_a_service_open_to_the_network_with_the_published_secrets_does_not_start(tmp_path):
    code, err = _service("order", _env(tmp_path, MIANDAN_HOST="0.0.0.0", MIANDAN_ADMIN_TOKEN="a-real-one"))
    assert code == 2, err
    line = _the_one_line("order", err)
    assert "MIANDAN_INTERNAL_TOKEN, MIANDAN_MERCHANT_TOKEN, MIANDAN_MERCHANT_SIGNING_KEY are the published development value" in line
    assert not (tmp_path / "order.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("service", "variable", "value", "says"),
    [
        ("card", "MIANDAN_MAX_CONCURRENCY", "abc", "MIANDAN_MAX_CONCURRENCY='abc' is not an integer"),
        ("card", "MIANDAN_CARD_NEW_USER_WINDOW_SECONDS", "inf", "MIANDAN_CARD_NEW_USER_WINDOW_SECONDS='inf'"),
        ("card", "MIANDAN_MAX_PENDING_CALLS", "99999999999999999999999", "MIANDAN_MAX_PENDING_CALLS="),
        ("order", "MIANDAN_PAYMENT_TTL_SECONDS", "inf", "MIANDAN_PAYMENT_TTL_SECONDS='inf'"),
        ("order", "MIANDAN_CARD_BATCH", "maybe", "MIANDAN_CARD_BATCH='maybe'"),
        ("order", "MIANDAN_QUOTE_CACHE", "disabled", "MIANDAN_QUOTE_CACHE='disabled'"),
        ("order", "MIANDAN_CAMPAIGN_ID", "bad id!", "MIANDAN_CAMPAIGN_ID='bad id!'"),
        ("lottery", "MIANDAN_LOTTERY_CUTOFF", "25:00", "MIANDAN_LOTTERY_CUTOFF='25:00'"),
        ("lottery", "MIANDAN_DRAND_RELAYS", "ftp://x", "MIANDAN_DRAND_RELAYS"),
        ("lottery", "MIANDAN_LOTTERY_SEED_KEY_FILE", "{dir}", "MIANDAN_LOTTERY_SEED_KEY_FILE"),
        ("gateway", "MIANDAN_EVENT_LOOP", "bogus", "MIANDAN_EVENT_LOOP='bogus'"),
        ("gateway", "MIANDAN_GATEWAY_PORT", "70000", "MIANDAN_GATEWAY_PORT=70000"),
    ],
)
def test_a_bad_setting_ends_the_service_with_one_line_naming_it(tmp_path, service, variable, value, says):
    env = _env(tmp_path, **{variable: value.replace("{dir}", str(tmp_path))})
    code, err = _service(service, env)
    assert code == 2, err
    assert says in _the_one_line(service, err)


@pytest.mark.parametrize("cert", ["missing", "not-pem"])
def test_a_tls_certificate_that_cannot_be_used_is_named(tmp_path, cert):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    path = tmp_path / "missing.pem" if cert == "missing" else junk
    code, err = _service("lottery", _env(tmp_path, MIANDAN_TLS_CERT=str(path), MIANDAN_TLS_KEY=str(junk)))
    assert code == 2, err
    assert f"MIANDAN_TLS_CERT='{path}'" in _the_one_line("lottery", err)


def test_a_data_directory_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = _env(tmp_path, MIANDAN_DATA=str(blocker / "data"))
    code, err = _service("card", env)
    assert code == 2, err
    assert "MIANDAN_DATA=" in _the_one_line("card", err)


def test_a_thread_left_behind_by_a_failed_start_does_not_keep_the_process_alive(tmp_path):
    """The last line of defence: whatever a failed start leaves running, the process ends."""
    script = (
        "import threading\n"
        "from services.common.server import main\n"
        "async def build(settings):\n"
        "    threading.Thread(target=threading.Event().wait, name='left-behind').start()  # non-daemon, never ends\n"
        "    raise RuntimeError('upstream schema mismatch')\n"
        "main('card', build)\n"
    )
    code, err, took = _run([sys.executable, "-c", script], _env(tmp_path))
    assert code == 1, err
    assert _the_one_line("card", err) == "card: failed to start: RuntimeError: upstream schema mismatch"


def test_make_run_refuses_ports_another_process_holds(tmp_path, taken_port):
    """A second `make run` on ports a first one holds must not report "ready" on the strength
    of the other suite's health checks."""
    env = _env(tmp_path, MIANDAN_CARD_PORT=str(taken_port))
    for name in MODULES:
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = str(free_port())
    code, err, _ = _run([sys.executable, "-m", "services.suite", "--no-seed"], env)
    assert code == 1, err
    assert f"MIANDAN_CARD_PORT={taken_port}" in err and "Traceback" not in err
    assert not (tmp_path / "card.db").exists()  # no child was started


def test_make_run_names_a_data_directory_it_cannot_make(tmp_path):
    """It used to say `miandan suite failed to start: [Errno 20] Not a directory: ...`, naming
    neither the variable nor which directory it had tried to make."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err, _ = _run([sys.executable, "-m", "services.suite", "--no-seed"], _env(tmp_path, MIANDAN_DATA=str(blocker / "data")))
    assert code == 2, err
    assert err.strip() == f"miandan suite: MIANDAN_DATA='{blocker / 'data'}' cannot be created: Not a directory"
