"""The keys end-user tokens are verified with, checked at start with a message naming the
variable: an HMAC secret at least as long as its algorithm's hash (RFC 7518 3.2: HS256 32 bytes,
HS384 48, HS512 64), and every ES* algorithm the conventions promise, ES512 (P-521) included."""
import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.config import MIN_HMAC_KEY_BYTES, Settings, check_start_files

REACHABLE = {
    "MIANDAN_HOST": "0.0.0.0",
    "MIANDAN_INTERNAL_TOKEN": "internal-9f2c",
    "MIANDAN_ADMIN_TOKEN": "admin-77a1",
    "MIANDAN_MERCHANT_TOKEN": "hub-5d0e",
    "MIANDAN_MERCHANT_SIGNING_KEY": "m" * MIN_HMAC_KEY_BYTES,
}


@pytest.mark.parametrize(("algorithm", "hash_bytes"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_a_jwt_secret_shorter_than_its_algorithms_hash_is_refused_naming_the_variable(algorithm, hash_bytes):
    env = {**REACHABLE, "MIANDAN_JWT_ALGORITHM": algorithm, "MIANDAN_JWT_SECRET": "j" * (hash_bytes - 1)}
    with pytest.raises(ValueError, match=f"MIANDAN_JWT_SECRET is shorter than {hash_bytes} bytes.*{algorithm}"):
        Settings.from_env("gateway", env)
    env["MIANDAN_JWT_SECRET"] = "j" * hash_bytes
    assert Settings.from_env("gateway", env).jwt_algorithm == algorithm


def _public_key_file(tmp_path, curve):
    key = ec.generate_private_key(curve)
    private = tmp_path / "jwt.key"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public = tmp_path / "jwt.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return public, private


def test_a_gateway_verifies_es512_tokens_with_a_p521_public_key(tmp_path):
    public, private = _public_key_file(tmp_path, ec.SECP521R1())
    settings = Settings.from_env(
        "gateway", {"MIANDAN_JWT_ALGORITHM": "ES512", "MIANDAN_JWT_PUBLIC_KEY_FILE": str(public)}
    )
    check_start_files(settings)
    from gateway.auth import TokenVerifier
    from gateway.token import mint

    token = mint(dataclasses.replace(settings, jwt_private_key_file=private), "u-es512")
    assert TokenVerifier(settings).verify(token) == "u-es512"


def test_an_es512_gateway_given_a_key_of_another_curve_does_not_start(tmp_path):
    public, _ = _public_key_file(tmp_path, ec.SECP256R1())
    settings = Settings.from_env("gateway", {"MIANDAN_JWT_ALGORITHM": "ES512", "MIANDAN_JWT_PUBLIC_KEY_FILE": str(public)})
    with pytest.raises(ValueError, match="MIANDAN_JWT_PUBLIC_KEY_FILE=.* is not a ES512 public key"):
        check_start_files(settings)
