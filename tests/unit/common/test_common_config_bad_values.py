"""A bad setting is refused at start with a ValueError that names the variable (the `python -m`
entry points turn it into one line and exit status 2): numbers that are not numbers, inf and
nan, ports out of range or clashing, unknown choices, unusable files and directories."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common.config import (
    MAX_PENDING_CALLS,
    Settings,
    check_start_files,
    env_number,
    event_loop_from_env,
    prepare_data_dir,
)


def _refused(call, variable: str, value: str | None = None) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert variable in message, message
    if value is not None:
        assert value in message, message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("service", "variable", "value", "says"),
    [
        ("card", "MIANDAN_MAX_CONCURRENCY", "abc", "is not an integer"),
        ("card", "MIANDAN_MAX_CONCURRENCY", "1.5", "is not an integer"),
        ("card", "MIANDAN_CARD_PORT", "70000", "not a valid TCP port"),
        ("order", "MIANDAN_ORDER_PORT", "-1", "must be >= 0"),
        ("card", "MIANDAN_GRACE_SECONDS", "inf", "is not a finite number"),
        ("card", "MIANDAN_GRACE_SECONDS", "nan", "is not a finite number"),
        ("gateway", "MIANDAN_USER_RATE", "-inf", "is not a finite number"),
        ("card", "MIANDAN_MAX_WAIT_MS", "NaN", "is not a finite number"),
        ("card", "MIANDAN_MAX_PENDING_CALLS", "99999999999999999999999", f"must be <= {MAX_PENDING_CALLS}"),
        ("card", "MIANDAN_EVENT_LOOP", "bogus", "is not one of uvloop, asyncio"),
        ("card", "MIANDAN_CAMPAIGN_ID", "bad id!", "is not a campaign id"),
        ("gateway", "MIANDAN_CAMPAIGN_ID", "x" * 65, "is not a campaign id"),
    ],
)
def test_settings_refuse_a_bad_value_naming_the_variable(service, variable, value, says):
    message = _refused(lambda: Settings.from_env(service, {variable: value}), variable, says)
    assert value[:20] in message


def test_the_metrics_port_may_not_be_the_service_port():
    env = {"MIANDAN_CARD_PORT": "45000", "MIANDAN_CARD_METRICS_PORT": "45000"}
    _refused(lambda: Settings.from_env("card", env), "MIANDAN_CARD_METRICS_PORT", "MIANDAN_CARD_PORT")
    # Both ephemeral (tests) is no clash: 0 means "no /metrics" for the metrics port.
    assert Settings.from_env("card", {"MIANDAN_CARD_PORT": "0", "MIANDAN_CARD_METRICS_PORT": "0"}).metrics_port is None


def test_good_values_still_pass():
    s = Settings.from_env("card", {
        "MIANDAN_EVENT_LOOP": "asyncio", "MIANDAN_CAMPAIGN_ID": "spring-2026", "MIANDAN_MAX_PENDING_CALLS": "32",
        "MIANDAN_GRACE_SECONDS": "2.5",
    })
    assert s.max_pending_calls == 32 and s.grace_seconds == 2.5
    assert event_loop_from_env({}) == "uvloop" and event_loop_from_env({"MIANDAN_EVENT_LOOP": " AsyncIO "}) == "asyncio"


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e999", "Infinity"])
def test_env_number_refuses_what_is_not_finite(raw):
    _refused(lambda: env_number({"X_SECONDS": raw}, "X_SECONDS", 1.0, above=0), "X_SECONDS", "finite")


def test_env_number_bounds_and_defaults():
    assert env_number({}, "X", 3.0) == 3.0 and env_number({"X": "  "}, "X", 3.0) == 3.0
    assert env_number({"X": "0.5"}, "X", 3.0, above=0, maximum=1) == 0.5
    _refused(lambda: env_number({"X": "0"}, "X", 3.0, above=0), "X", "must be > 0")
    _refused(lambda: env_number({"X": "2"}, "X", 3.0, maximum=1), "X", "must be <= 1")
    _refused(lambda: env_number({"X": "seven"}, "X", 3, int), "X", "is not an integer")


def test_card_knobs_refuse_inf_naming_the_variable():
    from services.card.__main__ import options_from_env

    _refused(lambda: options_from_env({"MIANDAN_CARD_NEW_USER_WINDOW_SECONDS": "inf"}), "MIANDAN_CARD_NEW_USER_WINDOW_SECONDS")
    _refused(lambda: options_from_env({"MIANDAN_CARD_SWEEP_SECONDS": "0"}), "MIANDAN_CARD_SWEEP_SECONDS", "must be > 0")
    _refused(lambda: options_from_env({"MIANDAN_CARD_GAUGE_SECONDS": "x"}), "MIANDAN_CARD_GAUGE_SECONDS", "not a number")
    assert options_from_env({}) == {"sweep_interval_s": 5.0, "gauge_interval_s": 15.0, "new_user_window_ms": 600_000}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIANDAN_PAYMENT_TTL_SECONDS", "inf"),
        ("MIANDAN_PAYMENT_TTL_SECONDS", "1e30"),
        ("MIANDAN_ORDER_PLACING_GRACE_SECONDS", "nan"),
        ("MIANDAN_ORDER_SWEEP_SECONDS", "-1"),
        ("MIANDAN_CAMPAIGN_ID", "bad id!"),
    ],
)
def test_order_config_refuses_a_bad_value_naming_the_variable(variable, value):
    from services.order.wiring import config_from_env

    _refused(lambda: config_from_env({variable: value}), variable)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIANDAN_LOTTERY_CUTOFF", "25:00"),
        ("MIANDAN_LOTTERY_TICK_SECONDS", "inf"),
        ("MIANDAN_LOTTERY_CAMPAIGNS", "spring-2026,bad id!"),
        ("MIANDAN_CAMPAIGN_ID", "bad id!"),
    ],
)
def test_lottery_settings_refuse_a_bad_value_naming_the_variable(variable, value):
    from services.lottery.wiring import draw_settings_from_env

    _refused(lambda: draw_settings_from_env({variable: value}), variable)


def test_gateway_preview_ttl_refuses_inf():
    from gateway.wiring import options_from_env

    _refused(lambda: options_from_env({"MIANDAN_PREVIEW_TTL_SECONDS": "inf"}), "MIANDAN_PREVIEW_TTL_SECONDS")
    assert options_from_env({}) == {"preview_ttl_s": 600.0}


def test_a_seed_key_file_that_is_a_directory_or_in_a_missing_one_names_the_variable(tmp_path: Path):
    from services.lottery.seed_seal import SeedSeal

    _refused(lambda: SeedSeal.from_key_file(tmp_path), "MIANDAN_LOTTERY_SEED_KEY_FILE")
    _refused(lambda: SeedSeal.from_key_file(tmp_path / "missing" / "lottery-seed.key"), "MIANDAN_LOTTERY_SEED_KEY_FILE")


def test_files_read_at_start_are_checked_naming_the_variable(tmp_path: Path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"

    def settings(service: str = "card", **env: str) -> Settings:
        return Settings.from_env(service, env)

    _refused(lambda: check_start_files(settings(MIANDAN_TLS_CERT=str(missing), MIANDAN_TLS_KEY=str(junk))), "MIANDAN_TLS_CERT", "cannot be read")
    _refused(lambda: check_start_files(settings(MIANDAN_TLS_CERT=str(junk), MIANDAN_TLS_KEY=str(junk))), "MIANDAN_TLS_CERT", "not a PEM")
    _refused(lambda: check_start_files(settings(MIANDAN_TLS_CA=str(tmp_path))), "MIANDAN_TLS_CA", "cannot be read")
    rs = {"MIANDAN_JWT_ALGORITHM": "RS256"}
    _refused(lambda: check_start_files(settings("gateway", **rs, MIANDAN_JWT_PUBLIC_KEY_FILE="/nonexistent")), "MIANDAN_JWT_PUBLIC_KEY_FILE")
    _refused(lambda: check_start_files(settings("gateway", **rs, MIANDAN_JWT_PUBLIC_KEY_FILE=str(junk))), "MIANDAN_JWT_PUBLIC_KEY_FILE")
    _refused(lambda: check_start_files(settings("gateway", **rs)), "MIANDAN_JWT_PUBLIC_KEY_FILE")
    check_start_files(settings())  # nothing configured: nothing to read


def test_files_read_at_start_pass_when_they_are_good(tmp_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "pub.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {
        "MIANDAN_TLS_CERT": str(tmp_path / "c.pem"), "MIANDAN_TLS_KEY": str(tmp_path / "k.pem"),
        "MIANDAN_TLS_CA": str(tmp_path / "c.pem"), "MIANDAN_JWT_ALGORITHM": "ES256",
        "MIANDAN_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem"),
    }
    check_start_files(Settings.from_env("gateway", env))


def test_a_data_directory_that_cannot_be_made_names_the_variable(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message = _refused(lambda: prepare_data_dir(Settings.from_env("card", {"MIANDAN_DATA": str(blocker / "data")})), "MIANDAN_DATA")
    assert re.search(r"cannot be created|not a writable directory", message)
    made = prepare_data_dir(Settings.from_env("card", {"MIANDAN_DATA": str(tmp_path / "new" / "data")}))
    assert made.is_dir()
