"""Scoring a resolver against labelled sentences (the dev set format, see tests/data/nl_dev_set.jsonl).

Shared by the unit tests and `python -m bench.intent` so both judge the same way.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from .specs import BrandSpec, ItemSpec, Reading


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Judge:
    def __init__(self, brands: Iterable[BrandSpec], items: Iterable[ItemSpec]) -> None:
        self.brands = {b.brand_id: b for b in brands}
        self.items = {i.item_id: i for i in items}

    def _effective(self, item: ItemSpec, chosen: dict[str, str]) -> dict[str, str]:
        """group -> option *name*, with the item's defaults for what was not chosen (an option the
        sentence does not mention "stays at the item's default", so naming the default is the same)."""
        out = {}
        for g in item.groups:
            opt_id = chosen.get(g.group_id, g.default_option_id)
            out[g.group_id] = next((o.name for o in g.options if o.option_id == opt_id), opt_id)
        return out

    def check(self, expect: dict[str, Any], reading: Reading) -> str:
        """'' when the reading meets the expectation, else why not."""
        if expect.get("clarify") or "error" in expect:
            if reading.candidates:
                return f"expected clarification, got {reading.candidates[0].explanation}"
            return "" if reading.clarification else "no clarification text"
        if not reading.candidates:
            return f"no candidate: {reading.clarification}"
        top = reading.candidates[0]
        if "category" in expect:
            # Optional: how many things in all. Without it a kind ordered 22 times (不超过22块的汉堡)
            # met the label.
            said = sum(ln.quantity for ln in top.lines)
            if "qty" in expect and said != expect["qty"]:
                return f"{said} ordered != {expect['qty']}"
            brand = self.brands[top.brand_id]
            if brand.category != expect["category"]:
                return f"brand category {brand.category} != {expect['category']}"
            for ln in top.lines:
                if self.items[ln.item_id].price_fen > expect["max_price_fen"]:
                    return f"{self.items[ln.item_id].name} over {expect['max_price_fen']}"
            return ""
        brand = self.brands[top.brand_id]
        if brand.name != expect["brand"]:
            return f"brand {brand.name} != {expect['brand']} ({top.explanation})"
        by_name = {i.name: i for i in self.items.values() if i.brand_id == top.brand_id}
        want = Counter()
        for ln in expect["lines"]:
            item = by_name.get(ln["item"])
            if item is None:
                return f"unknown expected item {ln['item']}"
            opts = {g.group_id: g.default_option_id for g in item.groups}
            for gid, oname in ln.get("options", {}).items():
                grp = next(g for g in item.groups if g.group_id == gid)
                opts[gid] = next(o.option_id for o in grp.options if o.name == oname)
            want[(item.name, ln["qty"], tuple(sorted(self._effective(item, opts).items())))] += 1
        got = Counter()
        for ln in top.lines:
            item = self.items[ln.item_id]
            got[(item.name, ln.quantity, tuple(sorted(self._effective(item, ln.options).items())))] += 1
        if want != got:
            return f"lines {sorted(got.elements())} != {sorted(want.elements())}"
        return ""
