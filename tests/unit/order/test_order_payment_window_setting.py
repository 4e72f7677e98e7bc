"""The payment window an operator may configure (MIANDAN_PAYMENT_TTL_SECONDS): the card of a
to-pay order is held for the window plus a minute, and the card service holds a card for at
most a day, so a longer window let the hold lapse while the order still waited for its money."""
from __future__ import annotations

import pytest

from services.order.handlers import MAX_HOLD_SECONDS
from services.order.wiring import config_from_env


@pytest.mark.parametrize("value", [str(MAX_HOLD_SECONDS - 59), str(MAX_HOLD_SECONDS), "172800", "0.5", "0.999"])
def test_a_payment_window_the_card_hold_cannot_cover_or_of_no_whole_second_is_refused(value):
    # 0.5 became int(0.5) = 0: every to-pay order was born with its window already closed.
    with pytest.raises(ValueError, match="MIANDAN_PAYMENT_TTL_SECONDS"):
        config_from_env({"MIANDAN_PAYMENT_TTL_SECONDS": value})


@pytest.mark.parametrize("value", ["1", "900", str(MAX_HOLD_SECONDS - 60)])
def test_a_payment_window_within_the_card_hold_is_taken(value):
    assert config_from_env({"MIANDAN_PAYMENT_TTL_SECONDS": value}).payment_ttl_seconds == int(value)
