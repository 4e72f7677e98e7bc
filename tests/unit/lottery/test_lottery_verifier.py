import copy
import hashlib
import json

import pytest

from services.lottery import model, verify

USERS = sorted(f"user-{i:04d}" for i in range(40))


def result(beacon: str = "", winner_count: int = 15) -> dict:
    """A VerifyDraw result as --dump writes it, produced by the service's own model."""
    seed = hashlib.sha256(b"fixed seed for the test").digest()
    winners = model.select_winners(seed, beacon, USERS, winner_count)
    draw = {
        "campaign_id": "spring-2026",
        "day": "2026-01-28",
        "winner_count": winner_count,
        "status": "DRAW_STATUS_DRAWN",
        "commitment": model.commitment_of(seed),
        "commit_time": "2026-01-27T16:00:00Z",
        "cutoff_time": "2026-01-28T12:00:00Z",
        "draw_time": "2026-01-28T12:00:05.123456789Z",
        "winners": winners,
        "seed": seed.hex(),
        "beacon_source": "drand:quicknet" if beacon else "",
        "beacon_round": "123" if beacon else "",
        "beacon_value": beacon,
        "entrants_hash": model.entrants_hash(USERS),
    }
    return {
        "draw": draw,
        "seed": seed.hex(),
        "commitment": model.commitment_of(seed),
        "entrants": list(USERS),
        "entrants_hash": model.entrants_hash(USERS),
        "entrant_count": len(USERS),
        "algorithm": "miandan-draw-hmac-sha256",
        "algorithm_version": 1,
        "beacon_value": beacon,
        "beacon_configured": bool(beacon),
        "winners": winners,
        "note": model.NO_BEACON_NOTE,
    }


def failed(res: dict) -> list[str]:
    return [line for ok, line in verify.check(res) if not ok]


@pytest.mark.parametrize("beacon", ["", "a3f1" * 16])
def test_an_honest_draw_verifies(beacon):
    assert failed(result(beacon)) == []


def test_the_verifier_does_not_import_the_service_model():
    source = open(verify.__file__, encoding="utf-8").read()
    assert "services.lottery" not in source.replace("python -m services.lottery.verify", "")
    assert "import model" not in source


def test_a_tampered_winner_list_is_rejected():
    res = result()
    outsider = next(u for u in USERS if u not in res["winners"])
    res["winners"][-1] = outsider
    res["draw"]["winners"] = list(res["winners"])
    assert any("winners recomputed" in line for line in failed(res))


def test_reordered_winners_are_rejected():
    res = result()
    res["winners"] = list(reversed(res["winners"]))
    assert failed(res)


def test_a_seed_that_does_not_match_the_commitment_is_rejected():
    res = result()
    other = hashlib.sha256(b"another seed").digest()
    res["seed"] = other.hex()
    # Even with winners recomputed from the new seed the commitment gives it away.
    res["winners"] = model.select_winners(other, "", USERS, 15)
    res["draw"]["winners"] = list(res["winners"])
    assert any("commitment" in line for line in failed(res))


def test_an_added_entrant_breaks_the_entrants_hash():
    res = result()
    res["entrants"] = sorted(res["entrants"] + ["user-9999"])
    res["entrant_count"] += 1
    assert any("SHA-256 of the entrant list" in line for line in failed(res))


def test_unsorted_or_duplicate_entrants_are_rejected():
    res = result()
    res["entrants"][0], res["entrants"][1] = res["entrants"][1], res["entrants"][0]
    assert any("strictly ascending" in line for line in failed(res))
    res = result()
    res["entrants"][1] = res["entrants"][0]
    assert any("strictly ascending" in line for line in failed(res))


def test_a_swapped_beacon_value_is_rejected():
    res = result("ff" * 32)
    res["beacon_value"] = res["draw"]["beacon_value"] = "00" * 32
    assert failed(res)


def test_a_commitment_published_after_the_cutoff_is_rejected():
    res = result()
    res["draw"]["commit_time"] = "2026-01-28T12:30:00Z"
    assert any("cut-off" in line for line in failed(res))


def test_an_unknown_algorithm_is_rejected():
    res = result()
    res["algorithm_version"] = 2
    assert failed(res)


def camel_case(res: dict) -> dict:
    return {k.split("_")[0] + "".join(p.title() for p in k.split("_")[1:]): v for k, v in res.items()}


def test_camel_case_protobuf_json_is_accepted():
    assert failed(camel_case(result())) == []


def test_the_command_line_exits_0_only_when_everything_matches(tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(result()), encoding="utf-8")
    tampered = copy.deepcopy(result())
    tampered["winners"] = tampered["winners"][:-1]
    bad.write_text(json.dumps(tampered), encoding="utf-8")
    assert verify.main(["--file", str(good)]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert verify.main(["--file", str(bad)]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().out
    assert verify.main(["--file", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    assert verify.main(["--file", str(tmp_path / "junk.json")]) == 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("algorithm_version", "one"),
        ("entrant_count", "many"),
        ("entrants", 5),
        ("draw", ["not", "an", "object"]),
        ("draw.commit_time", "yesterday"),
    ],
)
def test_a_malformed_file_cannot_be_checked_rather_than_crashing(tmp_path, capsys, field, value):
    res = result()
    if field.startswith("draw."):
        res["draw"][field.removeprefix("draw.")] = value
    else:
        res[field] = value
    path = tmp_path / "malformed.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    assert verify.main(["--file", str(path)]) == 2
    assert "cannot check" in capsys.readouterr().err


def test_the_gateways_verify_draw_response_saved_to_a_file_is_checked(tmp_path, capsys):
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"verification": camel_case(result())}), encoding="utf-8")
    assert verify.main(["--file", str(path)]) == 0
    assert "VERDICT spring-2026 2026-01-28: VERIFIED" in capsys.readouterr().out
    tampered = result()
    tampered["winners"] = tampered["winners"][1:]
    path.write_text(json.dumps({"verification": camel_case(tampered)}), encoding="utf-8")
    assert verify.main(["--file", str(path)]) == 1


def test_one_page_of_a_longer_entrant_list_cannot_be_checked(tmp_path, capsys):
    page = camel_case(result())
    page["entrants"], page["nextPageToken"] = page["entrants"][:10], "dXNlci0wMDA5"
    path = tmp_path / "page.json"
    path.write_text(json.dumps({"verification": page}), encoding="utf-8")
    assert verify.main(["--file", str(path)]) == 2
    assert "one page" in capsys.readouterr().err


def test_a_live_check_answered_with_another_days_draw_is_not_verified(monkeypatch, capsys):
    # The gateway (or the lottery) asked for one day answers with another day's honest draw:
    # it recomputes, but it says nothing about the day asked, whose winners may be anything.
    asked = []

    def fetch(target, campaign, day, token, *args, **kwargs):
        asked.append(day)
        return result()  # 2026-01-28's draw, whatever was asked

    monkeypatch.setattr(verify, "fetch", fetch)
    monkeypatch.setenv("MIANDAN_USER_TOKEN", "t")
    assert verify.main(["--gateway", "127.0.0.1:1", "--day", "2026-01-28"]) == 0
    assert verify.main(["--gateway", "127.0.0.1:1", "--day", "2026-01-29"]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().out
    assert verify.main(["--target", "127.0.0.1:1", "--campaign", "spring-2026", "--day", "2026-01-28"]) == 0
    assert verify.main(["--target", "127.0.0.1:1", "--campaign", "autumn-2026", "--day", "2026-01-28"]) == 1
    assert asked == ["2026-01-28", "2026-01-29", "2026-01-28", "2026-01-28"]
