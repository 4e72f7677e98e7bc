"""Who may do what, through the suite as `make run` starts it: every gateway RPC refuses a
missing, expired, tampered or foreign token; a user cannot touch another user's order, card or
order preview; a user
cannot call an internal service directly; a non-admin cannot call an admin RPC — and none of
these refusals changes anything."""
from __future__ import annotations

import uuid

import grpc
import pytest

from miandan.card.v1 import card_service_pb2, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2
from services.common.auth import internal_metadata
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(90)

RPCS = {
    "Join": gw.JoinRequest(request_id="r"),
    "GetWallet": gw.GetWalletRequest(),
    "OrderByText": gw.OrderByTextRequest(text="一杯拿铁"),
    "PlaceOrder": gw.PlaceOrderRequest(request_id="r", store_id="s"),
    "ConfirmPayment": gw.ConfirmPaymentRequest(request_id="r", order_id="o"),
    "GetOrder": gw.GetOrderRequest(order_id="o"),
    "ListOrders": gw.ListOrdersRequest(),
    "CancelOrder": gw.CancelOrderRequest(request_id="r", order_id="o"),
    "WatchOrder": gw.WatchOrderRequest(order_id="o"),
    "SearchStores": gw.SearchStoresRequest(),
    "GetMenu": gw.GetMenuRequest(store_id="s"),
    "EnterLottery": gw.EnterLotteryRequest(request_id="r"),
    "GetDrawResults": gw.GetDrawResultsRequest(),
}


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stub(suite):
    with grpc.insecure_channel(suite.addr("gateway")) as channel:
        yield gateway_service_pb2_grpc.GatewayServiceStub(channel)


def call(stub, name: str, request, metadata=None):
    method = getattr(stub, name)
    if name == "WatchOrder":
        return list(method(request, metadata=metadata, timeout=10))
    return method(request, metadata=metadata, timeout=10)


def refusal(fn, *args) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args)
    return info.value.code(), error_details(info.value)["reason"]


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def tampered(token: str, other: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{other.split('.')[1]}.{signature}"


@pytest.mark.parametrize("name", sorted(RPCS))
def test_every_rpc_refuses_a_missing_expired_tampered_or_foreign_token(suite, stub, name):
    user = uid("victim")
    good = suite.token(user)
    cases = {
        "TOKEN_MISSING": None,
        "TOKEN_EXPIRED": bearer(suite.token(user, ttl=-120)),
        "TOKEN_INVALID": bearer(tampered(good, suite.token("mallory"))),
        "TOKEN_WRONG_ISSUER": bearer(suite.token(user, issuer="someone-else")),
    }
    for reason, metadata in cases.items():
        code, got = refusal(call, stub, name, RPCS[name], metadata)
        assert (code, got) == (grpc.StatusCode.UNAUTHENTICATED, reason), name
    code, got = refusal(call, stub, name, RPCS[name], (("authorization", "Basic dXNlcjpwYXNz"),))
    assert (code, got) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def test_refused_calls_change_nothing(suite, stub):
    user = uid("untouched")
    expired = bearer(suite.token(user, ttl=-120))
    for name in ("Join", "PlaceOrder", "EnterLottery"):
        refusal(call, stub, name, RPCS[name], expired)
    wallet = stub.GetWallet(gw.GetWalletRequest(), metadata=bearer(suite.token(user)), timeout=10).wallet
    assert wallet.wallet.cards_granted == 0 and len(wallet.cards) == 0
    assert stub.ListOrders(gw.ListOrdersRequest(), metadata=bearer(suite.token(user)), timeout=10).orders == []


STORE_POINT = common_pb2.GeoPoint(latitude=30.63, longitude=120.58)


def _open_store_item(suite) -> tuple[str, catalog_pb2.MenuItem]:
    """A store of our own that is open around the clock (the demo stores keep hours), and an
    item it has."""
    admin = internal_metadata(suite.settings, admin=True)
    store = catalog_pb2.Store(store_id="e2e-gw-auth-24h", brand_id="mixue", name="蜜雪冰城(鉴权测试全天店)", address="e2e",
                              city="嘉兴", location=STORE_POINT)
    with grpc.insecure_channel(suite.addr("catalog")) as channel:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        catalog.ImportStores(iter([catalog_service_pb2.ImportStoresRequest(stores=[store])]), metadata=admin, timeout=10)
        menu = catalog.GetMenu(catalog_service_pb2.GetMenuRequest(store_id=store.store_id), metadata=admin, timeout=10)
    return store.store_id, next(e.item for e in menu.entries if e.available)


def _a_paid_order(suite, stub, owner: str) -> str:
    stub.Join(gw.JoinRequest(request_id=uid("j")), metadata=bearer(suite.token(owner)), timeout=10)
    store_id, item = _open_store_item(suite)
    order = stub.PlaceOrder(
        gw.PlaceOrderRequest(request_id=uid("r"), store_id=store_id, lines=[catalog_pb2.LineSelection(item_id=item.item_id, quantity=1)]),
        metadata=bearer(suite.token(owner)), timeout=10,
    ).order
    return order.order_id


def test_another_users_order_id_is_not_found_and_stays_unchanged(suite, stub):
    owner, thief = uid("owner"), uid("thief")
    order_id = _a_paid_order(suite, stub, owner)
    as_thief = bearer(suite.token(thief))
    attempts = {
        "GetOrder": gw.GetOrderRequest(order_id=order_id),
        "CancelOrder": gw.CancelOrderRequest(request_id=uid("c"), order_id=order_id, reason="not mine"),
        "ConfirmPayment": gw.ConfirmPaymentRequest(request_id=uid("p"), order_id=order_id, payment_reference="x"),
        "WatchOrder": gw.WatchOrderRequest(order_id=order_id),
    }
    for name, request in attempts.items():
        code, _ = refusal(call, stub, name, request, as_thief)
        assert code == grpc.StatusCode.NOT_FOUND, name
    assert stub.ListOrders(gw.ListOrdersRequest(), metadata=as_thief, timeout=10).orders == []
    order = stub.GetOrder(gw.GetOrderRequest(order_id=order_id), metadata=bearer(suite.token(owner)), timeout=10).order
    assert order.user_id == owner and order.status != order_pb2.ORDER_STATUS_CANCELLED


def test_another_users_card_or_preview_cannot_be_used_and_stays_theirs(suite, stub):
    # The card service's PERMISSION_DENIED/CARD_NOT_OWNED, passed on by the order service, used
    # to reach the thief as INTERNAL: the gateway took every upstream PERMISSION_DENIED for a
    # refusal of its own service credential.
    owner, thief = uid("owner"), uid("thief")
    as_owner, as_thief = bearer(suite.token(owner)), bearer(suite.token(thief))
    [card] = stub.Join(gw.JoinRequest(request_id=uid("j")), metadata=as_owner, timeout=10).wallet.cards
    stub.Join(gw.JoinRequest(request_id=uid("j")), metadata=as_thief, timeout=10)
    store_id, item = _open_store_item(suite)
    steal = gw.PlaceOrderRequest(
        request_id=uid("r"), store_id=store_id, lines=[catalog_pb2.LineSelection(item_id=item.item_id, quantity=1)],
        card_use=order_pb2.CARD_USE_SPECIFIC, card_id=card.card_id,
    )
    assert refusal(call, stub, "PlaceOrder", steal, as_thief) == (grpc.StatusCode.PERMISSION_DENIED, "CARD_NOT_OWNED")
    preview = stub.OrderByText(
        gw.OrderByTextRequest(request_id=uid("t"), text=f"来一杯{item.name}", location=STORE_POINT), metadata=as_owner, timeout=10,
    ).preview
    assert preview.preview_id
    confirm = gw.OrderByTextRequest(request_id=uid("t"), confirm=True, preview_id=preview.preview_id)
    code, reason = refusal(call, stub, "OrderByText", confirm, as_thief)
    assert code == grpc.StatusCode.NOT_FOUND, (code, reason)
    assert stub.ListOrders(gw.ListOrdersRequest(), metadata=as_thief, timeout=10).orders == []
    after = stub.GetWallet(gw.GetWalletRequest(), metadata=as_owner, timeout=10).wallet
    assert [(c.card_id, c.state) for c in after.cards] == [(card.card_id, card.state)]
    assert stub.ListOrders(gw.ListOrdersRequest(), metadata=as_owner, timeout=10).orders == []


def test_a_user_calling_an_internal_service_directly_is_unauthenticated_and_changes_nothing(suite, stub):
    user = uid("sneaky")
    with grpc.insecure_channel(suite.addr("card")) as channel:
        card = card_service_pb2_grpc.CardServiceStub(channel)
        claim = card_service_pb2.ClaimSignupCardRequest(request_id="r1", campaign_id="spring-2026", user_id=user)
        for metadata in (None, bearer(suite.token(user)), (("x-miandan-internal-token", "guess"),)):
            code, reason = refusal(lambda: card.ClaimSignupCard(claim, metadata=metadata, timeout=10))
            assert code == grpc.StatusCode.UNAUTHENTICATED and reason in ("CREDENTIAL_MISSING", "CREDENTIAL_INVALID")
    wallet = stub.GetWallet(gw.GetWalletRequest(), metadata=bearer(suite.token(user)), timeout=10).wallet
    assert wallet.wallet.cards_granted == 0


def test_a_non_admin_calling_an_admin_rpc_is_permission_denied_and_changes_nothing(suite):
    internal = internal_metadata(suite.settings)
    wrong_admin = internal + (("x-miandan-admin-token", "not-the-admin"),)
    campaign = uid("rogue-campaign")
    with grpc.insecure_channel(suite.addr("card")) as channel:
        card = card_service_pb2_grpc.CardServiceStub(channel)
        create = card_service_pb2.CreateCampaignRequest(request_id=campaign, campaign_id=campaign, name="rogue")
        create.rules.budget_fen = 100
        code, reason = refusal(lambda: card.CreateCampaign(create, metadata=internal, timeout=10))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")
        code, _ = refusal(lambda: card.CreateCampaign(create, metadata=wrong_admin, timeout=10))
        assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        code, _ = refusal(lambda: card.GetCampaign(card_service_pb2.GetCampaignRequest(campaign_id=campaign), metadata=internal, timeout=10))
        assert code == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(suite.addr("lottery")) as channel:
        lottery = lottery_service_pb2_grpc.LotteryServiceStub(channel)
        before = lottery.GetDraw(lottery_service_pb2.GetDrawRequest(campaign_id="spring-2026"), metadata=internal, timeout=10).draw
        code, reason = refusal(lambda: lottery.RunDraw(
            lottery_service_pb2.RunDrawRequest(request_id=uid("run"), campaign_id="spring-2026", day=before.day), metadata=internal, timeout=10))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")
        after = lottery.GetDraw(lottery_service_pb2.GetDrawRequest(campaign_id="spring-2026"), metadata=internal, timeout=10).draw
        assert after.status == before.status and after.winners == before.winners
    with grpc.insecure_channel(suite.addr("catalog")) as channel:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        brand = catalog_pb2.Brand(brand_id=uid("rogue").replace("-", "_"), name="rogue", category="茶饮")
        code, reason = refusal(lambda: catalog.UpsertBrand(
            catalog_service_pb2.UpsertBrandRequest(request_id=uid("b"), brand=brand), metadata=internal, timeout=10))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")


@pytest.mark.parametrize("sub", ["张三", "alice smith", "x" * 129, "a\nb"])
def test_a_validly_signed_token_whose_user_id_the_services_refuse_is_token_invalid(suite, stub, sub):
    import time

    import jwt

    from gateway.auth import quiet_dev_key_warning, signing_key

    quiet_dev_key_warning()
    now = int(time.time())
    claims = {"sub": sub, "iss": suite.settings.jwt_issuer, "iat": now, "exp": now + 600}
    token = jwt.encode(claims, signing_key(suite.settings), algorithm=suite.settings.jwt_algorithm)
    for name in ("Join", "GetWallet", "PlaceOrder"):
        code, reason = refusal(call, stub, name, RPCS[name], bearer(token))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"), name
