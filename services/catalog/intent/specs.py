"""What the resolver knows about a catalog, and what it answers: plain frozen dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OptionSpec:
    group_id: str
    option_id: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupSpec:
    group_id: str
    name: str
    default_option_id: str
    options: tuple[OptionSpec, ...]


@dataclass(frozen=True)
class ItemSpec:
    item_id: str
    brand_id: str
    name: str
    aliases: tuple[str, ...]
    category: str
    price_fen: int
    groups: tuple[GroupSpec, ...]


@dataclass(frozen=True)
class BrandSpec:
    brand_id: str
    name: str
    aliases: tuple[str, ...]
    category: str


@dataclass(frozen=True)
class WantedLine:
    item_id: str
    quantity: int
    # group_id -> option_id, only what the sentence chose; the rest stays at the item's default.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    brand_id: str
    lines: tuple[WantedLine, ...]
    confidence: float
    explanation: str
    by_category: bool = False


@dataclass(frozen=True)
class Reading:
    candidates: tuple[Candidate, ...]  # best first; empty => clarify
    clarification: str = ""            # set when candidates is empty (Chinese + English)
    mentioned_unknown_brand: str = ""  # e.g. 星巴克
