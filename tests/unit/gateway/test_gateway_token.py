"""End-user token verification: every failure has its own reason, the cache never outlives exp."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import Unauthenticated

from gateway.auth import TokenVerifier, bearer_token
from gateway.token import main as token_main, mint

SETTINGS = Settings.from_env("gateway", {})


def reason(fn, *args):
    with pytest.raises(Unauthenticated) as info:
        fn(*args)
    return info.value.reason


def md(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def test_a_minted_token_verifies_to_its_user():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    assert verifier.user_of(md(mint(SETTINGS, "alice", clock=clock))) == "alice"


def test_a_missing_header_is_token_missing():
    verifier = TokenVerifier(SETTINGS, clock=FakeClock())
    assert reason(verifier.user_of, ()) == "TOKEN_MISSING"
    assert reason(verifier.user_of, (("x-other", "1"),)) == "TOKEN_MISSING"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token-without-scheme"])
def test_a_header_that_is_not_a_bearer_token_is_invalid(header):
    assert reason(bearer_token, (("authorization", header),)) == "TOKEN_INVALID"


def test_an_expired_token_is_token_expired():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    token = mint(SETTINGS, "alice", ttl=60, clock=clock)
    clock.advance(61 + 30)  # past exp and the clock-skew leeway
    assert reason(verifier.user_of, md(token)) == "TOKEN_EXPIRED"


def test_a_cached_token_expires_on_time_too():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    token = mint(SETTINGS, "alice", ttl=60, clock=clock)
    assert verifier.user_of(md(token)) == "alice"
    clock.advance(91)
    assert reason(verifier.user_of, md(token)) == "TOKEN_EXPIRED"


def test_a_tampered_token_is_invalid():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    token = mint(SETTINGS, "alice", clock=clock)
    header, payload, sig = token.split(".")
    other = mint(SETTINGS, "mallory", clock=clock).split(".")[1]
    assert reason(verifier.user_of, md(f"{header}.{other}.{sig}")) == "TOKEN_INVALID"
    assert reason(verifier.user_of, md(f"{header}.{payload}.{sig[:-4]}AAAA")) == "TOKEN_INVALID"
    assert reason(verifier.user_of, md("not.a.jwt")) == "TOKEN_INVALID"


def test_a_token_signed_with_another_secret_is_invalid():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    forged = mint(SETTINGS, "alice", clock=clock, key="someone-elses-secret-of-enough-length")
    assert reason(verifier.user_of, md(forged)) == "TOKEN_INVALID"


def test_an_unsigned_token_is_refused():
    import jwt

    clock = FakeClock()
    now = int(clock.now().timestamp())
    token = jwt.encode({"sub": "alice", "iss": "miandan", "iat": now, "exp": now + 60}, None, algorithm="none")
    assert reason(TokenVerifier(SETTINGS, clock=clock).user_of, md(token)) == "TOKEN_INVALID"


def test_a_token_of_another_issuer_is_wrong_issuer():
    clock = FakeClock()
    token = mint(SETTINGS, "alice", issuer="evil", clock=clock)
    assert reason(TokenVerifier(SETTINGS, clock=clock).user_of, md(token)) == "TOKEN_WRONG_ISSUER"


def test_a_token_without_subject_or_expiry_is_invalid():
    import jwt

    clock = FakeClock()
    now = int(clock.now().timestamp())
    verifier = TokenVerifier(SETTINGS, clock=clock)
    for claims in ({"iss": "miandan", "iat": now, "exp": now + 60}, {"sub": "a", "iss": "miandan", "iat": now}):
        token = jwt.encode(claims, SETTINGS.jwt_secret, algorithm="HS256")
        assert reason(verifier.user_of, md(token)) == "TOKEN_INVALID"


def test_a_token_issued_in_the_future_is_invalid():
    clock = FakeClock()
    future = FakeClock(clock.now() + timedelta(hours=1))
    token = mint(SETTINGS, "alice", clock=future)
    assert reason(TokenVerifier(SETTINGS, clock=clock).user_of, md(token)) == "TOKEN_INVALID"


def _signed(claims):
    import jwt

    return jwt.encode(claims, SETTINGS.jwt_secret, algorithm="HS256")


def test_a_token_not_valid_yet_is_invalid_until_its_nbf_then_verifies():
    clock = FakeClock()
    now = int(clock.now().timestamp())
    token = _signed({"sub": "alice", "iss": "miandan", "iat": now, "exp": now + 3600, "nbf": now + 600})
    verifier = TokenVerifier(SETTINGS, clock=clock)
    assert reason(verifier.user_of, md(token)) == "TOKEN_INVALID"
    clock.advance(600)
    assert verifier.user_of(md(token)) == "alice"
    far = _signed({"sub": "alice", "iss": "miandan", "iat": now, "exp": now + 3600, "nbf": 10**30})
    assert reason(verifier.user_of, md(far)) == "TOKEN_INVALID"


@pytest.mark.parametrize("claim, value", [
    ("exp", float("nan")), ("exp", float("inf")), ("iat", float("nan")), ("nbf", float("nan")), ("nbf", "soon"),
    ("exp", True), ("exp", 10**400), ("iat", 10**400), ("nbf", 10**400), ("iat", -(10**400)),
])
def test_time_claims_must_be_finite_numbers(claim, value):
    # NaN compares false to every time: an exp of NaN would never have expired.
    clock = FakeClock()
    now = int(clock.now().timestamp())
    claims = {"sub": "alice", "iss": "miandan", "iat": now, "exp": now + 60, claim: value}
    assert reason(TokenVerifier(SETTINGS, clock=clock).user_of, md(_signed(claims))) == "TOKEN_INVALID"


def test_verified_tokens_are_cached_so_the_signature_is_checked_once():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    token = mint(SETTINGS, "alice", clock=clock)
    for _ in range(100):
        assert verifier.user_of(md(token)) == "alice"
    assert verifier.verifications == 1


def test_the_cache_is_bounded():
    clock = FakeClock()
    verifier = TokenVerifier(SETTINGS, clock=clock, cache_size=10)
    for i in range(50):
        verifier.user_of(md(mint(SETTINGS, f"u{i}", clock=clock)))
    assert len(verifier._cache) == 10


def test_eddsa_tokens_verify_with_the_configured_public_key(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "jwt.key"
    public = tmp_path / "jwt.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = dataclasses.replace(SETTINGS, jwt_algorithm="EdDSA", jwt_private_key_file=private, jwt_public_key_file=public)
    clock = FakeClock()
    verifier = TokenVerifier(settings, clock=clock)
    assert verifier.user_of(md(mint(settings, "alice", clock=clock))) == "alice"
    # An HS256 token made with the (public) key material must not pass as EdDSA.
    hs = mint(SETTINGS, "alice", clock=clock)
    assert reason(verifier.user_of, md(hs)) == "TOKEN_INVALID"


def test_an_asymmetric_algorithm_without_key_files_fails_at_startup():
    settings = dataclasses.replace(SETTINGS, jwt_algorithm="RS256")
    with pytest.raises(ValueError, match="public key"):
        TokenVerifier(settings)


def test_the_token_command_prints_a_token_for_the_user(capsys, monkeypatch):
    monkeypatch.delenv("MIANDAN_JWT_ISSUER", raising=False)
    assert token_main(["bob", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenVerifier(Settings.from_env("gateway")).verify(token) == "bob"


BAD_SUBJECTS = ["", "x" * 129, "alice smith", "张三", "alice\n", "a,b", "🙂", "a;drop", "a#b"]


@pytest.mark.parametrize("sub", BAD_SUBJECTS + [7, None, ["alice"]])
def test_a_token_whose_subject_the_services_would_refuse_is_invalid(sub):
    import jwt

    clock = FakeClock()
    now = int(clock.now().timestamp())
    token = jwt.encode({"sub": sub, "iss": "miandan", "iat": now, "exp": now + 60}, SETTINGS.jwt_secret, algorithm="HS256")
    with pytest.raises(Unauthenticated) as info:
        TokenVerifier(SETTINGS, clock=clock).user_of(md(token))
    assert info.value.reason == "TOKEN_INVALID"


@pytest.mark.parametrize("sub", ["a", "x" * 128, "user:42@example.com", "A.b_c-d/e+f=g"])
def test_every_subject_the_services_accept_verifies(sub):
    clock = FakeClock()
    assert TokenVerifier(SETTINGS, clock=clock).user_of(md(mint(SETTINGS, sub, clock=clock))) == sub


@pytest.mark.parametrize("sub", BAD_SUBJECTS)
def test_no_token_is_minted_for_a_user_id_the_services_would_refuse(sub):
    with pytest.raises(ValueError):
        mint(SETTINGS, sub)


def test_the_token_command_refuses_a_bad_user_id(capsys):
    assert token_main(["alice smith"]) == 2
    captured = capsys.readouterr()
    assert not captured.out and "sub must be a user id" in captured.err


def test_a_token_may_live_at_most_the_configured_lifetime():
    import jwt

    clock = FakeClock()
    now = int(clock.now().timestamp())
    verifier = TokenVerifier(SETTINGS, clock=clock)
    week = int(SETTINGS.jwt_max_lifetime_s)
    assert week == 7 * 86_400
    assert verifier.user_of(md(mint(SETTINGS, "alice", ttl=week, clock=clock))) == "alice"
    for exp in (now + week + 1, 10**30):
        token = jwt.encode({"sub": "bob", "iss": "miandan", "iat": now, "exp": exp}, SETTINGS.jwt_secret, algorithm="HS256")
        assert reason(verifier.user_of, md(token)) == "TOKEN_INVALID"
    # An issue time long ago does not stretch it either: exp - iat is what counts.
    old = jwt.encode({"sub": "carol", "iss": "miandan", "iat": now - 30 * 86_400, "exp": now + 60}, SETTINGS.jwt_secret, algorithm="HS256")
    assert reason(verifier.user_of, md(old)) == "TOKEN_INVALID"
    # Operators choose the bound.
    hour = dataclasses.replace(SETTINGS, jwt_max_lifetime_s=3600)
    assert reason(TokenVerifier(hour, clock=clock).user_of, md(mint(SETTINGS, "dave", ttl=3601, clock=clock))) == "TOKEN_INVALID"


def test_minting_a_token_the_gateway_would_refuse_fails():
    with pytest.raises(ValueError, match="MIANDAN_JWT_MAX_LIFETIME_S"):
        mint(SETTINGS, "alice", ttl=SETTINGS.jwt_max_lifetime_s + 1)


@pytest.mark.parametrize("ttl", ["0", "-60"])
def test_the_token_command_mints_no_token_that_is_expired_already(capsys, ttl):
    with pytest.raises(SystemExit) as exit_:
        token_main(["alice", "--ttl", ttl])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and not captured.out and "--ttl must be at least 1 second" in captured.err


def _ed25519_key_files(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.parametrize(
    ("key_file", "says"),
    [
        ("missing", "cannot be read: No such file or directory"),
        ("directory", "cannot be read: Is a directory"),
        ("not-a-key", "is not a EdDSA private key"),
        ("public", "is not a EdDSA private key"),  # the .key and .pub files swapped
    ],
)
def test_the_token_command_names_a_signing_key_file_it_cannot_sign_with(tmp_path, monkeypatch, capsys, key_file, says):
    _, public = _ed25519_key_files(tmp_path)
    (tmp_path / "not-a-key").write_text("hello\n")
    path = {"missing": tmp_path / "nope.key", "directory": tmp_path, "not-a-key": tmp_path / "not-a-key", "public": public}[key_file]
    monkeypatch.setenv("MIANDAN_JWT_ALGORITHM", "EdDSA")
    monkeypatch.setenv("MIANDAN_JWT_PRIVATE_KEY_FILE", str(path))
    assert token_main(["alice"]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    assert captured.err.strip() == f"gateway.token: MIANDAN_JWT_PRIVATE_KEY_FILE='{path}' {says}"


def test_the_token_command_signs_with_the_configured_private_key(tmp_path, monkeypatch, capsys):
    private, public = _ed25519_key_files(tmp_path)
    monkeypatch.setenv("MIANDAN_JWT_ALGORITHM", "EdDSA")
    monkeypatch.setenv("MIANDAN_JWT_PRIVATE_KEY_FILE", str(private))
    monkeypatch.setenv("MIANDAN_JWT_PUBLIC_KEY_FILE", str(public))
    assert token_main(["alice"]) == 0
    assert TokenVerifier(Settings.from_env("gateway")).verify(capsys.readouterr().out.strip()) == "alice"
