"""Merchant grants: one merchant's own brands and stores, signed, and running out."""
from __future__ import annotations

import jwt
import pytest

from services.common.auth import (
    ADMIN, ADMIN_TOKEN_KEY, INTERNAL, INTERNAL_OR_MERCHANT, INTERNAL_TOKEN_KEY, MERCHANT, MERCHANT_TOKEN_KEY, AccessPolicy,
)
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import DomainError
from services.common.merchant_grant import MAX_LIFETIME_S, MAX_SCOPE_IDS, MerchantScope, grant_id_of, main, mint_grant, read_grant

SETTINGS = Settings.from_env("catalog", {})
KEY = SETTINGS.merchant_signing_key


def test_a_grant_reads_back_as_its_merchant_and_scope():
    clock = FakeClock()
    token = mint_grant(KEY, "luckin-hq", brands=["luckin", "luckin"], stores=["s9"], clock=clock)
    scope = read_grant(KEY, token, clock.now().timestamp())
    assert scope == MerchantScope("luckin-hq", frozenset({"luckin"}), frozenset({"s9"}), int(clock.now().timestamp()), grant_id_of(token))
    assert len(scope.grant_id) == 16 and grant_id_of(mint_grant(KEY, "luckin-hq", brands=["luckin"], clock=clock)) != scope.grant_id
    assert scope.covers("luckin", "s1") and scope.covers("mixue", "s9") and not scope.covers("mixue", "s1")


def test_an_expired_or_forged_or_overlong_grant_is_refused_saying_why():
    clock = FakeClock()
    now = int(clock.now().timestamp())
    token = mint_grant(KEY, "m", brands=["b"], ttl=60, clock=clock)
    with pytest.raises(ValueError, match="expired"):
        read_grant(KEY, token, now + 60 + 31)
    with pytest.raises(ValueError, match="bad signature"):
        read_grant("another-key-of-a-decent-length-0000000000", token, now)
    forever = jwt.encode({"sub": "m", "iss": "miandan-merchant", "iat": now, "exp": now + MAX_LIFETIME_S + 1, "brands": ["b"]}, KEY)
    with pytest.raises(ValueError, match="longer"):
        read_grant(KEY, forever, now)
    user_token = jwt.encode({"sub": "m", "iss": "miandan", "iat": now, "exp": now + 60, "brands": ["b"]}, KEY)
    with pytest.raises(ValueError, match="InvalidIssuer"):
        read_grant(KEY, user_token, now)
    odd = jwt.encode({"sub": "m", "iss": "miandan-merchant", "iat": now, "exp": now + 60, "brands": "b"}, KEY)
    with pytest.raises(ValueError, match="lists"):
        read_grant(KEY, odd, now)


@pytest.mark.parametrize(
    "merchant, brands, stores, ttl, message",
    [
        ("m", [], [], 60, "at least one"),
        ("", ["b"], [], 60, "merchant id"),
        ("m", [f"b{i}" for i in range(MAX_SCOPE_IDS + 1)], [], 60, "at most"),
        ("m", [""], [], 60, "1..128"),
        ("m", [], ["s" * 129], 60, "1..128"),
        ("m", ["b"], [], 0, "ttl"),
        ("m", ["b"], [], MAX_LIFETIME_S + 1, "ttl"),
    ],
)
def test_a_grant_that_would_be_refused_is_not_minted(merchant, brands, stores, ttl, message):
    with pytest.raises(ValueError, match=message):
        mint_grant(KEY, merchant, brands=brands, stores=stores, ttl=ttl)


def _md(merchant=None, admin=None):
    md = [(INTERNAL_TOKEN_KEY, SETTINGS.internal_token)]
    if merchant is not None:
        md.append((MERCHANT_TOKEN_KEY, merchant))
    if admin is not None:
        md.append((ADMIN_TOKEN_KEY, admin))
    return tuple(md)


def test_the_policy_lets_a_grant_through_and_reports_its_scope():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    grant = mint_grant(KEY, "m", stores=["s1"], ttl=60, clock=clock)
    assert policy.check(MERCHANT, _md(grant)) is None
    assert policy.merchant_scope(_md(grant)).stores == frozenset({"s1"})
    assert policy.merchant_scope(_md(grant.encode())).stores == frozenset({"s1"})  # bytes metadata
    # The platform's token and the admin credential are not limited to any store.
    assert policy.check(MERCHANT, _md(SETTINGS.merchant_token)) is None
    assert policy.merchant_scope(_md(SETTINGS.merchant_token)) is None
    assert policy.merchant_scope(_md(grant, admin=SETTINGS.admin_token)) is None
    clock.advance(91)
    refused = policy.check(MERCHANT, _md(grant))
    assert isinstance(refused, DomainError) and refused.reason == "MERCHANT_GRANT_INVALID" and "expired" in str(refused)
    assert policy.check(MERCHANT, _md("guess")).reason == "CREDENTIAL_INVALID"
    assert policy.check(MERCHANT, _md()).reason == "MERCHANT_REQUIRED"
    with pytest.raises(DomainError):
        policy.merchant_scope(_md("guess"))


def test_the_cli_prints_a_grant_and_refuses_an_empty_scope(capsys, monkeypatch):
    monkeypatch.delenv("MIANDAN_MERCHANT_SIGNING_KEY", raising=False)
    assert main(["heytea-hq", "--brand", "heytea", "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip()
    issued = jwt.decode(token, options={"verify_signature": False})["iat"]
    assert read_grant(KEY, token, issued).brands == {"heytea"}
    assert main(["heytea-hq"]) == 2
    assert "at least one" in capsys.readouterr().err


def test_a_revoked_grant_is_refused_without_a_restart(tmp_path):
    import dataclasses

    clock = FakeClock()
    revoked = tmp_path / "revoked.txt"
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_revoked_file=revoked), clock=clock)
    policy._revoked.check_s = 0  # look at the file on every call
    old = mint_grant(KEY, "leaky-hq", brands=["leaky"], clock=clock)
    other = mint_grant(KEY, "honest-hq", brands=["honest"], clock=clock)
    assert policy.check(MERCHANT, _md(old)) is None  # no file yet: nothing revoked
    revoked.write_text("# leaked on the 28th\nleaky-hq\n")
    refused = policy.check(MERCHANT, _md(old))
    assert refused.reason == "MERCHANT_GRANT_INVALID" and "revoked" in str(refused)
    assert policy.check(MERCHANT, _md(other)) is None
    # Revoking what was issued before a moment lets the merchant get a new grant.
    clock.advance(60)
    new = mint_grant(KEY, "leaky-hq", brands=["leaky"], clock=clock)
    revoked.write_text(f"leaky-hq {int(clock.now().timestamp())}  # grants before now\n")
    assert policy.check(MERCHANT, _md(old)).reason == "MERCHANT_GRANT_INVALID"
    assert policy.check(MERCHANT, _md(new)) is None
    revoked.unlink()
    assert policy.check(MERCHANT, _md(old)) is None


def test_one_leaked_grant_is_revoked_by_its_id_and_the_merchants_others_keep_working(tmp_path, capsys):
    import dataclasses

    clock = FakeClock()
    revoked = tmp_path / "revoked.txt"
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_revoked_file=revoked), clock=clock)
    policy._revoked.check_s = 0
    leaked = mint_grant(KEY, "heytea-hq", stores=["heytea-sz-1"], clock=clock)
    kept = mint_grant(KEY, "heytea-hq", stores=["heytea-sz-2"], clock=clock)
    revoked.write_text(f"grant:{grant_id_of(leaked)}  # the Shenzhen 1 till, stolen\n")
    assert policy.check(MERCHANT, _md(leaked)).reason == "MERCHANT_GRANT_INVALID"
    assert policy.check(MERCHANT, _md(kept)) is None
    # A grant from before grants had ids is untouched by id lines.
    now = int(clock.now().timestamp())
    old = jwt.encode({"sub": "heytea-hq", "iss": "miandan-merchant", "iat": now, "exp": now + 60, "stores": ["s"]}, KEY)
    assert read_grant(KEY, old, now).grant_id == "" and policy.check(MERCHANT, _md(old)) is None
    odd = jwt.encode({"sub": "m", "iss": "miandan-merchant", "iat": now, "exp": now + 60, "stores": ["s"], "jti": 7}, KEY)
    with pytest.raises(ValueError, match="(?i)jti"):
        read_grant(KEY, odd, now)
    # The CLI says which line revokes what it printed.
    assert main(["heytea-hq", "--store", "heytea-sz-3"]) == 0
    captured = capsys.readouterr()
    assert f"grant:{grant_id_of(captured.out.strip())}" in captured.err


def test_the_cli_says_where_the_revocation_line_goes_or_that_no_file_is_read(capsys, monkeypatch, tmp_path):
    # `make run` as the README starts it reads no revocation file: the grant-id line alone sent
    # operators to edit a file no service was reading.
    monkeypatch.delenv("MIANDAN_MERCHANT_REVOKED_FILE", raising=False)
    assert main(["heytea-hq", "--brand", "heytea"]) == 0
    err = capsys.readouterr().err
    assert "revokes it (not set here: services started without it read no revocations)" in err
    revoked = tmp_path / "revoked"
    monkeypatch.setenv("MIANDAN_MERCHANT_REVOKED_FILE", str(revoked))
    assert main(["heytea-hq", "--brand", "heytea"]) == 0
    captured = capsys.readouterr()
    grant_id = grant_id_of(captured.out.strip())
    assert captured.err.strip() == f"grant id {grant_id}: a line `grant:{grant_id}` in MIANDAN_MERCHANT_REVOKED_FILE ({revoked}) revokes it"


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_a_grant_with_a_time_beyond_every_float_is_invalid_not_a_crash(claim):
    # 10**400 overflowed math.isfinite: a signed grant turned into UNKNOWN / INTERNAL answers.
    now = int(FakeClock().now().timestamp())
    claims = {"sub": "m", "iss": "miandan-merchant", "iat": now, "exp": now + 60, "brands": ["b"], claim: 10**400}
    with pytest.raises(ValueError, match="numbers"):
        read_grant(KEY, jwt.encode(claims, KEY), now)
    policy = AccessPolicy(SETTINGS, clock=FakeClock())
    assert policy.check(MERCHANT, _md(jwt.encode(claims, KEY))).reason == "MERCHANT_GRANT_INVALID"


def test_a_grant_names_store_ids_as_long_as_the_catalog_takes():
    clock = FakeClock()
    long_store = "s" * 128  # the catalog's limit for a store id
    token = mint_grant(KEY, "franchisee", stores=[long_store], clock=clock)
    assert read_grant(KEY, token, clock.now().timestamp()).covers("any-brand", long_store)


def test_an_unreadable_revocation_file_refuses_every_grant_until_it_can_be_read(tmp_path):
    import dataclasses

    clock = FakeClock()
    revoked = tmp_path / "revoked"
    revoked.mkdir()  # exists, cannot be read as a file
    policy = AccessPolicy(dataclasses.replace(SETTINGS, merchant_revoked_file=revoked), clock=clock)
    grant = mint_grant(KEY, "honest-hq", brands=["honest"], clock=clock)
    for _ in range(3):  # every call, not only the one that read the file
        refused = policy.check(MERCHANT, _md(grant))
        assert refused.reason == "MERCHANT_GRANT_INVALID" and "cannot be read" in str(refused)
    assert policy.check(MERCHANT, ((INTERNAL_TOKEN_KEY, SETTINGS.internal_token), (MERCHANT_TOKEN_KEY, SETTINGS.merchant_token))) is None
    revoked.rmdir()
    revoked.write_text("someone-else\n")
    policy._revoked._next_check = 0.0  # the next look at the file is due
    assert policy.check(MERCHANT, _md(grant)) is None


def test_a_merchants_own_credential_alone_fills_merchant_roles_and_no_other():
    clock = FakeClock()
    policy = AccessPolicy(SETTINGS, clock=clock)
    grant = ((MERCHANT_TOKEN_KEY, mint_grant(KEY, "m", stores=["s1"], ttl=60, clock=clock)),)
    platform = ((MERCHANT_TOKEN_KEY, SETTINGS.merchant_token),)
    for role in (MERCHANT, INTERNAL_OR_MERCHANT):
        assert policy.check(role, grant) is None and policy.check(role, platform) is None
        assert policy.check(role, ((MERCHANT_TOKEN_KEY, "guess"),)).reason == "CREDENTIAL_INVALID"
        assert policy.check(role, ()).reason == "CREDENTIAL_MISSING"
        # An admin comes through the platform: its token alone is no credential.
        assert policy.check(role, ((ADMIN_TOKEN_KEY, SETTINGS.admin_token),)).reason == "CREDENTIAL_MISSING"
    assert policy.merchant_scope(grant).stores == frozenset({"s1"})
    for role in (INTERNAL, ADMIN):
        assert policy.check(role, grant).reason == "CREDENTIAL_MISSING"
        assert policy.check(role, platform).reason == "CREDENTIAL_MISSING"
    assert not policy.is_internal(grant) and not policy.is_internal(platform)
    # With the internal credential, INTERNAL_OR_MERCHANT is plain internal; a wrong one is refused
    # whatever merchant credential comes with it.
    assert policy.check(INTERNAL_OR_MERCHANT, _md()) is None
    assert policy.check(MERCHANT, ((INTERNAL_TOKEN_KEY, "wrong"),) + grant).reason == "CREDENTIAL_INVALID"
    clock.advance(91)
    assert policy.check(MERCHANT, grant).reason == "MERCHANT_GRANT_INVALID"
