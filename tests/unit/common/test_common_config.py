from pathlib import Path

import pytest

from services.common.config import Settings


def test_defaults_follow_the_documented_ports_and_tokens():
    s = Settings.from_env("card", {})
    assert (s.host, s.port, s.metrics_port) == ("127.0.0.1", 50051, 51051)
    assert s.db_path == Path("data") / "card.db"
    assert s.grace_seconds == 5.0 and s.max_concurrency == 64 and s.max_wait_ms == 50.0
    assert s.min_concurrency == 32
    assert s.internal_token == "dev-internal-token" and s.jwt_algorithm == "HS256"
    assert s.order_addr == "127.0.0.1:50053" and s.lottery_addr == "127.0.0.1:50054"
    assert s.log_level == "INFO" and s.log_calls is True and not s.tls_enabled


def test_environment_overrides_each_field():
    env = {
        "MIANDAN_HOST": "0.0.0.0",
        "MIANDAN_ORDER_PORT": "6000",
        "MIANDAN_ORDER_METRICS_PORT": "off",
        "MIANDAN_DATA": "/tmp/x",
        "MIANDAN_GRACE_SECONDS": "1.5",
        "MIANDAN_INTERNAL_TOKEN": "s3cret",
        "MIANDAN_ADMIN_TOKEN": "4dmin",
        "MIANDAN_MERCHANT_TOKEN": "hub",
        "MIANDAN_MERCHANT_SIGNING_KEY": "k" * 32,
        "MIANDAN_CARD_ADDR": "card.internal:7000",
        "MIANDAN_LOG_LEVEL": "debug",
        "MIANDAN_MAX_CONCURRENCY": "8",
        "MIANDAN_MIN_CONCURRENCY": "6",
        "MIANDAN_MAX_WAIT_MS": "0",
        "MIANDAN_LOG_CALLS": "0",
        "MIANDAN_TLS_CERT": "/c.pem",
        "MIANDAN_TLS_KEY": "/k.pem",
    }
    s = Settings.from_env("order", env)
    assert (s.host, s.port, s.metrics_port) == ("0.0.0.0", 6000, None)
    assert s.db_path == Path("/tmp/x/order.db")
    assert s.grace_seconds == 1.5 and s.internal_token == "s3cret"
    assert s.card_addr == "card.internal:7000" and s.log_level == "DEBUG"
    assert s.max_concurrency == 8 and s.min_concurrency == 6 and s.max_wait_ms == 0 and s.log_calls is False
    assert s.tls_enabled


def test_a_service_moved_to_another_port_is_called_there_unless_its_address_is_set():
    # `make run` on a shared machine with MIANDAN_CARD_PORT moved: `make audit` and `make demo`
    # run with the same environment used to call 50051 and wait there for nothing.
    moved = {"MIANDAN_CARD_PORT": "52051", "MIANDAN_ORDER_PORT": "52053", "MIANDAN_LOTTERY_PORT": "0"}
    s = Settings.from_env("gateway", moved)
    assert s.card_addr == "127.0.0.1:52051" and s.order_addr == "127.0.0.1:52053"
    assert s.lottery_addr == "127.0.0.1:50054"  # any free port names no address
    assert s.catalog_addr == "127.0.0.1:50052"
    explicit = Settings.from_env("gateway", {**moved, "MIANDAN_CARD_ADDR": "card.internal:7000"})
    assert explicit.card_addr == "card.internal:7000"


def test_metrics_port_zero_disables_metrics_and_port_zero_means_ephemeral():
    assert Settings.from_env("catalog", {"MIANDAN_CATALOG_METRICS_PORT": "0"}).metrics_port is None
    s = Settings.from_env("catalog", {"MIANDAN_CATALOG_PORT": "0"})
    assert s.port == 0 and s.metrics_port is None


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"MIANDAN_CARD_PORT": "abc"}, "MIANDAN_CARD_PORT"),
        ({"MIANDAN_CARD_PORT": "70000"}, "MIANDAN_CARD_PORT"),
        ({"MIANDAN_GRACE_SECONDS": "-1"}, "MIANDAN_GRACE_SECONDS"),
        ({"MIANDAN_MAX_CONCURRENCY": "0"}, "MIANDAN_MAX_CONCURRENCY"),
        ({"MIANDAN_MIN_CONCURRENCY": "0"}, "MIANDAN_MIN_CONCURRENCY"),
        ({"MIANDAN_MAX_PENDING_CALLS": "-1"}, "MIANDAN_MAX_PENDING_CALLS"),
        ({"MIANDAN_LOG_LEVEL": "LOUD"}, "MIANDAN_LOG_LEVEL"),
        ({"MIANDAN_LOG_CALLS": "maybe"}, "MIANDAN_LOG_CALLS"),
        ({"MIANDAN_ORDER_ADDR": "nohost"}, "MIANDAN_ORDER_ADDR"),
        ({"MIANDAN_ORDER_ADDR": "127.0.0.1:²"}, "MIANDAN_ORDER_ADDR"),  # isdigit() said yes, int() then failed
        ({"MIANDAN_ORDER_ADDR": "127.0.0.1:65536"}, "MIANDAN_ORDER_ADDR"),
        ({"MIANDAN_WATCHES_PER_USER": "0"}, "MIANDAN_WATCHES_PER_USER"),
        ({"MIANDAN_MAX_WATCHES": "0"}, "MIANDAN_MAX_WATCHES"),
        ({"MIANDAN_USER_RATE": "-1"}, "MIANDAN_USER_RATE"),
        ({"MIANDAN_USER_BURST": "0"}, "MIANDAN_USER_BURST"),
        ({"MIANDAN_USER_RATE_TRACKED": "0"}, "MIANDAN_USER_RATE_TRACKED"),
        ({"MIANDAN_JWT_MAX_LIFETIME_S": "0"}, "MIANDAN_JWT_MAX_LIFETIME_S"),
        ({"MIANDAN_JWT_MAX_LIFETIME_S": "a week"}, "MIANDAN_JWT_MAX_LIFETIME_S"),
        ({"MIANDAN_INTERNAL_TOKEN": ""}, "MIANDAN_INTERNAL_TOKEN"),
        ({"MIANDAN_MERCHANT_SIGNING_KEY": ""}, "MIANDAN_MERCHANT_SIGNING_KEY"),
        ({"MIANDAN_TLS_CERT": "/c.pem"}, "MIANDAN_TLS_KEY"),
        ({"MIANDAN_JWT_ALGORITHM": "none"}, "MIANDAN_JWT_ALGORITHM"),
    ],
)
def test_bad_values_raise_value_error_naming_the_variable(env, variable):
    with pytest.raises(ValueError, match=variable):
        Settings.from_env("card", env)


def test_unknown_service_is_rejected():
    with pytest.raises(ValueError, match="unknown service"):
        Settings.from_env("payments", {})


def test_the_admission_floor_comes_from_the_environment_and_never_exceeds_the_starting_limit():
    from services.common.admission import admission_from_settings

    ctl = admission_from_settings(Settings.from_env("card", {}))
    assert (ctl.limit, ctl.min_limit, ctl.max_limit) == (64, 32, 1000)
    ctl = admission_from_settings(Settings.from_env("card", {"MIANDAN_MIN_CONCURRENCY": "48"}))
    assert ctl.min_limit == 48
    # An operator who asks for a small limit gets it (the overload drills run with 4).
    ctl = admission_from_settings(Settings.from_env("card", {"MIANDAN_MAX_CONCURRENCY": "4"}))
    assert (ctl.limit, ctl.min_limit) == (4, 4)


def test_held_calls_keep_grpcs_own_limits_unless_the_environment_bounds_them():
    from services.common.server import server_options

    assert Settings.from_env("gateway", {}).max_pending_calls == 0
    assert not any(key.startswith("grpc.server.max_pending") for key, _ in server_options())
    s = Settings.from_env("gateway", {"MIANDAN_MAX_PENDING_CALLS": "64"})
    options = dict(server_options(s.max_pending_calls))
    # Refused at random beyond 64 held calls, always beyond 128.
    assert options["grpc.server.max_pending_requests"] == 64
    assert options["grpc.server.max_pending_requests_hard_limit"] == 128


def test_one_service_may_bound_its_held_calls_alone_in_the_suites_shared_environment():
    env = {"MIANDAN_GATEWAY_MAX_PENDING_CALLS": "32"}
    assert Settings.from_env("gateway", env).max_pending_calls == 32
    assert Settings.from_env("order", env).max_pending_calls == 0
    env["MIANDAN_MAX_PENDING_CALLS"] = "100"
    assert Settings.from_env("gateway", env).max_pending_calls == 32
    assert Settings.from_env("card", env).max_pending_calls == 100
    with pytest.raises(ValueError, match="MIANDAN_ORDER_MAX_PENDING_CALLS"):
        Settings.from_env("order", {"MIANDAN_ORDER_MAX_PENDING_CALLS": "-1"})


def test_one_service_may_wait_for_a_slot_longer_or_shorter_than_the_others():
    assert Settings.from_env("gateway", {}).max_wait_ms == Settings.from_env("order", {}).max_wait_ms == 50.0
    env = {"MIANDAN_MAX_WAIT_MS": "80"}
    assert Settings.from_env("gateway", env).max_wait_ms == Settings.from_env("card", env).max_wait_ms == 80.0
    env["MIANDAN_GATEWAY_MAX_WAIT_MS"] = "10"
    assert (Settings.from_env("gateway", env).max_wait_ms, Settings.from_env("card", env).max_wait_ms) == (10.0, 80.0)
    with pytest.raises(ValueError, match="MIANDAN_CARD_MAX_WAIT_MS"):
        Settings.from_env("card", {"MIANDAN_CARD_MAX_WAIT_MS": "-5"})


def test_order_streams_are_bounded_per_user_and_per_gateway():
    s = Settings.from_env("gateway", {})
    assert (s.watches_per_user, s.max_watches) == (5, 10_000)
    s = Settings.from_env("gateway", {"MIANDAN_WATCHES_PER_USER": "2", "MIANDAN_MAX_WATCHES": "50000"})
    assert (s.watches_per_user, s.max_watches) == (2, 50_000)


def test_user_tokens_live_a_week_at_most_unless_the_operator_says_otherwise():
    assert Settings.from_env("gateway", {}).jwt_max_lifetime_s == 7 * 86_400
    assert Settings.from_env("gateway", {"MIANDAN_JWT_MAX_LIFETIME_S": "3600"}).jwt_max_lifetime_s == 3600


def test_end_users_are_paced_at_five_calls_a_second_with_bursts_of_twenty_by_default():
    s = Settings.from_env("gateway", {})
    assert (s.user_rate, s.user_burst, s.user_rates_tracked) == (5.0, 20, 100_000)
    s = Settings.from_env("gateway", {"MIANDAN_USER_RATE": "0", "MIANDAN_USER_BURST": "50"})
    assert (s.user_rate, s.user_burst) == (0.0, 50)


def test_the_revocation_file_of_merchant_grants_comes_from_the_environment():
    from pathlib import Path

    assert Settings.from_env("order", {}).merchant_revoked_file is None
    s = Settings.from_env("order", {"MIANDAN_MERCHANT_REVOKED_FILE": "/etc/miandan/revoked"})
    assert s.merchant_revoked_file == Path("/etc/miandan/revoked")
