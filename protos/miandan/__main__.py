"""`python -m miandan <command>`: operator commands. `audit` reconciles a running suite; `backup`
copies its stores."""
from __future__ import annotations

import sys
import traceback

USAGE = (
    "usage: python -m miandan audit [--card HOST:PORT] [--order HOST:PORT] [--lottery HOST:PORT] [--campaign ID] [--wait SECONDS]"
    " [--confirm-after SECONDS]\n"
    "       python -m miandan backup DEST [--data DIR]"
)
COMMANDS = {"audit": "services.audit.cli", "backup": "services.backup.cli"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in COMMANDS:
        import importlib

        try:
            command = importlib.import_module(COMMANDS[argv[0]])
        except ImportError as exc:  # installed without the services packages
            print(f"{argv[0]} needs the miandan services packages on the path: {exc}", file=sys.stderr)
            return 2
        try:
            return command.main(argv[1:])
        except KeyboardInterrupt:  # Ctrl-C: the operator knows why it stopped, no traceback needed
            print(f"{argv[0]} interrupted", file=sys.stderr)
            return 130
        except Exception:  # noqa: BLE001 - see below
            # Exit 1 is each command's own verdict (the audit's findings, a backup that failed its
            # integrity check): a failure of the command itself is 2, "could not run", with its
            # traceback for whoever fixes it (left uncaught, Python would exit 1).
            traceback.print_exc()
            print(f"{argv[0]} could not run: it failed unexpectedly (traceback above)", file=sys.stderr)
            return 2
    print(f"unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
