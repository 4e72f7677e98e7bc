"""A merchant terminal that keeps calling with an expired, revoked or forged grant costs the
server nothing that stays: each refusal carries its own message, and nothing of it is kept
per call (the pipeline's status memo once gained one entry per refused call, for weeks)."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.interceptors import CallPipeline
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)
LATTE = "luckin-coconut-latte"
CALLS = 200


@pytest.fixture
def pipelines(monkeypatch):
    """Every CallPipeline made from now on (the server keeps its own out of reach)."""
    made: list[CallPipeline] = []
    init = CallPipeline.__init__

    def remembering(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(CallPipeline, "__init__", remembering)
    return made


async def test_refused_grants_leave_nothing_behind_per_call(start_catalog, pipelines):
    cat = await start_catalog()
    [pipeline] = pipelines
    await load_menu(cat.stub, cat.admin)
    await cat.stub.ImportStores(iter([svc.ImportStoresRequest(stores=[store_pb("lk1", "luckin", *HZ)])]), metadata=cat.admin)
    grant = mint_grant(cat.settings.merchant_signing_key, "luckin-hq", brands=["luckin"], ttl=60, clock=cat.clock)
    cat.clock.advance(91)  # expired: every call of the terminal is refused from now on
    forged = mint_grant("someone-elses-key-of-a-decent-length-000", "luckin-hq", brands=["luckin"], clock=cat.clock)
    request = svc.SetItemAvailabilityRequest(request_id="so-1", store_id="lk1", item_id=LATTE, available=False)
    before = len(pipeline._status_cache)
    for n in range(CALLS):
        md = ((INTERNAL_TOKEN_KEY, cat.settings.internal_token), (MERCHANT_TOKEN_KEY, grant if n % 2 else forged))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cat.stub.SetItemAvailability(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(err.value)["reason"] == "MERCHANT_GRANT_INVALID"
    # The constant refusals (missing or wrong credentials) are encoded once each; a grant's
    # refusal is not one of them.
    assert len(pipeline._status_cache) - before <= 4
