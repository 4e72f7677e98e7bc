"""Order docs and request fingerprints are written with orjson, and must stay the exact text the
stdlib json wrote (compact, UTF-8 characters kept, same key order): rows and fingerprints stored
before the switch are compared and read back as they are."""
from __future__ import annotations

import hashlib
import json
from dataclasses import fields

import pytest

from services.order import model
from services.order.model import Line, Order, Payment, PricedOption, Selection, StatusChange
from services.order.store import from_doc, to_doc


def stdlib_compact(obj: object) -> str:
    # What compact_json was before orjson, spelled out independently of model.py.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def stdlib_to_doc(o: Order) -> str:
    # to_doc's dict, written by the stdlib: the text every existing row holds.
    return stdlib_compact(json.loads(to_doc(o)))


def base(**changes: object) -> Order:
    o = Order(
        order_id="ord_1", request_id="r-1", request_hash="0f" * 16, user_id="u1", store_id="s1",
        store_name="茶饮(一店)", brand_id="b", campaign_id="c",
        lines=(Line("latte", "生椰拿铁", 2, (PricedOption("size", "L", "大杯", 200),), 1700, 3400),),
        subtotal_fen=3400, card_use=model.CARD_BEST, requested_card_id="", status=model.PLACING,
        create_ms=1_700_000_000_000, update_ms=1_700_000_000_000,
    )
    return model.revised(o, **changes)


ORDERS = {
    "placing, defaults everywhere": base(),
    "no lines, no options (empty tuples)": base(lines=(), history=()),
    "line without options": base(lines=(Line("tea", "乌龙茶", 1, (), 900, 900),)),
    "paid by card": base(
        status=model.PAID, card_id="card-1", card_discount_fen=3400, payable_fen=0, version=3,
        history=(StatusChange(model.PAID, 5, model.ACTOR_USER),), payment=Payment(status=model.PAY_NOT_REQUIRED),
    ),
    "pending payment with a payment dict": base(
        status=model.PENDING_PAYMENT, payable_fen=3400,
        payment=Payment("pay_1", "sandbox", 3400, "PENDING", "ref-参考", 1_700_000_900_000, 0, ""),
        history=(StatusChange(model.PENDING_PAYMENT, 5, model.ACTOR_USER),), from_cart=True,
    ),
    "cancelled with notes and reason": base(
        status=model.CANCELLED, cancel_reason='不要了 "改天" \\ 再来\n第二行\t😀',
        card_returned=True, card_action="RETURN", payment_action="REFUND",
        history=(
            StatusChange(model.PAID, 5, model.ACTOR_USER),
            StatusChange(model.CANCELLED, 9, "merchant", model.NOTE_PAYMENT_TTL),
            StatusChange(model.CANCELLED, 10, "system", "控制字符\x00\x1f\x7f\u2028\u2029</script>"),
        ),
        payment=Payment("pay_2", "sandbox", 3400, "REFUNDED", "", 0, 3400, model.NOTE_LATE_PAYMENT),
    ),
    "aborted with an error tuple": base(
        status=model.ABORTED, attempt=2, version=4,
        error=("FAILED_PRECONDITION", "CARD_NOT_AVAILABLE", "卡已被使用 / card already used"),
    ),
    "big numbers": base(subtotal_fen=2**53 + 1, create_ms=2**62, version=2**31),
    "from the cart, with the lines it was made from": base(
        from_cart=True, cart_keys=((0, "add-1"), (3, "加购-😀 \"x\"")),
    ),
}


@pytest.mark.parametrize("o", ORDERS.values(), ids=ORDERS.keys())
def test_an_order_doc_is_the_text_the_stdlib_wrote(o):
    doc = to_doc(o)
    assert doc == stdlib_to_doc(o)
    assert doc.encode() == stdlib_to_doc(o).encode()
    # "ck" (the cart lines kept) only on orders made from a cart: every other doc is unchanged.
    assert list(json.loads(doc)) == ["rid", "rh", "u", "s", "sn", "b", "cp", "l", "st", "cu", "rc", "status", "c",
                                     "m", "h", "card", "disc", "pay", "p", "cr", "ret", "a", "v", "ca", "pa", "fc", "e",
                                     *(["ck"] if o.cart_keys else [])]
    assert "茶饮(一店)" in doc  # UTF-8 characters, not \u escapes


@pytest.mark.parametrize("o", ORDERS.values(), ids=ORDERS.keys())
def test_a_doc_reads_back_as_the_same_order_with_every_field_set(o):
    back = from_doc(o.order_id, to_doc(o))
    assert set(vars(back)) == {f.name for f in fields(Order)}
    assert back == o
    assert isinstance(back.lines, tuple) and isinstance(back.history, tuple) and isinstance(back.error, tuple)


@pytest.mark.parametrize("o", ORDERS.values(), ids=ORDERS.keys())
def test_a_row_the_stdlib_wrote_reads_back(o):
    assert from_doc(o.order_id, stdlib_to_doc(o)) == o
    # a doc with \u escapes (ensure_ascii) or spaces, as a hand-edited row could hold, still opens
    assert from_doc(o.order_id, json.dumps(json.loads(to_doc(o)), ensure_ascii=True, indent=1)) == o


def test_a_from_cart_row_of_the_previous_release_opens_without_cart_lines():
    o = base(from_cart=True, cart_keys=((0, "add-1"),))
    d = json.loads(to_doc(o))
    del d["ck"]  # written before rows kept their cart lines
    back = from_doc(o.order_id, stdlib_compact(d))
    assert back.from_cart and back.cart_keys == ()
    assert back == model.revised(o, cart_keys=())


def test_a_doc_only_the_stdlib_reads_still_opens():
    d = json.loads(to_doc(base()))
    d["st"] = 2**70  # beyond orjson's 64-bit integers
    assert from_doc("ord_1", json.dumps(d)).subtotal_fen == 2**70


@pytest.mark.parametrize(
    "value",
    [
        ["u1", "s1", [Selection("latte", 2, (("size", "L"), ("糖", "少糖"))).to_json()], False, "BEST", "", "c"],
        ["用户", "门店", [], True, "", "card-1", ""],
        [Selection("tea", 1).to_json()],
        {"a": (), "b": [(), ("x",)], "c": None, "d": True, "e": -0, "f": 2**64 - 1, "g": -(2**63)},
        # orjson refuses these; the stdlib fallback writes them as before
        {"big": 2**64, 1: "int key"},
        "lone \ud800 surrogate",
        "".join(chr(c) for c in range(0x80)) + "é中😀\u2028\ufeff",
    ],
)
def test_compact_json_is_the_stdlib_text(value):
    assert model.compact_json(value) == stdlib_compact(value)


def test_a_request_fingerprint_is_unchanged():
    sel = [Selection("latte", 2, (("size", "L"), ("糖", "少糖")))]
    canon = stdlib_compact(["u1", "s1", [s.to_json() for s in sel], True, "BEST", "card-1", "c"])
    expected = hashlib.sha256(canon.encode()).hexdigest()[:32]
    assert model.request_hash("u1", "s1", sel, True, "BEST", "card-1", "c") == expected
