"""A week of campaign in seconds: the whole suite in one process on one FakeClock, driven
through eight simulated days (joins through pass-phrase chains, lottery entries and the daily
draw, orders paid, cancelled and left to lapse, order and store streams opened and closed,
text previews). Every in-memory structure that gains an entry per user, order, request, store,
merchant, stream or day is measured after day 2 and after day 8: none may have grown beyond its
slack. A process runs the whole campaign without a restart, and a structure that only grows
kills it at the lunch peak of day 9.

To watch a new structure, add a line to STRUCTURES: its name, how to read its size from the
suite, and the slack it may grow by between day 2 and day 8 (0 for most: by day 2 every bound
has been reached, every sweep has run)."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import Any, Callable

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc as gw_grpc
from miandan.order.v1 import order_pb2, order_service_pb2 as osv, order_service_pb2_grpc as order_grpc
from services.common.auth import open_channel
from services.common.clock import FakeClock
from services.common.merchant_grant import mint_grant

from gateway.token import mint

from .week_suite import BRAND, ITEM, seed, start_week_suite

pytestmark = pytest.mark.timeout(120)

DAYS = 8
# Users who join, invite, enter the draw and order each day, and users who only open the app
# (each call still verified, paced and remembered per user by the gateway): 320 distinct users a day
# over the week (2,560) in about ten seconds of wall time.
USERS_PER_DAY = 64
BROWSERS_PER_DAY = 256
STORES = 24
# 10:00 in Asia/Shanghai (the campaign's zone): entries open, lunch ahead, cut-off at 20:00.
FIRST_MORNING = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.timezone.utc)

# Caps small enough that a soak of a few thousand users reaches them by day 2: the soak then
# shows that the cap holds, not merely that it was never reached.
ENV = {
    "MIANDAN_USER_RATE_TRACKED": "200",
    "MIANDAN_MERCHANT_RATE_TRACKED": "4",
    "MIANDAN_PAYMENT_TTL_SECONDS": "600",
}
TOKEN_CACHE = 300  # TokenVerifier's cache_size (10,000 in production)
REMEMBERED_PAYMENTS = 8  # the sandbox's (10,000 in production)


@dataclasses.dataclass(frozen=True)
class Structure:
    name: str
    size: Callable[[Any], int]
    slack: int = 0


def _gateway(s):
    return s.gateway.gateway


STRUCTURES: list[Structure] = []


def sizes(suite) -> dict[str, int]:
    return {st.name: st.size(suite) for st in STRUCTURES}


def _pipeline(server):
    return server._pipeline


def _order(s):
    return s.order.order_service


def _locks(keyed):
    return len(keyed._locks)


def _module_sizes() -> dict[str, Callable[[Any], int]]:
    from services.catalog import model as catalog_model
    from services.order import upstream as order_upstream

    return {
        "catalog.model._HOURS_INTERN": lambda s: len(catalog_model._HOURS_INTERN),
        "catalog.model._VALIDATED": lambda s: len(catalog_model._VALIDATED),
        "catalog.model._ENCODED": lambda s: len(catalog_model._ENCODED),
        "catalog.model.decode_hours cache": lambda s: catalog_model.decode_hours.cache_info().currsize,
        "order.upstream._credential_logs": lambda s: len(order_upstream._credential_logs),
    }


STRUCTURES += [
    # gateway
    Structure("gateway.previews._items", lambda s: len(_gateway(s).previews._items)),
    Structure("gateway.previews._by_user", lambda s: len(_gateway(s).previews._by_user)),
    Structure("gateway.verifier._cache", lambda s: len(s.gateway.verifier._cache)),
    Structure("gateway.watches._by_user", lambda s: len(s.gateway.watches._by_user)),
    Structure("gateway.watches.open", lambda s: s.gateway.watches.open),
    Structure("gateway.user_rates._full_at", lambda s: len(s.gateway.user_rates)),
    Structure("gateway._campaign values", lambda s: len(_gateway(s)._campaign._values)),
    Structure("gateway._campaign inflight", lambda s: len(_gateway(s)._campaign._inflight)),
    # One draw per day asked about, up to its cap of 16 (TimedCache max_entries): a week adds 6.
    Structure("gateway._draws values", lambda s: len(_gateway(s)._draws._values), slack=DAYS),
    Structure("gateway._draws inflight", lambda s: len(_gateway(s)._draws._inflight)),
    # One verified check per drawn day asked about, up to its cap of 64: a week adds 6.
    Structure("gateway._verified values", lambda s: len(_gateway(s)._verified._values), slack=DAYS),
    Structure("gateway._placed_checks", lambda s: len(_gateway(s)._placed_checks)),
    Structure("gateway._unknown_zones", lambda s: len(_gateway(s)._unknown_zones)),
    Structure("gateway bulkheads places", lambda s: sum(b.in_flight + b.lent for b in s.gateway.upstreams.bulkheads.values())),
    # order
    Structure("order.events._watchers", lambda s: len(_order(s).events._watchers)),
    Structure("order.stores._by_store", lambda s: len(_order(s).events.stores._by_store)),
    Structure("order.stores.open", lambda s: _order(s).events.stores.open),
    Structure("order.stores._of_merchant", lambda s: len(_order(s).events.stores._of_merchant)),
    Structure("order.stores._of_merchant_store", lambda s: len(_order(s).events.stores._of_merchant_store)),
    Structure("order._flights", lambda s: len(_order(s)._flights)),
    Structure("order._face_values", lambda s: len(_order(s)._face_values)),
    Structure("order._payments locks", lambda s: _locks(_order(s)._payments)),
    Structure("order._card_turns locks", lambda s: _locks(_order(s)._card_turns)),
    Structure("order._cart_turns locks", lambda s: _locks(_order(s)._cart_turns)),
    Structure("order.store_brands._known", lambda s: len(_order(s).store_brands._known)),
    Structure("order.quote_cache._entries", lambda s: len(getattr(_order(s).catalog, "_entries", ()))),
    Structure("order.quote_cache._store_floor", lambda s: len(getattr(_order(s).catalog, "_store_floor", ()))),
    Structure("order.card_batch._sent", lambda s: len(getattr(_order(s).card, "_sent", ()))),
    Structure("order.card_batch._queue", lambda s: len(getattr(_order(s).card, "_queue", ()))),
    Structure("order.card_batch._senders", lambda s: len(getattr(_order(s).card, "_senders", ()))),
    Structure("order.payments.captures", lambda s: len(_order(s).payments.captures)),
    Structure("order.payments.refunds", lambda s: len(_order(s).payments.refunds)),
    Structure("order.policy.merchant_rates", lambda s: len(s.order.policy.merchant_rates)),
    # catalog
    Structure("catalog.changes._subscribers", lambda s: len(s.catalog.catalog.changes._subscribers)),
    Structure("catalog.policy.merchant_rates", lambda s: len(s.catalog.policy.merchant_rates)),
    Structure("catalog.sold_out", lambda s: len(s.catalog.catalog.sold_out)),
    # lottery
    Structure("lottery.scheduler._failing", lambda s: len(s.lottery.scheduler._failing)),
    Structure("lottery.cards._campaigns", lambda s: len(s.lottery.lottery.cards._campaigns)),
    # card (read only here: services/card is another change's)
    Structure("card.store._campaigns", lambda s: len(s.card.card_store._campaigns)),
    # One per campaign, filled by the gauges' first refresh (15 s of wall time): 0 or 1 by day 2.
    Structure("card.campaign_gauges.snapshot", lambda s: len(s.card.campaign_gauges.snapshot), slack=1),
]
for _name in ("card", "catalog", "order", "lottery", "gateway"):
    STRUCTURES += [
        Structure(f"{_name}.pipeline._streams", lambda s, n=_name: len(_pipeline(getattr(s, n))._streams)),
        Structure(f"{_name}.pipeline._handlers", lambda s, n=_name: len(_pipeline(getattr(s, n))._handlers)),
        Structure(f"{_name}.pipeline._status_cache", lambda s, n=_name: len(_pipeline(getattr(s, n))._status_cache)),
    ]
STRUCTURES += [
    Structure("metrics._methods", lambda s: len(s.order.metrics._methods)),
    Structure("metrics._refusals", lambda s: len(s.order.metrics._refusals)),
]
STRUCTURES += [Structure(name, size) for name, size in _module_sizes().items()]


# --- the week ------------------------------------------------------------------------------


async def _in_waves(calls, wave: int = 8) -> list:
    """The calls a few at a time: a crowd of phones, not a flood the admission would shed."""
    calls, out = list(calls), []
    for start in range(0, len(calls), wave):
        out += await asyncio.gather(*calls[start:start + wave])
    return out


class Week:
    def __init__(self, suite, clock: FakeClock) -> None:
        self.suite, self.clock = suite, clock
        settings = suite.settings
        self.settings = settings
        self.channel = grpc.aio.insecure_channel(settings.gateway_addr)
        self.gw = gw_grpc.GatewayServiceStub(self.channel)
        self.order_channel = open_channel(settings, settings.order_addr)
        self.order = order_grpc.OrderServiceStub(self.order_channel)
        self.tokens: dict[str, str] = {}
        self.day = 0

    async def close(self) -> None:
        await self.channel.close()
        await self.order_channel.close()

    def auth(self, user: str):
        token = self.tokens.get(user)
        if token is None:
            # A token lives a day: the app signs in again the next day (a fresh token each day).
            token = self.tokens[user] = mint(self.settings, user, ttl=86_400, clock=self.clock)
        return (("authorization", f"Bearer {token}"),)

    async def join(self, user: str, phrase: str = "") -> gw.JoinResponse:
        return await self.gw.Join(gw.JoinRequest(request_id=f"j-{user}", pass_phrase_text=phrase), metadata=self.auth(user), timeout=10)

    async def families(self, count: int) -> list[str]:
        """count new users: one inviter per four, whose three friends join with its pass-phrase;
        returns the inviters (each may enter the day's draw)."""
        async def family(n: int) -> str:
            host = f"d{self.day}-u{n}-host"
            joined = await self.join(host)
            phrase = joined.wallet.wallet.pass_phrase_text
            await asyncio.gather(*(self.join(f"d{self.day}-u{n}-f{k}", phrase) for k in range(3)))
            return host

        return await _in_waves((family(n) for n in range(count // 4)), wave=4)

    async def place(self, user: str, store: str, n: int) -> order_pb2.Order:
        reply = await self.gw.PlaceOrder(
            gw.PlaceOrderRequest(request_id=f"o-{n}", store_id=store, lines=[catalog_pb2.LineSelection(item_id=ITEM, quantity=1)]),
            metadata=self.auth(user), timeout=10,
        )
        return reply.order

    async def pay(self, user: str, order: order_pb2.Order) -> None:
        await self.gw.ConfirmPayment(
            gw.ConfirmPaymentRequest(request_id=f"p-{order.order_id}", order_id=order.order_id, payment_reference=order.payment.payment_reference),
            metadata=self.auth(user), timeout=10,
        )

    async def cancel(self, user: str, order: order_pb2.Order) -> None:
        await self.gw.CancelOrder(gw.CancelOrderRequest(request_id=f"c-{order.order_id}", order_id=order.order_id), metadata=self.auth(user), timeout=10)

    async def watch_briefly(self, user: str, order_id: str) -> None:
        """An app showing an order: the stream's first message, then the app is closed."""
        call = self.gw.WatchOrder(gw.WatchOrderRequest(order_id=order_id), metadata=self.auth(user), timeout=10)
        await call.read()
        call.cancel()

    async def merchant_watches(self, stores: list[str]) -> None:
        """A merchant's kitchen displays open their store streams, then close at night: a new
        grant each day (terminals sign in every morning)."""
        grant = mint_grant(self.settings.merchant_signing_key, f"merchant-{self.day}", brands=[BRAND], ttl=86_400, clock=self.clock)
        md = (("x-miandan-merchant-token", grant),)
        calls = [self.order.WatchStoreOrders(osv.WatchStoreOrdersRequest(store_id=s), metadata=md, timeout=10) for s in stores]
        await asyncio.gather(*(c.initial_metadata() for c in calls))
        for c in calls:
            c.cancel()

    async def previews(self, users: list[str]) -> None:
        for user in users:
            await self.gw.OrderByText(
                gw.OrderByTextRequest(request_id=f"t-{user}", text="一杯拿铁", location=common_pb2.GeoPoint(latitude=30.27, longitude=120.16)),
                metadata=self.auth(user), timeout=10,
            )

    async def browse(self, count: int) -> None:
        """Users who open the app and send something the gateway refuses before any upstream
        (a pass-phrase text beyond 4 KB): their token is verified and their pace counted all
        the same, which is all the gateway keeps of them."""
        too_long = "口" * 2_000

        async def refused(user: str) -> grpc.StatusCode:
            try:
                await self.gw.Join(gw.JoinRequest(request_id="b", pass_phrase_text=too_long), metadata=self.auth(user), timeout=10)
            except grpc.aio.AioRpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        codes = await _in_waves((refused(f"d{self.day}-browser-{n}") for n in range(count)), wave=16)
        assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}

    async def refused_streams(self) -> None:
        """Streams refused after they began (a rival brand's grant, someone else's order): what
        they took must be given back on the error path too."""
        grant = mint_grant(self.settings.merchant_signing_key, f"rival-{self.day}", brands=["rivalbrand"], ttl=86_400, clock=self.clock)
        call = self.order.WatchStoreOrders(
            osv.WatchStoreOrdersRequest(store_id=self.suite.stores[0]), metadata=(("x-miandan-merchant-token", grant),), timeout=10,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()
        call = self.gw.WatchOrder(gw.WatchOrderRequest(order_id=f"ord-nobody-{self.day}"), metadata=self.auth("nosy"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()

    async def live_day(self) -> None:
        suite, clock = self.suite, self.clock
        day = self.day
        clock.set(FIRST_MORNING + dt.timedelta(days=day))
        await suite.lottery.scheduler.tick()  # commits today's draw
        inviters = await self.families(USERS_PER_DAY)
        for host in inviters:
            await self.gw.EnterLottery(gw.EnterLotteryRequest(request_id=f"e-{host}"), metadata=self.auth(host), timeout=10)
        # Lunch: every inviter orders; a third pay, a third pay then cancel, a third never pay.
        buyers = inviters
        orders = await _in_waves(self.place(u, suite.stores[i % len(suite.stores)], day) for i, u in enumerate(buyers))
        await self.merchant_watches(suite.stores[:6])
        for i, (user, order) in enumerate(zip(buyers, orders)):
            if i % 3 != 2:
                await self.pay(user, order)
            if i % 3 == 1:
                await self.cancel(user, order)
        await asyncio.gather(*(self.watch_briefly(u, o.order_id) for u, o in list(zip(buyers, orders))[:20]))
        await self.previews(buyers[:10])
        await self.browse(BROWSERS_PER_DAY)
        await self.refused_streams()
        # The unpaid orders lapse, their cards go back.
        clock.advance(minutes=20)
        await _order(suite).sweep()
        # 20:00 cut-off, the draw, and the results asked for by the day's entrants.
        clock.set(FIRST_MORNING + dt.timedelta(days=day, hours=10, minutes=5))
        await suite.lottery.scheduler.tick()
        today = (FIRST_MORNING + dt.timedelta(days=day)).astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
        for host in inviters[:5]:
            await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=today), metadata=self.auth(host), timeout=10)
        # The night: tokens of today's users expire tomorrow; request ids age.
        self.tokens.clear()
        self.day += 1


async def test_a_week_of_campaign_leaves_no_structure_larger_than_after_day_two(tmp_path, monkeypatch):
    from services.order import payment

    monkeypatch.setattr(payment, "REMEMBERED_PAYMENTS", REMEMBERED_PAYMENTS)
    clock = FakeClock(FIRST_MORNING)
    servers: list = []
    started = time.monotonic()
    try:
        suite = await start_week_suite(tmp_path, clock, servers, ENV)
        suite.gateway.verifier.cache_size = TOKEN_CACHE
        await seed(suite, clock, STORES)
        week = Week(suite, clock)
        try:
            seen: dict[int, dict[str, int]] = {}
            for day in range(DAYS):
                await week.live_day()
                seen[day + 1] = sizes(suite)
        finally:
            await week.close()
    finally:
        for server in reversed(servers):
            await server.stop(0)
    grown = {
        st.name: (seen[2][st.name], seen[DAYS][st.name])
        for st in STRUCTURES
        if seen[DAYS][st.name] > seen[2][st.name] + st.slack
    }
    assert not grown, f"grew between day 2 and day {DAYS} (day 2, day {DAYS}): {grown}"
    assert time.monotonic() - started < 60
