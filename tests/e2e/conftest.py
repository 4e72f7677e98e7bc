"""Fixtures for end-to-end tests: the whole suite as `make run` starts it."""

from __future__ import annotations

import pytest

from tests.e2e.suite_process import start_suite


@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    running = start_suite(tmp_path_factory.mktemp("suite-data"))
    yield running
    running.stop()
