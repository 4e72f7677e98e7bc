"""Every text of a brand or a menu item is bounded, and so is how many option groups, options
and aliases an item has (at most 20 groups and 100 options in all). Only names and aliases were: a brand whose logo_url or an item whose
category was megabytes long was stored, and from then on ListBrands, and GetMenu at every store
of the brand, answered more than a client reads (4 MiB by default): RESOURCE_EXHAUSTED for every
buyer until an admin replaced the record. The upsert's own answer, which echoes the record,
failed the same way, so the admin was not even told the write had happened."""
import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.common.errors import error_details

from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)
HUGE = "x" * 5_000_000


@pytest.fixture
async def cat(start_catalog):
    running = await start_catalog()
    await load_menu(running.stub, running.admin)

    async def stores():
        yield svc.ImportStoresRequest(stores=[store_pb("s1", "luckin", *HZ)])

    await running.stub.ImportStores(stores(), metadata=running.admin)
    return running


async def refused_field(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()[:200]
    return [f for f, _ in error_details(err.value)["violations"]]


def brand(**fields):
    return catalog_pb2.Brand(**{"brand_id": "big", "name": "大牌", "category": "茶饮", **fields})


def item(*groups, **fields):
    return catalog_pb2.MenuItem(
        **{"item_id": "big-item", "brand_id": "luckin", "name": "大杯", "price_fen": 1000, **fields}, option_groups=list(groups)
    )


def group(n_options=2, group_id="g", group_name="组", **option_fields):
    option_fields = {"name": "选项", **option_fields}
    return catalog_pb2.OptionGroup(
        group_id=group_id, name=group_name,
        options=[catalog_pb2.Option(option_id=f"o{i}", **option_fields) for i in range(n_options)],
    )


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"logo_url": HUGE}, "brand.logo_url"),
        ({"category": HUGE}, "brand.category"),
    ],
)
async def test_a_brand_with_a_megabyte_field_is_refused_and_the_brand_list_still_answers(cat, fields, field):
    assert field in await refused_field(cat.stub.UpsertBrand(svc.UpsertBrandRequest(brand=brand(**fields)), metadata=cat.admin))
    listed = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=100), metadata=cat.md)
    assert "big" not in [b.brand_id for b in listed.brands]


@pytest.mark.parametrize(
    "request_item, field",
    [
        (item(category=HUGE), "item.category"),
        (item(aliases=["别名"] * 1_000), "item.aliases"),
        (item(group(group_name=HUGE)), "item.option_groups[0].name"),
        (item(group(name=HUGE)), "item.option_groups[0].options"),
        (item(group(aliases=[HUGE])), "item.option_groups[0].options"),
        (item(group(aliases=["别名"] * 1_000)), "item.option_groups[0].options"),
        (item(group(n_options=10_000)), "item.option_groups"),
        (item(*(group(n_options=30, group_id=f"g{i}") for i in range(4))), "item.option_groups"),  # 120 options
        (item(*(group(group_id=f"g{i}") for i in range(1_000))), "item.option_groups"),
    ],
)
async def test_an_item_with_a_megabyte_field_or_thousands_of_options_is_refused_and_the_menu_still_answers(cat, request_item, field):
    assert field in await refused_field(cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(item=request_item), metadata=cat.admin))
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="s1"), metadata=cat.md)
    assert "big-item" not in [e.item.item_id for e in menu.entries]


async def test_records_at_the_limits_are_kept(cat):
    edge = brand(category="类" * 200, logo_url="https://cdn.example.com/" + "l" * 2000)
    assert (await cat.stub.UpsertBrand(svc.UpsertBrandRequest(brand=edge), metadata=cat.admin)).created
    groups = [group(n_options=5, group_id=f"g{i}", group_name="组" * 200, name="名" * 200, aliases=["别"] * 20) for i in range(20)]
    full = item(*groups, category="类" * 200, aliases=["别名"] * 100)
    assert (await cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(item=full), metadata=cat.admin)).created
