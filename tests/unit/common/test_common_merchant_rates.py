"""A merchant is an outside party: the calls it makes with its grants are paced per merchant and
process (AccessPolicy.pace, run once per call by the kit's pipeline), 20 calls/s with bursts of
100 by default, beyond that RESOURCE_EXHAUSTED MERCHANT_RATE_LIMITED with the wait. The platform's
merchant token and the admin credential are not paced. Without it one merchant's systems took as
much of a service's admission capacity as they liked."""
from __future__ import annotations

import dataclasses

import pytest

from services.common.auth import (
    ADMIN_TOKEN_KEY, INTERNAL, INTERNAL_OR_MERCHANT, INTERNAL_TOKEN_KEY, MERCHANT, MERCHANT_RATE_LIMITED, MERCHANT_TOKEN_KEY,
    AccessPolicy,
)
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.merchant_grant import mint_grant

SETTINGS = Settings.from_env("order", {})
KEY = SETTINGS.merchant_signing_key


def grant(clock, merchant="luckin-hq", **scope):
    return ((MERCHANT_TOKEN_KEY, mint_grant(KEY, merchant, clock=clock, **(scope or {"brands": ["luckin"]}))),)


def calls_let_in(policy, md, n, role=MERCHANT):
    """How many of n calls the credential check and the pace let in, as the pipeline runs them."""
    passed = 0
    for _ in range(n):
        if policy.check(role, md) is None and policy.pace(role, md) is None:
            passed += 1
    return passed


def test_the_defaults_are_twenty_calls_a_second_with_bursts_of_a_hundred():
    assert (SETTINGS.merchant_rate, SETTINGS.merchant_burst, SETTINGS.merchant_rates_tracked) == (20.0, 100, 100_000)


def test_a_merchant_gets_its_burst_then_one_call_per_interval_with_the_wait_told():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    md = grant(clock)
    assert calls_let_in(policy, md, 100) == 100
    err = policy.pace(MERCHANT, md)
    assert (err.code, err.reason, err.retry_after_ms) == ("RESOURCE_EXHAUSTED", MERCHANT_RATE_LIMITED, 50)
    clock.advance(0.05)
    assert policy.pace(MERCHANT, md) is None
    assert policy.pace(MERCHANT, md).retry_after_ms == 50


def test_a_script_gets_the_rate_whatever_it_sends():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    md = grant(clock)
    passed = 0
    for _ in range(10 * 200):  # 200 calls a second for 10 s
        passed += policy.pace(MERCHANT, md) is None
        clock.advance(0.005)
    assert 100 + 20 * 10 - 1 <= passed <= 100 + 20 * 10 + 1


def test_a_merchants_grants_share_its_pace_and_other_merchants_have_their_own():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    terminals = [grant(clock, stores=[f"s{n}"]) for n in range(4)]  # one grant per store's terminal
    assert sum(calls_let_in(policy, md, 40) for md in terminals) == 100
    assert calls_let_in(policy, grant(clock, "mixue-hq", brands=["mixue"]), 100) == 100


def test_the_platform_and_admin_credentials_are_not_paced():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    platform = ((MERCHANT_TOKEN_KEY, SETTINGS.merchant_token),)
    admin = ((INTERNAL_TOKEN_KEY, SETTINGS.internal_token), (ADMIN_TOKEN_KEY, SETTINGS.admin_token)) + grant(clock)
    assert calls_let_in(policy, platform, 500) == 500
    assert calls_let_in(policy, admin, 500) == 500
    assert len(policy.merchant_rates) == 0


def test_a_grant_beside_the_internal_credential_is_paced_too():
    # The gateway's CancelOrder carries no grant and is not paced; a merchant's CancelOrder made
    # with the internal token beside its grant is the merchant's call all the same.
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    gateway = ((INTERNAL_TOKEN_KEY, SETTINGS.internal_token),)
    assert calls_let_in(policy, gateway, 300, INTERNAL_OR_MERCHANT) == 300
    both = gateway + grant(clock)
    assert calls_let_in(policy, both, 150, INTERNAL_OR_MERCHANT) == 100
    assert calls_let_in(policy, both, 10, MERCHANT) == 0


def test_only_merchant_rpcs_are_paced_and_a_credential_check_alone_counts_nothing():
    # A watch stream checks its grant again at every change (still_granted): that is not a call.
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    md = grant(clock)
    for _ in range(1_000):
        assert policy.check(MERCHANT, md) is None
        assert policy.pace(INTERNAL, md) is None
    assert calls_let_in(policy, md, 100) == 100


def test_a_grant_the_check_refused_is_not_counted():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    forged = ((MERCHANT_TOKEN_KEY, mint_grant("another-key-of-a-decent-length-0000000000", "luckin-hq", brands=["x"], clock=clock)),)
    assert calls_let_in(policy, forged, 200) == 0
    assert policy.pace(MERCHANT, forged) is None and len(policy.merchant_rates) == 0


def test_rate_zero_turns_the_pace_off():
    clock = FakeClock()
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_rate=0.0), clock=clock)
    assert calls_let_in(policy, grant(clock), 5_000) == 5_000
    assert len(policy.merchant_rates) == 0


def test_idle_merchants_are_forgotten_and_memory_stays_bounded():
    clock = FakeClock()
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_burst=3, merchant_rates_tracked=500), clock=clock)
    busy = grant(clock, "busy-hq")
    tokens = [grant(clock, f"m-{n}") for n in range(3_000)]
    for n, md in enumerate(tokens):  # a crowd of merchants calling once each, a little apart
        assert policy.check(MERCHANT, md) is None and policy.pace(MERCHANT, md) is None
        if n % 50 == 0:
            clock.advance(0.05)
            assert calls_let_in(policy, busy, 4) < 4  # the busy merchant is still held to its pace
        assert len(policy.merchant_rates) <= 500
    clock.advance(10)
    policy.pace(MERCHANT, tokens[0])
    assert len(policy.merchant_rates) <= 500


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MIANDAN_MERCHANT_RATE", "-1", "must be >= 0"),
        ("MIANDAN_MERCHANT_RATE", "fast", "is not a number"),
        ("MIANDAN_MERCHANT_RATE", "inf", "is not a finite number"),
        ("MIANDAN_MERCHANT_RATE", "1e-320", "must be 0 (no limit) or at least"),
        ("MIANDAN_USER_RATE", "1e-9", "must be 0 (no limit) or at least"),
        ("MIANDAN_MERCHANT_BURST", "0", "must be >= 1 (MIANDAN_MERCHANT_RATE=0 turns"),
        ("MIANDAN_MERCHANT_BURST", "-3", "must be >= 1"),
        ("MIANDAN_MERCHANT_BURST", "2.5", "is not an integer"),
        ("MIANDAN_MERCHANT_RATE_TRACKED", "0", "must be >= 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(variable, value, says):
    with pytest.raises(ValueError) as err:
        Settings.from_env("catalog", {variable: value})
    assert variable in str(err.value) and says in str(err.value), err.value


def test_settings_are_read_from_the_environment():
    s = Settings.from_env("order", {"MIANDAN_MERCHANT_RATE": "0.5", "MIANDAN_MERCHANT_BURST": "3", "MIANDAN_MERCHANT_RATE_TRACKED": "10"})
    assert (s.merchant_rate, s.merchant_burst, s.merchant_rates_tracked) == (0.5, 3, 10)
    assert Settings.from_env("order", {"MIANDAN_MERCHANT_RATE": "0"}).merchant_rate == 0
