"""Random request messages built from a message's descriptor, for tests/e2e/test_hostile_input.

Every field type gets edge values as well as ordinary ones: empty, control and bidi characters,
4-byte characters, SQL and format strings, 5,000-character strings, int64 extremes, NaN and
infinities, enum numbers the proto does not define, repeated fields of 50 items, messages left
empty. A field draws half the time from the ids the running suite really has for a field of its
name (KnownIds: card_id from cards, order_id from orders, also other users'), so calls get past
"not found" into the rules. Seeded: a failure names its seed and replays."""
from __future__ import annotations

import math
import random
from typing import Any, Sequence

from google.protobuf import descriptor as d
from google.protobuf.message import Message

__all__ = ["KnownIds", "random_message", "mutate"]

ODD_STRINGS = (
    "", " ", "a", "0", "-1", "1e309", "null", "'; DROP TABLE cards; --", "%s%n%x", "\x00", "a\x00b",
    "\u202e", "\ufeff", "𠀀𠀁", "🍵🧋", "生椰拿铁 两杯 少冰", "来两杯生椰拿铁和一杯冰美式", "\n\t\r", "../../etc/passwd",
    "²", "١٢", "１２", "ord_" + "0" * 24, "u" * 65, "x" * 5000, "美" * 300, "2026-11-26", "9999-99-99", "0001-01-01", "9999-12-31", "*",
)
INT_EDGES = (0, 1, -1, 2, 7, 100, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63))
UINT_EDGES = (0, 1, 2, 100, 2**32 - 1, 2**53, 2**64 - 1)
FLOAT_EDGES = (0.0, -0.0, 1.5, -1.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 90.0, -180.000001, 30.2775, 120.164)
_SIGNED = {
    d.FieldDescriptor.TYPE_INT32: 32, d.FieldDescriptor.TYPE_SINT32: 32, d.FieldDescriptor.TYPE_SFIXED32: 32,
    d.FieldDescriptor.TYPE_INT64: 64, d.FieldDescriptor.TYPE_SINT64: 64, d.FieldDescriptor.TYPE_SFIXED64: 64,
}
_UNSIGNED = {
    d.FieldDescriptor.TYPE_UINT32: 32, d.FieldDescriptor.TYPE_FIXED32: 32,
    d.FieldDescriptor.TYPE_UINT64: 64, d.FieldDescriptor.TYPE_FIXED64: 64,
}
MAX_DEPTH = 3


class KnownIds:
    """Real ids by the name of the field they go in ("card_id", "user_id"...), and all of them
    for any other *_id field."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}
        self.every: list[str] = []
        # Ids of another user than the one the seeds call as (the neighbour's cards, orders,
        # previews, invite code): a swap picks one of these half the time, since a missing
        # ownership check shows only with them, and among all real ids they are a few.
        self.foreign: dict[str, list[str]] = {}

    def add(self, fields: Sequence[str], *values: str, foreign: bool = False) -> None:
        for value in values:
            if not value:
                continue
            for name in fields:
                self.by_field.setdefault(name, []).append(value)
                if foreign:
                    self.foreign.setdefault(name, []).append(value)
            self.every.append(value)

    def pick(self, field_name: str, rng: random.Random) -> str | None:
        own = self.by_field.get(field_name)
        if own and rng.random() < 0.5:
            return rng.choice(own)
        if self.every and field_name.endswith(("_id", "_ids", "_code")) and rng.random() < 0.3:
            return rng.choice(self.every)
        return None


_NO_IDS = KnownIds()


def random_message(cls: type[Message], rng: random.Random, known_ids: KnownIds = _NO_IDS) -> Message:
    msg = cls()
    _fill(msg, rng, 0, known_ids)
    return msg


def mutate(request: Message, rng: random.Random, known_ids: KnownIds = _NO_IDS) -> Message:
    """A copy of a request that was answered OK, with ONE thing made hostile: an id swapped for
    another real one, a scalar anywhere in it set to an edge value, a repeated field's item
    copied 50 times, or a sub-message cleared. Everything else stays valid, so the call gets as far into the rules as it can."""
    copy = type(request)()
    copy.CopyFrom(request)
    spots = list(_spots(copy))
    if not spots:
        return copy
    # Often: another real id where one goes (someone else's card, order, preview): the requests
    # a user who edits ids sends, and where a missing ownership check would show.
    id_spots = [
        (owner, field) for owner, field in spots
        if field.name in known_ids.by_field and field.message_type is None and not field.is_repeated
    ]
    if id_spots and rng.random() < 0.5:
        owner, field = rng.choice(id_spots)
        theirs = known_ids.foreign.get(field.name)
        pool = theirs if theirs and rng.random() < 0.5 else known_ids.by_field[field.name]
        setattr(owner, field.name, rng.choice(pool))
        return copy
    owner, field = rng.choice(spots)
    if field.is_repeated:
        items = getattr(owner, field.name)
        if len(items) and rng.random() < 0.3:
            if field.message_type is not None:
                for _ in range(50):
                    items.add().CopyFrom(items[0])
            else:
                items.extend([items[0]] * 50)
        elif len(items) and field.message_type is None:
            items[rng.randrange(len(items))] = _scalar(field, rng, known_ids)
        elif field.message_type is None:
            items.append(_scalar(field, rng, known_ids))
    elif field.message_type is not None:
        owner.ClearField(field.name)
    else:
        setattr(owner, field.name, _scalar(field, rng, known_ids))
    return copy


def _spots(msg: Message, depth: int = 0) -> Any:
    """(message, field) pairs a mutation may touch: every field of every message inside."""
    for field in msg.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        yield msg, field
        if field.message_type is None or depth >= MAX_DEPTH:
            continue
        if field.is_repeated:
            for item in getattr(msg, field.name):
                yield from _spots(item, depth + 1)
        elif msg.HasField(field.name):
            yield from _spots(getattr(msg, field.name), depth + 1)


def _fill(msg: Message, rng: random.Random, depth: int, ids: KnownIds) -> None:
    for field in msg.DESCRIPTOR.fields:
        if rng.random() < 0.35:
            continue  # unset: the commonest bad input of all
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _fill_map(getattr(msg, field.name), field, rng, depth, ids)
        elif field.is_repeated:
            target = getattr(msg, field.name)
            for _ in range(rng.choice((0, 1, 2, 3, 3, 50)) if depth < MAX_DEPTH else 0):
                if field.message_type is not None:
                    _fill(target.add(), rng, depth + 1, ids)
                else:
                    target.append(_scalar(field, rng, ids))
        elif field.message_type is not None:
            if depth < MAX_DEPTH:
                sub = getattr(msg, field.name)
                _fill(sub, rng, depth + 1, ids)
                sub.SetInParent()  # present even when every field of it was left unset
        else:
            setattr(msg, field.name, _scalar(field, rng, ids))


def _fill_map(target: Any, field: d.FieldDescriptor, rng: random.Random, depth: int, ids: KnownIds) -> None:
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for _ in range(rng.choice((1, 2, 3))):
        key = _scalar(key_field, rng, ids)
        if value_field.message_type is not None:
            if depth < MAX_DEPTH:
                _fill(target[key], rng, depth + 1, ids)
        else:
            target[key] = _scalar(value_field, rng, ids)


def _scalar(field: d.FieldDescriptor, rng: random.Random, ids: KnownIds) -> Any:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        known = ids.pick(field.name, rng)
        if known is not None:
            return known
        if rng.random() < 0.7:
            return rng.choice(ODD_STRINGS)
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 40)))
    if t == d.FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.choice((0, 1, 16, 300)))
    if t == d.FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        v = rng.choice(FLOAT_EDGES) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)
        if t == d.FieldDescriptor.TYPE_FLOAT and math.isfinite(v) and abs(v) > 3.4e38:
            v = math.copysign(math.inf, v)
        return v
    if t == d.FieldDescriptor.TYPE_ENUM:
        if rng.random() < 0.7:
            return rng.choice([v.number for v in field.enum_type.values])
        return rng.choice((99, -5, 2**31 - 1, 12345))  # open enums carry numbers the proto never named
    if t in _SIGNED:
        half = 2 ** (_SIGNED[t] - 1)
        v = rng.choice(INT_EDGES) if rng.random() < 0.7 else rng.randint(-(10**6), 10**6)
        return max(-half, min(half - 1, v))
    if t in _UNSIGNED:
        v = rng.choice(UINT_EDGES) if rng.random() < 0.7 else rng.randint(0, 10**6)
        return min(2 ** _UNSIGNED[t] - 1, v)
    raise TypeError(f"no values for field type {t} of {field.full_name}")
