"""A grant that runs out (or is revoked) between the credential check of a call and the reading
of its scope is refused as the check would now refuse it: UNAUTHENTICATED MERCHANT_GRANT_INVALID,
which tells the merchant to renew its grant. It was PERMISSION_DENIED MERCHANT_REQUIRED, as if
the call had carried no merchant credential at all."""
from __future__ import annotations

import pytest

from services.common.auth import MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import DomainError
from services.common.merchant_grant import mint_grant

SETTINGS = Settings.from_env("order", {})


def test_a_grant_expiring_within_the_call_is_refused_as_expired():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    md = ((MERCHANT_TOKEN_KEY, mint_grant(SETTINGS.merchant_signing_key, "m", stores=["s1"], ttl=60, clock=clock)),)
    assert policy.check(MERCHANT, md) is None
    clock.advance(60 + 31)  # past exp and the leeway, between the check and the scope
    with pytest.raises(DomainError) as err:
        policy.merchant_scope(md)
    assert (err.value.code, err.value.reason) == ("UNAUTHENTICATED", "MERCHANT_GRANT_INVALID")
    assert "expired" in err.value.message
