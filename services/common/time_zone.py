"""Which time-zone names a campaign or a store may carry."""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["is_iana_zone"]

# Names the zone database resolves to whatever the host is set to (or to nothing): a store's
# opening hours, or a campaign's day and lottery cut-off, would move with the machine a service
# happens to run on, and two services on two hosts would disagree on what day it is.
_HOST_DEPENDENT = frozenset({"localtime", "posixrules", "Factory"})
# Directories of copies of the database that only some hosts' zone files hold (Debian's
# tzdata-legacy; the tzdata wheel has none): "posix/Asia/Shanghai" resolves on one host and not
# on the next, and "right/" zones count leap seconds, their transitions 27 s off the zone copied.
_HOST_DEPENDENT_DIRS = ("posix/", "right/")


def is_iana_zone(name: str) -> bool:
    if name in _HOST_DEPENDENT or name.startswith(_HOST_DEPENDENT_DIRS):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file path
        return False
    return True
