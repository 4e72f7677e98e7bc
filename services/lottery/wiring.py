"""Builds the lottery server: store, card client, scheduler, servicer, policy. Tests and
`python -m services.lottery` share this."""
from __future__ import annotations

import os
from typing import Any, Mapping

from miandan.lottery.v1 import lottery_service_pb2, lottery_service_pb2_grpc
from services.common.auth import ADMIN, INTERNAL, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import DEFAULT_CAMPAIGN_ID, Settings, check_campaign_id, env_number
from services.common.server import Resources, Server, build_server, builds_server

from . import model
from .beacon import DrandBeacon, beacon_from_env
from .card_client import CardDirectory, GrpcCardDirectory
from .handlers import DrawScheduler, Lottery
from .model import DrawSettings
from .servicer import LotteryServicer
from .store import SqliteLotteryStore

__all__ = ["build", "draw_settings_from_env", "SERVICE_NAME"]

FROM_ENV: Any = object()  # build()'s default beacon: the one MIANDAN_DRAND_RELAYS describes
SERVICE_NAME = lottery_service_pb2.DESCRIPTOR.services_by_name["LotteryService"].full_name
_M = f"/{SERVICE_NAME}/"

ROLES = {
    _M + "EnterDraw": INTERNAL,
    _M + "GetDraw": INTERNAL,
    _M + "CommitDraw": ADMIN,
    _M + "RunDraw": ADMIN,
    _M + "VerifyDraw": INTERNAL,
    _M + "ListMyEntries": INTERNAL,
    _M + "ListDraws": INTERNAL,
    _M + "ListDrawEntries": ADMIN,
}
# Entering is a user action worth keeping under load; views of draws can be retried later.
CRITICALITY = {
    _M + "EnterDraw": "DEFAULT",
    _M + "CommitDraw": "DEFAULT",
    _M + "RunDraw": "DEFAULT",
    _M + "GetDraw": "SHEDDABLE",
    _M + "VerifyDraw": "SHEDDABLE",
    _M + "ListMyEntries": "SHEDDABLE",
    _M + "ListDraws": "SHEDDABLE",
    _M + "ListDrawEntries": "SHEDDABLE",
}


def draw_settings_from_env(env: Mapping[str, str] | None = None) -> DrawSettings:
    """MIANDAN_LOTTERY_CUTOFF ("HH:MM" or "HH:MM:SS", 00:00:01..23:59:59, default 20:00,
    campaign-local), MIANDAN_LOTTERY_BEACON_SOURCE (e.g. "drand:quicknet"; unset = no beacon),
    MIANDAN_LOTTERY_CAMPAIGNS (comma list of campaigns the scheduler commits and runs; default
    MIANDAN_CAMPAIGN_ID or spring-2026),
    MIANDAN_LOTTERY_TICK_SECONDS (default 5). Raises ValueError naming the variable."""
    e = os.environ if env is None else env
    cutoff_text = (e.get("MIANDAN_LOTTERY_CUTOFF") or "").strip()
    cutoff = model.parse_cutoff(cutoff_text) if cutoff_text else model.DEFAULT_CUTOFF
    beacon = (e.get("MIANDAN_LOTTERY_BEACON_SOURCE") or "").strip() or None
    if beacon is not None and not model.is_beacon_source(beacon):
        raise ValueError(f"MIANDAN_LOTTERY_BEACON_SOURCE={beacon!r} must be 1..64 printable ASCII characters without spaces")
    # Blank is unset, as everywhere: a blank list covered no campaign, silently.
    listed = (e.get("MIANDAN_LOTTERY_CAMPAIGNS") or "").strip()
    var = "MIANDAN_LOTTERY_CAMPAIGNS" if listed else "MIANDAN_CAMPAIGN_ID"
    raw = listed or (e.get("MIANDAN_CAMPAIGN_ID") or "").strip() or DEFAULT_CAMPAIGN_ID
    campaigns = tuple(check_campaign_id(c.strip(), var) for c in raw.split(",") if c.strip())
    if not campaigns:
        raise ValueError(f"{var}={raw!r} names no campaign")
    # Finite and at most a day: inf would overflow the scheduler's timer.
    tick = env_number(e, "MIANDAN_LOTTERY_TICK_SECONDS", 5.0, above=0, maximum=86_400.0)
    return DrawSettings(cutoff=cutoff, beacon_source=beacon, campaigns=campaigns, tick_seconds=tick)


@builds_server
async def build(
    settings: Settings,
    *,
    resources: Resources,
    clock: Clock | None = None,
    cards: CardDirectory | None = None,
    draw_settings: DrawSettings | None = None,
    beacon: DrandBeacon | None = FROM_ENV,
) -> Server:
    """The lottery server, not started. `cards` replaces the gRPC card client (tests);
    `draw_settings` replaces the MIANDAN_LOTTERY_* environment; `beacon` replaces the drand
    fetcher of MIANDAN_DRAND_RELAYS (None: beacon days wait for an admin RunDraw). The server closes
    the card directory it is given, as it does its own. The returned server carries
    `.lottery` (use cases) and `.scheduler` (call `await server.scheduler.tick()` in tests)."""
    clock = clock or SystemClock()
    # Everything read from the environment, read before the store opens (a bad value then
    # leaves nothing open behind).
    draw_settings = draw_settings or draw_settings_from_env()
    drand = beacon_from_env() if beacon is FROM_ENV else beacon
    policy = AccessPolicy(settings, ROLES, default=INTERNAL)
    store = resources.closing(await SqliteLotteryStore.open(settings.db_path, clock=clock))
    card_client = resources.closing(cards if cards is not None else GrpcCardDirectory(settings), name="card-directory")
    lottery = Lottery(store, card_client, clock, draw_settings, drand)
    scheduler = DrawScheduler(lottery)

    def register(server) -> None:  # type: ignore[no-untyped-def]
        lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(LotteryServicer(lottery), server)

    async def on_start() -> None:
        unreadable = await store.unreadable_pending()
        if unreadable:
            # Entries still work; only these draws cannot run. Said at start, not at the cut-off.
            server.logger.error(
                "lottery: the seed key cannot open pending days; they cannot be drawn until the key they were sealed with is back",
                extra={"days": [f"{c}/{d}" for c, d in unreadable][:20], "count": len(unreadable)},
            )
        resources.on_close(scheduler.stop, name="lottery-scheduler")
        scheduler.start()

    server = build_server(
        settings,
        service_names=[SERVICE_NAME],
        register=register,
        policy=policy,
        criticality=CRITICALITY,
        on_start=on_start,
        resources=resources,
    )
    server.lottery = lottery  # type: ignore[attr-defined]
    server.scheduler = scheduler  # type: ignore[attr-defined]
    return server
