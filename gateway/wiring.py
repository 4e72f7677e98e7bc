"""Builds the gateway server: upstream channels, token verifier, preview store, servicer, and
the kit's Server with a PUBLIC access policy (end users carry no service credential; the
servicer authenticates their bearer token) and the gateway's criticality map."""
from __future__ import annotations

import os

from miandan.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from services.common.admission import AdmissionController
from services.common.auth import PUBLIC, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.server import Server, build_server

from .auth import TokenVerifier
from .clients import Upstreams
from .compose import Gateway
from .preview import PreviewStore
from .servicer import CRITICALITY, GatewayServicer

__all__ = ["build", "gateway_admission", "campaign_id_from_env", "SERVICE_NAME", "DEFAULT_CAMPAIGN_ID"]

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
DEFAULT_CAMPAIGN_ID = "spring-2026"


def campaign_id_from_env(settings: Settings) -> str:
    return getattr(settings, "campaign_id", None) or os.environ.get("MIANDAN_CAMPAIGN_ID") or DEFAULT_CAMPAIGN_ID


def _preview_ttl() -> float:
    raw = os.environ.get("MIANDAN_PREVIEW_TTL_SECONDS", "").strip()
    if not raw:
        return 600.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"MIANDAN_PREVIEW_TTL_SECONDS={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"MIANDAN_PREVIEW_TTL_SECONDS={raw!r} must be > 0")
    return value


def gateway_admission(settings: Settings) -> AdmissionController:
    """The gateway's limit never adapts below the configured MIANDAN_MAX_CONCURRENCY.

    Why: a gateway call's latency is mostly its upstreams' latency, and it mixes 5 ms reads with
    50 ms order placements. With the kit's default floor, a burst of 40 concurrent PlaceOrders
    (measured on the 2-core dev box) pulled the gateway's limit from 64 to 16 and shed CRITICAL
    calls the upstreams could still serve. Upstreams protect themselves with their own limits (and
    their OVERLOADED answers reach the client unchanged); the gateway's limit protects the
    gateway's own CPU and memory, so it may still grow while latency stays near its minimum."""
    n = settings.max_concurrency
    return AdmissionController(n, min_limit=n, max_limit=max(1000, n), max_wait_ms=settings.max_wait_ms)


async def build(settings: Settings, *, clock: Clock | None = None, campaign_id: str | None = None) -> Server:
    clock = clock or SystemClock()
    verifier = TokenVerifier(settings, clock=clock)  # fails fast on a missing key file
    upstreams = Upstreams(settings)
    gateway = Gateway(
        card=upstreams.card,
        catalog=upstreams.catalog,
        order=upstreams.order,
        lottery=upstreams.lottery,
        campaign_id=campaign_id or campaign_id_from_env(settings),
        previews=PreviewStore(ttl_seconds=_preview_ttl(), clock=clock),
        clock=clock,
    )
    servicer = GatewayServicer(gateway, verifier, upstreams.metadata)

    def register(server) -> None:
        gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)

    server = build_server(
        settings,
        admission=gateway_admission(settings),
        service_names=[SERVICE_NAME],
        register=register,
        policy=AccessPolicy(settings, default=PUBLIC),
        criticality=CRITICALITY,
        on_stop=upstreams.close,
    )
    # Tests reach in for the parts (e.g. to count signature checks).
    server.gateway = gateway  # type: ignore[attr-defined]
    server.verifier = verifier  # type: ignore[attr-defined]
    return server
