"""Mint an end-user token for local use and tests.

    python -m gateway.token alice [--ttl 3600] [--issuer miandan]

prints a JWT signed with the gateway's configured key (MIANDAN_JWT_SECRET for HS256, or
MIANDAN_JWT_PRIVATE_KEY_FILE for RS256/EdDSA/ES256), to send as `authorization: Bearer <token>`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import jwt

from services.common.clock import Clock, SystemClock
from services.common.config import Settings

from .auth import DEV_JWT_SECRET, check_user_id, quiet_dev_key_warning, signing_key

__all__ = ["mint", "main"]


def mint(
    settings: Any,
    user: str,
    *,
    ttl: float = 3600,
    issuer: str | None = None,
    clock: Clock | None = None,
    algorithm: str | None = None,
    key: Any = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed token for `user` valid for `ttl` seconds (negative ttl mints an expired one,
    which tests need)."""
    if not user:
        raise ValueError("user must not be empty")
    # The gateway would refuse the token (TOKEN_INVALID): better not to mint it at all.
    check_user_id(user)
    if ttl > settings.jwt_max_lifetime_s:
        raise ValueError(f"ttl {ttl:g} s is longer than the gateway accepts (MIANDAN_JWT_MAX_LIFETIME_S={settings.jwt_max_lifetime_s:g})")
    algorithm = algorithm or settings.jwt_algorithm
    now = int((clock or SystemClock()).now().timestamp())
    claims: dict[str, Any] = {
        "sub": user,
        "iss": settings.jwt_issuer if issuer is None else issuer,
        "iat": now,
        "exp": now + int(ttl),
    }
    claims.update(extra or {})
    key = key if key is not None else signing_key(settings, algorithm)
    if key == DEV_JWT_SECRET:
        quiet_dev_key_warning()
    return jwt.encode(claims, key, algorithm=algorithm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.token", description=__doc__.splitlines()[0])
    parser.add_argument("user", help="user id (the token's subject)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds the token stays valid (default 3600)")
    parser.add_argument("--issuer", default=None, help="iss claim (default MIANDAN_JWT_ISSUER or 'miandan')")
    args = parser.parse_args(argv)
    if args.ttl < 1:
        # mint() takes any ttl (tests need expired tokens); from here a token already expired
        # would only come back from the gateway as TOKEN_EXPIRED.
        parser.error("--ttl must be at least 1 second")
    try:
        settings = Settings.from_env("gateway")
        print(mint(settings, args.user, ttl=args.ttl, issuer=args.issuer))
    except (ValueError, OSError) as exc:
        print(f"gateway.token: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
