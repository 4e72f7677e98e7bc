"""Values an operator really writes: a secret pasted with its trailing newline (a Kubernetes
secret made with `echo`), a blank line left in an env file, a campaign id with a space after it.
Each either works as the documented default or stops the start naming the variable; none may
start a suite that then fails every call."""
from __future__ import annotations

import pytest

from services.common.config import Settings

TOKENS = ("MIANDAN_INTERNAL_TOKEN", "MIANDAN_ADMIN_TOKEN", "MIANDAN_MERCHANT_TOKEN")


@pytest.mark.parametrize("variable", TOKENS)
@pytest.mark.parametrize("value", ["s3cret-token\n", "s3cret-token\r\n", "s3crét-token", "s3cret\ttoken"])
def test_a_token_that_grpc_cannot_send_as_metadata_stops_the_start_naming_the_variable(variable, value):
    # gRPC's core refuses such a header value on every call (ExecuteBatchError, not even a
    # status), so the suite would start, answer SERVING and fail every internal call.
    with pytest.raises(ValueError) as caught:
        Settings.from_env("order", {variable: value})
    message = str(caught.value)
    assert variable in message and "\n" not in message
    assert "s3cret" not in message  # a secret is never echoed into a log line


def test_a_token_of_printable_ascii_is_taken_as_it_is():
    token = "".join(chr(c) for c in range(0x20, 0x7F))
    assert Settings.from_env("order", {"MIANDAN_INTERNAL_TOKEN": token}).internal_token == token


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_call_log_switch_keeps_the_per_call_log_as_when_it_is_unset(blank):
    assert Settings.from_env("card", {"MIANDAN_LOG_CALLS": blank}).log_calls is True
    assert Settings.from_env("card", {"MIANDAN_LOG_CALLS": "0"}).log_calls is False


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_token_issuer_is_the_default_issuer_not_one_no_token_names(blank):
    assert Settings.from_env("gateway", {"MIANDAN_JWT_ISSUER": blank}).jwt_issuer == "miandan"
    assert Settings.from_env("gateway", {"MIANDAN_JWT_ISSUER": " issuer.example "}).jwt_issuer == "issuer.example"


@pytest.mark.parametrize(("raw", "served"), [(" autumn-2026 ", "autumn-2026"), ("autumn-2026\n", "autumn-2026"), ("  ", "spring-2026")])
def test_the_gateway_serves_the_campaign_id_the_start_checked(monkeypatch, raw, served):
    # Settings checks the id without the spaces around it; the gateway read the raw variable and
    # sent " autumn-2026 " to the card service, which refuses it: every Join INVALID_ARGUMENT.
    from gateway.wiring import campaign_id_from_env
    from services.card.model import check_campaign_id

    monkeypatch.setenv("MIANDAN_CAMPAIGN_ID", raw)
    settings = Settings.from_env("gateway")
    assert campaign_id_from_env(settings) == served
    assert check_campaign_id(served) == served


def test_a_blank_data_directory_is_the_default_one_not_a_directory_named_by_spaces():
    assert Settings.from_env("card", {"MIANDAN_DATA": "   "}).data_dir == Settings.from_env("card", {}).data_dir


def test_a_blank_upstream_address_is_the_local_default_as_an_empty_one_is():
    env = {"MIANDAN_CARD_PORT": "46001"}
    assert Settings.from_env("order", {**env, "MIANDAN_CARD_ADDR": "  "}).card_addr == "127.0.0.1:46001"
    assert Settings.from_env("order", {**env, "MIANDAN_CARD_ADDR": ""}).card_addr == "127.0.0.1:46001"


@pytest.mark.parametrize("variable", [*TOKENS, "MIANDAN_MERCHANT_SIGNING_KEY", "MIANDAN_JWT_SECRET"])
def test_a_secret_of_spaces_is_refused_as_an_empty_one_is(variable):
    # Blank is unset everywhere else; a secret has no safe default to fall back to, and "   " is
    # a credential anyone can guess.
    for blank in ("", "   "):
        with pytest.raises(ValueError, match=variable):
            Settings.from_env("gateway", {variable: blank})
