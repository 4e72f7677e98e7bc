"""GetMenu sends a store's whole menu in one answer, and a buyer's app (through the gateway)
reads at most 4 MiB. Each item is bounded (about 1.3 MB at every limit) and a menu counted
(2,000 items), but nothing bounded the menu's size: four items rich in option aliases made
GetMenu RESOURCE_EXHAUSTED at every store of the brand, for every buyer. The item that would
take the menu past what an answer may carry is now refused; the menu stays readable."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.catalog.model import MAX_MENU_BYTES
from services.common.errors import error_details

from tests.integration.catalog.conftest import HANGZHOU, store_pb

pytestmark = pytest.mark.timeout(60)
CLIENT_DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class NoResolver:
    def resolve(self, text, card_face_value_fen=2500):
        raise AssertionError("not asked")


def rich_item(item_id, *, aliases_per_option=20):
    """About 1.15 MB on the wire: 5 groups of 20 options, each with long Chinese aliases."""
    alias = "芝士奶盖" * 47  # 188 characters, within the 200 allowed
    groups = [
        catalog_pb2.OptionGroup(
            group_id=f"g{g}", name=f"组{g}",
            options=[
                catalog_pb2.Option(option_id=f"o{o}", name=f"选项{o}", aliases=[f"{alias}{a}" for a in range(aliases_per_option)])
                for o in range(20)
            ],
        )
        for g in range(5)
    ]
    return catalog_pb2.MenuItem(item_id=item_id, brand_id="rich", name=f"招牌{item_id}", price_fen=1800, option_groups=groups)


async def upsert(cat, item):
    return await cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id=f"r-{item.item_id}-{len(item.SerializeToString())}", item=item), metadata=cat.admin)


@pytest.fixture
async def cat(start_catalog):
    running = await start_catalog(resolver_factory=lambda brands, menus: NoResolver())
    await running.stub.UpsertBrand(
        svc.UpsertBrandRequest(request_id="b", brand=catalog_pb2.Brand(brand_id="rich", name="富菜单")), metadata=running.admin
    )

    async def stores():
        yield svc.ImportStoresRequest(stores=[store_pb("s1", "rich", *HANGZHOU)])

    await running.stub.ImportStores(stores(), metadata=running.admin)
    return running


async def test_the_item_that_would_make_a_menu_unreadable_is_refused_and_the_menu_stays_readable(cat):
    refused = []
    for n in range(4):
        try:
            await upsert(cat, rich_item(f"i{n}"))
        except grpc.aio.AioRpcError as err:
            refused.append((n, err.code(), error_details(err)["reason"], error_details(err)["metadata"]))
    assert [r[:3] for r in refused] == [(3, grpc.StatusCode.FAILED_PRECONDITION, "MENU_TOO_LARGE")]
    assert refused[0][3]["brand_id"] == "rich" and refused[0][3]["max_bytes"] == str(MAX_MENU_BYTES)

    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="s1"), metadata=cat.md)
    assert [e.item.item_id for e in menu.entries] == ["i0", "i1", "i2"]
    # What the gateway hands the buyer's app: the catalog's answer inside one more message.
    assert menu.ByteSize() + 16 < CLIENT_DEFAULT_MAX_BYTES


async def test_a_menu_at_its_size_still_takes_updates_that_do_not_grow_it(cat):
    for n in range(3):
        await upsert(cat, rich_item(f"i{n}"))
    lean = rich_item("i3", aliases_per_option=0)
    assert (await upsert(cat, lean)).created  # small items still fit beside the rich ones
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upsert(cat, rich_item("i3"))  # growing it back would not
    assert error_details(err.value)["reason"] == "MENU_TOO_LARGE"
    smaller = rich_item("i0", aliases_per_option=19)
    assert not (await upsert(cat, smaller)).created  # an update that shrinks an item is taken
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="s1"), metadata=cat.md)
    assert menu.ByteSize() + 16 < CLIENT_DEFAULT_MAX_BYTES and len(menu.entries) == 4
