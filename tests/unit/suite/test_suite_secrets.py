"""make run on a reachable host names every development secret left, not one service's at a time."""
import pytest

from services.common.config import DEV_SECRETS
from services.suite import suite_env


def test_make_run_beyond_loopback_names_every_secret_the_suite_trusts(tmp_path):
    with pytest.raises(ValueError) as err:
        suite_env({"MIANDAN_HOST": "0.0.0.0", "MIANDAN_DATA": str(tmp_path)})
    assert all(var in str(err.value) for var in DEV_SECRETS)


def test_make_run_on_loopback_keeps_the_development_secrets(tmp_path):
    env = suite_env({"MIANDAN_DATA": str(tmp_path)})
    assert env["MIANDAN_CARD_ADDR"] == "127.0.0.1:50051"
