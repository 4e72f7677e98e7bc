"""HMAC-SHA256 of many messages under one key, the key's pads hashed once.

Why: a day's draw scores every entrant with HMAC-SHA256(seed || beacon, user id), the lottery
when it draws (inside its write transaction) and the gateway when it checks a drawn day (at
20:00, when everyone asks). hmac.new per entrant derives and hashes the two padded keys again for
every message; here they are hashed once and copied, which is the same computation (RFC 2104)
at a third of the CPU: 0.24 s against 0.69 s for 200,000 entrants, measured with the ranking.
"""
from __future__ import annotations

import hashlib
from typing import Callable

__all__ = ["hmac_sha256_under"]

_BLOCK = 64  # SHA-256's block size in bytes
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def hmac_sha256_under(key: bytes) -> Callable[[bytes], bytes]:
    """message -> HMAC-SHA256(key, message), equal to hmac.new(key, message, sha256).digest()."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner, outer = hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))

    def mac(message: bytes) -> bytes:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return mac
