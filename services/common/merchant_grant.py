"""Merchant grants: a credential that lets one merchant act on its own stores only.

Three hundred thousand stores sharing one merchant token would let any of them mark a rival's
items sold out at lunch time or move a rival's orders along. A grant is a JWT signed with
MIANDAN_MERCHANT_SIGNING_KEY (HS256) that names the merchant (`sub`) and the brands and/or
stores it may act on; the catalog and the order service check it against the store a call
touches: another merchant's store is PERMISSION_DENIED / STORE_NOT_YOURS (stores are public),
another merchant's order NOT_FOUND / ORDER_NOT_FOUND (order ids never leak, as between users).
MIANDAN_MERCHANT_TOKEN stays the platform's own merchant credential, good for every store (the
merchant hub, operators, the demo). Grants travel in the same `x-miandan-merchant-token` header.
A leaked grant is revoked through MIANDAN_MERCHANT_REVOKED_FILE (RevokedGrants), re-read while
the services run: one grant by its id (`jti`), or all of a merchant's.

    python -m services.common.merchant_grant heytea-hq --brand heytea [--store s1] [--ttl 86400]

prints a grant signed with the configured key (and its id on stderr, for the operator's records).
"""
from __future__ import annotations

import argparse
import codecs
import logging
import math
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jwt

from .clock import Clock, SystemClock, is_numeric_date
from .errors import PermissionDenied

__all__ = [
    "ISSUER", "MAX_LIFETIME_S", "STORE_NOT_YOURS", "MerchantScope", "RevokedGrants", "grant_id_of", "mint_grant", "read_grant",
    "revocation_hint", "store_not_yours", "main",
]

_log = logging.getLogger("miandan.auth")

ISSUER = "miandan-merchant"
# A grant is a bearer credential handed to a merchant's staff systems: it must run out.
MAX_LIFETIME_S = 30 * 86_400
LEEWAY_S = 30
# Ids as the catalog mints them; a grant names at most this many (a chain's brands, or the
# stores of a franchisee: a token travels in every call's metadata).
MAX_SCOPE_IDS = 200
MAX_ID_CHARS = 128  # as the catalog's store and brand ids
_ALGORITHM = "HS256"
_GRANT_LINE = "grant:"  # a revocation line naming one grant by its id, not a merchant


@dataclass(frozen=True)
class MerchantScope:
    """What one grant lets its merchant act on."""

    merchant_id: str
    brands: frozenset[str]
    stores: frozenset[str]
    issued_at: float = 0.0
    grant_id: str = ""  # the grant's jti; empty for grants minted before grants had ids

    def covers(self, brand_id: str, store_id: str) -> bool:
        return brand_id in self.brands or store_id in self.stores


STORE_NOT_YOURS = "STORE_NOT_YOURS"


def store_not_yours(store_id: str) -> PermissionDenied:
    """The refusal of a grant acting on a store it does not cover (stores are public: no secret)."""
    return PermissionDenied(STORE_NOT_YOURS, f"这家门店不在你的授权内 / store {store_id!r} is not covered by your merchant grant")


def mint_grant(
    key: str,
    merchant_id: str,
    *,
    brands: Iterable[str] = (),
    stores: Iterable[str] = (),
    ttl: float = 86_400,
    clock: Clock | None = None,
) -> str:
    brands, stores = sorted(set(brands)), sorted(set(stores))
    _check_scope(merchant_id, brands, stores)
    if not 0 < ttl <= MAX_LIFETIME_S:
        raise ValueError(f"ttl must be between 1 and {MAX_LIFETIME_S} seconds")
    now = int((clock or SystemClock()).now().timestamp())
    claims = {
        "sub": merchant_id, "iss": ISSUER, "iat": now, "exp": now + int(ttl), "brands": brands, "stores": stores,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def grant_id_of(token: str) -> str:
    """The id of a grant (unverified: for the operator's records and revocation lines only)."""
    try:
        jti = jwt.decode(token, options={"verify_signature": False}).get("jti", "")
    except jwt.PyJWTError:
        return ""
    return jti if isinstance(jti, str) else ""


def read_grant(key: str, token: str, now: float) -> MerchantScope:
    """The scope of a valid grant, else ValueError saying what is wrong with it."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[_ALGORITHM], issuer=ISSUER,
            # Time is checked below against the caller's clock, not PyJWT's.
            options={"require": ["sub", "iss", "iat", "exp"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise ValueError("bad signature") from None
    except jwt.PyJWTError as exc:
        raise ValueError(type(exc).__name__) from None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (is_numeric_date(exp) and is_numeric_date(iat)):
        raise ValueError("exp and iat must be numbers")
    if now >= exp + LEEWAY_S:
        raise ValueError("expired")
    if iat > now + LEEWAY_S:
        raise ValueError("issued in the future")
    if exp - iat > MAX_LIFETIME_S:
        raise ValueError(f"lives longer than {MAX_LIFETIME_S} s")
    merchant_id, brands, stores = claims.get("sub"), claims.get("brands", []), claims.get("stores", [])
    if not (isinstance(brands, list) and isinstance(stores, list)):
        raise ValueError("brands and stores must be lists")
    _check_scope(merchant_id, brands, stores)
    grant_id = claims.get("jti", "")
    if not isinstance(grant_id, str) or len(grant_id) > 64:
        raise ValueError("jti must be a string of at most 64 characters")
    return MerchantScope(merchant_id, frozenset(brands), frozenset(stores), float(iat), grant_id)


class RevokedGrants:
    """The revocation file: a line `grant:<grant id>` revokes that one grant (a leaked terminal's,
    while the merchant's other grants keep working), a line `<merchant id>` every grant of that
    merchant, a line `<merchant id> <unix time>` those issued before that time (so a new grant can
    be handed out after a leak); `#` starts a comment. Re-read when it changes, looked at every
    `check_s` seconds at most; a missing file revokes nothing."""

    def __init__(self, path: Path | None, *, check_s: float = 2.0) -> None:
        self.path = path
        self.check_s = check_s
        self._next_check = 0.0
        self._stamp: tuple[int, int, int] | None = None
        self._before: dict[str, float] = {}
        self._grants: frozenset[str] = frozenset()
        # The file exists but cannot be read (a directory, permissions, an I/O error): what it
        # revokes is unknown, so every grant counts as revoked until a read succeeds. Failing
        # closed for one call only would let the next calls through on the old list.
        self.unreadable = False

    def revoked(self, scope: MerchantScope) -> bool:
        if self.path is None:
            return False
        self._refresh()
        if self.unreadable:
            return True
        if scope.grant_id and scope.grant_id in self._grants:
            return True
        before = self._before.get(scope.merchant_id)
        return before is not None and scope.issued_at < before

    def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.check_s
        try:
            st = self.path.stat()  # type: ignore[union-attr]
        except FileNotFoundError:
            self._stamp, self._before, self._grants, self.unreadable = None, {}, frozenset(), False
            return
        except OSError as exc:
            self._cannot_read(exc)
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp and not self.unreadable:
            return
        try:
            text = _revocation_text(self.path.read_bytes())  # type: ignore[union-attr]
        except OSError as exc:  # IsADirectoryError, PermissionError, EIO
            self._cannot_read(exc)
            return
        before: dict[str, float] = {}
        grants: set[str] = set()
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if fields[0].startswith(_GRANT_LINE):
                grants.add(fields[0].removeprefix(_GRANT_LINE))
                continue
            try:
                before[fields[0]] = float(fields[1]) if len(fields) > 1 else math.inf
            except ValueError:
                before[fields[0]] = math.inf  # unreadable time: revoke them all rather than none
        self._stamp, self._before, self._grants, self.unreadable = stamp, before, frozenset(grants), False

    def _cannot_read(self, exc: OSError) -> None:
        if not self.unreadable:
            _log.error("merchant revocation file cannot be read: refusing every merchant grant until it can",
                       extra={"path": str(self.path), "error": str(exc)})
        self._stamp, self.unreadable = None, True


def _revocation_text(data: bytes) -> str:
    """The file as text, whatever editor saved it: Notepad's UTF-8 starts with a byte order mark,
    Windows PowerShell's Out-File writes UTF-16. Read as plain UTF-8, the mark stuck to the first
    merchant id (or every line was garbage) and those merchants were silently not revoked."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _nameable(merchant_id: str) -> bool:
    """Whether a line of the revocation file can name this merchant: RevokedGrants splits lines
    at spaces, drops what follows a `#` and reads `grant:` as a grant id. An id it cannot name
    made a grant no merchant line revoked ("Luckin Coffee" revoked a merchant "Luckin" instead)."""
    return not (any(c.isspace() or c == "#" for c in merchant_id) or merchant_id.startswith(_GRANT_LINE))


def _check_scope(merchant_id: Any, brands: list[Any], stores: list[Any]) -> None:
    if not (isinstance(merchant_id, str) and 0 < len(merchant_id) <= 128 and merchant_id.isprintable() and _nameable(merchant_id)):
        raise ValueError("the merchant id (sub) must be 1..128 printable characters without spaces or '#', not starting with 'grant:'")
    if not brands and not stores:
        raise ValueError("a grant names at least one brand or store")
    if len(brands) + len(stores) > MAX_SCOPE_IDS:
        raise ValueError(f"a grant names at most {MAX_SCOPE_IDS} brands and stores")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in (*brands, *stores)):
        raise ValueError(f"brand and store ids must be strings of 1..{MAX_ID_CHARS} characters")


def revocation_hint(grant_id: str, revoked_file: Path | None) -> str:
    """What the operator keeps with a grant it hands out: the line that revokes it, and where that
    line goes. Without MIANDAN_MERCHANT_REVOKED_FILE the services read no file, so nothing
    revokes the grant before it expires short of restarting them with the variable set."""
    line = f"grant id {grant_id}: a line `grant:{grant_id}` in MIANDAN_MERCHANT_REVOKED_FILE"
    if revoked_file is None:
        return f"{line} revokes it (not set here: services started without it read no revocations)"
    return f"{line} ({revoked_file}) revokes it"


def main(argv: list[str] | None = None) -> int:
    from .config import Settings

    parser = argparse.ArgumentParser(prog="python -m services.common.merchant_grant", description=__doc__.splitlines()[0])
    parser.add_argument("merchant", help="merchant account id (the grant's subject; no spaces or #: the revocation file names it)")
    parser.add_argument("--brand", action="append", default=[], help="a brand the merchant may act on (repeatable)")
    parser.add_argument("--store", action="append", default=[], help="a store the merchant may act on (repeatable)")
    parser.add_argument("--ttl", type=int, default=86_400, help=f"seconds the grant stays valid (default 86400, at most {MAX_LIFETIME_S})")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env("catalog")
        grant = mint_grant(settings.merchant_signing_key, args.merchant, brands=args.brand, stores=args.store, ttl=args.ttl)
        print(grant)
        print(revocation_hint(grant_id_of(grant), settings.merchant_revoked_file), file=sys.stderr)
    except ValueError as exc:
        print(f"merchant_grant: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
