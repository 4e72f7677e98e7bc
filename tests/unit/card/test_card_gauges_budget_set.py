"""The campaign gauges and SetCampaignBudget: a budget set shows at once, is read again by a refresh
right after, and never keeps the gauges' task from stopping."""
import asyncio

from prometheus_client import CollectorRegistry

from services.card.campaign_gauges import CampaignGauges
from services.card.model import Campaign, Rules
from services.card.store import BudgetData
from services.common.clock import FakeClock

C = "spring"


class OneCampaignStore:
    """list_campaigns and budget of one campaign whose budget the test moves; counts the reads."""

    def __init__(self, budget_fen: int) -> None:
        self.budget_fen = budget_fen
        self.reads = 0
        self.read_done = asyncio.Event()

    async def list_campaigns(self, after_id: str, limit: int) -> list[Campaign]:
        return [] if after_id else [Campaign(C, "n", 0, 1, Rules(budget_fen=self.budget_fen), 0)]

    async def budget(self, campaign: Campaign, now_ms: int) -> BudgetData:
        self.reads += 1
        self.read_done.set()
        return BudgetData(self.budget_fen, 0, 0, {})


async def started(gauges: CampaignGauges, store: OneCampaignStore) -> asyncio.Task:
    task = asyncio.create_task(gauges.refresh_forever(3600))
    await store.read_done.wait()
    store.read_done.clear()
    return task


async def test_a_budget_set_shows_at_once_and_a_refresh_reads_it_again_without_waiting_the_interval():
    store = OneCampaignStore(10_000)
    gauges = CampaignGauges(store, FakeClock(), CollectorRegistry())  # type: ignore[arg-type]
    task = await started(gauges, store)
    try:
        store.budget_fen = 70_000
        gauges.budget_set(C, BudgetData(70_000, 0, 0, {}))
        assert gauges.snapshot[C].budget_fen == 70_000
        await asyncio.wait({asyncio.ensure_future(store.read_done.wait())}, timeout=5)
        assert store.reads == 2 and gauges.snapshot[C].budget_fen == 70_000
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)


async def test_a_stop_that_comes_with_a_budget_set_ends_the_refresh_task():
    store = OneCampaignStore(10_000)
    gauges = CampaignGauges(store, FakeClock(), CollectorRegistry())  # type: ignore[arg-type]
    task = await started(gauges, store)
    await asyncio.sleep(0)  # in its pause until the next refresh

    gauges.budget_set(C, BudgetData(20_000, 0, 0, {}))
    task.cancel()  # the same instant: the server stops right after answering the set

    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled(), "the refresh task outlived its cancellation: the stop hangs"
