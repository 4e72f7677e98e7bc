"""Which zone names a campaign or a store may carry (services.common.time_zone): IANA zones that
resolve the same on every host, nothing the host's own zone files decide."""
from __future__ import annotations

import pytest

from services.common.time_zone import is_iana_zone


@pytest.mark.parametrize("name", ["Asia/Shanghai", "Asia/Urumqi", "UTC", "Etc/GMT-8", "PRC"])
def test_iana_zones_are_accepted(name):
    assert is_iana_zone(name)


@pytest.mark.parametrize(
    "name",
    [
        "localtime", "posixrules", "Factory", "Mars/Olympus", "",
        # Copies of the database that only some hosts' zone files carry (Debian moved them to
        # tzdata-legacy; the tzdata wheel has none): a campaign in "posix/Asia/Shanghai" has a
        # day on one host and none on the next. "right/" zones also count leap seconds, so
        # their transitions sit 27 s off the zone they copy.
        "posix/Asia/Shanghai", "right/Asia/Shanghai", "right/UTC", "posix/UTC",
    ],
)
def test_names_the_host_decides_are_refused(name):
    assert not is_iana_zone(name)
