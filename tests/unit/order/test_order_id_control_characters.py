"""Ids the order service takes hold no control character (Unicode category Cc): an order id is the
hash of user id, NUL and request id, so a NUL inside either made two requests name one order.
Refused as the caller's INVALID_ARGUMENT (INVALID_ID) naming the field; order ids stay as they were."""
import unicodedata

import pytest

from services.common.errors import InvalidArgument
from services.order import model

CONTROL = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"]


@pytest.mark.parametrize("field", ["user_id", "request_id", "store_id", "order_id", "campaign_id"])
@pytest.mark.parametrize("control", CONTROL, ids=lambda c: f"U+{ord(c):04X}")
def test_an_id_with_a_control_character_is_refused_naming_the_field(field, control):
    with pytest.raises(InvalidArgument) as err:
        model.check_id(field, f"a{control}b", required=False)
    assert err.value.reason == "INVALID_ID" and err.value.violations[0][0] == field


def test_a_card_id_with_a_nul_is_refused_as_a_bad_id():
    with pytest.raises(InvalidArgument) as err:
        model.check_card_choice(model.CARD_SPECIFIC, "card\x00x")
    assert (err.value.reason, err.value.violations[0][0]) == ("INVALID_ID", "card_id")


@pytest.mark.parametrize("value", ["alice", "u:42@wx", "用户-甲", "a b", "x\u200by", "emoji-🍵", "\u00a0nbsp"])
def test_printable_ids_of_any_script_are_still_taken(value):
    model.check_id("user_id", value)


def test_order_ids_made_so_far_stay_the_same():
    assert model.order_id_for("alice", "req-1") == "ord_2d943e447d99db767edf9089"
    assert model.order_id_for("用户", "下单-1") == "ord_4236d13e013f92f88a23008c"
