"""`python -m miandan <command>`: operator commands. `audit` reconciles a running suite."""
from __future__ import annotations

import sys

USAGE = "usage: python -m miandan audit [--card HOST:PORT] [--order HOST:PORT] [--lottery HOST:PORT] [--campaign ID]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "audit":
        try:
            from services.audit.cli import main as audit_main
        except ImportError as exc:  # installed without the services packages
            print(f"the audit needs the miandan services packages on the path: {exc}", file=sys.stderr)
            return 2
        return audit_main(argv[1:])
    print(f"unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
