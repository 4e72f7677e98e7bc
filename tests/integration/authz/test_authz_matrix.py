"""Who may call what, checked exhaustively against real servers.

The expected matrix below is written from the documents, not read from the wiring: DESIGN.md
"Security", docs/conventions.md "Credentials (metadata)" and the comments of the protos. Every RPC
of the card, catalog, order and lottery services (listed from their descriptors, so an RPC added
without a row fails) is called with every kind of credential a caller may present, on the
servers `wiring.build` makes (port 0, real SQLite on tmp_path); every RPC of the gateway with
every kind of bad bearer token. A refusal must come before any validation, so refused cells send
an empty request; an allowed cell may answer anything but a refusal of its credential
(UNAUTHENTICATED, PERMISSION_DENIED) or a crash (INTERNAL, UNKNOWN).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from types import SimpleNamespace
from typing import Any, Callable

import grpc
import jwt
import pytest
from google.protobuf import message_factory

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat
from miandan.gateway.v1 import gateway_service_pb2
from miandan.lottery.v1 import lottery_service_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.common.auth import ADMIN_TOKEN_KEY, INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY, internal_metadata, open_channel
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import error_details
from services.common.merchant_grant import grant_id_of, mint_grant
from tests.integration.in_process_suite import seed_campaign_and_store

C = grpc.StatusCode
CID = "authz-it"
STORE, ITEM, BRAND = "own-store", "own-latte", "ownbrand"

OK = "allowed"
MISSING = (C.UNAUTHENTICATED, "CREDENTIAL_MISSING")
INVALID = (C.UNAUTHENTICATED, "CREDENTIAL_INVALID")
ADMIN_REQUIRED = (C.PERMISSION_DENIED, "ADMIN_REQUIRED")
MERCHANT_REQUIRED = (C.PERMISSION_DENIED, "MERCHANT_REQUIRED")
GRANT_INVALID = (C.UNAUTHENTICATED, "MERCHANT_GRANT_INVALID")
ACTS_AS_USER = (C.PERMISSION_DENIED, "MERCHANT_CANNOT_ACT_AS_USER")
NOT_YOURS = (C.PERMISSION_DENIED, "STORE_NOT_YOURS")
ORDER_HIDDEN = (C.NOT_FOUND, "ORDER_NOT_FOUND")
CREDENTIAL_REFUSALS = (MISSING, INVALID, ADMIN_REQUIRED, MERCHANT_REQUIRED, GRANT_INVALID)
# What no allowed call may answer: a refusal of its credential, or a crash.
REFUSALS_AND_CRASHES = {C.UNAUTHENTICATED, C.PERMISSION_DENIED, C.INTERNAL, C.UNKNOWN}

# --- who may call which RPC, as the documents say ---------------------------------------------
INTERNAL, ADMIN, MERCHANT = "internal", "admin", "merchant"
# CancelOrder is two calls in one: the gateway's for a buyer (user_id set, internal credential),
# a merchant's for its store (no user_id, merchant credential alone or beside the internal one).
CANCEL_FOR_USER = "cancel for a user"

DOCUMENTED_ROLES: dict[str, dict[str, str]] = {
    # card_service.proto: "Internal: callers present the internal service credential; admin RPCs
    # also the admin one" and each admin RPC says "(admin)".
    "miandan.card.v1.CardService": {
        **dict.fromkeys(
            ("GetCampaign", "ClaimSignupCard", "GetInviteCode", "AcceptInvite", "ListCards", "GetWallet", "ReserveCard",
             "ReserveCards", "ConfirmReservation", "ReleaseReservation", "RefundCard", "ListReservations", "GetInviteStats",
             "GetBudget"),
            INTERNAL,
        ),
        **dict.fromkeys(
            ("CreateCampaign", "SetCampaignBudget", "ListCampaigns", "ListCampaignCards", "GetCardHistory",
             "ListCampaignMembers", "ListCampaignInvites"),
            ADMIN,
        ),
    },
    # catalog_service.proto: "Reads need the internal credential; writes the admin one";
    # SetItemAvailability "(admin or merchant)".
    "miandan.catalog.v1.CatalogService": {
        **dict.fromkeys(("ListBrands", "SearchStores", "GetMenu", "GetStore", "Quote", "MatchIntent", "WatchMenuChanges"), INTERNAL),
        **dict.fromkeys(("ImportStores", "UpsertBrand", "UpsertMenuItem"), ADMIN),
        "SetItemAvailability": MERCHANT,
    },
    # order_service.proto: internal; UpdateOrderStatus, ListStoreOrders, WatchStoreOrders "(merchant
    # credential)", ListAllOrders "(admin)", CancelOrder per CancelOrderRequest.user_id.
    "miandan.order.v1.OrderService": {
        **dict.fromkeys(
            ("AddCartItem", "GetCart", "ClearCart", "PlaceOrder", "ConfirmPayment", "GetOrder", "ListOrders", "WatchOrder"),
            INTERNAL,
        ),
        **dict.fromkeys(("UpdateOrderStatus", "ListStoreOrders", "WatchStoreOrders", "CancelOrder"), MERCHANT),
        "ListAllOrders": ADMIN,
    },
    # lottery_service.proto: "Internal; CommitDraw and RunDraw need the admin credential";
    # ListDrawEntries "(admin)".
    "miandan.lottery.v1.LotteryService": {
        **dict.fromkeys(("EnterDraw", "GetDraw", "VerifyDraw", "ListMyEntries", "ListDraws"), INTERNAL),
        **dict.fromkeys(("CommitDraw", "RunDraw", "ListDrawEntries"), ADMIN),
    },
}

# Credentials, by name: (metadata builder, the expected answer per column). A builder takes the
# world (settings and minted grants); each grant is its own merchant's, so no pace is shared.
# Columns: internal, admin, merchant (acting on the seeded store or its orders), user (CancelOrder
# naming a buyer).
_i = lambda w: ((INTERNAL_TOKEN_KEY, w.settings.internal_token),)  # noqa: E731
_a = lambda w: ((ADMIN_TOKEN_KEY, w.settings.admin_token),)  # noqa: E731
_m = lambda w: ((MERCHANT_TOKEN_KEY, w.settings.merchant_token),)  # noqa: E731


def _grant(name: str) -> Callable[[Any], tuple]:
    return lambda w: ((MERCHANT_TOKEN_KEY, w.grants[name]),)


CREDENTIALS: dict[str, tuple[Callable[[Any], tuple], dict[str, Any]]] = {
    "none": (lambda w: (), dict(internal=MISSING, admin=MISSING, merchant=MISSING, user=MISSING)),
    "a garbage internal token": (lambda w: ((INTERNAL_TOKEN_KEY, "garbage"),), dict(internal=INVALID, admin=INVALID, merchant=INVALID, user=INVALID)),
    "the internal token": (_i, dict(internal=OK, admin=ADMIN_REQUIRED, merchant=MERCHANT_REQUIRED, user=OK)),
    "internal + admin": (lambda w: _i(w) + _a(w), dict(internal=OK, admin=OK, merchant=OK, user=OK)),
    "the admin token alone": (_a, dict(internal=MISSING, admin=MISSING, merchant=MISSING, user=MISSING)),
    "internal + a wrong admin token": (
        lambda w: _i(w) + ((ADMIN_TOKEN_KEY, "garbage"),), dict(internal=OK, admin=INVALID, merchant=INVALID, user=OK)),
    "internal + the admin token twice, right first": (
        lambda w: _i(w) + _a(w) + ((ADMIN_TOKEN_KEY, "garbage"),), dict(internal=OK, admin=OK, merchant=OK, user=OK)),
    "internal + the admin token twice, wrong first": (
        lambda w: _i(w) + ((ADMIN_TOKEN_KEY, "garbage"),) + _a(w), dict(internal=OK, admin=INVALID, merchant=INVALID, user=OK)),
    "the internal token twice, right first": (
        lambda w: _i(w) + ((INTERNAL_TOKEN_KEY, "garbage"),), dict(internal=OK, admin=ADMIN_REQUIRED, merchant=MERCHANT_REQUIRED, user=OK)),
    "the internal token twice, wrong first": (
        lambda w: ((INTERNAL_TOKEN_KEY, "garbage"),) + _i(w), dict(internal=INVALID, admin=INVALID, merchant=INVALID, user=INVALID)),
    "the platform merchant token alone": (_m, dict(internal=MISSING, admin=MISSING, merchant=OK, user=ACTS_AS_USER)),
    "internal + the platform merchant token": (lambda w: _i(w) + _m(w), dict(internal=OK, admin=ADMIN_REQUIRED, merchant=OK, user=OK)),
    "a garbage merchant token alone": (
        lambda w: ((MERCHANT_TOKEN_KEY, "garbage"),), dict(internal=MISSING, admin=MISSING, merchant=INVALID, user=INVALID)),
    "the merchant token twice, right first": (
        lambda w: _m(w) + ((MERCHANT_TOKEN_KEY, "garbage"),), dict(internal=MISSING, admin=MISSING, merchant=OK, user=ACTS_AS_USER)),
    "the merchant token twice, wrong first": (
        lambda w: ((MERCHANT_TOKEN_KEY, "garbage"),) + _m(w), dict(internal=MISSING, admin=MISSING, merchant=INVALID, user=INVALID)),
    "a grant for the store's brand": (_grant("brand"), dict(internal=MISSING, admin=MISSING, merchant=OK, user=ACTS_AS_USER)),
    "a grant naming the store": (_grant("store"), dict(internal=MISSING, admin=MISSING, merchant=OK, user=ACTS_AS_USER)),
    # "another store" depends on the RPC: STORE_NOT_YOURS for a store, ORDER_NOT_FOUND for an order.
    "a grant for another brand": (_grant("rival"), dict(internal=MISSING, admin=MISSING, merchant="not yours", user=ACTS_AS_USER)),
    "a grant naming another store": (_grant("rival store"), dict(internal=MISSING, admin=MISSING, merchant="not yours", user=ACTS_AS_USER)),
    "an expired grant": (_grant("expired"), dict(internal=MISSING, admin=MISSING, merchant=GRANT_INVALID, user=GRANT_INVALID)),
    "a revoked grant": (_grant("revoked"), dict(internal=MISSING, admin=MISSING, merchant=GRANT_INVALID, user=GRANT_INVALID)),
    "a grant of a revoked merchant": (
        _grant("revoked merchant"), dict(internal=MISSING, admin=MISSING, merchant=GRANT_INVALID, user=GRANT_INVALID)),
    "a grant signed with another key": (_grant("forged"), dict(internal=MISSING, admin=MISSING, merchant=GRANT_INVALID, user=GRANT_INVALID)),
    "a grant, then the platform's merchant token": (
        lambda w: _grant("brand")(w) + _m(w), dict(internal=MISSING, admin=MISSING, merchant=OK, user=ACTS_AS_USER)),
    "internal + a grant for the store's brand": (
        lambda w: _i(w) + _grant("brand with internal")(w), dict(internal=OK, admin=ADMIN_REQUIRED, merchant=OK, user=OK)),
    "internal + a grant for another brand": (
        lambda w: _i(w) + _grant("rival with internal")(w), dict(internal=OK, admin=ADMIN_REQUIRED, merchant="not yours", user=OK)),
    "internal + an expired grant": (
        lambda w: _i(w) + _grant("expired")(w), dict(internal=OK, admin=ADMIN_REQUIRED, merchant=GRANT_INVALID, user=OK)),
    "an end user's bearer token": (
        lambda w: (("authorization", f"Bearer {w.user_token}"),), dict(internal=MISSING, admin=MISSING, merchant=MISSING, user=MISSING)),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One RPC called one way: its documented role, the request a call sends (refusals must come
    before validation, so it matters only to allowed cells) and what a grant for another store
    hears from it."""

    service: str
    rpc: str
    role: str
    request: Callable[[Any], Any] | None = None  # world -> request; None = the empty message
    not_yours: tuple[C, str] = NOT_YOURS

    @property
    def column(self) -> str:
        return "user" if self.role == CANCEL_FOR_USER else self.role


# Merchant RPCs act on the seeded store and its orders, so that a grant's scope is what decides.
SPECIAL_ROWS = [
    Row("miandan.catalog.v1.CatalogService", "SetItemAvailability", MERCHANT,
        lambda w: cat.SetItemAvailabilityRequest(store_id=STORE, item_id=ITEM, available=True)),
    Row("miandan.order.v1.OrderService", "UpdateOrderStatus", MERCHANT,
        lambda w: os_.UpdateOrderStatusRequest(order_id=w.orders["update"], status=order_pb2.ORDER_STATUS_ACCEPTED), ORDER_HIDDEN),
    Row("miandan.order.v1.OrderService", "ListStoreOrders", MERCHANT, lambda w: os_.ListStoreOrdersRequest(store_id=STORE)),
    Row("miandan.order.v1.OrderService", "WatchStoreOrders", MERCHANT, lambda w: os_.WatchStoreOrdersRequest(store_id=STORE)),
    Row("miandan.order.v1.OrderService", "CancelOrder", MERCHANT,
        lambda w: os_.CancelOrderRequest(order_id=w.orders["cancel"], reason="售罄"), ORDER_HIDDEN),
    Row("miandan.order.v1.OrderService", "CancelOrder", CANCEL_FOR_USER,
        lambda w: os_.CancelOrderRequest(order_id="no-such-order", user_id="someone")),
]

INTERNAL_SERVICES = [
    cs.DESCRIPTOR.services_by_name["CardService"],
    cat.DESCRIPTOR.services_by_name["CatalogService"],
    os_.DESCRIPTOR.services_by_name["OrderService"],
    lottery_service_pb2.DESCRIPTOR.services_by_name["LotteryService"],
]


def matrix_rows() -> list[Row]:
    special = {(r.service, r.rpc) for r in SPECIAL_ROWS}
    rows = [
        Row(svc.full_name, m.name, DOCUMENTED_ROLES.get(svc.full_name, {}).get(m.name, "undocumented"))
        for svc in INTERNAL_SERVICES for m in svc.methods if (svc.full_name, m.name) not in special
    ]
    return rows + SPECIAL_ROWS


def expected(row: Row, credential: str) -> Any:
    answer = CREDENTIALS[credential][1][row.column]
    return row.not_yours if answer == "not yours" else answer


# --- calling any method generically --------------------------------------------------------


def _method(service_name: str, rpc: str) -> Any:
    for svc in (*INTERNAL_SERVICES, gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"]):
        if svc.full_name == service_name:
            return svc.methods_by_name[rpc]
    raise KeyError(f"{service_name}/{rpc}")


def _callable(channel: grpc.aio.Channel, service_name: str, rpc: str) -> tuple[Any, Any]:
    m = _method(service_name, rpc)
    request_cls = message_factory.GetMessageClass(m.input_type)
    reply_cls = message_factory.GetMessageClass(m.output_type)
    path = f"/{service_name}/{rpc}"
    kind = {(False, False): channel.unary_unary, (True, False): channel.stream_unary,
            (False, True): channel.unary_stream, (True, True): channel.stream_stream}[(m.client_streaming, m.server_streaming)]
    return kind(path, request_serializer=request_cls.SerializeToString, response_deserializer=reply_cls.FromString), m


def _outcome(err: grpc.aio.AioRpcError) -> tuple[C, str | None]:
    return err.code(), error_details(err)["reason"]


async def call(channel: grpc.aio.Channel, service_name: str, rpc: str, request: Any, metadata: tuple) -> Any:
    """OK, or (code, reason) of the refusal. A stream answers with its first message or status."""
    stub, m = _callable(channel, service_name, rpc)
    if request is None:
        request = message_factory.GetMessageClass(m.input_type)()
    try:
        if m.client_streaming:
            await stub(iter([request]) if request.ByteSize() else iter(()), metadata=metadata, timeout=10)
        elif m.server_streaming:
            stream = stub(request, metadata=metadata, timeout=10)
            try:
                await stream.read()
            finally:
                stream.cancel()
        else:
            await stub(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        return _outcome(err)
    return OK


def agrees(want: Any, got: Any) -> bool:
    if want == OK:
        return got == OK or got[0] not in REFUSALS_AND_CRASHES
    return got == want


# --- the world --------------------------------------------------------------------------------


async def start_world(tmp_path: Any) -> SimpleNamespace:
    from gateway.token import mint
    from gateway.wiring import build as build_gateway
    from services.card.wiring import build as build_card
    from services.catalog.wiring import build as build_catalog
    from services.lottery.wiring import build as build_lottery, draw_settings_from_env
    from services.order.wiring import build as build_order

    revoked_file = tmp_path / "revoked-grants"
    env = {
        "MIANDAN_DATA": str(tmp_path / "data"), "MIANDAN_LOG_CALLS": "0", "MIANDAN_CAMPAIGN_ID": CID,
        "MIANDAN_MERCHANT_REVOKED_FILE": str(revoked_file), "MIANDAN_USER_RATE": "0", "MIANDAN_DRAND_RELAYS": "off",
    }
    for name in ("card", "catalog", "order", "lottery", "gateway"):
        env[f"MIANDAN_{name.upper()}_PORT"] = "0"
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
    w = SimpleNamespace(servers=[], channels={}, tmp_path=tmp_path)

    async def start(name: str, build: Any, **kwargs: Any) -> str:
        addrs = {k: v for k, v in kwargs.items() if k.endswith("_addr")}
        rest = {k: v for k, v in kwargs.items() if not k.endswith("_addr")}
        server = await build(dataclasses.replace(Settings.from_env(name, env), **addrs), **rest)
        port = await server.start()
        w.servers.append(server)
        return f"127.0.0.1:{port}"

    card = await start("card", build_card)
    catalog = await start("catalog", build_catalog)
    order = await start("order", build_order, card_addr=card, catalog_addr=catalog)
    lottery = await start(
        "lottery", build_lottery, card_addr=card, beacon=None,
        draw_settings=draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": CID, "MIANDAN_LOTTERY_TICK_SECONDS": "3600"}),
    )
    w.settings = dataclasses.replace(
        Settings.from_env("gateway", env), card_addr=card, catalog_addr=catalog, order_addr=order, lottery_addr=lottery
    )
    w.gateway_addr = await start("gateway", build_gateway, card_addr=card, catalog_addr=catalog, order_addr=order,
                                 lottery_addr=lottery)
    w.addr = {
        "miandan.card.v1.CardService": card, "miandan.catalog.v1.CatalogService": catalog,
        "miandan.order.v1.OrderService": order, "miandan.lottery.v1.LotteryService": lottery,
    }
    for service, addr in w.addr.items():
        w.channels[service] = grpc.aio.insecure_channel(addr)
    w.gateway = grpc.aio.insecure_channel(w.gateway_addr)

    assert await seed_campaign_and_store(w.settings, CID, "own", "自家", budget_fen=1_000_000) == STORE
    key = w.settings.merchant_signing_key
    long_ago = FakeClock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    w.grants = {
        "brand": mint_grant(key, "m-brand", brands=[BRAND]),
        "store": mint_grant(key, "m-store", stores=[STORE]),
        "rival": mint_grant(key, "m-rival", brands=["rivalbrand"]),
        "rival store": mint_grant(key, "m-rival-store", stores=["rival-store"]),
        "expired": mint_grant(key, "m-expired", brands=[BRAND], ttl=86_400, clock=long_ago),
        "revoked": mint_grant(key, "m-revoked", brands=[BRAND]),
        "revoked merchant": mint_grant(key, "m-gone", brands=[BRAND]),
        "forged": mint_grant("another-key-of-at-least-thirty-two-bytes!", "m-forged", brands=[BRAND]),
        "brand with internal": mint_grant(key, "m-brand-internal", brands=[BRAND]),
        "rival with internal": mint_grant(key, "m-rival-internal", brands=["rivalbrand"]),
    }
    revoked_file.write_text(f"grant:{grant_id_of(w.grants['revoked'])}\nm-gone\n")
    w.user_token = mint(w.settings, "someone")
    w.orders = {"update": await place_paid_order(w, "buyer-update"), "cancel": await place_paid_order(w, "buyer-cancel")}
    return w


async def stop_world(w: SimpleNamespace) -> None:
    for channel in (*w.channels.values(), w.gateway):
        await channel.close()
    for server in reversed(w.servers):
        await server.stop(0)


@pytest.fixture
async def world(tmp_path):
    w = await start_world(tmp_path)
    try:
        yield w
    finally:
        await stop_world(w)


async def place_paid_order(w: SimpleNamespace, user: str) -> str:
    """A new paid order at the seeded store (a card pays all of it): also a change its store's
    watchers hear."""
    md = internal_metadata(w.settings)
    async with open_channel(w.settings, w.addr["miandan.card.v1.CardService"]) as ch:
        await card_service_pb2_grpc.CardServiceStub(ch).ClaimSignupCard(
            cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
    reply = await order_service_pb2_grpc.OrderServiceStub(w.channels["miandan.order.v1.OrderService"]).PlaceOrder(
        os_.PlaceOrderRequest(request_id=f"o-{user}", user_id=user, store_id=STORE, campaign_id=CID,
                              lines=[catalog_pb2.LineSelection(item_id=ITEM, quantity=1)], card_use=order_pb2.CARD_USE_BEST),
        metadata=md, timeout=10,
    )
    assert reply.order.status == order_pb2.ORDER_STATUS_PAID, reply
    return reply.order.order_id


async def watch_store_cells(w: SimpleNamespace, row: Row) -> dict[str, Any]:
    """Every credential's WatchStoreOrders at once: each opened stream follows the store once its
    headers came, then one new order is placed, and each stream answers with it or its status."""
    stub, _ = _callable(w.channels[row.service], row.service, row.rpc)
    streams = {name: stub(row.request(w), metadata=build(w), timeout=20) for name, (build, _) in CREDENTIALS.items()}
    try:
        for stream in streams.values():
            await stream.initial_metadata()
        await place_paid_order(w, "buyer-watched")
        got: dict[str, Any] = {}
        for name, stream in streams.items():
            try:
                await asyncio.wait_for(stream.read(), 10)
                got[name] = OK
            except grpc.aio.AioRpcError as err:
                got[name] = _outcome(err)
        return got
    finally:
        for stream in streams.values():
            stream.cancel()


# --- the tests --------------------------------------------------------------------------------


def test_every_rpc_of_every_internal_service_has_a_documented_row():
    documented = {(svc, rpc) for svc, rpcs in DOCUMENTED_ROLES.items() for rpc in rpcs}
    served = {(svc.full_name, m.name) for svc in INTERNAL_SERVICES for m in svc.methods}
    assert served - documented == set(), "an RPC nobody wrote down who may call"
    assert documented - served == set(), "a row for an RPC that no longer exists"


async def test_every_internal_rpc_answers_every_credential_as_the_documents_say(world):
    disagreements = []
    for row in matrix_rows():
        if row.rpc == "WatchStoreOrders":
            answers = await watch_store_cells(world, row)
        else:
            channel = world.channels[row.service]
            answers = {}
            for name, (build, _) in CREDENTIALS.items():
                want = expected(row, name)
                # A refused credential hears so whatever it sends: the empty message, before any
                # validation. Only answers that depend on what the call acts on need the real one.
                request = None if want in CREDENTIAL_REFUSALS or row.request is None else row.request(world)
                answers[name] = await call(channel, row.service, row.rpc, request, build(world))
        for name, got in answers.items():
            want = expected(row, name)
            if not agrees(want, got):
                disagreements.append(f"{row.rpc} ({row.role}) with {name}: expected {want}, got {got}")
    assert disagreements == [], "\n".join(disagreements)


# --- the gateway ------------------------------------------------------------------------------

TOKEN_MISSING = (C.UNAUTHENTICATED, "TOKEN_MISSING")
TOKEN_INVALID = (C.UNAUTHENTICATED, "TOKEN_INVALID")
TOKEN_EXPIRED = (C.UNAUTHENTICATED, "TOKEN_EXPIRED")
TOKEN_WRONG_ISSUER = (C.UNAUTHENTICATED, "TOKEN_WRONG_ISSUER")


def _claims(w: SimpleNamespace, **changes: Any) -> dict[str, Any]:
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    claims = {"sub": "someone", "iss": w.settings.jwt_issuer, "iat": now, "exp": now + 3600, **changes}
    return {k: v for k, v in claims.items() if v is not None}


def _bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


# gateway_service.proto: "Every call carries authorization: Bearer <token> (a signed JWT)";
# UNAUTHENTICATED TOKEN_MISSING, TOKEN_EXPIRED, TOKEN_INVALID (bad signature, malformed, missing
# sub/exp/iat/iss claim), TOKEN_WRONG_ISSUER; docs/conventions.md: at most MIANDAN_JWT_MAX_LIFETIME_S.
BEARERS: dict[str, tuple[Callable[[Any], tuple], Any]] = {
    "no token": (lambda w: (), TOKEN_MISSING),
    "the internal and admin tokens instead": (lambda w: internal_metadata(w.settings, admin=True, merchant=True), TOKEN_MISSING),
    "Bearer and nothing": (lambda w: (("authorization", "Bearer"),), TOKEN_INVALID),
    "another scheme": (lambda w: (("authorization", "Basic c29tZW9uZTpwYXNz"),), TOKEN_INVALID),
    "a token that is no JWT": (lambda w: _bearer("not-a-jwt"), TOKEN_INVALID),
    "a malformed JWT": (lambda w: _bearer("a.b.c"), TOKEN_INVALID),
    "an expired token": (lambda w: _bearer(w.mint(w.settings, "someone", ttl=-3600)), TOKEN_EXPIRED),
    "a token signed with another key": (
        lambda w: _bearer(jwt.encode(_claims(w), "another-secret-of-at-least-thirty-two-bytes", algorithm="HS256")), TOKEN_INVALID),
    "a token of another issuer": (lambda w: _bearer(w.mint(w.settings, "someone", issuer="someone-else")), TOKEN_WRONG_ISSUER),
    "an unsigned token (alg none)": (lambda w: _bearer(jwt.encode(_claims(w), None, algorithm="none")), TOKEN_INVALID),
    "a token signed with the secret by another algorithm": (
        lambda w: _bearer(jwt.encode(_claims(w), w.settings.jwt_secret, algorithm="HS512")), TOKEN_INVALID),
    "a token without a subject": (lambda w: _bearer(jwt.encode(_claims(w, sub=None), w.settings.jwt_secret)), TOKEN_INVALID),
    "a token without an expiry": (lambda w: _bearer(jwt.encode(_claims(w, exp=None), w.settings.jwt_secret)), TOKEN_INVALID),
    "a token living longer than allowed": (
        lambda w: _bearer(jwt.encode(_claims(w, exp=_claims(w)["iat"] + 400 * 86_400), w.settings.jwt_secret)), TOKEN_INVALID),
    "a token issued in the future": (
        lambda w: _bearer(jwt.encode(_claims(w, iat=_claims(w)["iat"] + 3600, exp=_claims(w)["iat"] + 7200), w.settings.jwt_secret)),
        TOKEN_INVALID),
    "a merchant grant": (lambda w: _bearer(w.grants["brand"]), TOKEN_INVALID),
    "two tokens, the valid one first": (lambda w: _bearer(w.user_token) + _bearer("not-a-jwt"), OK),
    "two tokens, the valid one second": (lambda w: _bearer("not-a-jwt") + _bearer(w.user_token), TOKEN_INVALID),
    "a valid token": (lambda w: _bearer(w.user_token), OK),
}

GATEWAY = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"]


async def test_every_gateway_rpc_refuses_every_bad_bearer_token_with_its_reason(world):
    from gateway.token import mint

    world.mint = mint
    disagreements = []
    for m in GATEWAY.methods:
        for name, (build, want) in BEARERS.items():
            got = await call(world.gateway, GATEWAY.full_name, m.name, None, build(world))
            if not agrees(want, got):
                disagreements.append(f"gateway {m.name} with {name}: expected {want}, got {got}")
    assert disagreements == [], "\n".join(disagreements)


async def test_the_gateways_public_port_serves_no_internal_rpc_whatever_the_credential(world):
    every_credential = internal_metadata(world.settings, admin=True, merchant=True)
    answers = {
        f"{svc.full_name}/{m.name}": await call(world.gateway, svc.full_name, m.name, None, every_credential)
        for svc in INTERNAL_SERVICES for m in svc.methods
    }
    assert {rpc: got for rpc, got in answers.items() if got[0] != C.UNIMPLEMENTED} == {}
