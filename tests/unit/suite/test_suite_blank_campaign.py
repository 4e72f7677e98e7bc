"""`MIANDAN_CAMPAIGN_ID=` (blank) is unset for every service (they fall back to the default
campaign); `make run` read it as the campaign "" and its first-start seeding failed the whole
start with a multi-line gRPC error (INVALID_ARGUMENT campaign_id required)."""
from __future__ import annotations

import pytest

from services.suite import DEFAULT_CAMPAIGN_ID, suite_env


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_campaign_id_is_the_default_campaign(tmp_path, blank):
    env = suite_env({"MIANDAN_DATA": str(tmp_path), "MIANDAN_CAMPAIGN_ID": blank})
    assert env["MIANDAN_CAMPAIGN_ID"] == DEFAULT_CAMPAIGN_ID


def test_a_set_campaign_id_is_kept(tmp_path):
    assert suite_env({"MIANDAN_DATA": str(tmp_path), "MIANDAN_CAMPAIGN_ID": "autumn-2026"})["MIANDAN_CAMPAIGN_ID"] == "autumn-2026"
