"""The labelled dev set and the held-out sentences (written before tuning) over the demo menu."""
from pathlib import Path

import pytest

from services.catalog.intent import build_resolver, load_demo_specs
from services.catalog.intent.evaluation import Judge, load_cases

ROOT = Path(__file__).resolve().parents[3]
DEV = load_cases(ROOT / "tests/data/nl_dev_set.jsonl")
# Written before the resolver was tuned, in three rounds (round 1 before any code ran, rounds 2
# and 3 each before looking at how the resolver did on them); bench/intent.py prints each round.
HELD_OUT = [c for name in ("heldout.jsonl", "heldout_round2.jsonl", "heldout_round3.jsonl")
            for c in load_cases(Path(__file__).with_name(name))]
BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
JUDGE = Judge(BRANDS, ITEMS)


# The lead's policy (a bare word of several items is asked about) makes these dev labels wrong; the dev set is
# not this area's file, so they wait for its relabel (-> {"clarify": true}).
DEV_RELABEL_PENDING: set[str] = set()


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason="dev label predates the ask-which policy"))
    if c["text"] in DEV_RELABEL_PENDING else c for c in DEV], ids=[c["text"] or "<empty>" for c in DEV])
def test_dev_sentence_is_understood(case):
    assert JUDGE.check(case["expect"], RESOLVER.resolve(case["text"])) == ""


@pytest.mark.parametrize("case", HELD_OUT, ids=[c["text"] for c in HELD_OUT])
def test_held_out_sentence_is_understood(case):
    assert JUDGE.check(case["expect"], RESOLVER.resolve(case["text"])) == ""


def test_held_out_set_is_large_enough_to_mean_something():
    assert len(HELD_OUT) >= 120
