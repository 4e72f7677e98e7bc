"""End-user bearer tokens: JWT verification with a small cache of verified tokens.

Why a cache: an HS256 check is a few microseconds but RS256/EdDSA verifications cost tens to
hundreds of microseconds of CPU on the hot path, and a client sends the same token on every call
for an hour. The cache is keyed by the exact token string (so a tampered token never hits it),
bounded (LRU), and every hit re-checks `exp` against the injected clock, so a cached token
stops working the moment it expires.
"""
from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import jwt

from services.common.clock import Clock, SystemClock, is_numeric_date
from services.common.errors import Unauthenticated

__all__ = [
    "AUTHORIZATION_KEY",
    "USER_ID",
    "check_user_id",
    "TokenVerifier",
    "signing_key",
    "verification_key",
    "bearer_token",
    "token_expired",
]

AUTHORIZATION_KEY = "authorization"
DEV_JWT_SECRET = "dev-jwt-secret-change-me-in-production-0000"  # services.common.config's development default
_HMAC = ("HS256", "HS384", "HS512")
_CLAIMS = ["sub", "exp", "iss", "iat"]
# Tolerated clock skew between the token issuer and this gateway, in seconds.
LEEWAY_S = 30
# The user ids the services accept (CardService's id rule: 1..128 printable ASCII characters
# [A-Za-z0-9._:@/+=-]). A token naming anything else is refused here, as an invalid token,
# rather than reaching a service and coming back as a puzzling INVALID_ARGUMENT on user_id.
USER_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def check_user_id(user: object) -> str:
    """The user id if a token may carry it, else ValueError saying why."""
    if not isinstance(user, str) or not USER_ID.fullmatch(user):
        raise ValueError("sub must be a user id of 1..128 characters from A-Z a-z 0-9 . _ : @ / + = -")
    return user

TOKEN_MISSING = Unauthenticated(
    "TOKEN_MISSING", "请先登录 / missing bearer token (authorization: Bearer <token>)"
)
TOKEN_MALFORMED = Unauthenticated(
    "TOKEN_INVALID", "登录凭证格式错误 / malformed authorization header, expected 'Bearer <token>'"
)


def quiet_dev_key_warning() -> None:
    """The known development secret is short on purpose; PyJWT would warn on every call. Only
    done when that default is in use, so a short real secret still warns."""
    category = getattr(getattr(jwt, "warnings", None), "InsecureKeyLengthWarning", None)
    if category is not None:
        warnings.filterwarnings("ignore", category=category)


def _invalid(why: str) -> Unauthenticated:
    return Unauthenticated("TOKEN_INVALID", f"登录凭证无效 / invalid token: {why}")


def token_expired() -> Unauthenticated:
    return Unauthenticated("TOKEN_EXPIRED", "登录已过期，请重新登录 / token expired, sign in again")


def _wrong_issuer() -> Unauthenticated:
    return Unauthenticated("TOKEN_WRONG_ISSUER", "登录凭证签发方不符 / token issued by someone else")


def _key_variable(what: str) -> str:
    return f"MIANDAN_JWT_{what.upper().replace(' ', '_')}_FILE"


def _read(path: Path | None, what: str) -> bytes:
    if path is None:
        raise ValueError(f"JWT algorithm needs {what} ({_key_variable(what)})")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{_key_variable(what)}={str(path)!r} cannot be read: {exc.strerror or exc}") from None


def signing_key(settings: Any, algorithm: str | None = None) -> Any:
    """Key that signs tokens: the shared secret for HS*, the private key file otherwise. A file
    PyJWT cannot sign with is a ValueError naming the variable, not PyJWT's InvalidKeyError."""
    algorithm = algorithm or settings.jwt_algorithm
    if algorithm in _HMAC:
        return settings.jwt_secret
    data = _read(settings.jwt_private_key_file, "private key")
    try:
        key = jwt.get_algorithm_by_name(algorithm).prepare_key(data)
    except (jwt.PyJWTError, ValueError, TypeError):
        key = None
    # PyJWT prepares a public key as readily (the .pub and .key files swapped), then fails to sign.
    if not callable(getattr(key, "sign", None)):
        raise ValueError(f"{_key_variable('private key')}={str(settings.jwt_private_key_file)!r} is not a {algorithm} private key") from None
    return data


def verification_key(settings: Any, algorithm: str | None = None) -> Any:
    """Key that verifies tokens: the shared secret for HS*, the public key file otherwise."""
    algorithm = algorithm or settings.jwt_algorithm
    if algorithm in _HMAC:
        return settings.jwt_secret
    return _read(settings.jwt_public_key_file, "public key")


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise TOKEN_MALFORMED
            return token
    raise TOKEN_MISSING


class TokenVerifier:
    """Turns an `authorization: Bearer <jwt>` header into a user id, or raises Unauthenticated
    with reason TOKEN_MISSING / TOKEN_EXPIRED / TOKEN_INVALID / TOKEN_WRONG_ISSUER."""

    def __init__(
        self,
        settings: Any,
        *,
        clock: Clock | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.max_lifetime_s = settings.jwt_max_lifetime_s
        self._key = verification_key(settings)
        if self.algorithm not in _HMAC:
            # Parse the PEM once, not per verification.
            self._key = jwt.get_algorithm_by_name(self.algorithm).prepare_key(self._key)
        elif self._key == DEV_JWT_SECRET:
            quiet_dev_key_warning()
        self.clock = clock or SystemClock()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.verifications = 0  # signature checks actually performed (the cache's effect)

    def user_of(self, metadata: Sequence[tuple[str, Any]] | None) -> str:
        return self.verify(bearer_token(metadata))

    def session_of(self, metadata: Sequence[tuple[str, Any]] | None) -> tuple[str, float]:
        """(user, the clock timestamp from which its token is refused): for a call that outlives
        its first check (a WatchOrder stream)."""
        user, exp = self._verified(bearer_token(metadata))
        return user, exp + LEEWAY_S

    def verify(self, token: str) -> str:
        return self._verified(token)[0]

    def _verified(self, token: str) -> tuple[str, float]:
        now = self.clock.now().timestamp()
        hit = self._cache.get(token)
        if hit is not None:
            if now >= hit[1] + LEEWAY_S:
                del self._cache[token]
                raise token_expired()
            self._cache.move_to_end(token)
            return hit
        user, exp = self._decode(token, now)
        self._cache[token] = (user, exp)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return user, exp

    def _decode(self, token: str, now: float) -> tuple[str, float]:
        self.verifications += 1
        try:
            # Time claims are checked below against the injected clock, not PyJWT's wall clock.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                options={"require": _CLAIMS, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidIssuerError:
            raise _wrong_issuer() from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"missing claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise _invalid("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise _invalid("algorithm not accepted") from None
        except jwt.PyJWTError as exc:
            raise _invalid(type(exc).__name__) from None
        sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat")
        try:
            check_user_id(sub)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        if not is_numeric_date(exp):
            raise _invalid("exp must be a number")
        if not is_numeric_date(iat):
            raise _invalid("iat must be a number")
        if now >= exp + LEEWAY_S:
            raise token_expired()
        if iat > now + LEEWAY_S:
            raise _invalid("issued in the future")
        if exp - iat > self.max_lifetime_s:
            raise _invalid(f"lives longer than {self.max_lifetime_s:g} s (exp - iat)")
        # Optional, but binding when present (RFC 7519 4.1.5). Such a token is refused, not
        # cached, so it works once its time has come.
        nbf = claims.get("nbf")
        if nbf is not None and (not is_numeric_date(nbf) or nbf > now + LEEWAY_S):
            raise _invalid("not valid yet (nbf)" if is_numeric_date(nbf) else "nbf must be a number")
        return sub, float(exp)
