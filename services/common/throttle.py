"""Client-side adaptive throttling (Google SRE book, "Handling Overload", client-side throttling).

Why: a server that sheds politely still pays for every call it refuses: the HTTP/2 stream, the
headers, the interceptor and the status it sends back cost a Python gRPC server a good part of
what a real call costs. At five times capacity the refusals alone eat the CPU the admitted calls
need, and goodput falls although every refusal is "cheap". The fix the SRE book describes is for
the client to notice that the backend is refusing and to refuse the excess itself, before
anything goes on the wire, with a probability that tracks how much the backend refuses:

    p_reject = max(0, (requests - k * accepts) / (requests + 1))

over a sliding window, where `requests` counts every call the application attempted (including
the ones refused here) and `accepts` the calls the backend did not refuse for overload. While the
backend accepts everything, p is 0 and nothing changes. Under overload the client sends about
k times what the backend accepts, so the backend still sees enough traffic to show it has
recovered (k = 2 in the book: the backend spends at most about half its refusals' worth on
excess; lower k refuses more locally and recovers more slowly).

Only overload refusals count against accepts: UNAVAILABLE / RESOURCE_EXHAUSTED, and CANCELLED,
which a caller that never cancels gets only from the server's side: gRPC's core refusing a call
its event loop had not taken in (Settings.max_pending_calls), or a server stopping. An
INVALID_ARGUMENT is an answer, not a refusal. Used by the gateway on its upstream channels and by
the load generator, which plays the part of the campaign's app.

Single-threaded by design (one event loop); the time source is injectable for tests.
"""
from __future__ import annotations

import math
import random
import time
from typing import Callable

__all__ = ["AdaptiveThrottle", "REFUSAL_CODES"]

# Status code names that mean "the backend refused for load", not "the backend answered".
REFUSAL_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"})


class AdaptiveThrottle:
    """p_reject = max(0, (requests - k * accepts) / (requests + 1)) over `window_s` seconds,
    kept in `buckets` slices so old history leaves the window in steps, not all at once."""

    def __init__(
        self,
        k: float = 2.0,
        *,
        window_s: float = 10.0,
        buckets: int = 10,
        min_outcomes: int = 20,
        time_source: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1 (below 1 the client refuses calls the backend accepts)")
        if window_s <= 0 or buckets < 1:
            raise ValueError("need window_s > 0 and buckets >= 1")
        self.k = k
        self._slice = window_s / buckets
        self._time = time_source
        self._rng = rng
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._outcomes = [0] * buckets  # answers recorded (accepted or refused)
        self.min_outcomes = min_outcomes
        self._epoch = math.floor(time_source() / self._slice)
        self.requests = 0  # within the window
        self.accepts = 0
        self.outcomes = 0
        self.throttled = 0  # lifetime count of calls refused here

    def reject_probability(self) -> float:
        self._advance()
        return max(0.0, (self.requests - self.k * self.accepts) / (self.requests + 1))

    def admit(self) -> bool:
        """Count one attempted call; False means "refuse it here, do not send it".

        Requests are counted when attempted, as in the book, so a backend that stops answering
        (calls pile up unanswered) is throttled at once rather than after its answers finally
        arrive. Until `min_outcomes` answers are in the window the client refuses nothing: a
        cold client (or one back from a quiet spell) with hundreds of calls in flight and no
        answer yet would otherwise refuse most of its first calls to a healthy backend."""
        p = self.reject_probability() if self.outcomes >= self.min_outcomes else 0.0
        self._requests[self._epoch % len(self._requests)] += 1
        self.requests += 1
        if p > 0.0 and self._rng() < p:
            self.throttled += 1
            return False
        return True

    def record(self, code_name: str) -> None:
        """The outcome of a call that admit() let through (status code name, "OK" for success)."""
        self._advance()
        i = self._epoch % len(self._requests)
        self._outcomes[i] += 1
        self.outcomes += 1
        if code_name not in REFUSAL_CODES:
            self._accepts[i] += 1
            self.accepts += 1

    def _advance(self) -> None:
        epoch = math.floor(self._time() / self._slice)
        if epoch == self._epoch:
            return
        n = len(self._requests)
        # Clear the slices that left the window (all of them after a long quiet spell).
        for e in range(max(self._epoch + 1, epoch - n + 1), epoch + 1):
            i = e % n
            self.requests -= self._requests[i]
            self.accepts -= self._accepts[i]
            self.outcomes -= self._outcomes[i]
            self._requests[i] = self._accepts[i] = self._outcomes[i] = 0
        self._epoch = epoch
