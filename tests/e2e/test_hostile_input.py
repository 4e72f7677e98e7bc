"""Hostile input against every RPC of every service, as the suite runs for a user.

Two kinds, both over real gRPC into `python -m services.suite` with its own data directory:
* bytes that are not the method's request message at all: INVALID_ARGUMENT with reason
  MALFORMED_REQUEST (grpc.aio alone would answer UNKNOWN);
* well-formed messages full of edge values (tests/e2e/hostile_messages.py), a fixed number per
  method from a fixed seed: whatever the answer, never INTERNAL, UNKNOWN or DATA_LOSS, and every
  refusal carries an ErrorInfo reason a client can switch on.
The same from 16 clients at once; orders whose callers give up after 1-80 ms and then retry; and
calls cancelled at random moments, after which no service may count a call still in flight.
Afterwards every service still reports SERVING, the suite process is alive, and the cross-service
audit finds nothing: no hostile call corrupted a store. (Where the test itself called the internal
saga steps with ids of its own invention, the card <-> order findings that this alone explains are
set aside: see PLAYED_SAGA_FINDINGS.)

MIANDAN_HOSTILE_CALLS (per method, default 12) and MIANDAN_HOSTILE_SEED widen the search locally;
a failure prints the seed, the method and the request, so it replays."""
from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory, text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

import miandan.card.v1.card_service_pb2  # noqa: F401 - registers the service descriptors
import miandan.catalog.v1.catalog_service_pb2  # noqa: F401
import miandan.gateway.v1.gateway_service_pb2  # noqa: F401
import miandan.lottery.v1.lottery_service_pb2  # noqa: F401
import miandan.order.v1.order_service_pb2  # noqa: F401
from miandan.card.v1 import card_service_pb2 as card, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as catalog, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.order.v1 import order_pb2
from services.common.auth import internal_metadata
from services.common.errors import error_details
from gateway.wiring import MAX_REQUEST_BYTES as GATEWAY_MAX_REQUEST_BYTES
from tests.e2e.hostile_messages import KnownIds, mutate, random_message
from tests.e2e.suite_process import start_suite

pytestmark = pytest.mark.timeout(300)

SERVICES = {
    "gateway": "miandan.gateway.v1.GatewayService",
    "card": "miandan.card.v1.CardService",
    "order": "miandan.order.v1.OrderService",
    "catalog": "miandan.catalog.v1.CatalogService",
    "lottery": "miandan.lottery.v1.LotteryService",
}
CALLS_PER_METHOD = int(os.environ.get("MIANDAN_HOSTILE_CALLS", "12"))
SEED = os.environ.get("MIANDAN_HOSTILE_SEED", "miandan")
# Never an answer to bad input: a bug (INTERNAL, UNKNOWN) or a damaged store (DATA_LOSS).
BUG_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# Answers without a reason of ours: a stream we stop reading, or one that waits for changes.
NO_REASON_NEEDED = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
# Truncated varint, a length past the end, a field number of 0: no message type parses these.
MALFORMED = (b"\x08", b"\x12\x05ab", b"\xff\xff\xff")
USER = "hostile-user"
# A second user whose cards, orders and previews are in the id pool: USER's calls naming them
# must be refused for what they are (CARD_NOT_OWNED, NOT_FOUND), never as a server error.
NEIGHBOUR = "hostile-neighbour"
USERS = ("user_id", "invitee_user_id")


# What direct calls of the card's and order's internal saga steps (ReserveCard, ConfirmReservation,
# ReleaseReservation, RefundCard, UpdateOrderStatus) with ids of their own invention produce:
# a caller playing a broken order service. The card <-> order reconciliation of the audit exists
# to catch exactly that, and does (a card REDEEMED for order "less"), so after such calls these
# are expected; every other invariant (budget, caps, holds, invites, draws, no card spent twice,
# none spent on another user's order) must still hold.
PLAYED_SAGA_FINDINGS = frozenset({
    "REDEEMED_CARD_WITHOUT_ORDER", "REDEEMED_CARD_ORDER_NOT_PAID", "CARD_ORDER_LINK_MISMATCH", "ORDER_CARD_NOT_REDEEMED",
})


@pytest.fixture
def hostile_suite(tmp_path_factory):
    """A suite of its own per test: hostile admin calls change menus, stock and stores, which
    the next test must not inherit."""
    running = start_suite(tmp_path_factory.mktemp("hostile-data"))
    yield running
    running.stop()


def methods() -> list[tuple[str, Any]]:
    pool = descriptor_pool.Default()
    return [(svc, m) for svc, full in SERVICES.items() for m in pool.FindServiceByName(full).methods]


def credentials(suite: Any, service: str) -> tuple[tuple[str, str], ...]:
    if service == "gateway":
        return (("authorization", f"Bearer {suite.token(USER)}"),)
    return internal_metadata(suite.settings, admin=True, merchant=True)


async def send(channel: grpc.aio.Channel, method: Any, payload: bytes, metadata: Any) -> grpc.aio.AioRpcError | None:
    """One call with raw bytes, whatever the method's shape; the error, or None when it succeeded."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    identity = dict(request_serializer=None, response_deserializer=None)
    try:
        if method.client_streaming:
            await channel.stream_unary(path, **identity)(iter([payload, payload]), metadata=metadata, timeout=10)
        elif method.server_streaming:
            # Watch streams wait for changes: read what comes within half a second, then stop.
            async for _ in channel.unary_stream(path, **identity)(payload, metadata=metadata, timeout=0.5):
                pass
        else:
            await channel.unary_unary(path, **identity)(payload, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        return err
    return None


async def answered(rpc: Any, request: Any, metadata: Any, rng: random.Random | None = None) -> Any:
    """The reply, retrying UNAVAILABLE as the app does (shed, or an upstream channel still
    connecting just after the suite reports ready), waiting as the refusal says."""
    rng = rng or random.Random(0)
    for _ in range(100):
        try:
            return await rpc(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as err:
            assert err.code() is grpc.StatusCode.UNAVAILABLE, (request, err)
            await asyncio.sleep((error_details(err)["retry_after_ms"] or 200) / 1000 * rng.uniform(0.5, 1.5))
    raise AssertionError(f"never answered: {request}")


class Prepared:
    """What the suite really has (ids) and valid requests to mutate (seeds by method name)."""

    def __init__(self) -> None:
        self.ids = KnownIds()
        self.ids.add(USERS, USER, NEIGHBOUR)
        self.seeds: dict[str, list[Any]] = {}

    def seed(self, method: str, request: Any) -> None:
        self.seeds.setdefault(method, []).append(request)


async def prepare(suite: Any) -> Prepared:
    """Ids the suite really has, so hostile values also reach the rules behind "not found",
    and a user's valid gateway calls (an order placed, so later calls have one to act on).
    The neighbour's ids are in the pool too, so mutations also try another user's things."""
    found = Prepared()
    admin = internal_metadata(suite.settings, admin=True)
    user = credentials(suite, "gateway")
    near = common_pb2.GeoPoint(latitude=30.2775, longitude=120.1640)
    async with grpc.aio.insecure_channel(suite.addr("catalog")) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        brands = await stub.ListBrands(catalog.ListBrandsRequest(page_size=100), metadata=admin, timeout=10)
        found.ids.add(["brand_id"], *(b.brand_id for b in brands.brands))
        hits = await stub.SearchStores(catalog.SearchStoresRequest(location=near, page_size=20), metadata=admin, timeout=10)
        found.ids.add(["store_id", "store_ids"], *(h.store.store_id for h in hits.stores))
        # The user's valid order goes to a store open around the clock (no opening hours) of the
        # nearest brand: the demo stores close at night, and this test runs at any hour.
        nearest = hits.stores[0].store
        store = catalog_pb2.Store(
            store_id="e2e-hostile-all-day", brand_id=nearest.brand_id, name=f"{nearest.name}(e2e全天店)", address="e2e",
            city=nearest.city, location=near,
        )
        imported = await stub.ImportStores(iter([catalog.ImportStoresRequest(stores=[store])]), metadata=admin, timeout=10)
        assert imported.accepted == 1, imported
        found.ids.add(["store_id", "store_ids"], store.store_id)
        menu = await stub.GetMenu(catalog.GetMenuRequest(store_id=store.store_id), metadata=admin, timeout=10)
        item = menu.entries[0].item
        found.ids.add(["item_id"], *(e.item.item_id for e in menu.entries))
        found.ids.add(["group_id"], *(g.group_id for g in item.option_groups))
        found.ids.add(["option_id"], *(o.option_id for g in item.option_groups for o in g.options))
    async with grpc.aio.insecure_channel(suite.addr("gateway")) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        join = gw.JoinRequest(request_id="hostile-join")
        await answered(stub.Join, join, user)
        line = catalog_pb2.LineSelection(
            item_id=item.item_id, quantity=1,
            options=[catalog_pb2.OptionChoice(group_id=g.group_id, option_id=g.options[0].option_id) for g in item.option_groups],
        )
        place = gw.PlaceOrderRequest(request_id="hostile-place", store_id=store.store_id, lines=[line])
        order = (await answered(stub.PlaceOrder, place, user)).order
        found.ids.add(["order_id"], order.order_id)
        by_text = gw.OrderByTextRequest(request_id="hostile-text", text=f"来一杯{item.name}", location=near)
        neighbour = (("authorization", f"Bearer {suite.token(NEIGHBOUR)}"),)
        await answered(stub.Join, gw.JoinRequest(request_id="hostile-neighbour-join"), neighbour)
        theirs = gw.PlaceOrderRequest(request_id="hostile-neighbour-place", store_id=store.store_id, lines=[line],
                                      card_use=order_pb2.CARD_USE_NONE)
        found.ids.add(["order_id"], (await answered(stub.PlaceOrder, theirs, neighbour)).order.order_id, foreign=True)
        their_text = gw.OrderByTextRequest(request_id="hostile-neighbour-text", text=f"来一杯{item.name}", location=near)
        found.ids.add(["preview_id"], (await answered(stub.OrderByText, their_text, neighbour)).preview.preview_id, foreign=True)
        mine = (await answered(stub.GetWallet, gw.GetWalletRequest(), user)).wallet.cards
        with_my_card = gw.PlaceOrderRequest(request_id="hostile-place-card", store_id=store.store_id, lines=[line],
                                            card_use=order_pb2.CARD_USE_SPECIFIC, card_id=mine[0].card_id if mine else "")
        for method, request in (
            ("Join", join), ("GetWallet", gw.GetWalletRequest()), ("PlaceOrder", place), ("PlaceOrder", with_my_card),
            ("OrderByText", by_text),
            ("GetOrder", gw.GetOrderRequest(order_id=order.order_id)),
            ("CancelOrder", gw.CancelOrderRequest(request_id="hostile-cancel", order_id=order.order_id, reason="changed mind")),
            ("ConfirmPayment", gw.ConfirmPaymentRequest(request_id="hostile-pay", order_id=order.order_id, payment_reference="sbx_x")),
            ("SearchStores", gw.SearchStoresRequest(search=catalog.SearchStoresRequest(location=near))), ("GetMenu", gw.GetMenuRequest(store_id=store.store_id)),
            ("EnterLottery", gw.EnterLotteryRequest(request_id="hostile-lottery")),
        ):
            found.seed(f"{SERVICES['gateway']}.{method}", request)
    async with grpc.aio.insecure_channel(suite.addr("card")) as channel:
        stub = card_service_pb2_grpc.CardServiceStub(channel)
        campaigns = await stub.ListCampaigns(card.ListCampaignsRequest(), metadata=admin, timeout=10)
        campaign = campaigns.campaigns[0].campaign_id  # the one `make run` seeds
        found.ids.add(["campaign_id"], campaign)
        for owner in (USER, NEIGHBOUR):
            cards = await stub.ListCards(card.ListCardsRequest(campaign_id=campaign, user_id=owner), metadata=admin, timeout=10)
            code = await stub.GetInviteCode(card.GetInviteCodeRequest(campaign_id=campaign, user_id=owner), metadata=admin, timeout=10)
            foreign = owner == NEIGHBOUR
            found.ids.add(["code", "invite_code"], code.invite_code.code, foreign=foreign)
            found.ids.add(["pass_phrase_text", "text"], code.invite_code.pass_phrase_text, foreign=foreign)
            found.ids.add(["card_id"], *(c.card_id for c in cards.cards), foreign=foreign)
    return found


async def assert_still_serving(suite: Any) -> None:
    assert suite.process.poll() is None, "the suite process died"
    for service in SERVICES:
        async with grpc.aio.insecure_channel(suite.addr(service)) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def assert_audit_clean(suite: Any, *, saga_steps_called: bool = False) -> None:
    from services.audit import run_audit

    findings = await run_audit({name: suite.addr(name) for name in ("card", "order", "lottery")})
    if saga_steps_called:
        findings = [f for f in findings if f.check not in PLAYED_SAGA_FINDINGS]
    assert not findings, "audit findings after hostile input:\n" + "\n".join(map(str, findings))


async def test_bytes_that_are_no_message_are_refused_as_malformed_by_every_rpc(hostile_suite):
    wrong: list[str] = []
    for service, method in methods():
        metadata = credentials(hostile_suite, service)
        async with grpc.aio.insecure_channel(hostile_suite.addr(service)) as channel:
            for payload in MALFORMED:
                err = await send(channel, method, payload, metadata)
                reason = error_details(err)["reason"] if err is not None else None
                if err is None or err.code() is not grpc.StatusCode.INVALID_ARGUMENT or reason != "MALFORMED_REQUEST":
                    got = "OK" if err is None else f"{err.code().name} {reason} {err.details()!r}"
                    wrong.append(f"{method.full_name} {payload!r}: {got}")
    assert not wrong, "\n".join(wrong)
    await assert_still_serving(hostile_suite)


class Verdicts:
    """Every answer counted; the bad ones kept once each with a request that replays them."""

    def __init__(self) -> None:
        self.answered: dict[str, int] = {}
        self.failures: dict[tuple[str, str], str] = {}

    def judge(self, method: Any, request: Any, err: grpc.aio.AioRpcError | None, how: str) -> None:
        code = grpc.StatusCode.OK if err is None else err.code()
        self.answered[code.name] = self.answered.get(code.name, 0) + 1
        if err is None or code in NO_REASON_NEEDED:
            return
        if (
            code is grpc.StatusCode.RESOURCE_EXHAUSTED
            and method.containing_service.full_name == SERVICES["gateway"]
            and request.ByteSize() > GATEWAY_MAX_REQUEST_BYTES
        ):
            return  # gRPC's own refusal of a request larger than the gateway reads: no reason to give
        if code in BUG_CODES:
            problem = f"{code.name}: {err.details()!r}"
        elif not error_details(err)["reason"]:
            problem = f"{code.name} without an ErrorInfo reason: {err.details()!r}"
        else:
            return
        shown = text_format.MessageToString(request, as_utf8=True)[:600]
        self.failures.setdefault((method.full_name, problem), f"seed {SEED!r}, {how}:\n{shown}")

    def report(self) -> str:
        listed = "\n\n".join(f"{m} -> {p}\n{replay}" for (m, p), replay in self.failures.items())
        return f"{len(self.failures)} kinds of bad answers (answers: {self.answered}):\n{listed}"


async def test_edge_values_in_every_field_of_every_rpc_get_an_answer_or_a_reasoned_refusal(hostile_suite):
    prepared = await prepare(hostile_suite)
    verdicts = Verdicts()
    for service, method in methods():
        metadata = credentials(hostile_suite, service)
        request_type = message_factory.GetMessageClass(method.input_type)
        rng = random.Random(f"{SEED}/{method.full_name}")
        # Streams that wait for changes cost their whole deadline: fewer of them.
        calls = max(2, CALLS_PER_METHOD // 4) if method.server_streaming else CALLS_PER_METHOD
        async with grpc.aio.insecure_channel(hostile_suite.addr(service)) as channel:
            # Random messages first; those answered OK join the hand-made seeds as valid requests.
            valid = list(prepared.seeds.get(method.full_name, ()))
            for i in range(calls):
                request = random_message(request_type, rng, prepared.ids)
                err = await send(channel, method, request.SerializeToString(), metadata)
                verdicts.judge(method, request, err, f"random call {i}")
                if err is None and len(valid) < 20:
                    valid.append(request)
            # Then one hostile change at a time to a valid request: past validation, into the rules.
            for i in range(calls if valid else 0):
                request = mutate(rng.choice(valid), rng, prepared.ids)
                err = await send(channel, method, request.SerializeToString(), metadata)
                verdicts.judge(method, request, err, f"mutation {i}")
    assert not verdicts.failures, verdicts.report()
    answered = verdicts.answered
    print(f"hostile calls answered: {answered}")  # shown with pytest -s / -rP
    assert answered.get("OK", 0) > 0 and answered.get("INVALID_ARGUMENT", 0) > 0, answered
    await assert_still_serving(hostile_suite)
    await assert_audit_clean(hostile_suite, saga_steps_called=True)


async def test_hostile_calls_from_many_clients_at_once_leave_every_invariant_intact(hostile_suite):
    """16 clients at once, each mixing random messages with mutations of valid requests over
    every unary RPC: concurrent writes of odd values must not break the stores' rules either."""
    prepared = await prepare(hostile_suite)
    verdicts = Verdicts()
    unary = [(s, m) for s, m in methods() if not m.server_streaming]
    channels = {service: grpc.aio.insecure_channel(hostile_suite.addr(service)) for service in SERVICES}

    async def client(n: int) -> None:
        rng = random.Random(f"{SEED}/client{n}")
        valid: dict[str, list[Any]] = {}
        for i in range(max(10, CALLS_PER_METHOD * 3)):
            service, method = rng.choice(unary)
            pool = valid.get(method.full_name, []) + prepared.seeds.get(method.full_name, [])
            if pool and rng.random() < 0.6:
                request = mutate(rng.choice(pool), rng, prepared.ids)
            else:
                request = random_message(message_factory.GetMessageClass(method.input_type), rng, prepared.ids)
            err = await send(channels[service], method, request.SerializeToString(), credentials(hostile_suite, service))
            verdicts.judge(method, request, err, f"client {n} call {i}")
            if err is None:
                valid.setdefault(method.full_name, []).append(request)

    try:
        await asyncio.gather(*(client(n) for n in range(16)))
    finally:
        for channel in channels.values():
            await channel.close()
    assert not verdicts.failures, verdicts.report()
    assert verdicts.answered.get("OK", 0) > 0, verdicts.answered
    await assert_still_serving(hostile_suite)
    await assert_audit_clean(hostile_suite, saga_steps_called=True)


async def test_callers_that_give_up_mid_order_and_retry_end_with_one_order_each(hostile_suite):
    """Impatient phones: 120 orders sent with deadlines of 1-80 ms, so most callers give up
    somewhere inside the placement (card reserved, order not yet written...), then retried
    with the same request_id as the app does. Each request_id ends as exactly one order, a
    further retry answers that same order, and the audit finds every card accounted for."""
    prepared = await prepare(hostile_suite)
    place = prepared.seeds[f"{SERVICES['gateway']}.PlaceOrder"][0]
    rng = random.Random(f"{SEED}/impatient")
    users = [f"impatient-{n}" for n in range(40)]
    calls: list[tuple[tuple[tuple[str, str], ...], gw.PlaceOrderRequest]] = []
    seen: dict[str, int] = {}
    async with grpc.aio.insecure_channel(hostile_suite.addr("gateway")) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        for user in users:
            metadata = (("authorization", f"Bearer {hostile_suite.token(user)}"),)
            await stub.Join(gw.JoinRequest(request_id=f"join-{user}"), metadata=metadata, timeout=10)
            for k in range(3):
                request = gw.PlaceOrderRequest()
                request.CopyFrom(place)
                request.request_id = f"{user}-order-{k}"
                request.card_use = order_pb2.CARD_USE_BEST
                calls.append((metadata, request))

        async def impatient(metadata: Any, request: gw.PlaceOrderRequest) -> None:
            try:
                await stub.PlaceOrder(request, metadata=metadata, timeout=rng.uniform(0.001, 0.08))
                seen["OK"] = seen.get("OK", 0) + 1
            except grpc.aio.AioRpcError as err:
                assert err.code() not in BUG_CODES, (request.request_id, err)
                seen[err.code().name] = seen.get(err.code().name, 0) + 1

        async def until_answered(metadata: Any, request: gw.PlaceOrderRequest) -> str:
            # A retry that joins the first attempt's placement while it still runs lends it its
            # 10 s: the card call cut short by the first caller's 1-80 ms is made again, so the
            # retry gets its order, never that caller's DEADLINE_EXCEEDED (one arriving while
            # that placement is being undone is told UNAVAILABLE and retries).
            return (await answered(stub.PlaceOrder, request, metadata, rng)).order.order_id

        await asyncio.gather(*(impatient(md, r) for md, r in calls))
        assert seen.get("DEADLINE_EXCEEDED", 0) > len(calls) // 2, seen  # most really gave up midway
        order_ids = await asyncio.gather(*(until_answered(md, r) for md, r in calls))
        assert len(set(order_ids)) == len(calls)
        again = await asyncio.gather(*(until_answered(md, r) for md, r in calls[::7]))
        assert again == order_ids[::7]
    await assert_still_serving(hostile_suite)
    await assert_audit_clean(hostile_suite)


def in_flight(suite: Any) -> dict[str, float]:
    """Each service's miandan_rpc_in_flight gauge, from its /metrics endpoint."""
    import re
    import urllib.request

    found = {}
    for service in SERVICES:
        url = f"http://127.0.0.1:{suite.metrics_port(service)}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        found[service] = float(re.search(r"^miandan_rpc_in_flight\{[^}]*\} (\S+)$", text, re.M).group(1))
    return found


async def test_calls_cancelled_at_random_moments_leave_no_slot_taken(hostile_suite):
    """900 calls of every unary and server-streaming RPC, each cancelled by its caller 0-30 ms
    after it starts, wherever it then is (admission, an upstream call, a store write): a slot
    that leaked would, call by call, leave a service refusing everything."""
    prepared = await prepare(hostile_suite)
    # The order service's menu-change feed holds one catalog stream for good, opened a moment
    # after start: the baseline counts it once it is there.
    for _ in range(200):
        before = in_flight(hostile_suite)
        if before["catalog"] >= 1:
            break
        await asyncio.sleep(0.05)
    rng = random.Random(f"{SEED}/cancel")
    callable_ = [(s, m) for s, m in methods() if not m.client_streaming]
    channels = {service: grpc.aio.insecure_channel(hostile_suite.addr(service)) for service in SERVICES}

    async def cancelled_call() -> None:
        service, method = rng.choice(callable_)
        seeds = prepared.seeds.get(method.full_name, [])
        if seeds and rng.random() < 0.7:
            request = mutate(rng.choice(seeds), rng, prepared.ids)
        else:
            request = random_message(message_factory.GetMessageClass(method.input_type), rng, prepared.ids)
        path = f"/{method.containing_service.full_name}/{method.name}"
        start = channels[service].unary_stream if method.server_streaming else channels[service].unary_unary
        call = start(path)(request.SerializeToString(), metadata=credentials(hostile_suite, service), timeout=10)
        await asyncio.sleep(rng.uniform(0, 0.03))
        call.cancel()
        try:
            if method.server_streaming:
                async for _ in call:
                    pass
            else:
                await call
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass

    try:
        for _ in range(3):
            await asyncio.gather(*(cancelled_call() for _ in range(300)))
        for _ in range(100):  # cancellations reach the servers' handlers a moment later
            if in_flight(hostile_suite) == before:
                break
            await asyncio.sleep(0.05)
        assert in_flight(hostile_suite) == before
    finally:
        for channel in channels.values():
            await channel.close()
    await assert_still_serving(hostile_suite)
    await assert_audit_clean(hostile_suite, saga_steps_called=True)
