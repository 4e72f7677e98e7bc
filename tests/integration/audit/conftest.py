import pytest

import services.audit


@pytest.fixture(autouse=True)
def quick_second_look(monkeypatch):
    """The audit looks again before it reports a finding (DEFAULT_CONFIRM_AFTER_S, 3 s for
    operators): these worlds hold still, so a tenth of a second is as good a second look."""
    monkeypatch.setattr(services.audit, "DEFAULT_CONFIRM_AFTER_S", 0.1)
