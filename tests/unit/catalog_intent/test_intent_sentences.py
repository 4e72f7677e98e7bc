"""The labelled dev set and the held-out sentences (written before tuning) over the demo menu."""
from pathlib import Path

import pytest

from services.catalog.intent import build_resolver, load_demo_specs
from services.catalog.intent.evaluation import Judge, load_cases

ROOT = Path(__file__).resolve().parents[3]
DEV = load_cases(ROOT / "tests/data/nl_dev_set.jsonl")
HELD_OUT = load_cases(Path(__file__).with_name("heldout.jsonl"))
BRANDS, ITEMS = load_demo_specs()
RESOLVER = build_resolver(BRANDS, ITEMS)
JUDGE = Judge(BRANDS, ITEMS)


@pytest.mark.parametrize("case", DEV, ids=[c["text"] or "<empty>" for c in DEV])
def test_dev_sentence_is_understood(case):
    assert JUDGE.check(case["expect"], RESOLVER.resolve(case["text"])) == ""


@pytest.mark.parametrize("case", HELD_OUT, ids=[c["text"] for c in HELD_OUT])
def test_held_out_sentence_is_understood(case):
    assert JUDGE.check(case["expect"], RESOLVER.resolve(case["text"])) == ""


def test_held_out_set_is_large_enough_to_mean_something():
    assert len(HELD_OUT) >= 40
