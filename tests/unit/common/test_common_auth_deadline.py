import pytest

from services.common.auth import ADMIN, INTERNAL, MERCHANT, PUBLIC, AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.deadline import remaining
from services.common.errors import DeadlineExceeded

SETTINGS = Settings.from_env("card", {})
POLICY = AccessPolicy(SETTINGS, {"/s.S/Admin": ADMIN, "/s.S/Merchant": MERCHANT, "/s.S/Open": PUBLIC})


def reason(role, md):
    err = POLICY.check(role, md)
    return None if err is None else err.reason


def test_roles_default_to_internal_and_public_needs_nothing():
    assert POLICY.role("/s.S/Other") is INTERNAL
    assert reason(POLICY.role("/s.S/Open"), ()) is None


def test_internal_admin_and_merchant_credentials():
    md = internal_metadata(SETTINGS)
    assert reason(INTERNAL, ()) == "CREDENTIAL_MISSING"
    assert reason(INTERNAL, (("x-miandan-internal-token", "nope"),)) == "CREDENTIAL_INVALID"
    assert reason(INTERNAL, md) is None
    assert reason(ADMIN, md) == "ADMIN_REQUIRED"
    assert reason(ADMIN, internal_metadata(SETTINGS, admin=True)) is None
    assert reason(ADMIN, md + (("x-miandan-admin-token", "nope"),)) == "CREDENTIAL_INVALID"
    assert reason(MERCHANT, md) == "MERCHANT_REQUIRED"
    assert reason(MERCHANT, internal_metadata(SETTINGS, merchant=True)) is None
    assert reason(MERCHANT, internal_metadata(SETTINGS, admin=True)) is None


def test_a_credential_sent_twice_is_judged_by_its_first_value_by_every_check():
    good, bad = SETTINGS.internal_token, "nope"
    key = "x-miandan-internal-token"
    # Before, the role check read the last value and is_internal the first: a call let in as
    # internal was not internal to the checks that followed (and the other way round).
    for md in (((key, good), (key, bad)), ((key, bad), (key, good))):
        allowed = reason(INTERNAL, md) is None
        assert allowed == POLICY.is_internal(md) == (md[0][1] == good), md
    admin = internal_metadata(SETTINGS) + (("x-miandan-admin-token", SETTINGS.admin_token), ("x-miandan-admin-token", "nope"))
    assert reason(ADMIN, admin) is None


class Ctx:
    def __init__(self, left):
        self.left = left

    def time_remaining(self):
        return self.left


def test_remaining_passes_the_callers_deadline_on_minus_a_margin():
    assert remaining(Ctx(1.0), margin=0.01) == pytest.approx(0.99)
    assert remaining(Ctx(None), default=3.0) == 3.0


def test_remaining_refuses_to_start_work_after_the_deadline():
    with pytest.raises(DeadlineExceeded) as info:
        remaining(Ctx(0.001))
    assert info.value.reason == "DEADLINE_PASSED"
