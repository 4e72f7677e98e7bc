"""ImportStores reports each refused row with its store_id and a message saying why, and the report
is what the operator's import tool reads back. A row whose fields are megabytes long (a CSV
whose quoting broke, so the rest of the file landed in one column) was echoed back whole: three
such rows made a report larger than a gRPC client takes by default (4 MiB), so the tool got
RESOURCE_EXHAUSTED instead of the report, although the good rows of the same import were stored."""
import grpc

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.common.errors import MAX_MESSAGE_BYTES

from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)
HUGE = 2_500_000  # characters: one row per message, each well within the 16 MiB a message may hold


async def stream_of(*batches):
    for batch in batches:
        yield svc.ImportStoresRequest(stores=batch)


async def test_rows_with_megabyte_fields_are_reported_briefly_and_the_good_rows_are_stored(start_catalog):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    long_id = store_pb("s" * HUGE, "luckin", *HZ)  # FIELD_TOO_LONG, with the id itself
    long_brand = store_pb("b1", "b" * HUGE, *HZ, name="b1")  # UNKNOWN_BRAND, its message quoting the brand
    long_zone = store_pb("z1", "luckin", *HZ)
    long_zone.time_zone = "Z" * HUGE  # BAD_TIME_ZONE, its message quoting the zone
    good = store_pb("good-1", "luckin", *HZ)

    try:
        reply = await cat.stub.ImportStores(stream_of([long_id], [long_brand], [long_zone], [good]), metadata=cat.admin)
    except grpc.aio.AioRpcError as err:  # pragma: no cover - the failure this test is about
        raise AssertionError(f"the import report did not arrive: {err.code().name} {err.details()}") from None

    assert (reply.accepted, reply.rejected) == (1, 3)
    assert [(r.row_index, r.reason) for r in reply.rejections] == [
        (0, "FIELD_TOO_LONG"), (1, "UNKNOWN_BRAND"), (2, "BAD_TIME_ZONE"),
    ]
    for r in reply.rejections:
        assert len(r.store_id.encode()) <= 512 and len(r.message.encode()) <= MAX_MESSAGE_BYTES, r.reason
    # Enough of a long id to find the row by, marked as cut.
    assert reply.rejections[0].store_id.startswith("sss") and reply.rejections[0].store_id.endswith("…")
    assert [r.store_id for r in reply.rejections[1:]] == ["b1", "z1"]  # ids of a valid length stay whole
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="good-1"), metadata=cat.md)
    assert menu.store.store_id == "good-1"
