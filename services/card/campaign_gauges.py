"""Each campaign's money as Prometheus gauges: the budget, what was issued, and the face value of
its cards by state (available, reserved, redeemed, expired).

Why: the campaign in the story burned its budget in front of everyone; an operator wants the
burn on the same dashboard as the latency, not from an admin RPC run by hand. The figures are
GetBudget's (per-campaign totals kept by the store's triggers, so a refresh costs a few small
reads however many cards there are), refreshed every `interval_s` by a task on the event loop;
a scrape only reads the last snapshot, since Prometheus scrapes from its own thread. A budget set
by SetCampaignBudget is shown from its answer on (budget_set), not up to `interval_s` later: the
operator pulled that lever because of what the dashboard showed.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from services.common.clock import Clock, now_ms

from .model import CardState
from .store import BudgetData, CardStore

__all__ = ["CampaignGauges"]

_log = logging.getLogger("miandan.card")
_STATES = {CardState.AVAILABLE: "available", CardState.RESERVED: "reserved", CardState.REDEEMED: "redeemed", CardState.EXPIRED: "expired"}
_PAGE = 500


class CampaignGauges:
    def __init__(self, store: CardStore, clock: Clock, registry: CollectorRegistry = REGISTRY) -> None:
        self.store = store
        self.clock = clock
        self.snapshot: dict[str, BudgetData] = {}
        # Set by budget_set: a refresh under way may have read the campaign before the change,
        # so another one follows it at once instead of after the interval.
        self._stale = asyncio.Event()
        registry.register(self)

    def budget_set(self, campaign_id: str, data: BudgetData) -> None:
        """A budget just set, with the campaign's figures as of the change."""
        self.snapshot = {**self.snapshot, campaign_id: data}
        self._stale.set()

    async def refresh(self) -> None:
        now = now_ms(self.clock)
        fresh: dict[str, BudgetData] = {}
        after = ""
        while True:
            page = await self.store.list_campaigns(after, _PAGE)
            for campaign in page:
                fresh[campaign.campaign_id] = await self.store.budget(campaign, now)
            if len(page) < _PAGE:
                break
            after = page[-1].campaign_id
        self.snapshot = fresh  # one reference swap: a scrape sees the old or the new, whole

    async def refresh_forever(self, interval_s: float) -> None:
        while True:
            self._stale.clear()  # before reading: a budget set from here on is read again
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed refresh keeps the last figures; the next one may work
                _log.exception("campaign gauges not refreshed")
            await self._pause(interval_s)

    async def _pause(self, interval_s: float) -> None:
        """Until the next refresh is due: interval_s, or a budget set since the last began.
        asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancellation that comes
        as the event is set (a stop right after a budget set), and the stop then waited forever."""
        due = asyncio.ensure_future(asyncio.sleep(interval_s))
        stale = asyncio.ensure_future(self._stale.wait())
        try:
            await asyncio.wait({due, stale}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            due.cancel()
            stale.cancel()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        budget = GaugeMetricFamily("miandan_campaign_budget_fen", "Campaign budget (face value it may issue), fen", labels=["campaign"])
        issued = GaugeMetricFamily("miandan_campaign_issued_fen", "Face value issued so far, fen", labels=["campaign"])
        cards = GaugeMetricFamily("miandan_campaign_cards_issued", "Cards issued so far", labels=["campaign"])
        by_state = GaugeMetricFamily(
            "miandan_campaign_card_value_fen", "Face value of the campaign's cards by the state they are in, fen",
            labels=["campaign", "state"],
        )
        for campaign_id, data in sorted(snapshot.items()):
            budget.add_metric([campaign_id], data.budget_fen)
            issued.add_metric([campaign_id], data.issued_fen)
            cards.add_metric([campaign_id], data.cards_issued)
            for state, name in _STATES.items():
                by_state.add_metric([campaign_id, name], data.by_state.get(state, 0))
        yield from (budget, issued, cards, by_state)

    def describe(self) -> list[GaugeMetricFamily]:
        # Registering must not call collect() (no snapshot yet, and it would run before the loop).
        return []
