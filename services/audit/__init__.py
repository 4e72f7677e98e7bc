"""Cross-service reconciliation: `python -m miandan audit` (make audit).

`run_audit` fetches every campaign's cards, budget, invites, orders and draws through the
services' admin APIs and returns the findings of the checks in services.audit.model (empty when
every invariant holds)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from services.common.config import Settings

from .model import Finding

if TYPE_CHECKING:
    from .fetch import Targets
    from .model import AuditFacts

__all__ = ["AuditRun", "DEFAULT_CONFIRM_AFTER_S", "Finding", "audit_confirmed", "confirmed", "run_audit"]

# The card service's reservation sweeper runs periodically; a hold that lapsed less than this
# long ago may legitimately still read RESERVED.
DEFAULT_RESERVATION_GRACE_MS = 30_000

# How long after a pass that found something the audit looks again. The services are read one
# listing after another while users keep ordering, so a record caught between two services'
# writes (a card REDEEMED a moment before its order is written PAID, a member's counter read
# after a card it counts was listed) reads as a finding once; after one call chain's time it no
# longer does. A real violation is still there on the second look.
DEFAULT_CONFIRM_AFTER_S = 3.0


@dataclass
class AuditRun:
    facts: "AuditFacts"  # what the last pass read
    findings: list[Finding]  # found by both passes: what the audit reports
    not_confirmed: list[Finding]  # found by the first pass only: writes in flight at that moment


def _key(f: Finding) -> tuple[str, tuple[tuple[str, str], ...]]:
    return f.check, tuple(sorted(f.ids.items()))


def confirmed(first: list[Finding], second: list[Finding]) -> list[Finding]:
    """The second pass's findings that the first one made too (same check, same ids), worded
    as the second pass found them."""
    seen = {_key(f) for f in first}
    return [f for f in second if _key(f) in seen]


async def audit_confirmed(
    targets: "Targets",
    campaign_id: str | None = None,
    *,
    reservation_grace_ms: int = DEFAULT_RESERVATION_GRACE_MS,
    confirm_after: float | None = None,
    retry_for: float = 30.0,
) -> AuditRun:
    """Fetch and check; when that finds anything, wait `confirm_after` seconds, fetch and check
    again (None: DEFAULT_CONFIRM_AFTER_S), and report what both passes found. A suite that
    holds is read once."""
    from .fetch import fetch_facts
    from .model import audit

    facts = await fetch_facts(targets, campaign_id, retry_for=retry_for)
    first = audit(facts, reservation_grace_ms=reservation_grace_ms)
    if not first:
        return AuditRun(facts, [], [])
    del facts  # the second pass reads everything again: never hold two copies (millions of cards)
    await asyncio.sleep(DEFAULT_CONFIRM_AFTER_S if confirm_after is None else confirm_after)
    facts = await fetch_facts(targets, campaign_id, retry_for=retry_for)
    found = confirmed(first, audit(facts, reservation_grace_ms=reservation_grace_ms))
    again = {_key(f) for f in found}
    return AuditRun(facts, found, [f for f in first if _key(f) not in again])


async def run_audit(
    settings_or_addrs: Settings | Mapping[str, str] | None = None,
    campaign_id: str | None = None,
    *,
    reservation_grace_ms: int = DEFAULT_RESERVATION_GRACE_MS,
    confirm_after: float | None = None,
) -> list[Finding]:
    """Audit a running suite. `settings_or_addrs`: a Settings (addresses and credentials), or a
    mapping {"card"|"order"|"lottery": "host:port"} with credentials from MIANDAN_* env vars.
    The findings found again `confirm_after` seconds after the first pass (audit_confirmed)."""
    from .fetch import Targets

    run = await audit_confirmed(
        Targets.resolve(settings_or_addrs), campaign_id, reservation_grace_ms=reservation_grace_ms, confirm_after=confirm_after
    )
    return run.findings
