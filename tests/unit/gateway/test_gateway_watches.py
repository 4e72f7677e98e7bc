import pytest

from gateway.watches import TOO_MANY_WATCHES, WatchSlots
from services.common.errors import ResourceExhausted, Unavailable


def test_a_user_holds_at_most_per_user_streams_and_gets_them_back_as_they_close():
    slots = WatchSlots(per_user=2, total=100)
    with slots.held("alice"), slots.held("alice"):
        with pytest.raises(ResourceExhausted) as info:
            with slots.held("alice"):
                pass
        assert info.value.reason == TOO_MANY_WATCHES and info.value.code == "RESOURCE_EXHAUSTED"
        with slots.held("bob"):  # another user is not affected
            assert (slots.of("alice"), slots.of("bob"), slots.open) == (2, 1, 3)
    assert (slots.of("alice"), slots.open) == (0, 0)
    with slots.held("alice"):
        pass


def test_the_whole_gateway_holds_at_most_total_and_says_retry_later():
    slots = WatchSlots(per_user=5, total=2)
    with slots.held("a"), slots.held("b"):
        with pytest.raises(Unavailable) as info:
            with slots.held("c"):
                pass
        assert info.value.reason == "OVERLOADED" and info.value.retry_after_ms
    with slots.held("c"):
        assert slots.open == 1


def test_a_stream_that_fails_gives_its_slot_back():
    slots = WatchSlots(per_user=1, total=1)
    with pytest.raises(RuntimeError):
        with slots.held("alice"):
            raise RuntimeError("upstream went away")
    assert slots.open == 0 and slots.of("alice") == 0


def test_bounds_below_one_are_refused():
    with pytest.raises(ValueError):
        WatchSlots(per_user=0, total=10)
