"""A merchant with a grant marks items sold out at its own stores only; the platform's merchant
token and the admin credential still act on every store."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import with_demo_stores

LATTE, LEMONADE = "luckin-coconut-latte", "mixue-lemonade"


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("lk1", "luckin"), ("lk2", "luckin"), ("mx1", "mixue"))


def as_merchant(cat, merchant="luckin-hq", ttl=3600, **scope):
    grant = mint_grant(cat.settings.merchant_signing_key, merchant, ttl=ttl, clock=cat.clock, **scope)
    return ((INTERNAL_TOKEN_KEY, cat.settings.internal_token), (MERCHANT_TOKEN_KEY, grant))


async def sold_out(cat, store_id, item_id, md, request_id=""):
    r = await cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id=request_id, store_id=store_id, item_id=item_id, available=False), metadata=md
    )
    return not r.available


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


async def test_a_brand_grant_covers_every_store_of_the_brand_and_no_other(cat):
    md = as_merchant(cat, brands=["luckin"])
    assert await sold_out(cat, "lk1", LATTE, md) and await sold_out(cat, "lk2", LATTE, md)
    assert await refused(sold_out(cat, "mx1", LEMONADE, md)) == (grpc.StatusCode.PERMISSION_DENIED, "STORE_NOT_YOURS")
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="mx1"), metadata=cat.md)
    assert all(e.available for e in menu.entries)  # the rival's menu is untouched


async def test_a_store_grant_covers_that_store_only(cat):
    md = as_merchant(cat, merchant="lk1-franchisee", stores=["lk1"])
    assert await sold_out(cat, "lk1", LATTE, md)
    assert await refused(sold_out(cat, "lk2", LATTE, md)) == (grpc.StatusCode.PERMISSION_DENIED, "STORE_NOT_YOURS")
    # A store the catalog does not have is missing whoever asks.
    assert await refused(sold_out(cat, "nope", LATTE, md)) == (grpc.StatusCode.NOT_FOUND, "STORE_NOT_FOUND")


async def test_the_platform_token_and_admin_still_act_on_every_store(cat):
    assert await sold_out(cat, "mx1", LEMONADE, cat.merchant)
    assert await sold_out(cat, "lk2", LATTE, cat.admin)


async def test_a_grant_that_is_expired_forged_or_too_long_is_refused(cat):
    md = as_merchant(cat, brands=["luckin"], ttl=60)
    cat.clock.advance(91)  # past exp and the 30 s leeway
    assert await refused(sold_out(cat, "lk1", LATTE, md)) == (grpc.StatusCode.UNAUTHENTICATED, "MERCHANT_GRANT_INVALID")
    forged = mint_grant("someone-elses-key-of-a-decent-length-000", "luckin-hq", brands=["mixue"], clock=cat.clock)
    md = ((INTERNAL_TOKEN_KEY, cat.settings.internal_token), (MERCHANT_TOKEN_KEY, forged))
    assert await refused(sold_out(cat, "mx1", LEMONADE, md)) == (grpc.StatusCode.UNAUTHENTICATED, "MERCHANT_GRANT_INVALID")
    # Not a grant and not the platform token: the credential is wrong, as before grants.
    md = ((INTERNAL_TOKEN_KEY, cat.settings.internal_token), (MERCHANT_TOKEN_KEY, "guess"))
    assert await refused(sold_out(cat, "mx1", LEMONADE, md)) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_INVALID")
    # A grant is no internal credential: alone it passes merchant RPCs only.
    md = ((MERCHANT_TOKEN_KEY, mint_grant(cat.settings.merchant_signing_key, "m", brands=["luckin"], clock=cat.clock)),)
    menu = cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk1"), metadata=md)
    assert await refused(menu) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_MISSING")
