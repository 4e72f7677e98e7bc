"""`python -m miandan audit`: print every finding with its ids; exit 0 only when all holds."""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import traceback
from collections import Counter
from typing import Sequence

import grpc

from . import DEFAULT_RESERVATION_GRACE_MS


def parser() -> argparse.ArgumentParser:
    from . import DEFAULT_CONFIRM_AFTER_S

    p = argparse.ArgumentParser(
        prog="python -m miandan audit",
        description="Cross-service reconciliation of a running miandan suite (read-only; admin credential "
        "from MIANDAN_INTERNAL_TOKEN / MIANDAN_ADMIN_TOKEN). Exit 0 when every invariant holds, 1 on findings, "
        "2 when the audit could not run (invalid arguments or MIANDAN_* settings, a service could not be read).",
    )
    p.add_argument("--card", metavar="HOST:PORT", help="card service (default MIANDAN_CARD_ADDR or 127.0.0.1:50051)")
    p.add_argument("--order", metavar="HOST:PORT", help="order service (default MIANDAN_ORDER_ADDR or 127.0.0.1:50053)")
    p.add_argument("--lottery", metavar="HOST:PORT", help="lottery service (default MIANDAN_LOTTERY_ADDR or 127.0.0.1:50054)")
    p.add_argument("--campaign", metavar="ID", help="audit only this campaign (default: every campaign)")
    p.add_argument(
        "--reservation-grace", type=float, default=DEFAULT_RESERVATION_GRACE_MS / 1000, metavar="SECONDS",
        help="how long after its TTL a hold may still read RESERVED (the sweeper's period); default %(default)s",
    )
    p.add_argument(
        "--wait", type=float, default=30.0, metavar="SECONDS",
        help="how long to keep asking a service that sheds calls or does not answer (a restarting service is back "
        "within seconds) before giving up with exit 2; default %(default)s",
    )
    p.add_argument(
        "--confirm-after", type=float, default=DEFAULT_CONFIRM_AFTER_S, metavar="SECONDS",
        help="when a pass finds anything, look again this long after it and report only what both passes found: "
        "under live traffic a record read between two services' writes looks wrong once; default %(default)s",
    )
    return p


async def _run(args: argparse.Namespace) -> int:
    from . import audit_confirmed
    from .fetch import PageLoop, ServiceUnreadable, Targets

    addrs = {k: v for k, v in (("card", args.card), ("order", args.order), ("lottery", args.lottery)) if v}
    started = time.monotonic()
    # Exit 1 means findings: a configuration the audit cannot run with is exit 2, in one line.
    grace = args.reservation_grace
    if not math.isfinite(grace) or grace < 0:
        print(f"audit: --reservation-grace must be a finite number of seconds >= 0, not {grace}", file=sys.stderr)
        return 2
    if not math.isfinite(args.wait) or args.wait < 0:
        print(f"audit: --wait must be a finite number of seconds >= 0, not {args.wait}", file=sys.stderr)
        return 2
    if not math.isfinite(args.confirm_after) or args.confirm_after < 0:
        print(f"audit: --confirm-after must be a finite number of seconds >= 0, not {args.confirm_after}", file=sys.stderr)
        return 2
    try:
        targets = Targets.resolve(addrs)  # MIANDAN_* addresses and credentials
    except ValueError as exc:
        print(f"audit: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        run = await audit_confirmed(
            targets, args.campaign, reservation_grace_ms=int(grace * 1000), confirm_after=args.confirm_after, retry_for=args.wait
        )
    except ServiceUnreadable as exc:
        print(f"audit could not read {exc}", file=sys.stderr)
        return 2
    except PageLoop as exc:
        print(f"audit stopped: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as err:
        print(f"audit could not read the services: {err.code().name}: {err.details()}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. MIANDAN_TLS_* files that cannot be read
        print(f"audit could not connect to the services: {exc}", file=sys.stderr)
        return 2
    facts, findings = run.facts, run.findings
    for f in findings:
        print(f"FINDING {f}")
    if run.not_confirmed:
        print(
            f"{len(run.not_confirmed)} finding(s) of the first pass were not found again {args.confirm_after:g} s later "
            "(records read while being written): " + ", ".join(f"{k} x{n}" for k, n in sorted(Counter(f.check for f in run.not_confirmed).items()))
        )
    drawn = sum(1 for d in facts.draws if d.status == "DRAWN")
    print(
        f"audited {len(facts.campaigns)} campaign(s), {len(facts.cards)} cards, {len(facts.orders)} orders, "
        f"{sum(1 for v in facts.inviters.values() for s in v if s.invites)} inviters, {len(facts.draws)} draws ({drawn} drawn) "
        f"in {time.monotonic() - started:.1f} s"
    )
    if findings:
        by_check = Counter(f.check for f in findings)
        print(f"{len(findings)} finding(s): " + ", ".join(f"{k} x{n}" for k, n in sorted(by_check.items())))
        return 1
    print("OK: every invariant holds")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except Exception:  # noqa: BLE001 - see below
        # Exit 1 means "the suite broke an invariant" to the scripts that run the audit (the
        # drill, a cron job): a failure of the audit itself is exit 2, "could not run", with its
        # traceback for whoever fixes it. (Left uncaught, Python would exit 1.)
        traceback.print_exc()
        print("audit could not run: it failed unexpectedly (traceback above)", file=sys.stderr)
        return 2
