"""Production wiring of the card service, shared by `python -m services.card` and the tests."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from miandan.card.v1 import card_service_pb2, card_service_pb2_grpc

from services.common.admission import CRITICAL, DEFAULT, SHEDDABLE
from services.common.auth import ADMIN, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.server import Resources, Server, build_server, builds_server

from .campaign_gauges import CampaignGauges
from .handlers import CardHandlers
from .model import AttemptPolicy
from .servicer import CardServicer
from .store import SqliteCardStore

SERVICE_NAME = card_service_pb2.DESCRIPTOR.services_by_name["CardService"].full_name
_M = f"/{SERVICE_NAME}/"

ROLES = {_M + name: ADMIN for name in (
    "CreateCampaign", "SetCampaignBudget", "ListCampaigns", "ListCampaignCards", "GetCardHistory", "ListCampaignMembers",
    "ListCampaignInvites",
)}
# The order path (a card held and spent for a paid order) is the last thing to shed; wallet
# headroom and lottery counters are the first. SetCampaignBudget too is kept to the last: it is
# the operator's lever to stop issuing (or add budget) at the peak, when the service sheds most.
CRITICALITY = {
    **{
        _M + name: CRITICAL
        for name in (
            "ReserveCard", "ReserveCards", "ConfirmReservation", "ReleaseReservation", "RefundCard", "SetCampaignBudget",
        )
    },
    **{_M + name: SHEDDABLE for name in ("GetBudget", "GetInviteStats")},
    **{
        _M + name: DEFAULT
        for name in (
            "CreateCampaign", "GetCampaign", "ClaimSignupCard", "GetInviteCode", "AcceptInvite", "ListCards",
            "GetWallet", "ListCampaigns", "ListCampaignCards", "GetCardHistory",
            "ListCampaignMembers", "ListCampaignInvites",
        )
    },
}


@builds_server
async def build(
    settings: Settings,
    *,
    resources: Resources,
    clock: Clock | None = None,
    sweep_interval_s: float = 5.0,
    gauge_interval_s: float = 15.0,
    attempts: AttemptPolicy = AttemptPolicy(),
    new_user_window_ms: int = 10 * 60 * 1000,
    registry: CollectorRegistry = REGISTRY,
) -> Server:
    clock = clock or SystemClock()
    policy = AccessPolicy(settings, ROLES)  # reads settings only: before anything is opened
    store = resources.closing(
        await SqliteCardStore.open(
            settings.db_path, clock=clock, attempts=attempts, new_user_window_ms=new_user_window_ms
        )
    )
    gauges = CampaignGauges(store, clock, registry)
    resources.on_close(registry.unregister, gauges, name="campaign-gauges")
    handlers = CardHandlers(store, clock, on_budget_set=gauges.budget_set)
    servicer = CardServicer(handlers)

    def register(server) -> None:  # type: ignore[no-untyped-def]
        card_service_pb2_grpc.add_CardServiceServicer_to_server(servicer, server)

    async def on_start() -> None:
        resources.task(handlers.sweep_forever(sweep_interval_s), name="card-sweep")
        resources.task(gauges.refresh_forever(gauge_interval_s), name="card-campaign-gauges")

    server = build_server(
        settings,
        service_names=[SERVICE_NAME],
        register=register,
        policy=policy,
        criticality=CRITICALITY,
        on_start=on_start,
        resources=resources,
    )
    server.card_store = store  # type: ignore[attr-defined]  # tests and benches inspect the store
    server.card_handlers = handlers  # type: ignore[attr-defined]
    server.campaign_gauges = gauges  # type: ignore[attr-defined]
    return server
