"""Cross-service reconciliation: `python -m miandan audit` (make audit).

`run_audit` fetches every campaign's cards, budget, invites, orders and draws through the
services' admin APIs and returns the findings of the checks in services.audit.model (empty when
every invariant holds)."""
from __future__ import annotations

from typing import Mapping

from services.common.config import Settings

from .model import Finding

__all__ = ["Finding", "run_audit"]

# The card service's reservation sweeper runs periodically; a hold that lapsed less than this
# long ago may legitimately still read RESERVED.
DEFAULT_RESERVATION_GRACE_MS = 30_000


async def run_audit(
    settings_or_addrs: Settings | Mapping[str, str] | None = None,
    campaign_id: str | None = None,
    *,
    reservation_grace_ms: int = DEFAULT_RESERVATION_GRACE_MS,
) -> list[Finding]:
    """Audit a running suite. `settings_or_addrs`: a Settings (addresses and credentials), or a
    mapping {"card"|"order"|"lottery": "host:port"} with credentials from MIANDAN_* env vars."""
    from .fetch import Targets, fetch_facts
    from .model import audit

    facts = await fetch_facts(Targets.resolve(settings_or_addrs), campaign_id)
    return audit(facts, reservation_grace_ms=reservation_grace_ms)
