"""Payment providers: the interface the order saga pays through, and an honest sandbox.

There is no real payment network behind SandboxPaymentProvider: it says so in its name
("sandbox"), issues references that it can recognise later (HMAC-signed, so they stay valid
across a restart of the order server), approves exactly those, and can be told to decline or
time out so tests can drive every branch of the saga.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "PaymentProvider",
    "PaymentIntent",
    "Capture",
    "PaymentDeclined",
    "PaymentTimeout",
    "SandboxPaymentProvider",
]


@dataclass(frozen=True)
class PaymentIntent:
    payment_id: str
    reference: str


@dataclass(frozen=True)
class Capture:
    payment_id: str
    amount_fen: int


class PaymentDeclined(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentTimeout(Exception):
    """The provider did not answer in time: whether money moved is unknown."""


class PaymentProvider(Protocol):
    name: str

    async def create_intent(self, order_id: str, amount_fen: int) -> PaymentIntent:
        """An intent to collect amount_fen for the order; idempotent per order_id."""
        ...

    async def capture(self, reference: str, order_id: str, amount_fen: int) -> Capture:
        """Take the money the client paid with `reference`. Idempotent per reference.
        Raises PaymentDeclined or PaymentTimeout."""
        ...

    async def refund(self, payment_id: str, amount_fen: int) -> None:
        """Give captured money back. Idempotent per payment_id."""
        ...


# Captures and refunds the sandbox keeps a record of, newest last (tests and operators look at
# them). It needs none to answer: a capture is a function of its reference. Bounded, since the
# order service runs for the whole campaign and pays through it for every order with money due.
REMEMBERED_PAYMENTS = 10_000


def _remember(record: dict[str, Any], key: str, value: Any) -> None:
    record[key] = value
    while len(record) > REMEMBERED_PAYMENTS:
        del record[next(iter(record))]


class SandboxPaymentProvider:
    name = "sandbox"

    def __init__(self, secret: str, *, timeout_seconds: float = 0.05) -> None:
        self._key = hashlib.sha256(b"miandan-sandbox:" + secret.encode()).digest()
        self.mode = "approve"  # or "decline" / "timeout" for every call
        self.declined_references: set[str] = set()
        self.timeout_seconds = timeout_seconds
        self.captures: dict[str, Capture] = {}
        self.refunds: dict[str, int] = {}

    def _sign(self, payment_id: str, amount_fen: int) -> str:
        return hmac.new(self._key, f"{payment_id}:{amount_fen}".encode(), hashlib.sha256).hexdigest()[:20]

    async def create_intent(self, order_id: str, amount_fen: int) -> PaymentIntent:
        payment_id = f"sbx_{order_id}"
        return PaymentIntent(payment_id, f"{payment_id}.{amount_fen}.{self._sign(payment_id, amount_fen)}")

    async def capture(self, reference: str, order_id: str, amount_fen: int) -> Capture:
        if self.mode == "timeout":
            await asyncio.sleep(self.timeout_seconds)
            raise PaymentTimeout(reference)
        if self.mode == "decline" or reference in self.declined_references:
            raise PaymentDeclined("PAYMENT_DECLINED")
        payment_id, _, rest = reference.partition(".")
        amount_text, _, signature = rest.partition(".")
        if (
            payment_id != f"sbx_{order_id}"
            or amount_text != str(amount_fen)  # exactly as issued: no "²", no leading zeros
            or not hmac.compare_digest(signature, self._sign(payment_id, amount_fen))
        ):
            # Not a reference this sandbox issued for this order and amount.
            raise PaymentDeclined("PAYMENT_REFERENCE_INVALID")
        capture = self.captures.get(reference)
        if capture is None:
            capture = Capture(payment_id, amount_fen)
            _remember(self.captures, reference, capture)
        return capture

    async def refund(self, payment_id: str, amount_fen: int) -> None:
        if self.mode == "timeout":
            await asyncio.sleep(self.timeout_seconds)
            raise PaymentTimeout(payment_id)
        _remember(self.refunds, payment_id, amount_fen)
