"""PlaceOrder from_cart's refusals are in order_service.proto, where callers learn them."""

from pathlib import Path

from services.order.store import CartGone

PROTO = Path(__file__).resolve().parents[3] / "protos" / "miandan" / "order" / "v1" / "order_service.proto"


def test_from_cart_names_the_refusals_of_a_cart_ordered_meanwhile_and_no_longer_says_it_clears_the_cart():
    field = PROTO.read_text(encoding="utf-8").split("message PlaceOrderRequest", 1)[1].split("bool from_cart", 1)[0]
    reasons = {CartGone(now_empty=True).reason, CartGone(now_empty=False).reason}
    assert [reason for reason in sorted(reasons) if reason not in field] == []
    assert "clear it once placed" not in field, "it takes only the lines it ordered"
