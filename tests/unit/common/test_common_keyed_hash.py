"""hmac_sha256_under (the draw's scoring, its key's pads hashed once) is HMAC-SHA256 itself: equal
to hmac.new for keys shorter than, equal to and longer than the hash's 64-byte block (a 32-byte
seed with a drand beacon's 64 hex characters is 96 bytes: hashed first, as RFC 2104 says)."""
from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from services.common.keyed_hash import hmac_sha256_under


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 96, 200])
def test_it_is_hmac_sha256_for_every_key_length(key_length):
    rng = random.Random(key_length)
    key = bytes(rng.randrange(256) for _ in range(key_length))
    mac = hmac_sha256_under(key)
    for n in range(200):
        message = f"用户-{rng.randrange(10**9)}-{'é' * (n % 3)}".encode() * (n % 5)
        assert mac(message) == hmac.new(key, message, hashlib.sha256).digest()
    assert mac(b"x") == mac(b"x")  # the pads' hashes are copied, never consumed
