"""Production wiring of the order service, shared by `python -m services.order` and the tests."""
from __future__ import annotations

import os
from typing import Any

import grpc

from miandan.order.v1 import order_service_pb2, order_service_pb2_grpc
from services.common.auth import ADMIN, INTERNAL_OR_MERCHANT, MERCHANT, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import DEFAULT_CAMPAIGN_ID, Settings, check_campaign_id, env_number
from services.common.server import Resources, Server, build_server, builds_server

from .card_batch import batching_enabled, card_client
from .handlers import MAX_PAYMENT_TTL_SECONDS, OrderConfig, OrderEvents, OrderService
from .payment import PaymentProvider, SandboxPaymentProvider
from .servicer import OrderServicer
from .quote_cache import open_catalog_client
from .store import SqliteOrderStore

__all__ = ["build", "SERVICE_NAME", "config_from_env"]

SERVICE_NAME = order_service_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
_M = f"/{SERVICE_NAME}/"


_DAY_S = 86_400.0


def config_from_env(env: Any = None) -> OrderConfig:
    """MIANDAN_PAYMENT_TTL_SECONDS (1..86,340), MIANDAN_ORDER_PLACING_GRACE_SECONDS, MIANDAN_ORDER_SWEEP_SECONDS,
    MIANDAN_CAMPAIGN_ID. Raises ValueError naming the variable (inf and nan included: the
    seconds become integer milliseconds in the store)."""
    e = os.environ if env is None else env

    def number(var: str, default: float, maximum: float) -> float:
        return env_number(e, var, default, above=0, maximum=maximum)

    return OrderConfig(
        # Whole seconds, at least one (0.5 became a window of 0: every to-pay order was born
        # lapsed), and no longer than a card hold covers: the card service holds a card for a
        # day at most, so a longer window let the card go back to its owner (and be spent on
        # another order) while the order still waited for its money.
        payment_ttl_seconds=int(env_number(e, "MIANDAN_PAYMENT_TTL_SECONDS", 900, minimum=1, maximum=MAX_PAYMENT_TTL_SECONDS)),
        # Whole seconds, at least one (0.5 became 0).
        placing_grace_seconds=int(env_number(e, "MIANDAN_ORDER_PLACING_GRACE_SECONDS", 30, minimum=1, maximum=365 * _DAY_S)),
        sweep_interval_seconds=number("MIANDAN_ORDER_SWEEP_SECONDS", 5.0, _DAY_S),
        default_campaign_id=check_campaign_id((e.get("MIANDAN_CAMPAIGN_ID") or "").strip() or DEFAULT_CAMPAIGN_ID, "MIANDAN_CAMPAIGN_ID"),
    )


@builds_server
async def build(
    settings: Settings,
    *,
    resources: Resources,
    clock: Clock | None = None,
    payment_provider: PaymentProvider | None = None,
    config: OrderConfig | None = None,
) -> Server:
    clock = clock or SystemClock()
    config = config or config_from_env()
    batching_enabled()  # MIANDAN_CARD_BATCH: refused here, before the store is open
    policy = AccessPolicy(
        settings,
        {
            _M + "UpdateOrderStatus": MERCHANT,
            _M + "ListStoreOrders": MERCHANT,
            _M + "WatchStoreOrders": MERCHANT,
            _M + "CancelOrder": INTERNAL_OR_MERCHANT,
            _M + "ListAllOrders": ADMIN,
        },
        clock=clock,
    )
    events = OrderEvents()
    store = resources.closing(await SqliteOrderStore.open(settings.db_path, clock=clock, listener=events.publish))
    # Coalesces concurrent reservations (MIANDAN_CARD_BATCH=0: one RPC each).
    card = resources.closing(card_client(settings), name="card-client")
    # Quote answers kept until the catalog's change feed says otherwise (MIANDAN_QUOTE_CACHE=0: off).
    catalog = resources.closing(open_catalog_client(settings, clock=clock), name="catalog-client")
    payments = payment_provider or SandboxPaymentProvider(settings.internal_token)
    service = OrderService(store, card, catalog, payments, clock=clock, config=config, events=events)
    servicer = OrderServicer(service, policy)

    def register(server: grpc.aio.Server) -> None:
        order_service_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)

    async def on_start() -> None:
        # The first pass runs at once (in the background, so a card service that is still down
        # does not keep us from serving) and finishes or compensates what a crash left behind.
        # Stopping it drains the orders it drives, before the clients and the store close.
        resources.on_close(service.stop_sweeper, name="order-sweeper")
        await service.start_sweeper()

    server = build_server(
        settings,
        service_names=[SERVICE_NAME],
        register=register,
        policy=policy,
        criticality={
            "PlaceOrder": "CRITICAL",
            "ConfirmPayment": "CRITICAL",
            "CancelOrder": "CRITICAL",
            "GetOrder": "DEFAULT",
            "ListOrders": "DEFAULT",
            "ListStoreOrders": "DEFAULT",
            "WatchStoreOrders": "DEFAULT",
            "WatchOrder": "DEFAULT",
            "GetCart": "DEFAULT",
        },
        on_start=on_start,
        resources=resources,
    )
    # Tests and the bench reach the use cases and clients through the server object.
    server.order_service = service  # type: ignore[attr-defined]
    server.upstream_calls = (card.calls, catalog.calls)  # type: ignore[attr-defined]
    return server
