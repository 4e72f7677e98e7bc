"""Production wiring of the catalog: store -> catalog (in memory) -> servicer -> kit server."""
from __future__ import annotations

from miandan.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc

from services.common.admission import CRITICAL, DEFAULT, SHEDDABLE
from services.common.auth import ADMIN, INTERNAL, MERCHANT, AccessPolicy
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.server import Resources, Server, build_server, builds_server

from .handlers import Catalog, ResolverFactory
from .servicer import CatalogServicer
from .store import SqliteCatalogStore

SERVICE_NAME = catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def _method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


ROLES = {
    _method("ImportStores"): ADMIN,
    _method("UpsertBrand"): ADMIN,
    _method("UpsertMenuItem"): ADMIN,
    _method("SetItemAvailability"): MERCHANT,
    # Explicit although it is the default: the feed tells which Quote answers may be kept.
    _method("WatchMenuChanges"): INTERNAL,
}

# Quote prices every order, so it is the last thing to shed; browsing goes first.
CRITICALITY = {
    _method("Quote"): CRITICAL,
    # Refusing it under load would turn every cached Quote back into an RPC: the opposite of shedding.
    _method("WatchMenuChanges"): CRITICAL,
    _method("MatchIntent"): DEFAULT,
    # Asked before a merchant lists or watches a store its grant covers by brand only.
    _method("GetStore"): DEFAULT,
    _method("SearchStores"): SHEDDABLE,
    _method("GetMenu"): SHEDDABLE,
    _method("ListBrands"): SHEDDABLE,
}


@builds_server
async def build(
    settings: Settings, *, resources: Resources, clock: Clock | None = None, resolver_factory: ResolverFactory | None = None,
    forget_interval_s: float = 60.0,
) -> Server:
    clock = clock or SystemClock()
    store = resources.closing(await SqliteCatalogStore.open(settings.db_path, clock=clock))
    catalog = resources.closing(Catalog(store, clock=clock, resolver_factory=resolver_factory))
    await catalog.start()
    policy = AccessPolicy(settings, ROLES, default=INTERNAL, clock=clock)
    servicer = CatalogServicer(catalog, policy)

    def register(server) -> None:  # type: ignore[no-untyped-def]
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)

    async def on_start() -> None:
        resources.task(catalog.forget_requests_forever(forget_interval_s), name="catalog-forget-requests")
        # Build the resolver before the first MatchIntent instead of during it.
        if catalog.brands:
            await catalog.current_resolver()

    server = build_server(
        settings,
        service_names=[SERVICE_NAME],
        register=register,
        policy=policy,
        criticality=CRITICALITY,
        on_start=on_start,
        resources=resources,
    )
    server.catalog = catalog  # type: ignore[attr-defined]  # tests and benchmarks inspect it
    return server
