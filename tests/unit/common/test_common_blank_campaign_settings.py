"""Blank is unset for the campaign a service serves, and the spaces around an id are not part of
it, in every service that reads MIANDAN_CAMPAIGN_ID (Settings checks it the same way): a blank
value left the lottery's scheduler covering no campaign, silently, and the order service refused
to start where the others served the default."""
import pytest

from services.card.__main__ import options_from_env as card_options
from services.common.config import DEFAULT_CAMPAIGN_ID
from services.lottery.wiring import draw_settings_from_env
from services.order.wiring import config_from_env
from services.suite import suite_env


@pytest.mark.parametrize("blank", ["", "  ", "\n"])
def test_a_blank_campaign_id_is_the_default_campaign_everywhere(blank):
    assert draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": blank}).campaigns == (DEFAULT_CAMPAIGN_ID,)
    assert config_from_env({"MIANDAN_CAMPAIGN_ID": blank}).default_campaign_id == DEFAULT_CAMPAIGN_ID


def test_a_blank_lottery_campaign_list_falls_back_to_the_campaign_id():
    env = {"MIANDAN_LOTTERY_CAMPAIGNS": "  ", "MIANDAN_CAMPAIGN_ID": "autumn-2026"}
    assert draw_settings_from_env(env).campaigns == ("autumn-2026",)


def test_a_lottery_campaign_list_of_commas_names_no_campaign_and_stops_the_start():
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_CAMPAIGNS"):
        draw_settings_from_env({"MIANDAN_LOTTERY_CAMPAIGNS": " , "})


def test_the_suite_seeds_the_campaign_id_without_its_spaces(tmp_path):
    env = suite_env({"MIANDAN_CAMPAIGN_ID": "autumn-2026 ", "MIANDAN_DATA": str(tmp_path)})
    assert env["MIANDAN_CAMPAIGN_ID"] == "autumn-2026"


def test_a_blank_data_directory_is_data_for_the_suite_as_for_the_services(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert suite_env({"MIANDAN_DATA": " "})["MIANDAN_DATA"] == str((tmp_path / "data").resolve())


@pytest.mark.parametrize("value", ["0.0001", "0.0009"])
def test_a_new_user_window_under_a_millisecond_is_refused_not_made_zero(value):
    with pytest.raises(ValueError, match="MIANDAN_CARD_NEW_USER_WINDOW_SECONDS"):
        card_options({"MIANDAN_CARD_NEW_USER_WINDOW_SECONDS": value})


def test_a_placing_grace_under_a_second_is_refused_not_made_zero():
    with pytest.raises(ValueError, match="MIANDAN_ORDER_PLACING_GRACE_SECONDS"):
        config_from_env({"MIANDAN_ORDER_PLACING_GRACE_SECONDS": "0.5"})
