"""Builds the gateway server: upstream channels, token verifier, preview store, servicer, and
the kit's Server with a PUBLIC access policy (end users carry no service credential; the
servicer authenticates their bearer token) and the gateway's criticality map."""
from __future__ import annotations

import os
from typing import Any, Mapping

from miandan.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from services.common.admission import admission_from_settings
from services.common.auth import PUBLIC, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import DEFAULT_CAMPAIGN_ID, Settings, env_number
from services.common.server import Resources, Server, build_server, builds_server

from .auth import TokenVerifier
from .clients import Upstreams
from .compose import Gateway
from .preview import PreviewStore
from .servicer import CRITICALITY, GatewayServicer
from .user_rates import UserRates
from .watches import WatchSlots

__all__ = ["build", "campaign_id_from_env", "options_from_env", "SERVICE_NAME", "DEFAULT_CAMPAIGN_ID"]

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


def campaign_id_from_env(settings: Settings) -> str:
    return getattr(settings, "campaign_id", None) or (os.environ.get("MIANDAN_CAMPAIGN_ID") or "").strip() or DEFAULT_CAMPAIGN_ID


def _preview_ttl(env: Mapping[str, str] | None = None) -> float:
    # Finite: inf would overflow where the TTL becomes a deadline.
    return env_number(env, "MIANDAN_PREVIEW_TTL_SECONDS", 600.0, above=0, maximum=86_400.0)


def options_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """build()'s keyword arguments from the gateway's own variables (`python -m gateway` reads
    them before anything starts); ValueError naming the variable."""
    return {"preview_ttl_s": _preview_ttl(env)}


# The largest request an end user needs is a PlaceOrder of 50 lines with 20 options each, about
# 62 KiB; the internal services' 16 MiB (catalog imports) would let every phone have the gateway
# hold 16 MiB per call: 20 concurrent 15 MiB OrderByTexts took the gateway from 56 to 525 MB.
MAX_REQUEST_BYTES = 256 * 1024


@builds_server
async def build(
    settings: Settings,
    *,
    resources: Resources,
    clock: Clock | None = None,
    campaign_id: str | None = None,
    preview_ttl_s: float | None = None,
) -> Server:
    """preview_ttl_s: None = MIANDAN_PREVIEW_TTL_SECONDS. Everything read from the environment is
    read before the upstream channels open, so a bad value leaves nothing open behind."""
    clock = clock or SystemClock()
    verifier = TokenVerifier(settings, clock=clock)  # fails fast on a missing key file
    campaign = campaign_id or campaign_id_from_env(settings)
    previews = PreviewStore(ttl_seconds=_preview_ttl() if preview_ttl_s is None else preview_ttl_s, clock=clock)
    # Made here, not by build_server, so the upstreams' bulkheads follow its adaptive limit.
    admission = admission_from_settings(settings)
    upstreams = resources.closing(Upstreams(settings, capacity=lambda: admission.limit))
    gateway = Gateway(
        card=upstreams.card,
        catalog=upstreams.catalog,
        order=upstreams.order,
        lottery=upstreams.lottery,
        campaign_id=campaign,
        previews=previews,
        clock=clock,
    )
    watches = WatchSlots(settings.watches_per_user, settings.max_watches)
    user_rates = UserRates(settings.user_rate, settings.user_burst, settings.user_rates_tracked, clock=clock)
    servicer = GatewayServicer(gateway, verifier, upstreams.metadata, watches, user_rates)

    def register(server) -> None:
        gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)

    # Admission: the kit's controller. Its floor (MIANDAN_MIN_CONCURRENCY, default 32) and
    # long-window latency baseline replace the gateway's own "never below max_concurrency"
    # floor: a burst of concurrent orders no longer drags the limit down to where CRITICAL
    # calls the upstreams can still serve are shed (tests/integration/common/test_common_floor.py).
    server = build_server(
        settings,
        service_names=[SERVICE_NAME],
        register=register,
        policy=AccessPolicy(settings, default=PUBLIC),
        criticality=CRITICALITY,
        # End users have no client certificate: one-way TLS on the public port even when
        # MIANDAN_TLS_CA turns on mutual TLS suite-wide. The upstream channels (open_channel)
        # still present this process's certificate to the internal services.
        require_client_cert=False,
        max_request_bytes=MAX_REQUEST_BYTES,
        resources=resources,
        admission=admission,
    )
    # Tests reach in for the parts (e.g. to count signature checks).
    server.gateway = gateway  # type: ignore[attr-defined]
    server.verifier = verifier  # type: ignore[attr-defined]
    server.upstreams = upstreams  # type: ignore[attr-defined]
    server.watches = watches  # type: ignore[attr-defined]
    server.user_rates = user_rates  # type: ignore[attr-defined]
    return server
