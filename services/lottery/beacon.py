"""The public beacon's value, fetched and checked by the service itself, so a day bound to a
drand round is drawn by the scheduler as soon as that round is out, not when an admin
remembers to call RunDraw with the value.

Why the checks: a relay (api.drand.sh, a CDN, or whoever answers in between) could hand out
any 32 bytes, and a value the operator may pick is a free re-roll of the draw. So a fetched
round counts only when its BLS signature verifies against the League of Entropy's public key of
that chain (drand-verify, which carries the keys), for the round asked; the value used is the
randomness the signature derives, never the relay's word for it. Anyone can repeat this
against any relay: the draw's beacon_value is drand's hex "randomness" of the committed round.

Nothing is fetched before the round's own time (genesis + (round - 1) x period, on the injected
clock): a round not yet published cannot be had anyway, and tests drive time without sleeping.
Not-published-yet answers (404, 425) mean "wait"; other failures try the next relay and are
logged; the scheduler asks again on its next tick.

MIANDAN_DRAND_RELAYS: comma-separated base URLs (default the League of Entropy's public
relays); "off" leaves beacon days to an admin RunDraw, as before.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Sequence

from services.common.decimal_text import ascii_int

from . import model

__all__ = ["DrandChain", "DRAND", "DrandBeacon", "beacon_from_env", "DEFAULT_RELAYS", "BeaconRejected"]

log = logging.getLogger("miandan.lottery.beacon")

DEFAULT_RELAYS = ("https://api.drand.sh", "https://api2.drand.sh", "https://api3.drand.sh", "https://drand.cloudflare.com")
MAX_ANSWER_BYTES = 64 * 1024
_HEX = re.compile(r"(?:[0-9a-f]{2}){0,256}")
FETCH_TIMEOUT_S = 5.0


class BeaconRejected(ValueError):
    """A relay's answer that is not the committed round's signed value."""


@dataclass(frozen=True)
class DrandChain:
    source: str
    chain_hash: str
    genesis: int
    period: int
    # drand_verify's function for the chain's scheme: (round, previous signature, signature) -> randomness hex.
    verify: Callable[[int, str, str], str]

    def round_time(self, round_number: int) -> int:
        return self.genesis + (round_number - 1) * self.period


def _verify_quicknet(round_number: int, previous: str, signature: str) -> str:
    import drand_verify  # a compiled wheel; imported where it is used so its absence stops only fetching

    return drand_verify.verify_quicknet(round_number, signature)


def _verify_default(round_number: int, previous: str, signature: str) -> str:
    import drand_verify

    return drand_verify.verify_mainnet(round_number, previous, signature)


DRAND = {
    "drand:quicknet": DrandChain(
        "drand:quicknet", "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971",
        *model.DRAND_CHAINS["drand:quicknet"], _verify_quicknet,
    ),
    "drand:default": DrandChain(
        "drand:default", "8990e7a9aaed2ffed73dbd7092123d6f289930540d7651336225dc172e51b2ce",
        *model.DRAND_CHAINS["drand:default"], _verify_default,
    ),
}

async def http_get(url: str) -> tuple[int, bytes]:
    def get() -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "miandan-lottery"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 (configured https relays)
                return answer.status, answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    return await asyncio.to_thread(get)


class DrandBeacon:
    def __init__(
        self,
        relays: Sequence[str],
        *,
        chains: Mapping[str, DrandChain] = DRAND,
        get: Callable[[str], Awaitable[tuple[int, bytes]]] = http_get,
    ) -> None:
        """get: GET a URL, answering (status, body); tests pass their own relay."""
        self.relays = tuple(r.rstrip("/") for r in relays)
        self.chains = dict(chains)
        self._get = get

    def knows(self, source: str) -> bool:
        return source in self.chains

    async def value(self, source: str, round_text: str, now_s: float) -> str | None:
        """The verified randomness of `round_text`, or None while it cannot be had (not yet
        published, every relay failing, an unknown source)."""
        chain = self.chains.get(source)
        round_number = ascii_int(round_text, minimum=1)
        if chain is None or round_number is None or now_s < chain.round_time(round_number):
            return None
        for relay in self.relays:
            url = f"{relay}/{chain.chain_hash}/public/{round_number}"
            try:
                status, body = await self._get(url)
            # refused, timed out, TLS, a malformed URL; HTTPException: an answer that is not HTTP
            # (BadStatusLine from a proxy or another program on the port, LineTooLong), which
            # http.client raises as neither of the other two. Any of them is this relay's fault:
            # the next one may well have the round.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                log.warning("beacon relay failed", extra={"url": url, "error": str(exc)[:200]})
                continue
            if status in (404, 425):
                log.info("beacon round not out yet at this relay", extra={"url": url, "status": status})
                continue
            if status != 200:
                log.warning("beacon relay answered", extra={"url": url, "status": status})
                continue
            try:
                return signed_randomness(chain, round_number, body)
            except BeaconRejected as exc:
                log.warning("beacon answer rejected", extra={"url": url, "why": str(exc)})
        return None


def signed_randomness(chain: DrandChain, round_number: int, body: bytes) -> str:
    """The randomness of a relay's JSON answer, derived from its verified signature."""
    if len(body) > MAX_ANSWER_BYTES:
        raise BeaconRejected("answer too large")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: arrays or objects nested deeper than the decoder goes ("[[[[..." fits
        # in MAX_ANSWER_BYTES many times over); no ValueError, and it would end the relay loop.
        raise BeaconRejected("not JSON") from None
    if not isinstance(answer, dict) or answer.get("round") != round_number:
        raise BeaconRejected(f"not round {round_number}")
    signature, previous = answer.get("signature"), answer.get("previous_signature", "")
    if not isinstance(signature, str) or not isinstance(previous, str):
        raise BeaconRejected("no signature")
    # drand_verify panics (a BaseException) on text that is not hex: checked here first.
    if not (_HEX.fullmatch(signature) and _HEX.fullmatch(previous)):
        raise BeaconRejected("signature is not hex")
    try:
        randomness = chain.verify(round_number, previous, signature)
    except ValueError as exc:  # drand_verify: a bad point, or a signature that does not verify
        raise BeaconRejected(f"signature does not verify: {exc}") from None
    if answer.get("randomness") not in (None, randomness):
        raise BeaconRejected("randomness is not the signature's")
    return randomness


def beacon_from_env(env: Mapping[str, str] | None = None) -> DrandBeacon | None:
    """None when fetching is off (MIANDAN_DRAND_RELAYS=off) or drand-verify is not installed:
    beacon days then wait for an admin RunDraw with the value."""
    e = os.environ if env is None else env
    raw = (e.get("MIANDAN_DRAND_RELAYS") or "").strip()
    if raw.lower() == "off":
        return None
    relays = [r.strip() for r in raw.split(",") if r.strip()] or list(DEFAULT_RELAYS)
    for relay in relays:
        if not relay.startswith(("https://", "http://")):
            raise ValueError(f"MIANDAN_DRAND_RELAYS: {relay!r} is not an http(s) URL")
    try:
        import drand_verify  # noqa: F401
    except ImportError:
        log.warning("drand-verify is not installed: beacon days wait for an admin RunDraw with the value")
        return None
    return DrandBeacon(relays)
