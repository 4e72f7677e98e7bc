"""ImportStores takes at most 5,000 stores per message (catalog_service.proto). The rows of a
message are validated on the event loop that answers Quote: a 16 MiB message of ~300,000 rows,
taken in one go, paused every other call for over a second. A larger message ends the stream
with INVALID_ARGUMENT / TOO_MANY_STORES naming `stores`; what the earlier messages carried is
imported as if the stream had ended there, and nothing of that message or after it is."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.catalog.model import MAX_STORES_PER_MESSAGE
from services.common.errors import error_details

from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)


async def stream_of(*batches):
    for batch in batches:
        yield svc.ImportStoresRequest(stores=batch)


def stores(prefix, count):
    return [store_pb(f"{prefix}-{i}", "luckin", HZ[0] + (i % 100) * 0.0001, HZ[1] + (i // 100) * 0.0001) for i in range(count)]


async def store_exists(cat, store_id):
    try:
        await cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
        return False
    return True


async def test_a_message_of_exactly_the_limit_is_imported(start_catalog):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    assert MAX_STORES_PER_MESSAGE == 5_000  # the number the proto documents
    reply = await cat.stub.ImportStores(stream_of(stores("full", MAX_STORES_PER_MESSAGE)), metadata=cat.admin)
    assert (reply.accepted, reply.rejected) == (MAX_STORES_PER_MESSAGE, 0)
    assert await store_exists(cat, f"full-{MAX_STORES_PER_MESSAGE - 1}")


async def test_a_message_over_the_limit_is_refused_naming_stores_and_the_earlier_messages_stay_imported(start_catalog):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    bad_row = store_pb("", "luckin", *HZ)  # MISSING_STORE_ID: counted among the rows before
    first = stores("early", 3) + [bad_row]  # buffered, not yet written, when the big one comes
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await cat.stub.ImportStores(
            stream_of(first, stores("big", MAX_STORES_PER_MESSAGE + 1), stores("late", 2)), metadata=cat.admin
        )
    err = caught.value
    details = error_details(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details["reason"] == "TOO_MANY_STORES"
    assert [f for f, _ in details["violations"]] == ["stores"]
    assert details["metadata"]["row_index"] == "4"
    assert (details["metadata"]["accepted"], details["metadata"]["rejected"]) == ("3", "1")
    assert details["metadata"]["max_stores"] == str(MAX_STORES_PER_MESSAGE)
    for i in range(3):
        assert await store_exists(cat, f"early-{i}")
    assert not await store_exists(cat, "big-0")
    assert not await store_exists(cat, "late-0")
