"""A real catalog server (wiring.build, real SQLite on tmp_path, port 0) and its client."""
import dataclasses
from datetime import datetime, timezone

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2_grpc
from services.catalog.wiring import build
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings

# Wednesday 2026-01-28 20:00 in Shanghai: every demo store is open.
EVENING = datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc)


class Running:
    def __init__(self, server, settings, clock, channel):
        self.server = server
        self.settings = settings
        self.clock = clock
        self.channel = channel
        self.stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        self.md = internal_metadata(settings)
        self.admin = internal_metadata(settings, admin=True)
        self.merchant = internal_metadata(settings, merchant=True)


def catalog_settings(tmp_path):
    return dataclasses.replace(Settings.from_env("catalog", {}), data_dir=tmp_path, port=0, log_calls=False, metrics_port=None)


@pytest.fixture
async def start_catalog(tmp_path):
    started = []

    async def start(resolver_factory=None, clock=None, data_dir=None):
        settings = catalog_settings(data_dir or tmp_path)
        clock = clock or FakeClock(EVENING)
        server = await build(settings, clock=clock, resolver_factory=resolver_factory)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        running = Running(server, settings, clock, channel)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.server.stop(0)


def store_pb(store_id, brand_id, lat, lng, *, name=None, hours=(), closed=False, city="杭州", address="西湖区1号"):
    s = catalog_pb2.Store(
        store_id=store_id, brand_id=brand_id, name=name if name is not None else f"{brand_id}({store_id})", city=city,
        address=address, closed=closed,
        opening_hours=[catalog_pb2.OpeningPeriod(weekday=w, open_minute=o, close_minute=c) for w, o, c in hours],
    )
    s.location.latitude, s.location.longitude = lat, lng
    return s


HANGZHOU = (30.2741, 120.1551)


async def with_demo_stores(running, *stores):
    """`running` with the demo brands' menus and these (store_id, brand_id) stores, in Hangzhou:
    the setup of every test of merchants marking items."""
    from miandan.catalog.v1 import catalog_service_pb2 as svc
    from services.catalog.demo import load_menu

    await load_menu(running.stub, running.admin)
    rows = [store_pb(store_id, brand_id, *HANGZHOU) for store_id, brand_id in stores]
    await running.stub.ImportStores(iter([svc.ImportStoresRequest(stores=rows)]), metadata=running.admin)
    return running
