"""`python -m miandan audit` exits 1 only for findings: a configuration it cannot run with (a
MIANDAN_* variable, --reservation-grace) is one line naming the problem and exit 2, never a
traceback. The services are replaced by a fake fetch_facts: these paths must not need them."""
from __future__ import annotations

import pytest

import services.audit.fetch as fetch
from miandan.__main__ import main as miandan_main
from services.audit.cli import main as audit_main
from services.audit.model import AuditFacts, CampaignFacts, CardFacts

CID = "spring"


@pytest.fixture
def fetched(monkeypatch):
    """fetch_facts answers from `fetched.facts` (None: it must not be called)."""

    class Fake:
        facts: AuditFacts | None = None
        calls = 0

    async def fake_fetch_facts(targets, campaign_id=None, **kw):
        Fake.calls += 1
        assert Fake.facts is not None, "the audit read the services although it should have stopped"
        return Fake.facts

    monkeypatch.setattr(fetch, "fetch_facts", fake_fetch_facts)
    for var in ("MIANDAN_CARD_ADDR", "MIANDAN_ORDER_ADDR", "MIANDAN_LOTTERY_ADDR", "MIANDAN_ADMIN_TOKEN", "MIANDAN_INTERNAL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return Fake


def _one_line_exit_2(code: int, capsys) -> str:
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    return lines[0]


@pytest.mark.parametrize(
    "var, value",
    [("MIANDAN_CARD_ADDR", "nonsense"), ("MIANDAN_LOTTERY_ADDR", "host:99999"), ("MIANDAN_ADMIN_TOKEN", ""), ("MIANDAN_INTERNAL_TOKEN", "")],
)
def test_an_invalid_setting_is_one_line_naming_it_and_exit_2(fetched, monkeypatch, capsys, var, value):
    monkeypatch.setenv(var, value)
    line = _one_line_exit_2(audit_main([]), capsys)
    assert var in line
    assert fetched.calls == 0


def test_the_miandan_entry_point_reports_it_the_same_way(fetched, monkeypatch, capsys):
    monkeypatch.setenv("MIANDAN_ADMIN_TOKEN", "")
    assert "MIANDAN_ADMIN_TOKEN" in _one_line_exit_2(miandan_main(["audit", "--card", "127.0.0.1:1"]), capsys)


@pytest.mark.parametrize("grace", ["nan", "inf", "-inf", "-1"])
def test_a_reservation_grace_that_is_not_a_duration_is_exit_2(fetched, capsys, grace):
    fetched.facts = AuditFacts()  # were it read, the audit would be clean
    line = _one_line_exit_2(audit_main([f"--reservation-grace={grace}"]), capsys)
    assert "--reservation-grace" in line


def test_exit_0_when_all_holds_and_1_only_for_findings(fetched, capsys):
    campaign = CampaignFacts(campaign_id=CID, budget_fen=10_000, per_user_card_cap=3)
    fetched.facts = AuditFacts(campaigns=[campaign])  # no budget reported: one finding
    assert audit_main(["--reservation-grace", "0.5"]) == 1
    out = capsys.readouterr()
    assert "FINDING BUDGET_MISSING" in out.out and out.err == ""

    fetched.facts = AuditFacts(cards=[CardFacts("c1", "other", "alice", "AVAILABLE", "SIGNUP", 2_500)])
    assert audit_main([]) == 0
    assert "OK: every invariant holds" in capsys.readouterr().out


def test_an_audit_that_breaks_unexpectedly_is_exit_2_not_the_findings_exit_1(fetched, monkeypatch, capsys):
    """Exit 1 tells a script (the drill, a cron job) "the suite broke an invariant": a failure of
    the audit itself (here a fetch raising what nobody foresaw) must not say that."""
    import services.audit.fetch as fetch_module

    async def broken(*args, **kw):
        raise RuntimeError("a reply the audit did not foresee")

    monkeypatch.setattr(fetch_module, "fetch_facts", broken)
    code = audit_main(["--card", "127.0.0.1:1"])
    out = capsys.readouterr()
    assert code == 2, out
    assert "a reply the audit did not foresee" in out.err and "FINDING" not in out.out
