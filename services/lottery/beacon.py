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
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Sequence

from services.common.decimal_text import ascii_int
from services.common.logging import BurstLog

from . import model

__all__ = ["DrandChain", "DRAND", "DrandBeacon", "beacon_from_env", "DEFAULT_RELAYS", "BeaconRejected"]

log = logging.getLogger("miandan.lottery.beacon")

DEFAULT_RELAYS = ("https://api.drand.sh", "https://api2.drand.sh", "https://api3.drand.sh", "https://drand.cloudflare.com")
MAX_ANSWER_BYTES = 64 * 1024
_HEX = re.compile(r"(?:[0-9a-f]{2}){0,256}")
FETCH_TIMEOUT_S = 5.0  # each wait for the relay's next bytes
# The whole answer of one relay: a relay that sends a byte now and then, each within
# FETCH_TIMEOUT_S, would otherwise hold the scheduler's tick (every campaign's commits and draws)
# for as long as it likes.
FETCH_DEADLINE_S = 15.0


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
    """GET `url` in a worker thread (urllib: proxies from the environment), giving up after
    FETCH_DEADLINE_S: the connection is then shut down, which ends the thread's read too,
    and the relay counts as failed (TimeoutError, an OSError)."""
    connections = _Connections()
    opener = urllib.request.build_opener(
        _Recording(urllib.request.HTTPHandler, connections), _Recording(urllib.request.HTTPSHandler, connections)
    )

    def get() -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "miandan-lottery"})
        try:
            with opener.open(request, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 (configured https relays)
                return answer.status, answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    fetch = asyncio.ensure_future(asyncio.to_thread(get))
    try:
        return await asyncio.wait_for(asyncio.shield(fetch), FETCH_DEADLINE_S)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no whole answer within {FETCH_DEADLINE_S:g} s") from None
    finally:
        if not fetch.done():
            fetch.add_done_callback(_drop_outcome)
        connections.give_up()


class _Connections:
    """Duplicates of the TCP sockets one fetch opened. Giving up shuts them down, which ends a
    read blocked in the worker thread (closing would not), and refuses any opened later (the
    thread was still resolving the relay's name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._given_up = False

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._given_up:
                self._sockets.append(sock.dup())  # a duplicate: it outlives urllib's own close
                return
        sock.close()
        raise TimeoutError("the fetch was given up")

    def give_up(self) -> None:
        with self._lock:
            self._given_up = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the other side
                pass
            sock.close()


def _Recording(handler: type, connections: _Connections) -> urllib.request.BaseHandler:  # noqa: N802 (a class factory)
    """urllib's handler of one scheme, telling `connections` of each TCP connection it opens as
    soon as it is connected (urllib keeps its own socket to itself, and drops it once the
    headers are read)."""

    class Recording(handler):  # type: ignore[misc, valid-type]
        def do_open(self, http_class, req, **kwargs):  # type: ignore[no-untyped-def]
            class Recorded(http_class):  # type: ignore[misc, valid-type]
                def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
                    super().__init__(*args, **kw)
                    create = self._create_connection

                    def create_and_record(*a, **k):  # type: ignore[no-untyped-def]
                        sock = create(*a, **k)
                        connections.opened(sock)
                        return sock

                    self._create_connection = create_and_record

            return super().do_open(Recorded, req, **kwargs)

    return Recording()


def _drop_outcome(fetch: "asyncio.Future[tuple[int, bytes]]") -> None:
    if not fetch.cancelled():
        fetch.exception()  # the shut connection's error: the relay already counted as failed


class DrandBeacon:
    # The scheduler asks every tick (5 s) while a round cannot be had: relays out of reach for
    # hours (egress blocked, a chain halted) would write a line per relay per tick, 17,000 a
    # day each. One line per relay and kind of failure this often, with the count in between.
    QUIET_S = 600.0

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
        self._failing: dict[tuple[str, str], BurstLog] = {}  # by (relay, message), while it fails
        self._now_s = 0.0  # the time of the round asked last: the injected clock's, not the host's

    def knows(self, source: str) -> bool:
        return source in self.chains

    async def value(self, source: str, round_text: str, now_s: float) -> str | None:
        """The verified randomness of `round_text`, or None while it cannot be had (not yet
        published, every relay failing, an unknown source)."""
        chain = self.chains.get(source)
        round_number = ascii_int(round_text, minimum=1)
        if chain is None or round_number is None or now_s < chain.round_time(round_number):
            return None
        self._now_s = now_s
        for relay in self.relays:
            url = f"{relay}/{chain.chain_hash}/public/{round_number}"
            try:
                status, body = await self._get(url)
            # refused, timed out, TLS, a malformed URL; HTTPException: an answer that is not HTTP
            # (BadStatusLine from a proxy or another program on the port, LineTooLong), which
            # http.client raises as neither of the other two. Any of them is this relay's fault:
            # the next one may well have the round.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                self._noted(relay, logging.WARNING, "beacon relay failed", {"url": url, "error": str(exc)[:200]})
                continue
            if status in (404, 425):
                self._noted(relay, logging.INFO, "beacon round not out yet at this relay", {"url": url, "status": status})
                continue
            if status != 200:
                self._noted(relay, logging.WARNING, "beacon relay answered", {"url": url, "status": status})
                continue
            try:
                randomness = signed_randomness(chain, round_number, body)
            except BeaconRejected as exc:
                self._noted(relay, logging.WARNING, "beacon answer rejected", {"url": url, "why": str(exc)})
                continue
            self._recovered(relay)
            return randomness
        return None

    def _noted(self, relay: str, level: int, msg: str, extra: dict[str, object]) -> None:
        burst = self._failing.get((relay, msg))
        if burst is None:
            burst = self._failing[(relay, msg)] = BurstLog(log, level, self.QUIET_S, time_source=lambda: self._now_s)
        burst.log(msg, extra)

    def _recovered(self, relay: str) -> None:
        """The relay answered: its next failure is news again."""
        for key in [k for k in self._failing if k[0] == relay]:
            del self._failing[key]


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
