"""`python -m miandan backup DEST [--data DIR]`: copy every store of a running suite."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from . import BackupError, back_up


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m miandan backup",
        description="Copy every service's SQLite store (online, consistent per store, checked) into DEST. "
        "Exit 0 when every copy passed integrity_check.",
    )
    p.add_argument("dest", type=Path, help="a directory that does not exist yet")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("MIANDAN_DATA") or "data"), help="the suite's data directory (default MIANDAN_DATA or ./data)")
    args = p.parse_args(argv)
    # SIGTERM ends the copy as Ctrl-C does, so the half-made copy is removed rather than left;
    # SIGHUP too: the terminal of the operator who typed `make backup` went away (ssh dropped),
    # whose default action would end the process without removing anything.
    previous: dict[int, object] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _interrupt)
    except ValueError:  # not the main thread (called as a library): signals stay as they are
        pass
    try:
        copies = back_up(args.data, args.dest)
    except KeyboardInterrupt:
        print(f"backup interrupted: no backup written to {args.dest}", file=sys.stderr)
        return 130
    except (OSError, ValueError, BackupError) as exc:
        # One line, exit 2: the data directory or DEST is not what it should be (a "*.db" that is
        # not an SQLite store, no stores, DEST already there), not a crash of this command.
        print(f"backup failed: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    for c in copies:
        print(f"{c.name:8} {c.bytes / 1e6:9.1f} MB in {c.seconds:6.2f} s  integrity {c.integrity}  -> {c.path}")
    bad = [c for c in copies if c.integrity != "ok"]
    print("backup complete" if not bad else f"backup INCOMPLETE: {', '.join(c.name for c in bad)} failed integrity_check")
    return 1 if bad else 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
