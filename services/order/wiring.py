"""Production wiring of the order service, shared by `python -m services.order` and the tests."""
from __future__ import annotations

import os
from typing import Any

import grpc

from miandan.order.v1 import order_service_pb2, order_service_pb2_grpc
from services.common.auth import ADMIN, MERCHANT, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.server import Server, build_server

from .card_batch import card_client
from .handlers import OrderConfig, OrderEvents, OrderService
from .payment import PaymentProvider, SandboxPaymentProvider
from .servicer import OrderServicer
from .quote_cache import open_catalog_client
from .store import SqliteOrderStore

__all__ = ["build", "SERVICE_NAME", "config_from_env"]

SERVICE_NAME = order_service_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
_M = f"/{SERVICE_NAME}/"


def config_from_env(env: Any = None) -> OrderConfig:
    e = os.environ if env is None else env

    def number(var: str, default: float) -> float:
        raw = (e.get(var) or "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"{var}={raw!r} must be > 0")
        return value

    return OrderConfig(
        payment_ttl_seconds=int(number("MIANDAN_PAYMENT_TTL_SECONDS", 900)),
        placing_grace_seconds=int(number("MIANDAN_ORDER_PLACING_GRACE_SECONDS", 30)),
        sweep_interval_seconds=number("MIANDAN_ORDER_SWEEP_SECONDS", 5.0),
        default_campaign_id=(e.get("MIANDAN_CAMPAIGN_ID") or "spring-2026").strip(),
    )


async def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    payment_provider: PaymentProvider | None = None,
    config: OrderConfig | None = None,
) -> Server:
    clock = clock or SystemClock()
    config = config or config_from_env()
    events = OrderEvents()
    store = await SqliteOrderStore.open(settings.db_path, clock=clock, listener=events.publish)
    card = card_client(settings)  # coalesces concurrent reservations (MIANDAN_CARD_BATCH=0: one RPC each)
    # Quote answers kept until the catalog's change feed says otherwise (MIANDAN_QUOTE_CACHE=0: off).
    catalog = open_catalog_client(settings, clock=clock)
    payments = payment_provider or SandboxPaymentProvider(settings.internal_token)
    service = OrderService(store, card, catalog, payments, clock=clock, config=config, events=events)
    policy = AccessPolicy(
        settings,
        {
            _M + "UpdateOrderStatus": MERCHANT,
            _M + "ListStoreOrders": MERCHANT,
            _M + "WatchStoreOrders": MERCHANT,
            _M + "ListAllOrders": ADMIN,
        },
        clock=clock,
    )
    servicer = OrderServicer(service, policy)

    def register(server: grpc.aio.Server) -> None:
        order_service_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)

    async def on_start() -> None:
        # The first pass runs at once (in the background, so a card service that is still down
        # does not keep us from serving) and finishes or compensates what a crash left behind.
        await service.start_sweeper()

    async def on_stop() -> None:
        await service.stop_sweeper()
        await card.close()
        await catalog.close()
        await store.close()

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
        on_stop=on_stop,
    )
    # Tests and the bench reach the use cases and clients through the server object.
    server.order_service = service  # type: ignore[attr-defined]
    server.upstream_calls = (card.calls, catalog.calls)  # type: ignore[attr-defined]
    return server
