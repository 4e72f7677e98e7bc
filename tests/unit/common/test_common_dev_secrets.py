"""Every clone of the repository carries the development secrets: a service reachable from other
machines must not trust them."""

import pytest

from services.common.config import DEV_SECRETS, MIN_HMAC_KEY_BYTES, SERVICES, Settings

REAL = {
    "MIANDAN_INTERNAL_TOKEN": "internal-9f2c",
    "MIANDAN_ADMIN_TOKEN": "admin-77a1",
    "MIANDAN_MERCHANT_TOKEN": "hub-5d0e",
    "MIANDAN_MERCHANT_SIGNING_KEY": "m" * MIN_HMAC_KEY_BYTES,
    "MIANDAN_JWT_SECRET": "j" * MIN_HMAC_KEY_BYTES,
}


@pytest.mark.parametrize(
    ("host", "listens_on"),
    [("127.0.0.1", "127.0.0.1"), ("127.8.9.10", "127.8.9.10"), ("localhost", "localhost"), ("::1", "[::1]"), ("[::1]", "[::1]")],
)
@pytest.mark.parametrize("service", SERVICES)
def test_loopback_keeps_the_development_defaults(service, host, listens_on):
    assert Settings.from_env(service, {"MIANDAN_HOST": host}).host == listens_on


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "card.internal"])
def test_a_reachable_gateway_with_the_published_secrets_does_not_start(host):
    with pytest.raises(ValueError) as err:
        Settings.from_env("gateway", {"MIANDAN_HOST": host})
    text = str(err.value)
    assert f"MIANDAN_HOST={host}" in text
    assert "MIANDAN_JWT_SECRET" in text and "MIANDAN_INTERNAL_TOKEN" in text and "MIANDAN_ADMIN_TOKEN" in text
    # The gateway takes no merchant calls: their secrets are not its business.
    assert "MERCHANT" not in text


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("var", list(DEV_SECRETS))
def test_each_trusted_secret_left_at_its_default_is_named(service, var):
    env = {"MIANDAN_HOST": "0.0.0.0", **REAL}
    del env[var]
    trusts = service in DEV_SECRETS[var][1]
    if trusts:
        with pytest.raises(ValueError, match=f"{var} is the published development value"):
            Settings.from_env(service, env)
    else:
        assert Settings.from_env(service, env).host == "0.0.0.0"
    env[var] = DEV_SECRETS[var][0]  # set explicitly to the published value: the same refusal
    if trusts:
        with pytest.raises(ValueError, match=var):
            Settings.from_env(service, env)


@pytest.mark.parametrize("service", SERVICES)
def test_real_secrets_start_anywhere(service):
    assert Settings.from_env(service, {"MIANDAN_HOST": "0.0.0.0", **REAL}).host == "0.0.0.0"


def test_a_closed_test_network_may_opt_in_to_the_defaults():
    s = Settings.from_env("order", {"MIANDAN_HOST": "0.0.0.0", "MIANDAN_ALLOW_DEV_SECRETS": "1"})
    assert s.internal_token == "dev-internal-token"
    with pytest.raises(ValueError, match="MIANDAN_ALLOW_DEV_SECRETS"):
        Settings.from_env("order", {"MIANDAN_HOST": "0.0.0.0", "MIANDAN_ALLOW_DEV_SECRETS": "maybe"})


@pytest.mark.parametrize(("service", "var"), [("gateway", "MIANDAN_JWT_SECRET"), ("order", "MIANDAN_MERCHANT_SIGNING_KEY"), ("catalog", "MIANDAN_MERCHANT_SIGNING_KEY")])
def test_short_hmac_keys_are_refused_off_loopback(service, var):
    env = {"MIANDAN_HOST": "0.0.0.0", **REAL, var: "x" * (MIN_HMAC_KEY_BYTES - 1)}
    with pytest.raises(ValueError, match=f"{var} is shorter than {MIN_HMAC_KEY_BYTES} bytes"):
        Settings.from_env(service, env)
    # Bytes, not characters: 11 Chinese characters are 33 bytes.
    env[var] = "免单活动的签名密钥很长了"
    assert len(env[var]) < MIN_HMAC_KEY_BYTES <= len(env[var].encode())
    Settings.from_env(service, env)


def test_a_gateway_verifying_with_a_public_key_needs_no_jwt_secret():
    env = {"MIANDAN_HOST": "0.0.0.0", **REAL, "MIANDAN_JWT_ALGORITHM": "RS256"}
    del env["MIANDAN_JWT_SECRET"]
    assert Settings.from_env("gateway", env).jwt_algorithm == "RS256"
