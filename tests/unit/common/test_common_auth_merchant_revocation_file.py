"""A leaked grant is revoked by a line naming its merchant (MIANDAN_MERCHANT_REVOKED_FILE): whatever
id a grant carries and whatever editor saved the file, that line must stop it. The file splits its
lines at spaces and drops what follows a `#`, and `grant:` starts a grant id's line, so a merchant
id holding one of those could not be named there: such an id is neither minted nor trusted."""
from __future__ import annotations

import dataclasses

import jwt
import pytest

from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.merchant_grant import ISSUER, mint_grant

SETTINGS = Settings.from_env("catalog", {})
KEY = SETTINGS.merchant_signing_key
UNNAMEABLE = ["Luckin Coffee", "store#12", "grant:luckin"]


def _signed(merchant: str, clock: FakeClock) -> str:
    """A grant as a release that let any printable id through signed it."""
    now = int(clock.now().timestamp())
    return jwt.encode({"sub": merchant, "iss": ISSUER, "iat": now, "exp": now + 3600, "brands": ["luckin"], "jti": "g1"}, KEY)


def _policy(tmp_path, lines: str, clock: FakeClock) -> AccessPolicy:
    revoked = tmp_path / "revoked"
    revoked.write_text(lines)
    return AccessPolicy(dataclasses.replace(SETTINGS, merchant_revoked_file=revoked), clock=clock)


def _md(grant: str) -> tuple:
    return ((INTERNAL_TOKEN_KEY, SETTINGS.internal_token), (MERCHANT_TOKEN_KEY, grant))


@pytest.mark.parametrize("merchant", [*UNNAMEABLE, "luckin-hq"])
def test_no_grant_keeps_working_once_the_revocation_file_names_its_merchant(tmp_path, merchant):
    clock = FakeClock()
    # Before, "Luckin Coffee" revoked a merchant "Luckin" and left the leaked grant working;
    # "store#12" revoked "store"; "grant:luckin" was read as a grant id.
    policy = _policy(tmp_path, f"{merchant}\n", clock)
    refused = policy.check(MERCHANT, _md(_signed(merchant, clock)))
    assert refused is not None and refused.reason == "MERCHANT_GRANT_INVALID"


@pytest.mark.parametrize("merchant", UNNAMEABLE)
def test_a_grant_is_not_minted_for_a_merchant_id_the_revocation_file_cannot_name(merchant):
    with pytest.raises(ValueError, match="merchant id"):
        mint_grant(KEY, merchant, brands=["luckin"])


def test_a_merchant_named_in_the_file_is_revoked_and_a_merchant_it_does_not_name_is_not(tmp_path):
    clock = FakeClock()
    policy = _policy(tmp_path, "luckin-hq  # leaked\n", clock)
    assert policy.check(MERCHANT, _md(mint_grant(KEY, "luckin-hq", brands=["luckin"], clock=clock))).reason == "MERCHANT_GRANT_INVALID"
    assert policy.check(MERCHANT, _md(mint_grant(KEY, "luckin-hq-2", brands=["luckin"], clock=clock))) is None


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(lambda text: "\ufeff".encode() + text.encode(), id="UTF-8 with a byte order mark (Notepad)"),
        pytest.param(lambda text: text.encode("utf-16"), id="UTF-16 (Windows PowerShell's Out-File)"),
    ],
)
def test_a_revocation_file_saved_with_a_byte_order_mark_revokes_its_first_line_too(tmp_path, encoded):
    clock = FakeClock()
    revoked = tmp_path / "revoked"
    # Before, the mark glued to the first merchant id ("\ufeffleaky-hq"), which no grant names:
    # the merchant an operator revoked first kept working.
    revoked.write_bytes(encoded("leaky-hq\nother-hq\n"))
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_revoked_file=revoked), clock=clock)
    reasons = {}
    for merchant in ("leaky-hq", "other-hq", "honest-hq"):
        refused = policy.check(MERCHANT, _md(mint_grant(KEY, merchant, brands=["b"], clock=clock)))
        reasons[merchant] = None if refused is None else refused.reason
    assert reasons == {"leaky-hq": "MERCHANT_GRANT_INVALID", "other-hq": "MERCHANT_GRANT_INVALID", "honest-hq": None}
