"""Natural-language ordering: one sentence -> brand + lines (item, quantity, options).

Pure Python (imports neither grpc nor sqlite). The catalog service calls `resolve()` and then finds
a store for each candidate in order. `IntentResolver` is the seam where a language model could be
plugged in later; `build_resolver` gives the default offline rule-based one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from .specs import BrandSpec, Candidate, GroupSpec, ItemSpec, OptionSpec, Reading, WantedLine


class IntentResolver(Protocol):
    def resolve(self, text: str, *, card_face_value_fen: int = 2500) -> Reading: ...


def load_demo_specs(path: str | Path | None = None) -> tuple[list[BrandSpec], list[ItemSpec]]:
    """Brands and items of services/catalog/demo_menu.json (or of another file in that shape)."""
    from .demo import load_demo_specs as load

    return load(path)


def build_resolver(brands: Sequence[BrandSpec], items: Sequence[ItemSpec]) -> IntentResolver:
    """The default rule-based resolver; build once per catalog version (indexes are precomputed)."""
    from .resolver import RuleBasedResolver

    return RuleBasedResolver(brands, items)


__all__ = [
    "BrandSpec", "Candidate", "GroupSpec", "IntentResolver", "ItemSpec", "OptionSpec", "Reading",
    "WantedLine", "build_resolver", "load_demo_specs",
]
