"""The menu's byte budget counts what GetMenu really sends: model.menu_entry_bytes is the size of
the servicer's rendering of an item, and the store's rough sum from the stored text never
counts less (it decides alone whether the exact sum is needed)."""
import json
import sqlite3

import pytest

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import brand_messages, read_menu
from services.catalog.model import MenuItem, Option, OptionGroup, menu_entry_bytes
from services.catalog.servicer import item_from_pb, item_pb
from services.catalog.store import _ROUGH_ITEM_BYTES, groups_to_json

LONG_ID = "码" * 128  # 512 bytes, the longest id allowed


def demo_items():
    return [item_from_pb(i) for _, items in brand_messages(read_menu()) for i in items]


ODD_ITEMS = [
    # The default option resolved to a long id the stored groups do not repeat as the default.
    MenuItem("x", "b", "名", 1, option_groups=(OptionGroup("g", "", (Option(LONG_ID, "", 0),)),)),
    MenuItem("y", "b", "名", 10_000_000, ("",), option_groups=(OptionGroup("g", "组", (Option("o", "选", -9_999_999, ("", "冰")),), "o"),)),
    MenuItem(LONG_ID, "b" * 128, "名" * 200, 5, tuple("别名" * 100 for _ in range(100)), "类" * 200),
]


def entry_bytes_on_the_wire(item):
    return len(svc.GetMenuResponse(entries=[{"item": item_pb(item), "available": True}]).SerializeToString())


@pytest.mark.parametrize("item", demo_items() + ODD_ITEMS, ids=lambda i: i.item_id[:8])
def test_an_items_counted_bytes_are_what_get_menu_sends_for_it(item):
    assert menu_entry_bytes(item) == entry_bytes_on_the_wire(item)


def test_the_rough_sum_from_stored_text_never_counts_less_than_the_wire():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE menu_items (item_id, brand_id, name, aliases, category, price_fen, option_groups)")
    for it in demo_items() + ODD_ITEMS:
        aliases = json.dumps(list(it.aliases), ensure_ascii=False)
        (rough,) = conn.execute(
            f"SELECT {_ROUGH_ITEM_BYTES} FROM (SELECT ? AS item_id, ? AS brand_id, ? AS name, ? AS aliases, ? AS category, "
            "? AS option_groups)",
            (it.item_id, it.brand_id, it.name, aliases, it.category, groups_to_json(it.option_groups)),
        ).fetchone()
        assert rough >= menu_entry_bytes(it), it.item_id
