"""The drand fetcher (services/lottery/beacon.py): real signatures of the League of Entropy
chains verify, anything else is refused, and nothing is asked before a round's time."""
from __future__ import annotations

import json
import logging

import pytest

from services.lottery.beacon import DRAND, DEFAULT_RELAYS, BeaconRejected, DrandBeacon, beacon_from_env, signed_randomness

# Published rounds (drand's public API), their signatures and the randomness drand derives.
QUICKNET_ROUND = 657413
QUICKNET_SIG = "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b"
QUICKNET_RANDOMNESS = "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587"
DEFAULT_ROUND_1_PREVIOUS = "176f93498eac9ca337150b46d21dd58673ea4e3581185f869672e59fa4cb390a"
DEFAULT_ROUND_1_SIG = (
    "8d61d9100567de44682506aea1a7a6fa6e5491cd27a0a0ed349ef6910ac5ac20ff7bc3e09d7c046566c9f7f3c6f3b10104990e7cb42499"
    "8203d8f7de586fb7fa5f60045417a432684f85093b06ca91c769f0e7ca19268375e659c2a2352b4655"
)
DEFAULT_ROUND_1_RANDOMNESS = "101297f1ca7dc44ef6088d94ad5fb7ba03455dc33d53ddb412bbc4564ed986ec"
QUICKNET = DRAND["drand:quicknet"]


def quicknet_answer(**changes) -> bytes:
    answer = {"round": QUICKNET_ROUND, "randomness": QUICKNET_RANDOMNESS, "signature": QUICKNET_SIG}
    answer.update(changes)
    return json.dumps(answer).encode()


def test_a_published_quicknet_round_verifies_to_its_randomness():
    assert signed_randomness(QUICKNET, QUICKNET_ROUND, quicknet_answer()) == QUICKNET_RANDOMNESS
    # The relay's own randomness field is not needed: the value comes from the signature.
    body = json.dumps({"round": QUICKNET_ROUND, "signature": QUICKNET_SIG}).encode()
    assert signed_randomness(QUICKNET, QUICKNET_ROUND, body) == QUICKNET_RANDOMNESS


def test_a_published_round_of_the_chained_default_network_verifies():
    body = json.dumps({"round": 1, "signature": DEFAULT_ROUND_1_SIG, "previous_signature": DEFAULT_ROUND_1_PREVIOUS}).encode()
    assert signed_randomness(DRAND["drand:default"], 1, body) == DEFAULT_ROUND_1_RANDOMNESS


@pytest.mark.parametrize(
    "body, why",
    [
        (quicknet_answer(round=QUICKNET_ROUND + 1), "another round's answer"),
        (quicknet_answer(randomness="00" * 32), "a randomness that is not the signature's"),
        (quicknet_answer(signature=QUICKNET_SIG[:-2] + "00"), "an altered signature"),
        (quicknet_answer(signature="zz"), "a signature that is not hex"),
        (quicknet_answer(signature=QUICKNET_SIG + "z"), "hex with a tail"),
        (quicknet_answer(previous_signature="zz"), "a previous signature that is not hex"),
        (quicknet_answer(signature=None), "no signature"),
        (b"<html>", "not JSON"),
        (b"[]", "not an object"),
        (b" " * 70_000, "too large"),
    ],
)
def test_an_answer_that_is_not_the_rounds_signed_value_is_refused(body, why):
    with pytest.raises(BeaconRejected):
        signed_randomness(QUICKNET, QUICKNET_ROUND, body)


def test_a_signature_of_another_round_is_refused_even_when_the_answer_names_the_round():
    body = json.dumps({"round": QUICKNET_ROUND + 1, "signature": QUICKNET_SIG}).encode()
    with pytest.raises(BeaconRejected, match="does not verify"):
        signed_randomness(QUICKNET, QUICKNET_ROUND + 1, body)


class Relays:
    """Answers per relay base URL: (status, body) or an exception to raise."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def get(self, url: str):
        self.asked.append(url)
        answer = self.answers[url.split("/", 3)[2]]
        if isinstance(answer, Exception):
            raise answer
        return answer


ROUND_TIME = QUICKNET.round_time(QUICKNET_ROUND)


async def test_nothing_is_asked_before_the_rounds_time():
    relays = Relays({"a": (200, quicknet_answer())})
    beacon = DrandBeacon(["http://a"], get=relays.get)
    assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME - 1) is None
    assert relays.asked == []
    assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME) == QUICKNET_RANDOMNESS
    assert relays.asked == [f"http://a/{QUICKNET.chain_hash}/public/{QUICKNET_ROUND}"]


async def test_a_failing_or_lying_relay_is_passed_over_for_the_next():
    relays = Relays({
        "down": OSError("connection refused"),
        "early": (425, b""),
        "liar": (200, quicknet_answer(randomness="11" * 32)),
        "broken": (500, b"oops"),
        "good": (200, quicknet_answer()),
    })
    beacon = DrandBeacon(["http://down", "http://early", "http://liar", "http://broken", "http://good/"], get=relays.get)
    assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 60) == QUICKNET_RANDOMNESS
    assert len(relays.asked) == 5


async def test_no_value_while_every_relay_fails():
    relays = Relays({"a": (404, b""), "b": OSError("timed out")})
    beacon = DrandBeacon(["http://a", "http://b"], get=relays.get)
    assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 60) is None


@pytest.mark.parametrize("source, round_text", [("drand:other", "5"), ("drand:quicknet", "x"), ("drand:quicknet", "0")])
async def test_unknown_sources_and_bad_rounds_ask_nobody(source, round_text):
    relays = Relays({})
    beacon = DrandBeacon(["http://a"], get=relays.get)
    assert await beacon.value(source, round_text, ROUND_TIME + 60) is None
    assert relays.asked == []


def test_relays_come_from_the_environment():
    assert beacon_from_env({"MIANDAN_DRAND_RELAYS": "off"}) is None
    assert beacon_from_env({}).relays == DEFAULT_RELAYS
    assert beacon_from_env({"MIANDAN_DRAND_RELAYS": "https://r1/, http://127.0.0.1:9"}).relays == ("https://r1", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="MIANDAN_DRAND_RELAYS"):
        beacon_from_env({"MIANDAN_DRAND_RELAYS": "ftp://x"})


async def test_relays_that_keep_failing_are_one_line_each_per_quiet_spell_not_one_per_tick(caplog):
    # Relays out of reach for hours (egress blocked, a chain halted): the scheduler asks every
    # tick (5 s), and a line per relay per tick buried the log, 17,000 a day each.
    relays = Relays({"down": OSError("connection refused"), "late": (404, b""), "broken": (500, b"oops")})
    beacon = DrandBeacon(["http://down", "http://late", "http://broken"], get=relays.get)
    ticks = int(DrandBeacon.QUIET_S // 5) + 2  # past one quiet spell
    with caplog.at_level(logging.INFO, logger="miandan.lottery.beacon"):
        for tick in range(ticks):
            assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 60 + 5 * tick) is None
    assert len(relays.asked) == 3 * ticks  # every tick still asks every relay
    lines = [r for r in caplog.records if r.name == "miandan.lottery.beacon"]
    by_relay = {relay: [getattr(r, "untold", None) for r in lines if f"//{relay}/" in r.url] for relay in ("down", "late", "broken")}
    assert by_relay == {relay: [0, int(DrandBeacon.QUIET_S // 5) - 1] for relay in by_relay}


async def test_a_relay_failing_again_after_it_answered_is_news_at_once(caplog):
    relays = Relays({"a": OSError("connection refused")})
    beacon = DrandBeacon(["http://a"], get=relays.get)
    with caplog.at_level(logging.WARNING, logger="miandan.lottery.beacon"):
        await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 60)
        relays.answers["a"] = (200, quicknet_answer())
        assert await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 65) == QUICKNET_RANDOMNESS
        relays.answers["a"] = OSError("connection refused")
        await beacon.value("drand:quicknet", str(QUICKNET_ROUND), ROUND_TIME + 70)
    assert [r.getMessage() for r in caplog.records] == ["beacon relay failed"] * 2
